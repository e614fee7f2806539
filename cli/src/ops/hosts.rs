//! Where each host of a tag target stands for each of its mappings: the managed nodes that carry
//! the tag ([`super::nodes`]) joined with each mapping's evidence ([`super::evidence`]). One node
//! listing per target and one evidence query per mapping answer `certship hosts`, the `HOSTS`
//! column of `certship status` and the host table of a deployment alike.

use super::evidence;
use super::nodes::{self, Node};
use super::table;
use anyhow::Result;
use certship_shared::evidence::HostEvidence;
use certship_shared::mapping::Mapping;
use certship_shared::naming::mapping_id;
use certship_shared::{DeploymentRequest, ExportResult, HostCounts, Serial};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::SystemTime;

/// What the hosts of one mapping are judged against: the version they should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub mapping_id: String,
    pub cert_name: String,
    pub certificate_arn: String,
    /// The secret version the association installs; `None` for a mapping written before
    /// convergence, which is judged by its serial alone.
    pub secret_version_id: Option<String>,
    /// The serial of that version, in ACM's notation.
    pub serial: Option<String>,
}

impl Desired {
    /// A mapping's current version.
    pub fn of_mapping(mapping: &Mapping) -> Self {
        Self {
            mapping_id: mapping_id(
                &mapping.cert_name,
                &mapping.certificate_arn,
                &mapping.target_tag_key,
                &mapping.target_tag_value,
            ),
            cert_name: mapping.cert_name.clone(),
            certificate_arn: mapping.certificate_arn.clone(),
            secret_version_id: mapping.secret_version_id.clone(),
            serial: mapping.serial.clone(),
        }
    }

    /// The version a deployment exported (`$.Export`) for its request.
    pub fn of_deployment(request: &DeploymentRequest, export: &ExportResult) -> Self {
        Self {
            mapping_id: mapping_id(
                &request.cert_name,
                &request.certificate_arn,
                &request.target_tag_key,
                &request.target_tag_value,
            ),
            cert_name: request.cert_name.clone(),
            certificate_arn: request.certificate_arn.clone(),
            secret_version_id: Some(export.secret_version_id.clone()),
            serial: Some(export.serial.clone()),
        }
    }

    /// Whether the host's last run installed, repaired or confirmed this version.
    pub fn held_by(&self, evidence: &HostEvidence) -> bool {
        match &self.secret_version_id {
            Some(version) => evidence.holds(version),
            None => evidence.outcome.holds_version() && self.same_serial(evidence),
        }
    }

    /// Whether the host's last run failed for this version.
    pub fn failed_on(&self, evidence: &HostEvidence) -> bool {
        match &self.secret_version_id {
            Some(version) => evidence.failed(version),
            None => evidence.outcome.is_failure() && self.same_serial(evidence),
        }
    }

    fn same_serial(&self, evidence: &HostEvidence) -> bool {
        matches!(
            (self.serial.as_deref(), evidence.serial.as_deref()),
            (Some(a), Some(b)) if certship_shared::serial::same_serial(a, b)
        )
    }
}

/// Where one host stands for one mapping's version, as the deployment event names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    /// It holds the version.
    Converged,
    /// Its last run failed for the version.
    Failed,
    /// It does not hold the version and its agent does not answer: the association reaches it
    /// when it comes back.
    Deferred,
    /// It is online and has not reported the version yet.
    Pending,
}

impl Standing {
    pub fn of(node: &Node, evidence: Option<&HostEvidence>, desired: &Desired) -> Self {
        match evidence {
            Some(e) if desired.held_by(e) => Self::Converged,
            Some(e) if desired.failed_on(e) => Self::Failed,
            _ if !node.online() => Self::Deferred,
            _ => Self::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Converged => "Converged",
            Self::Failed => "Failed",
            Self::Deferred => "Deferred",
            Self::Pending => "Pending",
        }
    }
}

/// Which rows `certship hosts` keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Filter {
    #[default]
    All,
    /// Not holding the mapping's current version: no evidence, an older version, or a failure.
    Stale,
    /// The last run failed, whatever version it was for.
    Failed,
    /// Hosts not known to serve this serial under any of the target's mappings: no evidence,
    /// another serial, or a run that failed (a failed run reports the serial it tried, not the
    /// one it serves). A host is kept or dropped whole, with all its rows.
    NotSerial(Serial),
}

