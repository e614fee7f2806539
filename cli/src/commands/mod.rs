//! One module per command: its `#[derive(Args)]` struct beside its `run()`, so adding a flag
//! touches one file.

pub mod acme;
pub mod deploy;
pub mod follow;
pub mod history;
pub mod hosts;
pub mod local;
pub mod status;
pub mod unmap;

/// The exit code of a deployment that ended other than in success.
pub const DEPLOYMENT_FAILED: u8 = 3;

/// The exit code of an ACME issuance that ended other than in success: the same as a failed
/// deployment's, so that 3 always means "the workflow ran and failed".
pub const ISSUANCE_FAILED: u8 = DEPLOYMENT_FAILED;

/// Whether to colour what goes to `stream`: a terminal, and no `NO_COLOR`.
pub fn colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
