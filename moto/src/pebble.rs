//! A real ACME CA for the local cloud and the tests: Debian's Pebble (`pebble`), validating DNS-01
//! against `scripts/r53dns.py`, which answers from the emulated Route53 (moto) through the Route53
//! API on every query. What Pebble validates is exactly what certship wrote with
//! ChangeResourceRecordSets; nothing mirrors the records anywhere else.
//!
//! Both processes never outlive the process that started them, like moto server
//! ([`crate::launch`]): r53dns.py exits when its standard input closes, and Pebble, which reads no
//! input, runs under a small `sh` guard that stops it when its standard input closes.

use crate::acme_front::AcmeFront;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// How long either process may take to come up. Pebble generates its issuing keys first (well
/// under a second); r53dns.py imports boto3 (about a second on a busy machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped process may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at starting a process on freshly chosen ports: another test may take a port
/// between choosing it and binding it.
const ATTEMPTS: usize = 3;
/// The name Pebble's TLS certificate is for, and the host of every URL Pebble hands out.
pub(crate) const HOST: &str = "localhost";

/// Runs Pebble (`"$@"`) until the guard's standard input closes, then stops it (SIGTERM). Exits
/// with Pebble's status when Pebble ends first, so a failed start shows at once. The watcher
/// reads a copy of standard input (fd 3): a background job's own standard input is /dev/null.
const GUARD: &str = r#"exec 3<&0 </dev/null
"$@" 3<&- &
pebble=$!
{ read -r _ <&3; kill "$pebble" 2>/dev/null; } &
watcher=$!
exec 3<&-
wait "$pebble"
status=$?
kill "$watcher" 2>/dev/null
exit "$status""#;

/// How to start the ACME CA.
#[derive(Debug, Clone)]
pub struct AcmeCaOptions {
    /// The project virtualenv's Python (`.venv/bin/python`), which has dnslib and boto3.
    pub python: PathBuf,
    /// The certship checkout whose `scripts/r53dns.py` runs.
    pub project_dir: PathBuf,
    /// moto's endpoint (`http://127.0.0.1:PORT`), whose Route53 the DNS responder reads.
    pub route53_endpoint: String,
    /// Where the TLS files, Pebble's configuration and both logs go (created when missing).
    pub state_dir: PathBuf,
    /// Pebble's `certificateValidityPeriod` in seconds (Pebble's default: 5 years). A short one
    /// makes issued certificates fall due for renewal at once.
    pub certificate_validity_seconds: Option<u64>,
}

impl AcmeCaOptions {
    /// An ACME CA reading Route53 at `route53_endpoint`, issuing with Pebble's default validity.
    pub fn new(
        python: impl Into<PathBuf>,
        project_dir: impl Into<PathBuf>,
        route53_endpoint: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            python: python.into(),
            project_dir: project_dir.into(),
            route53_endpoint: route53_endpoint.into(),
            state_dir: state_dir.into(),
            certificate_validity_seconds: None,
        }
    }
}

/// A running Pebble and its DNS responder, both stopped when dropped.
#[derive(Debug)]
pub struct AcmeCa {
    pebble_binary: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    tls_ca_pem_path: PathBuf,
    certificate_path: PathBuf,
    private_key_path: PathBuf,
    /// A TLS client configuration trusting only the CA of Pebble's own HTTPS certificate.
    tls: Arc<rustls::ClientConfig>,
    dns_port: u16,
    port: u16,
    management_port: u16,
    dns: Option<Child>,
    pebble: Option<Child>,
}

impl AcmeCa {
    /// Makes the TLS files, starts the DNS responder and Pebble side by side, and returns once
    /// the responder printed its ready line and Pebble's directory answers over HTTPS. Blocks
    /// the thread.
    pub fn start(options: &AcmeCaOptions) -> Result<Self> {
        let pebble_binary = find_pebble()?;
        if !options.python.exists() {
            bail!(
                "{} is missing: run `make venv` first (it installs dnslib and boto3 from requirements.txt)",
                options.python.display()
            );
        }
        let state_dir = &options.state_dir;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;

        let tls_files = TlsFiles::generate()?;
        let tls_ca_pem_path = state_dir.join("tls-ca.pem");
        let certificate_path = state_dir.join("tls-server.pem");
        let private_key_path = state_dir.join("tls-server.key");
        write(&tls_ca_pem_path, &tls_files.ca_pem)?;
        write(&certificate_path, &tls_files.server_pem)?;
        write(&private_key_path, &tls_files.server_key_pem)?;
        let tls = client_config(tls_files.ca_der)?;

        let dns_log = state_dir.join("r53dns.log");
        let mut ca = Self {
            pebble_binary,
            config_path: state_dir.join("pebble-config.json"),
            log_path: state_dir.join("pebble.log"),
            tls_ca_pem_path,
            certificate_path: certificate_path.clone(),
            private_key_path: private_key_path.clone(),
            tls,
            dns_port: 0,
            port: 0,
            management_port: 0,
            dns: None,
            pebble: None,
        };
        retry(|| {
            // Whatever a failed attempt left running.
            ca.stop();
            ca.dns_port = free_dns_port()?;
            ca.port = free_tcp_port()?;
            ca.management_port = free_tcp_port()?;
            let dns = PendingDns::spawn(options, ca.dns_port, &dns_log)?;
            let config = serde_json::json!({ "pebble": pebble_config(
                ca.port,
                ca.management_port,
                &certificate_path,
                &private_key_path,
                options.certificate_validity_seconds,
            ) });
            write(&ca.config_path, &serde_json::to_string_pretty(&config)?)?;
            // A fresh log per attempt: the tail of a failed one is in its error.
            File::create(&ca.log_path)
                .with_context(|| format!("creating {}", ca.log_path.display()))?;
            // Pebble comes up while r53dns.py is still importing boto3: Pebble asks DNS only
            // when it validates a challenge, so neither waits for the other.
            if let Err(e) = ca.start_pebble() {
                dns.abandon();
                return Err(e);
            }
            ca.dns = Some(dns.wait_ready()?);
            Ok(())
        })?;
        Ok(ca)
    }

