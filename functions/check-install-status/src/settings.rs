//! What check-install-status takes from its environment, read and checked once at cold start.

use certship_shared::evidence::EVIDENCE_TABLE_VAR;
use certship_shared::mapping::TABLE_NAME_VAR;
use certship_shared::{CertshipError, env};

/// The bus deployment events go to (`default` when unset).
pub const EVENT_BUS_NAME_VAR: &str = "EVENT_BUS_NAME";
/// The bus deployment events go to when `EVENT_BUS_NAME` is unset.
pub const DEFAULT_EVENT_BUS: &str = "default";

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The mapping table, where `LastDeployment` is recorded (`TABLE_NAME`, required).
    pub table_name: String,
    /// The evidence table, read by mapping (`EVIDENCE_TABLE_NAME`, required).
    pub evidence_table_name: String,
    /// Where the deployment event is published.
    pub event_bus_name: String,
}

impl Settings {
    /// `TABLE_NAME` and `EVIDENCE_TABLE_NAME` are required, `EVENT_BUS_NAME` defaults to [`DEFAULT_EVENT_BUS`].
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self {
            table_name: env::required(TABLE_NAME_VAR)?,
            evidence_table_name: env::required(EVIDENCE_TABLE_VAR)?,
            event_bus_name: env::optional(EVENT_BUS_NAME_VAR)
                .unwrap_or_else(|| DEFAULT_EVENT_BUS.to_string()),
        })
    }
}
