//! The hosts of a deployment made before convergence, which sent one Run Command
//! (`$.Dispatch.CommandId`) rather than updating an association: each host's invocation, the
//! outcome line the install document printed, and the failure check-install-status recorded,
//! as rows of the deployment report.

use super::explain;
use super::hosts::acm_notation;
use super::report::HostLine;
use anyhow::{Context, Result};
use aws_sdk_ssm::types::CommandInvocationStatus;
use certship_shared::{HostFailure, HostReport};

/// One host's invocation of an install command.
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

/// Each host of `command_id`, its invocation merged with the failure the execution recorded for
/// it, sorted by instance.
pub async fn host_lines(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
    failures: &[HostFailure],
) -> Result<Vec<HostLine>> {
    let mut lines: Vec<HostLine> = host_invocations(ssm, command_id)
        .await?
        .into_iter()
        .map(|host| line(host, failures))
        .collect();
    lines.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(lines)
}

fn line(host: HostInvocation, failures: &[HostFailure]) -> HostLine {
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
    HostLine {
        state: host.status_name().to_string(),
        instance_id: host.instance_id,
        outcome: outcome.status.clone(),
        serial: outcome
            .serial
            .as_deref()
            .filter(|_| succeeded)
            .map(acm_notation),
        serial_tried: false,
        reloaded: outcome.reloaded,
        detail: failure,
        done_well: succeeded,
    }
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
    fn a_line_takes_the_hosts_report_and_shows_a_serial_only_when_it_succeeded() {
        let output = "fetched\n{\"status\":\"installed\",\"serial\":\"0A\",\"changed\":true,\"reloaded\":false}\n";
        let invocation = |status| HostInvocation {
            instance_id: "i-1".into(),
            status: Some(status),
            outcome: HostReport::from_output(output),
        };
        let ok = line(invocation(CommandInvocationStatus::Success), &[]);
        assert_eq!(ok.serial.as_deref(), Some("0a"));
        assert_eq!(
            (ok.outcome.as_deref(), ok.reloaded),
            (Some("installed"), Some(false))
        );
        assert!(ok.done_well);
        let failed = line(invocation(CommandInvocationStatus::Failed), &[]);
        assert_eq!(
            failed.serial, None,
            "a failed host does not serve what it tried"
        );
        assert_eq!(failed.state, "Failed");
        assert!(!failed.done_well);
    }
}
