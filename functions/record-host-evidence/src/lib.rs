//! record-host-evidence: reads each association run's output that the SSM Agent writes to S3 and
//! records the host's report as its evidence, one item per (mapping, instance), so that
//! check-install-status and `certship hosts` can tell which hosts hold which version without
//! asking SSM (whose status APIs never return a run's stdout).
//!
//! A report that was the last one a waiting deployment needed completes its check's Task token
//! (`certship_shared::waiting`), so the deployment ends the moment its last host is recorded.
//!
//! Invoked by the output bucket's `ObjectCreated` notifications (asynchronously: an error makes
//! Lambda retry the whole event, which is safe because every write is conditional on its run
//! being newer than what is recorded).

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectError;
use certship_shared::evidence::{HostEvidence, OutputKey, attr};
use certship_shared::host_report::{HostReport, Outcome};
use certship_shared::{CertshipError, InstallResult};
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};

mod settings;
mod wake;
pub use settings::Settings;

/// How much of a run's stdout is read: its end, where the document prints its report. A report
/// line is at most [`HostReport::MAX_LINE_BYTES`]; the rest is the script's progress lines.
pub const TAIL_BYTES: u64 = 64 * 1024;
/// The error recorded for a run whose stdout holds no report line.
pub const NO_REPORT: &str = "the run printed no report line";
/// How far a run's start (its id, the host's clock) may lie after its output's upload (the
/// event's time, S3's clock). A run cannot start after its output is written; a key that says so
/// (a host clock far ahead, or a key not written by the agent) would hold the host's evidence
/// against every real run until then, since writes are conditional on being newer.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    /// The evidence table (`EVIDENCE_TABLE_NAME`).
    pub evidence_table_name: String,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        let Settings {
            evidence_table_name,
        } = settings;
        Self {
            s3: aws_sdk_s3::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            evidence_table_name,
        }
    }
}

/// What one S3 event led to (the invocation's result, for the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// Evidence items written.
    pub recorded: u32,
    /// Objects that are not a run's stdout in the agent's layout (stderr, other keys, other
    /// events), and objects gone before they could be read.
    pub skipped: u32,
    /// Runs not newer than the host's recorded evidence (a late or repeated delivery), left alone.
    pub stale: u32,
    /// Waiting deployments this event's reports completed (their last pending host).
    pub woke: u32,
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Written { woke: bool },
    Skipped,
    Stale,
}

/// Records the evidence of every run output in `event`. An S3 or DynamoDB failure is an error,
/// so that Lambda's asynchronous retries deliver the event again.
pub async fn handler(state: &AppState, event: S3Event) -> Result<Summary, CertshipError> {
    let mut summary = Summary::default();
    for record in &event.records {
        match record_one(state, record).await? {
            Recorded::Written { woke } => {
                summary.recorded += 1;
                summary.woke += u32::from(woke);
            }
            Recorded::Skipped => summary.skipped += 1,
            Recorded::Stale => summary.stale += 1,
        }
    }
    tracing::info!(
        recorded = summary.recorded,
        skipped = summary.skipped,
        stale = summary.stale,
        woke = summary.woke,
        "recorded host evidence"
    );
    Ok(summary)
}

async fn record_one(state: &AppState, record: &S3EventRecord) -> Result<Recorded, CertshipError> {
    let event_name = record.event_name.as_deref().unwrap_or_default();
    if !event_name.starts_with("ObjectCreated:") {
        tracing::info!(event_name, "not an object creation; skipped");
        return Ok(Recorded::Skipped);
    }
    let (Some(bucket), Some(raw_key)) = (
        record.s3.bucket.name.as_deref(),
        record.s3.object.key.as_deref(),
    ) else {
        tracing::warn!("an S3 record without a bucket or key; skipped");
        return Ok(Recorded::Skipped);
    };
    let Some(key) = decode_key(raw_key) else {
        tracing::info!(key = %raw_key, "a key that is not URL-encoded UTF-8; skipped");
        return Ok(Recorded::Skipped);
    };
    let Some(output) = OutputKey::parse(&key) else {
        tracing::info!(key = %key, "not an association run's output; skipped");
        return Ok(Recorded::Skipped);
    };
    if output.stream != "stdout" {
        // The report is on stdout; stderr carries diagnostics only.
        tracing::info!(key = %key, "a run's stderr; skipped");
        return Ok(Recorded::Skipped);
    }
    if let Some(ahead) = started_after_upload(&output, record) {
        tracing::warn!(
            key = %key,
            ahead_seconds = ahead.as_secs(),
            "the run id is later than the object's upload (a host clock ahead, or a key the \
             agent did not write); skipped"
        );
        return Ok(Recorded::Skipped);
    }

    let Some(stdout) = read_tail(state, bucket, &key).await? else {
        tracing::warn!(bucket, key = %key, "the output object is gone; skipped");
        return Ok(Recorded::Skipped);
    };
    let report = HostReport::from_output(&stdout).unwrap_or_else(|| {
        // The script always prints its report last, even when it fails; no line means the run
        // died before (killed, timed out, an older document). Recording a failure keeps the host
        // visible as not converged, and without a secret version it never counts as having
        // failed (or held) a particular version, so a deployment waits for its deadline on it.
        HostReport {
            status: Some(Outcome::Failed.as_str().to_string()),
            error: Some(NO_REPORT.to_string()),
            ..HostReport::default()
        }
    });
    let evidence = HostEvidence::from_report(&output, &report);
    let written = put_if_newer(state, &evidence).await?;
    tracing::info!(
        mapping_id = %evidence.mapping_id,
        instance_id = %evidence.instance_id,
        association_id = %output.association_id,
        run_id = %output.run_id,
        outcome = %evidence.outcome,
        reason = evidence.reason.as_deref().unwrap_or(""),
        serial = evidence.serial.as_deref().unwrap_or(""),
        secret_version_id = evidence.secret_version_id.as_deref().unwrap_or(""),
        recorded = written,
        "{}",
        if written {
            "recorded a run's evidence"
        } else {
            "a newer run is already recorded; this one is left alone"
        }
    );
    if !written {
        return Ok(Recorded::Stale);
    }
    let woke = wake_if_last(state, &evidence).await?;
    Ok(Recorded::Written { woke })
}

