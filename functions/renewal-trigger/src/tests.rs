//! Unit tests of the renewal handler against mocked DynamoDB and Step Functions, fed with the
//! real ACM event fixtures.

use super::*;
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::operation::query::{QueryError, QueryOutput};
use aws_sdk_dynamodb::types::error::ResourceNotFoundException;
use aws_sdk_sfn::Client as Sfn;
use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
use aws_sdk_sfn::types::error::ExecutionAlreadyExists;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use certship_shared::lambda::decode;
use lambda_runtime::Diagnostic;
use serde_json::Value;
use std::sync::{Arc, Mutex};

const ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/61f50cd4-45b9-4259-b049-d0a53682fa4b";
const EVENT_ID: &str = "9c95e8e4-96a4-ef3f-b739-b6aa5b193afb";
const TABLE: &str = "certship-mappings";
const ACME_TABLE: &str = "certship-acme-certificates";
const ACME_STATE_MACHINE: &str =
    "arn:aws:states:us-east-1:123456789012:stateMachine:certship-acme-issuance";
const STATE_MACHINE: &str =
    "arn:aws:states:us-east-1:123456789012:stateMachine:certship-certificate-deployment";
const EXECUTION_PREFIX: &str =
    "arn:aws:states:us-east-1:123456789012:execution:certship-certificate-deployment:";
const RENEWAL_EVENT: &str = include_str!("../../../events/acm-certificate-available-renewal.json");
const ISSUANCE_EVENT: &str =
    include_str!("../../../events/acm-certificate-available-issuance.json");
const EXPIRATION_EVENT: &str =
    include_str!("../../../events/acm-certificate-expiration-approaching.json");

/// Requests seen by StartExecution: (name, input).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn json(fixture: &str) -> Value {
    serde_json::from_str(fixture).unwrap()
}

fn event(payload: Value) -> EventBridgeEvent<CertificateAvailable> {
    decode(payload).unwrap()
}

fn renewal() -> EventBridgeEvent<CertificateAvailable> {
    event(json(RENEWAL_EVENT))
}

fn renewal_with_id(id: &str) -> EventBridgeEvent<CertificateAvailable> {
    let mut payload = json(RENEWAL_EVENT);
    payload["id"] = id.into();
    event(payload)
}

fn mapping(cert_name: &str, key: &str, value: &str, reload: Option<&str>) -> Mapping {
    Mapping {
        certificate_arn: ARN.into(),
        cert_name: cert_name.into(),
        target_tag_key: key.into(),
        target_tag_value: value.into(),
        reload_service: reload.map(str::to_string),
        secret_arn: None,
        serial: Some("0a:1b".into()),
        cert_expiry_date: None,
        last_exported_date: None,
        association_id: None,
        secret_version_id: None,
        last_deployment: None,
    }
}

fn web() -> Mapping {
    mapping("web", "env", "dev", Some("nginx"))
}

fn api() -> Mapping {
    mapping("api", "env", "prod", Some("haproxy"))
}

/// The name DESIGN gives a mapping's redeployment after one event.
fn name_for(event_id: &str, mapping: &Mapping) -> String {
    naming::renewal_execution_name(
        event_id,
        &naming::tag_key_value(&mapping.target_tag_key, &mapping.target_tag_value),
        &naming::certificate_arn_cert_name(&mapping.certificate_arn, &mapping.cert_name),
        &mapping.cert_name,
    )
}

fn page(mappings: &[Mapping], last_key: Option<HashMap<String, AttributeValue>>) -> QueryOutput {
    QueryOutput::builder()
        .set_items(Some(mappings.iter().map(Mapping::to_item).collect()))
        .set_last_evaluated_key(last_key)
        .build()
}

fn is_index_query(req: &aws_sdk_dynamodb::operation::query::QueryInput) -> bool {
    req.table_name() == Some(TABLE)
        && req.index_name() == Some(attr::BY_CERTIFICATE_ARN)
        && req.key_condition_expression() == Some("#arn = :arn")
        && req
            .expression_attribute_names()
            .and_then(|n| n.get("#arn"))
            .map(String::as_str)
            == Some(attr::CERTIFICATE_ARN)
        && req
            .expression_attribute_values()
            .and_then(|v| v.get(":arn"))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            == Some(ARN)
}

