//! certship's Lambdas in the local cloud: their real handlers, called in-process, with the error
//! contract of Lambda's Invoke API, so the state machine's Retry and Catch behave as in AWS.

use aws_config::SdkConfig;
use certship_shared::lambda::decode;
use certship_shared::rules::RequestRules;
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// One of certship's functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    ExportCertificate,
    DispatchInstall,
    CheckInstallStatus,
    RenewalTrigger,
    RecordHostEvidence,
    AcmeCertificate,
}

impl Function {
    pub const ALL: [Function; 6] = [
        Function::ExportCertificate,
        Function::DispatchInstall,
        Function::CheckInstallStatus,
        Function::RenewalTrigger,
        Function::RecordHostEvidence,
        Function::AcmeCertificate,
    ];

    /// The function's name in the local cloud.
    pub fn name(self) -> &'static str {
        match self {
            Function::ExportCertificate => "certship-export-certificate",
            Function::DispatchInstall => "certship-dispatch-install",
            Function::CheckInstallStatus => "certship-check-install-status",
            Function::RenewalTrigger => "certship-renewal-trigger",
            Function::RecordHostEvidence => "certship-record-host-evidence",
            Function::AcmeCertificate => "certship-acme-certificate",
        }
    }

    /// The state machine's `DefinitionSubstitutions` key for this function, if a Task calls it.
    pub fn substitution(self) -> Option<&'static str> {
        match self {
            Function::ExportCertificate => Some("ExportCertificateFunctionArn"),
            Function::DispatchInstall => Some("DispatchInstallFunctionArn"),
            Function::CheckInstallStatus => Some("CheckInstallStatusFunctionArn"),
            Function::AcmeCertificate => Some("AcmeCertificateFunctionArn"),
            Function::RenewalTrigger | Function::RecordHostEvidence => None,
        }
    }

    pub fn arn(self, region: &str) -> String {
        format!(
            "arn:aws:lambda:{region}:{}:function:{}",
            super::ACCOUNT_ID,
            self.name()
        )
    }

    /// Resolves what Invoke's `FunctionName` accepts: a name, a partial or a full ARN, with or
    /// without a `:qualifier`.
    pub fn resolve(function_name: &str) -> Option<Self> {
        let name = match function_name.split_once(":function:") {
            Some((_, rest)) => rest,
            None => function_name.rsplit(':').next().unwrap_or(function_name),
        };
        let name = name.split(':').next().unwrap_or(name);
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A function error as Lambda reports it: `X-Amz-Function-Error` plus this body, which is the
/// runtime's own [`Diagnostic`] (`errorType`, `errorMessage`), converted from certship's errors
/// by `certship_shared`'s `From<CertshipError>`.
pub type FunctionError = Diagnostic;

/// The body of Lambda's answer to an invocation that failed.
pub fn error_body(error: &FunctionError) -> Value {
    serde_json::to_value(error).unwrap_or_else(
        |_| json!({ "errorType": error.error_type, "errorMessage": error.error_message }),
    )
}

/// The settings the functions take from their environment in AWS.
#[derive(Debug, Clone)]
pub struct FunctionSettings {
    pub table_name: String,
    pub event_bus_name: String,
    pub state_machine_arn: String,
    /// The evidence table (`EVIDENCE_TABLE_NAME`).
    pub evidence_table_name: String,
    pub rules: RequestRules,
    pub association: dispatch_install::AssociationSettings,
    /// The acme-certificate function's settings (the local ACME CA's TLS root).
    pub acme: acme_certificate::Settings,
    /// The ACME issuance machine renewal-trigger's sweep starts.
    pub acme_state_machine_arn: String,
}

/// The functions with their state, built once like a warm Lambda container.
pub struct Functions {
    export: export_certificate::AppState,
    dispatch: dispatch_install::AppState,
    check: check_install_status::AppState,
    renewal: renewal_trigger::AppState,
    evidence: record_host_evidence::AppState,
    acme: acme_certificate::AppState,
    faults: Mutex<HashMap<Function, VecDeque<FunctionError>>>,
    invocations: Mutex<HashMap<Function, Invocations>>,
}

/// One function's invocations ([`Functions::invocations`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Invocations {
    pub count: u64,
    /// The handlers' run time, summed.
    pub busy: std::time::Duration,
    /// When the latest invocation ended.
    pub last_end: Option<std::time::SystemTime>,
}

/// `config`, signing as `function`: its name is the access key id, so the gateway's call
/// counts tell the functions apart (the emulator checks no credential).
fn signing_as(config: &SdkConfig, function: Function) -> SdkConfig {
    let credentials = aws_credential_types::Credentials::new(
        function.name(),
        "testing",
        None,
        None,
        "certship-local",
    );
    config
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .build()
}

