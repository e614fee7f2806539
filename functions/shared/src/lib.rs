//! certship's workflow contract, shared by every Lambda, the CLI and the local cloud, so that the
//! producer and the consumer of a state can never drift apart.

pub mod config;
pub mod error;
pub mod lambda;
pub mod mapping;
pub mod naming;
pub mod pem;
pub mod rate;
pub mod time;
pub mod types;
pub mod validate;

pub use error::CertshipError;
pub use types::*;
