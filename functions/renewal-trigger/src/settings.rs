//! What renewal-trigger takes from its environment, read and checked once at cold start.

use certship_shared::acme_registry;
use certship_shared::mapping::TABLE_NAME_VAR;
use certship_shared::{CertshipError, env};

/// The deployment state machine renewals start.
pub const STATE_MACHINE_ARN_VAR: &str = "STATE_MACHINE_ARN";
/// The ACME issuance state machine the sweep starts renewals of.
pub const ACME_STATE_MACHINE_ARN_VAR: &str = "ACME_STATE_MACHINE_ARN";

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The mapping table, queried by certificate (`TABLE_NAME`, required).
    pub table_name: String,
    /// The deployment state machine (`STATE_MACHINE_ARN`, required).
    pub state_machine_arn: String,
    /// The ACME certificates' registry, swept on schedule (`ACME_TABLE_NAME`, required).
    pub acme_table_name: String,
    /// The ACME issuance state machine (`ACME_STATE_MACHINE_ARN`, required).
    pub acme_state_machine_arn: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self {
            table_name: env::required(TABLE_NAME_VAR)?,
            state_machine_arn: env::required(STATE_MACHINE_ARN_VAR)?,
            acme_table_name: env::required(acme_registry::TABLE_NAME_VAR)?,
            acme_state_machine_arn: env::required(ACME_STATE_MACHINE_ARN_VAR)?,
        })
    }
}
