//! The renewal sweep: EventBridge Scheduler invokes the function with `{"Sweep": {"ScheduledTime":
//! ...}}` (daily by default); every registered ACME certificate due for renewal, or marked with
//! `Force`, gets an issuance of the same request. The issuance ends with "ACME Certificate
//! Issued", which redeploys the certificate's mappings ([`crate::on_acme_issued`]).
//!
//! - Executions are named after the certificate and the sweep's scheduled time, so a sweep
//!   delivered twice (Scheduler's or Lambda's retries) starts each renewal once.
//! - Decisions are taken at the scheduled time, not at the invocation's, so a retry an hour later
//!   decides the same.
//! - A sweep starts at most [`MAX_RENEWALS_PER_SWEEP`], forced ones first, then those with the
//!   fewest days left; the rest wait for the next sweep. Let's Encrypt allows 300 new orders per
//!   account every 3 hours ("Rate Limits", <https://letsencrypt.org/docs/rate-limits/>): a fleet
//!   of certificates renewed 30 days ahead spreads over the days instead of tripping the limit.
//! - A certificate that failed recently waits out its backoff
//!   ([`certship_shared::acme_registry::backoff`]).

use crate::{AppState, Started, start_once};
use aws_sdk_dynamodb::types::AttributeValue;
use certship_shared::CertshipError;
use certship_shared::acme_registry::{Registration, Renewal, renewal_execution_name};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most renewals one sweep starts.
pub const MAX_RENEWALS_PER_SWEEP: usize = 100;

/// The schedule's input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SweepRequest {
    /// When the schedule fired, RFC 3339 (Scheduler's `<aws.scheduler.scheduled-time>`).
    pub scheduled_time: String,
}

/// What one sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SweepResult {
    pub scheduled_time: String,
    /// Registered certificates read.
    pub certificates: u32,
    /// Renewals started by this invocation, as execution ARNs.
    pub started: Vec<String>,
    /// Renewals an earlier delivery of this sweep had started.
    pub already_started: u32,
    pub not_due: u32,
    /// Due, but waiting out the backoff of recent failures.
    pub backing_off: u32,
    /// Due, but beyond [`MAX_RENEWALS_PER_SWEEP`]: the next sweep takes them.
    pub deferred: u32,
    /// Malformed registry items, left alone.
    pub skipped: u32,
}

/// Reads the registry and starts the renewals due at the scheduled time.
pub async fn sweep(state: &AppState, request: &SweepRequest) -> Result<SweepResult, CertshipError> {
    let at = certship_shared::time::parse_rfc3339(&request.scheduled_time).ok_or_else(|| {
        CertshipError::InvalidRequest(format!(
            "ScheduledTime {:?} is not an RFC 3339 time (EventBridge Scheduler fills it in from \
             <aws.scheduler.scheduled-time>)",
            request.scheduled_time
        ))
    })?;
    let mut result = SweepResult {
        scheduled_time: request.scheduled_time.clone(),
        ..SweepResult::default()
    };
    let (registrations, skipped) = registrations(state).await?;
    result.skipped = skipped;
    result.certificates = u32::try_from(registrations.len()).unwrap_or(u32::MAX);

    let mut due = Vec::new();
    for registration in registrations {
        let renewal = registration.renewal(at);
        match renewal {
            Renewal::NotDue { .. } => result.not_due += 1,
            Renewal::BackingOff { retry_in, .. } => {
                result.backing_off += 1;
                tracing::info!(
                    certificate = %registration.certificate_id,
                    failed_attempts = registration.failed_attempts,
                    retry_in,
                    "due, but held back: failures in a row, or the CA's Retry-After"
                );
            }
            Renewal::Due { .. } | Renewal::Forced { .. } => due.push((renewal, registration)),
        }
    }
    // Forced first, then the fewest days left (an unreadable expiry counts as none left).
    due.sort_by_key(|(renewal, _)| match *renewal {
        Renewal::Forced { .. } => (0, i64::MIN),
        Renewal::Due { days_left } => (1, days_left.unwrap_or(i64::MIN)),
        _ => (2, 0),
    });
    if due.len() > MAX_RENEWALS_PER_SWEEP {
        result.deferred = u32::try_from(due.len() - MAX_RENEWALS_PER_SWEEP).unwrap_or(u32::MAX);
        due.truncate(MAX_RENEWALS_PER_SWEEP);
    }

    let mut first_error = None;
    for (renewal, registration) in due {
        let name = renewal_execution_name(&registration.certificate_id, &request.scheduled_time);
        match start(state, &registration, &name).await {
            Ok(Started::Now(execution_arn)) => {
                tracing::info!(
                    certificate = %registration.certificate_id,
                    renewal = ?renewal,
                    execution_arn = %execution_arn,
                    "started the renewal"
                );
                result.started.push(execution_arn);
            }
            Ok(Started::Earlier) => result.already_started += 1,
            Err(err) => {
                tracing::warn!(
                    certificate = %registration.certificate_id,
                    error = %err,
                    "could not start the renewal"
                );
                first_error.get_or_insert(err);
            }
        }
    }
    // Every due certificate got its chance; a failure makes the invocation fail, so Scheduler
    // (or Lambda) delivers the sweep again and the names start only what is missing.
    match first_error {
        Some(err) => Err(err),
        None => Ok(result),
    }
}

/// Every registration, all pages; malformed items are logged and counted.
async fn registrations(state: &AppState) -> Result<(Vec<Registration>, u32), CertshipError> {
    let mut found = Vec::new();
    let mut skipped = 0;
    let mut start_key: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = state
            .dynamodb
            .scan()
            .table_name(&state.acme_table_name)
            .set_exclusive_start_key(start_key.take())
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("Scan", e))?;
        for item in page.items() {
            match Registration::from_item(item) {
                Ok(registration) => found.push(registration),
                Err(err) => {
                    skipped += 1;
                    tracing::warn!(error = %err, "skipping a malformed registry item");
                }
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => return Ok((found, skipped)),
        }
    }
}

/// Starts the issuance of the registration's request under `name`.
async fn start(
    state: &AppState,
    registration: &Registration,
    name: &str,
) -> Result<Started, CertshipError> {
    let input = serde_json::to_string(&registration.request)
        .map_err(|e| CertshipError::Service(format!("could not encode the request: {e}")))?;
    start_once(&state.sfn, &state.acme_state_machine_arn, name, input).await
}
