//! An ACME certificate from issue to hosts, on the local cloud: `certship acme issue`'s code
//! gets it from Pebble (DNS-01 in the emulated Route53), and a deployment of `acme:<id>` installs
//! it on every host of the tag target exactly as an ACM export would be.

mod common;

use certship_cli::commands::acme::{IssueResult, Started, follow, issue};
use certship_local::hosts::Simulation;
use certship_shared::acme::{IssueRequest, KeyType};
use certship_shared::{DeploymentRequest, Trigger};
use common::CERT_NAME;
use std::process::Command;
use std::time::{Duration, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wildcard_certificate_from_the_acme_ca_is_installed_on_every_tagged_host() {
    // given a zone, two hosts tagged env=dev and one tagged env=prod
    let cloud = common::start(|_| {}).await;
    let zone = aws_sdk_route53::Client::new(cloud.sdk_config())
        .create_hosted_zone()
        .name("certship.test.")
        .caller_reference("acme-e2e")
        .send()
        .await
        .unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().to_string();
    let dev = [
        cloud.host("dev", Simulation::Healthy).await,
        cloud.host("dev", Simulation::Healthy).await,
    ];
    let prod = cloud.host("prod", Simulation::Healthy).await;

    // when the CLI issues a wildcard certificate
    let request = IssueRequest {
        domains: vec!["*.certship.test".into(), "certship.test".into()],
        hosted_zone_id: zone_id,
        key_type: KeyType::EcP256,
        directory: cloud.acme_ca.directory_url(),
        contact: vec![],
        renew_days_before: None,
        import_to_acm: false,
    };
    let mut progress = Vec::new();
    let outcome = issue(
        &cloud.sfn(),
        &cloud.acme_state_machine_arn,
        &request,
        &mut progress,
    )
    .await
    .unwrap();
    let progress = String::from_utf8(progress).unwrap();
    let IssueResult::Issued(issued) = &outcome.result else {
        panic!("the issuance failed: {progress}");
    };
    let source = format!("acme:{}", request.certificate_id());
    assert!(progress.contains(&source), "{progress}");
    assert!(progress.contains("Finalize"), "{progress}");

    // and a deployment maps acme:<id> to env=dev
    let deployment = DeploymentRequest {
        certificate_arn: source.clone(),
        cert_name: CERT_NAME.into(),
        target_tag_key: "env".into(),
        target_tag_value: "dev".into(),
        reload_service: Some("nginx".into()),
        trigger: Trigger::Api,
    };
    let (_, ending) = cloud.deploy(&deployment).await;

    // then both dev hosts hold the issued certificate, its key, and a chain that verifies
    // against the CA's root; the prod host has nothing
    assert!(ending.succeeded(), "{:?}: {:?}", ending.error, ending.cause);
    let export = ending.output.and_then(|o| o.export).expect("$.Export");
    assert_eq!(export.serial, issued.serial);
    assert_eq!(export.domains, issued.domains);

    for host in &dev {
        assert_eq!(
            cloud.serial_on(host).as_deref(),
            Some(issued.serial.as_str()),
            "{host}"
        );
        assert!(
            certship_cli::demo::key_matches_certificate(&cloud.hosts.root(host), CERT_NAME)
                .unwrap(),
            "{host}: the key does not match"
        );
        verify_chain(&cloud, host).await;
        assert_eq!(cloud.reloads(host).len(), 1, "{host} reloaded nginx once");
    }
    assert!(!cloud.has_files(&prod), "the prod host was not a target");

    // and the mapping is found under acme:<id>, as renewals will find it
    let mapping = cloud.mapping(&deployment).await.expect("the mapping");
    assert_eq!(mapping.certificate_arn, source);
    assert_eq!(mapping.serial.as_deref(), Some(issued.serial.as_str()));
    cloud.stop().await;
}

const DAY: u64 = 86_400;

/// Checks the chain on `host` against the CA's root with `openssl verify`.
async fn verify_chain(cloud: &common::Cloud, host: &str) {
    let root = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        root.path(),
        cloud.acme_ca.issuing_roots_pem().await.unwrap(),
    )
    .unwrap();
    let verified = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root.path())
        .arg("-untrusted")
        .arg(cloud.file(host, &format!("etc/ssl/certs/{CERT_NAME}-chain.pem")))
        .arg(cloud.file(host, &format!("etc/ssl/certs/{CERT_NAME}-cert.pem")))
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{host}: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// Follows a renewal the sweep started to its end, returning the new serial.
async fn renewed_serial(
    cloud: &common::Cloud,
    certificate_id: &str,
    execution_arn: &str,
) -> String {
    let mut progress = Vec::new();
    let started = Started {
        certificate_id: certificate_id.to_string(),
        execution_arn: execution_arn.to_string(),
    };
    let outcome = follow(&cloud.sfn(), &started, &mut progress).await.unwrap();
    match outcome.result {
        IssueResult::Issued(issued) => issued.serial,
        _ => panic!("the renewal failed: {}", String::from_utf8_lossy(&progress)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schedule_renews_what_is_due_or_forced_and_redeploys_it() {
    // given a CA whose certificates live 20 days (Pebble's certificateValidityPeriod)
    let cloud = common::start(|o| o.acme_certificate_validity_seconds = Some(20 * DAY)).await;
    let zone = aws_sdk_route53::Client::new(cloud.sdk_config())
        .create_hosted_zone()
        .name("renew.test.")
        .caller_reference("acme-renewal")
        .send()
        .await
        .unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().to_string();
    let dev = cloud.host("dev", Simulation::Healthy).await;
    let prod = cloud.host("prod", Simulation::Healthy).await;

    // and two certificates, each deployed: one renewed 30 days before expiry (the default, so
    // due at once), issued and deployed by the CLI's code; one renewed 10 days before (not due
    // for another 10 days), issued and deployed through the API (POST /certificates, then
    // POST /export-cert naming it by AcmeCertificateId)
    let request = |name: &str, renew_days_before| IssueRequest {
        domains: vec![name.into()],
        hosted_zone_id: zone_id.clone(),
        key_type: KeyType::EcP256,
        directory: cloud.acme_ca.directory_url(),
        contact: vec![],
        renew_days_before,
        import_to_acm: false,
    };
    let soon = request("soon.renew.test", None);
    let later = request("later.renew.test", Some(10));
    let mut progress = Vec::new();
    let outcome = issue(
        &cloud.sfn(),
        &cloud.acme_state_machine_arn,
        &soon,
        &mut progress,
    )
    .await
    .unwrap();
    let IssueResult::Issued(issued) = outcome.result else {
        panic!(
            "the issuance failed: {}",
            String::from_utf8_lossy(&progress)
        );
    };
    let (_, ending) = cloud
        .deploy(&DeploymentRequest {
            certificate_arn: format!("acme:{}", soon.certificate_id()),
            cert_name: CERT_NAME.into(),
            target_tag_key: "env".into(),
            target_tag_value: "dev".into(),
            reload_service: None,
            trigger: Trigger::Api,
        })
        .await;
    assert!(ending.succeeded(), "{:?}: {:?}", ending.error, ending.cause);
    cloud.assert_installed(&dev, &issued.serial);
    let mut first_serials = vec![issued.serial];

    let post = |path: &str, body: serde_json::Value| {
        let url = format!("{}{path}", cloud.endpoint);
        let config = cloud.sdk_config().clone();
        async move {
            let answer = certship_cli::ops::api::post_signed(&config, &url, &body)
                .await
                .unwrap();
            assert_eq!(answer.status, 202, "{body}: {:?}", answer.body);
            answer.body["executionArn"].as_str().unwrap().to_string()
        }
    };
    let execution = post(
        certship_local::CERTIFICATES_PATH,
        serde_json::to_value(&later).unwrap(),
    )
    .await;
    let issued = renewed_serial(&cloud, &later.certificate_id(), &execution).await;
    let execution = post(
        certship_local::API_PATH,
        serde_json::json!({
            "AcmeCertificateId": later.certificate_id(), "CertName": CERT_NAME,
            "TargetTagKey": "env", "TargetTagValue": "prod"
        }),
    )
    .await;
    let ending = cloud.wait(&execution).await;
    assert!(ending.succeeded(), "{:?}: {:?}", ending.error, ending.cause);
    cloud.assert_installed(&prod, &issued);
    first_serials.push(issued);
    let listed = |cloud: &common::Cloud| {
        let dynamodb = cloud.dynamodb();
        let table = cloud.acme_table_name.clone();
        async move {
            certship_cli::ops::acme_registry::list(&dynamodb, &table)
                .await
                .unwrap()
                .0
        }
    };
    let registered = listed(&cloud).await;
    assert_eq!(registered.len(), 2, "both are registered once issued");

    // when the schedule fires
    let sweep = cloud
        .fire_renewal_schedule(SystemTime::now())
        .await
        .unwrap();

    // then it renews only the one due, and the renewal redeploys it: the dev host gets the new
    // certificate, whose chain verifies; prod keeps its own
    let started: Vec<String> = serde_json::from_value(sweep["Started"].clone()).unwrap();
    assert_eq!(started.len(), 1, "{sweep}");
    assert_eq!(sweep["NotDue"], 1, "{sweep}");
    let renewed = renewed_serial(&cloud, &soon.certificate_id(), &started[0]).await;
    assert_ne!(renewed, first_serials[0]);
    cloud
        .until_holds(&dev, &renewed, Duration::from_secs(90))
        .await;
    verify_chain(&cloud, &dev).await;
    assert_eq!(cloud.serial_on(&prod), Some(first_serials[1].clone()));
    let registered = listed(&cloud).await;
    let soon_now = registered
        .iter()
        .find(|r| r.certificate_id == soon.certificate_id())
        .unwrap();
    assert_eq!(soon_now.serial.as_deref(), Some(renewed.as_str()));
    assert_eq!(soon_now.failed_attempts, 0);

    // when the other is marked for renewal and the schedule fires again
    let later_id = later.certificate_id();
    certship_cli::ops::acme_registry::force_renewal(
        &cloud.dynamodb(),
        &cloud.acme_table_name,
        &later_id,
    )
    .await
    .unwrap();
    let sweep = cloud
        .fire_renewal_schedule(SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();

    // then it is renewed and redeployed to prod, and the mark is cleared (the first one, with
    // 19 days left and RenewDaysBefore 30, is renewed at every sweep: its CA's lifetime is
    // shorter than the margin)
    let started: Vec<String> = serde_json::from_value(sweep["Started"].clone()).unwrap();
    assert_eq!(started.len(), 2, "{sweep}");
    let later_execution = started
        .iter()
        .find(|arn| arn.contains(&later_id.replace('.', "-")))
        .expect("the forced renewal");
    let renewed = renewed_serial(&cloud, &later_id, later_execution).await;
    cloud
        .until_holds(&prod, &renewed, Duration::from_secs(90))
        .await;
    verify_chain(&cloud, &prod).await;
    let registered = listed(&cloud).await;
    let later_now = registered
        .iter()
        .find(|r| r.certificate_id == later_id)
        .unwrap();
    assert!(!later_now.force, "the mark is cleared by the renewal");
    assert_eq!(later_now.serial.as_deref(), Some(renewed.as_str()));

    // and marking a certificate never issued is refused
    let err = certship_cli::ops::acme_registry::force_renewal(
        &cloud.dynamodb(),
        &cloud.acme_table_name,
        "never.renew.test-0123456789ab",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
    cloud.stop().await;
}
