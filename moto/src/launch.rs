//! Starts `scripts/moto_server.py` and waits for its ready line: the script prints `ready` once
//! it serves, and exits when its standard input closes, so the server never outlives the process
//! that holds the other end (a test, or the local cloud), even when that process is killed.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How to start moto server.
#[derive(Debug, Clone)]
pub struct MotoOptions {
    /// The project virtualenv's Python (`.venv/bin/python`), which has moto installed.
    pub python: PathBuf,
    /// The certship checkout whose `scripts/moto_server.py` runs.
    pub project_dir: PathBuf,
    /// The port moto server listens on (loopback).
    pub port: u16,
    /// The port moto's Step Functions calls back for Lambda and every other service: moto
    /// reads it from its own variable `MOTO_PORT` and calls `localhost:$MOTO_PORT`. moto itself
    /// for tests; the local cloud's gateway, which serves certship's Lambdas and Run Command and
    /// forwards the rest to moto.
    pub callback_port: u16,
    /// Whether Step Functions executions run their state machines (`CERTSHIP_SFN_EXECUTE=1`).
    pub execute_state_machines: bool,
    /// Where moto's standard error goes; discarded when `None`.
    pub log: Option<PathBuf>,
    /// How long to wait for the ready line.
    pub ready_timeout: Duration,
}

impl MotoOptions {
    /// moto on `port`, calling itself back, without state machine execution or a log.
    pub fn new(python: impl Into<PathBuf>, project_dir: impl Into<PathBuf>, port: u16) -> Self {
        Self {
            python: python.into(),
            project_dir: project_dir.into(),
            port,
            callback_port: port,
            execute_state_machines: false,
            log: None,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// A running moto server, stopped when dropped.
#[derive(Debug)]
pub struct MotoServer {
    pub port: u16,
    child: Child,
}

impl MotoServer {
    /// Starts moto server and returns once it printed its ready line. Blocks the thread.
    pub fn start(options: &MotoOptions) -> Result<Self> {
        let python = &options.python;
        if !python.exists() {
            bail!(
                "{} is missing: run `make venv` first (it installs moto from requirements.txt)",
                python.display()
            );
        }
        let stderr = match &options.log {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut command = Command::new(python);
        command
            .arg(options.project_dir.join("scripts/moto_server.py"))
            .arg(options.port.to_string())
            .env("MOTO_PORT", options.callback_port.to_string())
            .env("MOTO_ACM_VALIDATION_WAIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if options.execute_state_machines {
            command.env("CERTSHIP_SFN_EXECUTE", "1");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdout = child.stdout.take().context("moto's stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
        });
        let line = receiver.recv_timeout(options.ready_timeout);
        match line {
            Ok(Ok(line)) if line.trim() == "ready" => Ok(Self {
                port: options.port,
                child,
            }),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let printed = match other {
                    Ok(Ok(line)) => format!("printed {line:?}"),
                    Ok(Err(e)) => format!("reading its output failed: {e}"),
                    Err(_) => format!("no ready line in {:?}", options.ready_timeout),
                };
                bail!(
                    "moto server did not start on port {} ({printed}){}",
                    options.port,
                    log_tail(options)
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// certship's extension on this server.
    pub fn extension(&self) -> crate::Extension {
        crate::Extension::new(self.endpoint())
    }

    /// Stops the server and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The end of moto's log, when there is one, to say why it did not start.
fn log_tail(options: &MotoOptions) -> String {
    let Some(path) = &options.log else {
        return String::new();
    };
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    format!(
        "; the end of {}:\n{}",
        path.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}
