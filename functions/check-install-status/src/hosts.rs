//! The deployment's hosts: every managed node carrying the target tag, each judged by its latest
//! evidence (what its last association run reported) against the dispatched secret version. The
//! evidence's error is redacted before anything else reads it (record-host-evidence redacted it
//! already; an item written otherwise is not trusted).

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use certship_shared::evidence::{HostEvidence, attr, redact};
use certship_shared::host_report::HostReport;
use certship_shared::{CertshipError, waiting};
use std::collections::HashMap;

/// Where one target stands for the dispatched version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Its last run installed, repaired or confirmed the dispatched version.
    Converged,
    /// Its last run failed for the dispatched version.
    Failed,
    /// Offline and without the dispatched version: the association reaches it when it is back.
    Deferred,
    /// Online and not yet reporting the dispatched version.
    Pending,
}

impl HostState {
    /// As the deployment event's `HostResult.Status` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Converged => "Converged",
            Self::Failed => "Failed",
            Self::Deferred => "Deferred",
            Self::Pending => "Pending",
        }
    }
}

/// Judges one target: the evidence decides when it is about `version`; otherwise an offline
/// node is deferred and an online one pending (older evidence included: its next run reports).
pub fn classify(evidence: Option<&HostEvidence>, online: bool, version: &str) -> HostState {
    match evidence {
        Some(e) if e.holds(version) => HostState::Converged,
        Some(e) if e.failed(version) => HostState::Failed,
        _ if !online => HostState::Deferred,
        _ => HostState::Pending,
    }
}

/// One target with its evidence, judged.
#[derive(Debug, Clone)]
pub struct Host {
    pub instance_id: String,
    /// SSM's `PingStatus` of the node (`Online`, `ConnectionLost`, `Inactive`).
    pub ping_status: String,
    pub state: HostState,
    /// Its latest evidence, its error already redacted.
    pub evidence: Option<HostEvidence>,
}

impl Host {
    /// `<outcome>: <reason>` when the evidence decided, else the node's ping status.
    pub fn status_details(&self) -> String {
        match (&self.evidence, self.state) {
            (Some(e), HostState::Converged | HostState::Failed) => match &e.reason {
                Some(reason) => format!("{}: {reason}", e.outcome),
                None => e.outcome.to_string(),
            },
            _ => self.ping_status.clone(),
        }
    }

    /// The host's report for the dispatched version, rebuilt from its evidence; `None` when its
    /// evidence is about another version or it has none.
    pub fn report(&self) -> Option<HostReport> {
        let e = self
            .evidence
            .as_ref()
            .filter(|_| matches!(self.state, HostState::Converged | HostState::Failed))?;
        Some(HostReport {
            serial: e.serial.clone(),
            not_after: e.not_after.clone(),
            secret_version_id: e.secret_version_id.clone(),
            status: Some(e.outcome.to_string()),
            reason: e.reason.clone(),
            sha256: e.sha256.clone(),
            reloaded: Some(e.reloaded),
            error: e.error.clone(),
            ..HostReport::default()
        })
    }
}

/// Every managed node with the tag `tag_key=tag_value`, all pages, as (instance id, ping status).
pub async fn list_targets(
    ssm: &aws_sdk_ssm::Client,
    tag_key: &str,
    tag_value: &str,
) -> Result<Vec<(String, PingStatus)>, CertshipError> {
    let filter = InstanceInformationStringFilter::builder()
        .key(format!("tag:{tag_key}"))
        .values(tag_value)
        .build()
        .map_err(|e| CertshipError::Service(format!("could not build the tag filter: {e}")))?;
    let mut targets = Vec::new();
    let mut next_token = None;
    loop {
        let page = ssm
            .describe_instance_information()
            .filters(filter.clone())
            .max_results(50)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("DescribeInstanceInformation", e))?;
        targets.extend(page.instance_information_list().iter().filter_map(|node| {
            let id = node.instance_id()?.to_string();
            let ping = node
                .ping_status()
                .cloned()
                .unwrap_or(PingStatus::ConnectionLost);
            Some((id, ping))
        }));
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => return Ok(targets),
        }
    }
}

