//! Unit tests of the export handler against mocked ACM and Secrets Manager.

use super::*;
use aws_sdk_acm::Client as Acm;
use aws_sdk_acm::operation::describe_certificate::DescribeCertificateOutput;
use aws_sdk_acm::operation::export_certificate::ExportCertificateOutput;
use aws_sdk_acm::types::error::ResourceNotFoundException;
use aws_sdk_acm::types::{CertificateOptions, KeyAlgorithm};
use aws_sdk_secretsmanager::Client as Secrets;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput;
use aws_sdk_secretsmanager::operation::restore_secret::RestoreSecretOutput;
use aws_sdk_secretsmanager::operation::tag_resource::TagResourceOutput;
use aws_sdk_secretsmanager::types::error::{InvalidRequestException, ResourceExistsException};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use certship_shared::rules::ReloadAllowlist;
use certship_shared::{DeploymentRequest, Trigger};
use std::sync::{Arc, Mutex};

const ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0b5e3c1a-1111-4222-8333-444455556666";
const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship/web-abc";
const LEAF: &str = include_str!("../../../events/fixtures/leaf.pem");
const CHAIN: &str = include_str!("../../../events/fixtures/chain.pem");
const KEY: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";

fn request(arn: &str) -> WorkflowState {
    WorkflowState::new(DeploymentRequest {
        certificate_arn: arn.into(),
        cert_name: "web".into(),
        target_tag_key: "env".into(),
        target_tag_value: "dev".into(),
        reload_service: Some("nginx".into()),
        trigger: Trigger::Api,
    })
}

fn certificate(
    status: CertificateStatus,
    kind: CertificateType,
    export: CertificateExport,
) -> DescribeCertificateOutput {
    DescribeCertificateOutput::builder()
        .certificate(
            CertificateDetail::builder()
                .certificate_arn(ARN)
                .domain_name("www.example.com")
                .subject_alternative_names("www.example.com")
                .subject_alternative_names("example.com")
                .status(status)
                .r#type(kind)
                .key_algorithm(KeyAlgorithm::Rsa2048)
                .not_after(aws_smithy_types::DateTime::from_secs(1_798_761_600))
                .options(CertificateOptions::builder().export(export).build())
                .build(),
        )
        .build()
}

fn issued() -> Rule {
    mock!(Acm::describe_certificate).then_output(|| {
        certificate(
            CertificateStatus::Issued,
            CertificateType::AmazonIssued,
            CertificateExport::Enabled,
        )
    })
}

/// Records the passphrase ACM was asked to encrypt with.
fn exporting(seen: Arc<Mutex<Option<String>>>) -> Rule {
    mock!(Acm::export_certificate)
        .match_requests(move |req| {
            let passphrase = req
                .passphrase()
                .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned());
            *seen.lock().unwrap() = passphrase;
            true
        })
        .then_output(exported)
}

fn exported() -> ExportCertificateOutput {
    ExportCertificateOutput::builder()
        .certificate(LEAF)
        .certificate_chain(CHAIN)
        .private_key(KEY)
        .build()
}

use certship_testkit::throttling_response as throttling;

fn acm_client(rules: &[&Rule]) -> Acm {
    mock_client!(aws_sdk_acm, RuleMode::MatchAny, rules, |c| c.retry_config(
        aws_sdk_acm::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(1))
    ))
}

fn state(acm: Acm, secrets: Secrets) -> AppState {
    AppState {
        acm,
        secrets,
        rules: RequestRules::new("us-east-1", ReloadAllowlist::parse("nginx").unwrap()),
    }
}

/// Records the SecretString written.
fn creating(written: Arc<Mutex<Option<String>>>) -> Rule {
    mock!(Secrets::create_secret)
        .match_requests(move |req| {
            *written.lock().unwrap() = req.secret_string().map(str::to_string);
            true
        })
        .then_output(|| {
            CreateSecretOutput::builder()
                .arn(SECRET_ARN)
                .version_id("v-1")
                .build()
        })
}

