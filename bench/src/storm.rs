//! Renewal storm: one certificate with many mappings, and many certificates renewed at once.
//!
//! renewal-trigger's real handler runs in-process against a running local cloud, with a
//! synthetic "ACM Certificate Available" / `RENEWAL` event per certificate. It starts executions
//! of a trivial state machine of the bench's own (one Pass state), so the figure is the
//! trigger's and not the deployments'. Each invocation is cut off at the template's Lambda
//! timeout, and a cut-off or failed one is delivered again as Lambda's asynchronous retries would
//! (up to the template's `MaximumRetryAttempts`). Afterwards the machine's executions are listed:
//! every mapping must have exactly one, under the name its event gives it.

use anyhow::{Context, Result, bail, ensure};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use certship_shared::mapping::Mapping;
use renewal_trigger::{AppState, Settings};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The template's `Timeout` (its `Globals`), which renewal-trigger runs under.
pub const LAMBDA_TIMEOUT: Duration = Duration::from_secs(30);
/// The template's `MaximumRetryAttempts` for renewal-trigger's asynchronous invocations.
pub const LAMBDA_RETRIES: usize = 2;
/// The wait before a redelivery. Lambda waits about a minute, then two; the bench waits only for
/// the cut-off invocation's last requests to land, so the figure stays the trigger's own.
const REDELIVERY_PAUSE: Duration = Duration::from_secs(1);
/// DynamoDB's BatchWriteItem takes at most 25 items.
const BATCH: usize = 25;
const ACCOUNT: &str = "123456789012";
const TAG_KEY: &str = "env";
const CERT_NAME: &str = "storm";

/// One scenario's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Storm {
    pub scenario: String,
    pub certificates: usize,
    pub mappings: usize,
    /// Executions of the bench's state machine afterwards.
    pub executions_started: usize,
    /// Distinct names among them: equal to `mappings` when none was lost and none started twice.
    pub distinct_names: usize,
    /// From the first delivery to the last execution's `startDate`.
    pub seconds_to_last_start: f64,
    /// Handler invocations, redeliveries included.
    pub invocations: usize,
    /// Invocations the emulated Lambda timeout cut off.
    pub cut_off_invocations: usize,
}

/// One certificate with `mappings` mappings (targets `env=storm-0001`, ...), renewed once.
/// `config`/`table_name`: a running local cloud (`cloud.sdk_config()`, `cloud.table_name`).
pub async fn one_certificate(
    config: &aws_config::SdkConfig,
    table_name: &str,
    mappings: usize,
) -> anyhow::Result<Storm> {
    storm(
        config,
        table_name,
        format!("one certificate, {mappings} mappings"),
        1,
        mappings,
    )
    .await
}

/// `certificates` certificates with one mapping each, all renewed at once: as many handler
/// invocations at the same time.
pub async fn many_certificates(
    config: &aws_config::SdkConfig,
    table_name: &str,
    certificates: usize,
) -> anyhow::Result<Storm> {
    storm(
        config,
        table_name,
        format!("{certificates} certificates at once, one mapping each"),
        certificates,
        1,
    )
    .await
}

/// What the deliveries of one event came to.
#[derive(Debug, Default)]
struct Deliveries {
    invocations: usize,
    cut_off: usize,
}

async fn storm(
    config: &SdkConfig,
    table_name: &str,
    scenario: String,
    certificates: usize,
    per_certificate: usize,
) -> Result<Storm> {
    let run = run_id();
    let region = config
        .region()
        .context("the local cloud's SDK configuration has no region")?
        .to_string();
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let sfn = aws_sdk_sfn::Client::new(config);
    let machine = trivial_state_machine(&sfn, &run).await?;

    // given: every certificate's mappings in the mapping table, and its renewal event
    let renewals: Vec<(String, String)> = (0..certificates)
        .map(|c| {
            (
                format!("arn:aws:acm:{region}:{ACCOUNT}:certificate/{run}-{c:04}"),
                format!("storm-{run}-{c:04}"),
            )
        })
        .collect();
    let mut mappings = Vec::with_capacity(certificates * per_certificate);
    let mut expected = HashSet::new();
    for (c, (arn, event_id)) in renewals.iter().enumerate() {
        for m in 0..per_certificate {
            let mapping = mapping(arn, &format!("storm-{:04}", c * per_certificate + m + 1));
            expected.insert(renewal_trigger::execution_name(event_id, &mapping));
            mappings.push(mapping);
        }
    }
    seed(&dynamodb, table_name, &mappings).await?;
    let state = Arc::new(AppState::new(
        config,
        Settings {
            table_name: table_name.to_string(),
            state_machine_arn: machine.clone(),
            acme_table_name: String::new(),
            acme_state_machine_arn: String::new(),
        },
    ));

    // when: every renewal is delivered at once, each redelivered as Lambda would
    let first_delivery = SystemTime::now();
    let mut deliveries = tokio::task::JoinSet::new();
    for (arn, event_id) in &renewals {
        let event = renewal_event(&region, arn, event_id);
        deliveries.spawn(deliver(Arc::clone(&state), event));
    }
    let mut total = Deliveries::default();
    while let Some(delivered) = deliveries.join_next().await {
        let delivered = delivered.context("a delivery panicked")?;
        total.invocations += delivered.invocations;
        total.cut_off += delivered.cut_off;
    }

    // then: one execution per mapping, under its name
    let (names, last_start) = executions(&sfn, &machine).await?;
    let distinct: HashSet<&str> = names.iter().map(String::as_str).collect();
    let storm = Storm {
        scenario,
        certificates,
        mappings: mappings.len(),
        executions_started: names.len(),
        distinct_names: distinct.len(),
        seconds_to_last_start: last_start
            .and_then(|last| last.duration_since(first_delivery).ok())
            .map_or(0.0, |d| d.as_secs_f64()),
        invocations: total.invocations,
        cut_off_invocations: total.cut_off,
    };
    let missing = expected
        .iter()
        .filter(|name| !distinct.contains(name.as_str()))
        .count();
    let unexpected = distinct
        .iter()
        .filter(|name| !expected.contains(**name))
        .count();
    ensure!(
        missing == 0 && unexpected == 0 && names.len() == distinct.len(),
        "{}: {missing} of {} mappings never started, {} started twice, {unexpected} unexpected \
         execution(s) ({storm:?})",
        storm.scenario,
        storm.mappings,
        names.len() - distinct.len(),
    );
    Ok(storm)
}

