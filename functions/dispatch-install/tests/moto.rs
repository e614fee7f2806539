//! dispatch-install's mapping writes against moto server's DynamoDB: the mapping lands with the
//! export's references and is found through the index, and the CertName claim is race-free under
//! real transactions. moto has no State Manager association API, so the association path is
//! tested with mocks (`src/tests.rs`) and end to end on the local cloud.

use certship_shared::mapping::{self, Mapping, attr, claim_key};
use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_shared::{DeploymentRequest, ExportResult, Trigger, WorkflowState};
use certship_testkit::{assert_no_secret, moto::Moto, seed};
use dispatch_install::mapping::{claim_and_record, existing_mappings, record_association};

const TABLE: &str = "certship-mappings";

struct Cloud {
    _moto: Moto,
    export: export_certificate::AppState,
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn cloud() -> Cloud {
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let rules = RequestRules::new("us-east-1", ReloadAllowlist::parse("nginx").unwrap());
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    seed::mapping_table(&dynamodb, TABLE).await.unwrap();
    Cloud {
        export: export_certificate::AppState::new(&config, export_certificate::Settings { rules }),
        dynamodb,
        _moto: moto,
    }
}

fn request(arn: &str, name: &str, env: &str) -> DeploymentRequest {
    DeploymentRequest {
        certificate_arn: arn.into(),
        cert_name: name.into(),
        target_tag_key: "env".into(),
        target_tag_value: env.into(),
        reload_service: Some("nginx".into()),
        trigger: Trigger::Api,
    }
}

/// Exports the certificate as the state machine's first step does.
async fn export(cloud: &Cloud, request: &DeploymentRequest) -> ExportResult {
    export_certificate::handler(&cloud.export, WorkflowState::new(request.clone()))
        .await
        .unwrap()
}

/// The pre-check and the claim, as the handler runs them before touching the association.
async fn record(
    cloud: &Cloud,
    request: &DeploymentRequest,
    export: &ExportResult,
) -> Result<(), certship_shared::CertshipError> {
    existing_mappings(&cloud.dynamodb, TABLE, request).await?;
    claim_and_record(&cloud.dynamodb, TABLE, request, export).await
}

async fn items(
    cloud: &Cloud,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    cloud
        .dynamodb
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

#[tokio::test]
async fn the_mapping_and_its_association_are_recorded_and_found_through_the_index() {
    // given an exportable certificate, exported
    let cloud = cloud().await;
    let arn = seed::certificate(&cloud.export.acm, "www.example.com", true)
        .await
        .unwrap();
    let request = request(&arn, "web", "dev");
    let export = export(&cloud, &request).await;
    let bundle = seed::secret_bundle(&cloud.export.secrets, &export)
        .await
        .unwrap();
    let passphrase = bundle["passphrase"].as_str().unwrap().to_string();

    // when the mapping is recorded and then its association
    record(&cloud, &request, &export).await.unwrap();
    assert!(
        record_association(
            &cloud.dynamodb,
            TABLE,
            &request,
            None,
            "assoc-1",
            &export.secret_version_id
        )
        .await
        .unwrap()
    );

    // then the mapping holds the request, the export's references and the association
    let item = cloud
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
    assert_eq!(stored.association_id.as_deref(), Some("assoc-1"));
    assert_eq!(
        stored.secret_version_id.as_deref(),
        Some(export.secret_version_id.as_str())
    );
    assert_no_secret("the mapping item", &format!("{item:?}"), &[&passphrase]);

    // and the claim names its holder
    let claim = cloud
        .dynamodb
        .get_item()
        .table_name(TABLE)
        .set_key(Some(claim_key("env", "dev", "web")))
        .send()
        .await
        .unwrap()
        .item
        .expect("the claim exists");
    assert_eq!(claim[attr::CLAIMED_BY].as_s().unwrap(), &arn);

    // and renewals find the mapping through the index, not the claim
    let found = cloud
        .dynamodb
        .query()
        .table_name(TABLE)
        .index_name(attr::BY_CERTIFICATE_ARN)
        .key_condition_expression("#arn = :arn")
        .expression_attribute_names("#arn", attr::CERTIFICATE_ARN)
        .expression_attribute_values(
            ":arn",
            aws_sdk_dynamodb::types::AttributeValue::S(arn.clone()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(found.items().len(), 1);
    assert_eq!(Mapping::from_item(&found.items()[0]).unwrap(), stored);

    // and the pre-check of the next deployment reads the recorded association
    let existing = existing_mappings(&cloud.dynamodb, TABLE, &request)
        .await
        .unwrap();
    assert_eq!(existing.association_id.as_deref(), Some("assoc-1"));

    // and an association recorded by another deployment meanwhile is not overwritten
    assert!(
        !record_association(&cloud.dynamodb, TABLE, &request, None, "assoc-2", "v")
            .await
            .unwrap()
    );
    assert!(
        record_association(
            &cloud.dynamodb,
            TABLE,
            &request,
            Some("assoc-1"),
            "assoc-3",
            "v"
        )
        .await
        .unwrap()
    );
}

/// Two executions racing for one name both pass the pre-check (neither mapping exists yet);
/// the claim's condition alone must then let exactly one through. DynamoDB serializes the two
/// conditional writes to the claim item, so the second is judged against the first: that order
/// is reproduced here step by step, because moto applies a transaction without a lock (it copies
/// the tables and restores the copy on failure), so truly concurrent requests to moto could
/// interleave in ways DynamoDB never does and would prove nothing.
#[tokio::test]
async fn two_certificates_racing_past_the_pre_check_cannot_both_claim_one_name() {
    // given two exported certificates
    let cloud = cloud().await;
    let first = seed::certificate(&cloud.export.acm, "a.example.com", true)
        .await
        .unwrap();
    let second = seed::certificate(&cloud.export.acm, "b.example.com", true)
        .await
        .unwrap();
    let (a, b) = (
        request(&first, "web", "dev"),
        request(&second, "web", "dev"),
    );
    let (export_a, export_b) = (export(&cloud, &a).await, export(&cloud, &b).await);

    // when both deployments read the partition before either writes
    let seen_a = existing_mappings(&cloud.dynamodb, TABLE, &a).await.unwrap();
    let seen_b = existing_mappings(&cloud.dynamodb, TABLE, &b).await.unwrap();
    assert_eq!((seen_a.association_id, seen_b.association_id), (None, None));

    // then the first claim wins and the second is refused, naming the holder
    claim_and_record(&cloud.dynamodb, TABLE, &a, &export_a)
        .await
        .unwrap();
    let err = claim_and_record(&cloud.dynamodb, TABLE, &b, &export_b)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "CertNameConflict");
    assert!(err.to_string().contains(&first), "{err}");

    // and only the winner's mapping was written (the refused transaction wrote nothing)
    let mappings: Vec<Mapping> = items(&cloud)
        .await
        .iter()
        .filter(|item| !mapping::is_claim(item))
        .map(|item| Mapping::from_item(item).unwrap())
        .collect();
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].certificate_arn, first);
    let claims = items(&cloud)
        .await
        .into_iter()
        .filter(mapping::is_claim)
        .collect::<Vec<_>>();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0][attr::CLAIMED_BY].as_s().unwrap(), &first);
}

