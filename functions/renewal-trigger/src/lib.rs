//! renewal-trigger: when a certificate is renewed, starts one deployment per mapping of it. Two
//! events say so: ACM's "ACM Certificate Available" (`RENEWAL`) for an ACM certificate, and
//! certship's own "ACME Certificate Issued" for `acme:<id>`. On schedule it also sweeps the ACME
//! certificates and re-issues those due for renewal ([`sweep`]), which ends in the second event.
//!
//! Execution names derive from the event id, so a redelivered event starts nothing twice.
//! Starts run [`IN_FLIGHT`] at a time, so a certificate with a thousand mappings is done in
//! seconds, far inside the 30 s timeout. If an invocation still fails or is cut off (Step
//! Functions throttling past the SDK's retries, a slow service), Lambda delivers the event again
//! and the new invocation resumes rather than walking the same order into the same wall: it reads
//! what the mapping items already say about this renewal, at no extra call.
//!
//! - A mapping whose `LastDeployment` names this event's execution is not started again: that
//!   execution ran, so its name is taken (a start could only answer `ExecutionAlreadyExists`).
//! - A mapping exported at or after the event's time (dispatch-install writes `LastExportedDate`
//!   seconds into an execution, and Lambda's first retry comes about a minute later) was most
//!   likely reached already: it is started after every other, so the ones not yet reached come
//!   first. It is still started, since only Step Functions knows for sure, and the name makes
//!   the start harmless.
//!
//! Neither needs more than the `Query` and `StartExecution` the function already may call. Asking
//! Step Functions which names exist would need `ListExecutions` (a bucket of 200 refilled at 5
//! per second in the largest regions, which a storm of renewals drains at once) or one
//! `DescribeExecution` per mapping (as many calls as the starts it saves); recording progress
//! would cost a write per mapping. Stopping a few seconds before the deadline would only trade
//! Lambda's timeout for an error: what a cut-off invocation started stays started either way.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use certship_shared::acme;
use certship_shared::arn::CertificateArn;
use certship_shared::event::{AcmeIssuedEvent, DETAIL_TYPE_ACME_ISSUED, EVENT_SOURCE};
use certship_shared::mapping::{Mapping, attr};
use certship_shared::{CertshipError, Trigger, WorkflowState, naming};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::task::JoinSet;
use tracing::Instrument;

mod settings;
pub mod sweep;
pub use settings::{ACME_STATE_MACHINE_ARN_VAR, STATE_MACHINE_ARN_VAR, Settings};
pub use sweep::{SweepRequest, SweepResult};

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    /// The mapping table (`TABLE_NAME`).
    pub table_name: String,
    /// The deployment state machine (`STATE_MACHINE_ARN`).
    pub state_machine_arn: String,
    /// The ACME registry (`ACME_TABLE_NAME`) and issuance machine (`ACME_STATE_MACHINE_ARN`).
    pub acme_table_name: String,
    pub acme_state_machine_arn: String,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        let Settings {
            table_name,
            state_machine_arn,
            acme_table_name,
            acme_state_machine_arn,
        } = settings;
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            table_name,
            state_machine_arn,
            acme_table_name,
            acme_state_machine_arn,
        }
    }
}

/// At most this many StartExecution calls in flight per invocation. StartExecution's default
/// quota for standard workflows is a token bucket of 1,300 refilled at 300 a second in
/// us-east-1, us-west-2 and eu-west-1, of 800 refilled at 150 elsewhere ("Quotas related to API
/// action throttling", <https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html>).
/// At 30-100 ms a call, 32 in flight start 300-1,000 executions a second: 1,000 mappings take one
/// to three seconds, inside one full bucket of the large regions (elsewhere the starts beyond
/// the bucket are throttled and retried by the SDK as it refills, and what outlasts those retries
/// is left to Lambda's retry of the event). More in flight would empty the bucket faster (it is
/// the account's, shared with every other deployment) without starting more once it is empty;
/// fewer would leave the walk at the mercy of latency (8 at 200 ms take 25 s for 1,000, close to
/// the 30 s timeout).
pub const IN_FLIGHT: usize = 32;

/// ACM's event this function acts on.
pub const DETAIL_TYPE: &str = "ACM Certificate Available";
/// The event source of ACM's events.
pub const SOURCE: &str = "aws.acm";
/// The `Action` of a renewal; issuance and (re)imports deploy nothing.
pub const RENEWAL: &str = "RENEWAL";

/// The `detail` of ACM's "ACM Certificate Available" event. Every field is optional: ACM adds
/// fields over time, and only `Action` decides anything here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateAvailable {
    /// `ISSUANCE`, `RENEWAL`, `IMPORT` or `REIMPORT`.
    pub action: Option<String>,
    pub certificate_type: Option<String>,
    pub common_name: Option<String>,
    pub domain_validation_method: Option<String>,
    pub certificate_created_date: Option<String>,
    pub certificate_expiration_date: Option<String>,
    pub days_to_expiry: Option<i64>,
    pub in_use: Option<bool>,
    pub exported: Option<bool>,
}

