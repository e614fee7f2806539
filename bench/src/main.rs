//! `make bench`: certship's speed and cost on the local cloud, from 1 to 1,000 hosts, beside the
//! seed's design in the same run; the renewal storm; the functions' cold start. Prints tables
//! (Markdown, as the README's Performance section shows them) and writes every figure to
//! `target/bench/results.json`. Nothing here asserts a timing: the figures are for reading.

mod coldstart;
mod cost;
mod deploy;
mod storm;

use anyhow::{Context, Result};
use clap::Parser;
use deploy::{Deployment, Design};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "certship-bench",
    about = "certship's speed and cost on the local cloud, beside the seed's design"
)]
struct Args {
    /// Fleet sizes to deploy to (comma-separated). From 100 hosts up the hosts report without
    /// running the script.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100, 1000])]
    hosts: Vec<usize>,
    /// Skip the seed's design (certship's figures only, no ratios).
    #[arg(long)]
    no_seed: bool,
    /// Mappings of the one certificate renewed in the first storm; 0 skips it.
    #[arg(long, default_value_t = 1000)]
    storm_mappings: usize,
    /// Certificates renewed at once in the second storm; 0 skips it.
    #[arg(long, default_value_t = 200)]
    storm_certificates: usize,
    /// Where the functions' bootstraps are, for the cold start (`target/release` after
    /// `make bench` built them); without it the cold start is skipped.
    #[arg(long)]
    bootstraps: Option<PathBuf>,
    /// Spawns per handler for the cold start.
    #[arg(long, default_value_t = 20)]
    cold_start_runs: usize,
    /// Where every figure is written, as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Results {
    machine: Machine,
    deployments: Vec<Deployment>,
    storms: Vec<storm::Storm>,
    cold_starts: Vec<coldstart::ColdStart>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cpus: usize,
    memory_gib: f64,
    kernel: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let project = certship_local::running::project_dir(None)?;
    let machine = machine();
    println!(
        "certship bench on {} ({} CPUs, {:.1} GiB)\n",
        machine.cpu, machine.cpus, machine.memory_gib
    );
    let mut results = Results {
        machine,
        deployments: Vec::new(),
        storms: Vec::new(),
        cold_starts: Vec::new(),
    };

    for &hosts in &args.hosts {
        results
            .deployments
            .extend(deployments(&project, hosts, !args.no_seed).await?);
    }
    print_deployments(&results.deployments);

    if args.storm_mappings > 0 || args.storm_certificates > 0 {
        results.storms = storms(&project, &args).await?;
        print_storms(&results.storms);
    }

    if let Some(dir) = &args.bootstraps {
        eprintln!(
            "cold start: {} spawns per handler from {}",
            args.cold_start_runs,
            dir.display()
        );
        let python = project.join(".venv/bin/python");
        results.cold_starts = coldstart::measure(dir, &python, args.cold_start_runs).await?;
        print_cold_starts(&results.cold_starts, dir);
    }

    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("\nevery figure: {}", args.out.display());
    Ok(())
}

/// Both designs on one fleet of `hosts`.
async fn deployments(
    project: &std::path::Path,
    hosts: usize,
    seed: bool,
) -> Result<Vec<Deployment>> {
    let state = tempfile::Builder::new()
        .prefix("certship-bench-")
        .tempdir()?;
    eprintln!("{hosts} hosts: starting the local cloud and the fleet");
    let (cloud, simulated) = deploy::fleet(project, state.path(), hosts).await?;
    let moto = certship_local::sdk_config(
        &format!("http://127.0.0.1:{}", cloud.moto_port),
        &cloud.region,
    )
    .await;
    let certificate = deploy::certificate(&cloud).await?;
    let mut figures = Vec::new();
    eprintln!("{hosts} hosts: deploying (certship)");
    figures.push(
        deploy::deploy(
            &cloud,
            &moto,
            Design::Certship,
            &cloud.state_machine_arn,
            hosts,
            simulated,
            &certificate,
        )
        .await?,
    );
    if seed {
        let sfn = aws_sdk_sfn::Client::new(&moto);
        let arn = deploy::seed_state_machine(&cloud, &sfn).await?;
        eprintln!("{hosts} hosts: deploying (seed's design)");
        figures.push(
            deploy::deploy(
                &cloud,
                &moto,
                Design::Seed,
                &arn,
                hosts,
                simulated,
                &certificate,
            )
            .await?,
        );
    }
    cloud.stop().await;
    Ok(figures)
}

