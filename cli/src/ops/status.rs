//! `certship status`: every mapping, with its certificate's serial and expiry as ACM has them
//! now, how many of its target's hosts hold its current version, how its last deployment went,
//! and whether ACM holds a newer serial than the one deployed.

use super::hosts::{self, Desired};
use super::{explain, table};
use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use certship_shared::HostCounts;
use certship_shared::arn::CertificateArn;
use certship_shared::mapping::{Mapping, attr, is_claim};
use certship_shared::naming::tag_key_value;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// Days left under which an expiry is highlighted.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One mapping as `status` shows it.
#[derive(Debug, Clone)]
pub struct Row {
    pub mapping: Mapping,
    pub acm: Result<AcmView, String>,
    /// Its target's hosts judged against its current version; `None` until counted.
    pub hosts: Option<Result<HostCounts, String>>,
}

/// The certificate as ACM has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmView {
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    pub status: Option<String>,
}

impl Row {
    /// ACM's serial differs from the deployed one: a renewal not (yet) deployed.
    pub fn newer_in_acm(&self) -> bool {
        match (&self.acm, &self.mapping.serial) {
            (
                Ok(AcmView {
                    serial: Some(acm), ..
                }),
                Some(deployed),
            ) => !certship_shared::serial::same_serial(acm, deployed),
            _ => false,
        }
    }
}

/// The mappings of `certificate_arn` and/or `target`, or all of them.
pub async fn mappings(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    certificate_arn: Option<&str>,
    target: Option<&(String, String)>,
) -> Result<Vec<Mapping>> {
    let query = dynamodb.query().table_name(table_name);
    // A target names the partition, the cheaper read even when a certificate is named too.
    let query = match (certificate_arn, target) {
        (_, Some((key, value))) => Some(
            query
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", attr::PARTITION_KEY)
                .expression_attribute_values(":pk", AttributeValue::S(tag_key_value(key, value))),
        ),
        (Some(arn), None) => Some(
            query
                .index_name(attr::BY_CERTIFICATE_ARN)
                .key_condition_expression("#arn = :arn")
                .expression_attribute_names("#arn", attr::CERTIFICATE_ARN)
                .expression_attribute_values(":arn", AttributeValue::S(arn.to_string())),
        ),
        (None, None) => None,
    };
    let mut items = Vec::new();
    match query {
        Some(query) => {
            let mut pages = query.into_paginator().items().send();
            while let Some(item) = pages.next().await {
                items.push(item.map_err(explain).context("reading the mappings")?);
            }
        }
        None => {
            let mut pages = dynamodb
                .scan()
                .table_name(table_name)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                items.push(item.map_err(explain).context("reading the mappings")?);
            }
        }
    }
    // Name claims share the mapping's partition; they are not mappings.
    let mut mappings = items
        .iter()
        .filter(|item| !is_claim(item))
        .map(Mapping::from_item)
        .collect::<Result<Vec<_>, _>>()
        .context("the mapping table holds an item certship did not write")?;
    if let Some((key, value)) = target {
        mappings.retain(|m| &m.target_tag_key == key && &m.target_tag_value == value);
    }
    if let Some(arn) = certificate_arn {
        mappings.retain(|m| m.certificate_arn == arn);
    }
    mappings.sort_by(|a, b| {
        (&a.target_tag_key, &a.target_tag_value, &a.cert_name).cmp(&(
            &b.target_tag_key,
            &b.target_tag_value,
            &b.cert_name,
        ))
    });
    Ok(mappings)
}

/// Each mapping with ACM's view of its certificate (asked once per certificate, in its region).
pub async fn rows(acm: &aws_sdk_acm::Client, mappings: Vec<Mapping>) -> Vec<Row> {
    let mut views: HashMap<String, Result<AcmView, String>> = HashMap::new();
    let mut rows = Vec::new();
    for mapping in mappings {
        if !views.contains_key(&mapping.certificate_arn) {
            let view = describe(acm, &mapping.certificate_arn)
                .await
                .map_err(|e| format!("{e:#}"));
            views.insert(mapping.certificate_arn.clone(), view);
        }
        let acm = views[&mapping.certificate_arn].clone();
        rows.push(Row {
            mapping,
            acm,
            hosts: None,
        });
    }
    rows
}

