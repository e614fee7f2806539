//! The deployment event: what check-install-status publishes on EventBridge when a deployment
//! ends, so that the CLI, the local cloud and tests read it typed, as rules and consumers see it.

use crate::host_report::HostReport;
use crate::mapping::LastDeploymentStatus;
use crate::{HostCounts, HostFailure, Trigger};
use serde::{Deserialize, Serialize};

/// `source` of every deployment event.
pub const EVENT_SOURCE: &str = "certship";
/// `detail-type` of a deployment whose every host succeeded.
pub const DETAIL_TYPE_SUCCEEDED: &str = "Certificate Deployment Succeeded";
/// `detail-type` of any other ending (`Failed`, `NoTargets`, `InstallTimedOut`).
pub const DETAIL_TYPE_FAILED: &str = "Certificate Deployment Failed";

/// `detail-type` of what acme-certificate publishes when a certificate is issued, first or
/// again: renewal-trigger redeploys every mapping of `acme:<id>` on it, as it does for ACM's
/// renewal event. Its only resource is `acme:<id>`.
pub const DETAIL_TYPE_ACME_ISSUED: &str = "ACME Certificate Issued";
/// `detail-type` of a failed issuance of a certificate that was issued before: its renewal.
pub const DETAIL_TYPE_RENEWAL_FAILED: &str = "Certificate Renewal Failed";

/// The `detail` of [`DETAIL_TYPE_ACME_ISSUED`]. References only: the secret's version, never
/// its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AcmeIssuedEvent {
    pub certificate_id: String,
    pub domains: Vec<String>,
    pub serial: String,
    pub not_after: String,
    pub secret_version_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// The ACM certificate it was imported as, with `--import-to-acm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm_certificate_arn: Option<String>,
}

/// The `detail` of [`DETAIL_TYPE_RENEWAL_FAILED`]: what failed, and how long the certificate the
/// hosts hold still has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RenewalFailedEvent {
    pub certificate_id: String,
    pub domains: Vec<String>,
    /// The issuance's `errorType` (`ChallengeFailed`, `RateLimited`, ...) and its message.
    pub error: String,
    pub cause: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// The current (installed) certificate's `notAfter` and whole days left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// Failed issuances in a row, this one included.
    pub failed_attempts: u32,
}

/// The deployment event's `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentEvent {
    pub certificate_arn: String,
    pub cert_name: String,
    pub target_tag_key: String,
    pub target_tag_value: String,
    pub trigger: Trigger,
    /// The exported serial (`$.Export.Serial`), in ACM's notation.
    pub serial: String,
    /// The mapping's association and the version this deployment made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_version: Option<String>,
    /// The Run Command of a deployment made before convergence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// How the deployment ended, as `LastDeployment.Status` records it.
    pub outcome: LastDeploymentStatus,
    /// Exact counts, even when `results` and `failures` are capped.
    pub hosts: HostCounts,
    /// One entry per host, capped.
    pub results: Vec<HostResult>,
    /// The failed hosts with the redacted tail of their output, capped.
    pub failures: Vec<HostFailure>,
}

impl DeploymentEvent {
    /// [`DETAIL_TYPE_SUCCEEDED`] for a success, else [`DETAIL_TYPE_FAILED`].
    pub fn detail_type(&self) -> &'static str {
        if self.outcome == LastDeploymentStatus::Success {
            DETAIL_TYPE_SUCCEEDED
        } else {
            DETAIL_TYPE_FAILED
        }
    }
}

/// One host of the deployment event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostResult {
    pub instance_id: String,
    /// Where the host stands: `Converged`, `Failed`, `Deferred` (offline) or `Pending`
    /// (before convergence: the invocation's `Status` as SSM names it).
    pub status: String,
    /// The host's last outcome and reason (`repaired: drift`), or its node status.
    pub status_details: String,
    /// The host's report, or `null` when it has none for this version.
    pub outcome: Option<HostReport>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_event_reads_and_writes_the_contract_s_field_names() {
        let detail = json!({
            "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "dev",
            "Trigger": "renewal", "Serial": "0a:1b",
            "AssociationId": "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a", "AssociationVersion": "2",
            "ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:m:e",
            "Outcome": "InstallTimedOut",
            "Hosts": {"Total": 2, "Succeeded": 1, "Failed": 0, "Pending": 1, "Deferred": 0},
            "Results": [
                {"InstanceId": "i-0aaa", "Status": "Converged", "StatusDetails": "installed: new-serial",
                 "Outcome": {"cert_name": "web", "changed": true}},
                {"InstanceId": "i-0bbb", "Status": "Pending", "StatusDetails": "Online",
                 "Outcome": null}
            ],
            "Failures": []
        });
        let event: DeploymentEvent = serde_json::from_value(detail.clone()).unwrap();
        assert_eq!(event.outcome, LastDeploymentStatus::InstallTimedOut);
        assert_eq!(event.detail_type(), DETAIL_TYPE_FAILED);
        assert_eq!(
            event.results[0].outcome.as_ref().unwrap().changed,
            Some(true)
        );
        assert_eq!(event.results[1].outcome, None);
        assert_eq!(serde_json::to_value(&event).unwrap(), detail);

        let succeeded = DeploymentEvent {
            outcome: LastDeploymentStatus::Success,
            ..event
        };
        assert_eq!(succeeded.detail_type(), DETAIL_TYPE_SUCCEEDED);
    }
}
