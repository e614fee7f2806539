//! One emulated SSM Agent per simulated host. Each lists the associations that target its host
//! (by the host's current tags) when it starts and then every poll period, and runs the due ones
//! one at a time, as the agent's association processor does (`documentWorkersLimit = 1`,
//! amazon-ssm-agent `agent/association/processor/processor.go`). Run Command has its own pool, so
//! a command and an association run may overlap on a host.
//!
//! Due, per host and association (SSM User Guide, "Understanding when associations are applied
//! to resources"): the host never ran the current version (a new association, an update, a host
//! that gained the tag), the host came back online, the schedule's (compressed) interval passed
//! since its last run there, StartAssociationsOnce, or `certship local tick`. With
//! `ApplyOnlyAtCronInterval` only the schedule, StartAssociationsOnce and tick run it. An offline
//! host runs nothing; a host that lost the tag forgets the association, so regaining it runs it
//! again.

use super::StateManager;
use super::associations::{Assignment, RunStatus};
use super::schedule::Schedule;
use super::wire::{new_id, run_id};
use crate::hosts::{HostInfo, Simulation};
use crate::run_command::document;
use certship_shared::host_report::Outcome;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

/// The agent's plugin directory for the install document's step: the action without its colon
/// (`agent/framework/docparser/docparser.go`, `BuildS3Path(s3Prefix, pluginName)`).
const SHELL_PLUGIN: &str = "awsrunShellScript";

/// What an agent remembers of an association it ran.
#[derive(Debug, Clone, Copy)]
struct Record {
    version: u32,
    started: Instant,
    start_once_seen: u64,
}

