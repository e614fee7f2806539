//! The local cloud's State Manager: associations with AWS's version semantics, the emulated
//! agents that apply them to the simulated hosts (late tags, offline hosts, lost tags, one run at
//! a time, ticks), DescribeInstanceInformation, and each run's output in S3 at the agent's key
//! layout.

use aws_sdk_ssm::types::{
    DocumentFormat, DocumentType, InstanceAssociationOutputLocation,
    InstanceInformationStringFilter, PingStatus, S3OutputLocation, Target,
};
use certship_local::hosts::{self, HostInfo, Simulation};
use certship_local::state_manager::AgentSettings;
use certship_local::{LocalCloud, LocalOptions};
use certship_shared::evidence::{HostEvidence, OutputKey};
use certship_shared::host_report::Outcome;
use std::collections::BTreeMap;
use std::time::Duration;

const BUCKET: &str = "test-association-output";

async fn start_with(agent: AgentSettings) -> (LocalCloud, tempfile::TempDir) {
    certship_testkit::moto::venv_python().unwrap();
    let state = tempfile::Builder::new()
        .prefix("certship-sm-")
        .tempdir()
        .unwrap();
    let mut options = LocalOptions::new(certship_testkit::moto::project_root());
    options.state_dir = state.path().to_path_buf();
    options.agent = agent;
    let cloud = LocalCloud::start(options).await.unwrap();
    s3(&cloud)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    (cloud, state)
}

/// A cloud whose schedules never come round during a test: only creation, updates, target
/// changes and ticks run associations.
async fn start() -> (LocalCloud, tempfile::TempDir) {
    start_with(AgentSettings {
        poll_period: Duration::from_secs(1),
        schedule_hour: Duration::from_secs(3600),
        ..AgentSettings::default()
    })
    .await
}

fn ssm(cloud: &LocalCloud) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(cloud.sdk_config())
}

fn s3(cloud: &LocalCloud) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(cloud.sdk_config())
            .force_path_style(true)
            .build(),
    )
}

/// A document of one step that appends a line to the host's `$TMPDIR/<Word>.runs` and prints
/// who ran it.
async fn document(cloud: &LocalCloud, name: &str, extra: &str) {
    let content = format!(
        "schemaVersion: '2.2'\ndescription: test\nparameters:\n  Word:\n    type: String\n    default: hello\n    allowedPattern: '^[a-z]+$'\nmainSteps:\n  - action: aws:runShellScript\n    name: Run\n    inputs:\n      timeoutSeconds: '60'\n      runCommand:\n        - |\n          echo \"start $(date +%s.%N)\" >> \"$TMPDIR/$SSM_Word.runs\"\n          {extra}\n          echo \"end $(date +%s.%N)\" >> \"$TMPDIR/$SSM_Word.runs\"\n          echo \"$SSM_Word from $AWS_SSM_INSTANCE_ID\"\n"
    );
    ssm(cloud)
        .create_document()
        .name(name)
        .content(content)
        .document_format(DocumentFormat::Yaml)
        .document_type(DocumentType::Command)
        .send()
        .await
        .unwrap();
}

async fn add_host(cloud: &LocalCloud, tags: &[(&str, &str)]) -> String {
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ec2 = aws_sdk_ec2::Client::new(cloud.sdk_config());
    hosts::add(&ec2, &cloud.hosts, &tags, Simulation::Healthy)
        .await
        .unwrap()
        .instance_id
}

fn web() -> Target {
    Target::builder().key("tag:role").values("web").build()
}

async fn associate(cloud: &LocalCloud, document: &str, word: &str) -> String {
    ssm(cloud)
        .create_association()
        .name(document)
        .association_name(format!("test-{word}"))
        .targets(web())
        .parameters("Word", vec![word.to_string()])
        .schedule_expression("rate(1 hour)")
        .output_location(output_location("dev/web-0123456789ab"))
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap()
        .association_id
        .unwrap()
}

fn output_location(prefix: &str) -> InstanceAssociationOutputLocation {
    InstanceAssociationOutputLocation::builder()
        .s3_location(
            S3OutputLocation::builder()
                .output_s3_bucket_name(BUCKET)
                .output_s3_key_prefix(prefix)
                .build(),
        )
        .build()
}

/// How many times `word`'s association has run on the host.
fn runs(cloud: &LocalCloud, instance_id: &str, word: &str) -> usize {
    std::fs::read_to_string(
        cloud
            .hosts
            .root(instance_id)
            .join(format!("tmp/{word}.runs")),
    )
    .map(|text| text.lines().filter(|l| l.starts_with("end ")).count())
    .unwrap_or(0)
}

