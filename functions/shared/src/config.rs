//! Configuration read once from the environment at cold start, and the request rules that depend
//! on the deployment (its partition and the reload allowlist).

use crate::CertshipError;
use std::str::FromStr;

/// Environment variable names, shared with the template and the local cloud.
pub mod env {
    pub const ALLOWED_RELOAD_SERVICES: &str = "ALLOWED_RELOAD_SERVICES";
    pub const TABLE_NAME: &str = "TABLE_NAME";
    pub const INSTALL_DOCUMENT_NAME: &str = "INSTALL_DOCUMENT_NAME";
    pub const COMMAND_TIMEOUT_SECONDS: &str = "COMMAND_TIMEOUT_SECONDS";
    pub const INSTALL_DEADLINE_SECONDS: &str = "INSTALL_DEADLINE_SECONDS";
    pub const MAX_CONCURRENCY: &str = "MAX_CONCURRENCY";
    pub const MAX_ERRORS: &str = "MAX_ERRORS";
    pub const CERTIFICATE_DIRECTORY: &str = "CERTIFICATE_DIRECTORY";
    pub const PRIVATE_KEY_DIRECTORY: &str = "PRIVATE_KEY_DIRECTORY";
    pub const FILE_OWNER: &str = "FILE_OWNER";
    pub const FILE_GROUP: &str = "FILE_GROUP";
    pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
    pub const STATE_MACHINE_ARN: &str = "STATE_MACHINE_ARN";
    pub const AWS_REGION: &str = "AWS_REGION";
}

/// The default of the template's `AllowedReloadServices`.
pub const DEFAULT_RELOAD_ALLOWLIST: &str = "nginx,apache2,httpd,haproxy";

/// A required environment variable.
pub fn required(name: &str) -> Result<String, CertshipError> {
    optional(name).ok_or_else(|| CertshipError::Configuration(format!("{name} must be set")))
}

/// An environment variable that may be unset; empty counts as unset.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A number from the environment, or its default when unset.
pub fn number<T: FromStr>(name: &str, default: T) -> Result<T, CertshipError> {
    match optional(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| {
            CertshipError::Configuration(format!("{name} must be a number, not {raw:?}"))
        }),
    }
}

/// The systemd units a deployment may reload (template parameter `AllowedReloadServices`).
/// Whoever may call the API must not thereby be able to stop or reboot hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAllowlist(Vec<String>);

/// A unit name that is safe on a command line and in a document parameter.
fn is_unit_name(unit: &str) -> bool {
    let bytes = unit.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 100
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'.' | b'-'))
        && !unit.contains("..")
}

/// `nginx` and `nginx.service` name the same unit; any other unit type is not a service.
fn service_stem(unit: &str) -> Option<&str> {
    match unit.strip_suffix(".service") {
        Some(stem) => Some(stem),
        None if !unit.contains('.') => Some(unit),
        None => None,
    }
}

impl ReloadAllowlist {
    /// Parses a comma-separated list of service names; an entry that is not a plain service unit
    /// is a configuration error.
    pub fn parse(list: &str) -> Result<Self, CertshipError> {
        let mut units = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match service_stem(entry) {
                Some(stem) if is_unit_name(entry) => units.push(stem.to_string()),
                _ => {
                    return Err(CertshipError::Configuration(format!(
                        "{} entry {entry:?} is not a systemd service name",
                        env::ALLOWED_RELOAD_SERVICES
                    )));
                }
            }
        }
        Ok(Self(units))
    }

    /// From `ALLOWED_RELOAD_SERVICES`, or the template's default when unset.
    pub fn from_env() -> Result<Self, CertshipError> {
        Self::parse(
            &optional(env::ALLOWED_RELOAD_SERVICES)
                .unwrap_or_else(|| DEFAULT_RELOAD_ALLOWLIST.to_string()),
        )
    }

    /// The allowed service names, without `.service`.
    pub fn units(&self) -> &[String] {
        &self.0
    }

    /// Accepts `unit` when it names an allowed service, returning it unchanged.
    pub fn check<'a>(&self, unit: &'a str) -> Result<&'a str, CertshipError> {
        match service_stem(unit) {
            Some(stem) if is_unit_name(unit) && self.0.iter().any(|u| u == stem) => Ok(unit),
            _ => Err(CertshipError::InvalidRequest(format!(
                "ReloadService {unit:?} is not allowed; allowed: {}",
                if self.0.is_empty() {
                    "none".to_string()
                } else {
                    self.0.join(", ")
                }
            ))),
        }
    }
}

/// What a request may ask for in this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRules {
    home_region: String,
    reload_allowlist: ReloadAllowlist,
}

impl RequestRules {
    pub fn new(home_region: impl Into<String>, reload_allowlist: ReloadAllowlist) -> Self {
        Self {
            home_region: home_region.into(),
            reload_allowlist,
        }
    }

    /// From `AWS_REGION` (set by Lambda) and `ALLOWED_RELOAD_SERVICES`.
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self::new(
            required(env::AWS_REGION)?,
            ReloadAllowlist::from_env()?,
        ))
    }

    /// The region the functions run in.
    pub fn home_region(&self) -> &str {
        &self.home_region
    }

    /// The partition of the region the functions run in; certificates must be in it.
    pub fn partition(&self) -> &'static str {
        crate::validate::partition_of_region(&self.home_region)
    }

    pub fn reload_allowlist(&self) -> &ReloadAllowlist {
        &self.reload_allowlist
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_takes_services_only() {
        let list = ReloadAllowlist::parse(" nginx, haproxy.service ,,").unwrap();
        assert_eq!(list.units(), ["nginx", "haproxy"]);
        assert_eq!(list.check("haproxy").unwrap(), "haproxy");
        assert_eq!(list.check("nginx.service").unwrap(), "nginx.service");
        assert!(list.check("nginx.socket").is_err());
        assert!(list.check("sshd").is_err());
        for bad in ["reboot.target", "a;b", "../x"] {
            assert!(
                matches!(
                    ReloadAllowlist::parse(bad),
                    Err(CertshipError::Configuration(_))
                ),
                "{bad}"
            );
        }
        let empty = ReloadAllowlist::parse("").unwrap();
        assert!(
            empty
                .check("nginx")
                .unwrap_err()
                .to_string()
                .contains("allowed: none")
        );
    }

    #[test]
    fn partition_follows_the_home_region() {
        let list = ReloadAllowlist::parse("").unwrap();
        assert_eq!(
            RequestRules::new("cn-north-1", list.clone()).partition(),
            "aws-cn"
        );
        assert_eq!(
            RequestRules::new("us-gov-east-1", list.clone()).partition(),
            "aws-us-gov"
        );
        assert_eq!(RequestRules::new("eu-west-3", list).partition(), "aws");
    }
}
