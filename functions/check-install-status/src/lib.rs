//! check-install-status: polls one SSM command's per-host results and folds them into `$.Install`
//! (`InProgress`, `Success` or `Failed`). On every terminal outcome it first records
//! `LastDeployment` on the mapping and publishes one deployment event.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_ssm::types::{CommandInvocation, CommandInvocationStatus, CommandStatus};
use certship_shared::error::is_throttling_code;
use certship_shared::mapping::{self, LastDeployment, attr};
use certship_shared::{
    CertshipError, HostCounts, HostFailure, InstallResult, InstallStatus, Trigger, WorkflowState,
    time,
};
use serde::Serialize;
use std::time::SystemTime;

mod settings;
pub use settings::{DEFAULT_EVENT_BUS, EVENT_BUS_NAME_VAR, Settings};

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub ssm: aws_sdk_ssm::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub table_name: String,
    pub event_bus_name: String,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &SdkConfig, settings: Settings) -> Self {
        let Settings {
            table_name,
            event_bus_name,
        } = settings;
        Self {
            ssm: aws_sdk_ssm::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            table_name,
            event_bus_name,
        }
    }
}

/// `source` of every deployment event.
pub const EVENT_SOURCE: &str = "certship";
pub const DETAIL_TYPE_SUCCEEDED: &str = "Certificate Deployment Succeeded";
pub const DETAIL_TYPE_FAILED: &str = "Certificate Deployment Failed";

/// Failures kept in `$.Install` (Step Functions caps a state at 256 KiB); counts stay exact.
const MAX_FAILURES: usize = 25;
/// Per-host results in the event, which EventBridge also caps at 256 KiB.
const MAX_RESULTS: usize = 100;
/// The tail of a failed host's output that is kept: the error is at the end.
const OUTPUT_TAIL_BYTES: usize = 1000;
const TRUNCATED: &str = "...(truncated) ";
/// A host's outcome line is short; a longer one is not parsed, so the event stays bounded.
const MAX_OUTCOME_LINE_BYTES: usize = 1000;
const FIRST_WAIT_SECONDS: u32 = 2;
const MAX_WAIT_SECONDS: u32 = 30;
/// Replaces a line of host output that looks like secret material.
const REDACTED: &str = "[redacted: secret material]";
/// Lines carrying these never leave the host's output: a broken script must not leak the bundle.
const SECRET_MARKERS: [&str; 4] = [
    "PRIVATE KEY-----",
    "\"passphrase\"",
    "encrypted_private_key",
    "SecretString",
];

/// Where one host stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOutcome {
    Pending,
    Succeeded,
    Failed,
}

/// Maps an invocation's `Status` and `StatusDetails` to where the host stands. A failing
/// `StatusDetails` wins over any status; a status this code does not know yet is still pending,
/// so the deadline, not a guess, ends the wait.
pub fn classify(status: Option<&CommandInvocationStatus>, details: Option<&str>) -> HostOutcome {
    if matches!(
        details,
        Some(
            "Delivery Timed Out"
                | "Execution Timed Out"
                | "Undeliverable"
                | "Terminated"
                | "Failed"
                | "Cancelled"
                | "Access Denied"
        )
    ) {
        return HostOutcome::Failed;
    }
    match status {
        Some(CommandInvocationStatus::Success) => HostOutcome::Succeeded,
        Some(
            CommandInvocationStatus::Cancelled
            | CommandInvocationStatus::TimedOut
            | CommandInvocationStatus::Failed,
        ) => HostOutcome::Failed,
        _ => HostOutcome::Pending,
    }
}

/// Seconds to wait before poll `poll + 1`: 2, 4, 8, 16, then 30, never past the deadline and
/// never less than 1.
pub fn next_wait(poll: u32, remaining_secs: u64) -> u32 {
    let backoff = FIRST_WAIT_SECONDS
        .checked_shl(poll.saturating_sub(1))
        .filter(|w| *w <= MAX_WAIT_SECONDS)
        .unwrap_or(MAX_WAIT_SECONDS);
    let remaining = u32::try_from(remaining_secs).unwrap_or(u32::MAX);
    backoff.min(remaining).max(1)
}

