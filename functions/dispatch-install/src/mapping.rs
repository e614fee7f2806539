//! The mapping record, its name claim and its association: a CertName is unique per tag target,
//! because another certificate under the same name would overwrite its files on every host.
//!
//! The claim is one item per (target, CertName) written in the same transaction as the mapping,
//! under a condition only its holder passes, so two certificates claiming one name at once cannot
//! both win. Mappings written before claims existed have none, so the partition is also read
//! first ([`existing_mappings`]), which yields the mapping's recorded association on the way.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use certship_shared::mapping::{self, attr, claim_key, is_claim};
use certship_shared::naming::tag_key_value;
use certship_shared::{CertshipError, DeploymentRequest, ExportResult};
use std::collections::HashMap;

/// What the partition says about this request's mapping before it is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// The association recorded on this very mapping (same certificate, same name), if any.
    pub association_id: Option<String>,
}

/// Reads the target's mappings under `cert_name` (claim items skipped): another certificate's is
/// a [`CertshipError::CertNameConflict`]; this certificate's yields its recorded association.
/// Consistent, so an association recorded by the previous deployment is seen.
pub async fn existing_mappings(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    request: &DeploymentRequest,
) -> Result<Existing, CertshipError> {
    let mut existing = Existing::default();
    let mut start_key = None;
    loop {
        let page = dynamodb
            .query()
            .table_name(table_name)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .filter_expression("#name = :name")
            .expression_attribute_names("#pk", attr::PARTITION_KEY)
            .expression_attribute_names("#name", attr::CERT_NAME)
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(tag_key_value(
                    &request.target_tag_key,
                    &request.target_tag_value,
                )),
            )
            .expression_attribute_values(":name", AttributeValue::S(request.cert_name.clone()))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("Query", e))?;
        for item in page.items().iter().filter(|item| !is_claim(item)) {
            let get = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
            let (Some(name), Some(arn)) = (get(attr::CERT_NAME), get(attr::CERTIFICATE_ARN)) else {
                continue;
            };
            if name != &request.cert_name {
                continue;
            }
            if arn != &request.certificate_arn {
                return Err(conflict(request, arn));
            }
            existing.association_id = get(attr::ASSOCIATION_ID).cloned();
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => return Ok(existing),
        }
    }
}

fn conflict(request: &DeploymentRequest, holder: &str) -> CertshipError {
    CertshipError::CertNameConflict(format!(
        "CertName {} is already used on {}={} by {holder}; choose another name or unmap that \
         certificate first",
        request.cert_name, request.target_tag_key, request.target_tag_value
    ))
}

/// Claims the request's CertName on its target for its certificate and upserts the mapping, in
/// one transaction: either both are written or neither. A name another certificate holds is a
/// [`CertshipError::CertNameConflict`] naming the holder.
pub async fn claim_and_record(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    request: &DeploymentRequest,
    export: &ExportResult,
) -> Result<(), CertshipError> {
    let mut claim_item = claim_key(
        &request.target_tag_key,
        &request.target_tag_value,
        &request.cert_name,
    );
    claim_item.insert(
        attr::CLAIMED_BY.into(),
        AttributeValue::S(request.certificate_arn.clone()),
    );
    claim_item.insert(
        attr::CERT_NAME.into(),
        AttributeValue::S(request.cert_name.clone()),
    );
    let claim = Put::builder()
        .table_name(table_name)
        .set_item(Some(claim_item))
        .condition_expression("attribute_not_exists(#by) OR #by = :arn")
        .expression_attribute_names("#by", attr::CLAIMED_BY)
        .expression_attribute_values(":arn", AttributeValue::S(request.certificate_arn.clone()))
        // The holder is read from the refused item, so the error can name it.
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| CertshipError::Service(format!("could not build the name claim: {e}")))?;
    let upsert = mapping_upsert(table_name, request, export)?;
    let written = dynamodb
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(claim).build())
        .transact_items(TransactWriteItem::builder().update(upsert).build())
        .send()
        .await;
    let Err(err) = written else {
        return Ok(());
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        err.as_service_error()
    {
        // One reason per item, in order: the claim is the first.
        let reasons = cancelled.cancellation_reasons();
        if let Some(claim) = reasons.first()
            && claim.code() == Some("ConditionalCheckFailed")
        {
            let holder = claim
                .item()
                .and_then(|item| item.get(attr::CLAIMED_BY))
                .and_then(|v| v.as_s().ok())
                .map_or("another certificate", String::as_str);
            return Err(conflict(request, holder));
        }
        if reasons
            .iter()
            .any(|r| r.code() == Some("TransactionConflict"))
        {
            // Another write to the same items was in flight: retryable.
            return Err(CertshipError::Throttled(format!(
                "TransactWriteItems met a concurrent write to the mapping of {} on {}={}; retry",
                request.cert_name, request.target_tag_key, request.target_tag_value
            )));
        }
    }
    Err(CertshipError::from_sdk("TransactWriteItems", err))
}

