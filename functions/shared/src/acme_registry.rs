//! The registry of ACME certificates: one DynamoDB item per certificate certship has issued, with
//! the request that renews it and where its renewal stands. acme-certificate writes it when an
//! issuance ends; renewal-trigger's daily sweep reads it and re-issues what is due; the CLI lists
//! it and sets `Force`.
//!
//! A certificate enters the registry when it is first issued, not when it is first asked for: a
//! request that never succeeded (a typo in a name, a zone that does not cover it) is not retried
//! every day behind the operator's back.

use crate::CertshipError;
use crate::acme::IssueRequest;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The variable naming the registry table, on acme-certificate and renewal-trigger.
pub const TABLE_NAME_VAR: &str = "ACME_TABLE_NAME";

/// Attribute names.
pub mod attr {
    /// The partition key: the certificate's id (`acme:<id>` without the prefix).
    pub const CERTIFICATE_ID: &str = "CertificateId";
    /// The issuance request, as JSON: what a renewal starts the issuance workflow with.
    pub const REQUEST: &str = "Request";
    pub const RENEW_DAYS_BEFORE: &str = "RenewDaysBefore";
    /// Set by an operator (`certship acme renew`): the next sweep re-issues whatever is left.
    pub const FORCE: &str = "Force";
    pub const DOMAINS: &str = "Domains";
    /// The current certificate's `notAfter`, RFC 3339.
    pub const NOT_AFTER: &str = "NotAfter";
    pub const SERIAL: &str = "Serial";
    pub const SECRET_VERSION_ID: &str = "SecretVersionId";
    pub const ISSUED_AT: &str = "IssuedAt";
    pub const LAST_EXECUTION_ARN: &str = "LastExecutionArn";
    /// Consecutive failed issuances since the last success.
    pub const FAILED_ATTEMPTS: &str = "FailedAttempts";
    pub const LAST_FAILED_AT: &str = "LastFailedAt";
    /// `<errorType>: <cause>` of the last failure.
    pub const LAST_ERROR: &str = "LastError";
    /// The ACM certificate the certificate is imported as (`--import-to-acm`).
    pub const ACM_CERTIFICATE_ARN: &str = "AcmCertificateArn";
    /// RFC 3339: the CA refused the last attempt for a rate limit and asked not to come back
    /// before this (its `Retry-After`). No sweep starts a renewal before it, forced or not.
    pub const RETRY_AFTER: &str = "RetryAfter";
}

/// Longest wait between renewal attempts after failures in a row.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4 * 86_400);
/// Taken off every wait, so a daily sweep a little earlier in the day than the failure still
/// counts a day as passed.
const SWEEP_SLACK: Duration = Duration::from_secs(2 * 3_600);

/// One registered certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    pub certificate_id: String,
    pub request: IssueRequest,
    pub force: bool,
    pub not_after: Option<String>,
    pub serial: Option<String>,
    pub secret_version_id: Option<String>,
    pub issued_at: Option<String>,
    pub last_execution_arn: Option<String>,
    pub failed_attempts: u32,
    pub last_failed_at: Option<String>,
    pub last_error: Option<String>,
    pub acm_certificate_arn: Option<String>,
    pub retry_after: Option<String>,
}

/// What the sweep makes of a registration at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Renewal", rename_all = "PascalCase")]
pub enum Renewal {
    /// At least `RenewDaysBefore` whole days left.
    NotDue { days_left: i64 },
    /// Fewer than `RenewDaysBefore` whole days left (or no readable expiry).
    Due { days_left: Option<i64> },
    /// An operator asked for it.
    Forced { days_left: Option<i64> },
    /// Due, but failed recently: the next attempt waits for the backoff.
    BackingOff {
        days_left: Option<i64>,
        /// Seconds until the next attempt.
        retry_in: u64,
    },
}

impl Renewal {
    /// Whether the sweep starts an issuance.
    pub fn starts(self) -> bool {
        matches!(self, Renewal::Due { .. } | Renewal::Forced { .. })
    }
}

