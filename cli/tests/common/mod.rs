//! The harness the end-to-end tests share: a local cloud of the test's own, its hosts, its
//! deployments, and what the hosts hold and reported.
#![allow(dead_code)] // each test binary uses its own part of the harness

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use certship_cli::demo::{
    installed_files, installed_serial, key_matches_certificate, request_certificate,
    start_deployment,
};
use certship_cli::ops::execution::{self, Ending};
use certship_cli::ops::watch::{Progress, watch};
use certship_local::hosts::{self, Simulation};
use certship_local::provision::OUTPUT_BUCKET_NAME;
use certship_local::{LocalCloud, LocalOptions};
use certship_shared::DeploymentRequest;
use certship_shared::evidence::HostEvidence;
use certship_shared::mapping::{Mapping, request_key};
use certship_shared::naming::mapping_id;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const CERT_NAME: &str = "web";

/// A local cloud of the test's own, with its state in a temporary directory.
pub struct Cloud {
    cloud: LocalCloud,
    _state: TempDir,
}

impl std::ops::Deref for Cloud {
    type Target = LocalCloud;
    fn deref(&self) -> &LocalCloud {
        &self.cloud
    }
}

pub async fn start(configure: impl FnOnce(&mut LocalOptions)) -> Cloud {
    certship_testkit::moto::venv_python().expect("the project virtualenv");
    let state = tempfile::Builder::new()
        .prefix("certship-e2e-")
        .tempdir()
        .unwrap();
    let mut options = LocalOptions::new(certship_testkit::moto::project_root());
    options.state_dir = state.path().to_path_buf();
    configure(&mut options);
    let cloud = LocalCloud::start(options)
        .await
        .expect("the local cloud starts");
    Cloud {
        cloud,
        _state: state,
    }
}

