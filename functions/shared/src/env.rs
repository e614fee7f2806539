//! Reading the environment at cold start: the helpers only. Each binary names the variables it
//! reads in its own `Settings`; the names two crates share live beside the rule that reads them
//! ([`crate::rules::ALLOWED_RELOAD_SERVICES_VAR`], [`crate::mapping::TABLE_NAME_VAR`]).

use crate::CertshipError;
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

    // Each test reads a variable no other test (nor the process) sets.

    #[test]
    fn unset_and_blank_are_the_same() {
        assert_eq!(optional("CERTSHIP_TEST_ENV_SURELY_UNSET"), None);
        let err = required("CERTSHIP_TEST_ENV_SURELY_UNSET").unwrap_err();
        assert_eq!(err.name(), "ConfigurationError");
        assert!(
            err.to_string()
                .contains("CERTSHIP_TEST_ENV_SURELY_UNSET must be set")
        );
    }

    #[test]
    fn a_number_defaults_when_unset() {
        assert_eq!(number("CERTSHIP_TEST_ENV_NUMBER_UNSET", 7u32).unwrap(), 7);
    }
}