/// When the deployment of the evidence's version waits for this host and it was the last one
/// pending, completes the waiting check, so the deployment ends now rather than at its next look
/// ([`certship_shared::waiting`]). `true` when it woke one.
async fn wake_if_last(state: &AppState, evidence: &HostEvidence) -> Result<bool, CertshipError> {
    let Some(version) = evidence.secret_version_id.as_deref() else {
        return Ok(false);
    };
    if !(evidence.holds(version) || evidence.failed(version)) {
        // Not a decision about the version (a run that printed no report, a paused one): the
        // deployment still waits for this host.
        return Ok(false);
    }
    let Some(token) = wake::reported(
        &state.dynamodb,
        &state.evidence_table_name,
        &evidence.mapping_id,
        &evidence.instance_id,
        version,
    )
    .await?
    else {
        return Ok(false);
    };
    let output = serde_json::to_string(&InstallResult::woken_by(&evidence.instance_id))
        .map_err(|e| CertshipError::Service(format!("could not encode the wake: {e}")))?;
    let woke = wake::complete(&state.sfn, &token, &output).await?;
    tracing::info!(
        mapping_id = %evidence.mapping_id,
        instance_id = %evidence.instance_id,
        woke,
        "{}",
        if woke {
            "the last pending host reported: woke the waiting deployment"
        } else {
            "the last pending host reported, but the deployment no longer waits for this token"
        }
    );
    Ok(woke)
}

/// How far the run's start lies after its output's upload, beyond [`CLOCK_SKEW`]; `None` when it
/// does not (or either time is unreadable, which the conditional write then orders).
fn started_after_upload(output: &OutputKey, record: &S3EventRecord) -> Option<Duration> {
    let started = certship_shared::time::parse_rfc3339(&output.observed_at())?;
    let uploaded = UNIX_EPOCH
        + Duration::from_millis(u64::try_from(record.event_time.timestamp_millis()).ok()?);
    started.duration_since(uploaded + CLOCK_SKEW).ok()
}

/// An S3 event's object key as stored: the event URL-encodes it as a form value (`+` for a
/// space, `%XX` for the rest, `%2B` for a literal `+`). `None` when it is not UTF-8.
pub fn decode_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|key| key.into_owned())
}

/// The last [`TAIL_BYTES`] of the object (all of a shorter one), as text; `None` when the object
/// no longer exists. A cut through a character is replaced, never an error: only the last lines
/// matter.
async fn read_tail(
    state: &AppState,
    bucket: &str,
    key: &str,
) -> Result<Option<String>, CertshipError> {
    let got = state
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes=-{TAIL_BYTES}"))
        .send()
        .await;
    let object = match got {
        Ok(object) => object,
        Err(err) => {
            return match err.as_service_error() {
                Some(GetObjectError::NoSuchKey(_)) => Ok(None),
                // A suffix range of an empty object is unsatisfiable: the run printed nothing.
                Some(e) if e.code() == Some("InvalidRange") => Ok(Some(String::new())),
                _ => Err(CertshipError::from_sdk("GetObject", err)),
            };
        }
    };
    let bytes = object.body.collect().await.map_err(|e| {
        CertshipError::Service(format!(
            "GetObject: reading s3://{bucket}/{key} failed: {e}"
        ))
    })?;
    Ok(Some(
        String::from_utf8_lossy(&bytes.into_bytes()).into_owned(),
    ))
}

/// Writes `evidence` unless the host's recorded evidence comes from a run that started at the
/// same time or later (a repeated or late delivery). `false` when it was left alone.
async fn put_if_newer(state: &AppState, evidence: &HostEvidence) -> Result<bool, CertshipError> {
    let put = state
        .dynamodb
        .put_item()
        .table_name(&state.evidence_table_name)
        .set_item(Some(evidence.to_item()))
        // Run ids are fixed-width UTC timestamps, so they order as strings.
        .condition_expression("attribute_not_exists(#at) OR #at < :observed")
        .expression_attribute_names("#at", attr::OBSERVED_AT)
        .expression_attribute_values(":observed", AttributeValue::S(evidence.observed_at.clone()))
        .send()
        .await;
    match put {
        Ok(_) => Ok(true),
        Err(err) => match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
            _ => Err(CertshipError::from_sdk("PutItem", err)),
        },
    }
}

#[cfg(test)]
mod tests;
