//! `certship`: the operator CLI. `certship local` runs the whole system on this machine.
//!
//! This file only parses and dispatches: each command's arguments sit beside its `run()` in
//! `commands/<name>.rs`.

use certship_cli::commands::{acme, deploy, follow, history, hosts, local, status, unmap};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "certship",
    version,
    about = "Ship ACM certificates to the EC2 and on-premises hosts that need them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy a certificate to every host with a tag (through the API or StartExecution)
    Deploy(deploy::DeployArgs),
    /// Follow a deployment until it ends, then show each host's result
    Follow(follow::FollowArgs),
    /// The mappings: deployed serial, expiry, last deployment, renewals not yet deployed
    Status(status::StatusArgs),
    /// The hosts of a tag target: what each last reported, and which do not hold the current version
    Hosts(hosts::HostsArgs),
    /// Recent deployments of a certificate, newest first
    History(history::HistoryArgs),
    /// Remove a mapping, its association, evidence and secret (the files already on hosts stay)
    Unmap(unmap::UnmapArgs),
    /// Issue certificates from an ACME CA (Let's Encrypt), proving each name with DNS-01 in Route53
    Acme(acme::AcmeArgs),
    /// Run certship on this machine, on an embedded AWS emulator: no account needed
    Local(local::LocalArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Deploy(args) => args.run().await,
        Command::Follow(args) => args.run().await,
        Command::Status(args) => args.run().await,
        Command::Hosts(args) => args.run().await,
        Command::History(args) => args.run().await,
        Command::Unmap(args) => args.run().await,
        Command::Acme(args) => args.run().await,
        Command::Local(args) => args.run().await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
