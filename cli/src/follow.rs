//! Following an execution of the deployment state machine: its history, state by state, as
//! readable lines, until it ends.

use anyhow::{Context, Result};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use serde_json::Value;
use std::time::Duration;

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
    pub output: Option<Value>,
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

/// Polls the history, calling `print` with a line for each step, until the execution ends.
pub async fn follow(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    mut print: impl FnMut(&str),
) -> Result<Ending> {
    let mut seen = 0;
    let started = std::time::Instant::now();
    let mut last_line = started;
    loop {
        let events = history(sfn, execution_arn).await?;
        for event in events.iter().skip(seen) {
            if let Some(line) = describe(event) {
                print(&line);
                last_line = std::time::Instant::now();
            }
            if let Some(ending) = ending(event) {
                return Ok(ending);
            }
        }
        seen = events.len();
        // A long wait still shows that something is happening.
        if last_line.elapsed() >= Duration::from_secs(10) {
            print(&format!(
                "  … still running ({} s)",
                started.elapsed().as_secs()
            ));
            last_line = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn json(text: Option<&str>) -> Option<Value> {
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
                .and_then(|d| json(d.output())),
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
            let output = json(details.output())?;
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

/// A Lambda's cause is its error JSON; the message is what a reader wants.
pub fn cause_message(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
        .unwrap_or_else(|| cause.to_string())
}

/// What a Task state produced, in a line.
pub fn summarize(state: &str, output: &Value) -> Option<String> {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    match state {
        EXPORT_STATE => {
            let export = &output["Export"];
            Some(format!(
                "exported serial {} (expires {}) into secret version {}",
                s(&export["Serial"]),
                s(&export["NotAfter"]),
                s(&export["SecretVersionId"])
            ))
        }
        DISPATCH_STATE => {
            let dispatch = &output["Dispatch"];
            Some(format!(
                "sent command {} to hosts tagged {}={} (deadline {})",
                s(&dispatch["CommandId"]),
                s(&output["TargetTagKey"]),
                s(&output["TargetTagValue"]),
                s(&dispatch["DeadlineAt"])
            ))
        }
        CHECK_STATE => {
            let install = &output["Install"];
            let hosts = &install["Hosts"];
            let mut line = format!(
                "{}: {} of {} hosts done ({} succeeded, {} failed, {} pending)",
                s(&install["Status"]),
                hosts["Succeeded"].as_u64().unwrap_or(0) + hosts["Failed"].as_u64().unwrap_or(0),
                hosts["Total"].as_u64().unwrap_or(0),
                hosts["Succeeded"].as_u64().unwrap_or(0),
                hosts["Failed"].as_u64().unwrap_or(0),
                hosts["Pending"].as_u64().unwrap_or(0),
            );
            if let Some(failures) = install["Failures"].as_array() {
                for failure in failures {
                    line.push_str(&format!(
                        "\n    {} {}",
                        s(&failure["InstanceId"]),
                        s(&failure["StatusDetails"])
                    ));
                }
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
        let asl: Value = serde_json::from_str(
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
        let output = json!({
            "TargetTagKey": "env", "TargetTagValue": "dev",
            "Install": {"Status": "Failed", "Hosts": {"Total": 2, "Succeeded": 1, "Failed": 1, "Pending": 0},
                        "Failures": [{"InstanceId": "i-1", "StatusDetails": "Failed"}]},
            "Dispatch": {"CommandId": "c-1", "DeadlineAt": "2026-01-01T00:00:00Z"},
        });
        let check = summarize(CHECK_STATE, &output).unwrap();
        assert!(
            check.starts_with("Failed: 2 of 2 hosts done (1 succeeded, 1 failed"),
            "{check}"
        );
        assert!(check.contains("i-1 Failed"), "{check}");
        let dispatch = summarize(DISPATCH_STATE, &output).unwrap();
        assert!(
            dispatch.contains("c-1") && dispatch.contains("env=dev"),
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
