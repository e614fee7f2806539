//! The end of an issuance: the registry item the renewal schedule sweeps, and the event that
//! redeploys the certificate (or says its renewal failed).

use crate::AppState;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use certship_shared::acme::{ImportResult, IssueRequest, KeyType, SOURCE_PREFIX, StepError};
use certship_shared::acme_registry::{Registration, attr};
use certship_shared::event::{
    AcmeIssuedEvent, DETAIL_TYPE_ACME_ISSUED, DETAIL_TYPE_RENEWAL_FAILED, EVENT_SOURCE,
    RenewalFailedEvent,
};
use certship_shared::{CertshipError, ExportResult};
use serde::Serialize;
use std::time::SystemTime;

/// How a failed issuance was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureRecord {
    /// A registered certificate's renewal: counted, and `Certificate Renewal Failed` published.
    RenewalFailed,
    /// A certificate never issued: nothing to renew, nothing recorded.
    NotRegistered,
    /// A request refused before anything was asked of the CA (`InvalidRequest`): not an attempt
    /// at the registered certificate's renewal, so nothing is counted or told.
    Refused,
}

/// What an earlier issuance of the certificate left that this one must respect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// The ACM certificate it was imported as: this issuance re-imports over it.
    pub acm_certificate_arn: Option<String>,
}

/// The registry's word on `request`'s certificate, read before any order. A certificate in ACM
/// keeps its key type: ACM re-imports only the same key type and size ("Reimport a
/// certificate", ACM User Guide), so a request that changes it is refused here, before it costs
/// an order, rather than after issuing a certificate ACM would not take.
pub async fn previous(state: &AppState, request: &IssueRequest) -> Result<Previous, CertshipError> {
    let certificate_id = request.certificate_id();
    let item = state
        .dynamodb
        .get_item()
        .table_name(&state.settings.table_name)
        .key(
            attr::CERTIFICATE_ID,
            AttributeValue::S(certificate_id.clone()),
        )
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("GetItem", e))?
        .item;
    let Some(item) = item else {
        return Ok(Previous::default());
    };
    let registration = Registration::from_item(&item)?;
    if let Some(arn) = &registration.acm_certificate_arn {
        check_key_type(arn, registration.request.key_type, request.key_type)?;
    }
    Ok(Previous {
        acm_certificate_arn: registration.acm_certificate_arn,
    })
}

fn check_key_type(arn: &str, imported: KeyType, asked: KeyType) -> Result<(), CertshipError> {
    if imported == asked {
        return Ok(());
    }
    Err(CertshipError::InvalidRequest(format!(
        "KeyType {}: the certificate is imported into ACM as {arn} with an {} key, and ACM cannot \
         re-import a different key type; issue with KeyType {} (--key-type {})",
        asked.as_str(),
        imported.as_str(),
        imported.as_str(),
        imported.as_str()
    )))
}

