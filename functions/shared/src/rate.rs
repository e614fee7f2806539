//! SSM's `MaxConcurrency` and `MaxErrors` grammar, parsed once: dispatch-install checks its
//! settings with it and the local cloud's Run Command schedules hosts with it.

use std::fmt;

/// A `MaxConcurrency` or `MaxErrors` value: a number of hosts or a percentage of the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Count(u32),
    Percent(u8),
}

impl Rate {
    /// `MaxConcurrency`: `^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$` (SendCommand's API reference).
    pub fn max_concurrency(value: &str) -> Option<Self> {
        Self::parse(value, false)
    }

    /// `MaxErrors`: as `MaxConcurrency`, with `0` and `0%` allowed.
    pub fn max_errors(value: &str) -> Option<Self> {
        Self::parse(value, true)
    }

    fn parse(value: &str, zero_allowed: bool) -> Option<Self> {
        let (digits, percent) = match value.strip_suffix('%') {
            Some(d) => (d, true),
            None => (value, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
            return None;
        }
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        if n == 0 && !zero_allowed {
            return None;
        }
        if percent {
            u8::try_from(n)
                .ok()
                .filter(|p| *p <= 100)
                .map(Rate::Percent)
        } else {
            Some(Rate::Count(n))
        }
    }

    /// The number of hosts this allows out of `total` (`50%` of 3 is 2: SSM rounds up).
    pub fn hosts(self, total: usize) -> usize {
        match self {
            Rate::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Rate::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Count(n) => write!(f, "{n}"),
            Rate::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_ssms() {
        for ok in ["1", "10", "123456789", "1%", "50%", "100%"] {
            assert!(Rate::max_concurrency(ok).is_some(), "{ok}");
            assert!(Rate::max_errors(ok).is_some(), "{ok}");
        }
        for zero in ["0", "0%"] {
            assert_eq!(Rate::max_concurrency(zero), None, "{zero}");
            assert!(Rate::max_errors(zero).is_some(), "{zero}");
        }
        for bad in [
            "",
            "%",
            "05",
            "101%",
            "1000%",
            "x",
            "+5",
            "-1",
            "5 ",
            "1234567890",
        ] {
            assert_eq!(Rate::max_concurrency(bad), None, "{bad}");
            assert_eq!(Rate::max_errors(bad), None, "{bad}");
        }
        assert_eq!(
            Rate::max_errors("25%").map(|r| r.to_string()),
            Some("25%".into())
        );
    }

    #[test]
    fn rates_are_host_counts() {
        let hosts = |rate: Option<Rate>, total| rate.map(|r| r.hosts(total));
        assert_eq!(hosts(Rate::max_concurrency("50%"), 3), Some(2));
        assert_eq!(hosts(Rate::max_concurrency("50%"), 0), Some(0));
        assert_eq!(hosts(Rate::max_concurrency("100%"), 2), Some(2));
        assert_eq!(hosts(Rate::max_concurrency("1"), 5), Some(1));
        assert_eq!(hosts(Rate::max_errors("0"), 5), Some(0));
    }
}