impl Functions {
    pub fn new(config: &SdkConfig, settings: FunctionSettings) -> Self {
        let config = |function: Function| signing_as(config, function);
        Self {
            export: export_certificate::AppState::new(
                &config(Function::ExportCertificate),
                export_certificate::Settings {
                    rules: settings.rules.clone(),
                },
            ),
            dispatch: dispatch_install::AppState::new(
                &config(Function::DispatchInstall),
                dispatch_install::Settings {
                    table_name: settings.table_name.clone(),
                    rules: settings.rules,
                    association: settings.association,
                },
            ),
            check: check_install_status::AppState::new(
                &config(Function::CheckInstallStatus),
                check_install_status::Settings {
                    table_name: settings.table_name.clone(),
                    evidence_table_name: settings.evidence_table_name.clone(),
                    event_bus_name: settings.event_bus_name,
                },
            ),
            evidence: record_host_evidence::AppState::new(
                &config(Function::RecordHostEvidence),
                record_host_evidence::Settings {
                    evidence_table_name: settings.evidence_table_name,
                },
            ),
            renewal: renewal_trigger::AppState::new(
                &config(Function::RenewalTrigger),
                renewal_trigger::Settings {
                    table_name: settings.table_name,
                    state_machine_arn: settings.state_machine_arn,
                    acme_table_name: settings.acme.table_name.clone(),
                    acme_state_machine_arn: settings.acme_state_machine_arn,
                },
            ),
            acme: acme_certificate::AppState::new(
                &config(Function::AcmeCertificate),
                settings.acme,
            ),
            faults: Mutex::new(HashMap::new()),
            invocations: Mutex::new(HashMap::new()),
        }
    }

    /// Each function's invocations and the time its handler ran, since the start or the last
    /// `reset`: what Lambda bills (requests and duration), as the local cloud measured it.
    pub fn invocations(&self, reset: bool) -> HashMap<Function, Invocations> {
        let mut counts = self.invocations.lock().unwrap_or_else(|p| p.into_inner());
        if reset {
            std::mem::take(&mut *counts)
        } else {
            counts.clone()
        }
    }

    /// Makes the next `times` invocations of `function` fail with `error_type` before its handler
    /// runs, as a throttled or failing dependency would.
    pub fn inject_error(&self, function: Function, error_type: &str, times: usize) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let queue = faults.entry(function).or_default();
        for _ in 0..times {
            queue.push_back(FunctionError {
                error_type: error_type.to_string(),
                error_message: format!("injected by the local cloud: {error_type}"),
            });
        }
    }

    fn take_fault(&self, function: Function) -> Option<FunctionError> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults.get_mut(&function).and_then(VecDeque::pop_front)
    }

    /// Invokes `function` with `payload` as Lambda would: the handler's result, or its error.
    pub async fn invoke(&self, function: Function, payload: Value) -> Result<Value, FunctionError> {
        let started = Instant::now();
        let result = match self.take_fault(function) {
            Some(fault) => Err(fault),
            None => self.run(function, payload).await,
        };
        let elapsed = started.elapsed();
        {
            let mut counts = self.invocations.lock().unwrap_or_else(|p| p.into_inner());
            let entry = counts.entry(function).or_default();
            entry.count += 1;
            entry.busy += elapsed;
            entry.last_end = Some(std::time::SystemTime::now());
        }
        let elapsed_ms = elapsed.as_millis();
        match &result {
            Ok(_) => tracing::info!(function = function.name(), elapsed_ms, "invoked"),
            Err(e) => tracing::warn!(
                function = function.name(),
                elapsed_ms,
                error_type = %e.error_type,
                error_message = %e.error_message,
                "invocation failed"
            ),
        }
        result
    }

    async fn run(&self, function: Function, payload: Value) -> Result<Value, FunctionError> {
        fn output<T: serde::Serialize>(value: T) -> Result<Value, FunctionError> {
            serde_json::to_value(value).map_err(|e| FunctionError {
                error_type: "Runtime.SerializationError".into(),
                error_message: e.to_string(),
            })
        }
        match function {
            Function::ExportCertificate => {
                output(export_certificate::handler(&self.export, decode(payload)?).await?)
            }
            Function::DispatchInstall => {
                output(dispatch_install::handler(&self.dispatch, decode(payload)?).await?)
            }
            Function::CheckInstallStatus => {
                output(check_install_status::handler(&self.check, decode(payload)?).await?)
            }
            Function::RenewalTrigger => {
                output(renewal_trigger::handler(&self.renewal, decode(payload)?).await?)
            }
            Function::RecordHostEvidence => {
                output(record_host_evidence::handler(&self.evidence, decode(payload)?).await?)
            }
            Function::AcmeCertificate => {
                output(acme_certificate::handler(&self.acme, decode(payload)?).await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certship_shared::CertshipError;

    #[test]
    fn function_names_resolve_from_every_form_invoke_accepts() {
        let arn = Function::DispatchInstall.arn("us-east-1");
        assert_eq!(
            Function::resolve(&arn),
            Some(Function::DispatchInstall),
            "{arn}"
        );
        assert_eq!(
            Function::resolve(&format!("{arn}:$LATEST")),
            Some(Function::DispatchInstall)
        );
        assert_eq!(
            Function::resolve("certship-renewal-trigger"),
            Some(Function::RenewalTrigger)
        );
        assert_eq!(
            Function::resolve("123456789012:function:certship-export-certificate"),
            Some(Function::ExportCertificate)
        );
        assert_eq!(Function::resolve("certship-other"), None);
        assert_eq!(
            Function::resolve("arn:aws:lambda:us-east-1:1:function:x"),
            None
        );
    }

    #[test]
    fn errors_carry_the_stable_name_the_state_machine_matches() {
        let err = FunctionError::from(CertshipError::NoTargets("no host has env=qa".into()));
        assert_eq!(error_body(&err)["errorType"], "NoTargets");
        assert!(
            error_body(&err)["errorMessage"]
                .as_str()
                .unwrap()
                .contains("env=qa")
        );
    }
}
