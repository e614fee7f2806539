//! The managed nodes that carry a tag, as SSM knows them (`DescribeInstanceInformation`): the
//! hosts a mapping's association targets, EC2 instances and on-premises (`mi-`) nodes alike.

use super::explain;
use anyhow::{Context, Result};
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};

/// The most nodes `DescribeInstanceInformation` returns in one page.
pub const PAGE_SIZE: i32 = 50;

/// One managed node carrying the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub instance_id: String,
    /// `Online`, `ConnectionLost` or `Inactive`; `None` when SSM did not say.
    pub ping: Option<PingStatus>,
}

impl Node {
    /// Whether the node's agent answers: an offline node is `Deferred`, not `Pending`.
    pub fn online(&self) -> bool {
        self.ping == Some(PingStatus::Online)
    }

    /// The ping status as SSM names it, `-` when there is none.
    pub fn ping_name(&self) -> &str {
        self.ping.as_ref().map_or("-", |p| p.as_str())
    }
}

/// Every managed node tagged `key=value` (all pages of [`PAGE_SIZE`]), sorted by instance id.
/// Nodes that are not registered with SSM (no agent, no instance profile) are not among them:
/// the association cannot reach them either.
pub async fn tagged(ssm: &aws_sdk_ssm::Client, key: &str, value: &str) -> Result<Vec<Node>> {
    let filter = InstanceInformationStringFilter::builder()
        .key(format!("tag:{key}"))
        .values(value)
        .build()
        .context("building the tag filter")?;
    let mut pages = ssm
        .describe_instance_information()
        .filters(filter)
        .max_results(PAGE_SIZE)
        .into_paginator()
        .send();
    let mut nodes = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(explain)
            .with_context(|| format!("listing the managed nodes tagged {key}={value}"))?;
        nodes.extend(page.instance_information_list().iter().filter_map(|info| {
            Some(Node {
                instance_id: info.instance_id()?.to_string(),
                ping: info.ping_status().cloned(),
            })
        }));
    }
    nodes.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    nodes.dedup_by(|a, b| a.instance_id == b.instance_id);
    Ok(nodes)
}
