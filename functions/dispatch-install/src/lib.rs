//! dispatch-install: records the mapping of certificate to tag target and sends the install
//! document to every node with that tag. Returns `$.Dispatch`. Only references travel: the
//! hosts fetch the exact secret version themselves.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ssm::operation::send_command::SendCommandError;
use aws_sdk_ssm::types::Target;
use certship_shared::mapping::{self, attr};
use certship_shared::naming::tag_key_value;
use certship_shared::rules::{RequestRules, validate_request};
use certship_shared::{CertshipError, DispatchResult, ExportResult, WorkflowState, time};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

pub mod settings;
pub use settings::{CommandSettings, Settings};

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub table_name: String,
    pub rules: RequestRules,
    pub command: CommandSettings,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        let Settings {
            table_name,
            rules,
            command,
        } = settings;
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            table_name,
            rules,
            command,
        }
    }
}

/// Upserts the mapping and sends the install command to the tag target.
pub async fn handler(
    state: &AppState,
    input: WorkflowState,
) -> Result<DispatchResult, CertshipError> {
    let valid = validate_request(&input.request, &state.rules)?;
    let request = &valid.request;
    let export = input.export.as_ref().ok_or_else(|| {
        CertshipError::InvalidRequest(
            "$.Export is missing: dispatch-install runs after export-certificate".into(),
        )
    })?;

    refuse_name_conflict(
        state,
        &request.target_tag_key,
        &request.target_tag_value,
        &request.cert_name,
        &request.certificate_arn,
    )
    .await?;
    let now = SystemTime::now();
    upsert_mapping(state, request, export).await?;

    let parameters = command_parameters(
        &state.command,
        export,
        &request.cert_name,
        request.reload_service.as_deref(),
    );
    let target = format!("{}={}", request.target_tag_key, request.target_tag_value);
    let comment: String = format!("certship {} to {target}", request.cert_name)
        .chars()
        .take(100)
        .collect();
    let sent = state
        .ssm
        .send_command()
        .document_name(&state.command.document_name)
        .targets(
            Target::builder()
                .key(format!("tag:{}", request.target_tag_key))
                .values(&request.target_tag_value)
                .build(),
        )
        .set_parameters(Some(parameters))
        .timeout_seconds(state.command.timeout_seconds)
        .max_concurrency(&state.command.max_concurrency)
        .max_errors(&state.command.max_errors)
        .comment(comment)
        .send()
        .await
        .map_err(|err| send_error(&state.command.document_name, err))?;
    let command_id = sent
        .command()
        .and_then(|c| c.command_id())
        .ok_or_else(|| CertshipError::Service("SendCommand returned no CommandId".into()))?
        .to_string();

    tracing::info!(
        certificate_arn = %request.certificate_arn,
        cert_name = %request.cert_name,
        target = %target,
        command_id = %command_id,
        serial = %export.serial,
        "sent the install command"
    );
    Ok(DispatchResult {
        command_id,
        requested_at: time::rfc3339(now),
        deadline_at: time::rfc3339(now + Duration::from_secs(state.command.deadline_seconds)),
        document_name: state.command.document_name.clone(),
    })
}

/// A CertName is unique per target: another certificate under the same name would overwrite
/// its files on every host.
async fn refuse_name_conflict(
    state: &AppState,
    tag_key: &str,
    tag_value: &str,
    cert_name: &str,
    certificate_arn: &str,
) -> Result<(), CertshipError> {
    let mut start_key = None;
    loop {
        let page = state
            .dynamodb
            .query()
            .table_name(&state.table_name)
            .key_condition_expression("#pk = :pk")
            .filter_expression("#name = :name")
            .expression_attribute_names("#pk", attr::PARTITION_KEY)
            .expression_attribute_names("#name", attr::CERT_NAME)
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(tag_key_value(tag_key, tag_value)),
            )
            .expression_attribute_values(":name", AttributeValue::S(cert_name.to_string()))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("Query", e))?;
        for item in page.items() {
            let name = item.get(attr::CERT_NAME).and_then(|v| v.as_s().ok());
            let other = item.get(attr::CERTIFICATE_ARN).and_then(|v| v.as_s().ok());
            if let (Some(name), Some(other)) = (name, other)
                && name == cert_name
                && other != certificate_arn
            {
                return Err(CertshipError::CertNameConflict(format!(
                    "CertName {cert_name} is already used on {tag_key}={tag_value} by {other}; \
                     choose another name or unmap that certificate first"
                )));
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => return Ok(()),
        }
    }
}

