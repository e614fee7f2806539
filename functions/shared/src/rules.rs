//! The request rules, the same for the Lambdas, the CLI and the local cloud: an invalid request is
//! refused before anything is exported or sent, with a message that names the field. Some rules
//! depend on the deployment (its partition and the reload allowlist): [`RequestRules`].

use crate::arn::{CertificateArn, partition_of_region};
use crate::{CertshipError, DeploymentRequest, env};

/// The variable holding the template's `AllowedReloadServices`. Shared: export-certificate and
/// dispatch-install both read it through [`RequestRules::from_env`], and the template sets it on
/// both.
pub const ALLOWED_RELOAD_SERVICES_VAR: &str = "ALLOWED_RELOAD_SERVICES";
/// Set by Lambda to the region the function runs in.
const AWS_REGION_VAR: &str = "AWS_REGION";

/// The default of the template's `AllowedReloadServices`.
pub const DEFAULT_RELOAD_ALLOWLIST: &str = "nginx,apache2,httpd,haproxy";

/// The systemd units a deployment may reload (template parameter `AllowedReloadServices`).
/// Whoever may call the API must not thereby be able to stop or reboot hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAllowlist(Vec<String>);

/// A unit name that is safe on a command line and in a document parameter.
fn is_unit_name(unit: &str) -> bool {
    let bytes = unit.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 100
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'.' | b'-'))
        && !unit.contains("..")
}

/// `nginx` and `nginx.service` name the same unit; any other unit type is not a service.
fn service_stem(unit: &str) -> Option<&str> {
    match unit.strip_suffix(".service") {
        Some(stem) => Some(stem),
        None if !unit.contains('.') => Some(unit),
        None => None,
    }
}

impl ReloadAllowlist {
    /// Parses a comma-separated list of service names; an entry that is not a plain service unit
    /// is a configuration error.
    pub fn parse(list: &str) -> Result<Self, CertshipError> {
        let mut units = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match service_stem(entry) {
                Some(stem) if is_unit_name(entry) => units.push(stem.to_string()),
                _ => {
                    return Err(CertshipError::Configuration(format!(
                        "{ALLOWED_RELOAD_SERVICES_VAR} entry {entry:?} is not a systemd service name"
                    )));
                }
            }
        }
        Ok(Self(units))
    }

    /// From `ALLOWED_RELOAD_SERVICES`, or the template's default when unset.
    pub fn from_env() -> Result<Self, CertshipError> {
        Self::parse(
            &env::optional(ALLOWED_RELOAD_SERVICES_VAR)
                .unwrap_or_else(|| DEFAULT_RELOAD_ALLOWLIST.to_string()),
        )
    }

    /// The allowed service names, without `.service`.
    pub fn units(&self) -> &[String] {
        &self.0
    }

    /// Accepts `unit` when it names an allowed service, returning it unchanged.
    pub fn check<'a>(&self, unit: &'a str) -> Result<&'a str, CertshipError> {
        match service_stem(unit) {
            Some(stem) if is_unit_name(unit) && self.0.iter().any(|u| u == stem) => Ok(unit),
            _ => Err(CertshipError::InvalidRequest(format!(
                "ReloadService {unit:?} is not allowed; allowed: {}",
                if self.0.is_empty() {
                    "none".to_string()
                } else {
                    self.0.join(", ")
                }
            ))),
        }
    }
}

/// What a request may ask for in this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRules {
    home_region: String,
    reload_allowlist: ReloadAllowlist,
}

impl RequestRules {
    pub fn new(home_region: impl Into<String>, reload_allowlist: ReloadAllowlist) -> Self {
        Self {
            home_region: home_region.into(),
            reload_allowlist,
        }
    }

    /// From `AWS_REGION` (set by Lambda) and `ALLOWED_RELOAD_SERVICES`.
    pub fn from_env() -> Result<Self, CertshipError> {
        Ok(Self::new(
            env::required(AWS_REGION_VAR)?,
            ReloadAllowlist::from_env()?,
        ))
    }

    /// The region the functions run in.
    pub fn home_region(&self) -> &str {
        &self.home_region
    }