/// Records the new certificate (clearing `Force` and the failure count) and publishes
/// `ACME Certificate Issued`.
pub async fn record(
    state: &AppState,
    request: &IssueRequest,
    issued: &ExportResult,
    imported: &ImportResult,
    execution: &str,
) -> Result<(), CertshipError> {
    let certificate_id = request.certificate_id();
    let request_json = serde_json::to_string(request)
        .map_err(|e| CertshipError::Service(format!("could not encode the request: {e}")))?;
    let s = |v: &str| AttributeValue::S(v.to_string());
    let mut update = state
        .dynamodb
        .update_item()
        .table_name(&state.settings.table_name)
        .key(attr::CERTIFICATE_ID, s(&certificate_id));
    let mut set = "SET #request = :request, #domains = :domains, #not_after = :not_after, \
                   #serial = :serial, #version = :version, #issued_at = :issued_at, \
                   #execution = :execution"
        .to_string();
    if let Some(arn) = &imported.acm_certificate_arn {
        set.push_str(", #acm = :acm");
        update = update
            .expression_attribute_names("#acm", attr::ACM_CERTIFICATE_ARN)
            .expression_attribute_values(":acm", s(arn));
    }
    update
        .update_expression(format!(
            "{set} REMOVE #force, #failed_attempts, #last_failed_at, #last_error, #retry_after"
        ))
        .expression_attribute_names("#request", attr::REQUEST)
        .expression_attribute_names("#domains", attr::DOMAINS)
        .expression_attribute_names("#not_after", attr::NOT_AFTER)
        .expression_attribute_names("#serial", attr::SERIAL)
        .expression_attribute_names("#version", attr::SECRET_VERSION_ID)
        .expression_attribute_names("#issued_at", attr::ISSUED_AT)
        .expression_attribute_names("#execution", attr::LAST_EXECUTION_ARN)
        .expression_attribute_names("#force", attr::FORCE)
        .expression_attribute_names("#failed_attempts", attr::FAILED_ATTEMPTS)
        .expression_attribute_names("#last_failed_at", attr::LAST_FAILED_AT)
        .expression_attribute_names("#last_error", attr::LAST_ERROR)
        .expression_attribute_names("#retry_after", attr::RETRY_AFTER)
        .expression_attribute_values(":request", s(&request_json))
        .expression_attribute_values(
            ":domains",
            AttributeValue::L(issued.domains.iter().map(|d| s(d)).collect()),
        )
        .expression_attribute_values(":not_after", s(&issued.not_after))
        .expression_attribute_values(":serial", s(&issued.serial))
        .expression_attribute_values(":version", s(&issued.secret_version_id))
        .expression_attribute_values(":issued_at", s(&issued.exported_at))
        .expression_attribute_values(":execution", s(execution))
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("UpdateItem", e))?;
    let event = AcmeIssuedEvent {
        certificate_id: certificate_id.clone(),
        domains: issued.domains.clone(),
        serial: issued.serial.clone(),
        not_after: issued.not_after.clone(),
        secret_version_id: issued.secret_version_id.clone(),
        execution_arn: Some(execution.to_string()).filter(|e| !e.is_empty()),
        acm_certificate_arn: imported.acm_certificate_arn.clone(),
    };
    publish(state, DETAIL_TYPE_ACME_ISSUED, &certificate_id, &event).await?;
    tracing::info!(
        certificate = %certificate_id,
        serial = %issued.serial,
        not_after = %issued.not_after,
        "recorded the certificate and announced it"
    );
    Ok(())
}

/// Records a failed issuance of `request`'s certificate. Only a registered certificate (one
/// issued before) has a renewal to fail: its count goes up and `Certificate Renewal Failed` is
/// published with the days its current certificate has left.
pub async fn failed(
    state: &AppState,
    request: &IssueRequest,
    error: &StepError,
    execution: &str,
) -> Result<FailureRecord, CertshipError> {
    let certificate_id = request.certificate_id();
    if error.error == "InvalidRequest" {
        tracing::info!(certificate = %certificate_id, "a request was refused; no renewal was attempted");
        return Ok(FailureRecord::Refused);
    }
    let cause = error_message(&error.cause);
    let s = |v: &str| AttributeValue::S(v.to_string());
    let now = SystemTime::now();
    // A rate limit's message names the CA's time to retry: the sweep waits for it. Other
    // failures leave a time already kept alone (a time past counts for nothing).
    let retry_after = (error.error == "RateLimited")
        .then(|| crate::rate_limit::hold_until(&cause, now))
        .flatten();
    let mut update = state
        .dynamodb
        .update_item()
        .table_name(&state.settings.table_name)
        .key(attr::CERTIFICATE_ID, s(&certificate_id))
        .condition_expression("attribute_exists(#id)")
        .update_expression(format!(
            "SET {}#last_error = :error, #last_failed_at = :now, #execution = :execution \
             ADD #failed_attempts :one",
            if retry_after.is_some() {
                "#retry_after = :retry_after, "
            } else {
                ""
            }
        ))
        .expression_attribute_names("#id", attr::CERTIFICATE_ID)
        .expression_attribute_names("#last_error", attr::LAST_ERROR)
        .expression_attribute_names("#last_failed_at", attr::LAST_FAILED_AT)
        .expression_attribute_names("#execution", attr::LAST_EXECUTION_ARN)
        .expression_attribute_names("#failed_attempts", attr::FAILED_ATTEMPTS)
        .expression_attribute_values(":error", s(&format!("{}: {cause}", error.error)))
        .expression_attribute_values(":now", s(&certship_shared::time::rfc3339(now)))
        .expression_attribute_values(":execution", s(execution))
        .expression_attribute_values(":one", AttributeValue::N("1".into()));
    if let Some(at) = retry_after {
        // Names and values only where the expression uses them: DynamoDB refuses unused ones.
        update = update
            .expression_attribute_names("#retry_after", attr::RETRY_AFTER)
            .expression_attribute_values(":retry_after", s(&certship_shared::time::rfc3339(at)));
    }
    let updated = update.return_values(ReturnValue::AllNew).send().await;
    let attributes = match updated {
        Ok(out) => out.attributes.unwrap_or_default(),
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            tracing::info!(certificate = %certificate_id, error = %error.error, "a first issuance failed; nothing to renew");
            return Ok(FailureRecord::NotRegistered);
        }
        Err(err) => return Err(CertshipError::from_sdk("UpdateItem", err)),
    };
    let registration = Registration::from_item(&attributes)?;
    let event = RenewalFailedEvent {
        certificate_id: certificate_id.clone(),
        domains: request.domains.clone(),
        error: error.error.clone(),
        cause,
        execution_arn: Some(execution.to_string()).filter(|e| !e.is_empty()),
        days_left: registration.days_left(now),
        not_after: registration.not_after,
        failed_attempts: registration.failed_attempts,
    };
    publish(state, DETAIL_TYPE_RENEWAL_FAILED, &certificate_id, &event).await?;
    tracing::warn!(
        certificate = %certificate_id,
        error = %event.error,
        failed_attempts = event.failed_attempts,
        days_left = event.days_left.unwrap_or_default(),
        "the renewal failed"
    );
    Ok(FailureRecord::RenewalFailed)
}

