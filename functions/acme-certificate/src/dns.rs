//! DNS-01 through Route53: the zone must cover every name; the values go in with one UPSERT
//! batch beside whatever TXT values are already there, and cleanup takes out exactly those
//! values, leaving the rest (another issuance's, a verification record) as it found them.

use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneError;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use certship_shared::CertshipError;
use certship_shared::acme::{ChallengeRecord, IssueRequest, zone_covers};

/// TTL of the challenge records: short, since they live for minutes.
const TTL_SECONDS: i64 = 60;

/// The zone's name, after checking it covers every name of the request (before any order, so a
/// mistake costs no CA rate limit).
pub async fn check_zone(
    route53: &aws_sdk_route53::Client,
    request: &IssueRequest,
) -> Result<String, CertshipError> {
    let zone_id = request.zone_id();
    let zone = route53
        .get_hosted_zone()
        .id(zone_id)
        .send()
        .await
        .map_err(|err| match err.as_service_error() {
            Some(GetHostedZoneError::NoSuchHostedZone(_)) => {
                CertshipError::DomainNotInZone(format!("Route53 has no hosted zone {zone_id}"))
            }
            Some(GetHostedZoneError::InvalidInput(e)) => CertshipError::InvalidRequest(format!(
                "Route53 refused the hosted zone id {zone_id}: {}",
                e.message().unwrap_or("invalid")
            )),
            _ => CertshipError::from_sdk("GetHostedZone", err),
        })?;
    let name = zone
        .hosted_zone()
        .map(|z| z.name().to_string())
        .unwrap_or_default();
    let outside: Vec<&str> = request
        .domains
        .iter()
        .filter(|d| !zone_covers(&name, d))
        .map(String::as_str)
        .collect();
    if !outside.is_empty() {
        return Err(CertshipError::DomainNotInZone(format!(
            "hosted zone {zone_id} ({name}) does not cover {}: name a zone that contains every \
             domain, or issue them separately",
            outside.join(", ")
        )));
    }
    Ok(name)
}

/// Adds each record's values to its TXT record set, all in one change batch, and returns the
/// change to wait for; `None` when there is nothing to write (every authorization was valid).
pub async fn add(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
    records: &[ChallengeRecord],
) -> Result<Option<String>, CertshipError> {
    let mut changes = Vec::new();
    for record in records {
        let mut values = current_values(route53, zone_id, &record.name).await?;
        for value in &record.values {
            if !values.contains(value) {
                values.push(value.clone());
            }
        }
        changes.push(change(ChangeAction::Upsert, &record.name, &values)?);
    }
    if changes.is_empty() {
        return Ok(None);
    }
    apply(route53, zone_id, changes, "certship ACME DNS-01 challenge")
        .await
        .map(Some)
}

/// Takes each record's values out of its record set: deletes the set when nothing else is
/// left, otherwise writes back the rest. Values already gone are fine, so cleanup can run again.
pub async fn remove(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
    records: &[ChallengeRecord],
) -> Result<usize, CertshipError> {
    let mut changes = Vec::new();
    let mut removed = 0;
    for record in records {
        let current = current_values(route53, zone_id, &record.name).await?;
        let left: Vec<String> = current
            .iter()
            .filter(|v| !record.values.contains(v))
            .cloned()
            .collect();
        if left.len() == current.len() {
            continue;
        }
        removed += current.len() - left.len();
        changes.push(if left.is_empty() {
            change(ChangeAction::Delete, &record.name, &current)?
        } else {
            change(ChangeAction::Upsert, &record.name, &left)?
        });
    }
    if !changes.is_empty() {
        apply(route53, zone_id, changes, "certship ACME cleanup").await?;
    }
    Ok(removed)
}

/// Whether Route53 has applied `change_id` on its name servers.
pub async fn in_sync(
    route53: &aws_sdk_route53::Client,
    change_id: &str,
) -> Result<bool, CertshipError> {
    let out = route53
        .get_change()
        .id(change_id)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("GetChange", e))?;
    Ok(out.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync))
}

/// The TXT values at `name`, unquoted (Route53 keeps each value as `"..."`).
async fn current_values(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
    name: &str,
) -> Result<Vec<String>, CertshipError> {
    let out = route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(name)
        .start_record_type(RrType::Txt)
        .max_items(1)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("ListResourceRecordSets", e))?;
    Ok(out
        .resource_record_sets()
        .iter()
        .filter(|set| same_name(set.name(), name) && set.r#type() == &RrType::Txt)
        .flat_map(|set| set.resource_records())
        .map(|r| unquote(r.value()))
        .collect())
}

fn change(action: ChangeAction, name: &str, values: &[String]) -> Result<Change, CertshipError> {
    let mut set = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::Txt)
        .ttl(TTL_SECONDS);
    for value in values {
        set = set.resource_records(
            ResourceRecord::builder()
                .value(format!("\"{value}\""))
                .build()
                .map_err(|e| CertshipError::Service(format!("a TXT record: {e}")))?,
        );
    }
    let set = set
        .build()
        .map_err(|e| CertshipError::Service(format!("a TXT record set: {e}")))?;
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(|e| CertshipError::Service(format!("a Route53 change: {e}")))
}

async fn apply(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
    changes: Vec<Change>,
    comment: &str,
) -> Result<String, CertshipError> {
    let batch = ChangeBatch::builder()
        .set_changes(Some(changes))
        .comment(comment)
        .build()
        .map_err(|e| CertshipError::Service(format!("a Route53 change batch: {e}")))?;
    let out = route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("ChangeResourceRecordSets", e))?;
    out.change_info()
        .map(|c| c.id().to_string())
        .ok_or_else(|| CertshipError::Service("ChangeResourceRecordSets returned no change".into()))
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// A TXT value as Route53 returns it (`"abc"`) without its quotes. DNS-01 values are base64url,
/// so they hold no quote or backslash to unescape.
fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lose_their_quotes_and_names_compare_without_the_dot() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
        assert!(same_name(
            "_acme-challenge.Example.com.",
            "_acme-challenge.example.com"
        ));
        assert!(!same_name(
            "_acme-challenge.example.com.",
            "_acme-challenge.www.example.com."
        ));
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod dns_tests;
