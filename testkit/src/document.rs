//! The install document as the SSM agent sees it: its parameters and its script, read from
//! `ssm-documents/install-certificate-linux.yaml`, so tests run the unmodified script.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    #[serde(rename = "type")]
    pub kind: String,
    pub allowed_pattern: String,
    pub interpolation_type: Option<String>,
    pub default: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Inputs {
    #[serde(rename = "runCommand")]
    run_command: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Step {
    action: String,
    inputs: Inputs,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: String,
    parameters: BTreeMap<String, Parameter>,
    main_steps: Vec<Step>,
}

/// The parsed document.
#[derive(Debug)]
pub struct InstallDocument {
    pub schema_version: String,
    pub parameters: BTreeMap<String, Parameter>,
    pub action: String,
    /// The `runCommand` lines joined as the agent writes them to its script file.
    pub script: String,
}

pub fn path() -> PathBuf {
    crate::moto::project_root().join("ssm-documents/install-certificate-linux.yaml")
}

/// Reads and parses the install document.
pub fn load() -> Result<InstallDocument> {
    let text = std::fs::read_to_string(path()).context("reading the install document")?;
    let raw: Raw = serde_norway::from_str(&text).context("parsing the install document")?;
    let step = raw
        .main_steps
        .into_iter()
        .next()
        .context("the document has no step")?;
    Ok(InstallDocument {
        schema_version: raw.schema_version,
        parameters: raw.parameters,
        action: step.action,
        script: step.inputs.run_command.join("\n"),
    })
}
