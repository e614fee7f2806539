//! Cold start: each release bootstrap under a Lambda Runtime API emulator, against a Python
//! handler that imports boto3 and builds the same clients at import.
//!
//! A cold start here is Lambda's Init phase: from spawning the bootstrap to its first
//! `GET /next`. Both runtimes get the same Lambda environment and the same emulator, and take
//! turns run by run, so whatever else the machine does weighs on both alike.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// One handler's cold start over `runs` spawns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColdStart {
    /// The bin's name, or `python-boto3 (<bin>)` for its Python counterpart.
    pub handler: String,
    /// `rust` or `python`.
    pub runtime: String,
    /// From spawn to the first `GET /next`, in milliseconds.
    pub init_ms_median: f64,
    /// Its 90th percentile.
    pub init_ms_p90: f64,
    /// The largest `VmHWM` of any run, read at its first `/next`, in MiB.
    pub peak_rss_mib: f64,
    /// The bootstrap's size (Rust only; Python's code is the runtime's).
    pub binary_bytes: Option<u64>,
    /// The bootstrap zipped as SAM uploads it (Rust only).
    pub zip_bytes: Option<u64>,
}

const RUST: &str = "rust";
const PYTHON: &str = "python";

/// The Runtime API's long poll for the next invocation: what a bootstrap asks for once its init
/// is done.
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
/// The template's `Globals.Function.MemorySize`, which no function overrides.
const MEMORY_SIZE_MB: &str = "256";
const REGION: &str = "us-east-1";
/// How long a bootstrap may take to reach `/next` before the run counts as failed. Lambda allows
/// 10 s; a debug build on a busy machine gets more.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

/// One of certship's functions, as the bench starts it.
struct Function {
    /// The bin, which is also the `bootstrap` SAM zips.
    bin: &'static str,
    /// The clients its `AppState::new` builds, by boto3's service names.
    boto3_clients: &'static [&'static str],
    /// The variables the template's `Environment` gives it, with plausible values for its `!Ref`s.
    settings: &'static [(&'static str, &'static str)],
}

const ALLOWED_RELOAD_SERVICES: (&str, &str) =
    ("ALLOWED_RELOAD_SERVICES", "nginx,apache2,httpd,haproxy");
const TABLE_NAME: (&str, &str) = ("TABLE_NAME", "certship-MappingTable-1L2Q8ZJ6W0N4E");
const EVIDENCE_TABLE_NAME: (&str, &str) =
    ("EVIDENCE_TABLE_NAME", "certship-EvidenceTable-9RB3K7T1XH5M");
const ACME_TABLE_NAME: (&str, &str) = (
    "ACME_TABLE_NAME",
    "certship-AcmeCertificateTable-4H8S2V6N0QZD",
);

const FUNCTIONS: [Function; 6] = [
    Function {
        bin: "export-certificate",
        boto3_clients: &["acm", "secretsmanager"],
        settings: &[ALLOWED_RELOAD_SERVICES],
    },
    Function {
        bin: "dispatch-install",
        boto3_clients: &["dynamodb", "ssm"],
        settings: &[
            ALLOWED_RELOAD_SERVICES,
            TABLE_NAME,
            (
                "INSTALL_DOCUMENT_NAME",
                "certship-InstallCertificateDocument-Q3mX7vT2kP9a",
            ),
            ("INSTALL_DEADLINE_SECONDS", "1200"),
            ("RECONCILE_SCHEDULE", "rate(1 hour)"),
            (
                "ASSOCIATION_OUTPUT_BUCKET",
                "certship-association-output-123456789012-us-east-1",
            ),
            (
                "ASSOCIATION_DISPATCH_ROLE_ARN",
                "arn:aws:iam::123456789012:role/certship-AssociationDispatchRole-5GJ2P0Q8R1TZ",
            ),
            ("MAX_CONCURRENCY", "50%"),
            ("MAX_ERRORS", "10%"),
            // The template's defaults: empty, which the function reads as unset.
            ("CERTIFICATE_DIRECTORY", ""),
            ("PRIVATE_KEY_DIRECTORY", ""),
            ("FILE_OWNER", ""),
            ("FILE_GROUP", ""),
        ],
    },
    Function {
        bin: "check-install-status",
        boto3_clients: &["ssm", "dynamodb", "events", "stepfunctions"],
        settings: &[
            TABLE_NAME,
            EVIDENCE_TABLE_NAME,
            ("EVENT_BUS_NAME", "default"),
        ],
    },
    Function {
        bin: "renewal-trigger",
        boto3_clients: &["dynamodb", "stepfunctions"],
        settings: &[
            TABLE_NAME,
            (
                "STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:CertificateDeployment-7XnQ2pL9",
            ),
            ACME_TABLE_NAME,
            (
                "ACME_STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:AcmeIssuance-3KdW8rT1",
            ),
        ],
    },
    Function {
        bin: "record-host-evidence",
        boto3_clients: &["s3", "dynamodb", "stepfunctions"],
        settings: &[EVIDENCE_TABLE_NAME],
    },
    Function {
        bin: "acme-certificate",
        boto3_clients: &["route53", "acm", "secretsmanager", "dynamodb", "events"],
        // ACME_CA_BUNDLE is the local cloud's only (a private CA's TLS root); unset in AWS.
        settings: &[ACME_TABLE_NAME],
    },
];

