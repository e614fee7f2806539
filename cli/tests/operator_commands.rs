//! The operator commands (`deploy`, `follow`, `status`, `hosts`, `history`, `unmap`), run as a
//! user runs them: the `certship` binary against a local cloud, reached the way the AWS CLI
//! reaches it (`AWS_ENDPOINT_URL` and the `CERTSHIP_*` variables `certship local env` prints).

use certship_local::hosts::{self, Simulation};
use certship_local::{API_PATH, LocalCloud, LocalOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

struct Cloud {
    cloud: LocalCloud,
    /// The per-host evidence table.
    evidence_table: String,
    _state: TempDir,
}

async fn start() -> Cloud {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut LocalOptions)) -> Cloud {
    certship_testkit::moto::venv_python().expect("the project virtualenv");
    let state = tempfile::Builder::new()
        .prefix("certship-ops-")
        .tempdir()
        .unwrap();
    let mut options = LocalOptions::new(certship_testkit::moto::project_root());
    options.state_dir = state.path().to_path_buf();
    configure(&mut options);
    let cloud = LocalCloud::start(options)
        .await
        .expect("the local cloud starts");
    let evidence_table = cloud.evidence_table_name.clone();
    Cloud {
        cloud,
        evidence_table,
        _state: state,
    }
}

impl Cloud {
    /// What `eval "$(certship local env)"` sets.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.cloud.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", self.cloud.region.clone()),
            (
                "CERTSHIP_STATE_MACHINE_ARN",
                self.cloud.state_machine_arn.clone(),
            ),
            ("CERTSHIP_TABLE_NAME", self.cloud.table_name.clone()),
            ("CERTSHIP_EVIDENCE_TABLE_NAME", self.evidence_table.clone()),
            (
                "CERTSHIP_API_URL",
                format!("{}{API_PATH}", self.cloud.endpoint),
            ),
        ]
    }

    fn certship(&self, args: &[&str]) -> Output {
        certship_with(&self.env(), args)
    }

    async fn host(&self, env: &str, simulate: Simulation) -> String {
        let tags = BTreeMap::from([("env".to_string(), env.to_string())]);
        hosts::add(
            &aws_sdk_ec2::Client::new(self.cloud.sdk_config()),
            &self.cloud.hosts,
            &tags,
            simulate,
        )
        .await
        .unwrap()
        .instance_id
    }

    async fn certificate(&self) -> String {
        certship_cli::demo::request_certificate(self.cloud.sdk_config(), "www.ops.certship.test")
            .await
            .unwrap()
    }

    async fn acm_serial(&self, arn: &str) -> String {
        aws_sdk_acm::Client::new(self.cloud.sdk_config())
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .unwrap()
            .certificate
            .unwrap()
            .serial
            .unwrap()
    }

    async fn executions(&self) -> usize {
        aws_sdk_sfn::Client::new(self.cloud.sdk_config())
            .list_executions()
            .state_machine_arn(&self.cloud.state_machine_arn)
            .send()
            .await
            .unwrap()
            .executions
            .len()
    }
}

