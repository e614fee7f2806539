//! What dispatch-install takes from its environment: the mapping table, the request rules and the
//! association it keeps as each mapping's desired state (template parameters), checked at cold
//! start against the patterns SSM and the install document accept.

use certship_shared::mapping::TABLE_NAME_VAR;
use certship_shared::rate::Rate;
use certship_shared::rules::RequestRules;
pub use certship_shared::schedule::DEFAULT_RECONCILE_SCHEDULE;
use certship_shared::schedule::ReconcileSchedule;
use certship_shared::{CertshipError, env};

/// The environment variables the association settings come from (set by the template, and by
/// `certship local up`'s flags).
pub const INSTALL_DOCUMENT_NAME_VAR: &str = "INSTALL_DOCUMENT_NAME";
pub const INSTALL_DEADLINE_SECONDS_VAR: &str = "INSTALL_DEADLINE_SECONDS";
pub const MAX_CONCURRENCY_VAR: &str = "MAX_CONCURRENCY";
pub const MAX_ERRORS_VAR: &str = "MAX_ERRORS";
pub const CERTIFICATE_DIRECTORY_VAR: &str = "CERTIFICATE_DIRECTORY";
pub const PRIVATE_KEY_DIRECTORY_VAR: &str = "PRIVATE_KEY_DIRECTORY";
pub const FILE_OWNER_VAR: &str = "FILE_OWNER";
pub const FILE_GROUP_VAR: &str = "FILE_GROUP";
pub const STATE_DIRECTORY_VAR: &str = "STATE_DIRECTORY";
pub const BACKOFF_MINUTES_VAR: &str = "BACKOFF_MINUTES";
pub const RECONCILE_SCHEDULE_VAR: &str = "RECONCILE_SCHEDULE";
pub const ASSOCIATION_OUTPUT_BUCKET_VAR: &str = "ASSOCIATION_OUTPUT_BUCKET";
pub const ASSOCIATION_DISPATCH_ROLE_ARN_VAR: &str = "ASSOCIATION_DISPATCH_ROLE_ARN";

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The mapping table (`TABLE_NAME`, required).
    pub table_name: String,
    /// What a request may ask for here (`AWS_REGION`, `ALLOWED_RELOAD_SERVICES`).
    pub rules: RequestRules,
    pub association: AssociationSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self {
            table_name: env::required(TABLE_NAME_VAR)?,
            rules: RequestRules::from_env()?,
            association: AssociationSettings::from_env()?,
        })
    }
}

/// How each mapping's association is set, and the document parameters that come from the
/// deployment rather than the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationSettings {
    pub document_name: String,
    /// How long after dispatch check-install-status gives up (`$.Dispatch.DeadlineAt`).
    pub deadline_seconds: u64,
    pub max_concurrency: String,
    pub max_errors: String,
    /// The association's `ScheduleExpression`: how often every target re-verifies its files.
    pub reconcile_schedule: String,
    /// Where the agent writes each run's output (`OutputS3BucketName`), which
    /// record-host-evidence reads.
    pub output_bucket: String,
    /// The role State Manager assumes to run the association (`AssociationDispatchAssumeRole`);
    /// unset, the service-linked role, which AWS is phasing out for State Manager.
    pub dispatch_role_arn: Option<String>,
    pub certificate_directory: Option<String>,
    pub private_key_directory: Option<String>,
    pub file_owner: Option<String>,
    pub file_group: Option<String>,
    /// The document's `StateDirectory`: where a host keeps its manifest and back-off markers.
    pub state_directory: Option<String>,
    /// The document's `BackoffMinutes`: how long a host leaves a rolled-back version alone.
    pub backoff_minutes: Option<u32>,
}

pub const DEFAULT_DOCUMENT_NAME: &str = "Install-Certificate-Linux";
pub const DEFAULT_DEADLINE_SECONDS: u64 = 1200;
/// Half the fleet at a time, so a certificate that breaks a service stops spreading once
/// `MaxErrors` hosts failed (they roll back). State Manager applies the thresholds per run, so the
/// next scheduled run tries every target again.
pub const DEFAULT_MAX_CONCURRENCY: &str = "50%";
/// Not 0: an association's errors recur every interval, so one broken host would stop every run.
pub const DEFAULT_MAX_ERRORS: &str = "10%";
/// The longest back-off: what the install document's `BackoffMinutes` pattern admits (one rule,
/// in shared).
pub use certship_shared::host_report::MAX_BACKOFF_MINUTES;

fn config_error(name: &str, value: &str, rule: &str) -> CertshipError {
    CertshipError::Configuration(format!("{name}={value:?} is invalid: {rule}"))
}