/// Starts an agent for every simulated host, now and as hosts are added, until `shutdown`.
pub async fn run_agents(manager: Arc<StateManager>, mut shutdown: watch::Receiver<bool>) {
    let mut started: HashSet<String> = HashSet::new();
    loop {
        for host in manager.hosts.list() {
            if started.insert(host.instance_id.clone()) {
                let manager = Arc::clone(&manager);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { agent(manager, host.instance_id, shutdown).await });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(manager.settings.poll_period) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn agent(
    manager: Arc<StateManager>,
    instance_id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut refresh = manager.refresh.subscribe();
    let mut records: HashMap<String, Record> = HashMap::new();
    let mut tick_seen = 0;
    let mut was_offline = false;
    loop {
        if *shutdown.borrow() || manager.runner.is_stopping() {
            return;
        }
        refresh.borrow_and_update();
        let Some(host) = manager.hosts.load(&instance_id) else {
            return;
        };
        if host.simulate == Simulation::Offline {
            // No agent answers: nothing runs and the last ping stays where it was.
            was_offline = true;
        } else {
            manager.ping(&instance_id);
            if was_offline {
                // Back online: every association that targets it runs again ("comes online
                // after missing a scheduled association run").
                records.clear();
                was_offline = false;
            }
            tick_seen = poll(&manager, &host, &mut records, tick_seen).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(manager.settings.poll_period) => {}
            _ = refresh.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One listing: runs what is due, one at a time; returns the tick count it acted on.
async fn poll(
    manager: &StateManager,
    host: &HostInfo,
    records: &mut HashMap<String, Record>,
    tick_seen: u64,
) -> u64 {
    let (assignments, tick) = {
        let store = manager.lock();
        (store.assignments(host), store.tick)
    };
    // A host that lost the tag, or an association deleted: no longer run, and forgotten.
    let current: HashSet<&str> = assignments.iter().map(|a| a.id.as_str()).collect();
    records.retain(|id, _| current.contains(id.as_str()));
    for assignment in &assignments {
        let record = records.get(&assignment.id).copied();
        if !is_due(manager, assignment, record, tick > tick_seen) {
            continue;
        }
        // Re-read the host: it may have gone offline while an earlier association ran.
        let Some(host) = manager
            .hosts
            .load(&host.instance_id)
            .filter(|h| h.simulate != Simulation::Offline)
        else {
            return tick_seen;
        };
        let started = Instant::now();
        run(manager, &host, assignment).await;
        records.insert(
            assignment.id.clone(),
            Record {
                version: assignment.version,
                started,
                start_once_seen: assignment.start_once,
            },
        );
    }
    tick
}

fn is_due(
    manager: &StateManager,
    assignment: &Assignment,
    record: Option<Record>,
    ticked: bool,
) -> bool {
    let definition = &assignment.definition;
    let interval = definition
        .schedule_expression
        .as_deref()
        .and_then(|e| Schedule::parse(e).ok())
        .and_then(|s| s.compressed(manager.settings.schedule_hour));
    if ticked || record.is_some_and(|r| r.start_once_seen < assignment.start_once) {
        return true;
    }
    let elapsed = |since: Instant| interval.is_some_and(|i| since.elapsed() >= i);
    if definition.apply_only_at_cron_interval() {
        // Only the schedule: the first run waits one interval from the version's creation.
        let since = match record {
            Some(r) if r.version == assignment.version => r.started,
            _ => {
                let age = SystemTime::now()
                    .duration_since(assignment.version_created)
                    .unwrap_or_default();
                Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
            }
        };
        return elapsed(since);
    }
    match record {
        None => true,
        Some(r) => r.version != assignment.version || elapsed(r.started),
    }
}

/// Runs one association on one host and writes its output where the agent would.
async fn run(manager: &StateManager, host: &HostInfo, assignment: &Assignment) {
    let instance_id = &host.instance_id;
    let started = SystemTime::now();
    let run_id = run_id(started);
    let output_source_id = new_id();
    let execution_id = manager.lock().begin_run(
        &assignment.id,
        assignment.version,
        instance_id,
        started,
        &output_source_id,
    );
    let Some(execution_id) = execution_id else {
        return;
    };
    let definition = &assignment.definition;
    let parameters = definition.parameters.clone().unwrap_or_default();
    let plan = {
        let _slot = manager.moto_slots.acquire().await;
        document::plan(
            &manager.moto_ssm,
            &definition.name,
            definition.document_version.as_deref(),
            &parameters,
        )
        .await
    };
    let (status, detailed, step, stdout, stderr) = match plan {
        Ok(plan) if host.simulate == Simulation::ReportsOnly => {
            tokio::time::sleep(manager.settings.simulated_run).await;
            let stdout = simulated_report(&parameters);
            (
                RunStatus::Success,
                "Success",
                Some(plan.plugin_name),
                stdout,
                String::new(),
            )
        }
        Err(e) => (
            RunStatus::Failed,
            "Failed",
            None,
            String::new(),
            format!("{}: {}", e.code, e.message),
        ),
        Ok(plan) => {
            let root = manager.hosts.root(instance_id);
            let orchestration: PathBuf = [assignment.id.as_str(), run_id.as_str()].iter().collect();
            let outcome = manager
                .runner
                .execute(instance_id, &root, &orchestration, &plan, host.simulate)
                .await;
            let step = Some(plan.plugin_name.clone());
            match outcome {
                Ok(Some(out)) if out.code == 0 => {
                    (RunStatus::Success, "Success", step, out.stdout, out.stderr)
                }
                Ok(Some(out)) => (RunStatus::Failed, "Failed", step, out.stdout, out.stderr),
                Ok(None) => (
                    RunStatus::TimedOut,
                    "TimedOut",
                    step,
                    String::new(),
                    format!(
                        "the script ran longer than its {} s timeout and was stopped",
                        plan.execution_timeout.as_secs()
                    ),
                ),
                Err(e) => (
                    RunStatus::Failed,
                    "Failed",
                    step,
                    String::new(),
                    format!("the local agent could not run the script: {e}"),
                ),
            }
        }
    };
    if let (Some((bucket, prefix)), Some(step)) = (definition.output(), step.as_deref()) {
        let base = output_prefix(prefix, instance_id, &assignment.id, &run_id, step);
        for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            // The agent uploads only files with content (`fi.Size() > 0`,
            // `agent/framework/processor/executer/iohandler/iomodule/fileS3.go`).
            if text.is_empty() {
                continue;
            }
            let key = format!("{base}/{stream}");
            let _slot = manager.moto_slots.acquire().await;
            let put = manager
                .s3
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(aws_sdk_s3::primitives::ByteStream::from(
                    text.clone().into_bytes(),
                ))
                .send()
                .await;
            if let Err(e) = put {
                tracing::warn!(instance_id = %instance_id, bucket, key = %key, error = %e, "writing association output failed");
            }
        }
    }
    tracing::info!(
        association_id = %assignment.id,
        version = assignment.version,
        instance_id = %instance_id,
        status = status.as_str(),
        "association ran"
    );
    manager
        .lock()
        .end_run(&assignment.id, &execution_id, instance_id, status, detailed);
}

/// The stdout of a [`Simulation::ReportsOnly`] host's run: the report line the document prints
/// after installing the association's version (`installed`, `new-serial`), from the
/// association's own parameters (references only).
fn simulated_report(parameters: &std::collections::BTreeMap<String, Vec<String>>) -> String {
    let first = |name: &str| parameters.get(name).and_then(|v| v.first()).cloned();
    let report = certship_shared::HostReport {
        cert_name: first("CertName"),
        serial: first("ExpectedSerial"),
        secret_version_id: first("SecretVersionId"),
        status: Some(Outcome::Installed.as_str().to_string()),
        reason: Some("new-serial".to_string()),
        changed: Some(true),
        reloaded: Some(false),
        rolled_back: Some(false),
        ..certship_shared::HostReport::default()
    };
    let line = serde_json::to_string(&report).unwrap_or_default();
    format!("certship: simulated run (no script)\n{line}\n")
}

/// `<prefix>/<instance-id>/<association-id>/<run-id>/awsrunShellScript/<step>`, joined as the
/// agent's `path.Join` does, so an empty prefix leaves no leading slash.
pub(super) fn output_prefix(
    prefix: &str,
    instance_id: &str,
    association_id: &str,
    run_id: &str,
    step: &str,
) -> String {
    [
        prefix,
        instance_id,
        association_id,
        run_id,
        SHELL_PLUGIN,
        step,
    ]
    .iter()
    .flat_map(|part| part.split('/'))
    .filter(|part| !part.is_empty())
    .collect::<Vec<_>>()
    .join("/")
}

impl StateManager {
    fn ping(&self, instance_id: &str) {
        self.pings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance_id.to_string(), SystemTime::now());
    }

    /// When the host's agent last answered; `None` for one that never did.
    pub(super) fn last_ping(&self, instance_id: &str) -> Option<SystemTime> {
        self.pings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance_id)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certship_shared::evidence::OutputKey;
    use std::time::Duration;

    #[test]
    fn a_simulated_run_reports_the_associations_version_installed() {
        let parameters = std::collections::BTreeMap::from([
            ("CertName".to_string(), vec!["web".to_string()]),
            ("ExpectedSerial".to_string(), vec!["0A1B".to_string()]),
            ("SecretVersionId".to_string(), vec!["v-2".to_string()]),
            ("SecretId".to_string(), vec!["arn:secret".to_string()]),
        ]);
        let stdout = simulated_report(&parameters);
        let report = certship_shared::HostReport::from_output(&stdout).unwrap();
        assert_eq!(report.outcome(), Outcome::Installed);
        assert_eq!(report.secret_version_id.as_deref(), Some("v-2"));
        assert_eq!(report.serial.as_deref(), Some("0A1B"));
        assert_eq!(report.cert_name.as_deref(), Some("web"));
        assert!(!stdout.contains("arn:secret"));
    }

    #[test]
    fn output_keys_are_the_agents_layout_and_read_back() {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(1_795_755_781_123);
        let prefix = output_prefix(
            "dev/web-0123456789ab",
            "i-0abc123def4567890",
            "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a",
            &run_id(at),
            "InstallCertificate",
        );
        let key = format!("{prefix}/stdout");
        assert_eq!(
            key,
            "dev/web-0123456789ab/i-0abc123def4567890/8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a/\
             2026-11-27T05-03-01.123Z/awsrunShellScript/InstallCertificate/stdout"
        );
        let parsed = OutputKey::parse(&key).unwrap();
        assert_eq!(parsed.tag_value, "dev");
        assert_eq!(parsed.mapping_id, "web-0123456789ab");
        assert_eq!(parsed.instance_id, "i-0abc123def4567890");
        assert_eq!(
            parsed.association_id,
            "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a"
        );
        assert_eq!(parsed.plugin, SHELL_PLUGIN);
        assert_eq!(parsed.step, "InstallCertificate");
        assert_eq!(parsed.observed_at(), "2026-11-27T05:03:01.123Z");
        // no prefix: no leading slash, as path.Join("", ...) gives
        assert!(output_prefix("", "i-1", "a", "r", "s").starts_with("i-1/"));
    }
}
