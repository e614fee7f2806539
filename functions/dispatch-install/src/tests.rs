//! Unit tests of the dispatch handler against mocked DynamoDB and SSM.

use super::*;
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::error::{
    ConditionalCheckFailedException, TransactionCanceledException,
};
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ReturnValuesOnConditionCheckFailure,
};
use aws_sdk_ssm::Client as Ssm;
use aws_sdk_ssm::operation::create_association::{
    CreateAssociationError, CreateAssociationInput, CreateAssociationOutput,
};
use aws_sdk_ssm::operation::delete_association::DeleteAssociationOutput;
use aws_sdk_ssm::operation::describe_association::{
    DescribeAssociationError, DescribeAssociationOutput,
};
use aws_sdk_ssm::operation::list_associations::ListAssociationsOutput;
use aws_sdk_ssm::operation::update_association::{
    UpdateAssociationError, UpdateAssociationInput, UpdateAssociationOutput,
};
use aws_sdk_ssm::types::error::{
    AssociationDoesNotExist, AssociationLimitExceeded, InvalidAssociationVersion, InvalidDocument,
    InvalidSchedule,
};
use aws_sdk_ssm::types::{
    Alarm, AlarmConfiguration, Association, AssociationComplianceSeverity, AssociationDescription,
    AssociationFilterKey, AssociationSyncCompliance, Target, TargetLocation,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use certship_shared::ExportResult;
use certship_shared::mapping::{CLAIM_PREFIX, attr};
use certship_shared::naming::association_name;
use certship_shared::rules::ReloadAllowlist;
use certship_shared::{DeploymentRequest, Trigger};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0b5e3c1a-1111-4222-8333-444455556666";
const OTHER_ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/99999999-1111-4222-8333-444455556666";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship/web-0123456789ab-AbCdEf";
const VERSION: &str = "5f0c6e1e-0000-4000-8000-000000000001";
const BUCKET: &str = "certship-association-output-123456789012-us-east-1";
const ROLE: &str = "arn:aws:iam::123456789012:role/certship-association-dispatch";
const ASSOCIATION: &str = "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a";
const TABLE: &str = "certship-mappings";

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
        secret_version_id: VERSION.into(),
        serial: "0a:1b:2c".into(),
        not_after: "2027-01-01T00:00:00Z".into(),
        key_algorithm: "RSA_2048".into(),
        domains: vec!["www.example.com".into()],
        exported_at: "2026-11-23T00:00:00Z".into(),
    });
    state
}

fn mapping_id() -> String {
    naming::mapping_id("web", ARN, "env", "dev")
}

fn settings() -> AssociationSettings {
    AssociationSettings::from_lookup(|name| {
        (name == settings::ASSOCIATION_OUTPUT_BUCKET_VAR).then(|| BUCKET.to_string())
    })
    .unwrap()
}

fn app(dynamodb: Dynamo, ssm: Ssm, association: AssociationSettings) -> AppState {
    AppState {
        dynamodb,
        ssm,
        table_name: TABLE.into(),
        rules: RequestRules::new("us-east-1", ReloadAllowlist::parse("nginx").unwrap()),
        association,
    }
}

fn mapping_item(arn: &str, association_id: Option<&str>) -> HashMap<String, AttributeValue> {
    let mut item = certship_shared::mapping::key("env", "dev", arn, "web");
    item.insert(attr::CERTIFICATE_ARN.into(), AttributeValue::S(arn.into()));
    item.insert(attr::CERT_NAME.into(), AttributeValue::S("web".into()));
    if let Some(id) = association_id {
        item.insert(attr::ASSOCIATION_ID.into(), AttributeValue::S(id.into()));
    }
    item
}

/// The partition as the pre-check's Query reads it.
fn query(items: Vec<HashMap<String, AttributeValue>>) -> Rule {
    mock!(Dynamo::query)
        .match_requests(|req| req.consistent_read() == Some(true))
        .then_output(move || {
            QueryOutput::builder()
                .set_items(Some(items.clone()))
                .build()
        })
}

type Seen<T> = Arc<Mutex<Vec<T>>>;

