//! Seeds a moto server with what the workflow expects to find: exportable certificates, the
//! mapping table and its index, tagged instances.

use anyhow::{Context, Result, bail};

/// Requests a certificate with `Options.Export = ENABLED` (or disabled) and waits until ACM
/// (moto, with `MOTO_ACM_VALIDATION_WAIT=0`) reports it `ISSUED`.
pub async fn certificate(
    acm: &aws_sdk_acm::Client,
    domain: &str,
    exportable: bool,
) -> Result<String> {
    use aws_sdk_acm::types::{CertificateExport, CertificateOptions, CertificateStatus};
    let export = if exportable {
        CertificateExport::Enabled
    } else {
        CertificateExport::Disabled
    };
    let arn = acm
        .request_certificate()
        .domain_name(domain)
        .subject_alternative_names(domain)
        .options(CertificateOptions::builder().export(export).build())
        .send()
        .await?
        .certificate_arn
        .context("RequestCertificate returned no ARN")?;
    for _ in 0..50 {
        let described = acm
            .describe_certificate()
            .certificate_arn(&arn)
            .send()
            .await?;
        if described.certificate().and_then(|c| c.status()) == Some(&CertificateStatus::Issued) {
            return Ok(arn);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("{arn} never became ISSUED")
}

/// The mapping table with its `ByCertificateArn` index, read from the SAM template.
pub async fn mapping_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    certship_stack::Template::load(&crate::moto::project_root())?
        .create_mapping_table(dynamodb, name)?
        .send()
        .await?;
    Ok(())
}

/// The per-host evidence table, read from the SAM template.
pub async fn evidence_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    certship_stack::Template::load(&crate::moto::project_root())?
        .create_table(dynamodb, certship_stack::EVIDENCE_TABLE, name)?
        .send()
        .await?;
    Ok(())
}

/// The ACME certificate registry, read from the SAM template.
pub async fn acme_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    certship_stack::Template::load(&crate::moto::project_root())?
        .create_table(dynamodb, certship_stack::ACME_TABLE, name)?
        .send()
        .await?;
    Ok(())
}

/// Launches one instance tagged `key=value`, returning its id.
pub async fn instance(ec2: &aws_sdk_ec2::Client, key: &str, value: &str) -> Result<String> {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let out = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key(key).value(value).build())
                .build(),
        )
        .send()
        .await?;
    out.instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_string)
        .context("RunInstances returned no instance")
}

/// The JSON bundle of the secret version an export wrote (for tests that need to look inside).
pub async fn secret_bundle(
    secrets: &aws_sdk_secretsmanager::Client,
    export: &certship_shared::ExportResult,
) -> Result<serde_json::Value> {
    let value = secrets
        .get_secret_value()
        .secret_id(&export.secret_arn)
        .version_id(&export.secret_version_id)
        .send()
        .await?;
    let text = value
        .secret_string()
        .context("the secret version has no SecretString")?;
    Ok(serde_json::from_str(text)?)
}
