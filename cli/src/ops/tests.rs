//! The ops layer against mocked SDK clients (aws-smithy-mocks): what each call asks AWS, what it
//! makes of the answers, and how often it calls.

use super::{history, hosts, status, unmap};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use certship_shared::HostFailure;
use certship_shared::mapping::{Mapping, attr};
use std::collections::HashMap;

const ARN: &str = "arn:aws:acm:eu-west-1:123456789012:certificate/0d3f5a1c";
const OTHER_ARN: &str = "arn:aws:acm:eu-west-1:123456789012:certificate/99999999";
const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship/web-abc";
const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:certship";

fn mapping(cert_name: &str, tag_value: &str, serial: Option<&str>) -> Mapping {
    Mapping {
        certificate_arn: ARN.into(),
        cert_name: cert_name.into(),
        target_tag_key: "env".into(),
        target_tag_value: tag_value.into(),
        reload_service: None,
        secret_arn: Some(SECRET_ARN.into()),
        serial: serial.map(String::from),
        cert_expiry_date: None,
        last_exported_date: None,
        last_deployment: None,
    }
}

// ---- per-host rows: the invocations merged with the execution's Install failures ----

fn invocation(
    instance: &str,
    status: aws_sdk_ssm::types::CommandInvocationStatus,
    output: &str,
) -> aws_sdk_ssm::types::CommandInvocation {
    aws_sdk_ssm::types::CommandInvocation::builder()
        .instance_id(instance)
        .status(status)
        .command_plugins(
            aws_sdk_ssm::types::CommandPlugin::builder()
                .output(output)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn host_rows_merge_every_page_of_invocations_with_the_recorded_failures() {
    use aws_sdk_ssm::operation::list_command_invocations::ListCommandInvocationsOutput;
    use aws_sdk_ssm::types::CommandInvocationStatus::{Failed, Success};
    // given two pages: a host that installed, one that rolled back, one that printed no line
    let first = mock!(aws_sdk_ssm::Client::list_command_invocations)
        .match_requests(|r| {
            r.command_id() == Some("c-1") && r.details() == Some(true) && r.next_token().is_none()
        })
        .then_output(|| {
            ListCommandInvocationsOutput::builder()
                .command_invocations(invocation(
                    "i-2",
                    Success,
                    "installed\n{\"status\":\"installed\",\"serial\":\"A20E6\",\"changed\":true,\"reloaded\":true}\n",
                ))
                .next_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_ssm::Client::list_command_invocations)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            ListCommandInvocationsOutput::builder()
                .command_invocations(invocation(
                    "i-1",
                    Failed,
                    "{\"status\":\"rolled-back\",\"serial\":\"0B\",\"changed\":false,\"reloaded\":false,\"rolled_back\":true}\n",
                ))
                .command_invocations(invocation("i-3", Failed, ""))
                .build()
        });
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&first, &second]);
    let failures = [
        HostFailure {
            instance_id: "i-1".into(),
            status_details: "Failed".into(),
            output: "reload of nginx failed; rolled back\n----------ERROR-------\n".into(),
        },
        HostFailure {
            instance_id: "i-3".into(),
            status_details: "DeliveryTimedOut".into(),
            output: String::new(),
        },
    ];

    // when
    let rows = hosts::host_rows(&ssm, "c-1", &failures).await.unwrap();

    // then one row per host, sorted, each with its own outcome and failure
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    let ids: Vec<&str> = rows.iter().map(|r| r.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-2", "i-3"]);
    let (rolled_back, installed, silent) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(installed.status, "Success");
    assert_eq!(
        installed.serial.as_deref(),
        Some("0a:20:e6"),
        "ACM notation"
    );
    assert_eq!(
        (installed.changed, installed.reloaded),
        (Some(true), Some(true))
    );
    assert_eq!(installed.failure, None);
    assert_eq!(rolled_back.status, "Failed");
    assert_eq!(
        rolled_back.serial, None,
        "a failed host does not serve what it tried"
    );
    assert_eq!(rolled_back.rolled_back, Some(true));
    assert_eq!(
        rolled_back.failure.as_deref(),
        Some("rolled back: reload of nginx failed; rolled back")
    );
    assert_eq!((silent.changed, silent.serial.as_deref()), (None, None));
    assert_eq!(
        silent.failure.as_deref(),
        Some("DeliveryTimedOut"),
        "no output: the details"
    );
}

// ---- status: the mappings query (all pages) and ACM's view ----

fn item(m: &Mapping) -> HashMap<String, AttributeValue> {
    m.to_item()
}