impl Function {
    /// The environment Lambda gives the function's process, less `AWS_LAMBDA_RUNTIME_API`, which
    /// each run's emulator sets.
    fn environment(&self, task_root: &Path) -> Vec<(&'static str, String)> {
        let name = format!("certship-{}", self.bin);
        let mut environment = vec![
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_SIZE_MB.into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef".into(),
            ),
            // The template's LoggingConfig.
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            // The execution role's session, as Lambda passes it: no credential provider goes
            // looking elsewhere (IMDS, SSO, a profile).
            ("AWS_ACCESS_KEY_ID", "ASIABENCHDUMMYKEYID0".into()),
            ("AWS_SECRET_ACCESS_KEY", "bench-dummy-not-a-secret".into()),
            ("AWS_SESSION_TOKEN", "bench-dummy-session-token".into()),
            // Lambda has no ~/.aws; a developer's must not change what either SDK does at init.
            ("AWS_CONFIG_FILE", "/nonexistent/.aws/config".into()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/.aws/credentials".into(),
            ),
            ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
            ("PATH", "/usr/local/bin:/usr/bin/:/bin".into()),
            ("LANG", "en_US.UTF-8".into()),
            ("TZ", ":UTC".into()),
        ];
        environment.extend(
            self.settings
                .iter()
                .map(|(variable, value)| (*variable, value.to_string())),
        );
        environment
    }

    /// The Rust bootstrap at `binary`, as `provided.al2023` starts it.
    fn rust_command(&self, binary: &Path) -> Command {
        let task_root = binary.parent().unwrap_or(Path::new("/"));
        let mut command = lambda_command(binary, task_root, self.environment(task_root));
        command.env("_HANDLER", "bootstrap");
        command
    }

    /// bench/python's runtime and handler, as the managed Python runtime starts a handler.
    fn python_command(&self, python: &Path) -> Command {
        let task_root = python_task_root();
        let mut command = lambda_command(python, &task_root, self.environment(&task_root));
        command
            .arg(task_root.join("bootstrap.py"))
            .env("_HANDLER", "handler.handler")
            .env("CERTSHIP_BENCH_BOTO3_CLIENTS", self.boto3_clients.join(","))
            // Lambda's task root is read-only, so nothing is cached there; boto3's own bytecode
            // comes with the runtime, as it comes with the virtualenv here.
            .env("PYTHONDONTWRITEBYTECODE", "1");
        command
    }
}

