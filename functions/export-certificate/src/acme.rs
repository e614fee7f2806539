//! A deployment of an ACME certificate (`acme:<id>`): its current bundle, which acme-certificate
//! wrote in the format of an ACM export, becomes a new version of the mapping's secret, so the
//! rest of the workflow and every host treat it exactly like an export.

use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use certship_shared::acme::{KeyType, SOURCE_PREFIX, certificate_secret_name};
use certship_shared::{CertshipError, DeploymentRequest, ExportResult, naming};
use serde::Deserialize;

/// The bundle's fields the workflow's state carries (references and metadata only).
#[derive(Deserialize)]
struct Metadata {
    serial: String,
    not_after: String,
    domains: Vec<String>,
    #[serde(default)]
    key_type: String,
}

/// Copies the ACME certificate's current bundle into the mapping's secret.
pub async fn copy(
    state: &crate::AppState,
    request: &DeploymentRequest,
    certificate_id: &str,
) -> Result<ExportResult, CertshipError> {
    let source = format!("{SOURCE_PREFIX}{certificate_id}");
    let name = certificate_secret_name(certificate_id);
    let got = state
        .secrets
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .map_err(|err| match err.as_service_error() {
            Some(GetSecretValueError::ResourceNotFoundException(_)) => {
                CertshipError::CertificateNotFound(format!(
                    "no ACME certificate {source} has been issued (no secret {name}): issue it \
                     with `certship acme issue` first"
                ))
            }
            _ => CertshipError::from_sdk("GetSecretValue", err),
        })?;
    let bundle = got.secret_string.ok_or_else(|| {
        CertshipError::CertificateNotReady(format!("{name} holds no certificate yet"))
    })?;
    // The error names no content: the bundle holds the key and its passphrase.
    let metadata: Metadata = serde_json::from_str(&bundle).map_err(|e| {
        CertshipError::Service(format!(
            "{name} is not a certificate bundle (JSON error at line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let exported_at = certship_shared::time::rfc3339(std::time::SystemTime::now());
    let mapping_secret = naming::secret_name(
        &request.cert_name,
        &request.certificate_arn,
        &request.target_tag_key,
        &request.target_tag_value,
    );
    let tags = vec![
        crate::tag(&request.target_tag_key, &request.target_tag_value),
        crate::tag(crate::CERTIFICATE_ARN_TAG, &request.certificate_arn),
    ];
    let (secret_arn, secret_version_id) =
        crate::write_secret(&state.secrets, &mapping_secret, bundle, tags, &source).await?;
    tracing::info!(
        certificate = %source,
        serial = %metadata.serial,
        not_after = %metadata.not_after,
        secret_arn = %secret_arn,
        secret_version_id = %secret_version_id,
        "copied the ACME certificate into a new version of the mapping's secret"
    );
    Ok(ExportResult {
        secret_arn,
        secret_version_id,
        serial: metadata.serial,
        not_after: metadata.not_after,
        key_algorithm: KeyType::parse(&metadata.key_type)
            .map(|k| k.acm_name().to_string())
            .unwrap_or_default(),
        domains: metadata.domains,
        exported_at,
    })
}
