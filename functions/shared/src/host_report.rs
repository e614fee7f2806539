//! The host's report: the one JSON line the install document
//! (`ssm-documents/install-certificate-linux.yaml`, step 7) prints as its outcome, and the one
//! rule that finds it in what a host printed.

use crate::serial::Serial;
use serde::{Deserialize, Serialize};

/// What the install document says it did on one host, as its `report` function prints it:
///
/// ```json
/// {"cert_name":"web","secret_version_id":"...","serial":"EC256","not_after":"...",
///  "status":"installed","reason":"new-serial","changed":true,"reloaded":true,
///  "rolled_back":false,"sha256":{"cert":"...","chain":"...","fullchain":"...","privkey":"..."}}
/// ```
///
/// plus `"error"` when it failed. `status` is the [`Outcome`], `reason` why the files were
/// (re)written. Every field is optional, so a report from an older or newer
/// document still reads; fields this type does not name are kept in [`other`](Self::other) and
/// written back unchanged. Never secret material: the document prints references and flags only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_name: Option<String>,
    /// The installed (or attempted) certificate's serial as openssl prints it (`EC256`); empty
    /// when the script failed before reading it. See [`HostReport::serial`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// The secret version the host was asked to hold (a reference, as the document's parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version_id: Option<String>,
    /// The [`Outcome`] as the document prints it; see [`HostReport::outcome`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why the files were written: `missing`, `new-serial` or `drift` ([`Reason`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// SHA-256 of each installed file as it is on disk after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<FileHashes>,
    /// Whether the live files changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// Whether `ReloadService` was reloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloaded: Option<bool>,
    /// Whether a failed reload put the previous certificate back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    /// Why the script failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields this type does not name, as the host printed them.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl HostReport {
    /// A report line is short; a longer line is not read, so whatever carries a report (the
    /// deployment event, `$.Install`) stays bounded.
    pub const MAX_LINE_BYTES: usize = 1000;

    /// The report in a host's output: the last line that starts with `{`, when it is at most
    /// [`MAX_LINE_BYTES`](Self::MAX_LINE_BYTES) long and is a JSON object of the report's shape.
    /// The document prints its report last; anything after it (SSM's stderr section) is not JSON.
    pub fn from_output(stdout: &str) -> Option<Self> {
        stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| line.starts_with('{'))
            .filter(|line| line.len() <= Self::MAX_LINE_BYTES)
            .and_then(|line| serde_json::from_str(line).ok())
    }

    /// The serial, when the host printed one.
    pub fn serial(&self) -> Option<Serial> {
        self.serial.as_deref().and_then(|s| s.parse().ok())
    }

    /// What the run did; a report without a status is [`Outcome::Other`] of `""`.
    pub fn outcome(&self) -> Outcome {
        Outcome::parse(self.status.as_deref().unwrap_or(""))
    }
}

/// SHA-256 (lowercase hex) of the four installed files. A digest of a file, never its content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHashes {
    #[serde(default)]
    pub cert: String,
    #[serde(default)]
    pub chain: String,
    #[serde(default)]
    pub fullchain: String,
    #[serde(default)]
    pub privkey: String,
}

/// What one run of the install document did on one host (its report's `status`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Nothing of this certificate was there, or another serial was: the files were written.
    Installed,
    /// The files were already byte-identical to this version's, with their modes and owner.
    Unchanged,
    /// This serial was installed but a file differed (bytes, mode, owner) or was gone: rewritten.
    Repaired,
    /// The run failed before touching the live files, or could not swap them.
    Failed,
    /// The reload failed, so the previous files were put back; the run failed.
    RolledBack,
    /// This version was rolled back recently on this host and is not retried until the back-off
    /// window ends; the run failed without touching anything.
    Backoff,
    /// A status this code does not know (a newer document's), kept as printed.
    Other(String),
}

impl Outcome {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Installed => "installed",
            Self::Unchanged => "unchanged",
            Self::Repaired => "repaired",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::Backoff => "backoff",
            Self::Other(status) => status,
        }
    }

    pub fn parse(status: &str) -> Self {
        match status {
            "installed" => Self::Installed,
            "unchanged" => Self::Unchanged,
            "repaired" => Self::Repaired,
            "failed" => Self::Failed,
            "rolled-back" => Self::RolledBack,
            "backoff" => Self::Backoff,
            other => Self::Other(other.to_string()),
        }
    }

    /// The host holds the version it was asked for.
    pub fn holds_version(&self) -> bool {
        matches!(self, Self::Installed | Self::Unchanged | Self::Repaired)
    }

    /// The run failed for the version it was asked for.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed | Self::RolledBack | Self::Backoff)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest back-off a host can be told (`BackoffMinutes`, about 69 days): what the install
/// document's `allowedPattern` `^[0-9]{1,5}$` admits. dispatch-install refuses more at cold start,
/// and `stack/tests/install_document.rs` pins the pattern to this bound.
pub const MAX_BACKOFF_MINUTES: u32 = 99_999;