async fn storms(project: &std::path::Path, args: &Args) -> Result<Vec<storm::Storm>> {
    let state = tempfile::Builder::new()
        .prefix("certship-bench-")
        .tempdir()?;
    let mut options = certship_local::LocalOptions::new(project);
    options.state_dir = state.path().to_path_buf();
    let cloud = certship_local::LocalCloud::start(options).await?;
    let mut storms = Vec::new();
    if args.storm_mappings > 0 {
        eprintln!(
            "renewal storm: one certificate, {} mappings",
            args.storm_mappings
        );
        storms.push(
            storm::one_certificate(cloud.sdk_config(), &cloud.table_name, args.storm_mappings)
                .await?,
        );
    }
    if args.storm_certificates > 0 {
        eprintln!(
            "renewal storm: {} certificates at once",
            args.storm_certificates
        );
        storms.push(
            storm::many_certificates(
                cloud.sdk_config(),
                &cloud.table_name,
                args.storm_certificates,
            )
            .await?,
        );
    }
    cloud.stop().await;
    Ok(storms)
}

fn ratio(seed: f64, ours: f64) -> String {
    if ours <= 0.0 {
        "-".into()
    } else {
        format!("{:.1}x", seed / ours)
    }
}

fn print_deployments(deployments: &[Deployment]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "| hosts | design | trigger to end | hosts' own time | report lag | overhead | state transitions | Lambda invocations | API calls | calls per status check | cost (USD) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for d in deployments {
        let seed = deployments
            .iter()
            .find(|s| s.design == Design::Seed && s.hosts == d.hosts);
        let beside = |ours: f64, theirs: Option<f64>| match (d.design, theirs) {
            (Design::Certship, Some(theirs)) => format!(" (seed {})", ratio(theirs, ours)),
            _ => String::new(),
        };
        let invocations: u64 = d.lambda_invocations.values().sum();
        let calls: u64 = d.api_calls.values().sum();
        let _ = writeln!(
            out,
            "| {}{} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} s{} | {}{} | {}{} | {}{} | {:.1} | ${:.5}{} |",
            d.hosts,
            if d.simulated_hosts {
                " (simulated)"
            } else {
                " (real script)"
            },
            d.design.label(),
            d.seconds_total,
            d.seconds_hosts,
            d.seconds_report_lag,
            d.seconds_overhead,
            beside(d.seconds_overhead, seed.map(|s| s.seconds_overhead)),
            d.state_transitions,
            beside(
                d.state_transitions as f64,
                seed.map(|s| s.state_transitions as f64)
            ),
            invocations,
            beside(
                invocations as f64,
                seed.map(|s| s.lambda_invocations.values().sum::<u64>() as f64)
            ),
            calls,
            beside(
                calls as f64,
                seed.map(|s| s.api_calls.values().sum::<u64>() as f64)
            ),
            d.calls_per_status_check,
            d.cost.total,
            beside(d.cost.total, seed.map(|s| s.cost.total)),
        );
    }
}

fn print_storms(storms: &[storm::Storm]) {
    println!(
        "\n| renewal storm | certificates | mappings | executions started | distinct names | last start after | invocations (cut off) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for s in storms {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} s | {} ({}) |",
            s.scenario,
            s.certificates,
            s.mappings,
            s.executions_started,
            s.distinct_names,
            s.seconds_to_last_start,
            s.invocations,
            s.cut_off_invocations
        );
    }
}

fn print_cold_starts(cold: &[coldstart::ColdStart], dir: &std::path::Path) {
    println!("\ncold start ({}):\n", dir.display());
    println!("| handler | runtime | init median | init p90 | peak RSS | binary | zipped |");
    println!("|---|---|---|---|---|---|---|");
    let mib =
        |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1_048_576.0));
    for c in cold {
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} MiB | {} | {} |",
            c.handler,
            c.runtime,
            c.init_ms_median,
            c.init_ms_p90,
            c.peak_rss_mib,
            mib(c.binary_bytes),
            mib(c.zip_bytes)
        );
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".to_string(), |m| m.trim().to_string());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1_048_576.0);
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}
