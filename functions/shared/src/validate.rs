//! Input validation, the same for the Lambdas and the CLI: an invalid request is refused before
//! anything is exported or sent, with a message that names the field.

use crate::config::RequestRules;
use crate::{CertshipError, DeploymentRequest};

/// The parts of an ACM certificate ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub id: String,
}

impl CertificateArn {
    /// Parses `arn:<partition>:acm:<region>:<account>:certificate/<id>`.
    pub fn parse(arn: &str) -> Result<Self, CertshipError> {
        let invalid = |why: &str| {
            CertshipError::InvalidRequest(format!(
                "CertificateArn {arn:?} is not an ACM certificate ARN \
                 (arn:aws:acm:REGION:ACCOUNT:certificate/ID): {why}"
            ))
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err(invalid("it needs six ':'-separated parts"));
        };
        if prefix != "arn" {
            return Err(invalid("it must start with arn:"));
        }
        if !matches!(
            partition,
            "aws"
                | "aws-cn"
                | "aws-us-gov"
                | "aws-iso"
                | "aws-iso-b"
                | "aws-iso-e"
                | "aws-iso-f"
                | "aws-eusc"
        ) {
            return Err(invalid("unknown partition"));
        }
        if service != "acm" {
            return Err(invalid("the service must be acm"));
        }
        if !is_region(region) {
            return Err(invalid("the region is not a region name"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the account must be 12 digits"));
        }
        let Some(id) = resource.strip_prefix("certificate/") else {
            return Err(invalid("the resource must be certificate/ID"));
        };
        if id.is_empty()
            || id.len() > 128
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "the certificate id must be 1-128 letters, digits or '-'",
            ));
        }
        if partition_of_region(region) != partition {
            return Err(invalid("the region is not in that partition"));
        }
        Ok(Self {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            id: id.to_string(),
        })
    }
}

