//! The document's parameters checked as SSM checks them, and the script they run.

use super::*;
use certship_stack::document::CommandDocument;

#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) script: String,
    pub(super) plugin_name: String,
    pub(super) execution_timeout: Duration,
    pub(super) parameters: BTreeMap<String, String>,
}

impl RunCommand {
    /// Reads the document from the emulator and checks the parameters as SSM does.
    pub(super) async fn plan(&self, input: &SendCommandInput) -> Result<Plan, SsmError> {
        let content = self
            .moto_ssm
            .get_document()
            .name(&input.document_name)
            .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
            .send()
            .await
            .map_err(|_| {
                SsmError::new(
                    "InvalidDocument",
                    format!("Document {} does not exist", input.document_name),
                )
            })?
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
        for name in input.parameters.keys() {
            if !document.parameters.contains_key(name) {
                return Err(SsmError::new(
                    "InvalidParameters",
                    format!("Parameter {name} is not defined in the document"),
                ));
            }
        }
        let mut parameters = BTreeMap::new();
        for (name, spec) in &document.parameters {
            let value = match input.parameters.get(name) {
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
                let regex = regex::Regex::new(pattern).map_err(|e| {
                    SsmError::new("InvalidDocument", format!("pattern of {name}: {e}"))
                })?;
                if !regex.is_match(&value) {
                    return Err(SsmError::new(
                        "InvalidParameters",
                        format!("Parameter {name} value {value:?} fails allowedPattern {pattern}"),
                    ));
                }
            }
            parameters.insert(name.clone(), value);
        }
        let execution_timeout = step.timeout_seconds().unwrap_or(DEFAULT_EXECUTION_TIMEOUT);
        Ok(Plan {
            script: step.script(),
            plugin_name: step.name.clone(),
            execution_timeout: Duration::from_secs(execution_timeout),
            parameters,
        })
    }
}
