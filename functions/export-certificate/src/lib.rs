//! export-certificate: exports an ACM certificate with a fresh passphrase and stores the result
//! as one new version of the mapping's secret. Returns `$.Export`, which holds references only.

use aws_sdk_acm::operation::describe_certificate::DescribeCertificateError;
use aws_sdk_acm::operation::export_certificate::ExportCertificateError;
use aws_sdk_acm::types::{
    CertificateDetail, CertificateExport, CertificateStatus, CertificateType,
};
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::types::Tag;
use aws_smithy_types::Blob;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use certship_shared::arn::CertificateArn;
use certship_shared::bundle::{SecretBundle, fullchain, written_version};
use certship_shared::rules::{CertificateSource, RequestRules, validate_request};
use certship_shared::{CertshipError, ExportResult, WorkflowState, naming, pem, time};
use std::time::SystemTime;

mod acme;
mod settings;
pub use certship_shared::passphrase::Passphrase;
pub use settings::Settings;

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub acm: aws_sdk_acm::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub rules: RequestRules,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        let Settings { rules } = settings;
        Self {
            acm: aws_sdk_acm::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            rules,
        }
    }
}

/// Tag key carrying the certificate ARN on every secret.
pub const CERTIFICATE_ARN_TAG: &str = "certship:certificate-arn";

/// Exports the request's certificate into its mapping's secret.
pub async fn handler(
    state: &AppState,
    input: WorkflowState,
) -> Result<ExportResult, CertshipError> {
    let valid = validate_request(&input.request, &state.rules)?;
    let request = &valid.request;
    let arn = match &valid.source {
        CertificateSource::Acm(arn) => arn,
        CertificateSource::Acme(id) => return acme::copy(state, request, id).await,
    };
    let acm = acm_for(&state.acm, arn);

    let certificate = describe(&acm, &request.certificate_arn).await?;
    ensure_exportable(&request.certificate_arn, &certificate)?;
    let not_after = certificate
        .not_after()
        .map(time::format_date_time)
        .ok_or_else(|| {
            CertshipError::CertificateNotReady(format!(
                "{} has no NotAfter yet",
                request.certificate_arn
            ))
        })?;
    let key_algorithm = certificate
        .key_algorithm()
        .map(|k| k.as_str().to_string())
        .unwrap_or_default();
    let mut domains: Vec<String> = certificate.subject_alternative_names().to_vec();
    if domains.is_empty() {
        domains.extend(certificate.domain_name().map(str::to_string));
    }

    let passphrase = Passphrase::generate()?;
    let exported = acm
        .export_certificate()
        .certificate_arn(&request.certificate_arn)
        .passphrase(Blob::new(passphrase.expose().as_bytes()))
        .send()
        .await
        .map_err(|err| export_error(&request.certificate_arn, err))?;
    let (Some(leaf), Some(key)) = (exported.certificate(), exported.private_key()) else {
        return Err(CertshipError::Service(
            "ExportCertificate returned no certificate or key".into(),
        ));
    };
    let chain = exported.certificate_chain().unwrap_or_default();
    // The serial hosts verify is the exported certificate's own, not a describe made earlier.
    let serial = pem::pem_serial(leaf).ok_or_else(|| {
        CertshipError::Service("ExportCertificate returned a certificate that is not PEM".into())
    })?;
    let exported_at = time::rfc3339(SystemTime::now());

    let bundle = SecretBundle {
        certificate_arn: &request.certificate_arn,
        certificate: leaf,
        chain,
        fullchain: fullchain(leaf, chain),
        encrypted_private_key: key,
        passphrase: passphrase.expose(),
        serial: &serial,
        not_after: &not_after,
        domains: &domains,
        exported_at: &exported_at,
        acme: None,
    };
    let secret_string = serde_json::to_string(&bundle)
        .map_err(|e| CertshipError::Service(format!("could not encode the secret bundle: {e}")))?;
    let name = naming::secret_name(
        &request.cert_name,
        &request.certificate_arn,
        &request.target_tag_key,
        &request.target_tag_value,
    );
    let tags = vec![
        tag(&request.target_tag_key, &request.target_tag_value),
        tag(CERTIFICATE_ARN_TAG, &request.certificate_arn),
    ];
    let (secret_arn, secret_version_id) = write_secret(
        &state.secrets,
        &name,
        secret_string,
        tags,
        &request.certificate_arn,
    )
    .await?;

    tracing::info!(
        certificate_arn = %request.certificate_arn,
        serial = %serial,
        not_after = %not_after,
        secret_arn = %secret_arn,
        secret_version_id = %secret_version_id,
        "exported certificate into a new secret version"
    );
    Ok(ExportResult {
        secret_arn,
        secret_version_id,
        serial,
        not_after,
        key_algorithm,
        domains,
        exported_at,
    })
}

