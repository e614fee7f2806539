//! The SAM template against the files it deploys: what static linting cannot see.

use serde_norway::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    certship_testkit::moto::project_root()
}

fn template() -> Value {
    serde_norway::from_str(
        &std::fs::read_to_string(root().join("cloudformation/template.yaml")).unwrap(),
    )
    .unwrap()
}

#[test]
fn every_substitution_of_the_state_machine_is_a_function_of_the_template() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let machine = resources
        .values()
        .find(|r| r["Type"] == "AWS::Serverless::StateMachine")
        .expect("a state machine");
    assert_eq!(
        machine["Properties"]["DefinitionUri"],
        "../statemachine/certificate-deployment.asl.json"
    );
    let substitutions = machine["Properties"]["DefinitionSubstitutions"]
        .as_mapping()
        .unwrap();
    let asl = std::fs::read_to_string(root().join("statemachine/certificate-deployment.asl.json"))
        .unwrap();
    let placeholders: Vec<&str> = asl
        .match_indices("${")
        .map(|(i, _)| {
            let rest = &asl[i + 2..];
            &rest[..rest.find('}').unwrap()]
        })
        .collect();
    assert_eq!(placeholders.len(), 3, "{placeholders:?}");
    for name in placeholders {
        let value = &substitutions[name];
        let Value::Tagged(tagged) = value else {
            panic!("{name} is not substituted: {value:?}");
        };
        assert_eq!(tagged.tag, "GetAtt");
        let target = tagged.value.as_str().unwrap();
        let function = target.strip_suffix(".Arn").unwrap();
        assert_eq!(
            resources[function]["Type"], "AWS::Serverless::Function",
            "{name} -> {target}"
        );
    }
}

#[test]
fn the_renewal_rule_has_a_dead_letter_queue_and_a_retry_policy() {
    let template = template();
    let rule = template["Resources"]["RenewalTriggerFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|e| e["Type"] == "EventBridgeRule")
        .expect("renewal-trigger's EventBridge rule");
    assert!(rule["Properties"]["DeadLetterConfig"].is_mapping());
    assert!(rule["Properties"]["RetryPolicy"].is_mapping());
}

/// moto has no TestEventPattern, so the pattern is tried the way it runs: a rule on a bus,
/// routing the fixture events to a queue.
#[tokio::test(flavor = "multi_thread")]
async fn the_renewal_rule_routes_acm_renewals_and_nothing_else() {
    // given the template's rule on a bus, with a queue as its target
    // (the pattern the local cloud's rule uses too)
    let pattern = certship_stack::Template::load(&root())
        .unwrap()
        .renewal_rule_pattern()
        .unwrap();
    let moto = certship_testkit::moto::Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let queue_url = sqs
        .create_queue()
        .queue_name("routed")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("renewal")
        .event_pattern(pattern)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("renewal")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // when ACM's three kinds of event arrive
    let fixtures = [
        "acm-certificate-available-renewal.json",
        "acm-certificate-available-issuance.json",
        "acm-certificate-expiration-approaching.json",
    ];
    for fixture in fixtures {
        let event: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("events").join(fixture)).unwrap(),
        )
        .unwrap();
        let out = events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(event["source"].as_str().unwrap())
                    .detail_type(event["detail-type"].as_str().unwrap())
                    .resources(event["resources"][0].as_str().unwrap())
                    .detail(event["detail"].to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_entry_count(), 0, "{fixture}");
    }

    // then only the renewal reaches the target
    let mut routed = Vec::new();
    for _ in 0..3 {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in received.messages() {
            let event: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
            routed.push(format!(
                "{} / {}",
                event["detail-type"].as_str().unwrap_or_default(),
                event["detail"]["Action"].as_str().unwrap_or_default()
            ));
        }
    }
    assert_eq!(routed, ["ACM Certificate Available / RENEWAL"]);
}