fn is_directory(value: &str) -> bool {
    value.starts_with('/')
        && value.len() <= 255
        && !value.split('/').any(|part| part == "..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

fn is_account_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// An S3 bucket name: 3-63 of lowercase letters, digits, `.` and `-`, starting and ending with a
/// letter or digit.
fn is_bucket_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn is_role_arn(value: &str) -> bool {
    value.starts_with("arn:aws")
        && value.split(':').nth(2) == Some("iam")
        && value
            .split(':')
            .nth(5)
            .is_some_and(|r| r.starts_with("role/"))
        && value.len() <= 2048
}

impl AssociationSettings {
    pub fn from_env() -> Result<Self, CertshipError> {
        Self::from_lookup(env::optional)
    }

    /// Reads the settings through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CertshipError> {
        let document_name =
            lookup(INSTALL_DOCUMENT_NAME_VAR).unwrap_or_else(|| DEFAULT_DOCUMENT_NAME.into());
        if document_name.is_empty()
            || document_name.len() > 128
            || !document_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(config_error(
                INSTALL_DOCUMENT_NAME_VAR,
                &document_name,
                "not an SSM document name",
            ));
        }
        let deadline_seconds = match lookup(INSTALL_DEADLINE_SECONDS_VAR) {
            None => DEFAULT_DEADLINE_SECONDS,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (60..=2_592_000).contains(n))
                .ok_or_else(|| {
                    config_error(
                        INSTALL_DEADLINE_SECONDS_VAR,
                        &raw,
                        "a whole number of seconds from 60 to 2592000",
                    )
                })?,
        };
        let max_concurrency =
            lookup(MAX_CONCURRENCY_VAR).unwrap_or_else(|| DEFAULT_MAX_CONCURRENCY.into());
        if Rate::max_concurrency(&max_concurrency).is_none() {
            return Err(config_error(
                MAX_CONCURRENCY_VAR,
                &max_concurrency,
                "a count of 1 or more, or 1%-100%",
            ));
        }
        let max_errors = lookup(MAX_ERRORS_VAR).unwrap_or_else(|| DEFAULT_MAX_ERRORS.into());
        if Rate::max_errors(&max_errors).is_none() {
            return Err(config_error(
                MAX_ERRORS_VAR,
                &max_errors,
                "a count of 0 or more, or 0%-100%",
            ));
        }
        let reconcile_schedule =
            lookup(RECONCILE_SCHEDULE_VAR).unwrap_or_else(|| DEFAULT_RECONCILE_SCHEDULE.into());
        ReconcileSchedule::parse(&reconcile_schedule)
            .map_err(|rule| config_error(RECONCILE_SCHEDULE_VAR, &reconcile_schedule, &rule))?;
        let output_bucket = lookup(ASSOCIATION_OUTPUT_BUCKET_VAR).ok_or_else(|| {
            CertshipError::Configuration(format!(
                "{ASSOCIATION_OUTPUT_BUCKET_VAR} must be set: the bucket the hosts write their \
                 association output to"
            ))
        })?;
        if !is_bucket_name(&output_bucket) {
            return Err(config_error(
                ASSOCIATION_OUTPUT_BUCKET_VAR,
                &output_bucket,
                "an S3 bucket name",
            ));
        }
        let checked = |name: &str,
                       valid: fn(&str) -> bool,
                       rule: &str|
         -> Result<Option<String>, CertshipError> {
            match lookup(name) {
                Some(value) if !valid(&value) => Err(config_error(name, &value, rule)),
                other => Ok(other),
            }
        };
        let directory = "an absolute path of A-Z a-z 0-9 / . _ - without '..'";
        let account = "a user or group name ([a-z_][a-z0-9_-]{0,31})";
        let backoff_minutes = match lookup(BACKOFF_MINUTES_VAR) {
            None => None,
            Some(raw) => Some(
                raw.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= MAX_BACKOFF_MINUTES)
                    .ok_or_else(|| {
                        config_error(
                            BACKOFF_MINUTES_VAR,
                            &raw,
                            &format!("a whole number of minutes from 0 to {MAX_BACKOFF_MINUTES}"),
                        )
                    })?,
            ),
        };
        Ok(Self {
            document_name,
            deadline_seconds,
            max_concurrency,
            max_errors,
            reconcile_schedule,
            output_bucket,
            dispatch_role_arn: checked(
                ASSOCIATION_DISPATCH_ROLE_ARN_VAR,
                is_role_arn,
                "an IAM role ARN",
            )?,
            certificate_directory: checked(CERTIFICATE_DIRECTORY_VAR, is_directory, directory)?,
            private_key_directory: checked(PRIVATE_KEY_DIRECTORY_VAR, is_directory, directory)?,
            file_owner: checked(FILE_OWNER_VAR, is_account_name, account)?,
            file_group: checked(FILE_GROUP_VAR, is_account_name, account)?,
            state_directory: checked(STATE_DIRECTORY_VAR, is_directory, directory)?,
            backoff_minutes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const BUCKET: &str = "certship-association-output-123456789012-us-east-1";

    fn settings(pairs: &[(&str, &str)]) -> Result<AssociationSettings, CertshipError> {
        let mut map: HashMap<String, String> = HashMap::from([(
            ASSOCIATION_OUTPUT_BUCKET_VAR.to_string(),
            BUCKET.to_string(),
        )]);
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        AssociationSettings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_else_is_set() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.document_name, "Install-Certificate-Linux");
        assert_eq!(s.deadline_seconds, 1200);
        assert_eq!(
            (s.max_concurrency.as_str(), s.max_errors.as_str()),
            ("50%", "10%")
        );
        assert_eq!(s.reconcile_schedule, "rate(1 hour)");
        assert_eq!(s.output_bucket, BUCKET);
        assert_eq!(s.dispatch_role_arn, None);
        assert_eq!(s.certificate_directory, None);
        assert_eq!((s.state_directory, s.backoff_minutes), (None, None));
    }

    #[test]
    fn the_output_bucket_is_required() {
        let err = AssociationSettings::from_lookup(|_| None).unwrap_err();
        assert_eq!(err.name(), "ConfigurationError");
        assert!(
            err.to_string().contains(ASSOCIATION_OUTPUT_BUCKET_VAR),
            "{err}"
        );
    }

    #[test]
    fn values_from_the_environment_are_checked() {
        let role = "arn:aws:iam::123456789012:role/certship-association-dispatch";
        let s = settings(&[
            (MAX_CONCURRENCY_VAR, "10"),
            (MAX_ERRORS_VAR, "25%"),
            (CERTIFICATE_DIRECTORY_VAR, "/etc/pki/tls/certs"),
            (FILE_GROUP_VAR, "ssl-cert"),
            (RECONCILE_SCHEDULE_VAR, "cron(0 0/4 * * ? *)"),
            (ASSOCIATION_DISPATCH_ROLE_ARN_VAR, role),
            (STATE_DIRECTORY_VAR, "/var/lib/certship"),
            (BACKOFF_MINUTES_VAR, "120"),
        ])
        .unwrap();
        assert_eq!(s.max_errors, "25%");
        assert_eq!(
            s.certificate_directory.as_deref(),
            Some("/etc/pki/tls/certs")
        );
        assert_eq!(s.reconcile_schedule, "cron(0 0/4 * * ? *)");
        assert_eq!(s.dispatch_role_arn.as_deref(), Some(role));
        assert_eq!(s.state_directory.as_deref(), Some("/var/lib/certship"));
        assert_eq!(s.backoff_minutes, Some(120));
        for (name, bad) in [
            (INSTALL_DEADLINE_SECONDS_VAR, "0"),
            (INSTALL_DEADLINE_SECONDS_VAR, "ten"),
            (MAX_CONCURRENCY_VAR, "0"),
            (MAX_CONCURRENCY_VAR, "101%"),
            (MAX_ERRORS_VAR, "05"),
            (CERTIFICATE_DIRECTORY_VAR, "etc/ssl"),
            (PRIVATE_KEY_DIRECTORY_VAR, "/etc/../root"),
            (STATE_DIRECTORY_VAR, "var/lib"),
            (FILE_OWNER_VAR, "root;reboot"),
            (INSTALL_DOCUMENT_NAME_VAR, "doc name"),
            (BACKOFF_MINUTES_VAR, "-1"),
            (BACKOFF_MINUTES_VAR, "100000"),
            (ASSOCIATION_OUTPUT_BUCKET_VAR, "Not_A_Bucket"),
            (ASSOCIATION_DISPATCH_ROLE_ARN_VAR, "certship-dispatch"),
            (RECONCILE_SCHEDULE_VAR, "hourly"),
        ] {
            let err = settings(&[(name, bad)]).unwrap_err();
            assert_eq!(err.name(), "ConfigurationError");
            assert!(err.to_string().contains(name), "{err}");
        }
        assert!(settings(&[(MAX_ERRORS_VAR, "0%")]).is_ok());
        assert!(settings(&[(MAX_CONCURRENCY_VAR, "100%")]).is_ok());
    }

    /// The rule itself is `certship_shared::schedule`'s (tested there); here, that a refused
    /// schedule stops the cold start with a ConfigurationError naming the variable.
    #[test]
    fn a_schedule_state_manager_would_refuse_is_refused_at_cold_start() {
        assert!(settings(&[(RECONCILE_SCHEDULE_VAR, "cron(0 2 ? * SUN *)")]).is_ok());
        let err = settings(&[(RECONCILE_SCHEDULE_VAR, "rate(10 minutes)")]).unwrap_err();
        assert_eq!(err.name(), "ConfigurationError");
        assert!(
            err.to_string().contains(RECONCILE_SCHEDULE_VAR)
                && err.to_string().contains("30 minutes"),
            "{err}"
        );
    }
}