fn is_region(region: &str) -> bool {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1, us-isob-east-1
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The partition a region belongs to.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else {
        "aws"
    }
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$` and no `..`: the name becomes part of file names on hosts.
pub fn validate_cert_name(name: &str) -> Result<(), CertshipError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(CertshipError::InvalidRequest(format!(
            "CertName {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ -, start with a letter \
             or digit, and not contain '..'"
        )))
    }
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

/// AWS tag-key rules: 1-128 characters of letters, digits, spaces and `_ . : / = + - @`, not
/// starting with the reserved `aws:`.
pub fn validate_tag_key(key: &str) -> Result<(), CertshipError> {
    let len = key.chars().count();
    if !(1..=128).contains(&len) || !key.chars().all(is_tag_char) {
        return Err(CertshipError::InvalidRequest(format!(
            "TargetTagKey {key:?} must be 1-128 characters of letters, digits, spaces and _ . : / = + - @"
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(CertshipError::InvalidRequest(format!(
            "TargetTagKey {key:?} must not start with the reserved prefix aws:"
        )));
    }
    Ok(())
}

/// AWS tag-value rules: 0-256 characters of letters, digits, spaces and `_ . : / = + - @`.
pub fn validate_tag_value(value: &str) -> Result<(), CertshipError> {
    if value.chars().count() > 256 || !value.chars().all(is_tag_char) {
        return Err(CertshipError::InvalidRequest(format!(
            "TargetTagValue {value:?} must be 0-256 characters of letters, digits, spaces and _ . : / = + - @"
        )));
    }
    Ok(())
}

/// A request that passed validation, with the certificate ARN parsed and `ReloadService`
/// normalised (an empty string means none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRequest {
    pub request: DeploymentRequest,
    pub arn: CertificateArn,
}

/// Validates every field of a deployment request against DESIGN's rules and the deployment's
/// own limits (partition, reload allowlist).
pub fn validate_request(
    request: &DeploymentRequest,
    rules: &RequestRules,
) -> Result<ValidRequest, CertshipError> {
    let arn = CertificateArn::parse(&request.certificate_arn)?;
    if arn.partition != rules.partition() {
        return Err(CertshipError::InvalidRequest(format!(
            "CertificateArn is in partition {} but certship runs in {}",
            arn.partition,
            rules.partition()
        )));
    }
    validate_cert_name(&request.cert_name)?;
    validate_tag_key(&request.target_tag_key)?;
    validate_tag_value(&request.target_tag_value)?;
    let mut normalized = request.clone();
    normalized.reload_service = match request.reload_service.as_deref() {
        None | Some("") => None,
        Some(unit) => Some(rules.reload_allowlist().check(unit)?.to_string()),
    };
    Ok(ValidRequest {
        request: normalized,
        arn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trigger;
    use crate::config::ReloadAllowlist;

    const ARN: &str =
        "arn:aws:acm:eu-west-1:123456789012:certificate/1f2e3d4c-0000-4000-8000-00000000abcd";

    fn rules() -> RequestRules {
        RequestRules::new(
            "us-east-1",
            ReloadAllowlist::parse("nginx,apache2,httpd,haproxy").unwrap(),
        )
    }

    fn request() -> DeploymentRequest {
        DeploymentRequest {
            certificate_arn: ARN.into(),
            cert_name: "web".into(),
            target_tag_key: "env".into(),
            target_tag_value: "dev".into(),
            reload_service: Some("nginx".into()),
            trigger: Trigger::Api,
        }
    }

    fn invalid_message(request: &DeploymentRequest) -> String {
        match validate_request(request, &rules()) {
            Err(CertshipError::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes_and_keeps_its_region() {
        let valid = validate_request(&request(), &rules()).unwrap();
        assert_eq!(valid.arn.region, "eu-west-1");
        assert_eq!(valid.arn.account, "123456789012");
        assert_eq!(valid.request.reload_service.as_deref(), Some("nginx"));
    }

    #[test]
    fn certificate_arns_are_checked_part_by_part() {
        for bad in [
            "",
            "arn:aws:acm:eu-west-1:123456789012:certificate/",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:acm:eu-west-1:12345:certificate/abc",
            "arn:aws:acm:EU-WEST-1:123456789012:certificate/abc",
            "arn:aws:acm:eu-west-1:123456789012:key/abc",
            "arn:aws:acm:eu-west-1:123456789012:certificate/abc/../x",
            "arn:aws-cn:acm:eu-west-1:123456789012:certificate/abc",
            "arn:nope:acm:eu-west-1:123456789012:certificate/abc",
        ] {
            let mut r = request();
            r.certificate_arn = bad.into();
            assert!(invalid_message(&r).contains("CertificateArn"), "{bad}");
        }
        assert_eq!(
            CertificateArn::parse("arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/a-1")
                .unwrap()
                .partition,
            "aws-us-gov"
        );
    }

    #[test]
    fn another_partition_is_refused() {
        let mut r = request();
        r.certificate_arn = "arn:aws-cn:acm:cn-north-1:123456789012:certificate/abc".into();
        assert!(invalid_message(&r).contains("partition aws-cn"));
    }

    #[test]
    fn cert_names_follow_the_pattern_and_never_climb() {
        for good in ["web", "a", "www.example.com", "my_cert-2", &"x".repeat(64)] {
            assert!(validate_cert_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            "../../etc",
            "a..b",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            let mut r = request();
            r.cert_name = bad.into();
            assert!(invalid_message(&r).contains("CertName"), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_aws_rules() {
        for bad_key in ["", "aws:env", "AWS:x", "a#b", "a;b", &"k".repeat(129)] {
            let mut r = request();
            r.target_tag_key = bad_key.into();
            assert!(invalid_message(&r).contains("TargetTagKey"), "{bad_key}");
        }
        for bad_value in ["a#b", "$(reboot)", &"v".repeat(257)] {
            let mut r = request();
            r.target_tag_value = bad_value.into();
            assert!(
                invalid_message(&r).contains("TargetTagValue"),
                "{bad_value}"
            );
        }
        let mut r = request();
        r.target_tag_key = "team/app:tier=1 @x+y".into();
        r.target_tag_value = String::new();
        assert!(validate_request(&r, &rules()).is_ok());
    }

    #[test]
    fn reload_service_must_be_allowed() {
        for bad in ["reboot.target", "sshd", "nginx;reboot", "../nginx"] {
            let mut r = request();
            r.reload_service = Some(bad.into());
            assert!(invalid_message(&r).contains("ReloadService"), "{bad}");
        }
        let mut r = request();
        r.reload_service = Some(String::new());
        assert_eq!(
            validate_request(&r, &rules())
                .unwrap()
                .request
                .reload_service,
            None
        );
        r.reload_service = Some("haproxy.service".into());
        assert_eq!(
            validate_request(&r, &rules())
                .unwrap()
                .request
                .reload_service
                .as_deref(),
            Some("haproxy.service")
        );
    }
}
