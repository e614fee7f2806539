//! renewal-trigger's ACME side against moto server: the schedule's sweep reads the registry and
//! starts the renewals due, once per sweep however often it is delivered; "ACME Certificate
//! Issued" redeploys the mappings of `acme:<id>` and nothing else.

use aws_sdk_dynamodb::types::AttributeValue;
use certship_shared::acme::{IssueRequest, KeyType};
use certship_shared::acme_registry::attr;
use certship_shared::mapping::Mapping;
use certship_shared::{CertshipError, DeploymentRequest, Trigger};
use certship_testkit::{moto::Moto, seed};
use renewal_trigger::{AppState, Input, Output, handler};
use serde_json::json;
use std::collections::HashMap;

const TABLE: &str = "certship-mappings";
const ACME_TABLE: &str = "certship-acme-certificates";
const SCHEDULED: &str = "2026-11-27T03:00:00Z";

fn request(name: &str) -> IssueRequest {
    IssueRequest {
        domains: vec![name.into()],
        hosted_zone_id: "Z0123456789ABC".into(),
        key_type: KeyType::EcP256,
        directory: "letsencrypt-staging".into(),
        contact: vec![],
        renew_days_before: None,
        import_to_acm: false,
    }
}

/// A registry item as acme-certificate writes it, expiring `not_after`.
fn registered(request: &IssueRequest, not_after: &str) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.into());
    HashMap::from([
        (attr::CERTIFICATE_ID.into(), s(&request.certificate_id())),
        (
            attr::REQUEST.into(),
            s(&serde_json::to_string(request).unwrap()),
        ),
        (attr::NOT_AFTER.into(), s(not_after)),
    ])
}

async fn machine(sfn: &aws_sdk_sfn::Client, name: &str) -> String {
    sfn.create_state_machine()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/certship-states")
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#)
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

/// Every execution of `machine` by name, with its input.
async fn executions(sfn: &aws_sdk_sfn::Client, machine: &str) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let listed = sfn
        .list_executions()
        .state_machine_arn(machine)
        .send()
        .await
        .unwrap();
    for execution in listed.executions() {
        let described = sfn
            .describe_execution()
            .execution_arn(execution.execution_arn())
            .send()
            .await
            .unwrap();
        found.insert(
            execution.name().to_string(),
            described.input().unwrap_or_default().to_string(),
        );
    }
    found
}

