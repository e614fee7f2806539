//! `certship follow`: an execution's progress as it happens, then one row per host.
//!
//! In a terminal, one live line (a spinner, the current state, hosts done out of total, the time
//! taken) under the steps already done; elsewhere, plain lines only, one per step. Either way it
//! ends with the per-host table.

use super::table;
use crate::follow::{self, CHECK_STATE, DISPATCH_STATE, Ending};
use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A live line redrawn in place (a terminal).
    Live,
    /// One line per step (a pipe or a file).
    Plain,
    /// Nothing (JSON output to a pipe).
    Silent,
}

/// What the execution did, host by host.
#[derive(Debug, Clone)]
pub struct Report {
    pub execution_arn: String,
    pub ending: Ending,
    pub command_id: Option<String>,
    pub hosts: Vec<HostRow>,
}

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

/// The live line's state, drawn in place.
#[derive(Debug, Default)]
struct Live {
    state: String,
    hosts: Option<(u64, u64)>,
    frame: usize,
    drawn: bool,
}

impl Live {
    fn line(&mut self, elapsed: Duration) -> String {
        self.frame = (self.frame + 1) % SPINNER.len();
        let hosts = self
            .hosts
            .map(|(done, total)| format!(" · {done}/{total} hosts done"))
            .unwrap_or_default();
        format!(
            "{} {}{hosts} · {} s",
            SPINNER[self.frame],
            if self.state.is_empty() {
                "starting"
            } else {
                &self.state
            },
            elapsed.as_secs()
        )
    }
}

