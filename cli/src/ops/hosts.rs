//! What each host did with an install command: its Run Command invocation, the outcome line the
//! install document printed, and the failure check-install-status recorded for it, merged into
//! one row per host.

use super::explain;
use anyhow::{Context, Result};
use aws_sdk_ssm::types::CommandInvocationStatus;
use certship_shared::HostFailure;
use serde::{Deserialize, Serialize};

/// One host's invocation of an install command (named apart from check-install-status's
/// `HostOutcome`, which classifies a host for the workflow).
#[derive(Debug, Clone)]
pub struct HostInvocation {
    pub instance_id: String,
    pub status: Option<CommandInvocationStatus>,
    /// The document's JSON outcome line, when it printed one.
    pub outcome: Option<OutcomeLine>,
}

impl HostInvocation {
    /// The invocation's status as SSM names it (`Success`, `Failed`, ...), or "" when it has none.
    pub fn status_name(&self) -> &str {
        self.status.as_ref().map_or("", |s| s.as_str())
    }
}

/// The fields of the install document's outcome line that the operator sees. Every field is
/// optional: a host that failed early prints fewer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeLine {
    pub status: Option<String>,
    pub serial: Option<String>,
    pub changed: Option<bool>,
    pub reloaded: Option<bool>,
    pub rolled_back: Option<bool>,
}

/// The outcome line in a host's output: the last line that is JSON, when that is an object.
fn outcome_line(output: &str) -> Option<OutcomeLine> {
    let last_json = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok())?;
    if !last_json.starts_with('{') {
        return None;
    }
    serde_json::from_str(last_json).ok()
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
                outcome: outcome_line(output),
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
    let mut digits: String = serial.chars().filter(|c| *c != ':').collect();
    if digits.len() % 2 == 1 {
        digits.insert(0, '0');
    }
    hex::decode(&digits)
        .map(|bytes| certship_shared::pem::format_serial(&bytes))
        .unwrap_or_else(|_| serial.to_string())
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
    fn the_outcome_line_is_the_last_json_line_when_it_is_an_object() {
        let line = outcome_line(
            "fetched\n{\"status\":\"installed\",\"serial\":\"0A\",\"changed\":true}\ndone\n",
        )
        .unwrap();
        assert_eq!(line.status.as_deref(), Some("installed"));
        assert_eq!((line.changed, line.reloaded), (Some(true), None));
        assert_eq!(outcome_line("{\"changed\":true}\n42\n"), None, "42 is JSON");
        assert_eq!(outcome_line("no json here"), None);
    }
}
