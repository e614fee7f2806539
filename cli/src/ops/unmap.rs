//! `certship unmap`: removes a mapping with everything certship keeps for it: its State Manager
//! association (so no host is asked to install it again), its hosts' evidence, the mapping item,
//! its CertName claim, and its secret (scheduled for deletion). Files already on the hosts stay
//! where they are.

use super::{evidence, explain};
use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ssm::types::{AssociationFilter, AssociationFilterKey};
use certship_shared::mapping::{Mapping, attr, claim_key, key};
use certship_shared::naming::{association_name, mapping_id};

/// Days Secrets Manager keeps the secret restorable (`aws secretsmanager restore-secret`).
pub const RECOVERY_WINDOW_DAYS: i64 = 7;

/// Where unmap reads and deletes.
pub struct Tables<'a> {
    pub mappings: &'a str,
    pub evidence: &'a str,
}

/// What unmap removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The associations deleted (none when the mapping never had one, or it was already gone).
    pub associations: Vec<String>,
    /// How many evidence items were deleted.
    pub evidence_items: usize,
    /// Whether the CertName claim was released (false when another certificate holds the name
    /// on the target, or there was no claim).
    pub claim_released: bool,
    /// The secret scheduled for deletion, when there was one.
    pub secret_arn: Option<String>,
}

/// The mapping of `certificate_arn` named `cert_name` on `target`, if there is one.
pub async fn find(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    certificate_arn: &str,
    cert_name: &str,
    target: &(String, String),
) -> Result<Option<Mapping>> {
    let item = dynamodb
        .get_item()
        .table_name(table_name)
        .set_key(Some(key(&target.0, &target.1, certificate_arn, cert_name)))
        .consistent_read(true)
        .send()
        .await
        .map_err(explain)
        .context("reading the mapping")?
        .item;
    item.as_ref()
        .map(Mapping::from_item)
        .transpose()
        .context("the mapping table holds an item certship did not write")
}

/// Removes `mapping` and what belongs to it.
///
/// The order makes a failure safe to retry with `certship unmap` again: the association goes
/// first (nothing installs the certificate any more), then the evidence, the name claim and the
/// secret, while the mapping item still names what to clean; the mapping item goes last, so a
/// retry finds it as long as anything is left.
pub async fn remove(
    dynamodb: &aws_sdk_dynamodb::Client,
    ssm: &aws_sdk_ssm::Client,
    secrets: &aws_sdk_secretsmanager::Client,
    tables: &Tables<'_>,
    mapping: &Mapping,
) -> Result<Removed> {
    let id = mapping_id(
        &mapping.cert_name,
        &mapping.certificate_arn,
        &mapping.target_tag_key,
        &mapping.target_tag_value,
    );
    let mut removed = Removed {
        associations: delete_associations(ssm, mapping, &id).await?,
        ..Removed::default()
    };
    removed.evidence_items = evidence::delete_of_mapping(dynamodb, tables.evidence, &id)
        .await
        .context("deleting the mapping's evidence")?;
    removed.claim_released = release_claim(dynamodb, tables.mappings, mapping)
        .await
        .context("releasing the mapping's CertName claim")?;
    if let Some(secret_arn) = &mapping.secret_arn {
        removed.secret_arn = schedule_deletion(secrets, secret_arn).await?;
    }
    let deleted = dynamodb
        .delete_item()
        .table_name(tables.mappings)
        .set_key(Some(key(
            &mapping.target_tag_key,
            &mapping.target_tag_value,
            &mapping.certificate_arn,
            &mapping.cert_name,
        )))
        .condition_expression(format!("attribute_exists({})", attr::CERTIFICATE_ARN))
        .send()
        .await;
    match deleted {
        Ok(_) => {}
        // Another unmap finished first: what this one came to remove is gone either way.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
        Err(e) => return Err(explain(e)).context("deleting the mapping"),
    }
    Ok(removed)
}

/// Schedules the secret's deletion after [`RECOVERY_WINDOW_DAYS`]. `None` when it no longer
/// exists; one already scheduled (by an earlier, interrupted unmap) counts as done.
async fn schedule_deletion(
    secrets: &aws_sdk_secretsmanager::Client,
    secret_arn: &str,
) -> Result<Option<String>> {
    // The secret lives in the stack's region, whatever the certificate's.
    let result = secrets
        .delete_secret()
        .secret_id(secret_arn)
        .recovery_window_in_days(RECOVERY_WINDOW_DAYS)
        .send()
        .await;
    match result {
        Ok(_) => Ok(Some(secret_arn.to_string())),
        Err(e) => match e.as_service_error() {
            Some(s) if s.is_resource_not_found_exception() => Ok(None),
            // "You can't perform this operation on the secret because it was marked for
            // deletion." (Secrets Manager's answer to a second DeleteSecret)
            Some(s)
                if s.is_invalid_request_exception()
                    && s.meta()
                        .message()
                        .is_some_and(|m| m.contains("marked for deletion")) =>
            {
                Ok(Some(secret_arn.to_string()))
            }
            _ => bail!(
                "its secret {secret_arn} was not scheduled for deletion (the mapping stays, so \
                 `certship unmap` can be run again): {:#}",
                explain(e)
            ),
        },
    }
}

/// Deletes the mapping's association: the one its item names, or, for an item that names none
/// (a dispatch that failed after creating it), any association of the mapping's name. One that
/// no longer exists is already what unmap wants.
async fn delete_associations(
    ssm: &aws_sdk_ssm::Client,
    mapping: &Mapping,
    mapping_id: &str,
) -> Result<Vec<String>> {
    let ids = match &mapping.association_id {
        Some(id) => vec![id.clone()],
        None => {
            let name = association_name(mapping_id);
            let filter = AssociationFilter::builder()
                .key(AssociationFilterKey::AssociationName)
                .value(&name)
                .build()
                .context("building the association filter")?;
            let mut pages = ssm
                .list_associations()
                .association_filter_list(filter)
                .into_paginator()
                .items()
                .send();
            let mut ids = Vec::new();
            while let Some(association) = pages.next().await {
                let association = association
                    .map_err(explain)
                    .with_context(|| format!("looking for the association {name}"))?;
                // Only this mapping's own name is its, however the service matches the filter.
                if association.association_name() == Some(name.as_str()) {
                    ids.extend(association.association_id().map(str::to_string));
                }
            }
            ids
        }
    };
    let mut deleted = Vec::new();
    for id in ids {
        match ssm.delete_association().association_id(&id).send().await {
            Ok(_) => deleted.push(id),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_association_does_not_exist()) => {}
            Err(e) => {
                return Err(explain(e))
                    .with_context(|| format!("deleting the mapping's association {id}"));
            }
        }
    }
    Ok(deleted)
}

/// Deletes the CertName claim on the target if this certificate holds it.
async fn release_claim(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping: &Mapping,
) -> Result<bool> {
    let result = dynamodb
        .delete_item()
        .table_name(table_name)
        .set_key(Some(claim_key(
            &mapping.target_tag_key,
            &mapping.target_tag_value,
            &mapping.cert_name,
        )))
        .condition_expression("#by = :arn")
        .expression_attribute_names("#by", attr::CLAIMED_BY)
        .expression_attribute_values(":arn", AttributeValue::S(mapping.certificate_arn.clone()))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        // No claim, or another certificate's: not this mapping's to release.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(explain(e)),
    }
}
