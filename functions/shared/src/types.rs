//! The workflow's payloads, exactly as DESIGN's contract names them. Every Task writes under its
//! own `ResultPath`, so one [`WorkflowState`] grows as the execution goes on.

use serde::{Deserialize, Serialize};

/// What started the workflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    #[default]
    Api,
    Renewal,
}

/// The state machine's input, from the API or from renewal-trigger. Field names are the seed's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentRequest {
    pub certificate_arn: String,
    pub cert_name: String,
    pub target_tag_key: String,
    pub target_tag_value: String,
    /// A systemd unit to reload after install; must be in the stack's allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_service: Option<String>,
    #[serde(default)]
    pub trigger: Trigger,
}

/// `$.Execution`, set by the state machine's first state from the context object, so that the
/// Lambdas can name the execution they work for (check-install-status records it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionContext {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

/// `$.Export`, written by export-certificate. References only: no secret material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportResult {
    pub secret_arn: String,
    pub secret_version_id: String,
    /// The certificate's serial as ACM shows it (`0a:1b:...`).
    pub serial: String,
    /// RFC 3339, UTC, `Z`.
    pub not_after: String,
    pub key_algorithm: String,
    pub domains: Vec<String>,
    /// RFC 3339, UTC, `Z`: when this secret version was written (beyond DESIGN's list; recorded
    /// as the mapping's `LastExportedDate`).
    #[serde(default)]
    pub exported_at: String,
}

/// `$.Dispatch`, written by dispatch-install: the mapping's State Manager association and the
/// version of it that this deployment made (the desired state every target converges to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DispatchResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_version: Option<String>,
    /// The Run Command of a deployment made before convergence (executions in the history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    pub requested_at: String,
    /// Past this instant check-install-status gives up with `InstallTimedOut` on the online
    /// targets that have not reported.
    pub deadline_at: String,
    /// The SSM document the association runs (beyond DESIGN's list; shown in the console).
    #[serde(default)]
    pub document_name: String,
    /// How long the check waits for the hosts' reports before it looks again by itself (the
    /// state machine's `TimeoutSecondsPath`): to the deadline, plus [`WAKE_MARGIN_SECONDS`], so
    /// that a deployment whose reports never come still ends. 0 in executions that predate it.
    #[serde(default)]
    pub wait_seconds: u64,
}

/// How long past the deadline the safety check runs: the deadline must have passed when it does.
pub const WAKE_MARGIN_SECONDS: u64 = 5;

/// The three outcomes of an install as the state machine's Choice sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallStatus {
    InProgress,
    Success,
    Failed,
}

/// Host counts of one deployment: `Succeeded` are the targets that hold the deployed version
/// (converged), `Deferred` the offline ones that do not yet (the association reaches them when
/// they come back), `Pending` the online ones that have not reported it yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostCounts {
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub pending: u32,
    #[serde(default)]
    pub deferred: u32,
}

/// One host whose install failed, with the tail of what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostFailure {
    pub instance_id: String,
    pub status_details: String,
    pub output: String,
}

/// `$.Install`, written by check-install-status on every poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstallResult {
    pub status: InstallStatus,
    /// Seconds the state machine waits before the next poll.
    pub wait_seconds: u32,
    /// How many polls have been made, this one included.
    pub poll: u32,
    pub hosts: HostCounts,
    pub failures: Vec<HostFailure>,
    /// On a wake (record-host-evidence completing the waiting check): the host whose report was
    /// the last one pending. The counts are then empty: the next check counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub woken_by: Option<String>,
}

impl InstallResult {
    /// What record-host-evidence completes the waiting check with when `instance_id`'s report
    /// was the last one it waited for: `InProgress`, so that the state machine checks again.
    pub fn woken_by(instance_id: &str) -> Self {
        Self {
            status: InstallStatus::InProgress,
            wait_seconds: 0,
            poll: 0,
            hosts: HostCounts::default(),
            failures: Vec::new(),
            woken_by: Some(instance_id.to_string()),
        }
    }
}

/// The whole state as it travels between Tasks. Each Lambda reads what it needs and returns only
/// its own part, which the ASL places under its `ResultPath`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkflowState {
    #[serde(flatten)]
    pub request: DeploymentRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<DispatchResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallResult>,
}

impl WorkflowState {
    /// A state holding only the request, as the state machine receives it.
    pub fn new(request: DeploymentRequest) -> Self {
        Self {
            request,
            execution: None,
            export: None,
            dispatch: None,
            install: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seed_input_deserializes_with_defaults() {
        let state: WorkflowState = serde_json::from_value(json!({
            "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            "CertName": "web",
            "TargetTagKey": "env",
            "TargetTagValue": "dev"
        }))
        .unwrap();
        assert_eq!(state.request.cert_name, "web");
        assert_eq!(state.request.trigger, Trigger::Api);
        assert_eq!(state.request.reload_service, None);
        assert!(state.export.is_none());
    }

    #[test]
    fn results_use_the_contract_field_names() {
        let install = InstallResult {
            status: InstallStatus::InProgress,
            wait_seconds: 2,
            poll: 1,
            hosts: HostCounts {
                total: 2,
                succeeded: 1,
                failed: 0,
                pending: 1,
                deferred: 0,
            },
            failures: vec![],
            woken_by: None,
        };
        assert_eq!(
            serde_json::to_value(&install).unwrap(),
            json!({"Status": "InProgress", "WaitSeconds": 2, "Poll": 1,
                   "Hosts": {"Total": 2, "Succeeded": 1, "Failed": 0, "Pending": 1, "Deferred": 0},
                   "Failures": []})
        );
        let request: DeploymentRequest = serde_json::from_value(json!({
            "CertificateArn": "a", "CertName": "b", "TargetTagKey": "c", "TargetTagValue": "d",
            "Trigger": "renewal"
        }))
        .unwrap();
        assert_eq!(request.trigger, Trigger::Renewal);
        assert_eq!(
            serde_json::to_value(&request).unwrap()["Trigger"],
            "renewal"
        );
    }
}
