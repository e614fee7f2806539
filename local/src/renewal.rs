//! Emulated ACM renewal: the emulator re-issues the certificate under the same ARN, and the
//! "ACM Certificate Available" / `RENEWAL` event goes onto the bus, where the renewal rule (the
//! template's pattern) routes it to a queue that the local cloud drains into renewal-trigger.

use super::functions::{Function, Functions};
use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use certship_moto::Extension;
use renewal_trigger::CertificateAvailable;
use std::sync::Arc;
use tokio::sync::watch;

/// What the emulator's renewal returned.
pub use certship_moto::Renewed;

/// Renews `certificate_arn` in the local cloud at `endpoint` and publishes ACM's event for it.
pub async fn renew(endpoint: &str, config: &SdkConfig, certificate_arn: &str) -> Result<Renewed> {
    let acm = aws_sdk_acm::Client::new(config);
    let before = acm
        .describe_certificate()
        .certificate_arn(certificate_arn)
        .send()
        .await
        .with_context(|| format!("{certificate_arn} is not a certificate in the local cloud"))?
        .certificate
        .context("DescribeCertificate returned nothing")?;
    let renewed = Extension::new(endpoint)
        .renew_certificate(certificate_arn)
        .await
        .context("renewing in the emulator")?;

    let region = certship_shared::arn::CertificateArn::parse(certificate_arn)?.region;
    // The detail is renewal-trigger's own type, so what is published here is what it reads.
    // ACM's renewal event carries DaysToExpiry too (events/acm-certificate-available-renewal.json;
    // "Amazon EventBridge support for ACM" in the ACM User Guide).
    let days_to_expiry = certship_shared::time::parse_rfc3339(&renewed.not_after)
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .map(|left| i64::try_from(left.as_secs() / 86_400).unwrap_or(i64::MAX));
    let detail = CertificateAvailable {
        action: Some(renewal_trigger::RENEWAL.into()),
        certificate_type: Some(
            before
                .r#type()
                .map_or("AMAZON_ISSUED", |t| t.as_str())
                .into(),
        ),
        common_name: Some(before.domain_name().unwrap_or_default().into()),
        domain_validation_method: Some("DNS".into()),
        certificate_created_date: before
            .created_at()
            .map(certship_shared::time::format_date_time),
        certificate_expiration_date: Some(renewed.not_after.clone()),
        days_to_expiry,
        in_use: Some(true),
        exported: Some(true),
    };
    let detail = serde_json::to_string(&detail).context("the renewal event's detail")?;
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(config)
            .region(aws_config::Region::new(region))
            .build(),
    );
    let out = events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(renewal_trigger::SOURCE)
                .detail_type(renewal_trigger::DETAIL_TYPE)
                .resources(certificate_arn)
                .detail(detail)
                .build(),
        )
        .send()
        .await
        .context("publishing the renewal event")?;
    if out.failed_entry_count() > 0 {
        bail!("the bus refused the renewal event: {:?}", out.entries());
    }
    Ok(renewed)
}

/// Delivers what the renewal rule sent to its queue to renewal-trigger, as EventBridge's Lambda
/// target would, until `shutdown`.
pub async fn drain_renewal_queue(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    functions: Arc<Functions>,
    shutdown: watch::Receiver<bool>,
) {
    super::queue::drain(
        sqs,
        queue_url,
        functions,
        Function::RenewalTrigger,
        |body| serde_json::from_str(body).ok(),
        shutdown,
    )
    .await;
}