/// The mapping's current facts as an Update, keeping what dispatch-install does not own
/// (`LastDeployment`, the association it records afterwards).
fn mapping_upsert(
    table_name: &str,
    request: &DeploymentRequest,
    export: &ExportResult,
) -> Result<Update, CertshipError> {
    let fields = [
        (attr::CERTIFICATE_ARN, request.certificate_arn.as_str()),
        (attr::CERT_NAME, request.cert_name.as_str()),
        (attr::TARGET_TAG_KEY, request.target_tag_key.as_str()),
        (attr::TARGET_TAG_VALUE, request.target_tag_value.as_str()),
        (attr::SECRET_ARN, export.secret_arn.as_str()),
        (attr::SERIAL, export.serial.as_str()),
        (attr::CERT_EXPIRY_DATE, export.not_after.as_str()),
        (attr::LAST_EXPORTED_DATE, export.exported_at.as_str()),
    ];
    let mut names = HashMap::from([("#rs".to_string(), attr::RELOAD_SERVICE.to_string())]);
    let mut values = HashMap::new();
    let mut sets = Vec::with_capacity(fields.len() + 1);
    for (i, (name, value)) in fields.iter().enumerate() {
        sets.push(format!("#a{i} = :v{i}"));
        names.insert(format!("#a{i}"), (*name).to_string());
        values.insert(format!(":v{i}"), AttributeValue::S((*value).to_string()));
    }
    let expression = match &request.reload_service {
        Some(unit) => {
            values.insert(":rs".to_string(), AttributeValue::S(unit.clone()));
            format!("SET {}, #rs = :rs", sets.join(", "))
        }
        None => format!("SET {} REMOVE #rs", sets.join(", ")),
    };
    Update::builder()
        .table_name(table_name)
        .set_key(Some(mapping::request_key(request)))
        .update_expression(expression)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|e| CertshipError::Service(format!("could not build the mapping update: {e}")))
}

/// Records the mapping's association and the secret version it now installs, unless the mapping
/// meanwhile records another association than `previous` (a concurrent deployment of the same
/// mapping created one too) or was deleted. `false` when it was not recorded.
pub async fn record_association(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    request: &DeploymentRequest,
    previous: Option<&str>,
    association_id: &str,
    secret_version_id: &str,
) -> Result<bool, CertshipError> {
    let mut update = dynamodb
        .update_item()
        .table_name(table_name)
        .set_key(Some(mapping::request_key(request)))
        .update_expression("SET #aid = :aid, #svid = :svid")
        .expression_attribute_names("#pk", attr::PARTITION_KEY)
        .expression_attribute_names("#aid", attr::ASSOCIATION_ID)
        .expression_attribute_names("#svid", attr::SECRET_VERSION_ID)
        .expression_attribute_values(":aid", AttributeValue::S(association_id.to_string()))
        .expression_attribute_values(":svid", AttributeValue::S(secret_version_id.to_string()));
    update = match previous {
        None => update.condition_expression(
            "attribute_exists(#pk) AND (attribute_not_exists(#aid) OR #aid = :aid)",
        ),
        Some(previous) => update
            .condition_expression("attribute_exists(#pk) AND #aid IN (:previous, :aid)")
            .expression_attribute_values(":previous", AttributeValue::S(previous.to_string())),
    };
    match update.send().await {
        Ok(_) => Ok(true),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
            _ => Err(CertshipError::from_sdk("UpdateItem", err)),
        },
    }
}
