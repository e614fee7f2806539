//! Per-host evidence: what each host of a mapping last reported, one DynamoDB item per (mapping,
//! instance), written by record-host-evidence from the association's S3 output and read by
//! check-install-status and `certship hosts`. References, digests and outcomes only: never secret
//! material.

use crate::CertshipError;
use crate::host_report::{FileHashes, HostReport, Outcome};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// The variable naming the evidence table (set by the template on the functions that use it).
pub const EVIDENCE_TABLE_VAR: &str = "EVIDENCE_TABLE_NAME";

/// The longest `Error` kept on an item: enough for the document's messages, bounded for the
/// state machine's `Failures`.
pub const MAX_ERROR_CHARS: usize = 300;

/// Attribute names of an evidence item.
pub mod attr {
    /// Partition key: the mapping id (`naming::mapping_id`).
    pub const MAPPING_ID: &str = "MappingId";
    /// Sort key: the managed node (`i-…` or `mi-…`).
    pub const INSTANCE_ID: &str = "InstanceId";
    /// The tag value of the output key the run was written under: the only part of the key the
    /// host's IAM policy pins (`s3:PutObject` on `${aws:PrincipalTag/K}/*`).
    pub const TAG_VALUE: &str = "TagValue";
    pub const ASSOCIATION_ID: &str = "AssociationId";
    pub const RUN_ID: &str = "RunId";
    pub const OUTCOME: &str = "Outcome";
    pub const REASON: &str = "Reason";
    pub const SERIAL: &str = "Serial";
    pub const SECRET_VERSION_ID: &str = "SecretVersionId";
    pub const NOT_AFTER: &str = "NotAfter";
    pub const ERROR: &str = "Error";
    pub const SHA256: &str = "Sha256";
    pub const RELOADED: &str = "Reloaded";
    /// RFC 3339 UTC: when the run started, from the agent's run id.
    pub const OBSERVED_AT: &str = "ObservedAt";
}

/// Where the SSM Agent writes one association run's output, read from the right:
/// `<prefix>/<instance-id>/<association-id>/<run-id>/<plugin>/<step>/<stdout|stderr>`, where
/// certship's prefix is `<TagValue>/<mapping id>` (`naming::output_key_prefix`), the run id is
/// the run's start as `yyyy-MM-ddTHH-mm-ss.fffZ`, and the plugin is the action without its colon
/// (`awsrunShellScript`). Source: amazon-ssm-agent `agent/association/parser/parser.go`
/// (`InitializeDocumentState`), `agent/framework/docparser/docparser.go` (`BuildS3Path(s3Prefix,
/// pluginName)`), `agent/framework/runpluginutil/runpluginutil.go` (`output.Init(pluginName,
/// stepName)`), `agent/framework/processor/executer/iohandler/iohandler.go` (`stdout`,
/// `stderr`), `agent/times/times.go` (`ToIsoDashUTC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputKey {
    /// The tag value part of the prefix (may itself contain `/`).
    pub tag_value: String,
    pub mapping_id: String,
    pub instance_id: String,
    pub association_id: String,
    pub run_id: String,
    pub plugin: String,
    pub step: String,
    /// `stdout` or `stderr`.
    pub stream: String,
}

impl OutputKey {
    /// Reads an object key (already URL-decoded). `None` for any key not of the agent's layout.
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.rsplitn(8, '/');
        let stream = parts.next()?;
        let step = parts.next()?;
        let plugin = parts.next()?;
        let run_id = parts.next()?;
        let association_id = parts.next()?;
        let instance_id = parts.next()?;
        let mapping_id = parts.next()?;
        let tag_value = parts.next()?;
        let instance_ok = (instance_id.starts_with("i-") || instance_id.starts_with("mi-"))
            && instance_id[instance_id.find('-')? + 1..]
                .chars()
                .all(|c| c.is_ascii_hexdigit())
            && instance_id.len() > 3;
        if !matches!(stream, "stdout" | "stderr")
            || !instance_ok
            || association_id.is_empty()
            || mapping_id.is_empty()
            || step.is_empty()
            || plugin.is_empty()
            || run_started_at(run_id).is_none()
        {
            return None;
        }
        Some(Self {
            tag_value: tag_value.to_string(),
            mapping_id: mapping_id.to_string(),
            instance_id: instance_id.to_string(),
            association_id: association_id.to_string(),
            run_id: run_id.to_string(),
            plugin: plugin.to_string(),
            step: step.to_string(),
            stream: stream.to_string(),
        })
    }

    /// When the run started, RFC 3339 (`2026-11-27T05:03:01.123Z`).
    pub fn observed_at(&self) -> String {
        run_started_at(&self.run_id).unwrap_or_default()
    }
}

