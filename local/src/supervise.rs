//! Running a local cloud as a process: in the foreground until a signal, or in the background
//! (the same command line again, without `--detach`), and stopping one that runs.

use crate::running::{CloudLock, RunningCloud, process_alive};
use crate::{LocalCloud, LocalOptions};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// How long `start_detached` waits for the background cloud to say it runs.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What to tell someone who starts a cloud where one already runs (or is starting).
pub fn already_running(state: &Path) -> String {
    match RunningCloud::read(state) {
        Some(running) => format!(
            "A local cloud is already running (pid {}) at {}.\nStop it with `certship local down`.",
            running.pid, running.endpoint
        ),
        None => format!(
            "A local cloud is already starting in {}; `certship local status` shows it once it runs.",
            state.display()
        ),
    }
}

/// Runs a local cloud until SIGINT, SIGTERM or SIGHUP, publishing it in `options.state_dir` for
/// the other `certship local` commands. Returns `Ok(false)` when one already runs there.
pub async fn run_foreground(options: LocalOptions) -> Result<bool> {
    let state = options.state_dir.clone();
    // Held until this function returns: the one cloud of this state directory.
    let Some(_lock) = CloudLock::acquire(&state)? else {
        return Ok(false);
    };
    eprintln!("Starting the local cloud (moto server and the gateway)…");
    let cloud = LocalCloud::start(options).await?;
    RunningCloud {
        pid: std::process::id(),
        endpoint: cloud.endpoint.clone(),
        region: cloud.region.clone(),
        state_machine_arn: cloud.state_machine_arn.clone(),
        acme_state_machine_arn: cloud.acme_state_machine_arn.clone(),
        acme_table_name: cloud.acme_table_name.clone(),
        table_name: cloud.table_name.clone(),
        evidence_table_name: cloud.evidence_table_name.clone(),
        hosts_dir: cloud.hosts.dir().to_path_buf(),
    }
    .write(&state)?;
    eprintln!(
        "The local cloud runs at {}\n  state machine {}\n  ACME state machine {}\n  mapping table {}\n  evidence table {}\n  hosts under {}\nPoint the AWS CLI at it with: eval \"$(certship local env)\"\nCtrl-C stops it.",
        cloud.endpoint,
        cloud.state_machine_arn,
        cloud.acme_state_machine_arn,
        cloud.table_name,
        cloud.evidence_table_name,
        cloud.hosts.dir().display()
    );
    wait_for_stop_signal().await;
    eprintln!("Stopping the local cloud…");
    cloud.stop().await;
    RunningCloud::remove(&state);
    eprintln!("Stopped.");
    Ok(true)
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

/// Runs `args` (this program's own command line, less `--detach`) in the background with its
/// output in `<state>/cloud.log`, and waits until the cloud it starts says it runs.
pub fn start_detached(args: Vec<OsString>, state: &Path) -> Result<RunningCloud> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(state)?;
    let log_path = state.join("cloud.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the local cloud in the background")?;
    eprint!("Starting the local cloud in the background");
    let started = std::time::Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Some(running) = RunningCloud::read(state) {
            eprintln!(
                "\nThe local cloud runs at {} (pid {}); log: {}\nPoint the AWS CLI at it with: eval \"$(certship local env)\"\nStop it with: certship local down",
                running.endpoint,
                running.pid,
                log_path.display()
            );
            return Ok(running);
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
        "the local cloud did not start within {} s; see {}",
        START_TIMEOUT.as_secs(),
        log_path.display()
    )
}

/// The command line of this process without `--detach`: what the background process runs.
pub fn without_detach(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect()
}

/// Stops the cloud running in `state` (SIGTERM, then waits up to 20 s). `Ok(None)` when none runs.
pub fn stop(state: &Path) -> Result<Option<u32>> {
    let Some(running) = RunningCloud::read(state) else {
        return Ok(None);
    };
    let pid = i32::try_from(running.pid).context("pid")?;
    // SAFETY: SIGTERM to the process the record names; it stops the cloud and everything it ran.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    for _ in 0..100 {
        if !process_alive(running.pid) {
            RunningCloud::remove(state);
            return Ok(Some(running.pid));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "the local cloud (pid {}) did not stop within 20 s",
        running.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_process_gets_the_same_command_line_without_detach() {
        let argv = [
            "certship",
            "local",
            "--state-dir",
            "/s",
            "up",
            "--detach",
            "--port",
            "4566",
        ];
        assert_eq!(
            without_detach(argv.map(OsString::from)),
            ["local", "--state-dir", "/s", "up", "--port", "4566"].map(OsString::from)
        );
    }
}
