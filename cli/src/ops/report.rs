//! What a deployment did, host by host: how the execution ended, the hosts' counts, and one row
//! per host, as the closing table of `certship follow` and `deploy --wait`, or as JSON.
//!
//! A deployment keeps a mapping's association; each tagged host stands `Converged`, `Failed`,
//! `Deferred` or `Pending` for the version it exported, read from the node listing and the
//! evidence ([`super::hosts`]). A deployment made before convergence sent one Run Command, whose
//! invocations are read instead ([`super::invocations`]).

use super::execution::{self, Ending};
use super::hosts::{self, Desired, Standing, counts_line};
use super::invocations;
use super::table;
use super::watch::Watched;
use anyhow::Result;
use aws_sdk_sfn::types::ExecutionStatus;
use certship_shared::{DispatchResult, HostCounts};
use serde_json::{Value, json};

/// One host of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLine {
    pub instance_id: String,
    /// `Converged`, `Failed`, `Deferred` or `Pending`; for a deployment from before convergence,
    /// the invocation's status as SSM names it.
    pub state: String,
    /// The host's last outcome (`installed`, `unchanged`, `rolled-back`, ...).
    pub outcome: Option<String>,
    /// The serial it reported, in ACM's notation.
    pub serial: Option<String>,
    /// The serial is the one a failed run tried, not one the host serves.
    pub serial_tried: bool,
    pub reloaded: Option<bool>,
    /// Why the files were written, why the run failed, or why the host has not reported.
    pub detail: Option<String>,
    /// The host did what was asked (converged, or the command succeeded).
    pub done_well: bool,
}

/// What the execution did, host by host.
#[derive(Debug, Clone)]
pub struct Report {
    pub execution_arn: String,
    pub ending: Ending,
    pub dispatch: Option<DispatchResult>,
    /// The counts of the last install check (`$.Install.Hosts`).
    pub counts: Option<HostCounts>,
    pub hosts: Vec<HostLine>,
    /// Why the hosts could not be listed, when they could not.
    pub note: Option<String>,
}

/// Where the report reads the hosts of a deployment.
pub struct HostSources<'a> {
    pub ssm: &'a aws_sdk_ssm::Client,
    pub dynamodb: &'a aws_sdk_dynamodb::Client,
    /// The evidence table; without it, a converging deployment's report has counts only.
    pub evidence_table: Result<String, String>,
}

impl Report {
    /// The report of a watched execution. Listing its hosts may fail (permissions, an older
    /// stack) after the execution itself was followed to its end: that is a note in the report,
    /// not an error, so the exit code still says how the deployment went.
    pub async fn collect(sources: &HostSources<'_>, execution_arn: &str, watched: Watched) -> Self {
        let seen = watched.seen;
        let (hosts, note) = match host_lines(sources, &seen).await {
            Ok(hosts) => (hosts, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        Self {
            execution_arn: execution_arn.to_string(),
            ending: watched.ending,
            counts: seen.install.as_ref().map(|i| i.hosts),
            dispatch: seen.dispatch,
            hosts,
            note,
        }
    }
}

async fn host_lines(sources: &HostSources<'_>, seen: &super::watch::Seen) -> Result<Vec<HostLine>> {
    let Some(dispatch) = &seen.dispatch else {
        return Ok(Vec::new());
    };
    if dispatch.association_id.is_none() {
        return match &dispatch.command_id {
            Some(command) => {
                let failures = seen
                    .install
                    .as_ref()
                    .map(|i| i.failures.as_slice())
                    .unwrap_or_default();
                invocations::host_lines(sources.ssm, command, failures).await
            }
            None => Ok(Vec::new()),
        };
    }
    let (Some(request), Some(export)) = (&seen.request, &seen.export) else {
        return Ok(Vec::new());
    };
    let evidence_table = sources.evidence_table.as_ref().map_err(|e| {
        anyhow::anyhow!("the hosts are not listed: finding the evidence table: {e}")
    })?;
    let target = (
        request.target_tag_key.clone(),
        request.target_tag_value.clone(),
    );
    let fleet = hosts::collect(
        sources.ssm,
        sources.dynamodb,
        evidence_table,
        &target,
        vec![Desired::of_deployment(request, export)],
    )
    .await?;
    Ok(fleet
        .rows()
        .into_iter()
        .map(|row| {
            let e = row.evidence;
            let detail = match (row.standing, e) {
                (Standing::Deferred, _) => Some(format!(
                    "offline ({}): the association reaches it when it is back",
                    row.node.ping_name()
                )),
                (Standing::Pending, None) => Some("no report yet".into()),
                (Standing::Pending, Some(_)) => Some("last report is of another version".into()),
                (_, Some(e)) => Some(hosts::reason(e)).filter(|r| r != "-"),
                (_, None) => None,
            };
            HostLine {
                instance_id: row.node.instance_id.clone(),
                state: row.standing.as_str().to_string(),
                outcome: e.map(|e| e.outcome.to_string()),
                serial: e.and_then(|e| e.serial.as_deref()).map(hosts::acm_notation),
                serial_tried: e.is_some_and(|e| e.outcome.is_failure()),
                reloaded: e.map(|e| e.reloaded),
                detail,
                done_well: row.standing == Standing::Converged,
            }
        })
        .collect())
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
        if let Some(counts) = &self.counts {
            text.push_str(&format!("\nHosts: {}", counts_line(counts)));
            if counts.deferred > 0 {
                text.push_str(" (offline hosts get it when they come back)");
            }
        }
        if let Some(note) = &self.note {
            text.push_str(&format!("\n{note}"));
            return text;
        }
        if self.hosts.is_empty() {
            text.push_str(match &self.dispatch {
                None => "\nNo host was asked to install anything.",
                Some(_) => "\nNo managed node carries the target tag.",
            });
            return text;
        }
        let rows: Vec<Vec<String>> = self
            .hosts
            .iter()
            .map(|h| {
                let state = if h.done_well {
                    h.state.clone()
                } else {
                    let red = matches!(h.state.as_str(), "Failed" | "TimedOut" | "Cancelled");
                    table::highlight(&h.state, colour, red)
                };
                vec![
                    h.instance_id.clone(),
                    state,
                    h.outcome.clone().unwrap_or_else(|| "-".into()),
                    match &h.serial {
                        Some(serial) if h.serial_tried => format!("{serial} (tried)"),
                        Some(serial) => serial.clone(),
                        None => "-".into(),
                    },
                    yes_no(h.reloaded),
                    h.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        text.push_str("\n\n");
        text.push_str(&table::render(
            &[
                "INSTANCE", "STATE", "OUTCOME", "SERIAL", "RELOADED", "DETAIL",
            ],
            &rows,
        ));
        text
    }

    pub fn json(&self) -> Value {
        let dispatch = self.dispatch.as_ref();
        json!({
            "executionArn": self.execution_arn,
            "status": self.ending.status.as_str(),
            "error": self.ending.error,
            "cause": self.ending.cause.as_deref().map(execution::cause_message),
            "associationId": dispatch.and_then(|d| d.association_id.as_deref()),
            "associationVersion": dispatch.and_then(|d| d.association_version.as_deref()),
            "commandId": dispatch.and_then(|d| d.command_id.as_deref()),
            "counts": self.counts,
            "note": self.note,
            "hosts": self.hosts.iter().map(|h| json!({
                "instanceId": h.instance_id,
                "state": h.state,
                "outcome": h.outcome,
                "serial": h.serial,
                "reloaded": h.reloaded,
                "detail": h.detail,
            })).collect::<Vec<_>>(),
        })
    }
}