/// How a deployment ended, as `LastDeployment.Status` and the event's `Outcome` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failed,
    NoTargets,
    InstallTimedOut,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::NoTargets => "NoTargets",
            Self::InstallTimedOut => "InstallTimedOut",
        }
    }
}

/// One host's invocation, its output already redacted.
struct Host {
    instance_id: String,
    status: String,
    status_details: String,
    outcome: HostOutcome,
    /// The JSON object the script prints as its last line, or `null`.
    report: serde_json::Value,
    output: String,
}

impl Host {
    fn from_invocation(invocation: &CommandInvocation) -> Self {
        let output = redact(
            &invocation
                .command_plugins()
                .iter()
                .filter_map(|p| p.output())
                .filter(|o| !o.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        Self {
            instance_id: invocation.instance_id().unwrap_or_default().to_string(),
            status: invocation
                .status()
                .map_or("Unknown", |s| s.as_str())
                .to_string(),
            status_details: invocation.status_details().unwrap_or_default().to_string(),
            outcome: classify(invocation.status(), invocation.status_details()),
            report: host_report(&output),
            output,
        }
    }
}

/// The deployment event's `detail`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeploymentEvent<'a> {
    certificate_arn: &'a str,
    cert_name: &'a str,
    target_tag_key: &'a str,
    target_tag_value: &'a str,
    trigger: Trigger,
    serial: &'a str,
    command_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_arn: Option<&'a str>,
    outcome: &'static str,
    hosts: HostCounts,
    results: Vec<HostResult<'a>>,
    failures: &'a [HostFailure],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HostResult<'a> {
    instance_id: &'a str,
    status: &'a str,
    status_details: &'a str,
    outcome: &'a serde_json::Value,
}

/// Polls the install command once; see [`InstallResult`] for what the state machine gets back.
/// `NoTargets` and `InstallTimedOut` are errors, recorded and announced like any other ending.
pub async fn handler(
    state: &AppState,
    input: WorkflowState,
) -> Result<InstallResult, CertshipError> {
    check_at(state, input, SystemTime::now()).await
}

/// [`handler`] at a given instant, so tests control the clock.
async fn check_at(
    state: &AppState,
    input: WorkflowState,
    now: SystemTime,
) -> Result<InstallResult, CertshipError> {
    let dispatch = input.dispatch.as_ref().ok_or_else(|| {
        CertshipError::InvalidRequest(
            "$.Dispatch is missing: check-install-status polls the command dispatch-install sent"
                .into(),
        )
    })?;
    let export = input.export.as_ref().ok_or_else(|| {
        CertshipError::InvalidRequest(
            "$.Export is missing: check-install-status reports the exported serial".into(),
        )
    })?;
    let deadline = time::parse_rfc3339(&dispatch.deadline_at).ok_or_else(|| {
        CertshipError::InvalidRequest(format!(
            "$.Dispatch.DeadlineAt {:?} is not an RFC 3339 timestamp",
            dispatch.deadline_at
        ))
    })?;
    let poll = input
        .install
        .as_ref()
        .map_or(0, |install| install.poll)
        .saturating_add(1);
    let command_id = dispatch.command_id.as_str();

    let hosts = list_hosts(&state.ssm, command_id).await?;
    let counts = count(&hosts);
    let outcome = if hosts.is_empty() && has_no_targets(&state.ssm, command_id).await? {
        Some(Outcome::NoTargets)
    } else if counts.total > 0 && counts.pending == 0 {
        Some(if counts.failed == 0 {
            Outcome::Success
        } else {
            Outcome::Failed
        })
    } else if now > deadline {
        Some(Outcome::InstallTimedOut)
    } else {
        None
    };
    tracing::info!(
        command_id = %command_id,
        poll,
        status = outcome.map_or("InProgress", Outcome::as_str),
        total = counts.total,
        succeeded = counts.succeeded,
        failed = counts.failed,
        pending = counts.pending,
        "polled the install command"
    );
    let failures = failures(&hosts);

    let Some(outcome) = outcome else {
        let remaining = deadline
            .duration_since(now)
            .map_or(0, |left| left.as_secs());
        return Ok(InstallResult {
            status: InstallStatus::InProgress,
            wait_seconds: next_wait(poll, remaining),
            poll,
            hosts: counts,
            failures,
        });
    };

    for host in hosts.iter().filter(|h| h.outcome == HostOutcome::Failed) {
        tracing::warn!(
            command_id = %command_id,
            instance_id = %host.instance_id,
            status = %host.status,
            status_details = %host.status_details,
            "host failed the install"
        );
    }
    record_last_deployment(state, &input, outcome, counts, now).await?;
    let event = DeploymentEvent {
        certificate_arn: &input.request.certificate_arn,
        cert_name: &input.request.cert_name,
        target_tag_key: &input.request.target_tag_key,
        target_tag_value: &input.request.target_tag_value,
        trigger: input.request.trigger,
        serial: &export.serial,
        command_id,
        execution_arn: input.execution.as_ref().map(|e| e.id.as_str()),
        outcome: outcome.as_str(),
        hosts: counts,
        results: hosts
            .iter()
            .take(MAX_RESULTS)
            .map(|h| HostResult {
                instance_id: &h.instance_id,
                status: &h.status,
                status_details: &h.status_details,
                outcome: &h.report,
            })
            .collect(),
        failures: &failures,
    };
    publish(state, &event, outcome == Outcome::Success).await?;

    let request = &input.request;
    match outcome {
        Outcome::Success | Outcome::Failed => Ok(InstallResult {
            status: if outcome == Outcome::Success {
                InstallStatus::Success
            } else {
                InstallStatus::Failed
            },
            wait_seconds: 0,
            poll,
            hosts: counts,
            failures,
        }),
        Outcome::NoTargets => Err(CertshipError::NoTargets(format!(
            "no managed node has the tag {}={} (SSM command {command_id} had no targets); tag the \
             EC2 instances or on-premises managed nodes that should receive {}",
            request.target_tag_key, request.target_tag_value, request.cert_name
        ))),
        Outcome::InstallTimedOut => Err(CertshipError::InstallTimedOut(if counts.total == 0 {
            format!(
                "no host had reported on SSM command {command_id} by the deadline {}",
                dispatch.deadline_at
            )
        } else {
            format!(
                "{} of {} hosts still pending after the deadline {} ({} succeeded, {} failed; \
                 SSM command {command_id})",
                counts.pending, counts.total, dispatch.deadline_at, counts.succeeded, counts.failed
            )
        })),
    }
}

/// Every invocation of the command, all pages.
async fn list_hosts(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
) -> Result<Vec<Host>, CertshipError> {
    let mut hosts = Vec::new();
    let mut next_token = None;
    loop {
        let page = ssm
            .list_command_invocations()
            .command_id(command_id)
            .details(true)
            .max_results(50)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("ListCommandInvocations", e))?;
        hosts.extend(page.command_invocations().iter().map(Host::from_invocation));
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => return Ok(hosts),
        }
    }
}

