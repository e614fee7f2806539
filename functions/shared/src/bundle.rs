//! The certificate bundle every source writes as a secret version (DESIGN, "Secrets"): one type,
//! so an ACM export and an ACME issuance cannot drift apart in what hosts read.

use crate::CertshipError;
use serde::Serialize;

/// The secret's JSON. Deliberately not `Debug`: it holds the passphrase and is never formatted.
#[derive(Serialize)]
pub struct SecretBundle<'a> {
    /// The source: an ACM certificate's ARN, or `acme:<id>`.
    pub certificate_arn: &'a str,
    pub certificate: &'a str,
    pub chain: &'a str,
    /// [`fullchain`] of the two.
    pub fullchain: String,
    pub encrypted_private_key: &'a str,
    pub passphrase: &'a str,
    pub serial: &'a str,
    pub not_after: &'a str,
    pub domains: &'a [String],
    pub exported_at: &'a str,
    /// What an ACME issuance adds for existing Let's Encrypt tooling; absent from ACM exports.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeFields<'a>>,
}

/// The fields only an ACME certificate's bundle carries.
#[derive(Serialize)]
pub struct AcmeFields<'a> {
    pub expiry: &'a str,
    pub obtained_at: &'a str,
    pub key_type: &'a str,
    pub directory: &'a str,
}

/// Leaf followed by chain, each PEM block ending in a newline.
pub fn fullchain(leaf: &str, chain: &str) -> String {
    let mut out = String::with_capacity(leaf.len() + chain.len() + 1);
    out.push_str(leaf);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(chain);
    if !chain.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The secret's ARN and the new version's id from what `operation` (CreateSecret or
/// PutSecretValue) returned; both are always there when the call succeeds.
pub fn written_version(
    operation: &str,
    arn: Option<String>,
    version: Option<String>,
) -> Result<(String, String), CertshipError> {
    arn.zip(version)
        .ok_or_else(|| CertshipError::Service(format!("{operation} returned no ARN or version")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fullchain_is_leaf_then_chain_with_newlines() {
        assert_eq!(fullchain("A\n", "B\n"), "A\nB\n");
        assert_eq!(fullchain("A", "B"), "A\nB\n");
        assert_eq!(fullchain("A\n", ""), "A\n");
    }

    #[test]
    fn the_acme_fields_appear_only_in_an_acme_bundle() {
        let domains = vec!["x.test".to_string()];
        let bundle = |acme| SecretBundle {
            certificate_arn: "acme:x.test-0123456789ab",
            certificate: "L\n",
            chain: "C\n",
            fullchain: fullchain("L\n", "C\n"),
            encrypted_private_key: "K",
            passphrase: "P",
            serial: "01",
            not_after: "2030-01-01T00:00:00Z",
            domains: &domains,
            exported_at: "2026-01-01T00:00:00Z",
            acme,
        };
        let acm = serde_json::to_value(bundle(None)).unwrap();
        assert_eq!(acm.as_object().unwrap().len(), 10, "{acm}");
        assert!(acm.get("expiry").is_none());
        let acme = serde_json::to_value(bundle(Some(AcmeFields {
            expiry: "2030-01-01T00:00:00Z",
            obtained_at: "2026-01-01T00:00:00Z",
            key_type: "ec-p256",
            directory: "https://ca/dir",
        })))
        .unwrap();
        assert_eq!(acme["expiry"], "2030-01-01T00:00:00Z");
        assert_eq!(acme["key_type"], "ec-p256");
        assert_eq!(acme["fullchain"], "L\nC\n");
        assert_eq!(acme.as_object().unwrap().len(), 14, "{acme}");
    }
}
