//! Deployment figures: one certificate deployed to N hosts on the local cloud, by certship's
//! state machine and by the seed's design (the same Lambdas behind a fixed 15 s Wait between
//! status checks), on the same hosts in the same run.
//!
//! - **Overhead** is trigger to the execution's end, minus the hosts' own time (the first host's
//!   run start, from its evidence, to the last host's run end, from State Manager's execution
//!   targets): what certship adds to the hosts' work.
//! - **Counts** come from the execution's history (states entered), the local cloud's function
//!   invocations (requests and handler time, as Lambda bills them) and the gateway's call counter
//!   by caller. The bench reads everything through moto directly, so its own reads are not
//!   counted; the agents' S3 uploads happen inside the local cloud and are added as one PUT per
//!   host run.

use crate::cost::{self, Cost};
use anyhow::{Context, Result, bail, ensure};
use certship_cli::demo::{request, request_certificate, start_deployment};
use certship_local::functions::Function;
use certship_local::hosts::{self, Simulation};
use certship_local::state_manager::AgentSettings;
use certship_local::{LocalCloud, LocalOptions, gateway};
use certship_shared::naming::mapping_id;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// From this many hosts up the hosts are simulated at the agent level
/// ([`Simulation::ReportsOnly`]): they report after [`SIMULATED_RUN`] without running the script.
pub const SIMULATE_FROM: usize = 100;
/// How long a simulated host's run takes.
pub const SIMULATED_RUN: Duration = Duration::from_secs(5);
/// The seed's status loop: a fixed Wait between checks.
pub const SEED_POLL_SECONDS: u64 = 15;
/// Hosts launched at once while the fleet is built.
const LAUNCH_CONCURRENCY: usize = 16;

/// Which state machine deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Design {
    /// certship's: the check waits for the last host's report (a Task token).
    #[serde(rename = "certship")]
    Certship,
    /// The seed's: a fixed 15 s Wait between status checks.
    #[serde(rename = "seed")]
    Seed,
}

impl Design {
    pub fn label(self) -> &'static str {
        match self {
            Design::Certship => "certship",
            Design::Seed => "seed (15 s poll)",
        }
    }
}

/// One deployment's figures.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Deployment {
    pub design: Design,
    pub hosts: usize,
    /// The hosts ran no script ([`SIMULATE_FROM`]).
    pub simulated_hosts: bool,
    pub seconds_total: f64,
    /// The first host's run start to the last host's run end.
    pub seconds_hosts: f64,
    /// The last run's end to its evidence recorded: S3's notification and record-host-evidence.
    /// On the local cloud this is bound by the one moto process (about 20 requests a second on
    /// 2 vCPUs), not by the design.
    pub seconds_report_lag: f64,
    /// Trigger to the first host's run start, plus the last report recorded to the execution's
    /// end: what the state machine adds.
    pub seconds_overhead: f64,
    pub state_transitions: u64,
    pub lambda_invocations: BTreeMap<String, u64>,
    /// Handler time summed per function, in seconds.
    pub lambda_seconds: BTreeMap<String, f64>,
    /// AWS API calls by `service:Operation`, the agents' output uploads included.
    pub api_calls: BTreeMap<String, u64>,
    pub status_checks: u64,
    /// check-install-status's own API calls per invocation.
    pub calls_per_status_check: f64,
    pub cost: Cost,
}

/// A local cloud with `count` hosts tagged `env=bench`, their agents answering.
pub async fn fleet(
    project_dir: &Path,
    state_dir: &Path,
    count: usize,
) -> Result<(LocalCloud, bool)> {
    let simulated = count >= SIMULATE_FROM;
    let mut options = LocalOptions::new(project_dir);
    options.state_dir = state_dir.to_path_buf();
    // No scheduled run during a measurement: only the deployments run the association.
    options.agent = AgentSettings {
        poll_period: Duration::from_secs(1),
        schedule_hour: Duration::from_secs(3600),
        simulated_run: SIMULATED_RUN,
    };
    let cloud = LocalCloud::start(options).await?;
    let ec2 = aws_sdk_ec2::Client::new(cloud.sdk_config());
    let simulate = if simulated {
        Simulation::ReportsOnly
    } else {
        Simulation::Healthy
    };
    let tags = Arc::new(BTreeMap::from([("env".to_string(), "bench".to_string())]));
    let mut launched = 0;
    while launched < count {
        let batch = LAUNCH_CONCURRENCY.min(count - launched);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let (ec2, hosts, tags) = (ec2.clone(), cloud.hosts.clone(), Arc::clone(&tags));
            set.spawn(async move { hosts::add(&ec2, &hosts, &tags, simulate).await });
        }
        while let Some(added) = set.join_next().await {
            added??;
        }
        launched += batch;
    }
    wait_online(&cloud, count).await?;
    Ok((cloud, simulated))
}

