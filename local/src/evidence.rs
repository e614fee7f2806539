//! Association output → record-host-evidence. In AWS the output bucket's notification invokes
//! the function (SAM's `Type: S3` event; "Amazon S3 Event Notifications" in the S3 User Guide).
//! moto's S3 can notify only SQS, SNS and its own Lambda, so provisioning gives the bucket a
//! notification with the template's events and filter to a queue, and the local cloud drains it
//! into record-host-evidence's handler.

use super::functions::{Function, Functions};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;

/// Delivers each S3 notification the output queue holds to record-host-evidence, until
/// `shutdown`.
pub async fn drain_output_queue(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    functions: Arc<Functions>,
    shutdown: watch::Receiver<bool>,
) {
    super::queue::drain(
        sqs,
        queue_url,
        functions,
        Function::RecordHostEvidence,
        s3_event,
        shutdown,
    )
    .await;
}

/// The S3 event Lambda would receive for a notification moto put on the queue. moto's records
/// lack `userIdentity`, `requestParameters` and `responseElements`, which every S3 event record
/// carries ("Event message structure", S3 User Guide) and which the Lambda event type requires;
/// they are filled in with what S3 would say for the local cloud's own writer. moto's
/// `s3:TestEvent` (sent when a configuration is saved) is not an event of records and is dropped,
/// as S3 sends it only to the queue, not to a Lambda.
fn s3_event(body: &str) -> Option<Value> {
    let mut event: Value = serde_json::from_str(body).ok()?;
    let records = event.get_mut("Records")?.as_array_mut()?;
    for record in records.iter_mut().filter_map(Value::as_object_mut) {
        record
            .entry("userIdentity")
            .or_insert_with(|| json!({ "principalId": "AWS:certship-local" }));
        record
            .entry("requestParameters")
            .or_insert_with(|| json!({ "sourceIPAddress": "127.0.0.1" }));
        record
            .entry("responseElements")
            .or_insert_with(|| json!({}));
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::s3::S3Event;

    /// A notification exactly as moto 5.2.5 puts it on the queue (`moto/s3/notifications.py`).
    const MOTO: &str = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "awsRegion": "us-east-1", "eventTime": "2026-11-27T05:03:02.456Z",
        "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0",
        "configurationId": "RunOutput", "bucket": {"name": "certship-association-output",
        "arn": "arn:aws:s3:::certship-association-output"}, "object": {"key":
        "dev/web-0123456789ab/i-0abc/8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a/2026-11-27T05-03-01.123Z/awsrunShellScript/Install/stdout",
        "size": 120, "eTag": "abc"}}}]}"#;

    #[test]
    fn a_moto_notification_becomes_the_event_lambda_receives() {
        let event: S3Event = serde_json::from_value(s3_event(MOTO).unwrap()).unwrap();
        let record = &event.records[0];
        assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
        assert_eq!(
            record.s3.bucket.name.as_deref(),
            Some("certship-association-output")
        );
        assert!(
            record
                .s3
                .object
                .key
                .as_deref()
                .unwrap()
                .ends_with("/stdout")
        );
        // without the completion the event type refuses moto's record
        assert!(serde_json::from_str::<S3Event>(MOTO).is_err());
        assert_eq!(s3_event(r#"{"Event": "s3:TestEvent"}"#), None);
        assert_eq!(s3_event("not json"), None);
    }
}
