//! The ops layer against mocked SDK clients (aws-smithy-mocks): what each call asks AWS, what it
//! makes of the answers, and how often it calls.

use super::{evidence, history, hosts, invocations, nodes, status, unmap};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use certship_shared::HostFailure;
use certship_shared::evidence::HostEvidence;
use certship_shared::host_report::Outcome;
use certship_shared::mapping::{Mapping, attr};
use certship_shared::naming::mapping_id;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
        association_id: None,
        secret_version_id: None,
        last_deployment: None,
    }
}

// ---- a deployment from before convergence: its invocations merged with its Install failures ----

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
async fn host_lines_merge_every_page_of_invocations_with_the_recorded_failures() {
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
    let rows = invocations::host_lines(&ssm, "c-1", &failures)
        .await
        .unwrap();

    // then one row per host, sorted, each with its own outcome and failure
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    let ids: Vec<&str> = rows.iter().map(|r| r.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-2", "i-3"]);
    let (rolled_back, installed, silent) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(installed.state, "Success");
    assert_eq!(
        installed.serial.as_deref(),
        Some("0a:20:e6"),
        "ACM notation"
    );
    assert_eq!(
        (installed.outcome.as_deref(), installed.reloaded),
        (Some("installed"), Some(true))
    );
    assert_eq!(installed.detail, None);
    assert_eq!(rolled_back.state, "Failed");
    assert_eq!(
        rolled_back.serial, None,
        "a failed host does not serve what it tried"
    );
    assert_eq!(rolled_back.outcome.as_deref(), Some("rolled-back"));
    assert_eq!(
        rolled_back.detail.as_deref(),
        Some("rolled back: reload of nginx failed; rolled back")
    );
    assert_eq!(
        (silent.outcome.as_deref(), silent.serial.as_deref()),
        (None, None)
    );
    assert_eq!(
        silent.detail.as_deref(),
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

// ---- hosts: the tagged nodes joined with each mapping's evidence ----

const EVIDENCE: &str = "evidence";

fn prod() -> (String, String) {
    ("env".to_string(), "prod".to_string())
}

/// The prod mapping `web`, whose association now installs secret version `v2` (serial 0a:1b:2c).
fn prod_web() -> Mapping {
    let mut m = mapping("web", "prod", Some("0a:1b:2c"));
    m.secret_version_id = Some("v2".into());
    m.association_id = Some("assoc-1".into());
    m
}

fn id_of(m: &Mapping) -> String {
    mapping_id(
        &m.cert_name,
        &m.certificate_arn,
        &m.target_tag_key,
        &m.target_tag_value,
    )
}

/// What `instance` last reported for `m`: `outcome` for `version`, its serial as openssl prints it.
fn report(
    m: &Mapping,
    instance: &str,
    outcome: Outcome,
    version: &str,
    serial: &str,
) -> HashMap<String, AttributeValue> {
    HostEvidence {
        mapping_id: id_of(m),
        instance_id: instance.into(),
        tag_value: Some(m.target_tag_value.clone()),
        association_id: m.association_id.clone(),
        run_id: Some("2026-01-01T00-00-00.000Z".into()),
        error: outcome
            .is_failure()
            .then(|| "reloading nginx failed: rolled back".to_string()),
        reason: (outcome == Outcome::Installed).then(|| "new-serial".to_string()),
        outcome,
        serial: Some(serial.into()),
        secret_version_id: Some(version.into()),
        not_after: None,
        sha256: None,
        reloaded: false,
        observed_at: "2026-01-01T00:00:00.000Z".into(),
    }
    .to_item()
}

fn node(id: &str, ping: aws_sdk_ssm::types::PingStatus) -> aws_sdk_ssm::types::InstanceInformation {
    aws_sdk_ssm::types::InstanceInformation::builder()
        .instance_id(id)
        .ping_status(ping)
        .build()
}

/// `DescribeInstanceInformation` of the nodes tagged env=`value`, one rule per page.
fn node_pages(
    value: &'static str,
    pages: Vec<Vec<(&'static str, aws_sdk_ssm::types::PingStatus)>>,
) -> Vec<Rule> {
    use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
    let last = pages.len() - 1;
    pages
        .into_iter()
        .enumerate()
        .map(|(i, page)| {
            mock!(aws_sdk_ssm::Client::describe_instance_information)
                .match_requests(move |r| {
                    let filter = r.filters().first();
                    filter.map(|f| f.key()) == Some("tag:env")
                        && filter.map(|f| f.values()) == Some(&[value.to_string()][..])
                        && r.max_results() == Some(nodes::PAGE_SIZE)
                        && r.next_token().map(String::from)
                            == (i > 0).then(|| format!("{value}-{i}"))
                })
                .then_output(move || {
                    DescribeInstanceInformationOutput::builder()
                        .set_instance_information_list(Some(
                            page.iter()
                                .map(|(id, ping)| node(id, ping.clone()))
                                .collect(),
                        ))
                        .set_next_token((i < last).then(|| format!("{value}-{}", i + 1)))
                        .build()
                })
        })
        .collect()
}

/// A `Query` of one partition of `table`, one rule per page.
fn query_pages(
    table: &'static str,
    partition: String,
    pages: Vec<Vec<HashMap<String, AttributeValue>>>,
) -> Vec<Rule> {
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    let last = pages.len() - 1;
    pages
        .into_iter()
        .enumerate()
        .map(|(i, page)| {
            let partition = partition.clone();
            mock!(aws_sdk_dynamodb::Client::query)
                .match_requests(move |r| {
                    r.table_name() == Some(table)
                        && r.expression_attribute_values().and_then(|v| v.get(":pk"))
                            == Some(&AttributeValue::S(partition.clone()))
                        && r.exclusive_start_key()
                            .and_then(|k| k.get("Page"))
                            .and_then(|v| v.as_s().ok())
                            .cloned()
                            == (i > 0).then(|| i.to_string())
                })
                .then_output(move || {
                    let out = QueryOutput::builder().set_items(Some(page.clone()));
                    match i < last {
                        true => out
                            .last_evaluated_key("Page", AttributeValue::S((i + 1).to_string()))
                            .build(),
                        false => out.build(),
                    }
                })
        })
        .collect()
}

fn calls(rules: &[Rule]) -> Vec<usize> {
    rules.iter().map(Rule::num_calls).collect()
}

#[tokio::test]
async fn hosts_joins_every_page_of_nodes_and_evidence_and_filters_them() {
    use aws_sdk_ssm::types::PingStatus::{ConnectionLost, Online};
    let web = prod_web();
    let mut api = mapping("api", "prod", Some("01"));
    api.certificate_arn = OTHER_ARN.into();
    let mut claim = certship_shared::mapping::claim_key("env", "prod", "web");
    claim.insert(attr::CLAIMED_BY.into(), AttributeValue::S(ARN.into()));
    // given the target's partition: a name claim, web (this certificate's) and api (another's)
    let mapping_query = query_pages(
        "mappings",
        "env#prod".into(),
        vec![vec![claim, web.to_item(), api.to_item()]],
    );
    // and web's evidence over two pages: i-1 holds v2, i-3 an older version, i-4 failed v2 (it
    // tried the current serial), i-9 holds v2 but no longer carries the tag
    let evidence_query = query_pages(
        EVIDENCE,
        id_of(&web),
        vec![
            vec![
                report(&web, "i-1", Outcome::Unchanged, "v2", "A1B2C"),
                report(&web, "i-3", Outcome::Installed, "v1", "0A0A"),
                // written by a dev host under dev/<web's mapping id>: not i-2's word
                {
                    let mut forged = report(&web, "i-2", Outcome::Unchanged, "v2", "A1B2C");
                    forged.insert(
                        certship_shared::evidence::attr::TAG_VALUE.into(),
                        AttributeValue::S("dev".into()),
                    );
                    forged
                },
            ],
            vec![
                report(&web, "i-4", Outcome::RolledBack, "v2", "A1B2C"),
                report(&web, "i-9", Outcome::Unchanged, "v2", "A1B2C"),
            ],
        ],
    );
    // and the tagged nodes over two pages: i-2 never reported (for itself), i-5 is offline
    let node_listing = node_pages(
        "prod",
        vec![
            vec![("i-3", Online), ("i-1", Online), ("i-2", Online)],
            vec![("i-4", Online), ("i-5", ConnectionLost)],
        ],
    );
    let dynamodb_rules: Vec<&Rule> = mapping_query.iter().chain(&evidence_query).collect();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules);
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, node_listing.iter());

    // when `certship hosts --target env=prod --certificate-arn ARN` reads them
    let mappings = status::mappings(&dynamodb, "mappings", Some(ARN), Some(&prod()))
        .await
        .unwrap();
    assert_eq!(
        mappings,
        std::slice::from_ref(&web),
        "the claim and api are not web"
    );
    let fleet = hosts::collect(
        &ssm,
        &dynamodb,
        EVIDENCE,
        &prod(),
        mappings.iter().map(hosts::Desired::of_mapping).collect(),
    )
    .await
    .unwrap();

    // then every page was read once, the partition rather than the index
    assert_eq!(calls(&mapping_query), [1]);
    assert_eq!(calls(&evidence_query), [1, 1]);
    assert_eq!(calls(&node_listing), [1, 1]);
    // and each tagged host stands where its evidence and ping put it
    let standing: Vec<(&str, &str, bool)> = fleet
        .rows()
        .iter()
        .map(|r| {
            (
                r.node.instance_id.as_str(),
                r.standing.as_str(),
                r.current(),
            )
        })
        .collect();
    assert_eq!(
        standing,
        [
            ("i-1", "Converged", true),
            ("i-2", "Pending", false),
            ("i-3", "Pending", false),
            ("i-4", "Failed", false),
            ("i-5", "Deferred", false),
        ]
    );
    let kept = |filter: &hosts::Filter| -> Vec<String> {
        fleet
            .kept(filter)
            .iter()
            .map(|r| r.node.instance_id.clone())
            .collect()
    };
    assert_eq!(kept(&hosts::Filter::All).len(), 5, "i-9 is not listed");
    assert_eq!(kept(&hosts::Filter::Stale), ["i-2", "i-3", "i-4", "i-5"]);
    assert_eq!(kept(&hosts::Filter::Failed), ["i-4"]);
    // the current serial in ACM's notation matches the hosts' openssl notation; the host that
    // failed with it does not serve it
    let current: certship_shared::Serial = "0a:1b:2c".parse().unwrap();
    assert_eq!(
        kept(&hosts::Filter::NotSerial(current)),
        ["i-2", "i-3", "i-4", "i-5"]
    );
    let older: certship_shared::Serial = "0a:0a".parse().unwrap();
    assert_eq!(
        kept(&hosts::Filter::NotSerial(older)),
        ["i-1", "i-2", "i-4", "i-5"]
    );
    let counts = fleet.counts(0);
    assert_eq!(
        (
            counts.total,
            counts.succeeded,
            counts.failed,
            counts.deferred,
            counts.pending
        ),
        (5, 1, 1, 1, 2)
    );
    assert_eq!(fleet.untagged_with_evidence(), 1);

    // and the table and JSON say so
    let now = certship_shared::time::parse_rfc3339("2026-01-01T02:00:00Z").unwrap();
    let text = fleet.text(&hosts::Filter::Stale, now, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "INSTANCE", "PING", "NAME", "SERIAL", "OUTCOME", "REASON", "WHEN", "CURRENT"
        ]
    );
    assert!(!text.contains("i-1 "), "i-1 is current: {text}");
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("i-2"), "i-2 Online web - - - - no");
    assert_eq!(
        row("i-3"),
        "i-3 Online web 0a:0a installed new-serial 2h ago no"
    );
    assert!(
        row("i-4")
            .starts_with("i-4 Online web 0a:1b:2c (tried) rolled-back reloading nginx failed"),
        "{}",
        row("i-4")
    );
    assert_eq!(row("i-5"), "i-5 ConnectionLost web - - - - no");
    assert!(
        text.contains("\nweb: converged 1/5, failed 1, deferred 1, pending 2"),
        "{text}"
    );
    assert!(
        text.contains("1 host(s) with evidence no longer carry env=prod"),
        "{text}"
    );
    let json = fleet.json(&hosts::Filter::Failed);
    assert_eq!(json["hosts"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["hosts"][0]["instanceId"], "i-4");
    assert_eq!(json["hosts"][0]["state"], "Failed");
    assert_eq!(json["hosts"][0]["serial"], "0a:1b:2c");
    assert_eq!(json["mappings"][0]["hosts"]["Succeeded"], 1);
    assert_eq!(json["mappings"][0]["mappingId"], id_of(&web));
}

#[test]
fn not_serial_keeps_a_host_only_if_none_of_its_mappings_serves_the_serial() {
    use aws_sdk_ssm::types::PingStatus::Online;
    // given two mappings on env=prod: web (serial 0a:1b:2c) and api (serial 0c:0c)
    let web = prod_web();
    let mut api = mapping("api", "prod", Some("0c:0c"));
    api.secret_version_id = Some("v7".into());
    let evidence = |m: &Mapping, rows: &[(&str, &str, &str)]| -> HashMap<String, HostEvidence> {
        rows.iter()
            .map(|(instance, version, serial)| {
                let e = HostEvidence::from_item(&report(
                    m,
                    instance,
                    Outcome::Unchanged,
                    version,
                    serial,
                ))
                .unwrap();
                (instance.to_string(), e)
            })
            .collect()
    };
    let fleet = hosts::TargetHosts {
        target: prod(),
        nodes: ["i-1", "i-2", "i-3"]
            .map(|id| nodes::Node {
                instance_id: id.into(),
                ping: Some(Online),
            })
            .to_vec(),
        mappings: vec![
            hosts::MappingEvidence {
                desired: hosts::Desired::of_mapping(&web),
                // i-1 serves web's serial; i-2 an older one; i-3 never reported for web
                evidence: evidence(&web, &[("i-1", "v2", "0A1B2C"), ("i-2", "v1", "0A0A")]),
            },
            hosts::MappingEvidence {
                desired: hosts::Desired::of_mapping(&api),
                evidence: evidence(&api, &[("i-1", "v7", "0C0C"), ("i-2", "v7", "0C0C")]),
            },
        ],
    };

    // when asked which hosts do not serve web's serial
    let filter = hosts::Filter::NotSerial("0a:1b:2c".parse().unwrap());
    let kept: Vec<(&str, &str)> = fleet
        .kept(&filter)
        .iter()
        .map(|r| (r.node.instance_id.as_str(), r.desired.cert_name.as_str()))
        .collect();

    // then i-1 (serving it as web, though not as api) is not listed; i-2 and i-3 are, whole
    assert_eq!(
        kept,
        [
            ("i-2", "web"),
            ("i-2", "api"),
            ("i-3", "web"),
            ("i-3", "api")
        ]
    );
    // and a per-row filter still judges each pair
    let stale: Vec<(&str, &str)> = fleet
        .kept(&hosts::Filter::Stale)
        .iter()
        .map(|r| (r.node.instance_id.as_str(), r.desired.cert_name.as_str()))
        .collect();
    assert_eq!(stale, [("i-2", "web"), ("i-3", "web"), ("i-3", "api")]);
}

#[tokio::test]
async fn which_of_1000_hosts_do_not_hold_a_serial_takes_22_calls() {
    use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
    use aws_sdk_ssm::types::PingStatus::Online;
    const HOSTS: usize = 1000;
    let instance = |n: usize| format!("i-{n:017x}");
    // given 1,000 tagged nodes, served 50 a page as the API does
    let node_listing = mock!(aws_sdk_ssm::Client::describe_instance_information)
        .match_requests(|r| r.max_results() == Some(nodes::PAGE_SIZE))
        .then_compute_output(move |r| {
            let page: usize = r.next_token().map_or(0, |t| t.parse().unwrap());
            let size = nodes::PAGE_SIZE as usize;
            DescribeInstanceInformationOutput::builder()
                .set_instance_information_list(Some(
                    (page * size..(page + 1) * size)
                        .map(|n| node(&instance(n), Online))
                        .collect(),
                ))
                .set_next_token(((page + 1) * size < HOSTS).then(|| (page + 1).to_string()))
                .build()
        });
    // and one mapping whose evidence (about 300 KB) fits one page: ten hosts hold an older serial
    let web = prod_web();
    let mapping_query = query_pages("mappings", "env#prod".into(), vec![vec![web.to_item()]]);
    let evidence_query = query_pages(
        EVIDENCE,
        id_of(&web),
        vec![
            (0..HOSTS)
                .map(|n| match n % 100 {
                    7 => report(&web, &instance(n), Outcome::Installed, "v1", "0A0A"),
                    _ => report(&web, &instance(n), Outcome::Unchanged, "v2", "A1B2C"),
                })
                .collect(),
        ],
    );
    let dynamodb_rules: Vec<&Rule> = mapping_query.iter().chain(&evidence_query).collect();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules);
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&node_listing]);

    // when asked which env=prod hosts do not hold 0a:1b:2c
    let mappings = status::mappings(&dynamodb, "mappings", None, Some(&prod()))
        .await
        .unwrap();
    let fleet = hosts::collect(
        &ssm,
        &dynamodb,
        EVIDENCE,
        &prod(),
        mappings.iter().map(hosts::Desired::of_mapping).collect(),
    )
    .await
    .unwrap();
    let filter = hosts::Filter::NotSerial("0a:1b:2c".parse().unwrap());
    let answer = fleet.json(&filter);

    // then ten hosts, from 20 pages of nodes, the mapping and one evidence query
    assert_eq!(answer["hosts"].as_array().unwrap().len(), 10);
    assert_eq!(answer["hosts"][0]["instanceId"], instance(7));
    let made = (
        node_listing.num_calls(),
        calls(&mapping_query)[0],
        calls(&evidence_query)[0],
    );
    println!(
        "1,000 hosts, one mapping: {} DescribeInstanceInformation + {} mapping Query + {} evidence Query = {} calls",
        made.0,
        made.1,
        made.2,
        made.0 + made.1 + made.2
    );
    assert_eq!(made, (20, 1, 1));
}

