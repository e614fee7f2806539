//! SSM Run Command for the local cloud. moto accepts SendCommand but runs nothing and reports
//! Success for every host; this serves SendCommand, ListCommands, ListCommandInvocations and
//! GetCommandInvocation itself: it resolves tag targets against the emulator's EC2 instances, runs
//! the document's unmodified script with bash for each simulated host, with that host's directory
//! as its filesystem root, and reports real statuses, output, failures and timeouts.
//!
//! What AWS does, and where it is written: the SSM API Reference (`SendCommand`,
//! `ListCommandInvocations`, `GetCommandInvocation`: the request and answer shapes, 2,500
//! characters of plugin output in the list call); "Understanding command statuses" (Status and
//! StatusDetails, which count toward MaxErrors); "Using targets and rate controls to send
//! commands to a fleet" (MaxConcurrency, MaxErrors, and hosts left unsent once MaxErrors is
//! exceeded), all in the AWS Systems Manager User Guide.
//!
//! By concern: `wire` (SSM's JSON: requests, answers, limits), `state` (commands and invocations
//! with SSM's statuses), `document` (the parameters checked against the document), `targets`
//! (instance ids and tags resolved against EC2) and `schedule` (MaxConcurrency and MaxErrors,
//! each host's run). The script itself runs in the shared [`HostRunner`](crate::host_runner).

pub(crate) mod document;
mod schedule;
mod state;
mod targets;
pub(crate) mod wire;

use super::host_runner::{HostRunner, Plan};
use super::hosts::Hosts;
use certship_shared::rate::Rate;
use serde_json::{Value, json};
use state::{Command, Invocation};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use wire::*;

/// The operations served here; every other SSM call goes to moto.
pub const OPERATIONS: [&str; 4] = [
    "SendCommand",
    "ListCommands",
    "ListCommandInvocations",
    "GetCommandInvocation",
];

/// An SSM error as the JSON protocol returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmError {
    pub code: &'static str,
    pub message: String,
}

impl SsmError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The Run Command emulator.
pub struct RunCommand {
    /// Documents and instances come from moto.
    moto_ssm: aws_sdk_ssm::Client,
    moto_ec2: aws_sdk_ec2::Client,
    hosts: Hosts,
    runner: Arc<HostRunner>,
    commands: Mutex<BTreeMap<String, Command>>,
}

impl RunCommand {
    pub fn new(moto_config: &aws_config::SdkConfig, hosts: Hosts, runner: Arc<HostRunner>) -> Self {
        Self {
            moto_ssm: aws_sdk_ssm::Client::new(moto_config),
            moto_ec2: aws_sdk_ec2::Client::new(moto_config),
            hosts,
            runner,
            commands: Mutex::new(BTreeMap::new()),
        }
    }

