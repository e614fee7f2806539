//! The emulated ACM renewal (`POST /_certship/acm/renew`, `Extension::renew_certificate`) against a real
//! moto server: the same ARN answers with a new key and a new certificate from the same CA, and
//! ExportCertificate and DescribeCertificate show them as they would after ACM's managed renewal.

use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::{CertificateDetail, CertificateExport, CertificateStatus, RenewalStatus};
use aws_smithy_types::date_time::Format;
use certship_shared::pem;
use certship_testkit::{moto::Moto, seed};
use std::path::Path;
use std::process::Command;

const PASSPHRASE: &str = "renewal-test-passphrase-7f3a";
/// The variable openssl reads the passphrase from (`-passin env:...`), never its argv.
const PASSPHRASE_VAR: &str = "CERTSHIP_TEST_PASSPHRASE";
const UNKNOWN_ARN: &str =
    "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000";

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .env(PASSPHRASE_VAR, PASSPHRASE)
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

async fn acm(moto: &Moto) -> aws_sdk_acm::Client {
    aws_sdk_acm::Client::new(&moto.sdk_config("eu-west-1").await)
}

async fn describe(acm: &aws_sdk_acm::Client, arn: &str) -> CertificateDetail {
    acm.describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap()
        .certificate
        .expect("DescribeCertificate names the certificate")
}

struct Exported {
    certificate: String,
    chain: String,
    encrypted_key: String,
}

async fn export(acm: &aws_sdk_acm::Client, arn: &str) -> Exported {
    let out = acm
        .export_certificate()
        .certificate_arn(arn)
        .passphrase(Blob::new(PASSPHRASE))
        .send()
        .await
        .unwrap();
    Exported {
        certificate: out.certificate.expect("a certificate"),
        chain: out.certificate_chain.expect("a chain"),
        encrypted_key: out.private_key.expect("a private key"),
    }
}

/// The public key of `exported`'s private key (decrypted with the passphrase) and of its
/// certificate, as openssl writes them.
fn public_keys(exported: &Exported, dir: &Path) -> (String, String) {
    std::fs::write(dir.join("key.pem"), &exported.encrypted_key).unwrap();
    std::fs::write(dir.join("cert.pem"), &exported.certificate).unwrap();
    let key = openssl(
        &[
            "pkey",
            "-in",
            "key.pem",
            "-passin",
            &format!("env:{PASSPHRASE_VAR}"),
            "-pubout",
        ],
        dir,
    );
    let cert = openssl(&["x509", "-in", "cert.pem", "-noout", "-pubkey"], dir);
    (key, cert)
}

fn is_acm_serial(serial: &str) -> bool {
    regex::Regex::new("^[0-9a-f]{2}(:[0-9a-f]{2})*$")
        .unwrap()
        .is_match(serial)
}