/// Whether SSM finished the command without finding a single target.
async fn has_no_targets(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
) -> Result<bool, CertshipError> {
    let listed = ssm
        .list_commands()
        .command_id(command_id)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("ListCommands", e))?;
    Ok(listed.commands().iter().any(|command| {
        command.target_count() == 0
            && matches!(
                command.status(),
                Some(
                    CommandStatus::Success
                        | CommandStatus::Failed
                        | CommandStatus::Cancelled
                        | CommandStatus::TimedOut
                )
            )
    }))
}

fn count(hosts: &[Host]) -> HostCounts {
    let mut counts = HostCounts::default();
    for host in hosts {
        counts.total += 1;
        match host.outcome {
            HostOutcome::Succeeded => counts.succeeded += 1,
            HostOutcome::Failed => counts.failed += 1,
            HostOutcome::Pending => counts.pending += 1,
        }
    }
    counts
}

fn failures(hosts: &[Host]) -> Vec<HostFailure> {
    hosts
        .iter()
        .filter(|h| h.outcome == HostOutcome::Failed)
        .take(MAX_FAILURES)
        .map(|h| HostFailure {
            instance_id: h.instance_id.clone(),
            status_details: h.status_details.clone(),
            output: tail(&h.output),
        })
        .collect()
}

/// The last [`OUTPUT_TAIL_BYTES`] of `output`, cut at a character boundary and marked when cut.
fn tail(output: &str) -> String {
    if output.len() <= OUTPUT_TAIL_BYTES {
        return output.to_string();
    }
    let mut start = output.len() - OUTPUT_TAIL_BYTES;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    format!("{TRUNCATED}{}", &output[start..])
}

