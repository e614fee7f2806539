//! The command's hosts: every invocation listed, each classified as pending, succeeded or failed,
//! its output redacted before anything else reads it, and its report line parsed.

use aws_sdk_ssm::types::{CommandInvocation, CommandInvocationStatus, CommandStatus};
use certship_shared::CertshipError;
use certship_shared::host_report::HostReport;

/// Replaces a line of host output that looks like secret material.
pub const REDACTED: &str = "[redacted: secret material]";
/// Lines carrying these never leave the host's output: a broken script must not leak the bundle.
const SECRET_MARKERS: [&str; 4] = [
    "PRIVATE KEY-----",
    "\"passphrase\"",
    "encrypted_private_key",
    "SecretString",
];

/// Where one host's invocation stands, as the counts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationClass {
    Pending,
    Succeeded,
    Failed,
}

/// Maps an invocation's `Status` and `StatusDetails` to where the host stands. A failing
/// `StatusDetails` wins over any status; a status this code does not know yet is still pending,
/// so the deadline, not a guess, ends the wait.
pub fn classify(
    status: Option<&CommandInvocationStatus>,
    details: Option<&str>,
) -> InvocationClass {
    if matches!(
        details,
        Some(
            "Delivery Timed Out"
                | "Execution Timed Out"
                | "Undeliverable"
                | "Terminated"
                | "Failed"
                | "Cancelled"
                | "Access Denied"
        )
    ) {
        return InvocationClass::Failed;
    }
    match status {
        Some(CommandInvocationStatus::Success) => InvocationClass::Succeeded,
        Some(
            CommandInvocationStatus::Cancelled
            | CommandInvocationStatus::TimedOut
            | CommandInvocationStatus::Failed,
        ) => InvocationClass::Failed,
        _ => InvocationClass::Pending,
    }
}

/// One host's invocation, its output already redacted.
pub struct Host {
    pub instance_id: String,
    pub status: String,
    pub status_details: String,
    pub class: InvocationClass,
    /// The report line the script printed, if any.
    pub report: Option<HostReport>,
    pub output: String,
}

impl Host {
    fn from_invocation(invocation: &CommandInvocation) -> Self {
        let output = redact(
            &invocation
                .command_plugins()
                .iter()
                .filter_map(|p| p.output())
                .filter(|o| !o.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        Self {
            instance_id: invocation.instance_id().unwrap_or_default().to_string(),
            status: invocation
                .status()
                .map_or("Unknown", |s| s.as_str())
                .to_string(),
            status_details: invocation.status_details().unwrap_or_default().to_string(),
            class: classify(invocation.status(), invocation.status_details()),
            report: HostReport::from_output(&output),
            output,
        }
    }
}

/// Every invocation of the command, all pages.
pub async fn list_hosts(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
) -> Result<Vec<Host>, CertshipError> {
    let mut hosts = Vec::new();
    let mut next_token = None;
    loop {
        let page = ssm
            .list_command_invocations()
            .command_id(command_id)
            .details(true)
            .max_results(50)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("ListCommandInvocations", e))?;
        hosts.extend(page.command_invocations().iter().map(Host::from_invocation));
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => return Ok(hosts),
        }
    }
}

/// Whether SSM finished the command without finding a single target.
pub async fn has_no_targets(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
) -> Result<bool, CertshipError> {
    let listed = ssm
        .list_commands()
        .command_id(command_id)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("ListCommands", e))?;
    Ok(listed.commands().iter().any(|command| {
        command.target_count() == 0
            && matches!(
                command.status(),
                Some(
                    CommandStatus::Success
                        | CommandStatus::Failed
                        | CommandStatus::Cancelled
                        | CommandStatus::TimedOut
                )
            )
    }))
}

/// Host output with every private key block, and every line that looks like the secret's JSON,
/// replaced: whatever a broken script printed, it never reaches the state, the event or a log.
fn redact(output: &str) -> String {
    let mut lines = Vec::new();
    let mut in_key = false;
    for line in output.lines() {
        let key_marker = line.contains("PRIVATE KEY-----");
        if in_key {
            in_key = !(key_marker && line.contains("-----END"));
        } else if key_marker && line.contains("-----BEGIN") && !line.contains("-----END") {
            in_key = true;
            lines.push(REDACTED);
        } else if SECRET_MARKERS.iter().any(|m| line.contains(m)) {
            lines.push(REDACTED);
        } else {
            lines.push(line);
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_details_classify_as_the_contract_says() {
        use InvocationClass::{Failed, Pending, Succeeded};
        for (status, details, expected) in [
            ("Pending", "Pending", Pending),
            ("InProgress", "InProgress", Pending),
            ("Delayed", "Delayed", Pending),
            ("Cancelling", "Cancelling", Pending),
            ("Success", "Success", Succeeded),
            ("Cancelled", "Cancelled", Failed),
            ("TimedOut", "Delivery Timed Out", Failed),
            ("TimedOut", "Execution Timed Out", Failed),
            ("TimedOut", "", Failed),
            ("Failed", "Failed", Failed),
            ("Failed", "Undeliverable", Failed),
            ("Failed", "Terminated", Failed),
            ("Failed", "Access Denied", Failed),
            // a failing detail wins whatever the status says
            ("InProgress", "Delivery Timed Out", Failed),
            ("Pending", "Execution Timed Out", Failed),
            ("InProgress", "Undeliverable", Failed),
            ("Pending", "Terminated", Failed),
            // a status added after this code was written waits for the deadline
            ("Hibernating", "Hibernating", Pending),
        ] {
            assert_eq!(
                classify(Some(&CommandInvocationStatus::from(status)), Some(details)),
                expected,
                "{status} / {details}"
            );
        }
        assert_eq!(classify(None, None), Pending);
    }
}
