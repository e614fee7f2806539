//! The simulated host's side of the SSM Agent, shared by Run Command and State Manager: a
//! document's script written where the agent writes it, run with bash in a process group of its
//! own with the host's directory as its filesystem root, its output read, stopped on timeout or
//! shutdown. The agent runs commands and associations in separate worker pools
//! (amazon-ssm-agent `agent/appconfig/constants.go` `DefaultCommandWorkersLimit = 5`;
//! `agent/association/processor/processor.go` `documentWorkersLimit = 1`), so the runner itself
//! never serializes one against the other.

use crate::hosts::Simulation;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
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

/// A document's one `aws:runShellScript` step with its parameters checked against the document.
#[derive(Debug, Clone)]
pub struct Plan {
    pub script: String,
    /// The step's name (`mainSteps[].name`).
    pub plugin_name: String,
    pub execution_timeout: Duration,
    pub parameters: BTreeMap<String, String>,
}

/// What a script that ran to its end left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs scripts on simulated hosts; stops them all at shutdown.
pub struct HostRunner {
    env: HostEnvironment,
    /// Process groups of scripts still running, stopped at shutdown.
    running: Mutex<HashSet<i32>>,
    stopping: AtomicBool,
}

impl HostRunner {
    pub fn new(env: HostEnvironment) -> Self {
        Self {
            env,
            running: Mutex::new(HashSet::new()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called: nothing new starts after it.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Stops every script still running and starts no more: SIGTERM, so their EXIT traps
    /// clean up, then SIGKILL for any still there half a second later.
    pub fn shutdown(&self) {
        let groups: Vec<i32> = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            self.stopping.store(true, Ordering::SeqCst);
            running.drain().collect()
        };
        if groups.is_empty() {
            return;
        }
        for group in &groups {
            signal_group(*group, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(500));
        for group in groups {
            signal_group(group, libc::SIGKILL);
        }
    }

    /// Writes the script where the agent would, under the host's
    /// `var/lib/amazon/ssm/<instance-id>/document/orchestration/<orchestration>/<step>`, and runs
    /// it with bash; `None` when it ran past the step's timeout. `orchestration` is the command
    /// id for Run Command and `<association-id>/<run-id>` for an association
    /// (`agent/association/parser/parser.go`, `InitializeDocumentState`).
    pub async fn execute(
        &self,
        instance_id: &str,
        root: &Path,
        orchestration: &Path,
        plan: &Plan,
        simulate: Simulation,
    ) -> std::io::Result<Option<ScriptOutput>> {
        let work = root
            .join("var/lib/amazon/ssm")
            .join(instance_id)
            .join("document/orchestration")
            .join(orchestration)
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
        Ok(Some(ScriptOutput {
            code: status.code().unwrap_or(-1),
            stdout: collect(stdout).await,
            stderr: collect(stderr).await,
        }))
    }

    /// The script's environment: what the agent gives it, with the host's directory standing in
    /// for `/` in the directory parameters.
    fn environment(
        &self,
        instance_id: &str,
        root: &Path,
        plan: &Plan,
        simulate: Simulation,
    ) -> HashMap<String, String> {
        let env = &self.env;
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
fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<Vec<u8>>
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
fn signal_group(group: i32, signal: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals a process group this process created; it has
    // no memory effects here.
    unsafe { libc::kill(-group, signal) == 0 }
}

/// SIGTERM to the group, then SIGKILL after two seconds if anything in it still runs.
async fn terminate_group(group: i32) {
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
