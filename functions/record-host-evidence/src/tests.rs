//! Unit tests of the evidence recorder against mocked S3 and DynamoDB.

use super::*;
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_s3::Client as S3;
use aws_sdk_s3::operation::get_object::{GetObjectInput, GetObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::error::NoSuchKey;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use certship_shared::evidence::attr;
use certship_shared::waiting;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const TABLE: &str = "certship-host-evidence";
const BUCKET: &str = "certship-association-output-123456789012-us-east-1";
/// The fixture's key, exactly as the agent writes it under certship's prefix.
const KEY: &str = "dev/web-0123456789ab/i-0abc123def4567890/8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a/\
                   2026-11-27T05-03-01.123Z/awsrunShellScript/InstallCertificate/stdout";
const VERSION: &str = "5f0c6e1e-0000-4000-8000-000000000001";

/// The document's report line after an install (its `report` function's format).
fn report_line() -> String {
    let hash = "ab".repeat(32);
    format!(
        r#"{{"cert_name":"web","secret_version_id":"{VERSION}","serial":"EC256","not_after":"2027-01-01T00:00:00Z","status":"installed","reason":"new-serial","changed":true,"reloaded":true,"rolled_back":false,"sha256":{{"cert":"{hash}","chain":"{hash}","fullchain":"{hash}","privkey":"{hash}"}}}}"#
    )
}

/// The fixture's S3 event, its (URL-encoded) key replaced by `keys`, one record each.
fn event(keys: &[&str]) -> S3Event {
    let mut fixture: serde_json::Value =
        serde_json::from_str(include_str!("../../../events/s3-association-output.json")).unwrap();
    let template = fixture["Records"][0].clone();
    fixture["Records"] = keys
        .iter()
        .map(|key| {
            let mut record = template.clone();
            record["s3"]["object"]["key"] = (*key).into();
            record
        })
        .collect();
    serde_json::from_value(fixture).unwrap()
}

/// The fixture as it is.
fn fixture() -> S3Event {
    serde_json::from_str(include_str!("../../../events/s3-association-output.json")).unwrap()
}

/// S3 answering every GetObject with `stdout`, or its last N bytes for a `bytes=-N` range as S3
/// does, recording the requests.
fn s3_serving(stdout: &'static str, seen: Arc<Mutex<Vec<GetObjectInput>>>) -> Rule {
    mock!(S3::get_object)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.clone());
            true
        })
        .then_compute_output(move |req| {
            let bytes = stdout.as_bytes();
            let served = match req.range().and_then(|r| r.strip_prefix("bytes=-")) {
                Some(n) => &bytes[bytes.len().saturating_sub(n.parse().unwrap())..],
                None => bytes,
            };
            GetObjectOutput::builder()
                .body(ByteStream::from_static(served))
                .build()
        })
}

/// DynamoDB accepting every PutItem (or refusing it as not newer), recording the requests.
fn putting(refuse: bool, seen: Arc<Mutex<Vec<PutItemInput>>>) -> Rule {
    let rule = mock!(Dynamo::put_item).match_requests(move |req| {
        seen.lock().unwrap().push(req.clone());
        true
    });
    if refuse {
        rule.then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("The conditional request failed")
                    .build(),
            )
        })
    } else {
        rule.then_output(|| PutItemOutput::builder().build())
    }
}

/// No deployment waits for the host: the wait's conditional update fails.
fn not_waiting() -> Rule {
    mock!(Dynamo::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .message("The conditional request failed")
                .build(),
        )
    })
}

fn app(s3: &[&Rule], dynamodb: &[&Rule]) -> AppState {
    let idle = not_waiting();
    app_waking(s3, dynamodb, &[&idle], &[])
}

fn app_waking(s3: &[&Rule], dynamodb: &[&Rule], wait: &[&Rule], sfn: &[&Rule]) -> AppState {
    let dynamodb: Vec<&Rule> = dynamodb.iter().chain(wait).copied().collect();
    AppState {
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn),
        dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &dynamodb, |c| c
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(std::time::Duration::from_millis(1))
            )),
        evidence_table_name: TABLE.into(),
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item[name].as_s().unwrap().clone()
}