/// Counts each row's hosts: one node listing per distinct target and one evidence query per
/// mapping, the same reads as `certship hosts`. A target that cannot be read marks its rows
/// with the error; without an evidence table every row carries why.
pub async fn count_hosts(
    ssm: &aws_sdk_ssm::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    evidence_table: Result<&str, String>,
    rows: &mut [Row],
) {
    let evidence_table = match evidence_table {
        Ok(table) => table,
        Err(e) => {
            for row in rows.iter_mut() {
                row.hosts = Some(Err(e.clone()));
            }
            return;
        }
    };
    let mut by_target: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let m = &row.mapping;
        by_target
            .entry((m.target_tag_key.clone(), m.target_tag_value.clone()))
            .or_default()
            .push(i);
    }
    for (target, indexes) in by_target {
        let desired = indexes
            .iter()
            .map(|&i| Desired::of_mapping(&rows[i].mapping))
            .collect();
        match hosts::collect(ssm, dynamodb, evidence_table, &target, desired).await {
            Ok(fleet) => {
                for (n, &i) in indexes.iter().enumerate() {
                    rows[i].hosts = Some(Ok(fleet.counts(n)));
                }
            }
            Err(e) => {
                let e = format!("{e:#}");
                for &i in &indexes {
                    rows[i].hosts = Some(Err(e.clone()));
                }
            }
        }
    }
}

/// `998/1000 current`: the hosts holding the mapping's current version out of those tagged.
fn hosts_cell(hosts: &Option<Result<HostCounts, String>>, colour: bool) -> String {
    match hosts {
        None => "-".into(),
        Some(Err(_)) => "?".into(),
        Some(Ok(c)) => {
            let text = format!("{}/{} current", c.succeeded, c.total);
            if c.failed > 0 {
                table::highlight(&text, colour, true)
            } else if c.succeeded < c.total {
                table::highlight(&text, colour, false)
            } else {
                text
            }
        }
    }
}

async fn describe(acm: &aws_sdk_acm::Client, certificate_arn: &str) -> Result<AcmView> {
    // A certificate is described in its own region, whatever the client's.
    let region = CertificateArn::parse(certificate_arn)?.region;
    let described = acm
        .describe_certificate()
        .certificate_arn(certificate_arn)
        .customize()
        .config_override(
            aws_sdk_acm::config::Builder::default().region(aws_config::Region::new(region)),
        )
        .send()
        .await
        .map_err(explain)?;
    let certificate = described.certificate().context("ACM described nothing")?;
    let not_after = certificate.not_after();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    Ok(AcmView {
        serial: certificate.serial().map(str::to_string),
        not_after: not_after.map(certship_shared::time::format_date_time),
        days_left: not_after.map(|t| (t.secs() - now).div_euclid(86_400)),
        status: certificate.status().map(|s| s.as_str().to_string()),
    })
}

fn last_deployment(mapping: &Mapping) -> String {
    match &mapping.last_deployment {
        Some(last) => format!(
            "{} {}/{} at {}",
            last.status,
            last.succeeded,
            last.succeeded + last.failed,
            last.finished_at
        ),
        None => "never finished".into(),
    }
}

pub fn text(rows: &[Row], colour: bool) -> String {
    if rows.is_empty() {
        return "No mappings. `certship deploy` creates one.".into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let m = &row.mapping;
            let expires = match &row.acm {
                Ok(AcmView {
                    not_after: Some(date),
                    days_left: Some(days),
                    ..
                }) => {
                    let text = format!("{} ({days} days)", &date[..10.min(date.len())]);
                    if *days < EXPIRY_WARNING_DAYS {
                        table::highlight(&text, colour, *days < 7)
                    } else {
                        text
                    }
                }
                Ok(_) => "-".into(),
                Err(_) => "?".into(),
            };
            let acm = match &row.acm {
                Err(e) => format!("cannot describe: {e}"),
                Ok(view) if row.newer_in_acm() => table::highlight(
                    &format!("newer serial {}", view.serial.as_deref().unwrap_or("?")),
                    colour,
                    false,
                ),
                Ok(_) if m.serial.is_none() => "not exported yet".into(),
                Ok(_) => "up to date".into(),
            };
            vec![
                short_arn(&m.certificate_arn),
                m.cert_name.clone(),
                format!("{}={}", m.target_tag_key, m.target_tag_value),
                m.serial.clone().unwrap_or_else(|| "-".into()),
                hosts_cell(&row.hosts, colour),
                expires,
                last_deployment(m),
                acm,
            ]
        })
        .collect();
    let mut text = table::render(
        &[
            "CERTIFICATE",
            "NAME",
            "TARGET",
            "DEPLOYED SERIAL",
            "HOSTS",
            "EXPIRES",
            "LAST DEPLOYMENT",
            "ACM",
        ],
        &cells,
    );
    // Each reason a HOSTS cell shows `?`, once.
    let mut errors: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.hosts.as_ref()?.as_ref().err().map(String::as_str))
        .collect();
    errors.sort_unstable();
    errors.dedup();
    for error in errors {
        text.push_str(&format!("\nHOSTS ?: {error}"));
    }
    text
}