/// Delivers one event as Lambda's asynchronous invocation does: each invocation cut off at the
/// timeout, and invoked again after a timeout or an error, at most [`LAMBDA_RETRIES`] times.
async fn deliver(state: Arc<AppState>, event: serde_json::Value) -> Deliveries {
    let mut delivered = Deliveries::default();
    for attempt in 0..=LAMBDA_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(REDELIVERY_PAUSE).await;
        }
        delivered.invocations += 1;
        let invocation = async {
            let event = certship_shared::lambda::decode(event.clone())?;
            renewal_trigger::handler(&state, event).await
        };
        match tokio::time::timeout(LAMBDA_TIMEOUT, invocation).await {
            Ok(Ok(_)) => break,
            Ok(Err(err)) => eprintln!("storm: invocation {} failed: {err}", attempt + 1),
            Err(_) => delivered.cut_off += 1,
        }
    }
    delivered
}

/// A unique suffix, so runs on the same local cloud never share a certificate, event or machine.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

/// A state machine that ends as soon as it starts.
async fn trivial_state_machine(sfn: &aws_sdk_sfn::Client, run: &str) -> Result<String> {
    Ok(sfn
        .create_state_machine()
        .name(format!("certship-bench-storm-{run}"))
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/certship-bench-storm"))
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#)
        .send()
        .await
        .context("creating the bench's state machine")?
        .state_machine_arn)
}

fn mapping(certificate_arn: &str, tag_value: &str) -> Mapping {
    Mapping {
        certificate_arn: certificate_arn.into(),
        cert_name: CERT_NAME.into(),
        target_tag_key: TAG_KEY.into(),
        target_tag_value: tag_value.into(),
        reload_service: None,
        secret_arn: None,
        serial: None,
        cert_expiry_date: None,
        last_exported_date: None,
        association_id: None,
        secret_version_id: None,
        last_deployment: None,
    }
}

/// Writes the mapping items, [`BATCH`] at a time, until DynamoDB has processed them all.
async fn seed(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mappings: &[Mapping],
) -> Result<()> {
    for chunk in mappings.chunks(BATCH) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|m| {
                Ok(WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(m.to_item())).build()?)
                    .build())
            })
            .collect::<Result<_>>()?;
        for _ in 0..10 {
            let out = dynamodb
                .batch_write_item()
                .request_items(table_name, requests)
                .send()
                .await
                .context("seeding the mappings")?;
            requests = out
                .unprocessed_items
                .and_then(|mut left| left.remove(table_name))
                .unwrap_or_default();
            if requests.is_empty() {
                break;
            }
        }
        ensure!(requests.is_empty(), "DynamoDB kept refusing mapping items");
    }
    Ok(())
}

/// ACM's renewal event for `certificate_arn`, as EventBridge delivers it to renewal-trigger.
fn renewal_event(region: &str, certificate_arn: &str, event_id: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": event_id,
        "detail-type": renewal_trigger::DETAIL_TYPE,
        "source": renewal_trigger::SOURCE,
        "account": ACCOUNT,
        "time": certship_shared::time::rfc3339(SystemTime::now()),
        "region": region,
        "resources": [certificate_arn],
        "detail": renewal_trigger::CertificateAvailable {
            action: Some(renewal_trigger::RENEWAL.into()),
            certificate_type: Some("AMAZON_ISSUED".into()),
            ..Default::default()
        },
    })
}

/// Every execution name of `machine`, and the latest start among them.
async fn executions(
    sfn: &aws_sdk_sfn::Client,
    machine: &str,
) -> Result<(Vec<String>, Option<SystemTime>)> {
    let mut names = Vec::new();
    let mut last = None;
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(machine)
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for execution in page.context("listing the bench's executions")?.executions() {
            names.push(execution.name().to_string());
            let started = SystemTime::try_from(*execution.start_date())
                .context("an execution's startDate is out of range")?;
            last = last.max(Some(started));
        }
    }
    if names.is_empty() {
        bail!("no execution of {machine} was started");
    }
    Ok((names, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulated_lambda_is_the_templates_renewal_trigger() {
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = certship_stack::Template::load(&project).unwrap();
        let document = template.document();
        assert_eq!(
            document["Globals"]["Function"]["Timeout"].as_u64(),
            Some(LAMBDA_TIMEOUT.as_secs())
        );
        let function = template
            .properties("RenewalTriggerFunction", "AWS::Serverless::Function")
            .unwrap();
        assert!(function["Timeout"].is_null(), "the Globals timeout applies");
        assert_eq!(
            function["EventInvokeConfig"]["MaximumRetryAttempts"].as_u64(),
            Some(LAMBDA_RETRIES as u64)
        );
    }
}
