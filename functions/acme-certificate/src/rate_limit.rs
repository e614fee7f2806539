//! What an issuance does when the CA refuses it for a rate limit: wait in the state machine
//! until the CA's `Retry-After` when that is soon, fail `RateLimited` naming the CA's time when
//! it is not. A failed renewal keeps that time in the registry, and the sweep starts nothing
//! before it.
//!
//! Let's Encrypt's limits refill at rates from one order every 36 s (300 new orders per 3 hours)
//! through one account every 18 minutes to one certificate for the same names every 34 hours
//! ("Rate Limits", letsencrypt.org/docs/rate-limits). Waiting an hour covers the short ones; an
//! execution waiting a day and a half would still be waiting when the next daily sweep comes.

use certship_shared::CertshipError;
use certship_shared::acme::RateLimitWait;
use certship_shared::time::{parse_rfc3339, rfc3339};
use std::time::{Duration, SystemTime};

/// How long after its start an issuance may still be waiting for a rate limit to pass.
pub const WAIT_LIMIT: Duration = Duration::from_secs(3_600);

/// The wait when the CA names no time: long enough not to spend attempts, and six tries within
/// [`WAIT_LIMIT`] at most.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// The shortest wait: a CA answering `Retry-After: 0` (or a time already past) again and again
/// costs one Place order every 5 s, some 700 within the hour, well inside an execution's 25,000
/// history events.
pub const MIN_WAIT: Duration = Duration::from_secs(5);

/// The furthest the registry holds renewals back for the CA: a time further out (a CA's mistake,
/// or a lie) is kept as this. Let's Encrypt's slowest refill is 34 hours.
pub const MAX_HOLD: Duration = Duration::from_secs(7 * 86_400);

/// The words [`refusal`] puts before the CA's time, which [`retry_at_in`] finds again.
const RETRY_AT: &str = "; the CA asks to retry after ";

/// What to do about a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Wait in the machine, then place the order again.
    Wait(RateLimitWait),
    /// Fail `RateLimited` with this message.
    Fail(String),
}

/// The plan for a rate limit the CA refused with `detail`, asking to retry at `retry_at` (when
/// it said), for an issuance started at `started_at` (the machine's `$$.Execution.StartTime`;
/// without it nothing bounds the waits, so none is taken).
pub fn plan(
    detail: &str,
    retry_at: Option<SystemTime>,
    started_at: Option<SystemTime>,
    now: SystemTime,
) -> Plan {
    let until = retry_at.unwrap_or(now + DEFAULT_WAIT).max(now);
    let waits = started_at.is_some_and(|started| {
        until
            .duration_since(started)
            .is_ok_and(|total| total <= WAIT_LIMIT)
    });
    if !waits {
        return Plan::Fail(refusal(detail, retry_at));
    }
    let seconds = until.duration_since(now).unwrap_or_default();
    // Round up: a Wait that ends a fraction early meets the same limit again.
    let seconds =
        (seconds.as_secs() + u64::from(seconds.subsec_nanos() > 0)).max(MIN_WAIT.as_secs());
    Plan::Wait(RateLimitWait {
        retry_after_seconds: seconds,
        retry_at: rfc3339(now + Duration::from_secs(seconds)),
        detail: detail.to_string(),
    })
}

/// The message of a `RateLimited` failure: the CA's problem and, when it said, its time.
pub fn refusal(detail: &str, retry_at: Option<SystemTime>) -> String {
    match retry_at {
        Some(at) => format!("{detail}{RETRY_AT}{}", rfc3339(at)),
        None => format!("{detail}; the CA named no time to retry"),
    }
}

/// `err` naming the CA's time when it is a rate limit and the CA named one (the steps after
/// Place order, which fail rather than wait).
pub fn with_retry_at(err: CertshipError, retry_at: Option<SystemTime>) -> CertshipError {
    match err {
        CertshipError::RateLimited(detail) => {
            CertshipError::RateLimited(refusal(&detail, retry_at))
        }
        other => other,
    }
}

/// The CA's time at the very end of a message [`refusal`] wrote.
pub fn retry_at_in(message: &str) -> Option<SystemTime> {
    let (_, rest) = message.rsplit_once(RETRY_AT)?;
    parse_rfc3339(rest.trim())
}