// ---- the deployment report: each tagged host against the version the execution exported ----

/// An execution of web to env=prod that exported `v2` and updated the association, as its last
/// Task output says.
fn watched(status: aws_sdk_sfn::types::ExecutionStatus) -> super::watch::Watched {
    let state: certship_shared::WorkflowState = serde_json::from_value(serde_json::json!({
        "CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "prod",
        "Export": {"SecretArn": SECRET_ARN, "SecretVersionId": "v2", "Serial": "0a:1b:2c",
                   "NotAfter": "2027-01-01T00:00:00Z", "KeyAlgorithm": "EC_prime256v1",
                   "Domains": ["www.example.com"]},
        "Dispatch": {"AssociationId": "assoc-1", "AssociationVersion": "4",
                     "RequestedAt": "2026-01-01T00:00:00Z", "DeadlineAt": "2026-01-01T00:10:00Z",
                     "DocumentName": "Install-Certificate-Linux"},
        "Install": {"Status": "Failed", "WaitSeconds": 2, "Poll": 5,
                    "Hosts": {"Total": 4, "Succeeded": 1, "Failed": 1, "Pending": 1, "Deferred": 1},
                    "Failures": []}
    }))
    .unwrap();
    let mut seen = super::watch::Seen::default();
    seen.absorb(state);
    super::watch::Watched {
        ending: super::execution::Ending {
            status,
            error: Some("InstallFailed".into()),
            cause: None,
            output: None,
        },
        seen,
    }
}