/// ACM calls go to the certificate's own region.
fn acm_for(home: &aws_sdk_acm::Client, arn: &CertificateArn) -> aws_sdk_acm::Client {
    if home.config().region().map(|r| r.as_ref()) == Some(arn.region.as_str()) {
        return home.clone();
    }
    let config = home
        .config()
        .to_builder()
        .region(aws_sdk_acm::config::Region::new(arn.region.clone()))
        .build();
    aws_sdk_acm::Client::from_conf(config)
}

async fn describe(
    acm: &aws_sdk_acm::Client,
    arn: &str,
) -> Result<CertificateDetail, CertshipError> {
    let output = acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .map_err(|err| match err.as_service_error() {
            Some(DescribeCertificateError::ResourceNotFoundException(_)) => {
                CertshipError::CertificateNotFound(format!("ACM has no certificate {arn}"))
            }
            Some(DescribeCertificateError::InvalidArnException(e)) => {
                CertshipError::InvalidRequest(format!(
                    "ACM refused CertificateArn {arn}: {}",
                    e.message().unwrap_or("invalid ARN")
                ))
            }
            _ => CertshipError::from_sdk("DescribeCertificate", err),
        })?;
    output.certificate.ok_or_else(|| {
        CertshipError::CertificateNotFound(format!("ACM described no certificate {arn}"))
    })
}

fn ensure_exportable(arn: &str, certificate: &CertificateDetail) -> Result<(), CertshipError> {
    let status = certificate.status();
    if status != Some(&CertificateStatus::Issued) {
        let status = status.map(|s| s.as_str()).unwrap_or("unknown");
        return Err(CertshipError::CertificateNotReady(format!(
            "{arn} is {status}, not ISSUED; it can be exported once ACM has issued it"
        )));
    }
    let private = certificate.r#type() == Some(&CertificateType::Private);
    let export_enabled =
        certificate.options().and_then(|o| o.export()) == Some(&CertificateExport::Enabled);
    if private || export_enabled {
        Ok(())
    } else {
        Err(CertshipError::CertificateNotExportable(format!(
            "{arn} is not exportable: request it with Options.Export=ENABLED, or use a certificate \
             from AWS Private CA"
        )))
    }
}

fn export_error(
    arn: &str,
    err: aws_sdk_acm::error::SdkError<ExportCertificateError>,
) -> CertshipError {
    match err.as_service_error() {
        Some(ExportCertificateError::ResourceNotFoundException(_)) => {
            CertshipError::CertificateNotFound(format!("ACM has no certificate {arn}"))
        }
        Some(ExportCertificateError::RequestInProgressException(_)) => {
            CertshipError::CertificateNotReady(format!("{arn} is still being issued or renewed"))
        }
        Some(ExportCertificateError::InvalidArnException(_)) => {
            CertshipError::InvalidRequest(format!("ACM refused CertificateArn {arn}"))
        }
        Some(other) if other.code() == Some("ValidationException") => {
            CertshipError::CertificateNotExportable(format!(
                "ACM would not export {arn}: {}",
                other.message().unwrap_or("not exportable")
            ))
        }
        _ => CertshipError::from_sdk("ExportCertificate", err),
    }
}

pub(crate) fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Writes one new version of the mapping's secret: created with its tags on first use; later a
/// new version is put and the tags re-asserted. A secret scheduled for deletion is restored.
pub(crate) async fn write_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    name: &str,
    secret_string: String,
    tags: Vec<Tag>,
    certificate_arn: &str,
) -> Result<(String, String), CertshipError> {
    let created = secrets
        .create_secret()
        .name(name)
        .description(format!("certship export of {certificate_arn}"))
        .secret_string(secret_string.clone())
        .set_tags(Some(tags.clone()))
        .send()
        .await;
    match created {
        Ok(out) => return written_version("CreateSecret", out.arn, out.version_id),
        Err(err) => match err.as_service_error() {
            Some(CreateSecretError::ResourceExistsException(_)) => {}
            Some(CreateSecretError::InvalidRequestException(e))
                if e.message().is_some_and(|m| m.contains("deletion")) =>
            {
                tracing::info!(secret = %name, "restoring a secret that was scheduled for deletion");
                secrets
                    .restore_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|e| CertshipError::from_sdk("RestoreSecret", e))?;
            }
            _ => return Err(CertshipError::from_sdk("CreateSecret", err)),
        },
    }
    let put = secrets
        .put_secret_value()
        .secret_id(name)
        .secret_string(secret_string)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("PutSecretValue", e))?;
    let (arn, version) = written_version("PutSecretValue", put.arn, put.version_id)?;
    secrets
        .tag_resource()
        .secret_id(&arn)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("TagResource", e))?;
    Ok((arn, version))
}

#[cfg(test)]
mod tests;