#[tokio::test]
async fn happy_path_creates_the_secret_with_the_bundle_and_returns_references_only() {
    // given an issued, exportable certificate and no secret yet
    let passphrase = Arc::new(Mutex::new(None));
    let written = Arc::new(Mutex::new(None));
    let describe = issued();
    let export = exporting(passphrase.clone());
    let create = mock!(Secrets::create_secret)
        .match_requests({
            let (written, expected) = (
                written.clone(),
                naming::secret_name("web", ARN, "env", "dev"),
            );
            move |req| {
                *written.lock().unwrap() = req.secret_string().map(str::to_string);
                let tags: Vec<(String, String)> = req
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().into(),
                            t.value().unwrap_or_default().into(),
                        )
                    })
                    .collect();
                req.name() == Some(expected.as_str())
                    && tags
                        == [
                            ("env".into(), "dev".into()),
                            (CERTIFICATE_ARN_TAG.into(), ARN.into()),
                        ]
            }
        })
        .then_output(|| {
            CreateSecretOutput::builder()
                .arn(SECRET_ARN)
                .version_id("v-1")
                .build()
        });
    let put =
        mock!(Secrets::put_secret_value).then_output(|| PutSecretValueOutput::builder().build());
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&create, &put]);
    let logs = certship_testkit::logs::capture();

    // when
    let result = handler(
        &state(acm_client(&[&describe, &export]), secrets),
        request(ARN),
    )
    .await
    .unwrap();

    // then the result names the secret version and the exported certificate's own serial
    assert_eq!(result.secret_arn, SECRET_ARN);
    assert_eq!(result.secret_version_id, "v-1");
    assert_eq!(result.serial, pem::pem_serial(LEAF).unwrap());
    assert_eq!(result.not_after, "2027-01-01T00:00:00Z");
    assert_eq!(result.key_algorithm, "RSA_2048");
    assert_eq!(result.domains, ["www.example.com", "example.com"]);
    assert_eq!(
        (
            describe.num_calls(),
            export.num_calls(),
            create.num_calls(),
            put.num_calls()
        ),
        (1, 1, 1, 0)
    );

    // and the secret holds DESIGN's bundle, encrypted with the passphrase ACM was given
    let passphrase = passphrase.lock().unwrap().clone().unwrap();
    assert_eq!(passphrase.len(), 32);
    let bundle: serde_json::Value =
        serde_json::from_str(&written.lock().unwrap().clone().unwrap()).unwrap();
    assert_eq!(bundle["passphrase"], passphrase.as_str());
    assert_eq!(bundle["encrypted_private_key"], KEY);
    assert_eq!(bundle["certificate"], LEAF);
    assert_eq!(bundle["chain"], CHAIN);
    assert_eq!(bundle["fullchain"], format!("{LEAF}{CHAIN}"));
    assert_eq!(bundle["serial"], result.serial.as_str());
    assert_eq!(bundle["certificate_arn"], ARN);
    assert_eq!(bundle["not_after"], "2027-01-01T00:00:00Z");
    assert_eq!(
        bundle["domains"],
        serde_json::json!(["www.example.com", "example.com"])
    );
    assert_eq!(bundle["exported_at"], result.exported_at.as_str());

    // and neither the output nor any log line carries the passphrase or the key
    let output = serde_json::to_string(&result).unwrap();
    certship_testkit::assert_no_secret("the export output", &output, &[&passphrase, KEY]);
    certship_testkit::assert_no_secret("the logs", &logs.text(), &[&passphrase, KEY]);
    assert!(
        logs.text().contains("exported certificate"),
        "the export is logged: {}",
        logs.text()
    );
}

#[tokio::test]
async fn every_export_uses_a_fresh_passphrase() {
    let first = Arc::new(Mutex::new(None));
    let second = Arc::new(Mutex::new(None));
    for seen in [&first, &second] {
        let (describe, export) = (issued(), exporting(seen.clone()));
        let create = creating(Arc::default());
        let secrets = mock_client!(aws_sdk_secretsmanager, [&create]);
        handler(
            &state(acm_client(&[&describe, &export]), secrets),
            request(ARN),
        )
        .await
        .unwrap();
    }
    assert_ne!(
        first.lock().unwrap().clone().unwrap(),
        second.lock().unwrap().clone().unwrap()
    );
}