#[tokio::test]
async fn a_deployment_report_stands_each_tagged_host_against_the_exported_version() {
    use super::report::{HostSources, Report};
    use aws_sdk_ssm::types::PingStatus::{ConnectionLost, Online};
    let web = prod_web();
    // given i-1 converged, i-2 rolled back, i-3 offline on the previous version, i-4 silent
    let node_listing = node_pages(
        "prod",
        vec![vec![
            ("i-1", Online),
            ("i-2", Online),
            ("i-3", ConnectionLost),
            ("i-4", Online),
        ]],
    );
    let evidence_query = query_pages(
        EVIDENCE,
        id_of(&web),
        vec![vec![
            report(&web, "i-1", Outcome::Installed, "v2", "A1B2C"),
            report(&web, "i-2", Outcome::RolledBack, "v2", "A1B2C"),
            report(&web, "i-3", Outcome::Unchanged, "v1", "0A0A"),
        ]],
    );
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, node_listing.iter());
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, evidence_query.iter());
    let sources = HostSources {
        ssm: &ssm,
        dynamodb: &dynamodb,
        evidence_table: Ok(EVIDENCE.into()),
    };

    // when
    let report = Report::collect(
        &sources,
        "arn:execution",
        watched(aws_sdk_sfn::types::ExecutionStatus::Failed),
    )
    .await;

    // then one node listing and one evidence query, each host where it stands
    assert_eq!(
        (calls(&node_listing), calls(&evidence_query)),
        (vec![1], vec![1])
    );
    assert_eq!(report.note, None);
    let states: Vec<(&str, &str)> = report
        .hosts
        .iter()
        .map(|h| (h.instance_id.as_str(), h.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("i-1", "Converged"),
            ("i-2", "Failed"),
            ("i-3", "Deferred"),
            ("i-4", "Pending")
        ]
    );
    let text = report.text(false);
    assert!(text.starts_with("Deployment failed: InstallFailed\nHosts: converged 1/4, failed 1, deferred 1, pending 1 (offline hosts get it"), "{text}");
    let row = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("i-1"), "i-1 Converged installed 0a:1b:2c no new-serial");
    assert_eq!(
        row("i-2"),
        "i-2 Failed rolled-back 0a:1b:2c (tried) no reloading nginx failed: rolled back"
    );
    assert!(
        row("i-3").starts_with("i-3 Deferred unchanged 0a:0a no offline (ConnectionLost)"),
        "{}",
        row("i-3")
    );
    assert_eq!(row("i-4"), "i-4 Pending - - - no report yet");
    let json = report.json();
    assert_eq!(json["associationId"], "assoc-1");
    assert_eq!(json["commandId"], serde_json::Value::Null);
    assert_eq!(json["counts"]["Deferred"], 1);
    assert_eq!(json["hosts"][1]["state"], "Failed");
    assert_eq!(json["hosts"][1]["serial"], "0a:1b:2c");

    // without the evidence table, the report keeps the counts and says why there are no rows
    let sources = HostSources {
        evidence_table: Err("which certship? Pass --evidence-table-name".into()),
        ..sources
    };
    let report = Report::collect(
        &sources,
        "arn:execution",
        watched(aws_sdk_sfn::types::ExecutionStatus::Failed),
    )
    .await;
    assert!(report.hosts.is_empty());
    assert_eq!(calls(&node_listing), [1], "nothing more was asked");
    let text = report.text(false);
    assert!(text.contains("Hosts: converged 1/4"), "{text}");
    assert!(
        text.ends_with("the hosts are not listed: finding the evidence table: which certship? Pass --evidence-table-name"),
        "{text}"
    );
}

