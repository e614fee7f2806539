//! What each host did with an install command: its Run Command invocation, the outcome line the
//! install document printed, and the failure check-install-status recorded for it, merged into
//! one row per host.

use super::explain;
use anyhow::{Context, Result};
use aws_sdk_ssm::types::CommandInvocationStatus;
use certship_shared::{HostFailure, HostReport, Serial};

/// One host's invocation of an install command (named apart from check-install-status's
/// `HostOutcome`, which classifies a host for the workflow).
#[derive(Debug, Clone)]
pub struct HostInvocation {
    pub instance_id: String,
    pub status: Option<CommandInvocationStatus>,
    /// The document's JSON outcome line, when it printed one.
    pub outcome: Option<HostReport>,
}

impl HostInvocation {
    /// The invocation's status as SSM names it (`Success`, `Failed`, ...), or "" when it has none.
    pub fn status_name(&self) -> &str {
        self.status.as_ref().map_or("", |s| s.as_str())
    }
}

/// Every host's invocation of `command_id`, each with its outcome line (all pages).
pub async fn host_invocations(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
) -> Result<Vec<HostInvocation>> {
    let mut invocations = Vec::new();
    let mut pages = ssm
        .list_command_invocations()
        .command_id(command_id)
        .details(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(explain)
            .context("listing the command's invocations")?;
        for invocation in page.command_invocations() {
            let output = invocation
                .command_plugins()
                .first()
                .and_then(|p| p.output())
                .unwrap_or_default();
            invocations.push(HostInvocation {
                instance_id: invocation.instance_id().unwrap_or_default().to_string(),
                status: invocation.status().cloned(),
                outcome: HostReport::from_output(output),
            });
        }
    }
    Ok(invocations)
}

/// One host as `follow` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub instance_id: String,
    pub status: String,
    pub serial: Option<String>,
    pub changed: Option<bool>,
    pub reloaded: Option<bool>,
    pub rolled_back: Option<bool>,
    /// The end of what a failed host printed (redacted by check-install-status).
    pub failure: Option<String>,
}

/// Each host of `command_id`, its invocation merged with the failure the execution recorded for
/// it, sorted by instance.
pub async fn host_rows(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
    failures: &[HostFailure],
) -> Result<Vec<HostRow>> {
    let mut rows: Vec<HostRow> = host_invocations(ssm, command_id)
        .await?
        .into_iter()
        .map(|host| row(host, failures))
        .collect();
    rows.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(rows)
}

fn row(host: HostInvocation, failures: &[HostFailure]) -> HostRow {
    let outcome = host.outcome.clone().unwrap_or_default();
    let failure = failures
        .iter()
        .find(|f| f.instance_id == host.instance_id)
        .map(|f| {
            let reason = last_line(f.output.trim()).unwrap_or(&f.status_details);
            match outcome.rolled_back {
                Some(true) => format!("rolled back: {reason}"),
                _ => reason.to_string(),
            }
        });
    // A host that failed kept (or went back to) what it had: the serial it tried is not what it
    // serves.
    let succeeded = host.status == Some(CommandInvocationStatus::Success);
    HostRow {
        status: host.status_name().to_string(),
        instance_id: host.instance_id,
        serial: outcome
            .serial
            .as_deref()
            .filter(|_| succeeded)
            .map(acm_notation),
        changed: outcome.changed,
        reloaded: outcome.reloaded,
        rolled_back: outcome.rolled_back,
        failure,
    }
}

/// A serial as the host's openssl prints it (`0A1B…`) in ACM's notation (`0a:1b:…`), so the
/// table reads like the console and `certship status`.
fn acm_notation(serial: &str) -> String {
    serial
        .parse::<Serial>()
        .map_or_else(|_| serial.to_string(), |s| s.to_string())
}

/// The last line of a host's output worth showing: the reason, not the separator.
fn last_line(output: &str) -> Option<&str> {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("----------") && !l.starts_with('{'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_serials_read_as_acm_writes_them() {
        assert_eq!(acm_notation("6A20E6"), "6a:20:e6");
        assert_eq!(acm_notation("A20E6"), "0a:20:e6");
        assert_eq!(acm_notation("0a:1b"), "0a:1b");
        assert_eq!(acm_notation("not hex"), "not hex");
    }

    #[test]
    fn a_failure_shows_the_reason_line_not_the_separator() {
        let output =
            "installing web\nreload of nginx failed; rolled back\n----------ERROR-------\n";
        assert_eq!(
            last_line(output),
            Some("reload of nginx failed; rolled back")
        );
        assert_eq!(last_line(""), None);
    }

    #[test]
    fn a_row_takes_the_hosts_report_and_shows_a_serial_only_when_it_succeeded() {
        let output = "fetched\n{\"status\":\"installed\",\"serial\":\"0A\",\"changed\":true,\"reloaded\":false}\n";
        let invocation = |status| HostInvocation {
            instance_id: "i-1".into(),
            status: Some(status),
            outcome: HostReport::from_output(output),
        };
        let ok = row(invocation(CommandInvocationStatus::Success), &[]);
        assert_eq!(ok.serial.as_deref(), Some("0a"));
        assert_eq!((ok.changed, ok.reloaded), (Some(true), Some(false)));
        let failed = row(invocation(CommandInvocationStatus::Failed), &[]);
        assert_eq!(
            failed.serial, None,
            "a failed host does not serve what it tried"
        );
        assert_eq!(failed.status, "Failed");
    }
}