impl Cloud {
    /// Stops moto, the gateway and every host script now (SIGTERM first).
    pub async fn stop(self) {
        self.cloud.stop().await;
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(self.sdk_config())
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(self.sdk_config())
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(self.sdk_config())
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(self.sdk_config())
                .force_path_style(true)
                .build(),
        )
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(self.sdk_config())
    }

    /// A simulated host tagged `env=<env>`.
    pub async fn host(&self, env: &str, simulate: Simulation) -> String {
        self.host_tagged(&[("env", env)], simulate).await
    }

    /// A simulated host with `tags` (none: an untagged host).
    pub async fn host_tagged(&self, tags: &[(&str, &str)], simulate: Simulation) -> String {
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>();
        hosts::add(&self.ec2(), &self.hosts, &tags, simulate)
            .await
            .unwrap()
            .instance_id
    }

    pub async fn tag(&self, instance_id: &str, key: &str, value: &str) {
        let tags = BTreeMap::from([(key.to_string(), value.to_string())]);
        hosts::tag(&self.ec2(), &self.hosts, instance_id, &tags)
            .await
            .unwrap();
    }

    pub async fn untag(&self, instance_id: &str, key: &str) {
        hosts::untag(&self.ec2(), &self.hosts, instance_id, &[key.to_string()])
            .await
            .unwrap();
    }

    pub fn simulate(&self, instance_id: &str, simulate: Simulation) {
        hosts::set_simulation(&self.hosts, instance_id, simulate).unwrap();
    }

    /// `certship local tick`: every association runs once now on every online target. Returns
    /// how many associations were ticked.
    pub async fn tick(&self) -> u64 {
        certship_local::gateway::tick(&self.endpoint).await.unwrap()
    }

    pub async fn certificate(&self) -> String {
        request_certificate(self.sdk_config(), "www.e2e.certship.test")
            .await
            .unwrap()
    }

    /// Starts a deployment and follows it to its end.
    pub async fn deploy(&self, request: &DeploymentRequest) -> (String, Ending) {
        let execution = start_deployment(self.sdk_config(), &self.state_machine_arn, request)
            .await
            .unwrap();
        let ending = self.wait(&execution).await;
        (execution, ending)
    }

    pub async fn wait(&self, execution: &str) -> Ending {
        tokio::time::timeout(
            Duration::from_secs(120),
            watch(
                &self.sfn(),
                execution,
                Progress::Silent,
                &mut std::io::sink(),
            ),
        )
        .await
        .expect("the execution ends within 2 minutes")
        .unwrap()
        .ending
    }

    pub async fn status(&self, execution: &str) -> ExecutionStatus {
        self.sfn()
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap()
            .status
    }

    /// The state machine's executions, newest first.
    pub async fn execution_list(&self) -> Vec<aws_sdk_sfn::types::ExecutionListItem> {
        self.sfn()
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .send()
            .await
            .unwrap()
            .executions
    }

    pub async fn executions(&self) -> usize {
        self.execution_list().await.len()
    }

    pub async fn history(&self, execution: &str) -> Vec<HistoryEvent> {
        execution::history(&self.sfn(), execution).await.unwrap()
    }

    pub async fn mapping(&self, request: &DeploymentRequest) -> Option<Mapping> {
        let item = self
            .dynamodb()
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(request_key(request)))
            .send()
            .await
            .unwrap()
            .item?;
        Some(Mapping::from_item(&item).unwrap())
    }

    /// Every host's latest evidence for the mapping `request` makes, by instance id.
    pub async fn evidence(&self, request: &DeploymentRequest) -> HashMap<String, HostEvidence> {
        let id = mapping_id(
            &request.cert_name,
            &request.certificate_arn,
            &request.target_tag_key,
            &request.target_tag_value,
        );
        certship_cli::ops::evidence::of_mapping(
            &self.dynamodb(),
            &self.evidence_table_name,
            &id,
            &request.target_tag_value,
        )
        .await
        .unwrap()
    }

    /// Every object the hosts wrote to the association output bucket, with its body.
    pub async fn association_outputs(&self) -> Vec<(String, String)> {
        let s3 = self.s3();
        let listed = s3
            .list_objects_v2()
            .bucket(OUTPUT_BUCKET_NAME)
            .send()
            .await
            .unwrap();
        let mut outputs = Vec::new();
        for object in listed.contents() {
            let key = object.key().unwrap().to_string();
            let body = s3
                .get_object()
                .bucket(OUTPUT_BUCKET_NAME)
                .key(&key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            outputs.push((key, String::from_utf8_lossy(&body).into_owned()));
        }
        outputs
    }

    /// How many SendCommand calls the local cloud's Run Command has taken.
    pub async fn commands_sent(&self) -> usize {
        self.ssm()
            .list_commands()
            .send()
            .await
            .unwrap()
            .commands()
            .len()
    }

    pub fn has_files(&self, instance_id: &str) -> bool {
        self.hosts.root(instance_id).join("etc/ssl").exists()
    }

    pub fn file(&self, instance_id: &str, file: &str) -> PathBuf {
        self.hosts.root(instance_id).join(file)
    }

    /// The reloads the host's `systemctl` logged, in order.
    pub fn reloads(&self, instance_id: &str) -> Vec<String> {
        std::fs::read_to_string(self.file(instance_id, "var/log/systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The serial the host's certificate file holds, if any.
    pub fn serial_on(&self, instance_id: &str) -> Option<String> {
        installed_serial(&self.hosts.root(instance_id), CERT_NAME)
    }

    /// Waits (polling every 100 ms) until the host holds `serial`: all four files there, the
    /// certificate of that serial and the key its own (a swap in progress is not yet holding it).
    /// Returns how long that took, or panics after `limit`.
    pub async fn until_holds(&self, instance_id: &str, serial: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        let root = self.hosts.root(instance_id);
        loop {
            let complete = installed_files(CERT_NAME)
                .iter()
                .all(|(file, _)| root.join(file).exists());
            if complete
                && self
                    .serial_on(instance_id)
                    .is_some_and(|s| certship_shared::serial::same_serial(&s, serial))
                && key_matches_certificate(&root, CERT_NAME).unwrap_or(false)
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{instance_id} does not hold {serial} after {limit:?} (it holds {:?})",
                self.serial_on(instance_id)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the host's evidence for `request`'s mapping satisfies `done`, or panics after
    /// `limit`.
    pub async fn until_evidence(
        &self,
        request: &DeploymentRequest,
        instance_id: &str,
        limit: Duration,
        done: impl Fn(&HostEvidence) -> bool,
    ) -> HostEvidence {
        let started = Instant::now();
        loop {
            let evidence = self.evidence(request).await.remove(instance_id);
            if let Some(e) = evidence.as_ref().filter(|e| done(e)) {
                return e.clone();
            }
            assert!(
                started.elapsed() < limit,
                "{instance_id}'s evidence after {limit:?}: {evidence:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts the host holds the certificate with `serial`, its key, with the right modes.
    pub fn assert_installed(&self, instance_id: &str, serial: &str) {
        use std::os::unix::fs::PermissionsExt;
        let root = self.hosts.root(instance_id);
        for (file, mode) in installed_files(CERT_NAME) {
            let meta = std::fs::metadata(root.join(&file))
                .unwrap_or_else(|e| panic!("{instance_id}: /{file}: {e}"));
            assert_eq!(meta.permissions().mode() & 0o777, mode, "/{file}");
        }
        let installed = installed_serial(&root, CERT_NAME).unwrap();
        assert!(
            certship_shared::serial::same_serial(&installed, serial),
            "{instance_id} has {installed}, expected {serial}"
        );
        assert!(key_matches_certificate(&root, CERT_NAME).unwrap());
    }

    /// The four installed files' bytes and modes, by path.
    pub fn snapshot(&self, instance_id: &str) -> BTreeMap<String, (Vec<u8>, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let root = self.hosts.root(instance_id);
        installed_files(CERT_NAME)
            .into_iter()
            .map(|(file, _)| {
                let path = root.join(&file);
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                (file, (std::fs::read(&path).unwrap(), mode))
            })
            .collect()
    }
}

/// The states entered, in order.
pub fn states_entered(history: &[HistoryEvent]) -> Vec<String> {
    history
        .iter()
        .filter_map(|e| e.state_entered_event_details())
        .map(|d| d.name().to_string())
        .collect()
}

/// The errors of failed Lambda invocations, in order.
/// The errors of every failed Lambda call: a Task naming the function (LambdaFunctionFailed) or
/// the `lambda:invoke` integration the check uses (TaskFailed).
pub fn lambda_errors(history: &[HistoryEvent]) -> Vec<String> {
    history
        .iter()
        .filter_map(|e| match e.r#type() {
            HistoryEventType::LambdaFunctionFailed => e
                .lambda_function_failed_event_details()
                .and_then(|d| d.error()),
            HistoryEventType::TaskFailed => e.task_failed_event_details().and_then(|d| d.error()),
            _ => None,
        })
        .map(str::to_string)
        .collect()
}

pub fn serial_of(ending: &Ending) -> String {
    ending
        .output
        .as_ref()
        .expect("output")
        .export
        .as_ref()
        .expect("the export")
        .serial
        .clone()
}
