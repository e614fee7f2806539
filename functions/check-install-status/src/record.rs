//! `LastDeployment` on the mapping: how the deployment ended, recorded before it is announced.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use certship_shared::mapping::{self, LastDeployment, attr};
use certship_shared::{CertshipError, WorkflowState};

/// Records `last` on the mapping of `input`'s request. A mapping deleted meanwhile is not
/// recreated: that is logged, not an error.
pub async fn record_last_deployment(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    input: &WorkflowState,
    last: LastDeployment,
) -> Result<(), CertshipError> {
    let request = &input.request;
    let updated = dynamodb
        .update_item()
        .table_name(table_name)
        .set_key(Some(mapping::request_key(request)))
        .update_expression("SET #ld = :ld")
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#ld", attr::LAST_DEPLOYMENT)
        .expression_attribute_names("#pk", attr::PARTITION_KEY)
        .expression_attribute_values(":ld", last.to_attribute())
        .send()
        .await;
    match updated {
        Ok(_) => Ok(()),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                tracing::warn!(
                    certificate_arn = %request.certificate_arn,
                    cert_name = %request.cert_name,
                    target = %format!("{}={}", request.target_tag_key, request.target_tag_value),
                    status = last.status.as_str(),
                    "the mapping was deleted during the deployment; LastDeployment not recorded"
                );
                Ok(())
            }
            _ => Err(CertshipError::from_sdk("UpdateItem", err)),
        },
    }
}