/// One page holding `mappings`, on every call.
fn querying(mappings: Vec<Mapping>) -> Rule {
    mock!(Dynamo::query)
        .match_requests(is_index_query)
        .then_output(move || page(&mappings, None))
}

fn started(name: &str) -> StartExecutionOutput {
    StartExecutionOutput::builder()
        .execution_arn(format!("{EXECUTION_PREFIX}{name}"))
        .start_date(aws_smithy_types::DateTime::from(
            std::time::SystemTime::now(),
        ))
        .build()
        .unwrap()
}

/// Starts every execution it is asked for, recording name and input.
fn starting(seen: Seen) -> Rule {
    mock!(Sfn::start_execution)
        .match_requests(move |req| {
            seen.lock().unwrap().push((
                req.name().unwrap_or_default().into(),
                req.input().unwrap_or_default().into(),
            ));
            req.state_machine_arn() == Some(STATE_MACHINE)
        })
        .then_compute_output(|req| started(req.name().unwrap_or_default()))
}

/// Refuses `name` as Step Functions refuses a name it has already run.
fn already_exists(name: String) -> Rule {
    mock!(Sfn::start_execution)
        .match_requests(move |req| req.name() == Some(name.as_str()))
        .then_error(|| {
            StartExecutionError::ExecutionAlreadyExists(
                ExecutionAlreadyExists::builder()
                    .message("Execution Already Exists")
                    .build(),
            )
        })
}

use certship_testkit::throttling_response as throttling;

fn dynamo(rules: &[&Rule]) -> Dynamo {
    mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |c| c
        .retry_config(
            aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(1))
        ))
}

fn sfn(rules: &[&Rule]) -> Sfn {
    mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules, |c| c.retry_config(
        aws_sdk_sfn::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(1))
    ))
}

fn state(dynamodb: Dynamo, sfn: Sfn) -> AppState {
    AppState {
        dynamodb,
        sfn,
        table_name: TABLE.into(),
        state_machine_arn: STATE_MACHINE.into(),
        acme_table_name: ACME_TABLE.into(),
        acme_state_machine_arn: ACME_STATE_MACHINE.into(),
    }
}

#[tokio::test]
async fn a_renewal_starts_one_execution_per_mapping() {
    // given a renewed certificate mapped to two targets
    let query = querying(vec![web(), api()]);
    let seen = Seen::default();
    let start = starting(seen.clone());
    let logs = certship_testkit::logs::capture();

    // when
    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    // then each mapping got its execution, under the name DESIGN derives from the event
    let names = [name_for(EVENT_ID, &web()), name_for(EVENT_ID, &api())];
    assert_eq!(
        result,
        RenewalResult {
            certificate_arn: ARN.into(),
            action: "RENEWAL".into(),
            mappings: 2,
            started: 2,
            already_started: 0,
            skipped: 0,
            executions: names
                .iter()
                .map(|n| format!("{EXECUTION_PREFIX}{n}"))
                .collect(),
        }
    );
    assert_eq!((query.num_calls(), start.num_calls()), (1, 2));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        names
    );

    // and each input is the mapping's request, triggered by the renewal, reload service kept
    for ((_, input), (mapping, reload)) in seen.iter().zip([(web(), "nginx"), (api(), "haproxy")]) {
        let input: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            input,
            serde_json::json!({
                "CertificateArn": ARN,
                "CertName": mapping.cert_name,
                "TargetTagKey": mapping.target_tag_key,
                "TargetTagValue": mapping.target_tag_value,
                "ReloadService": reload,
                "Trigger": "renewal",
            })
        );
        let state: WorkflowState = serde_json::from_value(input).unwrap();
        assert_eq!(state.request, mapping.to_request(Trigger::Renewal));
    }

    // and the result uses the contract's field names, and each start is logged
    let output = serde_json::to_value(&result).unwrap();
    assert_eq!(output["CertificateArn"], ARN);
    assert_eq!(output["AlreadyStarted"], 0);
    assert_eq!(output["Executions"].as_array().unwrap().len(), 2);
    let text = logs.text();
    assert_eq!(
        text.matches("started the redeployment").count(),
        2,
        "{text}"
    );
    assert!(text.contains(&result.executions[0]), "{text}");
    assert!(text.contains("target=env=prod"), "{text}");
}

