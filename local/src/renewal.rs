//! Emulated ACM renewal: the emulator re-issues the certificate under the same ARN, and the
//! "ACM Certificate Available" / `RENEWAL` event goes onto the bus, where the renewal rule (the
//! template's pattern) routes it to a queue that the local cloud drains into renewal-trigger.
//! certship's own "ACME Certificate Issued" takes the same way, by its own rule.
//!
//! Emulated too: the ACME renewal schedule, which moto stores but never fires ([`schedule_input`]).

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

/// The placeholder EventBridge Scheduler replaces with the invocation's scheduled time.
pub const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

/// What the renewal schedule invokes renewal-trigger with at `scheduled_time`: the template's
/// `Input` with its context attribute filled in.
///
/// What AWS does: at each time of the schedule's expression (within its flexible window),
/// EventBridge Scheduler invokes the target with the schedule's `Input`, replacing
/// `<aws.scheduler.scheduled-time>` with the time the schedule was due, like
/// `2022-03-22T18:59:43Z`, and retrying per the `RetryPolicy` ("Adding context attributes in
/// EventBridge Scheduler" and "Configuring a dead-letter queue" in the EventBridge Scheduler User
/// Guide). The local cloud fires it only when asked ([`crate::LocalCloud::fire_renewal_schedule`]),
/// once, with the same input: no timer, no retries, no window.
pub fn schedule_input(
    template_input: &str,
    scheduled_time: std::time::SystemTime,
) -> Result<serde_json::Value> {
    if !template_input.contains(SCHEDULED_TIME) {
        bail!("the schedule's Input {template_input} has no {SCHEDULED_TIME}");
    }
    let input = template_input.replace(
        SCHEDULED_TIME,
        &certship_shared::time::rfc3339(scheduled_time),
    );
    serde_json::from_str(&input)
        .with_context(|| format!("the schedule's Input {input} is not JSON"))
}

/// Fires the renewal schedule of the local cloud at `endpoint` once, now, from another process
/// (`certship local sweep`): renewal-trigger invoked through the gateway's Lambda Invoke with the
/// input of `project`'s template. Returns the sweep's result; a function error is an error.
pub async fn fire_schedule(endpoint: &str, project: &std::path::Path) -> Result<serde_json::Value> {
    let template = certship_stack::Template::load(project)?;
    let input = schedule_input(
        &template.renewal_schedule_input()?,
        std::time::SystemTime::now(),
    )?;
    let url = format!(
        "{endpoint}/2015-03-31/functions/{}/invocations",
        Function::RenewalTrigger.name()
    );
    let answer = certship_moto::http::post_json(&url, &input)
        .await
        .with_context(|| format!("invoking renewal-trigger at {endpoint}"))?;
    if let Some(error) = answer.get("errorType").and_then(|e| e.as_str()) {
        bail!(
            "the sweep failed: {error}: {}",
            answer["errorMessage"].as_str().unwrap_or_default()
        );
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_s_input_gets_the_scheduled_time_and_stays_json() {
        let at = certship_shared::time::parse_rfc3339("2026-11-27T03:00:00Z").unwrap();
        let template = certship_stack::Template::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap(),
        )
        .unwrap();
        let input = schedule_input(&template.renewal_schedule_input().unwrap(), at).unwrap();
        assert_eq!(
            input,
            serde_json::json!({"Sweep": {"ScheduledTime": "2026-11-27T03:00:00Z"}})
        );
        let decoded: renewal_trigger::Input = serde_json::from_value(input).unwrap();
        assert!(matches!(decoded, renewal_trigger::Input::Sweep { .. }));
        assert!(schedule_input("{}", at).is_err());
    }
}
