//! `certship history`: a certificate's recent deployments, newest first.

use super::colour;
use crate::ops::stack::Resources;
use crate::ops::{self, AwsArgs, Clients, OutputArgs, OutputFormat, StackArgs};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "Example:
  certship history --stack certship --certificate-arn arn:aws:acm:…:certificate/0d3f… --limit 5")]
pub struct HistoryArgs {
    /// The certificate whose deployments to list
    #[arg(long, value_name = "ARN")]
    certificate_arn: String,
    /// How many executions to show at most
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl HistoryArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let clients = Clients::load(&self.aws).await?;
        let machine = Resources::new(&clients.cloudformation, &self.stack)
            .state_machine_arn()
            .await?;
        let (entries, truncated) = ops::history::entries(
            &clients.sfn,
            &machine,
            &self.certificate_arn,
            usize::from(self.limit),
        )
        .await?;
        match self.output.output {
            OutputFormat::Text => println!(
                "{}",
                ops::history::text(&entries, truncated, colour(&std::io::stdout()))
            ),
            OutputFormat::Json => ops::print_json(&ops::history::json(&entries))?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
