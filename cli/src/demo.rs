//! `certship local demo` (`make demo`): the whole job on the local cloud, step by step. Exits
//! non-zero as soon as something did not happen as it should.
//!
//! The steps are public so the end-to-end tests drive the local cloud the same way.

use crate::ops::execution::Ending;
use crate::ops::hosts::counts_line;
use crate::ops::watch::{Progress, watch};
use anyhow::{Context, Result, bail, ensure};
use aws_config::SdkConfig;
use certship_local::{LocalCloud, LocalOptions, hosts};
use certship_shared::{DeploymentRequest, HostCounts, Trigger};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The files the install document writes, relative to a host's root, with their modes.
pub fn installed_files(cert_name: &str) -> [(String, u32); 4] {
    [
        (format!("etc/ssl/certs/{cert_name}-cert.pem"), 0o644),
        (format!("etc/ssl/certs/{cert_name}-chain.pem"), 0o644),
        (format!("etc/ssl/certs/{cert_name}-fullchain.pem"), 0o644),
        (format!("etc/ssl/private/{cert_name}-privkey.pem"), 0o600),
    ]
}

/// Requests an exportable certificate and waits until the emulator has issued it.
pub async fn request_certificate(config: &SdkConfig, domain: &str) -> Result<String> {
    use aws_sdk_acm::types::{CertificateExport, CertificateOptions, CertificateStatus};
    let acm = aws_sdk_acm::Client::new(config);
    let arn = acm
        .request_certificate()
        .domain_name(domain)
        .validation_method(aws_sdk_acm::types::ValidationMethod::Dns)
        .options(
            CertificateOptions::builder()
                .export(CertificateExport::Enabled)
                .build(),
        )
        .send()
        .await
        .context("requesting a certificate")?
        .certificate_arn
        .context("RequestCertificate returned no ARN")?;
    for _ in 0..50 {
        let status = acm
            .describe_certificate()
            .certificate_arn(&arn)
            .send()
            .await?
            .certificate
            .and_then(|c| c.status);
        if status == Some(CertificateStatus::Issued) {
            return Ok(arn);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{arn} was not issued")
}

/// A deployment request as the API takes it.
pub fn request(
    certificate_arn: &str,
    cert_name: &str,
    tag: (&str, &str),
    reload_service: Option<&str>,
) -> DeploymentRequest {
    DeploymentRequest {
        certificate_arn: certificate_arn.to_string(),
        cert_name: cert_name.to_string(),
        target_tag_key: tag.0.to_string(),
        target_tag_value: tag.1.to_string(),
        reload_service: reload_service.map(str::to_string),
        trigger: Trigger::Api,
    }
}

/// Starts an execution with `request` as its input, as `certship deploy --direct` does.
pub async fn start_deployment(
    config: &SdkConfig,
    state_machine_arn: &str,
    request: &DeploymentRequest,
) -> Result<String> {
    crate::ops::deploy::start_execution(
        &aws_sdk_sfn::Client::new(config),
        state_machine_arn,
        request,
    )
    .await
}

/// True when the private key installed on a host matches its certificate (openssl's view).
pub fn key_matches_certificate(root: &Path, cert_name: &str) -> Result<bool> {
    let public_key = |args: &[&str], file: PathBuf| -> Result<Vec<u8>> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(&file)
            .output()
            .context("running openssl")?;
        ensure!(
            out.status.success(),
            "openssl could not read {}",
            file.display()
        );
        Ok(out.stdout)
    };
    let from_cert = public_key(
        &["x509", "-noout", "-pubkey"],
        root.join(format!("etc/ssl/certs/{cert_name}-cert.pem")),
    )?;
    let from_key = public_key(
        &["pkey", "-pubout"],
        root.join(format!("etc/ssl/private/{cert_name}-privkey.pem")),
    )?;
    Ok(from_cert == from_key)
}

/// The serial of the certificate installed on a host, if any.
pub fn installed_serial(root: &Path, cert_name: &str) -> Option<String> {
    let pem =
        std::fs::read_to_string(root.join(format!("etc/ssl/certs/{cert_name}-cert.pem"))).ok()?;
    certship_shared::pem::pem_serial(&pem)
}

/// Waits for an execution of the state machine other than those in `known`.
pub async fn next_execution(
    config: &SdkConfig,
    state_machine_arn: &str,
    known: &[String],
) -> Result<String> {
    let sfn = aws_sdk_sfn::Client::new(config);
    for _ in 0..120 {
        let executions = sfn
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .send()
            .await?;
        if let Some(new) = executions
            .executions()
            .iter()
            .find(|e| !known.iter().any(|k| k == e.execution_arn()))
        {
            return Ok(new.execution_arn().to_string());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("no new execution started within 30 s")
}

struct Steps {
    total: usize,
    done: usize,
}

impl Steps {
    fn next(&mut self, title: &str) {
        self.done += 1;
        println!("\n[{}/{}] {title}", self.done, self.total);
    }
}

fn say(line: &str) {
    for part in line.lines() {
        println!("      {part}");
    }
}

/// Runs the demo on a local cloud of its own.
pub async fn run(options: LocalOptions) -> Result<()> {
    let mut steps = Steps { total: 14, done: 0 };
    println!("certship demo: the whole workflow on the local cloud, no AWS account needed");

    steps.next("Starting the local cloud");
    let cloud = LocalCloud::start(options).await?;
    say(&format!(
        "moto server (port {}) behind the gateway at {}",
        cloud.moto_port, cloud.endpoint
    ));
    say(
        "provisioned: the state machine, the install document, the mapping and evidence tables,\n\
         the association output bucket, the renewal rule; an emulated SSM agent per host",
    );
    let result = tokio::select! {
        result = scenario(&cloud, &mut steps) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    steps.next("Stopping the local cloud");
    cloud.stop().await;
    say("moto, the gateway and every host script are stopped");
    match &result {
        Ok(()) => println!("\nDemo complete: every step happened as it should."),
        Err(e) => println!("\nDemo FAILED: {e:#}"),
    }
    result
}

async fn scenario(cloud: &LocalCloud, steps: &mut Steps) -> Result<()> {
    let config = cloud.sdk_config();
    let ec2 = aws_sdk_ec2::Client::new(config);
    let cert_name = "web";

    steps.next("Requesting an exportable certificate from ACM");
    let arn = request_certificate(config, "www.demo.certship.test").await?;
    say(&format!("{arn} is ISSUED, with export enabled"));

    steps.next("Adding three hosts: two tagged env=dev, one env=prod");
    let mut dev = Vec::new();
    for env in ["dev", "dev", "prod"] {
        let tags = BTreeMap::from([("env".to_string(), env.to_string())]);
        let host = hosts::add(&ec2, &cloud.hosts, &tags, hosts::Simulation::Healthy).await?;
        say(&format!(
            "{} env={env}  files under {}",
            host.instance_id,
            cloud.hosts.root(&host.instance_id).display()
        ));
        if env == "dev" {
            dev.push(host.instance_id);
        }
    }
    let prod = cloud
        .hosts
        .list()
        .into_iter()
        .find(|h| h.tags.get("env").map(String::as_str) == Some("prod"))
        .context("the prod host")?;

    steps.next("Deploying the certificate to env=dev, with the input the API takes");
    let request = request(&arn, cert_name, ("env", "dev"), Some("nginx"));
    say(&serde_json::to_string(&request)?);
    let execution = start_deployment(config, &cloud.state_machine_arn, &request).await?;
    say(&format!("execution {execution}"));

    steps.next("Following the execution, state by state");
    let ending = follow_and_print(config, &execution).await?;
    ensure!(
        ending.succeeded(),
        "the deployment ended {:?}: {:?} {:?}",
        ending.status,
        ending.error,
        ending.cause
    );
    let output = ending.output.context("the execution has no output")?;
    let serial = output.export.context("no serial")?.serial;
    let counts = output.install.context("no install check")?.hosts;

    steps.next("What each dev host holds now, on disk");
    show_hosts(cloud, counts, &dev, cert_name, &serial)?;
    let prod_root = cloud.hosts.root(&prod.instance_id);
    ensure!(
        !prod_root.join("etc/ssl").exists(),
        "the prod host {} got files",
        prod.instance_id
    );
    say(&format!(
        "{} (env=prod): untouched, no certificate files",
        prod.instance_id
    ));

    steps.next("Launching a third env=dev host after the deployment");
    let tags = BTreeMap::from([("env".to_string(), "dev".to_string())]);
    let late = hosts::add(&ec2, &cloud.hosts, &tags, hosts::Simulation::Healthy).await?;
    let started = std::time::Instant::now();
    until_holds(cloud, &late.instance_id, cert_name, &serial).await?;
    say(&format!(
        "{}: its agent found the mapping's association and installed serial {serial} in {:.1} s",
        late.instance_id,
        started.elapsed().as_secs_f64()
    ));
    ensure!(
        executions(config, &cloud.state_machine_arn).await? == 1,
        "the late host needed a new execution"
    );
    say("no new execution, no command: the association is the desired state");
    dev.push(late.instance_id);

    steps.next("Loosening one host's private key by hand, then `certship local tick`");
    let drifted = &dev[0];
    let key = cloud
        .hosts
        .root(drifted)
        .join(format!("etc/ssl/private/{cert_name}-privkey.pem"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    }
    say(&format!("chmod 644 {}", key.display()));
    let before = host_table(cloud, &request).await?;
    let last_run = before.evidence(drifted).and_then(|e| e.run_id.clone());
    let ticked = certship_local::gateway::tick(&cloud.endpoint).await?;
    say(&format!(
        "tick: {ticked} association(s) run once now on every online host, as its schedule would"
    ));
    let repaired = until_reported(cloud, &request, drifted, last_run).await?;
    ensure!(
        repaired.outcome == certship_shared::host_report::Outcome::Repaired,
        "{drifted} reported {} after the drift",
        repaired.outcome
    );
    say(&format!(
        "{drifted}: {} ({}), the key is 600 again",
        repaired.outcome,
        repaired.reason.as_deref().unwrap_or("-")
    ));

    steps.next("What every env=dev host reported (`certship hosts --target env=dev`)");
    let table = host_table(cloud, &request).await?;
    say(&table.hosts.text(
        &crate::ops::hosts::Filter::All,
        std::time::SystemTime::now(),
        false,
    ));

    steps.next("Renewing the certificate in ACM");
    let renewed = certship_local::renewal::renew(&cloud.endpoint, config, &arn).await?;
    ensure!(
        !certship_shared::serial::same_serial(&renewed.serial, &serial),
        "the renewal kept serial {serial}"
    );
    say(&format!(
        "same ARN, new serial {}, valid until {}",
        renewed.serial, renewed.not_after
    ));
    say(
        "ACM's \"ACM Certificate Available\" (RENEWAL) event went onto the bus; the rule routes it to renewal-trigger",
    );

    steps.next("Following the redeployment that renewal-trigger started");
    let renewal = next_execution(config, &cloud.state_machine_arn, &[execution]).await?;
    say(&format!("execution {renewal}"));
    let ending = follow_and_print(config, &renewal).await?;
    ensure!(
        ending.succeeded(),
        "the redeployment ended {:?}: {:?} {:?}",
        ending.status,
        ending.error,
        ending.cause
    );
    let output = ending.output.context("the execution has no output")?;
    let counts = output.install.context("no install check")?.hosts;
    show_hosts(cloud, counts, &dev, cert_name, &renewed.serial)?;
    ensure!(
        !prod_root.join("etc/ssl").exists(),
        "the prod host got files on renewal"
    );
    say(&format!("{} (env=prod): still untouched", prod.instance_id));

    steps.next("Issuing a wildcard certificate from the local ACME CA (`certship acme issue`)");
    let zone = aws_sdk_route53::Client::new(config)
        .create_hosted_zone()
        .name("demo.certship.test.")
        .caller_reference("certship-demo")
        .send()
        .await
        .context("creating the demo's hosted zone")?;
    let zone_id = zone
        .hosted_zone()
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .context("CreateHostedZone returned no zone")?;
    say(&format!(
        "hosted zone demo.certship.test. ({zone_id}) in the emulated Route53; Pebble, a real ACME \
         CA, at {}",
        cloud.acme_ca.directory_url()
    ));
    let acme_request = certship_shared::acme::IssueRequest {
        domains: vec!["*.demo.certship.test".into(), "demo.certship.test".into()],
        hosted_zone_id: zone_id,
        key_type: certship_shared::acme::KeyType::EcP256,
        directory: cloud.acme_ca.directory_url(),
        contact: vec![],
        renew_days_before: None,
        import_to_acm: false,
    };
    let mut progress = Vec::new();
    let outcome = crate::commands::acme::issue(
        &aws_sdk_sfn::Client::new(config),
        &cloud.acme_state_machine_arn,
        &acme_request,
        &mut progress,
    )
    .await?;
    say(&String::from_utf8_lossy(&progress));
    let crate::commands::acme::IssueResult::Issued(issued) = &outcome.result else {
        anyhow::bail!("the ACME issuance failed");
    };

    steps.next("Deploying acme:<id> to env=dev, like an ACM certificate");
    let wildcard = "wildcard";
    let acme_deployment = crate::demo::request(
        &format!("acme:{}", outcome.certificate_id),
        wildcard,
        ("env", "dev"),
        Some("nginx"),
    );
    say(&serde_json::to_string(&acme_deployment)?);
    let execution = start_deployment(config, &cloud.state_machine_arn, &acme_deployment).await?;
    let ending = follow_and_print(config, &execution).await?;
    ensure!(
        ending.succeeded(),
        "the ACME deployment ended {:?}: {:?} {:?}",
        ending.status,
        ending.error,
        ending.cause
    );
    let output = ending.output.context("the execution has no output")?;
    let counts = output.install.context("no install check")?.hosts;
    show_hosts(cloud, counts, &dev, wildcard, &issued.serial)?;
    Ok(())
}

/// Waits until the host's certificate file holds `serial` (at most 30 s).
async fn until_holds(
    cloud: &LocalCloud,
    instance_id: &str,
    cert_name: &str,
    serial: &str,
) -> Result<()> {
    let root = cloud.hosts.root(instance_id);
    for _ in 0..300 {
        if installed_serial(&root, cert_name)
            .is_some_and(|s| certship_shared::serial::same_serial(&s, serial))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{instance_id} does not hold serial {serial} after 30 s")
}

async fn executions(config: &SdkConfig, state_machine_arn: &str) -> Result<usize> {
    Ok(aws_sdk_sfn::Client::new(config)
        .list_executions()
        .state_machine_arn(state_machine_arn)
        .send()
        .await?
        .executions()
        .len())
}

/// The mapping's hosts and evidence, as `certship hosts` reads them.
struct HostTable {
    hosts: crate::ops::hosts::TargetHosts,
}

impl HostTable {
    fn evidence(&self, instance_id: &str) -> Option<&certship_shared::evidence::HostEvidence> {
        self.hosts.mappings.first()?.evidence.get(instance_id)
    }
}

async fn host_table(cloud: &LocalCloud, request: &DeploymentRequest) -> Result<HostTable> {
    let config = cloud.sdk_config();
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let item = dynamodb
        .get_item()
        .table_name(&cloud.table_name)
        .set_key(Some(certship_shared::mapping::request_key(request)))
        .send()
        .await?
        .item
        .context("the mapping is not in the table")?;
    let mapping = certship_shared::mapping::Mapping::from_item(&item)?;
    let hosts = crate::ops::hosts::collect(
        &aws_sdk_ssm::Client::new(config),
        &dynamodb,
        &cloud.evidence_table_name,
        &(
            request.target_tag_key.clone(),
            request.target_tag_value.clone(),
        ),
        vec![crate::ops::hosts::Desired::of_mapping(&mapping)],
    )
    .await?;
    Ok(HostTable { hosts })
}

/// Waits until the host reports a run other than `last_run` (at most 30 s) and returns it.
async fn until_reported(
    cloud: &LocalCloud,
    request: &DeploymentRequest,
    instance_id: &str,
    last_run: Option<String>,
) -> Result<certship_shared::evidence::HostEvidence> {
    for _ in 0..150 {
        let table = host_table(cloud, request).await?;
        if let Some(e) = table.evidence(instance_id).filter(|e| e.run_id != last_run) {
            return Ok(e.clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{instance_id} reported no new run within 30 s")
}

async fn follow_and_print(config: &SdkConfig, execution: &str) -> Result<Ending> {
    let limit = Duration::from_secs(600);
    let sfn = aws_sdk_sfn::Client::new(config);
    let watched = tokio::time::timeout(
        limit,
        watch(&sfn, execution, Progress::Indented, &mut std::io::stdout()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{execution} did not end within {} s", limit.as_secs()))??;
    Ok(watched.ending)
}

/// The deployment's host counts, then each dev host's files, serial and key, read from disk.
fn show_hosts(
    cloud: &LocalCloud,
    counts: HostCounts,
    dev: &[String],
    cert_name: &str,
    serial: &str,
) -> Result<()> {
    say(&format!("hosts tagged env=dev: {}", counts_line(&counts)));
    ensure!(
        counts.total as usize == dev.len() && counts.succeeded == counts.total,
        "not every dev host converged: {}",
        counts_line(&counts)
    );
    for instance_id in dev {
        say(&format!("{instance_id}:"));
        let root = cloud.hosts.root(instance_id);
        for (file, mode) in installed_files(cert_name) {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(root.join(&file))
                .with_context(|| format!("{instance_id} has no /{file}"))?;
            let actual = meta.permissions().mode() & 0o777;
            ensure!(actual == mode, "/{file} has mode {actual:o}, not {mode:o}");
            say(&format!("  /{file}  {actual:o}  {} bytes", meta.len()));
        }
        let installed = installed_serial(&root, cert_name).context("unreadable certificate")?;
        ensure!(
            certship_shared::serial::same_serial(&installed, serial),
            "{instance_id} has serial {installed}, expected {serial}"
        );
        ensure!(
            key_matches_certificate(&root, cert_name)?,
            "{instance_id}: the key does not match the certificate"
        );
        say("  openssl: the private key matches the certificate");
    }
    Ok(())
}
