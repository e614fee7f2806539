//! What dispatch-install takes from its environment: the mapping table, the request rules and how
//! the install command is sent (template parameters), checked at cold start against the patterns
//! SSM and the install document accept.

use certship_shared::mapping::TABLE_NAME_VAR;
use certship_shared::rules::RequestRules;
use certship_shared::{CertshipError, env};

/// The environment variables the command settings come from (set by the template, and by
/// `certship local up`'s flags).
pub const INSTALL_DOCUMENT_NAME_VAR: &str = "INSTALL_DOCUMENT_NAME";
pub const COMMAND_TIMEOUT_SECONDS_VAR: &str = "COMMAND_TIMEOUT_SECONDS";
pub const INSTALL_DEADLINE_SECONDS_VAR: &str = "INSTALL_DEADLINE_SECONDS";
pub const MAX_CONCURRENCY_VAR: &str = "MAX_CONCURRENCY";
pub const MAX_ERRORS_VAR: &str = "MAX_ERRORS";
pub const CERTIFICATE_DIRECTORY_VAR: &str = "CERTIFICATE_DIRECTORY";
pub const PRIVATE_KEY_DIRECTORY_VAR: &str = "PRIVATE_KEY_DIRECTORY";
pub const FILE_OWNER_VAR: &str = "FILE_OWNER";
pub const FILE_GROUP_VAR: &str = "FILE_GROUP";

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The mapping table (`TABLE_NAME`, required).
    pub table_name: String,
    /// What a request may ask for here (`AWS_REGION`, `ALLOWED_RELOAD_SERVICES`).
    pub rules: RequestRules,
    pub command: CommandSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self {
            table_name: env::required(TABLE_NAME_VAR)?,
            rules: RequestRules::from_env()?,
            command: CommandSettings::from_env()?,
        })
    }
}
use certship_shared::rate::Rate;

/// SendCommand settings and the document parameters that come from the deployment, not the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSettings {
    pub document_name: String,
    /// SendCommand `TimeoutSeconds`: how long a host may take to start the command.
    pub timeout_seconds: i32,
    /// How long after dispatch check-install-status gives up (`$.Dispatch.DeadlineAt`).
    pub deadline_seconds: u64,
    pub max_concurrency: String,
    pub max_errors: String,
    pub certificate_directory: Option<String>,
    pub private_key_directory: Option<String>,
    pub file_owner: Option<String>,
    pub file_group: Option<String>,
}

pub const DEFAULT_DOCUMENT_NAME: &str = "Install-Certificate-Linux";
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 600;
pub const DEFAULT_DEADLINE_SECONDS: u64 = 1200;
/// Half the fleet at a time, and stop sending after the first failed host, so a certificate that
/// breaks a service does not spread; the failed host itself rolls back.
pub const DEFAULT_MAX_CONCURRENCY: &str = "50%";
pub const DEFAULT_MAX_ERRORS: &str = "0";

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

impl CommandSettings {
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
        let number = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, CertshipError> {
            match lookup(name) {
                None => Ok(default),
                Some(raw) => match raw.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(config_error(
                        name,
                        &raw,
                        &format!("a whole number of seconds from {min} to {max}"),
                    )),
                },
            }
        };
        let timeout_seconds = number(
            COMMAND_TIMEOUT_SECONDS_VAR,
            DEFAULT_TIMEOUT_SECONDS as u64,
            30,
            2_592_000,
        )?;
        let deadline_seconds = number(
            INSTALL_DEADLINE_SECONDS_VAR,
            DEFAULT_DEADLINE_SECONDS,
            60,
            2_592_000,
        )?;
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
        Ok(Self {
            document_name,
            timeout_seconds: timeout_seconds as i32,
            deadline_seconds,
            max_concurrency,
            max_errors,
            certificate_directory: checked(CERTIFICATE_DIRECTORY_VAR, is_directory, directory)?,
            private_key_directory: checked(PRIVATE_KEY_DIRECTORY_VAR, is_directory, directory)?,
            file_owner: checked(FILE_OWNER_VAR, is_account_name, account)?,
            file_group: checked(FILE_GROUP_VAR, is_account_name, account)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<CommandSettings, CertshipError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CommandSettings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.document_name, "Install-Certificate-Linux");
        assert_eq!((s.timeout_seconds, s.deadline_seconds), (600, 1200));
        assert_eq!(
            (s.max_concurrency.as_str(), s.max_errors.as_str()),
            ("50%", "0")
        );
        assert_eq!(s.certificate_directory, None);
    }

    #[test]
    fn values_from_the_environment_are_checked() {
        let s = settings(&[
            (COMMAND_TIMEOUT_SECONDS_VAR, "120"),
            (MAX_CONCURRENCY_VAR, "10"),
            (MAX_ERRORS_VAR, "25%"),
            (CERTIFICATE_DIRECTORY_VAR, "/etc/pki/tls/certs"),
            (FILE_GROUP_VAR, "ssl-cert"),
        ])
        .unwrap();
        assert_eq!(s.timeout_seconds, 120);
        assert_eq!(s.max_errors, "25%");
        assert_eq!(
            s.certificate_directory.as_deref(),
            Some("/etc/pki/tls/certs")
        );
        for (name, bad) in [
            (COMMAND_TIMEOUT_SECONDS_VAR, "10"),
            (COMMAND_TIMEOUT_SECONDS_VAR, "ten"),
            (INSTALL_DEADLINE_SECONDS_VAR, "0"),
            (MAX_CONCURRENCY_VAR, "0"),
            (MAX_CONCURRENCY_VAR, "101%"),
            (MAX_ERRORS_VAR, "05"),
            (CERTIFICATE_DIRECTORY_VAR, "etc/ssl"),
            (PRIVATE_KEY_DIRECTORY_VAR, "/etc/../root"),
            (FILE_OWNER_VAR, "root;reboot"),
            (INSTALL_DOCUMENT_NAME_VAR, "doc name"),
        ] {
            let err = settings(&[(name, bad)]).unwrap_err();
            assert_eq!(err.name(), "ConfigurationError");
            assert!(err.to_string().contains(name), "{err}");
        }
        assert!(settings(&[(MAX_ERRORS_VAR, "0%")]).is_ok());
        assert!(settings(&[(MAX_CONCURRENCY_VAR, "100%")]).is_ok());
    }
}
