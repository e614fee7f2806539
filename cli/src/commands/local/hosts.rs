//! `certship local hosts`: simulated hosts, each an EC2 instance with a directory of its own as
//! its filesystem.

use anyhow::Result;
use certship_local::hosts::{self, Hosts, Simulation};
use certship_local::running::RunningCloud;
use clap::Subcommand;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Subcommand)]
pub enum HostsCommand {
    /// Add hosts with the given tags
    #[command(after_help = "Example:\n  certship local hosts add --tag env=dev --count 2")]
    Add {
        /// A tag as KEY=VALUE; repeat for more
        #[arg(long = "tag", value_parser = crate::tag::parse, required = true)]
        tags: Vec<(String, String)>,
        /// How many hosts
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// How the hosts behave
        #[arg(long, value_enum, default_value_t = Simulation::Healthy)]
        simulate: Simulation,
    },
    /// List the hosts
    List,
}

impl HostsCommand {
    pub async fn run(self, state: &Path) -> Result<()> {
        let r = RunningCloud::require(state)?;
        let hosts = Hosts::new(&r.hosts_dir);
        match self {
            HostsCommand::Add {
                tags,
                count,
                simulate,
            } => {
                let config = certship_local::sdk_config(&r.endpoint, &r.region).await;
                let ec2 = aws_sdk_ec2::Client::new(&config);
                let tags: BTreeMap<String, String> = tags.into_iter().collect();
                for _ in 0..count {
                    let host = hosts::add(&ec2, &hosts, &tags, simulate).await?;
                    println!(
                        "{}  {}  {}",
                        host.instance_id,
                        format_tags(&host.tags),
                        hosts.root(&host.instance_id).display()
                    );
                }
            }
            HostsCommand::List => {
                for host in hosts.list() {
                    println!(
                        "{}  {}  {:?}",
                        host.instance_id,
                        format_tags(&host.tags),
                        host.simulate
                    );
                }
            }
        }
        Ok(())
    }
}

fn format_tags(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
