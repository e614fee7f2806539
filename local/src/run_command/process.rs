//! Each host's script: written where the agent writes it, run with bash in a process group of
//! its own, its output read, stopped on timeout or shutdown.

use super::state::Details;
use super::*;
use crate::hosts::Simulation;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// What a simulated host's script runs with besides the document's parameters.
#[derive(Debug, Clone)]
pub struct HostEnvironment {
    /// The gateway, which the host's AWS CLI calls.
    pub endpoint: String,
    pub region: String,
    /// Directories put before the system's on the host's PATH: the stand-in `systemctl`, the
    /// project virtualenv's `aws`.
    pub path_prefix: Vec<PathBuf>,
    /// The user and group that stand for `root` on a simulated host when the local cloud does not
    /// run as root.
    pub owner: Option<(String, String)>,
}

impl RunCommand {
    /// Runs the script on one host; true when the host counts as an error toward MaxErrors.
    pub(super) async fn run_on_host(
        &self,
        command_id: &str,
        instance_id: &str,
        plan: &Plan,
        delivery_deadline: tokio::time::Instant,
    ) -> bool {
        let host = self.hosts.load(instance_id);
        let Some(host) = host.filter(|h| h.simulate != Simulation::Offline) else {
            // Only simulated hosts are targeted, so this is one whose agent is offline.
            // No agent answers: SSM keeps the invocation pending until the delivery timeout,
            // which does not count toward MaxErrors.
            tokio::time::sleep_until(delivery_deadline).await;
            self.finish(command_id, instance_id, Details::DeliveryTimedOut, -1, None);
            return false;
        };
        self.update(command_id, instance_id, |i| {
            i.details = Details::InProgress;
            i.started = Some(SystemTime::now());
        });
        let root = self.hosts.root(instance_id);
        match self
            .execute(command_id, instance_id, &root, plan, host.simulate)
            .await
        {
            Ok(Some((code, stdout, stderr))) => {
                let details = if code == 0 {
                    Details::Success
                } else {
                    Details::Failed
                };
                self.finish(
                    command_id,
                    instance_id,
                    details,
                    code,
                    Some((stdout, stderr)),
                );
                code != 0
            }
            Ok(None) => {
                self.finish(
                    command_id,
                    instance_id,
                    Details::ExecutionTimedOut,
                    -1,
                    Some((
                        String::new(),
                        format!(
                            "the script ran longer than its {} s timeout and was stopped",
                            plan.execution_timeout.as_secs()
                        ),
                    )),
                );
                true
            }
            Err(e) => {
                self.finish(
                    command_id,
                    instance_id,
                    Details::Failed,
                    1,
                    Some((
                        String::new(),
                        format!("the local agent could not run the script: {e}"),
                    )),
                );
                true
            }
        }
    }

    /// Writes the script where the agent would and runs it with bash; `None` on timeout.
    pub(super) async fn execute(
        &self,
        command_id: &str,
        instance_id: &str,
        root: &Path,
        plan: &Plan,
        simulate: Simulation,
    ) -> std::io::Result<Option<(i32, String, String)>> {
        let work = root
            .join("var/lib/amazon/ssm")
            .join(instance_id)
            .join("document/orchestration")
            .join(command_id)
            .join(&plan.plugin_name);
        tokio::fs::create_dir_all(&work).await?;
        tokio::fs::create_dir_all(root.join("tmp")).await?;
        let script = work.join("_script.sh");
        tokio::fs::write(&script, &plan.script).await?;

        let mut command = tokio::process::Command::new("bash");
        command
            .arg(&script)
            .current_dir(&work)
            .env_clear()
            .envs(self.environment(instance_id, root, plan, simulate))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = {
            // Registered under the lock that shutdown takes, so no script starts after it.
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if self.stopping.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the local cloud is stopping"));
            }
            let child = command.spawn()?;
            if let Some(id) = child.id() {
                running.insert(id as i32);
            }
            child
        };
        let group = child.id().map(|id| id as i32);
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let waited = tokio::time::timeout(plan.execution_timeout, child.wait()).await;
        // Whatever the script left behind in its group goes too: SIGTERM first, so its EXIT
        // trap removes the private temporary directory, then SIGKILL.
        if let Some(group) = group {
            terminate_group(group).await;
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&group);
        }
        let status = match waited {
            Ok(status) => status?,
            Err(_elapsed) => {
                let _ = child.kill().await;
                return Ok(None);
            }
        };
        let collect = |task: tokio::task::JoinHandle<Vec<u8>>| async move {
            match tokio::time::timeout(Duration::from_secs(2), task).await {
                Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            }
        };
        Ok(Some((
            status.code().unwrap_or(-1),
            collect(stdout).await,
            collect(stderr).await,
        )))
    }

    /// The script's environment: what the agent gives it, with the host's directory standing in
    /// for `/` in the directory parameters.
    pub(super) fn environment(
        &self,
        instance_id: &str,
        root: &Path,
        plan: &Plan,
        simulate: Simulation,
    ) -> HashMap<String, String> {
        let env = &self.host_env;
        let mut path: Vec<String> = env
            .path_prefix
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        path.push("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        let mut vars = HashMap::from([
            ("PATH".to_string(), path.join(":")),
            ("HOME".into(), root.display().to_string()),
            ("TMPDIR".into(), root.join("tmp").display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
            ("AWS_ENDPOINT_URL".into(), env.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_DEFAULT_REGION".into(), env.region.clone()),
            ("AWS_SSM_INSTANCE_ID".into(), instance_id.into()),
            ("AWS_SSM_REGION_NAME".into(), env.region.clone()),
            ("CERTSHIP_HOST_ROOT".into(), root.display().to_string()),
            (
                "CERTSHIP_HOST_RELOAD".into(),
                match simulate {
                    Simulation::ReloadFails => "fails".into(),
                    _ => "ok".into(),
                },
            ),
        ]);
        for (name, value) in &plan.parameters {
            let value = match name.as_str() {
                "CertificateDirectory" | "PrivateKeyDirectory" | "StateDirectory" => {
                    format!("{}{value}", root.display())
                }
                "FileOwner" => env
                    .owner
                    .as_ref()
                    .map_or(value.clone(), |(user, _)| user.clone()),
                "FileGroup" => env
                    .owner
                    .as_ref()
                    .map_or(value.clone(), |(_, group)| group.clone()),
                _ => value.clone(),
            };
            vars.insert(format!("SSM_{name}"), value);
        }
        vars
    }
}

/// Reads a pipe to its end in a task of its own, so the script's exit is not held up by it.
pub(super) fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        bytes
    })
}

/// Signals a process group; false when no process is left in it.
pub(super) fn signal_group(group: i32, signal: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals a process group this process created; it has
    // no memory effects here.
    unsafe { libc::kill(-group, signal) == 0 }
}

/// SIGTERM to the group, then SIGKILL after two seconds if anything in it still runs.
pub(super) async fn terminate_group(group: i32) {
    if !signal_group(group, libc::SIGTERM) {
        return;
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !signal_group(group, 0) {
            return;
        }
    }
    signal_group(group, libc::SIGKILL);
}