    /// The ACME directory, `https://localhost:PORT/dir`. Its HTTPS certificate is signed by
    /// [`Self::tls_ca_pem_path`].
    pub fn directory_url(&self) -> String {
        format!("https://{HOST}:{}/dir", self.port)
    }

    /// A front that passes everything to Pebble but refuses the orders it is told to refuse for
    /// a rate limit ([`AcmeFront`]), at its own directory URL; stopped when dropped. Pebble has
    /// no rate limits of its own.
    pub fn front(&self) -> Result<AcmeFront> {
        AcmeFront::start(
            self.port,
            &self.certificate_path,
            &self.private_key_path,
            Arc::clone(&self.tls),
        )
    }

    /// The CA a client must trust to speak HTTPS to Pebble (PEM). It signs only Pebble's own
    /// HTTPS certificate, not the certificates Pebble issues ([`Self::issuing_roots_pem`]).
    pub fn tls_ca_pem_path(&self) -> &Path {
        &self.tls_ca_pem_path
    }

    /// The DNS responder (UDP and TCP) Pebble validates DNS-01 against.
    pub fn dns_server(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.dns_port))
    }

    /// The root that signs the certificates Pebble issues (PEM), from its management port
    /// (`/roots/0`). Pebble makes a new one at every start, [`Self::restart`] included.
    pub async fn issuing_roots_pem(&self) -> Result<String> {
        let url = format!("https://{HOST}:{}/roots/0", self.management_port);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
        let response = client
            .get(url.parse()?)
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !status.is_success() || !text.contains("-----BEGIN CERTIFICATE-----") {
            bail!("GET {url}: {status}: {text}");
        }
        Ok(text)
    }

    /// Stops Pebble and starts it again on the same ports. It forgets every account, order and
    /// authorization (its state is in memory) and makes a new issuing root; the DNS responder
    /// and the TLS files stay. Blocks the thread.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut pebble) = self.pebble.take() {
            stop_child(&mut pebble);
        }
        self.start_pebble()
    }

    /// Stops Pebble and the DNS responder and waits for both to exit. The ports stay chosen:
    /// nothing starts them again.
    pub fn stop(&mut self) {
        let mut children: Vec<Child> = [self.pebble.take(), self.dns.take()]
            .into_iter()
            .flatten()
            .collect();
        stop_children(&mut children);
    }

    /// Starts Pebble with the configuration on disk and waits until its directory answers.
    fn start_pebble(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut command = Command::new("sh");
        // Only the settings below: an inherited PEBBLE_VA_ALWAYS_VALID=1 would pass every
        // challenge without asking DNS at all.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PEBBLE_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("-c")
            .arg(GUARD)
            .arg("pebble-guard")
            .arg(&self.pebble_binary)
            .arg("-config")
            .arg(&self.config_path)
            .arg("-dnsserver")
            .arg(self.dns_server().to_string())
            .arg("-strict")
            // Deterministic for tests: no random 0-15 s wait before each validation, no
            // rejected nonces, and no reused authorizations, so every order answers its
            // challenges through Route53.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.pebble_binary.display()))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "pebble exited ({status}) before its directory answered{}",
                    log_tail(&self.log_path)
                );
            }
            match get_blocking(&self.tls, self.port, "/dir") {
                Ok((200, _)) => break,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                answer => {
                    stop_child(&mut child);
                    let answer = match answer {
                        Ok((status, body)) => format!("it answered {status}: {body}"),
                        Err(e) => format!("{e:#}"),
                    };
                    bail!(
                        "pebble's directory did not answer in {READY_TIMEOUT:?} ({answer}){}",
                        log_tail(&self.log_path)
                    );
                }
            }
        }
        self.pebble = Some(child);
        Ok(())
    }
}

