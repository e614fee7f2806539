//! A queue of the emulator drained into one of the functions: where AWS delivers an event to a
//! Lambda (an EventBridge target, an S3 notification) and moto cannot invoke Lambda, the event
//! goes to an SQS queue and the local cloud hands each message to the function's handler.

use super::functions::{Function, Functions};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How many deliveries run at once. Lambda runs asynchronous invocations (an S3 notification,
/// an EventBridge target) concurrently, scaling up to the function's reserved or the account's
/// concurrency ("Understanding Lambda function scaling", Lambda Developer Guide); delivering one
/// message at a time would make the emulator, not certship, the bottleneck of a large fleet.
pub const CONCURRENT_DELIVERIES: usize = 32;

/// How long a received message stays hidden: SQS's maximum visibility timeout, 12 hours.
pub const HIDDEN_FOR_SECONDS: i32 = 43_200;

/// Delivers each message of `queue_url` to `function`, its body turned into the function's
/// event by `event` (`None`: not an event, dropped with a warning), up to
/// [`CONCURRENT_DELIVERIES`] at once, until `shutdown`. A message is delivered once, whatever
/// the function answered: AWS's asynchronous invocation retries and dead-letters on its own,
/// which the local cloud does not emulate.
///
/// Delivered messages are not deleted: each is received once, with a visibility timeout longer
/// than a local cloud lives ([`HIDDEN_FOR_SECONDS`]). moto 5.2.5's `DeleteMessage` rebuilds the
/// queue's message list and assigns it back without a lock (`moto/sqs/models.py`,
/// `Queue.delete_message`), so a notification S3 appends meanwhile is lost: at 1,000 hosts two of
/// a thousand notifications were, and their deployment could only time out. A delivered message
/// costs moto about a kilobyte until the cloud stops.
pub async fn drain(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    functions: Arc<Functions>,
    function: Function,
    event: fn(&str) -> Option<Value>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DELIVERIES));
    loop {
        let received = tokio::select! {
            r = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(HIDDEN_FOR_SECONDS)
                .wait_time_seconds(1)
                .send() => r,
            _ = shutdown.changed() => return,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(function = function.name(), error = %e, "reading the queue failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for message in messages {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let functions = Arc::clone(&functions);
            tokio::spawn(async move {
                deliver(&functions, function, event, message.body()).await;
                drop(slot);
            });
        }
    }
}

async fn deliver(
    functions: &Functions,
    function: Function,
    event: fn(&str) -> Option<Value>,
    body: Option<&str>,
) {
    match body.and_then(event) {
        Some(event) => match functions.invoke(function, event).await {
            Ok(result) => tracing::info!(function = function.name(), %result, "event delivered"),
            Err(e) => tracing::warn!(
                function = function.name(),
                error_type = %e.error_type,
                error_message = %e.error_message,
                "the function failed"
            ),
        },
        None => tracing::warn!(
            function = function.name(),
            "the queue held a message that is not an event"
        ),
    }
}
