//! The API on the local cloud: `POST /prod/export-cert` (a deployment) and `POST
//! /prod/certificates` (an ACME issuance), as the stack's API Gateway answers them. The body is validated with the API's own request model, read from the template
//! (`certship_stack::Template::request_model`) for this cloud's reload allowlist and partition:
//! 400 with the validator's reasons when the model refuses it, and nothing is started; otherwise
//! the integration's request template is applied and StartExecution starts the workflow: 202
//! with the execution's ARN, or the integration's mapped error. 403 without a SigV4 header.
//!
//! The request templates are Velocity in the template, which the local cloud cannot run; their
//! effect is written here instead, and a test holds each to the template's text: a deployment
//! gets `"Trigger":"api"`, and its `AcmeCertificateId` becomes `"CertificateArn": "acme:<id>"`;
//! an issuance's body is its input unchanged.
//!
//! What AWS does, and where it is written down: a method with a request validator whose
//! `validateRequestBody` is true checks the body against the method's model (JSON Schema draft
//! 4) before the integration runs; a body that fails gets the `BAD_REQUEST_BODY` gateway
//! response, here the template's `{"error": "InvalidRequest", "message":
//! "$context.error.validationErrorString"}` (API Gateway developer guide, "Use request
//! validation in API Gateway" and "Gateway response types"). The reasons are written in the
//! wording of the guide's examples (`[object has missing required properties (["price"])]`),
//! one per failed keyword, in brackets; their order may differ from AWS's.
//!
//! The emulator checks that a request carries a SigV4 `Authorization` scoped to `execute-api`
//! and an `x-amz-date`, not the signature's value: there are no IAM users to check it against.
//! The signing itself is checked against AWS's test vectors (`ops::api`).

use hyper::StatusCode;
use hyper::header::HeaderMap;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::{Value, json};

/// The stage and resource of the stack's API (its `ApiUrl` output ends with this).
pub const API_PATH: &str = "/prod/export-cert";
/// The stage and resource of ACME issuances (the stack's `CertificatesUrl` output).
pub const CERTIFICATES_PATH: &str = "/prod/certificates";

/// What a resource's request template makes of the validated body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    /// `/export-cert`: `"Trigger":"api"`, and `AcmeCertificateId` as `CertificateArn`.
    Deployment,
    /// `/certificates`: the body as it is.
    Issuance,
}

/// One POST resource: its request model and the state machine it starts.
struct Route {
    state_machine_arn: String,
    model: jsonschema::Validator,
    template: Template,
}

impl Route {
    fn new(state_machine_arn: String, model: &Value, template: Template) -> anyhow::Result<Self> {
        let model = jsonschema::draft4::new(model).map_err(|e| {
            anyhow::anyhow!("the API's request model is not JSON Schema draft 4: {e}")
        })?;
        Ok(Self {
            state_machine_arn,
            model,
            template,
        })
    }
}

/// The local API: the request model, then StartExecution on the resource's state machine.
pub struct LocalApi {
    sfn: aws_sdk_sfn::Client,
    deployments: Route,
    issuances: Route,
}

impl LocalApi {
    /// `deployment_model` and `issuance_model` are the API's request models as deployed
    /// (`Template::request_model_at`) for `/export-cert` and `/certificates`.
    pub fn new(
        sfn: aws_sdk_sfn::Client,
        state_machine_arn: String,
        deployment_model: &Value,
        acme_state_machine_arn: String,
        issuance_model: &Value,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            sfn,
            deployments: Route::new(state_machine_arn, deployment_model, Template::Deployment)?,
            issuances: Route::new(acme_state_machine_arn, issuance_model, Template::Issuance)?,
        })
    }

    /// Whether `path` is one of the API's resources.
    pub fn serves(path: &str) -> bool {
        path == API_PATH || path == CERTIFICATES_PATH
    }

    pub async fn handle(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (StatusCode, Value) {
        if let Err(message) = authorized(headers) {
            return (StatusCode::FORBIDDEN, json!({ "message": message }));
        }
        let route = if path == CERTIFICATES_PATH {
            &self.issuances
        } else {
            &self.deployments
        };
        let input = match validated(&route.model, route.template, body) {
            Ok(input) => input,
            Err(message) => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "InvalidRequest", "message": message}),
                );
            }
        };
        // API Gateway's StartExecution names no execution; Step Functions then picks a UUID.
        let name = format!("{:032x}", rand::random::<u128>());
        match self
            .sfn
            .start_execution()
            .state_machine_arn(&route.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
        {
            Ok(started) => (
                StatusCode::ACCEPTED,
                json!({
                    "executionArn": started.execution_arn,
                    "startDate": started.start_date.secs(),
                }),
            ),
            Err(e) => {
                use aws_sdk_sfn::error::ProvideErrorMetadata;
                let code = e.code().unwrap_or("ServiceUnavailable").to_string();
                let status = match code.as_str() {
                    "ThrottlingException" | "ExecutionLimitExceeded" => {
                        StatusCode::TOO_MANY_REQUESTS
                    }
                    _ if e.as_service_error().is_some() => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_GATEWAY,
                };
                (
                    status,
                    json!({"error": code, "message": e.message().unwrap_or("Step Functions could not start the deployment")}),
                )
            }
        }
    }
}

