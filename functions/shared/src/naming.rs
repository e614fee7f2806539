//! Names derived from a mapping (certificate x tag target): the secret, the table keys and the
//! renewal executions. Derived, never stored separately, so they cannot disagree.

use sha2::{Digest, Sha256};

/// Prefix of every secret certship writes; host and function policies are scoped to it.
pub const SECRET_PREFIX: &str = "certship/";

fn sha256_hex(parts: &[&str]) -> String {
    hex::encode(Sha256::digest(parts.join("|").as_bytes()))
}

/// `certship/<CertName>-<12 hex of sha256(CertificateArn|TagKey|TagValue)>`: one secret per
/// mapping, so two certificates can share a CertName, and two targets a certificate.
pub fn secret_name(
    cert_name: &str,
    certificate_arn: &str,
    tag_key: &str,
    tag_value: &str,
) -> String {
    format!(
        "{SECRET_PREFIX}{}",
        mapping_id(cert_name, certificate_arn, tag_key, tag_value)
    )
}

/// `<CertName>-<12 hex of sha256(CertificateArn|TagKey|TagValue)>`: the mapping's short id, the
/// secret's name after its prefix, the partition key of its evidence and part of its
/// association's name and output prefix. The digest has a fixed length, so the id reads back
/// unambiguously from the right.
pub fn mapping_id(
    cert_name: &str,
    certificate_arn: &str,
    tag_key: &str,
    tag_value: &str,
) -> String {
    let digest = sha256_hex(&[certificate_arn, tag_key, tag_value]);
    format!("{cert_name}-{}", &digest[..12])
}

/// The mapping's State Manager association name, `certship-<mapping id>` (SSM allows
/// `^[a-zA-Z0-9_\-.]{3,128}$`; a CertName is at most 64 of those characters).
pub fn association_name(mapping_id: &str) -> String {
    format!("certship-{mapping_id}")
}

/// The association's `OutputS3KeyPrefix`, `<TagValue>/<mapping id>`: the agent writes each run's
/// output under `<prefix>/<instance-id>/<association-id>/<run-id>/...` with the host's own role,
/// which may write only under its own tag value (ABAC on `aws:PrincipalTag`).
pub fn output_key_prefix(tag_value: &str, mapping_id: &str) -> String {
    format!("{tag_value}/{mapping_id}")
}

/// The table's partition key value, `<key>#<value>` (`#` is not allowed in tags).
pub fn tag_key_value(tag_key: &str, tag_value: &str) -> String {
    format!("{tag_key}#{tag_value}")
}

/// The table's sort key value, `<arn>#<name>`.
pub fn certificate_arn_cert_name(certificate_arn: &str, cert_name: &str) -> String {
    format!("{certificate_arn}#{cert_name}")
}

/// The execution name for one mapping's redeployment after one renewal event: the same event
/// delivered twice yields the same name, so Step Functions refuses the second start.
/// Names are at most 80 characters of a safe set; this one is at most 69.
pub fn renewal_execution_name(
    event_id: &str,
    tag_key_value: &str,
    sort_key: &str,
    cert_name: &str,
) -> String {
    let digest = sha256_hex(&[event_id, tag_key_value, sort_key]);
    // Only characters execution names allow, even for a hand-edited mapping item.
    let readable: String = cert_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(40)
        .collect();
    format!("renewal-{readable}-{}", &digest[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:acm:us-east-1:123456789012:certificate/abc";

    #[test]
    fn secret_names_are_stable_and_distinct_per_mapping() {
        let name = secret_name("web", ARN, "env", "dev");
        // sha256("arn:aws:acm:us-east-1:123456789012:certificate/abc|env|dev")
        assert_eq!(
            name,
            format!("certship/web-{}", &sha256_hex(&[ARN, "env", "dev"])[..12])
        );
        assert_eq!(name.len(), "certship/web-".len() + 12);
        assert_eq!(name, secret_name("web", ARN, "env", "dev"));
        assert_ne!(name, secret_name("web", ARN, "env", "prod"));
        assert_ne!(name, secret_name("web", &format!("{ARN}2"), "env", "dev"));
        // The separator keeps "e|nv" + "dev" apart from "e" + "nv|dev".
        assert_ne!(
            secret_name("w", ARN, "env", "dev"),
            secret_name("w", ARN, "envd", "ev")
        );
    }

    #[test]
    fn the_mapping_id_names_the_secret_association_and_output_prefix() {
        let id = mapping_id("web", ARN, "env", "dev");
        assert_eq!(
            format!("certship/{id}"),
            secret_name("web", ARN, "env", "dev")
        );
        assert_eq!(association_name(&id), format!("certship-{id}"));
        assert_eq!(output_key_prefix("dev", &id), format!("dev/{id}"));
        assert_ne!(id, mapping_id("web2", ARN, "env", "dev"));
    }

    #[test]
    fn renewal_names_are_deterministic_safe_and_short() {
        let a = renewal_execution_name("evt-1", "env#dev", "arn#web", "web");
        assert_eq!(
            a,
            renewal_execution_name("evt-1", "env#dev", "arn#web", "web")
        );
        assert_ne!(
            a,
            renewal_execution_name("evt-2", "env#dev", "arn#web", "web")
        );
        assert_ne!(
            a,
            renewal_execution_name("evt-1", "env#prod", "arn#web", "web")
        );
        let long = renewal_execution_name("e", "k#v", "s", &"n".repeat(64));
        assert!(long.len() <= 80);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{long}"
        );
    }
}
