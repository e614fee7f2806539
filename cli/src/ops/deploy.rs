//! `certship deploy`: starts a deployment through the API (SigV4) or straight through
//! StartExecution, after checking the request with the rules the Lambdas apply.

use super::stack::Resources;
use super::{Clients, explain, region};
use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_shared::{DeploymentRequest, Trigger};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a deployment was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Api,
    StateMachine,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Api => "api",
            Route::StateMachine => "state-machine",
        }
    }
}

/// The request, checked as export-certificate checks it: ARN shape and partition (this CLI's
/// region), name, tag key and value. A reload unit must be a service name; whether the stack
/// allows it is for the stack to say.
pub fn checked_request(
    config_region: &str,
    certificate_arn: &str,
    cert_name: &str,
    target: &(String, String),
    reload_service: Option<&str>,
) -> Result<DeploymentRequest> {
    let request = DeploymentRequest {
        certificate_arn: certificate_arn.to_string(),
        cert_name: cert_name.to_string(),
        target_tag_key: target.0.clone(),
        target_tag_value: target.1.clone(),
        reload_service: reload_service.filter(|s| !s.is_empty()).map(str::to_string),
        trigger: Trigger::Api,
    };
    let allowlist = ReloadAllowlist::parse(reload_service.unwrap_or_default()).map_err(|_| {
        anyhow::anyhow!(
            "--reload-service {:?} is not a systemd service name",
            reload_service.unwrap_or_default()
        )
    })?;
    let valid = certship_shared::rules::validate_request(
        &request,
        &RequestRules::new(config_region, allowlist),
    )
    .map_err(|e| anyhow::anyhow!("{}", flag_names(&e.to_string())))?;
    Ok(valid.request)
}

/// The contract's field names as the flags that set them.
fn flag_names(message: &str) -> String {
    [
        ("CertificateArn", "--certificate-arn"),
        ("CertName", "--name"),
        ("TargetTagKey", "the --target key"),
        ("TargetTagValue", "the --target value"),
        ("ReloadService", "--reload-service"),
    ]
    .iter()
    .fold(message.to_string(), |m, (field, flag)| {
        m.replace(field, flag)
    })
}

/// The API's body: the contract's fields, without `Trigger` (the API adds it; its model refuses
/// callers that send one).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ApiBody<'a> {
    certificate_arn: &'a str,
    cert_name: &'a str,
    target_tag_key: &'a str,
    target_tag_value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reload_service: Option<&'a str>,
}

pub fn api_body(request: &DeploymentRequest) -> Value {
    let body = ApiBody {
        certificate_arn: &request.certificate_arn,
        cert_name: &request.cert_name,
        target_tag_key: &request.target_tag_key,
        target_tag_value: &request.target_tag_value,
        reload_service: request.reload_service.as_deref(),
    };
    // Strings only: serializing cannot fail.
    serde_json::to_value(body).unwrap_or_default()
}

/// What the API answers: StartExecution's output when it started one, else API Gateway's (or
/// the integration's) error message, under either spelling.
#[derive(Debug, Default, Deserialize)]
struct ApiAnswer {
    #[serde(rename = "executionArn")]
    execution_arn: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// Starts the deployment, returning the execution's ARN and the route it took: StartExecution
/// when `direct`; else the API when its URL is known; else StartExecution when the state machine
/// is named; else the stack's API.
pub async fn start(
    clients: &Clients,
    deployment: &Resources<'_>,
    api_url: Option<&str>,
    direct: bool,
    request: &DeploymentRequest,
) -> Result<(String, Route)> {
    let api_url = match api_url {
        _ if direct => None,
        Some(url) => Some(url.to_string()),
        None if deployment.names_state_machine() => None,
        None if deployment.has_stack() => Some(deployment.api_url().await?),
        None => None,
    };
    match api_url {
        Some(url) => Ok((
            through_api(&clients.config, &url, request).await?,
            Route::Api,
        )),
        None => {
            let machine = deployment.state_machine_arn().await?;
            Ok((
                start_execution(&clients.sfn, &machine, request).await?,
                Route::StateMachine,
            ))
        }
    }
}

async fn through_api(config: &SdkConfig, url: &str, request: &DeploymentRequest) -> Result<String> {
    let answer = super::api::post_signed(config, url, &api_body(request)).await?;
    let parsed = ApiAnswer::deserialize(&answer.body).unwrap_or_default();
    // A body that is not JSON is its own message.
    let message = parsed
        .message
        .or_else(|| answer.body.as_str().map(str::to_string))
        .unwrap_or_default();
    match answer.status {
        200..=299 => parsed.execution_arn.with_context(|| {
            format!(
                "the API answered {} without an executionArn: {}",
                answer.status, answer.body
            )
        }),
        403 => bail!(
            "the API refused the credentials (403): {}. They need execute-api:Invoke on this API, in region {}.",
            message,
            region(config)
        ),
        429 => bail!("the API is busy (429): {}. Retry in a moment.", message),
        400..=499 => bail!(
            "the API refused the request ({}): {}",
            answer.status,
            message
        ),
        status => bail!(
            "the API could not start the deployment ({status}): {}",
            message
        ),
    }
}

/// StartExecution with the request as input and a readable, unique execution name.
pub async fn start_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    request: &DeploymentRequest,
) -> Result<String> {
    Ok(sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(execution_name(&request.cert_name))
        .input(serde_json::to_string(request)?)
        .send()
        .await
        .map_err(explain)
        .context("starting the deployment")?
        .execution_arn)
}

