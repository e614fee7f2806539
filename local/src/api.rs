//! The deployment API on the local cloud: `POST /prod/export-cert`, as the stack's API Gateway
//! answers it. The body is checked as the API's request model checks it (the contract's fields,
//! nothing else, no `Trigger`), each field with the functions' own rules (a little stricter than
//! the model's patterns: what the model would pass and export-certificate refuse is refused
//! here at once), `"Trigger":"api"` is added, and StartExecution starts the
//! workflow: 202 with the execution's ARN, 400 with the reason, 403 without a SigV4 header.
//!
//! The emulator checks that a request carries a SigV4 `Authorization` scoped to `execute-api`
//! and an `x-amz-date`, not the signature's value: there are no IAM users to check it against.
//! The signing itself is checked against AWS's test vectors (`ops::api`).

use certship_shared::arn::CertificateArn;
use certship_shared::rules::{validate_cert_name, validate_tag_key, validate_tag_value};
use hyper::StatusCode;
use hyper::header::HeaderMap;
use serde_json::{Value, json};

/// The stage and resource of the stack's API (its `ApiUrl` output ends with this).
pub const API_PATH: &str = "/prod/export-cert";

const FIELDS: [&str; 5] = [
    "CertificateArn",
    "CertName",
    "TargetTagKey",
    "TargetTagValue",
    "ReloadService",
];
const REQUIRED: [&str; 4] = [
    "CertificateArn",
    "CertName",
    "TargetTagKey",
    "TargetTagValue",
];

/// The local API: StartExecution on `state_machine_arn`.
pub struct LocalApi {
    pub sfn: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

impl LocalApi {
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Value) {
        if let Err(message) = authorized(headers) {
            return (StatusCode::FORBIDDEN, json!({ "message": message }));
        }
        let input = match model(body) {
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
            .state_machine_arn(&self.state_machine_arn)
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

/// The body as the request model takes it, plus `"Trigger":"api"`.
fn model(body: &[u8]) -> Result<Value, String> {
    let mut body: serde_json::Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => map,
        _ => return Err("Invalid request body: not a JSON object".into()),
    };
    if let Some(extra) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Invalid request body: object has properties not allowed by the schema: [\"{extra}\"]"
        ));
    }
    for field in REQUIRED {
        if !body.contains_key(field) {
            return Err(format!(
                "Invalid request body: object is missing required property \"{field}\""
            ));
        }
    }
    let text = |field: &str| -> Result<String, String> {
        match body.get(field) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("Invalid request body: {field} is not a string")),
        }
    };
    let invalid = |e: certship_shared::CertshipError| format!("Invalid request body: {e}");
    CertificateArn::parse(&text("CertificateArn")?).map_err(invalid)?;
    validate_cert_name(&text("CertName")?).map_err(invalid)?;
    validate_tag_key(&text("TargetTagKey")?).map_err(invalid)?;
    validate_tag_value(&text("TargetTagValue")?).map_err(invalid)?;
    let reload = text("ReloadService")?;
    if !reload.is_empty() {
        certship_shared::rules::ReloadAllowlist::parse(&reload).map_err(|_| {
            format!("Invalid request body: ReloadService {reload:?} is not a unit name")
        })?;
    }
    body.insert("Trigger".into(), json!("api"));
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:acm:us-east-1:123456789012:certificate/0d3f5a1c-7e1b-4c55-9a0e-2b9f6d4e8c11";

    #[test]
    fn the_model_takes_the_contract_and_adds_the_trigger() {
        let input = model(
            json!({"CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "web team"})
                .to_string()
                .as_bytes(),
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
        for (body, expected) in [
            (with_trigger, "Trigger"),
            (missing, "CertName"),
            (bad_name, "CertName"),
            (json!([1]), "JSON object"),
        ] {
            let error = model(body.to_string().as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
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
