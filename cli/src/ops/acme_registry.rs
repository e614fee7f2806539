//! The ACME certificates' registry, as `certship acme list` and `certship acme renew` read and
//! mark it (`certship_shared::acme_registry` is what it holds).

use super::explain;
use anyhow::{Result, bail};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use certship_shared::acme::{SOURCE_PREFIX, is_certificate_id};
use certship_shared::acme_registry::{Registration, attr};
use std::collections::HashMap;

/// Every registered certificate, by id; malformed items are returned as errors beside them.
pub async fn list(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(Vec<Registration>, Vec<String>)> {
    let mut found = Vec::new();
    let mut broken = Vec::new();
    let mut start_key: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start_key.take())
            .send()
            .await
            .map_err(explain)?;
        for item in page.items() {
            match Registration::from_item(item) {
                Ok(registration) => found.push(registration),
                Err(err) => broken.push(err.to_string()),
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => break,
        }
    }
    found.sort_by(|a, b| a.certificate_id.cmp(&b.certificate_id));
    Ok((found, broken))
}

/// The certificate id in `certificate` (`acme:<id>` or the bare id), or an error saying what an
/// id looks like.
pub fn certificate_id(certificate: &str) -> Result<&str> {
    let id = certificate
        .strip_prefix(SOURCE_PREFIX)
        .unwrap_or(certificate);
    if !is_certificate_id(id) {
        bail!(
            "{certificate:?} is not an ACME certificate id (acme:<first name>-<12 hex digits>, as \
             `certship acme issue` and `certship acme list` print it)"
        );
    }
    Ok(id)
}

/// Marks a registered certificate with `Force`: the next sweep issues it again whatever it has
/// left. A certificate never issued is an error: there is nothing to renew.
pub async fn force_renewal(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    certificate_id: &str,
) -> Result<()> {
    let marked = dynamodb
        .update_item()
        .table_name(table)
        .key(
            attr::CERTIFICATE_ID,
            AttributeValue::S(certificate_id.into()),
        )
        .condition_expression("attribute_exists(#id)")
        .update_expression("SET #force = :yes")
        .expression_attribute_names("#id", attr::CERTIFICATE_ID)
        .expression_attribute_names("#force", attr::FORCE)
        .expression_attribute_values(":yes", AttributeValue::Bool(true))
        .send()
        .await;
    match marked {
        Ok(_) => Ok(()),
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            bail!(
                "{SOURCE_PREFIX}{certificate_id} is not registered: only a certificate issued once \
                 is renewed. Issue it with `certship acme issue`"
            )
        }
        Err(err) => Err(explain(err)),
    }
}
