//! The ACME issuance workflow's contract: the request, what each step returns, the names derived
//! from a certificate, and the rules its domains keep. Shared by acme-certificate, the CLI and the
//! local cloud, so that none of them reads the workflow's state by string.

use crate::CertshipError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits. Try it first.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How a certificate names an ACME certificate where an ACM ARN could stand: `acme:<id>`.
pub const SOURCE_PREFIX: &str = "acme:";

/// Prefix of the secrets that only acme-certificate reads: the account credentials and the
/// certificate's own bundle. Outside `certship/`, which hosts' policies are scoped to, so no host
/// role can read them, whatever its tags.
pub const SECRET_PREFIX: &str = "certship-acme/";

/// Most names one order may carry (Let's Encrypt's limit per certificate).
pub const MAX_DOMAINS: usize = 100;

/// Days before expiry when a certificate is renewed, unless its request says otherwise.
pub const DEFAULT_RENEW_DAYS_BEFORE: u32 = 30;

/// The largest `RenewDaysBefore`: a year. A value at or above the certificate's lifetime (90 days
/// at Let's Encrypt) renews it at every sweep, which the CA's rate limits soon stop.
pub const MAX_RENEW_DAYS_BEFORE: u32 = 365;

/// The key the certificate is issued for, generated in the Lambda at each issuance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum KeyType {
    #[default]
    #[serde(rename = "ec-p256")]
    EcP256,
    #[serde(rename = "ec-p384")]
    EcP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

impl KeyType {
    pub const ALL: [KeyType; 3] = [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048];

    /// The name the CLI and the API take (`ec-p256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Rsa2048 => "rsa-2048",
        }
    }

    /// As ACM names key algorithms (`EC_prime256v1`, ...), for `$.Issued.KeyAlgorithm`.
    pub fn acm_name(self) -> &'static str {
        match self {
            KeyType::EcP256 => "EC_prime256v1",
            KeyType::EcP384 => "EC_secp384r1",
            KeyType::Rsa2048 => "RSA_2048",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The issuance workflow's input, from `certship acme issue`, the API or the renewal schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IssueRequest {
    /// Every name of the certificate; the first is its subject's common name.
    pub domains: Vec<String>,
    /// The Route53 hosted zone the DNS-01 records are written into; it must cover every name.
    pub hosted_zone_id: String,
    #[serde(default)]
    pub key_type: KeyType,
    /// The CA's directory URL (`https://`), or `letsencrypt` / `letsencrypt-staging`.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// `mailto:` addresses for the CA's expiry and policy mail, given when the account is made.
    #[serde(default)]
    pub contact: Vec<String>,
    /// Renew when fewer than this many days are left ([`DEFAULT_RENEW_DAYS_BEFORE`] if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_days_before: Option<u32>,
    /// Also import each issued certificate into ACM, re-importing under the same ARN on renewal,
    /// so load balancers and CloudFront can use it. Once imported, a certificate stays imported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub import_to_acm: bool,
}

fn default_directory() -> String {
    "letsencrypt-staging".to_string()
}

impl IssueRequest {
    /// The directory URL this request names.
    pub fn directory_url(&self) -> &str {
        match self.directory.as_str() {
            "letsencrypt" => LETS_ENCRYPT,
            "letsencrypt-staging" => LETS_ENCRYPT_STAGING,
            url => url,
        }
    }

    /// The certificate's id: its first name, readable (`*` as `wildcard`), and 12 hex digits of
    /// the digest of its sorted names and directory. The same names from the same CA are the
    /// same certificate, so issuing again renews it rather than making a second one.
    pub fn certificate_id(&self) -> String {
        let mut names: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        let digest = Sha256::digest(format!("{}|{}", names.join(","), self.directory_url()));
        let first = self
            .domains
            .first()
            .map(|d| d.to_ascii_lowercase().replace('*', "wildcard"))
            .unwrap_or_default();
        format!("{first}-{}", &hex::encode(digest)[..12])
    }

