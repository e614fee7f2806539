//! The evidence table as the CLI reads and clears it: one item per (mapping, host), written by
//! record-host-evidence from each association run's outcome line
//! ([`certship_shared::evidence::HostEvidence`]).

use super::explain;
use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use certship_shared::evidence::{HostEvidence, attr};
use std::collections::HashMap;
use std::time::Duration;

/// The most requests one `BatchWriteItem` takes.
pub const BATCH_SIZE: usize = 25;

/// How often unprocessed deletes are sent again before giving up.
const MAX_BATCH_ATTEMPTS: u32 = 8;

/// Every host's latest evidence for one mapping (one query, all its pages), by instance id: the
/// items written under the mapping's target tag value `tag_value`; one written under another is
/// another target's host speaking for this mapping, and left out
/// ([`HostEvidence::written_under`]).
pub async fn of_mapping(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping_id: &str,
    tag_value: &str,
) -> Result<HashMap<String, HostEvidence>> {
    let mut pages = partition(dynamodb, table_name, mapping_id)
        .into_paginator()
        .items()
        .send();
    let mut evidence = HashMap::new();
    while let Some(item) = pages.next().await {
        let item = item
            .map_err(explain)
            .with_context(|| format!("reading the evidence of mapping {mapping_id}"))?;
        if certship_shared::waiting::is_waiting_item(&item) {
            // A deployment's wait for its hosts, not a host's evidence.
            continue;
        }
        let host = HostEvidence::from_item(&item).with_context(|| {
            format!("the evidence table {table_name} holds an item certship did not write")
        })?;
        if host.written_under(tag_value) {
            evidence.insert(host.instance_id.clone(), host);
        }
    }
    Ok(evidence)
}

/// Deletes every evidence item of one mapping (its waiting item too), [`BATCH_SIZE`] at a time,
/// sending unprocessed items again with a growing pause. Returns how many hosts' items were
/// deleted.
pub async fn delete_of_mapping(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping_id: &str,
) -> Result<usize> {
    // Keys only: the rest of an item is not needed to delete it.
    let mut pages = partition(dynamodb, table_name, mapping_id)
        .projection_expression("#pk, #sk")
        .expression_attribute_names("#sk", attr::INSTANCE_ID)
        .into_paginator()
        .items()
        .send();
    let mut keys = Vec::new();
    while let Some(item) = pages.next().await {
        let item = item
            .map_err(explain)
            .with_context(|| format!("listing the evidence of mapping {mapping_id}"))?;
        keys.push(item);
    }
    for chunk in keys.chunks(BATCH_SIZE) {
        let requests = chunk
            .iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key.clone()))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>, _>>()
            .context("building the evidence deletes")?;
        write_all(dynamodb, table_name, requests).await?;
    }
    // The partition's waiting item (a deployment's wait for its hosts) goes too, but is no host's.
    Ok(keys
        .iter()
        .filter(|key| !certship_shared::waiting::is_waiting_item(key))
        .count())
}

/// The query of one mapping's partition.
fn partition(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping_id: &str,
) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    dynamodb
        .query()
        .table_name(table_name)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", attr::MAPPING_ID)
        .expression_attribute_values(":pk", AttributeValue::S(mapping_id.to_string()))
}

/// One batch, sent until DynamoDB has processed all of it (it may return some items unprocessed
/// when throttled, and expects the caller to back off and send them again).
async fn write_all(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<()> {
    let mut attempt = 0;
    while !requests.is_empty() {
        if attempt == MAX_BATCH_ATTEMPTS {
            bail!(
                "{} evidence items were still unprocessed after {MAX_BATCH_ATTEMPTS} attempts (throttled); run unmap again later",
                requests.len()
            );
        }
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
        }
        attempt += 1;
        let answer = dynamodb
            .batch_write_item()
            .request_items(table_name, requests)
            .send()
            .await
            .map_err(explain)
            .context("deleting evidence items")?;
        requests = answer
            .unprocessed_items()
            .and_then(|u| u.get(table_name))
            .cloned()
            .unwrap_or_default();
    }
    Ok(())
}