/// How long after `failed_attempts` failures in a row the next attempt waits: none after the
/// first (the next sweep tries again), then a day, two, and at most [`MAX_BACKOFF`], each less a
/// little slack for the sweep's own timing. A certificate renewed 30 days before expiry gets some
/// ten attempts before it expires; the CA's rate limits are not hammered by a broken one.
pub fn backoff(failed_attempts: u32) -> Duration {
    if failed_attempts <= 1 {
        return Duration::ZERO;
    }
    let days = 1u64 << (failed_attempts - 2).min(8);
    Duration::from_secs(days * 86_400)
        .min(MAX_BACKOFF)
        .saturating_sub(SWEEP_SLACK)
}

impl Registration {
    /// The registration in `item`; a malformed item is an error naming what is wrong.
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, CertshipError> {
        let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let certificate_id = s(attr::CERTIFICATE_ID).ok_or_else(|| {
            CertshipError::Service("registry item without a string CertificateId".into())
        })?;
        let request = s(attr::REQUEST).ok_or_else(|| {
            CertshipError::Service(format!("registry item {certificate_id} has no Request"))
        })?;
        let request: IssueRequest = serde_json::from_str(&request).map_err(|e| {
            CertshipError::Service(format!(
                "registry item {certificate_id} has an unreadable Request: {e}"
            ))
        })?;
        let failed_attempts = item
            .get(attr::FAILED_ATTEMPTS)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(Self {
            force: matches!(item.get(attr::FORCE), Some(AttributeValue::Bool(true))),
            not_after: s(attr::NOT_AFTER),
            serial: s(attr::SERIAL),
            secret_version_id: s(attr::SECRET_VERSION_ID),
            issued_at: s(attr::ISSUED_AT),
            last_execution_arn: s(attr::LAST_EXECUTION_ARN),
            failed_attempts,
            last_failed_at: s(attr::LAST_FAILED_AT),
            last_error: s(attr::LAST_ERROR),
            acm_certificate_arn: s(attr::ACM_CERTIFICATE_ARN),
            retry_after: s(attr::RETRY_AFTER),
            certificate_id,
            request,
        })
    }

    /// Whole days left before `notAfter` at `now` (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> Option<i64> {
        let not_after = crate::time::parse_rfc3339(self.not_after.as_deref()?)?;
        Some(match not_after.duration_since(now) {
            Ok(left) => i64::try_from(left.as_secs() / 86_400).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs().div_ceil(86_400)).unwrap_or(0),
        })
    }

    /// Whether the sweep at `now` re-issues this certificate. `Force` does unless the CA asked to
    /// wait (`RetryAfter`); a due one also waits out the [`backoff`] of its failures in a row.
    pub fn renewal(&self, now: SystemTime) -> Renewal {
        let days_left = self.days_left(now);
        let ca_wait = self
            .retry_after
            .as_deref()
            .and_then(crate::time::parse_rfc3339)
            .and_then(|at| at.duration_since(now).ok())
            .filter(|wait| !wait.is_zero());
        if self.force {
            return match ca_wait {
                Some(wait) => Renewal::BackingOff {
                    days_left,
                    retry_in: wait.as_secs().max(1),
                },
                None => Renewal::Forced { days_left },
            };
        }
        match days_left {
            Some(days) if days >= i64::from(self.request.renew_days_before()) => {
                return Renewal::NotDue { days_left: days };
            }
            _ => {}
        }
        let next_attempt = self
            .last_failed_at
            .as_deref()
            .and_then(crate::time::parse_rfc3339)
            .map(|failed| failed + backoff(self.failed_attempts));
        let backoff_wait = next_attempt.and_then(|next| next.duration_since(now).ok());
        match backoff_wait.max(ca_wait) {
            Some(wait) if !wait.is_zero() => Renewal::BackingOff {
                days_left,
                retry_in: wait.as_secs().max(1),
            },
            _ => Renewal::Due { days_left },
        }
    }
}