#[tokio::test]
async fn the_mappings_are_read_across_every_page() {
    // given two pages, the first pointing at the second
    let last_key = web().to_item();
    let starts_after = Arc::new(Mutex::new(Vec::new()));
    let query = mock!(Dynamo::query)
        .match_requests({
            let starts_after = starts_after.clone();
            move |req| {
                starts_after
                    .lock()
                    .unwrap()
                    .push(req.exclusive_start_key().cloned());
                is_index_query(req)
            }
        })
        .sequence()
        .output({
            let last_key = last_key.clone();
            move || page(&[web()], Some(last_key.clone()))
        })
        .output(|| page(&[api()], None))
        .build();
    let start = starting(Seen::default());

    // when
    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    // then both pages were read, the second from where the first ended
    assert_eq!(query.num_calls(), 2);
    assert_eq!(*starts_after.lock().unwrap(), [None, Some(last_key)]);
    assert_eq!((result.mappings, result.started), (2, 2));
    assert_eq!(start.num_calls(), 2);
}

#[tokio::test]
async fn the_same_event_delivered_twice_starts_nothing_twice() {
    // given a first delivery that starts both executions
    let query = querying(vec![web(), api()]);
    let first_names = Seen::default();
    let start = starting(first_names.clone());
    let first = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();
    assert_eq!(first.started, 2);

    // when EventBridge delivers the same event again, and Step Functions knows both names
    let second_names = Arc::new(Mutex::new(Vec::new()));
    let exists = mock!(Sfn::start_execution)
        .match_requests({
            let second_names = second_names.clone();
            move |req| {
                second_names
                    .lock()
                    .unwrap()
                    .push(req.name().unwrap_or_default().to_string());
                true
            }
        })
        .then_error(|| {
            StartExecutionError::ExecutionAlreadyExists(ExecutionAlreadyExists::builder().build())
        });
    let second = on_acm_event(&state(dynamo(&[&query]), sfn(&[&exists])), renewal())
        .await
        .unwrap();

    // then the second delivery asked for the same names, started nothing and did not fail
    let first_names: Vec<String> = first_names
        .lock()
        .unwrap()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(*second_names.lock().unwrap(), first_names);
    assert_eq!(
        (second.mappings, second.started, second.already_started),
        (2, 0, 2)
    );
    assert!(second.executions.is_empty());
    assert_eq!(exists.num_calls(), 2);
}

#[tokio::test]
async fn different_events_name_their_executions_differently() {
    let mut names = Vec::new();
    for id in ["event-1", "event-2"] {
        let query = querying(vec![web()]);
        let seen = Seen::default();
        let start = starting(seen.clone());
        on_acm_event(
            &state(dynamo(&[&query]), sfn(&[&start])),
            renewal_with_id(id),
        )
        .await
        .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, name_for(id, &web()));
        names.push(seen[0].0.clone());
    }
    assert_ne!(names[0], names[1]);
}

#[tokio::test]
async fn a_certificate_without_mappings_starts_nothing() {
    let query = querying(vec![]);
    let start = starting(Seen::default());
    let logs = certship_testkit::logs::capture();

    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    assert_eq!(
        (result.mappings, result.started, result.already_started),
        (0, 0, 0)
    );
    assert_eq!((query.num_calls(), start.num_calls()), (1, 0));
    assert!(logs.text().contains("no mapping"), "{}", logs.text());
}

#[tokio::test]
async fn an_issuance_is_not_a_renewal_and_reads_nothing() {
    let query = querying(vec![web()]);
    let start = starting(Seen::default());

    let result = on_acm_event(
        &state(dynamo(&[&query]), sfn(&[&start])),
        event(json(ISSUANCE_EVENT)),
    )
    .await
    .unwrap();

    assert_eq!(result.action, "ISSUANCE");
    assert_eq!(result.certificate_arn, ARN);
    assert_eq!((result.mappings, result.started), (0, 0));
    assert_eq!((query.num_calls(), start.num_calls()), (0, 0));
}

/// The handler's error for a payload that decodes but is not a usable renewal event, with the
/// proof that nothing was read or started.
async fn refused(payload: Value) -> CertshipError {
    let query = querying(vec![web()]);
    let start = starting(Seen::default());
    let err = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), event(payload))
        .await
        .unwrap_err();
    assert_eq!((query.num_calls(), start.num_calls()), (0, 0));
    err
}