// ---- status: the HOSTS column ----

fn acm_view() -> Result<status::AcmView, String> {
    Ok(status::AcmView {
        serial: None,
        not_after: Some("2027-01-01T00:00:00Z".into()),
        days_left: Some(90),
        status: Some("ISSUED".into()),
    })
}

#[tokio::test]
async fn status_counts_current_hosts_with_one_listing_per_target_and_one_query_per_mapping() {
    use aws_sdk_ssm::types::PingStatus::Online;
    let web = prod_web();
    let mut api = mapping("api", "prod", Some("01"));
    api.certificate_arn = OTHER_ARN.into();
    api.secret_version_id = Some("a1".into());
    let mut dev = mapping("web", "dev", Some("02"));
    dev.secret_version_id = Some("d1".into());
    // given two prod mappings on three nodes and a dev mapping on one
    let prod_nodes = node_pages(
        "prod",
        vec![vec![("i-1", Online), ("i-2", Online), ("i-3", Online)]],
    );
    let dev_nodes = node_pages("dev", vec![vec![("i-7", Online)]]);
    let web_evidence = query_pages(
        EVIDENCE,
        id_of(&web),
        vec![vec![
            report(&web, "i-1", Outcome::Unchanged, "v2", "A1B2C"),
            report(&web, "i-2", Outcome::Installed, "v2", "A1B2C"),
            report(&web, "i-3", Outcome::Installed, "v1", "0A0A"),
        ]],
    );
    let api_evidence = query_pages(
        EVIDENCE,
        id_of(&api),
        vec![vec![report(&api, "i-1", Outcome::Failed, "a1", "01")]],
    );
    let dev_evidence = query_pages(
        EVIDENCE,
        id_of(&dev),
        vec![vec![report(&dev, "i-7", Outcome::Installed, "d1", "02")]],
    );
    let ssm_rules: Vec<&Rule> = prod_nodes.iter().chain(&dev_nodes).collect();
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, ssm_rules);
    let dynamodb_rules: Vec<&Rule> = web_evidence
        .iter()
        .chain(&api_evidence)
        .chain(&dev_evidence)
        .collect();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules);
    let row = |mapping: &Mapping| status::Row {
        mapping: mapping.clone(),
        acm: acm_view(),
        hosts: None,
    };
    let mut rows = vec![row(&dev), row(&web), row(&api)];

    // when
    status::count_hosts(&ssm, &dynamodb, Ok(EVIDENCE), &mut rows).await;

    // then one listing per target, one query per mapping
    assert_eq!((calls(&prod_nodes), calls(&dev_nodes)), (vec![1], vec![1]));
    assert_eq!(
        (
            calls(&web_evidence),
            calls(&api_evidence),
            calls(&dev_evidence)
        ),
        (vec![1], vec![1], vec![1])
    );
    let current: Vec<(u32, u32)> = rows
        .iter()
        .map(|r| {
            let c = r.hosts.clone().unwrap().unwrap();
            (c.succeeded, c.total)
        })
        .collect();
    assert_eq!(current, [(1, 1), (2, 3), (0, 3)]);
    let text = status::text(&rows, false);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "CERTIFICATE",
            "NAME",
            "TARGET",
            "DEPLOYED SERIAL",
            "HOSTS",
            "EXPIRES",
            "LAST DEPLOYMENT",
            "ACM"
        ]
    );
    for expected in ["1/1 current", "2/3 current", "0/3 current"] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    let json = status::json(&rows);
    assert_eq!(json[2]["hosts"]["failed"], 1);
    assert_eq!(json[1]["hosts"]["current"], 2);

    // without an evidence table (an older stack), the column says why, and nothing is asked
    let mut rows = vec![row(&web)];
    status::count_hosts(
        &ssm,
        &dynamodb,
        Err("stack certship has no output EvidenceTableName".into()),
        &mut rows,
    )
    .await;
    assert_eq!(calls(&prod_nodes), [1]);
    let text = status::text(&rows, false);
    assert!(text.lines().nth(1).unwrap().contains(" ? "), "{text}");
    assert!(
        text.ends_with("HOSTS ?: stack certship has no output EvidenceTableName"),
        "{text}"
    );
}