    /// The partition of the region the functions run in; certificates must be in it.
    pub fn partition(&self) -> &'static str {
        partition_of_region(&self.home_region)
    }

    pub fn reload_allowlist(&self) -> &ReloadAllowlist {
        &self.reload_allowlist
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

/// Where a deployment's certificate comes from: `CertificateArn` holds an ACM certificate's ARN
/// or `acme:<id>`, a certificate certship issued from an ACME CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    Acm(CertificateArn),
    /// The id of an ACME certificate (`acme:<id>` without its prefix).
    Acme(String),
}

/// A request that passed validation, with its certificate source parsed and `ReloadService`
/// normalised (an empty string means none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRequest {
    pub request: DeploymentRequest,
    pub source: CertificateSource,
}

/// Validates every field of a deployment request against DESIGN's rules and the deployment's
/// own limits (partition, reload allowlist).
pub fn validate_request(
    request: &DeploymentRequest,
    rules: &RequestRules,
) -> Result<ValidRequest, CertshipError> {
    let source = if request
        .certificate_arn
        .starts_with(crate::acme::SOURCE_PREFIX)
    {
        let id = crate::acme::source_id(&request.certificate_arn).ok_or_else(|| {
            CertshipError::InvalidRequest(format!(
                "CertificateArn {:?} is not an ACME certificate's id (acme:<first name>-<12 hex \
                 digits>, as `certship acme issue` prints it)",
                request.certificate_arn
            ))
        })?;
        CertificateSource::Acme(id.to_string())
    } else {
        let arn = CertificateArn::parse(&request.certificate_arn)?;
        if arn.partition != rules.partition() {
            return Err(CertshipError::InvalidRequest(format!(
                "CertificateArn is in partition {} but certship runs in {}",
                arn.partition,
                rules.partition()
            )));
        }
        CertificateSource::Acm(arn)
    };
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
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trigger;

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
        let CertificateSource::Acm(arn) = valid.source else {
            panic!("an ACM ARN is an ACM source")
        };
        assert_eq!(arn.region, "eu-west-1");
        assert_eq!(arn.account, "123456789012");
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

    #[test]
    fn the_allowlist_takes_services_only() {
        let list = ReloadAllowlist::parse(" nginx, haproxy.service ,,").unwrap();
        assert_eq!(list.units(), ["nginx", "haproxy"]);
        assert_eq!(list.check("haproxy").unwrap(), "haproxy");
        assert_eq!(list.check("nginx.service").unwrap(), "nginx.service");
        assert!(list.check("nginx.socket").is_err());
        assert!(list.check("sshd").is_err());
        for bad in ["reboot.target", "a;b", "../x"] {
            assert!(
                matches!(
                    ReloadAllowlist::parse(bad),
                    Err(CertshipError::Configuration(_))
                ),
                "{bad}"
            );
        }
        let empty = ReloadAllowlist::parse("").unwrap();
        assert!(
            empty
                .check("nginx")
                .unwrap_err()
                .to_string()
                .contains("allowed: none")
        );
    }

    #[test]
    fn partition_follows_the_home_region() {
        let list = ReloadAllowlist::parse("").unwrap();
        assert_eq!(
            RequestRules::new("cn-north-1", list.clone()).partition(),
            "aws-cn"
        );
        assert_eq!(
            RequestRules::new("us-gov-east-1", list.clone()).partition(),
            "aws-us-gov"
        );
        assert_eq!(RequestRules::new("eu-west-3", list).partition(), "aws");
    }

    #[test]
    fn an_acme_certificate_is_a_source_and_a_malformed_one_is_refused() {
        let mut acme = request();
        acme.certificate_arn = "acme:wildcard.example.com-0123456789ab".into();
        let valid = validate_request(&acme, &rules()).unwrap();
        assert_eq!(
            valid.source,
            CertificateSource::Acme("wildcard.example.com-0123456789ab".into())
        );
        for bad in [
            "acme:",
            "acme:x",
            "acme:x-0123456789AB",
            "acme:../x-0123456789ab",
        ] {
            acme.certificate_arn = bad.into();
            let message = invalid_message(&acme);
            assert!(message.contains("ACME certificate"), "{bad}: {message}");
        }
    }
}
