//! Test support shared by every crate's tests: log capture, secret scans, and moto server
//! started from the project's own virtualenv (installed on first use), so integration tests
//! need nothing set up by hand.

pub mod logs;
pub mod moto;
pub mod seed;

/// Fails the test when any of `secrets` occurs in `haystack`, naming where.
pub fn assert_no_secret(what: &str, haystack: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            secret.len() >= 8,
            "a secret to scan for must be distinctive, got {secret:?}"
        );
        assert!(
            !haystack.contains(secret),
            "{what} contains secret material ({} bytes)",
            secret.len()
        );
    }
    for marker in [
        "PRIVATE KEY-----",
        "\"passphrase\"",
        "encrypted_private_key",
    ] {
        assert!(!haystack.contains(marker), "{what} contains {marker:?}");
    }
}
