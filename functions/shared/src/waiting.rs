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
//! The item holds a task token, a version id and instance ids: no secret material.

use crate::CertshipError;
use crate::evidence::attr as evidence;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
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

fn key(mapping_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (evidence::MAPPING_ID.to_string(), s(mapping_id)),
        (evidence::INSTANCE_ID.to_string(), s(SORT_KEY)),
    ])
}

/// Arms the wait, replacing any earlier one of the mapping (an earlier check's, whose Task has
/// ended: its token can no longer complete anything).
pub async fn arm(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    wait: &Wait<'_>,
) -> Result<(), CertshipError> {
    if wait.pending.is_empty() {
        return Err(CertshipError::Service(
            "arming a wait with no pending host: nothing would wake it".into(),
        ));
    }
    let mut item = key(wait.mapping_id);
    item.insert(attr::TASK_TOKEN.into(), s(wait.task_token));
    item.insert(attr::SECRET_VERSION_ID.into(), s(wait.secret_version_id));
    item.insert(
        attr::PENDING.into(),
        AttributeValue::Ss(wait.pending.clone()),
    );
    item.insert(attr::ARMED_AT.into(), s(&wait.armed_at));
    if let Some(arn) = wait.execution_arn {
        item.insert(attr::EXECUTION_ARN.into(), s(arn));
    }
    dynamodb
        .put_item()
        .table_name(table_name)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("PutItem", e))?;
    Ok(())
}

/// Claims the wake of the wait armed with `task_token`: `true` for the one caller that removed
/// the token, `false` when it was already claimed or the wait was re-armed.
pub async fn claim(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping_id: &str,
    task_token: &str,
) -> Result<bool, CertshipError> {
    let claimed = dynamodb
        .update_item()
        .table_name(table_name)
        .set_key(Some(key(mapping_id)))
        .update_expression("REMOVE #token")
        .condition_expression("#token = :token")
        .expression_attribute_names("#token", attr::TASK_TOKEN)
        .expression_attribute_values(":token", s(task_token))
        .send()
        .await;
    conditional(claimed.map(|_| ()), "UpdateItem").map(|done| done.is_some())
}

/// A conditional write's outcome: `Some` when written, `None` when its condition failed.
fn conditional<T>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<UpdateItemError>>,
    operation: &str,
) -> Result<Option<T>, CertshipError> {
    match result {
        Ok(out) => Ok(Some(out)),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(None),
            _ => Err(CertshipError::from_sdk(operation, err)),
        },
    }
}

/// Records that `instance_id` decided `secret_version_id` (holds it, or failed it: either way
/// the deployment no longer waits for it), and claims the wake when it was the last pending host.
/// Returns the token to complete, for the one caller that claimed it; `None` otherwise (no wait
/// for that version, the host not pending, others still pending, or another caller claimed it).
pub async fn reported(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping_id: &str,
    instance_id: &str,
    secret_version_id: &str,
) -> Result<Option<String>, CertshipError> {
    let update = dynamodb
        .update_item()
        .table_name(table_name)
        .set_key(Some(key(mapping_id)))
        .update_expression("DELETE #pending :hosts")
        .condition_expression(
            "attribute_exists(#token) AND #version = :version AND contains(#pending, :host)",
        )
        .expression_attribute_names("#token", attr::TASK_TOKEN)
        .expression_attribute_names("#version", attr::SECRET_VERSION_ID)
        .expression_attribute_names("#pending", attr::PENDING)
        .expression_attribute_values(":version", s(secret_version_id))
        .expression_attribute_values(":host", s(instance_id))
        .expression_attribute_values(":hosts", AttributeValue::Ss(vec![instance_id.into()]))
        .return_values(ReturnValue::AllNew)
        .send()
        .await;
    let Some(out) = conditional(update, "UpdateItem")? else {
        return Ok(None);
    };
    let item = out.attributes.unwrap_or_default();
    if item.contains_key(attr::PENDING) {
        return Ok(None);
    }
    let Some(token) = item.get(attr::TASK_TOKEN).and_then(|v| v.as_s().ok()) else {
        return Ok(None);
    };
    Ok(claim(dynamodb, table_name, mapping_id, token)
        .await?
        .then(|| token.clone()))
}

/// Completes the waiting Task with `output` (JSON). `false` when the Task no longer waits for
/// this token (it timed out and was retried with a new one, or the execution ended): nothing is
/// lost, since whatever replaced it reads the evidence itself.
pub async fn complete(
    sfn: &aws_sdk_sfn::Client,
    task_token: &str,
    output: &str,
) -> Result<bool, CertshipError> {
    let sent = sfn
        .send_task_success()
        .task_token(task_token)
        .output(output)
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(err) => match err.as_service_error() {
            Some(
                SendTaskSuccessError::TaskTimedOut(_)
                | SendTaskSuccessError::TaskDoesNotExist(_)
                | SendTaskSuccessError::InvalidToken(_),
            ) => Ok(false),
            _ => Err(CertshipError::from_sdk("SendTaskSuccess", err)),
        },
    }
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
    fn the_sort_key_sorts_before_every_instance_id() {
        assert!(SORT_KEY < "i-0" && SORT_KEY < "mi-0");
        assert!(crate::evidence::OutputKey::parse(&format!(
            "dev/web-0123456789ab/{SORT_KEY}/a/2026-03-01T12-00-00.000Z/awsrunShellScript/s/stdout"
        ))
        .is_none());
    }
}
