//! export-certificate against moto server: real ACM exports, real secrets, decrypted with openssl.

use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_shared::{DeploymentRequest, Trigger, WorkflowState, naming};
use certship_testkit::{moto::Moto, seed};
use export_certificate::{AppState, CERTIFICATE_ARN_TAG, Settings, handler};
use std::path::Path;
use std::process::Command;

fn request(arn: &str, name: &str) -> WorkflowState {
    WorkflowState::new(DeploymentRequest {
        certificate_arn: arn.into(),
        cert_name: name.into(),
        target_tag_key: "env".into(),
        target_tag_value: "dev".into(),
        reload_service: None,
        trigger: Trigger::Api,
    })
}

async fn app(moto: &Moto, home_region: &str) -> AppState {
    let config = moto.sdk_config(home_region).await;
    AppState::new(
        &config,
        Settings {
            rules: RequestRules::new(home_region, ReloadAllowlist::parse("nginx").unwrap()),
        },
    )
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn an_exported_key_decrypts_with_openssl_and_matches_its_certificate() {
    // given an exportable certificate in ACM
    let moto = Moto::start().unwrap();
    let app = app(&moto, "us-east-1").await;
    let arn = seed::certificate(&app.acm, "www.example.com", true)
        .await
        .unwrap();

    // when it is exported
    let export = handler(&app, request(&arn, "web")).await.unwrap();

    // then the secret is the mapping's, tagged for ABAC, and holds the bundle
    assert!(
        export
            .secret_arn
            .contains(&naming::secret_name("web", &arn, "env", "dev")),
        "{}",
        export.secret_arn
    );
    let described = app
        .secrets
        .describe_secret()
        .secret_id(&export.secret_arn)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(
        tags.contains(&("env", "dev")) && tags.contains(&(CERTIFICATE_ARN_TAG, arn.as_str())),
        "{tags:?}"
    );
    let bundle = seed::secret_bundle(&app.secrets, &export).await.unwrap();
    assert_eq!(bundle["serial"], export.serial.as_str());
    assert_eq!(bundle["certificate_arn"], arn.as_str());
    let leaf = bundle["certificate"].as_str().unwrap();
    let fullchain = bundle["fullchain"].as_str().unwrap();
    assert!(fullchain.starts_with(leaf) && fullchain.ends_with(bundle["chain"].as_str().unwrap()));

    // and openssl decrypts the key with the passphrase, and the key matches the certificate
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        bundle["encrypted_private_key"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pass"),
        bundle["passphrase"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("cert.pem"), leaf).unwrap();
    let key_public = openssl(
        &["pkey", "-in", "key.pem", "-passin", "file:pass", "-pubout"],
        dir.path(),
    );
    let cert_public = openssl(
        &["x509", "-in", "cert.pem", "-noout", "-pubkey"],
        dir.path(),
    );
    assert_eq!(key_public, cert_public);
    let serial = openssl(
        &["x509", "-in", "cert.pem", "-noout", "-serial"],
        dir.path(),
    );
    assert!(
        certship_shared::serial::same_serial(
            serial.trim().trim_start_matches("serial="),
            &export.serial
        ),
        "{serial}"
    );
    // a wrong passphrase does not decrypt it
    std::fs::write(dir.path().join("wrong"), "not-the-passphrase").unwrap();
    let wrong = Command::new("openssl")
        .args(["pkey", "-in", "key.pem", "-passin", "file:wrong"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!wrong.status.success());
}

#[tokio::test]
async fn a_second_export_writes_a_new_version_with_a_new_passphrase() {
    let moto = Moto::start().unwrap();
    let app = app(&moto, "us-east-1").await;
    let arn = seed::certificate(&app.acm, "api.example.com", true)
        .await
        .unwrap();

    let first = handler(&app, request(&arn, "api")).await.unwrap();
    let second = handler(&app, request(&arn, "api")).await.unwrap();

    assert_eq!(first.secret_arn, second.secret_arn);
    assert_ne!(first.secret_version_id, second.secret_version_id);
    let (a, b) = (
        seed::secret_bundle(&app.secrets, &first).await.unwrap(),
        seed::secret_bundle(&app.secrets, &second).await.unwrap(),
    );
    assert_ne!(a["passphrase"], b["passphrase"]);
    let described = app
        .secrets
        .describe_secret()
        .secret_id(&second.secret_arn)
        .send()
        .await
        .unwrap();
    assert!(
        described
            .tags()
            .iter()
            .any(|t| t.key() == Some("env") && t.value() == Some("dev"))
    );
}

#[tokio::test]
async fn a_certificate_without_export_enabled_is_refused() {
    let moto = Moto::start().unwrap();
    let app = app(&moto, "us-east-1").await;
    let arn = seed::certificate(&app.acm, "internal.example.com", false)
        .await
        .unwrap();

    let err = handler(&app, request(&arn, "internal")).await.unwrap_err();

    assert_eq!(err.name(), "CertificateNotExportable");
    let secrets = app.secrets.list_secrets().send().await.unwrap();
    assert!(secrets.secret_list().is_empty(), "nothing is written");
}

#[tokio::test]
async fn a_certificate_in_another_region_is_exported_from_its_region() {
    // given a certificate in eu-west-1 while certship runs in us-east-1
    let moto = Moto::start().unwrap();
    let app = app(&moto, "us-east-1").await;
    let eu = aws_sdk_acm::Client::new(&moto.sdk_config("eu-west-1").await);
    let arn = seed::certificate(&eu, "eu.example.com", true)
        .await
        .unwrap();
    assert!(arn.contains(":eu-west-1:"));

    let export = handler(&app, request(&arn, "eu")).await.unwrap();

    // the secret lives in the home region
    assert!(
        export.secret_arn.contains(":us-east-1:"),
        "{}",
        export.secret_arn
    );
    // Another last hex digit than the real one (replacing it with a fixed one matched the real
    // ARN one time in sixteen).
    let last = if arn.ends_with('0') { '1' } else { '0' };
    let missing = format!("{}{last}", &arn[..arn.len() - 1]);
    assert_ne!(missing, arn);
    let err = handler(&app, request(&missing, "eu")).await.unwrap_err();
    assert_eq!(err.name(), "CertificateNotFound");
}
