//! Reading an execution of the deployment state machine: its history, each event as a readable
//! line, the Task outputs as the contract's [`WorkflowState`], and how the execution ended.
//! The poll loop over it is [`super::watch`].

use anyhow::{Context, Result};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use certship_shared::{InstallStatus, WorkflowState};
use serde::Deserialize;

/// The state machine's Task states, as `statemachine/certificate-deployment.asl.json` names them.
pub const EXPORT_STATE: &str = "Export certificate";
pub const DISPATCH_STATE: &str = "Dispatch install command";
pub const CHECK_STATE: &str = "Check install status";

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub status: ExecutionStatus,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The final state, on success.
    pub output: Option<WorkflowState>,
}

impl Ending {
    pub fn succeeded(&self) -> bool {
        self.status == ExecutionStatus::Succeeded
    }
}

/// Every event of an execution's history so far, oldest first.
pub async fn history(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Result<Vec<HistoryEvent>> {
    let mut events = Vec::new();
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .include_execution_data(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        events.extend(page.context("reading the execution's history")?.events);
    }
    Ok(events)
}

/// A state as the contract types it; `None` when there is none or it does not fit.
pub fn workflow_state(text: Option<&str>) -> Option<WorkflowState> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

pub fn ending(event: &HistoryEvent) -> Option<Ending> {
    let (status, error, cause, output) = match event.r#type() {
        HistoryEventType::ExecutionSucceeded => (
            ExecutionStatus::Succeeded,
            None,
            None,
            event
                .execution_succeeded_event_details()
                .and_then(|d| workflow_state(d.output())),
        ),
        HistoryEventType::ExecutionFailed => {
            let d = event.execution_failed_event_details();
            (
                ExecutionStatus::Failed,
                d.and_then(|d| d.error()).map(str::to_string),
                d.and_then(|d| d.cause()).map(str::to_string),
                None,
            )
        }
        HistoryEventType::ExecutionTimedOut => {
            let d = event.execution_timed_out_event_details();
            (
                ExecutionStatus::TimedOut,
                d.and_then(|d| d.error()).map(str::to_string),
                d.and_then(|d| d.cause()).map(str::to_string),
                None,
            )
        }
        HistoryEventType::ExecutionAborted => (ExecutionStatus::Aborted, None, None, None),
        _ => return None,
    };
    Some(Ending {
        status,
        error,
        cause,
        output,
    })
}

/// One readable line for the events an operator cares about; `None` for the rest.
pub fn describe(event: &HistoryEvent) -> Option<String> {
    match event.r#type() {
        HistoryEventType::ExecutionStarted => Some("execution started".into()),
        HistoryEventType::TaskStateEntered
        | HistoryEventType::WaitStateEntered
        | HistoryEventType::FailStateEntered
        | HistoryEventType::SucceedStateEntered => {
            let name = event.state_entered_event_details()?.name();
            Some(format!("→ {name}"))
        }
        HistoryEventType::TaskStateExited => {
            let details = event.state_exited_event_details()?;
            let output = workflow_state(details.output())?;
            summarize(details.name(), &output).map(|s| format!("  {s}"))
        }
        HistoryEventType::LambdaFunctionFailed | HistoryEventType::TaskFailed => {
            let (error, cause) = match event.lambda_function_failed_event_details() {
                Some(d) => (d.error(), d.cause()),
                None => {
                    let d = event.task_failed_event_details()?;
                    (d.error(), d.cause())
                }
            };
            Some(format!(
                "  ✗ {}: {}",
                error.unwrap_or("error"),
                cause_message(cause.unwrap_or_default())
            ))
        }
        HistoryEventType::LambdaFunctionTimedOut => Some("  ✗ the function timed out".into()),
        HistoryEventType::ExecutionSucceeded => Some("execution succeeded".into()),
        HistoryEventType::ExecutionFailed => {
            let d = event.execution_failed_event_details()?;
            Some(format!(
                "execution failed: {}: {}",
                d.error().unwrap_or("error"),
                cause_message(d.cause().unwrap_or_default())
            ))
        }
        HistoryEventType::ExecutionTimedOut => Some("execution timed out".into()),
        HistoryEventType::ExecutionAborted => Some("execution aborted".into()),
        _ => None,
    }
}

/// The name the contract gives an install status (the Choice state compares these).
fn install_status(status: InstallStatus) -> &'static str {
    match status {
        InstallStatus::InProgress => "InProgress",
        InstallStatus::Success => "Success",
        InstallStatus::Failed => "Failed",
    }
}

