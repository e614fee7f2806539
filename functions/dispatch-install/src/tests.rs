//! Unit tests of the dispatch handler against mocked DynamoDB and SSM.

use super::*;
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_ssm::Client as Ssm;
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::Command;
use aws_sdk_ssm::types::error::InvalidDocument;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use certship_shared::rules::ReloadAllowlist;
use certship_shared::{DeploymentRequest, Trigger};
use std::sync::{Arc, Mutex};

const ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0b5e3c1a-1111-4222-8333-444455556666";
const OTHER_ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/99999999-1111-4222-8333-444455556666";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship/web-0123456789ab-AbCdEf";

fn input(reload: Option<&str>) -> WorkflowState {
    let mut state = WorkflowState::new(DeploymentRequest {
        certificate_arn: ARN.into(),
        cert_name: "web".into(),
        target_tag_key: "env".into(),
        target_tag_value: "dev".into(),
        reload_service: reload.map(str::to_string),
        trigger: Trigger::Api,
    });
    state.export = Some(ExportResult {
        secret_arn: SECRET_ARN.into(),
        secret_version_id: "5f0c6e1e-0000-4000-8000-000000000001".into(),
        serial: "0a:1b:2c".into(),
        not_after: "2027-01-01T00:00:00Z".into(),
        key_algorithm: "RSA_2048".into(),
        domains: vec!["www.example.com".into()],
        exported_at: "2026-11-23T00:00:00Z".into(),
    });
    state
}

fn settings() -> CommandSettings {
    CommandSettings::from_lookup(|_| None).unwrap()
}

fn app(dynamodb: Dynamo, ssm: Ssm, command: CommandSettings) -> AppState {
    AppState {
        dynamodb,
        ssm,
        table_name: "certship-mappings".into(),
        rules: RequestRules::new("us-east-1", ReloadAllowlist::parse("nginx").unwrap()),
        command,
    }
}

fn item(arn: &str, name: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            attr::CERTIFICATE_ARN.to_string(),
            AttributeValue::S(arn.into()),
        ),
        (attr::CERT_NAME.to_string(), AttributeValue::S(name.into())),
    ])
}

fn no_mappings() -> Rule {
    mock!(Dynamo::query).then_output(|| QueryOutput::builder().build())
}

fn updating(
    seen: Arc<Mutex<Option<aws_sdk_dynamodb::operation::update_item::UpdateItemInput>>>,
) -> Rule {
    mock!(Dynamo::update_item)
        .match_requests(move |req| {
            *seen.lock().unwrap() = Some(req.clone());
            true
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

fn sending(
    seen: Arc<Mutex<Option<aws_sdk_ssm::operation::send_command::SendCommandInput>>>,
) -> Rule {
    mock!(Ssm::send_command)
        .match_requests(move |req| {
            *seen.lock().unwrap() = Some(req.clone());
            true
        })
        .then_output(sent)
}

fn sent() -> SendCommandOutput {
    SendCommandOutput::builder()
        .command(Command::builder().command_id("cmd-123").build())
        .build()
}

fn dynamo(rules: &[&Rule]) -> Dynamo {
    mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules)
}

fn ssm(rules: &[&Rule]) -> Ssm {
    mock_client!(aws_sdk_ssm, RuleMode::MatchAny, rules, |c| c.retry_config(
        aws_sdk_ssm::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1))
    ))
}