#[tokio::test]
async fn a_runs_stdout_becomes_the_hosts_evidence() {
    // given the agent wrote an install run's stdout at its key layout
    let stdout = leak(format!(
        "certship: fetched the secret version\ncertship: installed web\n{}\n",
        report_line()
    ));
    let (gets, puts) = (Arc::default(), Arc::default());
    let get = s3_serving(stdout, Arc::clone(&gets));
    let put = putting(false, Arc::clone(&puts));

    // when the bucket's notification arrives
    let summary = handler(&app(&[&get], &[&put]), fixture()).await.unwrap();

    // then only the tail of the object is read
    assert_eq!(
        summary,
        Summary {
            recorded: 1,
            skipped: 0,
            stale: 0,
            woke: 0,
        }
    );
    let get = gets.lock().unwrap()[0].clone();
    assert_eq!(
        (get.bucket(), get.key(), get.range()),
        (Some(BUCKET), Some(KEY), Some("bytes=-65536"))
    );

    // and the item is keyed by the mapping and instance the key names, with the report's facts
    let puts = puts.lock().unwrap();
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    assert_eq!(put.table_name(), Some(TABLE));
    let item = put.item().unwrap();
    assert_eq!(s(item, attr::MAPPING_ID), "web-0123456789ab");
    assert_eq!(s(item, attr::INSTANCE_ID), "i-0abc123def4567890");
    assert_eq!(
        s(item, attr::ASSOCIATION_ID),
        "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a"
    );
    assert_eq!(s(item, attr::RUN_ID), "2026-11-27T05-03-01.123Z");
    assert_eq!(s(item, attr::OBSERVED_AT), "2026-11-27T05:03:01.123Z");
    assert_eq!(s(item, attr::OUTCOME), "installed");
    assert_eq!(s(item, attr::REASON), "new-serial");
    assert_eq!(s(item, attr::SERIAL), "EC256");
    assert_eq!(s(item, attr::SECRET_VERSION_ID), VERSION);
    assert_eq!(
        item[attr::SHA256].as_m().unwrap()["privkey"]
            .as_s()
            .unwrap(),
        &"ab".repeat(32)
    );
    assert_eq!(item[attr::RELOADED].as_bool().unwrap(), &true);
    assert!(!item.contains_key(attr::ERROR));
    let evidence = HostEvidence::from_item(item).unwrap();
    assert!(evidence.holds(VERSION));

    // and only a run newer than the recorded one may replace it
    assert_eq!(
        put.condition_expression(),
        Some("attribute_not_exists(#at) OR #at < :observed")
    );
    assert_eq!(
        put.expression_attribute_names().unwrap()["#at"],
        attr::OBSERVED_AT
    );
    assert_eq!(
        put.expression_attribute_values().unwrap()[":observed"]
            .as_s()
            .unwrap(),
        "2026-11-27T05:03:01.123Z"
    );
}

#[tokio::test]
async fn an_older_run_delivered_late_is_left_alone() {
    let stdout = leak(report_line());
    let get = s3_serving(stdout, Arc::default());
    let put = putting(true, Arc::default());

    let summary = handler(&app(&[&get], &[&put]), fixture()).await.unwrap();

    assert_eq!(
        summary,
        Summary {
            recorded: 0,
            skipped: 0,
            stale: 1,
            woke: 0,
        }
    );
    assert_eq!(put.num_calls(), 1);
}

#[tokio::test]
async fn a_run_that_says_it_started_after_its_upload_is_skipped() {
    // given the fixture's upload at 05:03:09.512Z, a run id 5 min 1 s later, and one within 5 min
    let later = KEY.replace("2026-11-27T05-03-01.123Z", "2026-11-27T05-08-10.600Z");
    let skewed = KEY.replace("2026-11-27T05-03-01.123Z", "2026-11-27T05-07-09.000Z");
    let stdout = leak(report_line());
    let puts = Arc::default();
    let get = s3_serving(stdout, Arc::default());
    let put = putting(false, Arc::clone(&puts));

    let summary = handler(&app(&[&get], &[&put]), event(&[&later, &skewed]))
        .await
        .unwrap();

    // then the first is not recorded (it would outrank every real run until 05:08), the second is
    assert_eq!((summary.skipped, summary.recorded), (1, 1));
    let puts = puts.lock().unwrap();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        s(puts[0].item().unwrap(), attr::RUN_ID),
        "2026-11-27T05-07-09.000Z"
    );
}

#[test]
fn event_keys_are_url_decoded_as_form_values() {
    assert_eq!(decode_key("team+a/x").as_deref(), Some("team a/x"));
    assert_eq!(
        decode_key("a%2Bb/%C3%A9t%C3%A9").as_deref(),
        Some("a+b/été")
    );
    assert_eq!(decode_key(KEY).as_deref(), Some(KEY));
    assert_eq!(decode_key("%FF"), None, "not UTF-8");
}

#[tokio::test]
async fn a_tag_value_with_a_space_is_read_from_its_encoded_key() {
    // given the tag value `web team+1`, which the event encodes as `web+team%2B1`
    let encoded = KEY.replacen("dev/", "web+team%2B1/", 1);
    let stored = KEY.replacen("dev/", "web team+1/", 1);
    let gets = Arc::default();
    let get = s3_serving(leak(report_line()), Arc::clone(&gets));
    let put = putting(false, Arc::default());

    let summary = handler(&app(&[&get], &[&put]), event(&[&encoded]))
        .await
        .unwrap();

    assert_eq!(summary.recorded, 1);
    assert_eq!(
        gets.lock().unwrap()[0].key(),
        Some(stored.as_str()),
        "the object is read by its stored key"
    );
}

