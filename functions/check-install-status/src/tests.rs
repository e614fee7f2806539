//! Unit tests of the status handler against mocked SSM, DynamoDB and EventBridge.

use super::*;
use crate::event::MAX_RESULTS;
use crate::outcome::{MAX_FAILURES, TRUNCATED};
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_eventbridge::Client as Events;
use aws_sdk_eventbridge::operation::put_events::{PutEventsInput, PutEventsOutput};
use aws_sdk_eventbridge::types::PutEventsResultEntry;
use aws_sdk_ssm::Client as Ssm;
use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
use aws_sdk_ssm::types::{InstanceInformation, PingStatus};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use certship_shared::event::DeploymentEvent;
use certship_shared::evidence::HostEvidence;
use certship_shared::evidence::REDACTED;
use certship_shared::host_report::Outcome;
use certship_shared::lambda::decode;
use certship_shared::mapping::{self, attr};
use certship_shared::{HostCounts, Trigger};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0b5e3c1a-1111-4222-8333-444455556666";
const EXECUTION_ARN: &str =
    "arn:aws:states:us-east-1:123456789012:execution:certificate-deployment:run-1";
const ASSOCIATION: &str = "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a";
const SERIAL: &str = "0a:1b:2c:3d";
/// The dispatched secret version (the fixture's `$.Export.SecretVersionId`).
const VERSION: &str = "5f0c6e1e-0000-4000-8000-000000000001";
const OLD_VERSION: &str = "5f0c6e1e-0000-4000-8000-000000000000";
const TABLE: &str = "certship-mappings";
const EVIDENCE_TABLE: &str = "certship-host-evidence";
const BUS: &str = "certship-bus";
const NOW: &str = "2026-03-01T12:00:00Z";
const DEADLINE: &str = "2026-03-01T12:10:00Z";

fn at(t: &str) -> SystemTime {
    time::parse_rfc3339(t).unwrap()
}

fn mapping_id() -> String {
    naming::mapping_id("web", ARN, "env", "dev")
}

/// The state as the state machine hands it over (the `cargo lambda invoke` fixture) after
/// `previous` polls.
fn input(previous: Option<u32>) -> WorkflowState {
    let fixture =
        serde_json::from_str(include_str!("../../../events/check-install-status.json")).unwrap();
    let mut state: WorkflowState = decode(fixture).unwrap();
    state.install = previous.map(|poll| InstallResult {
        woken_by: None,
        status: InstallStatus::InProgress,
        wait_seconds: 2,
        poll,
        hosts: HostCounts::default(),
        failures: vec![],
    });
    state
}

/// One poll of the bare state (no Task token), as the seed's loop and older executions ask.
async fn poll(
    state: &AppState,
    input: WorkflowState,
    now: SystemTime,
) -> Result<InstallResult, CertshipError> {
    check_at(state, &input, now, None).await
}

#[test]
fn the_fixture_is_the_contract_s_state_after_dispatch() {
    let state = input(None);
    assert_eq!(state.request.certificate_arn, ARN);
    assert_eq!(state.request.trigger, Trigger::Renewal);
    assert_eq!(state.execution.unwrap().id, EXECUTION_ARN);
    let export = state.export.unwrap();
    assert_eq!(
        (export.serial.as_str(), export.secret_version_id.as_str()),
        (SERIAL, VERSION)
    );
    let dispatch = state.dispatch.unwrap();
    assert_eq!(dispatch.association_id.as_deref(), Some(ASSOCIATION));
    assert_eq!(dispatch.association_version.as_deref(), Some("2"));
    assert_eq!(dispatch.command_id, None);
    assert_eq!(dispatch.deadline_at, DEADLINE);
}

/// A managed node as DescribeInstanceInformation lists it.
fn node(instance: &str, ping: PingStatus) -> InstanceInformation {
    InstanceInformation::builder()
        .instance_id(instance)
        .ping_status(ping)
        .build()
}

fn online(instance: &str) -> InstanceInformation {
    node(instance, PingStatus::Online)
}

/// What a host's last run reported, as record-host-evidence stores it.
fn evidence(instance: &str, outcome: Outcome, version: &str) -> HashMap<String, AttributeValue> {
    let failed = outcome.is_failure();
    HostEvidence {
        mapping_id: mapping_id(),
        instance_id: instance.into(),
        tag_value: Some("dev".into()),
        association_id: Some(ASSOCIATION.into()),
        run_id: Some("2026-03-01T11-59-40.000Z".into()),
        outcome,
        reason: (!failed).then(|| "new-serial".to_string()),
        serial: Some("0A1B2C3D".into()),
        secret_version_id: Some(version.into()),
        not_after: Some("2027-01-01T00:00:00Z".into()),
        error: failed.then(|| "reloading nginx failed: rolled back".to_string()),
        sha256: None,
        reloaded: !failed,
        observed_at: "2026-03-01T11:59:40.000Z".into(),
    }
    .to_item()
}

fn converged(instance: &str) -> HashMap<String, AttributeValue> {
    evidence(instance, Outcome::Installed, VERSION)
}

/// One page of tagged nodes, asked for with the target's tag filter.
fn nodes(list: Vec<InstanceInformation>) -> Rule {
    mock!(Ssm::describe_instance_information)
        .match_requests(|req| {
            let filter = &req.filters()[0];
            req.filters().len() == 1
                && filter.key() == "tag:env"
                && filter.values() == ["dev"]
                && req.max_results() == Some(50)
        })
        .then_output(move || node_page(list.clone(), None))
}