/// Host output with every private key block, and every line that looks like the secret's JSON,
/// replaced: whatever a broken script printed, it never reaches the state, the event or a log.
fn redact(output: &str) -> String {
    let mut lines = Vec::new();
    let mut in_key = false;
    for line in output.lines() {
        let key_marker = line.contains("PRIVATE KEY-----");
        if in_key {
            in_key = !(key_marker && line.contains("-----END"));
        } else if key_marker && line.contains("-----BEGIN") && !line.contains("-----END") {
            in_key = true;
            lines.push(REDACTED);
        } else if SECRET_MARKERS.iter().any(|m| line.contains(m)) {
            lines.push(REDACTED);
        } else {
            lines.push(line);
        }
    }
    lines.join("\n")
}

/// The JSON object the host script prints as its last line, or `null`.
fn host_report(output: &str) -> serde_json::Value {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('{'))
        .filter(|line| line.len() <= MAX_OUTCOME_LINE_BYTES)
        .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or(serde_json::Value::Null)
}

/// Records how the deployment ended on its mapping. A mapping deleted meanwhile is not recreated.
async fn record_last_deployment(
    state: &AppState,
    input: &WorkflowState,
    outcome: Outcome,
    counts: HostCounts,
    now: SystemTime,
) -> Result<(), CertshipError> {
    let request = &input.request;
    let last = LastDeployment {
        execution_arn: input.execution.as_ref().map(|e| e.id.clone()),
        status: outcome.as_str().to_string(),
        succeeded: counts.succeeded,
        failed: counts.failed,
        finished_at: time::rfc3339(now),
    };
    let updated = state
        .dynamodb
        .update_item()
        .table_name(&state.table_name)
        .set_key(Some(mapping::request_key(request)))
        .update_expression("SET #ld = :ld")
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#ld", attr::LAST_DEPLOYMENT)
        .expression_attribute_names("#pk", attr::PARTITION_KEY)
        .expression_attribute_values(":ld", last.to_attribute())
        .send()
        .await;
    match updated {
        Ok(_) => Ok(()),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                tracing::warn!(
                    certificate_arn = %request.certificate_arn,
                    cert_name = %request.cert_name,
                    target = %format!("{}={}", request.target_tag_key, request.target_tag_value),
                    status = outcome.as_str(),
                    "the mapping was deleted during the deployment; LastDeployment not recorded"
                );
                Ok(())
            }
            _ => Err(CertshipError::from_sdk("UpdateItem", err)),
        },
    }
}

/// Publishes the deployment event; an entry EventBridge refuses is an error naming its code.
async fn publish(
    state: &AppState,
    event: &DeploymentEvent<'_>,
    succeeded: bool,
) -> Result<(), CertshipError> {
    let detail = serde_json::to_string(event).map_err(|e| {
        CertshipError::Service(format!("could not encode the deployment event: {e}"))
    })?;
    let entry = PutEventsRequestEntry::builder()
        .source(EVENT_SOURCE)
        .detail_type(if succeeded {
            DETAIL_TYPE_SUCCEEDED
        } else {
            DETAIL_TYPE_FAILED
        })
        .event_bus_name(&state.event_bus_name)
        .resources(event.certificate_arn)
        .detail(detail)
        .build();
    let put = state
        .events
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("PutEvents", e))?;
    if put.failed_entry_count() > 0 {
        let failed = put.entries().iter().find(|e| e.error_code().is_some());
        let code = failed.and_then(|e| e.error_code()).unwrap_or("Unknown");
        let message = failed
            .and_then(|e| e.error_message())
            .unwrap_or("no message");
        let text = format!("PutEvents refused the deployment event ({code}): {message}");
        return Err(if is_throttling_code(code) {
            CertshipError::Throttled(text)
        } else {
            CertshipError::Service(text)
        });
    }
    tracing::info!(
        command_id = %event.command_id,
        outcome = event.outcome,
        event_bus = %state.event_bus_name,
        "published the deployment event"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
