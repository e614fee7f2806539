//! The local cloud's SSM Run Command: statuses, output, timeouts and MaxErrors as SSM reports
//! them, with small documents of the test's own.

use aws_sdk_ssm::types::{CommandInvocationStatus, DocumentFormat, DocumentType, Target};
use certship_local::hosts::{self, Simulation};
use certship_local::{LocalCloud, LocalOptions};
use std::collections::BTreeMap;
use std::time::Duration;

async fn start() -> (LocalCloud, tempfile::TempDir) {
    certship_testkit::moto::venv_python().unwrap();
    let state = tempfile::Builder::new()
        .prefix("certship-ssm-")
        .tempdir()
        .unwrap();
    let mut options = LocalOptions::new(certship_testkit::moto::project_root());
    options.state_dir = state.path().to_path_buf();
    (LocalCloud::start(options).await.unwrap(), state)
}

async fn document(cloud: &LocalCloud, name: &str, script: &str, timeout: u32) {
    let content = format!(
        "schemaVersion: '2.2'\ndescription: test\nparameters:\n  Word:\n    type: String\n    default: hello\n    allowedPattern: '^[a-z]+$'\nmainSteps:\n  - action: aws:runShellScript\n    name: Run\n    inputs:\n      timeoutSeconds: '{timeout}'\n      runCommand:\n        - |\n          {script}\n"
    );
    aws_sdk_ssm::Client::new(cloud.sdk_config())
        .create_document()
        .name(name)
        .content(content)
        .document_format(DocumentFormat::Yaml)
        .document_type(DocumentType::Command)
        .send()
        .await
        .unwrap();
}

async fn hosts(cloud: &LocalCloud, count: usize, simulate: Simulation) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(cloud.sdk_config());
    let tags = BTreeMap::from([("role".to_string(), "web".to_string())]);
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(
            hosts::add(&ec2, &cloud.hosts, &tags, simulate)
                .await
                .unwrap()
                .instance_id,
        );
    }
    ids.sort();
    ids
}

async fn send(cloud: &LocalCloud, document: &str, concurrency: &str, errors: &str) -> String {
    aws_sdk_ssm::Client::new(cloud.sdk_config())
        .send_command()
        .document_name(document)
        .targets(Target::builder().key("tag:role").values("web").build())
        .max_concurrency(concurrency)
        .max_errors(errors)
        .timeout_seconds(30)
        .send()
        .await
        .unwrap()
        .command
        .unwrap()
        .command_id
        .unwrap()
}