#[tokio::test]
async fn happy_path_records_the_mapping_and_sends_references_to_the_tag_target() {
    // given no mapping yet on env=dev
    let (update_seen, send_seen) = (Arc::default(), Arc::default());
    let (query, update, send) = (
        no_mappings(),
        updating(Arc::clone(&update_seen)),
        sending(Arc::clone(&send_seen)),
    );
    let logs = certship_testkit::logs::capture();

    // when
    let before = SystemTime::now();
    let result = handler(
        &app(dynamo(&[&query, &update]), ssm(&[&send]), settings()),
        input(Some("nginx")),
    )
    .await
    .unwrap();

    // then the result names the command and a deadline 20 minutes out
    assert_eq!(result.command_id, "cmd-123");
    assert_eq!(result.document_name, "Install-Certificate-Linux");
    let requested = time::parse_rfc3339(&result.requested_at).unwrap();
    let deadline = time::parse_rfc3339(&result.deadline_at).unwrap();
    assert!(requested + Duration::from_secs(1) >= before);
    assert_eq!(
        deadline.duration_since(requested).unwrap(),
        Duration::from_secs(1200)
    );
    assert_eq!(
        (query.num_calls(), update.num_calls(), send.num_calls()),
        (1, 1, 1)
    );

    // and the mapping holds the seed keys and references, never secret material
    let update = update_seen.lock().unwrap().clone().unwrap();
    let key = update.key().unwrap();
    assert_eq!(key[attr::PARTITION_KEY].as_s().unwrap(), "env#dev");
    assert_eq!(key[attr::SORT_KEY].as_s().unwrap(), &format!("{ARN}#web"));
    let names = update.expression_attribute_names().unwrap();
    let values = update.expression_attribute_values().unwrap();
    let written: HashMap<&str, &str> = names
        .iter()
        .filter_map(|(placeholder, name)| {
            // #a0 pairs with :v0, #rs with :rs
            let value = values.get(&placeholder.replace("#a", ":v").replace('#', ":"))?;
            Some((name.as_str(), value.as_s().ok()?.as_str()))
        })
        .collect();
    assert_eq!(written[attr::SECRET_ARN], SECRET_ARN);
    assert_eq!(written[attr::SERIAL], "0a:1b:2c");
    assert_eq!(written[attr::CERT_EXPIRY_DATE], "2027-01-01T00:00:00Z");
    assert_eq!(written[attr::LAST_EXPORTED_DATE], "2026-11-23T00:00:00Z");
    assert_eq!(written[attr::RELOAD_SERVICE], "nginx");
    assert_eq!(written[attr::TARGET_TAG_KEY], "env");
    assert!(update.update_expression().unwrap().starts_with("SET "));
    assert!(
        !update
            .update_expression()
            .unwrap()
            .contains("LastDeployment")
    );

    // and the command goes to the tag target with references only
    let send = send_seen.lock().unwrap().clone().unwrap();
    assert_eq!(send.document_name(), Some("Install-Certificate-Linux"));
    let target = &send.targets()[0];
    assert_eq!(
        (target.key(), target.values()),
        (Some("tag:env"), &["dev".to_string()][..])
    );
    let mut parameters: Vec<(String, Vec<String>)> =
        send.parameters().unwrap().clone().into_iter().collect();
    parameters.sort();
    assert_eq!(
        parameters,
        vec![
            ("CertName".into(), vec!["web".into()]),
            ("ExpectedSerial".into(), vec!["0a:1b:2c".into()]),
            ("ReloadService".into(), vec!["nginx".into()]),
            ("SecretId".into(), vec![SECRET_ARN.into()]),
            (
                "SecretVersionId".into(),
                vec!["5f0c6e1e-0000-4000-8000-000000000001".into()]
            ),
        ]
    );
    assert_eq!(send.timeout_seconds(), Some(600));
    assert_eq!(
        (send.max_concurrency(), send.max_errors()),
        (Some("50%"), Some("0"))
    );
    assert!(logs.text().contains("cmd-123"), "the command id is logged");
    certship_testkit::assert_no_secret("the logs", &logs.text(), &[]);
}

#[tokio::test]
async fn without_a_reload_service_the_parameter_is_omitted_and_the_attribute_removed() {
    let (update_seen, send_seen) = (Arc::default(), Arc::default());
    let (query, update, send) = (
        no_mappings(),
        updating(Arc::clone(&update_seen)),
        sending(Arc::clone(&send_seen)),
    );
    let mut command = settings();
    command.certificate_directory = Some("/etc/pki/tls/certs".into());
    command.file_group = Some("ssl-cert".into());
    handler(
        &app(dynamo(&[&query, &update]), ssm(&[&send]), command),
        input(None),
    )
    .await
    .unwrap();

    let update = update_seen.lock().unwrap().clone().unwrap();
    assert!(
        update.update_expression().unwrap().ends_with("REMOVE #rs"),
        "{:?}",
        update.update_expression()
    );
    let parameters = send_seen
        .lock()
        .unwrap()
        .clone()
        .unwrap()
        .parameters()
        .unwrap()
        .clone();
    assert!(!parameters.contains_key("ReloadService"));
    assert_eq!(parameters["CertificateDirectory"], ["/etc/pki/tls/certs"]);
    assert_eq!(parameters["FileGroup"], ["ssl-cert"]);
}

#[tokio::test]
async fn redeploying_the_same_certificate_under_its_name_is_not_a_conflict() {
    let query =
        mock!(Dynamo::query).then_output(|| QueryOutput::builder().items(item(ARN, "web")).build());
    let (update, send) = (updating(Arc::default()), sending(Arc::default()));
    handler(
        &app(dynamo(&[&query, &update]), ssm(&[&send]), settings()),
        input(None),
    )
    .await
    .unwrap();
    assert_eq!(send.num_calls(), 1);
}