// ---- unmap: association, evidence, mapping, claim, secret ----

const TABLES: unmap::Tables<'static> = unmap::Tables {
    mappings: "mappings",
    evidence: EVIDENCE,
};

fn delete_mapping_item() -> Rule {
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

/// The conditional delete of the name claim of `web` on env=prod, held by [`ARN`].
fn claim_delete() -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_dynamodb::operation::delete_item::DeleteItemInput,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemError,
> {
    mock!(aws_sdk_dynamodb::Client::delete_item).match_requests(|r| {
        r.key().and_then(|k| k.get(attr::SORT_KEY))
            == Some(&AttributeValue::S("CertName#web".into()))
            && r.condition_expression() == Some("#by = :arn")
            && r.expression_attribute_names()
                .and_then(|n| n.get("#by"))
                .map(String::as_str)
                == Some(attr::CLAIMED_BY)
            && r.expression_attribute_values().and_then(|v| v.get(":arn"))
                == Some(&AttributeValue::S(ARN.into()))
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

fn no_evidence() -> Vec<Rule> {
    query_pages(EVIDENCE, id_of(&prod_web()), vec![vec![]])
}

#[tokio::test]
async fn unmap_deletes_the_association_evidence_in_batches_of_25_mapping_claim_and_secret() {
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
    let web = prod_web();
    // given 30 evidence items, keys only
    let keys: Vec<HashMap<String, AttributeValue>> = (0..30)
        .map(|n| HostEvidence::key(&id_of(&web), &format!("i-{n:02}")))
        .collect();
    let listing = query_pages(
        EVIDENCE,
        id_of(&web),
        vec![keys[..20].to_vec(), keys[20..].to_vec()],
    );
    // and DynamoDB leaving one item of the first batch unprocessed
    let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let seen = batches.clone();
    let batch = mock!(aws_sdk_dynamodb::Client::batch_write_item).then_compute_output(move |r| {
        let requests = r.request_items().unwrap()[EVIDENCE].clone();
        let ids: Vec<String> = requests
            .iter()
            .map(|w| {
                let key = w.delete_request().unwrap().key();
                assert_eq!(key.len(), 2, "keys only: {key:?}");
                key["InstanceId"].as_s().unwrap().clone()
            })
            .collect();
        let mut seen = seen.lock().unwrap();
        seen.push(ids);
        match seen.len() {
            1 => BatchWriteItemOutput::builder()
                .unprocessed_items(EVIDENCE, vec![requests[3].clone()])
                .build(),
            _ => BatchWriteItemOutput::builder().build(),
        }
    });
    let association = mock!(aws_sdk_ssm::Client::delete_association)
        .match_requests(|r| r.association_id() == Some("assoc-1"))
        .then_output(|| {
            aws_sdk_ssm::operation::delete_association::DeleteAssociationOutput::builder().build()
        });
    let (item, claim, secret) = (
        delete_mapping_item(),
        claim_delete().then_output(|| {
            aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput::builder().build()
        }),
        delete_secret(),
    );
    let dynamodb_rules: Vec<&Rule> = listing.iter().chain([&batch, &item, &claim]).collect();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules);
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&association]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&secret]);

    // when
    let removed = unmap::remove(&dynamodb, &ssm, &secrets, &TABLES, &web)
        .await
        .unwrap();

    // then everything of the mapping is gone, the evidence in two batches and one retry
    assert_eq!(
        removed,
        unmap::Removed {
            associations: vec!["assoc-1".into()],
            evidence_items: 30,
            claim_released: true,
            secret_arn: Some(SECRET_ARN.into()),
        }
    );
    let batches = batches.lock().unwrap().clone();
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [evidence::BATCH_SIZE, 1, 5]
    );
    assert_eq!(batches[1], ["i-03"], "the unprocessed item, sent again");
    assert_eq!(calls(&listing), [1, 1]);
    assert_eq!(
        (
            association.num_calls(),
            item.num_calls(),
            claim.num_calls(),
            secret.num_calls()
        ),
        (1, 1, 1, 1)
    );
}