#[tokio::test]
async fn status_reads_every_page_of_a_certificates_mappings_from_its_index() {
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    // given two pages of the ByCertificateArn index
    let first = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| {
            r.table_name() == Some("mappings")
                && r.index_name() == Some(attr::BY_CERTIFICATE_ARN)
                && r.expression_attribute_values().and_then(|v| v.get(":arn"))
                    == Some(&AttributeValue::S(ARN.into()))
                && r.exclusive_start_key().is_none()
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(item(&mapping("web", "prod", Some("0a:01"))))
                .last_evaluated_key("TagKeyValue", AttributeValue::S("env#prod".into()))
                .build()
        });
    let second = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| r.exclusive_start_key().is_some())
        .then_output(|| {
            QueryOutput::builder()
                .items(item(&mapping("api", "dev", None)))
                .build()
        });
    let scan = mock!(aws_sdk_dynamodb::Client::scan)
        .then_output(|| aws_sdk_dynamodb::operation::scan::ScanOutput::builder().build());
    let dynamodb = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&first, &second, &scan]
    );

    // when
    let mappings = status::mappings(&dynamodb, "mappings", Some(ARN), None)
        .await
        .unwrap();

    // then both pages, sorted by target then name, and no scan
    assert_eq!(
        (first.num_calls(), second.num_calls(), scan.num_calls()),
        (1, 1, 0)
    );
    let names: Vec<(&str, &str)> = mappings
        .iter()
        .map(|m| (m.target_tag_value.as_str(), m.cert_name.as_str()))
        .collect();
    assert_eq!(names, [("dev", "api"), ("prod", "web")]);
}

#[tokio::test]
async fn status_by_target_queries_the_partition_and_keeps_only_that_target() {
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    let query = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| {
            r.index_name().is_none()
                && r.expression_attribute_values().and_then(|v| v.get(":pk"))
                    == Some(&AttributeValue::S("env#prod".into()))
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(item(&mapping("web", "prod", None)))
                // an item of another target in the partition is not this target's
                .items(item(&mapping("web", "prod2", None)))
                .build()
        });
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&query]);
    let target = ("env".to_string(), "prod".to_string());
    let mappings = status::mappings(&dynamodb, "mappings", None, Some(&target))
        .await
        .unwrap();
    assert_eq!(query.num_calls(), 1);
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].target_tag_value, "prod");
}

#[tokio::test]
async fn status_asks_acm_once_per_certificate_and_calls_out_a_newer_serial() {
    use aws_sdk_acm::operation::describe_certificate::{
        DescribeCertificateError, DescribeCertificateOutput,
    };
    use aws_sdk_acm::types::{CertificateDetail, CertificateStatus};
    let renewed = mock!(aws_sdk_acm::Client::describe_certificate)
        .match_requests(|r| r.certificate_arn() == Some(ARN))
        .then_output(|| {
            DescribeCertificateOutput::builder()
                .certificate(
                    CertificateDetail::builder()
                        .serial("0a:02")
                        .not_after(DateTime::from_secs(4_102_444_800))
                        .status(CertificateStatus::Issued)
                        .build(),
                )
                .build()
        });
    let gone = mock!(aws_sdk_acm::Client::describe_certificate)
        .match_requests(|r| r.certificate_arn() == Some(OTHER_ARN))
        .then_error(|| {
            DescribeCertificateError::ResourceNotFoundException(
                aws_sdk_acm::types::error::ResourceNotFoundException::builder()
                    .message("no such certificate")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .message("no such certificate")
                            .build(),
                    )
                    .build(),
            )
        });
    let acm = mock_client!(aws_sdk_acm, RuleMode::MatchAny, [&renewed, &gone]);
    let mut of_other = mapping("old", "prod", Some("01"));
    of_other.certificate_arn = OTHER_ARN.into();

    // when two mappings share a certificate and a third's is gone
    let rows = status::rows(
        &acm,
        vec![
            mapping("web", "prod", Some("0a:01")),
            mapping("web", "dev", Some("0A:02")),
            of_other,
        ],
    )
    .await;

    // then ACM is asked once per certificate
    assert_eq!((renewed.num_calls(), gone.num_calls()), (1, 1));
    assert!(rows[0].newer_in_acm(), "0a:01 deployed, 0a:02 in ACM");
    assert!(
        !rows[1].newer_in_acm(),
        "the same serial, written otherwise"
    );
    let view = rows[0].acm.as_ref().unwrap();
    assert_eq!(view.not_after.as_deref(), Some("2100-01-01T00:00:00Z"));
    assert_eq!(view.status.as_deref(), Some("ISSUED"));
    let error = rows[2].acm.as_ref().unwrap_err();
    assert!(error.contains("ResourceNotFoundException"), "{error}");
    assert!(!rows[2].newer_in_acm());
}

// ---- history: ListExecutions, then DescribeExecution for the input ----

