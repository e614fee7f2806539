//! `certship history`: the recent executions that deployed one certificate, newest first.

use super::{explain, table};
use anyhow::{Context, Result};
use aws_config::SdkConfig;
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
    pub input: Value,
}

/// The newest `limit` executions of `state_machine_arn` whose input names `certificate_arn`,
/// and whether the search stopped at [`SCAN_LIMIT`] before the oldest execution.
pub async fn entries(
    config: &SdkConfig,
    state_machine_arn: &str,
    certificate_arn: &str,
    limit: usize,
) -> Result<(Vec<Entry>, bool)> {
    let sfn = aws_sdk_sfn::Client::new(config);
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
            let input: Value = execution
                .input()
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or_default();
            if input["CertificateArn"] != certificate_arn {
                continue;
            }
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
                input,
            });
            if found.len() == limit {
                return Ok((found, false));
            }
        }
    }
    Ok((found, truncated))
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
                e.input["Trigger"].as_str().unwrap_or("api").to_string(),
                e.input["CertName"].as_str().unwrap_or("?").to_string(),
                format!(
                    "{}={}",
                    e.input["TargetTagKey"].as_str().unwrap_or("?"),
                    e.input["TargetTagValue"].as_str().unwrap_or("?")
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
                    "trigger": e.input["Trigger"],
                    "certName": e.input["CertName"],
                    "target": {"key": e.input["TargetTagKey"], "value": e.input["TargetTagValue"]},
                })
            })
            .collect(),
    )
}
