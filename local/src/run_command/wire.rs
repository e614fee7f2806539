//! SSM's JSON wire format: the SendCommand request, the Command and CommandInvocation answers,
//! and SSM's output limits.

use super::state::{Command, Details, Invocation};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SSM truncates output this way in ListCommandInvocations and GetCommandInvocation.
pub(super) const PLUGIN_OUTPUT_LIMIT: usize = 2500;
pub(super) const STDOUT_LIMIT: usize = 24_000;
pub(super) const STDERR_LIMIT: usize = 8_000;
pub(super) const DEFAULT_DELIVERY_TIMEOUT: u64 = 3600;
pub(super) const DEFAULT_EXECUTION_TIMEOUT: u64 = 3600;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Target {
    pub(super) key: String,
    pub(super) values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SendCommandInput {
    pub(super) document_name: String,
    #[serde(default)]
    pub(super) instance_ids: Vec<String>,
    #[serde(default)]
    pub(super) targets: Vec<Target>,
    #[serde(default)]
    pub(super) parameters: BTreeMap<String, Vec<String>>,
    pub(super) timeout_seconds: Option<u64>,
    pub(super) max_concurrency: Option<String>,
    pub(super) max_errors: Option<String>,
    pub(super) comment: Option<String>,
}

pub(super) fn command_json(command: &Command) -> Value {
    let instance_ids: Vec<&str> = command
        .invocations
        .iter()
        .map(|i| i.instance_id.as_str())
        .collect();
    json!({
        "CommandId": command.id,
        "DocumentName": command.document_name,
        "DocumentVersion": "$DEFAULT",
        "Comment": command.comment,
        "Parameters": command.parameters,
        "InstanceIds": instance_ids,
        "Targets": command.targets,
        "RequestedDateTime": epoch(command.requested_at),
        "ExpiresAfter": epoch(command.requested_at + Duration::from_secs(command.timeout_seconds)),
        "Status": command.status().as_str(),
        "StatusDetails": command.status().as_str(),
        "TargetCount": command.invocations.len(),
        "CompletedCount": command.count(|i| i.details.status().is_terminal()),
        "ErrorCount": command.count(|i| matches!(i.details, Details::Failed | Details::ExecutionTimedOut)),
        "DeliveryTimedOutCount": command.count(|i| i.details == Details::DeliveryTimedOut),
        "MaxConcurrency": command.max_concurrency,
        "MaxErrors": command.max_errors,
        "TimeoutSeconds": command.timeout_seconds,
    })
}

pub(super) fn invocation_json(command: &Command, invocation: &Invocation, details: bool) -> Value {
    let mut value = json!({
        "CommandId": command.id,
        "InstanceId": invocation.instance_id,
        "InstanceName": "",
        "Comment": command.comment,
        "DocumentName": command.document_name,
        "DocumentVersion": "$DEFAULT",
        "RequestedDateTime": epoch(command.requested_at),
        "Status": invocation.details.status().as_str(),
        "StatusDetails": invocation.details.as_str(),
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": [],
    });
    if details {
        value["CommandPlugins"] = json!([{
            "Name": command.plugin_name,
            "Status": invocation.details.status().as_str(),
            "StatusDetails": invocation.details.as_str(),
            "ResponseCode": invocation.response_code,
            "ResponseStartDateTime": invocation.started.map(epoch),
            "ResponseFinishDateTime": invocation.finished.map(epoch),
            "Output": plugin_output(&invocation.stdout, &invocation.stderr),
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
        }]);
    }
    value
}

/// Standard output, then standard error under SSM's own separator, within SSM's limit.
pub(super) fn plugin_output(stdout: &str, stderr: &str) -> String {
    let mut output = stdout.to_string();
    if !stderr.is_empty() {
        output.push_str("\n----------ERROR-------\n");
        output.push_str(stderr);
    }
    truncate(&output, PLUGIN_OUTPUT_LIMIT)
}

pub(super) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

pub(crate) fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

pub(super) fn iso(t: SystemTime) -> String {
    certship_shared::time::rfc3339(t)
}

pub(crate) fn new_command_id() -> String {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .unwrap_or_else(|_| {
            let nanos = epoch(SystemTime::now()).to_bits().to_le_bytes();
            bytes[..8].copy_from_slice(&nanos);
        });
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_ssm_separator_and_limit() {
        assert_eq!(plugin_output("ok\n", ""), "ok\n");
        assert_eq!(
            plugin_output("a", "b"),
            "a\n----------ERROR-------\nb".to_string()
        );
        assert_eq!(plugin_output(&"é".repeat(2000), "").len(), 2500);
    }

    #[test]
    fn command_ids_look_like_ssm_ones_and_differ() {
        let (a, b) = (new_command_id(), new_command_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
