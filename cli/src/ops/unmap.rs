//! `certship unmap`: removes a mapping and schedules its secret for deletion. Files already on
//! the hosts stay where they are.

use super::explain;
use anyhow::{Context, Result, bail};
use certship_shared::mapping::{Mapping, attr, key};

/// Days Secrets Manager keeps the secret restorable (`aws secretsmanager restore-secret`).
pub const RECOVERY_WINDOW_DAYS: i64 = 7;

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

/// Deletes `mapping` (only if it is still there) and schedules its secret for deletion.
/// Returns the secret's ARN when there was one.
pub async fn remove(
    dynamodb: &aws_sdk_dynamodb::Client,
    secrets: &aws_sdk_secretsmanager::Client,
    table_name: &str,
    mapping: &Mapping,
) -> Result<Option<String>> {
    dynamodb
        .delete_item()
        .table_name(table_name)
        .set_key(Some(key(
            &mapping.target_tag_key,
            &mapping.target_tag_value,
            &mapping.certificate_arn,
            &mapping.cert_name,
        )))
        .condition_expression(format!("attribute_exists({})", attr::CERTIFICATE_ARN))
        .send()
        .await
        .map_err(explain)
        .context("deleting the mapping")?;
    let Some(secret_arn) = &mapping.secret_arn else {
        return Ok(None);
    };
    // The secret lives in the stack's region, whatever the certificate's.
    let result = secrets
        .delete_secret()
        .secret_id(secret_arn)
        .recovery_window_in_days(RECOVERY_WINDOW_DAYS)
        .send()
        .await;
    match result {
        Ok(_) => Ok(Some(secret_arn.clone())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => bail!(
            "the mapping is gone, but its secret {secret_arn} was not deleted: {:#}",
            explain(e)
        ),
    }
}
