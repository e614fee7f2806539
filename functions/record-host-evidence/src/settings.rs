//! What record-host-evidence takes from its environment, read and checked once at cold start.

use certship_shared::evidence::EVIDENCE_TABLE_VAR;
use certship_shared::{CertshipError, env};

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The evidence table (`EVIDENCE_TABLE_NAME`, required).
    pub evidence_table_name: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self {
            evidence_table_name: env::required(EVIDENCE_TABLE_VAR)?,
        })
    }
}
