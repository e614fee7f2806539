//! The install document's own script, run as the SSM agent runs it (parameters as `SSM_*`
//! environment variables), with bash, openssl and the AWS CLI, against secrets that the real
//! export Lambda code stored in moto; each simulated host is a temporary directory whose
//! `systemctl` and `aws` record their calls, so every test can count reloads and secret fetches.

use certship_shared::host_report::{Outcome, Reason};
use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_shared::{DeploymentRequest, ExportResult, HostReport, Trigger, WorkflowState};
use certship_stack::document::CommandDocument;
use certship_testkit::{moto::Moto, moto::project_root, moto::venv_python, seed};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use tempfile::TempDir;

/// The install document, through the one parser every reader uses.
fn install_document() -> CommandDocument {
    CommandDocument::install(&project_root()).unwrap()
}

/// Its script, as the agent writes it to disk.
fn script_of(doc: &CommandDocument) -> String {
    doc.shell_step()
        .expect("one aws:runShellScript step")
        .script()
}

/// The four files of certificate `web`, as the document names them.
const WEB_FILES: [&str; 4] = [
    "certs/web-cert.pem",
    "certs/web-chain.pem",
    "certs/web-fullchain.pem",
    "private/web-privkey.pem",
];

/// How long the manifest alone vouches for the files (the script's FULL_CHECK_SECONDS).
const FULL_CHECK_SECONDS: u64 = 86_400;

/// A simulated host: its certificate and key directories, a private TMPDIR, a state directory
/// the script creates itself, a stand-in `systemctl` that records its calls and fails as often
/// as told, and an `aws` that records its calls before running the real AWS CLI.
struct Host {
    root: TempDir,
}