/// Waits until no invocation is pending and returns (instance, status, details) in id order.
async fn finished(cloud: &LocalCloud, command_id: &str) -> Vec<(String, String, String)> {
    let ssm = aws_sdk_ssm::Client::new(cloud.sdk_config());
    for _ in 0..100 {
        let out = ssm
            .list_command_invocations()
            .command_id(command_id)
            .details(true)
            .send()
            .await
            .unwrap();
        let rows: Vec<(String, String, String)> = out
            .command_invocations()
            .iter()
            .map(|i| {
                (
                    i.instance_id().unwrap().to_string(),
                    i.status().unwrap().as_str().to_string(),
                    i.status_details().unwrap_or_default().to_string(),
                )
            })
            .collect();
        if rows
            .iter()
            .all(|(_, s, _)| !matches!(s.as_str(), "Pending" | "InProgress"))
        {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the command did not finish");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_and_exit_codes_are_reported_per_host() {
    let (cloud, _state) = start().await;
    document(
        &cloud,
        "Echo",
        "echo \"$SSM_Word from $AWS_SSM_INSTANCE_ID\"; echo oops >&2; exit 3",
        60,
    )
    .await;
    let ids = hosts(&cloud, 1, Simulation::Healthy).await;

    let command_id = send(&cloud, "Echo", "100%", "1").await;
    let rows = finished(&cloud, &command_id).await;

    assert_eq!(rows, [(ids[0].clone(), "Failed".into(), "Failed".into())]);
    let invocation = aws_sdk_ssm::Client::new(cloud.sdk_config())
        .get_command_invocation()
        .command_id(&command_id)
        .instance_id(&ids[0])
        .send()
        .await
        .unwrap();
    assert_eq!(invocation.response_code(), 3);
    assert_eq!(
        invocation.standard_output_content(),
        Some(format!("hello from {}\n", ids[0]).as_str())
    );
    assert_eq!(invocation.standard_error_content(), Some("oops\n"));
    assert_eq!(invocation.status(), Some(&CommandInvocationStatus::Failed));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_max_errors_no_further_host_is_sent_the_command() {
    let (cloud, _state) = start().await;
    document(&cloud, "Fail", "exit 1", 60).await;
    let ids = hosts(&cloud, 3, Simulation::Healthy).await;

    let command_id = send(&cloud, "Fail", "1", "0").await;
    let rows = finished(&cloud, &command_id).await;

    let statuses: Vec<&str> = rows.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["Failed", "Cancelled", "Cancelled"], "{rows:?}");
    assert_eq!(rows[0].0, ids[0]);
    let command = aws_sdk_ssm::Client::new(cloud.sdk_config())
        .list_commands()
        .command_id(&command_id)
        .send()
        .await
        .unwrap();
    let command = &command.commands()[0];
    assert_eq!(command.target_count(), 3);
    assert_eq!(command.error_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_past_its_timeout_is_stopped_and_timed_out() {
    let (cloud, _state) = start().await;
    document(
        &cloud,
        "Hang",
        "sleep 300 & echo $! > \"$TMPDIR/background.pid\"; sleep 60",
        1,
    )
    .await;
    let ids = hosts(&cloud, 1, Simulation::Healthy).await;

    let started = std::time::Instant::now();
    let command_id = send(&cloud, "Hang", "1", "0").await;
    let rows = finished(&cloud, &command_id).await;

    assert_eq!(rows[0].1, "TimedOut");
    assert_eq!(rows[0].2, "Execution Timed Out");
    assert!(started.elapsed() < Duration::from_secs(20));
    // what the script started in the background was stopped with it
    let pid: i32 = std::fs::read_to_string(cloud.hosts.root(&ids[0]).join("tmp/background.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the background process {pid} still runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parameters_are_checked_against_the_document() {
    let (cloud, _state) = start().await;
    document(&cloud, "Echo", "echo \"$SSM_Word\"", 60).await;
    let ssm = aws_sdk_ssm::Client::new(cloud.sdk_config());
    let send = |name: &str, value: &str| {
        ssm.send_command()
            .document_name("Echo")
            .instance_ids("i-0123456789abcdef0")
            .parameters(name, vec![value.to_string()])
            .send()
    };

    let bad_value = send("Word", "Hello; reboot").await.unwrap_err();
    let unknown = send("Other", "x").await.unwrap_err();
    let missing = ssm
        .send_command()
        .document_name("Missing")
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();

    let unknown_host = send("Word", "hello").await.unwrap_err();
    assert!(bad_value.into_service_error().is_invalid_parameters());
    assert!(unknown_host.into_service_error().is_invalid_instance_id());
    assert!(unknown.into_service_error().is_invalid_parameters());
    assert!(missing.into_service_error().is_invalid_document());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_directory_is_rooted_in_the_host_even_at_its_default() {
    // given a document whose StateDirectory is left at its default, as the install document's
    let (cloud, _state) = start().await;
    let content = "schemaVersion: '2.2'\ndescription: test\nparameters:\n  StateDirectory:\n    type: String\n    default: /var/lib/certship\nmainSteps:\n  - action: aws:runShellScript\n    name: Run\n    inputs:\n      runCommand:\n        - |\n          [[ \"$SSM_StateDirectory\" == \"$CERTSHIP_HOST_ROOT/var/lib/certship\" ]] && echo rooted\n";
    aws_sdk_ssm::Client::new(cloud.sdk_config())
        .create_document()
        .name("State")
        .content(content)
        .document_format(DocumentFormat::Yaml)
        .document_type(DocumentType::Command)
        .send()
        .await
        .unwrap();
    let ids = hosts(&cloud, 1, Simulation::Healthy).await;

    // when
    let command_id = send(&cloud, "State", "100%", "1").await;

    // then the script saw the host's own directory, not the machine's /var/lib
    let rows = finished(&cloud, &command_id).await;
    assert_eq!(rows, [(ids[0].clone(), "Success".into(), "Success".into())]);
    let invocation = aws_sdk_ssm::Client::new(cloud.sdk_config())
        .get_command_invocation()
        .command_id(&command_id)
        .instance_id(&ids[0])
        .send()
        .await
        .unwrap();
    assert_eq!(invocation.standard_output_content(), Some("rooted\n"));
}