/// What one event led to; the counts let an operator read the outcome from the invocation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RenewalResult {
    pub certificate_arn: String,
    pub action: String,
    /// Mappings of the certificate that could be read.
    pub mappings: u32,
    /// Executions started by this invocation.
    pub started: u32,
    /// Executions an earlier delivery of the same event had already started.
    pub already_started: u32,
    /// Malformed mapping items, left alone.
    pub skipped: u32,
    /// The ARNs of the executions started by this invocation.
    pub executions: Vec<String>,
}

/// The `Action` renewal-trigger reports for certship's "ACME Certificate Issued".
pub const ACME_ISSUED: &str = "ACME_ISSUED";

/// What the function is invoked with: the schedule's sweep, or an event from EventBridge.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Sweep {
        #[serde(rename = "Sweep")]
        sweep: SweepRequest,
    },
    Event(serde_json::Value),
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Output {
    Renewal(RenewalResult),
    Sweep(SweepResult),
}

/// Routes the invocation: a sweep, ACM's renewal event or certship's ACME issuance event.
pub async fn handler(state: &AppState, input: Input) -> Result<Output, CertshipError> {
    let event = match input {
        Input::Sweep { sweep } => return sweep::sweep(state, &sweep).await.map(Output::Sweep),
        Input::Event(event) => event,
    };
    let field = |name: &str| event.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    match (field("source"), field("detail-type")) {
        (SOURCE, DETAIL_TYPE) => on_acm_event(state, decode(event)?)
            .await
            .map(Output::Renewal),
        (EVENT_SOURCE, DETAIL_TYPE_ACME_ISSUED) => on_acme_issued(state, decode(event)?)
            .await
            .map(Output::Renewal),
        (source, detail_type) => Err(CertshipError::InvalidRequest(format!(
            "renewal-trigger handles a {{\"Sweep\": ...}} from the schedule, {DETAIL_TYPE:?} \
             events from {SOURCE} and {DETAIL_TYPE_ACME_ISSUED:?} events from {EVENT_SOURCE}, \
             not {detail_type:?} from {source:?}"
        ))),
    }
}

/// The event as `T`, or why it cannot be.
fn decode<T: serde::de::DeserializeOwned>(event: serde_json::Value) -> Result<T, CertshipError> {
    serde_json::from_value(event)
        .map_err(|e| CertshipError::InvalidRequest(format!("the event cannot be read: {e}")))
}

/// Starts one deployment per mapping of the certificate ACM renewed.
pub async fn on_acm_event(
    state: &AppState,
    event: EventBridgeEvent<CertificateAvailable>,
) -> Result<RenewalResult, CertshipError> {
    let (event_id, certificate_arn) = validate_event(&event)?;
    let action = event.detail.action.clone().unwrap_or_default();
    if action != RENEWAL {
        tracing::info!(
            certificate_arn = %certificate_arn,
            action = %action,
            "not a renewal; nothing to redeploy"
        );
        return Ok(RenewalResult::new(certificate_arn, &action));
    }
    let renewed_at = event.time.map(SystemTime::from);
    redeploy(state, event_id, certificate_arn, &action, renewed_at).await
}

/// Starts one deployment per mapping of `acme:<id>`, which was just issued (first or again).
pub async fn on_acme_issued(
    state: &AppState,
    event: EventBridgeEvent<AcmeIssuedEvent>,
) -> Result<RenewalResult, CertshipError> {
    let event_id = event_id(&event)?;
    let resources = event.resources.as_deref().unwrap_or_default();
    let source = format!("{}{}", acme::SOURCE_PREFIX, event.detail.certificate_id);
    match resources {
        [resource] if *resource == source && acme::source_id(resource).is_some() => {}
        _ => {
            return Err(CertshipError::InvalidRequest(format!(
                "the event's resources must be exactly [{source:?}] for a valid certificate id, \
                 not {resources:?}"
            )));
        }
    }
    let renewed_at = event.time.map(SystemTime::from);
    redeploy(state, event_id, &source, ACME_ISSUED, renewed_at).await
}

impl RenewalResult {
    fn new(certificate_arn: &str, action: &str) -> Self {
        Self {
            certificate_arn: certificate_arn.to_string(),
            action: action.to_string(),
            mappings: 0,
            started: 0,
            already_started: 0,
            skipped: 0,
            executions: Vec::new(),
        }
    }
}

