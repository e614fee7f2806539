//! Test support shared by every crate's tests: log capture, secret scans, seeding, and moto
//! server started from the project's own virtualenv (installed on first use), so
//! integration tests need nothing set up by hand.

pub mod logs;
pub mod moto;
pub mod seed;

/// The HTTP answer an AWS JSON-protocol service gives when it throttles a call; the SDK's retry
/// classifier treats it as throttling, as it does the real one.
pub fn throttling_response()
-> aws_smithy_runtime_api::http::Response<aws_smithy_types::body::SdkBody> {
    aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(400).expect("400 is a status code"),
        aws_smithy_types::body::SdkBody::from(
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        ),
    )
}

/// Fails the test when any of `secrets` (passphrases, key bodies) or any PEM private key occurs
/// in `haystack`, naming where but never printing the secret.
pub fn assert_no_secret(what: &str, haystack: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            secret.len() >= 8,
            "a secret to scan for must be distinctive, got {} bytes",
            secret.len()
        );
        assert!(
            !haystack.contains(secret),
            "{what} contains secret material ({} bytes)",
            secret.len()
        );
    }
    assert!(
        !haystack.contains("PRIVATE KEY-----"),
        "{what} contains a PEM private key"
    );
}