impl Filter {
    /// Whether `row` passes on its own; [`TargetHosts::kept`] applies `NotSerial` per host.
    pub fn keeps(&self, row: &HostRow<'_>) -> bool {
        match self {
            Self::All => true,
            Self::Stale => !row.current(),
            Self::Failed => row.evidence.is_some_and(|e| e.outcome.is_failure()),
            Self::NotSerial(wanted) => !row.evidence.is_some_and(|e| {
                e.outcome.holds_version()
                    && e.serial.as_deref().and_then(|s| s.parse::<Serial>().ok())
                        == Some(wanted.clone())
            }),
        }
    }
}

/// One mapping of the target with its hosts' evidence.
#[derive(Debug, Clone)]
pub struct MappingEvidence {
    pub desired: Desired,
    /// By instance id; may hold hosts that no longer carry the tag.
    pub evidence: HashMap<String, HostEvidence>,
}

/// The hosts of one tag target and the evidence of each of its mappings.
#[derive(Debug, Clone)]
pub struct TargetHosts {
    pub target: (String, String),
    pub nodes: Vec<Node>,
    pub mappings: Vec<MappingEvidence>,
}

/// One (host, mapping) pair.
#[derive(Debug, Clone, Copy)]
pub struct HostRow<'a> {
    pub node: &'a Node,
    pub desired: &'a Desired,
    pub evidence: Option<&'a HostEvidence>,
    pub standing: Standing,
}

impl HostRow<'_> {
    /// The host holds the mapping's current version.
    pub fn current(&self) -> bool {
        self.standing == Standing::Converged
    }
}

/// The nodes tagged `target` (one listing) and, for each of `desired`, its evidence (one query
/// each).
pub async fn collect(
    ssm: &aws_sdk_ssm::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    evidence_table: &str,
    target: &(String, String),
    desired: Vec<Desired>,
) -> Result<TargetHosts> {
    let nodes = nodes::tagged(ssm, &target.0, &target.1).await?;
    let mut mappings = Vec::with_capacity(desired.len());
    for desired in desired {
        let evidence =
            evidence::of_mapping(dynamodb, evidence_table, &desired.mapping_id, &target.1).await?;
        mappings.push(MappingEvidence { desired, evidence });
    }
    Ok(TargetHosts {
        target: target.clone(),
        nodes,
        mappings,
    })
}