/// The error a Lambda returns, as Step Functions puts it in a failure's cause.
#[derive(Deserialize)]
struct LambdaError {
    #[serde(rename = "errorMessage")]
    error_message: String,
}

/// A Lambda's cause is its error JSON; the message is what a reader wants.
pub fn cause_message(cause: &str) -> String {
    serde_json::from_str::<LambdaError>(cause)
        .map(|e| e.error_message)
        .unwrap_or_else(|_| cause.to_string())
}

/// What a Task state produced, in a line.
pub fn summarize(state: &str, output: &WorkflowState) -> Option<String> {
    match state {
        EXPORT_STATE => {
            let export = output.export.as_ref()?;
            Some(format!(
                "exported serial {} (expires {}) into secret version {}",
                export.serial, export.not_after, export.secret_version_id
            ))
        }
        DISPATCH_STATE => {
            let dispatch = output.dispatch.as_ref()?;
            let target = format!(
                "{}={}",
                output.request.target_tag_key, output.request.target_tag_value
            );
            Some(match (&dispatch.association_id, &dispatch.command_id) {
                (Some(association), _) => format!(
                    "association {association} (version {}) now holds every host tagged {target} to this version (deadline {})",
                    dispatch.association_version.as_deref().unwrap_or("?"),
                    dispatch.deadline_at
                ),
                (None, Some(command)) => format!(
                    "sent command {command} to hosts tagged {target} (deadline {})",
                    dispatch.deadline_at
                ),
                (None, None) => format!("dispatched to hosts tagged {target}"),
            })
        }
        CHECK_STATE => {
            let install = output.install.as_ref()?;
            if let Some(host) = &install.woken_by {
                return Some(format!(
                    "{host}'s report was the last one pending: checking again"
                ));
            }
            let mut line = format!(
                "{}: {}",
                install_status(install.status),
                super::hosts::counts_line(&install.hosts)
            );
            for failure in &install.failures {
                line.push_str(&format!(
                    "\n    {} {}",
                    failure.instance_id, failure.status_details
                ));
            }
            Some(line)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_task_names_are_the_state_machines() {
        let asl: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../statemachine/certificate-deployment.asl.json"),
            )
            .unwrap(),
        )
        .unwrap();
        for name in [EXPORT_STATE, DISPATCH_STATE, CHECK_STATE] {
            assert_eq!(asl["States"][name]["Type"], "Task", "{name}");
        }
    }

    #[test]
    fn summaries_name_what_each_task_did() {
        let output: WorkflowState = serde_json::from_value(json!({
            "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc", "CertName": "web",
            "TargetTagKey": "env", "TargetTagValue": "dev",
            "Install": {"Status": "Failed", "WaitSeconds": 2, "Poll": 3,
                        "Hosts": {"Total": 3, "Succeeded": 1, "Failed": 1, "Pending": 0, "Deferred": 1},
                        "Failures": [{"InstanceId": "i-1", "StatusDetails": "Failed", "Output": "x"}]},
            "Dispatch": {"CommandId": "c-1", "RequestedAt": "2026-01-01T00:00:00Z",
                         "DeadlineAt": "2026-01-01T00:00:00Z"},
        }))
        .unwrap();
        let check = summarize(CHECK_STATE, &output).unwrap();
        assert!(
            check.starts_with("Failed: converged 1/3, failed 1, deferred 1\n"),
            "{check}"
        );
        assert!(check.contains("i-1 Failed"), "{check}");
        let dispatch = summarize(DISPATCH_STATE, &output).unwrap();
        assert!(
            dispatch.contains("command c-1") && dispatch.contains("env=dev"),
            "an execution from before convergence: {dispatch}"
        );
        let mut converging = output.clone();
        converging.dispatch = Some(certship_shared::DispatchResult {
            association_id: Some("8c3e0c6e".into()),
            association_version: Some("3".into()),
            command_id: None,
            requested_at: "2026-01-01T00:00:00Z".into(),
            deadline_at: "2026-01-01T00:10:00Z".into(),
            document_name: "Install-Certificate-Linux".into(),
            wait_seconds: 605,
        });
        let dispatch = summarize(DISPATCH_STATE, &converging).unwrap();
        assert!(
            dispatch.starts_with("association 8c3e0c6e (version 3)")
                && dispatch.contains("env=dev"),
            "{dispatch}"
        );
        assert_eq!(summarize("Wait for hosts", &output), None);
    }

    #[test]
    fn lambda_causes_read_as_their_message() {
        assert_eq!(
            cause_message(r#"{"errorType":"NoTargets","errorMessage":"no host has env=qa"}"#),
            "no host has env=qa"
        );
        assert_eq!(cause_message("plain"), "plain");
    }
}