fn node_page(
    list: Vec<InstanceInformation>,
    next: Option<&str>,
) -> DescribeInstanceInformationOutput {
    DescribeInstanceInformationOutput::builder()
        .set_instance_information_list(Some(list))
        .set_next_token(next.map(str::to_string))
        .build()
}

/// One page of the mapping's evidence, asked for by its mapping id.
fn evidence_items(items: Vec<HashMap<String, AttributeValue>>) -> Rule {
    mock!(Dynamo::query)
        .match_requests(|req| {
            req.table_name() == Some(EVIDENCE_TABLE)
                && req.expression_attribute_values().unwrap()[":m"]
                    .as_s()
                    .unwrap()
                    == &mapping_id()
        })
        .then_output(move || {
            QueryOutput::builder()
                .set_items(Some(items.clone()))
                .build()
        })
}

use certship_testkit::throttling_response as throttling;

fn ssm_client(rules: &[&Rule]) -> Ssm {
    mock_client!(aws_sdk_ssm, RuleMode::MatchAny, rules, |c| c.retry_config(
        aws_sdk_ssm::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(1))
    ))
}

/// DynamoDB and EventBridge, recording what they were asked to write.
struct Sinks {
    update: Rule,
    put: Rule,
    updates: Arc<Mutex<Vec<UpdateItemInput>>>,
    puts: Arc<Mutex<Vec<PutEventsInput>>>,
}

impl Sinks {
    fn new() -> Self {
        Self::answering(false, None)
    }

    /// The mapping was deleted while the deployment ran.
    fn mapping_deleted() -> Self {
        Self::answering(true, None)
    }

    /// EventBridge refuses the entry with `code`.
    fn refusing_events(code: &'static str) -> Self {
        Self::answering(false, Some(code))
    }

    fn answering(deleted: bool, refused: Option<&'static str>) -> Self {
        let updates = Arc::new(Mutex::new(Vec::new()));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let update = mock!(Dynamo::update_item)
            .match_requests({
                let updates = updates.clone();
                move |req| {
                    updates.lock().unwrap().push(req.clone());
                    true
                }
            })
            .then_compute_response(move |_| {
                if deleted {
                    MockResponse::Error(UpdateItemError::ConditionalCheckFailedException(
                        ConditionalCheckFailedException::builder()
                            .message("The conditional request failed")
                            .build(),
                    ))
                } else {
                    MockResponse::Output(UpdateItemOutput::builder().build())
                }
            });
        let put = mock!(Events::put_events)
            .match_requests({
                let puts = puts.clone();
                move |req| {
                    puts.lock().unwrap().push(req.clone());
                    true
                }
            })
            .then_output(move || match refused {
                None => PutEventsOutput::builder()
                    .failed_entry_count(0)
                    .entries(PutEventsResultEntry::builder().event_id("event-1").build())
                    .build(),
                Some(code) => PutEventsOutput::builder()
                    .failed_entry_count(1)
                    .entries(
                        PutEventsResultEntry::builder()
                            .error_code(code)
                            .error_message("the entry was not put")
                            .build(),
                    )
                    .build(),
            });
        Self {
            update,
            put,
            updates,
            puts,
        }
    }

    /// The handler's state: `ssm` lists the nodes, `evidence` answers the evidence queries.
    fn state(&self, ssm: Ssm, evidence: &[&Rule]) -> AppState {
        self.waiting_state(ssm, evidence, &[], &[])
    }

    /// [`state`](Self::state), with `wait` answering the waiting item's writes (tried first)
    /// and `sfn` the Task completions.
    fn waiting_state(
        &self,
        ssm: Ssm,
        evidence: &[&Rule],
        wait: &[&Rule],
        sfn: &[&Rule],
    ) -> AppState {
        let mut dynamodb_rules = wait.to_vec();
        dynamodb_rules.push(&self.update);
        dynamodb_rules.extend_from_slice(evidence);
        AppState {
            ssm,
            dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, dynamodb_rules),
            events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&self.put]),
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn),
            table_name: TABLE.into(),
            evidence_table_name: EVIDENCE_TABLE.into(),
            event_bus_name: BUS.into(),
        }
    }

    fn calls(&self) -> (usize, usize) {
        (self.update.num_calls(), self.put.num_calls())
    }

    /// The one `LastDeployment` written, checking the update's shape on the way.
    fn last_deployment(&self) -> HashMap<String, AttributeValue> {
        let updates = self.updates.lock().unwrap();
        assert_eq!(updates.len(), 1, "one UpdateItem");
        let update = &updates[0];
        assert_eq!(update.table_name(), Some(TABLE));
        assert_eq!(
            update.key(),
            Some(&mapping::key("env", "dev", ARN, "web")),
            "the mapping's own key"
        );
        assert_eq!(update.update_expression(), Some("SET #ld = :ld"));
        assert_eq!(update.condition_expression(), Some("attribute_exists(#pk)"));
        assert_eq!(
            update.expression_attribute_names(),
            Some(&HashMap::from([
                ("#ld".to_string(), attr::LAST_DEPLOYMENT.to_string()),
                ("#pk".to_string(), attr::PARTITION_KEY.to_string()),
            ]))
        );
        update.expression_attribute_values().unwrap()[":ld"]
            .as_m()
            .unwrap()
            .clone()
    }

    /// The one event entry published and its parsed detail.
    fn event(
        &self,
    ) -> (
        aws_sdk_eventbridge::types::PutEventsRequestEntry,
        serde_json::Value,
    ) {
        let puts = self.puts.lock().unwrap();
        assert_eq!(puts.len(), 1, "one PutEvents");
        assert_eq!(puts[0].entries().len(), 1, "one entry");
        let entry = puts[0].entries()[0].clone();
        assert_eq!(entry.source(), Some(EVENT_SOURCE));
        assert_eq!(entry.event_bus_name(), Some(BUS));
        assert_eq!(entry.resources(), [ARN]);
        let detail: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
        // and it is the shared contract's event, read and written back without a change
        let typed: DeploymentEvent = serde_json::from_value(detail.clone()).unwrap();
        assert_eq!(entry.detail_type(), Some(typed.detail_type()));
        assert_eq!(serde_json::to_value(&typed).unwrap(), detail);
        (entry, detail)
    }
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item[name].as_s().unwrap().clone()
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item[name].as_n().unwrap().clone()
}

