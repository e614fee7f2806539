//! The `certship local` commands, run as a user runs them: the binary, in the background, stopped
//! by `down`.

use certship_local::running::{RunningCloud, process_alive};
use std::path::Path;
use std::process::{Command, Output};

fn certship(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certship"))
        .arg("local")
        .arg("--project-dir")
        .arg(certship_testkit::moto::project_root())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("certship runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stops the background cloud even when an assertion fails first.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = certship(self.0, &["down"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn up_hosts_and_down_manage_one_background_cloud() {
    certship_testkit::moto::venv_python().unwrap();
    let state = tempfile::Builder::new()
        .prefix("certship-cli-")
        .tempdir()
        .unwrap();
    let state = state.path();

    // given no cloud, the commands that need one say how to start it
    let hosts = certship(state, &["hosts", "add", "--tag", "env=dev"]);
    assert!(!hosts.status.success());
    assert!(
        text(&hosts).contains("certship local up --detach"),
        "{}",
        text(&hosts)
    );

    // when it is started twice, the second start says so and starts nothing
    let _down = Down(state);
    let up = certship(state, &["up", "--detach"]);
    assert!(up.status.success(), "{}", text(&up));
    let running = RunningCloud::read(state).expect("the running cloud's record");
    assert!(text(&up).contains(&running.endpoint), "{}", text(&up));
    let again = certship(state, &["up", "--detach"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already running"), "{}", text(&again));
    assert_eq!(RunningCloud::read(state).unwrap().pid, running.pid);

    // then hosts are EC2 instances with the tag, each with a directory of its own
    let added = certship(state, &["hosts", "add", "--tag", "env=dev", "--count", "2"]);
    assert!(added.status.success(), "{}", text(&added));
    let ids: Vec<String> = String::from_utf8_lossy(&added.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2, "{}", text(&added));
    for id in &ids {
        assert!(running.hosts_dir.join(id).join("host.json").exists());
    }
    let config = certship_local::sdk_config(&running.endpoint, &running.region).await;
    let reservations = aws_sdk_ec2::Client::new(&config)
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:env")
                .values("dev")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut found: Vec<String> = reservations
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    found.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(found, expected);

    let bad = certship(state, &["hosts", "add", "--tag", "env"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("not KEY=VALUE"), "{}", text(&bad));
    let unknown = certship(
        state,
        &[
            "renew",
            "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
        ],
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("not a certificate in the local cloud"),
        "{}",
        text(&unknown)
    );
    let env = certship(state, &["env"]);
    assert!(
        text(&env).contains(&format!("export AWS_ENDPOINT_URL={}", running.endpoint)),
        "{}",
        text(&env)
    );

    // and what `env` prints is all an operator command needs: evaluated in an empty environment
    // (no AWS or CERTSHIP variables, a HOME without ~/.aws), `status` and `history` reach it
    let home = tempfile::tempdir().unwrap();
    let clean = Command::new("env")
        .arg("-i")
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .arg(format!("HOME={}", home.path().display()))
        .args(["bash", "-c"])
        .arg(
            r#"set -euo pipefail
            eval "$("$0" local --project-dir "$1" --state-dir "$2" env)"
            "$0" status --output json
            "$0" history --certificate-arn "$3" --output json"#,
        )
        .arg(env!("CARGO_BIN_EXE_certship"))
        .arg(certship_testkit::moto::project_root())
        .arg(state)
        .arg("arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000")
        .output()
        .unwrap();
    assert!(clean.status.success(), "{}", text(&clean));
    assert_eq!(
        String::from_utf8_lossy(&clean.stdout)
            .split_whitespace()
            .collect::<String>(),
        "[][]",
        "no mappings and no executions yet: {}",
        text(&clean)
    );

    // when it is stopped, everything it started goes with it
    let down = certship(state, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(!process_alive(running.pid));
    assert!(RunningCloud::read(state).is_none());
    assert!(
        std::net::TcpStream::connect(running.endpoint.trim_start_matches("http://")).is_err(),
        "the gateway still answers"
    );
    let status = certship(state, &["status"]);
    assert!(
        text(&status).contains("No local cloud is running"),
        "{}",
        text(&status)
    );
    let down_again = certship(state, &["down"]);
    assert!(down_again.status.success());
}