impl Host {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("certship-host-")
            .tempdir()
            .unwrap();
        let host = Self { root };
        for dir in ["certs", "private", "tmp", "bin"] {
            std::fs::create_dir(host.path(dir)).unwrap();
        }
        let systemctl = host.path("bin/systemctl");
        std::fs::write(
            &systemctl,
            "#!/usr/bin/env bash\n\
             log=\"$(dirname \"$0\")/../systemctl.log\"\n\
             echo \"$*\" >>\"$log\"\n\
             calls=$(wc -l <\"$log\")\n\
             if (( calls <= ${FAIL_RELOADS:-0} )); then echo \"Job for $2 failed\" >&2; exit 1; fi\n",
        )
        .unwrap();
        let aws = host.path("bin/aws");
        let real_aws = venv_python().unwrap().parent().unwrap().join("aws");
        std::fs::write(
            &aws,
            format!(
                "#!/usr/bin/env bash\n\
                 echo \"$*\" >>\"$(dirname \"$0\")/../aws.log\"\n\
                 exec '{}' \"$@\"\n",
                real_aws.display()
            ),
        )
        .unwrap();
        for tool in [systemctl, aws] {
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        host
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn mode(&self, rel: &str) -> u32 {
        std::fs::metadata(self.path(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    fn log(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn reloads(&self) -> Vec<String> {
        self.log("systemctl.log")
    }

    /// How many times the script fetched the secret (ran the AWS CLI at all).
    fn fetches(&self) -> usize {
        self.log("aws.log").len()
    }

    /// Every file under certs/ and private/, with its mode and bytes.
    fn snapshot(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut files = BTreeMap::new();
        for dir in ["certs", "private"] {
            for entry in std::fs::read_dir(self.path(dir)).unwrap() {
                let entry = entry.unwrap();
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
                files.insert(name, (mode, std::fs::read(entry.path()).unwrap()));
            }
        }
        files
    }

    /// The four live files of `web` only (no `.previous`), with mode and bytes.
    fn live(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut all = self.snapshot();
        all.retain(|name, _| WEB_FILES.contains(&name.as_str()));
        all
    }

    fn temporary_files(&self) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(self.path("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for dir in ["certs", "private", "state"] {
            let Ok(entries) = std::fs::read_dir(self.path(dir)) else {
                continue;
            };
            for entry in entries {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if name.contains(".certship-") {
                    left.push(name);
                }
            }
        }
        left
    }

    /// The manifest of `web` as key -> value.
    fn manifest(&self) -> BTreeMap<String, String> {
        key_values(&self.file("state/web.manifest"))
    }

    /// Rewrites one `key=value` line of a state file (`state/web.manifest`, `state/web.backoff`).
    fn edit_state(&self, rel: &str, key: &str, value: impl Fn(&str) -> String) {
        let text = self.file(rel);
        let mut found = false;
        let edited: String = text
            .lines()
            .map(|line| match line.split_once('=') {
                Some((k, v)) if k == key => {
                    found = true;
                    format!("{k}={}\n", value(v))
                }
                _ => format!("{line}\n"),
            })
            .collect();
        assert!(found, "{rel} has no {key}: {text}");
        std::fs::write(self.path(rel), edited).unwrap();
    }

    /// Moves a recorded time (`full_check`, `rolled_back_at`) `seconds` into the past.
    fn age(&self, rel: &str, key: &str, seconds: u64) {
        self.edit_state(rel, key, |v| {
            (v.parse::<u64>().unwrap() - seconds).to_string()
        });
    }
}

fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `sha256sum` of a host's file.
fn sha256sum(host: &Host, rel: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(host.path(rel))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// One cloud per test: moto with an exported certificate.
struct Cloud {
    moto: Moto,
    export: export_certificate::AppState,
}

impl Cloud {
    async fn start() -> Self {
        let moto = Moto::start().unwrap();
        let config = moto.sdk_config("us-east-1").await;
        let rules = RequestRules::new("us-east-1", ReloadAllowlist::parse("nginx").unwrap());
        let export =
            export_certificate::AppState::new(&config, export_certificate::Settings { rules });
        Self { moto, export }
    }

    /// Requests a new exportable certificate and exports it with the real handler.
    async fn exported(&self, domain: &str, cert_name: &str) -> ExportResult {
        let arn = seed::certificate(&self.export.acm, domain, true)
            .await
            .unwrap();
        let request = WorkflowState::new(DeploymentRequest {
            certificate_arn: arn,
            cert_name: cert_name.into(),
            target_tag_key: "env".into(),
            target_tag_value: "dev".into(),
            reload_service: None,
            trigger: Trigger::Api,
        });
        export_certificate::handler(&self.export, request)
            .await
            .unwrap()
    }

    async fn bundle(&self, export: &ExportResult) -> Value {
        seed::secret_bundle(&self.export.secrets, export)
            .await
            .unwrap()
    }

    /// Stores `secret_string` as a new certship secret, returning (SecretId, SecretVersionId).
    async fn store(&self, name: &str, secret_string: &str) -> (String, String) {
        let out = self
            .export
            .secrets
            .create_secret()
            .name(format!("certship/{name}"))
            .secret_string(secret_string)
            .send()
            .await
            .unwrap();
        (out.arn.unwrap(), out.version_id.unwrap())
    }
}

/// The outcome of one run: exit status, everything printed, the JSON outcome line and the
/// same line as the shared type reads it.
struct Run {
    output: Output,
    text: String,
    outcome: Value,
    report: HostReport,
}

impl Run {
    fn ok(&self) -> bool {
        self.output.status.success()
    }

    fn reason(&self) -> Option<Reason> {
        self.report.reason.as_deref().and_then(Reason::parse)
    }

    /// Asserts the outcome, the reason and the exit status that go with them.
    fn assert_outcome(&self, outcome: Outcome, reason: Option<Reason>) {
        assert_eq!(self.report.outcome(), outcome, "{}", self.text);
        assert_eq!(self.reason(), reason, "{}", self.text);
        assert_eq!(self.ok(), outcome.holds_version(), "{}", self.text);
    }

    /// The report's digests are those of the host's `web` files as they are now.
    fn assert_hashes_of(&self, host: &Host) {
        let hashes = self.report.sha256.as_ref().expect("sha256 in the report");
        assert_eq!(
            [
                &hashes.cert,
                &hashes.chain,
                &hashes.fullchain,
                &hashes.privkey
            ],
            WEB_FILES.map(|f| sha256sum(host, f)).each_ref(),
            "{}",
            self.text
        );
    }
}

static SCRIPTS: AtomicUsize = AtomicUsize::new(0);

/// The document's script started for `host` with `parameters` (name -> value), as the agent
/// would; `finish` reads its result.
fn start(
    cloud: &Cloud,
    host: &Host,
    parameters: &[(&str, &str)],
    extra_env: &[(&str, &str)],
    strace_to: Option<&Path>,
) -> Child {
    let doc = install_document();
    // one file per run, so runs on one host can overlap
    let script = host.path(&format!(
        "_script-{}.sh",
        SCRIPTS.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&script, script_of(&doc)).unwrap();
    let venv_bin = venv_python().unwrap().parent().unwrap().to_path_buf();
    let mut command = match strace_to {
        Some(trace) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-e", "trace=execve", "-s", "65536", "-o"])
                .arg(trace)
                .arg("bash");
            c
        }
        None => Command::new("bash"),
    };
    command.arg(&script).env_clear();
    command.env(
        "PATH",
        format!(
            "{}:{}:/usr/local/bin:/usr/bin:/bin",
            host.path("bin").display(),
            venv_bin.display()
        ),
    );
    command
        .env("HOME", host.path("tmp"))
        .env("TMPDIR", host.path("tmp"));
    for (k, v) in cloud.moto.env() {
        command.env(k, v);
    }
    // Every parameter the caller does not give gets the document's default, as the agent does.
    for (name, parameter) in &doc.parameters {
        if let Some(default) = &parameter.default {
            command.env(format!("SSM_{name}"), default);
        }
    }
    command.env("SSM_CertificateDirectory", host.path("certs"));
    command.env("SSM_PrivateKeyDirectory", host.path("private"));
    command.env("SSM_StateDirectory", host.path("state"));
    for (name, value) in parameters {
        command.env(format!("SSM_{name}"), value);
    }
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a started run and reads its outcome line, through the shared type too.
fn finish(child: Child) -> Run {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        last.len() < HostReport::MAX_LINE_BYTES,
        "a {}-byte report: {text}",
        last.len()
    );
    let outcome = serde_json::from_str(&last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {text}"));
    // the shared type reads that very line, and names every field of it
    let report =
        HostReport::from_output(&stdout).unwrap_or_else(|| panic!("no HostReport in: {text}"));
    assert!(report.other.is_empty(), "unnamed fields {:?}", report.other);
    assert_eq!(serde_json::to_value(&report).unwrap(), outcome);
    Run {
        output,
        text,
        outcome,
        report,
    }
}

/// Runs the document's script for `host` with `parameters` (name -> value), as the agent would.
fn run(cloud: &Cloud, host: &Host, parameters: &[(&str, &str)], extra_env: &[(&str, &str)]) -> Run {
    finish(start(cloud, host, parameters, extra_env, None))
}

/// The four parameters dispatch-install sends, for one secret version.
fn secret_params<'a>(
    secret_id: &'a str,
    version: &'a str,
    serial: &'a str,
    cert_name: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("SecretId", secret_id),
        ("SecretVersionId", version),
        ("ExpectedSerial", serial),
        ("CertName", cert_name),
    ]
}

fn params<'a>(export: &'a ExportResult, cert_name: &'a str) -> Vec<(&'static str, &'a str)> {
    secret_params(
        &export.secret_arn,
        &export.secret_version_id,
        &export.serial,
        cert_name,
    )
}

/// `params` for `web`, reloading nginx.
fn reloading(export: &ExportResult) -> Vec<(&'static str, &str)> {
    let mut parameters = params(export, "web");
    parameters.push(("ReloadService", "nginx"));
    parameters
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Installs `export` as `web` on a fresh host, asserting success.
fn install_ok(cloud: &Cloud, host: &Host, export: &ExportResult) -> Run {
    let result = run(cloud, host, &params(export, "web"), &[]);
    assert!(result.ok(), "{}", result.text);
    result
}

/// A failing run leaves the host exactly as it was and no temporary file behind.
fn assert_failed_cleanly(
    result: &Run,
    before: &BTreeMap<String, (u32, Vec<u8>)>,
    host: &Host,
    reason: &str,
) {
    assert!(!result.ok(), "expected a failure: {}", result.text);
    assert_eq!(result.outcome["status"], "failed");
    assert_eq!(result.report.outcome(), Outcome::Failed);
    assert_eq!(
        result.report.reason, None,
        "no reason when nothing was written"
    );
    assert!(
        result.outcome["error"].as_str().unwrap().contains(reason),
        "{}",
        result.text
    );
    assert_eq!(&host.snapshot(), before, "installed files changed");
    assert_eq!(host.temporary_files(), Vec::<String>::new());
}
#[tokio::test]
async fn a_fresh_install_writes_the_four_files_with_their_modes() {
    // given an exported RSA certificate and an empty host
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let bundle = cloud.bundle(&export).await;
    let host = Host::new();

    // when the document runs with a reload service
    let mut parameters = params(&export, "web");
    parameters.push(("ReloadService", "nginx"));
    parameters.push(("FileGroup", "daemon"));
    let result = run(&cloud, &host, &parameters, &[]);

    // then the files are installed, verified and reloaded
    result.assert_outcome(Outcome::Installed, Some(Reason::Missing));
    assert_eq!(result.outcome["status"], "installed");
    assert_eq!(result.outcome["reason"], "missing");
    assert_eq!(
        result.outcome["secret_version_id"],
        export.secret_version_id.as_str()
    );
    result.assert_hashes_of(&host);
    assert_eq!(result.report.error, None);
    assert_eq!(result.outcome["cert_name"], "web");
    assert_eq!(result.outcome["changed"], true);
    assert_eq!(result.outcome["reloaded"], true);
    assert_eq!(result.outcome["rolled_back"], false);
    assert!(certship_shared::serial::same_serial(
        result.outcome["serial"].as_str().unwrap(),
        &export.serial
    ));
    assert_eq!(result.outcome["not_after"], export.not_after.as_str());
    assert_eq!(
        host.file("certs/web-cert.pem"),
        bundle["certificate"].as_str().unwrap()
    );
    assert_eq!(
        host.file("certs/web-chain.pem"),
        bundle["chain"].as_str().unwrap()
    );
    assert_eq!(
        host.file("certs/web-fullchain.pem"),
        bundle["fullchain"].as_str().unwrap()
    );
    assert_eq!(
        (
            host.mode("certs/web-cert.pem"),
            host.mode("certs/web-chain.pem"),
            host.mode("certs/web-fullchain.pem")
        ),
        (0o644, 0o644, 0o644)
    );
    assert_eq!(host.mode("private/web-privkey.pem"), 0o600);
    // owner and group as given (daemon is gid 1 on Debian)
    for file in [
        "certs/web-cert.pem",
        "certs/web-fullchain.pem",
        "private/web-privkey.pem",
    ] {
        let meta = std::fs::metadata(host.path(file)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 1), "{file}");
    }
    let key_public = openssl(
        &["pkey", "-in", "private/web-privkey.pem", "-pubout"],
        host.root.path(),
    );
    let cert_public = openssl(
        &["x509", "-in", "certs/web-cert.pem", "-noout", "-pubkey"],
        host.root.path(),
    );
    assert_eq!(key_public, cert_public);
    assert!(!host.file("private/web-privkey.pem").contains("ENCRYPTED"));
    assert_eq!(host.reloads(), ["reload-or-restart nginx"]);
    assert_eq!(host.temporary_files(), Vec::<String>::new());
    assert!(
        !host.path("certs/web-cert.pem.previous").exists(),
        "nothing to keep on a fresh host"
    );
    // and the state directory, made private, records the version and the files' digests only
    assert_eq!(host.mode("state"), 0o700);
    assert_eq!(host.mode("state/web.manifest"), 0o600);
    assert!(host.path("state/web.lock").exists());
    assert!(!host.path("state/web.backoff").exists());
    let manifest = host.manifest();
    let checked: u64 = manifest["full_check"].parse().unwrap();
    assert!(checked.abs_diff(now()) < 120, "{manifest:?}");
    let hashes = result.report.sha256.clone().unwrap();
    assert_eq!(
        manifest,
        BTreeMap::from(
            [
                ("secret_id", export.secret_arn.clone()),
                ("secret_version_id", export.secret_version_id.clone()),
                ("serial", result.report.serial.clone().unwrap()),
                ("owner", "root".into()),
                ("group", "daemon".into()),
                ("cert_dir", host.path("certs").display().to_string()),
                ("key_dir", host.path("private").display().to_string()),
                ("sha256_cert", hashes.cert),
                ("sha256_chain", hashes.chain),
                ("sha256_fullchain", hashes.fullchain),
                ("sha256_privkey", hashes.privkey),
                ("full_check", checked.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v))
        )
    );
    assert_eq!(host.fetches(), 1);
}

#[tokio::test]
async fn an_ec_p256_key_installs_too() {
    // given a bundle with an EC P-256 key issued by a CA of the test's own
    let cloud = Cloud::start().await;
    let host = Host::new();
    let dir = host.path("tmp-ca");
    std::fs::create_dir(&dir).unwrap();
    let sh = |script: &str| {
        let out = Command::new("bash")
            .args(["-euc", script])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -subj /CN=test-ca -days 30 -out ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
        -subj /CN=ec.example.com -out leaf.csr 2>/dev/null
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 0x0ec256 -days 30 \
        -out leaf.pem 2>/dev/null
        printf %s ecpassphrase0123456789 > pass
        openssl pkcs8 -topk8 -v2 aes-256-cbc -in leaf.key -passout file:pass -out leaf.enc.pem",
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let bundle = serde_json::json!({
        "certificate": read("leaf.pem"), "chain": read("ca.pem"),
        "fullchain": format!("{}{}", read("leaf.pem"), read("ca.pem")),
        "encrypted_private_key": read("leaf.enc.pem"), "passphrase": "ecpassphrase0123456789",
        "serial": "0e:c2:56",
    });
    std::fs::remove_dir_all(&dir).unwrap();
    let (secret_id, version) = cloud.store("ec-0123456789ab", &bundle.to_string()).await;

    // when
    let result = run(
        &cloud,
        &host,
        &secret_params(&secret_id, &version, "0e:c2:56", "ec"),
        &[],
    );

    // then
    assert!(result.ok(), "{}", result.text);
    assert_eq!(result.outcome["serial"], "EC256");
    assert!(
        host.file("private/ec-privkey.pem")
            .contains("BEGIN PRIVATE KEY")
    );
    assert_eq!(
        host.reloads(),
        Vec::<String>::new(),
        "no ReloadService, no reload"
    );
}

#[tokio::test]
async fn the_same_version_again_is_unchanged_without_fetching_the_secret() {
    // given version one installed, with its manifest
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let before = host.snapshot();
    let manifest = host.manifest();

    // when it runs again with no way to reach Secrets Manager
    let again = run(
        &cloud,
        &host,
        &reloading(&export),
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );

    // then the manifest and the files vouch for it: unchanged, nothing fetched, nothing reloaded
    again.assert_outcome(Outcome::Unchanged, None);
    assert_eq!(again.outcome["changed"], false);
    assert_eq!(again.outcome["reloaded"], false);
    assert!(again.outcome.get("reason").is_none(), "{}", again.text);
    assert!(certship_shared::serial::same_serial(
        again.outcome["serial"].as_str().unwrap(),
        &export.serial
    ));
    assert_eq!(again.outcome["not_after"], export.not_after.as_str());
    again.assert_hashes_of(&host);
    assert_eq!(host.fetches(), 1, "only the first run fetched");
    assert_eq!(host.snapshot(), before);
    assert_eq!(host.reloads(), Vec::<String>::new());
    assert_eq!(host.manifest(), manifest, "the fast path does not touch it");
}

#[tokio::test]
async fn once_a_day_the_secret_is_fetched_and_compared_again() {
    // given version one installed, its last full check just over a day ago
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let before = host.snapshot();
    host.age("state/web.manifest", "full_check", FULL_CHECK_SECONDS + 1);

    // when it runs again
    let again = run(&cloud, &host, &reloading(&export), &[]);

    // then it fetched and compared: still unchanged, nothing reloaded, the check time refreshed
    again.assert_outcome(Outcome::Unchanged, None);
    assert_eq!(host.fetches(), 2);
    assert_eq!(host.snapshot(), before);
    assert_eq!(host.reloads(), Vec::<String>::new());
    let checked: u64 = host.manifest()["full_check"].parse().unwrap();
    assert!(checked.abs_diff(now()) < 120);

    // and the run after that is the fast path again
    run(&cloud, &host, &reloading(&export), &[]).assert_outcome(Outcome::Unchanged, None);
    assert_eq!(host.fetches(), 2);
}

/// Installs version one on a fresh host, lets `drift` change it, and runs the document again:
/// the files come back byte for byte, with their modes, and the service reloads once.
async fn drift_case(drift: impl FnOnce(&Host)) {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let fresh = host.live();
    drift(&host);
    assert_ne!(host.live(), fresh, "the drift changed something");

    let repair = run(&cloud, &host, &reloading(&export), &[]);

    repair.assert_outcome(Outcome::Repaired, Some(Reason::Drift));
    assert_eq!(repair.outcome["changed"], true);
    assert_eq!(repair.outcome["reloaded"], true);
    assert_eq!(
        host.live(),
        fresh,
        "byte-identical to the fresh install, modes too"
    );
    assert_eq!(host.mode("private/web-privkey.pem"), 0o600);
    assert_eq!(host.reloads(), ["reload-or-restart nginx"]);
    assert_eq!(host.fetches(), 2);
    repair.assert_hashes_of(&host);
    assert_eq!(host.temporary_files(), Vec::<String>::new());
    if host.path("private/web-privkey.pem.previous").exists() {
        assert_eq!(host.mode("private/web-privkey.pem.previous"), 0o600);
    }

    // and the next run is unchanged again, from the rewritten manifest
    run(&cloud, &host, &reloading(&export), &[]).assert_outcome(Outcome::Unchanged, None);
    assert_eq!(host.fetches(), 2);
    assert_eq!(host.reloads().len(), 1);
}

#[tokio::test]
async fn an_overwritten_key_is_repaired() {
    drift_case(|host| {
        std::fs::write(host.path("private/web-privkey.pem"), "not a key\n").unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_key_opened_to_everyone_is_repaired() {
    drift_case(|host| {
        std::fs::set_permissions(
            host.path("private/web-privkey.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_deleted_chain_is_repaired() {
    drift_case(|host| std::fs::remove_file(host.path("certs/web-chain.pem")).unwrap()).await;
}

#[tokio::test]
async fn a_manifest_edited_along_with_the_files_is_caught_by_the_daily_full_check() {
    // given version one installed, then its chain replaced and the manifest told the new digest
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let fresh = host.live();
    let unrelated_ca =
        std::fs::read_to_string(project_root().join("events/fixtures/chain.pem")).unwrap();
    std::fs::write(host.path("certs/web-chain.pem"), unrelated_ca).unwrap();
    let forged = sha256sum(&host, "certs/web-chain.pem");
    host.edit_state("state/web.manifest", "sha256_chain", |_| forged.clone());

    // when it runs within the day, the manifest vouches for the files (by design)
    let fooled = run(&cloud, &host, &reloading(&export), &[]);
    fooled.assert_outcome(Outcome::Unchanged, None);
    assert_eq!(fooled.report.sha256.as_ref().unwrap().chain, forged);
    assert_eq!(host.fetches(), 1);

    // but once the day is over, the full check compares with the secret and repairs
    host.age("state/web.manifest", "full_check", FULL_CHECK_SECONDS);
    let repair = run(&cloud, &host, &reloading(&export), &[]);
    repair.assert_outcome(Outcome::Repaired, Some(Reason::Drift));
    assert_eq!(host.live(), fresh);
    assert_eq!(host.reloads(), ["reload-or-restart nginx"]);
    assert_ne!(host.manifest()["sha256_chain"], forged);
}

#[tokio::test]
async fn a_new_serial_replaces_the_files_and_keeps_the_previous_set() {
    let cloud = Cloud::start().await;
    let first = cloud.exported("www.example.com", "web").await;
    let second = cloud.exported("www2.example.com", "web2").await;
    assert_ne!(first.serial, second.serial);
    let host = Host::new();
    install_ok(&cloud, &host, &first);
    let old = host.snapshot();

    let upgrade = install_ok(&cloud, &host, &second);

    upgrade.assert_outcome(Outcome::Installed, Some(Reason::NewSerial));
    assert_eq!(upgrade.outcome["reason"], "new-serial");
    assert_eq!(
        host.manifest()["secret_version_id"],
        second.secret_version_id
    );
    upgrade.assert_hashes_of(&host);
    assert!(certship_shared::serial::same_serial(
        upgrade.outcome["serial"].as_str().unwrap(),
        &second.serial
    ));
    for (name, (mode, bytes)) in &old {
        assert_eq!(
            std::fs::read(host.path(&format!("{name}.previous"))).unwrap(),
            *bytes,
            "{name}.previous"
        );
        assert_eq!(host.mode(&format!("{name}.previous")), *mode);
        // The chain is the issuing CA's, the same for both certificates.
        if !name.ends_with("-chain.pem") {
            assert_ne!(
                std::fs::read(host.path(name)).unwrap(),
                *bytes,
                "{name} was replaced"
            );
        }
    }
    assert_eq!(host.temporary_files(), Vec::<String>::new());
}

/// Installs a good certificate, then runs `parameters` built from a tampered bundle.
async fn failing_case(
    mutate: impl FnOnce(&mut Value),
    expected_serial: Option<&str>,
    reason: &str,
) {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let before = host.snapshot();

    let other = cloud.exported("other.example.com", "other").await;
    let mut bundle = cloud.bundle(&other).await;
    let serial = bundle["serial"].as_str().unwrap().to_string();
    mutate(&mut bundle);
    let secret_string = match bundle {
        Value::String(raw) => raw,
        value => value.to_string(),
    };
    let (secret_id, version) = cloud.store("tampered-0123456789ab", &secret_string).await;
    let expected = expected_serial.unwrap_or(&serial);
    let result = run(
        &cloud,
        &host,
        &secret_params(&secret_id, &version, expected, "web"),
        &[],
    );
    assert_failed_cleanly(&result, &before, &host, reason);
}

#[tokio::test]
async fn a_wrong_passphrase_fails_and_touches_nothing() {
    failing_case(
        |b| b["passphrase"] = "WrongPassphrase0000000000000000".into(),
        None,
        "could not decrypt",
    )
    .await;
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_fails() {
    let cloud = Cloud::start().await;
    let stranger = cloud.exported("stranger.example.com", "stranger").await;
    let stranger = cloud.bundle(&stranger).await;
    drop(cloud);
    failing_case(
        move |b| {
            b["encrypted_private_key"] = stranger["encrypted_private_key"].clone();
            b["passphrase"] = stranger["passphrase"].clone();
        },
        None,
        "does not match the certificate",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_expected_serial_fails() {
    failing_case(|_| {}, Some("0a:bc:de"), "is not the expected 0a:bc:de").await;
}

#[tokio::test]
async fn corrupt_json_fails() {
    failing_case(
        |b| *b = Value::String("{\"certificate\": \"trunc".into()),
        None,
        "not a certship bundle",
    )
    .await;
}

#[tokio::test]
async fn a_chain_that_did_not_issue_the_certificate_fails() {
    let unrelated_ca =
        std::fs::read_to_string(project_root().join("events/fixtures/chain.pem")).unwrap();
    failing_case(
        move |b| b["chain"] = unrelated_ca.into(),
        None,
        "did not issue",
    )
    .await;
}

#[tokio::test]
async fn an_expired_certificate_fails() {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let before = host.snapshot();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .args([
            "-euc",
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -subj /CN=ca -days 30 -out ca.pem 2>/dev/null
             openssl req -newkey rsa:2048 -nodes -keyout leaf.key -subj /CN=old -out leaf.csr 2>/dev/null
             openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 0x0dead -days -1 -out leaf.pem 2>/dev/null
             openssl pkcs8 -topk8 -v2 aes-256-cbc -in leaf.key -passout pass:expiredpass0000 -out leaf.enc.pem",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let bundle = serde_json::json!({
        "certificate": read("leaf.pem"), "chain": read("ca.pem"), "encrypted_private_key": read("leaf.enc.pem"),
        "passphrase": "expiredpass0000",
    });
    let (secret_id, version) = cloud
        .store("expired-0123456789ab", &bundle.to_string())
        .await;

    let result = run(
        &cloud,
        &host,
        &secret_params(&secret_id, &version, "0DEAD", "web"),
        &[],
    );
    assert_failed_cleanly(&result, &before, &host, "expired");
}

#[tokio::test]
async fn a_missing_secret_fails() {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let before = host.snapshot();

    let missing = export.secret_arn.replace("certship/web", "certship/gone");
    let result = run(
        &cloud,
        &host,
        &secret_params(&missing, &export.secret_version_id, &export.serial, "web"),
        &[],
    );
    assert_failed_cleanly(&result, &before, &host, "could not fetch secret version");
}

#[tokio::test]
async fn a_failed_reload_restores_the_previous_set_and_reloads_again() {
    // given version one installed
    let cloud = Cloud::start().await;
    let first = cloud.exported("www.example.com", "web").await;
    let second = cloud.exported("www2.example.com", "web2").await;
    let host = Host::new();
    install_ok(&cloud, &host, &first);
    let before = host.snapshot();

    // when version two's reload fails once
    let mut parameters = params(&second, "web");
    parameters.push(("ReloadService", "nginx.service"));
    let result = run(&cloud, &host, &parameters, &[("FAIL_RELOADS", "1")]);

    // then version one is back, reloaded, and the run failed saying so
    result.assert_outcome(Outcome::RolledBack, Some(Reason::NewSerial));
    assert_eq!(result.outcome["status"], "rolled-back");
    assert_eq!(result.outcome["rolled_back"], true);
    assert_eq!(result.outcome["changed"], false);
    result.assert_hashes_of(&host);
    assert_eq!(result.outcome["reloaded"], false);
    assert!(
        result.outcome["error"]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{}",
        result.text
    );
    assert_eq!(
        host.reloads(),
        [
            "reload-or-restart nginx.service",
            "reload-or-restart nginx.service"
        ]
    );
    let after = host.snapshot();
    for (name, content) in &before {
        assert_eq!(after.get(name), Some(content), "{name} restored");
    }
    assert_eq!(host.temporary_files(), Vec::<String>::new());
    // and version two is marked for back-off; version one's manifest still describes the host
    let marker = key_values(&host.file("state/web.backoff"));
    assert_eq!(marker["secret_version_id"], second.secret_version_id);
    let at: u64 = marker["rolled_back_at"].parse().unwrap();
    assert!(at.abs_diff(now()) < 120);
    assert_eq!(
        host.manifest()["secret_version_id"],
        first.secret_version_id
    );
}

#[tokio::test]
async fn a_failed_reload_of_a_fresh_install_removes_what_it_installed() {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    let mut parameters = params(&export, "web");
    parameters.push(("ReloadService", "nginx"));

    let result = run(&cloud, &host, &parameters, &[("FAIL_RELOADS", "1")]);

    result.assert_outcome(Outcome::RolledBack, Some(Reason::Missing));
    assert_eq!(result.outcome["rolled_back"], true);
    assert_eq!(result.report.sha256, None, "no files, no digests");
    assert_eq!(host.snapshot(), BTreeMap::new());
    assert_eq!(
        host.reloads().len(),
        1,
        "nothing to reload without a previous certificate"
    );
}

#[tokio::test]
async fn the_json_reader_falls_back_to_python3() {
    // given a PATH holding every tool the script uses except jq
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    let shims = host.path("shims");
    std::fs::create_dir(&shims).unwrap();
    let tools = [
        "bash",
        "cat",
        "cut",
        "tr",
        "awk",
        "grep",
        "date",
        "tail",
        "mktemp",
        "rm",
        "mv",
        "cp",
        "install",
        "mkdir",
        "dirname",
        "openssl",
        "python3",
        "flock",
        "sha256sum",
        "stat",
        "chmod",
    ];
    for tool in tools {
        let found = Command::new("bash")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let found = String::from_utf8(found.stdout).unwrap();
        assert!(!found.trim().is_empty(), "{tool} is installed");
        std::os::unix::fs::symlink(found.trim(), shims.join(tool)).unwrap();
    }
    let venv_bin = venv_python().unwrap().parent().unwrap().to_path_buf();
    std::os::unix::fs::symlink(venv_bin.join("aws"), shims.join("aws")).unwrap();
    // A real interpreter, not a version manager's shim that needs its own environment.
    std::fs::remove_file(shims.join("python3")).unwrap();
    std::os::unix::fs::symlink(venv_python().unwrap(), shims.join("python3")).unwrap();
    let path = format!("{}:{}", host.path("bin").display(), shims.display());

    // when
    let result = run(&cloud, &host, &params(&export, "web"), &[("PATH", &path)]);

    // then
    result.assert_outcome(Outcome::Installed, Some(Reason::Missing));

    // and the comparison that decides "unchanged" needs neither
    host.age("state/web.manifest", "full_check", FULL_CHECK_SECONDS);
    run(&cloud, &host, &params(&export, "web"), &[("PATH", &path)])
        .assert_outcome(Outcome::Unchanged, None);
    assert_eq!(host.fetches(), 2);

    // and with neither jq nor python3 it says which is missing
    std::fs::remove_file(shims.join("python3")).unwrap();
    let other = Host::new();
    let result = run(&cloud, &other, &params(&export, "web"), &[("PATH", &path)]);
    assert!(!result.ok());
    assert!(
        result.outcome["error"]
            .as_str()
            .unwrap()
            .contains("neither jq nor python3"),
        "{}",
        result.text
    );
}

#[tokio::test]
async fn the_passphrase_never_reaches_a_process_argument() {
    // given an exported certificate and its passphrase
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let bundle = cloud.bundle(&export).await;
    let passphrase = bundle["passphrase"].as_str().unwrap().to_string();
    // One line of the encrypted key's base64 body stands for all of it.
    let key_line = bundle["encrypted_private_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(3)
        .unwrap()
        .to_string();
    let host = Host::new();
    let trace = host.path("execve.trace");

    // when the install runs under strace, recording every execve with its full argv
    let result = finish(start(
        &cloud,
        &host,
        &params(&export, "web"),
        &[],
        Some(&trace),
    ));

    // then openssl ran, and no process got the passphrase or key material as an argument
    assert!(result.ok(), "{}", result.text);
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(trace.contains("\"pkey\""), "the trace saw openssl pkey run");
    certship_testkit::assert_no_secret("process arguments", &trace, &[&passphrase, &key_line]);
    certship_testkit::assert_no_secret("the script's output", &result.text, &[&passphrase]);
}

#[test]
fn every_parameter_is_validated_and_interpolated_as_an_environment_variable() {
    let doc = install_document();
    assert_eq!(doc.schema_version, "2.2");
    assert_eq!(doc.main_steps.len(), 1);
    assert_eq!(doc.main_steps[0].action, "aws:runShellScript");
    let names: Vec<&str> = doc.parameters.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "BackoffMinutes",
            "CertName",
            "CertificateDirectory",
            "ExpectedSerial",
            "FileGroup",
            "FileOwner",
            "PrivateKeyDirectory",
            "ReloadService",
            "SecretId",
            "SecretVersionId",
            "StateDirectory"
        ]
    );
    for (name, parameter) in &doc.parameters {
        assert_eq!(parameter.kind, "String", "{name}");
        assert!(
            parameter.allowed_pattern.is_some(),
            "{name} has an allowedPattern"
        );
        assert_eq!(
            parameter.interpolation_type.as_deref(),
            Some("ENV_VAR"),
            "{name}"
        );
        assert!(parameter.description.is_some(), "{name}");
        assert!(
            !script_of(&doc).contains(&format!("{{{{{name}}}}}")),
            "{name} must not be text-interpolated"
        );
        if let Some(default) = &parameter.default {
            let pattern = regex::Regex::new(parameter.allowed_pattern.as_deref().unwrap()).unwrap();
            assert!(
                pattern.is_match(default),
                "{name}'s default {default:?} fits its own pattern"
            );
        }
    }
}

#[test]
fn the_back_off_pattern_admits_exactly_what_dispatch_install_may_send() {
    let doc = install_document();
    let pattern = regex::Regex::new(
        doc.parameters["BackoffMinutes"]
            .allowed_pattern
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    let max = certship_shared::host_report::MAX_BACKOFF_MINUTES;
    for good in [0, 1, 360, max] {
        assert!(pattern.is_match(&good.to_string()), "{good}");
    }
    for bad in [(max + 1).to_string(), "-1".into(), "".into(), "1.5".into()] {
        assert!(!pattern.is_match(&bad), "{bad:?}");
    }
}

#[test]
fn bad_parameter_values_cannot_get_through_the_allowed_patterns() {
    let doc = install_document();
    let pattern = |name: &str| {
        regex::Regex::new(doc.parameters[name].allowed_pattern.as_deref().unwrap()).unwrap()
    };
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "CertName",
            &["web", "www.example.com", "a", "my_cert-2", "x.y.z"],
            &[
                "../../etc",
                "..",
                "a..b",
                ".hidden",
                "-x",
                "a/b",
                "a b",
                "web;reboot",
                "$(id)",
                "",
            ],
        ),
        (
            "CertificateDirectory",
            &[
                "/etc/ssl/certs",
                "/etc/pki/tls/certs/",
                "/opt/app-1/tls",
                "/srv/.certship/hosts/i-1/etc/ssl",
            ],
            &[
                "/etc/../root",
                "etc/ssl",
                "/etc/ssl;reboot",
                "/etc/$(id)",
                "/etc/.",
                "/etc/..",
                "/etc/./ssl",
                "/etc/.-x",
                "/",
                "/etc//ssl",
                "",
            ],
        ),
        (
            "PrivateKeyDirectory",
            &["/etc/ssl/private"],
            &["/etc/ssl/../../root", "../private", "/tmp/a b"],
        ),
        (
            "StateDirectory",
            &[
                "/var/lib/certship",
                "/srv/.certship/hosts/i-1/var/lib/certship/",
            ],
            &[
                "/var/lib/../../root",
                "var/lib/certship",
                "/var/lib/cert ship",
                "/",
            ],
        ),
        (
            "BackoffMinutes",
            &["360", "0", "99999"],
            &["", "-1", "1e3", "360 ", "100000", "6h"],
        ),
        (
            "FileOwner",
            &["root", "www-data", "_nginx"],
            &["Root", "root;reboot", "0wner", "a b", ""],
        ),
        ("FileGroup", &["ssl-cert"], &["ssl cert", "$(id)"]),
        (
            "ReloadService",
            &[
                "",
                "nginx",
                "nginx.service",
                "php8.2-fpm.service",
                "getty@tty1.service",
            ],
            &[
                "reboot.target",
                "nginx;reboot",
                "nginx.socket",
                "a b",
                "-x",
                "nginx.service;id",
                "../nginx",
                "multi-user.target",
            ],
        ),
        (
            "SecretId",
            &[
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship/web-0123456789ab-AbCdEf",
            ],
            &[
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-password",
                "certship/web",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship/web;id",
            ],
        ),
        (
            "SecretVersionId",
            &["5f0c6e1e-0000-4000-8000-000000000001"],
            &["AWSCURRENT", "x", "5f0c6e1e 0000"],
        ),
        (
            "ExpectedSerial",
            &["0a:1b:2c", "0A1B2C"],
            &["xyz", "0a 1b", "", "0a;id"],
        ),
    ];
    for (name, good, bad) in cases {
        let re = pattern(name);
        for value in *good {
            assert!(re.is_match(value), "{name} should accept {value:?}");
        }
        for value in *bad {
            assert!(!re.is_match(value), "{name} must refuse {value:?}");
        }
    }
}

#[tokio::test]
async fn the_script_refuses_bad_values_itself_before_fetching_anything() {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let long_directory = format!("/{}", "a".repeat(3000));
    for (name, value, reason) in [
        ("CertName", "../../etc", "CertName"),
        ("ReloadService", "reboot.target", "service unit"),
        ("ReloadService", "nginx;reboot", "ReloadService"),
        ("CertificateDirectory", "/etc/../root", "directory"),
        ("FileOwner", "root;id", "FileOwner"),
        ("StateDirectory", "/var/lib/../../root", "directory"),
        ("StateDirectory", "var/lib/certship", "directory"),
        ("BackoffMinutes", "1e3", "BackoffMinutes"),
        ("BackoffMinutes", "-1", "BackoffMinutes"),
        ("CertName", "we\"b\\\n", "CertName"),
        ("CertificateDirectory", &long_directory, "directory /aaaa"),
    ] {
        let host = Host::new();
        let mut parameters = params(&export, "web");
        parameters.push((name, value));
        let result = run(&cloud, &host, &parameters, &[]);
        result.assert_outcome(Outcome::Failed, None);
        assert!(
            result.outcome["error"].as_str().unwrap().contains(reason),
            "{name}: {}",
            result.text
        );
        assert_eq!(host.snapshot(), BTreeMap::new());
        assert_eq!(host.temporary_files(), Vec::<String>::new());
        assert_eq!(host.fetches(), 0);
        assert!(
            !host.path("state").exists(),
            "{name}: no state directory yet"
        );
        assert_eq!(result.report.sha256, None);
    }
}

#[tokio::test]
async fn a_report_stays_one_bounded_json_line_whatever_the_inputs() {
    // given values that are not printable or far too long
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    let name = format!("we\"b\\\n\t{}", "x".repeat(3000));
    let mut parameters = params(&export, &name);
    parameters.push(("ReloadService", "nginx\n\"}"));

    // when
    let result = run(&cloud, &host, &parameters, &[]);

    // then the line parses (`finish` checks its length) and carries what it could, made safe
    result.assert_outcome(Outcome::Failed, None);
    let cert_name = result.report.cert_name.clone().unwrap();
    assert_eq!(cert_name.len(), 64);
    assert!(cert_name.starts_with("we\"b\\??xx"), "{cert_name}");
    assert!(result.report.error.unwrap().contains("CertName"));
}

#[test]
fn the_extracted_script_is_shellcheck_clean() {
    let doc = install_document();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("install-certificate.sh");
    std::fs::write(&script, script_of(&doc)).unwrap();
    let out = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style"])
        .arg(&script)
        .output()
        .expect("shellcheck is installed (make setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Version one installed on a fresh host, then version two's reload failed once and was rolled
/// back: (cloud, host, version one, version two).
async fn rolled_back_host() -> (Cloud, Host, ExportResult, ExportResult) {
    let cloud = Cloud::start().await;
    let first = cloud.exported("www.example.com", "web").await;
    let second = cloud.exported("www2.example.com", "web2").await;
    let host = Host::new();
    install_ok(&cloud, &host, &first);
    let failed = run(&cloud, &host, &reloading(&second), &[("FAIL_RELOADS", "1")]);
    failed.assert_outcome(Outcome::RolledBack, Some(Reason::NewSerial));
    assert_eq!(host.reloads().len(), 2, "the failed reload and the restore");
    assert!(host.path("state/web.backoff").exists());
    (cloud, host, first, second)
}

#[tokio::test]
async fn a_rolled_back_version_backs_off_until_its_window_ends() {
    // given version two rolled back on this host
    let (cloud, host, first, second) = rolled_back_host().await;
    let before = host.snapshot();
    let fetches = host.fetches();

    // when version two comes again at once (its reload would now succeed)
    let again = run(&cloud, &host, &reloading(&second), &[]);

    // then it is not tried: nothing touched, fetched or reloaded, and the error says until when
    again.assert_outcome(Outcome::Backoff, None);
    assert_eq!(again.outcome["status"], "backoff");
    assert_eq!(again.outcome["changed"], false);
    assert_eq!(again.outcome["reloaded"], false);
    let error = again.report.error.clone().unwrap();
    assert!(error.contains(&second.secret_version_id), "{error}");
    assert!(error.contains("not retried before"), "{error}");
    assert!(certship_shared::serial::same_serial(
        again.outcome["serial"].as_str().unwrap(),
        &second.serial
    ));
    again.assert_hashes_of(&host);
    assert_eq!(host.snapshot(), before);
    assert_eq!(host.fetches(), fetches);
    assert_eq!(host.reloads().len(), 2);
    assert_eq!(
        host.manifest()["secret_version_id"],
        first.secret_version_id,
        "version one still vouched for"
    );

    // and a shorter window set by the parameter has not ended either, ten minutes on
    host.age("state/web.backoff", "rolled_back_at", 600);
    let mut shorter = reloading(&second);
    shorter.push(("BackoffMinutes", "11"));
    run(&cloud, &host, &shorter, &[]).assert_outcome(Outcome::Backoff, None);
    assert_eq!(host.reloads().len(), 2);

    // when the window is over, the version is tried again, and installs
    host.age("state/web.backoff", "rolled_back_at", 360 * 60);
    let retried = run(&cloud, &host, &reloading(&second), &[]);
    retried.assert_outcome(Outcome::Installed, Some(Reason::NewSerial));
    assert_eq!(host.reloads().len(), 3);
    assert!(
        !host.path("state/web.backoff").exists(),
        "success clears it"
    );
    assert_eq!(
        host.manifest()["secret_version_id"],
        second.secret_version_id
    );
}

#[tokio::test]
async fn another_version_ignores_the_back_off_of_a_rolled_back_one() {
    // given version two rolled back on this host
    let (cloud, host, first, _second) = rolled_back_host().await;

    // when version one is asked for again (its manifest in place): unchanged, and the marker goes
    run(&cloud, &host, &reloading(&first), &[]).assert_outcome(Outcome::Unchanged, None);
    assert!(!host.path("state/web.backoff").exists());
    assert_eq!(host.reloads().len(), 2);
}

#[tokio::test]
async fn a_third_version_is_tried_at_once_after_a_rolled_back_one() {
    let (cloud, host, _first, _second) = rolled_back_host().await;
    let third = cloud.exported("www3.example.com", "web3").await;

    let result = run(&cloud, &host, &reloading(&third), &[]);

    result.assert_outcome(Outcome::Installed, Some(Reason::NewSerial));
    assert_eq!(host.reloads().len(), 3);
    assert!(
        !host.path("state/web.backoff").exists(),
        "success clears it"
    );
}

#[tokio::test]
async fn two_runs_at_once_on_one_host_take_turns() {
    // given a fresh host
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();

    // when an association run and a command of the same version start together
    let one = start(&cloud, &host, &reloading(&export), &[], None);
    let two = start(&cloud, &host, &reloading(&export), &[], None);
    let (one, two) = (finish(one), finish(two));

    // then one installs and the other, waiting for the lock, finds it done
    let mut outcomes = [one.report.outcome(), two.report.outcome()];
    outcomes.sort_by_key(|o| o.as_str().to_string());
    assert_eq!(
        outcomes,
        [Outcome::Installed, Outcome::Unchanged],
        "{}\n{}",
        one.text,
        two.text
    );
    assert!(one.ok() && two.ok());
    assert_eq!(host.reloads(), ["reload-or-restart nginx"]);
    assert_eq!(host.fetches(), 1, "the second run needed no fetch");
    one.assert_hashes_of(&host);
    two.assert_hashes_of(&host);
    assert_eq!(host.temporary_files(), Vec::<String>::new());
}

#[tokio::test]
async fn a_run_waits_for_the_lock_another_holds() {
    // given version one installed, and the lock held by someone else for two seconds
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let held = host.path("held");
    let mut holder = Command::new("flock")
        .arg(host.path("state/web.lock"))
        .args(["-c", &format!("touch '{}'; sleep 2", held.display())])
        .spawn()
        .unwrap();
    while !held.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // when the document runs
    let started = std::time::Instant::now();
    let result = run(&cloud, &host, &reloading(&export), &[]);

    // then it waited (its own work, the manifest's fast path, takes a fraction of that), then
    // did its work
    assert!(holder.wait().unwrap().success());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    result.assert_outcome(Outcome::Unchanged, None);
    assert_eq!(host.fetches(), 1);
}

#[tokio::test]
async fn a_script_that_stops_unexpectedly_still_reports() {
    // given a host whose TMPDIR is gone, so mktemp fails under `set -e`
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    let gone = host.path("gone");

    // when
    let result = run(
        &cloud,
        &host,
        &params(&export, "web"),
        &[("TMPDIR", &gone.display().to_string())],
    );

    // then the EXIT trap printed the one report line, saying where it stopped
    result.assert_outcome(Outcome::Failed, None);
    let error = result.report.error.unwrap();
    assert!(
        error.contains("stopped unexpectedly (exit 1 at line "),
        "{error}"
    );
    assert_eq!(host.snapshot(), BTreeMap::new());
    assert_eq!(host.fetches(), 0);
}
