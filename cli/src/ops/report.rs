//! What a deployment did, host by host: how the execution ended and one row per host, as the
//! closing table of `certship follow` and `deploy --wait`, or as JSON.

use super::execution::{self, Ending};
use super::hosts::{self, HostRow};
use super::table;
use super::watch::Watched;
use anyhow::Result;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};

/// What the execution did, host by host.
#[derive(Debug, Clone)]
pub struct Report {
    pub execution_arn: String,
    pub ending: Ending,
    pub command_id: Option<String>,
    pub hosts: Vec<HostRow>,
}

impl Report {
    /// The report of a watched execution: its install command's hosts, when it sent one.
    pub async fn collect(
        ssm: &aws_sdk_ssm::Client,
        execution_arn: &str,
        watched: Watched,
    ) -> Result<Self> {
        let hosts = match &watched.command_id {
            Some(id) => hosts::host_rows(ssm, id, &watched.failures).await?,
            None => Vec::new(),
        };
        Ok(Self {
            execution_arn: execution_arn.to_string(),
            ending: watched.ending,
            command_id: watched.command_id,
            hosts,
        })
    }
}

fn yes_no(value: Option<bool>) -> String {
    match value {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.ending.status == ExecutionStatus::Succeeded
    }

    /// The closing summary and the per-host table.
    pub fn text(&self, colour: bool) -> String {
        let mut text = match self.ending.status {
            ExecutionStatus::Succeeded => "Deployed.".to_string(),
            ref status => format!(
                "Deployment {}: {}{}",
                status.as_str().to_lowercase().replace("_", " "),
                self.ending.error.as_deref().unwrap_or("no error named"),
                self.ending
                    .cause
                    .as_deref()
                    .map(|c| format!(": {}", execution::cause_message(c)))
                    .unwrap_or_default()
            ),
        };
        if self.hosts.is_empty() {
            text.push_str("\nNo host ran the install command.");
            return text;
        }
        let rows: Vec<Vec<String>> = self
            .hosts
            .iter()
            .map(|h| {
                let status = match h.status.as_str() {
                    "Success" => h.status.clone(),
                    other => table::highlight(other, colour, true),
                };
                vec![
                    h.instance_id.clone(),
                    status,
                    h.serial.clone().unwrap_or_else(|| "-".into()),
                    yes_no(h.changed),
                    yes_no(h.reloaded),
                    h.failure.clone().unwrap_or_default(),
                ]
            })
            .collect();
        text.push_str("\n\n");
        text.push_str(&table::render(
            &[
                "INSTANCE", "STATUS", "SERIAL", "CHANGED", "RELOADED", "FAILURE",
            ],
            &rows,
        ));
        text
    }

    pub fn json(&self) -> Value {
        json!({
            "executionArn": self.execution_arn,
            "status": self.ending.status.as_str(),
            "error": self.ending.error,
            "cause": self.ending.cause.as_deref().map(execution::cause_message),
            "commandId": self.command_id,
            "hosts": self.hosts.iter().map(|h| json!({
                "instanceId": h.instance_id,
                "status": h.status,
                "serial": h.serial,
                "changed": h.changed,
                "reloaded": h.reloaded,
                "rolledBack": h.rolled_back,
                "failure": h.failure,
            })).collect::<Vec<_>>(),
        })
    }
}
