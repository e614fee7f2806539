//! End to end on the local cloud: the real state machine on moto's interpreter, the real handlers
//! behind the gateway, the real install document run per simulated host. Each test starts a
//! cloud of its own and asserts the execution's final status, its history, the mapping in
//! DynamoDB and the files on every host.

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use certship_cli::demo::{next_execution, request};
use certship_cli::ops::execution;
use certship_local::functions::Function;
use certship_local::hosts::Simulation;
use certship_local::renewal;
use certship_shared::mapping::LastDeploymentStatus;
use certship_shared::{DeploymentRequest, WorkflowState};
use certship_testkit::assert_no_secret;

mod common;

use common::{CERT_NAME, lambda_errors, serial_of, start, states_entered};

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_reaches_every_host_with_the_tag_and_no_other() {
    let cloud = start(|_| {}).await;
    let dev = [
        cloud.host("dev", Simulation::Healthy).await,
        cloud.host("dev", Simulation::Healthy).await,
    ];
    let prod = cloud.host("prod", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "dev"), Some("nginx"));

    let (execution, ending) = cloud.deploy(&request).await;

    assert!(ending.succeeded(), "{ending:?}");
    assert_eq!(cloud.status(&execution).await, ExecutionStatus::Succeeded);
    let states = states_entered(&cloud.history(&execution).await);
    assert_eq!(
        &states[..4],
        [
            "Record execution",
            "Export certificate",
            "Dispatch install command",
            "Check install status",
        ]
    );
    assert_eq!(states.last().map(String::as_str), Some("Deployed"));
    // The check waits for the last host's report rather than polling: at most one wake, so
    // eight states at most (the seed's 15 s loop enters two more per poll).
    assert!(states.len() <= 8, "{states:?}");
    let serial = serial_of(&ending);
    let install = ending.output.as_ref().unwrap().install.as_ref().unwrap();
    assert_eq!(install.hosts.total, 2);
    assert_eq!(install.hosts.succeeded, 2);

    let mapping = cloud.mapping(&request).await.expect("the mapping");
    assert_eq!(mapping.serial.as_deref(), Some(serial.as_str()));
    assert_eq!(mapping.reload_service.as_deref(), Some("nginx"));
    let last = mapping.last_deployment.expect("the last deployment");
    assert_eq!(last.status, LastDeploymentStatus::Success);
    assert_eq!((last.succeeded, last.failed), (2, 0));
    assert_eq!(last.execution_arn.as_deref(), Some(execution.as_str()));

    for host in &dev {
        cloud.assert_installed(host, &serial);
        let reloads =
            std::fs::read_to_string(cloud.hosts.root(host).join("var/log/systemctl.log")).unwrap();
        assert_eq!(reloads.trim(), "reload-or-restart nginx");
    }
    assert!(!cloud.has_files(&prod), "the prod host was touched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_reload_fails_rolls_back_and_fails_the_execution() {
    // Both hosts start at once, so the healthy one installs whatever the other does.
    let cloud = start(|o| o.association.max_concurrency = "100%".into()).await;
    let healthy = cloud.host("dev", Simulation::Healthy).await;
    let broken = cloud.host("dev", Simulation::ReloadFails).await;
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "dev"), Some("nginx"));

    let (execution, ending) = cloud.deploy(&request).await;

    assert_eq!(ending.status, ExecutionStatus::Failed);
    assert_eq!(ending.error.as_deref(), Some("InstallFailed"));
    assert!(
        ending
            .cause
            .as_deref()
            .unwrap_or_default()
            .starts_with("1 of 2 hosts failed"),
        "{ending:?}"
    );
    assert_eq!(cloud.status(&execution).await, ExecutionStatus::Failed);
    let history = cloud.history(&execution).await;
    assert_eq!(
        states_entered(&history).last().map(String::as_str),
        Some("Install failed")
    );
    let check_output = history
        .iter()
        .rev()
        .filter_map(|e| e.state_exited_event_details())
        .find(|d| d.name() == execution::CHECK_STATE)
        .and_then(|d| d.output())
        .expect("the last check's output");
    let state: WorkflowState = serde_json::from_str(check_output).unwrap();
    let failures = state.install.unwrap().failures;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].instance_id, broken.as_str());
    assert!(failures[0].output.contains("rolled back"), "{failures:?}");

    let last = cloud
        .mapping(&request)
        .await
        .unwrap()
        .last_deployment
        .unwrap();
    assert_eq!(last.status, LastDeploymentStatus::Failed);
    assert_eq!((last.succeeded, last.failed), (1, 1));
    cloud.assert_installed(&healthy, &serial_of_export(&history));
    // A fresh host that cannot reload is left as it was: without certificate files.
    assert!(
        !cloud
            .hosts
            .root(&broken)
            .join("etc/ssl/certs/web-cert.pem")
            .exists(),
        "the broken host kept the new certificate"
    );
}