fn transacting(seen: Seen<TransactWriteItemsInput>) -> Rule {
    mock!(Dynamo::transact_write_items)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| TransactWriteItemsOutput::builder().build())
}

fn recording(seen: Seen<UpdateItemInput>) -> Rule {
    mock!(Dynamo::update_item)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

fn no_association_by_name() -> Rule {
    mock!(Ssm::list_associations).then_output(|| ListAssociationsOutput::builder().build())
}

fn description(id: &str, version: &str) -> AssociationDescription {
    AssociationDescription::builder()
        .association_id(id)
        .association_version(version)
        .build()
}

fn creating(seen: Seen<CreateAssociationInput>) -> Rule {
    mock!(Ssm::create_association)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| {
            CreateAssociationOutput::builder()
                .association_description(description(ASSOCIATION, "1"))
                .build()
        })
}

fn updating(seen: Seen<UpdateAssociationInput>) -> Rule {
    mock!(Ssm::update_association)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.clone());
            true
        })
        .then_compute_output(|req| {
            let next = req
                .association_version()
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
                + 1;
            UpdateAssociationOutput::builder()
                .association_description(description(
                    req.association_id().unwrap(),
                    &next.to_string(),
                ))
                .build()
        })
}

/// An association as an operator may have extended it: a change calendar, an offset, a
/// duration, target maps, alarms, target locations and an automation parameter.
fn operator_extended(id: &str, version: &str) -> AssociationDescription {
    AssociationDescription::builder()
        .association_id(id)
        .association_version(version)
        .name("Install-Certificate-Linux")
        .document_version("3")
        .association_name(association_name(&mapping_id()))
        .targets(Target::builder().key("tag:env").values("dev").build())
        .parameters("SecretVersionId", vec!["old-version".into()])
        .schedule_expression("rate(1 day)")
        .max_concurrency("1")
        .max_errors("5")
        .calendar_names("arn:aws:ssm:us-east-1:123456789012:document/freeze")
        .schedule_offset(2)
        .duration(4)
        .target_maps(HashMap::from([(
            "InstanceId".to_string(),
            vec!["i-0aaa".to_string()],
        )]))
        .alarm_configuration(
            AlarmConfiguration::builder()
                .ignore_poll_alarm_failure(true)
                .alarms(Alarm::builder().name("certship-errors").build().unwrap())
                .build()
                .unwrap(),
        )
        .target_locations(
            TargetLocation::builder()
                .accounts("123456789012")
                .regions("us-east-1")
                .build(),
        )
        .automation_target_parameter_name("InstanceId")
        .build()
}