#[tokio::test]
async fn an_existing_secret_gets_a_new_version_and_its_tags_reasserted() {
    let (describe, export) = (issued(), exporting(Arc::default()));
    let create = mock!(Secrets::create_secret).then_error(|| {
        CreateSecretError::ResourceExistsException(ResourceExistsException::builder().build())
    });
    let written = Arc::new(Mutex::new(None));
    let put = mock!(Secrets::put_secret_value)
        .match_requests({
            let written = written.clone();
            move |req| {
                *written.lock().unwrap() = req.secret_string().map(str::to_string);
                req.secret_id() == Some(naming::secret_name("web", ARN, "env", "dev").as_str())
            }
        })
        .then_output(|| {
            PutSecretValueOutput::builder()
                .arn(SECRET_ARN)
                .version_id("v-2")
                .build()
        });
    let retag = mock!(Secrets::tag_resource)
        .match_requests(|req| req.secret_id() == Some(SECRET_ARN) && req.tags().len() == 2)
        .then_output(|| TagResourceOutput::builder().build());
    let secrets = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&create, &put, &retag]
    );

    let result = handler(
        &state(acm_client(&[&describe, &export]), secrets),
        request(ARN),
    )
    .await
    .unwrap();

    assert_eq!(result.secret_version_id, "v-2");
    assert_eq!(
        (create.num_calls(), put.num_calls(), retag.num_calls()),
        (1, 1, 1)
    );
    assert!(
        written
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("\"fullchain\"")
    );
}

#[tokio::test]
async fn a_secret_scheduled_for_deletion_is_restored_then_written() {
    let (describe, export) = (issued(), exporting(Arc::default()));
    let create = mock!(Secrets::create_secret).then_error(|| {
        CreateSecretError::InvalidRequestException(
            InvalidRequestException::builder()
                .message("You can't create this secret because a secret with this name is already scheduled for deletion.")
                .build(),
        )
    });
    let restore =
        mock!(Secrets::restore_secret).then_output(|| RestoreSecretOutput::builder().build());
    let put = mock!(Secrets::put_secret_value).then_output(|| {
        PutSecretValueOutput::builder()
            .arn(SECRET_ARN)
            .version_id("v-3")
            .build()
    });
    let retag = mock!(Secrets::tag_resource).then_output(|| TagResourceOutput::builder().build());
    let secrets = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&create, &restore, &put, &retag]
    );

    let result = handler(
        &state(acm_client(&[&describe, &export]), secrets),
        request(ARN),
    )
    .await
    .unwrap();
    assert_eq!(result.secret_version_id, "v-3");
    assert_eq!(restore.num_calls(), 1);
}

async fn export_error_of(describe: Rule, export: Rule, arn: &str) -> (CertshipError, usize) {
    let secrets = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&creating(Arc::default())]
    );
    let err = handler(
        &state(acm_client(&[&describe, &export]), secrets),
        request(arn),
    )
    .await
    .unwrap_err();
    (err, export.num_calls())
}

#[tokio::test]
async fn a_missing_certificate_is_certificate_not_found() {
    let describe = mock!(Acm::describe_certificate).then_error(|| {
        DescribeCertificateError::ResourceNotFoundException(
            ResourceNotFoundException::builder().build(),
        )
    });
    let (err, exports) = export_error_of(describe, exporting(Arc::default()), ARN).await;
    assert_eq!(err.name(), "CertificateNotFound");
    assert!(err.to_string().contains(ARN));
    assert_eq!(exports, 0);
}

#[tokio::test]
async fn a_certificate_pending_validation_is_not_ready() {
    let describe = mock!(Acm::describe_certificate).then_output(|| {
        certificate(
            CertificateStatus::PendingValidation,
            CertificateType::AmazonIssued,
            CertificateExport::Enabled,
        )
    });
    let (err, exports) = export_error_of(describe, exporting(Arc::default()), ARN).await;
    assert_eq!(err.name(), "CertificateNotReady");
    assert!(err.to_string().contains("PENDING_VALIDATION"), "{err}");
    assert_eq!(exports, 0);
}

