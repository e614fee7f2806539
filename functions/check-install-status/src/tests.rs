//! Unit tests of the status handler against mocked SSM, DynamoDB and EventBridge.

use super::*;
use crate::event::MAX_RESULTS;
use crate::hosts::REDACTED;
use crate::outcome::{MAX_FAILURES, TRUNCATED};
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_eventbridge::Client as Events;
use aws_sdk_eventbridge::operation::put_events::{PutEventsInput, PutEventsOutput};
use aws_sdk_eventbridge::types::PutEventsResultEntry;
use aws_sdk_ssm::Client as Ssm;
use aws_sdk_ssm::operation::list_command_invocations::ListCommandInvocationsOutput;
use aws_sdk_ssm::operation::list_commands::ListCommandsOutput;
use aws_sdk_ssm::types::{
    Command, CommandInvocation, CommandInvocationStatus, CommandPlugin, CommandStatus,
};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use certship_shared::event::DeploymentEvent;
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
const COMMAND_ID: &str = "5f1c0a52-7d3e-4b8a-9c61-0e2f4a6b8c10";
const SERIAL: &str = "0a:1b:2c:3d";
const TABLE: &str = "certship-mappings";
const BUS: &str = "certship-bus";
const NOW: &str = "2026-03-01T12:00:00Z";
const DEADLINE: &str = "2026-03-01T12:10:00Z";

fn at(t: &str) -> SystemTime {
    time::parse_rfc3339(t).unwrap()
}

/// The state as the state machine hands it over (the `cargo lambda invoke` fixture) after
/// `previous` polls.
fn input(previous: Option<u32>) -> WorkflowState {
    let fixture =
        serde_json::from_str(include_str!("../../../events/check-install-status.json")).unwrap();
    let mut state: WorkflowState = decode(fixture).unwrap();
    state.install = previous.map(|poll| InstallResult {
        status: InstallStatus::InProgress,
        wait_seconds: 2,
        poll,
        hosts: HostCounts::default(),
        failures: vec![],
    });
    state
}

#[test]
fn the_fixture_is_the_contract_s_state_after_dispatch() {
    let state = input(None);
    assert_eq!(state.request.certificate_arn, ARN);
    assert_eq!(state.request.trigger, Trigger::Renewal);
    assert_eq!(state.execution.unwrap().id, EXECUTION_ARN);
    assert_eq!(state.export.unwrap().serial, SERIAL);
    let dispatch = state.dispatch.unwrap();
    assert_eq!(
        (dispatch.command_id.as_str(), dispatch.deadline_at.as_str()),
        (COMMAND_ID, DEADLINE)
    );
}

/// The line the host script prints last.
fn report_line(instance: &str) -> String {
    json!({"cert_name": "web", "serial": SERIAL, "not_after": "2027-01-01T00:00:00Z",
           "changed": true, "reloaded": true, "rolled_back": false, "host": instance})
    .to_string()
}

fn invocation(instance: &str, status: &str, details: &str, output: &str) -> CommandInvocation {
    CommandInvocation::builder()
        .command_id(COMMAND_ID)
        .instance_id(instance)
        .status(CommandInvocationStatus::from(status))
        .status_details(details)
        .command_plugins(
            CommandPlugin::builder()
                .name("installCertificate")
                .output(output)
                .build(),
        )
        .build()
}

fn succeeded(instance: &str) -> CommandInvocation {
    let output = format!(
        "fetched the secret version\ninstalled\n{}\n",
        report_line(instance)
    );
    invocation(instance, "Success", "Success", &output)
}

fn pending(instance: &str) -> CommandInvocation {
    invocation(instance, "InProgress", "InProgress", "")
}

/// One page holding `invocations`, asked for with details.
fn listing(invocations: Vec<CommandInvocation>) -> Rule {
    mock!(Ssm::list_command_invocations)
        .match_requests(|req| req.command_id() == Some(COMMAND_ID) && req.details() == Some(true))
        .then_output(move || page(invocations.clone(), None))
}

fn page(invocations: Vec<CommandInvocation>, next: Option<&str>) -> ListCommandInvocationsOutput {
    ListCommandInvocationsOutput::builder()
        .set_command_invocations(Some(invocations))
        .set_next_token(next.map(str::to_string))
        .build()
}

