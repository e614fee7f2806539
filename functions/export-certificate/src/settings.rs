//! What export-certificate takes from its environment, read and checked once at cold start.

use certship_shared::CertshipError;
use certship_shared::rules::RequestRules;

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// What a request may ask for here: `AWS_REGION` (set by Lambda) and
    /// `ALLOWED_RELOAD_SERVICES` (the template's default when unset).
    pub rules: RequestRules,
}

impl Settings {
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self {
            rules: RequestRules::from_env()?,
        })
    }
}
