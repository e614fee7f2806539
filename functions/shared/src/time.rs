//! Timestamps as the contract writes them: RFC 3339, UTC, `Z`, whole seconds.

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use std::time::SystemTime;

/// `t` as `2026-01-31T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    format_date_time(&DateTime::from(t))
}

/// An SDK timestamp as `2026-01-31T12:00:00Z` (sub-second precision dropped).
pub fn format_date_time(t: &DateTime) -> String {
    DateTime::from_secs(t.secs())
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parses an RFC 3339 timestamp written by [`rfc3339`] (or any RFC 3339 with an offset of `Z`).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    DateTime::from_str(s, Format::DateTime)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_whole_seconds_in_utc_and_parses_back() {
        let t = UNIX_EPOCH + Duration::from_millis(1_767_225_600_250);
        let s = rfc3339(t);
        assert_eq!(s, "2026-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339(&s),
            Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
