//! `certship status`: each mapping's deployed serial, expiry and last deployment, and renewals
//! that ACM made but that are not deployed yet.

use super::colour;
use crate::ops::stack::Resources;
use crate::ops::{self, AwsArgs, Clients, OutputArgs, OutputFormat, StackArgs};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "Examples:
  certship status --stack certship
  certship status --certificate-arn arn:aws:acm:…:certificate/0d3f… --output json
  certship status --target env=prod

HOSTS: the hosts tagged with the target that hold the mapping's current version, out of all
tagged hosts (`certship hosts --target K=V` lists them). Expiry is highlighted under 30 days;
ACM says \"newer serial\" when it renewed the certificate and that serial is not deployed yet.")]
pub struct StatusArgs {
    /// Only the mappings of this certificate
    #[arg(long, value_name = "ARN")]
    certificate_arn: Option<String>,
    /// Only the mappings to this tag target
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::tag::parse)]
    target: Option<(String, String)>,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl StatusArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let clients = Clients::load(&self.aws).await?;
        let resources = Resources::new(&clients.cloudformation, &self.stack);
        let table = resources.table_name().await?;
        let mappings = ops::status::mappings(
            &clients.dynamodb,
            &table,
            self.certificate_arn.as_deref(),
            self.target.as_ref(),
        )
        .await?;
        let mut rows = ops::status::rows(&clients.acm, mappings).await;
        // Without an evidence table (an older stack) the HOSTS column says why, and the rest of
        // the status still shows.
        let evidence_table = resources
            .evidence_table_name()
            .await
            .map_err(|e| format!("{e:#}"));
        ops::status::count_hosts(
            &clients.ssm,
            &clients.dynamodb,
            evidence_table.as_deref().map_err(Clone::clone),
            &mut rows,
        )
        .await;
        match self.output.output {
            OutputFormat::Text => {
                println!("{}", ops::status::text(&rows, colour(&std::io::stdout())))
            }
            OutputFormat::Json => ops::print_json(&ops::status::json(&rows))?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
