//! renewal-trigger against moto server: mappings found through the index start executions on a
//! real state machine, once per mapping however often the event is delivered.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use certship_shared::mapping::Mapping;
use certship_shared::{DeploymentRequest, Trigger};
use certship_testkit::{moto::Moto, seed};
use renewal_trigger::{AppState, CertificateAvailable, handler};

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

#[tokio::test]
async fn a_renewal_starts_one_execution_per_mapping_once() {
    // given a state machine and three mappings, two of them for the renewed certificate
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    seed::mapping_table(&dynamodb, TABLE).await.unwrap();
    let machine = sfn
        .create_state_machine()
        .name("certificate-deployment")
        .role_arn("arn:aws:iam::123456789012:role/certship-states")
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#)
        .send()
        .await
        .unwrap()
        .state_machine_arn;
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
    };

    // when the renewal event arrives
    let result = handler(&state, renewal_event(&renewed, "evt-1"))
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
    let again = handler(&state, renewal_event(&renewed, "evt-1"))
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
    let none = handler(&state, renewal_event(&unmapped, "evt-2"))
        .await
        .unwrap();
    assert_eq!((none.mappings, none.started), (0, 0));
}