/// Why the document wrote the files (its report's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// None of the four files was there.
    Missing,
    /// Another serial was installed.
    NewSerial,
    /// This serial was installed, but a file's bytes, mode or owner differed, or one was gone.
    Drift,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::NewSerial => "new-serial",
            Self::Drift => "drift",
        }
    }

    pub fn parse(reason: &str) -> Option<Self> {
        match reason {
            "missing" => Some(Self::Missing),
            "new-serial" => Some(Self::NewSerial),
            "drift" => Some(Self::Drift),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The line the document prints after installing (its `report` function's format).
    const INSTALLED: &str = r#"{"cert_name":"web","serial":"EC256","not_after":"2027-01-01T00:00:00Z","status":"installed","changed":true,"reloaded":true,"rolled_back":false}"#;

    #[test]
    fn the_report_is_read_among_other_output() {
        let output = format!(
            "certship: installed web serial EC256\n{INSTALLED}\n----------ERROR-------\nwarning\n"
        );
        let report = HostReport::from_output(&output).unwrap();
        assert_eq!(report.cert_name.as_deref(), Some("web"));
        assert_eq!(report.status.as_deref(), Some("installed"));
        assert_eq!(
            (report.changed, report.reloaded, report.rolled_back),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(report.serial(), Some("0e:c2:56".parse().unwrap()));
        assert_eq!(report.error, None);
        assert!(report.other.is_empty());
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::from_str::<serde_json::Value>(INSTALLED).unwrap(),
            "written back as the host printed it"
        );
    }

    #[test]
    fn a_failure_report_carries_its_error_and_unknown_fields_are_kept() {
        let line = r#"{"cert_name":"web","serial":"","not_after":"","status":"failed","changed":false,"reloaded":false,"rolled_back":false,"error":"SecretVersionId is not a version id","host":"i-0aaa"}"#;
        let report = HostReport::from_output(line).unwrap();
        assert_eq!(
            report.error.as_deref(),
            Some("SecretVersionId is not a version id")
        );
        assert_eq!(report.serial(), None, "an empty serial is no serial");
        assert_eq!(report.other["host"], "i-0aaa");
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }

    #[test]
    fn the_outcome_is_the_last_json_line_the_host_printed() {
        let line = r#"{"cert_name":"web","changed":false}"#;
        assert_eq!(
            serde_json::to_value(
                HostReport::from_output(&format!(
                    "{{\"stale\":1}}\n{line}\n----------ERROR-------\nwarning\n"
                ))
                .unwrap()
            )
            .unwrap(),
            json!({"cert_name": "web", "changed": false})
        );
        assert_eq!(HostReport::from_output("installed\n"), None);
        assert_eq!(HostReport::from_output("{not json"), None);
        assert_eq!(HostReport::from_output("[1, 2]"), None);
        assert_eq!(
            HostReport::from_output(r#"{"changed":"yes"}"#),
            None,
            "a report's flags are booleans"
        );
    }

    #[test]
    fn a_convergence_report_carries_outcome_reason_and_hashes() {
        let hash = "ab".repeat(32);
        let line = format!(
            r#"{{"cert_name":"web","secret_version_id":"v-1","serial":"EC256","not_after":"2027-01-01T00:00:00Z","status":"repaired","reason":"drift","changed":true,"reloaded":true,"rolled_back":false,"sha256":{{"cert":"{hash}","chain":"{hash}","fullchain":"{hash}","privkey":"{hash}"}}}}"#
        );
        assert!(line.len() < HostReport::MAX_LINE_BYTES, "{}", line.len());
        let report = HostReport::from_output(&line).unwrap();
        assert_eq!(report.outcome(), Outcome::Repaired);
        assert_eq!(
            report.reason.as_deref().and_then(Reason::parse),
            Some(Reason::Drift)
        );
        assert_eq!(report.sha256.as_ref().unwrap().privkey, hash);
        assert_eq!(report.secret_version_id.as_deref(), Some("v-1"));
        assert!(report.other.is_empty());
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::from_str::<serde_json::Value>(&line).unwrap()
        );
    }

    #[test]
    fn outcomes_round_trip_and_classify() {
        for (outcome, printed, holds, fails) in [
            (Outcome::Installed, "installed", true, false),
            (Outcome::Unchanged, "unchanged", true, false),
            (Outcome::Repaired, "repaired", true, false),
            (Outcome::Failed, "failed", false, true),
            (Outcome::RolledBack, "rolled-back", false, true),
            (Outcome::Backoff, "backoff", false, true),
            (Outcome::Other("paused".into()), "paused", false, false),
        ] {
            assert_eq!(outcome.as_str(), printed);
            assert_eq!(Outcome::parse(printed), outcome);
            assert_eq!(
                (outcome.holds_version(), outcome.is_failure()),
                (holds, fails)
            );
        }
        for reason in [Reason::Missing, Reason::NewSerial, Reason::Drift] {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("bored"), None);
    }

    #[test]
    fn an_overlong_line_is_refused() {
        let long = format!("{{\"pad\":\"{}\"}}", "p".repeat(HostReport::MAX_LINE_BYTES));
        assert_eq!(HostReport::from_output(&long), None);
        let just = format!(
            "{{\"pad\":\"{}\"}}",
            "p".repeat(HostReport::MAX_LINE_BYTES - 10)
        );
        assert_eq!(just.len(), HostReport::MAX_LINE_BYTES);
        assert!(HostReport::from_output(&just).is_some());
        // the last report line decides: an earlier one is not used instead
        assert_eq!(
            HostReport::from_output(&format!("{INSTALLED}\n{long}")),
            None
        );
    }
}
