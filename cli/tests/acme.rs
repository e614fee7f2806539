//! An ACME certificate from issue to hosts, on the local cloud: `certship acme issue`'s code
//! gets it from Pebble (DNS-01 in the emulated Route53), and a deployment of `acme:<id>` installs
//! it on every host of the tag target exactly as an ACM export would be.

mod common;

use certship_cli::commands::acme::{IssueResult, issue};
use certship_local::hosts::Simulation;
use certship_shared::acme::{IssueRequest, KeyType};
use certship_shared::{DeploymentRequest, Trigger};
use common::CERT_NAME;
use std::process::Command;

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
    let root = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        root.path(),
        cloud.acme_ca.issuing_roots_pem().await.unwrap(),
    )
    .unwrap();
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
        assert_eq!(cloud.reloads(host).len(), 1, "{host} reloaded nginx once");
    }
    assert!(!cloud.has_files(&prod), "the prod host was not a target");

    // and the mapping is found under acme:<id>, as renewals will find it
    let mapping = cloud.mapping(&deployment).await.expect("the mapping");
    assert_eq!(mapping.certificate_arn, source);
    assert_eq!(mapping.serial.as_deref(), Some(issued.serial.as_str()));
    cloud.stop().await;
}