/// Step Functions' limit on an execution name's length.
const EXECUTION_NAME_MAX: usize = 80;

/// `<CertName>-<milliseconds>-<16 random hex>`: readable and sortable in the console, and unique
/// even for two deployments of one name started in the same millisecond (which would otherwise
/// fail with `ExecutionAlreadyExists`). The name is shortened to keep within 80 characters, and
/// anything but `A-Z a-z 0-9 . _ -` (which a valid CertName never holds) becomes `-`.
pub fn execution_name(cert_name: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let suffix = format!("-{millis}-{:016x}", rand::random::<u64>());
    let name: String = cert_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(EXECUTION_NAME_MAX.saturating_sub(suffix.len()))
        .collect();
    name + &suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:acm:us-east-1:123456789012:certificate/0d3f5a1c-7e1b-4c55-9a0e-2b9f6d4e8c11";

    fn target(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn a_good_request_passes_and_an_empty_reload_means_none() {
        let request =
            checked_request("us-east-1", ARN, "web", &target("env", "prod"), Some("")).unwrap();
        assert_eq!(request.reload_service, None);
        assert_eq!(request.trigger, Trigger::Api);
        let body = api_body(
            &checked_request(
                "us-east-1",
                ARN,
                "web",
                &target("env", "prod"),
                Some("nginx"),
            )
            .unwrap(),
        );
        assert_eq!(body["ReloadService"], "nginx");
        assert!(
            body.get("Trigger").is_none(),
            "the API's model refuses Trigger"
        );
    }

    #[test]
    fn bad_input_is_refused_naming_the_flag() {
        let cases = [
            (
                ARN.replace("certificate/", "cert/"),
                "web",
                target("env", "prod"),
                None,
                "--certificate-arn",
            ),
            (
                ARN.to_string(),
                "../etc",
                target("env", "prod"),
                None,
                "--name",
            ),
            (
                ARN.to_string(),
                "web",
                target("aws:env", "prod"),
                None,
                "--target key",
            ),
            (
                ARN.to_string(),
                "web",
                target("env", "prod"),
                Some("nginx; reboot"),
                "--reload-service",
            ),
            (
                ARN.replace("arn:aws:", "arn:aws-cn:"),
                "web",
                target("env", "prod"),
                None,
                "partition",
            ),
        ];
        for (arn, name, target, reload, expected) in cases {
            let error = checked_request("us-east-1", &arn, name, &target, reload)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }

    /// What Step Functions accepts as an execution name: 1-80 characters, none of them
    /// whitespace, brackets, wildcards, control characters or `" # % \ ^ | ~ ` $ & , ; : /`.
    fn valid_execution_name(name: &str) -> bool {
        (1..=EXECUTION_NAME_MAX).contains(&name.chars().count())
            && !name.chars().any(|c| {
                c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
            })
    }

    #[test]
    fn two_execution_names_made_at_once_differ_and_are_valid() {
        let longest = "a".repeat(64);
        for cert_name in ["web", "web.example_1-x", longest.as_str()] {
            let (first, second) = (execution_name(cert_name), execution_name(cert_name));
            assert_ne!(first, second, "same millisecond, same name");
            for name in [&first, &second] {
                assert!(valid_execution_name(name), "{name}");
                assert!(
                    name.starts_with(&cert_name[..cert_name.len().min(40)]),
                    "{name}"
                );
            }
        }
        assert!(execution_name("web").starts_with("web-"));
    }
}