#[tokio::test]
async fn stderr_foreign_keys_and_other_events_are_skipped_without_a_call() {
    let get = s3_serving("", Arc::default());
    let put = putting(false, Arc::default());
    let mut event = event(&[
        &KEY.replace("/stdout", "/stderr"),
        "dev/web-0123456789ab/readme.txt",
        "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/27/trail.json.gz",
        KEY,
    ]);
    event.records[3].event_name = Some("ObjectRemoved:Delete".into());

    let summary = handler(&app(&[&get], &[&put]), event).await.unwrap();

    assert_eq!(
        summary,
        Summary {
            recorded: 0,
            skipped: 4,
            stale: 0,
            woke: 0,
        }
    );
    assert_eq!((get.num_calls(), put.num_calls()), (0, 0));
}

#[tokio::test]
async fn a_run_without_a_report_line_is_recorded_as_failed_for_no_version() {
    // given a run that died before printing its report
    let puts = Arc::default();
    let get = s3_serving(
        "certship: fetching the secret version\nKilled\n",
        Arc::default(),
    );
    let put = putting(false, Arc::clone(&puts));

    handler(&app(&[&get], &[&put]), fixture()).await.unwrap();

    let item = puts.lock().unwrap()[0].item().unwrap().clone();
    assert_eq!(s(&item, attr::OUTCOME), "failed");
    assert_eq!(s(&item, attr::ERROR), NO_REPORT);
    assert!(!item.contains_key(attr::SECRET_VERSION_ID));
    assert!(!item.contains_key(attr::SERIAL));
    let evidence = HostEvidence::from_item(&item).unwrap();
    assert!(
        !evidence.failed(VERSION) && !evidence.holds(VERSION),
        "it says nothing about any version"
    );
}

#[tokio::test]
async fn a_report_cut_by_the_tail_read_is_still_found_and_content_is_never_logged() {
    // given 100 KiB of progress lines with a multi-byte character across the 64 KiB cut, a line
    // that must never be logged, and the report last
    let output = |lead: &str| {
        format!(
            "{lead}{}\nsecret-looking line Vq3LmZ8kR2pT6wXy\n{}\n",
            "é".repeat(50 * 1024),
            report_line()
        )
    };
    let cut = |s: &str| s.len() - TAIL_BYTES as usize;
    let aligned = output("");
    // one more leading byte moves every character boundary across the cut
    let stdout = leak(if aligned.is_char_boundary(cut(&aligned)) {
        output("x")
    } else {
        aligned
    });
    let puts = Arc::default();
    let get = s3_serving(stdout, Arc::default());
    let put = putting(false, Arc::clone(&puts));
    let logs = certship_testkit::logs::capture();

    handler(&app(&[&get], &[&put]), fixture()).await.unwrap();

    let item = puts.lock().unwrap()[0].item().unwrap().clone();
    assert_eq!(s(&item, attr::OUTCOME), "installed");
    // the tail read starts inside a two-byte character, which the lossy decode replaces
    assert!(
        !stdout.is_char_boundary(cut(stdout)),
        "the cut falls inside a character"
    );
    certship_testkit::assert_no_secret("the logs", &logs.text(), &["Vq3LmZ8kR2pT6wXy"]);
    assert!(logs.text().contains("recorded a run's evidence"));
}

#[tokio::test]
async fn an_object_gone_is_skipped_and_other_s3_failures_are_errors() {
    let gone = mock!(S3::get_object)
        .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
    let put = putting(false, Arc::default());
    let summary = handler(&app(&[&gone], &[&put]), fixture()).await.unwrap();
    assert_eq!(summary.skipped, 1);
    assert_eq!(put.num_calls(), 0);

    let denied = mock!(S3::get_object).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(403).unwrap(),
            aws_smithy_types::body::SdkBody::from(
                "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
            ),
        )
    });
    let err = handler(&app(&[&denied], &[&put]), fixture())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "ServiceError");
    assert!(
        err.to_string().contains("GetObject") && err.to_string().contains("AccessDenied"),
        "{err}"
    );
    assert_eq!(put.num_calls(), 0);
}

#[tokio::test]
async fn a_throttled_write_is_retried_then_throttled() {
    let get = s3_serving(leak(report_line()), Arc::default());
    let put = mock!(Dynamo::put_item)
        .sequence()
        .http_response(certship_testkit::throttling_response)
        .times(2)
        .build();

    let err = handler(&app(&[&get], &[&put]), fixture())
        .await
        .unwrap_err();

    assert_eq!(err.name(), "Throttled");
    assert_eq!(put.num_calls(), 2);
}