/// Follows `execution_arn` until it ends, writing progress to `out`.
pub async fn watch(
    config: &SdkConfig,
    execution_arn: &str,
    progress: Progress,
    out: &mut dyn Write,
) -> Result<Report> {
    let sfn = aws_sdk_sfn::Client::new(config);
    let started = Instant::now();
    let mut live = Live::default();
    let mut seen = 0;
    let mut last_line = Instant::now();
    let mut command_id = None;
    let mut failures: Vec<Value> = Vec::new();
    let ending = 'poll: loop {
        let events = follow::history(&sfn, execution_arn).await?;
        for event in events.iter().skip(seen) {
            match event.r#type() {
                HistoryEventType::TaskStateEntered
                | HistoryEventType::WaitStateEntered
                | HistoryEventType::ChoiceStateEntered => {
                    if let Some(d) = event.state_entered_event_details() {
                        live.state = d.name().to_string();
                    }
                }
                HistoryEventType::TaskStateExited => {
                    if let Some(d) = event.state_exited_event_details() {
                        let output: Value = d
                            .output()
                            .and_then(|o| serde_json::from_str(o).ok())
                            .unwrap_or_default();
                        if d.name() == DISPATCH_STATE {
                            command_id = output["Dispatch"]["CommandId"].as_str().map(String::from);
                        }
                        if d.name() == CHECK_STATE {
                            let hosts = &output["Install"]["Hosts"];
                            let n = |k: &str| hosts[k].as_u64().unwrap_or(0);
                            live.hosts = Some((n("Succeeded") + n("Failed"), n("Total")));
                            failures = output["Install"]["Failures"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default();
                        }
                    }
                }
                _ => {}
            }
            if let Some(line) = follow::describe(event) {
                match progress {
                    Progress::Live => write!(out, "\r\x1b[K{line}\n")?,
                    Progress::Plain => writeln!(out, "{line}")?,
                    Progress::Silent => {}
                }
                last_line = Instant::now();
            }
            if let Some(ending) = follow::ending(event) {
                break 'poll ending;
            }
        }
        seen = events.len();
        match progress {
            Progress::Live => {
                // Redraw a few times between polls so the spinner turns.
                for _ in 0..5 {
                    write!(out, "\r\x1b[K{}", live.line(started.elapsed()))?;
                    live.drawn = true;
                    out.flush()?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Progress::Plain => {
                if last_line.elapsed() >= Duration::from_secs(10) {
                    writeln!(out, "  … still running ({} s)", started.elapsed().as_secs())?;
                    last_line = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Progress::Silent => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    if live.drawn {
        write!(out, "\r\x1b[K")?;
    }
    out.flush()?;
    let hosts = match &command_id {
        Some(id) => host_rows(config, id, &failures).await?,
        None => Vec::new(),
    };
    Ok(Report {
        execution_arn: execution_arn.to_string(),
        ending,
        command_id,
        hosts,
    })
}

async fn host_rows(
    config: &SdkConfig,
    command_id: &str,
    failures: &[Value],
) -> Result<Vec<HostRow>> {
    let mut rows: Vec<HostRow> = host_outcomes(config, command_id)
        .await?
        .into_iter()
        .map(|host| {
            let outcome = host.outcome.unwrap_or_default();
            let failure = failures
                .iter()
                .find(|f| f["InstanceId"].as_str() == Some(&host.instance_id))
                .map(|f| {
                    let output = f["Output"].as_str().unwrap_or_default().trim();
                    let details = f["StatusDetails"].as_str().unwrap_or_default();
                    let reason = last_line(output).unwrap_or(details);
                    match outcome["rolled_back"].as_bool() {
                        Some(true) => format!("rolled back: {reason}"),
                        _ => reason.to_string(),
                    }
                });
            // A host that failed kept (or went back to) what it had: the serial it tried is
            // not what it serves.
            let succeeded = host.status == "Success";
            HostRow {
                instance_id: host.instance_id,
                status: host.status,
                serial: outcome["serial"]
                    .as_str()
                    .filter(|_| succeeded)
                    .map(acm_notation),
                changed: outcome["changed"].as_bool(),
                reloaded: outcome["reloaded"].as_bool(),
                rolled_back: outcome["rolled_back"].as_bool(),
                failure,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(rows)
}

/// The outcome line the install document printed on each host of a command.
pub async fn host_outcomes(config: &SdkConfig, command_id: &str) -> Result<Vec<HostOutcome>> {
    let ssm = aws_sdk_ssm::Client::new(config);
    let mut outcomes = Vec::new();
    let mut pages = ssm
        .list_command_invocations()
        .command_id(command_id)
        .details(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for invocation in page?.command_invocations() {
            let output = invocation
                .command_plugins()
                .first()
                .and_then(|p| p.output())
                .unwrap_or_default();
            outcomes.push(HostOutcome {
                instance_id: invocation.instance_id().unwrap_or_default().to_string(),
                status: invocation
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                outcome: output
                    .lines()
                    .rev()
                    .find_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
                    .filter(Value::is_object),
            });
        }
    }
    Ok(outcomes)
}

#[derive(Debug, Clone)]
pub struct HostOutcome {
    pub instance_id: String,
    pub status: String,
    /// The document's JSON outcome line, when it printed one.
    pub outcome: Option<Value>,
}

/// A serial as the host's openssl prints it (`0A1B…`) in ACM's notation (`0a:1b:…`), so the
/// table reads like the console and `certship status`.
fn acm_notation(serial: &str) -> String {
    serial
        .parse::<certship_shared::serial::Serial>()
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
                    .map(|c| format!(": {}", follow::cause_message(c)))
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
            "cause": self.ending.cause.as_deref().map(follow::cause_message),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_line_turns_and_names_state_and_hosts() {
        let mut live = Live {
            state: "Check install status".into(),
            hosts: Some((1, 3)),
            ..Live::default()
        };
        let first = live.line(Duration::from_secs(12));
        let second = live.line(Duration::from_secs(12));
        assert!(
            first.ends_with("Check install status · 1/3 hosts done · 12 s"),
            "{first}"
        );
        assert_ne!(
            first.chars().next(),
            second.chars().next(),
            "the spinner turns"
        );
    }

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
}
