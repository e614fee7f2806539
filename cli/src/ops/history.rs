//! `certship history`: the recent executions that deployed one certificate, newest first.

use super::{explain, table};
use anyhow::{Context, Result};
use certship_shared::{DeploymentRequest, Trigger};
use serde_json::{Value, json};

/// How many executions (newest first) are read at most to find those of one certificate.
pub const SCAN_LIMIT: usize = 1000;

#[derive(Debug, Clone)]
pub struct Entry {
    pub execution_arn: String,
    pub name: String,
    pub status: String,
    pub started: String,
    pub stopped: Option<String>,
    pub duration_seconds: Option<i64>,
    /// The execution's input: the deployment it was asked for.
    pub request: DeploymentRequest,
}

/// The newest `limit` executions of `state_machine_arn` whose input names `certificate_arn`,
/// and whether the search stopped at [`SCAN_LIMIT`] before the oldest execution.
pub async fn entries(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    certificate_arn: &str,
    limit: usize,
) -> Result<(Vec<Entry>, bool)> {
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(state_machine_arn)
        .into_paginator()
        .items()
        .send();
    let mut listed = Vec::new();
    let mut truncated = false;
    while let Some(item) = pages.next().await {
        if listed.len() == SCAN_LIMIT {
            truncated = true;
            break;
        }
        listed.push(item.map_err(explain).context("listing the executions")?);
    }
    // ListExecutions has no input; DescribeExecution does. Ten at a time, newest first.
    let mut found = Vec::new();
    for chunk in listed.chunks(10) {
        let mut described = tokio::task::JoinSet::new();
        for (i, execution) in chunk.iter().enumerate() {
            let sfn = sfn.clone();
            let arn = execution.execution_arn().to_string();
            described.spawn(async move {
                (i, sfn.describe_execution().execution_arn(arn).send().await)
            });
        }
        let mut answers = described.join_all().await;
        answers.sort_by_key(|(i, _)| *i);
        for (_, answer) in answers {
            let execution = answer.map_err(explain).context("describing an execution")?;
            // An input that is not a deployment request is not a deployment of this certificate.
            let Some(request) = execution
                .input()
                .and_then(|i| serde_json::from_str::<DeploymentRequest>(i).ok())
                .filter(|r| r.certificate_arn == certificate_arn)
            else {
                continue;
            };
            let started = execution.start_date();
            found.push(Entry {
                execution_arn: execution.execution_arn().to_string(),
                name: execution.name().unwrap_or_default().to_string(),
                status: execution.status().as_str().to_string(),
                started: certship_shared::time::format_date_time(started),
                stopped: execution
                    .stop_date()
                    .map(certship_shared::time::format_date_time),
                duration_seconds: execution.stop_date().map(|s| s.secs() - started.secs()),
                request,
            });
            if found.len() == limit {
                return Ok((found, false));
            }
        }
    }
    Ok((found, truncated))
}

/// The trigger as the contract spells it (`api`, `renewal`).
fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Api => "api",
        Trigger::Renewal => "renewal",
    }
}

pub fn text(entries: &[Entry], truncated: bool, colour: bool) -> String {
    if entries.is_empty() {
        return "No executions for this certificate.".to_string()
            + if truncated {
                " (only the newest 1000 were searched)"
            } else {
                ""
            };
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let status = match e.status.as_str() {
                "SUCCEEDED" | "RUNNING" => e.status.clone(),
                other => table::highlight(other, colour, true),
            };
            vec![
                e.started.clone(),
                status,
                trigger_name(e.request.trigger).to_string(),
                e.request.cert_name.clone(),
                format!(
                    "{}={}",
                    e.request.target_tag_key, e.request.target_tag_value
                ),
                e.duration_seconds
                    .map(|s| format!("{s} s"))
                    .unwrap_or_else(|| "-".into()),
                e.execution_arn.clone(),
            ]
        })
        .collect();
    table::render(
        &[
            "STARTED",
            "STATUS",
            "TRIGGER",
            "NAME",
            "TARGET",
            "TOOK",
            "EXECUTION",
        ],
        &rows,
    )
}

pub fn json(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "executionArn": e.execution_arn,
                    "name": e.name,
                    "status": e.status,
                    "startDate": e.started,
                    "stopDate": e.stopped,
                    "trigger": trigger_name(e.request.trigger),
                    "certName": e.request.cert_name,
                    "target": {"key": e.request.target_tag_key, "value": e.request.target_tag_value},
                })
            })
            .collect(),
    )
}