/// Until when the registry holds a certificate's renewals back after a failure with `message`:
/// the CA's time, at most [`MAX_HOLD`] from `now`; none when it named none or it has passed.
pub fn hold_until(message: &str, now: SystemTime) -> Option<SystemTime> {
    retry_at_in(message)
        .filter(|at| *at > now)
        .map(|at| at.min(now + MAX_HOLD))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::parse_retry_after;

    fn at(s: &str) -> SystemTime {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn a_limit_that_ends_within_the_hour_is_waited_out_rounded_up() {
        let started = at("2026-11-27T10:00:00Z");
        let now = at("2026-11-27T10:00:30Z");
        let retry = now + Duration::from_millis(119_200);
        let Plan::Wait(wait) = plan("too many new orders", Some(retry), Some(started), now) else {
            panic!("not waited")
        };
        assert_eq!(wait.retry_after_seconds, 120);
        assert_eq!(wait.retry_at, "2026-11-27T10:02:30Z");
        assert_eq!(wait.detail, "too many new orders");
    }

    #[test]
    fn the_hour_counts_from_the_start_of_the_issuance_not_from_now() {
        let started = at("2026-11-27T10:00:00Z");
        let now = at("2026-11-27T10:40:00Z");
        // Ends exactly an hour after the start: still waited.
        let Plan::Wait(wait) = plan("x", Some(at("2026-11-27T11:00:00Z")), Some(started), now)
        else {
            panic!("not waited")
        };
        assert_eq!(wait.retry_after_seconds, 1_200);
        // A second later: the issuance fails and names the CA's time.
        let plan = plan("x", Some(at("2026-11-27T11:00:01Z")), Some(started), now);
        assert_eq!(
            plan,
            Plan::Fail("x; the CA asks to retry after 2026-11-27T11:00:01Z".into())
        );
    }

    #[test]
    fn without_a_time_the_wait_is_ten_minutes_and_without_a_start_there_is_none() {
        let now = at("2026-11-27T10:00:00Z");
        let Plan::Wait(wait) = plan("x", None, Some(now), now) else {
            panic!("not waited")
        };
        assert_eq!(wait.retry_after_seconds, DEFAULT_WAIT.as_secs());
        // The sixth default wait would end past the hour.
        let late = now + Duration::from_secs(3_000) + Duration::from_secs(1);
        assert_eq!(
            plan("x", None, Some(now), late),
            Plan::Fail("x; the CA named no time to retry".into())
        );
        assert!(matches!(
            plan("x", Some(now + Duration::from_secs(5)), None, now),
            Plan::Fail(_)
        ));
    }

    #[test]
    fn a_time_already_past_or_too_close_waits_five_seconds() {
        let now = at("2026-11-27T10:00:00Z");
        let past = now - Duration::from_secs(30);
        for retry_at in [past, now, now + Duration::from_secs(2)] {
            let Plan::Wait(wait) = plan("x", Some(retry_at), Some(past), now) else {
                panic!("not waited")
            };
            assert_eq!(wait.retry_after_seconds, MIN_WAIT.as_secs());
        }
    }

    #[test]
    fn the_cas_time_is_found_again_in_the_failure_message() {
        let when = at("2026-11-29T04:00:00Z");
        let message = format!(
            "placing the order: {}",
            refusal("too many certificates (5) for this exact set", Some(when))
        );
        assert_eq!(retry_at_in(&message), Some(when));
        assert_eq!(
            retry_at_in(&refusal("too many certificates", None)),
            None,
            "no time named, none found"
        );
        assert_eq!(retry_at_in("the CA asks to retry after tomorrow"), None);
        // Only at the very end: the CA's own words cannot pass for ours.
        let quoted = refusal(
            "detail: x; the CA asks to retry after 2026-11-29T04:00:00Z",
            None,
        );
        assert_eq!(retry_at_in(&quoted), None);
    }

    #[test]
    fn the_registry_holds_back_a_week_at_most_and_never_for_a_time_past() {
        let now = at("2026-11-27T10:00:00Z");
        let message = |at: &str| refusal("x", Some(super::parse_rfc3339(at).unwrap()));
        assert_eq!(
            hold_until(&message("2026-11-28T20:00:00Z"), now),
            Some(at("2026-11-28T20:00:00Z"))
        );
        assert_eq!(
            hold_until(&message("2099-01-01T00:00:00Z"), now),
            Some(at("2026-12-04T10:00:00Z"))
        );
        assert_eq!(hold_until(&message("2026-11-27T09:00:00Z"), now), None);
        assert_eq!(hold_until(&refusal("x", None), now), None);
    }

    #[test]
    fn a_later_steps_rate_limit_names_the_cas_time_and_other_errors_pass() {
        let when = at("2026-11-29T04:00:00Z");
        let named = with_retry_at(CertshipError::RateLimited("finalizing".into()), Some(when));
        assert_eq!(
            named,
            CertshipError::RateLimited(
                "finalizing; the CA asks to retry after 2026-11-29T04:00:00Z".into()
            )
        );
        let other = CertshipError::AcmeFailed("finalizing".into());
        assert_eq!(with_retry_at(other.clone(), Some(when)), other);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = at("2026-11-27T10:00:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 0 ", now),
            Some(now),
            "whitespace around the value is allowed"
        );
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 04:00:00 GMT", now),
            Some(at("2026-11-29T04:00:00Z"))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(now + Duration::from_secs(crate::ca::MAX_RETRY_AFTER_SECS)),
            "too many seconds to count is very long, not none"
        );
        for bad in ["", "-5", "1.5", "soon", "2026-11-29T04:00:00Z"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