fn describing(described: AssociationDescription) -> Rule {
    mock!(Ssm::describe_association).then_output(move || {
        DescribeAssociationOutput::builder()
            .association_description(described.clone())
            .build()
    })
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

fn s(value: &AttributeValue) -> &str {
    value.as_s().unwrap()
}

/// The document parameters every deployment of the fixture sends.
fn expected_parameters(reload: Option<&str>) -> Vec<(String, Vec<String>)> {
    let mut parameters = vec![
        ("CertName".to_string(), vec!["web".to_string()]),
        ("ExpectedSerial".into(), vec!["0a:1b:2c".into()]),
        ("SecretId".into(), vec![SECRET_ARN.into()]),
        ("SecretVersionId".into(), vec![VERSION.into()]),
    ];
    if let Some(unit) = reload {
        parameters.push(("ReloadService".into(), vec![unit.into()]));
    }
    parameters.sort();
    parameters
}

fn sorted(parameters: Option<&HashMap<String, Vec<String>>>) -> Vec<(String, Vec<String>)> {
    let mut parameters: Vec<_> = parameters.unwrap().clone().into_iter().collect();
    parameters.sort();
    parameters
}

#[tokio::test]
async fn a_first_deployment_claims_the_name_and_creates_the_association() {
    // given no mapping yet on env=dev, and no association of the mapping's name
    let (transactions, creates, records) = (Seen::default(), Seen::default(), Seen::default());
    let (query, transact, record) = (
        query(vec![]),
        transacting(Arc::clone(&transactions)),
        recording(Arc::clone(&records)),
    );
    let (list, create) = (no_association_by_name(), creating(Arc::clone(&creates)));
    let mut association = settings();
    association.dispatch_role_arn = Some(ROLE.into());
    let logs = certship_testkit::logs::capture();

    // when
    let before = SystemTime::now();
    let result = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &create]),
            association,
        ),
        input(Some("nginx")),
    )
    .await
    .unwrap();

    // then the result names the association's first version and a deadline 20 minutes out
    assert_eq!(result.association_id.as_deref(), Some(ASSOCIATION));
    assert_eq!(result.association_version.as_deref(), Some("1"));
    assert_eq!(result.command_id, None);
    assert_eq!(result.document_name, "Install-Certificate-Linux");
    let requested = time::parse_rfc3339(&result.requested_at).unwrap();
    let deadline = time::parse_rfc3339(&result.deadline_at).unwrap();
    assert!(requested + Duration::from_secs(1) >= before);
    assert_eq!(
        deadline.duration_since(requested).unwrap(),
        Duration::from_secs(1200)
    );
    assert_eq!(
        (
            query.num_calls(),
            transact.num_calls(),
            list.num_calls(),
            create.num_calls(),
            record.num_calls()
        ),
        (1, 1, 1, 1, 1)
    );

    // and the association is looked for by the mapping's name first
    // (the list rule matched any request; its filter is asserted in its own test)

    // and the name claim and the mapping are written in one transaction
    let transaction = transactions.lock().unwrap()[0].clone();
    let items = transaction.transact_items();
    assert_eq!(items.len(), 2);
    let claim = items[0].put().unwrap();
    assert_eq!(claim.table_name(), TABLE);
    assert_eq!(s(&claim.item()[attr::PARTITION_KEY]), "env#dev");
    assert_eq!(
        s(&claim.item()[attr::SORT_KEY]),
        format!("{CLAIM_PREFIX}web")
    );
    assert_eq!(s(&claim.item()[attr::CLAIMED_BY]), ARN);
    assert_eq!(
        claim.condition_expression(),
        Some("attribute_not_exists(#by) OR #by = :arn")
    );
    assert_eq!(
        claim.expression_attribute_names().unwrap()["#by"],
        attr::CLAIMED_BY
    );
    assert_eq!(
        s(&claim.expression_attribute_values().unwrap()[":arn"]),
        ARN
    );
    assert_eq!(
        claim.return_values_on_condition_check_failure(),
        Some(&ReturnValuesOnConditionCheckFailure::AllOld)
    );

    // and the mapping holds the seed keys and references, never secret material
    let update = items[1].update().unwrap();
    assert_eq!(update.table_name(), TABLE);
    assert_eq!(s(&update.key()[attr::PARTITION_KEY]), "env#dev");
    assert_eq!(s(&update.key()[attr::SORT_KEY]), format!("{ARN}#web"));
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
    assert!(update.update_expression().starts_with("SET "));
    assert!(!update.update_expression().contains("LastDeployment"));
    assert!(!update.update_expression().contains(attr::ASSOCIATION_ID));

    // and the association carries every field certship owns
    let create = creates.lock().unwrap()[0].clone();
    assert_eq!(create.name(), Some("Install-Certificate-Linux"));
    assert_eq!(create.document_version(), Some("$DEFAULT"));
    assert_eq!(
        create.association_name(),
        Some(format!("certship-{}", mapping_id()).as_str())
    );
    let target = &create.targets()[0];
    assert_eq!(create.targets().len(), 1);
    assert_eq!(
        (target.key(), target.values()),
        (Some("tag:env"), &["dev".to_string()][..])
    );
    assert_eq!(
        sorted(create.parameters()),
        expected_parameters(Some("nginx"))
    );
    assert_eq!(create.schedule_expression(), Some("rate(1 hour)"));
    let output = create.output_location().unwrap().s3_location().unwrap();
    assert_eq!(output.output_s3_bucket_name(), Some(BUCKET));
    assert_eq!(
        output.output_s3_key_prefix(),
        Some(format!("dev/{}", mapping_id()).as_str())
    );
    assert_eq!(
        (create.max_concurrency(), create.max_errors()),
        (Some("50%"), Some("10%"))
    );
    assert_eq!(
        create.compliance_severity(),
        Some(&AssociationComplianceSeverity::High)
    );
    assert_eq!(
        create.sync_compliance(),
        Some(&AssociationSyncCompliance::Auto)
    );
    assert_eq!(create.apply_only_at_cron_interval(), Some(false));
    assert_eq!(create.association_dispatch_assume_role(), Some(ROLE));
    let tags = create.tags();
    assert_eq!(tags.len(), 1);
    assert_eq!(
        (tags[0].key(), tags[0].value()),
        ("certship:mapping", mapping_id().as_str())
    );
    assert_eq!(create.instance_id(), None);

    // and the mapping records the association and the version it installs, if none was
    // recorded meanwhile
    let record = records.lock().unwrap()[0].clone();
    assert_eq!(
        record.key(),
        Some(&certship_shared::mapping::key("env", "dev", ARN, "web"))
    );
    assert_eq!(
        record.update_expression(),
        Some("SET #aid = :aid, #svid = :svid")
    );
    assert_eq!(
        record.condition_expression(),
        Some("attribute_exists(#pk) AND (attribute_not_exists(#aid) OR #aid = :aid)")
    );
    let values = record.expression_attribute_values().unwrap();
    assert_eq!(s(&values[":aid"]), ASSOCIATION);
    assert_eq!(s(&values[":svid"]), VERSION);
    let names = record.expression_attribute_names().unwrap();
    assert_eq!(names["#aid"], attr::ASSOCIATION_ID);
    assert_eq!(names["#svid"], attr::SECRET_VERSION_ID);

    assert!(
        logs.text().contains(ASSOCIATION),
        "the association is logged"
    );
    certship_testkit::assert_no_secret("the logs", &logs.text(), &[]);
}