struct Cloud {
    _moto: Moto,
    state: AppState,
    sfn: aws_sdk_sfn::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn cloud() -> Cloud {
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    seed::mapping_table(&dynamodb, TABLE).await.unwrap();
    seed::acme_table(&dynamodb, ACME_TABLE).await.unwrap();
    let state = AppState {
        dynamodb: dynamodb.clone(),
        sfn: sfn.clone(),
        table_name: TABLE.into(),
        state_machine_arn: machine(&sfn, "certificate-deployment").await,
        acme_table_name: ACME_TABLE.into(),
        acme_state_machine_arn: machine(&sfn, "acme-issuance").await,
    };
    Cloud {
        _moto: moto,
        state,
        sfn,
        dynamodb,
    }
}

fn sweep_at(time: &str) -> Input {
    serde_json::from_value(json!({"Sweep": {"ScheduledTime": time}})).unwrap()
}

#[tokio::test]
async fn the_sweep_starts_the_due_and_the_forced_once_and_leaves_the_rest() {
    // given five registered certificates, 26 days before the first expires
    let cloud = cloud().await;
    let due = request("due.example.com");
    let not_due = request("later.example.com");
    let forced = request("forced.example.com");
    let backing_off = request("broken.example.com");
    let mut custom = request("custom.example.com");
    custom.renew_days_before = Some(60);
    let mut items = vec![
        registered(&due, "2026-12-23T00:00:00Z"),
        registered(&not_due, "2027-01-30T00:00:00Z"),
        registered(&forced, "2027-01-30T00:00:00Z"),
        registered(&backing_off, "2026-12-10T00:00:00Z"),
        registered(&custom, "2027-01-20T00:00:00Z"),
    ];
    items[2].insert(attr::FORCE.into(), AttributeValue::Bool(true));
    items[3].insert(attr::FAILED_ATTEMPTS.into(), AttributeValue::N("3".into()));
    items[3].insert(
        attr::LAST_FAILED_AT.into(),
        AttributeValue::S("2026-11-26T03:05:00Z".into()),
    );
    // and one item no renewal could read
    items.push(HashMap::from([
        (
            attr::CERTIFICATE_ID.into(),
            AttributeValue::S("junk-000000000000".into()),
        ),
        (attr::REQUEST.into(), AttributeValue::S("{}".into())),
    ]));
    for item in items {
        cloud
            .dynamodb
            .put_item()
            .table_name(ACME_TABLE)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    // when the schedule fires
    let Output::Sweep(result) = handler(&cloud.state, sweep_at(SCHEDULED)).await.unwrap() else {
        panic!("a sweep answers with a sweep result");
    };

    // then the due, the forced and the one with its own RenewDaysBefore are renewed, with their
    // stored request, under names of the certificate and the sweep
    assert_eq!(result.certificates, 5);
    assert_eq!(result.skipped, 1);
    assert_eq!(result.started.len(), 3, "{result:?}");
    assert_eq!((result.not_due, result.backing_off), (1, 1));
    let started = executions(&cloud.sfn, &cloud.state.acme_state_machine_arn).await;
    let mut names: Vec<&String> = started.keys().collect();
    names.sort();
    let stamp = "20261127T030000Z";
    let mut expected = [
        format!("renew-{}-{stamp}", due.certificate_id()),
        format!("renew-{}-{stamp}", forced.certificate_id()),
        format!("renew-{}-{stamp}", custom.certificate_id()),
    ]
    .map(|n| n.replace('.', "-"));
    expected.sort();
    assert_eq!(names, expected.iter().collect::<Vec<_>>());
    let input: IssueRequest = serde_json::from_str(
        &started[&expected
            .iter()
            .find(|n| n.contains("due-"))
            .unwrap()
            .clone()],
    )
    .unwrap();
    assert_eq!(input, due);

    // when the same sweep is delivered again
    let Output::Sweep(again) = handler(&cloud.state, sweep_at(SCHEDULED)).await.unwrap() else {
        panic!("a sweep answers with a sweep result");
    };
    // then nothing more starts
    assert!(again.started.is_empty(), "{again:?}");
    assert_eq!(again.already_started, 3);
    assert_eq!(
        executions(&cloud.sfn, &cloud.state.acme_state_machine_arn)
            .await
            .len(),
        3
    );

    // and a sweep without a usable time starts nothing and says why
    let err = handler(&cloud.state, sweep_at("<aws.scheduler.scheduled-time>"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CertshipError::InvalidRequest(m) if m.contains("ScheduledTime")),
        "{err}"
    );
}

#[tokio::test]
async fn an_acme_issuance_redeploys_the_mappings_of_its_certificate_only() {
    // given two mappings of acme:<id> and one of an ACM certificate
    let cloud = cloud().await;
    let id = request("www.example.com").certificate_id();
    let source = format!("acme:{id}");
    let acm = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-4333-8444-555555555555";
    for (certificate, value) in [
        (source.as_str(), "dev"),
        (source.as_str(), "prod"),
        (acm, "dev"),
    ] {
        let mapping = Mapping {
            certificate_arn: certificate.into(),
            cert_name: "web".into(),
            target_tag_key: "env".into(),
            target_tag_value: value.into(),
            reload_service: None,
            secret_arn: None,
            serial: None,
            cert_expiry_date: None,
            last_exported_date: None,
            association_id: None,
            secret_version_id: None,
            last_deployment: None,
        };
        cloud
            .dynamodb
            .put_item()
            .table_name(TABLE)
            .set_item(Some(mapping.to_item()))
            .send()
            .await
            .unwrap();
    }
    let event = |resources: serde_json::Value| -> Input {
        serde_json::from_value(json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "ACME Certificate Issued", "source": "certship",
            "account": "123456789012", "time": "2026-11-27T03:04:05Z", "region": "us-east-1",
            "resources": resources,
            "detail": {"CertificateId": id, "Domains": ["www.example.com"], "Serial": "0a:1b",
                       "NotAfter": "2027-02-25T03:04:05Z", "SecretVersionId": "v2"}
        }))
        .unwrap()
    };

    // when acme-certificate announces a new certificate
    let Output::Renewal(result) = handler(&cloud.state, event(json!([source]))).await.unwrap()
    else {
        panic!("an event answers with a renewal result");
    };

    // then both of its mappings are redeployed as renewals, and the ACM one is not
    assert_eq!((result.mappings, result.started), (2, 2), "{result:?}");
    assert_eq!(result.certificate_arn, source);
    let started = executions(&cloud.sfn, &cloud.state.state_machine_arn).await;
    assert_eq!(started.len(), 2);
    let mut targets: Vec<String> = started
        .values()
        .map(|input| {
            let state: serde_json::Value = serde_json::from_str(input).unwrap();
            let request: DeploymentRequest = serde_json::from_value(state["Request"].clone())
                .unwrap_or_else(|_| serde_json::from_value(state.clone()).unwrap());
            assert_eq!(request.certificate_arn, source);
            assert_eq!(request.trigger, Trigger::Renewal);
            request.target_tag_value
        })
        .collect();
    targets.sort();
    assert_eq!(targets, ["dev", "prod"]);

    // and an event whose resource is not its certificate starts nothing
    let err = handler(&cloud.state, event(json!(["acme:other-000000000000"])))
        .await
        .unwrap_err();
    assert!(matches!(err, CertshipError::InvalidRequest(_)), "{err}");
    // nor does an event of another kind
    let err = handler(
        &cloud.state,
        serde_json::from_value(
            json!({"source": "certship", "detail-type": "Certificate Deployment Failed"}),
        )
        .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ACME Certificate Issued"), "{err}");
    assert_eq!(
        executions(&cloud.sfn, &cloud.state.state_machine_arn)
            .await
            .len(),
        2
    );
}