async fn eventually(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    for _ in 0..seconds * 10 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {seconds} s");
}

/// Stays true for `seconds`.
async fn stays(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    for _ in 0..seconds * 10 {
        assert!(check(), "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn set(cloud: &LocalCloud, instance_id: &str, simulate: Simulation) {
    hosts::set_simulation(&cloud.hosts, instance_id, simulate).unwrap();
}

async fn tick(cloud: &LocalCloud) {
    let answer = certship_local::http::post_json(
        &format!("{}{}", cloud.endpoint, certship_local::gateway::TICK_PATH),
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    assert!(answer["Associations"].as_u64().is_some(), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_association_runs_on_its_hosts_and_writes_output_at_the_agents_keys() {
    let (cloud, _state) = start().await;
    document(&cloud, "Echo", "").await;
    let web = add_host(&cloud, &[("role", "web")]).await;
    let db = add_host(&cloud, &[("role", "db")]).await;

    let association_id = associate(&cloud, "Echo", "hello").await;

    eventually("the run on the web host", 10, || {
        runs(&cloud, &web, "hello") == 1
    })
    .await;
    let objects = s3(&cloud)
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    // stdout only: the agent uploads no empty stderr
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = OutputKey::parse(keys[0]).unwrap();
    assert_eq!(
        (
            key.tag_value.as_str(),
            key.mapping_id.as_str(),
            key.instance_id.as_str(),
            key.association_id.as_str(),
            key.plugin.as_str(),
            key.step.as_str(),
            key.stream.as_str()
        ),
        (
            "dev",
            "web-0123456789ab",
            web.as_str(),
            association_id.as_str(),
            "awsrunShellScript",
            "Run",
            "stdout"
        )
    );
    let body = s3(&cloud)
        .get_object()
        .bucket(BUCKET)
        .key(keys[0])
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("hello from {web}\n")
    );
    assert_eq!(runs(&cloud, &db, "hello"), 0, "the untagged host ran it");

    // the execution and its one target, as SSM reports them
    let executions = ssm(&cloud)
        .describe_association_executions()
        .association_id(&association_id)
        .send()
        .await
        .unwrap();
    let execution = &executions.association_executions()[0];
    assert_eq!(execution.status(), Some("Success"));
    assert_eq!(execution.association_version(), Some("1"));
    let targets = ssm(&cloud)
        .describe_association_execution_targets()
        .association_id(&association_id)
        .execution_id(execution.execution_id().unwrap())
        .send()
        .await
        .unwrap();
    let targets: Vec<(&str, &str)> = targets
        .association_execution_targets()
        .iter()
        .map(|t| (t.resource_id().unwrap(), t.status().unwrap()))
        .collect();
    assert_eq!(targets, [(web.as_str(), "Success")]);
    let described = ssm(&cloud)
        .describe_association()
        .association_id(&association_id)
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap();
    assert_eq!(described.overview().unwrap().status(), Some("Success"));
    assert!(described.last_successful_execution_date().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_nulls_what_it_leaves_out_and_a_stale_version_is_refused() {
    let (cloud, _state) = start().await;
    document(&cloud, "Echo", "").await;
    let ssm = ssm(&cloud);
    let created = ssm
        .create_association()
        .name("Echo")
        .association_name("test-update")
        .targets(web())
        .parameters("Word", vec!["one".into()])
        .schedule_expression("rate(1 hour)")
        .max_concurrency("10%")
        .max_errors("10%")
        .compliance_severity(aws_sdk_ssm::types::AssociationComplianceSeverity::High)
        .sync_compliance(aws_sdk_ssm::types::AssociationSyncCompliance::Auto)
        .output_location(output_location("dev/x-0123456789ab"))
        .association_dispatch_assume_role("arn:aws:iam::123456789012:role/dispatch")
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap();
    let id = created.association_id().unwrap().to_string();
    assert_eq!(created.association_version(), Some("1"));
    assert_eq!(created.schedule_expression(), Some("rate(1 hour)"));
    assert_eq!(created.max_concurrency(), Some("10%"));
    assert!(!created.apply_only_at_cron_interval());

    // given an update that sends only the parameters (and the name and targets)
    let updated = ssm
        .update_association()
        .association_id(&id)
        .association_version("1")
        .name("Echo")
        .targets(web())
        .parameters("Word", vec!["two".into()])
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap();

    // then version 2 has null for every optional field it left out
    assert_eq!(updated.association_version(), Some("2"));
    let described = ssm
        .describe_association()
        .association_id(&id)
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap();
    assert_eq!(described.association_version(), Some("2"));
    assert_eq!(described.parameters().unwrap()["Word"], ["two"]);
    assert_eq!(described.schedule_expression(), None);
    assert_eq!(described.max_concurrency(), None);
    assert_eq!(described.max_errors(), None);
    assert_eq!(described.compliance_severity(), None);
    assert_eq!(described.sync_compliance(), None);
    assert!(described.output_location().is_none());
    assert_eq!(described.association_name(), None);
    assert_eq!(described.association_dispatch_assume_role(), None);
    assert_eq!(described.name(), Some("Echo"));
    // and version 1 still holds them
    let versions = ssm
        .list_association_versions()
        .association_id(&id)
        .send()
        .await
        .unwrap();
    let versions = versions.association_versions();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].association_version(), Some("1"));
    assert_eq!(versions[0].schedule_expression(), Some("rate(1 hour)"));
    assert_eq!(versions[0].max_errors(), Some("10%"));
    assert_eq!(versions[1].schedule_expression(), None);
    let old = ssm
        .describe_association()
        .association_id(&id)
        .association_version("1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.association_description.unwrap().max_concurrency(),
        Some("10%")
    );

    // a stale version, an unknown association, a bad schedule and a bad parameter are refused
    let stale = ssm
        .update_association()
        .association_id(&id)
        .association_version("1")
        .name("Echo")
        .targets(web())
        .send()
        .await
        .unwrap_err();
    assert!(stale.into_service_error().is_invalid_association_version());
    let unknown = ssm
        .update_association()
        .association_id("00000000-0000-0000-0000-000000000000")
        .name("Echo")
        .send()
        .await
        .unwrap_err();
    assert!(unknown.into_service_error().is_association_does_not_exist());
    let schedule = ssm
        .update_association()
        .association_id(&id)
        .schedule_expression("rate(10 minutes)")
        .targets(web())
        .send()
        .await
        .unwrap_err();
    assert!(schedule.into_service_error().is_invalid_schedule());
    let parameter = ssm
        .create_association()
        .name("Echo")
        .targets(web())
        .parameters("Word", vec!["Not; valid".into()])
        .send()
        .await
        .unwrap_err();
    assert!(parameter.into_service_error().is_invalid_parameters());
    let no_document = ssm
        .create_association()
        .name("Missing")
        .targets(web())
        .send()
        .await
        .unwrap_err();
    assert!(no_document.into_service_error().is_invalid_document());
    let bad_target = ssm
        .create_association()
        .name("Echo")
        .targets(
            Target::builder()
                .key("resource-groups:Name")
                .values("g")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(bad_target.into_service_error().is_invalid_target());
    // still at version 2: refused updates make no version
    let listed = ssm
        .list_associations()
        .association_filter_list(
            aws_sdk_ssm::types::AssociationFilter::builder()
                .key(aws_sdk_ssm::types::AssociationFilterKey::Name)
                .value("Echo")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let listed: Vec<(&str, &str)> = listed
        .associations()
        .iter()
        .map(|a| {
            (
                a.association_id().unwrap(),
                a.association_version().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(id.as_str(), "2")]);

    ssm.delete_association()
        .association_id(&id)
        .send()
        .await
        .unwrap();
    let gone = ssm
        .describe_association()
        .association_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(gone.into_service_error().is_association_does_not_exist());
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_information_filters_by_tag_pages_at_50_and_reports_offline_hosts() {
    let (cloud, _state) = start().await;
    // 52 hosts, 51 of them env=a, one of those offline; records only, for speed
    let mut tagged = Vec::new();
    for n in 0..52 {
        let host = HostInfo {
            instance_id: format!("i-{n:017x}"),
            tags: BTreeMap::from([(
                "env".to_string(),
                if n == 51 { "b" } else { "a" }.to_string(),
            )]),
            simulate: if n == 7 {
                Simulation::Offline
            } else {
                Simulation::Healthy
            },
        };
        cloud.hosts.save(&host).unwrap();
        if n != 51 {
            tagged.push(host.instance_id);
        }
    }
    let ssm = ssm(&cloud);
    let filter = InstanceInformationStringFilter::builder()
        .key("tag:env")
        .values("a")
        .build()
        .unwrap();

    let first = ssm
        .describe_instance_information()
        .filters(filter.clone())
        .max_results(50)
        .send()
        .await
        .unwrap();
    let second = ssm
        .describe_instance_information()
        .filters(filter.clone())
        .max_results(50)
        .set_next_token(first.next_token().map(String::from))
        .send()
        .await
        .unwrap();

    assert_eq!(first.instance_information_list().len(), 50);
    assert_eq!(second.instance_information_list().len(), 1);
    assert_eq!(second.next_token(), None);
    let listed: Vec<&str> = first
        .instance_information_list()
        .iter()
        .chain(second.instance_information_list())
        .map(|i| i.instance_id().unwrap())
        .collect();
    assert_eq!(listed, tagged);
    for info in first.instance_information_list() {
        let expected = if info.instance_id() == Some(tagged[7].as_str()) {
            PingStatus::ConnectionLost
        } else {
            PingStatus::Online
        };
        assert_eq!(info.ping_status(), Some(&expected), "{info:?}");
        assert_eq!(
            info.resource_type(),
            Some(&aws_sdk_ssm::types::ResourceType::Ec2Instance)
        );
        assert_eq!(
            info.platform_type(),
            Some(&aws_sdk_ssm::types::PlatformType::Linux)
        );
        assert!(info.last_ping_date_time().is_some() && info.agent_version().is_some());
    }
    // the default page is 10; more than 50 and tag filters mixed with others are refused
    let default = ssm.describe_instance_information().send().await.unwrap();
    assert_eq!(default.instance_information_list().len(), 10);
    let too_many = ssm
        .describe_instance_information()
        .max_results(51)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        too_many.into_service_error().meta().code(),
        Some("ValidationException")
    );
    let mixed = ssm
        .describe_instance_information()
        .filters(filter)
        .filters(
            InstanceInformationStringFilter::builder()
                .key("PingStatus")
                .values("Online")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        mixed.into_service_error().meta().code(),
        Some("ValidationException")
    );
    let offline = ssm
        .describe_instance_information()
        .filters(
            InstanceInformationStringFilter::builder()
                .key("PingStatus")
                .values("ConnectionLost")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let offline: Vec<&str> = offline
        .instance_information_list()
        .iter()
        .map(|i| i.instance_id().unwrap())
        .collect();
    assert_eq!(offline, [tagged[7].as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_that_gain_the_tag_or_come_back_run_it_and_hosts_that_lose_it_do_not() {
    let (cloud, _state) = start().await;
    document(&cloud, "Echo", "").await;
    let ec2 = aws_sdk_ec2::Client::new(cloud.sdk_config());
    let first = add_host(&cloud, &[("role", "web")]).await;
    let late = add_host(&cloud, &[("role", "db")]).await;
    associate(&cloud, "Echo", "hello").await;
    eventually("the first run", 10, || runs(&cloud, &first, "hello") == 1).await;

    // a host that gains the tag runs it at its agent's next poll
    hosts::tag(
        &ec2,
        &cloud.hosts,
        &late,
        &BTreeMap::from([("role".to_string(), "web".to_string())]),
    )
    .await
    .unwrap();
    eventually("the run on the newly tagged host", 10, || {
        runs(&cloud, &late, "hello") == 1
    })
    .await;

    // an offline host runs nothing, not even on a tick, and catches up when back
    set(&cloud, &first, Simulation::Offline);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tick(&cloud).await;
    eventually("the tick on the online host", 10, || {
        runs(&cloud, &late, "hello") == 2
    })
    .await;
    stays("the offline host idle", 2, || {
        runs(&cloud, &first, "hello") == 1
    })
    .await;
    set(&cloud, &first, Simulation::Healthy);
    eventually("the catch-up run", 10, || {
        runs(&cloud, &first, "hello") == 2
    })
    .await;

    // a host that loses the tag is no longer run
    hosts::untag(&ec2, &cloud.hosts, &late, &["role".to_string()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tick(&cloud).await;
    eventually("the tick on the still tagged host", 10, || {
        runs(&cloud, &first, "hello") == 3
    })
    .await;
    stays("the untagged host idle", 2, || {
        runs(&cloud, &late, "hello") == 2
    })
    .await;
    // and EC2 saw the same tags
    let described = ec2
        .describe_instances()
        .instance_ids(&late)
        .send()
        .await
        .unwrap();
    let tags = described.reservations()[0].instances()[0].tags();
    assert!(tags.iter().all(|t| t.key() != Some("role")), "{tags:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_runs_one_association_at_a_time_and_a_tick_runs_each_once() {
    let (cloud, _state) = start().await;
    document(&cloud, "Slow", "sleep 1").await;
    let host = add_host(&cloud, &[("role", "web")]).await;
    associate(&cloud, "Slow", "alpha").await;
    associate(&cloud, "Slow", "beta").await;
    eventually("both runs", 15, || {
        runs(&cloud, &host, "alpha") == 1 && runs(&cloud, &host, "beta") == 1
    })
    .await;

    tick(&cloud).await;
    eventually("both ticked runs", 15, || {
        runs(&cloud, &host, "alpha") == 2 && runs(&cloud, &host, "beta") == 2
    })
    .await;
    stays("exactly one run each per tick", 3, || {
        runs(&cloud, &host, "alpha") == 2 && runs(&cloud, &host, "beta") == 2
    })
    .await;

    // no run started before the one before it ended
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for word in ["alpha", "beta"] {
        let text =
            std::fs::read_to_string(cloud.hosts.root(&host).join(format!("tmp/{word}.runs")))
                .unwrap();
        let times: Vec<f64> = text
            .lines()
            .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
            .collect();
        spans.extend(times.chunks(2).map(|c| (c[0], c[1])));
    }
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(spans.len(), 4);
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlapped: {spans:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_repeat_compressed_and_start_once_runs_now() {
    // an hour of schedule lasts 4 s, so rate(30 minutes) comes round every 2 s
    let (cloud, _state) = start_with(AgentSettings {
        poll_period: Duration::from_millis(500),
        schedule_hour: Duration::from_secs(4),
        ..AgentSettings::default()
    })
    .await;
    document(&cloud, "Echo", "").await;
    let host = add_host(&cloud, &[("role", "web")]).await;
    let ssm = ssm(&cloud);
    ssm.create_association()
        .name("Echo")
        .targets(web())
        .parameters("Word", vec!["often".into()])
        .schedule_expression("rate(30 minutes)")
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    eventually("three scheduled runs", 15, || {
        runs(&cloud, &host, "often") >= 3
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "ran too often: {:?}",
        started.elapsed()
    );

    // StartAssociationsOnce runs an unscheduled association again at once
    let once = ssm
        .create_association()
        .name("Echo")
        .targets(web())
        .parameters("Word", vec!["once".into()])
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap()
        .association_id
        .unwrap();
    eventually("the first run", 10, || runs(&cloud, &host, "once") == 1).await;
    ssm.start_associations_once()
        .association_ids(&once)
        .send()
        .await
        .unwrap();
    eventually("the started run", 10, || runs(&cloud, &host, "once") == 2).await;
    stays("no further run without a schedule", 2, || {
        runs(&cloud, &host, "once") == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runs_stdout_becomes_the_hosts_evidence_through_the_buckets_notification() {
    let (cloud, _state) = start().await;
    document(
        &cloud,
        "Report",
        r#"echo '{"cert_name":"web","secret_version_id":"v1","serial":"0A","status":"installed","reason":"missing","reloaded":true}'"#,
    )
    .await;
    let host = add_host(&cloud, &[("role", "web")]).await;

    // the provisioned output bucket, as dispatch-install names it from the template's outputs
    let association_id = ssm(&cloud)
        .create_association()
        .name("Report")
        .targets(web())
        .output_location(
            InstanceAssociationOutputLocation::builder()
                .s3_location(
                    S3OutputLocation::builder()
                        .output_s3_bucket_name(certship_local::provision::OUTPUT_BUCKET_NAME)
                        .output_s3_key_prefix("web/web-0123456789ab")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .association_description
        .unwrap()
        .association_id
        .unwrap();

    let dynamodb = aws_sdk_dynamodb::Client::new(cloud.sdk_config());
    let mut item = None;
    for _ in 0..150 {
        let got = dynamodb
            .get_item()
            .table_name(&cloud.evidence_table_name)
            .set_key(Some(HostEvidence::key("web-0123456789ab", &host)))
            .send()
            .await
            .unwrap();
        if let Some(found) = got.item {
            item = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let evidence = HostEvidence::from_item(&item.expect("no evidence within 15 s")).unwrap();
    assert_eq!(evidence.instance_id, host);
    assert_eq!(
        evidence.association_id.as_deref(),
        Some(association_id.as_str())
    );
    assert_eq!(evidence.outcome, Outcome::Installed);
    assert_eq!(evidence.secret_version_id.as_deref(), Some("v1"));
    assert_eq!(evidence.serial.as_deref(), Some("0A"));
    assert!(evidence.reloaded);
    // the run id is the run's start, as the agent's key gives it
    assert!(
        evidence.observed_at.ends_with('Z'),
        "{}",
        evidence.observed_at
    );
}
