//! The check's side of the wait for the hosts' reports ([`certship_shared::waiting`]): arming
//! it, taking it back when the deployment ended meanwhile, and completing its own Task.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use certship_shared::CertshipError;
use certship_shared::waiting::{self, Wait};

/// Arms the wait (one PutItem, replacing any earlier wait of the mapping).
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
    dynamodb
        .put_item()
        .table_name(table_name)
        .set_item(Some(wait.to_item()))
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("PutItem", e))?;
    Ok(())
}

/// Takes back the wait armed with `task_token`: `true` when this call removed the token, `false`
/// when a report had claimed it first (its wake then makes the state machine check again).
pub async fn claim(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    mapping_id: &str,
    task_token: &str,
) -> Result<bool, CertshipError> {
    let claimed = dynamodb
        .update_item()
        .table_name(table_name)
        .set_key(Some(waiting::key(mapping_id)))
        .update_expression(waiting::claim::UPDATE)
        .condition_expression(waiting::claim::CONDITION)
        .expression_attribute_names("#token", waiting::attr::TASK_TOKEN)
        .expression_attribute_values(":token", AttributeValue::S(task_token.to_string()))
        .send()
        .await;
    match claimed {
        Ok(_) => Ok(true),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
            _ => Err(CertshipError::from_sdk("UpdateItem", err)),
        },
    }
}

/// Completes the check's own Task with `output`. `false` when the Task no longer waits for the
/// token (it timed out and was retried, or the execution ended): whatever replaced it reads the
/// evidence itself.
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
