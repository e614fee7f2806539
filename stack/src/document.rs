//! SSM command documents (`ssm-documents/*.yaml`) parsed once, typed: their parameters (type,
//! `allowedPattern`, default) and steps (`runCommand` lines, timeout). The local cloud's Run
//! Command, its start-up checks, the tests and the Makefile's shellcheck all read them here.

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::Path;

/// Where the install document lives, relative to the project root.
pub const INSTALL_DOCUMENT_PATH: &str = "ssm-documents/install-certificate-linux.yaml";
/// The action of a step that runs a shell script.
pub const RUN_SHELL_SCRIPT: &str = "aws:runShellScript";

/// A command document (schemaVersion 2.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandDocument {
    #[serde(default)]
    pub schema_version: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, Parameter>,
    pub main_steps: Vec<Step>,
}

/// A document parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub allowed_pattern: Option<String>,
    pub interpolation_type: Option<String>,
    /// The default as SSM passes it on: a string, a number or a boolean written out.
    #[serde(default, deserialize_with = "scalar")]
    pub default: Option<String>,
    pub description: Option<String>,
}

/// One of `mainSteps`.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    pub action: String,
    pub name: String,
    pub inputs: StepInputs,
}

/// A step's inputs (those of `aws:runShellScript`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInputs {
    #[serde(default)]
    pub run_command: Vec<String>,
    /// `timeoutSeconds`, which SSM takes as a number or a string.
    #[serde(default, deserialize_with = "scalar")]
    pub timeout_seconds: Option<String>,
}

impl Step {
    /// The `runCommand` lines joined as the agent writes them to its script file.
    pub fn script(&self) -> String {
        self.inputs.run_command.join("\n")
    }

    /// The execution timeout in seconds, when the step gives a valid one.
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.inputs.timeout_seconds.as_deref()?.parse().ok()
    }
}

impl CommandDocument {
    /// Parses a document's YAML.
    pub fn parse(yaml: &str) -> Result<Self, serde_norway::Error> {
        serde_norway::from_str(yaml)
    }

    /// Reads and parses the document at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Reads the install document of the project at `project`.
    pub fn install(project: &Path) -> Result<Self> {
        Self::load(&project.join(INSTALL_DOCUMENT_PATH))
    }

    /// The document's one step when it is the one `aws:runShellScript` step the local cloud runs.
    pub fn shell_step(&self) -> Option<&Step> {
        match self.main_steps.as_slice() {
            [step] if step.action == RUN_SHELL_SCRIPT => Some(step),
            _ => None,
        }
    }
}

fn scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_norway::Value>::deserialize(deserializer)? {
            Some(serde_norway::Value::String(s)) => Some(s),
            Some(serde_norway::Value::Number(n)) => Some(n.to_string()),
            Some(serde_norway::Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_as_ssm_passes_them() {
        let document = CommandDocument::parse(
            "schemaVersion: '2.2'\nparameters:\n  A: {type: String, default: 3}\n  B: {type: String, default: true}\n  C: {type: String}\nmainSteps:\n- action: aws:runShellScript\n  name: run\n  inputs: {runCommand: [a, b], timeoutSeconds: '60'}\n",
        )
        .unwrap();
        assert_eq!(document.parameters["A"].default.as_deref(), Some("3"));
        assert_eq!(document.parameters["B"].default.as_deref(), Some("true"));
        assert_eq!(document.parameters["C"].default, None);
        let step = document.shell_step().unwrap();
        assert_eq!(
            (step.script().as_str(), step.timeout_seconds()),
            ("a\nb", Some(60))
        );
    }
}
