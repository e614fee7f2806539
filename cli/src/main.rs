//! `certship`: the operator CLI. `certship local` runs the whole system on this machine.

use anyhow::{Context, Result, bail};
use certship_cli::local::hosts::{self, Hosts, Simulation};
use certship_cli::local::{LocalCloud, LocalOptions, renewal, sdk_config};
use certship_cli::ops::watch::{Progress, Report};
use certship_cli::ops::{self, AwsArgs, Deployment, OutputArgs, OutputFormat, StackArgs};
use certship_cli::project::{CloudLock, RunningCloud, process_alive, project_dir};
use clap::{Args, Parser, Subcommand};
use dispatch_install::settings;
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
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
    /// Deploy a certificate to every host with a tag (through the API or StartExecution)
    Deploy(DeployArgs),
    /// Follow a deployment until it ends, then show each host's result
    Follow(FollowArgs),
    /// The mappings: deployed serial, expiry, last deployment, renewals not yet deployed
    Status(StatusArgs),
    /// Recent deployments of a certificate, newest first
    History(HistoryArgs),
    /// Remove a mapping and its secret (the files already on hosts stay)
    Unmap(UnmapArgs),
    /// Run certship on this machine, on an embedded AWS emulator: no account needed
    Local(LocalArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:
  certship deploy --stack certship --certificate-arn arn:aws:acm:eu-west-1:111122223333:certificate/0d3f… \\
      --name web --target env=prod --reload-service nginx --wait
  certship deploy --api-url https://abc123.execute-api.eu-west-1.amazonaws.com/prod/export-cert …
  certship deploy --direct --state-machine-arn arn:aws:states:…:stateMachine:… …

Through the API, the request is signed (SigV4) with your usual AWS credentials, which need
execute-api:Invoke on it; with --direct (or only --state-machine-arn), states:StartExecution.
Exit codes with --wait: 0 deployed, 3 the deployment failed, 1 any other error.")]
struct DeployArgs {
    /// The ACM certificate to deploy
    #[arg(long, value_name = "ARN")]
    certificate_arn: String,
    /// The file name on hosts: <NAME>-cert.pem, <NAME>-chain.pem, <NAME>-fullchain.pem, <NAME>-privkey.pem
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The hosts: every EC2 instance or managed node tagged KEY=VALUE
    #[arg(long, value_name = "KEY=VALUE", value_parser = ops::parse_target)]
    target: (String, String),
    /// A systemd service to reload after the swap (must be in the stack's AllowedReloadServices)
    #[arg(long, value_name = "UNIT")]
    reload_service: Option<String>,
    /// The deployment API's URL (default: the stack's ApiUrl output)
    #[arg(long, value_name = "URL", env = ops::env::API_URL)]
    api_url: Option<String>,
    /// Start the execution with StartExecution rather than through the API
    #[arg(long)]
    direct: bool,
    /// Follow the deployment until it ends (as `certship follow`)
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
#[command(after_help = "Example:
  certship follow arn:aws:states:eu-west-1:111122223333:execution:certship-certificate-deployment:web-1764000000000

In a terminal it shows a live line (state, hosts done, time); piped, one line per step.
Exit codes: 0 deployed, 3 the deployment failed, timed out or was aborted, 1 any other error.")]
struct FollowArgs {
    /// The execution, as `certship deploy` or `certship history` prints it
    execution_arn: String,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
#[command(after_help = "Examples:
  certship status --stack certship
  certship status --certificate-arn arn:aws:acm:…:certificate/0d3f… --output json
  certship status --target env=prod

Expiry is highlighted under 30 days; ACM says \"newer serial\" when it renewed the certificate
and that serial is not deployed yet.")]
struct StatusArgs {
    /// Only the mappings of this certificate
    #[arg(long, value_name = "ARN")]
    certificate_arn: Option<String>,
    /// Only the mappings to this tag target
    #[arg(long, value_name = "KEY=VALUE", value_parser = ops::parse_target)]
    target: Option<(String, String)>,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
#[command(after_help = "Example:
  certship history --stack certship --certificate-arn arn:aws:acm:…:certificate/0d3f… --limit 5")]
struct HistoryArgs {
    /// The certificate whose deployments to list
    #[arg(long, value_name = "ARN")]
    certificate_arn: String,
    /// How many executions to show at most
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
#[command(after_help = "Example:
  certship unmap --stack certship --certificate-arn arn:aws:acm:…:certificate/0d3f… --name web --target env=prod

The secret is scheduled for deletion after 7 days (`aws secretsmanager restore-secret` brings it
back). Renewals no longer reach the target; the files on its hosts stay until you remove them.")]
struct UnmapArgs {
    /// The mapped certificate
    #[arg(long, value_name = "ARN")]
    certificate_arn: String,
    /// The name it was deployed under
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The tag target it was deployed to
    #[arg(long, value_name = "KEY=VALUE", value_parser = ops::parse_target)]
    target: (String, String),
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
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
            settings::INSTALL_DEADLINE_SECONDS_VAR,
            up.install_deadline.map(|s| s.to_string()),
        ),
        (
            settings::COMMAND_TIMEOUT_SECONDS_VAR,
            up.command_timeout.map(|s| s.to_string()),
        ),
        (settings::MAX_CONCURRENCY_VAR, up.max_concurrency.clone()),
        (settings::MAX_ERRORS_VAR, up.max_errors.clone()),
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

/// The exit code of a deployment that ended other than in success.
const DEPLOYMENT_FAILED: u8 = 3;

fn colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Follows an execution, showing progress where someone watches, and prints the report.
async fn follow_execution(
    config: &aws_config::SdkConfig,
    execution_arn: &str,
    output: OutputFormat,
) -> Result<ExitCode> {
    let report: Report = match output {
        OutputFormat::Text => {
            let stdout = std::io::stdout();
            let progress = if stdout.is_terminal() {
                Progress::Live
            } else {
                Progress::Plain
            };
            ops::watch::watch(config, execution_arn, progress, &mut stdout.lock()).await?
        }
        OutputFormat::Json => {
            let stderr = std::io::stderr();
            let progress = if stderr.is_terminal() {
                Progress::Live
            } else {
                Progress::Silent
            };
            ops::watch::watch(config, execution_arn, progress, &mut stderr.lock()).await?
        }
    };
    match output {
        OutputFormat::Text => println!("{}", report.text(colour(&std::io::stdout()))),
        OutputFormat::Json => ops::print_json(&report.json())?,
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DEPLOYMENT_FAILED)
    })
}

async fn deploy(args: DeployArgs) -> Result<ExitCode> {
    let config = ops::sdk_config(&args.aws).await?;
    let request = ops::deploy::checked_request(
        ops::region(&config),
        &args.certificate_arn,
        &args.name,
        &args.target,
        args.reload_service.as_deref(),
    )?;
    let deployment = Deployment::new(&config, &args.stack);
    let (execution_arn, route) = ops::deploy::start(
        &config,
        &deployment,
        args.api_url.as_deref(),
        args.direct,
        &request,
    )
    .await?;
    match args.output.output {
        OutputFormat::Text => {
            println!("Started {execution_arn}");
            if !args.wait {
                println!("Follow it with: certship follow {execution_arn}");
            }
        }
        OutputFormat::Json if !args.wait => ops::print_json(&serde_json::json!({
            "executionArn": execution_arn,
            "via": route.as_str(),
        }))?,
        OutputFormat::Json => {}
    }
    if args.wait {
        return follow_execution(&config, &execution_arn, args.output.output).await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let config = ops::sdk_config(&args.aws).await?;
    let table = Deployment::new(&config, &args.stack).table_name().await?;
    let mappings = ops::status::mappings(
        &config,
        &table,
        args.certificate_arn.as_deref(),
        args.target.as_ref(),
    )
    .await?;
    let rows = ops::status::rows(&config, mappings).await;
    match args.output.output {
        OutputFormat::Text => println!("{}", ops::status::text(&rows, colour(&std::io::stdout()))),
        OutputFormat::Json => ops::print_json(&ops::status::json(&rows))?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(args: HistoryArgs) -> Result<ExitCode> {
    let config = ops::sdk_config(&args.aws).await?;
    let machine = Deployment::new(&config, &args.stack)
        .state_machine_arn()
        .await?;
    let (entries, truncated) = ops::history::entries(
        &config,
        &machine,
        &args.certificate_arn,
        usize::from(args.limit),
    )
    .await?;
    match args.output.output {
        OutputFormat::Text => println!(
            "{}",
            ops::history::text(&entries, truncated, colour(&std::io::stdout()))
        ),
        OutputFormat::Json => ops::print_json(&ops::history::json(&entries))?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn unmap(args: UnmapArgs) -> Result<ExitCode> {
    let config = ops::sdk_config(&args.aws).await?;
    let table = Deployment::new(&config, &args.stack).table_name().await?;
    let Some(mapping) = ops::unmap::find(
        &config,
        &table,
        &args.certificate_arn,
        &args.name,
        &args.target,
    )
    .await?
    else {
        bail!(
            "no mapping of {} named {} to {}={}; `certship status --certificate-arn {}` lists its mappings",
            args.certificate_arn,
            args.name,
            args.target.0,
            args.target.1,
            args.certificate_arn
        );
    };
    let what = format!(
        "the mapping of {} as {} to hosts tagged {}={}",
        mapping.certificate_arn,
        mapping.cert_name,
        mapping.target_tag_key,
        mapping.target_tag_value
    );
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!("not removing {what} without confirmation: pass --yes");
        }
        eprint!(
            "Remove {what}, and schedule its secret for deletion in {} days? Files on the hosts stay. [y/N] ",
            ops::unmap::RECOVERY_WINDOW_DAYS
        );
        let mut answer = String::new();
        stdin.read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Nothing removed.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let secret = ops::unmap::remove(&config, &table, &mapping).await?;
    println!("Removed {what}.");
    match secret {
        Some(arn) => println!(
            "Its secret {arn} is scheduled for deletion in {} days (aws secretsmanager restore-secret --secret-id … brings it back).",
            ops::unmap::RECOVERY_WINDOW_DAYS
        ),
        None => println!("It had no secret left to delete."),
    }
    println!("The certificate files on the hosts are still there; renewals no longer reach them.");
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let local = match cli.command {
        Command::Deploy(args) => return deploy(args).await,
        Command::Follow(args) => {
            let config = ops::sdk_config(&args.aws).await?;
            return follow_execution(&config, &args.execution_arn, args.output.output).await;
        }
        Command::Status(args) => return status(args).await,
        Command::History(args) => return history(args).await,
        Command::Unmap(args) => return unmap(args).await,
        Command::Local(local) => local,
    };
    run_local(local).await.map(|()| ExitCode::SUCCESS)
}

async fn run_local(local: LocalArgs) -> Result<()> {
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
                "export AWS_ENDPOINT_URL={endpoint}\nexport AWS_ACCESS_KEY_ID=testing\nexport AWS_SECRET_ACCESS_KEY=testing\nexport AWS_DEFAULT_REGION={region}\nexport AWS_REGION={region}\nexport {}={}\nexport {}={}\nexport {}={endpoint}{}",
                ops::env::STATE_MACHINE_ARN,
                r.state_machine_arn,
                ops::env::TABLE_NAME,
                r.table_name,
                ops::env::API_URL,
                certship_cli::local::API_PATH,
                endpoint = r.endpoint,
                region = r.region,
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