#[tokio::test]
async fn other_events_are_invalid_requests() {
    let err = refused(json(EXPIRATION_EVENT)).await;
    assert_eq!(err.name(), "InvalidRequest");
    assert!(
        err.to_string()
            .contains("not \"ACM Certificate Approaching Expiration\""),
        "{err}"
    );

    let mut payload = json(RENEWAL_EVENT);
    payload["source"] = "my.app".into();
    let err = refused(payload).await;
    assert_eq!(err.name(), "InvalidRequest");
    assert!(err.to_string().contains("my.app"), "{err}");
}

#[tokio::test]
async fn the_event_must_name_exactly_one_acm_certificate() {
    let cases: [(&str, Value, &str); 4] = [
        ("no resources", serde_json::json!([]), "not 0"),
        ("resources absent", Value::Null, "not 0"),
        (
            "two resources",
            serde_json::json!([ARN, ARN.replace("61f50cd4", "71f50cd4")]),
            "not 2",
        ),
        (
            "a non-ACM ARN",
            serde_json::json!(["arn:aws:iam::123456789012:server-certificate/web"]),
            "not an ACM certificate ARN",
        ),
    ];
    for (case, resources, message) in cases {
        let mut payload = json(RENEWAL_EVENT);
        payload["resources"] = resources;
        let err = refused(payload).await;
        assert_eq!(err.name(), "InvalidRequest", "{case}");
        assert!(err.to_string().contains(message), "{case}: {err}");
    }
}

#[tokio::test]
async fn an_event_without_an_id_is_an_invalid_request() {
    let mut payload = json(RENEWAL_EVENT);
    payload.as_object_mut().unwrap().remove("id");
    let err = refused(payload).await;
    assert_eq!(err.name(), "InvalidRequest");
    assert!(err.to_string().contains("no id"), "{err}");
}

#[test]
fn a_malformed_payload_is_an_invalid_request() {
    let mut no_detail_type = json(RENEWAL_EVENT);
    no_detail_type
        .as_object_mut()
        .unwrap()
        .remove("detail-type");
    let mut resources_not_a_list = json(RENEWAL_EVENT);
    resources_not_a_list["resources"] = ARN.into();
    let mut days_not_a_number = json(RENEWAL_EVENT);
    days_not_a_number["detail"]["DaysToExpiry"] = "soon".into();
    for (payload, names) in [
        (no_detail_type, "detail-type"),
        (resources_not_a_list, "sequence"),
        (days_not_a_number, "expected i64"),
        (serde_json::json!("renew please"), "struct"),
    ] {
        let err = decode::<EventBridgeEvent<CertificateAvailable>>(payload).unwrap_err();
        assert_eq!(err.name(), "InvalidRequest");
        assert!(err.to_string().contains(names), "{err}");
    }
}

#[test]
fn the_fixtures_decode_into_the_typed_detail() {
    let renewal = renewal();
    assert_eq!(renewal.id.as_deref(), Some(EVENT_ID));
    assert_eq!(renewal.detail.action.as_deref(), Some("RENEWAL"));
    assert_eq!(renewal.detail.days_to_expiry, Some(395));
    assert_eq!(renewal.detail.exported, Some(true));
    assert_eq!(renewal.detail.in_use, Some(true));
    assert_eq!(
        renewal.detail.certificate_type.as_deref(),
        Some("AMAZON_ISSUED")
    );
    let expiring = event(json(EXPIRATION_EVENT));
    assert_eq!(expiring.detail.days_to_expiry, Some(31));
    assert_eq!(expiring.detail.action, None);
}

