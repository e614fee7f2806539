//! The document's parameters checked as SSM checks them, and the script they run. Run Command
//! checks them at SendCommand, State Manager at CreateAssociation and UpdateAssociation and again
//! when a host runs the association (the document may have changed since).

use super::SsmError;
use super::wire::DEFAULT_EXECUTION_TIMEOUT;
use crate::host_runner::Plan;
use certship_stack::document::CommandDocument;
use std::collections::BTreeMap;
use std::time::Duration;

/// Reads document `name` (at `version`: `$DEFAULT`, `$LATEST` or a number; the default when
/// `None`) from the emulator and checks `parameters` against it as SSM does: each one defined,
/// one value each, required ones given, every value matching its `allowedPattern`.
pub(crate) async fn plan(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    version: Option<&str>,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<Plan, SsmError> {
    let mut request = ssm
        .get_document()
        .name(name)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml);
    // moto reads `$LATEST` and numbers; `$DEFAULT` is what no version means.
    if let Some(version) = version.filter(|v| *v != "$DEFAULT") {
        request = request.document_version(version);
    }
    let content = request
        .send()
        .await
        .map_err(|_| SsmError::new("InvalidDocument", format!("Document {name} does not exist")))?
        .content
        .unwrap_or_default();
    let document = CommandDocument::parse(&content)
        .map_err(|e| SsmError::new("InvalidDocument", format!("unreadable document: {e}")))?;
    let step = document.shell_step().ok_or_else(|| {
        SsmError::new(
            "InvalidDocument",
            "the local cloud runs documents of one aws:runShellScript step",
        )
    })?;
    for name in parameters.keys() {
        if !document.parameters.contains_key(name) {
            return Err(SsmError::new(
                "InvalidParameters",
                format!("Parameter {name} is not defined in the document"),
            ));
        }
    }
    let mut checked = BTreeMap::new();
    for (name, spec) in &document.parameters {
        let value = match parameters.get(name) {
            Some(values) if values.len() == 1 => values[0].clone(),
            Some(_) => {
                return Err(SsmError::new(
                    "InvalidParameters",
                    format!("Parameter {name} takes one value"),
                ));
            }
            None => match &spec.default {
                Some(default) => default.clone(),
                None => {
                    return Err(SsmError::new(
                        "InvalidParameters",
                        format!("Parameter {name} is required"),
                    ));
                }
            },
        };
        if let Some(pattern) = &spec.allowed_pattern {
            let regex = regex::Regex::new(pattern)
                .map_err(|e| SsmError::new("InvalidDocument", format!("pattern of {name}: {e}")))?;
            if !regex.is_match(&value) {
                return Err(SsmError::new(
                    "InvalidParameters",
                    format!("Parameter {name} value {value:?} fails allowedPattern {pattern}"),
                ));
            }
        }
        checked.insert(name.clone(), value);
    }
    let execution_timeout = step.timeout_seconds().unwrap_or(DEFAULT_EXECUTION_TIMEOUT);
    Ok(Plan {
        script: step.script(),
        plugin_name: step.name.clone(),
        execution_timeout: Duration::from_secs(execution_timeout),
        parameters: checked,
    })
}
