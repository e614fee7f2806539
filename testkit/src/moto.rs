//! moto server for integration tests, from the project's own virtualenv, started by
//! `certship-moto`'s launcher. The first test that
//! needs it runs `make venv` (idempotent) so a fresh checkout needs nothing by hand; a missing
//! tool is a test failure, never a skip.

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub use certship_moto::{Extension, MotoOptions, MotoServer, Renewed};

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
    server: MotoServer,
}

impl Moto {
    /// Starts moto server on a free port and waits until it answers. A port taken between
    /// choosing and binding it (tests start servers in parallel) is retried with another.
    pub fn start() -> Result<Self> {
        let python = venv_python()?;
        let mut last_error = None;
        for _ in 0..3 {
            let options = MotoOptions::new(&python, project_root(), free_port()?);
            match MotoServer::start(&options) {
                Ok(server) => {
                    return Ok(Self {
                        port: server.port,
                        endpoint: server.endpoint(),
                        server,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto server did not start")))
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

    /// Renews a certificate in place through certship's extension ([`Extension::renew_certificate`]).
    pub async fn renew_certificate(&self, arn: &str) -> Result<Renewed> {
        self.server.extension().renew_certificate(arn).await
    }
}
