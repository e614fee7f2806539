//! SSM Run Command for the local cloud. moto accepts SendCommand but runs nothing and reports
//! Success for every host; this serves SendCommand, ListCommands, ListCommandInvocations and
//! GetCommandInvocation itself: it resolves tag targets against the emulator's EC2 instances, runs
//! the document's unmodified script with bash for each simulated host, with that host's directory
//! as its filesystem root, and reports real statuses, output, failures and timeouts.

use super::hosts::{Hosts, Simulation};
use certship_shared::rate::Rate;
use certship_stack::document::CommandDocument;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

/// The operations served here; every other SSM call goes to moto.
pub const OPERATIONS: [&str; 4] = [
    "SendCommand",
    "ListCommands",
    "ListCommandInvocations",
    "GetCommandInvocation",
];

/// An SSM error as the JSON protocol returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmError {
    pub code: &'static str,
    pub message: String,
}

impl SsmError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// SSM truncates output this way in ListCommandInvocations and GetCommandInvocation.
const PLUGIN_OUTPUT_LIMIT: usize = 2500;
const STDOUT_LIMIT: usize = 24_000;
const STDERR_LIMIT: usize = 8_000;
const DEFAULT_DELIVERY_TIMEOUT: u64 = 3600;
const DEFAULT_EXECUTION_TIMEOUT: u64 = 3600;

/// What a simulated host's script runs with besides the document's parameters.
#[derive(Debug, Clone)]
pub struct HostEnvironment {
    /// The gateway, which the host's AWS CLI calls.
    pub endpoint: String,
    pub region: String,
    /// Directories put before the system's on the host's PATH: the stand-in `systemctl`, the
    /// project virtualenv's `aws`.
    pub path_prefix: Vec<PathBuf>,
    /// The user and group that stand for `root` on a simulated host when the local cloud does not
    /// run as root.
    pub owner: Option<(String, String)>,
}

#[derive(Debug, Clone)]
struct Invocation {
    instance_id: String,
    status: &'static str,
    status_details: &'static str,
    response_code: i32,
    stdout: String,
    stderr: String,
    started: Option<SystemTime>,
    finished: Option<SystemTime>,
}

#[derive(Debug, Clone)]
struct Command {
    id: String,
    document_name: String,
    comment: String,
    parameters: BTreeMap<String, Vec<String>>,
    targets: Value,
    requested_at: SystemTime,
    timeout_seconds: u64,
    max_concurrency: String,
    max_errors: String,
    plugin_name: String,
    invocations: Vec<Invocation>,
}