#[tokio::test]
async fn a_redeployment_updates_the_recorded_association_keeping_what_an_operator_added() {
    // given the mapping records its association, which an operator extended
    let (updates, records) = (Seen::default(), Seen::default());
    let (query, transact, record) = (
        query(vec![mapping_item(ARN, Some(ASSOCIATION))]),
        transacting(Seen::default()),
        recording(Arc::clone(&records)),
    );
    let describe = describing(operator_extended(ASSOCIATION, "7"));
    let update = updating(Arc::clone(&updates));
    let (list, create) = (no_association_by_name(), creating(Seen::default()));
    let mut association = settings();
    association.state_directory = Some("/var/lib/certship".into());
    association.backoff_minutes = Some(120);

    // when
    let result = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&describe, &update, &list, &create]),
            association,
        ),
        input(None),
    )
    .await
    .unwrap();

    // then the described version is updated, nothing created
    assert_eq!(result.association_id.as_deref(), Some(ASSOCIATION));
    assert_eq!(result.association_version.as_deref(), Some("8"));
    assert_eq!(
        (
            describe.num_calls(),
            update.num_calls(),
            list.num_calls(),
            create.num_calls()
        ),
        (1, 1, 0, 0)
    );
    let sent = updates.lock().unwrap()[0].clone();
    assert_eq!(sent.association_id(), Some(ASSOCIATION));
    assert_eq!(sent.association_version(), Some("7"));

    // and every field certship owns is sent anew
    assert_eq!(sent.name(), Some("Install-Certificate-Linux"));
    assert_eq!(
        sent.association_name(),
        Some(format!("certship-{}", mapping_id()).as_str())
    );
    assert_eq!(
        sent.targets(),
        &[Target::builder().key("tag:env").values("dev").build()][..]
    );
    let mut expected = expected_parameters(None);
    expected.push(("BackoffMinutes".into(), vec!["120".into()]));
    expected.push(("StateDirectory".into(), vec!["/var/lib/certship".into()]));
    expected.sort();
    assert_eq!(sorted(sent.parameters()), expected);
    assert_eq!(sent.schedule_expression(), Some("rate(1 hour)"));
    assert_eq!(
        sent.output_location()
            .and_then(|o| o.s3_location())
            .and_then(|l| l.output_s3_key_prefix()),
        Some(format!("dev/{}", mapping_id()).as_str())
    );
    assert_eq!(
        (sent.max_concurrency(), sent.max_errors()),
        (Some("50%"), Some("10%"))
    );
    assert_eq!(
        sent.compliance_severity(),
        Some(&AssociationComplianceSeverity::High)
    );
    assert_eq!(
        sent.sync_compliance(),
        Some(&AssociationSyncCompliance::Auto)
    );
    assert_eq!(sent.apply_only_at_cron_interval(), Some(false));
    assert_eq!(sent.association_dispatch_assume_role(), None);

    // and every field it does not own is copied from the described association
    let described = operator_extended(ASSOCIATION, "7");
    assert_eq!(
        sent.document_version(),
        Some("3"),
        "a pinned version is kept"
    );
    assert_eq!(sent.calendar_names(), described.calendar_names());
    assert_eq!(sent.schedule_offset(), Some(2));
    assert_eq!(sent.duration(), Some(4));
    assert_eq!(sent.target_maps(), described.target_maps());
    assert_eq!(sent.alarm_configuration(), described.alarm_configuration());
    assert_eq!(sent.target_locations(), described.target_locations());
    assert_eq!(sent.automation_target_parameter_name(), Some("InstanceId"));

    // and the mapping records it again, on condition it still records that association
    let record = records.lock().unwrap()[0].clone();
    assert_eq!(
        record.condition_expression(),
        Some("attribute_exists(#pk) AND #aid IN (:previous, :aid)")
    );
    assert_eq!(
        s(&record.expression_attribute_values().unwrap()[":previous"]),
        ASSOCIATION
    );
}