#[tokio::test]
async fn every_online_host_converged_is_success_recorded_and_announced() {
    // given two converged hosts and one offline host that never ran, on the third poll
    let list = nodes(vec![
        online("i-0aaa"),
        online("mi-0bbb"),
        node("i-0ccc", PingStatus::ConnectionLost),
    ]);
    let found = evidence_items(vec![
        converged("i-0aaa"),
        evidence("mi-0bbb", Outcome::Unchanged, VERSION),
    ]);
    let sinks = Sinks::new();
    let logs = certship_testkit::logs::capture();

    // when
    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(Some(2)),
        at(NOW),
    )
    .await
    .unwrap();

    // then the offline host does not hold the deployment back
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"Status": "Success", "WaitSeconds": 0, "Poll": 3,
               "Hosts": {"Total": 3, "Succeeded": 2, "Failed": 0, "Pending": 0, "Deferred": 1},
               "Failures": []})
    );
    assert_eq!((list.num_calls(), found.num_calls()), (1, 1));
    assert_eq!(sinks.calls(), (1, 1));
    assert!(
        logs.text().contains("i-0ccc"),
        "the deferred host is logged"
    );

    // and the mapping records how it ended
    let last = sinks.last_deployment();
    assert_eq!(s(&last, "Status"), "Success");
    assert_eq!(n(&last, "Succeeded"), "2");
    assert_eq!(n(&last, "Failed"), "0");
    assert_eq!(s(&last, "FinishedAt"), NOW);
    assert_eq!(s(&last, "ExecutionArn"), EXECUTION_ARN);

    // and the event carries the association and each host's standing and report
    let (entry, detail) = sinks.event();
    assert_eq!(entry.detail_type(), Some(DETAIL_TYPE_SUCCEEDED));
    assert_eq!(
        detail,
        json!({
            "CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env",
            "TargetTagValue": "dev", "Trigger": "renewal", "Serial": SERIAL,
            "AssociationId": ASSOCIATION, "AssociationVersion": "2",
            "ExecutionArn": EXECUTION_ARN, "Outcome": "Success",
            "Hosts": {"Total": 3, "Succeeded": 2, "Failed": 0, "Pending": 0, "Deferred": 1},
            "Results": [
                {"InstanceId": "i-0aaa", "Status": "Converged",
                 "StatusDetails": "installed: new-serial",
                 "Outcome": {"serial": "0A1B2C3D", "not_after": "2027-01-01T00:00:00Z",
                             "secret_version_id": VERSION, "status": "installed",
                             "reason": "new-serial", "reloaded": true}},
                {"InstanceId": "mi-0bbb", "Status": "Converged",
                 "StatusDetails": "unchanged: new-serial",
                 "Outcome": {"serial": "0A1B2C3D", "not_after": "2027-01-01T00:00:00Z",
                             "secret_version_id": VERSION, "status": "unchanged",
                             "reason": "new-serial", "reloaded": true}},
                {"InstanceId": "i-0ccc", "Status": "Deferred", "StatusDetails": "ConnectionLost",
                 "Outcome": null}
            ],
            "Failures": []
        })
    );
}

#[tokio::test]
async fn a_failure_for_the_dispatched_version_ends_install_failed_naming_the_host() {
    // given one converged host and one that rolled the new version back
    let list = nodes(vec![online("i-0aaa"), online("i-0ccc")]);
    let found = evidence_items(vec![
        converged("i-0aaa"),
        evidence("i-0ccc", Outcome::RolledBack, VERSION),
    ]);
    let sinks = Sinks::new();

    // when
    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    // then
    assert_eq!(result.status, InstallStatus::Failed);
    assert_eq!(result.poll, 1);
    assert_eq!(
        result.hosts,
        HostCounts {
            total: 2,
            succeeded: 1,
            failed: 1,
            pending: 0,
            deferred: 0
        }
    );
    assert_eq!(
        serde_json::to_value(&result.failures).unwrap(),
        json!([{"InstanceId": "i-0ccc", "StatusDetails": "rolled-back",
                "Output": "reloading nginx failed: rolled back"}])
    );

    // and the failure is recorded and announced
    let last = sinks.last_deployment();
    assert_eq!(s(&last, "Status"), "Failed");
    assert_eq!(
        (n(&last, "Succeeded"), n(&last, "Failed")),
        ("1".into(), "1".into())
    );
    let (entry, detail) = sinks.event();
    assert_eq!(entry.detail_type(), Some(DETAIL_TYPE_FAILED));
    assert_eq!(detail["Outcome"], "Failed");
    assert_eq!(detail["Results"][1]["Status"], "Failed");
    assert_eq!(detail["Results"][1]["StatusDetails"], "rolled-back");
    assert_eq!(detail["Results"][1]["Outcome"]["status"], "rolled-back");
    assert_eq!(
        detail["Failures"],
        serde_json::to_value(&result.failures).unwrap()
    );
}