/// The name of a renewal's issuance: the certificate and the sweep's scheduled time, so a sweep
/// delivered twice (Scheduler retries, Lambda retries) starts each renewal once. At most 80
/// characters, as Step Functions allows.
pub fn renewal_execution_name(certificate_id: &str, scheduled_time: &str) -> String {
    let stamp: String = scheduled_time
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let suffix = format!("-{}", &stamp[..stamp.len().min(16)]);
    let room = 80 - "renew-".len() - suffix.len();
    // The id ends in 12 hex digits that make it unique: keep those, cut the readable front.
    let id = if certificate_id.len() > room {
        &certificate_id[certificate_id.len() - room..]
    } else {
        certificate_id
    };
    let id = id.trim_start_matches(['-', '.']);
    format!("renew-{id}{suffix}").replace('.', "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::KeyType;

    const DAY: u64 = 86_400;

    fn at(s: &str) -> SystemTime {
        crate::time::parse_rfc3339(s).unwrap()
    }

    fn registration(not_after: Option<&str>) -> Registration {
        Registration {
            certificate_id: "www.example.com-0123456789ab".into(),
            request: IssueRequest {
                domains: vec!["www.example.com".into()],
                hosted_zone_id: "Z0123".into(),
                key_type: KeyType::EcP256,
                directory: "letsencrypt".into(),
                contact: vec![],
                renew_days_before: None,
                import_to_acm: false,
            },
            force: false,
            not_after: not_after.map(str::to_string),
            serial: None,
            secret_version_id: None,
            issued_at: None,
            last_execution_arn: None,
            failed_attempts: 0,
            last_failed_at: None,
            last_error: None,
            acm_certificate_arn: None,
            retry_after: None,
        }
    }

    #[test]
    fn due_with_fewer_than_renew_days_before_days_left() {
        let now = at("2026-11-01T00:00:00Z");
        let mut r = registration(Some("2026-12-01T00:00:00Z"));
        assert_eq!(r.renewal(now), Renewal::NotDue { days_left: 30 });
        r.not_after = Some("2026-11-30T23:00:00Z".into());
        assert_eq!(
            r.renewal(now),
            Renewal::Due {
                days_left: Some(29)
            }
        );
        r.not_after = Some("2026-12-02T00:00:00Z".into());
        assert_eq!(r.renewal(now), Renewal::NotDue { days_left: 31 });
        r.request.renew_days_before = Some(32);
        assert_eq!(
            r.renewal(now),
            Renewal::Due {
                days_left: Some(31)
            }
        );
        r.not_after = Some("2026-10-30T12:00:00Z".into());
        assert_eq!(
            r.renewal(now),
            Renewal::Due {
                days_left: Some(-2)
            }
        );
        r.not_after = Some("not a date".into());
        assert_eq!(r.renewal(now), Renewal::Due { days_left: None });
    }

    #[test]
    fn force_renews_whatever_is_left_and_ignores_the_backoff() {
        let now = at("2026-11-01T00:00:00Z");
        let mut r = registration(Some("2027-01-30T00:00:00Z"));
        r.force = true;
        r.failed_attempts = 5;
        r.last_failed_at = Some("2026-10-31T23:00:00Z".into());
        let renewal = r.renewal(now);
        assert_eq!(
            renewal,
            Renewal::Forced {
                days_left: Some(90)
            }
        );
        assert!(renewal.starts());
    }

    #[test]
    fn failures_in_a_row_back_off_up_to_four_days() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::ZERO);
        let hours = |n| backoff(n).as_secs() / 3_600;
        assert_eq!(
            [2, 3, 4, 5, 30].map(hours),
            [22, 46, 94, 94, 94],
            "1, 2, 4 days, capped, each less 2 h"
        );

        let mut r = registration(Some("2026-11-20T00:00:00Z"));
        r.failed_attempts = 3;
        r.last_failed_at = Some("2026-11-01T00:05:00Z".into());
        let next_day = at("2026-11-02T00:00:00Z");
        assert_eq!(
            r.renewal(next_day),
            Renewal::BackingOff {
                days_left: Some(18),
                retry_in: DAY + 300 - 2 * 3_600,
            }
        );
        assert!(!r.renewal(next_day).starts());
        // Two days after the failure, at the sweep's usual time: due again.
        assert_eq!(
            r.renewal(at("2026-11-03T00:00:00Z")),
            Renewal::Due {
                days_left: Some(17)
            }
        );
        // One failure: the very next sweep tries again.
        r.failed_attempts = 1;
        assert!(r.renewal(next_day).starts());
    }

    #[test]
    fn the_cas_retry_after_holds_back_every_renewal_until_it_passes() {
        let mut r = registration(Some("2026-11-20T00:00:00Z"));
        r.failed_attempts = 1;
        r.last_failed_at = Some("2026-11-01T00:00:00Z".into());
        r.retry_after = Some("2026-11-02T10:00:00Z".into());
        let next_day = at("2026-11-02T00:00:00Z");
        // One failure alone would retry at once; the CA's time is later, and wins.
        assert_eq!(
            r.renewal(next_day),
            Renewal::BackingOff {
                days_left: Some(18),
                retry_in: 10 * 3_600,
            }
        );
        r.force = true;
        assert_eq!(
            r.renewal(next_day),
            Renewal::BackingOff {
                days_left: Some(18),
                retry_in: 10 * 3_600,
            },
            "forcing does not make the CA take it sooner"
        );
        assert_eq!(
            r.renewal(at("2026-11-02T10:00:00Z")),
            Renewal::Forced {
                days_left: Some(17)
            }
        );
        // A backoff longer than the CA's time still counts.
        r.force = false;
        r.failed_attempts = 4;
        assert_eq!(
            r.renewal(next_day),
            Renewal::BackingOff {
                days_left: Some(18),
                retry_in: 3 * DAY - 2 * 3_600,
            }
        );
    }

    #[test]
    fn an_item_reads_back_and_a_broken_one_says_why() {
        let r = registration(Some("2026-12-01T00:00:00Z"));
        let s = |v: &str| AttributeValue::S(v.into());
        let mut item = HashMap::from([
            (attr::CERTIFICATE_ID.to_string(), s(&r.certificate_id)),
            (
                attr::REQUEST.to_string(),
                s(&serde_json::to_string(&r.request).unwrap()),
            ),
            (attr::NOT_AFTER.to_string(), s("2026-12-01T00:00:00Z")),
            (
                attr::FAILED_ATTEMPTS.to_string(),
                AttributeValue::N("2".into()),
            ),
            (attr::FORCE.to_string(), AttributeValue::Bool(true)),
        ]);
        let read = Registration::from_item(&item).unwrap();
        assert_eq!(read.request, r.request);
        assert_eq!(read.failed_attempts, 2);
        assert!(read.force);
        assert_eq!(read.not_after.as_deref(), Some("2026-12-01T00:00:00Z"));

        item.insert(attr::REQUEST.to_string(), s("{\"Domains\": 3}"));
        let err = Registration::from_item(&item).unwrap_err().to_string();
        assert!(
            err.contains("www.example.com-0123456789ab") && err.contains("Request"),
            "{err}"
        );
        item.remove(attr::CERTIFICATE_ID);
        assert!(Registration::from_item(&item).is_err());
    }

    #[test]
    fn renewal_names_are_unique_per_sweep_and_fit_step_functions() {
        let a = renewal_execution_name("www.example.com-0123456789ab", "2026-11-27T03:00:00Z");
        assert_eq!(a, "renew-www-example-com-0123456789ab-20261127T030000Z");
        assert_ne!(
            a,
            renewal_execution_name("www.example.com-0123456789ab", "2026-11-28T03:00:00Z")
        );
        let long = format!("{}-0123456789ab", "a".repeat(200));
        let name = renewal_execution_name(&long, "2026-11-27T03:00:00Z");
        assert!(name.len() <= 80, "{name}");
        assert!(name.contains("-0123456789ab-20261127T030000Z"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}"
        );
    }
}