/// Runs the binary with only `env` from the AWS and certship variables of this process.
fn certship_with(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_certship"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("CERTSHIP_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("certship runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The cells of the table row that starts with `first`, by the header's column names. Columns
/// start where their header does (the table pads every cell to its column's width).
fn table_row(text: &str, first: &str) -> BTreeMap<String, String> {
    let header = text
        .lines()
        .find(|l| l.starts_with("INSTANCE"))
        .unwrap_or_else(|| panic!("a table in {text}"));
    let row: Vec<char> = text
        .lines()
        .find(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("{first} in {text}"))
        .chars()
        .collect();
    let starts: Vec<(usize, &str)> = header
        .split_whitespace()
        .map(|name| (header.find(name).unwrap(), name))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, (start, name))| {
            let end = starts.get(i + 1).map_or(row.len(), |(next, _)| *next);
            let cell: String = row[(*start).min(row.len())..end.min(row.len())]
                .iter()
                .collect();
            (name.to_string(), cell.trim().to_string())
        })
        .collect()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", both(output)))
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_follow_status_history_and_unmap_against_the_local_cloud() {
    let cloud = start().await;
    let first = cloud.host("dev", Simulation::Healthy).await;
    let second = cloud.host("dev", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    let serial = cloud.acm_serial(&arn).await;

    // deploy through the (signed) API and wait: plain progress lines, then a row per host
    let deployed = cloud.certship(&[
        "deploy",
        "--certificate-arn",
        &arn,
        "--name",
        "web",
        "--target",
        "env=dev",
        "--reload-service",
        "nginx",
        "--wait",
    ]);
    let text = stdout(&deployed);
    assert_eq!(deployed.status.code(), Some(0), "{}", both(&deployed));
    assert!(text.starts_with("Started arn:aws:states:"), "{text}");
    for line in [
        "→ Export certificate",
        "→ Check install status",
        "Deployed.",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(
        !text.contains('\r') && !text.contains('⠋'),
        "no live line in a pipe: {text}"
    );
    assert!(
        text.contains("INSTANCE") && text.contains("RELOADED"),
        "{text}"
    );
    assert!(text.contains("Hosts: converged 2/2"), "{text}");
    for host in [&first, &second] {
        let row = text
            .lines()
            .find(|l| l.starts_with(host.as_str()))
            .unwrap_or_else(|| panic!("{host} in {text}"));
        let cells = table_row(&text, host);
        assert_eq!(cells["STATE"], "Converged", "{row}");
        assert_eq!(cells["SERIAL"], serial, "{row}");
        assert_eq!(cells["OUTCOME"], "installed", "{row}");
        assert_eq!(cells["RELOADED"], "yes", "{row}");
    }

    // deploy --output json without waiting, then follow it as JSON
    let started = cloud.certship(&[
        "deploy",
        "--certificate-arn",
        &arn,
        "--name",
        "web",
        "--target",
        "env=dev",
        "--output",
        "json",
    ]);
    assert_eq!(started.status.code(), Some(0), "{}", both(&started));
    let started = json_of(&started);
    assert_eq!(started["via"], "api");
    let execution = started["executionArn"].as_str().unwrap().to_string();
    let followed = cloud.certship(&["follow", &execution, "--output", "json"]);
    assert_eq!(followed.status.code(), Some(0), "{}", both(&followed));
    let report = json_of(&followed);
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(report["hosts"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["counts"]["Succeeded"], 2, "{report}");
    assert!(report["associationId"].is_string(), "{report}");
    for host in report["hosts"].as_array().unwrap() {
        assert_eq!(host["state"], "Converged");
        assert_eq!(host["serial"], serial.as_str());
        assert_eq!(
            host["outcome"], "unchanged",
            "the same serial again changes nothing: {host}"
        );
    }

    // --direct goes through StartExecution
    let direct = cloud.certship(&[
        "deploy",
        "--direct",
        "--certificate-arn",
        &arn,
        "--name",
        "web",
        "--target",
        "env=dev",
        "--output",
        "json",
    ]);
    assert_eq!(
        json_of(&direct)["via"],
        "state-machine",
        "{}",
        both(&direct)
    );
    let direct_arn = json_of(&direct)["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        cloud.certship(&["follow", &direct_arn]).status.code(),
        Some(0)
    );

    // status: one mapping, its serial is ACM's, nothing newer
    let status = json_of(&cloud.certship(&["status", "--output", "json"]));
    let mappings = status.as_array().unwrap();
    assert_eq!(mappings.len(), 1, "{status}");
    assert_eq!(mappings[0]["deployedSerial"], serial.as_str());
    assert_eq!(mappings[0]["lastDeployment"]["status"], "Success");
    assert_eq!(mappings[0]["acm"]["newerThanDeployed"], false);
    assert_eq!(mappings[0]["hosts"]["current"], 2, "{status}");
    assert_eq!(mappings[0]["hosts"]["total"], 2, "{status}");
    let text = stdout(&cloud.certship(&["status"]));
    assert!(
        text.contains("HOSTS") && text.contains("2/2 current"),
        "{text}"
    );

    // hosts: both dev hosts hold the current version; none lacks its serial
    let listed = cloud.certship(&["hosts", "--target", "env=dev"]);
    let text = stdout(&listed);
    assert_eq!(listed.status.code(), Some(0), "{}", both(&listed));
    for host in [&first, &second] {
        let cells = table_row(&text, host);
        assert_eq!(cells["PING"], "Online", "{text}");
        assert_eq!(cells["NAME"], "web", "{text}");
        assert_eq!(cells["SERIAL"], serial, "{text}");
        assert_eq!(cells["CURRENT"], "yes", "{text}");
    }
    assert!(text.contains("web: converged 2/2"), "{text}");
    let lacking = cloud.certship(&["hosts", "--target", "env=dev", "--not-serial", &serial]);
    assert!(
        stdout(&lacking).starts_with("No host matches."),
        "{}",
        both(&lacking)
    );
    let stale = json_of(&cloud.certship(&[
        "hosts", "--target", "env=dev", "--stale", "--output", "json",
    ]));
    assert_eq!(stale["hosts"], json!([]), "{stale}");
    assert_eq!(stale["mappings"][0]["hosts"]["Total"], 2, "{stale}");
    assert!(
        mappings[0]["acm"]["daysLeft"].as_i64().unwrap() > 30,
        "{status}"
    );

    // when ACM renews (the emulator's renewal, without its event), status says a newer serial waits
    let renewed = certship_local::http::post_json(
        &format!("{}/_certship/acm/renew", cloud.cloud.endpoint),
        &json!({ "CertificateArn": arn }),
    )
    .await
    .unwrap();
    let new_serial = renewed["Serial"].as_str().unwrap();
    let status =
        json_of(&cloud.certship(&["status", "--certificate-arn", &arn, "--output", "json"]));
    assert_eq!(status[0]["acm"]["newerThanDeployed"], true, "{status}");
    assert_eq!(status[0]["acm"]["serial"], new_serial);
    let text = stdout(&cloud.certship(&["status", "--target", "env=dev"]));
    assert!(
        text.contains(&format!("newer serial {new_serial}")),
        "{text}"
    );
    assert!(text.contains("env=dev") && text.contains("web"), "{text}");
    let other = stdout(&cloud.certship(&["status", "--target", "env=prod"]));
    assert!(other.starts_with("No mappings."), "{other}");

    // history: the three executions, newest first
    let history =
        json_of(&cloud.certship(&["history", "--certificate-arn", &arn, "--output", "json"]));
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{history}");
    assert_eq!(entries[0]["executionArn"], direct_arn.as_str());
    assert_eq!(entries[1]["executionArn"], execution.as_str());
    assert!(
        entries
            .iter()
            .all(|e| e["status"] == "SUCCEEDED" && e["trigger"] == "api")
    );
    let limited = json_of(&cloud.certship(&[
        "history",
        "--certificate-arn",
        &arn,
        "--limit",
        "1",
        "--output",
        "json",
    ]));
    assert_eq!(limited.as_array().unwrap().len(), 1);
    let text = stdout(&cloud.certship(&["history", "--certificate-arn", &arn]));
    assert!(
        text.starts_with("STARTED") && text.contains(&direct_arn),
        "{text}"
    );

    // unmap: refused without --yes when nobody can answer, then done with it
    let unmap = [
        "unmap",
        "--certificate-arn",
        &arn,
        "--name",
        "web",
        "--target",
        "env=dev",
    ];
    let refused = cloud.certship(&unmap);
    assert_eq!(refused.status.code(), Some(1));
    assert!(both(&refused).contains("--yes"), "{}", both(&refused));
    assert_eq!(
        json_of(&cloud.certship(&["status", "--output", "json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let secret_arn = mappings[0]["secretArn"].as_str().unwrap().to_string();
    let removed = cloud.certship(&[&unmap[..], &["--yes"]].concat());
    assert_eq!(removed.status.code(), Some(0), "{}", both(&removed));
    for said in [
        "scheduled for deletion in 7 days",
        "Deleted its association",
        "Deleted 2 evidence item(s)",
        "Released the name web on env=dev",
    ] {
        assert!(
            stdout(&removed).contains(said),
            "{said}: {}",
            both(&removed)
        );
    }
    let associations = aws_sdk_ssm::Client::new(cloud.cloud.sdk_config())
        .list_associations()
        .send()
        .await
        .unwrap();
    assert_eq!(associations.associations().len(), 0, "{associations:?}");
    let after = stdout(&cloud.certship(&["hosts", "--target", "env=dev"]));
    assert!(after.starts_with("No mapping targets env=dev"), "{after}");
    assert_eq!(
        json_of(&cloud.certship(&["status", "--output", "json"])),
        json!([])
    );
    let secret = aws_sdk_secretsmanager::Client::new(cloud.cloud.sdk_config())
        .describe_secret()
        .secret_id(&secret_arn)
        .send()
        .await
        .unwrap();
    assert!(
        secret.deleted_date.is_some(),
        "the secret is scheduled for deletion"
    );
    assert!(
        cloud
            .cloud
            .hosts
            .root(&first)
            .join("etc/ssl/certs/web-cert.pem")
            .exists(),
        "files on hosts stay"
    );
    let again = cloud.certship(&[&unmap[..], &["--yes"]].concat());
    assert_eq!(again.status.code(), Some(1));
    assert!(both(&again).contains("no mapping of"), "{}", both(&again));

    cloud.cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deployment_exits_3_and_names_the_host_and_its_reason() {
    // MaxErrors 1: the healthy host gets the command whichever host goes first
    let cloud = start_with(|options| {
        options
            .override_association(&certship_local::AssociationOverrides {
                max_errors: Some("1".into()),
                ..Default::default()
            })
            .unwrap();
    })
    .await;
    let good = cloud.host("qa", Simulation::Healthy).await;
    let bad = cloud.host("qa", Simulation::ReloadFails).await;
    let arn = cloud.certificate().await;

    let deployed = cloud.certship(&[
        "deploy",
        "--certificate-arn",
        &arn,
        "--name",
        "api",
        "--target",
        "env=qa",
        "--reload-service",
        "nginx",
        "--wait",
    ]);
    let text = stdout(&deployed);
    assert_eq!(deployed.status.code(), Some(3), "{}", both(&deployed));
    assert!(text.contains("Deployment failed: InstallFailed"), "{text}");
    let row = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {text}"))
            .to_string()
    };
    assert!(row(&good).contains("Converged"), "{}", row(&good));
    assert!(row(&bad).contains("Failed"), "{}", row(&bad));
    assert!(
        row(&bad).contains("rolled back"),
        "the reason: {}",
        row(&bad)
    );
    let bad_cells = table_row(&text, &bad);
    assert_eq!(bad_cells["STATE"], "Failed");
    assert_eq!(bad_cells["OUTCOME"], "rolled-back");
    assert!(
        bad_cells["SERIAL"].ends_with("(tried)"),
        "a failed host does not serve the new serial: {bad_cells:?}"
    );
    assert_eq!(table_row(&text, &good)["STATE"], "Converged");

    // hosts --failed names the host that rolled back, and only it
    let failed = json_of(&cloud.certship(&[
        "hosts", "--target", "env=qa", "--failed", "--output", "json",
    ]));
    let failed_hosts: Vec<&str> = failed["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(failed_hosts, [bad.as_str()], "{failed}");
    assert_eq!(failed["hosts"][0]["outcome"], "rolled-back");

    // a bad request is refused before anything starts, naming the flag
    let before = cloud.executions().await;
    for (args, expected) in [
        (vec!["--name", "../web", "--target", "env=qa"], "--name"),
        (
            vec!["--name", "web", "--target", "aws:env=qa"],
            "--target key",
        ),
        (
            vec![
                "--name",
                "web",
                "--target",
                "env=qa",
                "--reload-service",
                "nginx;reboot",
            ],
            "--reload-service",
        ),
    ] {
        let refused = cloud.certship(&[&["deploy", "--certificate-arn", &arn][..], &args].concat());
        assert_eq!(refused.status.code(), Some(1), "{}", both(&refused));
        assert!(
            both(&refused).contains(expected),
            "{expected}: {}",
            both(&refused)
        );
    }
    let no_target = cloud.certship(&[
        "deploy",
        "--certificate-arn",
        &arn,
        "--name",
        "web",
        "--target",
        "qa",
    ]);
    assert_eq!(
        no_target.status.code(),
        Some(2),
        "clap's usage error: {}",
        both(&no_target)
    );
    assert!(both(&no_target).contains("KEY=VALUE"));
    assert_eq!(cloud.executions().await, before, "nothing started");

    // the API refuses what its model refuses, and unsigned calls
    let unsigned = certship_local::http::post_json(
        &format!("{}{API_PATH}", cloud.cloud.endpoint),
        &json!({"CertificateArn": arn, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "qa"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        unsigned.contains("403") && unsigned.contains("Missing Authentication Token"),
        "{unsigned}"
    );

    // signed bodies that only the functions used to refuse (AWS answered 202, the execution
    // failed a second later) get 400 from the model, and start nothing
    let (_, rest) = arn
        .split_once(&format!("arn:aws:acm:{}:", cloud.cloud.region))
        .expect("a certificate of the cloud's region");
    let china = format!("arn:aws-cn:acm:cn-north-1:{rest}");
    let url = format!("{}{API_PATH}", cloud.cloud.endpoint);
    let body = json!({"CertificateArn": arn, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "qa"});
    let before = cloud.executions().await;
    for (field, value) in [
        ("ReloadService", "sshd"),
        ("ReloadService", "sshd.service"),
        ("CertificateArn", china.as_str()),
    ] {
        let mut hostile = body.clone();
        hostile[field] = json!(value);
        let answer = certship_cli::ops::api::post_signed(cloud.cloud.sdk_config(), &url, &hostile)
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{hostile}: {:?}", answer.body);
        assert_eq!(answer.body["error"], "InvalidRequest", "{:?}", answer.body);
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("/{field}"))),
            "{:?}",
            answer.body
        );
    }
    assert_eq!(cloud.executions().await, before, "nothing started");

    cloud.cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_draws_a_live_line_in_a_terminal_and_stack_outputs_find_certship() {
    let cloud = start().await;
    cloud.host("stage", Simulation::Healthy).await;
    let arn = cloud.certificate().await;
    let started = json_of(&cloud.certship(&[
        "deploy",
        "--certificate-arn",
        &arn,
        "--name",
        "web",
        "--target",
        "env=stage",
        "--output",
        "json",
    ]));
    let execution = started["executionArn"].as_str().unwrap();

    // `script` gives the command a pseudo-terminal, as an operator's shell does
    let command = format!("{} follow {execution}", env!("CARGO_BIN_EXE_certship"));
    let mut script = Command::new("script");
    script.args(["--quiet", "--return", "--command", &command, "/dev/null"]);
    for (name, value) in cloud.env() {
        script.env(name, value);
    }
    let output = script
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("\r\x1b[K"),
        "the line is redrawn in place: {text:?}"
    );
    assert!(
        ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
            .iter()
            .any(|c| text.contains(*c)),
        "a spinner: {text:?}"
    );
    assert!(text.contains("Deployed."), "{text}");

    // without any way to find certship, the error says what to do
    let lost = certship_with(
        &[
            ("AWS_ENDPOINT_URL", cloud.cloud.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", cloud.cloud.region.clone()),
        ],
        &["status"],
    );
    assert_eq!(lost.status.code(), Some(1));
    assert!(both(&lost).contains("--stack"), "{}", both(&lost));
    assert!(
        both(&lost).contains("certship local env"),
        "{}",
        both(&lost)
    );
    let unset: Vec<_> = cloud
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("CERTSHIP_"))
        .collect();
    let no_stack = certship_with(&unset, &["status", "--stack", "no-such-stack"]);
    assert_eq!(no_stack.status.code(), Some(1), "{}", both(&no_stack));
    assert!(
        both(&no_stack).contains("no-such-stack"),
        "{}",
        both(&no_stack)
    );

    // with --stack, the stack's outputs name the table, the state machine and the API
    let outputs = json!({
        "TableName": cloud.cloud.table_name,
        "EvidenceTableName": cloud.evidence_table,
        "StateMachineArn": cloud.cloud.state_machine_arn,
        "ApiUrl": format!("{}{API_PATH}", cloud.cloud.endpoint),
    });
    let create_stack = |name: &'static str, outputs: Value| {
        let template = json!({
            "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": outputs.as_object().unwrap().iter()
                .map(|(k, v)| (k.clone(), json!({"Value": v})))
                .collect::<serde_json::Map<_, _>>(),
        });
        let cloudformation = aws_sdk_cloudformation::Client::new(cloud.cloud.sdk_config());
        async move {
            cloudformation
                .create_stack()
                .stack_name(name)
                .template_body(template.to_string())
                .send()
                .await
                .unwrap();
        }
    };
    create_stack("certship-local", outputs.clone()).await;
    // a stack from before convergence: no EvidenceTableName
    let mut older = outputs.clone();
    older.as_object_mut().unwrap().remove("EvidenceTableName");
    create_stack("certship-older", older).await;
    let by_stack = certship_with(
        &unset,
        &[
            "deploy",
            "--stack",
            "certship-local",
            "--certificate-arn",
            &arn,
            "--name",
            "web",
            "--target",
            "env=stage",
            "--output",
            "json",
        ],
    );
    assert_eq!(json_of(&by_stack)["via"], "api", "{}", both(&by_stack));
    let status = certship_with(
        &unset,
        &["status", "--stack", "certship-local", "--output", "json"],
    );
    assert_eq!(json_of(&status)[0]["certName"], "web", "{}", both(&status));
    assert_eq!(
        json_of(&status)[0]["hosts"]["total"],
        1,
        "{}",
        both(&status)
    );
    let hosts = certship_with(
        &unset,
        &[
            "hosts",
            "--stack",
            "certship-local",
            "--target",
            "env=stage",
        ],
    );
    assert_eq!(hosts.status.code(), Some(0), "{}", both(&hosts));

    // an older stack: hosts says what is missing; status still shows, with `?` for HOSTS
    let hosts = certship_with(
        &unset,
        &[
            "hosts",
            "--stack",
            "certship-older",
            "--target",
            "env=stage",
        ],
    );
    assert_eq!(hosts.status.code(), Some(1), "{}", both(&hosts));
    assert!(
        both(&hosts).contains("predates per-host evidence"),
        "{}",
        both(&hosts)
    );
    let status = certship_with(&unset, &["status", "--stack", "certship-older"]);
    assert_eq!(status.status.code(), Some(0), "{}", both(&status));
    assert!(
        stdout(&status).contains("HOSTS ?: stack certship-older has no output EvidenceTableName"),
        "{}",
        both(&status)
    );
    let history = certship_with(
        &unset,
        &[
            "history",
            "--stack",
            "certship-local",
            "--certificate-arn",
            &arn,
            "--output",
            "json",
        ],
    );
    assert_eq!(
        json_of(&history).as_array().unwrap().len(),
        2,
        "{}",
        both(&history)
    );

    cloud.cloud.stop().await;
}