#[tokio::test]
async fn a_public_certificate_without_export_enabled_is_not_exportable() {
    let describe = mock!(Acm::describe_certificate).then_output(|| {
        certificate(
            CertificateStatus::Issued,
            CertificateType::AmazonIssued,
            CertificateExport::Disabled,
        )
    });
    let (err, exports) = export_error_of(describe, exporting(Arc::default()), ARN).await;
    assert_eq!(err.name(), "CertificateNotExportable");
    assert!(err.to_string().contains("Export=ENABLED"), "{err}");
    assert_eq!(exports, 0);
}

#[tokio::test]
async fn a_private_ca_certificate_is_exportable() {
    let describe = mock!(Acm::describe_certificate).then_output(|| {
        certificate(
            CertificateStatus::Issued,
            CertificateType::Private,
            CertificateExport::Disabled,
        )
    });
    let export = exporting(Arc::default());
    let create = creating(Arc::default());
    let secrets = mock_client!(aws_sdk_secretsmanager, [&create]);
    handler(
        &state(acm_client(&[&describe, &export]), secrets),
        request(ARN),
    )
    .await
    .unwrap();
    assert_eq!(export.num_calls(), 1);
}

#[tokio::test]
async fn acm_refusing_the_export_is_not_exportable() {
    let export = mock!(Acm::export_certificate).then_http_response(|| {
        Response::new(
            StatusCode::try_from(400).unwrap(),
            SdkBody::from(r#"{"__type":"ValidationException","message":"Certificate ARN is not a private certificate"}"#),
        )
    });
    let (err, _) = export_error_of(issued(), export, ARN).await;
    assert_eq!(err.name(), "CertificateNotExportable");
    assert!(
        err.to_string().contains("not a private certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn an_invalid_request_calls_nothing() {
    let describe = issued();
    let (err, exports) = export_error_of(
        describe,
        exporting(Arc::default()),
        "arn:aws:acm:us-east-1:1:certificate/x",
    )
    .await;
    assert_eq!(err.name(), "InvalidRequest");
    assert!(err.to_string().contains("CertificateArn"), "{err}");
    assert_eq!(exports, 0);

    let mut bad = request(ARN);
    bad.request.reload_service = Some("reboot.target".into());
    let secrets = mock_client!(aws_sdk_secretsmanager, [&creating(Arc::default())]);
    let describe = issued();
    let err = handler(&state(acm_client(&[&describe]), secrets), bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ReloadService"), "{err}");
    assert_eq!(describe.num_calls(), 0);
}

#[tokio::test]
async fn a_throttled_export_is_retried_by_the_sdk_and_succeeds() {
    let export = mock!(Acm::export_certificate)
        .sequence()
        .http_response(throttling)
        .output(exported)
        .build();
    let describe = issued();
    let create = creating(Arc::default());
    let secrets = mock_client!(aws_sdk_secretsmanager, [&create]);
    handler(
        &state(acm_client(&[&describe, &export]), secrets),
        request(ARN),
    )
    .await
    .unwrap();
    assert_eq!(export.num_calls(), 2);
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_throttled() {
    let export = mock!(Acm::export_certificate)
        .sequence()
        .http_response(throttling)
        .times(3)
        .build();
    let (err, exports) = export_error_of(issued(), export, ARN).await;
    assert_eq!(err.name(), "Throttled");
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    assert_eq!(exports, 3);
}

#[tokio::test]
async fn a_certificate_in_another_region_is_exported_there() {
    let arn = ARN.replace("us-east-1", "eu-west-1");
    let describe = mock!(Acm::describe_certificate).then_output(|| {
        certificate(
            CertificateStatus::Issued,
            CertificateType::AmazonIssued,
            CertificateExport::Enabled,
        )
    });
    let export = exporting(Arc::default());
    let home = acm_client(&[&describe, &export]);
    let regional = acm_for(&home, &CertificateArn::parse(&arn).unwrap());
    assert_eq!(regional.config().region().unwrap().as_ref(), "eu-west-1");
    assert_eq!(
        acm_for(&home, &CertificateArn::parse(ARN).unwrap())
            .config()
            .region()
            .unwrap()
            .as_ref(),
        "us-east-1"
    );
    let secrets = mock_client!(aws_sdk_secretsmanager, [&creating(Arc::default())]);
    handler(&state(home, secrets), request(&arn)).await.unwrap();
    assert_eq!(export.num_calls(), 1);
}