/// Writes the mapping's current facts, keeping what it does not own (`LastDeployment`).
async fn upsert_mapping(
    state: &AppState,
    request: &certship_shared::DeploymentRequest,
    export: &ExportResult,
) -> Result<(), CertshipError> {
    let fields = [
        (attr::CERTIFICATE_ARN, request.certificate_arn.as_str()),
        (attr::CERT_NAME, request.cert_name.as_str()),
        (attr::TARGET_TAG_KEY, request.target_tag_key.as_str()),
        (attr::TARGET_TAG_VALUE, request.target_tag_value.as_str()),
        (attr::SECRET_ARN, export.secret_arn.as_str()),
        (attr::SERIAL, export.serial.as_str()),
        (attr::CERT_EXPIRY_DATE, export.not_after.as_str()),
        (attr::LAST_EXPORTED_DATE, export.exported_at.as_str()),
    ];
    let mut update = state
        .dynamodb
        .update_item()
        .table_name(&state.table_name)
        .set_key(Some(mapping::request_key(request)))
        .expression_attribute_names("#rs", attr::RELOAD_SERVICE);
    let mut sets = Vec::with_capacity(fields.len() + 1);
    for (i, (name, value)) in fields.iter().enumerate() {
        sets.push(format!("#a{i} = :v{i}"));
        update = update
            .expression_attribute_names(format!("#a{i}"), *name)
            .expression_attribute_values(format!(":v{i}"), AttributeValue::S((*value).to_string()));
    }
    let expression = match &request.reload_service {
        Some(unit) => {
            update = update.expression_attribute_values(":rs", AttributeValue::S(unit.clone()));
            format!("SET {}, #rs = :rs", sets.join(", "))
        }
        None => format!("SET {} REMOVE #rs", sets.join(", ")),
    };
    update
        .update_expression(expression)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("UpdateItem", e))?;
    Ok(())
}

/// The install document's parameters: references only, never secret material.
pub fn command_parameters(
    settings: &CommandSettings,
    export: &ExportResult,
    cert_name: &str,
    reload_service: Option<&str>,
) -> HashMap<String, Vec<String>> {
    let mut parameters = HashMap::from([
        ("SecretId".to_string(), vec![export.secret_arn.clone()]),
        (
            "SecretVersionId".to_string(),
            vec![export.secret_version_id.clone()],
        ),
        ("ExpectedSerial".to_string(), vec![export.serial.clone()]),
        ("CertName".to_string(), vec![cert_name.to_string()]),
    ]);
    let optional = [
        (
            "CertificateDirectory",
            settings.certificate_directory.as_deref(),
        ),
        (
            "PrivateKeyDirectory",
            settings.private_key_directory.as_deref(),
        ),
        ("FileOwner", settings.file_owner.as_deref()),
        ("FileGroup", settings.file_group.as_deref()),
        ("ReloadService", reload_service),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            parameters.insert(name.to_string(), vec![value.to_string()]);
        }
    }
    parameters
}

fn send_error(
    document: &str,
    err: aws_sdk_ssm::error::SdkError<SendCommandError>,
) -> CertshipError {
    match err.as_service_error() {
        Some(SendCommandError::InvalidDocument(_)) => CertshipError::Configuration(format!(
            "the install document {document} does not exist in this account and region; deploy the stack's document"
        )),
        Some(SendCommandError::InvalidParameters(e)) => CertshipError::Configuration(format!(
            "the install document {document} refused the parameters: {}",
            e.message().unwrap_or("invalid parameters")
        )),
        _ => CertshipError::from_sdk("SendCommand", err),
    }
}

#[cfg(test)]
mod tests;