/// Starts a redeployment of every mapping of `certificate_arn` (an ACM ARN or `acme:<id>`),
/// named after the event.
async fn redeploy(
    state: &AppState,
    event_id: &str,
    certificate_arn: &str,
    action: &str,
    renewed_at: Option<SystemTime>,
) -> Result<RenewalResult, CertshipError> {
    let mut result = RenewalResult::new(certificate_arn, action);
    let (mappings, skipped) = mappings_of(state, certificate_arn).await?;
    result.mappings = count(mappings.len());
    result.skipped = skipped;
    if mappings.is_empty() {
        tracing::info!(
            certificate_arn = %certificate_arn,
            skipped,
            "no mapping of the renewed certificate; nothing to redeploy"
        );
        return Ok(result);
    }

    let (walk, recorded) = walk_order(event_id, mappings, renewed_at);
    result.already_started += recorded;

    // Every mapping gets its chance even when one fails; the first failure is returned after, so
    // the event is retried (Lambda's asynchronous retries of EventBridge's invocation) and the
    // idempotent names start only what is still missing.
    let mut first_error = None;
    for (mapping, outcome) in start_all(state, walk).await {
        match outcome {
            Ok(Started::Now(execution_arn)) => {
                result.started += 1;
                result.executions.push(execution_arn);
            }
            Ok(Started::Earlier) => result.already_started += 1,
            Err(err) => {
                match &mapping {
                    Some(mapping) => tracing::warn!(
                        certificate_arn = %mapping.certificate_arn,
                        cert_name = %mapping.cert_name,
                        target = %target(mapping),
                        error = %err,
                        "could not start the redeployment"
                    ),
                    None => tracing::warn!(error = %err, "could not start a redeployment"),
                }
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(result),
    }
}

/// One mapping to start, under the name this event gives it.
struct Pending {
    mapping: Mapping,
    name: String,
}

/// The mappings to start, those this event has not reached yet first (see the module doc), and
/// how many need no start because their last deployment was this event's execution.
fn walk_order(
    event_id: &str,
    mappings: Vec<Mapping>,
    renewed_at: Option<SystemTime>,
) -> (Vec<Pending>, u32) {
    let mut recorded = 0;
    let mut walk = Vec::with_capacity(mappings.len());
    for mapping in mappings {
        let name = execution_name(event_id, &mapping);
        let last_execution = mapping
            .last_deployment
            .as_ref()
            .and_then(|last| last.execution_arn.as_deref());
        if last_execution.and_then(|arn| arn.rsplit(':').next()) == Some(name.as_str()) {
            recorded += 1;
        } else {
            walk.push(Pending { mapping, name });
        }
    }
    let exported_since_renewal = |pending: &Pending| {
        let exported = pending.mapping.last_exported_date.as_deref();
        renewed_at
            .zip(exported.and_then(certship_shared::time::parse_rfc3339))
            .is_some_and(|(renewed, exported)| exported >= renewed)
    };
    // Stable: otherwise the index's order.
    walk.sort_by_key(exported_since_renewal);
    (walk, recorded)
}

/// Starts every pending mapping, [`IN_FLIGHT`] at a time, returning each outcome in walk order
/// (a start that could not even run has no mapping).
async fn start_all(
    state: &AppState,
    walk: Vec<Pending>,
) -> Vec<(Option<Mapping>, Result<Started, CertshipError>)> {
    let state_machine_arn: Arc<str> = Arc::from(state.state_machine_arn.as_str());
    let mut outcomes = Vec::with_capacity(walk.len());
    let mut in_flight = JoinSet::new();
    let mut walk = walk.into_iter().enumerate();
    loop {
        while in_flight.len() < IN_FLIGHT {
            let Some((index, pending)) = walk.next() else {
                break;
            };
            let sfn = state.sfn.clone();
            let state_machine_arn = Arc::clone(&state_machine_arn);
            in_flight.spawn(
                async move {
                    let outcome = start(&sfn, &state_machine_arn, &pending).await;
                    (index, Some(pending.mapping), outcome)
                }
                .instrument(tracing::Span::current()),
            );
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        outcomes.push(joined.unwrap_or_else(|err| {
            let err = CertshipError::Service(format!("a StartExecution task failed: {err}"));
            (usize::MAX, None, Err(err))
        }));
    }
    outcomes.sort_by_key(|(index, _, _)| *index);
    outcomes
        .into_iter()
        .map(|(_, mapping, outcome)| (mapping, outcome))
        .collect()
}

/// Checks that this is ACM's "certificate available" event for one certificate, returning the
/// event id and the certificate ARN.
fn validate_event(
    event: &EventBridgeEvent<CertificateAvailable>,
) -> Result<(&str, &str), CertshipError> {
    if event.detail_type != DETAIL_TYPE || event.source != SOURCE {
        return Err(CertshipError::InvalidRequest(format!(
            "renewal-trigger handles {DETAIL_TYPE:?} events from {SOURCE}, not {:?} from {:?}",
            event.detail_type, event.source
        )));
    }
    let event_id = event_id(event)?;
    let resources = event.resources.as_deref().unwrap_or_default();
    let [certificate_arn] = resources else {
        return Err(CertshipError::InvalidRequest(format!(
            "the event's resources must hold exactly one certificate ARN, not {}",
            resources.len()
        )));
    };
    CertificateArn::parse(certificate_arn).map_err(|err| {
        CertshipError::InvalidRequest(format!("the event's resource is not usable: {err}"))
    })?;
    Ok((event_id, certificate_arn.as_str()))
}

/// The event's id, which names its executions.
fn event_id<T>(event: &EventBridgeEvent<T>) -> Result<&str, CertshipError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    event
        .id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            CertshipError::InvalidRequest(
                "the event has no id, which names its executions idempotently".into(),
            )
        })
}