#[tokio::test]
async fn evidence_of_an_older_version_is_pending_with_a_growing_wait() {
    for (previous, now, expected_poll, expected_wait) in [
        (None, NOW, 1, 2),
        (Some(1), NOW, 2, 4),
        (Some(2), NOW, 3, 8),
        (Some(3), NOW, 4, 16),
        (Some(4), NOW, 5, 30),
        (Some(9), NOW, 10, 30),
        (Some(9), "2026-03-01T12:09:55Z", 10, 5),
        (Some(9), DEADLINE, 10, 1),
    ] {
        // given one converged host, one failed, one still holding the old version, one that
        // failed the old version, one with no evidence, and one offline
        let list = nodes(vec![
            online("i-0aaa"),
            online("i-0bbb"),
            online("i-0ccc"),
            online("i-0ddd"),
            online("i-0eee"),
            node("i-0fff", PingStatus::Inactive),
        ]);
        let found = evidence_items(vec![
            converged("i-0aaa"),
            evidence("i-0bbb", Outcome::Failed, VERSION),
            evidence("i-0ccc", Outcome::Installed, OLD_VERSION),
            evidence("i-0ddd", Outcome::RolledBack, OLD_VERSION),
        ]);
        let sinks = Sinks::new();

        // when
        let result = poll(
            &sinks.state(ssm_client(&[&list]), &[&found]),
            input(previous),
            at(now),
        )
        .await
        .unwrap();

        // then nothing is recorded yet, and the next poll comes sooner than the deadline
        assert_eq!(result.status, InstallStatus::InProgress, "{previous:?}");
        assert_eq!(
            (result.poll, result.wait_seconds),
            (expected_poll, expected_wait),
            "{previous:?} at {now}"
        );
        assert_eq!(
            result.hosts,
            HostCounts {
                total: 6,
                succeeded: 1,
                failed: 1,
                pending: 3,
                deferred: 1
            }
        );
        assert_eq!(result.failures.len(), 1);
        assert_eq!(result.failures[0].instance_id, "i-0bbb");
        assert_eq!(sinks.calls(), (0, 0));
    }
}

