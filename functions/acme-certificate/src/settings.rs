//! What acme-certificate takes from its environment, read and checked once at cold start.

use certship_shared::{CertshipError, acme_registry, env};
use std::path::PathBuf;

/// The function's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `ACME_CA_BUNDLE`: a PEM file with the one CA to trust for the ACME server's HTTPS, instead
    /// of the system's roots. Only for a private CA, such as the local cloud's Pebble; unset in
    /// AWS, where Let's Encrypt's HTTPS chains to the public roots.
    pub ca_bundle: Option<PathBuf>,
    /// `ACME_TABLE_NAME`: the registry of ACME certificates, which the renewal schedule sweeps.
    pub table_name: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, CertshipError> {
        let ca_bundle = std::env::var_os("ACME_CA_BUNDLE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let Some(path) = &ca_bundle
            && !path.is_file()
        {
            return Err(CertshipError::Configuration(format!(
                "ACME_CA_BUNDLE names {}, which is not a file",
                path.display()
            )));
        }
        Ok(Self {
            ca_bundle,
            table_name: env::required(acme_registry::TABLE_NAME_VAR)?,
        })
    }
}