impl Drop for AcmeCa {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `pebble` on PATH (the Debian package puts it in /usr/bin).
fn find_pebble() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("pebble"))
        .find(|candidate| candidate.is_file())
        .context(
            "`pebble` (the local ACME CA) is not on PATH: `make system-packages` installs it \
             (Debian package pebble)",
        )
}

/// Pebble's configuration (the object under the `"pebble"` key).
fn pebble_config(
    port: u16,
    management_port: u16,
    certificate: &Path,
    private_key: &Path,
    certificate_validity_seconds: Option<u64>,
) -> serde_json::Value {
    let mut config = serde_json::json!({
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{management_port}"),
        "certificate": certificate,
        "privateKey": private_key,
        // The ports Pebble's VA calls for HTTP-01 and TLS-ALPN-01 (its defaults). Only DNS-01
        // is answered here, so nothing listens on them.
        "httpPort": 5002,
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    });
    if let Some(seconds) = certificate_validity_seconds {
        config["certificateValidityPeriod"] = seconds.into();
    }
    config
}

/// Pebble's HTTPS identity: a test CA and a server certificate for every name a client may use
/// for loopback. The Debian package ships none.
struct TlsFiles {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_pem: String,
    server_key_pem: String,
}

impl TlsFiles {
    fn generate() -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "certship test CA for Pebble's HTTPS");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server_params =
            CertificateParams::new(vec![HOST.into(), "127.0.0.1".into(), "::1".into()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, HOST);
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server = server_params.signed_by(&server_key, &issuer)?;
        Ok(Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }
}

/// A TLS client configuration (aws-lc-rs, as the rest of the workspace) trusting only `ca`.
fn client_config(ca: CertificateDer<'static>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// GETs `path` from Pebble on `port` over HTTPS, blocking: the status and the body. For the
/// readiness wait, which runs before (and without) any async runtime.
fn get_blocking(tls: &Arc<rustls::ClientConfig>, port: u16, path: &str) -> Result<(u16, String)> {
    let server_name = ServerName::try_from(HOST)?;
    let connection = rustls::ClientConnection::new(Arc::clone(tls), server_name)?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let socket = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    socket.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without TLS's close_notify: what arrived is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// `scripts/r53dns.py`, started and not yet known to be serving.
struct PendingDns {
    child: Child,
    port: u16,
    log: PathBuf,
    /// Its first line of output, or why there is none.
    ready_line: mpsc::Receiver<std::io::Result<String>>,
}

impl PendingDns {
    /// Starts `scripts/r53dns.py` on `port`, reading Route53 at the options' endpoint.
    fn spawn(options: &AcmeCaOptions, port: u16, log: &Path) -> Result<Self> {
        let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(&options.python)
            .arg(options.project_dir.join("scripts/r53dns.py"))
            .arg(port.to_string())
            .arg(&options.route53_endpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("starting {}", options.python.display()))?;
        let stdout = child.stdout.take().context("r53dns.py's stdout")?;
        let (sender, ready_line) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
        });
        Ok(Self {
            child,
            port,
            log: log.to_path_buf(),
            ready_line,
        })
    }

    /// Waits for the ready line; the running responder, or an error with the end of its log.
    fn wait_ready(mut self) -> Result<Child> {
        match self.ready_line.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) if line.trim() == "ready" => Ok(self.child),
            other => {
                stop_child(&mut self.child);
                let printed = match other {
                    Ok(Ok(line)) => format!("printed {line:?}"),
                    Ok(Err(e)) => format!("reading its output failed: {e}"),
                    Err(_) => format!("no ready line in {READY_TIMEOUT:?}"),
                };
                bail!(
                    "r53dns.py did not start on port {} ({printed}){}",
                    self.port,
                    log_tail(&self.log)
                );
            }
        }
    }

    /// Stops it, ready or not.
    fn abandon(mut self) {
        stop_child(&mut self.child);
    }
}

/// Closes the child's standard input, which stops both r53dns.py and Pebble's guard, and waits
/// for it to exit; kills it when it does not exit in time.
fn stop_child(child: &mut Child) {
    stop_children(std::slice::from_mut(child));
}

/// [`stop_child`] for several children at once: r53dns.py takes up to half a second to shut
/// its servers down, which Pebble's exit overlaps.
fn stop_children(children: &mut [Child]) {
    for child in children.iter_mut() {
        drop(child.stdin.take());
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for child in children {
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Ok(Some(_)) | Err(_) => break,
            }
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `attempt` up to [`ATTEMPTS`] times; the last error when none succeeds.
fn retry<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
}

/// A free TCP port on loopback.
fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A loopback port free for both TCP and UDP (DNS answers on both).
fn free_dns_port() -> Result<u16> {
    for _ in 0..20 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port free for both TCP and UDP in 20 tries")
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// The end of a log, to say why a process did not start.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    format!(
        "; the end of {}:\n{}",
        path.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}
