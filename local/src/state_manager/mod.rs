//! SSM State Manager for the local cloud. moto 5.2.5 has no association API and no
//! DescribeInstanceInformation, so the gateway serves them here, and an emulated SSM Agent per
//! simulated host applies the associations that target it with the same runner as Run Command,
//! writing each run's output to S3 at the agent's key layout.
//!
//! What AWS does, and where it is written:
//! - the calls, their fields and errors: SSM API Reference (`CreateAssociation`,
//!   `UpdateAssociation`, `DescribeAssociation`, `DeleteAssociation`, `ListAssociations`,
//!   `ListAssociationVersions`, `StartAssociationsOnce`, `DescribeAssociationExecutions`,
//!   `DescribeAssociationExecutionTargets`, `DescribeInstanceInformation`);
//! - when an association runs (at creation, after an update, on its schedule, on
//!   `StartAssociationsOnce`, on a node that gains the tag or comes back online; never again on a
//!   node that lost the tag): AWS Systems Manager User Guide, "Understanding when associations
//!   are applied to resources" and "Understanding targets and rate controls in State Manager
//!   associations";
//! - how the agent does it: amazon-ssm-agent `agent/association/processor/processor.go` (lists
//!   its associations at start and every `AssociationFrequencyMinutes`, default 10 minutes,
//!   `agent/appconfig/constants.go`; runs them one at a time, `documentWorkersLimit = 1`) and
//!   `agent/association/parser/parser.go` (output under
//!   `<prefix>/<instance-id>/<association-id>/<run-id>/`).
//!
//! By concern: `wire` (the JSON), `schedule` (ScheduleExpression and its compression),
//! `associations` (the association calls and their versions and executions), `agent` (one
//! emulated agent per host), `instance_information` (DescribeInstanceInformation).

mod agent;
mod associations;
mod instance_information;
mod schedule;
mod wire;

use crate::host_runner::HostRunner;
use crate::hosts::Hosts;
use crate::run_command::SsmError;
use associations::Store;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub use agent::run_agents;

/// The operations served here; every other SSM call goes to Run Command or moto.
pub const OPERATIONS: [&str; 10] = [
    "CreateAssociation",
    "UpdateAssociation",
    "DescribeAssociation",
    "DeleteAssociation",
    "ListAssociations",
    "ListAssociationVersions",
    "StartAssociationsOnce",
    "DescribeAssociationExecutions",
    "DescribeAssociationExecutionTargets",
    "DescribeInstanceInformation",
];

/// How the emulated agents keep time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSettings {
    /// How often each agent lists its associations: every 10 minutes on a real host
    /// (`AssociationFrequencyMinutes`), every second by default here.
    pub poll_period: Duration,
    /// How long one hour of an association's schedule lasts here: `rate(1 hour)` runs every
    /// `schedule_hour`, `rate(30 minutes)` every half of it.
    pub schedule_hour: Duration,
    /// How long a [`Simulation::ReportsOnly`](crate::hosts::Simulation::ReportsOnly) host's run
    /// takes before it reports.
    pub simulated_run: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            poll_period: Duration::from_secs(1),
            schedule_hour: Duration::from_secs(60),
            simulated_run: Duration::from_secs(1),
        }
    }
}

/// The State Manager emulator: the associations, and what the agents need to apply them.
pub struct StateManager {
    /// Documents come from moto.
    moto_ssm: aws_sdk_ssm::Client,
    /// Output buckets are moto's.
    s3: aws_sdk_s3::Client,
    hosts: Hosts,
    runner: Arc<HostRunner>,
    settings: AgentSettings,
    store: Mutex<Store>,
    /// Bumped by every change the agents must act on at once. In AWS the service pushes an
    /// `aws:refreshAssociation` command to the nodes
    /// (`agent/association/processor/refreshassociation.go`), which makes create, update and
    /// StartAssociationsOnce take effect immediately instead of at the next poll.
    refresh: watch::Sender<u64>,
    /// When each host's agent last listed its associations, which stands for its last ping.
    pings: Mutex<HashMap<String, SystemTime>>,
    /// The agents' calls to moto in flight at once (a run's document fetch, its output upload).
    /// Each real agent is a machine of its own; here a thousand share one moto server, whose
    /// listen backlog (128) refuses a burst of a thousand connections. Emulation only: it bounds
    /// the emulator's load, not what a host may do.
    moto_slots: tokio::sync::Semaphore,
}

/// The agents' moto calls in flight at once ([`StateManager::moto_slots`]).
pub const AGENT_MOTO_CALLS: usize = 32;

impl StateManager {
    pub fn new(
        moto_config: &aws_config::SdkConfig,
        hosts: Hosts,
        runner: Arc<HostRunner>,
        settings: AgentSettings,
    ) -> Self {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(moto_config)
                .force_path_style(true)
                .build(),
        );
        Self {
            moto_ssm: aws_sdk_ssm::Client::new(moto_config),
            s3,
            hosts,
            runner,
            settings,
            store: Mutex::new(Store::default()),
            refresh: watch::channel(0).0,
            pings: Mutex::new(HashMap::new()),
            moto_slots: tokio::sync::Semaphore::new(AGENT_MOTO_CALLS),
        }
    }

    pub fn settings(&self) -> AgentSettings {
        self.settings
    }

    /// Serves one SSM JSON call.
    pub async fn call(&self, operation: &str, body: &[u8]) -> Result<Value, SsmError> {
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| SsmError::new("ValidationException", e.to_string()))?
        };
        match operation {
            "CreateAssociation" => self.create_association(input).await,
            "UpdateAssociation" => self.update_association(input).await,
            "DescribeAssociation" => self.describe_association(&input),
            "DeleteAssociation" => self.delete_association(&input),
            "ListAssociations" => self.list_associations(input),
            "ListAssociationVersions" => self.list_association_versions(input),
            "StartAssociationsOnce" => self.start_associations_once(&input),
            "DescribeAssociationExecutions" => self.describe_association_executions(input),
            "DescribeAssociationExecutionTargets" => {
                self.describe_association_execution_targets(input)
            }
            "DescribeInstanceInformation" => self.describe_instance_information(input),
            other => Err(SsmError::new(
                "UnsupportedOperation",
                format!("{other} is not served by the local State Manager"),
            )),
        }
    }

    /// `certship local tick`: every association runs once now on every online host it targets,
    /// as if its schedule had come round. Returns how many associations there are.
    pub fn tick(&self) -> usize {
        let count = {
            let mut store = self.lock();
            store.tick += 1;
            store.len()
        };
        self.wake();
        count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every agent to list its associations now.
    fn wake(&self) {
        self.refresh.send_modify(|n| *n += 1);
    }
}