/// `program` with exactly `environment`, in `task_root`.
fn lambda_command(
    program: &Path,
    task_root: &Path,
    environment: Vec<(&'static str, String)>,
) -> Command {
    let mut command = Command::new(program);
    command.env_clear().envs(environment).current_dir(task_root);
    command
}

/// Where bench/python's bootstrap.py and handler.py are.
fn python_task_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Measures each function's bootstrap in `bootstrap_dir` (target/release or target/debug) and its
/// Python counterpart run by `python`, `runs` times each, taking turns. `python` is the path of an
/// interpreter with boto3, such as .venv/bin/python (not resolved through symlinks, so a
/// virtualenv stays one). One spawn of each before the counted ones warms the page cache, so every
/// counted run starts from the same state.
pub async fn measure(bootstrap_dir: &Path, python: &Path, runs: usize) -> Result<Vec<ColdStart>> {
    if runs == 0 {
        bail!("the cold start needs at least one run");
    }
    // Each process starts in its own task root, where relative paths would lead elsewhere.
    let bootstrap_dir = std::path::absolute(bootstrap_dir)?;
    let python = &std::path::absolute(python)?;
    let mut figures = Vec::with_capacity(2 * FUNCTIONS.len());
    for function in &FUNCTIONS {
        let binary = bootstrap_dir.join(function.bin);
        let binary_bytes = tokio::fs::metadata(&binary)
            .await
            .with_context(|| {
                format!(
                    "{}: build the bootstraps first (cargo build --release --bin {})",
                    binary.display(),
                    function.bin
                )
            })?
            .len();
        let zip_bytes = zipped_size(python, &binary).await?;
        let mut rust_bootstrap = function.rust_command(&binary);
        let mut python_bootstrap = function.python_command(python);
        let mut rust_samples = Vec::with_capacity(runs);
        let mut python_samples = Vec::with_capacity(runs);
        for run in 0..=runs {
            let rust_sample = cold_start(&mut rust_bootstrap)
                .await
                .with_context(|| format!("{} (run {run})", function.bin))?;
            let python_sample = cold_start(&mut python_bootstrap)
                .await
                .with_context(|| format!("python-boto3 for {} (run {run})", function.bin))?;
            if run > 0 {
                rust_samples.push(rust_sample);
                python_samples.push(python_sample);
            }
        }
        figures.push(ColdStart::from_samples(
            function.bin.to_string(),
            RUST,
            &rust_samples,
            Some(binary_bytes),
            Some(zip_bytes),
        )?);
        figures.push(ColdStart::from_samples(
            format!("python-boto3 ({})", function.bin),
            PYTHON,
            &python_samples,
            None,
            None,
        )?);
    }
    Ok(figures)
}

impl ColdStart {
    fn from_samples(
        handler: String,
        runtime: &str,
        samples: &[Sample],
        binary_bytes: Option<u64>,
        zip_bytes: Option<u64>,
    ) -> Result<Self> {
        let init_ms: Vec<f64> = samples
            .iter()
            .map(|sample| sample.init.as_secs_f64() * 1000.0)
            .collect();
        let peak_rss_kib = samples
            .iter()
            .map(|sample| sample.peak_rss_kib)
            .max()
            .context("no runs")?;
        Ok(Self {
            handler,
            runtime: runtime.to_string(),
            init_ms_median: quantile(&init_ms, 0.5).context("no runs")?,
            init_ms_p90: quantile(&init_ms, 0.9).context("no runs")?,
            peak_rss_mib: peak_rss_kib as f64 / 1024.0,
            binary_bytes,
            zip_bytes,
        })
    }
}

/// The `q`-quantile of `values` (`q` from 0 to 1), interpolated linearly between the two nearest
/// ranks as NumPy does by default; `None` when there are no values.
fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    Some(sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64))
}

/// What SAM uploads for a function: its binary as `bootstrap` in a zip, deflated at zlib's
/// default level by Python's zipfile, which is what `sam package` and `sam deploy` use.
const ZIP_SIZE_SCRIPT: &str = "\
import io, sys, zipfile
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as archive:
    archive.write(sys.argv[1], 'bootstrap')
print(len(buffer.getvalue()))
";

/// The size of `binary` zipped as SAM zips it, in bytes.
async fn zipped_size(python: &Path, binary: &Path) -> Result<u64> {
    let output = Command::new(python)
        .arg("-c")
        .arg(ZIP_SIZE_SCRIPT)
        .arg(binary)
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "zipping {} failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    printed
        .trim()
        .parse()
        .with_context(|| format!("zipping {} printed {printed:?}", binary.display()))
}

