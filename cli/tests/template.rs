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
fn the_renewal_rule_is_the_pattern_the_local_cloud_uses() {
    let template = template();
    let function = &template["Resources"]["RenewalTriggerFunction"];
    let rule = function["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|e| e["Type"] == "EventBridgeRule")
        .expect("renewal-trigger's EventBridge rule");
    let pattern: serde_json::Value = serde_json::to_value(&rule["Properties"]["Pattern"]).unwrap();
    let local: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/acm-renewal-rule-pattern.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pattern, local);
    assert!(rule["Properties"]["DeadLetterConfig"].is_mapping());
    assert!(rule["Properties"]["RetryPolicy"].is_mapping());
}