/// Until every host's agent has answered (DescribeInstanceInformation says `Online`).
async fn wait_online(cloud: &LocalCloud, count: usize) -> Result<()> {
    let ssm = aws_sdk_ssm::Client::new(cloud.sdk_config());
    let started = std::time::Instant::now();
    loop {
        let mut online = 0;
        let mut pages = ssm
            .describe_instance_information()
            .max_results(50)
            .into_paginator()
            .items()
            .send();
        while let Some(node) = pages.next().await {
            if node?.ping_status() == Some(&aws_sdk_ssm::types::PingStatus::Online) {
                online += 1;
            }
        }
        if online >= count {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "only {online} of {count} hosts answered within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The seed's design as a state machine beside certship's: the same definition and Lambdas, but
/// a plain Lambda Task for the check and a fixed [`SEED_POLL_SECONDS`] Wait before every check.
pub async fn seed_state_machine(cloud: &LocalCloud, sfn: &aws_sdk_sfn::Client) -> Result<String> {
    let described = sfn
        .describe_state_machine()
        .state_machine_arn(&cloud.state_machine_arn)
        .send()
        .await
        .context("reading certship's state machine")?;
    let mut definition: Value = serde_json::from_str(described.definition())?;
    let states = definition["States"]
        .as_object_mut()
        .context("the definition has no States")?;
    let check = states
        .get_mut("Check install status")
        .context("no Check install status state")?;
    let function = check["Parameters"]["FunctionName"].clone();
    ensure!(function.is_string(), "the check's FunctionName: {function}");
    let check = check.as_object_mut().context("the check state")?;
    check.remove("Parameters");
    check.remove("TimeoutSecondsPath");
    check.insert("Resource".into(), function);
    check.insert("TimeoutSeconds".into(), 60.into());
    states.insert(
        "Wait for hosts".into(),
        serde_json::json!({"Type": "Wait", "Seconds": SEED_POLL_SECONDS, "Next": "Check install status"}),
    );
    states["Dispatch install command"]["Next"] = "Wait for hosts".into();
    for choice in states["Installed on every host?"]["Choices"]
        .as_array_mut()
        .context("the Choice state")?
    {
        if choice["StringEquals"] == "InProgress" {
            choice["Next"] = "Wait for hosts".into();
        }
    }
    let created = sfn
        .create_state_machine()
        .name("certship-bench-seed-design")
        .role_arn(described.role_arn())
        .definition(definition.to_string())
        .send()
        .await
        .context("creating the seed's state machine")?;
    Ok(created.state_machine_arn)
}

/// Deploys one certificate to the fleet through `state_machine_arn` and measures it.
pub async fn deploy(
    cloud: &LocalCloud,
    moto: &aws_config::SdkConfig,
    design: Design,
    state_machine_arn: &str,
    hosts: usize,
    simulated: bool,
    certificate: &str,
) -> Result<Deployment> {
    let sfn = aws_sdk_sfn::Client::new(moto);
    let deployment = request(certificate, "web", ("env", "bench"), None);
    gateway::calls_as(&cloud.endpoint, true, true).await?;
    cloud.functions.invocations(true);
    let triggered = SystemTime::now();
    let execution = start_deployment(cloud.sdk_config(), state_machine_arn, &deployment).await?;
    let ended = until_ended(&sfn, &execution).await?;
    let history = history(&sfn, &execution).await?;
    let ending = history
        .iter()
        .rev()
        .find_map(certship_cli::ops::execution::ending)
        .context("the history has no ending")?;
    ensure!(
        ending.succeeded(),
        "the {} deployment to {hosts} hosts did not succeed: {ending:?}",
        design.label(),
    );
    // The counts first, before anything else reads the local cloud.
    let calls = gateway::calls_as(&cloud.endpoint, true, true).await?;
    let invocations = cloud.functions.invocations(true);
    let seconds_total = seconds(ended) - since_epoch(triggered);

    let output = ending.output.context("no output")?;
    let version = output.export.context("no export")?.secret_version_id;
    let association = output
        .dispatch
        .and_then(|d| d.association_id)
        .context("no association")?;
    let (first_start, last_end) =
        hosts_time(cloud, moto, certificate, &association, &version).await?;
    let last_recorded = invocations
        .get(&Function::RecordHostEvidence)
        .and_then(|s| s.last_end)
        .map(since_epoch)
        .context("no host evidence was recorded")?;
    let seconds_hosts = last_end - first_start;
    let seconds_report_lag = (last_recorded - last_end).max(0.0);
    let seconds_overhead =
        (first_start - since_epoch(triggered)) + (seconds(ended) - last_recorded);

    let state_transitions = history
        .iter()
        .filter(|e| e.r#type().as_str().ends_with("StateEntered"))
        .count() as u64;

    let mut api_calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut check_calls = 0;
    for (key, n) in &calls {
        let (caller, operation) = key.split_once(' ').unwrap_or(("", key));
        if operation.starts_with("states:DescribeExecution")
            || operation.starts_with("states:GetExecutionHistory")
            || operation.starts_with("sqs:")
            || operation == "lambda:Invoke"
        {
            // The bench's own wait (if any went through the gateway); the local cloud's plumbing
            // of S3 notifications through a queue (in AWS S3 invokes the function itself); and
            // Step Functions invoking the Tasks, counted as Lambda invocations.
            continue;
        }
        if caller == Function::CheckInstallStatus.name() {
            check_calls += n;
        }
        *api_calls.entry(operation.to_string()).or_default() += n;
    }
    // Each host run uploads its stdout (the agents' own work, inside the local cloud).
    *api_calls.entry("s3:PutObject (agents)".into()).or_default() += hosts as u64;

    let mut lambda_invocations = BTreeMap::new();
    let mut lambda_seconds = BTreeMap::new();
    for (function, stats) in &invocations {
        lambda_invocations.insert(function.name().to_string(), stats.count);
        lambda_seconds.insert(function.name().to_string(), stats.busy.as_secs_f64());
    }
    let status_checks = invocations
        .get(&Function::CheckInstallStatus)
        .map_or(0, |s| s.count);
    let cost = cost::of(state_transitions, &invocations, &api_calls);
    Ok(Deployment {
        design,
        hosts,
        simulated_hosts: simulated,
        seconds_total,
        seconds_hosts,
        seconds_report_lag,
        seconds_overhead,
        state_transitions,
        lambda_invocations,
        lambda_seconds,
        api_calls,
        status_checks,
        calls_per_status_check: if status_checks == 0 {
            0.0
        } else {
            check_calls as f64 / status_checks as f64
        },
        cost,
    })
}

/// The execution's history, asked again when the emulator fails to answer under load.
async fn history(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<Vec<aws_sdk_sfn::types::HistoryEvent>> {
    let mut attempt = 0;
    loop {
        match certship_cli::ops::execution::history(sfn, execution).await {
            Ok(events) => return Ok(events),
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("reading the history failed ({e:#}); again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits for the execution to end (polling moto directly, so the bench's own calls are not
/// counted, and riding out the emulator's slow answers under a large fleet); its stop date.
async fn until_ended(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<aws_smithy_types::DateTime> {
    let started = std::time::Instant::now();
    let mut failures = 0;
    loop {
        match sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
        {
            Ok(out) if out.status != aws_sdk_sfn::types::ExecutionStatus::Running => {
                return out
                    .stop_date
                    .context("an ended execution without a stop date");
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                ensure!(
                    failures < 20,
                    "DescribeExecution failed 20 times in a row: {e:?}"
                );
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "{execution} still running after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The hosts' own time for `version`, in seconds since the epoch: the first run's start (its
/// evidence's run id) and the last run's end (State Manager's execution targets).
async fn hosts_time(
    cloud: &LocalCloud,
    moto: &aws_config::SdkConfig,
    certificate: &str,
    association: &str,
    version: &str,
) -> Result<(f64, f64)> {
    let dynamodb = aws_sdk_dynamodb::Client::new(moto);
    let id = mapping_id("web", certificate, "env", "bench");
    let mut first_start = f64::MAX;
    let mut pages = dynamodb
        .query()
        .table_name(&cloud.evidence_table_name)
        .key_condition_expression("MappingId = :m")
        .expression_attribute_values(":m", aws_sdk_dynamodb::types::AttributeValue::S(id.clone()))
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        let item = item?;
        if certship_shared::waiting::is_waiting_item(&item) {
            continue;
        }
        let evidence = certship_shared::evidence::HostEvidence::from_item(&item)?;
        if evidence.secret_version_id.as_deref() != Some(version) {
            continue;
        }
        let started = certship_shared::time::parse_rfc3339(&evidence.observed_at)
            .context("an evidence run id that does not read")?;
        first_start = first_start.min(since_epoch(started));
    }
    ensure!(first_start < f64::MAX, "no host evidence for {version}");

    // State Manager is the local cloud's own (not moto's): asked through the gateway, after the
    // counts were taken.
    let ssm = aws_sdk_ssm::Client::new(cloud.sdk_config());
    let executions = ssm
        .describe_association_executions()
        .association_id(association)
        .send()
        .await?;
    // The deployment's run: the association's newest execution.
    let latest = executions
        .association_executions()
        .iter()
        .max_by_key(|e| e.created_time().map(|t| t.as_nanos()))
        .and_then(|e| e.execution_id())
        .context("the association has no execution")?;
    let mut last_end = f64::MIN;
    let mut next = None;
    loop {
        let page = ssm
            .describe_association_execution_targets()
            .association_id(association)
            .execution_id(latest)
            .set_next_token(next)
            .send()
            .await?;
        for target in page.association_execution_targets() {
            if let Some(at) = target.last_execution_date() {
                last_end = last_end.max(seconds(*at));
            }
        }
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    if last_end < first_start {
        bail!("the hosts' runs end before they start: {last_end} < {first_start}");
    }
    Ok((first_start, last_end))
}

fn seconds(at: aws_smithy_types::DateTime) -> f64 {
    at.as_secs_f64()
}

fn since_epoch(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A certificate for the bench, issued by the emulator.
pub async fn certificate(cloud: &LocalCloud) -> Result<String> {
    request_certificate(cloud.sdk_config(), "www.bench.certship.test").await
}