#[tokio::test]
async fn a_throttled_start_is_retried_by_the_sdk_and_succeeds() {
    let query = querying(vec![web()]);
    let start = mock!(Sfn::start_execution)
        .sequence()
        .http_response(throttling)
        .output(|| started("renewal-web"))
        .build();

    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    assert_eq!(start.num_calls(), 2);
    assert_eq!(result.started, 1);
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_throttled_after_the_other_mappings() {
    // given two mappings, the first one's start throttled beyond the SDK's retries
    let query = querying(vec![web(), api()]);
    let throttled_name = name_for(EVENT_ID, &web());
    let throttled = mock!(Sfn::start_execution)
        .match_requests(move |req| req.name() == Some(throttled_name.as_str()))
        .sequence()
        .http_response(throttling)
        .times(3)
        .build();
    let seen = Seen::default();
    let start = starting(seen.clone());

    // when
    let err = on_acm_event(
        &state(dynamo(&[&query]), sfn(&[&throttled, &start])),
        renewal(),
    )
    .await
    .unwrap_err();

    // then the invocation fails as Throttled, so EventBridge retries it
    assert_eq!(err.name(), "Throttled");
    assert!(err.to_string().contains("StartExecution"), "{err}");
    assert_eq!(Diagnostic::from(err).error_type, "Throttled");
    assert_eq!(throttled.num_calls(), 3);

    // and the other mapping was still started
    assert_eq!(start.num_calls(), 1);
    assert_eq!(seen.lock().unwrap()[0].0, name_for(EVENT_ID, &api()));
}

#[tokio::test]
async fn a_malformed_mapping_item_is_skipped() {
    // given an index page holding one good item and one without a CertName
    let mut broken = api().to_item();
    broken.remove(attr::CERT_NAME);
    let query = mock!(Dynamo::query).then_output(move || {
        QueryOutput::builder()
            .items(web().to_item())
            .items(broken.clone())
            .build()
    });
    let seen = Seen::default();
    let start = starting(seen.clone());
    let logs = certship_testkit::logs::capture();

    // when
    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    // then the good mapping is redeployed and the broken one counted and logged
    assert_eq!((result.mappings, result.started, result.skipped), (1, 1, 1));
    assert_eq!(seen.lock().unwrap()[0].0, name_for(EVENT_ID, &web()));
    assert!(logs.text().contains("malformed mapping"), "{}", logs.text());
}

#[tokio::test]
async fn a_failed_query_starts_nothing() {
    let query = mock!(Dynamo::query).then_error(|| {
        QueryError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Requested resource not found")
                .build(),
        )
    });
    let start = starting(Seen::default());

    let err = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap_err();

    assert_eq!(err.name(), "ServiceError");
    assert!(err.to_string().contains("Query"), "{err}");
    assert_eq!(start.num_calls(), 0);
}

#[tokio::test]
async fn a_retried_event_starts_only_what_is_missing() {
    // given an earlier delivery that started the first mapping's execution only
    let query = querying(vec![web(), api()]);
    let exists = already_exists(name_for(EVENT_ID, &web()));
    let seen = Seen::default();
    let start = starting(seen.clone());

    // when the event is delivered again
    let result = on_acm_event(
        &state(dynamo(&[&query]), sfn(&[&exists, &start])),
        renewal(),
    )
    .await
    .unwrap();

    // then only the missing execution is started
    assert_eq!((result.started, result.already_started), (1, 1));
    assert_eq!(exists.num_calls(), 1);
    assert_eq!(seen.lock().unwrap()[0].0, name_for(EVENT_ID, &api()));
}