    /// Checks what can be checked without AWS or the CA: the names, the zone id, the directory
    /// and the contacts. Each failure says what is wrong and with which value.
    pub fn validate(&self) -> Result<(), CertshipError> {
        let invalid = |m: String| Err(CertshipError::InvalidRequest(m));
        if self.domains.is_empty() {
            return invalid("Domains is empty: name at least one domain".into());
        }
        if self.domains.len() > MAX_DOMAINS {
            return invalid(format!(
                "Domains has {} names; a certificate carries at most {MAX_DOMAINS}",
                self.domains.len()
            ));
        }
        for domain in &self.domains {
            validate_domain(domain)?;
        }
        let zone = self.hosted_zone_id.trim_start_matches("/hostedzone/");
        if zone.is_empty() || zone.len() > 32 || !zone.chars().all(|c| c.is_ascii_alphanumeric()) {
            return invalid(format!(
                "HostedZoneId {:?} is not a Route53 hosted zone id (like Z0123456789ABC)",
                self.hosted_zone_id
            ));
        }
        let url = self.directory_url();
        if url.strip_prefix("https://").is_none_or(str::is_empty)
            || url.len() > 1024
            || url.contains(char::is_whitespace)
        {
            return invalid(format!(
                "Directory {:?} is neither letsencrypt, letsencrypt-staging nor an https:// URL",
                self.directory
            ));
        }
        if let Some(days) = self.renew_days_before
            && !(1..=MAX_RENEW_DAYS_BEFORE).contains(&days)
        {
            return invalid(format!(
                "RenewDaysBefore {days} is outside 1 to {MAX_RENEW_DAYS_BEFORE} days"
            ));
        }
        for contact in &self.contact {
            if !contact.starts_with("mailto:") || contact.len() < 10 || !contact.contains('@') {
                return invalid(format!("Contact {contact:?} is not a mailto: address"));
            }
        }
        Ok(())
    }

    /// The days before expiry when the renewal schedule re-issues this certificate.
    pub fn renew_days_before(&self) -> u32 {
        self.renew_days_before.unwrap_or(DEFAULT_RENEW_DAYS_BEFORE)
    }

    /// The zone id without Route53's `/hostedzone/` prefix.
    pub fn zone_id(&self) -> &str {
        self.hosted_zone_id.trim_start_matches("/hostedzone/")
    }
}

/// A DNS name a public CA can issue for: LDH labels of 1 to 63 characters, at least two labels,
/// at most 253 characters, and `*.` only as the whole leftmost label.
pub fn validate_domain(domain: &str) -> Result<(), CertshipError> {
    let invalid = |why: &str| {
        Err(CertshipError::InvalidRequest(format!(
            "domain {domain:?} is not a DNS name a CA can issue for: {why}"
        )))
    };
    let name = domain.strip_prefix("*.").unwrap_or(domain);
    if name.is_empty() || domain.len() > 253 {
        return invalid("empty or longer than 253 characters");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return invalid("it needs at least two labels");
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return invalid("every label has 1 to 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return invalid("labels hold letters, digits and '-' (a wildcard only as '*.' first)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid("a label neither starts nor ends with '-'");
        }
    }
    Ok(())
}

