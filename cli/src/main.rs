//! `certship`: the operator CLI. `certship local` runs the whole system on this machine.

use anyhow::{Context, Result, bail};
use certship_cli::local::hosts::{self, Hosts, Simulation};
use certship_cli::local::{LocalCloud, LocalOptions, renewal, sdk_config};
use certship_cli::project::{CloudLock, RunningCloud, process_alive, project_dir};
use certship_shared::config::env;
use clap::{Args, Parser, Subcommand};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "certship",
    version,
    about = "Ship ACM certificates to the EC2 and on-premises hosts that need them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run certship on this machine, on an embedded AWS emulator: no account needed
    Local(LocalArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:
  certship local demo                       # the whole workflow, start to finish
  certship local up --detach                # start a local cloud in the background
  certship local hosts add --tag env=dev --count 2
  eval \"$(certship local env)\"              # point the AWS CLI at it
  certship local renew arn:aws:acm:us-east-1:123456789012:certificate/...
  certship local down")]
struct LocalArgs {
    /// The certship checkout to provision from (default: found from the current directory)
    #[arg(long, global = true, value_name = "DIR")]
    project_dir: Option<PathBuf>,
    /// Where the local cloud keeps its hosts and run-time files (default: <project>/.certship/local)
    #[arg(long, global = true, value_name = "DIR", env = "CERTSHIP_LOCAL_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Start the local cloud (in the foreground until Ctrl-C, or with --detach in the background)
    Up(UpArgs),
    /// Stop the local cloud started with `up --detach`
    Down,
    /// Say whether a local cloud runs, and where
    Status,
    /// Print shell exports that point the AWS CLI and SDKs at the running local cloud
    Env,
    /// Simulated hosts: EC2 instances with a directory of their own as their filesystem
    Hosts {
        #[command(subcommand)]
        command: HostsCommand,
    },
    /// Renew a certificate in the emulator and publish ACM's renewal event
    Renew {
        /// The certificate's ARN
        certificate_arn: String,
    },
    /// Run the whole workflow on a local cloud of its own: deploy, renew, redeploy
    Demo,
}

#[derive(Args)]
struct UpArgs {
    /// The gateway's port, where every AWS API of the local cloud answers (default: a free one)
    #[arg(long)]
    port: Option<u16>,
    /// Run in the background; `certship local down` stops it
    #[arg(long)]
    detach: bool,
    /// Seconds after dispatch that check-install-status gives up (INSTALL_DEADLINE_SECONDS)
    #[arg(long, value_name = "SECONDS")]
    install_deadline: Option<u64>,
    /// SendCommand's delivery timeout (COMMAND_TIMEOUT_SECONDS)
    #[arg(long, value_name = "SECONDS")]
    command_timeout: Option<u64>,
    /// SendCommand's MaxConcurrency (MAX_CONCURRENCY), e.g. 50% or 2
    #[arg(long)]
    max_concurrency: Option<String>,
    /// SendCommand's MaxErrors (MAX_ERRORS), e.g. 0 or 10%
    #[arg(long)]
    max_errors: Option<String>,
    /// systemd units a deployment may reload (ALLOWED_RELOAD_SERVICES)
    #[arg(long, value_name = "UNITS")]
    allowed_reload_services: Option<String>,
}

#[derive(Subcommand)]
enum HostsCommand {
    /// Add hosts with the given tags
    #[command(after_help = "Example:\n  certship local hosts add --tag env=dev --count 2")]
    Add {
        /// A tag as KEY=VALUE; repeat for more
        #[arg(long = "tag", value_parser = hosts::parse_tag, required = true)]
        tags: Vec<(String, String)>,
        /// How many hosts
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// How the hosts behave
        #[arg(long, value_enum, default_value_t = Simulation::Healthy)]
        simulate: Simulation,
    },
    /// List the hosts
    List,
}

fn options(project: &Path, state: &Path, up: &UpArgs) -> Result<LocalOptions> {
    let mut options = LocalOptions::new(project);
    options.state_dir = state.to_path_buf();
    options.port = up.port;
    let overrides: HashMap<&str, String> = [
        (
            env::INSTALL_DEADLINE_SECONDS,
            up.install_deadline.map(|s| s.to_string()),
        ),
        (
            env::COMMAND_TIMEOUT_SECONDS,
            up.command_timeout.map(|s| s.to_string()),
        ),
        (env::MAX_CONCURRENCY, up.max_concurrency.clone()),
        (env::MAX_ERRORS, up.max_errors.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    options.command =
        dispatch_install::CommandSettings::from_lookup(|name| overrides.get(name).cloned())?;
    if let Some(units) = &up.allowed_reload_services {
        options.allowed_reload_services = units.clone();
    }
    Ok(options)
}

fn init_logs(
    writer: impl for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
    ansi: bool,
) {
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CERTSHIP_LOG")
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .try_init();
}

fn say_already_running(state: &Path) {
    match RunningCloud::read(state) {
        Some(running) => println!(
            "A local cloud is already running (pid {}) at {}.\nStop it with `certship local down`.",
            running.pid, running.endpoint
        ),
        None => println!(
            "A local cloud is already starting in {}; `certship local status` shows it once it runs.",
            state.display()
        ),
    }
}

async fn up(project: &Path, state: &Path, args: UpArgs) -> Result<()> {
    let options = options(project, state, &args)?;
    if args.detach {
        if CloudLock::held(state) {
            say_already_running(state);
            return Ok(());
        }
        return detach(project, state, &args);
    }
    // Held until this process ends: the one cloud of this state directory.
    let Some(_lock) = CloudLock::acquire(state)? else {
        say_already_running(state);
        return Ok(());
    };
    init_logs(
        std::io::stderr,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    eprintln!("Starting the local cloud (moto server and the gateway)…");
    let cloud = LocalCloud::start(options).await?;
    let record = RunningCloud {
        pid: std::process::id(),
        endpoint: cloud.endpoint.clone(),
        region: cloud.region.clone(),
        state_machine_arn: cloud.state_machine_arn.clone(),
        table_name: cloud.table_name.clone(),
        hosts_dir: cloud.hosts.dir().to_path_buf(),
    };
    record.write(state)?;
    eprintln!(
        "The local cloud runs at {}\n  state machine {}\n  mapping table {}\n  hosts under {}\nPoint the AWS CLI at it with: eval \"$(certship local env)\"\nCtrl-C stops it.",
        cloud.endpoint,
        cloud.state_machine_arn,
        cloud.table_name,
        cloud.hosts.dir().display()
    );
    wait_for_stop_signal().await;
    eprintln!("Stopping the local cloud…");
    cloud.stop().await;
    RunningCloud::remove(state);
    eprintln!("Stopped.");
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let mut hangup = signal(SignalKind::hangup()).ok();
    let hangup = async {
        match hangup.as_mut() {
            Some(h) => {
                h.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hangup => {}
    }
}

/// Starts `certship local up` again in the background and waits until it is ready.
fn detach(project: &Path, state: &Path, up: &UpArgs) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(state)?;
    let log_path = state.join("cloud.log");
    let log = std::fs::File::create(&log_path)?;
    let mut args: Vec<String> = vec![
        "local".into(),
        "--project-dir".into(),
        project.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "up".into(),
    ];
    let flags = [
        ("--port", up.port.map(|p| p.to_string())),
        (
            "--install-deadline",
            up.install_deadline.map(|s| s.to_string()),
        ),
        (
            "--command-timeout",
            up.command_timeout.map(|s| s.to_string()),
        ),
        ("--max-concurrency", up.max_concurrency.clone()),
        ("--max-errors", up.max_errors.clone()),
        (
            "--allowed-reload-services",
            up.allowed_reload_services.clone(),
        ),
    ];
    for (flag, value) in flags {
        if let Some(value) = value {
            args.extend([flag.to_string(), value]);
        }
    }
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the local cloud in the background")?;
    eprint!("Starting the local cloud in the background");
    for _ in 0..240 {
        if let Some(running) = RunningCloud::read(state) {
            eprintln!(
                "\nThe local cloud runs at {} (pid {}); log: {}\nPoint the AWS CLI at it with: eval \"$(certship local env)\"\nStop it with: certship local down",
                running.endpoint,
                running.pid,
                log_path.display()
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("the local cloud exited ({status}) while starting:\n{log}");
        }
        eprint!(".");
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = child.kill();
    bail!(
        "the local cloud did not start within 2 minutes; see {}",
        log_path.display()
    )
}

fn down(state: &Path) -> Result<()> {
    let Some(running) = RunningCloud::read(state) else {
        println!("No local cloud is running.");
        return Ok(());
    };
    let pid = i32::try_from(running.pid).context("pid")?;
    // SAFETY: SIGTERM to the process the record names; it stops the cloud and everything it ran.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    for _ in 0..100 {
        if !process_alive(running.pid) {
            RunningCloud::remove(state);
            println!("Stopped the local cloud (pid {}).", running.pid);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "the local cloud (pid {}) did not stop within 20 s",
        running.pid
    )
}

async fn run(cli: Cli) -> Result<()> {
    let Command::Local(local) = cli.command;
    let project = project_dir(local.project_dir.as_deref())?;
    let state = local
        .state_dir
        .unwrap_or_else(|| project.join(".certship/local"));
    let state = state.as_path();
    match local.command {
        LocalCommand::Up(args) => up(&project, state, args).await,
        LocalCommand::Down => down(state),
        LocalCommand::Status => {
            match RunningCloud::read(state) {
                Some(r) => println!(
                    "running (pid {}) at {}\nstate machine {}\nmapping table {}\nhosts under {}",
                    r.pid,
                    r.endpoint,
                    r.state_machine_arn,
                    r.table_name,
                    r.hosts_dir.display()
                ),
                None => println!("No local cloud is running."),
            }
            Ok(())
        }
        LocalCommand::Env => {
            let r = RunningCloud::require(state)?;
            println!(
                "export AWS_ENDPOINT_URL={}\nexport AWS_ACCESS_KEY_ID=testing\nexport AWS_SECRET_ACCESS_KEY=testing\nexport AWS_DEFAULT_REGION={}\nexport CERTSHIP_STATE_MACHINE_ARN={}",
                r.endpoint, r.region, r.state_machine_arn
            );
            Ok(())
        }
        LocalCommand::Hosts { command } => {
            let r = RunningCloud::require(state)?;
            let hosts = Hosts::new(&r.hosts_dir);
            match command {
                HostsCommand::Add {
                    tags,
                    count,
                    simulate,
                } => {
                    let config = sdk_config(&r.endpoint, &r.region).await;
                    let ec2 = aws_sdk_ec2::Client::new(&config);
                    let tags: BTreeMap<String, String> = tags.into_iter().collect();
                    for _ in 0..count {
                        let host = hosts::add(&ec2, &hosts, &tags, simulate).await?;
                        println!(
                            "{}  {}  {}",
                            host.instance_id,
                            format_tags(&host.tags),
                            hosts.root(&host.instance_id).display()
                        );
                    }
                }
                HostsCommand::List => {
                    for host in hosts.list() {
                        println!(
                            "{}  {}  {:?}",
                            host.instance_id,
                            format_tags(&host.tags),
                            host.simulate
                        );
                    }
                }
            }
            Ok(())
        }
        LocalCommand::Renew { certificate_arn } => {
            let r = RunningCloud::require(state)?;
            let config = sdk_config(&r.endpoint, &r.region).await;
            let renewed = renewal::renew(&r.endpoint, &config, &certificate_arn).await?;
            println!(
                "Renewed {}: new serial {}, valid until {}.\nThe renewal event is on the bus; renewal-trigger starts one execution per mapping.",
                renewed.certificate_arn, renewed.serial, renewed.not_after
            );
            Ok(())
        }
        LocalCommand::Demo => {
            let Some(_lock) = CloudLock::acquire(state)? else {
                bail!(
                    "a local cloud is running in {}; the demo starts its own, so stop that one first with `certship local down`",
                    state.display()
                );
            };
            std::fs::create_dir_all(state)?;
            let log_path = state.join("demo.log");
            let log = std::fs::File::create(&log_path)?;
            init_logs(std::sync::Mutex::new(log), false);
            println!("(the functions' logs go to {})", log_path.display());
            let mut options = LocalOptions::new(&project);
            options.state_dir = state.to_path_buf();
            certship_cli::demo::run(options).await
        }
    }
}

fn format_tags(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
