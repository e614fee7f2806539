//! A deployment waiting for its hosts, woken the moment the last one reports.
//!
//! check-install-status runs as a `lambda:invoke.waitForTaskToken` Task. When hosts are still
//! pending it *arms* the wait: one item in the evidence table, beside the mapping's host items
//! (sort key [`SORT_KEY`]), holding the Task's token, the secret version being deployed and the
//! set of pending instance ids. record-host-evidence, after recording a run that decides a host
//! for that version (it holds it, or failed it), takes the host out of the set; the report that
//! empties it *claims* the token (a conditional remove, so exactly one writer wins) and completes the Task.
//! The state machine then checks once more and ends. Nothing waits on a poll: the deployment
//! ends as soon as its last host's output has been recorded.
//!
//! No report is lost between the check's evidence read and its arming: the check reads the
//! evidence again after arming, and a report written after that second read finds the wait
//! armed. (DynamoDB orders writes to one item, so each side sees the other's write.) A wait whose
//! reports never come (a host that went offline mid-rollout, an event lost) ends at the Task's
//! timeout, the install deadline, when the state machine checks again by itself.
//!
//! The item holds a task token, a version id and instance ids: no secret material. The calls are
//! the functions' own (check-install-status's `wait`, record-host-evidence's `wake`): this module
//! has the item's shape and the expressions both sides must agree on.

use crate::evidence::attr as evidence;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// The waiting item's sort key (`InstanceId`): never an instance id, which starts `i-` or `mi-`,
/// and sorting before them, so it is the first item of the mapping's partition.
pub const SORT_KEY: &str = "#waiting";

/// Attribute names of the waiting item.
pub mod attr {
    /// The waiting Task's token; removed by whoever claims the wake.
    pub const TASK_TOKEN: &str = "TaskToken";
    /// The secret version the deployment installs: only reports about it count.
    pub const SECRET_VERSION_ID: &str = "SecretVersionId";
    /// Instance ids not yet decided for that version (a string set; DynamoDB removes the
    /// attribute when the last one is deleted).
    pub const PENDING: &str = "Pending";
    /// RFC 3339: when the wait was armed.
    pub const ARMED_AT: &str = "ArmedAt";
    /// The execution that waits (for the log and an operator reading the table).
    pub const EXECUTION_ARN: &str = "ExecutionArn";
}

/// Whether an evidence-table item is the waiting item, not a host's evidence.
pub fn is_waiting_item(item: &HashMap<String, AttributeValue>) -> bool {
    item.get(evidence::INSTANCE_ID)
        .and_then(|v| v.as_s().ok())
        .is_some_and(|id| id == SORT_KEY)
}

/// What a check arms: the Task's token, the version and the hosts it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait<'a> {
    pub mapping_id: &'a str,
    pub task_token: &'a str,
    pub secret_version_id: &'a str,
    /// Never empty: a check with no pending host does not wait.
    pub pending: Vec<String>,
    pub armed_at: String,
    pub execution_arn: Option<&'a str>,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

impl Wait<'_> {
    /// The waiting item, keys included. Arming puts it whole, replacing any earlier wait of the
    /// mapping (an earlier check's, whose Task has ended: its token completes nothing).
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let mut item = key(self.mapping_id);
        item.insert(attr::TASK_TOKEN.into(), s(self.task_token));
        item.insert(attr::SECRET_VERSION_ID.into(), s(self.secret_version_id));
        item.insert(
            attr::PENDING.into(),
            AttributeValue::Ss(self.pending.clone()),
        );
        item.insert(attr::ARMED_AT.into(), s(&self.armed_at));
        if let Some(arn) = self.execution_arn {
            item.insert(attr::EXECUTION_ARN.into(), s(arn));
        }
        item
    }
}

/// The waiting item's key.
pub fn key(mapping_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (evidence::MAPPING_ID.to_string(), s(mapping_id)),
        (evidence::INSTANCE_ID.to_string(), s(SORT_KEY)),
    ])
}