/// Whether the zone `zone_name` (`example.com.` or `example.com`) covers `domain`: the domain's
/// DNS-01 record, `_acme-challenge.<domain without *.>`, is inside the zone.
pub fn zone_covers(zone_name: &str, domain: &str) -> bool {
    let zone = zone_name.trim_end_matches('.').to_ascii_lowercase();
    let name = domain
        .strip_prefix("*.")
        .unwrap_or(domain)
        .to_ascii_lowercase();
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// The DNS-01 record name for `domain` (RFC 8555 §8.4): `_acme-challenge.` before the name, the
/// wildcard's `*.` removed, with the final dot Route53 returns.
pub fn challenge_record_name(domain: &str) -> String {
    let name = domain
        .strip_prefix("*.")
        .unwrap_or(domain)
        .to_ascii_lowercase();
    format!("_acme-challenge.{name}.")
}

/// The secret holding the ACME account's credentials for one directory:
/// `certship-acme/account-<12 hex of sha256(directory URL)>`.
pub fn account_secret_name(directory_url: &str) -> String {
    let digest = Sha256::digest(directory_url.as_bytes());
    format!("{SECRET_PREFIX}account-{}", &hex::encode(digest)[..12])
}

/// The secret holding a certificate's bundle: `certship-acme/certificate/<id>`.
pub fn certificate_secret_name(certificate_id: &str) -> String {
    format!("{SECRET_PREFIX}certificate/{certificate_id}")
}

/// The certificate's id from `acme:<id>`, if `source` names an ACME certificate.
pub fn source_id(source: &str) -> Option<&str> {
    source
        .strip_prefix(SOURCE_PREFIX)
        .filter(|id| is_certificate_id(id))
}

/// Whether `id` has the shape [`IssueRequest::certificate_id`] gives.
pub fn is_certificate_id(id: &str) -> bool {
    let Some((name, digest)) = id.rsplit_once('-') else {
        return false;
    };
    digest.len() == 12
        && digest
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// One TXT record set the workflow wrote: its name and the values it added there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChallengeRecord {
    pub name: String,
    /// The DNS-01 values, unquoted. Public by design: they are in DNS for anyone to read.
    pub values: Vec<String>,
}

/// `$.Order`, written by the `Order` step: what later steps resume and what cleanup deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OrderResult {
    pub certificate_id: String,
    pub hosted_zone_id: String,
    pub order_url: String,
    /// The Route53 change to wait for; none when every authorization was already valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
    pub records: Vec<ChallengeRecord>,
    /// Whether the certificate goes into ACM too: asked for, or imported before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub import_to_acm: bool,
    /// The ACM certificate an earlier issuance imported, which this one re-imports over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm_certificate_arn: Option<String>,
}

/// What the `Order` step returns instead of an order when the CA refused it for a rate limit
/// that ends within the time an issuance waits: `{"RateLimited": {...}}` at `$.Order`, which
/// the machine's Wait state reads before placing the order again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RateLimitedOrder {
    pub rate_limited: RateLimitWait,
}

/// A rate limit waited out: how long, until when, and what the CA said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RateLimitWait {
    /// The Wait state's `SecondsPath`: at least 1.
    pub retry_after_seconds: u64,
    /// RFC 3339, UTC.
    pub retry_at: String,
    /// The CA's problem, as [`crate::CertshipError::RateLimited`] would have said it.
    pub detail: String,
}

/// `$.Imported`: the ACM certificate the issuance imported into (none when not imported).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm_certificate_arn: Option<String>,
}

/// The tag an imported ACM certificate carries: the certship certificate it is a copy of.
pub const ACM_TAG_KEY: &str = "certship:acme-certificate-id";

