//! `certship deploy`: checks a deployment request, starts it through the API (SigV4) or
//! StartExecution, and with `--wait` follows it to the end.

use super::follow::follow_execution;
use crate::ops::stack::Resources;
use crate::ops::{self, AwsArgs, Clients, OutputArgs, OutputFormat, StackArgs};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "Examples:
  certship deploy --stack certship --certificate-arn arn:aws:acm:eu-west-1:111122223333:certificate/0d3f… \\
      --name web --target env=prod --reload-service nginx --wait
  certship deploy --api-url https://abc123.execute-api.eu-west-1.amazonaws.com/prod/export-cert …
  certship deploy --direct --state-machine-arn arn:aws:states:…:stateMachine:… …

Through the API, the request is signed (SigV4) with your usual AWS credentials, which need
execute-api:Invoke on it; with --direct (or only --state-machine-arn), states:StartExecution.
Exit codes with --wait: 0 deployed, 3 the deployment failed, 1 any other error.")]
pub struct DeployArgs {
    /// The certificate to deploy: an ACM certificate's ARN, or acme:<id> for one that
    /// `certship acme issue` issued
    #[arg(long, visible_alias = "certificate", value_name = "ARN|acme:ID")]
    certificate_arn: String,
    /// The file name on hosts: <NAME>-cert.pem, <NAME>-chain.pem, <NAME>-fullchain.pem, <NAME>-privkey.pem
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The hosts: every EC2 instance or managed node tagged KEY=VALUE
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::tag::split)]
    target: (String, String),
    /// A systemd service to reload after the swap (must be in the stack's AllowedReloadServices)
    #[arg(long, value_name = "UNIT")]
    reload_service: Option<String>,
    /// The deployment API's URL (default: the stack's ApiUrl output)
    #[arg(long, value_name = "URL", env = ops::env::API_URL)]
    api_url: Option<String>,
    /// Start the execution with StartExecution rather than through the API
    #[arg(long)]
    direct: bool,
    /// Follow the deployment until it ends (as `certship follow`)
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl DeployArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let clients = Clients::load(&self.aws).await?;
        let request = ops::deploy::checked_request(
            ops::region(&clients.config),
            &self.certificate_arn,
            &self.name,
            &self.target,
            self.reload_service.as_deref(),
        )?;
        let resources = Resources::new(&clients.cloudformation, &self.stack);
        let (execution_arn, route) = ops::deploy::start(
            &clients,
            &resources,
            self.api_url.as_deref(),
            self.direct,
            &request,
        )
        .await?;
        match self.output.output {
            OutputFormat::Text => {
                println!("Started {execution_arn}");
                if !self.wait {
                    println!("Follow it with: certship follow {execution_arn}");
                }
            }
            OutputFormat::Json if !self.wait => ops::print_json(&serde_json::json!({
                "executionArn": execution_arn,
                "via": route.as_str(),
            }))?,
            OutputFormat::Json => {}
        }
        if self.wait {
            return follow_execution(&clients, &resources, &execution_arn, self.output.output)
                .await;
        }
        Ok(ExitCode::SUCCESS)
    }
}