/// The mapping's evidence, all pages, by instance id (the partition's waiting item is not a
/// host's). An item that does not read is skipped
/// (logged): a hand-edited item must not fail the deployment. So is one written under another
/// tag value than the target's (`tag_value`): another target's host speaking for this mapping.
pub async fn list_evidence(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping_id: &str,
    tag_value: &str,
) -> Result<HashMap<String, HostEvidence>, CertshipError> {
    let mut evidence = HashMap::new();
    let mut start_key = None;
    loop {
        let page = dynamodb
            .query()
            .table_name(table_name)
            .key_condition_expression("#m = :m")
            .expression_attribute_names("#m", attr::MAPPING_ID)
            .expression_attribute_values(":m", AttributeValue::S(mapping_id.to_string()))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("Query", e))?;
        for item in page.items() {
            if waiting::is_waiting_item(item) {
                continue;
            }
            match HostEvidence::from_item(item) {
                Ok(e) if !e.written_under(tag_value) => tracing::warn!(
                    mapping_id = %mapping_id,
                    instance_id = %e.instance_id,
                    written_under = e.tag_value.as_deref().unwrap_or(""),
                    "evidence written under another target's tag value; ignored"
                ),
                Ok(mut e) => {
                    e.error = e.error.as_deref().map(redact);
                    evidence.insert(e.instance_id.clone(), e);
                }
                Err(err) => tracing::warn!(
                    mapping_id = %mapping_id,
                    error = %err,
                    "an evidence item that does not read; skipped"
                ),
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => return Ok(evidence),
        }
    }
}

/// Every target judged by its evidence for `version`, in the order SSM listed them.
pub fn judge(
    targets: Vec<(String, PingStatus)>,
    mut evidence: HashMap<String, HostEvidence>,
    version: &str,
) -> Vec<Host> {
    targets
        .into_iter()
        .map(|(instance_id, ping)| {
            let evidence = evidence.remove(&instance_id);
            let state = classify(evidence.as_ref(), ping == PingStatus::Online, version);
            Host {
                instance_id,
                ping_status: ping.as_str().to_string(),
                state,
                evidence,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use certship_shared::host_report::Outcome;

    fn evidence(outcome: Outcome, version: Option<&str>) -> HostEvidence {
        HostEvidence {
            mapping_id: "web-0123456789ab".into(),
            instance_id: "i-0aaa".into(),
            tag_value: Some("dev".into()),
            association_id: None,
            run_id: None,
            outcome,
            reason: None,
            serial: None,
            secret_version_id: version.map(str::to_string),
            not_after: None,
            error: None,
            sha256: None,
            reloaded: false,
            observed_at: "2026-03-01T12:00:00.000Z".into(),
        }
    }

    #[test]
    fn evidence_of_the_version_decides_else_the_node_status_does() {
        use HostState::{Converged, Deferred, Failed, Pending};
        for (outcome, version, online, expected) in [
            (Some(Outcome::Installed), Some("v2"), true, Converged),
            (Some(Outcome::Unchanged), Some("v2"), false, Converged),
            (Some(Outcome::Repaired), Some("v2"), true, Converged),
            (Some(Outcome::Failed), Some("v2"), true, Failed),
            (Some(Outcome::RolledBack), Some("v2"), false, Failed),
            (Some(Outcome::Backoff), Some("v2"), true, Failed),
            // evidence of an older version, or of none, waits for the next run
            (Some(Outcome::Installed), Some("v1"), true, Pending),
            (Some(Outcome::Failed), Some("v1"), true, Pending),
            (Some(Outcome::Failed), None, true, Pending),
            (Some(Outcome::Installed), Some("v1"), false, Deferred),
            (None, None, true, Pending),
            (None, None, false, Deferred),
            (
                Some(Outcome::Other("paused".into())),
                Some("v2"),
                true,
                Pending,
            ),
        ] {
            let e = outcome.clone().map(|o| evidence(o, version));
            assert_eq!(
                classify(e.as_ref(), online, "v2"),
                expected,
                "{outcome:?} {version:?} online={online}"
            );
        }
    }
}