/// The Lambda's input: one step of the issuance, with what that step needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Step")]
pub enum Step {
    /// Account, order, and the DNS-01 values written in one UPSERT batch.
    Order {
        #[serde(rename = "Request")]
        request: IssueRequest,
        /// The execution's start (`$$.Execution.StartTime`): the CA's rate limits are waited out
        /// in the machine for at most an hour from it. Without it, none is waited out.
        #[serde(rename = "StartedAt", default, skip_serializing_if = "Option::is_none")]
        started_at: Option<String>,
    },
    /// Fails with the retryable `DnsChangePending` until Route53 reports the change `INSYNC`.
    DnsChange {
        #[serde(rename = "ChangeId")]
        change_id: String,
    },
    /// Tells the CA the challenges are ready.
    Answer {
        #[serde(rename = "Request")]
        request: IssueRequest,
        #[serde(rename = "Order")]
        order: OrderResult,
    },
    /// Fails with the retryable `OrderPending` until the CA has validated every name.
    CheckOrder {
        #[serde(rename = "Request")]
        request: IssueRequest,
        #[serde(rename = "Order")]
        order: OrderResult,
    },
    /// Key, CSR, certificate, and the new version of the certificate's secret.
    Finalize {
        #[serde(rename = "Request")]
        request: IssueRequest,
        #[serde(rename = "Order")]
        order: OrderResult,
    },
    /// Removes exactly the values the order wrote, on success and on failure.
    Cleanup {
        #[serde(rename = "Order")]
        order: OrderResult,
    },
    /// Records the new certificate in the registry (which the renewal schedule sweeps) and
    /// publishes `ACME Certificate Issued`, on which renewal-trigger redeploys its mappings.
    Record {
        #[serde(rename = "Request")]
        request: IssueRequest,
        #[serde(rename = "Issued")]
        issued: crate::ExportResult,
        #[serde(rename = "Imported", default)]
        imported: ImportResult,
        #[serde(rename = "Execution")]
        execution: String,
    },
    /// Imports the stored certificate into ACM, or re-imports it over the ARN of an earlier
    /// import.
    Import {
        #[serde(rename = "Order")]
        order: OrderResult,
        #[serde(rename = "Issued")]
        issued: crate::ExportResult,
    },
    /// Records a failed issuance. For a certificate issued before (a renewal), counts the
    /// failure in the registry, which backs the next attempt off, and publishes
    /// `Certificate Renewal Failed`.
    Failed {
        #[serde(rename = "Request")]
        request: IssueRequest,
        #[serde(rename = "Error")]
        error: StepError,
        #[serde(rename = "Execution")]
        execution: String,
    },
}

/// What a `Catch` puts at its `ResultPath`: the error name and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepError {
    pub error: String,
    #[serde(default)]
    pub cause: String,
}

