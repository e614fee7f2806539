//! renewal-trigger against moto server: mappings found through the index start executions on a
//! real state machine, once per mapping however often the event is delivered, and however far
//! a cut-off delivery got.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_sfn::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_sfn::config::{ConfigBag, Intercept, RuntimeComponents};
use certship_shared::mapping::Mapping;
use certship_shared::{DeploymentRequest, Trigger};
use certship_testkit::{moto::Moto, seed};
use renewal_trigger::{AppState, CertificateAvailable, on_acm_event};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const TABLE: &str = "certship-mappings";
const ACCOUNT_ARN: &str = "arn:aws:acm:us-east-1:123456789012:certificate/";

fn mapping(arn: &str, name: &str, value: &str, reload: Option<&str>) -> Mapping {
    Mapping {
        certificate_arn: arn.into(),
        cert_name: name.into(),
        target_tag_key: "env".into(),
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

fn renewal_event(arn: &str, id: &str) -> EventBridgeEvent<CertificateAvailable> {
    let mut event: serde_json::Value = serde_json::from_str(include_str!(
        "../../../events/acm-certificate-available-renewal.json"
    ))
    .unwrap();
    event["resources"] = serde_json::json!([arn]);
    event["id"] = serde_json::json!(id);
    certship_shared::lambda::decode(event).unwrap()
}

/// A state machine on moto whose executions stay `RUNNING`.
async fn state_machine(sfn: &aws_sdk_sfn::Client) -> String {
    sfn.create_state_machine()
        .name("certificate-deployment")
        .role_arn("arn:aws:iam::123456789012:role/certship-states")
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#)
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

/// The names of every execution of `machine`.
async fn execution_names(sfn: &aws_sdk_sfn::Client, machine: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(machine)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        names.extend(
            page.unwrap()
                .executions()
                .iter()
                .map(|e| e.name().to_string()),
        );
    }
    names
}

/// Counts the answers a client has had.
#[derive(Debug, Default, Clone)]
struct Answers(Arc<AtomicUsize>);

impl Answers {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for Answers {
    fn name(&self) -> &'static str {
        "Answers"
    }

    fn read_after_deserialization(
        &self,
        _context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_sfn::error::BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_renewal_starts_one_execution_per_mapping_once() {
    // given a state machine and three mappings, two of them for the renewed certificate
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    seed::mapping_table(&dynamodb, TABLE).await.unwrap();
    let machine = state_machine(&sfn).await;
    let renewed = format!("{ACCOUNT_ARN}11111111-2222-4333-8444-555555555555");
    let other = format!("{ACCOUNT_ARN}99999999-2222-4333-8444-555555555555");
    for m in [
        mapping(&renewed, "web", "dev", Some("nginx")),
        mapping(&renewed, "web", "prod", None),
        mapping(&other, "api", "dev", None),
    ] {
        dynamodb
            .put_item()
            .table_name(TABLE)
            .set_item(Some(m.to_item()))
            .send()
            .await
            .unwrap();
    }
    let state = AppState {
        dynamodb,
        sfn: sfn.clone(),
        table_name: TABLE.into(),
        state_machine_arn: machine.clone(),
        acme_table_name: String::new(),
        acme_state_machine_arn: String::new(),
    };

    // when the renewal event arrives
    let result = on_acm_event(&state, renewal_event(&renewed, "evt-1"))
        .await
        .unwrap();

    // then one execution per mapping of that certificate started, with the stored inputs
    assert_eq!(
        (result.mappings, result.started, result.already_started),
        (2, 2, 0)
    );
    let executions = sfn
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert_eq!(executions.executions().len(), 2);
    let mut inputs = Vec::new();
    for execution in executions.executions() {
        let described = sfn
            .describe_execution()
            .execution_arn(execution.execution_arn())
            .send()
            .await
            .unwrap();
        let input: DeploymentRequest = serde_json::from_str(described.input().unwrap()).unwrap();
        assert_eq!(input.trigger, Trigger::Renewal);
        assert_eq!(input.certificate_arn, renewed);
        inputs.push((input.target_tag_value, input.reload_service));
    }
    inputs.sort();
    assert_eq!(
        inputs,
        [
            ("dev".to_string(), Some("nginx".to_string())),
            ("prod".to_string(), None)
        ]
    );

    // and the same event delivered again starts nothing new
    let again = on_acm_event(&state, renewal_event(&renewed, "evt-1"))
        .await
        .unwrap();
    assert_eq!((again.started, again.already_started), (0, 2));
    let executions = sfn
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert_eq!(executions.executions().len(), 2);

    // and a certificate nobody mapped starts nothing and is not an error
    let unmapped = format!("{ACCOUNT_ARN}00000000-2222-4333-8444-555555555555");
    let none = on_acm_event(&state, renewal_event(&unmapped, "evt-2"))
        .await
        .unwrap();
    assert_eq!((none.mappings, none.started), (0, 0));
}

#[tokio::test]
async fn a_renewal_cut_off_halfway_completes_on_redelivery_starting_each_mapping_once() {
    // given a certificate with 200 mappings
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    seed::mapping_table(&dynamodb, TABLE).await.unwrap();
    let machine = state_machine(&sfn).await;
    let renewed = format!("{ACCOUNT_ARN}11111111-2222-4333-8444-555555555555");
    let mappings: Vec<Mapping> = (0..200)
        .map(|i| mapping(&renewed, "web", &format!("host-{i:03}"), None))
        .collect();
    for batch in mappings.chunks(25) {
        let writes = batch.iter().map(|m| {
            aws_sdk_dynamodb::types::WriteRequest::builder()
                .put_request(
                    aws_sdk_dynamodb::types::PutRequest::builder()
                        .set_item(Some(m.to_item()))
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let out = dynamodb
            .batch_write_item()
            .request_items(TABLE, writes.collect())
            .send()
            .await
            .unwrap();
        assert!(out.unprocessed_items().is_none_or(|left| left.is_empty()));
    }
    let expected: HashSet<String> = mappings
        .iter()
        .map(|m| {
            certship_shared::naming::renewal_execution_name(
                "evt-cut",
                &certship_shared::naming::tag_key_value(&m.target_tag_key, &m.target_tag_value),
                &certship_shared::naming::certificate_arn_cert_name(
                    &m.certificate_arn,
                    &m.cert_name,
                ),
                &m.cert_name,
            )
        })
        .collect();
    let answers = Answers::default();
    let counted = aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::config::Builder::from(&config)
            .interceptor(answers.clone())
            .build(),
    );
    let first = AppState {
        dynamodb: dynamodb.clone(),
        sfn: counted,
        table_name: TABLE.into(),
        state_machine_arn: machine.clone(),
        acme_table_name: String::new(),
        acme_state_machine_arn: String::new(),
    };
    let state = AppState {
        dynamodb,
        sfn: sfn.clone(),
        table_name: TABLE.into(),
        state_machine_arn: machine.clone(),
        acme_table_name: String::new(),
        acme_state_machine_arn: String::new(),
    };

    // when the first delivery is cut off (as Lambda's timeout would) once 100 starts answered
    let half_answered = async {
        while answers.count() < 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        result = on_acm_event(&first, renewal_event(&renewed, "evt-cut")) => {
            panic!("the first delivery ended before it was cut off: {result:?}")
        }
        () = half_answered => {}
    }
    // (the starts it had in flight land; Lambda redelivers a minute later)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_cut = execution_names(&sfn, &machine).await.len();
    assert!((100..200).contains(&after_cut), "{after_cut} started");

    // and the event is delivered again
    let result = on_acm_event(&state, renewal_event(&renewed, "evt-cut"))
        .await
        .unwrap();

    // then the redelivery started exactly what was missing, and each mapping has one execution
    assert_eq!(
        (result.mappings, result.started, result.already_started),
        (200, 200 - after_cut as u32, after_cut as u32)
    );
    let names = execution_names(&sfn, &machine).await;
    assert_eq!(names.len(), 200, "no mapping started twice");
    assert_eq!(names.into_iter().collect::<HashSet<_>>(), expected);
}
