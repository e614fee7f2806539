//! `certship local hosts`: simulated hosts, each an EC2 instance with a directory of its own as
//! its filesystem and an emulated SSM Agent.

use anyhow::Result;
use certship_local::hosts::{self, HostInfo, Hosts, Simulation};
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
    /// Add or replace tags on a host; associations targeting them reach it at its agent's next poll
    #[command(after_help = "Example:\n  certship local hosts tag i-0123456789abcdef0 env=dev")]
    Tag {
        /// The host's instance id
        instance_id: String,
        /// Tags as KEY=VALUE
        #[arg(value_parser = crate::tag::parse, required = true)]
        tags: Vec<(String, String)>,
    },
    /// Remove tags from a host; associations targeting them no longer run there
    #[command(after_help = "Example:\n  certship local hosts untag i-0123456789abcdef0 env")]
    Untag {
        /// The host's instance id
        instance_id: String,
        /// Tag keys
        #[arg(value_parser = tag_key, required = true)]
        keys: Vec<String>,
    },
    /// Change how a host behaves: offline stops its agent (it catches up when healthy again)
    #[command(
        after_help = "Example:\n  certship local hosts set i-0123456789abcdef0 --simulate offline"
    )]
    Set {
        /// The host's instance id
        instance_id: String,
        #[arg(long, value_enum)]
        simulate: Simulation,
    },
}

/// A tag key, with AWS's rules (as `--tag` checks them).
fn tag_key(text: &str) -> Result<String, String> {
    certship_shared::rules::validate_tag_key(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

impl HostsCommand {
    pub async fn run(self, state: &Path) -> Result<()> {
        let r = RunningCloud::require(state)?;
        let hosts = Hosts::new(&r.hosts_dir);
        let ec2 = || async {
            let config = certship_local::sdk_config(&r.endpoint, &r.region).await;
            aws_sdk_ec2::Client::new(&config)
        };
        match self {
            HostsCommand::Add {
                tags,
                count,
                simulate,
            } => {
                let ec2 = ec2().await;
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
                    print_host(&host);
                }
            }
            HostsCommand::Tag { instance_id, tags } => {
                let tags: BTreeMap<String, String> = tags.into_iter().collect();
                print_host(&hosts::tag(&ec2().await, &hosts, &instance_id, &tags).await?);
            }
            HostsCommand::Untag { instance_id, keys } => {
                print_host(&hosts::untag(&ec2().await, &hosts, &instance_id, &keys).await?);
            }
            HostsCommand::Set {
                instance_id,
                simulate,
            } => print_host(&hosts::set_simulation(&hosts, &instance_id, simulate)?),
        }
        Ok(())
    }
}

fn print_host(host: &HostInfo) {
    println!(
        "{}  {}  {:?}",
        host.instance_id,
        format_tags(&host.tags),
        host.simulate
    );
}

fn format_tags(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
