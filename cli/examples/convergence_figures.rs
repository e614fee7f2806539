//! Convergence figures on the local cloud: how long a host launched after a deployment takes to
//! hold the certificate, and how many AWS calls one deployment and one reconcile run make at 10
//! and 100 simulated hosts (the real install document on each).
//!
//! ```sh
//! cargo build --workspace --examples && target/debug/examples/convergence_figures [HOSTS ...]
//! ```

use anyhow::{Context, Result, bail, ensure};
use certship_cli::demo::{installed_serial, request, request_certificate, start_deployment};
use certship_cli::ops::watch::{Progress, watch};
use certship_local::hosts::{self, Simulation};
use certship_local::state_manager::AgentSettings;
use certship_local::{LocalCloud, LocalOptions, gateway};
use certship_shared::DeploymentRequest;
use certship_shared::naming::mapping_id;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const LATE_HOSTS: usize = 5;

#[tokio::main]
async fn main() -> Result<()> {
    let sizes: Vec<usize> = match std::env::args().skip(1).map(|a| a.parse()).collect() {
        Ok(sizes) if !Vec::<usize>::is_empty(&sizes) => sizes,
        Ok(_) => vec![10, 100],
        Err(e) => bail!("usage: convergence_figures [HOSTS ...] ({e})"),
    };
    late_host_latency().await?;
    for hosts in sizes {
        calls_at(hosts).await?;
    }
    Ok(())
}

async fn start() -> Result<(LocalCloud, tempfile::TempDir)> {
    let state = tempfile::Builder::new()
        .prefix("certship-figures-")
        .tempdir()?;
    let project = certship_local::running::project_dir(None)?;
    let mut options = LocalOptions::new(project);
    options.state_dir = state.path().to_path_buf();
    // No scheduled run during a measurement: only deployments, new hosts and ticks run it.
    options.agent = AgentSettings {
        poll_period: Duration::from_secs(1),
        schedule_hour: Duration::from_secs(3600),
        ..AgentSettings::default()
    };
    Ok((LocalCloud::start(options).await?, state))
}

async fn moto_config(cloud: &LocalCloud) -> aws_config::SdkConfig {
    certship_local::sdk_config(
        &format!("http://127.0.0.1:{}", cloud.moto_port),
        &cloud.region,
    )
    .await
}

fn tags() -> BTreeMap<String, String> {
    BTreeMap::from([("env".to_string(), "dev".to_string())])
}

async fn deploy(cloud: &LocalCloud, request: &DeploymentRequest) -> Result<String> {
    let config = cloud.sdk_config();
    let execution = start_deployment(config, &cloud.state_machine_arn, request).await?;
    // Watched through moto directly: the watcher's own calls are not the deployment's.
    let watched = watch(
        &aws_sdk_sfn::Client::new(&moto_config(cloud).await),
        &execution,
        Progress::Silent,
        &mut std::io::sink(),
    )
    .await?;
    ensure!(watched.ending.succeeded(), "{:?}", watched.ending);
    Ok(watched
        .ending
        .output
        .and_then(|o| o.export)
        .context("no export")?
        .serial)
}

