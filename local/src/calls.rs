//! Every AWS API call that reaches the gateway, counted by service and operation: what the
//! functions, the state machine (its Lambda invocations), the hosts' scripts and the CLI ask of
//! the local cloud. The emulated agents' own work (listing associations, writing their output to
//! S3) happens inside the local cloud and is not counted here.

use hyper::HeaderMap;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The counts, by (caller, `service:Operation`).
#[derive(Debug, Default)]
pub struct Calls(Mutex<BTreeMap<(String, String), u64>>);

impl Calls {
    pub fn record(&self, caller: String, operation: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((caller, operation))
            .or_default() += 1;
    }

    /// The counts so far by `service:Operation`, or with `by_caller` by `<caller> service:Operation`;
    /// `reset` starts again from zero.
    pub fn snapshot(&self, reset: bool, by_caller: bool) -> BTreeMap<String, u64> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let taken = if reset {
            std::mem::take(&mut *counts)
        } else {
            counts.clone()
        };
        let mut out = BTreeMap::new();
        for ((caller, operation), n) in taken {
            let key = if by_caller {
                format!("{caller} {operation}")
            } else {
                operation
            };
            *out.entry(key).or_default() += n;
        }
        out
    }
}

/// Who made a request: the access key id of its SigV4 credential. In the local cloud each of
/// certship's functions signs with its own name ([`crate::functions::Function::name`]), the
/// hosts' scripts and the CLI with `testing`; `unsigned` when there is no signature.
pub fn caller(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').next())
        .unwrap_or("unsigned")
        .to_string()
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
    fn the_caller_is_the_credential_s_access_key_and_counts_add_up_per_caller() {
        let signed = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=certship-check-install-status/20261127/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0",
        )]);
        assert_eq!(caller(&signed), "certship-check-install-status");
        assert_eq!(caller(&HeaderMap::new()), "unsigned");
        let calls = Calls::default();
        calls.record("a".into(), "ssm:X".into());
        calls.record("b".into(), "ssm:X".into());
        calls.record("a".into(), "ssm:X".into());
        assert_eq!(
            calls.snapshot(false, true),
            BTreeMap::from([("a ssm:X".into(), 2), ("b ssm:X".into(), 1)])
        );
        assert_eq!(
            calls.snapshot(true, false),
            BTreeMap::from([("ssm:X".into(), 3)])
        );
        assert!(calls.snapshot(false, false).is_empty());
    }

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
        calls.record("testing".into(), "ssm:DescribeAssociation".into());
        calls.record("testing".into(), "ssm:DescribeAssociation".into());
        assert_eq!(calls.snapshot(false, false)["ssm:DescribeAssociation"], 2);
        assert_eq!(calls.snapshot(true, false)["ssm:DescribeAssociation"], 2);
        assert!(calls.snapshot(false, false).is_empty());
    }
}