#[tokio::test]
async fn a_redelivery_while_the_execution_runs_counts_as_already_started() {
    // given Step Functions answering the repeated name with the running execution's own start
    let query = querying(vec![web()]);
    let start = mock!(Sfn::start_execution).then_output(|| {
        StartExecutionOutput::builder()
            .execution_arn(format!("{EXECUTION_PREFIX}earlier"))
            .start_date(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .build()
            .unwrap()
    });
    let state = state(dynamo(&[&query]), sfn(&[&start]));

    // when
    let result = on_acm_event(&state, renewal()).await.unwrap();

    // then nothing new is counted as started
    assert_eq!((result.started, result.already_started), (0, 1));
    assert!(result.executions.is_empty());
}

/// A mapping whose item records `execution_name` as its last deployment, as
/// check-install-status writes it when the execution ends.
fn deployed_by(mut mapping: Mapping, execution_name: &str) -> Mapping {
    mapping.last_deployment = Some(certship_shared::mapping::LastDeployment {
        execution_arn: Some(format!("{EXECUTION_PREFIX}{execution_name}")),
        status: certship_shared::mapping::LastDeploymentStatus::Success,
        succeeded: 1,
        failed: 0,
        finished_at: "2026-11-20T18:50:00Z".into(),
    });
    mapping
}

/// After the fixture's event (`2026-11-20T18:43:48Z`): what dispatch-install writes as
/// `LastExportedDate` seconds into the execution the event started.
const EXPORTED_SINCE: &str = "2026-11-20T18:43:51Z";

#[tokio::test]
async fn a_mapping_whose_last_deployment_was_this_events_execution_is_not_started_again() {
    // given web's item recording the execution this event gives it, api's an earlier event's
    let query = querying(vec![
        deployed_by(web(), &name_for(EVENT_ID, &web())),
        deployed_by(api(), &name_for("an-earlier-event", &api())),
    ]);
    let seen = Seen::default();
    let start = starting(seen.clone());

    // when the event is delivered again
    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    // then only api is started; web counts as started earlier, without a call
    assert_eq!(
        (result.mappings, result.started, result.already_started),
        (2, 1, 1)
    );
    assert_eq!(start.num_calls(), 1);
    assert_eq!(seen.lock().unwrap()[0].0, name_for(EVENT_ID, &api()));
}

#[tokio::test]
async fn mappings_exported_since_the_renewal_are_started_after_the_others() {
    // given the index returning first a mapping exported after the event, then one exported
    // before it, then one never exported
    let mut reached = web();
    reached.last_exported_date = Some(EXPORTED_SINCE.into());
    let mut before = api();
    before.last_exported_date = Some("2026-01-01T00:00:00Z".into());
    let never = mapping("db", "env", "qa", None);
    let query = querying(vec![reached.clone(), before.clone(), never.clone()]);
    let start = starting(Seen::default());

    // when
    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    // then all three are started, the two not yet reached first, in the index's order
    assert_eq!(result.started, 3);
    assert_eq!(
        result.executions,
        [before, never, reached]
            .iter()
            .map(|m| format!("{EXECUTION_PREFIX}{}", name_for(EVENT_ID, m)))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_thousand_mappings_are_each_started_once_and_listed_in_walk_order() {
    let mappings: Vec<Mapping> = (0..1000)
        .map(|i| mapping("web", "env", &format!("host-{i:04}"), None))
        .collect();
    let names: Vec<String> = mappings.iter().map(|m| name_for(EVENT_ID, m)).collect();
    let query = querying(mappings);
    let seen = Seen::default();
    let start = starting(seen.clone());

    let result = on_acm_event(&state(dynamo(&[&query]), sfn(&[&start])), renewal())
        .await
        .unwrap();

    assert_eq!((result.mappings, result.started), (1000, 1000));
    assert_eq!(start.num_calls(), 1000);
    let mut asked: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    asked.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(asked, expected, "each name asked for exactly once");
    assert_eq!(
        result.executions,
        names
            .iter()
            .map(|n| format!("{EXECUTION_PREFIX}{n}"))
            .collect::<Vec<_>>()
    );
}

/// What [`SlowStepFunctions`] has seen: the names it started, in order, and how many starts
/// were in flight at once.
#[derive(Debug, Default)]
struct Registry {
    started: Vec<String>,
    refused: usize,
    answered: usize,
    answers_left: usize,
    in_flight: usize,
    most_in_flight: usize,
}

/// Step Functions behind the client's HTTP connection, for what mocks cannot show (they answer
/// at once and always): each start takes `LATENCY`, so starts overlap; a name is started once
/// and refused after (`ExecutionAlreadyExists`); and once its answers run out it never answers
/// again, as a service that stops answering while Lambda's timeout runs out.
#[derive(Debug, Clone, Default)]
struct SlowStepFunctions {
    registry: Arc<Mutex<Registry>>,
}

impl SlowStepFunctions {
    const LATENCY: std::time::Duration = std::time::Duration::from_millis(20);

    fn answering(&self, answers: usize) {
        self.registry.lock().unwrap().answers_left = answers;
    }

    fn client(&self) -> Sfn {
        let fake = self.clone();
        Sfn::from_conf(
            aws_sdk_sfn::Config::builder()
                .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
                .region(aws_sdk_sfn::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_sfn::config::Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                ))
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(fake.clone())
                }))
                .build(),
        )
    }

    /// The names started so far, sorted (starts answered together may land in any order).
    fn started(&self) -> Vec<String> {
        let mut started = self.registry.lock().unwrap().started.clone();
        started.sort();
        started
    }
}

