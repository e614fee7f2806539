//! record-host-evidence's side of a deployment's wait for its hosts
//! ([`certship_shared::waiting`]): taking a deciding host out of the pending set, claiming the
//! wake when it was the last one, and completing the waiting check's Task.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use certship_shared::CertshipError;
use certship_shared::waiting;

/// Records that `instance_id` decided `secret_version_id` (holds it, or failed it: either way
/// the deployment no longer waits for it) and claims the wake when it was the last pending host.
/// The token to complete, for the one caller that claimed it; `None` otherwise (no wait for that
/// version, the host not pending, others still pending, or another caller claimed it).
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
        .set_key(Some(waiting::key(mapping_id)))
        .update_expression(waiting::report::UPDATE)
        .condition_expression(waiting::report::CONDITION)
        .set_expression_attribute_names(Some(waiting::names()))
        .set_expression_attribute_values(Some(waiting::report_values(
            instance_id,
            secret_version_id,
        )))
        .return_values(ReturnValue::AllNew)
        .send()
        .await;
    let item = match update {
        Ok(out) => out.attributes.unwrap_or_default(),
        Err(err) => {
            return match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(None),
                _ => Err(CertshipError::from_sdk("UpdateItem", err)),
            };
        }
    };
    let Some(token) = waiting::last_report_token(&item) else {
        return Ok(None);
    };
    let claimed = dynamodb
        .update_item()
        .table_name(table_name)
        .set_key(Some(waiting::key(mapping_id)))
        .update_expression(waiting::claim::UPDATE)
        .condition_expression(waiting::claim::CONDITION)
        .expression_attribute_names("#token", waiting::attr::TASK_TOKEN)
        .expression_attribute_values(":token", AttributeValue::S(token.to_string()))
        .send()
        .await;
    match claimed {
        Ok(_) => Ok(Some(token.to_string())),
        Err(err) => match err.as_service_error() {
            // The check took its wait back: it found the same ending and completes itself.
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(None),
            _ => Err(CertshipError::from_sdk("UpdateItem", err)),
        },
    }
}

/// Completes the waiting check's Task with `output`. `false` when the Task no longer waits for
/// the token (it timed out and was retried with a new one, or the execution ended): nothing is
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
