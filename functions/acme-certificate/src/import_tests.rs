//! The ACM import against mocked responses: what a first import and a re-import send, and the
//! refusals moto does not produce (a key type change, a certificate deleted from ACM,
//! throttling past the SDK's retries).

use super::*;
use crate::{AppState, Settings};
use aws_sdk_acm::error::ErrorMetadata;
use aws_sdk_acm::operation::import_certificate::ImportCertificateOutput;
use aws_sdk_acm::types::error::{ResourceNotFoundException, ValidationException};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use std::time::Duration;

const PASSPHRASE: &str = "q7Rk2VbN9xWm4TcJ8pLz3HsYd6Fg5Ae1";
const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship-acme/certificate/www.example.com-0123456789ab-AbCdEf";
const ACM_ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0d3f5a1c-7e1b-4c55-9a0e-2b9f6d4e8c11";
const ID: &str = "www.example.com-0123456789ab";

fn retries() -> aws_sdk_acm::config::retry::RetryConfig {
    aws_sdk_acm::config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
}

/// The function's state with `acm` and `secrets` answering from `rules`; the other clients have
/// none, so a call to them fails the test.
fn state(acm: &[&Rule], secrets: &[&Rule]) -> AppState {
    AppState {
        route53: mock_client!(aws_sdk_route53, RuleMode::MatchAny, &[]),
        acm: mock_client!(aws_sdk_acm, RuleMode::MatchAny, acm, |c| c
            .retry_config(retries())),
        secrets: mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, secrets),
        dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]),
        events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, &[]),
        settings: Settings::default(),
    }
}

struct Stored {
    rule: Rule,
    certificate: String,
    key_pem: String,
}

/// The bundle Finalize stored: a self-signed certificate and its key, encrypted.
fn stored() -> Stored {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["www.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let bundle = serde_json::json!({
        "certificate": certificate,
        "chain": certificate,
        "encrypted_private_key": pkcs8::encrypt_pem(&key.serialize_der(), PASSPHRASE).unwrap(),
        "passphrase": PASSPHRASE,
    })
    .to_string();
    let rule = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .match_requests(|r| r.secret_id() == Some(SECRET) && r.version_id() == Some("v-2"))
        .then_output(move || {
            GetSecretValueOutput::builder()
                .secret_string(bundle.clone())
                .build()
        });
    Stored {
        rule,
        certificate,
        key_pem: key.serialize_pem(),
    }
}

fn order(previous: Option<&str>) -> OrderResult {
    OrderResult {
        certificate_id: ID.into(),
        hosted_zone_id: "Z0123".into(),
        order_url: "https://acme.example/order/1".into(),
        change_id: None,
        records: vec![],
        import_to_acm: true,
        acm_certificate_arn: previous.map(str::to_string),
    }
}

fn issued() -> ExportResult {
    ExportResult {
        secret_arn: SECRET.into(),
        secret_version_id: "v-2".into(),
        serial: "04:a1".into(),
        not_after: "2027-02-25T00:00:00Z".into(),
        key_algorithm: "EC_prime256v1".into(),
        domains: vec!["www.example.com".into()],
        exported_at: "2026-11-27T00:00:00Z".into(),
    }
}

#[tokio::test]
async fn a_first_import_sends_the_decrypted_key_and_tags_the_certificate() {
    let stored = stored();
    let (certificate, key_pem) = (stored.certificate.clone(), stored.key_pem.clone());
    let imports = mock!(aws_sdk_acm::Client::import_certificate)
        .match_requests(move |r| {
            r.certificate_arn().is_none()
                && r.certificate().map(|b| b.as_ref()) == Some(certificate.as_bytes())
                && r.private_key().map(|b| b.as_ref()) == Some(key_pem.as_bytes())
                && r.tags()
                    .iter()
                    .any(|t| t.key() == ACM_TAG_KEY && t.value() == Some(ID))
        })
        .then_output(|| {
            ImportCertificateOutput::builder()
                .certificate_arn(ACM_ARN)
                .build()
        });
    let result = import(
        &state(&[&imports], &[&stored.rule]),
        &order(None),
        &issued(),
    )
    .await
    .unwrap();
    assert_eq!(result.acm_certificate_arn.as_deref(), Some(ACM_ARN));
    assert_eq!(imports.num_calls(), 1);
}

#[tokio::test]
async fn a_reimport_names_the_certificate_and_sends_no_tags() {
    let stored = stored();
    let imports = mock!(aws_sdk_acm::Client::import_certificate)
        .match_requests(|r| r.certificate_arn() == Some(ACM_ARN) && r.tags().is_empty())
        .then_output(|| {
            ImportCertificateOutput::builder()
                .certificate_arn(ACM_ARN)
                .build()
        });
    let result = import(
        &state(&[&imports], &[&stored.rule]),
        &order(Some(ACM_ARN)),
        &issued(),
    )
    .await
    .unwrap();
    assert_eq!(result.acm_certificate_arn.as_deref(), Some(ACM_ARN));
    assert_eq!(imports.num_calls(), 1);
}

#[tokio::test]
async fn acm_s_refusals_are_acm_import_failed_and_name_what_to_do() {
    let stored = stored();
    let validation = mock!(aws_sdk_acm::Client::import_certificate).then_error(|| {
        ImportCertificateError::ValidationException(
            ValidationException::builder()
                .message("The certificate's key type cannot change")
                .meta(
                    ErrorMetadata::builder()
                        .code("ValidationException")
                        .message("The certificate's key type cannot change")
                        .build(),
                )
                .build(),
        )
    });
    let err = import(
        &state(&[&validation], &[&stored.rule]),
        &order(Some(ACM_ARN)),
        &issued(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "AcmImportFailed", "{err}");
    let message = err.to_string();
    assert!(
        message.contains("re-importing") && message.contains(ACM_ARN),
        "{message}"
    );
    assert!(message.contains("key type cannot change"), "{message}");
    assert!(!message.contains(PASSPHRASE) && !message.contains("PRIVATE KEY"));

    let gone = mock!(aws_sdk_acm::Client::import_certificate).then_error(|| {
        ImportCertificateError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Could not find certificate")
                .meta(
                    ErrorMetadata::builder()
                        .code("ResourceNotFoundException")
                        .message("Could not find certificate")
                        .build(),
                )
                .build(),
        )
    });
    let err = import(
        &state(&[&gone], &[&stored.rule]),
        &order(Some(ACM_ARN)),
        &issued(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "AcmImportFailed", "{err}");
    assert!(err.to_string().contains("AcmCertificateArn"), "{err}");
}

#[tokio::test]
async fn throttling_past_the_sdk_s_retries_is_throttled() {
    let stored = stored();
    let throttled = mock!(aws_sdk_acm::Client::import_certificate)
        .sequence()
        .http_response(|| {
            Response::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            )
        })
        .times(3)
        .build();
    let err = import(
        &state(&[&throttled], &[&stored.rule]),
        &order(None),
        &issued(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "Throttled", "{err}");
    assert_eq!(throttled.num_calls(), 3);
}

#[tokio::test]
async fn a_bundle_that_is_not_one_is_refused_without_quoting_it() {
    let broken = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .secret_string(format!("{{\"passphrase\": \"{PASSPHRASE}\"}}"))
            .build()
    });
    let err = import(&state(&[], &[&broken]), &order(None), &issued())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("not a certificate bundle"), "{message}");
    assert!(!message.contains(PASSPHRASE), "{message}");
}