fn command(status: CommandStatus, target_count: i32) -> Rule {
    mock!(Ssm::list_commands)
        .match_requests(|req| req.command_id() == Some(COMMAND_ID))
        .then_output(move || {
            ListCommandsOutput::builder()
                .commands(
                    Command::builder()
                        .command_id(COMMAND_ID)
                        .status(status.clone())
                        .target_count(target_count)
                        .build(),
                )
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

    fn state(&self, ssm: Ssm) -> AppState {
        AppState {
            ssm,
            dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&self.update]),
            events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&self.put]),
            table_name: TABLE.into(),
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
async fn all_hosts_succeeded_is_success_recorded_and_announced() {
    // given two hosts that installed, one of which printed no outcome line, on the third poll
    let list = listing(vec![
        succeeded("i-0aaa"),
        invocation("mi-0bbb", "Success", "Success", "installed\n"),
    ]);
    let sinks = Sinks::new();

    // when
    let result = check_at(&sinks.state(ssm_client(&[&list])), input(Some(2)), at(NOW))
        .await
        .unwrap();

    // then
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"Status": "Success", "WaitSeconds": 0, "Poll": 3,
               "Hosts": {"Total": 2, "Succeeded": 2, "Failed": 0, "Pending": 0},
               "Failures": []})
    );
    assert_eq!(list.num_calls(), 1);
    assert_eq!(sinks.calls(), (1, 1));

    // and the mapping records how it ended
    let last = sinks.last_deployment();
    assert_eq!(s(&last, "Status"), "Success");
    assert_eq!(n(&last, "Succeeded"), "2");
    assert_eq!(n(&last, "Failed"), "0");
    assert_eq!(s(&last, "FinishedAt"), NOW);
    assert_eq!(s(&last, "ExecutionArn"), EXECUTION_ARN);

    // and the event carries the deployment with each host's own outcome line
    let (entry, detail) = sinks.event();
    assert_eq!(entry.detail_type(), Some(DETAIL_TYPE_SUCCEEDED));
    assert_eq!(
        detail,
        json!({
            "CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env",
            "TargetTagValue": "dev", "Trigger": "renewal", "Serial": SERIAL,
            "CommandId": COMMAND_ID, "ExecutionArn": EXECUTION_ARN, "Outcome": "Success",
            "Hosts": {"Total": 2, "Succeeded": 2, "Failed": 0, "Pending": 0},
            "Results": [
                {"InstanceId": "i-0aaa", "Status": "Success", "StatusDetails": "Success",
                 "Outcome": {"cert_name": "web", "serial": SERIAL,
                             "not_after": "2027-01-01T00:00:00Z", "changed": true,
                             "reloaded": true, "rolled_back": false, "host": "i-0aaa"}},
                {"InstanceId": "mi-0bbb", "Status": "Success", "StatusDetails": "Success",
                 "Outcome": null}
            ],
            "Failures": []
        })
    );
}

#[tokio::test]
async fn a_failed_host_makes_the_install_failed_with_the_tail_of_its_output() {
    // given one host that installed and one that rolled back after a 5000-byte output whose
    // 1000-byte cut falls inside a two-byte character
    let noise = format!("x{}", "é".repeat(2400));
    let rolled_back = r#"{"cert_name":"web","changed":false,"rolled_back":true}"#;
    let output = format!("{noise}\n{rolled_back}\nERROR: nginx reload failed, rolled back");
    let output = format!("{}{output}", "y".repeat(5000 - output.len()));
    assert_eq!(output.len(), 5000);
    assert!(!output.is_char_boundary(4000));
    let list = listing(vec![
        succeeded("i-0aaa"),
        invocation("i-0ccc", "Failed", "Failed", &output),
    ]);
    let sinks = Sinks::new();

    // when
    let result = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
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
            pending: 0
        }
    );
    assert_eq!(result.failures.len(), 1);
    let failure = &result.failures[0];
    assert_eq!(failure.instance_id, "i-0ccc");
    assert_eq!(failure.status_details, "Failed");
    let kept = failure.output.strip_prefix(TRUNCATED).unwrap();
    assert_eq!(
        kept.len(),
        999,
        "cut forward to the next character boundary"
    );
    assert!(output.ends_with(kept));
    assert!(kept.ends_with("ERROR: nginx reload failed, rolled back"));

    // and the failure is recorded and announced, with the host's outcome line parsed
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
    assert_eq!(detail["Results"][1]["Outcome"]["rolled_back"], true);
    assert_eq!(
        detail["Failures"],
        serde_json::to_value(&result.failures).unwrap()
    );
}

