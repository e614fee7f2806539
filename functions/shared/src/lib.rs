//! certship's workflow contract, shared by every Lambda, the CLI and the local cloud, so that the
//! producer and the consumer of a state can never drift apart.
//!
//! Modules depend on one another in one direction only: `serial` on nothing of the crate's,
//! `env`, `arn` and `bundle` on `error`, `rules` on `arn` and `env`, `pem` and `host_report` on `serial`,
//! and the records (`mapping`, `event`, `evidence`) on the payload types and `host_report`.

pub mod acme;
pub mod acme_registry;
pub mod arn;
pub mod bundle;
pub mod env;
pub mod error;
pub mod event;
pub mod evidence;
pub mod host_report;
pub mod lambda;
pub mod mapping;
pub mod naming;
pub mod passphrase;
pub mod pem;
pub mod rate;
pub mod rules;
pub mod schedule;
pub mod serial;
pub mod time;
pub mod types;
pub mod waiting;

pub use error::CertshipError;
pub use event::DeploymentEvent;
pub use host_report::HostReport;
pub use serial::Serial;
pub use types::*;