impl Command {
    fn status(&self) -> &'static str {
        if self.invocations.iter().any(|i| !is_terminal(i.status)) {
            "InProgress"
        } else if self.invocations.iter().all(|i| i.status == "Success") {
            "Success"
        } else {
            "Failed"
        }
    }

    fn count(&self, pred: impl Fn(&Invocation) -> bool) -> usize {
        self.invocations.iter().filter(|i| pred(i)).count()
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "Success" | "Failed" | "TimedOut" | "Cancelled")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Target {
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendCommandInput {
    document_name: String,
    #[serde(default)]
    instance_ids: Vec<String>,
    #[serde(default)]
    targets: Vec<Target>,
    #[serde(default)]
    parameters: BTreeMap<String, Vec<String>>,
    timeout_seconds: Option<u64>,
    max_concurrency: Option<String>,
    max_errors: Option<String>,
    comment: Option<String>,
}

/// The script to run and how, once the parameters are checked against the document.
#[derive(Debug, Clone)]
struct Plan {
    script: String,
    plugin_name: String,
    execution_timeout: Duration,
    parameters: BTreeMap<String, String>,
}

/// The Run Command emulator.
pub struct RunCommand {
    /// Documents and instances come from moto.
    moto_ssm: aws_sdk_ssm::Client,
    moto_ec2: aws_sdk_ec2::Client,
    hosts: Hosts,
    host_env: HostEnvironment,
    commands: Mutex<BTreeMap<String, Command>>,
    /// Process groups of scripts still running, stopped at shutdown.
    running: Mutex<HashSet<i32>>,
    stopping: AtomicBool,
}

impl RunCommand {
    pub fn new(
        moto_config: &aws_config::SdkConfig,
        hosts: Hosts,
        host_env: HostEnvironment,
    ) -> Self {
        Self {
            moto_ssm: aws_sdk_ssm::Client::new(moto_config),
            moto_ec2: aws_sdk_ec2::Client::new(moto_config),
            hosts,
            host_env,
            commands: Mutex::new(BTreeMap::new()),
            running: Mutex::new(HashSet::new()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Serves one SSM JSON call.
    pub async fn call(self: &Arc<Self>, operation: &str, body: &[u8]) -> Result<Value, SsmError> {
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| SsmError::new("ValidationException", e.to_string()))?
        };
        match operation {
            "SendCommand" => self.send_command(input).await,
            "ListCommands" => self.list_commands(&input),
            "ListCommandInvocations" => self.list_command_invocations(&input),
            "GetCommandInvocation" => self.get_command_invocation(&input),
            other => Err(SsmError::new(
                "UnsupportedOperation",
                format!("{other} is not served by the local Run Command"),
            )),
        }
    }

    /// Stops every script still running and starts no more: SIGTERM, so their EXIT traps
    /// clean up, then SIGKILL for any still there half a second later.
    pub fn shutdown(&self) {
        let groups: Vec<i32> = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            self.stopping.store(true, Ordering::SeqCst);
            running.drain().collect()
        };
        if groups.is_empty() {
            return;
        }
        for group in &groups {
            signal_group(*group, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(500));
        for group in groups {
            signal_group(group, libc::SIGKILL);
        }
    }

    async fn send_command(self: &Arc<Self>, input: Value) -> Result<Value, SsmError> {
        let input: SendCommandInput = serde_json::from_value(input)
            .map_err(|e| SsmError::new("ValidationException", e.to_string()))?;
        let plan = self.plan(&input).await?;
        let instance_ids = self.resolve_targets(&input).await?;
        let max_concurrency = input.max_concurrency.clone().unwrap_or_else(|| "50".into());
        let max_errors = input.max_errors.clone().unwrap_or_else(|| "0".into());
        let concurrency = Rate::max_concurrency(&max_concurrency).ok_or_else(|| {
            SsmError::new(
                "ValidationException",
                format!("MaxConcurrency {max_concurrency:?} is invalid"),
            )
        })?;
        let error_limit = Rate::max_errors(&max_errors).ok_or_else(|| {
            SsmError::new(
                "ValidationException",
                format!("MaxErrors {max_errors:?} is invalid"),
            )
        })?;
        let (concurrency, error_limit) = (
            concurrency.hosts(instance_ids.len()),
            error_limit.hosts(instance_ids.len()),
        );
        let now = SystemTime::now();
        let command = Command {
            id: new_command_id(),
            document_name: input.document_name.clone(),
            comment: input.comment.clone().unwrap_or_default(),
            parameters: input.parameters.clone(),
            targets: json!(
                input
                    .targets
                    .iter()
                    .map(|t| json!({"Key": t.key, "Values": t.values}))
                    .collect::<Vec<_>>()
            ),
            requested_at: now,
            timeout_seconds: input.timeout_seconds.unwrap_or(DEFAULT_DELIVERY_TIMEOUT),
            max_concurrency,
            max_errors,
            plugin_name: plan.plugin_name.clone(),
            invocations: instance_ids
                .iter()
                .map(|id| Invocation {
                    instance_id: id.clone(),
                    status: "Pending",
                    status_details: "Pending",
                    response_code: -1,
                    stdout: String::new(),
                    stderr: String::new(),
                    started: None,
                    finished: None,
                })
                .collect(),
        };
        let response = json!({ "Command": command_json(&command) });
        let id = command.id.clone();
        let delivery_deadline =
            tokio::time::Instant::now() + Duration::from_secs(command.timeout_seconds);
        self.lock().insert(id.clone(), command);
        tracing::info!(command_id = %id, document = %input.document_name, hosts = instance_ids.len(), "command sent");
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.run(
                id,
                plan,
                instance_ids,
                concurrency,
                error_limit,
                delivery_deadline,
            )
            .await;
        });
        Ok(response)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Command>> {
        self.commands.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the document from the emulator and checks the parameters as SSM does.
    async fn plan(&self, input: &SendCommandInput) -> Result<Plan, SsmError> {
        let content = self
            .moto_ssm
            .get_document()
            .name(&input.document_name)
            .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
            .send()
            .await
            .map_err(|_| {
                SsmError::new(
                    "InvalidDocument",
                    format!("Document {} does not exist", input.document_name),
                )
            })?
            .content
            .unwrap_or_default();
        let document = CommandDocument::parse(&content)
            .map_err(|e| SsmError::new("InvalidDocument", format!("unreadable document: {e}")))?;
        let step = document.shell_step().ok_or_else(|| {
            SsmError::new(
                "InvalidDocument",
                "the local cloud runs documents of one aws:runShellScript step",
            )
        })?;
        for name in input.parameters.keys() {
            if !document.parameters.contains_key(name) {
                return Err(SsmError::new(
                    "InvalidParameters",
                    format!("Parameter {name} is not defined in the document"),
                ));
            }
        }
        let mut parameters = BTreeMap::new();
        for (name, spec) in &document.parameters {
            let value = match input.parameters.get(name) {
                Some(values) if values.len() == 1 => values[0].clone(),
                Some(_) => {
                    return Err(SsmError::new(
                        "InvalidParameters",
                        format!("Parameter {name} takes one value"),
                    ));
                }
                None => match &spec.default {
                    Some(default) => default.clone(),
                    None => {
                        return Err(SsmError::new(
                            "InvalidParameters",
                            format!("Parameter {name} is required"),
                        ));
                    }
                },
            };
            if let Some(pattern) = &spec.allowed_pattern {
                let regex = regex::Regex::new(pattern).map_err(|e| {
                    SsmError::new("InvalidDocument", format!("pattern of {name}: {e}"))
                })?;
                if !regex.is_match(&value) {
                    return Err(SsmError::new(
                        "InvalidParameters",
                        format!("Parameter {name} value {value:?} fails allowedPattern {pattern}"),
                    ));
                }
            }
            parameters.insert(name.clone(), value);
        }
        let execution_timeout = step.timeout_seconds().unwrap_or(DEFAULT_EXECUTION_TIMEOUT);
        Ok(Plan {
            script: step.script(),
            plugin_name: step.name.clone(),
            execution_timeout: Duration::from_secs(execution_timeout),
            parameters,
        })
    }

    /// The managed nodes the command is for, in instance id order. The simulated hosts are the
    /// local cloud's managed nodes; other EC2 instances have no agent, so tags never select them.
    async fn resolve_targets(&self, input: &SendCommandInput) -> Result<Vec<String>, SsmError> {
        let mut ids: Vec<String> = input.instance_ids.clone();
        for target in &input.targets {
            if target.key == "InstanceIds" {
                ids.extend(target.values.iter().cloned());
            }
        }
        if let Some(unknown) = ids.iter().find(|id| self.hosts.load(id).is_none()) {
            return Err(SsmError::new(
                "InvalidInstanceId",
                format!("{unknown} is not a managed node of the local cloud"),
            ));
        }
        for target in &input.targets {
            if target.key == "InstanceIds" {
                continue;
            }
            let Some(tag) = target.key.strip_prefix("tag:") else {
                return Err(SsmError::new(
                    "InvalidTarget",
                    format!(
                        "target key {} is not served locally (use tag:KEY or InstanceIds)",
                        target.key
                    ),
                ));
            };
            let mut pages = self
                .moto_ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name(format!("tag:{tag}"))
                        .set_values(Some(target.values.clone()))
                        .build(),
                )
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-state-name")
                        .values("running")
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    SsmError::new("InternalServerError", format!("DescribeInstances: {e}"))
                })?;
                for reservation in page.reservations() {
                    for instance in reservation.instances() {
                        if let Some(id) = instance.instance_id()
                            && self.hosts.load(id).is_some()
                        {
                            ids.push(id.to_string());
                        }
                    }
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Runs the command on its hosts, `concurrency` at a time, sending to no further host once
    /// more than `error_limit` have failed.
    async fn run(
        self: Arc<Self>,
        command_id: String,
        plan: Plan,
        instance_ids: Vec<String>,
        concurrency: usize,
        error_limit: usize,
        delivery_deadline: tokio::time::Instant,
    ) {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let errors = Arc::new(AtomicUsize::new(0));
        let plan = Arc::new(plan);
        let mut tasks = Vec::new();
        for (index, instance_id) in instance_ids.iter().enumerate() {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            if errors.load(Ordering::SeqCst) > error_limit {
                for id in &instance_ids[index..] {
                    self.finish(&command_id, id, "Cancelled", "Cancelled", -1, None);
                }
                break;
            }
            let this = Arc::clone(&self);
            let (command_id, instance_id, plan, errors) = (
                command_id.clone(),
                instance_id.clone(),
                Arc::clone(&plan),
                Arc::clone(&errors),
            );
            tasks.push(tokio::spawn(async move {
                let failed = this
                    .run_on_host(&command_id, &instance_id, &plan, delivery_deadline)
                    .await;
                if failed {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                drop(permit);
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    fn update(&self, command_id: &str, instance_id: &str, f: impl FnOnce(&mut Invocation)) {
        if let Some(invocation) = self.lock().get_mut(command_id).and_then(|c| {
            c.invocations
                .iter_mut()
                .find(|i| i.instance_id == instance_id)
        }) {
            f(invocation);
        }
    }

    fn finish(
        &self,
        command_id: &str,
        instance_id: &str,
        status: &'static str,
        details: &'static str,
        code: i32,
        output: Option<(String, String)>,
    ) {
        tracing::info!(command_id, instance_id, status, "host finished");
        self.update(command_id, instance_id, |i| {
            i.status = status;
            i.status_details = details;
            i.response_code = code;
            i.finished = Some(SystemTime::now());
            if let Some((stdout, stderr)) = output {
                i.stdout = stdout;
                i.stderr = stderr;
            }
        });
    }

    /// Runs the script on one host; true when the host counts as an error toward MaxErrors.
    async fn run_on_host(
        &self,
        command_id: &str,
        instance_id: &str,
        plan: &Plan,
        delivery_deadline: tokio::time::Instant,
    ) -> bool {
        let host = self.hosts.load(instance_id);
        let Some(host) = host.filter(|h| h.simulate != Simulation::Offline) else {
            // Only simulated hosts are targeted, so this is one whose agent is offline.
            // No agent answers: SSM keeps the invocation pending until the delivery timeout,
            // which does not count toward MaxErrors.
            tokio::time::sleep_until(delivery_deadline).await;
            self.finish(
                command_id,
                instance_id,
                "TimedOut",
                "Delivery Timed Out",
                -1,
                None,
            );
            return false;
        };
        self.update(command_id, instance_id, |i| {
            i.status = "InProgress";
            i.status_details = "In Progress";
            i.started = Some(SystemTime::now());
        });
        let root = self.hosts.root(instance_id);
        match self
            .execute(command_id, instance_id, &root, plan, host.simulate)
            .await
        {
            Ok(Some((code, stdout, stderr))) => {
                let (status, details) = if code == 0 {
                    ("Success", "Success")
                } else {
                    ("Failed", "Failed")
                };
                self.finish(
                    command_id,
                    instance_id,
                    status,
                    details,
                    code,
                    Some((stdout, stderr)),
                );
                code != 0
            }
            Ok(None) => {
                self.finish(
                    command_id,
                    instance_id,
                    "TimedOut",
                    "Execution Timed Out",
                    -1,
                    Some((
                        String::new(),
                        format!(
                            "the script ran longer than its {} s timeout and was stopped",
                            plan.execution_timeout.as_secs()
                        ),
                    )),
                );
                true
            }
            Err(e) => {
                self.finish(
                    command_id,
                    instance_id,
                    "Failed",
                    "Failed",
                    1,
                    Some((
                        String::new(),
                        format!("the local agent could not run the script: {e}"),
                    )),
                );
                true
            }
        }
    }

    /// Writes the script where the agent would and runs it with bash; `None` on timeout.
    async fn execute(
        &self,
        command_id: &str,
        instance_id: &str,
        root: &Path,
        plan: &Plan,
        simulate: Simulation,
    ) -> std::io::Result<Option<(i32, String, String)>> {
        let work = root
            .join("var/lib/amazon/ssm")
            .join(instance_id)
            .join("document/orchestration")
            .join(command_id)
            .join(&plan.plugin_name);
        tokio::fs::create_dir_all(&work).await?;
        tokio::fs::create_dir_all(root.join("tmp")).await?;
        let script = work.join("_script.sh");
        tokio::fs::write(&script, &plan.script).await?;

        let mut command = tokio::process::Command::new("bash");
        command
            .arg(&script)
            .current_dir(&work)
            .env_clear()
            .envs(self.environment(instance_id, root, plan, simulate))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = {
            // Registered under the lock that shutdown takes, so no script starts after it.
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if self.stopping.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the local cloud is stopping"));
            }
            let child = command.spawn()?;
            if let Some(id) = child.id() {
                running.insert(id as i32);
            }
            child
        };
        let group = child.id().map(|id| id as i32);
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let waited = tokio::time::timeout(plan.execution_timeout, child.wait()).await;
        // Whatever the script left behind in its group goes too: SIGTERM first, so its EXIT
        // trap removes the private temporary directory, then SIGKILL.
        if let Some(group) = group {
            terminate_group(group).await;
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&group);
        }
        let status = match waited {
            Ok(status) => status?,
            Err(_elapsed) => {
                let _ = child.kill().await;
                return Ok(None);
            }
        };
        let collect = |task: tokio::task::JoinHandle<Vec<u8>>| async move {
            match tokio::time::timeout(Duration::from_secs(2), task).await {
                Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            }
        };
        Ok(Some((
            status.code().unwrap_or(-1),
            collect(stdout).await,
            collect(stderr).await,
        )))
    }

    /// The script's environment: what the agent gives it, with the host's directory standing in
    /// for `/` in the directory parameters.
    fn environment(
        &self,
        instance_id: &str,
        root: &Path,
        plan: &Plan,
        simulate: Simulation,
    ) -> HashMap<String, String> {
        let env = &self.host_env;
        let mut path: Vec<String> = env
            .path_prefix
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        path.push("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        let mut vars = HashMap::from([
            ("PATH".to_string(), path.join(":")),
            ("HOME".into(), root.display().to_string()),
            ("TMPDIR".into(), root.join("tmp").display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
            ("AWS_ENDPOINT_URL".into(), env.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_DEFAULT_REGION".into(), env.region.clone()),
            ("AWS_SSM_INSTANCE_ID".into(), instance_id.into()),
            ("AWS_SSM_REGION_NAME".into(), env.region.clone()),
            ("CERTSHIP_HOST_ROOT".into(), root.display().to_string()),
            (
                "CERTSHIP_HOST_RELOAD".into(),
                match simulate {
                    Simulation::ReloadFails => "fails".into(),
                    _ => "ok".into(),
                },
            ),
        ]);
        for (name, value) in &plan.parameters {
            let value = match name.as_str() {
                "CertificateDirectory" | "PrivateKeyDirectory" => {
                    format!("{}{value}", root.display())
                }
                "FileOwner" => env
                    .owner
                    .as_ref()
                    .map_or(value.clone(), |(user, _)| user.clone()),
                "FileGroup" => env
                    .owner
                    .as_ref()
                    .map_or(value.clone(), |(_, group)| group.clone()),
                _ => value.clone(),
            };
            vars.insert(format!("SSM_{name}"), value);
        }
        vars
    }

    fn find(&self, input: &Value) -> Result<Command, SsmError> {
        let id = input["CommandId"].as_str().unwrap_or_default();
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| SsmError::new("InvalidCommandId", format!("command {id:?} not found")))
    }

    fn list_commands(&self, input: &Value) -> Result<Value, SsmError> {
        let commands: Vec<Value> = if input.get("CommandId").is_some() {
            vec![command_json(&self.find(input)?)]
        } else {
            self.lock().values().map(command_json).collect()
        };
        Ok(json!({ "Commands": commands }))
    }

    fn list_command_invocations(&self, input: &Value) -> Result<Value, SsmError> {
        let command = self.find(input)?;
        let details = input["Details"].as_bool().unwrap_or(false);
        let max_results = input["MaxResults"].as_u64().unwrap_or(50).clamp(1, 50) as usize;
        let start: usize = input["NextToken"]
            .as_str()
            .map(|t| {
                t.parse()
                    .map_err(|_| SsmError::new("InvalidNextToken", "the NextToken is not valid"))
            })
            .transpose()?
            .unwrap_or(0);
        let instance = input["InstanceId"].as_str();
        let selected: Vec<&Invocation> = command
            .invocations
            .iter()
            .filter(|i| instance.is_none_or(|id| id == i.instance_id))
            .collect();
        let page: Vec<Value> = selected
            .iter()
            .skip(start)
            .take(max_results)
            .map(|i| invocation_json(&command, i, details))
            .collect();
        let mut response = json!({ "CommandInvocations": page });
        if start + max_results < selected.len() {
            response["NextToken"] = json!((start + max_results).to_string());
        }
        Ok(response)
    }

    fn get_command_invocation(&self, input: &Value) -> Result<Value, SsmError> {
        let command = self.find(input)?;
        let instance_id = input["InstanceId"].as_str().unwrap_or_default();
        let invocation = command
            .invocations
            .iter()
            .find(|i| i.instance_id == instance_id)
            .ok_or_else(|| {
                SsmError::new(
                    "InvocationDoesNotExist",
                    format!("no invocation of {} on {instance_id}", command.id),
                )
            })?;
        let elapsed = match (invocation.started, invocation.finished) {
            (Some(s), Some(f)) => format!(
                "PT{:.3}S",
                f.duration_since(s).unwrap_or_default().as_secs_f64()
            ),
            _ => String::new(),
        };
        Ok(json!({
            "CommandId": command.id,
            "InstanceId": invocation.instance_id,
            "Comment": command.comment,
            "DocumentName": command.document_name,
            "DocumentVersion": "$DEFAULT",
            "PluginName": command.plugin_name,
            "ResponseCode": invocation.response_code,
            "ExecutionStartDateTime": invocation.started.map(iso).unwrap_or_default(),
            "ExecutionEndDateTime": invocation.finished.map(iso).unwrap_or_default(),
            "ExecutionElapsedTime": elapsed,
            "Status": invocation.status,
            "StatusDetails": invocation.status_details,
            "StandardOutputContent": truncate(&invocation.stdout, STDOUT_LIMIT),
            "StandardErrorContent": truncate(&invocation.stderr, STDERR_LIMIT),
        }))
    }
}

fn command_json(command: &Command) -> Value {
    let instance_ids: Vec<&str> = command
        .invocations
        .iter()
        .map(|i| i.instance_id.as_str())
        .collect();
    json!({
        "CommandId": command.id,
        "DocumentName": command.document_name,
        "DocumentVersion": "$DEFAULT",
        "Comment": command.comment,
        "Parameters": command.parameters,
        "InstanceIds": instance_ids,
        "Targets": command.targets,
        "RequestedDateTime": epoch(command.requested_at),
        "ExpiresAfter": epoch(command.requested_at + Duration::from_secs(command.timeout_seconds)),
        "Status": command.status(),
        "StatusDetails": command.status(),
        "TargetCount": command.invocations.len(),
        "CompletedCount": command.count(|i| is_terminal(i.status)),
        "ErrorCount": command.count(|i| matches!(i.status, "Failed") || i.status_details == "Execution Timed Out"),
        "DeliveryTimedOutCount": command.count(|i| i.status_details == "Delivery Timed Out"),
        "MaxConcurrency": command.max_concurrency,
        "MaxErrors": command.max_errors,
        "TimeoutSeconds": command.timeout_seconds,
    })
}

fn invocation_json(command: &Command, invocation: &Invocation, details: bool) -> Value {
    let mut value = json!({
        "CommandId": command.id,
        "InstanceId": invocation.instance_id,
        "InstanceName": "",
        "Comment": command.comment,
        "DocumentName": command.document_name,
        "DocumentVersion": "$DEFAULT",
        "RequestedDateTime": epoch(command.requested_at),
        "Status": invocation.status,
        "StatusDetails": invocation.status_details,
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": [],
    });
    if details {
        value["CommandPlugins"] = json!([{
            "Name": command.plugin_name,
            "Status": invocation.status,
            "StatusDetails": invocation.status_details,
            "ResponseCode": invocation.response_code,
            "ResponseStartDateTime": invocation.started.map(epoch),
            "ResponseFinishDateTime": invocation.finished.map(epoch),
            "Output": plugin_output(&invocation.stdout, &invocation.stderr),
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
        }]);
    }
    value
}

/// Standard output, then standard error under SSM's own separator, within SSM's limit.
fn plugin_output(stdout: &str, stderr: &str) -> String {
    let mut output = stdout.to_string();
    if !stderr.is_empty() {
        output.push_str("\n----------ERROR-------\n");
        output.push_str(stderr);
    }
    truncate(&output, PLUGIN_OUTPUT_LIMIT)
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn iso(t: SystemTime) -> String {
    certship_shared::time::rfc3339(t)
}

fn new_command_id() -> String {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .unwrap_or_else(|_| {
            let nanos = epoch(SystemTime::now()).to_bits().to_le_bytes();
            bytes[..8].copy_from_slice(&nanos);
        });
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Reads a pipe to its end in a task of its own, so the script's exit is not held up by it.
fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        bytes
    })
}

/// Signals a process group; false when no process is left in it.
fn signal_group(group: i32, signal: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals a process group this process created; it has
    // no memory effects here.
    unsafe { libc::kill(-group, signal) == 0 }
}

/// SIGTERM to the group, then SIGKILL after two seconds if anything in it still runs.
async fn terminate_group(group: i32) {
    if !signal_group(group, libc::SIGTERM) {
        return;
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !signal_group(group, 0) {
            return;
        }
    }
    signal_group(group, libc::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_ssm_separator_and_limit() {
        assert_eq!(plugin_output("ok\n", ""), "ok\n");
        assert_eq!(
            plugin_output("a", "b"),
            "a\n----------ERROR-------\nb".to_string()
        );
        assert_eq!(plugin_output(&"é".repeat(2000), "").len(), 2500);
    }

    #[test]
    fn command_ids_look_like_ssm_ones_and_differ() {
        let (a, b) = (new_command_id(), new_command_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