/// The wait's two updates: the host taken out of the pending set (answering with the item after
/// it, `pending` left), then the claim; each request recorded.
fn waiting_for(pending: &'static [&'static str], seen: Arc<Mutex<Vec<UpdateItemInput>>>) -> Rule {
    mock!(Dynamo::update_item)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.clone());
            true
        })
        .then_compute_output(move |req| {
            if req.update_expression() == Some("REMOVE #token") {
                return UpdateItemOutput::builder().build();
            }
            let mut item = HashMap::from([(
                waiting::attr::TASK_TOKEN.to_string(),
                AttributeValue::S("token-1".into()),
            )]);
            if !pending.is_empty() {
                item.insert(
                    waiting::attr::PENDING.to_string(),
                    AttributeValue::Ss(pending.iter().map(|p| p.to_string()).collect()),
                );
            }
            UpdateItemOutput::builder()
                .set_attributes(Some(item))
                .build()
        })
}

fn task_success(seen: Arc<Mutex<Vec<(String, String)>>>) -> Rule {
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(move |req| {
            seen.lock().unwrap().push((
                req.task_token().unwrap_or_default().to_string(),
                req.output().unwrap_or_default().to_string(),
            ));
            true
        })
        .then_output(|| SendTaskSuccessOutput::builder().build())
}

#[tokio::test]
async fn the_last_pending_hosts_report_wakes_the_waiting_deployment() {
    // given a deployment of VERSION waits for this host alone
    let stdout = leak(format!("{}\n", report_line()));
    let (gets, puts, updates, sent) = (
        Arc::default(),
        Arc::default(),
        Arc::default(),
        Arc::default(),
    );
    let get = s3_serving(stdout, gets);
    let put = putting(false, puts);
    let wait = waiting_for(&[], Arc::clone(&updates));
    let success = task_success(Arc::clone(&sent));
    let state = app_waking(&[&get], &[&put], &[&wait], &[&success]);

    // when its run's output is recorded
    let summary = handler(&state, fixture()).await.unwrap();

    // then the host left the pending set of the wait for VERSION, and the wake was claimed
    assert_eq!((summary.recorded, summary.woke), (1, 1));
    let updates = updates.lock().unwrap();
    assert_eq!(updates.len(), 2, "{updates:#?}");
    let taken = &updates[0];
    assert_eq!(taken.update_expression(), Some("DELETE #pending :hosts"));
    let values = taken.expression_attribute_values().unwrap();
    assert_eq!(values[":version"].as_s().unwrap(), VERSION);
    assert_eq!(values[":host"].as_s().unwrap(), "i-0abc123def4567890");
    assert_eq!(
        taken.key().unwrap()[attr::INSTANCE_ID].as_s().unwrap(),
        waiting::SORT_KEY
    );
    let claim = &updates[1];
    assert_eq!(claim.update_expression(), Some("REMOVE #token"));
    assert_eq!(
        claim.expression_attribute_values().unwrap()[":token"]
            .as_s()
            .unwrap(),
        "token-1"
    );

    // and the waiting Task is completed with InProgress, naming the host, so the state machine
    // checks again at once
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "token-1");
    let output: InstallResult = serde_json::from_str(&sent[0].1).unwrap();
    assert_eq!(output, InstallResult::woken_by("i-0abc123def4567890"));
}

#[tokio::test]
async fn a_report_with_hosts_still_pending_wakes_nothing() {
    // given the deployment still waits for another host after this one
    let stdout = leak(format!("{}\n", report_line()));
    let (updates, sent) = (Arc::default(), Arc::default());
    let get = s3_serving(stdout, Arc::default());
    let put = putting(false, Arc::default());
    let wait = waiting_for(&["i-0other"], Arc::clone(&updates));
    let success = task_success(Arc::clone(&sent));
    let state = app_waking(&[&get], &[&put], &[&wait], &[&success]);

    // when this host's run is recorded
    let summary = handler(&state, fixture()).await.unwrap();

    // then it left the set, nothing was claimed and nothing sent
    assert_eq!((summary.recorded, summary.woke), (1, 0));
    assert_eq!(updates.lock().unwrap().len(), 1);
    assert!(sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_run_never_touches_the_wait() {
    // given a newer run of the host is already recorded
    let stdout = leak(format!("{}\n", report_line()));
    let updates = Arc::default();
    let get = s3_serving(stdout, Arc::default());
    let put = putting(true, Arc::default());
    let wait = waiting_for(&[], Arc::clone(&updates));
    let state = app_waking(&[&get], &[&put], &[&wait], &[]);

    // when the older run's output arrives late
    let summary = handler(&state, fixture()).await.unwrap();

    // then it counts for nothing: the newer run already did
    assert_eq!((summary.stale, summary.woke), (1, 0));
    assert!(updates.lock().unwrap().is_empty());
}
