//! `certship local up` and `certship local down`.

use anyhow::Result;
use certship_local::running::CloudLock;
use certship_local::state_manager::AgentSettings;
use certship_local::{AssociationOverrides, LocalOptions, supervise};
use clap::Args;
use std::path::Path;

#[derive(Args)]
pub struct UpArgs {
    /// The gateway's port, where every AWS API of the local cloud answers (default: a free one)
    #[arg(long)]
    port: Option<u16>,
    /// Run in the background; `certship local down` stops it
    #[arg(long)]
    detach: bool,
    /// Seconds after dispatch that check-install-status gives up (INSTALL_DEADLINE_SECONDS)
    #[arg(long, value_name = "SECONDS")]
    install_deadline: Option<u64>,
    /// The association's MaxConcurrency (MAX_CONCURRENCY), e.g. 50% or 2
    #[arg(long)]
    max_concurrency: Option<String>,
    /// The association's MaxErrors (MAX_ERRORS), e.g. 0 or 10%
    #[arg(long)]
    max_errors: Option<String>,
    /// The association's schedule (RECONCILE_SCHEDULE), e.g. "rate(30 minutes)"
    #[arg(long, value_name = "EXPRESSION")]
    reconcile_schedule: Option<String>,
    /// How long one hour of an association's schedule lasts here: with 60, rate(1 hour) runs
    /// every minute
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    schedule_hour: u64,
    /// How often each host's emulated SSM Agent lists its associations (10 minutes on a real host)
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    agent_poll: u64,
    /// systemd units a deployment may reload (ALLOWED_RELOAD_SERVICES)
    #[arg(long, value_name = "UNITS")]
    allowed_reload_services: Option<String>,
}

impl UpArgs {
    fn options(&self, project: &Path, state: &Path) -> Result<LocalOptions> {
        let mut options = LocalOptions::new(project);
        options.state_dir = state.to_path_buf();
        options.gateway_port = self.port;
        options.override_association(&AssociationOverrides {
            install_deadline_seconds: self.install_deadline,
            max_concurrency: self.max_concurrency.clone(),
            max_errors: self.max_errors.clone(),
            reconcile_schedule: self.reconcile_schedule.clone(),
        })?;
        options.agent = AgentSettings {
            poll_period: std::time::Duration::from_millis(self.agent_poll),
            schedule_hour: std::time::Duration::from_secs(self.schedule_hour),
            ..AgentSettings::default()
        };
        if let Some(units) = &self.allowed_reload_services {
            options.allowed_reload_services = units.clone();
        }
        Ok(options)
    }

    pub async fn run(self, project: &Path, state: &Path) -> Result<()> {
        // Checked here, so a bad value is refused before anything goes to the background.
        let options = self.options(project, state)?;
        if self.detach {
            if CloudLock::held(state) {
                println!("{}", supervise::already_running(state));
            } else {
                supervise::start_detached(supervise::without_detach(std::env::args_os()), state)?;
            }
            return Ok(());
        }
        super::init_logs(
            std::io::stderr,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        );
        if !supervise::run_foreground(options).await? {
            println!("{}", supervise::already_running(state));
        }
        Ok(())
    }
}

pub fn down(state: &Path) -> Result<()> {
    match supervise::stop(state)? {
        Some(pid) => println!("Stopped the local cloud (pid {pid})."),
        None => println!("No local cloud is running."),
    }
    Ok(())
}