#[tokio::test]
async fn pending_hosts_keep_the_install_in_progress_with_a_growing_wait() {
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
        // given one host done, one failed and one still running
        let list = listing(vec![
            succeeded("i-0aaa"),
            invocation("i-0ccc", "Failed", "Failed", "ERROR: serial mismatch"),
            pending("i-0ddd"),
        ]);
        let sinks = Sinks::new();

        // when
        let result = check_at(&sinks.state(ssm_client(&[&list])), input(previous), at(now))
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
                total: 3,
                succeeded: 1,
                failed: 1,
                pending: 1
            }
        );
        assert_eq!(result.failures.len(), 1);
        assert_eq!(result.failures[0].output, "ERROR: serial mismatch");
        assert_eq!(sinks.calls(), (0, 0));
    }
}

#[tokio::test]
async fn every_page_of_invocations_is_counted() {
    // given three pages, the last holding the one failure
    let first = mock!(Ssm::list_command_invocations)
        .match_requests(|req| req.next_token().is_none() && req.details() == Some(true))
        .then_output(|| page(vec![succeeded("i-01"), succeeded("i-02")], Some("page-2")));
    let second = mock!(Ssm::list_command_invocations)
        .match_requests(|req| req.next_token() == Some("page-2") && req.details() == Some(true))
        .then_output(|| page(vec![succeeded("i-03"), succeeded("i-04")], Some("page-3")));
    let third = mock!(Ssm::list_command_invocations)
        .match_requests(|req| req.next_token() == Some("page-3") && req.details() == Some(true))
        .then_output(|| {
            page(
                vec![invocation("i-05", "TimedOut", "Delivery Timed Out", "")],
                None,
            )
        });
    let sinks = Sinks::new();

    // when
    let result = check_at(
        &sinks.state(ssm_client(&[&first, &second, &third])),
        input(Some(1)),
        at(NOW),
    )
    .await
    .unwrap();

    // then
    assert_eq!(
        (first.num_calls(), second.num_calls(), third.num_calls()),
        (1, 1, 1)
    );
    assert_eq!(result.status, InstallStatus::Failed);
    assert_eq!(
        result.hosts,
        HostCounts {
            total: 5,
            succeeded: 4,
            failed: 1,
            pending: 0
        }
    );
    assert_eq!(result.failures[0].instance_id, "i-05");
    assert_eq!(result.failures[0].status_details, "Delivery Timed Out");
    assert_eq!(sinks.event().1["Results"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_finished_command_without_targets_is_no_targets_recorded_and_announced() {
    // given SSM finished the command and found no node with the tag
    let list = listing(vec![]);
    let commands = command(CommandStatus::Success, 0);
    let sinks = Sinks::new();

    // when
    let err = check_at(
        &sinks.state(ssm_client(&[&list, &commands])),
        input(Some(1)),
        at(NOW),
    )
    .await
    .unwrap_err();

    // then
    assert_eq!(err.name(), "NoTargets");
    assert!(err.to_string().contains("tag env=dev"), "{err}");
    assert_eq!(commands.num_calls(), 1);
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
    assert_eq!(detail["Results"], json!([]));
}

#[tokio::test]
async fn a_command_still_resolving_its_targets_is_in_progress() {
    let list = listing(vec![]);
    let commands = command(CommandStatus::InProgress, 0);
    let sinks = Sinks::new();

    let result = check_at(
        &sinks.state(ssm_client(&[&list, &commands])),
        input(None),
        at(NOW),
    )
    .await
    .unwrap();

    assert_eq!(result.status, InstallStatus::InProgress);
    assert_eq!((result.poll, result.wait_seconds), (1, 2));
    assert_eq!(result.hosts, HostCounts::default());
    assert_eq!(commands.num_calls(), 1);
    assert_eq!(sinks.calls(), (0, 0));
}

#[tokio::test]
async fn pending_hosts_past_the_deadline_are_install_timed_out() {
    // given two hosts that never finished, one second after the deadline
    let list = listing(vec![
        succeeded("i-0aaa"),
        pending("i-0bbb"),
        invocation("i-0ccc", "Delayed", "Delayed", ""),
    ]);
    let sinks = Sinks::new();

    // when
    let err = check_at(
        &sinks.state(ssm_client(&[&list])),
        input(Some(40)),
        at("2026-03-01T12:10:01Z"),
    )
    .await
    .unwrap_err();

    // then
    assert_eq!(err.name(), "InstallTimedOut");
    assert!(
        err.to_string()
            .contains("2 of 3 hosts still pending after the deadline 2026-03-01T12:10:00Z"),
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
        json!({"Total": 3, "Succeeded": 1, "Failed": 0, "Pending": 2})
    );
    assert_eq!(detail["Results"][2]["Status"], "Delayed");
}

#[tokio::test]
async fn a_throttled_listing_is_retried_by_the_sdk_and_succeeds() {
    let list = mock!(Ssm::list_command_invocations)
        .sequence()
        .http_response(throttling)
        .output(|| page(vec![succeeded("i-0aaa")], None))
        .build();
    let sinks = Sinks::new();

    let result = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
        .await
        .unwrap();

    assert_eq!(result.status, InstallStatus::Success);
    assert_eq!(list.num_calls(), 2);
    assert_eq!(sinks.calls(), (1, 1));
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_throttled() {
    let list = mock!(Ssm::list_command_invocations)
        .sequence()
        .http_response(throttling)
        .times(3)
        .build();
    let sinks = Sinks::new();

    let err = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
        .await
        .unwrap_err();

    assert_eq!(err.name(), "Throttled");
    assert!(err.to_string().contains("ListCommandInvocations"), "{err}");
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    assert_eq!(list.num_calls(), 3);
    assert_eq!(sinks.calls(), (0, 0));
}

#[tokio::test]
async fn a_mapping_deleted_meanwhile_is_tolerated() {
    let list = listing(vec![succeeded("i-0aaa")]);
    let sinks = Sinks::mapping_deleted();
    let logs = certship_testkit::logs::capture();

    let result = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
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
    let list = listing(vec![succeeded("i-0aaa")]);
    let sinks = Sinks::refusing_events("InternalFailure");
    let err = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "ServiceError");
    assert!(err.to_string().contains("InternalFailure"), "{err}");

    let list = listing(vec![succeeded("i-0aaa")]);
    let sinks = Sinks::refusing_events("ThrottlingException");
    let err = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Throttled");
}

/// Makes a good input bad.
type Breakage = fn(&mut WorkflowState);

#[tokio::test]
async fn an_input_without_dispatch_export_or_a_valid_deadline_is_invalid() {
    let cases: [(Breakage, &str); 3] = [
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
    ];
    for (break_it, named) in cases {
        let list = listing(vec![succeeded("i-0aaa")]);
        let sinks = Sinks::new();
        let mut bad = input(None);
        break_it(&mut bad);

        let err = check_at(&sinks.state(ssm_client(&[&list])), bad, at(NOW))
            .await
            .unwrap_err();

        assert_eq!(err.name(), "InvalidRequest");
        assert!(err.to_string().contains(named), "{err}");
        assert_eq!(list.num_calls(), 0);
        assert_eq!(sinks.calls(), (0, 0));
    }
}

#[tokio::test]
async fn secret_material_a_host_prints_never_reaches_the_state_the_event_or_the_logs() {
    // given a broken host script that echoed the secret bundle and a decrypted key
    let key_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";
    let passphrase = "Vq3LmZ8kR2pT6wXy";
    let bundle = json!({
        "encrypted_private_key":
            format!("-----BEGIN ENCRYPTED PRIVATE KEY-----\n{key_body}\n-----END ENCRYPTED PRIVATE KEY-----\n"),
        "passphrase": passphrase,
    });
    let output = format!(
        "{}\n-----BEGIN PRIVATE KEY-----\n{key_body}\n{key_body}\n-----END PRIVATE KEY-----\n\
         ERROR: the key does not match the certificate",
        json!({"SecretString": bundle.to_string()})
    );
    let list = listing(vec![invocation("i-0ccc", "Failed", "Failed", &output)]);
    let sinks = Sinks::new();
    let logs = certship_testkit::logs::capture();

    // when
    let result = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
        .await
        .unwrap();

    // then the diagnosis survives and the secret material does not
    assert_eq!(
        result.failures[0].output,
        format!("{REDACTED}\n{REDACTED}\nERROR: the key does not match the certificate")
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
    assert!(logs.text().contains("polled the install command"));
}

#[tokio::test]
async fn failures_and_results_are_capped_but_counts_stay_exact() {
    let hosts = (0..120)
        .map(|i| invocation(&format!("i-{i:04}"), "Failed", "Failed", "ERROR"))
        .collect();
    let list = listing(hosts);
    let sinks = Sinks::new();

    let result = check_at(&sinks.state(ssm_client(&[&list])), input(None), at(NOW))
        .await
        .unwrap();

    assert_eq!(result.hosts.failed, 120);
    assert_eq!(result.failures.len(), MAX_FAILURES);
    let detail = sinks.event().1;
    assert_eq!(detail["Results"].as_array().unwrap().len(), MAX_RESULTS);
    assert_eq!(detail["Failures"].as_array().unwrap().len(), MAX_FAILURES);
    assert_eq!(detail["Hosts"]["Failed"], 120);
}