/// `2026-11-27T05-03-01.123Z` (the agent's run id) as `2026-11-27T05:03:01.123Z`.
fn run_started_at(run_id: &str) -> Option<String> {
    let b = run_id.as_bytes();
    let shape = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b'-'
        && b[16] == b'-'
        && b[19] == b'.'
        && b[23] == b'Z'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..23]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit));
    shape.then(|| format!("{}:{}:{}", &run_id[..13], &run_id[14..16], &run_id[17..]))
}

/// One host's latest evidence for one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEvidence {
    pub mapping_id: String,
    pub instance_id: String,
    /// The tag value its output was written under; see [`HostEvidence::written_under`].
    pub tag_value: Option<String>,
    pub association_id: Option<String>,
    pub run_id: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub serial: Option<String>,
    pub secret_version_id: Option<String>,
    pub not_after: Option<String>,
    pub error: Option<String>,
    pub sha256: Option<FileHashes>,
    pub reloaded: bool,
    /// RFC 3339 UTC.
    pub observed_at: String,
}

/// Replaces a line of host output that looks like secret material.
pub const REDACTED: &str = "[redacted: secret material]";
/// Lines carrying these never leave the host's output: a broken script must not leak the bundle.
const SECRET_MARKERS: [&str; 4] = [
    "PRIVATE KEY-----",
    "\"passphrase\"",
    "encrypted_private_key",
    "SecretString",
];

/// Host output with every private key block, and every line that looks like the secret's JSON,
/// replaced: whatever a broken script printed, it never reaches the state, the event or a log.
pub fn redact(output: &str) -> String {
    let mut lines = Vec::new();
    let mut in_key = false;
    for line in output.lines() {
        let key_marker = line.contains("PRIVATE KEY-----");
        if in_key {
            in_key = !(key_marker && line.contains("-----END"));
        } else if key_marker && line.contains("-----BEGIN") && !line.contains("-----END") {
            in_key = true;
            lines.push(REDACTED);
        } else if SECRET_MARKERS.iter().any(|m| line.contains(m)) {
            lines.push(REDACTED);
        } else {
            lines.push(line);
        }
    }
    lines.join("\n")
}

impl HostEvidence {
    /// The evidence one run's report gives, placed by its output key.
    pub fn from_report(key: &OutputKey, report: &HostReport) -> Self {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Self {
            mapping_id: key.mapping_id.clone(),
            instance_id: key.instance_id.clone(),
            tag_value: Some(key.tag_value.clone()),
            association_id: Some(key.association_id.clone()),
            run_id: Some(key.run_id.clone()),
            outcome: report.outcome(),
            reason: non_empty(&report.reason),
            serial: non_empty(&report.serial),
            secret_version_id: non_empty(&report.secret_version_id),
            not_after: non_empty(&report.not_after),
            error: non_empty(&report.error)
                .map(|e| redact(&e).chars().take(MAX_ERROR_CHARS).collect()),
            sha256: report.sha256.clone(),
            reloaded: report.reloaded.unwrap_or(false),
            observed_at: key.observed_at(),
        }
    }

    /// Whether the run was written under the mapping's own target tag value. A host may write
    /// output only under its own tag's prefix, but the rest of the key (mapping and instance) is
    /// its to choose: evidence written under another tag value is another target's host
    /// speaking for this mapping, and readers ignore it.
    pub fn written_under(&self, tag_value: &str) -> bool {
        self.tag_value.as_deref() == Some(tag_value)
    }

    /// The host holds `secret_version_id` (its last run installed, repaired or confirmed it).
    pub fn holds(&self, secret_version_id: &str) -> bool {
        self.outcome.holds_version() && self.secret_version_id.as_deref() == Some(secret_version_id)
    }

    /// The host's last run failed for `secret_version_id`.
    pub fn failed(&self, secret_version_id: &str) -> bool {
        self.outcome.is_failure() && self.secret_version_id.as_deref() == Some(secret_version_id)
    }

