//! Lambda entry point: wiring only. The logic is [`renewal_trigger::handler`].

use certship_shared::config::{env, required};
use certship_shared::lambda::decode;
use lambda_runtime::{LambdaEvent, service_fn};
use renewal_trigger::{AppState, handler};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table_name = required(env::TABLE_NAME).expect("TABLE_NAME must be set");
    let state_machine_arn =
        required(env::STATE_MACHINE_ARN).expect("STATE_MACHINE_ARN must be set");
    let config = aws_config::load_from_env().await;
    let state = Arc::new(AppState {
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        sfn: aws_sdk_sfn::Client::new(&config),
        table_name,
        state_machine_arn,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let state = Arc::clone(&state);
        async move { handler(&state, decode(event.payload)?).await }
    }))
    .await
}