#[tokio::test]
async fn unmap_finds_an_unrecorded_association_by_name_and_leaves_another_certificates_claim() {
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
    use aws_sdk_ssm::operation::delete_association::DeleteAssociationError;
    use aws_sdk_ssm::operation::list_associations::ListAssociationsOutput;
    use aws_sdk_ssm::types::{Association, AssociationFilterKey};
    // given a mapping item that names no association (its dispatch failed after creating it)
    let mut web = prod_web();
    web.association_id = None;
    let name = certship_shared::naming::association_name(&id_of(&web));
    let listed_name = name.clone();
    let list = mock!(aws_sdk_ssm::Client::list_associations)
        .match_requests(move |r| {
            r.association_filter_list()
                .first()
                .map(|f| (f.key(), f.value()))
                == Some((&AssociationFilterKey::AssociationName, listed_name.as_str()))
        })
        .then_output(move || {
            ListAssociationsOutput::builder()
                .associations(
                    Association::builder()
                        .association_name(&name)
                        .association_id("assoc-by-name")
                        .build(),
                )
                .associations(
                    Association::builder()
                        .association_name(format!("{name}-other"))
                        .association_id("assoc-other")
                        .build(),
                )
                .build()
        });
    // which another unmap deleted meanwhile
    let gone = mock!(aws_sdk_ssm::Client::delete_association)
        .match_requests(|r| r.association_id() == Some("assoc-by-name"))
        .then_error(|| {
            DeleteAssociationError::AssociationDoesNotExist(
                aws_sdk_ssm::types::error::AssociationDoesNotExist::builder()
                    .message("no such association")
                    .build(),
            )
        });
    // and the name claimed by another certificate
    let claim = claim_delete().then_error(|| {
        DeleteItemError::ConditionalCheckFailedException(
            aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                .message("The conditional request failed")
                .build(),
        )
    });
    let (evidence, item, secret) = (no_evidence(), delete_mapping_item(), delete_secret());
    let dynamodb_rules: Vec<&Rule> = evidence.iter().chain([&item, &claim]).collect();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules);
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&list, &gone]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&secret]);

    let removed = unmap::remove(&dynamodb, &ssm, &secrets, &TABLES, &web)
        .await
        .unwrap();

    assert_eq!(removed.associations, Vec::<String>::new());
    assert_eq!(removed.evidence_items, 0);
    assert!(!removed.claim_released, "another certificate's claim stays");
    assert_eq!(removed.secret_arn.as_deref(), Some(SECRET_ARN));
    assert_eq!(
        (
            list.num_calls(),
            gone.num_calls(),
            item.num_calls(),
            claim.num_calls()
        ),
        (1, 1, 1, 1),
        "only the association of the mapping's own name is deleted"
    );
}