fn authorized(headers: &HeaderMap) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match (header("authorization"), header("x-amz-date")) {
        (Some(auth), Some(_))
            if auth.starts_with("AWS4-HMAC-SHA256 Credential=")
                && auth.contains("/execute-api/aws4_request")
                && auth.contains("Signature=") =>
        {
            Ok(())
        }
        _ => Err("Missing Authentication Token"),
    }
}

/// The execution's input if the request model takes the body (see [`Template`]); else the
/// validation error string.
fn validated(
    model: &jsonschema::Validator,
    template: Template,
    body: &[u8],
) -> Result<Value, String> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| format!("[the request body is not JSON: {e}]"))?;
    let reasons: Vec<String> = model
        .iter_errors(&body)
        .map(|e| match e.instance_path().as_str() {
            "" => reason(&e),
            // The one liberty: AWS's reasons do not say which field failed; these do.
            field => format!("{} (instance: {})", reason(&e), json!(field)),
        })
        .collect();
    if !reasons.is_empty() {
        return Err(format!("[{}]", reasons.join(", ")));
    }
    let Value::Object(mut body) = body else {
        return Err("[the request model takes only a JSON object]".into());
    };
    if template == Template::Deployment {
        if let Some(id) = body.remove("AcmeCertificateId") {
            let id = id.as_str().unwrap_or_default();
            body.insert(
                "CertificateArn".into(),
                json!(format!("{}{id}", certship_shared::acme::SOURCE_PREFIX)),
            );
        }
        body.insert("Trigger".into(), json!("api"));
    }
    Ok(Value::Object(body))
}

