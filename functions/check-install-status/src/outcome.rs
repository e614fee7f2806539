//! Counting the hosts and deciding where the install stands: in progress (and how long to wait),
//! or ended, and how. Pure: no AWS call, no clock.

use crate::hosts::{Host, HostState};
use certship_shared::mapping::LastDeploymentStatus;
use certship_shared::{
    CertshipError, DeploymentRequest, HostCounts, HostFailure, InstallResult, InstallStatus,
};

/// Failures kept in `$.Install` (Step Functions caps a state at 256 KiB); counts stay exact.
pub const MAX_FAILURES: usize = 25;
/// The tail of a failed host's output that is kept: the error is at the end.
pub const OUTPUT_TAIL_BYTES: usize = 1000;
pub const TRUNCATED: &str = "...(truncated) ";
const FIRST_WAIT_SECONDS: u32 = 2;
const MAX_WAIT_SECONDS: u32 = 30;

/// How a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed,
    NoTargets,
    InstallTimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::NoTargets => "NoTargets",
            Self::InstallTimedOut => "InstallTimedOut",
        }
    }

    /// As `LastDeployment.Status` and the event's `Outcome` name it.
    pub fn status(self) -> LastDeploymentStatus {
        match self {
            Self::Success => LastDeploymentStatus::Success,
            Self::Failed => LastDeploymentStatus::Failed,
            Self::NoTargets => LastDeploymentStatus::NoTargets,
            Self::InstallTimedOut => LastDeploymentStatus::InstallTimedOut,
        }
    }
}

/// Where the install stands: `None` while it is in progress. No targets ends it; then no online
/// target still pending does (offline ones are deferred to the association); then the deadline,
/// where a host that failed is the better answer than the ones still pending: past `MaxErrors`
/// the association run reaches no further host, so they wait for its next run.
pub fn decide(counts: HostCounts, past_deadline: bool) -> Option<Outcome> {
    let failed_or = |otherwise| {
        if counts.failed == 0 {
            otherwise
        } else {
            Outcome::Failed
        }
    };
    if counts.total == 0 {
        Some(Outcome::NoTargets)
    } else if counts.pending == 0 {
        Some(failed_or(Outcome::Success))
    } else if past_deadline {
        Some(failed_or(Outcome::InstallTimedOut))
    } else {
        None
    }
}

/// Seconds to wait before poll `poll + 1`: 2, 4, 8, 16, then 30, never past the deadline and
/// never less than 1.
pub fn next_wait(poll: u32, remaining_secs: u64) -> u32 {
    let backoff = FIRST_WAIT_SECONDS
        .checked_shl(poll.saturating_sub(1))
        .filter(|w| *w <= MAX_WAIT_SECONDS)
        .unwrap_or(MAX_WAIT_SECONDS);
    let remaining = u32::try_from(remaining_secs).unwrap_or(u32::MAX);
    backoff.min(remaining).max(1)
}

pub fn count(hosts: &[Host]) -> HostCounts {
    let mut counts = HostCounts::default();
    for host in hosts {
        counts.total += 1;
        match host.state {
            HostState::Converged => counts.succeeded += 1,
            HostState::Failed => counts.failed += 1,
            HostState::Pending => counts.pending += 1,
            HostState::Deferred => counts.deferred += 1,
        }
    }
    counts
}

/// The first [`MAX_FAILURES`] failed hosts, each with its outcome and the tail of its (redacted)
/// error.
pub fn failures(hosts: &[Host]) -> Vec<HostFailure> {
    hosts
        .iter()
        .filter(|h| h.state == HostState::Failed)
        .take(MAX_FAILURES)
        .map(|h| HostFailure {
            instance_id: h.instance_id.clone(),
            status_details: h
                .evidence
                .as_ref()
                .map_or_else(String::new, |e| e.outcome.to_string()),
            output: tail(
                h.evidence
                    .as_ref()
                    .and_then(|e| e.error.as_deref())
                    .unwrap_or_default(),
            ),
        })
        .collect()
}

/// The last [`OUTPUT_TAIL_BYTES`] of `output`, cut at a character boundary and marked when cut.
fn tail(output: &str) -> String {
    if output.len() <= OUTPUT_TAIL_BYTES {
        return output.to_string();
    }
    let mut start = output.len() - OUTPUT_TAIL_BYTES;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    format!("{TRUNCATED}{}", &output[start..])
}

/// What the state machine gets back once the install ended: `Success` and `Failed` are results,
/// `NoTargets` and `InstallTimedOut` errors naming what to do or what was still pending.
pub fn ended(
    outcome: Outcome,
    poll: u32,
    counts: HostCounts,
    failures: Vec<HostFailure>,
    request: &DeploymentRequest,
    association: &str,
    deadline_at: &str,
) -> Result<InstallResult, CertshipError> {
    match outcome {
        Outcome::Success | Outcome::Failed => Ok(InstallResult {
            status: if outcome == Outcome::Success {
                InstallStatus::Success
            } else {
                InstallStatus::Failed
            },
            wait_seconds: 0,
            poll,
            hosts: counts,
            failures,
            woken_by: None,
        }),
        Outcome::NoTargets => Err(CertshipError::NoTargets(format!(
            "no managed node has the tag {}={}; tag the EC2 instances or on-premises managed \
             nodes that should receive {}: the association {association} installs it on them \
             when they are tagged",
            request.target_tag_key, request.target_tag_value, request.cert_name
        ))),
        Outcome::InstallTimedOut => Err(CertshipError::InstallTimedOut(format!(
            "{} of {} hosts still pending after the deadline {deadline_at} (online, not yet \
             reporting the new version; {} converged, {} failed, {} offline); the association \
             {association} keeps applying it",
            counts.pending, counts.total, counts.succeeded, counts.failed, counts.deferred
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_to_thirty_seconds_and_never_passes_the_deadline() {
        let waits: Vec<u32> = (1..=8).map(|poll| next_wait(poll, 600)).collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(next_wait(0, 600), 2);
        assert_eq!(next_wait(u32::MAX, u64::MAX), 30);
        assert_eq!(next_wait(4, 10), 10);
        assert_eq!(next_wait(1, 1), 1);
        assert_eq!(next_wait(3, 0), 1);
    }

    #[test]
    fn short_output_is_kept_whole() {
        assert_eq!(tail("done"), "done");
        let exact = "z".repeat(OUTPUT_TAIL_BYTES);
        assert_eq!(tail(&exact), exact);
    }
}
