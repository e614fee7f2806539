//! `--import-to-acm`: the issued certificate goes into ACM too, so load balancers and CloudFront
//! can use it; each renewal re-imports it under the same ARN, which keeps their associations
//! ("Reimport a certificate", ACM User Guide).
//!
//! A step of its own, after the certificate is stored: its retries cost no new order. It reads
//! the version Finalize wrote, decrypts the key in memory (ACM takes only an unencrypted key)
//! and hands it to ImportCertificate over TLS; the key is never logged, returned or kept.

use crate::AppState;
use crate::pkcs8;
use aws_sdk_acm::operation::import_certificate::ImportCertificateError;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::Tag;
use certship_shared::acme::{ACM_TAG_KEY, ImportResult, OrderResult};
use certship_shared::error::is_throttling_code;
use certship_shared::{CertshipError, ExportResult};
use serde::Deserialize;

/// The bundle's fields an import needs.
#[derive(Deserialize)]
struct Bundle {
    certificate: String,
    chain: String,
    encrypted_private_key: String,
    passphrase: String,
}

/// Imports the certificate Finalize stored (`issued`) into ACM: a new ACM certificate tagged
/// with its id, or a re-import over the ARN an earlier issuance imported (tags cannot be given
/// on a re-import).
pub async fn import(
    state: &AppState,
    order: &OrderResult,
    issued: &ExportResult,
) -> Result<ImportResult, CertshipError> {
    let secret = state
        .secrets
        .get_secret_value()
        .secret_id(&issued.secret_arn)
        .version_id(&issued.secret_version_id)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("GetSecretValue", e))?;
    let bundle: Bundle =
        serde_json::from_str(secret.secret_string().unwrap_or_default()).map_err(|_| {
            // Not the serde error: its message could quote the secret's text.
            CertshipError::Service(format!(
                "version {} of {} is not a certificate bundle",
                issued.secret_version_id, issued.secret_arn
            ))
        })?;
    let key =
        pkcs8::decrypt_pem(&bundle.encrypted_private_key, &bundle.passphrase).map_err(|e| {
            CertshipError::Service(format!(
                "the key of version {} of {} cannot be read: {e}",
                issued.secret_version_id, issued.secret_arn
            ))
        })?;
    // The plaintext key lives only in this invocation's memory: the SDK copies it into the
    // request body, so wiping this copy would protect nothing.
    let key_pem = pkcs8::private_key_pem(&key);
    drop(key);
    let request = state
        .acm
        .import_certificate()
        .certificate(Blob::new(bundle.certificate.as_bytes()))
        .certificate_chain(Blob::new(bundle.chain.as_bytes()))
        .private_key(Blob::new(key_pem.as_bytes()));
    let request = match &order.acm_certificate_arn {
        Some(arn) => request.certificate_arn(arn),
        None => request.tags(
            Tag::builder()
                .key(ACM_TAG_KEY)
                .value(&order.certificate_id)
                .build()
                .map_err(|e| CertshipError::Service(format!("the ACM tag: {e}")))?,
        ),
    };
    let out = request
        .send()
        .await
        .map_err(|err| import_error(order, err))?;
    let arn = out.certificate_arn.ok_or_else(|| {
        CertshipError::Service("ImportCertificate returned no certificate ARN".into())
    })?;
    tracing::info!(
        certificate = %order.certificate_id,
        acm_certificate_arn = %arn,
        reimport = order.acm_certificate_arn.is_some(),
        serial = %issued.serial,
        "imported into ACM"
    );
    Ok(ImportResult {
        acm_certificate_arn: Some(arn),
    })
}

/// ACM's refusals are `AcmImportFailed` with its code and message, which the state machine does
/// not retry; throttling is `Throttled`, which it does; anything else is a service error.
fn import_error<R: std::fmt::Debug>(
    order: &OrderResult,
    err: aws_sdk_acm::error::SdkError<ImportCertificateError, R>,
) -> CertshipError {
    use aws_sdk_acm::error::ProvideErrorMetadata;
    let Some(service) = err.as_service_error() else {
        return CertshipError::from_sdk("ImportCertificate", err);
    };
    let code = service.code().unwrap_or("Unknown");
    let message = service.message().unwrap_or("no message");
    if is_throttling_code(code) {
        return CertshipError::Throttled(format!(
            "ImportCertificate was throttled ({code}): {message}"
        ));
    }
    let what = match &order.acm_certificate_arn {
        Some(arn) => format!("re-importing acme:{} over {arn}", order.certificate_id),
        None => format!("importing acme:{}", order.certificate_id),
    };
    match service {
        ImportCertificateError::ResourceNotFoundException(_) => {
            CertshipError::AcmImportFailed(format!(
                "{what}: ACM has no such certificate any more ({message}); delete the registry's \
                 AcmCertificateArn to import it as a new one"
            ))
        }
        ImportCertificateError::ValidationException(_)
        | ImportCertificateError::LimitExceededException(_)
        | ImportCertificateError::InvalidArnException(_)
        | ImportCertificateError::InvalidParameterException(_)
        | ImportCertificateError::TagPolicyException(_)
        | ImportCertificateError::TooManyTagsException(_)
        | ImportCertificateError::InvalidTagException(_) => {
            CertshipError::AcmImportFailed(format!("{what}: ACM refused it ({code}): {message}"))
        }
        _ => CertshipError::Service(format!(
            "{what}: ImportCertificate failed ({code}): {message}"
        )),
    }
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod import_tests;
