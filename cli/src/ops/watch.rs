//! The one poll loop over an execution's history, for `certship follow`, `deploy --wait`, the
//! demo and the end-to-end tests: each step as a line as it happens, until the execution ends.
//!
//! In a terminal, one live line (a spinner, the current state, the hosts' counts as the last
//! install check saw them, the time taken) under the steps already done; elsewhere, plain lines
//! only, one per step.

use super::execution::{self, Ending};
use super::hosts::counts_line;
use anyhow::Result;
use aws_sdk_sfn::types::HistoryEventType;
use certship_shared::{
    DeploymentRequest, DispatchResult, ExportResult, HostCounts, InstallResult, WorkflowState,
};
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
    /// One line per step, each indented under a heading (the demo's steps).
    Indented,
    /// Nothing (JSON output to a pipe).
    Silent,
}

/// How an execution ended, and what its Tasks wrote on the way.
#[derive(Debug, Clone)]
pub struct Watched {
    pub ending: Ending,
    pub seen: Seen,
}

/// The last of each part of the state the execution's Tasks wrote.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The deployment asked for (every Task's output carries it).
    pub request: Option<DeploymentRequest>,
    /// The version exported, once export-certificate ran.
    pub export: Option<ExportResult>,
    /// The association (or, before convergence, the command), once dispatch-install ran.
    pub dispatch: Option<DispatchResult>,
    /// The last install check.
    pub install: Option<InstallResult>,
}

impl Seen {
    /// Keeps what a Task's output says, over what earlier outputs said.
    pub fn absorb(&mut self, state: WorkflowState) {
        self.request = Some(state.request);
        if state.export.is_some() {
            self.export = state.export;
        }
        if state.dispatch.is_some() {
            self.dispatch = state.dispatch;
        }
        if state.install.is_some() {
            self.install = state.install;
        }
    }
}

/// The live line's state, drawn in place.
#[derive(Debug, Default)]
struct Live {
    state: String,
    hosts: Option<HostCounts>,
    frame: usize,
    drawn: bool,
}

impl Live {
    fn line(&mut self, elapsed: Duration) -> String {
        self.frame = (self.frame + 1) % SPINNER.len();
        let hosts = self
            .hosts
            .map(|counts| format!(" · {}", counts_line(&counts)))
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
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    progress: Progress,
    out: &mut dyn Write,
) -> Result<Watched> {
    let started = Instant::now();
    let mut live = Live::default();
    let mut events_seen = 0;
    let mut last_line = Instant::now();
    let mut seen = Seen::default();
    let ending = 'poll: loop {
        let events = execution::history(sfn, execution_arn).await?;
        for event in events.iter().skip(events_seen) {
            match event.r#type() {
                HistoryEventType::TaskStateEntered
                | HistoryEventType::WaitStateEntered
                | HistoryEventType::ChoiceStateEntered => {
                    if let Some(d) = event.state_entered_event_details() {
                        live.state = d.name().to_string();
                    }
                }
                HistoryEventType::TaskStateExited => {
                    if let Some(state) = event
                        .state_exited_event_details()
                        .and_then(|d| execution::workflow_state(d.output()))
                    {
                        seen.absorb(state);
                        live.hosts = seen.install.as_ref().map(|i| i.hosts);
                    }
                }
                _ => {}
            }
            if let Some(line) = execution::describe(event) {
                print(out, progress, &line)?;
                last_line = Instant::now();
            }
            if let Some(ending) = execution::ending(event) {
                break 'poll ending;
            }
        }
        events_seen = events.len();
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
            Progress::Plain | Progress::Indented => {
                // A long wait still shows that something is happening.
                if last_line.elapsed() >= Duration::from_secs(10) {
                    let line = format!("  … still running ({} s)", started.elapsed().as_secs());
                    print(out, progress, &line)?;
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
    Ok(Watched { ending, seen })
}

/// Writes one step's line (which may hold several) as `progress` shows lines.
fn print(out: &mut dyn Write, progress: Progress, line: &str) -> std::io::Result<()> {
    match progress {
        Progress::Live => write!(out, "\r\x1b[K{line}\n"),
        Progress::Plain => writeln!(out, "{line}"),
        Progress::Indented => line
            .lines()
            .try_for_each(|part| writeln!(out, "      {part}")),
        Progress::Silent => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_line_turns_and_names_state_and_hosts() {
        let mut live = Live {
            state: "Check install status".into(),
            hosts: Some(HostCounts {
                total: 4,
                succeeded: 3,
                failed: 0,
                pending: 0,
                deferred: 1,
            }),
            ..Live::default()
        };
        let first = live.line(Duration::from_secs(12));
        let second = live.line(Duration::from_secs(12));
        assert!(
            first.ends_with("Check install status · converged 3/4, deferred 1 · 12 s"),
            "{first}"
        );
        assert_ne!(
            first.chars().next(),
            second.chars().next(),
            "the spinner turns"
        );
    }
}
