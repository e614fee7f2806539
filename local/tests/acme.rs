//! The ACME issuance workflow end to end on the local cloud: the real state machine on moto,
//! acme-certificate's handler, moto's Route53, and Pebble validating DNS-01 through a DNS
//! responder that reads those zones. Certificates are checked with `openssl`.

use aws_sdk_sfn::types::ExecutionStatus;
use certship_local::{LocalCloud, LocalOptions};
use certship_shared::acme::{
    ACM_TAG_KEY, IssueRequest, KeyType, account_secret_name, certificate_secret_name,
    challenge_record_name,
};
use certship_shared::acme_registry::Registration;
use certship_shared::event::{DETAIL_TYPE_RENEWAL_FAILED, RenewalFailedEvent};
use certship_shared::{ExportResult, pem};
use serde::Deserialize;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

async fn start() -> (LocalCloud, tempfile::TempDir) {
    certship_testkit::moto::venv_python().unwrap();
    let state = tempfile::Builder::new()
        .prefix("certship-acme-")
        .tempdir()
        .unwrap();
    let mut options = LocalOptions::new(certship_testkit::moto::project_root());
    options.state_dir = state.path().to_path_buf();
    (LocalCloud::start(options).await.unwrap(), state)
}

async fn zone(cloud: &LocalCloud, name: &str) -> String {
    let out = aws_sdk_route53::Client::new(cloud.sdk_config())
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("test-{name}"))
        .send()
        .await
        .unwrap();
    out.hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string()
}

fn request(cloud: &LocalCloud, zone_id: &str, domains: &[&str], key_type: KeyType) -> IssueRequest {
    IssueRequest {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        hosted_zone_id: zone_id.to_string(),
        key_type,
        directory: cloud.acme_ca.directory_url(),
        contact: vec!["mailto:ops@certship.test".into()],
        renew_days_before: None,
        import_to_acm: false,
    }
}

/// How an issuance ended: its status, output and history (every event, as JSON text).
struct Ended {
    status: ExecutionStatus,
    output: serde_json::Value,
    error: Option<String>,
    cause: Option<String>,
    history: String,
}