/// One failed keyword, in the validator's wording.
fn reason(error: &jsonschema::ValidationError) -> String {
    let instance = error.instance();
    let length = || instance.as_str().map_or(0, |s| s.chars().count());
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            format!("object has missing required properties ([{property}])")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => format!(
            "object instance has properties which are not allowed by the schema: {}",
            json!(unexpected)
        ),
        ValidationErrorKind::Type { kind } => {
            let allowed: Vec<String> = match kind {
                TypeKind::Single(t) => vec![t.to_string()],
                TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
            };
            format!(
                "instance type ({}) does not match any allowed primitive type (allowed: {})",
                json_type(instance),
                json!(allowed)
            )
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!(
                "ECMA 262 regex {} does not match input string {instance}",
                json!(pattern)
            )
        }
        ValidationErrorKind::Enum { options } => {
            format!("instance value ({instance}) not found in enum (possible values: {options})")
        }
        ValidationErrorKind::MaxLength { limit } => format!(
            "string {instance} is too long (length: {}, maximum allowed: {limit})",
            length()
        ),
        ValidationErrorKind::MinLength { limit } => format!(
            "string {instance} is too short (length: {}, required minimum: {limit})",
            length()
        ),
        _ => error.to_string(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:acm:us-east-1:123456789012:certificate/0d3f5a1c-7e1b-4c55-9a0e-2b9f6d4e8c11";

    /// The model as the local cloud deploys it by default: the template's default allowlist,
    /// partition aws.
    fn model() -> jsonschema::Validator {
        let template = certship_stack::Template::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        )
        .unwrap();
        let model = template
            .request_model(&certship_stack::StackValues::new("aws", "us-east-1"))
            .unwrap();
        jsonschema::draft4::new(&model).unwrap()
    }

    fn check(body: Value) -> Result<Value, String> {
        validated(&model(), Template::Deployment, body.to_string().as_bytes())
    }

    fn issuance(body: Value) -> Result<Value, String> {
        let template = certship_stack::Template::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        )
        .unwrap();
        let model = template
            .request_model_at(
                certship_stack::CERTIFICATES_RESOURCE,
                &certship_stack::StackValues::new("aws", "us-east-1"),
            )
            .unwrap();
        let model = jsonschema::draft4::new(&model).unwrap();
        validated(&model, Template::Issuance, body.to_string().as_bytes())
    }

    /// The template's request template for `/export-cert`, whose effect `validated` emulates.
    fn deployment_request_template() -> String {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../cloudformation/template.yaml"),
        )
        .unwrap();
        let start = text.find("#set($body = $input.json('$'))").unwrap();
        text[start..start + 400].to_string()
    }

    #[test]
    fn an_acme_certificate_id_becomes_the_contract_s_certificate_arn() {
        let id = "www.example.com-0123456789ab";
        let input = check(
            json!({"AcmeCertificateId": id, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "dev"}),
        )
        .unwrap();
        assert_eq!(input["CertificateArn"], format!("acme:{id}"));
        assert!(input.get("AcmeCertificateId").is_none());
        assert_eq!(input["Trigger"], "api");
        // what the template's Velocity does, which this emulates
        let velocity = deployment_request_template();
        assert!(
            velocity.contains(r#"#if("$!input.path('$.AcmeCertificateId')" != "")"#)
                && velocity.contains(
                    r#"replaceFirst('"AcmeCertificateId"\s*:\s*"', '"CertificateArn":"acme:')"#
                ),
            "{velocity}"
        );
        // exactly one of the two
        let both = json!({"AcmeCertificateId": id, "CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "dev"});
        assert!(check(both).is_err());
        let neither = json!({"CertName": "web", "TargetTagKey": "env", "TargetTagValue": "dev"});
        assert!(check(neither).is_err());
        let bad = json!({"AcmeCertificateId": "arn:aws:acm:x", "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "dev"});
        assert!(check(bad).unwrap_err().contains("AcmeCertificateId"));
    }

    #[test]
    fn an_issuance_body_is_the_input_as_it_is() {
        let body = json!({"Domains": ["*.example.com", "example.com"], "HostedZoneId": "Z0123456789ABC", "KeyType": "rsa-2048", "RenewDaysBefore": 20});
        assert_eq!(issuance(body.clone()).unwrap(), body);
        for (bad, field) in [
            (json!({"Domains": [], "HostedZoneId": "Z1"}), "Domains"),
            (json!({"Domains": ["a.example.com"]}), "HostedZoneId"),
            (
                json!({"Domains": ["a.example.com"], "HostedZoneId": "Z1", "KeyType": "dsa"}),
                "KeyType",
            ),
            (
                json!({"Domains": ["a.example.com"], "HostedZoneId": "Z1", "Trigger": "api"}),
                "Trigger",
            ),
        ] {
            let error = issuance(bad).unwrap_err();
            assert!(error.contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn the_model_takes_the_contract_and_adds_the_trigger() {
        let input = check(
            json!({"CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "web team"}),
        )
        .unwrap();
        assert_eq!(input["Trigger"], "api");
        assert_eq!(input["TargetTagValue"], "web team");
    }

    #[test]
    fn the_model_refuses_extra_missing_and_bad_fields() {
        let base = json!({"CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "dev"});
        let mut with_trigger = base.clone();
        with_trigger["Trigger"] = json!("renewal");
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("CertName");
        let mut bad_name = base.clone();
        bad_name["CertName"] = json!("../x");
        let mut not_allowed = base.clone();
        not_allowed["ReloadService"] = json!("sshd");
        for (body, expected) in [
            (with_trigger, "Trigger"),
            (missing, "CertName"),
            (bad_name, "CertName"),
            // AWS's wording for a body of the wrong type
            (json!([1]), r#"allowed: ["object"]"#),
            (not_allowed, r#"instance value ("sshd") not found in enum"#),
        ] {
            let error = check(body).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(error.starts_with('[') && error.ends_with(']'), "{error}");
        }
        assert!(validated(&model(), Template::Deployment, b"{").is_err());
    }

    #[test]
    fn only_sigv4_for_execute_api_is_let_in() {
        let mut headers = HeaderMap::new();
        assert!(authorized(&headers).is_err());
        headers.insert("x-amz-date", "20261123T000000Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/states/aws4_request, SignedHeaders=host, Signature=ab"
                .parse()
                .unwrap(),
        );
        assert!(authorized(&headers).is_err(), "signed for another service");
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=ab"
                .parse()
                .unwrap(),
        );
        assert!(authorized(&headers).is_ok());
    }
}
