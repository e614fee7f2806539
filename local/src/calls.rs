//! Every AWS API call that reaches the gateway, counted by service and operation: what the
//! functions, the state machine (its Lambda invocations), the hosts' scripts and the CLI ask of
//! the local cloud. The emulated agents' own work (listing associations, writing their output to
//! S3) happens inside the local cloud and is not counted here.

use hyper::HeaderMap;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Calls(Mutex<BTreeMap<String, u64>>);

impl Calls {
    pub fn record(&self, operation: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(operation)
            .or_default() += 1;
    }

    /// The counts so far; `reset` starts again from zero.
    pub fn snapshot(&self, reset: bool) -> BTreeMap<String, u64> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if reset {
            std::mem::take(&mut *counts)
        } else {
            counts.clone()
        }
    }
}

/// `service:Operation` of one request: the service from its SigV4 credential scope, the
/// operation from `X-Amz-Target` (JSON protocols), `Action=` (query protocols), the Lambda Invoke
/// path, or for S3's REST protocol the method and whether the path names an object.
pub fn operation(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(3))
        .unwrap_or("unsigned")
        .to_string();
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let operation = target.rsplit('.').next().unwrap_or(target);
        return format!("{service}:{operation}");
    }
    if path.starts_with("/2015-03-31/functions/") && path.ends_with("/invocations") {
        return format!("{service}:Invoke");
    }
    let form = std::str::from_utf8(body).unwrap_or_default();
    if let Some(action) = form
        .split('&')
        .chain(query.split('&'))
        .find_map(|pair| pair.strip_prefix("Action="))
    {
        return format!("{service}:{action}");
    }
    let names_object = path.trim_start_matches('/').contains('/');
    let operation = match (method, names_object) {
        ("PUT", true) => "PutObject",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) => "ListObjects",
        ("PUT", false) => "PutBucket",
        _ => method,
    };
    format!("{service}:{operation}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    hyper::header::HeaderName::from_static(k),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    const AUTH_SSM: &str = "AWS4-HMAC-SHA256 Credential=testing/20261127/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0";
    const AUTH_S3: &str = "AWS4-HMAC-SHA256 Credential=testing/20261127/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

    #[test]
    fn each_protocol_names_its_service_and_operation() {
        let json = headers(&[
            ("authorization", AUTH_SSM),
            ("x-amz-target", "AmazonSSM.UpdateAssociation"),
        ]);
        assert_eq!(
            operation("POST", "/", "", &json, b"{}"),
            "ssm:UpdateAssociation"
        );
        let lambda = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=t/20261127/us-east-1/lambda/aws4_request",
        )]);
        assert_eq!(
            operation(
                "POST",
                "/2015-03-31/functions/check/invocations",
                "",
                &lambda,
                b""
            ),
            "lambda:Invoke"
        );
        let ec2 = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=t/20261127/us-east-1/ec2/aws4_request",
        )]);
        assert_eq!(
            operation(
                "POST",
                "/",
                "",
                &ec2,
                b"Action=RunInstances&Version=2016-11-15"
            ),
            "ec2:RunInstances"
        );
        let s3 = headers(&[("authorization", AUTH_S3)]);
        assert_eq!(
            operation("GET", "/bucket/a/b/stdout", "", &s3, b""),
            "s3:GetObject"
        );
        assert_eq!(
            operation("PUT", "/bucket/key", "", &s3, b"x"),
            "s3:PutObject"
        );
        assert_eq!(
            operation("GET", "/bucket", "list-type=2", &s3, b""),
            "s3:ListObjects"
        );
        assert_eq!(
            operation("GET", "/", "", &HeaderMap::new(), b""),
            "unsigned:ListObjects"
        );
    }

    #[test]
    fn a_snapshot_can_reset_the_counts() {
        let calls = Calls::default();
        calls.record("ssm:DescribeAssociation".into());
        calls.record("ssm:DescribeAssociation".into());
        assert_eq!(calls.snapshot(false)["ssm:DescribeAssociation"], 2);
        assert_eq!(calls.snapshot(true)["ssm:DescribeAssociation"], 2);
        assert!(calls.snapshot(false).is_empty());
    }
}
