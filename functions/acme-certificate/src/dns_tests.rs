//! The Route53 side against mocked responses: the branches moto cannot produce (throttling,
//! a zone that vanished) and the exact change batches written and removed.

use super::*;
use aws_sdk_route53::Client as Route53;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
use aws_sdk_route53::types::error::NoSuchHostedZone;
use aws_sdk_route53::types::{ChangeInfo, HostedZone};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use certship_shared::acme::KeyType;

fn client(rules: &[&Rule]) -> Route53 {
    mock_client!(aws_sdk_route53, RuleMode::MatchAny, rules, |c| c
        .retry_config(
            aws_sdk_route53::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(1))
        ))
}

fn request(domains: &[&str]) -> IssueRequest {
    IssueRequest {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        hosted_zone_id: "Z0123".into(),
        key_type: KeyType::EcP256,
        directory: "letsencrypt-staging".into(),
        contact: vec![],
        renew_days_before: None,
        import_to_acm: false,
    }
}

fn zone(name: &str) -> Rule {
    let name = name.to_string();
    mock!(Route53::get_hosted_zone).then_output(move || {
        GetHostedZoneOutput::builder()
            .hosted_zone(
                HostedZone::builder()
                    .id("/hostedzone/Z0123")
                    .name(&name)
                    .caller_reference("test")
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

/// ListResourceRecordSets answering with `values` at `name` (none when empty).
fn existing(name: &str, values: &[&str]) -> Rule {
    let (name, values): (String, Vec<String>) = (
        name.to_string(),
        values.iter().map(|v| format!("\"{v}\"")).collect(),
    );
    mock!(Route53::list_resource_record_sets).then_output(move || {
        let mut out = ListResourceRecordSetsOutput::builder()
            .is_truncated(false)
            .max_items(1);
        if !values.is_empty() {
            let mut set = ResourceRecordSet::builder()
                .name(&name)
                .r#type(RrType::Txt)
                .ttl(60);
            for value in &values {
                set = set.resource_records(ResourceRecord::builder().value(value).build().unwrap());
            }
            out = out.resource_record_sets(set.build().unwrap());
        } else {
            out = out.set_resource_record_sets(Some(vec![]));
        }
        out.build().unwrap()
    })
}

/// ChangeResourceRecordSets accepting only a batch of exactly `expected` (action, values).
fn change_exactly(expected: Vec<(ChangeAction, Vec<&'static str>)>) -> Rule {
    mock!(Route53::change_resource_record_sets)
        .match_requests(move |input| {
            let changes = input
                .change_batch()
                .map(|b| b.changes())
                .unwrap_or_default();
            let got: Vec<(ChangeAction, Vec<String>)> = changes
                .iter()
                .map(|c| {
                    let set = c.resource_record_set().unwrap();
                    (
                        c.action().clone(),
                        set.resource_records()
                            .iter()
                            .map(|r| r.value().to_string())
                            .collect(),
                    )
                })
                .collect();
            let want: Vec<(ChangeAction, Vec<String>)> = expected
                .iter()
                .map(|(a, v)| (a.clone(), v.iter().map(|v| format!("\"{v}\"")).collect()))
                .collect();
            got == want
        })
        .then_output(|| {
            ChangeResourceRecordSetsOutput::builder()
                .change_info(
                    ChangeInfo::builder()
                        .id("/change/C1")
                        .status(ChangeStatus::Pending)
                        .submitted_at(aws_smithy_types::DateTime::from_secs(0))
                        .build()
                        .unwrap(),
                )
                .build()
        })
}

fn record(values: &[&str]) -> ChallengeRecord {
    ChallengeRecord {
        name: "_acme-challenge.example.com.".into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_vanished_zone_is_domain_not_in_zone() {
    let get = mock!(Route53::get_hosted_zone)
        .then_error(|| GetHostedZoneError::NoSuchHostedZone(NoSuchHostedZone::builder().build()));
    let err = check_zone(&client(&[&get]), &request(&["example.com"]))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "DomainNotInZone");
    assert!(err.to_string().contains("Z0123"), "{err}");
    assert_eq!(get.num_calls(), 1);
}

#[tokio::test]
async fn a_zone_that_does_not_cover_a_name_names_every_such_name() {
    let get = zone("example.com.");
    let route53 = client(&[&get]);
    let err = check_zone(
        &route53,
        &request(&["*.example.com", "example.org", "a.example.net"]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "DomainNotInZone");
    let message = err.to_string();
    assert!(message.contains("example.org, a.example.net"), "{message}");
    assert!(!message.contains("*.example.com"), "{message}");
    let name = check_zone(&route53, &request(&["example.com", "*.example.com"]))
        .await
        .unwrap();
    assert_eq!(name, "example.com.");
}

#[tokio::test]
async fn values_go_in_beside_what_is_there_in_one_batch() {
    // given a verification value already at the challenge name
    let list = existing("_acme-challenge.example.com.", &["keep"]);
    let change = change_exactly(vec![(ChangeAction::Upsert, vec!["keep", "v1", "v2"])]);
    // when the order's two values (a name and its wildcard) are added
    let id = add(
        &client(&[&list, &change]),
        "Z0123",
        &[record(&["v1", "v2"])],
    )
    .await
    .unwrap();
    // then one UPSERT carries all three, and its change is what the state machine waits for
    assert_eq!(id.as_deref(), Some("/change/C1"));
    assert_eq!((list.num_calls(), change.num_calls()), (1, 1));
}

#[tokio::test]
async fn cleanup_takes_out_only_its_values_and_can_run_again() {
    let list = existing("_acme-challenge.example.com.", &["keep", "v1"]);
    let change = change_exactly(vec![(ChangeAction::Upsert, vec!["keep"])]);
    let removed = remove(
        &client(&[&list, &change]),
        "Z0123",
        &[record(&["v1", "v2"])],
    )
    .await
    .unwrap();
    assert_eq!((removed, change.num_calls()), (1, 1));

    // the last values go with their record set
    let list = existing("_acme-challenge.example.com.", &["v1", "v2"]);
    let delete = change_exactly(vec![(ChangeAction::Delete, vec!["v1", "v2"])]);
    let removed = remove(
        &client(&[&list, &delete]),
        "Z0123",
        &[record(&["v1", "v2"])],
    )
    .await
    .unwrap();
    assert_eq!((removed, delete.num_calls()), (2, 1));

    // and a second cleanup finds nothing to do and changes nothing
    let list = existing("_acme-challenge.example.com.", &[]);
    let untouched = change_exactly(vec![]);
    let removed = remove(
        &client(&[&list, &untouched]),
        "Z0123",
        &[record(&["v1", "v2"])],
    )
    .await
    .unwrap();
    assert_eq!((removed, untouched.num_calls()), (0, 0));
}

#[tokio::test]
async fn a_change_throttled_past_the_sdks_retries_is_throttled() {
    let list = existing("_acme-challenge.example.com.", &[]);
    let throttled = mock!(Route53::change_resource_record_sets)
        .sequence()
        .http_response(|| {
            Response::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                     <Message>Rate exceeded</Message></Error></ErrorResponse>",
                ),
            )
        })
        .times(3)
        .build();
    let err = add(&client(&[&list, &throttled]), "Z0123", &[record(&["v1"])])
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Throttled", "{err}");
    assert_eq!(throttled.num_calls(), 3, "the SDK retried before giving up");
}