/// `certificate/<id>` and the region: enough to tell certificates apart in a table.
fn short_arn(arn: &str) -> String {
    match CertificateArn::parse(arn) {
        Ok(parsed) => format!("{}/{}", parsed.region, parsed.id),
        Err(_) => arn.to_string(),
    }
}

pub fn json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                let m = &row.mapping;
                json!({
                    "certificateArn": m.certificate_arn,
                    "certName": m.cert_name,
                    "target": {"key": m.target_tag_key, "value": m.target_tag_value},
                    "reloadService": m.reload_service,
                    "secretArn": m.secret_arn,
                    "deployedSerial": m.serial,
                    "lastExported": m.last_exported_date,
                    "secretVersionId": m.secret_version_id,
                    "associationId": m.association_id,
                    "hosts": match &row.hosts {
                        None => Value::Null,
                        Some(Ok(c)) => json!({
                            "current": c.succeeded,
                            "total": c.total,
                            "failed": c.failed,
                            "deferred": c.deferred,
                            "pending": c.pending,
                        }),
                        Some(Err(e)) => json!({"error": e}),
                    },
                    "lastDeployment": m.last_deployment.as_ref().map(|l| json!({
                        "executionArn": l.execution_arn,
                        "status": l.status,
                        "succeeded": l.succeeded,
                        "failed": l.failed,
                        "finishedAt": l.finished_at,
                    })),
                    "acm": match &row.acm {
                        Ok(view) => json!({
                            "serial": view.serial,
                            "notAfter": view.not_after,
                            "daysLeft": view.days_left,
                            "status": view.status,
                            "newerThanDeployed": row.newer_in_acm(),
                        }),
                        Err(e) => json!({"error": e}),
                    },
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(deployed: Option<&str>, acm: Option<&str>, days: i64) -> Row {
        Row {
            mapping: Mapping {
                certificate_arn: "arn:aws:acm:eu-west-1:123456789012:certificate/abc".into(),
                cert_name: "web".into(),
                target_tag_key: "env".into(),
                target_tag_value: "prod".into(),
                reload_service: None,
                secret_arn: None,
                serial: deployed.map(String::from),
                cert_expiry_date: None,
                last_exported_date: None,
                association_id: None,
                secret_version_id: None,
                last_deployment: None,
            },
            hosts: None,
            acm: Ok(AcmView {
                serial: acm.map(String::from),
                not_after: Some("2027-01-01T00:00:00Z".into()),
                days_left: Some(days),
                status: Some("ISSUED".into()),
            }),
        }
    }

    #[test]
    fn a_newer_serial_in_acm_is_called_out() {
        assert!(row(Some("0a:01"), Some("0a:02"), 90).newer_in_acm());
        assert!(!row(Some("0A:01"), Some("0a:01"), 90).newer_in_acm());
        assert!(!row(None, Some("0a:01"), 90).newer_in_acm());
        let text = text(&[row(Some("0a:01"), Some("0a:02"), 90)], false);
        assert!(text.contains("newer serial 0a:02"), "{text}");
        assert!(text.contains("eu-west-1/abc"), "{text}");
    }

    #[test]
    fn an_expiry_under_30_days_is_highlighted_when_colour_is_on() {
        let soon = text(&[row(Some("01"), Some("01"), 12)], true);
        assert!(
            soon.contains("\x1b[33m2027-01-01 (12 days)\x1b[0m"),
            "{soon}"
        );
        let later = text(&[row(Some("01"), Some("01"), 45)], true);
        assert!(
            later.contains("2027-01-01 (45 days)") && !later.contains('\x1b'),
            "{later}"
        );
        let plain = text(&[row(Some("01"), Some("01"), 3)], false);
        assert!(!plain.contains('\x1b'), "{plain}");
    }
}
