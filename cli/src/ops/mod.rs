//! The operator commands: `deploy`, `follow`, `status`, `hosts`, `history`, `unmap` and `acme`. They talk to AWS
//! through the normal credential chain, and to the local cloud the same way: it is just another
//! endpoint (`eval "$(certship local env)"` or `--endpoint-url`).

pub mod acme_registry;
pub mod api;
pub mod deploy;
pub mod evidence;
pub mod execution;
pub mod history;
pub mod hosts;
pub mod invocations;
pub mod nodes;
pub mod report;
pub mod stack;
pub mod status;
pub mod table;
pub mod unmap;
pub mod watch;

#[cfg(test)]
mod tests;

use anyhow::{Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use clap::{Args, ValueEnum};

/// Environment variables the commands read, and `certship local env` sets.
pub mod env {
    pub const STACK: &str = "CERTSHIP_STACK";
    pub const STATE_MACHINE_ARN: &str = "CERTSHIP_STATE_MACHINE_ARN";
    pub const ACME_STATE_MACHINE_ARN: &str = "CERTSHIP_ACME_STATE_MACHINE_ARN";
    pub const ACME_TABLE_NAME: &str = "CERTSHIP_ACME_TABLE_NAME";
    pub const TABLE_NAME: &str = "CERTSHIP_TABLE_NAME";
    pub const EVIDENCE_TABLE_NAME: &str = "CERTSHIP_EVIDENCE_TABLE_NAME";
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
    /// The ACME issuance state machine (default: the stack's AcmeIssuanceStateMachineArn output)
    #[arg(long, value_name = "ARN", env = env::ACME_STATE_MACHINE_ARN)]
    pub acme_state_machine_arn: Option<String>,
    /// The ACME certificates' registry (default: the stack's AcmeTableName output)
    #[arg(long, value_name = "NAME", env = env::ACME_TABLE_NAME)]
    pub acme_table_name: Option<String>,
    /// The mapping table (default: the stack's TableName output)
    #[arg(long, value_name = "NAME", env = env::TABLE_NAME)]
    pub table_name: Option<String>,
    /// The per-host evidence table (default: the stack's EvidenceTableName output)
    #[arg(long, value_name = "NAME", env = env::EVIDENCE_TABLE_NAME)]
    pub evidence_table_name: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Readable lines and tables
    #[default]
    #[value(alias = "table")]
    Text,
    /// One JSON document on stdout, for scripts
    Json,
}

#[derive(Args, Debug, Clone, Copy, Default)]
pub struct OutputArgs {
    /// text (or table) for people, json for scripts
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

/// The SDK clients of the operator commands, built once from one [`SdkConfig`], so that the ops
/// functions take clients (and tests hand them mocked ones).
#[derive(Debug, Clone)]
pub struct Clients {
    pub config: SdkConfig,
    pub acm: aws_sdk_acm::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl Clients {
    pub fn new(config: SdkConfig) -> Self {
        Self {
            acm: aws_sdk_acm::Client::new(&config),
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            sfn: aws_sdk_sfn::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            config,
        }
    }

    /// The default chain with the user's overrides, and every client built from it.
    pub async fn load(aws: &AwsArgs) -> Result<Self> {
        Ok(Self::new(sdk_config(aws).await?))
    }
}

/// The region of `config` (there always is one: [`sdk_config`] refuses to go on without).
pub fn region(config: &SdkConfig) -> &str {
    config.region().map_or("us-east-1", |r| r.as_ref())
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