impl HttpConnector for SlowStepFunctions {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let name = request
            .body()
            .bytes()
            .and_then(|body| serde_json::from_slice::<Value>(body).ok())
            .and_then(|body| body["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        let registry = self.registry.clone();
        HttpConnectorFuture::new(async move {
            {
                let mut r = registry.lock().unwrap();
                r.in_flight += 1;
                r.most_in_flight = r.most_in_flight.max(r.in_flight);
            }
            tokio::time::sleep(SlowStepFunctions::LATENCY).await;
            let answer = {
                let mut r = registry.lock().unwrap();
                r.in_flight -= 1;
                if r.answers_left == 0 {
                    None
                } else {
                    r.answers_left -= 1;
                    r.answered += 1;
                    if r.started.contains(&name) {
                        r.refused += 1;
                        Some((
                            400u16,
                            serde_json::json!({
                                "__type": "ExecutionAlreadyExists",
                                "message": format!("Execution Already Exists: '{EXECUTION_PREFIX}{name}'"),
                            }),
                        ))
                    } else {
                        r.started.push(name.clone());
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs_f64();
                        Some((
                            200u16,
                            serde_json::json!({
                                "executionArn": format!("{EXECUTION_PREFIX}{name}"),
                                "startDate": now,
                            }),
                        ))
                    }
                }
            };
            let Some((status, body)) = answer else {
                return std::future::pending().await;
            };
            let mut response = HttpResponse::new(
                status.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::from(body.to_string()),
            );
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.0");
            Ok(response)
        })
    }
}

#[tokio::test]
async fn starts_overlap_but_never_more_than_in_flight_at_once() {
    // given a certificate with more mappings than may be started at once
    let mappings: Vec<Mapping> = (0..100)
        .map(|i| mapping("web", "env", &format!("host-{i:03}"), None))
        .collect();
    let query = querying(mappings);
    let fake = SlowStepFunctions::default();
    fake.answering(usize::MAX);

    // when
    let result = on_acm_event(&state(dynamo(&[&query]), fake.client()), renewal())
        .await
        .unwrap();

    // then every mapping was started, IN_FLIGHT at a time
    assert_eq!(result.started, 100);
    assert_eq!(fake.started().len(), 100);
    assert_eq!(fake.registry.lock().unwrap().most_in_flight, IN_FLIGHT);
}

#[tokio::test]
async fn a_renewal_cut_off_partway_resumes_with_the_mappings_it_had_not_reached() {
    // given 160 mappings, 5 rounds of IN_FLIGHT starts; the index shows what dispatch-install
    // writes on a mapping seconds into the execution the event started (its LastExportedDate)
    assert_eq!(IN_FLIGHT, 32, "the rounds below assume 32 in flight");
    let mappings: Vec<Mapping> = (0..160)
        .map(|i| mapping("web", "env", &format!("host-{i:03}"), None))
        .collect();
    let names: Vec<String> = mappings.iter().map(|m| name_for(EVENT_ID, m)).collect();
    let sorted = |names: &[String]| {
        let mut names = names.to_vec();
        names.sort();
        names
    };
    let fake = SlowStepFunctions::default();
    let query = mock!(Dynamo::query)
        .match_requests(is_index_query)
        .then_output({
            let fake = fake.clone();
            move || {
                let started = fake.started();
                let items: Vec<Mapping> = mappings
                    .iter()
                    .cloned()
                    .map(|mut m| {
                        if started.contains(&name_for(EVENT_ID, &m)) {
                            m.last_exported_date = Some(EXPORTED_SINCE.into());
                        }
                        m
                    })
                    .collect();
                page(&items, None)
            }
        });
    let state = state(dynamo(&[&query]), fake.client());
    let lambda_timeout = std::time::Duration::from_secs(2);

    // when the first delivery is cut off after three rounds (Step Functions stops answering)
    fake.answering(96);
    let first = tokio::time::timeout(lambda_timeout, on_acm_event(&state, renewal())).await;
    assert!(first.is_err(), "the first delivery was cut off: {first:?}");
    assert_eq!(fake.started(), sorted(&names[..96]));

    // and the redelivery gets only two rounds of answers before it is cut off too
    fake.answering(64);
    let second = tokio::time::timeout(lambda_timeout, on_acm_event(&state, renewal())).await;

    // then those two rounds went to the 64 mappings not yet reached: every mapping is started,
    // and none twice (the walk from the top would have spent them on names already started)
    assert!(second.is_err(), "the redelivery was cut off: {second:?}");
    assert_eq!(fake.registry.lock().unwrap().refused, 0);
    assert_eq!(fake.started(), sorted(&names));

    // and a third delivery, answered in full, finds everything started
    fake.answering(usize::MAX);
    let third = on_acm_event(&state, renewal()).await.unwrap();
    assert_eq!((third.started, third.already_started), (0, 160));
    assert_eq!(fake.started(), sorted(&names));
}
