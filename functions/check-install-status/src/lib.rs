//! check-install-status: reads where every target of the deployment stands, from the mapping's
//! per-host evidence (what each host's last association run reported), and folds it into
//! `$.Install` (`InProgress`, `Success` or `Failed`). On every terminal outcome it first records
//! `LastDeployment` on the mapping and publishes one deployment event.
//!
//! `hosts` lists the tagged nodes and the evidence and judges each node, `outcome` counts and
//! decides, `record` writes `LastDeployment`, `event` publishes; [`handler`] composes them.

use aws_config::SdkConfig;
use certship_shared::mapping::LastDeployment;
use certship_shared::{
    CertshipError, DispatchResult, ExportResult, InstallResult, InstallStatus, WorkflowState,
    naming, time, waiting,
};
use serde::Deserialize;
use std::time::SystemTime;

mod event;
mod hosts;
mod outcome;
mod record;
mod settings;
mod wait;

pub use certship_shared::event::{DETAIL_TYPE_FAILED, DETAIL_TYPE_SUCCEEDED, EVENT_SOURCE};
pub use hosts::{HostState, classify};
pub use outcome::next_wait;
pub use settings::{DEFAULT_EVENT_BUS, EVENT_BUS_NAME_VAR, Settings};

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub ssm: aws_sdk_ssm::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub table_name: String,
    pub evidence_table_name: String,
    pub event_bus_name: String,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &SdkConfig, settings: Settings) -> Self {
        let Settings {
            table_name,
            evidence_table_name,
            event_bus_name,
        } = settings;
        Self {
            ssm: aws_sdk_ssm::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            table_name,
            evidence_table_name,
            event_bus_name,
        }
    }
}

/// What the state machine sends. As a `waitForTaskToken` Task it sends the Task's token with the
/// state (`{"TaskToken": …, "State": …}`): the check then completes the Task itself when the
/// deployment has ended, and otherwise arms the wait ([`certship_shared::waiting`]) that the last
/// host's report completes. A bare state is a poll, answered by the return value: an execution
/// started before the wake existed, or the seed's fixed-interval loop that `make bench` runs
/// beside.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CheckRequest {
    Waiting {
        #[serde(rename = "TaskToken")]
        task_token: String,
        #[serde(rename = "State")]
        state: Box<WorkflowState>,
    },
    Polled(Box<WorkflowState>),
}

/// Checks the deployment's hosts once; see [`InstallResult`] for what the state machine gets
/// back. `NoTargets` and `InstallTimedOut` are errors, recorded and announced like any other
/// ending.
pub async fn handler(
    state: &AppState,
    request: CheckRequest,
) -> Result<InstallResult, CertshipError> {
    match request {
        CheckRequest::Waiting {
            task_token,
            state: input,
        } => check_at(state, &input, SystemTime::now(), Some(&task_token)).await,
        CheckRequest::Polled(input) => check_at(state, &input, SystemTime::now(), None).await,
    }
}

