//! A queue of the emulator drained into one of the functions: where AWS delivers an event to a
//! Lambda (an EventBridge target, an S3 notification) and moto cannot invoke Lambda, the event
//! goes to an SQS queue and the local cloud hands each message to the function's handler.

use super::functions::{Function, Functions};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Delivers each message of `queue_url` to `function`, its body turned into the function's
/// event by `event` (`None`: not an event, dropped with a warning), until `shutdown`. A message
/// is deleted once delivered, whatever the function answered: AWS's asynchronous invocation
/// retries and dead-letters on its own, which the local cloud does not emulate.
pub async fn drain(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    functions: Arc<Functions>,
    function: Function,
    event: fn(&str) -> Option<Value>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            r = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).wait_time_seconds(1).send() => r,
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
            match message.body().and_then(event) {
                Some(event) => match functions.invoke(function, event).await {
                    Ok(result) => {
                        tracing::info!(function = function.name(), %result, "event delivered")
                    }
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
            if let Some(handle) = message.receipt_handle() {
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
    }
}
