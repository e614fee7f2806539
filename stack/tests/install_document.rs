//! The install document's own script, run as the SSM agent runs it (parameters as `SSM_*`
//! environment variables), with bash, openssl and the AWS CLI, against secrets that the real
//! export Lambda code stored in moto; each simulated host is a temporary directory.

use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_shared::{DeploymentRequest, ExportResult, HostReport, Trigger, WorkflowState};
use certship_stack::document::CommandDocument;
use certship_testkit::{moto::Moto, moto::project_root, moto::venv_python, seed};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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

/// A simulated host: its certificate and key directories, a private TMPDIR and a stand-in
/// `systemctl` that records its calls and fails as often as told.
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
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
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

    fn reloads(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
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

    fn temporary_files(&self) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(self.path("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for dir in ["certs", "private"] {
            for entry in std::fs::read_dir(self.path(dir)).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if name.contains(".certship-") {
                    left.push(name);
                }
            }
        }
        left
    }
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

/// The outcome of one run: exit status, everything printed, and the JSON outcome line.
struct Run {
    output: Output,
    text: String,
    outcome: Value,
}

impl Run {
    fn ok(&self) -> bool {
        self.output.status.success()
    }
}

/// Runs the document's script for `host` with `parameters` (name -> value), as the agent would.
fn run(cloud: &Cloud, host: &Host, parameters: &[(&str, &str)], extra_env: &[(&str, &str)]) -> Run {
    run_with(cloud, host, parameters, extra_env, None)
}

fn run_with(
    cloud: &Cloud,
    host: &Host,
    parameters: &[(&str, &str)],
    extra_env: &[(&str, &str)],
    strace_to: Option<&Path>,
) -> Run {
    let doc = install_document();
    let script = host.path("_script.sh");
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
    for (name, value) in parameters {
        command.env(format!("SSM_{name}"), value);
    }
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    std::fs::remove_file(&script).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let last = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let outcome = serde_json::from_str(&last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {text}"));
    // the shared type reads that very line, and names every field of it
    let report = HostReport::from_output(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|| panic!("no HostReport in: {text}"));
    assert!(report.other.is_empty(), "unnamed fields {:?}", report.other);
    assert_eq!(serde_json::to_value(&report).unwrap(), outcome);
    Run {
        output,
        text,
        outcome,
    }
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
    assert!(result.ok(), "{}", result.text);
    assert_eq!(result.outcome["status"], "installed");
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
async fn the_same_serial_again_is_unchanged_and_reloads_nothing() {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    install_ok(&cloud, &host, &export);
    let before = host.snapshot();

    let mut parameters = params(&export, "web");
    parameters.push(("ReloadService", "nginx"));
    let again = run(&cloud, &host, &parameters, &[]);

    assert!(again.ok(), "{}", again.text);
    assert_eq!(again.outcome["status"], "unchanged");
    assert_eq!(again.outcome["changed"], false);
    assert_eq!(again.outcome["reloaded"], false);
    assert_eq!(host.snapshot(), before);
    assert_eq!(host.reloads(), Vec::<String>::new());
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

    assert_eq!(upgrade.outcome["status"], "installed");
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
    assert!(!result.ok());
    assert_eq!(result.outcome["rolled_back"], true);
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
}

#[tokio::test]
async fn a_failed_reload_of_a_fresh_install_removes_what_it_installed() {
    let cloud = Cloud::start().await;
    let export = cloud.exported("www.example.com", "web").await;
    let host = Host::new();
    let mut parameters = params(&export, "web");
    parameters.push(("ReloadService", "nginx"));

    let result = run(&cloud, &host, &parameters, &[("FAIL_RELOADS", "1")]);

    assert!(!result.ok());
    assert_eq!(result.outcome["rolled_back"], true);
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
        "bash", "cat", "cut", "tr", "awk", "grep", "date", "tail", "mktemp", "rm", "mv", "cp",
        "install", "mkdir", "dirname", "openssl", "python3",
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
    assert!(result.ok(), "{}", result.text);
    assert_eq!(result.outcome["status"], "installed");

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
    let result = run_with(&cloud, &host, &params(&export, "web"), &[], Some(&trace));

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
            "CertName",
            "CertificateDirectory",
            "ExpectedSerial",
            "FileGroup",
            "FileOwner",
            "PrivateKeyDirectory",
            "ReloadService",
            "SecretId",
            "SecretVersionId"
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
    for (name, value, reason) in [
        ("CertName", "../../etc", "CertName"),
        ("ReloadService", "reboot.target", "service unit"),
        ("ReloadService", "nginx;reboot", "ReloadService"),
        ("CertificateDirectory", "/etc/../root", "directory"),
        ("FileOwner", "root;id", "FileOwner"),
    ] {
        let host = Host::new();
        let mut parameters = params(&export, "web");
        parameters.push((name, value));
        let result = run(&cloud, &host, &parameters, &[]);
        assert!(!result.ok(), "{name}={value} got through");
        assert!(
            result.outcome["error"].as_str().unwrap().contains(reason),
            "{name}: {}",
            result.text
        );
        assert_eq!(host.snapshot(), BTreeMap::new());
        assert_eq!(host.temporary_files(), Vec::<String>::new());
    }
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
