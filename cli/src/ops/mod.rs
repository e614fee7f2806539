//! The operator commands: `deploy`, `follow`, `status`, `history` and `unmap`. They talk to AWS
//! through the normal credential chain, and to the local cloud the same way: it is just another
//! endpoint (`eval "$(certship local env)"` or `--endpoint-url`).

pub mod api;
pub mod deploy;
pub mod history;
pub mod status;
pub mod table;
pub mod unmap;
pub mod watch;

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use clap::{Args, ValueEnum};
use std::collections::HashMap;

/// Environment variables the commands read, and `certship local env` sets.
pub mod env {
    pub const STACK: &str = "CERTSHIP_STACK";
    pub const STATE_MACHINE_ARN: &str = "CERTSHIP_STATE_MACHINE_ARN";
    pub const TABLE_NAME: &str = "CERTSHIP_TABLE_NAME";
    pub const API_URL: &str = "CERTSHIP_API_URL";
}

/// Where the AWS calls go, as the AWS CLI's options say it.
#[derive(Args, Debug, Clone, Default)]
pub struct AwsArgs {
    /// The AWS Region (default: AWS_REGION, then the profile's region)
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// A named profile from ~/.aws/config (default: AWS_PROFILE, then the default chain)
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Send every AWS call here, e.g. a local cloud (default: AWS_ENDPOINT_URL)
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// Which certship deployment: a stack's outputs, or the resources named directly.
#[derive(Args, Debug, Clone, Default)]
pub struct StackArgs {
    /// The certship CloudFormation stack; its outputs name the API, state machine and table
    #[arg(long, value_name = "NAME", env = env::STACK)]
    pub stack: Option<String>,
    /// The deployment state machine (default: the stack's StateMachineArn output)
    #[arg(long, value_name = "ARN", env = env::STATE_MACHINE_ARN)]
    pub state_machine_arn: Option<String>,
    /// The mapping table (default: the stack's TableName output)
    #[arg(long, value_name = "NAME", env = env::TABLE_NAME)]
    pub table_name: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Readable lines and tables
    #[default]
    Text,
    /// One JSON document on stdout, for scripts
    Json,
}

#[derive(Args, Debug, Clone, Copy, Default)]
pub struct OutputArgs {
    /// text for people, json for scripts
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// The SDK configuration the commands use: the default chain with the user's overrides.
pub async fn sdk_config(aws: &AwsArgs) -> Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        bail!("no AWS Region: pass --region, set AWS_REGION, or set one in your profile");
    }
    Ok(config)
}

/// The region of `config` (there always is one: [`sdk_config`] refuses to go on without).
pub fn region(config: &SdkConfig) -> &str {
    config.region().map_or("us-east-1", |r| r.as_ref())
}

/// The resources of one certship deployment, from the flags, the environment or the stack.
pub struct Deployment<'a> {
    config: &'a SdkConfig,
    args: &'a StackArgs,
    outputs: tokio::sync::OnceCell<HashMap<String, String>>,
}

impl<'a> Deployment<'a> {
    pub fn new(config: &'a SdkConfig, args: &'a StackArgs) -> Self {
        Self {
            config,
            args,
            outputs: tokio::sync::OnceCell::new(),
        }
    }

    pub fn has_stack(&self) -> bool {
        self.args.stack.is_some()
    }

    pub fn names_state_machine(&self) -> bool {
        self.args.state_machine_arn.is_some()
    }

    pub async fn state_machine_arn(&self) -> Result<String> {
        self.resolve(
            self.args.state_machine_arn.as_ref(),
            "StateMachineArn",
            "--state-machine-arn",
        )
        .await
    }

    pub async fn table_name(&self) -> Result<String> {
        self.resolve(self.args.table_name.as_ref(), "TableName", "--table-name")
            .await
    }

    pub async fn api_url(&self) -> Result<String> {
        self.resolve(None, "ApiUrl", "--api-url").await
    }

    async fn resolve(&self, given: Option<&String>, output: &str, flag: &str) -> Result<String> {
        if let Some(value) = given {
            return Ok(value.clone());
        }
        let Some(stack) = &self.args.stack else {
            bail!(
                "which certship? Pass {flag}, or --stack NAME (or set {}) to read it from the stack's outputs; \
                 for the local cloud, run: eval \"$(certship local env)\"",
                env::STACK
            );
        };
        let outputs = self
            .outputs
            .get_or_try_init(|| stack_outputs(self.config, stack))
            .await?;
        outputs.get(output).cloned().with_context(|| {
            format!(
                "stack {stack} has no output {output}; is it a certship stack? Pass {flag} instead"
            )
        })
    }
}

async fn stack_outputs(config: &SdkConfig, stack: &str) -> Result<HashMap<String, String>> {
    let described = aws_sdk_cloudformation::Client::new(config)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(explain)
        .with_context(|| format!("reading the outputs of stack {stack}"))?;
    let stack = described
        .stacks()
        .first()
        .with_context(|| format!("no stack named {stack}"))?;
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// An AWS error as one line: the service's error code and message, or for a call that never got
/// an answer (no credentials, no network) the whole chain of causes.
pub fn explain<E, R>(error: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(code) = error.as_service_error().and_then(|e| e.code()) {
        let message = error
            .as_service_error()
            .and_then(|e| e.message())
            .unwrap_or("");
        return anyhow::anyhow!("{code}: {message}");
    }
    anyhow::anyhow!("{}", DisplayErrorContext(&error))
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Parses `KEY=VALUE` for `--target`.
pub fn parse_target(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE (for example env=prod)")),
    }
}
