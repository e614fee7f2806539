//! check-install-status: polls one SSM command's per-host results and folds them into `$.Install`
//! (`InProgress`, `Success` or `Failed`). On every terminal outcome it first records
//! `LastDeployment` on the mapping and publishes one deployment event.
//!
//! `hosts` lists and classifies the invocations (redacting their output), `outcome` counts and
//! decides, `record` writes `LastDeployment`, `event` publishes; [`handler`] composes them.

use aws_config::SdkConfig;
use certship_shared::mapping::LastDeployment;
use certship_shared::{
    CertshipError, DispatchResult, ExportResult, InstallResult, InstallStatus, WorkflowState, time,
};
use std::time::SystemTime;

mod event;
mod hosts;
mod outcome;
mod record;
mod settings;

pub use certship_shared::event::{DETAIL_TYPE_FAILED, DETAIL_TYPE_SUCCEEDED, EVENT_SOURCE};
pub use hosts::{InvocationClass, classify};
pub use outcome::next_wait;
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
    let (dispatch, export, deadline) = polled_command(&input)?;
    let poll = input
        .install
        .as_ref()
        .map_or(0, |install| install.poll)
        .saturating_add(1);
    let command_id = dispatch.command_id.as_str();

    let hosts = hosts::list_hosts(&state.ssm, command_id).await?;
    let counts = outcome::count(&hosts);
    let no_targets = hosts.is_empty() && hosts::has_no_targets(&state.ssm, command_id).await?;
    let ending = outcome::decide(counts, no_targets, now > deadline);
    tracing::info!(
        command_id = %command_id,
        poll,
        status = ending.map_or("InProgress", outcome::Outcome::as_str),
        total = counts.total,
        succeeded = counts.succeeded,
        failed = counts.failed,
        pending = counts.pending,
        "polled the install command"
    );
    let failures = outcome::failures(&hosts);

    let Some(ending) = ending else {
        let remaining = deadline
            .duration_since(now)
            .map_or(0, |left| left.as_secs());
        return Ok(InstallResult {
            status: InstallStatus::InProgress,
            wait_seconds: outcome::next_wait(poll, remaining),
            poll,
            hosts: counts,
            failures,
        });
    };

    for host in hosts.iter().filter(|h| h.class == InvocationClass::Failed) {
        tracing::warn!(
            command_id = %command_id,
            instance_id = %host.instance_id,
            status = %host.status,
            status_details = %host.status_details,
            "host failed the install"
        );
    }
    let last = LastDeployment {
        execution_arn: input.execution.as_ref().map(|e| e.id.clone()),
        status: ending.status(),
        succeeded: counts.succeeded,
        failed: counts.failed,
        finished_at: time::rfc3339(now),
    };
    record::record_last_deployment(&state.dynamodb, &state.table_name, &input, last).await?;
    let event = event::deployment_event(
        &input,
        export,
        command_id,
        ending.status(),
        counts,
        &hosts,
        &failures,
    );
    event::publish(&state.events, &state.event_bus_name, &event).await?;

    outcome::ended(
        ending,
        poll,
        counts,
        failures,
        &input.request,
        command_id,
        &dispatch.deadline_at,
    )
}

/// The command dispatch-install sent, the export whose serial the hosts verify, and the deadline.
fn polled_command(
    input: &WorkflowState,
) -> Result<(&DispatchResult, &ExportResult, SystemTime), CertshipError> {
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
    Ok((dispatch, export, deadline))
}

#[cfg(test)]
mod tests;