    /// Serves one SSM JSON call.
    pub async fn call(self: &Arc<Self>, operation: &str, body: &[u8]) -> Result<Value, SsmError> {
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| SsmError::new("ValidationException", e.to_string()))?
        };
        match operation {
            "SendCommand" => self.send_command(input).await,
            "ListCommands" => self.list_commands(&input),
            "ListCommandInvocations" => self.list_command_invocations(&input),
            "GetCommandInvocation" => self.get_command_invocation(&input),
            other => Err(SsmError::new(
                "UnsupportedOperation",
                format!("{other} is not served by the local Run Command"),
            )),
        }
    }

    async fn send_command(self: &Arc<Self>, input: Value) -> Result<Value, SsmError> {
        let input: SendCommandInput = serde_json::from_value(input)
            .map_err(|e| SsmError::new("ValidationException", e.to_string()))?;
        let plan = document::plan(
            &self.moto_ssm,
            &input.document_name,
            None,
            &input.parameters,
        )
        .await?;
        let instance_ids = self.resolve_targets(&input).await?;
        let max_concurrency = input.max_concurrency.clone().unwrap_or_else(|| "50".into());
        let max_errors = input.max_errors.clone().unwrap_or_else(|| "0".into());
        let concurrency = Rate::max_concurrency(&max_concurrency).ok_or_else(|| {
            SsmError::new(
                "ValidationException",
                format!("MaxConcurrency {max_concurrency:?} is invalid"),
            )
        })?;
        let error_limit = Rate::max_errors(&max_errors).ok_or_else(|| {
            SsmError::new(
                "ValidationException",
                format!("MaxErrors {max_errors:?} is invalid"),
            )
        })?;
        let (concurrency, error_limit) = (
            concurrency.hosts(instance_ids.len()),
            error_limit.hosts(instance_ids.len()),
        );
        let now = SystemTime::now();
        let command = Command {
            id: new_command_id(),
            document_name: input.document_name.clone(),
            comment: input.comment.clone().unwrap_or_default(),
            parameters: input.parameters.clone(),
            targets: json!(
                input
                    .targets
                    .iter()
                    .map(|t| json!({"Key": t.key, "Values": t.values}))
                    .collect::<Vec<_>>()
            ),
            requested_at: now,
            timeout_seconds: input.timeout_seconds.unwrap_or(DEFAULT_DELIVERY_TIMEOUT),
            max_concurrency,
            max_errors,
            plugin_name: plan.plugin_name.clone(),
            invocations: instance_ids
                .iter()
                .map(|id| Invocation::pending(id.clone()))
                .collect(),
        };
        let response = json!({ "Command": command_json(&command) });
        let id = command.id.clone();
        let delivery_deadline =
            tokio::time::Instant::now() + Duration::from_secs(command.timeout_seconds);
        self.lock().insert(id.clone(), command);
        tracing::info!(command_id = %id, document = %input.document_name, hosts = instance_ids.len(), "command sent");
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.run(
                id,
                plan,
                instance_ids,
                concurrency,
                error_limit,
                delivery_deadline,
            )
            .await;
        });
        Ok(response)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Command>> {
        self.commands.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, input: &Value) -> Result<Command, SsmError> {
        let id = input["CommandId"].as_str().unwrap_or_default();
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| SsmError::new("InvalidCommandId", format!("command {id:?} not found")))
    }

    fn list_commands(&self, input: &Value) -> Result<Value, SsmError> {
        let commands: Vec<Value> = if input.get("CommandId").is_some() {
            vec![command_json(&self.find(input)?)]
        } else {
            self.lock().values().map(command_json).collect()
        };
        Ok(json!({ "Commands": commands }))
    }

    fn list_command_invocations(&self, input: &Value) -> Result<Value, SsmError> {
        let command = self.find(input)?;
        let details = input["Details"].as_bool().unwrap_or(false);
        let max_results = input["MaxResults"].as_u64().unwrap_or(50).clamp(1, 50) as usize;
        let start: usize = input["NextToken"]
            .as_str()
            .map(|t| {
                t.parse()
                    .map_err(|_| SsmError::new("InvalidNextToken", "the NextToken is not valid"))
            })
            .transpose()?
            .unwrap_or(0);
        let instance = input["InstanceId"].as_str();
        let selected: Vec<&Invocation> = command
            .invocations
            .iter()
            .filter(|i| instance.is_none_or(|id| id == i.instance_id))
            .collect();
        let page: Vec<Value> = selected
            .iter()
            .skip(start)
            .take(max_results)
            .map(|i| invocation_json(&command, i, details))
            .collect();
        let mut response = json!({ "CommandInvocations": page });
        if start + max_results < selected.len() {
            response["NextToken"] = json!((start + max_results).to_string());
        }
        Ok(response)
    }

    fn get_command_invocation(&self, input: &Value) -> Result<Value, SsmError> {
        let command = self.find(input)?;
        let instance_id = input["InstanceId"].as_str().unwrap_or_default();
        let invocation = command
            .invocations
            .iter()
            .find(|i| i.instance_id == instance_id)
            .ok_or_else(|| {
                SsmError::new(
                    "InvocationDoesNotExist",
                    format!("no invocation of {} on {instance_id}", command.id),
                )
            })?;
        let elapsed = match (invocation.started, invocation.finished) {
            (Some(s), Some(f)) => format!(
                "PT{:.3}S",
                f.duration_since(s).unwrap_or_default().as_secs_f64()
            ),
            _ => String::new(),
        };
        Ok(json!({
            "CommandId": command.id,
            "InstanceId": invocation.instance_id,
            "Comment": command.comment,
            "DocumentName": command.document_name,
            "DocumentVersion": "$DEFAULT",
            "PluginName": command.plugin_name,
            "ResponseCode": invocation.response_code,
            "ExecutionStartDateTime": invocation.started.map(iso).unwrap_or_default(),
            "ExecutionEndDateTime": invocation.finished.map(iso).unwrap_or_default(),
            "ExecutionElapsedTime": elapsed,
            "Status": invocation.details.status().as_str(),
            "StatusDetails": invocation.details.as_str(),
            "StandardOutputContent": truncate(&invocation.stdout, STDOUT_LIMIT),
            "StandardErrorContent": truncate(&invocation.stderr, STDERR_LIMIT),
        }))
    }
}
