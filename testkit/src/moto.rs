//! moto server for integration tests, from the project's own virtualenv. The first test that
//! needs it runs `make venv` (idempotent) so a fresh checkout needs nothing by hand; a missing
//! tool is a test failure, never a skip.

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The repository root.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .to_path_buf()
}

/// The virtualenv's Python, after making sure the virtualenv has everything `requirements.txt` names.
pub fn venv_python() -> Result<PathBuf> {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|p| p.into_inner());
    let root = project_root();
    let python = root.join(".venv/bin/python");
    if !*ready {
        let status = Command::new("make")
            .args(["--no-print-directory", "-s", "venv"])
            .current_dir(&root)
            .status()
            .context("running `make venv` (is make installed?)")?;
        if !status.success() {
            bail!(
                "`make venv` failed; it installs moto and the AWS CLI into .venv from requirements.txt"
            );
        }
        *ready = true;
    }
    Ok(python)
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A moto server of this test's own, stopped when dropped (or when the test process exits).
pub struct Moto {
    pub port: u16,
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// Starts moto server on a free port and waits until it answers. A port taken between
    /// choosing and binding it (tests start servers in parallel) is retried with another.
    pub fn start() -> Result<Self> {
        let python = venv_python()?;
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_on(&python, free_port()?) {
                Ok(moto) => return Ok(moto),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto server did not start")))
    }

    fn start_on(python: &Path, port: u16) -> Result<Self> {
        let mut child = Command::new(python)
            .arg(project_root().join("scripts/moto_server.py"))
            .arg(port.to_string())
            .env("MOTO_PORT", port.to_string())
            .env("MOTO_ACM_VALIDATION_WAIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdout = child.stdout.take().context("moto's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("moto server did not start on port {port} (printed {line:?})");
        }
        Ok(Self {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        })
    }

    /// An SDK configuration pointing every service at this server, in `region`.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(region.to_string()))
            .credentials_provider(aws_sdk_acm::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// Environment variables that point the AWS CLI and SDKs at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The local cloud's own routes on this server (`scripts/certship_moto.py`), for what moto has no
/// AWS API for.
impl Moto {
    /// Renews a certificate in place, as ACM's managed renewal does: the same ARN, domain names,
    /// tags and options, a new key and a new certificate (new serial, new validity) from the
    /// emulator's CA; DescribeCertificate then shows a `RenewalSummary` of `SUCCESS`. Answers
    /// `{"CertificateArn", "Serial" ("0a:1b:..." as ACM writes it), "NotAfter" (RFC 3339)}`.
    /// An unknown ARN is an error naming HTTP 404; a certificate that is not `ISSUED` (or was
    /// imported) one naming HTTP 400.
    pub async fn renew_certificate(&self, arn: &str) -> Result<serde_json::Value> {
        let body = serde_json::json!({ "CertificateArn": arn }).to_string();
        let (status, answer) = post_json(self.port, "/_certship/acm/renew", body).await?;
        if status != 200 {
            bail!("renewing {arn}: HTTP {status}: {answer}");
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("renewing {arn}: the answer is not JSON: {answer}"))
    }
}

/// POSTs the JSON `body` to `path` on 127.0.0.1:`port` (HTTP/1.1, `Connection: close`) and
/// returns the status and the body of the answer.
async fn post_json(port: u16, path: &str, body: String) -> Result<(u16, String)> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || post_json_blocking(port, &path, &body))
        .await
        .context("the HTTP client thread panicked")?
}

fn post_json_blocking(port: u16, path: &str, body: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let timeout = Some(std::time::Duration::from_secs(30));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to moto on port {port}"))?;
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("reading the answer to POST {path}"))?;
    let answer = String::from_utf8(answer).context("the answer is not UTF-8")?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("POST {path}: no end of headers in {answer:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("POST {path}: a chunked answer, which this client does not read");
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("POST {path}: no status in {head:?}"))?;
    Ok((status, body.to_string()))
}