/// What `DnsChange`, `Answer`, `CheckOrder` and `Cleanup` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepResult {
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(domains: &[&str]) -> IssueRequest {
        IssueRequest {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            hosted_zone_id: "Z0123456789ABC".into(),
            key_type: KeyType::EcP256,
            directory: "letsencrypt-staging".into(),
            contact: vec![],
            renew_days_before: None,
            import_to_acm: false,
        }
    }

    #[test]
    fn a_name_and_its_wildcard_are_valid_and_share_one_record_name() {
        request(&["example.com", "*.example.com"])
            .validate()
            .unwrap();
        assert_eq!(
            challenge_record_name("*.Example.com"),
            "_acme-challenge.example.com."
        );
        assert_eq!(
            challenge_record_name("example.com"),
            "_acme-challenge.example.com."
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_name() {
        for bad in [
            "",
            "com",
            "a..b.com",
            "*.*.x.com",
            "x.*.com",
            "-a.com",
            "a_b.com",
            "a b.com",
        ] {
            let err = request(&[bad]).validate().unwrap_err();
            assert_eq!(err.name(), "InvalidRequest", "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(request(&[]).validate().is_err());
        let long = format!("{}.com", "a".repeat(64));
        assert!(request(&[&long]).validate().is_err());
    }

    #[test]
    fn zone_id_directory_and_contact_are_checked() {
        let mut r = request(&["example.com"]);
        r.hosted_zone_id = "/hostedzone/Z0123".into();
        r.validate().unwrap();
        assert_eq!(r.zone_id(), "Z0123");
        r.hosted_zone_id = "Z01;drop".into();
        assert!(r.validate().is_err());
        let mut r = request(&["example.com"]);
        r.directory = "http://insecure/dir".into();
        assert!(r.validate().is_err());
        r.directory = "letsencrypt".into();
        assert_eq!(r.directory_url(), LETS_ENCRYPT);
        r.contact = vec!["ops@example.com".into()];
        assert!(r.validate().is_err());
        r.contact = vec!["mailto:ops@example.com".into()];
        r.validate().unwrap();
    }

    #[test]
    fn the_zone_covers_its_names_and_subnames_only() {
        assert!(zone_covers("example.com.", "example.com"));
        assert!(zone_covers("example.com.", "*.example.com"));
        assert!(zone_covers("Example.COM", "www.example.com"));
        assert!(!zone_covers("example.com.", "badexample.com"));
        assert!(!zone_covers("www.example.com.", "example.com"));
        assert!(!zone_covers("example.com.", "example.org"));
    }

    #[test]
    fn the_id_is_stable_under_order_and_case_and_differs_by_ca() {
        let a = request(&["example.com", "*.example.com"]);
        let b = request(&["*.EXAMPLE.com", "example.com"]);
        assert_eq!(
            a.certificate_id()[a.certificate_id().len() - 12..],
            b.certificate_id()[b.certificate_id().len() - 12..]
        );
        assert!(a.certificate_id().starts_with("example.com-"));
        assert!(b.certificate_id().starts_with("wildcard.example.com-"));
        assert!(is_certificate_id(&a.certificate_id()));
        assert!(is_certificate_id(&b.certificate_id()));
        let mut c = a.clone();
        c.directory = "letsencrypt".into();
        assert_ne!(a.certificate_id(), c.certificate_id());
        let source = format!("acme:{}", a.certificate_id());
        assert_eq!(source_id(&source), Some(a.certificate_id().as_str()));
        assert_eq!(source_id("acme:../x"), None);
        assert_eq!(source_id("arn:aws:acm:us-east-1:1:certificate/x"), None);
    }

    #[test]
    fn secrets_sit_outside_the_hosts_prefix() {
        assert!(!account_secret_name(LETS_ENCRYPT).starts_with(crate::naming::SECRET_PREFIX));
        assert_ne!(
            account_secret_name(LETS_ENCRYPT),
            account_secret_name(LETS_ENCRYPT_STAGING)
        );
        assert_eq!(
            certificate_secret_name("x-0123456789ab"),
            "certship-acme/certificate/x-0123456789ab"
        );
    }

    #[test]
    fn steps_read_the_state_machine_payloads() {
        let step: Step = serde_json::from_value(serde_json::json!({
            "Step": "Cleanup",
            "Order": {"CertificateId": "x.com-0123456789ab", "OrderUrl": "https://ca/o/1",
                      "HostedZoneId": "Z1",
                      "Records": [{"Name": "_acme-challenge.x.com.", "Values": ["v1", "v2"]}]}
        }))
        .unwrap();
        let Step::Cleanup { order } = step else {
            panic!("not Cleanup")
        };
        assert_eq!(order.records[0].values, ["v1", "v2"]);
        assert_eq!(order.change_id, None);
        let step: Step = serde_json::from_value(serde_json::json!({
            "Step": "Order",
            "Request": {"Domains": ["x.com"], "HostedZoneId": "Z1", "KeyType": "rsa-2048"}
        }))
        .unwrap();
        let Step::Order {
            request,
            started_at,
        } = step
        else {
            panic!("not Order")
        };
        assert_eq!(request.key_type, KeyType::Rsa2048);
        assert_eq!(request.directory, "letsencrypt-staging");
        assert_eq!(started_at, None);
        let step: Step = serde_json::from_value(serde_json::json!({
            "Step": "Order",
            "Request": {"Domains": ["x.com"], "HostedZoneId": "Z1"},
            "StartedAt": "2026-11-27T10:00:00.123Z"
        }))
        .unwrap();
        let Step::Order { started_at, .. } = step else {
            panic!("not Order")
        };
        assert_eq!(started_at.as_deref(), Some("2026-11-27T10:00:00.123Z"));
        let wait = RateLimitedOrder {
            rate_limited: RateLimitWait {
                retry_after_seconds: 120,
                retry_at: "2026-11-27T10:02:00Z".into(),
                detail: "too many new orders".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&wait).unwrap(),
            serde_json::json!({"RateLimited": {"RetryAfterSeconds": 120,
                "RetryAt": "2026-11-27T10:02:00Z", "Detail": "too many new orders"}})
        );
    }
}
