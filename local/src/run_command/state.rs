//! The commands and invocations the emulator keeps, with SSM's statuses.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Invocation {
    pub(super) instance_id: String,
    pub(super) details: Details,
    pub(super) response_code: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) started: Option<SystemTime>,
    pub(super) finished: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub(super) struct Command {
    pub(super) id: String,
    pub(super) document_name: String,
    pub(super) comment: String,
    pub(super) parameters: BTreeMap<String, Vec<String>>,
    pub(super) targets: Value,
    pub(super) requested_at: SystemTime,
    pub(super) timeout_seconds: u64,
    pub(super) max_concurrency: String,
    pub(super) max_errors: String,
    pub(super) plugin_name: String,
    pub(super) invocations: Vec<Invocation>,
}

impl Invocation {
    /// An invocation just sent to `instance_id`: pending, with no output yet.
    pub(super) fn pending(instance_id: String) -> Self {
        Self {
            instance_id,
            details: Details::Pending,
            response_code: -1,
            stdout: String::new(),
            stderr: String::new(),
            started: None,
            finished: None,
        }
    }
}

impl Command {
    /// A command's status: in progress while any invocation is, then `Success` only when every
    /// invocation succeeded.
    pub(super) fn status(&self) -> Status {
        if self
            .invocations
            .iter()
            .any(|i| !i.details.status().is_terminal())
        {
            Status::InProgress
        } else if self
            .invocations
            .iter()
            .all(|i| i.details.status() == Status::Success)
        {
            Status::Success
        } else {
            Status::Failed
        }
    }

    pub(super) fn count(&self, pred: impl Fn(&Invocation) -> bool) -> usize {
        self.invocations.iter().filter(|i| pred(i)).count()
    }
}

/// An invocation's `Status`. What AWS reports, and when: "Understanding command statuses" in the
/// AWS Systems Manager User Guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Pending,
    InProgress,
    Success,
    Failed,
    TimedOut,
    Cancelled,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::TimedOut => "TimedOut",
            Self::Cancelled => "Cancelled",
        }
    }

    /// Whether the invocation has ended (SSM's terminal statuses).
    pub(super) fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failed | Self::TimedOut | Self::Cancelled
        )
    }
}

/// An invocation's `StatusDetails`, the finer of SSM's two fields; its `Status` follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Details {
    Pending,
    InProgress,
    Success,
    Failed,
    /// The script ran past the step's `timeoutSeconds`; counts toward MaxErrors.
    ExecutionTimedOut,
    /// No agent took the command before the command's `TimeoutSeconds`; does not count toward
    /// MaxErrors.
    DeliveryTimedOut,
    Cancelled,
}

impl Details {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "In Progress",
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::ExecutionTimedOut => "Execution Timed Out",
            Self::DeliveryTimedOut => "Delivery Timed Out",
            Self::Cancelled => "Cancelled",
        }
    }

    pub(super) fn status(self) -> Status {
        match self {
            Self::Pending => Status::Pending,
            Self::InProgress => Status::InProgress,
            Self::Success => Status::Success,
            Self::Failed => Status::Failed,
            Self::ExecutionTimedOut | Self::DeliveryTimedOut => Status::TimedOut,
            Self::Cancelled => Status::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(details: &[Details]) -> Command {
        Command {
            id: "c".into(),
            document_name: "d".into(),
            comment: String::new(),
            parameters: BTreeMap::new(),
            targets: Value::Null,
            requested_at: SystemTime::now(),
            timeout_seconds: 60,
            max_concurrency: "50".into(),
            max_errors: "0".into(),
            plugin_name: "p".into(),
            invocations: details
                .iter()
                .map(|&details| Invocation {
                    details,
                    ..Invocation::pending("i-1".into())
                })
                .collect(),
        }
    }

    #[test]
    fn both_timeouts_are_timed_out_with_ssms_own_details() {
        for (details, text) in [
            (Details::ExecutionTimedOut, "Execution Timed Out"),
            (Details::DeliveryTimedOut, "Delivery Timed Out"),
        ] {
            assert_eq!(details.status(), Status::TimedOut);
            assert_eq!(details.as_str(), text);
        }
        assert_eq!(Details::InProgress.as_str(), "In Progress");
        assert_eq!(Details::InProgress.status().as_str(), "InProgress");
        assert!(!Details::Pending.status().is_terminal());
        assert!(Details::Cancelled.status().is_terminal());
    }

    #[test]
    fn a_command_succeeds_only_when_every_host_did() {
        use Details::*;
        assert_eq!(command(&[Success, Success]).status(), Status::Success);
        assert_eq!(command(&[Success, InProgress]).status(), Status::InProgress);
        assert_eq!(command(&[Success, Pending]).status(), Status::InProgress);
        assert_eq!(
            command(&[Success, DeliveryTimedOut]).status(),
            Status::Failed
        );
        assert_eq!(command(&[Success, Cancelled]).status(), Status::Failed);
    }
}