/// Every mapping of the certificate, from the `ByCertificateArn` index, all pages; malformed
/// items are logged and counted, not fatal.
async fn mappings_of(
    state: &AppState,
    certificate_arn: &str,
) -> Result<(Vec<Mapping>, u32), CertshipError> {
    let mut mappings = Vec::new();
    let mut skipped = 0;
    let mut start_key: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = state
            .dynamodb
            .query()
            .table_name(&state.table_name)
            .index_name(attr::BY_CERTIFICATE_ARN)
            .key_condition_expression("#arn = :arn")
            .expression_attribute_names("#arn", attr::CERTIFICATE_ARN)
            .expression_attribute_values(":arn", AttributeValue::S(certificate_arn.to_string()))
            .set_exclusive_start_key(start_key.take())
            .send()
            .await
            .map_err(|err| CertshipError::from_sdk("Query", err))?;
        for item in page.items() {
            match Mapping::from_item(item) {
                Ok(mapping) => mappings.push(mapping),
                Err(err) => {
                    skipped += 1;
                    tracing::warn!(
                        certificate_arn = %certificate_arn,
                        error = %err,
                        "skipping a malformed mapping item"
                    );
                }
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => return Ok((mappings, skipped)),
        }
    }
}

/// Whether an execution was started now or by an earlier delivery of the same event or sweep.
enum Started {
    Now(String),
    Earlier,
}

/// The name this event gives a mapping's redeployment.
pub fn execution_name(event_id: &str, mapping: &Mapping) -> String {
    naming::renewal_execution_name(
        event_id,
        &naming::tag_key_value(&mapping.target_tag_key, &mapping.target_tag_value),
        &naming::certificate_arn_cert_name(&mapping.certificate_arn, &mapping.cert_name),
        &mapping.cert_name,
    )
}

/// Starts the redeployment of one mapping under the name this event gives it.
async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    Pending { mapping, name }: &Pending,
) -> Result<Started, CertshipError> {
    let input = serde_json::to_string(&WorkflowState::new(mapping.to_request(Trigger::Renewal)))
        .map_err(|e| CertshipError::Service(format!("could not encode the workflow input: {e}")))?;
    let started = start_once(sfn, state_machine_arn, name, input).await?;
    match &started {
        Started::Now(execution_arn) => tracing::info!(
            certificate_arn = %mapping.certificate_arn,
            cert_name = %mapping.cert_name,
            target = %target(mapping),
            execution_arn = %execution_arn,
            "started the redeployment"
        ),
        Started::Earlier => tracing::info!(
            certificate_arn = %mapping.certificate_arn,
            cert_name = %mapping.cert_name,
            target = %target(mapping),
            execution_name = %name,
            "the redeployment was already started for this event"
        ),
    }
    Ok(started)
}

/// StartExecution of `name`, which names its execution after what asked for it (an event, a
/// sweep), so that a repeated delivery starts nothing twice: [`Started::Earlier`] when an earlier
/// delivery started it.
async fn start_once(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: &str,
    input: String,
) -> Result<Started, CertshipError> {
    let asked_at = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    let started = sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input)
        .send()
        .await;
    match started {
        // Step Functions answers a repeated name with the same input with the running
        // execution's own ARN and start date rather than an error: an execution that began
        // before this call was started by an earlier delivery.
        // (Clock skew can only misfile the count, never start anything twice.)
        Ok(out) if out.start_date.to_millis().ok() < asked_at.to_millis().ok() => {
            Ok(Started::Earlier)
        }
        Ok(out) => Ok(Started::Now(out.execution_arn)),
        Err(err) => match err.as_service_error() {
            Some(StartExecutionError::ExecutionAlreadyExists(_)) => Ok(Started::Earlier),
            _ => Err(CertshipError::from_sdk("StartExecution", err)),
        },
    }
}

/// `key=value`, as an operator writes a tag target.
fn target(mapping: &Mapping) -> String {
    format!("{}={}", mapping.target_tag_key, mapping.target_tag_value)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