/// Claiming the wake armed with a token (`:token`): removing the token, on the condition that it
/// is still that one. Exactly one claimer's write succeeds; a re-armed wait is not claimed.
pub mod claim {
    pub const UPDATE: &str = "REMOVE #token";
    pub const CONDITION: &str = "#token = :token";
}

/// A host's report taken out of the wait (`:host`, `:hosts` its one-element set, `:version`):
/// only while a token waits, for that version, with the host pending. With `ReturnValues
/// ALL_NEW`, an answer without [`attr::PENDING`] means it was the last one (DynamoDB removes an
/// emptied set).
pub mod report {
    pub const UPDATE: &str = "DELETE #pending :hosts";
    pub const CONDITION: &str =
        "attribute_exists(#token) AND #version = :version AND contains(#pending, :host)";
}

/// The `#token`, `#version` and `#pending` names the expressions use.
pub fn names() -> HashMap<String, String> {
    HashMap::from([
        ("#token".to_string(), attr::TASK_TOKEN.to_string()),
        ("#version".to_string(), attr::SECRET_VERSION_ID.to_string()),
        ("#pending".to_string(), attr::PENDING.to_string()),
    ])
}

/// The values of [`report`]'s expressions.
pub fn report_values(
    instance_id: &str,
    secret_version_id: &str,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (":version".to_string(), s(secret_version_id)),
        (":host".to_string(), s(instance_id)),
        (
            ":hosts".to_string(),
            AttributeValue::Ss(vec![instance_id.to_string()]),
        ),
    ])
}

/// The token a [`report`] update left, when it was the last pending host's: the caller then
/// claims it.
pub fn last_report_token(new_item: &HashMap<String, AttributeValue>) -> Option<&str> {
    if new_item.contains_key(attr::PENDING) {
        return None;
    }
    new_item
        .get(attr::TASK_TOKEN)?
        .as_s()
        .ok()
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiting_item_is_told_from_host_evidence() {
        let waiting = key("web-0123456789ab");
        assert!(is_waiting_item(&waiting));
        let host = crate::evidence::HostEvidence::key("web-0123456789ab", "i-0abc");
        assert!(!is_waiting_item(&host));
        assert!(!is_waiting_item(&HashMap::new()));
    }

    #[test]
    fn only_an_emptied_pending_set_yields_the_token() {
        let mut item = key("m");
        item.insert(attr::TASK_TOKEN.into(), s("t"));
        assert_eq!(last_report_token(&item), Some("t"));
        item.insert(attr::PENDING.into(), AttributeValue::Ss(vec!["i-1".into()]));
        assert_eq!(last_report_token(&item), None);
        assert_eq!(last_report_token(&key("m")), None);
    }

    #[test]
    fn the_item_holds_references_only() {
        let wait = Wait {
            mapping_id: "web-0123456789ab",
            task_token: "token",
            secret_version_id: "v-1",
            pending: vec!["i-1".into(), "mi-2".into()],
            armed_at: "2026-11-27T00:00:00Z".into(),
            execution_arn: Some("arn:exec"),
        };
        let item = wait.to_item();
        assert!(is_waiting_item(&item));
        let mut names: Vec<&String> = item.keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ArmedAt",
                "ExecutionArn",
                "InstanceId",
                "MappingId",
                "Pending",
                "SecretVersionId",
                "TaskToken"
            ]
        );
    }

    #[test]
    fn the_sort_key_sorts_before_every_instance_id() {
        assert!(SORT_KEY < "i-0" && SORT_KEY < "mi-0");
        assert!(crate::evidence::OutputKey::parse(&format!(
            "dev/web-0123456789ab/{SORT_KEY}/a/2026-03-01T12-00-00.000Z/awsrunShellScript/s/stdout"
        ))
        .is_none());
    }
}