/// The serial export-certificate returned, from the history.
fn serial_of_export(history: &[HistoryEvent]) -> String {
    let output = history
        .iter()
        .filter_map(|e| e.state_exited_event_details())
        .find(|d| d.name() == execution::EXPORT_STATE)
        .and_then(|d| d.output())
        .unwrap();
    serde_json::from_str::<WorkflowState>(output)
        .unwrap()
        .export
        .unwrap()
        .serial
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_no_host_carries_fails_with_no_targets() {
    let cloud = start(|_| {}).await;
    let dev = cloud.host("dev", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "qa"), None);

    let (execution, ending) = cloud.deploy(&request).await;

    assert_eq!(ending.status, ExecutionStatus::Failed);
    assert_eq!(ending.error.as_deref(), Some("NoTargets"));
    assert!(ending.cause.unwrap_or_default().contains("env=qa"));
    let history = cloud.history(&execution).await;
    assert!(lambda_errors(&history).contains(&"NoTargets".to_string()));
    assert_eq!(
        states_entered(&history).last().map(String::as_str),
        Some("Deployment failed")
    );
    let last = cloud
        .mapping(&request)
        .await
        .unwrap()
        .last_deployment
        .unwrap();
    assert_eq!(last.status, LastDeploymentStatus::NoTargets);
    assert!(!cloud.has_files(&dev));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_run_never_reports_times_the_install_out_at_the_deadline() {
    let cloud = start(|o| o.association.deadline_seconds = 6).await;
    let stuck = cloud.host("dev", Simulation::Healthy).await;
    // Something else holds the document's lock on the host for longer than the deadline: the
    // run waits for it (up to 240 s) and reports nothing in time. An offline host, by contrast,
    // is Deferred (see convergence.rs).
    let state = cloud.file(&stuck, "var/lib/certship");
    std::fs::create_dir_all(&state).unwrap();
    // --no-fork: the lock's holder is the process killed below, with no child left behind.
    let mut holder = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(state.join(format!("{CERT_NAME}.lock")))
        .args(["sleep", "120"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flock (util-linux) runs");
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "dev"), None);

    let (execution, ending) = cloud.deploy(&request).await;

    assert_eq!(ending.status, ExecutionStatus::Failed);
    assert_eq!(
        ending.error.as_deref(),
        Some("InstallTimedOut"),
        "{ending:?}"
    );
    // The check armed its wait, no report came, and the Task's timeout (the deadline plus 5 s)
    // made the state machine retry it: that check, past the deadline, decided.
    let history = cloud.history(&execution).await;
    let timed_out = history
        .iter()
        .filter(|e| e.r#type() == &HistoryEventType::TaskTimedOut)
        .count();
    assert_eq!(
        timed_out, 1,
        "the wait timed out once, then the retried check decided"
    );
    let last = cloud
        .mapping(&request)
        .await
        .unwrap()
        .last_deployment
        .unwrap();
    assert_eq!(last.status, LastDeploymentStatus::InstallTimedOut);
    assert!(!cloud.has_files(&stuck));
    holder.kill().unwrap();
    holder.wait().unwrap();
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unexportable_certificate_fails_before_anything_is_written() {
    use aws_sdk_acm::types::{CertificateExport, CertificateOptions};
    let cloud = start(|_| {}).await;
    let dev = cloud.host("dev", Simulation::Healthy).await;
    let arn = aws_sdk_acm::Client::new(cloud.sdk_config())
        .request_certificate()
        .domain_name("private.e2e.certship.test")
        .options(
            CertificateOptions::builder()
                .export(CertificateExport::Disabled)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .certificate_arn
        .unwrap();
    let request = request(&arn, CERT_NAME, ("env", "dev"), None);

    let (execution, ending) = cloud.deploy(&request).await;

    assert_eq!(ending.status, ExecutionStatus::Failed);
    assert_eq!(
        ending.error.as_deref(),
        Some("CertificateNotExportable"),
        "{ending:?}"
    );
    let states = states_entered(&cloud.history(&execution).await);
    assert!(
        !states.iter().any(|s| s == execution::DISPATCH_STATE),
        "{states:?}"
    );
    assert!(cloud.mapping(&request).await.is_none());
    let secrets = aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
        .list_secrets()
        .send()
        .await
        .unwrap();
    assert!(secrets.secret_list().is_empty());
    assert!(!cloud.has_files(&dev));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_function_is_retried_by_the_state_machine() {
    let cloud = start(|_| {}).await;
    let dev = cloud.host("dev", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    cloud
        .functions
        .inject_error(Function::ExportCertificate, "Throttled", 2);
    let request = request(&arn, CERT_NAME, ("env", "dev"), None);

    let (execution, ending) = cloud.deploy(&request).await;

    assert!(ending.succeeded(), "{ending:?}");
    let history = cloud.history(&execution).await;
    assert_eq!(lambda_errors(&history), ["Throttled", "Throttled"]);
    let scheduled = history
        .iter()
        .filter(|e| {
            matches!(
                e.r#type(),
                HistoryEventType::LambdaFunctionScheduled | HistoryEventType::TaskScheduled
            )
        })
        .count();
    // Export three times (two throttled), dispatch once, check at least once.
    assert!(scheduled >= 5, "{scheduled} invocations");
    cloud.assert_installed(&dev, &serial_of(&ending));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_redeploys_the_new_serial_to_the_same_hosts() {
    let cloud = start(|_| {}).await;
    let dev = cloud.host("dev", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "dev"), Some("nginx"));
    let (first, ending) = cloud.deploy(&request).await;
    assert!(ending.succeeded(), "{ending:?}");
    let old_serial = serial_of(&ending);

    let renewed = renewal::renew(&cloud.endpoint, cloud.sdk_config(), &arn)
        .await
        .unwrap();
    let execution = next_execution(cloud.sdk_config(), &cloud.state_machine_arn, &[first])
        .await
        .unwrap();
    let ending = cloud.wait(&execution).await;

    assert!(ending.succeeded(), "{ending:?}");
    let new_serial = serial_of(&ending);
    assert!(certship_shared::serial::same_serial(
        &new_serial,
        &renewed.serial
    ));
    assert!(!certship_shared::serial::same_serial(
        &new_serial,
        &old_serial
    ));
    let input: DeploymentRequest = serde_json::from_str(
        cloud
            .sfn()
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .unwrap()
            .input()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(input.trigger, certship_shared::Trigger::Renewal);
    assert_eq!(input.reload_service.as_deref(), Some("nginx"));
    cloud.assert_installed(&dev, &new_serial);
    let mapping = cloud.mapping(&request).await.unwrap();
    assert_eq!(mapping.serial.as_deref(), Some(new_serial.as_str()));
    assert_eq!(
        mapping.last_deployment.unwrap().execution_arn.as_deref(),
        Some(execution.as_str())
    );
    // The previous set stays beside the new one.
    let previous = cloud
        .hosts
        .root(&dev)
        .join("etc/ssl/certs/web-cert.pem.previous");
    let previous_serial =
        certship_shared::pem::pem_serial(&std::fs::read_to_string(previous).unwrap()).unwrap();
    assert!(certship_shared::serial::same_serial(
        &previous_serial,
        &old_serial
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_event_delivered_twice_starts_one_execution_per_mapping() {
    let cloud = start(|_| {}).await;
    cloud.host("dev", Simulation::Healthy).await;
    cloud.host("qa", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    for env in ["dev", "qa"] {
        let (_, ending) = cloud
            .deploy(&request(&arn, CERT_NAME, ("env", env), None))
            .await;
        assert!(ending.succeeded(), "{ending:?}");
    }
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            certship_testkit::moto::project_root()
                .join("events/acm-certificate-available-renewal.json"),
        )
        .unwrap(),
    )
    .unwrap();
    event["resources"] = serde_json::json!([arn]);

    // EventBridge delivers at least once: the same event, twice.
    let first = cloud
        .invoke(Function::RenewalTrigger, event.clone())
        .await
        .unwrap();
    let second = cloud.invoke(Function::RenewalTrigger, event).await.unwrap();

    let executions = cloud.execution_list().await;
    let renewals: Vec<_> = executions
        .iter()
        .filter(|e| e.name().starts_with("renewal-"))
        .collect();
    assert_eq!(renewals.len(), 2, "{first} / {second}");
    assert_eq!(first["Started"], 2, "{first}");
    assert_eq!(second["Started"], 0, "{second}");
    assert_eq!(second["AlreadyStarted"], 2, "{second}");
    for execution in renewals {
        let ending = cloud.wait(execution.execution_arn()).await;
        assert!(ending.succeeded(), "{ending:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_passphrase_or_key_reaches_the_history_the_tables_the_association_or_its_output() {
    let cloud = start(|_| {}).await;
    cloud.host("dev", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "dev"), None);
    let (execution, ending) = cloud.deploy(&request).await;
    assert!(ending.succeeded(), "{ending:?}");
    let output = ending.output.unwrap();

    let secret: serde_json::Value = serde_json::from_str(
        aws_sdk_secretsmanager::Client::new(cloud.sdk_config())
            .get_secret_value()
            .secret_id(&output.export.as_ref().unwrap().secret_arn)
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap(),
    )
    .unwrap();
    let passphrase = secret["passphrase"].as_str().unwrap();
    let key_lines: Vec<&str> = secret["encrypted_private_key"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect();
    // and the key as the host decrypted it
    let host = &cloud.hosts.list()[0].instance_id;
    let installed_key = std::fs::read_to_string(
        cloud.file(host, &format!("etc/ssl/private/{CERT_NAME}-privkey.pem")),
    )
    .unwrap();
    let installed_lines: Vec<&str> = installed_key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect();
    assert!(!installed_lines.is_empty());
    let mut secrets = vec![passphrase];
    secrets.extend(key_lines.iter().copied());
    secrets.extend(installed_lines.iter().copied());

    let history = cloud.history(&execution).await;
    assert!(history.len() > 10);
    assert_no_secret("the execution history", &format!("{history:?}"), &secrets);
    let items = aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .scan()
        .table_name(&cloud.table_name)
        .send()
        .await
        .unwrap();
    // The mapping and its CertName claim.
    assert_eq!(items.count(), 2);
    assert_no_secret(
        "the mapping table",
        &format!("{:?}", items.items()),
        &secrets,
    );
    let association = aws_sdk_ssm::Client::new(cloud.sdk_config())
        .describe_association()
        .set_association_id(output.dispatch.as_ref().unwrap().association_id.clone())
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap();
    let parameters = format!("{:?}", association.parameters());
    assert!(parameters.contains("SecretVersionId"), "{parameters}");
    assert_no_secret("the association's parameters", &parameters, &secrets);
    let outputs = cloud.association_outputs().await;
    assert!(!outputs.is_empty(), "no host wrote its output to S3");
    for (key, body) in &outputs {
        assert_no_secret(&format!("s3 {key}"), body, &secrets);
    }
    let evidence = aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .scan()
        .table_name(&cloud.evidence_table_name)
        .send()
        .await
        .unwrap();
    let hosts = evidence
        .items()
        .iter()
        .filter(|item| !certship_shared::waiting::is_waiting_item(item))
        .count();
    assert_eq!(
        hosts, 1,
        "one host's evidence (the wait item beside it is scanned too)"
    );
    assert_no_secret(
        "the evidence table",
        &format!("{:?}", evidence.items()),
        &secrets,
    );
    // The script's private temporary directory is gone from every host.
    for host in cloud.hosts.list() {
        let tmp = cloud.hosts.root(&host.instance_id).join("tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "{} left {left:?}", tmp.display());
    }
}
