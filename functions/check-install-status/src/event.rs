//! The deployment event: built from the ended install and published on EventBridge.

use crate::hosts::Host;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use certship_shared::event::{DeploymentEvent, EVENT_SOURCE, HostResult};
use certship_shared::mapping::LastDeploymentStatus;
use certship_shared::{
    CertshipError, DispatchResult, ExportResult, HostCounts, HostFailure, WorkflowState,
};

/// Per-host results in the event, which EventBridge caps at 256 KiB; counts stay exact.
pub const MAX_RESULTS: usize = 100;

/// The event announcing how the deployment of `input` ended.
pub fn deployment_event(
    input: &WorkflowState,
    export: &ExportResult,
    dispatch: &DispatchResult,
    outcome: LastDeploymentStatus,
    counts: HostCounts,
    hosts: &[Host],
    failures: &[HostFailure],
) -> DeploymentEvent {
    let request = &input.request;
    DeploymentEvent {
        certificate_arn: request.certificate_arn.clone(),
        cert_name: request.cert_name.clone(),
        target_tag_key: request.target_tag_key.clone(),
        target_tag_value: request.target_tag_value.clone(),
        trigger: request.trigger,
        serial: export.serial.clone(),
        association_id: dispatch.association_id.clone(),
        association_version: dispatch.association_version.clone(),
        command_id: None,
        execution_arn: input.execution.as_ref().map(|e| e.id.clone()),
        outcome,
        hosts: counts,
        results: hosts
            .iter()
            .take(MAX_RESULTS)
            .map(|h| HostResult {
                instance_id: h.instance_id.clone(),
                status: h.state.as_str().to_string(),
                status_details: h.status_details(),
                outcome: h.report(),
            })
            .collect(),
        failures: failures.to_vec(),
    }
}

/// Publishes the deployment event; an entry EventBridge refuses is an error naming its code.
pub async fn publish(
    events: &aws_sdk_eventbridge::Client,
    event_bus_name: &str,
    event: &DeploymentEvent,
) -> Result<(), CertshipError> {
    let detail = serde_json::to_string(event).map_err(|e| {
        CertshipError::Service(format!("could not encode the deployment event: {e}"))
    })?;
    let entry = PutEventsRequestEntry::builder()
        .source(EVENT_SOURCE)
        .detail_type(event.detail_type())
        .event_bus_name(event_bus_name)
        .resources(&event.certificate_arn)
        .detail(detail)
        .build();
    let put = events
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("PutEvents", e))?;
    if put.failed_entry_count() > 0 {
        let failed = put.entries().iter().find(|e| e.error_code().is_some());
        return Err(CertshipError::event_refused(
            "the deployment event",
            failed.and_then(|e| e.error_code()),
            failed.and_then(|e| e.error_message()),
        ));
    }
    tracing::info!(
        association_id = event.association_id.as_deref().unwrap_or(""),
        outcome = event.outcome.as_str(),
        event_bus = %event_bus_name,
        "published the deployment event"
    );
    Ok(())
}
