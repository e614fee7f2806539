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

    /// The per-host evidence table. A stack from before convergence has no such output, and
    /// the error says so rather than suggesting it is not a certship stack.
    pub async fn evidence_table_name(&self) -> Result<String> {
        self.resolve_later(self.args.evidence_table_name.as_ref(), &EVIDENCE)
            .await
    }

    /// The ACME issuance state machine; a stack from before ACME issuance has none, and the
    /// error says so.
    pub async fn acme_state_machine_arn(&self) -> Result<String> {
        self.resolve_later(self.args.acme_state_machine_arn.as_ref(), &ACME_ISSUANCE)
            .await
    }

    /// The registry of ACME certificates; a stack from before ACME renewal has none.
    pub async fn acme_table_name(&self) -> Result<String> {
        self.resolve_later(self.args.acme_table_name.as_ref(), &ACME_REGISTRY)
            .await
    }

    async fn resolve_later(&self, given: Option<&String>, later: &LaterOutput) -> Result<String> {
        if let Some(value) = given {
            return Ok(value.clone());
        }
        let outputs = self.outputs(later.flag).await?;
        later.read(self.args.stack.as_deref().unwrap_or_default(), outputs)
    }

    async fn resolve(&self, given: Option<&String>, output: &str, flag: &str) -> Result<String> {
        if let Some(value) = given {
            return Ok(value.clone());
        }
        let outputs = self.outputs(flag).await?;
        let stack = self.args.stack.as_deref().unwrap_or_default();
        outputs.get(output).cloned().with_context(|| {
            format!(
                "stack {stack} has no output {output}; is it a certship stack? Pass {flag} instead"
            )
        })
    }

    /// The stack's outputs, read once; without a stack, an error naming `flag`.
    async fn outputs(&self, flag: &str) -> Result<&HashMap<String, String>> {
        let Some(stack) = &self.args.stack else {
            bail!(
                "which certship? Pass {flag}, or --stack NAME (or set {}) to read it from the stack's outputs; \
                 for the local cloud, run: eval \"$(certship local env)\"",
                env::STACK
            );
        };
        self.outputs
            .get_or_try_init(|| stack_outputs(self.cloudformation, stack))
            .await
    }
}

/// An output that certship stacks gained in a later version: a stack without it may be an
/// older certship, and the error tells that apart from a stack that is not certship at all.
struct LaterOutput {
    output: &'static str,
    flag: &'static str,
    /// What the stack predates, as the error names it.
    feature: &'static str,
}

const EVIDENCE: LaterOutput = LaterOutput {
    output: "EvidenceTableName",
    flag: "--evidence-table-name",
    feature: "per-host evidence (convergence)",
};

const ACME_REGISTRY: LaterOutput = LaterOutput {
    output: "AcmeTableName",
    flag: "--acme-table-name",
    feature: "ACME renewal",
};

const ACME_ISSUANCE: LaterOutput = LaterOutput {
    output: "AcmeIssuanceStateMachineArn",
    flag: "--acme-state-machine-arn",
    feature: "ACME issuance",
};

impl LaterOutput {
    /// The output among a stack's outputs, or why it is not there.
    fn read(&self, stack: &str, outputs: &HashMap<String, String>) -> Result<String> {
        let Self {
            output,
            flag,
            feature,
        } = self;
        if let Some(value) = outputs.get(*output) {
            return Ok(value.clone());
        }
        // Every certship stack has had this output since the first version.
        if outputs.contains_key("StateMachineArn") {
            bail!(
                "stack {stack} has no output {output}: it predates {feature}. \
                 Update the stack to this version of certship, or pass {flag}"
            );
        }
        bail!("stack {stack} has no output {output}; is it a certship stack? Pass {flag} instead")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_from_before_convergence_is_told_apart_from_another_stack() {
        let mut outputs = HashMap::from([(
            "StateMachineArn".to_string(),
            "arn:aws:states:eu-west-1:111122223333:stateMachine:certship".to_string(),
        )]);
        let older = EVIDENCE.read("certship", &outputs).unwrap_err().to_string();
        assert!(
            older.contains("stack certship has no output EvidenceTableName")
                && older.contains("predates per-host evidence")
                && older.contains("--evidence-table-name"),
            "{older}"
        );
        let other = EVIDENCE
            .read("web", &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(other.contains("is it a certship stack?"), "{other}");
        outputs.insert("EvidenceTableName".into(), "certship-evidence".into());
        assert_eq!(
            EVIDENCE.read("certship", &outputs).unwrap(),
            "certship-evidence"
        );
    }

    #[test]
    fn a_stack_from_before_acme_issuance_says_so() {
        let mut outputs = HashMap::from([(
            "StateMachineArn".to_string(),
            "arn:aws:states:eu-west-1:111122223333:stateMachine:certship".to_string(),
        )]);
        let older = ACME_ISSUANCE
            .read("certship", &outputs)
            .unwrap_err()
            .to_string();
        assert!(
            older.contains("no output AcmeIssuanceStateMachineArn: it predates ACME issuance")
                && older.contains("--acme-state-machine-arn"),
            "{older}"
        );
        let arn = "arn:aws:states:eu-west-1:111122223333:stateMachine:certship-acme-issuance";
        outputs.insert("AcmeIssuanceStateMachineArn".into(), arn.into());
        assert_eq!(ACME_ISSUANCE.read("certship", &outputs).unwrap(), arn);
    }

    /// The outputs read here are the template's: a renamed output fails this test, not an
    /// operator's command.
    #[test]
    fn the_outputs_read_are_the_templates() {
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../cloudformation/template.yaml"),
        )
        .unwrap();
        let outputs = template
            .split_once("\nOutputs:\n")
            .expect("the template's Outputs")
            .1;
        for later in [&EVIDENCE, &ACME_ISSUANCE] {
            assert!(
                outputs.contains(&format!("\n  {}:\n", later.output)),
                "{}",
                later.output
            );
        }
    }
}