/// The template refuses a ReconcileSchedule at deploy time exactly when dispatch-install would
/// refuse it at run time (`certship_shared::schedule`, the one rule): same answer on every sample.
#[test]
fn the_reconcile_schedule_pattern_and_the_shared_rule_agree() {
    use certship_shared::schedule::{DEFAULT_RECONCILE_SCHEDULE, ReconcileSchedule};
    let template = template();
    let parameter = &template["Parameters"]["ReconcileSchedule"];
    assert_eq!(parameter["Default"], DEFAULT_RECONCILE_SCHEDULE);
    let pattern = regex::Regex::new(parameter["AllowedPattern"].as_str().unwrap()).unwrap();
    let mut samples: Vec<String> = [
        "",
        "hourly",
        "rate(1 minute)",
        "rate(29 minutes)",
        "rate(30 minutes)",
        "rate(031 minutes)",
        "rate(1 hour)",
        "rate(1 hours)",
        "rate(2 hour)",
        "rate(0 hours)",
        "rate(1 day)",
        "rate(1 days)",
        "rate(30 days)",
        "rate(31 days)",
        "rate(44639 minutes)",
        "rate(744 hours)",
        "rate(743 hours)",
        "at(2026-01-01T00:00:00)",
        "cron(0 0/4 * * ? *)",
        "cron()",
        "cron( )",
        "rate( 1 hour)",
        "rate(1  hour)",
        "rate(44640 minutes)",
        "rate(9999 minutes)",
        "rate(10000 minutes)",
        "rate(39999 minutes)",
        "rate(43999 minutes)",
        "rate(44599 minutes)",
        "rate(99999 minutes)",
    ]
    .map(String::from)
    .to_vec();
    for n in 1..=800 {
        for unit in ["minute", "minutes", "hour", "hours", "day", "days"] {
            samples.push(format!("rate({n} {unit})"));
        }
    }
    let disagreements: Vec<String> = samples
        .iter()
        .filter(|s| pattern.is_match(s) != ReconcileSchedule::parse(s).is_ok())
        .map(|s| format!("{s:?}: template {}", pattern.is_match(s)))
        .collect();
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

/// The association's output bucket holds every host's report: private, encrypted, TLS only,
/// expiring; hosts write only under their own tag value, and it notifies record-host-evidence
/// of each run's stdout only.
#[test]
fn run_output_is_private_expiring_and_written_only_under_the_hosts_tag() {
    let template = template();
    let resources = &template["Resources"];
    let bucket = &resources["AssociationOutputBucket"]["Properties"];
    let block = &bucket["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting], true, "{setting}");
    }
    assert!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
            .is_string()
    );
    let rule = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(rule["Status"], "Enabled");
    assert!(rule["ExpirationInDays"].as_u64().unwrap() <= 30);
    let deny =
        &resources["AssociationOutputBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");

    // The host policy: S3 writes only under ${aws:PrincipalTag/<HostTagKey>}/.
    let Value::Tagged(sub) = &resources["HostSecretReadPolicy"]["Properties"]["PolicyDocument"]
    else {
        panic!("the host policy is a Fn::Sub");
    };
    let document = sub.value[0].as_str().unwrap();
    let json: serde_json::Value = serde_json::from_str(document).unwrap();
    let writes: Vec<&serde_json::Value> = json["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"].to_string().contains("s3:PutObject"))
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0]["Resource"],
        "arn:${AWS::Partition}:s3:::${AssociationOutputBucket}/${PrincipalTagVariable}/*"
    );

    // record-host-evidence hears of stdout objects only.
    let event = &resources["RecordHostEvidenceFunction"]["Properties"]["Events"]["RunOutput"];
    assert_eq!(event["Type"], "S3");
    assert_eq!(
        event["Properties"]["Filter"]["S3Key"]["Rules"][0]["Value"],
        "/stdout"
    );
    // dispatch-install gets the schedule, bucket and dispatch role it passes to SSM.
    let env = &resources["DispatchInstallFunction"]["Properties"]["Environment"]["Variables"];
    for name in [
        "RECONCILE_SCHEDULE",
        "ASSOCIATION_OUTPUT_BUCKET",
        "ASSOCIATION_DISPATCH_ROLE_ARN",
    ] {
        assert!(!env[name].is_null(), "{name}");
    }
}