fn listed(n: usize) -> aws_sdk_sfn::types::ExecutionListItem {
    aws_sdk_sfn::types::ExecutionListItem::builder()
        .execution_arn(format!("{MACHINE}:e-{n}"))
        .state_machine_arn(MACHINE)
        .name(format!("e-{n}"))
        .status(aws_sdk_sfn::types::ExecutionStatus::Succeeded)
        .start_date(DateTime::from_secs(1_000))
        .build()
        .unwrap()
}

/// Describes `e-<n>`: odd executions deployed [`ARN`] on renewal, even ones another certificate.
fn described(
    request: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionInput,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    let arn = request.execution_arn().unwrap_or_default();
    let n: u64 = arn.rsplit('-').next().unwrap().parse().unwrap();
    let certificate = if n % 2 == 1 { ARN } else { OTHER_ARN };
    aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput::builder()
        .execution_arn(arn)
        .name(format!("e-{n}"))
        .state_machine_arn(MACHINE)
        .status(aws_sdk_sfn::types::ExecutionStatus::Succeeded)
        .start_date(DateTime::from_secs(1_000))
        .stop_date(DateTime::from_secs(1_000 + n as i64))
        .input(
            serde_json::json!({
                "CertificateArn": certificate, "CertName": format!("web{n}"),
                "TargetTagKey": "env", "TargetTagValue": "prod", "Trigger": "renewal"
            })
            .to_string(),
        )
        .build()
        .unwrap()
}

fn listing(pages: Vec<Vec<usize>>) -> Vec<Rule> {
    use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
    let last = pages.len() - 1;
    pages
        .into_iter()
        .enumerate()
        .map(|(i, page)| {
            mock!(aws_sdk_sfn::Client::list_executions)
                .match_requests(move |r| {
                    r.state_machine_arn() == Some(MACHINE)
                        && r.next_token().map(String::from) == (i > 0).then(|| format!("page-{i}"))
                })
                .then_output(move || {
                    ListExecutionsOutput::builder()
                        .set_executions(Some(page.iter().map(|n| listed(*n)).collect()))
                        .set_next_token((i < last).then(|| format!("page-{}", i + 1)))
                        .build()
                        .unwrap()
                })
        })
        .collect()
}

#[tokio::test]
async fn history_keeps_the_certificates_executions_newest_first_up_to_the_limit() {
    // given two pages of executions, the odd ones of this certificate
    let pages = listing(vec![vec![1, 2, 3], vec![4, 5, 6, 7]]);
    let describe = mock!(aws_sdk_sfn::Client::describe_execution).then_compute_output(described);
    let rules: Vec<&Rule> = pages.iter().chain([&describe]).collect();
    let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules);

    // when all are wanted
    let (entries, truncated) = history::entries(&sfn, MACHINE, ARN, 20).await.unwrap();

    // then only this certificate's, in listing order, read through the contract
    assert_eq!(
        pages.iter().map(Rule::num_calls).collect::<Vec<_>>(),
        [1, 1]
    );
    assert_eq!(describe.num_calls(), 7);
    assert!(!truncated);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["e-1", "e-3", "e-5", "e-7"]);
    assert_eq!(entries[1].request.cert_name, "web3");
    assert_eq!(
        entries[1].request.trigger,
        certship_shared::Trigger::Renewal
    );
    assert_eq!(entries[1].duration_seconds, Some(3));
    let json = history::json(&entries);
    assert_eq!(json[0]["trigger"], "renewal");
    assert_eq!(json[0]["target"]["value"], "prod");
}

#[tokio::test]
async fn history_stops_at_the_limit_and_says_when_it_searched_only_the_newest() {
    // given a limit of one: the first chunk of ten is described, nothing more
    let pages = listing(vec![(1..=30).collect()]);
    let describe = mock!(aws_sdk_sfn::Client::describe_execution).then_compute_output(described);
    let rules: Vec<&Rule> = pages.iter().chain([&describe]).collect();
    let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules);
    let (entries, truncated) = history::entries(&sfn, MACHINE, ARN, 1).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "e-1");
    assert!(!truncated);
    assert_eq!(describe.num_calls(), 10);

    // given more executions than are searched: the search stops and says so
    let pages = listing(vec![(1..=600).collect(), (601..=1001).collect()]);
    let describe = mock!(aws_sdk_sfn::Client::describe_execution).then_compute_output(described);
    let rules: Vec<&Rule> = pages.iter().chain([&describe]).collect();
    let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules);
    let (entries, truncated) = history::entries(&sfn, MACHINE, ARN, 1000).await.unwrap();
    assert!(truncated);
    assert_eq!(describe.num_calls(), history::SCAN_LIMIT);
    assert_eq!(entries.len(), history::SCAN_LIMIT / 2);
    assert!(history::text(&[], true, false).contains("only the newest 1000"));
}