#[tokio::test]
async fn every_page_of_nodes_and_of_evidence_is_read() {
    // given two pages of nodes and two pages of evidence, the failure on the last page
    let first = mock!(Ssm::describe_instance_information)
        .match_requests(|req| req.next_token().is_none())
        .then_output(|| node_page(vec![online("i-01"), online("i-02")], Some("page-2")));
    let second = mock!(Ssm::describe_instance_information)
        .match_requests(|req| req.next_token() == Some("page-2"))
        .then_output(|| node_page(vec![online("i-03")], None));
    let evidence_first = mock!(Dynamo::query)
        .match_requests(|req| req.exclusive_start_key().is_none())
        .then_output(|| {
            QueryOutput::builder()
                .items(converged("i-01"))
                .items(converged("i-02"))
                .set_last_evaluated_key(Some(HostEvidence::key(&mapping_id(), "i-02")))
                .build()
        });
    let evidence_second = mock!(Dynamo::query)
        .match_requests(|req| {
            req.exclusive_start_key() == Some(&HostEvidence::key(&mapping_id(), "i-02"))
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(evidence("i-03", Outcome::Backoff, VERSION))
                .build()
        });
    let sinks = Sinks::new();

    // when
    let result = poll(
        &sinks.state(
            ssm_client(&[&first, &second]),
            &[&evidence_first, &evidence_second],
        ),
        input(Some(1)),
        at(NOW),
    )
    .await
    .unwrap();

    // then
    assert_eq!(
        (
            first.num_calls(),
            second.num_calls(),
            evidence_first.num_calls(),
            evidence_second.num_calls()
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(result.status, InstallStatus::Failed);
    assert_eq!(
        result.hosts,
        HostCounts {
            total: 3,
            succeeded: 2,
            failed: 1,
            pending: 0,
            deferred: 0
        }
    );
    assert_eq!(result.failures[0].instance_id, "i-03");
    assert_eq!(result.failures[0].status_details, "backoff");
    assert_eq!(sinks.event().1["Results"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn no_node_with_the_tag_is_no_targets_recorded_and_announced() {
    let list = nodes(vec![]);
    let found = evidence_items(vec![converged("i-0gone")]);
    let sinks = Sinks::new();

    let err = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(Some(1)),
        at(NOW),
    )
    .await
    .unwrap_err();

    assert_eq!(err.name(), "NoTargets");
    assert!(
        err.to_string().contains("tag env=dev") && err.to_string().contains(ASSOCIATION),
        "{err}"
    );
    let last = sinks.last_deployment();
    assert_eq!(s(&last, "Status"), "NoTargets");
    assert_eq!(
        (n(&last, "Succeeded"), n(&last, "Failed")),
        ("0".into(), "0".into())
    );
    let (entry, detail) = sinks.event();
    assert_eq!(entry.detail_type(), Some(DETAIL_TYPE_FAILED));
    assert_eq!(detail["Outcome"], "NoTargets");
    assert_eq!(detail["Hosts"]["Total"], 0);
    assert_eq!(
        detail["Results"],
        json!([]),
        "evidence of untagged nodes is ignored"
    );
}

#[tokio::test]
async fn only_offline_targets_is_success_with_every_host_deferred() {
    let list = nodes(vec![node("i-0aaa", PingStatus::ConnectionLost)]);
    let found = evidence_items(vec![]);
    let sinks = Sinks::new();

    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    assert_eq!(result.status, InstallStatus::Success);
    assert_eq!((result.hosts.total, result.hosts.deferred), (1, 1));
}

#[tokio::test]
async fn online_hosts_pending_past_the_deadline_are_install_timed_out() {
    // given two online hosts that never reported the version, one second after the deadline
    let list = nodes(vec![
        online("i-0aaa"),
        online("i-0bbb"),
        online("i-0ccc"),
        node("i-0ddd", PingStatus::ConnectionLost),
    ]);
    let found = evidence_items(vec![
        converged("i-0aaa"),
        evidence("i-0ccc", Outcome::Installed, OLD_VERSION),
    ]);
    let sinks = Sinks::new();

    // when
    let err = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(Some(40)),
        at("2026-03-01T12:10:01Z"),
    )
    .await
    .unwrap_err();

    // then
    assert_eq!(err.name(), "InstallTimedOut");
    assert!(
        err.to_string()
            .contains("2 of 4 hosts still pending after the deadline 2026-03-01T12:10:00Z")
            && err.to_string().contains("1 converged, 0 failed, 1 offline")
            && err.to_string().contains(ASSOCIATION),
        "{err}"
    );
    let last = sinks.last_deployment();
    assert_eq!(s(&last, "Status"), "InstallTimedOut");
    assert_eq!(s(&last, "FinishedAt"), "2026-03-01T12:10:01Z");
    assert_eq!(n(&last, "Succeeded"), "1");
    let (entry, detail) = sinks.event();
    assert_eq!(entry.detail_type(), Some(DETAIL_TYPE_FAILED));
    assert_eq!(detail["Outcome"], "InstallTimedOut");
    assert_eq!(
        detail["Hosts"],
        json!({"Total": 4, "Succeeded": 1, "Failed": 0, "Pending": 2, "Deferred": 1})
    );
    assert_eq!(detail["Results"][2]["Status"], "Pending");
    assert_eq!(detail["Results"][2]["StatusDetails"], "Online");
    assert_eq!(
        detail["Results"][2]["Outcome"],
        json!(null),
        "older evidence is no report"
    );
    assert_eq!(detail["Results"][3]["Status"], "Deferred");
}

#[tokio::test]
async fn evidence_written_under_another_tag_value_does_not_count() {
    // given a dev host whose evidence item was written by a prod host under prod/<this mapping>
    // (its IAM lets it write under prod/ only, but it names the mapping and instance)
    let list = nodes(vec![online("i-0aaa")]);
    let mut forged = converged("i-0aaa");
    forged.insert(
        certship_shared::evidence::attr::TAG_VALUE.into(),
        AttributeValue::S("prod".into()),
    );
    let found = evidence_items(vec![forged]);
    let sinks = Sinks::new();

    // when
    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    // then the host has not reported for this mapping
    assert_eq!(result.status, InstallStatus::InProgress);
    assert_eq!((result.hosts.succeeded, result.hosts.pending), (0, 1));
}

#[tokio::test]
async fn a_failure_with_hosts_still_pending_at_the_deadline_is_install_failed_naming_it() {
    // given one host that rolled back and one the association run never reached (MaxErrors
    // stopped it), one second after the deadline
    let list = nodes(vec![online("i-0aaa"), online("i-0bbb")]);
    let found = evidence_items(vec![evidence("i-0aaa", Outcome::RolledBack, VERSION)]);
    let sinks = Sinks::new();

    // when
    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(Some(40)),
        at("2026-03-01T12:10:01Z"),
    )
    .await
    .unwrap();

    // then the failure, not the timeout, is the answer
    assert_eq!(result.status, InstallStatus::Failed);
    assert_eq!((result.hosts.failed, result.hosts.pending), (1, 1));
    assert_eq!(result.failures.len(), 1);
    assert_eq!(result.failures[0].instance_id, "i-0aaa");
    assert_eq!(s(&sinks.last_deployment(), "Status"), "Failed");
}

#[tokio::test]
async fn a_throttled_listing_is_retried_by_the_sdk_and_succeeds() {
    let list = mock!(Ssm::describe_instance_information)
        .sequence()
        .http_response(throttling)
        .output(|| node_page(vec![online("i-0aaa")], None))
        .build();
    let found = evidence_items(vec![converged("i-0aaa")]);
    let sinks = Sinks::new();

    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    assert_eq!(result.status, InstallStatus::Success);
    assert_eq!(list.num_calls(), 2);
    assert_eq!(sinks.calls(), (1, 1));
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_throttled() {
    let list = mock!(Ssm::describe_instance_information)
        .sequence()
        .http_response(throttling)
        .times(3)
        .build();
    let sinks = Sinks::new();

    let err = poll(
        &sinks.state(ssm_client(&[&list]), &[]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap_err();

    assert_eq!(err.name(), "Throttled");
    assert!(
        err.to_string().contains("DescribeInstanceInformation"),
        "{err}"
    );
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    assert_eq!(list.num_calls(), 3);
    assert_eq!(sinks.calls(), (0, 0));
}

#[tokio::test]
async fn a_mapping_deleted_meanwhile_is_tolerated() {
    let list = nodes(vec![online("i-0aaa")]);
    let found = evidence_items(vec![converged("i-0aaa")]);
    let sinks = Sinks::mapping_deleted();
    let logs = certship_testkit::logs::capture();

    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    assert_eq!(result.status, InstallStatus::Success);
    assert_eq!(sinks.calls(), (1, 1), "the event is still published");
    assert!(
        logs.text().contains("LastDeployment not recorded"),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn an_event_eventbridge_refuses_is_an_error_naming_its_code() {
    for (code, name) in [
        ("InternalFailure", "ServiceError"),
        ("ThrottlingException", "Throttled"),
    ] {
        let list = nodes(vec![online("i-0aaa")]);
        let found = evidence_items(vec![converged("i-0aaa")]);
        let sinks = Sinks::refusing_events(code);
        let err = poll(
            &sinks.state(ssm_client(&[&list]), &[&found]),
            input(None),
            at(NOW),
        )
        .await
        .unwrap_err();
        assert_eq!(err.name(), name);
        assert!(err.to_string().contains(code), "{err}");
    }
}

/// Makes a good input bad.
type Breakage = fn(&mut WorkflowState);

#[tokio::test]
async fn an_input_without_an_association_export_or_a_valid_deadline_is_invalid() {
    let cases: [(Breakage, &str); 4] = [
        (|s| s.dispatch = None, "$.Dispatch"),
        (|s| s.export = None, "$.Export"),
        (
            |s| {
                if let Some(d) = s.dispatch.as_mut() {
                    d.deadline_at = "tomorrow".into();
                }
            },
            "DeadlineAt",
        ),
        // an execution started before convergence polled a Run Command
        (
            |s| {
                if let Some(d) = s.dispatch.as_mut() {
                    d.association_id = None;
                    d.association_version = None;
                    d.command_id = Some("5f1c0a52-7d3e-4b8a-9c61-0e2f4a6b8c10".into());
                }
            },
            "predates convergence",
        ),
    ];
    for (break_it, named) in cases {
        let list = nodes(vec![online("i-0aaa")]);
        let sinks = Sinks::new();
        let mut bad = input(None);
        break_it(&mut bad);

        let err = poll(&sinks.state(ssm_client(&[&list]), &[]), bad, at(NOW))
            .await
            .unwrap_err();

        assert_eq!(err.name(), "InvalidRequest");
        assert!(err.to_string().contains(named), "{err}");
        assert_eq!(list.num_calls(), 0);
        assert_eq!(sinks.calls(), (0, 0));
    }
}

#[tokio::test]
async fn secret_material_in_a_hosts_error_never_reaches_the_state_the_event_or_the_logs() {
    // given a broken host script whose error echoed the secret bundle and a decrypted key
    let key_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";
    let passphrase = "Vq3LmZ8kR2pT6wXy";
    let error = format!(
        "{}\n-----BEGIN PRIVATE KEY-----\n{key_body}\n-----END PRIVATE KEY-----\n\
         the key does not match the certificate",
        json!({"SecretString": {"passphrase": passphrase}})
    );
    let mut item = evidence("i-0ccc", Outcome::Failed, VERSION);
    item.insert(
        certship_shared::evidence::attr::ERROR.into(),
        AttributeValue::S(error),
    );
    let list = nodes(vec![online("i-0ccc")]);
    let found = evidence_items(vec![item]);
    let sinks = Sinks::new();
    let logs = certship_testkit::logs::capture();

    // when
    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    // then the diagnosis survives and the secret material does not
    assert_eq!(
        result.failures[0].output,
        format!("{REDACTED}\n{REDACTED}\nthe key does not match the certificate")
    );
    let state = serde_json::to_string(&result).unwrap();
    let detail = sinks.event().1.to_string();
    for (what, text) in [
        ("$.Install", state.as_str()),
        ("the event", detail.as_str()),
        ("the logs", logs.text().as_str()),
    ] {
        certship_testkit::assert_no_secret(what, text, &[key_body, passphrase]);
    }
    assert!(logs.text().contains("checked the deployment's hosts"));
}

#[tokio::test]
async fn a_long_error_keeps_its_tail() {
    // given an error (hand-written, longer than record-host-evidence keeps) cut in a character
    let error = format!("{}\nERROR: nginx reload failed", "é".repeat(2400));
    assert!(!error.is_char_boundary(error.len() - 1000));
    let mut item = evidence("i-0ccc", Outcome::RolledBack, VERSION);
    item.insert(
        certship_shared::evidence::attr::ERROR.into(),
        AttributeValue::S(error.clone()),
    );
    let list = nodes(vec![online("i-0ccc")]);
    let found = evidence_items(vec![item]);
    let sinks = Sinks::new();

    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    let kept = result.failures[0].output.strip_prefix(TRUNCATED).unwrap();
    assert_eq!(
        kept.len(),
        999,
        "cut forward to the next character boundary"
    );
    assert!(error.ends_with(kept));
}

#[tokio::test]
async fn failures_and_results_are_capped_but_counts_stay_exact() {
    let ids: Vec<String> = (0..120).map(|i| format!("i-{i:04}")).collect();
    let list = nodes(ids.iter().map(|id| online(id)).collect());
    let found = evidence_items(
        ids.iter()
            .map(|id| evidence(id, Outcome::Failed, VERSION))
            .collect(),
    );
    let sinks = Sinks::new();

    let result = poll(
        &sinks.state(ssm_client(&[&list]), &[&found]),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    assert_eq!(result.hosts.failed, 120);
    assert_eq!(result.failures.len(), MAX_FAILURES);
    let detail = sinks.event().1;
    assert_eq!(detail["Results"].as_array().unwrap().len(), MAX_RESULTS);
    assert_eq!(detail["Failures"].as_array().unwrap().len(), MAX_FAILURES);
    assert_eq!(detail["Hosts"]["Failed"], 120);
}

// ---- the wait for the hosts' reports (`waitForTaskToken`) ----

const TOKEN: &str = "token-1";

/// The request as the state machine's waitForTaskToken Task sends it.
fn waiting(previous: Option<u32>) -> CheckRequest {
    let payload =
        json!({"TaskToken": TOKEN, "State": serde_json::to_value(input(previous)).unwrap()});
    serde_json::from_value(payload).unwrap()
}

/// The evidence queries, answering the n-th with `pages[n]` (the last one after that).
fn evidence_reads(pages: Vec<Vec<HashMap<String, AttributeValue>>>) -> Rule {
    let served = Arc::new(Mutex::new(0usize));
    mock!(Dynamo::query)
        .match_requests(|req| req.table_name() == Some(EVIDENCE_TABLE))
        .then_compute_output(move |_| {
            let mut n = served.lock().unwrap();
            let page = pages[(*n).min(pages.len() - 1)].clone();
            *n += 1;
            QueryOutput::builder().set_items(Some(page)).build()
        })
}

/// The waiting item's writes: arming (PutItem) and claiming (UpdateItem), recorded; the claim
/// succeeds unless `claimed_by_a_report`.
struct Wait {
    arm: Rule,
    claim: Rule,
    armed: Arc<Mutex<Vec<aws_sdk_dynamodb::operation::put_item::PutItemInput>>>,
}

impl Wait {
    fn new(claimed_by_a_report: bool) -> Self {
        use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
        let armed = Arc::new(Mutex::new(Vec::new()));
        let arm = mock!(Dynamo::put_item)
            .match_requests({
                let armed = armed.clone();
                move |req| {
                    armed.lock().unwrap().push(req.clone());
                    req.table_name() == Some(EVIDENCE_TABLE)
                }
            })
            .then_output(|| PutItemOutput::builder().build());
        let claim = mock!(Dynamo::update_item)
            .match_requests(|req| {
                req.table_name() == Some(EVIDENCE_TABLE)
                    && req.update_expression() == Some("REMOVE #token")
                    && req.expression_attribute_values().unwrap()[":token"]
                        .as_s()
                        .unwrap()
                        == TOKEN
            })
            .then_compute_response(move |_| {
                if claimed_by_a_report {
                    MockResponse::Error(UpdateItemError::ConditionalCheckFailedException(
                        ConditionalCheckFailedException::builder()
                            .message("The conditional request failed")
                            .build(),
                    ))
                } else {
                    MockResponse::Output(UpdateItemOutput::builder().build())
                }
            });
        Self { arm, claim, armed }
    }
}

/// Step Functions accepting the Task's completion, recording (token, output).
fn completions(sent: Arc<Mutex<Vec<(String, String)>>>) -> Rule {
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(move |req| {
            sent.lock().unwrap().push((
                req.task_token().unwrap_or_default().to_string(),
                req.output().unwrap_or_default().to_string(),
            ));
            true
        })
        .then_output(|| SendTaskSuccessOutput::builder().build())
}

async fn check_waiting(
    state: &AppState,
    request: CheckRequest,
) -> Result<InstallResult, CertshipError> {
    let CheckRequest::Waiting {
        task_token,
        state: input,
    } = request
    else {
        panic!("not the waiting form: {request:?}");
    };
    check_at(state, &input, at(NOW), Some(&task_token)).await
}

#[test]
fn the_task_s_payload_and_a_bare_state_both_read() {
    // the ASL's Parameters: {"TaskToken.$": "$$.Task.Token", "State.$": "$"}
    let CheckRequest::Waiting { task_token, state } = waiting(Some(1)) else {
        panic!("the Task's payload did not read as a wait");
    };
    assert_eq!(
        (task_token.as_str(), state.install.unwrap().poll),
        (TOKEN, 1)
    );
    // an execution that started before the wake: the state alone, as before
    let bare: CheckRequest =
        serde_json::from_value(serde_json::to_value(input(None)).unwrap()).unwrap();
    assert!(matches!(bare, CheckRequest::Polled(state) if state.request.cert_name == "web"));
}

#[tokio::test]
async fn pending_hosts_arm_the_wait_and_nothing_ends() {
    // given one converged and one pending online host
    let list = nodes(vec![online("i-0aaa"), online("i-0bbb")]);
    let reads = evidence_reads(vec![vec![converged("i-0aaa")]]);
    let sinks = Sinks::new();
    let wait = Wait::new(false);
    let sent = Arc::default();
    let success = completions(Arc::clone(&sent));
    let state = sinks.waiting_state(
        ssm_client(&[&list]),
        &[&reads],
        &[&wait.arm, &wait.claim],
        &[&success],
    );

    // when the waiting Task's check runs
    let result = check_waiting(&state, waiting(None)).await.unwrap();

    // then the wait is armed with the token, the version and exactly the pending host
    assert_eq!(result.status, InstallStatus::InProgress);
    let armed = wait.armed.lock().unwrap();
    assert_eq!(armed.len(), 1);
    let item = armed[0].item().unwrap();
    assert_eq!(
        s(item, certship_shared::evidence::attr::MAPPING_ID),
        mapping_id()
    );
    assert_eq!(
        s(item, certship_shared::evidence::attr::INSTANCE_ID),
        waiting::SORT_KEY
    );
    assert_eq!(s(item, waiting::attr::TASK_TOKEN), TOKEN);
    assert_eq!(s(item, waiting::attr::SECRET_VERSION_ID), VERSION);
    assert_eq!(
        item[waiting::attr::PENDING].as_ss().unwrap(),
        &["i-0bbb".to_string()]
    );
    // and the evidence was read again after arming, so a report in between is not lost
    assert_eq!(reads.num_calls(), 2);
    // and nothing is completed, recorded or announced: the last report wakes the Task
    assert_eq!(wait.claim.num_calls(), 0);
    assert!(sent.lock().unwrap().is_empty());
    assert_eq!(sinks.calls(), (0, 0));
}

#[tokio::test]
async fn an_ended_deployment_completes_its_own_task() {
    // given every host converged before the check
    let list = nodes(vec![online("i-0aaa")]);
    let reads = evidence_reads(vec![vec![converged("i-0aaa")]]);
    let sinks = Sinks::new();
    let wait = Wait::new(false);
    let sent = Arc::default();
    let success = completions(Arc::clone(&sent));
    let state = sinks.waiting_state(
        ssm_client(&[&list]),
        &[&reads],
        &[&wait.arm, &wait.claim],
        &[&success],
    );

    // when the waiting Task's check runs
    let result = check_waiting(&state, waiting(Some(1))).await.unwrap();

    // then no wait is armed, the ending is recorded and announced, and the Task completed with it
    assert_eq!(result.status, InstallStatus::Success);
    assert!(wait.armed.lock().unwrap().is_empty());
    assert_eq!(sinks.calls(), (1, 1));
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, TOKEN);
    let output: InstallResult = serde_json::from_str(&sent[0].1).unwrap();
    assert_eq!(output, result);
}

#[tokio::test]
async fn a_report_between_the_read_and_the_arming_is_not_lost() {
    // given the last host's report lands after the first read but before the wait is armed
    let list = nodes(vec![online("i-0aaa"), online("i-0bbb")]);
    let reads = evidence_reads(vec![
        vec![converged("i-0aaa")],
        vec![converged("i-0aaa"), converged("i-0bbb")],
    ]);
    let sinks = Sinks::new();
    let wait = Wait::new(false);
    let sent = Arc::default();
    let success = completions(Arc::clone(&sent));
    let state = sinks.waiting_state(
        ssm_client(&[&list]),
        &[&reads],
        &[&wait.arm, &wait.claim],
        &[&success],
    );

    // when the check runs
    let result = check_waiting(&state, waiting(None)).await.unwrap();

    // then the second read sees it: the check takes its wait back and ends the deployment
    assert_eq!(result.status, InstallStatus::Success);
    assert_eq!(
        (wait.armed.lock().unwrap().len(), wait.claim.num_calls()),
        (1, 1)
    );
    assert_eq!(sinks.calls(), (1, 1));
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_wait_a_report_already_claimed_is_left_to_its_wake() {
    // given the last report landed after the arming and claimed the wake itself
    let list = nodes(vec![online("i-0aaa"), online("i-0bbb")]);
    let reads = evidence_reads(vec![
        vec![converged("i-0aaa")],
        vec![converged("i-0aaa"), converged("i-0bbb")],
    ]);
    let sinks = Sinks::new();
    let wait = Wait::new(true);
    let sent = Arc::default();
    let success = completions(Arc::clone(&sent));
    let state = sinks.waiting_state(
        ssm_client(&[&list]),
        &[&reads],
        &[&wait.arm, &wait.claim],
        &[&success],
    );

    // when the check runs
    let result = check_waiting(&state, waiting(None)).await.unwrap();

    // then it ends nothing: the report's wake makes the state machine check again, and that
    // check records and announces the ending once
    assert_eq!(result.status, InstallStatus::InProgress);
    assert_eq!(sinks.calls(), (0, 0));
    assert!(sent.lock().unwrap().is_empty());
}