/// [`handler`] at a given instant, so tests control the clock.
async fn check_at(
    state: &AppState,
    input: &WorkflowState,
    now: SystemTime,
    task_token: Option<&str>,
) -> Result<InstallResult, CertshipError> {
    let (dispatch, association_id, export, deadline) = dispatched(input)?;
    let poll = input
        .install
        .as_ref()
        .map_or(0, |install| install.poll)
        .saturating_add(1);
    let request = &input.request;
    let mapping_id = naming::mapping_id(
        &request.cert_name,
        &request.certificate_arn,
        &request.target_tag_key,
        &request.target_tag_value,
    );
    let version = &export.secret_version_id;

    let targets = hosts::list_targets(
        &state.ssm,
        &request.target_tag_key,
        &request.target_tag_value,
    )
    .await?;
    let read = || {
        hosts::list_evidence(
            &state.dynamodb,
            &state.evidence_table_name,
            &mapping_id,
            &request.target_tag_value,
        )
    };
    let mut hosts = hosts::judge(targets.clone(), read().await?, version);
    let mut counts = outcome::count(&hosts);
    let mut ending = outcome::decide(counts, now > deadline);
    if let (None, Some(token)) = (ending, task_token) {
        let wait = waiting::Wait {
            mapping_id: &mapping_id,
            task_token: token,
            secret_version_id: version,
            pending: hosts
                .iter()
                .filter(|h| h.state == HostState::Pending)
                .map(|h| h.instance_id.clone())
                .collect(),
            armed_at: time::rfc3339(now),
            execution_arn: input.execution.as_ref().map(|e| e.id.as_str()),
        };
        wait::arm(&state.dynamodb, &state.evidence_table_name, &wait).await?;
        // A host whose report was recorded between the first read and the arming found no wait
        // to take itself out of: read once more, so that no report is lost.
        hosts = hosts::judge(targets, read().await?, version);
        counts = outcome::count(&hosts);
        ending = outcome::decide(counts, now > deadline);
        // Ended after all: take the wait back, unless a report already claimed it (its wake
        // makes the state machine check again, which finds the same ending).
        if ending.is_some()
            && !wait::claim(
                &state.dynamodb,
                &state.evidence_table_name,
                &mapping_id,
                token,
            )
            .await?
        {
            ending = None;
        }
    }
    tracing::info!(
        association_id = %association_id,
        association_version = dispatch.association_version.as_deref().unwrap_or(""),
        mapping_id = %mapping_id,
        poll,
        status = ending.map_or("InProgress", outcome::Outcome::as_str),
        total = counts.total,
        converged = counts.succeeded,
        failed = counts.failed,
        pending = counts.pending,
        deferred = counts.deferred,
        waiting = ending.is_none() && task_token.is_some(),
        "checked the deployment's hosts"
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
            woken_by: None,
        });
    };

    for host in &hosts {
        match host.state {
            HostState::Failed => tracing::warn!(
                association_id = %association_id,
                instance_id = %host.instance_id,
                status_details = %host.status_details(),
                "host failed the install"
            ),
            HostState::Deferred => tracing::info!(
                association_id = %association_id,
                instance_id = %host.instance_id,
                ping_status = %host.ping_status,
                "host offline: the association installs the version when it is back"
            ),
            HostState::Converged | HostState::Pending => {}
        }
    }
    let last = LastDeployment {
        execution_arn: input.execution.as_ref().map(|e| e.id.clone()),
        status: ending.status(),
        succeeded: counts.succeeded,
        failed: counts.failed,
        finished_at: time::rfc3339(now),
    };
    record::record_last_deployment(&state.dynamodb, &state.table_name, input, last).await?;
    let event = event::deployment_event(
        input,
        export,
        dispatch,
        ending.status(),
        counts,
        &hosts,
        &failures,
    );
    event::publish(&state.events, &state.event_bus_name, &event).await?;

    let result = outcome::ended(
        ending,
        poll,
        counts,
        failures,
        request,
        association_id,
        &dispatch.deadline_at,
    )?;
    if let Some(token) = task_token {
        let output = serde_json::to_string(&result).map_err(|e| {
            CertshipError::Service(format!("could not encode the install result: {e}"))
        })?;
        if !wait::complete(&state.sfn, token, &output).await? {
            tracing::warn!(
                mapping_id = %mapping_id,
                "the Task no longer waits for this check's token; the state machine checks again"
            );
        }
    }
    Ok(result)
}

/// The association dispatch-install set, the export whose version the hosts must hold, and the
/// deadline.
fn dispatched(
    input: &WorkflowState,
) -> Result<(&DispatchResult, &str, &ExportResult, SystemTime), CertshipError> {
    let dispatch = input.dispatch.as_ref().ok_or_else(|| {
        CertshipError::InvalidRequest(
            "$.Dispatch is missing: check-install-status checks the association dispatch-install \
             set"
            .into(),
        )
    })?;
    let association_id = dispatch.association_id.as_deref().ok_or_else(|| {
        CertshipError::InvalidRequest(format!(
            "$.Dispatch has no AssociationId: this execution predates convergence (it sent Run \
             Command {}); redeploy the mapping",
            dispatch.command_id.as_deref().unwrap_or("with no id")
        ))
    })?;
    let export = input.export.as_ref().ok_or_else(|| {
        CertshipError::InvalidRequest(
            "$.Export is missing: check-install-status checks the exported secret version".into(),
        )
    })?;
    let deadline = time::parse_rfc3339(&dispatch.deadline_at).ok_or_else(|| {
        CertshipError::InvalidRequest(format!(
            "$.Dispatch.DeadlineAt {:?} is not an RFC 3339 timestamp",
            dispatch.deadline_at
        ))
    })?;
    Ok((dispatch, association_id, export, deadline))
}

#[cfg(test)]
mod tests;