#[tokio::test]
async fn unmap_finishes_when_another_unmap_deleted_the_mapping_meanwhile() {
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
    // given every conditional delete failing: the claim and the mapping item are already gone
    let gone = mock!(aws_sdk_dynamodb::Client::delete_item).then_error(|| {
        DeleteItemError::ConditionalCheckFailedException(
            aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                .message("The conditional request failed")
                .build(),
        )
    });
    let association = mock!(aws_sdk_ssm::Client::delete_association).then_output(|| {
        aws_sdk_ssm::operation::delete_association::DeleteAssociationOutput::builder().build()
    });
    let (evidence, secret) = (no_evidence(), delete_secret());
    let dynamodb_rules: Vec<&Rule> = evidence.iter().chain([&gone]).collect();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules);
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&association]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&secret]);

    let removed = unmap::remove(&dynamodb, &ssm, &secrets, &TABLES, &prod_web())
        .await
        .unwrap();

    // then the secret was still scheduled for deletion before the mapping item was tried, last
    assert!(!removed.claim_released);
    assert_eq!(removed.secret_arn.as_deref(), Some(SECRET_ARN));
    assert_eq!((gone.num_calls(), secret.num_calls()), (2, 1));
}

#[tokio::test]
async fn unmap_takes_a_secret_already_deleted_as_nothing_left_and_reports_other_failures() {
    use aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError;
    let (evidence, item) = (no_evidence(), delete_mapping_item());
    let claim = claim_delete().then_output(|| {
        aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput::builder().build()
    });
    let association = mock!(aws_sdk_ssm::Client::delete_association).then_output(|| {
        aws_sdk_ssm::operation::delete_association::DeleteAssociationOutput::builder().build()
    });
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
        .error(|| {
            let message = "You can't perform this operation on the secret because it was marked \
                           for deletion.";
            DeleteSecretError::InvalidRequestException(
                aws_sdk_secretsmanager::types::error::InvalidRequestException::builder()
                    .message(message)
                    .meta(
                        ErrorMetadata::builder()
                            .code("InvalidRequestException")
                            .message(message)
                            .build(),
                    )
                    .build(),
            )
        })
        .build();
    let dynamodb_rules: Vec<&Rule> = evidence.iter().chain([&item, &claim]).collect();
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules);
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&association]);
    let secrets = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&secret]);
    let m = prod_web();
    let removed = unmap::remove(&dynamodb, &ssm, &secrets, &TABLES, &m)
        .await
        .unwrap();
    assert_eq!(removed.secret_arn, None);
    let error = unmap::remove(&dynamodb, &ssm, &secrets, &TABLES, &m)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("was not scheduled for deletion (the mapping stays")
            && error.contains("already scheduled"),
        "{error}"
    );
    assert_eq!(
        (item.num_calls(), secret.num_calls()),
        (1, 2),
        "the mapping stays when its secret could not be deleted"
    );
    // a secret an earlier, interrupted unmap already scheduled is done
    let removed = unmap::remove(&dynamodb, &ssm, &secrets, &TABLES, &m)
        .await
        .unwrap();
    assert_eq!(removed.secret_arn.as_deref(), Some(SECRET_ARN));
    assert_eq!((item.num_calls(), secret.num_calls()), (2, 3));

    // a mapping without a secret deletes none
    let mut bare = prod_web();
    bare.secret_arn = None;
    let removed = unmap::remove(&dynamodb, &ssm, &secrets, &TABLES, &bare)
        .await
        .unwrap();
    assert_eq!(removed.secret_arn, None);
    assert_eq!((item.num_calls(), secret.num_calls()), (3, 3));
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
