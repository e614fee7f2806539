//! Lambda entry point: wiring only. The logic is [`acme_certificate::handler`].

use acme_certificate::{AppState, Settings, handler};
use certship_shared::lambda::decode;
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = aws_config::load_from_env().await;
    let state = Arc::new(AppState::new(&config, Settings::from_env()?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let state = Arc::clone(&state);
        async move { handler(&state, decode(event.payload)?).await }
    }))
    .await
}
