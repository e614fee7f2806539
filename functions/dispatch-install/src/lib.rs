//! dispatch-install: records the mapping of certificate to tag target (claiming its CertName on
//! the target) and sets its desired state, the mapping's State Manager association, to the
//! exported version. Returns `$.Dispatch`. Only references travel: the hosts fetch the exact
//! secret version themselves.
//!
//! `mapping` reads and writes the mapping table, `association` the association; [`handler`]
//! composes them.

use certship_shared::rules::{RequestRules, validate_request};
use certship_shared::{
    CertshipError, DispatchResult, WAKE_MARGIN_SECONDS, WorkflowState, naming, time,
};
use std::time::{Duration, SystemTime};

pub mod association;
pub mod mapping;
pub mod settings;
pub use settings::{AssociationSettings, Settings};

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub table_name: String,
    pub rules: RequestRules,
    pub association: AssociationSettings,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        let Settings {
            table_name,
            rules,
            association,
        } = settings;
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            table_name,
            rules,
            association,
        }
    }
}

/// Records the mapping and points its association at the exported version, which State Manager
/// then runs at once on every target.
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

    let existing = mapping::existing_mappings(&state.dynamodb, &state.table_name, request).await?;
    mapping::claim_and_record(&state.dynamodb, &state.table_name, request, export).await?;

    let mapping_id = naming::mapping_id(
        &request.cert_name,
        &request.certificate_arn,
        &request.target_tag_key,
        &request.target_tag_value,
    );
    let desired = association::Desired::new(&state.association, request, export, &mapping_id);
    let now = SystemTime::now();
    let applied =
        association::set_desired_state(&state.ssm, &desired, existing.association_id.as_deref())
            .await?;
    let association_id = applied
        .description
        .association_id()
        .ok_or_else(|| CertshipError::Service("State Manager returned no AssociationId".into()))?
        .to_string();
    let association_version = applied
        .description
        .association_version()
        .map(str::to_string);

    let recorded = mapping::record_association(
        &state.dynamodb,
        &state.table_name,
        request,
        existing.association_id.as_deref(),
        &association_id,
        &export.secret_version_id,
    )
    .await?;
    if !recorded {
        if applied.created {
            association::delete(&state.ssm, &association_id).await?;
        }
        // Retryable: the next attempt reads the association recorded meanwhile and updates it.
        return Err(CertshipError::Service(format!(
            "another deployment of {} to {}={} recorded its association (or removed the mapping) \
             meanwhile; retry",
            request.cert_name, request.target_tag_key, request.target_tag_value
        )));
    }

    tracing::info!(
        certificate_arn = %request.certificate_arn,
        cert_name = %request.cert_name,
        target = %format!("{}={}", request.target_tag_key, request.target_tag_value),
        mapping_id = %mapping_id,
        association_id = %association_id,
        association_version = association_version.as_deref().unwrap_or(""),
        created = applied.created,
        serial = %export.serial,
        secret_version_id = %export.secret_version_id,
        "set the mapping's desired state"
    );
    Ok(DispatchResult {
        association_id: Some(association_id),
        association_version,
        command_id: None,
        requested_at: time::rfc3339(now),
        deadline_at: time::rfc3339(now + Duration::from_secs(state.association.deadline_seconds)),
        document_name: state.association.document_name.clone(),
        wait_seconds: state.association.deadline_seconds + WAKE_MARGIN_SECONDS,
    })
}

#[cfg(test)]
mod tests;