#[tokio::test]
async fn a_renewed_certificate_keeps_its_arn_and_exports_a_new_key_and_serial_from_the_same_ca() {
    // given an exportable, issued certificate with a tag, exported once
    let moto = Moto::start().unwrap();
    let acm = acm(&moto).await;
    let arn = seed::certificate(&acm, "renew.example.com", true)
        .await
        .unwrap();
    acm.add_tags_to_certificate()
        .certificate_arn(&arn)
        .tags(
            aws_sdk_acm::types::Tag::builder()
                .key("env")
                .value("dev")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let before = describe(&acm, &arn).await;
    let old = export(&acm, &arn).await;
    assert!(before.renewal_summary().is_none());

    // when it is renewed
    let renewed = moto.renew_certificate(&arn).await.unwrap();

    // then the answer names the same certificate, with a new serial
    let after = describe(&acm, &arn).await;
    let new = export(&acm, &arn).await;
    assert_eq!(renewed.certificate_arn, arn.as_str());
    let (old_serial, new_serial) = (before.serial().unwrap(), after.serial().unwrap());
    assert_ne!(old_serial, new_serial);
    assert_eq!(
        pem::pem_serial(&old.certificate).as_deref(),
        Some(old_serial)
    );
    assert_eq!(
        pem::pem_serial(&new.certificate).as_deref(),
        Some(new_serial)
    );
    assert_ne!(old.certificate, new.certificate);

    // and it is still issued, exportable, for the same names, tagged as before
    assert_eq!(after.status(), Some(&CertificateStatus::Issued));
    assert_eq!(
        after.options().and_then(|o| o.export()),
        Some(&CertificateExport::Enabled)
    );
    assert_eq!(after.domain_name(), before.domain_name());
    assert_eq!(
        after.subject_alternative_names(),
        before.subject_alternative_names()
    );
    assert_eq!(after.r#type(), before.r#type());
    let tags = acm
        .list_tags_for_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == "env" && t.value() == Some("dev")),
        "{tags:?}"
    );

    // and it is valid at least as long as before, with the renewal recorded
    let (old_not_after, new_not_after) = (before.not_after().unwrap(), after.not_after().unwrap());
    assert!(
        new_not_after >= old_not_after,
        "{new_not_after} < {old_not_after}"
    );
    assert_eq!(
        renewed.not_after,
        new_not_after.fmt(Format::DateTime).unwrap().as_str()
    );
    let summary = after.renewal_summary().expect("a RenewalSummary");
    assert_eq!(summary.renewal_status(), &RenewalStatus::Success);
    assert!(summary.updated_at() >= before.issued_at().unwrap());

    // and the new key decrypts under the passphrase, matches the new certificate, and is new
    let dir = tempfile::tempdir().unwrap();
    let (old_key, old_cert) = public_keys(&old, dir.path());
    let (new_key, new_cert) = public_keys(&new, dir.path());
    assert_eq!(old_key, old_cert);
    assert_eq!(new_key, new_cert);
    assert_ne!(old_key, new_key);

    // and the same CA issued it: the chain is unchanged and verifies the new leaf
    assert_eq!(old.chain, new.chain);
    std::fs::write(dir.path().join("chain.pem"), &new.chain).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), &new.certificate).unwrap();
    let verified = openssl(
        &[
            "verify",
            "-partial_chain",
            "-trusted",
            "chain.pem",
            "leaf.pem",
        ],
        dir.path(),
    );
    assert_eq!(verified.trim(), "leaf.pem: OK");
}

#[tokio::test]
async fn renewing_an_unknown_certificate_is_not_found() {
    let moto = Moto::start().unwrap();

    let error = moto.renew_certificate(UNKNOWN_ARN).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("HTTP 404"), "{message}");
    assert!(message.contains(UNKNOWN_ARN), "{message}");
}

#[tokio::test]
async fn renewing_an_imported_certificate_is_refused() {
    // given a certificate imported into ACM, which ACM never renews
    let moto = Moto::start().unwrap();
    let acm = acm(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=imported.example.com",
            "-days",
            "30",
        ],
        dir.path(),
    );
    let arn = acm
        .import_certificate()
        .certificate(Blob::new(
            std::fs::read(dir.path().join("cert.pem")).unwrap(),
        ))
        .private_key(Blob::new(
            std::fs::read(dir.path().join("key.pem")).unwrap(),
        ))
        .send()
        .await
        .unwrap()
        .certificate_arn
        .unwrap();
    let before = describe(&acm, &arn).await;

    // when it is renewed, then that is a bad request and nothing changes
    let error = moto.renew_certificate(&arn).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("HTTP 400"), "{message}");
    assert_eq!(describe(&acm, &arn).await.serial(), before.serial());
}

#[tokio::test]
async fn the_renewal_answers_the_serial_describe_certificate_shows_in_acm_notation() {
    // given an issued certificate
    let moto = Moto::start().unwrap();
    let acm = acm(&moto).await;
    let arn = seed::certificate(&acm, "serial.example.com", false)
        .await
        .unwrap();
    // DescribeCertificate writes serials as ACM does (moto's own would be decimal)
    let before = describe(&acm, &arn).await;
    assert!(is_acm_serial(before.serial().unwrap()), "{before:?}");

    // when it is renewed
    let renewed = moto.renew_certificate(&arn).await.unwrap();

    // then the answer's serial is DescribeCertificate's, both as ACM writes them
    let serial = renewed.serial.as_str();
    assert!(is_acm_serial(serial), "{serial}");
    assert_eq!(describe(&acm, &arn).await.serial(), Some(serial));
    assert_ne!(before.serial(), Some(serial));
}