    /// The item's primary key.
    pub fn key(mapping_id: &str, instance_id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (attr::MAPPING_ID.to_string(), s(mapping_id)),
            (attr::INSTANCE_ID.to_string(), s(instance_id)),
        ])
    }

    /// The whole item, keys included.
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let mut item = Self::key(&self.mapping_id, &self.instance_id);
        item.insert(attr::OUTCOME.into(), s(self.outcome.as_str()));
        item.insert(attr::RELOADED.into(), AttributeValue::Bool(self.reloaded));
        item.insert(attr::OBSERVED_AT.into(), s(&self.observed_at));
        let optional = [
            (attr::TAG_VALUE, &self.tag_value),
            (attr::ASSOCIATION_ID, &self.association_id),
            (attr::RUN_ID, &self.run_id),
            (attr::REASON, &self.reason),
            (attr::SERIAL, &self.serial),
            (attr::SECRET_VERSION_ID, &self.secret_version_id),
            (attr::NOT_AFTER, &self.not_after),
            (attr::ERROR, &self.error),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        if let Some(hashes) = &self.sha256 {
            item.insert(
                attr::SHA256.into(),
                AttributeValue::M(HashMap::from([
                    ("cert".to_string(), s(&hashes.cert)),
                    ("chain".to_string(), s(&hashes.chain)),
                    ("fullchain".to_string(), s(&hashes.fullchain)),
                    ("privkey".to_string(), s(&hashes.privkey)),
                ])),
            );
        }
        item
    }

    /// Reads an item of the evidence table.
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, CertshipError> {
        let required = |name: &str| {
            get_s(item, name).ok_or_else(|| {
                CertshipError::Service(format!("evidence item without a string {name}"))
            })
        };
        let sha256 = item
            .get(attr::SHA256)
            .and_then(|v| v.as_m().ok())
            .map(|m| FileHashes {
                cert: get_s(m, "cert").unwrap_or_default(),
                chain: get_s(m, "chain").unwrap_or_default(),
                fullchain: get_s(m, "fullchain").unwrap_or_default(),
                privkey: get_s(m, "privkey").unwrap_or_default(),
            });
        Ok(Self {
            mapping_id: required(attr::MAPPING_ID)?,
            instance_id: required(attr::INSTANCE_ID)?,
            association_id: get_s(item, attr::ASSOCIATION_ID),
            tag_value: get_s(item, attr::TAG_VALUE),
            run_id: get_s(item, attr::RUN_ID),
            outcome: Outcome::parse(&required(attr::OUTCOME)?),
            reason: get_s(item, attr::REASON),
            serial: get_s(item, attr::SERIAL),
            secret_version_id: get_s(item, attr::SECRET_VERSION_ID),
            not_after: get_s(item, attr::NOT_AFTER),
            error: get_s(item, attr::ERROR),
            sha256,
            reloaded: item
                .get(attr::RELOADED)
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            observed_at: required(attr::OBSERVED_AT)?,
        })
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn get_s(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key exactly as the agent writes it for certship's prefix.
    const KEY: &str = "dev/web-0123456789ab/i-0abc123def4567890/\
                       8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a/2026-11-27T05-03-01.123Z/\
                       awsrunShellScript/InstallCertificate/stdout";

    #[test]
    fn the_agents_output_key_is_read_from_the_right() {
        let key = OutputKey::parse(KEY).unwrap();
        assert_eq!(key.tag_value, "dev");
        assert_eq!(key.mapping_id, "web-0123456789ab");
        assert_eq!(key.instance_id, "i-0abc123def4567890");
        assert_eq!(key.association_id, "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a");
        assert_eq!(key.plugin, "awsrunShellScript");
        assert_eq!(key.step, "InstallCertificate");
        assert_eq!(key.stream, "stdout");
        assert_eq!(key.observed_at(), "2026-11-27T05:03:01.123Z");

        // a tag value with slashes stays whole; an on-premises node reads too
        let nested = KEY
            .replacen("dev/", "team/a b/", 1)
            .replace("i-0abc123def4567890", "mi-0123456789abcdef0");
        let key = OutputKey::parse(&nested).unwrap();
        assert_eq!(key.tag_value, "team/a b");
        assert_eq!(key.instance_id, "mi-0123456789abcdef0");
    }

    #[test]
    fn keys_of_another_layout_are_refused() {
        for bad in [
            "",
            "stdout",
            &KEY.replace("/stdout", "/stdout.txt"),
            &KEY.replace("i-0abc123def4567890", "host1"),
            &KEY.replace("2026-11-27T05-03-01.123Z", "2026-11-27T05:03:01Z"),
            // no tag value before the mapping id
            &KEY.replacen("dev/", "", 1),
        ] {
            assert_eq!(OutputKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn evidence_round_trips_through_an_item_and_judges_versions() {
        let report = HostReport::from_output(&format!(
            r#"{{"cert_name":"web","secret_version_id":"v2","serial":"EC256","not_after":"2027-01-01T00:00:00Z","status":"repaired","reason":"drift","changed":true,"reloaded":true,"rolled_back":false,"sha256":{{"cert":"{0}","chain":"{0}","fullchain":"{0}","privkey":"{0}"}}}}"#,
            "cd".repeat(32)
        ))
        .unwrap();
        let evidence = HostEvidence::from_report(&OutputKey::parse(KEY).unwrap(), &report);
        assert_eq!(evidence.outcome, Outcome::Repaired);
        assert_eq!(evidence.observed_at, "2026-11-27T05:03:01.123Z");
        assert!(evidence.reloaded);
        assert!(evidence.holds("v2") && !evidence.holds("v1") && !evidence.failed("v2"));
        let item = evidence.to_item();
        assert_eq!(item[attr::MAPPING_ID].as_s().unwrap(), "web-0123456789ab");
        assert_eq!(HostEvidence::from_item(&item).unwrap(), evidence);

        let failed = HostReport::from_output(
            r#"{"cert_name":"web","secret_version_id":"v2","serial":"EC256","status":"backoff","error":"reloading nginx failed: rolled back"}"#,
        )
        .unwrap();
        let evidence = HostEvidence::from_report(&OutputKey::parse(KEY).unwrap(), &failed);
        assert!(evidence.failed("v2") && !evidence.failed("v1") && !evidence.holds("v2"));
        assert_eq!(
            HostEvidence::from_item(&evidence.to_item()).unwrap(),
            evidence
        );
    }

    #[test]
    fn evidence_remembers_the_tag_value_it_was_written_under() {
        let report =
            HostReport::from_output(r#"{"cert_name":"web","status":"unchanged"}"#).unwrap();
        let evidence = HostEvidence::from_report(&OutputKey::parse(KEY).unwrap(), &report);
        assert!(evidence.written_under("dev"));
        assert!(!evidence.written_under("prod") && !evidence.written_under("de"));
        let read = HostEvidence::from_item(&evidence.to_item()).unwrap();
        assert_eq!(read.tag_value.as_deref(), Some("dev"));
        let mut unmarked = evidence.clone();
        unmarked.tag_value = None;
        assert!(
            !unmarked.written_under("dev"),
            "an item without one is no one's"
        );
    }

    #[test]
    fn key_blocks_and_secret_json_lines_are_redacted() {
        let output = "ok\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n\
                      {\"passphrase\":\"x\"}\nERROR: bad key";
        assert_eq!(
            redact(output),
            format!("ok\n{REDACTED}\n{REDACTED}\nERROR: bad key")
        );
    }

    #[test]
    fn secret_material_in_a_hosts_error_is_redacted_before_it_is_stored() {
        let report = HostReport {
            status: Some("failed".into()),
            error: Some(
                "decrypting\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0w\n\
                 -----END ENCRYPTED PRIVATE KEY-----\n{\"passphrase\": \"hunter2hunter2\"}\n\
                 the key does not match"
                    .into(),
            ),
            ..HostReport::default()
        };
        let evidence = HostEvidence::from_report(&OutputKey::parse(KEY).unwrap(), &report);
        let error = evidence.error.unwrap();
        assert_eq!(
            error,
            format!("decrypting\n{REDACTED}\n{REDACTED}\nthe key does not match")
        );
        for secret in ["MIIFHDBOBgkqhkiG9w0BBQ0w", "hunter2hunter2"] {
            assert!(!error.contains(secret), "{error}");
        }
    }

    #[test]
    fn a_long_error_is_cut_and_an_item_without_keys_is_an_error() {
        let report = HostReport {
            status: Some("failed".into()),
            error: Some("e".repeat(2 * MAX_ERROR_CHARS)),
            ..HostReport::default()
        };
        let evidence = HostEvidence::from_report(&OutputKey::parse(KEY).unwrap(), &report);
        assert_eq!(evidence.error.unwrap().len(), MAX_ERROR_CHARS);
        let err = HostEvidence::from_item(&HostEvidence::key("m", "i-1")).unwrap_err();
        assert!(err.to_string().contains("Outcome"), "{err}");
    }
}
