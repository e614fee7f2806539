//! `certship local`: the whole system on this machine, on the local cloud of `certship-local`.

mod demo;
mod hosts;
mod up;

use anyhow::Result;
use certship_local::running::{RunningCloud, project_dir};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "Examples:
  certship local demo                       # the whole workflow, start to finish
  certship local up --detach                # start a local cloud in the background
  certship local hosts add --tag env=dev --count 2
  certship local hosts tag i-0123456789abcdef0 env=dev
  certship local hosts set i-0123456789abcdef0 --simulate offline
  certship local tick                       # every association runs once now
  eval \"$(certship local env)\"              # point the AWS CLI at it
  certship local renew arn:aws:acm:us-east-1:123456789012:certificate/...
  certship local down")]
pub struct LocalArgs {
    /// The certship checkout to provision from (default: found from the current directory)
    #[arg(long, global = true, value_name = "DIR")]
    project_dir: Option<PathBuf>,
    /// Where the local cloud keeps its hosts and run-time files (default: <project>/.certship/local)
    #[arg(long, global = true, value_name = "DIR", env = "CERTSHIP_LOCAL_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Start the local cloud (in the foreground until Ctrl-C, or with --detach in the background)
    Up(up::UpArgs),
    /// Stop the local cloud started with `up --detach`
    Down,
    /// Say whether a local cloud runs, and where
    Status,
    /// Print shell exports that point the AWS CLI and SDKs at the running local cloud
    Env,
    /// Simulated hosts: EC2 instances with a directory of their own as their filesystem
    Hosts {
        #[command(subcommand)]
        command: hosts::HostsCommand,
    },
    /// Renew a certificate in the emulator and publish ACM's renewal event
    Renew {
        /// The certificate's ARN
        certificate_arn: String,
    },
    /// Run the ACME renewal schedule's sweep once now: re-issue every ACME certificate due for
    /// renewal or marked with `certship acme renew`, then redeploy it
    Sweep,
    /// Run every State Manager association once now on every online host it targets, as if
    /// each schedule had come round
    Tick,
    /// Run the whole workflow on a local cloud of its own: deploy, renew, redeploy
    Demo,
}

