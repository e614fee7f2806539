//! `certship follow`: an execution's progress until it ends, then each host's result.

use super::{DEPLOYMENT_FAILED, colour};
use crate::ops::report::{HostSources, Report};
use crate::ops::stack::Resources;
use crate::ops::watch::{Progress, watch};
use crate::ops::{self, AwsArgs, Clients, OutputArgs, OutputFormat, StackArgs};
use anyhow::Result;
use clap::Args;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "Example:
  certship follow arn:aws:states:eu-west-1:111122223333:execution:certship-certificate-deployment:web-1764000000000-3f9c2a1b7d4e6f80

In a terminal it shows a live line (state, host counts, time); piped, one line per step. Then
each tagged host: Converged (holds the version), Failed, Deferred (offline: the association
reaches it when it is back) or Pending, read from the stack's evidence table (--stack or
--evidence-table-name). An execution from before convergence shows its Run Command's hosts.
Exit codes: 0 deployed, 3 the deployment failed, timed out or was aborted, 1 any other error.")]
pub struct FollowArgs {
    /// The execution, as `certship deploy` or `certship history` prints it
    execution_arn: String,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl FollowArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let clients = Clients::load(&self.aws).await?;
        let resources = Resources::new(&clients.cloudformation, &self.stack);
        follow_execution(
            &clients,
            &resources,
            &self.execution_arn,
            self.output.output,
        )
        .await
    }
}

/// Follows an execution, showing progress where someone watches, and prints the report
/// (`certship follow` and `certship deploy --wait`).
pub async fn follow_execution(
    clients: &Clients,
    resources: &Resources<'_>,
    execution_arn: &str,
    output: OutputFormat,
) -> Result<ExitCode> {
    let watched = match output {
        OutputFormat::Text => {
            let stdout = std::io::stdout();
            let progress = if stdout.is_terminal() {
                Progress::Live
            } else {
                Progress::Plain
            };
            watch(&clients.sfn, execution_arn, progress, &mut stdout.lock()).await?
        }
        OutputFormat::Json => {
            let stderr = std::io::stderr();
            let progress = if stderr.is_terminal() {
                Progress::Live
            } else {
                Progress::Silent
            };
            watch(&clients.sfn, execution_arn, progress, &mut stderr.lock()).await?
        }
    };
    let sources = HostSources {
        ssm: &clients.ssm,
        dynamodb: &clients.dynamodb,
        evidence_table: resources
            .evidence_table_name()
            .await
            .map_err(|e| format!("{e:#}")),
    };
    let report = Report::collect(&sources, execution_arn, watched).await;
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