#[tokio::test]
async fn a_name_is_free_on_another_target_and_for_its_holder() {
    let cloud = cloud().await;
    let first = seed::certificate(&cloud.export.acm, "a.example.com", true)
        .await
        .unwrap();
    let second = seed::certificate(&cloud.export.acm, "b.example.com", true)
        .await
        .unwrap();
    let (a, b) = (
        request(&first, "web", "dev"),
        request(&second, "web", "dev"),
    );
    let (export_a, export_b) = (export(&cloud, &a).await, export(&cloud, &b).await);
    record(&cloud, &a, &export_a).await.unwrap();

    // the pre-check refuses the second certificate before the claim does
    let err = record(&cloud, &b, &export_b).await.unwrap_err();
    assert_eq!(err.name(), "CertNameConflict");
    assert!(err.to_string().contains(&first), "{err}");
    // and so does the claim alone
    let err = claim_and_record(&cloud.dynamodb, TABLE, &b, &export_b)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "CertNameConflict");
    assert!(err.to_string().contains(&first), "{err}");

    // the same name on another target, and the same certificate again, are fine
    record(&cloud, &request(&second, "web", "prod"), &export_b)
        .await
        .unwrap();
    record(&cloud, &a, &export_a).await.unwrap();
    let mappings = items(&cloud)
        .await
        .into_iter()
        .filter(|item| !mapping::is_claim(item))
        .count();
    assert_eq!(mappings, 2, "the refused mapping was not written");
}

#[tokio::test]
async fn a_mapping_written_before_claims_existed_keeps_its_name() {
    // given a mapping of `web` on env=dev with no claim item (written by an older version)
    let cloud = cloud().await;
    let first = seed::certificate(&cloud.export.acm, "a.example.com", true)
        .await
        .unwrap();
    let second = seed::certificate(&cloud.export.acm, "b.example.com", true)
        .await
        .unwrap();
    let legacy = Mapping::from_item(&{
        let mut item = mapping::key("env", "dev", &first, "web");
        for (name, value) in [
            (attr::CERTIFICATE_ARN, first.as_str()),
            (attr::CERT_NAME, "web"),
            (attr::TARGET_TAG_KEY, "env"),
            (attr::TARGET_TAG_VALUE, "dev"),
        ] {
            item.insert(
                name.into(),
                aws_sdk_dynamodb::types::AttributeValue::S(value.into()),
            );
        }
        item
    })
    .unwrap();
    cloud
        .dynamodb
        .put_item()
        .table_name(TABLE)
        .set_item(Some(legacy.to_item()))
        .send()
        .await
        .unwrap();

    // when another certificate asks for the name
    let b = request(&second, "web", "dev");
    let export_b = export(&cloud, &b).await;
    let err = record(&cloud, &b, &export_b).await.unwrap_err();

    // then the pre-check refuses it
    assert_eq!(err.name(), "CertNameConflict");
    assert!(err.to_string().contains(&first), "{err}");
}