impl TargetHosts {
    /// Every (host, mapping) pair: hosts in instance order, each host's mappings in the order
    /// given.
    pub fn rows(&self) -> Vec<HostRow<'_>> {
        self.nodes
            .iter()
            .flat_map(|node| {
                self.mappings.iter().map(move |m| {
                    let evidence = m.evidence.get(&node.instance_id);
                    HostRow {
                        node,
                        desired: &m.desired,
                        evidence,
                        standing: Standing::of(node, evidence, &m.desired),
                    }
                })
            })
            .collect()
    }

    /// The rows `filter` keeps. `NotSerial` judges each host by all its mappings: a host serving
    /// the serial under one name serves it, and is dropped with all its rows.
    pub fn kept(&self, filter: &Filter) -> Vec<HostRow<'_>> {
        let rows = self.rows();
        match filter {
            Filter::NotSerial(_) => {
                let serving: std::collections::HashSet<&str> = rows
                    .iter()
                    .filter(|row| !filter.keeps(row))
                    .map(|row| row.node.instance_id.as_str())
                    .collect();
                rows.into_iter()
                    .filter(|row| !serving.contains(row.node.instance_id.as_str()))
                    .collect()
            }
            _ => rows.into_iter().filter(|row| filter.keeps(row)).collect(),
        }
    }

    /// The counts of one mapping's hosts (`succeeded` = converged), as `$.Install.Hosts` has
    /// them.
    pub fn counts(&self, mapping: usize) -> HostCounts {
        let mut counts = HostCounts::default();
        let Some(m) = self.mappings.get(mapping) else {
            return counts;
        };
        for node in &self.nodes {
            counts.total += 1;
            match Standing::of(node, m.evidence.get(&node.instance_id), &m.desired) {
                Standing::Converged => counts.succeeded += 1,
                Standing::Failed => counts.failed += 1,
                Standing::Deferred => counts.deferred += 1,
                Standing::Pending => counts.pending += 1,
            }
        }
        counts
    }

    /// Hosts that reported for some mapping of the target but no longer carry the tag (or are
    /// no longer registered): they are not listed.
    pub fn untagged_with_evidence(&self) -> usize {
        let tagged: std::collections::HashSet<&str> =
            self.nodes.iter().map(|n| n.instance_id.as_str()).collect();
        let mut others: Vec<&str> = self
            .mappings
            .iter()
            .flat_map(|m| m.evidence.keys())
            .map(String::as_str)
            .filter(|id| !tagged.contains(id))
            .collect();
        others.sort_unstable();
        others.dedup();
        others.len()
    }

    /// The `certship hosts` table, with a summary per mapping under it.
    pub fn text(&self, filter: &Filter, now: SystemTime, colour: bool) -> String {
        let (key, value) = &self.target;
        if self.mappings.is_empty() {
            return format!("No mapping targets {key}={value}. `certship status` lists them.");
        }
        if self.nodes.is_empty() {
            return format!(
                "No managed node carries {key}={value} (DescribeInstanceInformation lists none)."
            );
        }
        let rows: Vec<Vec<String>> = self
            .kept(filter)
            .into_iter()
            .map(|row| {
                let e = row.evidence;
                let outcome = e.map_or("-".to_string(), |e| {
                    let text = e.outcome.to_string();
                    if e.outcome.is_failure() {
                        table::highlight(&text, colour, true)
                    } else {
                        text
                    }
                });
                let ping = if row.node.online() {
                    row.node.ping_name().to_string()
                } else {
                    table::highlight(row.node.ping_name(), colour, false)
                };
                vec![
                    row.node.instance_id.clone(),
                    ping,
                    row.desired.cert_name.clone(),
                    e.map_or("-".to_string(), shown_serial),
                    outcome,
                    e.map_or("-".to_string(), reason),
                    e.map_or("-".to_string(), |e| age(&e.observed_at, now)),
                    if row.current() { "yes" } else { "no" }.to_string(),
                ]
            })
            .collect();
        let mut text = if rows.is_empty() {
            "No host matches.".to_string()
        } else {
            table::render(
                &[
                    "INSTANCE", "PING", "NAME", "SERIAL", "OUTCOME", "REASON", "WHEN", "CURRENT",
                ],
                &rows,
            )
        };
        text.push('\n');
        for (i, m) in self.mappings.iter().enumerate() {
            text.push_str(&format!(
                "\n{}: {}",
                m.desired.cert_name,
                counts_line(&self.counts(i))
            ));
        }
        let untagged = self.untagged_with_evidence();
        if untagged > 0 {
            text.push_str(&format!(
                "\n{untagged} host(s) with evidence no longer carry {key}={value} and are not listed."
            ));
        }
        text
    }

    /// The same for scripts: the target, each mapping with its counts, and the rows kept.
    pub fn json(&self, filter: &Filter) -> Value {
        json!({
            "target": {"key": self.target.0, "value": self.target.1},
            "mappings": self.mappings.iter().enumerate().map(|(i, m)| {
                let counts = self.counts(i);
                json!({
                    "certName": m.desired.cert_name,
                    "certificateArn": m.desired.certificate_arn,
                    "mappingId": m.desired.mapping_id,
                    "secretVersionId": m.desired.secret_version_id,
                    "serial": m.desired.serial,
                    "hosts": counts,
                })
            }).collect::<Vec<_>>(),
            "hosts": self.kept(filter).into_iter().map(|row| {
                let e = row.evidence;
                json!({
                    "instanceId": row.node.instance_id,
                    "pingStatus": row.node.ping.as_ref().map(|p| p.as_str()),
                    "certName": row.desired.cert_name,
                    "mappingId": row.desired.mapping_id,
                    "state": row.standing.as_str(),
                    "current": row.current(),
                    "outcome": e.map(|e| e.outcome.as_str()),
                    "reason": e.and_then(|e| e.reason.as_deref()),
                    "error": e.and_then(|e| e.error.as_deref()),
                    "serial": e.and_then(|e| e.serial.as_deref()).map(acm_notation),
                    "secretVersionId": e.and_then(|e| e.secret_version_id.as_deref()),
                    "reloaded": e.map(|e| e.reloaded),
                    "observedAt": e.map(|e| e.observed_at.as_str()),
                })
            }).collect::<Vec<_>>(),
        })
    }
}

/// `converged 998/1000, failed 1, deferred 1`: the counts that are not zero.
pub fn counts_line(counts: &HostCounts) -> String {
    let mut line = format!("converged {}/{}", counts.succeeded, counts.total);
    for (name, n) in [
        ("failed", counts.failed),
        ("deferred", counts.deferred),
        ("pending", counts.pending),
    ] {
        if n > 0 {
            line.push_str(&format!(", {name} {n}"));
        }
    }
    line
}