#[tokio::test]
async fn another_certificate_under_the_same_name_on_the_target_is_refused() {
    // given the conflicting mapping on the second page of the target's mappings
    let query = mock!(Dynamo::query)
        .sequence()
        .output(|| {
            QueryOutput::builder()
                .items(item(ARN, "web"))
                .last_evaluated_key(attr::PARTITION_KEY, AttributeValue::S("env#dev".into()))
                .build()
        })
        .output(|| QueryOutput::builder().items(item(OTHER_ARN, "web")).build())
        .build();
    let (update, send) = (updating(Arc::default()), sending(Arc::default()));

    // when
    let err = handler(
        &app(dynamo(&[&query, &update]), ssm(&[&send]), settings()),
        input(None),
    )
    .await
    .unwrap_err();

    // then nothing is written or sent
    assert_eq!(err.name(), "CertNameConflict");
    assert!(
        err.to_string().contains(OTHER_ARN) && err.to_string().contains("env=dev"),
        "{err}"
    );
    assert_eq!(
        (query.num_calls(), update.num_calls(), send.num_calls()),
        (2, 0, 0)
    );
}

#[tokio::test]
async fn the_conflict_query_pages_with_the_last_key() {
    let query = mock!(Dynamo::query)
        .match_requests(|req| {
            req.key_condition_expression() == Some("#pk = :pk")
                && req.expression_attribute_values().unwrap()[":pk"]
                    .as_s()
                    .unwrap()
                    == "env#dev"
        })
        .sequence()
        .output(|| {
            QueryOutput::builder()
                .last_evaluated_key(attr::PARTITION_KEY, AttributeValue::S("env#dev".into()))
                .build()
        })
        .output(|| QueryOutput::builder().build())
        .build();
    let second_page_start = Arc::new(Mutex::new(None));
    let (update, send) = (updating(Arc::default()), sending(Arc::default()));
    let spy = {
        let seen = Arc::clone(&second_page_start);
        mock!(Dynamo::query)
            .match_requests(move |req| {
                if req.exclusive_start_key().is_some() {
                    *seen.lock().unwrap() = req.exclusive_start_key().cloned();
                }
                false
            })
            .then_output(|| QueryOutput::builder().build())
    };
    handler(
        &app(dynamo(&[&spy, &query, &update]), ssm(&[&send]), settings()),
        input(None),
    )
    .await
    .unwrap();
    assert_eq!(query.num_calls(), 2);
    let start = second_page_start.lock().unwrap().clone().unwrap();
    assert_eq!(start[attr::PARTITION_KEY].as_s().unwrap(), "env#dev");
}

#[tokio::test]
async fn a_missing_export_is_an_invalid_request() {
    let mut state = input(None);
    state.export = None;
    let query = no_mappings();
    let err = handler(&app(dynamo(&[&query]), ssm(&[]), settings()), state)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidRequest");
    assert!(err.to_string().contains("$.Export"), "{err}");
    assert_eq!(query.num_calls(), 0);
}

#[tokio::test]
async fn an_invalid_request_touches_nothing() {
    let mut state = input(Some("sshd"));
    state.request.cert_name = "../../etc".into();
    let query = no_mappings();
    let err = handler(&app(dynamo(&[&query]), ssm(&[]), settings()), state)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidRequest");
    assert_eq!(query.num_calls(), 0);
}

#[tokio::test]
async fn a_missing_document_is_a_configuration_error() {
    let send = mock!(Ssm::send_command)
        .then_error(|| SendCommandError::InvalidDocument(InvalidDocument::builder().build()));
    let (query, update) = (no_mappings(), updating(Arc::default()));
    let err = handler(
        &app(dynamo(&[&query, &update]), ssm(&[&send]), settings()),
        input(None),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "ConfigurationError");
    assert!(
        err.to_string().contains("Install-Certificate-Linux"),
        "{err}"
    );
}

use certship_testkit::throttling_response as throttling;

#[tokio::test]
async fn a_throttled_send_is_retried_and_succeeds() {
    let send = mock!(Ssm::send_command)
        .sequence()
        .http_response(throttling)
        .output(sent)
        .build();
    let (query, update) = (no_mappings(), updating(Arc::default()));
    let result = handler(
        &app(dynamo(&[&query, &update]), ssm(&[&send]), settings()),
        input(None),
    )
    .await
    .unwrap();
    assert_eq!(result.command_id, "cmd-123");
    assert_eq!(send.num_calls(), 2);
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_throttled() {
    let send = mock!(Ssm::send_command)
        .sequence()
        .http_response(throttling)
        .times(3)
        .build();
    let (query, update) = (no_mappings(), updating(Arc::default()));
    let err = handler(
        &app(dynamo(&[&query, &update]), ssm(&[&send]), settings()),
        input(None),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "Throttled");
    assert_eq!(send.num_calls(), 3);
}
