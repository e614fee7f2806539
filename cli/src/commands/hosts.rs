//! `certship hosts`: every managed node carrying a tag, with what it last reported for each
//! mapping of that target, and whether it holds the mapping's current version.

use super::colour;
use crate::ops::hosts::{Desired, Filter};
use crate::ops::stack::Resources;
use crate::ops::{self, AwsArgs, Clients, OutputArgs, OutputFormat, StackArgs};
use anyhow::{Result, bail};
use certship_shared::Serial;
use clap::{ArgGroup, Args};
use std::process::ExitCode;

#[derive(Args)]
#[command(
    group(ArgGroup::new("filter").args(["stale", "failed", "not_serial"])),
    after_help = "Examples:
  certship hosts --target env=prod
  certship hosts --target env=prod --stale
  certship hosts --target env=prod --not-serial 0a:1b:2c --output json | jq -r '.hosts[].instanceId' | sort -u

The hosts are the managed nodes SSM lists with the tag (DescribeInstanceInformation): an
instance without a running, registered SSM Agent is not among them (the association cannot
reach it either). A host that reported once but no longer carries the tag is not listed; the
summary counts them. CURRENT: the host's last run installed, repaired or confirmed the
mapping's current secret version. PING: Online, ConnectionLost or Inactive; an offline host
gets the certificate when its agent is back.")]
pub struct HostsArgs {
    /// The hosts: every managed node tagged KEY=VALUE
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::tag::parse)]
    target: (String, String),
    /// Only the mappings of this certificate
    #[arg(long, value_name = "ARN")]
    certificate_arn: Option<String>,
    /// Only the mapping of this name (as `deploy --name` gave it)
    #[arg(long = "name", value_name = "NAME")]
    cert_name: Option<String>,
    /// Only hosts not holding the mapping's current version (no report, an older one, a failure)
    #[arg(long)]
    stale: bool,
    /// Only hosts whose last run failed
    #[arg(long)]
    failed: bool,
    /// Only hosts not known to serve this serial (any notation: 0a:1b:2c or A1B2C); hosts that
    /// never reported are included
    #[arg(long, value_name = "SERIAL")]
    not_serial: Option<Serial>,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl HostsArgs {
    fn filter(&self) -> Filter {
        match (&self.not_serial, self.stale, self.failed) {
            (Some(serial), _, _) => Filter::NotSerial(serial.clone()),
            (None, true, _) => Filter::Stale,
            (None, false, true) => Filter::Failed,
            (None, false, false) => Filter::All,
        }
    }

    pub async fn run(self) -> Result<ExitCode> {
        let clients = Clients::load(&self.aws).await?;
        let resources = Resources::new(&clients.cloudformation, &self.stack);
        let table = resources.table_name().await?;
        let evidence_table = resources.evidence_table_name().await?;
        let mut mappings = ops::status::mappings(
            &clients.dynamodb,
            &table,
            self.certificate_arn.as_deref(),
            Some(&self.target),
        )
        .await?;
        if let Some(name) = &self.cert_name {
            mappings.retain(|m| &m.cert_name == name);
        }
        if mappings.is_empty() && (self.certificate_arn.is_some() || self.cert_name.is_some()) {
            bail!(
                "no mapping to {}={} matches; `certship status --target {}={}` lists them",
                self.target.0,
                self.target.1,
                self.target.0,
                self.target.1
            );
        }
        let fleet = ops::hosts::collect(
            &clients.ssm,
            &clients.dynamodb,
            &evidence_table,
            &self.target,
            mappings.iter().map(Desired::of_mapping).collect(),
        )
        .await?;
        let filter = self.filter();
        match self.output.output {
            OutputFormat::Text => println!(
                "{}",
                fleet.text(
                    &filter,
                    std::time::SystemTime::now(),
                    colour(&std::io::stdout())
                )
            ),
            OutputFormat::Json => ops::print_json(&fleet.json(&filter))?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
