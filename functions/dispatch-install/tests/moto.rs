//! export-certificate then dispatch-install against moto server: the mapping lands in DynamoDB
//! and is found through the index, and the command reaches the tagged instances only.

use aws_sdk_dynamodb::types::AttributeValue;
use certship_shared::mapping::{self, Mapping, attr};
use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_shared::{DeploymentRequest, Trigger, WorkflowState};
use certship_testkit::{assert_no_secret, moto::Moto, seed};
use dispatch_install::{AppState, CommandSettings, Settings, handler};

const TABLE: &str = "certship-mappings";

struct Cloud {
    _moto: Moto,
    export: export_certificate::AppState,
    dispatch: AppState,
    ec2: aws_sdk_ec2::Client,
}

async fn cloud() -> Cloud {
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let rules = RequestRules::new("us-east-1", ReloadAllowlist::parse("nginx").unwrap());
    let dispatch = AppState::new(
        &config,
        Settings {
            table_name: TABLE.into(),
            rules: rules.clone(),
            command: CommandSettings::from_lookup(|_| None).unwrap(),
        },
    );
    seed::mapping_table(&dispatch.dynamodb, TABLE)
        .await
        .unwrap();
    Cloud {
        export: export_certificate::AppState::new(&config, export_certificate::Settings { rules }),
        dispatch,
        ec2: aws_sdk_ec2::Client::new(&config),
        _moto: moto,
    }
}

fn request(arn: &str, name: &str, env: &str) -> WorkflowState {
    WorkflowState::new(DeploymentRequest {
        certificate_arn: arn.into(),
        cert_name: name.into(),
        target_tag_key: "env".into(),
        target_tag_value: env.into(),
        reload_service: Some("nginx".into()),
        trigger: Trigger::Api,
    })
}

/// Export, then dispatch, as the state machine chains them.
async fn deploy(
    cloud: &Cloud,
    arn: &str,
    name: &str,
    env: &str,
) -> Result<(WorkflowState, String), certship_shared::CertshipError> {
    let mut state = request(arn, name, env);
    state.export = Some(export_certificate::handler(&cloud.export, state.clone()).await?);
    let dispatch = handler(&cloud.dispatch, state.clone()).await?;
    let command_id = dispatch.command_id.clone();
    state.dispatch = Some(dispatch);
    Ok((state, command_id))
}

async fn passphrase(cloud: &Cloud, state: &WorkflowState) -> String {
    let export = state.export.as_ref().unwrap();
    let bundle = seed::secret_bundle(&cloud.export.secrets, export)
        .await
        .unwrap();
    bundle["passphrase"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_mapping_is_recorded_and_the_command_reaches_the_tagged_instances_only() {
    // given two dev hosts, one prod host and an exportable certificate
    let cloud = cloud().await;
    let dev_a = seed::instance(&cloud.ec2, "env", "dev").await.unwrap();
    let dev_b = seed::instance(&cloud.ec2, "env", "dev").await.unwrap();
    let prod = seed::instance(&cloud.ec2, "env", "prod").await.unwrap();
    let arn = seed::certificate(&cloud.export.acm, "www.example.com", true)
        .await
        .unwrap();

    // when it is deployed to env=dev
    let (state, command_id) = deploy(&cloud, &arn, "web", "dev").await.unwrap();
    let export = state.export.as_ref().unwrap();
    let passphrase = passphrase(&cloud, &state).await;

    // then the mapping holds the request and the export's references
    let item = cloud
        .dispatch
        .dynamodb
        .get_item()
        .table_name(TABLE)
        .set_key(Some(mapping::key("env", "dev", &arn, "web")))
        .send()
        .await
        .unwrap()
        .item
        .expect("the mapping exists");
    let stored = Mapping::from_item(&item).unwrap();
    assert_eq!(stored.reload_service.as_deref(), Some("nginx"));
    assert_eq!(
        stored.secret_arn.as_deref(),
        Some(export.secret_arn.as_str())
    );
    assert_eq!(stored.serial.as_deref(), Some(export.serial.as_str()));
    assert_eq!(
        stored.cert_expiry_date.as_deref(),
        Some(export.not_after.as_str())
    );
    assert_no_secret("the mapping item", &format!("{item:?}"), &[&passphrase]);

    // and renewals find it through the index
    let found = cloud
        .dispatch
        .dynamodb
        .query()
        .table_name(TABLE)
        .index_name(attr::BY_CERTIFICATE_ARN)
        .key_condition_expression("#arn = :arn")
        .expression_attribute_names("#arn", attr::CERTIFICATE_ARN)
        .expression_attribute_values(":arn", AttributeValue::S(arn.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(found.items().len(), 1);
    assert_eq!(Mapping::from_item(&found.items()[0]).unwrap(), stored);

    // and the command went to the dev hosts only, carrying references only
    let commands = cloud
        .dispatch
        .ssm
        .list_commands()
        .command_id(&command_id)
        .send()
        .await
        .unwrap();
    let command = &commands.commands()[0];
    let mut hosts = command.instance_ids().to_vec();
    hosts.sort();
    let mut expected = vec![dev_a, dev_b];
    expected.sort();
    assert_eq!(hosts, expected);
    assert!(!hosts.contains(&prod));
    assert_eq!(command.document_name(), Some("Install-Certificate-Linux"));
    let parameters = command.parameters().unwrap();
    assert_eq!(parameters["SecretVersionId"][0], export.secret_version_id);
    assert_eq!(parameters["ExpectedSerial"][0], export.serial);
    assert_no_secret(
        "the command parameters",
        &format!("{parameters:?}"),
        &[&passphrase],
    );
    assert_no_secret(
        "the workflow state",
        &serde_json::to_string(&state).unwrap(),
        &[&passphrase],
    );
}

#[tokio::test]
async fn a_name_taken_by_another_certificate_on_the_target_is_refused() {
    let cloud = cloud().await;
    let first = seed::certificate(&cloud.export.acm, "a.example.com", true)
        .await
        .unwrap();
    let second = seed::certificate(&cloud.export.acm, "b.example.com", true)
        .await
        .unwrap();
    deploy(&cloud, &first, "web", "dev").await.unwrap();

    let err = deploy(&cloud, &second, "web", "dev").await.unwrap_err();
    assert_eq!(err.name(), "CertNameConflict");
    assert!(err.to_string().contains(&first), "{err}");

    // the same name on another target, and the same certificate again, are fine
    deploy(&cloud, &second, "web", "prod").await.unwrap();
    deploy(&cloud, &first, "web", "dev").await.unwrap();
    let items = cloud
        .dispatch
        .dynamodb
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .unwrap();
    assert_eq!(
        items.items().len(),
        2,
        "the refused mapping was not written"
    );
}