async fn issue(cloud: &LocalCloud, request: &IssueRequest) -> Ended {
    let sfn = aws_sdk_sfn::Client::new(cloud.sdk_config());
    let started = sfn
        .start_execution()
        .state_machine_arn(&cloud.acme_state_machine_arn)
        .name(format!(
            "t{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ))
        .input(serde_json::to_string(request).unwrap())
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let described = sfn
            .describe_execution()
            .execution_arn(started.execution_arn())
            .send()
            .await
            .unwrap();
        if described.status() != &ExecutionStatus::Running {
            let history = sfn
                .get_execution_history()
                .execution_arn(started.execution_arn())
                .send()
                .await
                .unwrap();
            return Ended {
                status: described.status().clone(),
                output: described
                    .output()
                    .map(|o| serde_json::from_str(o).unwrap())
                    .unwrap_or_default(),
                error: described.error().map(str::to_string),
                cause: described.cause().map(str::to_string),
                history: format!("{:?}", history.events()),
            };
        }
        assert!(
            Instant::now() < deadline,
            "the issuance did not end in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The TXT values at `name` in the zone.
async fn txt_values(cloud: &LocalCloud, zone_id: &str, name: &str) -> Vec<String> {
    let out = aws_sdk_route53::Client::new(cloud.sdk_config())
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|s| s.name() == name && s.r#type().as_str() == "TXT")
        .flat_map(|s| s.resource_records())
        .map(|r| r.value().to_string())
        .collect()
}

async fn secret_string(cloud: &LocalCloud, name: &str) -> Option<(String, String)> {
    let got = aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .ok()?;
    Some((
        got.secret_string()?.to_string(),
        got.version_id()?.to_string(),
    ))
}

/// The fields of the certificate's bundle the test checks.
#[derive(Deserialize)]
struct Bundle {
    certificate: String,
    chain: String,
    fullchain: String,
    encrypted_private_key: String,
    passphrase: String,
    serial: String,
    not_after: String,
    expiry: String,
    obtained_at: String,
    domains: Vec<String>,
    certificate_arn: String,
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (make system-packages installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Checks the bundle as a host would: the key decrypts with the passphrase and matches the
/// leaf, and the chain verifies against the CA's issuing root.
async fn assert_installable(cloud: &LocalCloud, bundle: &Bundle, key_type: KeyType) {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("leaf.pem", &bundle.certificate);
    write("chain.pem", &bundle.chain);
    write("key.pem", &bundle.encrypted_private_key);
    write("pass", &bundle.passphrase);
    write(
        "root.pem",
        &cloud.acme_ca.issuing_roots_pem().await.unwrap(),
    );
    assert!(
        bundle
            .encrypted_private_key
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
    assert_eq!(
        bundle.fullchain,
        format!("{}{}", bundle.certificate, bundle.chain)
    );

    let (ok, key_public) = openssl(
        dir.path(),
        &["pkey", "-in", "key.pem", "-passin", "file:pass", "-pubout"],
    );
    assert!(
        ok,
        "the key does not decrypt with its passphrase: {key_public}"
    );
    let (ok, leaf_public) = openssl(
        dir.path(),
        &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
    );
    assert!(ok, "{leaf_public}");
    assert_eq!(
        key_public, leaf_public,
        "the key does not match the certificate"
    );
    let (ok, verified) = openssl(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "leaf.pem",
        ],
    );
    assert!(ok && verified.contains("leaf.pem: OK"), "{verified}");
    let (_, text) = openssl(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    match key_type {
        KeyType::Rsa2048 => assert!(text.contains("Public-Key: (2048 bit)"), "{text}"),
        KeyType::EcP256 => assert!(text.contains("prime256v1"), "{text}"),
        KeyType::EcP384 => assert!(text.contains("secp384r1"), "{text}"),
    }
    assert_eq!(
        Some(bundle.serial.clone()),
        pem::pem_serial(&bundle.certificate)
    );
    assert_eq!(bundle.expiry, bundle.not_after);
    assert!(bundle.obtained_at.ends_with('Z'), "{}", bundle.obtained_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_and_its_wildcard_are_issued_stored_and_their_records_removed() {
    let (cloud, _state) = start().await;
    let zone_id = zone(&cloud, "certship.test.").await;
    for key_type in [KeyType::EcP256, KeyType::Rsa2048] {
        // given a name and its wildcard in a zone of the emulated Route53
        let request = request(
            &cloud,
            &zone_id,
            &["certship.test", "*.certship.test"],
            key_type,
        );

        // when the issuance runs
        let ended = issue(&cloud, &request).await;

        // then it succeeds, and the state holds references only
        assert_eq!(
            ended.status,
            ExecutionStatus::Succeeded,
            "{:?}: {:?} {:?}",
            key_type,
            ended.error,
            ended.cause
        );
        let issued: ExportResult = serde_json::from_value(ended.output["Issued"].clone()).unwrap();
        let (secret, version) =
            secret_string(&cloud, &certificate_secret_name(&request.certificate_id()))
                .await
                .expect("the certificate's secret exists");
        assert_eq!(issued.secret_version_id, version);
        let bundle: Bundle = serde_json::from_str(&secret).unwrap();
        assert_eq!(
            bundle.certificate_arn,
            format!("acme:{}", request.certificate_id())
        );
        assert_eq!(issued.serial, bundle.serial);
        assert_eq!(issued.domains, ["certship.test", "*.certship.test"]);
        assert_eq!(bundle.domains, issued.domains);
        assert_eq!(issued.key_algorithm, key_type.acm_name());
        assert_installable(&cloud, &bundle, key_type).await;

        // and no TXT value is left behind, and no secret reached the state or its history
        assert_eq!(
            txt_values(&cloud, &zone_id, &challenge_record_name("certship.test")).await,
            Vec::<String>::new()
        );
        let (account, _) = secret_string(&cloud, &account_secret_name(request.directory_url()))
            .await
            .unwrap();
        let account_key: serde_json::Value = serde_json::from_str(&account).unwrap();
        let account_key = account_key["key_pkcs8"].as_str().unwrap();
        let body = |pem: &str| {
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>()
        };
        for (what, text) in [
            ("the output", ended.output.to_string()),
            ("the history", ended.history.clone()),
        ] {
            certship_testkit::assert_no_secret(
                what,
                &text,
                &[
                    &bundle.passphrase,
                    account_key,
                    &body(&bundle.encrypted_private_key)[..64],
                ],
            );
        }
    }
    cloud.stop().await;
}

/// A queue that receives what the template's `RenewalFailedRule` matches, as its subscribers
/// would: `Certificate Renewal Failed` from certship.
async fn renewal_failures_queue(cloud: &LocalCloud) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
    let events = aws_sdk_eventbridge::Client::new(cloud.sdk_config());
    let url = sqs
        .create_queue()
        .queue_name("renewal-failures")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("renewal-failures")
        .event_pattern(
            serde_json::json!({"source": ["certship"], "detail-type": [DETAIL_TYPE_RENEWAL_FAILED]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("renewal-failures")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (sqs, url)
}

/// The registry item of `request`'s certificate.
async fn registered(cloud: &LocalCloud, request: &IssueRequest) -> Option<Registration> {
    let item = aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .get_item()
        .table_name(&cloud.acme_table_name)
        .key(
            certship_shared::acme_registry::attr::CERTIFICATE_ID,
            aws_sdk_dynamodb::types::AttributeValue::S(request.certificate_id()),
        )
        .send()
        .await
        .unwrap()
        .item?;
    Some(Registration::from_item(&item).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_the_ca_cannot_see_fails_the_challenge_and_a_renewal_failure_is_told() {
    let (cloud, _state) = start().await;
    let (sqs, failures) = renewal_failures_queue(&cloud).await;
    // given a certificate issued for a name of the parent zone
    let parent = zone(&cloud, "certship.test.").await;
    let renewing = request(&cloud, &parent, &["www.sub.certship.test"], KeyType::EcP256);
    let first = issue(&cloud, &renewing).await;
    assert_eq!(
        first.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        first.cause
    );
    let before = registered(&cloud, &renewing)
        .await
        .expect("registered once issued");
    assert_eq!(before.failed_attempts, 0);

    // and then a delegated subzone: the parent zone covers www.sub.certship.test, but DNS answers
    // for it from the subzone, so a record written into the parent is invisible to the CA
    zone(&cloud, "sub.certship.test.").await;

    // when the certificate is issued again (renewed), and a new one for another name of the
    // subzone is issued for the first time
    let renewal = issue(&cloud, &renewing).await;
    let never = request(&cloud, &parent, &["new.sub.certship.test"], KeyType::EcP256);
    let ended = issue(&cloud, &never).await;

    // then both fail the challenge, naming the record and the CA's reason, and leave no record
    for (ended, name) in [
        (&renewal, "www.sub.certship.test"),
        (&ended, "new.sub.certship.test"),
    ] {
        assert_eq!(ended.status, ExecutionStatus::Failed);
        assert_eq!(
            ended.error.as_deref(),
            Some("ChallengeFailed"),
            "{:?}",
            ended.cause
        );
        let cause = ended.cause.clone().unwrap_or_default();
        assert!(cause.contains(&challenge_record_name(name)), "{cause}");
        assert!(cause.contains("unauthorized"), "{cause}");
        assert_eq!(
            txt_values(&cloud, &parent, &challenge_record_name(name)).await,
            Vec::<String>::new()
        );
    }
    assert!(
        secret_string(&cloud, &certificate_secret_name(&never.certificate_id()))
            .await
            .is_none(),
        "a failed issuance stores nothing"
    );

    // and the renewal's failure is counted in the registry and told as "Certificate Renewal
    // Failed", with how long the certificate on the hosts has left; the new one is not
    // registered (nothing to renew) and tells nothing
    let after = registered(&cloud, &renewing).await.unwrap();
    assert_eq!(after.failed_attempts, 1);
    assert!(
        after
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("ChallengeFailed: ") && !e.contains("errorMessage")),
        "{:?}",
        after.last_error
    );
    assert_eq!(
        after.serial, before.serial,
        "the installed certificate stays"
    );
    assert!(registered(&cloud, &never).await.is_none());
    let received = sqs
        .receive_message()
        .queue_url(&failures)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let event: serde_json::Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(
        event["resources"],
        serde_json::json!([format!("acme:{}", renewing.certificate_id())])
    );
    let detail: RenewalFailedEvent = serde_json::from_value(event["detail"].clone()).unwrap();
    assert_eq!(detail.error, "ChallengeFailed");
    assert_eq!(detail.failed_attempts, 1);
    assert_eq!(detail.not_after, before.not_after);
    assert!(detail.days_left.is_some_and(|d| d > 30), "{detail:?}");
    assert!(detail.cause.contains("unauthorized"), "{detail:?}");
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_outside_the_zone_is_refused_before_any_order_or_account() {
    let (cloud, _state) = start().await;
    let zone_id = zone(&cloud, "certship.test.").await;
    let request = request(
        &cloud,
        &zone_id,
        &["certship.test", "other.test"],
        KeyType::EcP256,
    );

    let ended = issue(&cloud, &request).await;

    assert_eq!(ended.status, ExecutionStatus::Failed);
    assert_eq!(
        ended.error.as_deref(),
        Some("DomainNotInZone"),
        "{:?}",
        ended.cause
    );
    assert!(ended.cause.unwrap_or_default().contains("other.test"));
    assert!(
        secret_string(&cloud, &account_secret_name(request.directory_url()))
            .await
            .is_none(),
        "no account was registered"
    );
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_the_ca_forgot_is_registered_again_and_replaced() {
    let (mut cloud, _state) = start().await;
    let zone_id = zone(&cloud, "certship.test.").await;
    let request = request(&cloud, &zone_id, &["www.certship.test"], KeyType::EcP256);
    let first = issue(&cloud, &request).await;
    assert_eq!(
        first.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        first.cause
    );
    let (_, account_version) = secret_string(&cloud, &account_secret_name(request.directory_url()))
        .await
        .unwrap();

    // when Pebble restarts, it has forgotten every account (its state is in memory)
    let ca = &mut cloud.acme_ca;
    tokio::task::block_in_place(|| ca.restart()).unwrap();
    let second = issue(&cloud, &request).await;

    // then the issuance registers a new account, stores it, and succeeds
    assert_eq!(
        second.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        second.cause
    );
    let (_, new_version) = secret_string(&cloud, &account_secret_name(request.directory_url()))
        .await
        .unwrap();
    assert_ne!(
        new_version, account_version,
        "the account's credentials were replaced"
    );
    let (secret, _) = secret_string(&cloud, &certificate_secret_name(&request.certificate_id()))
        .await
        .unwrap();
    let bundle: Bundle = serde_json::from_str(&secret).unwrap();
    assert_installable(&cloud, &bundle, KeyType::EcP256).await;
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_imported_certificate_is_reimported_under_its_arn_and_keeps_its_key_type() {
    let (cloud, _state) = start().await;
    let zone_id = zone(&cloud, "certship.test.").await;
    let acm = aws_sdk_acm::Client::new(cloud.sdk_config());
    // given a request to import the certificate into ACM too
    let mut request = request(&cloud, &zone_id, &["lb.certship.test"], KeyType::EcP256);
    request.import_to_acm = true;

    // when it is issued
    let first = issue(&cloud, &request).await;

    // then ACM holds it as an imported certificate tagged with its id
    assert_eq!(
        first.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        first.cause
    );
    let arn = first.output["Imported"]["AcmCertificateArn"]
        .as_str()
        .expect("$.Imported.AcmCertificateArn")
        .to_string();
    let issued: ExportResult = serde_json::from_value(first.output["Issued"].clone()).unwrap();
    let described = acm
        .describe_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap()
        .certificate
        .unwrap();
    assert_eq!(
        described.r#type().map(|t| t.as_str()),
        Some("IMPORTED"),
        "{described:?}"
    );
    assert!(
        certship_shared::serial::same_serial(described.serial().unwrap(), &issued.serial),
        "ACM holds {:?}, the issuance {}",
        described.serial(),
        issued.serial
    );
    let tags = acm
        .list_tags_for_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags().iter().any(|t| t.key() == ACM_TAG_KEY
            && t.value() == Some(request.certificate_id().as_str())),
        "{tags:?}"
    );
    assert_eq!(
        registered(&cloud, &request)
            .await
            .unwrap()
            .acm_certificate_arn
            .as_deref(),
        Some(arn.as_str())
    );

    // when it is issued again without asking for the import: once imported, it stays imported
    request.import_to_acm = false;
    let again = issue(&cloud, &request).await;

    // then the same ACM certificate holds the new one
    assert_eq!(
        again.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        again.cause
    );
    assert_eq!(again.output["Imported"]["AcmCertificateArn"], arn.as_str());
    let renewed: ExportResult = serde_json::from_value(again.output["Issued"].clone()).unwrap();
    assert_ne!(renewed.serial, issued.serial);
    let described = acm
        .describe_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap()
        .certificate
        .unwrap();
    assert!(certship_shared::serial::same_serial(
        described.serial().unwrap(),
        &renewed.serial
    ));
    let listed = acm.list_certificates().send().await.unwrap();
    assert_eq!(
        listed.certificate_summary_list().len(),
        1,
        "no second ACM certificate"
    );

    // and no secret reached the state or its history on the way
    let (secret, _) = secret_string(&cloud, &certificate_secret_name(&request.certificate_id()))
        .await
        .unwrap();
    let bundle: Bundle = serde_json::from_str(&secret).unwrap();
    let key_body: String = bundle
        .encrypted_private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for text in [again.output.to_string(), again.history.clone()] {
        certship_testkit::assert_no_secret(
            "the re-import",
            &text,
            &[&bundle.passphrase, &key_body[..64], "PRIVATE KEY"],
        );
    }

    // when it is asked for with another key type, it is refused before any order: ACM cannot
    // re-import a different key type
    request.key_type = KeyType::Rsa2048;
    let refused = issue(&cloud, &request).await;
    assert_eq!(refused.status, ExecutionStatus::Failed);
    assert_eq!(refused.error.as_deref(), Some("InvalidRequest"));
    let cause = refused.cause.unwrap_or_default();
    assert!(cause.contains("--key-type ec-p256"), "{cause}");
    assert!(
        !refused.history.contains("Answer challenges"),
        "no order was placed"
    );
    let registration = registered(&cloud, &request).await.unwrap();
    assert_eq!(
        (registration.failed_attempts, registration.request.key_type),
        (0, KeyType::EcP256),
        "a refused request is no failed renewal"
    );
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_is_waited_out_as_the_ca_asks_and_a_long_one_holds_renewals_back() {
    let (cloud, _state) = start().await;
    // Pebble has no rate limits: the front refuses the orders it is told to, as a CA does.
    let front = cloud.acme_ca.front().unwrap();
    let zone_id = zone(&cloud, "limits.certship.test.").await;
    let mut request = request(
        &cloud,
        &zone_id,
        &["www.limits.certship.test"],
        KeyType::EcP256,
    );
    request.directory = front.directory_url();

    // given a CA that refuses the first order and asks to come back in 6 seconds
    front.refuse_next_order(Some("6"));
    let started = Instant::now();
    let first = issue(&cloud, &request).await;

    // then the machine waits that long and the order placed again is issued
    assert_eq!(
        first.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        first.cause
    );
    assert_eq!(front.refused(), 1);
    // (without the CA's time the wait would be ten minutes, past the 120 s `issue` allows)
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert_eq!(
        first.history.matches("Wait out the rate limit").count(),
        2,
        "entered and exited once: {}",
        first.history
    );
    let issued = registered(&cloud, &request).await.expect("registered");
    assert_eq!((issued.failed_attempts, issued.retry_after), (0, None));

    // when a renewal is refused for two hours, past the hour an issuance waits
    front.refuse_next_order(Some("7200"));
    let refused_at = std::time::SystemTime::now();
    let renewal = issue(&cloud, &request).await;

    // then it fails RateLimited at once, naming the CA's time, and waits for nothing
    assert_eq!(renewal.status, ExecutionStatus::Failed);
    assert_eq!(
        renewal.error.as_deref(),
        Some("RateLimited"),
        "{:?}",
        renewal.cause
    );
    let cause = renewal.cause.clone().unwrap_or_default();
    assert!(cause.contains("the CA asks to retry after "), "{cause}");
    assert!(cause.contains("rateLimited"), "{cause}");
    assert!(!renewal.history.contains("Wait out the rate limit"));
    assert_eq!(front.refused(), 2);

    // and the registry keeps the CA's time: no sweep renews before it, not even a forced one
    let mut held = registered(&cloud, &request).await.unwrap();
    assert_eq!(held.failed_attempts, 1);
    let retry_after = held
        .retry_after
        .as_deref()
        .and_then(certship_shared::time::parse_rfc3339)
        .expect("RetryAfter kept");
    let asked = retry_after.duration_since(refused_at).unwrap();
    assert!(
        (Duration::from_secs(7_190)..Duration::from_secs(7_230)).contains(&asked),
        "{asked:?}"
    );
    held.force = true;
    assert!(!held.renewal(std::time::SystemTime::now()).starts());
    assert!(held.renewal(retry_after).starts());

    // and the next success clears it
    let again = issue(&cloud, &request).await;
    assert_eq!(
        again.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        again.cause
    );
    let cleared = registered(&cloud, &request).await.unwrap();
    assert_eq!((cleared.failed_attempts, cleared.retry_after), (0, None));
    cloud.stop().await;
}
