//! An association's `ScheduleExpression`, checked as State Manager checks it, and its interval
//! compressed for the local cloud.
//!
//! What AWS accepts ("Reference: Cron and rate expressions for Systems Manager", AWS Systems
//! Manager User Guide): `rate(N minutes|hours|days)` of 30 minutes or more and less than 31 days;
//! `cron(...)` of six fields (minutes, hours, day of month, month, day of week, year) or seven
//! with a leading seconds field that must be 0; `at(yyyy-mm-ddThh:mm:ss)` for one run. Anything
//! else is `InvalidSchedule`.
//!
//! Compression (a local cloud cannot wait an hour): one hour of schedule lasts
//! [`AgentSettings::schedule_hour`](super::AgentSettings) of wall time, so with the default 60 s
//! `rate(1 hour)` runs every minute and `rate(30 minutes)` every 30 s. A cron expression's interval
//! is read coarsely from its fields (the step of a `*/N` hours or minutes field, else daily,
//! weekly or monthly) and compressed the same way: the emulator keeps the rhythm, not the wall
//! clock times. `at(...)` never repeats.

use certship_shared::schedule::ReconcileSchedule;
use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A valid schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Runs every this many seconds of schedule time.
    Every(u64),
    /// `at(...)`: the one run at creation (the emulator does not wait for the date).
    Once,
}

impl Schedule {
    /// Reads an expression; `Err` says why State Manager would refuse it (`InvalidSchedule`).
    /// Rates and the outline of cron are certship's one schedule rule
    /// (`certship_shared::schedule`), which holds State Manager's bounds.
    pub fn parse(expression: &str) -> Result<Self, String> {
        if expression.is_empty() || expression.len() > 256 {
            return Err("the schedule expression must be 1 to 256 characters".into());
        }
        if let Some(body) = inner(expression, "at") {
            let shape = body.len() == 19
                && body.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    10 => b == b'T',
                    13 | 16 => b == b':',
                    _ => b.is_ascii_digit(),
                });
            return if shape {
                Ok(Schedule::Once)
            } else {
                Err(format!("{expression} is not at(yyyy-mm-ddThh:mm:ss)"))
            };
        }
        match ReconcileSchedule::parse(expression)? {
            ReconcileSchedule::Rate(every) => Ok(Schedule::Every(every.as_secs())),
            ReconcileSchedule::Cron(_) => {
                cron(inner(expression, "cron").unwrap_or_default()).map(Schedule::Every)
            }
        }
    }

    /// How long the interval lasts on the local cloud, where an hour of schedule lasts `hour`;
    /// `None` for a schedule that does not repeat.
    pub fn compressed(self, hour: Duration) -> Option<Duration> {
        match self {
            Schedule::Every(seconds) => {
                let nanos = hour.as_nanos() * u128::from(seconds) / u128::from(HOUR);
                Some(Duration::from_nanos(
                    u64::try_from(nanos).unwrap_or(u64::MAX),
                ))
            }
            Schedule::Once => None,
        }
    }
}

fn inner<'a>(expression: &'a str, function: &str) -> Option<&'a str> {
    expression
        .strip_prefix(function)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn cron(body: &str) -> Result<u64, String> {
    let mut fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() == 7 {
        if fields[0] != "0" {
            return Err(format!("cron({body}): the seconds field must be 0"));
        }
        fields.remove(0);
    }
    if fields.len() != 6 {
        return Err(format!(
            "cron({body}) needs six fields: minutes hours day-of-month month day-of-week year"
        ));
    }
    let allowed = |f: &str| {
        f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*?/,-#".contains(&b))
    };
    if let Some(bad) = fields.iter().find(|f| !allowed(f)) {
        return Err(format!("cron({body}): {bad:?} is not a cron field"));
    }
    let step = |field: &str| -> Option<u64> {
        let (_, n) = field.split_once('/')?;
        n.parse().ok().filter(|n| *n > 0)
    };
    let (minutes, hours, day_of_month, day_of_week) = (fields[0], fields[1], fields[2], fields[4]);
    let interval = if let Some(n) = step(minutes) {
        n * MINUTE
    } else if minutes == "*" {
        MINUTE
    } else if let Some(n) = step(hours) {
        n * HOUR
    } else if hours == "*" {
        HOUR
    } else if !matches!(day_of_week, "*" | "?") {
        7 * DAY
    } else if !matches!(day_of_month, "*" | "?") {
        30 * DAY
    } else {
        DAY
    };
    // State Manager's cron schedules run at most every 30 minutes.
    if interval < 30 * MINUTE {
        return Err(format!(
            "cron({body}) runs more often than every 30 minutes"
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_30_minutes_to_under_31_days_are_accepted() {
        assert_eq!(
            Schedule::parse("rate(30 minutes)"),
            Ok(Schedule::Every(1800))
        );
        assert_eq!(Schedule::parse("rate(1 hour)"), Ok(Schedule::Every(3600)));
        assert_eq!(
            Schedule::parse("rate(30 days)"),
            Ok(Schedule::Every(30 * DAY))
        );
        for bad in [
            "rate(29 minutes)",
            "rate(31 days)",
            "rate(0 hours)",
            "rate(1 week)",
            "rate(01 hour)",
            "rate(hour)",
            "every hour",
            "",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_and_at_are_read() {
        assert_eq!(
            Schedule::parse("cron(0 */2 * * ? *)"),
            Ok(Schedule::Every(2 * HOUR))
        );
        assert_eq!(
            Schedule::parse("cron(0 0 2 ? * SUN *)"),
            Ok(Schedule::Every(7 * DAY))
        );
        assert_eq!(
            Schedule::parse("cron(0 4 * * ? *)"),
            Ok(Schedule::Every(DAY))
        );
        assert_eq!(
            Schedule::parse("cron(0 30 4 * * ? *)"),
            Ok(Schedule::Every(DAY))
        );
        assert!(Schedule::parse("cron(5 0 4 * * ? *)").is_err(), "seconds");
        assert!(Schedule::parse("cron(*/5 * * * ? *)").is_err(), "too often");
        assert!(Schedule::parse("cron(0 4 * *)").is_err());
        assert_eq!(
            Schedule::parse("at(2026-11-27T05:03:01)"),
            Ok(Schedule::Once)
        );
        assert!(Schedule::parse("at(tomorrow)").is_err());
    }

    #[test]
    fn an_hour_of_schedule_lasts_the_configured_time() {
        let hour = Duration::from_secs(60);
        assert_eq!(
            Schedule::Every(HOUR).compressed(hour),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            Schedule::Every(30 * MINUTE).compressed(hour),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            Schedule::Every(DAY).compressed(Duration::from_secs(2)),
            Some(Duration::from_secs(48))
        );
        assert_eq!(Schedule::Once.compressed(hour), None);
    }
}