#[tokio::test]
async fn an_association_without_operator_fields_is_updated_without_inventing_them() {
    let updates = Seen::default();
    let (query, transact, record) = (
        query(vec![mapping_item(ARN, Some(ASSOCIATION))]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    // described with another document: its pinned version does not carry over
    let describe = describing(
        AssociationDescription::builder()
            .association_id(ASSOCIATION)
            .association_version("2")
            .name("Old-Install-Document")
            .document_version("9")
            .build(),
    );
    let update = updating(Arc::clone(&updates));
    handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&describe, &update]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap();

    let sent = updates.lock().unwrap()[0].clone();
    assert_eq!(sent.document_version(), Some("$DEFAULT"));
    assert_eq!(sent.calendar_names(), &[] as &[String]);
    assert_eq!(sent.target_maps(), &[] as &[HashMap<String, Vec<String>>]);
    assert_eq!((sent.schedule_offset(), sent.duration()), (None, None));
    assert_eq!(sent.alarm_configuration(), None);
    assert_eq!(sent.automation_target_parameter_name(), None);
}

#[tokio::test]
async fn a_version_conflict_is_described_again_and_retried() {
    // given another writer updates the association between our describe and our update, twice
    let updates = Seen::default();
    let (query, transact, record) = (
        query(vec![mapping_item(ARN, Some(ASSOCIATION))]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let describe = mock!(Ssm::describe_association)
        .sequence()
        .output(|| {
            DescribeAssociationOutput::builder()
                .association_description(operator_extended(ASSOCIATION, "7"))
                .build()
        })
        .output(|| {
            DescribeAssociationOutput::builder()
                .association_description(operator_extended(ASSOCIATION, "8"))
                .build()
        })
        .output(|| {
            DescribeAssociationOutput::builder()
                .association_description(operator_extended(ASSOCIATION, "9"))
                .build()
        })
        .build();
    let conflict = || {
        UpdateAssociationError::InvalidAssociationVersion(
            InvalidAssociationVersion::builder()
                .message("The association version is not the latest")
                .build(),
        )
    };
    let update = {
        let updates = Arc::clone(&updates);
        mock!(Ssm::update_association)
            .match_requests(move |req| {
                updates.lock().unwrap().push(req.clone());
                true
            })
            .sequence()
            .error(conflict)
            .error(conflict)
            .output(|| {
                UpdateAssociationOutput::builder()
                    .association_description(description(ASSOCIATION, "10"))
                    .build()
            })
            .build()
    };

    // when
    let result = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&describe, &update]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap();

    // then each update carried the version just described
    assert_eq!((describe.num_calls(), update.num_calls()), (3, 3));
    let versions: Vec<_> = updates
        .lock()
        .unwrap()
        .iter()
        .map(|u| u.association_version().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["7", "8", "9"]);
    assert_eq!(result.association_version.as_deref(), Some("10"));
}

#[tokio::test]
async fn a_version_conflict_that_persists_is_a_retryable_error() {
    let (query, transact, record) = (
        query(vec![mapping_item(ARN, Some(ASSOCIATION))]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let describe = describing(operator_extended(ASSOCIATION, "7"));
    let update = mock!(Ssm::update_association).then_error(|| {
        UpdateAssociationError::InvalidAssociationVersion(
            InvalidAssociationVersion::builder().build(),
        )
    });

    let err = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&describe, &update]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap_err();

    assert_eq!(err.name(), "ServiceError");
    assert!(err.to_string().contains("another writer"), "{err}");
    let attempts = association::VERSION_CONFLICT_RETRIES as usize + 1;
    assert_eq!(
        (describe.num_calls(), update.num_calls()),
        (attempts, attempts)
    );
    assert_eq!(record.num_calls(), 0, "nothing recorded");
}

#[tokio::test]
async fn a_recorded_association_deleted_meanwhile_is_created_again() {
    // given the recorded association was deleted by hand
    let (creates, records) = (Seen::default(), Seen::default());
    let (query, transact, record) = (
        query(vec![mapping_item(ARN, Some("deleted-association"))]),
        transacting(Seen::default()),
        recording(Arc::clone(&records)),
    );
    let describe = mock!(Ssm::describe_association).then_error(|| {
        DescribeAssociationError::AssociationDoesNotExist(
            AssociationDoesNotExist::builder().build(),
        )
    });
    let (list, create, update) = (
        no_association_by_name(),
        creating(Arc::clone(&creates)),
        updating(Seen::default()),
    );

    let result = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&describe, &list, &create, &update]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap();

    assert_eq!(result.association_id.as_deref(), Some(ASSOCIATION));
    assert_eq!(
        (
            describe.num_calls(),
            list.num_calls(),
            create.num_calls(),
            update.num_calls()
        ),
        (1, 1, 1, 0)
    );
    // and the new id replaces the stale one
    let record = records.lock().unwrap()[0].clone();
    let values = record.expression_attribute_values().unwrap();
    assert_eq!(s(&values[":previous"]), "deleted-association");
    assert_eq!(s(&values[":aid"]), ASSOCIATION);
}

#[tokio::test]
async fn an_association_left_by_a_run_that_stopped_before_recording_it_is_reused() {
    // given no recorded id, but an association of the mapping's name exists
    let name = association_name(&mapping_id());
    let list = {
        let name = name.clone();
        mock!(Ssm::list_associations)
            .match_requests(move |req| {
                let filter = &req.association_filter_list()[0];
                filter.key() == &AssociationFilterKey::AssociationName && filter.value() == name
            })
            .then_output(move || {
                ListAssociationsOutput::builder()
                    .associations(
                        Association::builder()
                            .association_id("left-behind")
                            .association_name(association_name(&mapping_id()))
                            .build(),
                    )
                    .build()
            })
    };
    let updates = Seen::default();
    let (query, transact, record) = (
        query(vec![mapping_item(ARN, None)]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let describe = describing(operator_extended("left-behind", "1"));
    let (update, create) = (updating(Arc::clone(&updates)), creating(Seen::default()));

    let result = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &describe, &update, &create]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap();

    assert_eq!(result.association_id.as_deref(), Some("left-behind"));
    assert_eq!((list.num_calls(), create.num_calls()), (1, 0));
    assert_eq!(
        updates.lock().unwrap()[0].association_id(),
        Some("left-behind")
    );
}

#[tokio::test]
async fn an_association_created_by_a_concurrent_deployment_wins_and_ours_is_deleted() {
    // given another deployment of the same mapping recorded its association first
    let (query, transact) = (query(vec![]), transacting(Seen::default()));
    let record = mock!(Dynamo::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().build(),
        )
    });
    let (list, create) = (no_association_by_name(), creating(Seen::default()));
    let delete = mock!(Ssm::delete_association)
        .match_requests(|req| req.association_id() == Some(ASSOCIATION))
        .then_output(|| DeleteAssociationOutput::builder().build());

    let err = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &create, &delete]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap_err();

    // then ours is removed and the retry updates theirs
    assert_eq!(err.name(), "ServiceError");
    assert!(err.to_string().contains("retry"), "{err}");
    assert_eq!((create.num_calls(), delete.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_name_claimed_by_another_certificate_is_a_conflict_naming_the_holder() {
    // given the claim item says another certificate holds `web` on env=dev
    let query = query(vec![]);
    let transact = mock!(Dynamo::transact_write_items).then_error(|| {
        TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder()
                .message("Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed, None]")
                .cancellation_reasons(
                    CancellationReason::builder()
                        .code("ConditionalCheckFailed")
                        .item(attr::CLAIMED_BY, AttributeValue::S(OTHER_ARN.into()))
                        .build(),
                )
                .cancellation_reasons(CancellationReason::builder().code("None").build())
                .build(),
        )
    });
    let record = recording(Seen::default());
    let (list, create) = (no_association_by_name(), creating(Seen::default()));

    // when
    let err = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &create]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap_err();

    // then nothing else is written or sent
    assert_eq!(err.name(), "CertNameConflict");
    assert!(
        err.to_string().contains(OTHER_ARN) && err.to_string().contains("env=dev"),
        "{err}"
    );
    assert_eq!(
        (list.num_calls(), create.num_calls(), record.num_calls()),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_concurrent_write_to_the_claim_is_throttled_so_the_state_machine_retries() {
    let query = query(vec![]);
    let transact = mock!(Dynamo::transact_write_items).then_error(|| {
        TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder()
                .cancellation_reasons(
                    CancellationReason::builder()
                        .code("TransactionConflict")
                        .build(),
                )
                .cancellation_reasons(CancellationReason::builder().code("None").build())
                .build(),
        )
    });
    let err = handler(
        &app(dynamo(&[&query, &transact]), ssm(&[]), settings()),
        input(None),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "Throttled");
}

#[tokio::test]
async fn a_mapping_written_before_claims_existed_still_holds_its_name() {
    // given the conflicting mapping (no claim item) on the second page of the partition
    let query = mock!(Dynamo::query)
        .sequence()
        .output(|| {
            QueryOutput::builder()
                .items(mapping_item(ARN, None))
                .last_evaluated_key(attr::PARTITION_KEY, AttributeValue::S("env#dev".into()))
                .build()
        })
        .output(|| {
            QueryOutput::builder()
                .items(mapping_item(OTHER_ARN, None))
                .build()
        })
        .build();
    let transact = transacting(Seen::default());

    let err = handler(
        &app(dynamo(&[&query, &transact]), ssm(&[]), settings()),
        input(None),
    )
    .await
    .unwrap_err();

    assert_eq!(err.name(), "CertNameConflict");
    assert!(err.to_string().contains(OTHER_ARN), "{err}");
    assert_eq!((query.num_calls(), transact.num_calls()), (2, 0));
}

#[tokio::test]
async fn claim_items_in_the_partition_are_not_mappings() {
    // given the partition holds this certificate's claim (read by the pre-check's filter)
    let mut claim = certship_shared::mapping::claim_key("env", "dev", "web");
    claim.insert(attr::CLAIMED_BY.into(), AttributeValue::S(OTHER_ARN.into()));
    claim.insert(attr::CERT_NAME.into(), AttributeValue::S("web".into()));
    claim.insert(
        attr::CERTIFICATE_ARN.into(),
        AttributeValue::S(OTHER_ARN.into()),
    );
    let (query, transact, record) = (
        query(vec![claim]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let (list, create) = (no_association_by_name(), creating(Seen::default()));

    // then the pre-check leaves the decision to the claim's own condition
    handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &create]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap();
    assert_eq!(transact.num_calls(), 1);
}

#[tokio::test]
async fn a_missing_export_is_an_invalid_request() {
    let mut state = input(None);
    state.export = None;
    let query = query(vec![]);
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
    let query = query(vec![]);
    let err = handler(&app(dynamo(&[&query]), ssm(&[]), settings()), state)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidRequest");
    assert_eq!(query.num_calls(), 0);
}

/// Runs a first deployment whose CreateAssociation answers `error`.
async fn create_refused(error: fn() -> CreateAssociationError) -> CertshipError {
    let (query, transact, record) = (
        query(vec![]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let (list, create) = (
        no_association_by_name(),
        mock!(Ssm::create_association).then_error(error),
    );
    let err = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &create]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap_err();
    assert_eq!(record.num_calls(), 0);
    err
}

#[tokio::test]
async fn what_state_manager_refuses_in_the_configuration_says_what_to_fix() {
    let err = create_refused(|| {
        CreateAssociationError::InvalidDocument(InvalidDocument::builder().build())
    })
    .await;
    assert_eq!(err.name(), "ConfigurationError");
    assert!(
        err.to_string().contains("Install-Certificate-Linux")
            && err.to_string().contains("INSTALL_DOCUMENT_NAME"),
        "{err}"
    );

    let err = create_refused(|| {
        CreateAssociationError::InvalidSchedule(
            // as the SDK reads it from the response: the code and message in its metadata
            InvalidSchedule::builder()
                .message("Schedule expression is invalid")
                .meta(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("InvalidSchedule")
                        .message("Schedule expression is invalid")
                        .build(),
                )
                .build(),
        )
    })
    .await;
    assert_eq!(err.name(), "ConfigurationError");
    assert!(
        err.to_string().contains("rate(1 hour)")
            && err.to_string().contains("RECONCILE_SCHEDULE")
            && err.to_string().contains("Schedule expression is invalid"),
        "{err}"
    );

    let err = create_refused(|| {
        CreateAssociationError::AssociationLimitExceeded(
            AssociationLimitExceeded::builder().build(),
        )
    })
    .await;
    assert_eq!(err.name(), "ConfigurationError");
    assert!(err.to_string().contains("2,000"), "{err}");
}

#[tokio::test]
async fn a_refused_update_says_what_to_fix_too() {
    let (query, transact, record) = (
        query(vec![mapping_item(ARN, Some(ASSOCIATION))]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let describe = describing(operator_extended(ASSOCIATION, "7"));
    let update = mock!(Ssm::update_association).then_error(|| {
        UpdateAssociationError::InvalidOutputLocation(
            aws_sdk_ssm::types::error::InvalidOutputLocation::builder().build(),
        )
    });
    let err = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&describe, &update]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "ConfigurationError");
    assert!(
        err.to_string().contains(BUCKET) && err.to_string().contains("ASSOCIATION_OUTPUT_BUCKET"),
        "{err}"
    );
}

use certship_testkit::throttling_response as throttling;

#[tokio::test]
async fn a_throttled_create_is_retried_and_succeeds() {
    let (query, transact, record) = (
        query(vec![]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let list = no_association_by_name();
    let create = mock!(Ssm::create_association)
        .sequence()
        .http_response(throttling)
        .output(|| {
            CreateAssociationOutput::builder()
                .association_description(description(ASSOCIATION, "1"))
                .build()
        })
        .build();
    let result = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &create]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap();
    assert_eq!(result.association_id.as_deref(), Some(ASSOCIATION));
    assert_eq!(create.num_calls(), 2);
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_throttled() {
    let (query, transact, record) = (
        query(vec![]),
        transacting(Seen::default()),
        recording(Seen::default()),
    );
    let list = no_association_by_name();
    let create = mock!(Ssm::create_association)
        .sequence()
        .http_response(throttling)
        .times(3)
        .build();
    let err = handler(
        &app(
            dynamo(&[&query, &transact, &record]),
            ssm(&[&list, &create]),
            settings(),
        ),
        input(None),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "Throttled");
    assert_eq!(create.num_calls(), 3);
}
