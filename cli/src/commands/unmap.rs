//! `certship unmap`: removes a mapping, its association, its hosts' evidence and its name claim,
//! and schedules its secret for deletion; the files already on hosts stay.

use crate::ops::stack::Resources;
use crate::ops::{self, AwsArgs, Clients, StackArgs};
use anyhow::{Result, bail};
use clap::Args;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "Example:
  certship unmap --stack certship --certificate-arn arn:aws:acm:…:certificate/0d3f… --name web --target env=prod

The mapping's State Manager association is deleted, so no host (new or old) is asked to
install the certificate again, and its per-host evidence goes with it. The secret is scheduled
for deletion after 7 days (`aws secretsmanager restore-secret` brings it back). Renewals no
longer reach the target; the files on its hosts stay until you remove them.")]
pub struct UnmapArgs {
    /// The mapped certificate
    #[arg(long, value_name = "ARN")]
    certificate_arn: String,
    /// The name it was deployed under
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The tag target it was deployed to
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::tag::parse)]
    target: (String, String),
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
}

impl UnmapArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let clients = Clients::load(&self.aws).await?;
        let resources = Resources::new(&clients.cloudformation, &self.stack);
        let table = resources.table_name().await?;
        let evidence_table = resources.evidence_table_name().await?;
        let Some(mapping) = ops::unmap::find(
            &clients.dynamodb,
            &table,
            &self.certificate_arn,
            &self.name,
            &self.target,
        )
        .await?
        else {
            bail!(
                "no mapping of {} named {} to {}={}; `certship status --certificate-arn {}` lists its mappings",
                self.certificate_arn,
                self.name,
                self.target.0,
                self.target.1,
                self.certificate_arn
            );
        };
        let what = format!(
            "the mapping of {} as {} to hosts tagged {}={}",
            mapping.certificate_arn,
            mapping.cert_name,
            mapping.target_tag_key,
            mapping.target_tag_value
        );
        if !self.yes {
            let stdin = std::io::stdin();
            if !stdin.is_terminal() {
                bail!("not removing {what} without confirmation: pass --yes");
            }
            eprint!(
                "Remove {what}, its association and evidence, and schedule its secret for deletion in {} days? Files on the hosts stay. [y/N] ",
                ops::unmap::RECOVERY_WINDOW_DAYS
            );
            let mut answer = String::new();
            stdin.read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                println!("Nothing removed.");
                return Ok(ExitCode::SUCCESS);
            }
        }
        let tables = ops::unmap::Tables {
            mappings: &table,
            evidence: &evidence_table,
        };
        let removed = ops::unmap::remove(
            &clients.dynamodb,
            &clients.ssm,
            &clients.secrets,
            &tables,
            &mapping,
        )
        .await?;
        println!("Removed {what}.");
        match removed.associations.as_slice() {
            [] => println!("It had no association left to delete."),
            ids => println!(
                "Deleted its association {}: no host is asked to install it any more.",
                ids.join(", ")
            ),
        }
        println!(
            "Deleted {} evidence item(s) of its hosts.",
            removed.evidence_items
        );
        if removed.claim_released {
            println!(
                "Released the name {} on {}={}.",
                mapping.cert_name, mapping.target_tag_key, mapping.target_tag_value
            );
        }
        match removed.secret_arn {
            Some(arn) => println!(
                "Its secret {arn} is scheduled for deletion in {} days (aws secretsmanager restore-secret --secret-id … brings it back).",
                ops::unmap::RECOVERY_WINDOW_DAYS
            ),
            None => println!("It had no secret left to delete."),
        }
        println!(
            "The certificate files on the hosts are still there; renewals no longer reach them."
        );
        Ok(ExitCode::SUCCESS)
    }
}
