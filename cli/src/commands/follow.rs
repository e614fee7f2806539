//! `certship follow`: an execution's progress until it ends, then each host's result.

use super::{DEPLOYMENT_FAILED, colour};
use crate::ops::watch::{Progress, Report};
use crate::ops::{self, AwsArgs, OutputArgs, OutputFormat};
use anyhow::Result;
use clap::Args;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "Example:
  certship follow arn:aws:states:eu-west-1:111122223333:execution:certship-certificate-deployment:web-1764000000000

In a terminal it shows a live line (state, hosts done, time); piped, one line per step.
Exit codes: 0 deployed, 3 the deployment failed, timed out or was aborted, 1 any other error.")]
pub struct FollowArgs {
    /// The execution, as `certship deploy` or `certship history` prints it
    execution_arn: String,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl FollowArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let config = ops::sdk_config(&self.aws).await?;
        follow_execution(&config, &self.execution_arn, self.output.output).await
    }
}

/// Follows an execution, showing progress where someone watches, and prints the report
/// (`certship follow` and `certship deploy --wait`).
pub async fn follow_execution(
    config: &aws_config::SdkConfig,
    execution_arn: &str,
    output: OutputFormat,
) -> Result<ExitCode> {
    let report: Report = match output {
        OutputFormat::Text => {
            let stdout = std::io::stdout();
            let progress = if stdout.is_terminal() {
                Progress::Live
            } else {
                Progress::Plain
            };
            ops::watch::watch(config, execution_arn, progress, &mut stdout.lock()).await?
        }
        OutputFormat::Json => {
            let stderr = std::io::stderr();
            let progress = if stderr.is_terminal() {
                Progress::Live
            } else {
                Progress::Silent
            };
            ops::watch::watch(config, execution_arn, progress, &mut stderr.lock()).await?
        }
    };
    match output {
        OutputFormat::Text => println!("{}", report.text(colour(&std::io::stdout()))),
        OutputFormat::Json => ops::print_json(&report.json())?,
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DEPLOYMENT_FAILED)
    })
}