/// The message of a `Catch`'s cause: a Lambda error's cause is the JSON of its `errorType` and
/// `errorMessage`; anything else (a state's timeout) is kept as it is.
pub fn error_message(cause: &str) -> String {
    #[derive(serde::Deserialize)]
    struct LambdaError {
        #[serde(rename = "errorMessage")]
        error_message: String,
    }
    serde_json::from_str::<LambdaError>(cause)
        .map(|e| e.error_message)
        .unwrap_or_else(|_| cause.to_string())
}

/// Publishes one certship event about `acme:<certificate_id>` on the default bus; an entry
/// EventBridge refuses is an error naming its code.
async fn publish(
    state: &AppState,
    detail_type: &str,
    certificate_id: &str,
    detail: &impl Serialize,
) -> Result<(), CertshipError> {
    let detail = serde_json::to_string(detail)
        .map_err(|e| CertshipError::Service(format!("could not encode the event: {e}")))?;
    let put = state
        .events
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .source(EVENT_SOURCE)
                .detail_type(detail_type)
                .resources(format!("{SOURCE_PREFIX}{certificate_id}"))
                .detail(detail)
                .build(),
        )
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("PutEvents", e))?;
    if put.failed_entry_count() > 0 {
        let failed = put.entries().iter().find(|e| e.error_code().is_some());
        return Err(CertshipError::event_refused(
            &format!("the {detail_type:?} event"),
            failed.and_then(|e| e.error_code()),
            failed.and_then(|e| e.error_message()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn a_certificate_in_acm_keeps_its_key_type() {
        use super::{KeyType, check_key_type};
        let arn = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
        assert!(check_key_type(arn, KeyType::EcP256, KeyType::EcP256).is_ok());
        let err = check_key_type(arn, KeyType::EcP256, KeyType::Rsa2048)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(arn) && err.contains("--key-type ec-p256") && err.contains("rsa-2048"),
            "{err}"
        );
    }

    #[test]
    fn a_lambda_cause_gives_its_message_and_anything_else_stays() {
        assert_eq!(
            error_message(
                r#"{"errorType":"ChallengeFailed","errorMessage":"the CA could not validate x"}"#
            ),
            "the CA could not validate x"
        );
        assert_eq!(
            error_message("States.Timeout after 60 s"),
            "States.Timeout after 60 s"
        );
    }
}
