//! Which certship deployment the commands talk to: its resources named by flags or the
//! environment, or read from the outputs of its CloudFormation stack.

use super::{StackArgs, env, explain};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;

/// The resources of one certship deployment, from the flags, the environment or the stack's
/// outputs (read once, when first needed).
pub struct Resources<'a> {
    cloudformation: &'a aws_sdk_cloudformation::Client,
    args: &'a StackArgs,
    outputs: tokio::sync::OnceCell<HashMap<String, String>>,
}

impl<'a> Resources<'a> {
    pub fn new(cloudformation: &'a aws_sdk_cloudformation::Client, args: &'a StackArgs) -> Self {
        Self {
            cloudformation,
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
            .get_or_try_init(|| stack_outputs(self.cloudformation, stack))
            .await?;
        outputs.get(output).cloned().with_context(|| {
            format!(
                "stack {stack} has no output {output}; is it a certship stack? Pass {flag} instead"
            )
        })
    }
}

async fn stack_outputs(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<HashMap<String, String>> {
    let described = cloudformation
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