/// The serial a host reported, in ACM's notation; a failed run's is the one it tried.
pub fn shown_serial(evidence: &HostEvidence) -> String {
    match evidence.serial.as_deref() {
        None => "-".into(),
        Some(serial) if evidence.outcome.is_failure() => {
            format!("{} (tried)", acm_notation(serial))
        }
        Some(serial) => acm_notation(serial),
    }
}

/// Why the files were written, or why the run failed (cut to fit a table).
pub fn reason(evidence: &HostEvidence) -> String {
    const MAX: usize = 60;
    let text = match (&evidence.error, &evidence.reason) {
        (Some(error), _) if evidence.outcome.is_failure() => error.clone(),
        (_, Some(reason)) => reason.clone(),
        (Some(error), None) => error.clone(),
        (None, None) => return "-".into(),
    };
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.chars().count() > MAX {
        format!("{}…", first_line.chars().take(MAX - 1).collect::<String>())
    } else {
        first_line.to_string()
    }
}

/// A serial as the host's openssl prints it (`0A1B…`) in ACM's notation (`0a:1b:…`), so tables
/// read like the console and `certship status`.
pub fn acm_notation(serial: &str) -> String {
    serial
        .parse::<Serial>()
        .map_or_else(|_| serial.to_string(), |s| s.to_string())
}

/// How long before `now` an RFC 3339 instant was: `12s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn age(instant: &str, now: SystemTime) -> String {
    let Some(then) = certship_shared::time::parse_rfc3339(instant) else {
        return instant.to_string();
    };
    let seconds = now
        .duration_since(then)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    match seconds {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3_600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3_600),
        s => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certship_shared::host_report::Outcome;
    use std::time::Duration;

    #[test]
    fn host_serials_read_as_acm_writes_them() {
        assert_eq!(acm_notation("6A20E6"), "6a:20:e6");
        assert_eq!(acm_notation("A20E6"), "0a:20:e6");
        assert_eq!(acm_notation("0a:1b"), "0a:1b");
        assert_eq!(acm_notation("not hex"), "not hex");
    }

    #[test]
    fn ages_read_in_the_largest_whole_unit() {
        let now = certship_shared::time::parse_rfc3339("2026-01-02T00:00:00Z").unwrap();
        for (then, shown) in [
            ("2026-01-01T23:59:48Z", "12s ago"),
            ("2026-01-01T23:55:00.500Z", "4m ago"),
            ("2026-01-01T21:00:00Z", "3h ago"),
            ("2025-12-30T00:00:00Z", "3d ago"),
            // a clock ahead of ours is "now", not a panic
            ("2026-01-02T00:00:09Z", "0s ago"),
        ] {
            assert_eq!(age(then, now), shown, "{then}");
        }
        assert_eq!(age("yesterday", now), "yesterday");
        assert_eq!(
            age("2026-01-01T00:00:00Z", now + Duration::from_secs(1)),
            "1d ago"
        );
    }

    #[test]
    fn counts_name_only_what_is_not_zero() {
        let counts = HostCounts {
            total: 4,
            succeeded: 3,
            failed: 0,
            pending: 0,
            deferred: 1,
        };
        assert_eq!(counts_line(&counts), "converged 3/4, deferred 1");
        assert_eq!(
            counts_line(&HostCounts {
                failed: 1,
                pending: 2,
                ..counts
            }),
            "converged 3/4, failed 1, deferred 1, pending 2"
        );
    }

    #[test]
    fn a_mapping_from_before_convergence_is_judged_by_its_serial() {
        let desired = Desired {
            mapping_id: "web-0123456789ab".into(),
            cert_name: "web".into(),
            certificate_arn: "arn".into(),
            secret_version_id: None,
            serial: Some("0a:1b".into()),
        };
        let mut evidence = HostEvidence {
            tag_value: Some("prod".into()),
            mapping_id: desired.mapping_id.clone(),
            instance_id: "i-1".into(),
            association_id: None,
            run_id: None,
            outcome: Outcome::Unchanged,
            reason: None,
            serial: Some("A1B".into()),
            secret_version_id: Some("v-1".into()),
            not_after: None,
            error: None,
            sha256: None,
            reloaded: false,
            observed_at: "2026-01-01T00:00:00Z".into(),
        };
        assert!(desired.held_by(&evidence) && !desired.failed_on(&evidence));
        evidence.outcome = Outcome::RolledBack;
        assert!(!desired.held_by(&evidence) && desired.failed_on(&evidence));
        assert_eq!(shown_serial(&evidence), "0a:1b (tried)");
        evidence.serial = Some("0C".into());
        assert!(!desired.held_by(&evidence) && !desired.failed_on(&evidence));
    }
}