// ---- unmap: the conditional delete, then the secret with its recovery window ----

fn delete_item() -> Rule {
    mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(|r| {
            r.table_name() == Some("mappings")
                && r.condition_expression() == Some("attribute_exists(CertificateArn)")
                && r.key().and_then(|k| k.get(attr::PARTITION_KEY))
                    == Some(&AttributeValue::S("env#prod".into()))
        })
        .then_output(|| {
            aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput::builder().build()
        })
}

fn delete_secret() -> Rule {
    mock!(aws_sdk_secretsmanager::Client::delete_secret)
        .match_requests(|r| {
            r.secret_id() == Some(SECRET_ARN)
                && r.recovery_window_in_days() == Some(unmap::RECOVERY_WINDOW_DAYS)
                && r.force_delete_without_recovery().is_none()
        })
        .then_output(|| {
            aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretOutput::builder().build()
        })
}

#[tokio::test]
async fn unmap_deletes_the_mapping_then_schedules_its_secret_for_deletion() {
    let (item, secret) = (delete_item(), delete_secret());
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&item]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&secret]);
    let removed = unmap::remove(
        &dynamodb,
        &secrets,
        "mappings",
        &mapping("web", "prod", None),
    )
    .await
    .unwrap();
    assert_eq!(removed.as_deref(), Some(SECRET_ARN));
    assert_eq!((item.num_calls(), secret.num_calls()), (1, 1));

    // a mapping without a secret deletes none
    let mut bare = mapping("web", "prod", None);
    bare.secret_arn = None;
    let removed = unmap::remove(&dynamodb, &secrets, "mappings", &bare)
        .await
        .unwrap();
    assert_eq!(removed, None);
    assert_eq!((item.num_calls(), secret.num_calls()), (2, 1));
}

#[tokio::test]
async fn unmap_leaves_the_secret_when_the_mapping_is_already_gone() {
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
    let gone = mock!(aws_sdk_dynamodb::Client::delete_item).then_error(|| {
        DeleteItemError::ConditionalCheckFailedException(
            aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                .message("The conditional request failed")
                .build(),
        )
    });
    let secret = delete_secret();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&gone]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&secret]);
    let error = unmap::remove(
        &dynamodb,
        &secrets,
        "mappings",
        &mapping("web", "prod", None),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("deleting the mapping"),
        "{error:#}"
    );
    assert_eq!((gone.num_calls(), secret.num_calls()), (1, 0));
}

#[tokio::test]
async fn unmap_takes_a_secret_already_deleted_as_nothing_left_and_reports_other_failures() {
    use aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError;
    let item = delete_item();
    let secret = mock!(aws_sdk_secretsmanager::Client::delete_secret)
        .sequence()
        .error(|| {
            DeleteSecretError::ResourceNotFoundException(
                aws_sdk_secretsmanager::types::error::ResourceNotFoundException::builder()
                    .message("Secrets Manager can't find the specified secret.")
                    .build(),
            )
        })
        .error(|| {
            DeleteSecretError::InvalidRequestException(
                aws_sdk_secretsmanager::types::error::InvalidRequestException::builder()
                    .message("already scheduled")
                    .meta(
                        ErrorMetadata::builder()
                            .code("InvalidRequestException")
                            .message("already scheduled")
                            .build(),
                    )
                    .build(),
            )
        })
        .build();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&item]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&secret]);
    let m = mapping("web", "prod", None);
    assert_eq!(
        unmap::remove(&dynamodb, &secrets, "mappings", &m)
            .await
            .unwrap(),
        None
    );
    let error = unmap::remove(&dynamodb, &secrets, "mappings", &m)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("the mapping is gone, but its secret")
            && error.contains("already scheduled"),
        "{error}"
    );
    assert_eq!((item.num_calls(), secret.num_calls()), (2, 2));
}

#[tokio::test]
async fn unmap_finds_no_mapping_where_there_is_none() {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    let get = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.consistent_read() == Some(true) && r.table_name() == Some("mappings"))
        .sequence()
        .output(|| GetItemOutput::builder().build())
        .output(|| {
            GetItemOutput::builder()
                .set_item(Some(mapping("web", "prod", Some("0a:01")).to_item()))
                .build()
        })
        .build();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&get]);
    let target = ("env".to_string(), "prod".to_string());
    let none = unmap::find(&dynamodb, "mappings", ARN, "web", &target)
        .await
        .unwrap();
    assert_eq!(none, None);
    let found = unmap::find(&dynamodb, "mappings", ARN, "web", &target)
        .await
        .unwrap();
    assert_eq!(found, Some(mapping("web", "prod", Some("0a:01"))));
    assert_eq!(get.num_calls(), 2);
}