/// One spawn of a bootstrap.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// From spawn to its first `GET /next`.
    init: Duration,
    /// Its `VmHWM` at that moment, in KiB.
    peak_rss_kib: u64,
}

/// How a bootstrap's init ended.
enum InitEnd {
    Request(Option<Arrival>),
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
}

/// Spawns `command` against a fresh emulator, measures it up to its first `/next`, then kills it.
/// A bootstrap that exits, asks for anything else first, or never asks is an error carrying its
/// stderr.
async fn cold_start(command: &mut Command) -> Result<Sample> {
    let mut api = RuntimeApi::start().await?;
    command
        .env("AWS_LAMBDA_RUNTIME_API", api.address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = command.spawn().context("spawning the bootstrap")?;
    let stderr = child.stderr.take().map(|mut pipe| {
        tokio::spawn(async move {
            let mut text = Vec::new();
            // Whatever was read before an error is still worth showing.
            let _ = pipe.read_to_end(&mut text).await;
            String::from_utf8_lossy(&text).into_owned()
        })
    });
    let end = tokio::select! {
        arrival = api.arrivals.recv() => InitEnd::Request(arrival),
        status = child.wait() => InitEnd::Exited(status),
        () = tokio::time::sleep(INIT_TIMEOUT) => InitEnd::TimedOut,
    };
    let failure = match end {
        InitEnd::Request(Some(arrival)) if arrival.is_next() => {
            let pid = child.id().context("the bootstrap is gone")?;
            let peak_rss_kib = peak_rss_kib(pid).await;
            child.kill().await.context("killing the bootstrap")?;
            if let Some(reader) = stderr {
                reader.abort();
            }
            return Ok(Sample {
                init: arrival.at.duration_since(spawned),
                peak_rss_kib: peak_rss_kib?,
            });
        }
        InitEnd::Request(Some(arrival)) => {
            format!("asked for {} {} before /next", arrival.method, arrival.path)
        }
        InitEnd::Request(None) => "outlived the Runtime API emulator".to_string(),
        InitEnd::Exited(status) => format!(
            "exited before asking for /next ({})",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        ),
        InitEnd::TimedOut => format!("did not ask for /next within {INIT_TIMEOUT:?}"),
    };
    // Already gone when it exited by itself.
    let _ = child.kill().await;
    let stderr = match stderr {
        Some(reader) => tokio::time::timeout(Duration::from_secs(1), reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    };
    bail!("the bootstrap {failure}; its stderr:\n{stderr}")
}

/// Process `pid`'s peak resident set so far, in KiB.
async fn peak_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = tokio::fs::read_to_string(&path)
        .await
        .with_context(|| format!("reading {path}"))?;
    vm_hwm_kib(&status).with_context(|| format!("{path} has no VmHWM line"))
}

/// The `VmHWM` of a `/proc/<pid>/status` text (in kB, which the kernel means as KiB).
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// A request the emulator received, and when.
#[derive(Debug)]
struct Arrival {
    at: Instant,
    method: Method,
    path: String,
}

impl Arrival {
    fn is_next(&self) -> bool {
        self.method == Method::GET && self.path == NEXT_PATH
    }
}

/// A Lambda Runtime API on loopback that never has an invocation: it notes when each request
/// arrives and holds `/next` open, as Lambda does while no event is waiting.
struct RuntimeApi {
    /// What `AWS_LAMBDA_RUNTIME_API` names.
    address: SocketAddr,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the Runtime API emulator")?;
        let address = listener.local_addr()?;
        let (sender, arrivals) = mpsc::unbounded_channel();
        Ok(Self {
            address,
            arrivals,
            server: tokio::spawn(serve(listener, sender)),
        })
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, arrivals: mpsc::UnboundedSender<Arrival>) {
    // Owned here, so that stopping the server closes every connection too.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let arrivals = arrivals.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| answer(request, arrivals.clone()));
            // A bootstrap killed in the middle of a request ends its connection with an error;
            // that is how every run ends.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Notes the request; holds `/next` forever and accepts anything else (an init error, say) with
/// Lambda's 202.
async fn answer(
    request: Request<Incoming>,
    arrivals: mpsc::UnboundedSender<Arrival>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let arrival = Arrival {
        at: Instant::now(),
        method: request.method().clone(),
        path: request.uri().path().to_string(),
    };
    let is_next = arrival.is_next();
    // After the measurement nobody listens, which is fine.
    let _ = arrivals.send(arrival);
    if is_next {
        std::future::pending::<()>().await;
    }
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn project_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench lives in the workspace")
            .to_path_buf()
    }

    /// Opens fd 3 to the emulator that `AWS_LAMBDA_RUNTIME_API` names.
    const CONNECT: &str =
        r#"exec 3<>"/dev/tcp/${AWS_LAMBDA_RUNTIME_API%:*}/${AWS_LAMBDA_RUNTIME_API#*:}""#;
    const ASK_FOR_NEXT: &str =
        r"printf 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n' >&3";

    /// A bootstrap in bash, connected to the emulator on fd 3, then running `script`.
    fn fake_bootstrap(script: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!("set -eu\n{CONNECT}\n{script}"));
        command
    }

    #[tokio::test]
    async fn a_cold_start_lasts_from_spawn_to_the_first_next_and_ends_with_a_kill() {
        // given a bootstrap that takes 300 ms to init and then waits on /next
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut bootstrap = fake_bootstrap(&format!(
            "echo $$ > '{}'\nsleep 0.3\n{ASK_FOR_NEXT}\nexec sleep 60",
            pid_file.display()
        ));

        // when
        let sample = cold_start(&mut bootstrap).await.unwrap();

        // then the init includes the 300 ms, the peak RSS was read, and the process is gone
        assert!(
            sample.init >= Duration::from_millis(300) && sample.init < INIT_TIMEOUT,
            "{sample:?}"
        );
        assert!(sample.peak_rss_kib > 0, "{sample:?}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "the bootstrap {} still runs",
            pid.trim()
        );
    }

    #[tokio::test]
    async fn a_bootstrap_that_exits_during_init_fails_the_run_with_its_stderr() {
        let mut bootstrap = fake_bootstrap("echo 'TABLE_NAME must be set' >&2\nexit 3");

        let error = cold_start(&mut bootstrap).await.unwrap_err().to_string();

        assert!(error.contains("exited before asking for /next"), "{error}");
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(error.contains("TABLE_NAME must be set"), "{error}");
    }

    #[tokio::test]
    async fn a_bootstrap_that_reports_an_init_error_fails_the_run() {
        let mut bootstrap = fake_bootstrap(concat!(
            r"printf 'POST /2018-06-01/runtime/init/error HTTP/1.1\r\n' >&3",
            "\n",
            r"printf 'Host: runtime\r\nContent-Length: 2\r\n\r\n{}' >&3",
            "\nexec sleep 60",
        ));

        let error = cold_start(&mut bootstrap).await.unwrap_err().to_string();

        assert!(
            error.contains("asked for POST /2018-06-01/runtime/init/error before /next"),
            "{error}"
        );
    }

    #[test]
    fn median_and_p90_interpolate_between_ranks() {
        let ten: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(quantile(&ten, 0.5), Some(5.5));
        assert!((quantile(&ten, 0.9).unwrap() - 9.1).abs() < 1e-9);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[7.0], 0.9), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_figure_takes_the_median_the_p90_and_the_largest_peak() {
        let samples: Vec<Sample> = (1..=10)
            .map(|ms| Sample {
                init: Duration::from_millis(ms),
                peak_rss_kib: 1024 * (ms % 4),
            })
            .collect();

        let figure = ColdStart::from_samples("x".into(), RUST, &samples, None, None).unwrap();

        assert!((figure.init_ms_median - 5.5).abs() < 1e-9, "{figure:?}");
        assert!((figure.init_ms_p90 - 9.1).abs() < 1e-9, "{figure:?}");
        assert_eq!(figure.peak_rss_mib, 3.0);
        assert!(ColdStart::from_samples("x".into(), RUST, &[], None, None).is_err());
    }

    #[test]
    fn the_peak_rss_is_vm_hwm() {
        let status =
            "Name:\tbootstrap\nVmPeak:\t  20000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    9000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(9876));
        assert_eq!(vm_hwm_kib("VmRSS:\t 9000 kB\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_hwm_kib(&own).is_some_and(|kib| kib > 0), "{own}");
    }

    #[tokio::test]
    async fn the_zip_is_deflated() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("bootstrap");
        std::fs::write(&binary, vec![0u8; 1 << 20]).unwrap();
        let python = certship_testkit::moto::venv_python().unwrap();

        let size = zipped_size(&python, &binary).await.unwrap();

        // Stored, it would be over 1 MiB; an empty zip is 22 bytes.
        assert!((100..8 * 1024).contains(&size), "{size}");
    }

    /// The Python side runs end to end: bootstrap.py imports handler.py, which builds each
    /// function's boto3 clients under the bench's environment and reaches /next.
    #[tokio::test]
    async fn each_python_handler_builds_its_clients_and_reaches_next() {
        let python = certship_testkit::moto::venv_python().unwrap();
        for function in &FUNCTIONS {
            let sample = cold_start(&mut function.python_command(&python))
                .await
                .unwrap_or_else(|e| panic!("{}: {e:#}", function.bin));
            // A bare interpreter stays under 15 MiB; boto3 with its clients does not.
            assert!(
                sample.peak_rss_kib > 25 * 1024,
                "{}: {sample:?}",
                function.bin
            );
        }
    }

    fn boto3_name(sdk_crate: &str) -> &str {
        match sdk_crate {
            "eventbridge" => "events",
            "sfn" => "stepfunctions",
            other => other,
        }
    }

    #[test]
    fn the_python_handler_builds_the_clients_each_rust_function_builds() {
        for function in &FUNCTIONS {
            let path = project_root().join(format!("functions/{}/src/lib.rs", function.bin));
            let source = std::fs::read_to_string(&path).unwrap();
            let built: BTreeSet<&str> = source
                .split("aws_sdk_")
                .skip(1)
                .filter_map(|rest| rest.split_once("::Client::new("))
                .map(|(sdk_crate, _)| sdk_crate)
                .filter(|sdk_crate| {
                    sdk_crate
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .map(boto3_name)
                .collect();
            let python: BTreeSet<&str> = function.boto3_clients.iter().copied().collect();
            assert!(!built.is_empty(), "{} builds no client?", path.display());
            assert_eq!(python, built, "{}", function.bin);
        }
    }

    #[test]
    fn each_function_gets_the_environment_the_template_gives_it() {
        let template = certship_stack::Template::load(&project_root()).unwrap();
        let document = template.document();
        let resources = document["Resources"].as_mapping().unwrap();
        let functions: Vec<_> = resources
            .values()
            .filter(|resource| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
            .collect();
        assert_eq!(functions.len(), FUNCTIONS.len());
        for function in &FUNCTIONS {
            let resource = functions
                .iter()
                .find(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(function.bin))
                .unwrap_or_else(|| panic!("the template builds no {}", function.bin));
            let properties = &resource["Properties"];
            // A function the template gives no environment has none.
            let template_variables: BTreeSet<&str> = properties["Environment"]["Variables"]
                .as_mapping()
                .map(|variables| variables.keys().filter_map(|name| name.as_str()).collect())
                .unwrap_or_default();
            let bench_variables: BTreeSet<&str> =
                function.settings.iter().map(|(name, _)| *name).collect();
            assert_eq!(bench_variables, template_variables, "{}", function.bin);
            let memory = properties["MemorySize"]
                .as_u64()
                .or(document["Globals"]["Function"]["MemorySize"].as_u64());
            assert_eq!(
                memory.map(|mb| mb.to_string()).as_deref(),
                Some(MEMORY_SIZE_MB),
                "{}",
                function.bin
            );
        }
    }
}