impl LocalArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let project = project_dir(self.project_dir.as_deref())?;
        let state = self
            .state_dir
            .unwrap_or_else(|| project.join(".certship/local"));
        match self.command {
            LocalCommand::Up(args) => args.run(&project, &state).await?,
            LocalCommand::Down => up::down(&state)?,
            LocalCommand::Status => status(&state),
            LocalCommand::Env => println!("{}", env(&RunningCloud::require(&state)?)),
            LocalCommand::Hosts { command } => command.run(&state).await?,
            LocalCommand::Renew { certificate_arn } => renew(&state, &certificate_arn).await?,
            LocalCommand::Tick => tick(&state).await?,
            LocalCommand::Sweep => sweep(&project, &state).await?,
            LocalCommand::Demo => demo::run(&project, &state).await?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn status(state: &Path) {
    match RunningCloud::read(state) {
        Some(r) => println!(
            "running (pid {}) at {}\nstate machine {}\nACME state machine {}\nmapping table {}\nevidence table {}\nhosts under {}",
            r.pid,
            r.endpoint,
            r.state_machine_arn,
            r.acme_state_machine_arn,
            r.table_name,
            r.evidence_table_name,
            r.hosts_dir.display()
        ),
        None => println!("No local cloud is running."),
    }
}

/// The shell exports that point the AWS CLI, the SDKs and the operator commands at `cloud`.
pub fn env(cloud: &RunningCloud) -> String {
    use crate::ops::env::{
        ACME_STATE_MACHINE_ARN, ACME_TABLE_NAME, API_URL, EVIDENCE_TABLE_NAME, STATE_MACHINE_ARN,
        TABLE_NAME,
    };
    let mut exports = format!(
        "export AWS_ENDPOINT_URL={endpoint}\nexport AWS_ACCESS_KEY_ID=testing\nexport AWS_SECRET_ACCESS_KEY=testing\nexport AWS_DEFAULT_REGION={region}\nexport AWS_REGION={region}\nexport {STATE_MACHINE_ARN}={}\nexport {TABLE_NAME}={}\nexport {EVIDENCE_TABLE_NAME}={}\nexport {API_URL}={endpoint}{}",
        cloud.state_machine_arn,
        cloud.table_name,
        cloud.evidence_table_name,
        certship_local::API_PATH,
        endpoint = cloud.endpoint,
        region = cloud.region,
    );
    // A cloud started by a certship from before ACME issuance has none to export.
    if !cloud.acme_state_machine_arn.is_empty() {
        exports.push_str(&format!(
            "\nexport {ACME_STATE_MACHINE_ARN}={}",
            cloud.acme_state_machine_arn
        ));
    }
    if !cloud.acme_table_name.is_empty() {
        exports.push_str(&format!(
            "\nexport {ACME_TABLE_NAME}={}",
            cloud.acme_table_name
        ));
    }
    exports
}

async fn renew(state: &Path, certificate_arn: &str) -> Result<()> {
    let r = RunningCloud::require(state)?;
    let config = certship_local::sdk_config(&r.endpoint, &r.region).await;
    let renewed = certship_local::renewal::renew(&r.endpoint, &config, certificate_arn).await?;
    println!(
        "Renewed {}: new serial {}, valid until {}.\nThe renewal event is on the bus; renewal-trigger starts one execution per mapping.",
        renewed.certificate_arn, renewed.serial, renewed.not_after
    );
    Ok(())
}

async fn sweep(project: &Path, state: &Path) -> Result<()> {
    let r = RunningCloud::require(state)?;
    let result = certship_local::renewal::fire_schedule(&r.endpoint, project).await?;
    let count = |field: &str| result[field].as_u64().unwrap_or_default();
    let started: Vec<&str> = result["Started"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .collect();
    println!(
        "Swept {} ACME certificate(s): {} renewal(s) started, {} not due, {} backing off after failures, {} left for the next sweep.",
        count("Certificates"),
        started.len(),
        count("NotDue"),
        count("BackingOff"),
        count("Deferred"),
    );
    for execution in started {
        println!("  {execution}");
    }
    if !result["Started"].as_array().is_none_or(Vec::is_empty) {
        println!(
            "Each renewal ends by redeploying its certificate to every mapping; `certship acme list` shows the new expiry."
        );
    }
    Ok(())
}

async fn tick(state: &Path) -> Result<()> {
    let r = RunningCloud::require(state)?;
    let associations = certship_local::gateway::tick(&r.endpoint).await?;
    println!(
        "Ticked: each of the {associations} association(s) runs once now on every online host it targets."
    );
    Ok(())
}

/// The functions' logs, on `writer`, filtered by `CERTSHIP_LOG`.
fn init_logs(
    writer: impl for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
    ansi: bool,
) {
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CERTSHIP_LOG")
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(acme_state_machine_arn: &str, acme_table_name: &str) -> RunningCloud {
        RunningCloud {
            pid: 1,
            endpoint: "http://127.0.0.1:4566".into(),
            region: "us-east-1".into(),
            state_machine_arn:
                "arn:aws:states:us-east-1:123456789012:stateMachine:certship-certificate-deployment"
                    .into(),
            acme_state_machine_arn: acme_state_machine_arn.into(),
            acme_table_name: acme_table_name.into(),
            table_name: "certship-mappings".into(),
            evidence_table_name: "certship-evidence".into(),
            hosts_dir: PathBuf::from("/tmp/hosts"),
        }
    }

    #[test]
    fn env_exports_the_acme_state_machine_of_a_cloud_that_has_one() {
        let arn = "arn:aws:states:us-east-1:123456789012:stateMachine:certship-acme-issuance";
        let exports = env(&cloud(arn, "certship-acme-certificates"));
        assert!(
            exports.contains(&format!("\nexport CERTSHIP_ACME_STATE_MACHINE_ARN={arn}")),
            "{exports}"
        );
        assert!(exports.contains("\nexport CERTSHIP_STATE_MACHINE_ARN=arn:aws:states:us-east-1:123456789012:stateMachine:certship-certificate-deployment\n"));
        assert!(
            exports.contains("\nexport CERTSHIP_ACME_TABLE_NAME=certship-acme-certificates"),
            "{exports}"
        );
        let older = env(&cloud("", ""));
        assert!(!older.contains("ACME"), "{older}");
    }
}
