//! `certship local`: the whole system on one machine with no AWS account. moto server emulates
//! the AWS APIs behind a gateway that serves certship's Lambdas (their real handlers), SSM Run
//! Command and State Manager (the real install document, run per simulated host by an emulated
//! agent) and DescribeInstanceInformation.

pub mod api;
pub mod calls;
pub mod cloud;
pub mod evidence;
pub mod functions;
pub mod gateway;
pub mod host_runner;
pub mod hosts;
pub mod provision;
pub mod queue;
pub mod renewal;
pub mod run_command;
pub mod running;
pub mod state_manager;
pub mod supervise;

pub use api::{API_PATH, CERTIFICATES_PATH};
/// The JSON-over-HTTP client of the local cloud's own endpoints (and moto's).
pub use certship_moto::http;
pub use cloud::{AssociationOverrides, LocalCloud, LocalOptions, sdk_config};
/// The association's settings ([`LocalOptions::association`]), as dispatch-install reads them.
pub use dispatch_install::AssociationSettings;

/// The account the emulator uses.
pub const ACCOUNT_ID: &str = "123456789012";