async fn late_host_latency() -> Result<()> {
    let (cloud, _state) = start().await?;
    let ec2 = aws_sdk_ec2::Client::new(cloud.sdk_config());
    hosts::add(&ec2, &cloud.hosts, &tags(), Simulation::Healthy).await?;
    let arn = request_certificate(cloud.sdk_config(), "www.figures.certship.test").await?;
    let serial = deploy(&cloud, &request(&arn, "web", ("env", "dev"), None)).await?;
    let mut took = Vec::new();
    for _ in 0..LATE_HOSTS {
        let started = Instant::now();
        let host = hosts::add(&ec2, &cloud.hosts, &tags(), Simulation::Healthy).await?;
        let root = cloud.hosts.root(&host.instance_id);
        while !installed_serial(&root, "web")
            .is_some_and(|s| certship_shared::serial::same_serial(&s, &serial))
        {
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no convergence in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        took.push(started.elapsed());
    }
    let mut sorted = took.clone();
    sorted.sort();
    println!(
        "late host, launch to certificate on disk ({LATE_HOSTS} hosts, agent poll 1 s): {} ; median {:.2} s",
        took.iter()
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        sorted[sorted.len() / 2].as_secs_f64()
    );
    cloud.stop().await;
    Ok(())
}

async fn calls_at(count: usize) -> Result<()> {
    let (cloud, _state) = start().await?;
    let config = cloud.sdk_config();
    let ec2 = aws_sdk_ec2::Client::new(config);
    for _ in 0..count {
        hosts::add(&ec2, &cloud.hosts, &tags(), Simulation::Healthy).await?;
    }
    let arn = request_certificate(config, "www.figures.certship.test").await?;
    let request = request(&arn, "web", ("env", "dev"), None);
    let id = mapping_id("web", &arn, "env", "dev");
    // The measurement reads the evidence from moto directly, so its own reads are not counted.
    let moto = moto_config(&cloud).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto);

    gateway::calls(&cloud.endpoint, true).await?;
    let started = Instant::now();
    deploy(&cloud, &request).await?;
    let deployed = started.elapsed();
    let evidence = until_runs(&dynamodb, &cloud, &id, count, &HashMap::new()).await?;
    let deployment = gateway::calls(&cloud.endpoint, true).await?;
    print_calls(
        &format!(
            "one deployment to {count} hosts ({:.1} s)",
            deployed.as_secs_f64()
        ),
        &deployment,
        count,
    );

    let started = Instant::now();
    gateway::tick(&cloud.endpoint).await?;
    until_runs(&dynamodb, &cloud, &id, count, &evidence).await?;
    let reconcile = gateway::calls(&cloud.endpoint, true).await?;
    print_calls(
        &format!(
            "one reconcile run ({}) on {count} unchanged hosts ({:.1} s)",
            "local tick",
            started.elapsed().as_secs_f64()
        ),
        &reconcile,
        count,
    );
    cloud.stop().await;
    Ok(())
}

/// Waits until `count` hosts reported a run other than the one in `before`; returns the runs.
async fn until_runs(
    dynamodb: &aws_sdk_dynamodb::Client,
    cloud: &LocalCloud,
    mapping_id: &str,
    count: usize,
    before: &HashMap<String, Option<String>>,
) -> Result<HashMap<String, Option<String>>> {
    let started = Instant::now();
    loop {
        let runs: HashMap<String, Option<String>> = certship_cli::ops::evidence::of_mapping(
            dynamodb,
            &cloud.evidence_table_name,
            mapping_id,
            "dev",
        )
        .await?
        .into_iter()
        .map(|(id, e)| (id, e.run_id))
        .collect();
        let new = runs
            .iter()
            .filter(|(id, run)| before.get(*id) != Some(run))
            .count();
        if new >= count {
            return Ok(runs);
        }
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{new} of {count} hosts reported within 600 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The local cloud's queue drains stand in for deliveries AWS makes itself (EventBridge and S3
/// invoking Lambda).
fn is_plumbing(operation: &str) -> bool {
    operation.starts_with("sqs:")
}

fn print_calls(title: &str, calls: &BTreeMap<String, u64>, hosts: usize) {
    let counted: Vec<(&String, &u64)> = calls.iter().filter(|(op, _)| !is_plumbing(op)).collect();
    let total: u64 = counted.iter().map(|(_, n)| **n).sum();
    println!(
        "\n{title}: {total} AWS calls, {:.1} per host",
        total as f64 / hosts as f64
    );
    for (operation, n) in counted {
        println!("  {operation:<44} {n:>6}");
    }
    println!("  (+ one s3:PutObject per run by each host's agent, made inside the local cloud)");
}
