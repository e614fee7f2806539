//! The reconcile schedule: how often an association re-runs on every target. The one rule;
//! the template's `ReconcileSchedule` pattern is checked against it by a test.

use std::fmt;
use std::time::Duration;

/// The stack's default: hourly.
pub const DEFAULT_RECONCILE_SCHEDULE: &str = "rate(1 hour)";

/// An association `ScheduleExpression` certship accepts: a rate of 30 minutes or more and under
/// 31 days, or a cron expression (passed to SSM, which checks it). The bounds are State
/// Manager's ("Reference: Cron and rate expressions for Systems Manager", AWS Systems Manager
/// User Guide); `at(...)` (one run) is refused, since a reconcile must recur.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileSchedule {
    Rate(Duration),
    Cron(String),
}

impl ReconcileSchedule {
    pub const MIN_RATE: Duration = Duration::from_secs(30 * 60);
    pub const MAX_RATE_EXCLUSIVE: Duration = Duration::from_secs(31 * 24 * 3600);

    pub fn parse(expression: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "ReconcileSchedule {expression:?} {why}: use rate(N minutes|hours|days) of 30 \
                 minutes or more and under 31 days, or cron(...)"
            ))
        };
        if let Some(body) = expression
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
        {
            // SSM checks the fields; here only what the template's pattern can say too.
            if body.is_empty() || body.len() > 250 || body.contains(['(', ')']) {
                return bad("is not a cron expression");
            }
            return Ok(Self::Cron(expression.to_string()));
        }
        let Some(body) = expression
            .strip_prefix("rate(")
            .and_then(|r| r.strip_suffix(')'))
        else {
            return bad("is neither rate(...) nor cron(...)");
        };
        let Some((count, unit)) = body.split_once(' ') else {
            return bad("has no unit");
        };
        if count.starts_with('0') || !count.chars().all(|c| c.is_ascii_digit()) {
            return bad("needs a positive whole number");
        }
        let Ok(n) = count.parse::<u64>() else {
            return bad("is too long");
        };
        let seconds = match (n, unit) {
            (1, "minute") | (2.., "minutes") => 60,
            (1, "hour") | (2.., "hours") => 3600,
            (1, "day") | (2.., "days") => 86_400,
            _ => return bad("has an unknown unit (singular for 1, plural otherwise)"),
        };
        let every = Duration::from_secs(n.saturating_mul(seconds));
        if every < Self::MIN_RATE {
            return bad("is more often than every 30 minutes");
        }
        if every >= Self::MAX_RATE_EXCLUSIVE {
            return bad("is 31 days or longer");
        }
        Ok(Self::Rate(every))
    }

    /// The expression as SSM takes it.
    pub fn expression(&self) -> String {
        match self {
            Self::Cron(expression) => expression.clone(),
            Self::Rate(every) => {
                let secs = every.as_secs();
                let (n, unit) = if secs % 86_400 == 0 {
                    (secs / 86_400, "day")
                } else if secs % 3600 == 0 {
                    (secs / 3600, "hour")
                } else {
                    (secs / 60, "minute")
                };
                format!("rate({n} {unit}{})", if n == 1 { "" } else { "s" })
            }
        }
    }
}

impl fmt::Display for ReconcileSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_within_state_managers_bounds_are_accepted_and_written_back() {
        for (text, secs) in [
            ("rate(30 minutes)", 1800),
            ("rate(1 hour)", 3600),
            ("rate(90 minutes)", 5400),
            ("rate(12 hours)", 43_200),
            ("rate(1 day)", 86_400),
            ("rate(30 days)", 30 * 86_400),
            ("rate(44639 minutes)", 44_639 * 60),
        ] {
            let schedule = ReconcileSchedule::parse(text).unwrap();
            assert_eq!(schedule, ReconcileSchedule::Rate(Duration::from_secs(secs)));
            assert_eq!(schedule.expression(), text);
        }
        assert_eq!(
            ReconcileSchedule::parse(DEFAULT_RECONCILE_SCHEDULE).unwrap(),
            ReconcileSchedule::Rate(Duration::from_secs(3600))
        );
        let cron = "cron(0 0/4 * * ? *)";
        assert_eq!(ReconcileSchedule::parse(cron).unwrap().expression(), cron);
    }

    #[test]
    fn everything_else_is_refused_with_the_rule() {
        for bad in [
            "",
            "rate(29 minutes)",
            "rate(1 minute)",
            "rate(31 days)",
            "rate(44640 minutes)",
            "rate(1 hours)",
            "rate(2 hour)",
            "rate(0 days)",
            "rate(01 day)",
            "rate(-1 hours)",
            "rate(1.5 hours)",
            "rate(99999999999999999999 days)",
            "at(2026-01-01T00:00:00)",
            "cron()",
            "cron(0 (1) * * ? *)",
            "rate(744 hours)",
            "hourly",
        ] {
            let err = ReconcileSchedule::parse(bad).unwrap_err();
            assert!(err.contains("30 minutes or more"), "{bad}: {err}");
        }
    }
}
