//! The API's request model, as API Gateway gets it after the SAM transform, against the
//! functions' own rules (`certship_shared::rules`, the one notation of each rule): every body
//! the functions would refuse for a reason known at deploy time gets 400 from the model, so it
//! starts no execution; every body they take, the model takes.
//!
//! The one documented gap: API Gateway's patterns are ECMA 262 regexes without Unicode classes,
//! so the model lets every non-ASCII character through in tag keys and values and the functions
//! judge them (letters and digits pass, other symbols fail with InvalidRequest).

mod support;

use certship_shared::rules::validate_request;
use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_shared::{DeploymentRequest, Trigger};
use certship_stack::{StackValues, Template};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0d3f5a1c-7e1b-4c55-9a0e-2b9f6d4e8c11";
const DEFAULT_ALLOWLIST: &str = "nginx,apache2,httpd,haproxy";

/// The model of the translated template, as CloudFormation deploys it for `stack`.
fn deployed(stack: &StackValues) -> jsonschema::Validator {
    let template =
        Template::parse(&serde_json::to_string_pretty(support::translated()).unwrap()).unwrap();
    jsonschema::draft4::new(&template.request_model(stack).unwrap()).unwrap()
}

fn body() -> Value {
    json!({"CertificateArn": ARN, "CertName": "web", "TargetTagKey": "env", "TargetTagValue": "dev"})
}

fn with(field: &str, value: &str) -> Value {
    let mut body = body();
    body[field] = json!(value);
    body
}

/// Whether the functions take `body` in a stack in `region` with `allowlist`.
fn functions_take(body: &Value, region: &str, allowlist: &str) -> bool {
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_string();
    let request = DeploymentRequest {
        certificate_arn: text("CertificateArn"),
        cert_name: text("CertName"),
        target_tag_key: text("TargetTagKey"),
        target_tag_value: text("TargetTagValue"),
        reload_service: body["ReloadService"].as_str().map(str::to_string),
        trigger: Trigger::Api,
    };
    let rules = RequestRules::new(region, ReloadAllowlist::parse(allowlist).unwrap());
    validate_request(&request, &rules).is_ok()
}

#[test]
fn the_sam_template_and_its_translation_deploy_the_same_model() {
    let stack = StackValues::new("aws", "us-east-1");
    let sam = Template::load(&support::root())
        .unwrap()
        .request_model(&stack)
        .unwrap();
    let translated = Template::parse(&serde_json::to_string_pretty(support::translated()).unwrap())
        .unwrap()
        .request_model(&stack)
        .unwrap();
    assert_eq!(sam, translated);
    assert_eq!(sam["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(
        sam["properties"]["ReloadService"]["enum"],
        json!([
            "",
            "nginx",
            "apache2",
            "httpd",
            "haproxy",
            "nginx.service",
            "apache2.service",
            "httpd.service",
            "haproxy.service"
        ])
    );
}

#[test]
fn the_deployed_model_refuses_the_hostile_bodies_and_takes_good_ones() {
    // given the stack as deployed by default, in partition aws
    let model = deployed(&StackValues::new("aws", "us-east-1"));
    let china =
        "arn:aws-cn:acm:cn-north-1:123456789012:certificate/0d3f5a1c-7e1b-4c55-9a0e-2b9f6d4e8c11";

    // then what AWS accepted with 202 before, and whose execution then failed, is refused
    for hostile in [
        with("ReloadService", "sshd"),
        with("ReloadService", "sshd.service"),
        with("CertificateArn", china),
    ] {
        assert!(!model.is_valid(&hostile), "{hostile}");
        assert!(!functions_take(&hostile, "us-east-1", DEFAULT_ALLOWLIST));
    }

    // and what the functions take is taken
    let mut no_reload = body();
    no_reload.as_object_mut().unwrap().remove("ReloadService");
    for good in [
        no_reload,
        with("ReloadService", ""),
        with("ReloadService", "nginx"),
        with("ReloadService", "haproxy.service"),
        with("TargetTagValue", ""),
        with(
            "CertificateArn",
            "arn:aws:acm:eu-central-2:123456789012:certificate/abc-1",
        ),
        with("CertificateArn", "acme:wildcard.example.com-0123456789ab"),
    ] {
        assert!(model.is_valid(&good), "{good}");
        assert!(functions_take(&good, "us-east-1", DEFAULT_ALLOWLIST));
    }

    // a stack in aws-cn takes its own certificates and refuses those of aws
    let china_model = deployed(&StackValues::new("aws-cn", "cn-north-1"));
    assert!(china_model.is_valid(&with("CertificateArn", china)));
    assert!(!china_model.is_valid(&body()));

    // a stack that allows no reload takes only "no reload"
    let none =
        deployed(&StackValues::new("aws", "us-east-1").parameter("AllowedReloadServices", ""));
    assert!(none.is_valid(&with("ReloadService", "")));
    assert!(!none.is_valid(&with("ReloadService", "nginx")));
}

#[test]
fn an_allowlist_the_model_cannot_express_is_refused_at_deploy_time() {
    let template = Template::load(&support::root()).unwrap();
    for list in [
        " nginx",
        "nginx, haproxy",
        "haproxy.service",
        "nginx,,httpd",
        "a;b",
    ] {
        let stack = StackValues::new("aws", "us-east-1").parameter("AllowedReloadServices", list);
        let error = template.request_model(&stack).unwrap_err().to_string();
        assert!(error.contains("AllowedPattern"), "{list}: {error}");
    }
    template
        .request_model(
            &StackValues::new("aws", "us-east-1")
                .parameter("AllowedReloadServices", "nginx,my-app@1"),
        )
        .unwrap();
}

/// Every sample value of each field, with the verdict of the model and of the functions.
/// `gap` marks the documented exception: the model takes it, the functions refuse it.
#[test]
fn the_model_and_the_shared_validators_agree_on_every_sample() {
    let long_id = "a".repeat(128);
    let too_long_id = "a".repeat(129);
    let arn = |partition: &str, region: &str, account: &str, resource: &str| {
        format!("arn:{partition}:acm:{region}:{account}:{resource}")
    };
    let account = "123456789012";
    let certificate_arns = vec![
        ARN.to_string(),
        // ACME certificates (`certship acme issue` prints their id)
        "acme:wildcard.example.com-0123456789ab".to_string(),
        "acme:x-0123456789ab".to_string(),
        "acme:x-0123456789AB".to_string(),
        "acme:x-0123456789a".to_string(),
        "acme:a/b-0123456789ab".to_string(),
        "acme:-0123456789ab".to_string(),
        "ACME:x-0123456789ab".to_string(),
        format!("acme:{}-0123456789ab", "a".repeat(253)),
        format!("acme:{}-0123456789ab", "a".repeat(254)),
        arn("aws", "eu-west-1", account, "certificate/abc"),
        arn(
            "aws",
            "ap-southeast-3",
            account,
            &format!("certificate/{long_id}"),
        ),
        arn(
            "aws",
            "eu-west-1",
            account,
            &format!("certificate/{too_long_id}"),
        ),
        arn("aws", "cn-north-1", account, "certificate/abc"),
        arn("aws-cn", "cn-north-1", account, "certificate/abc"),
        arn("aws-us-gov", "us-gov-west-1", account, "certificate/abc"),
        arn("aws", "us-gov-west-1", account, "certificate/abc"),
        arn("aws", "eusc-de-east-1", account, "certificate/abc"),
        arn("nope", "eu-west-1", account, "certificate/abc"),
        arn("aws", "eu-west-1", "12345", "certificate/abc"),
        arn("aws", "EU-WEST-1", account, "certificate/abc"),
        arn("aws", "euwest-1", account, "certificate/abc"),
        arn("aws", "eu-west-1a", account, "certificate/abc"),
        arn("aws", "eu-west-", account, "certificate/abc"),
        arn(
            "aws",
            &format!("eu-{}-1", "w".repeat(28)),
            account,
            "certificate/abc",
        ),
        arn(
            "aws",
            &format!("eu-{}-1", "w".repeat(27)),
            account,
            "certificate/abc",
        ),
        arn("aws", "eu-west-1", account, "key/abc"),
        arn("aws", "eu-west-1", account, "certificate/"),
        arn("aws", "eu-west-1", account, "certificate/abc/../x"),
        arn("aws", "eu-west-1", account, "certificate/a_b"),
        "arn:aws:iam::123456789012:role/x".to_string(),
        format!("{ARN}\n"),
        String::new(),
    ];
    let cert_names = [
        "web",
        "a",
        "www.example.com",
        "my_cert-2",
        "a-",
        &"x".repeat(64),
        &"x".repeat(65),
        "",
        "..",
        "../../etc",
        "a..b",
        "a.b.c",
        ".hidden",
        "-x",
        "a/b",
        "a b",
        "é",
        "web\n",
    ];
    let tag_keys = [
        ("env", false),
        ("team/app:tier=1 @x+y", false),
        ("awsx", false),
        ("aws", false),
        ("x:aws:", false),
        ("équipe", false),
        ("日本", false),
        (&"k".repeat(128), false),
        (&"é".repeat(128), false),
        (&"k".repeat(129), false),
        (&"é".repeat(129), false),
        ("", false),
        ("aws:env", false),
        ("AWS:x", false),
        ("Aws:x", false),
        ("a#b", false),
        ("a;b", false),
        ("a\tb", false),
        ("a\nb", false),
        ("€", true),
        ("a\u{a0}b", true),
    ];
    let tag_values = [
        ("dev", false),
        ("", false),
        ("web team", false),
        ("é", false),
        (&"v".repeat(256), false),
        (&"v".repeat(257), false),
        ("a#b", false),
        ("$(reboot)", false),
        ("a\"b", false),
        ("€", true),
    ];
    let reload_services = [
        "",
        "nginx",
        "nginx.service",
        "haproxy",
        "sshd",
        "sshd.service",
        "nginx.socket",
        "nginx;reboot",
        "../nginx",
        "NGINX",
        "nginx ",
        "reboot.target",
    ];

    let mut samples: Vec<(Value, bool)> = Vec::new();
    samples.extend(
        certificate_arns
            .iter()
            .map(|v| (with("CertificateArn", v), false)),
    );
    samples.extend(cert_names.iter().map(|v| (with("CertName", v), false)));
    samples.extend(
        tag_keys
            .iter()
            .map(|(v, gap)| (with("TargetTagKey", v), *gap)),
    );
    samples.extend(
        tag_values
            .iter()
            .map(|(v, gap)| (with("TargetTagValue", v), *gap)),
    );
    samples.extend(
        reload_services
            .iter()
            .map(|v| (with("ReloadService", v), false)),
    );

    let model = deployed(&StackValues::new("aws", "us-east-1"));
    let mut disagreements = Vec::new();
    for (body, gap) in &samples {
        let by_model = model.is_valid(body);
        let by_functions = functions_take(body, "us-east-1", DEFAULT_ALLOWLIST);
        let expected = if *gap {
            (true, false)
        } else {
            (by_functions, by_functions)
        };
        if (by_model, by_functions) != expected {
            disagreements.push(format!(
                "model {by_model}, functions {by_functions}: {body}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    // the table tries both verdicts for every field
    assert!(samples.iter().any(|(b, _)| model.is_valid(b)));
    assert!(samples.iter().any(|(b, _)| !model.is_valid(b)));
}

/// The template's `PartitionRegions` against `certship_shared`'s partition of a region: in a
/// stack of each partition, a certificate of each region is taken or refused alike.
#[test]
fn each_partition_takes_the_regions_the_functions_take() {
    let home_regions = [
        ("aws", "us-east-1"),
        ("aws-cn", "cn-north-1"),
        ("aws-us-gov", "us-gov-west-1"),
        ("aws-iso", "us-iso-east-1"),
        ("aws-iso-b", "us-isob-east-1"),
        ("aws-iso-e", "eu-isoe-west-1"),
        ("aws-iso-f", "us-isof-south-1"),
        ("aws-eusc", "eusc-de-east-1"),
    ];
    let template = support::translated();
    let mapped: BTreeSet<&str> = template["Mappings"]["PartitionRegions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        mapped,
        home_regions.iter().map(|(p, _)| *p).collect(),
        "every partition the functions know"
    );
    for (partition, home) in home_regions {
        assert_eq!(certship_shared::arn::partition_of_region(home), partition);
        let model = deployed(&StackValues::new(partition, home));
        for (certificate_partition, _) in home_regions {
            for (region_partition, region) in home_regions {
                let body = with(
                    "CertificateArn",
                    &format!(
                        "arn:{certificate_partition}:acm:{region}:123456789012:certificate/abc"
                    ),
                );
                let taken = model.is_valid(&body);
                assert_eq!(
                    taken,
                    functions_take(&body, home, DEFAULT_ALLOWLIST),
                    "a {certificate_partition} certificate in {region}, stack in {home}"
                );
                assert_eq!(
                    taken,
                    certificate_partition == partition && region_partition == partition
                );
            }
        }
    }
}

/// The `/certificates` model of the translated template.
fn issuance_model() -> jsonschema::Validator {
    let template =
        Template::parse(&serde_json::to_string_pretty(support::translated()).unwrap()).unwrap();
    jsonschema::draft4::new(
        &template
            .request_model_at(
                certship_stack::CERTIFICATES_RESOURCE,
                &StackValues::new("aws", "us-east-1"),
            )
            .unwrap(),
    )
    .unwrap()
}

/// Whether acme-certificate takes `body` as its issuance request.
fn acme_takes(body: &Value) -> bool {
    serde_json::from_value::<certship_shared::acme::IssueRequest>(body.clone())
        .is_ok_and(|request| request.validate().is_ok())
}

#[test]
fn the_issuance_model_and_the_acme_rules_agree_on_every_sample() {
    let label63 = "a".repeat(63);
    let long_name = format!("{label63}.{label63}.{label63}.{}.com", "b".repeat(57));
    assert_eq!(long_name.len(), 253);
    let too_long = format!("x{long_name}");
    let domains: Vec<Value> = [
        "example.com",
        "*.example.com",
        "EXAMPLE.com",
        "xn--bcher-kva.example",
        "a-b.example.com",
        &format!("{label63}.example.com"),
        &long_name,
        // refused by both
        &too_long,
        &format!("{label63}a.example.com"),
        "example",
        "a*.example.com",
        "*.*.example.com",
        "*example.com",
        "-a.example.com",
        "a-.example.com",
        "a_b.example.com",
        "bücher.example",
        "exa mple.com",
        "example.com.",
        ".example.com",
        "",
    ]
    .iter()
    .map(|d| json!({"Domains": [d], "HostedZoneId": "Z0123456789ABC"}))
    .collect();
    let mut samples = domains;
    let base = || json!({"Domains": ["www.example.com"], "HostedZoneId": "Z0123456789ABC"});
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let many: Vec<String> = (0..101).map(|i| format!("n{i}.example.com")).collect();
    samples.extend([
        base(),
        with("Domains", json!([])),
        with("Domains", json!(many[..100])),
        with("Domains", json!(many)),
        with("Domains", json!("www.example.com")),
        with("HostedZoneId", json!("/hostedzone/Z0123456789ABC")),
        with("HostedZoneId", json!("")),
        with("HostedZoneId", json!("Z0123!")),
        with("HostedZoneId", json!("Z".repeat(32))),
        with("HostedZoneId", json!("Z".repeat(33))),
        with("KeyType", json!("ec-p256")),
        with("KeyType", json!("ec-p384")),
        with("KeyType", json!("rsa-2048")),
        with("KeyType", json!("EC-P256")),
        with("KeyType", json!("rsa-4096")),
        with("Directory", json!("letsencrypt")),
        with("Directory", json!("letsencrypt-staging")),
        with("Directory", json!("https://acme.example.net/directory")),
        with("Directory", json!("http://acme.example.net/directory")),
        with("Directory", json!("https://acme example")),
        with("Directory", json!("https://")),
        with("Directory", json!(format!("https://{}", "a".repeat(1016)))),
        with("Directory", json!(format!("https://{}", "a".repeat(1017)))),
        with("Directory", json!("Letsencrypt")),
        with("Contact", json!(["mailto:ops@example.com"])),
        with("Contact", json!([])),
        with("Contact", json!(["ops@example.com"])),
        with("Contact", json!(["mailto:ops"])),
        with("Contact", json!(["mailto:a@b"])),
        with("Contact", json!(["mailto:@b.c"])),
        with("RenewDaysBefore", json!(1)),
        with("RenewDaysBefore", json!(30)),
        with("RenewDaysBefore", json!(365)),
        with("RenewDaysBefore", json!(0)),
        with("RenewDaysBefore", json!(366)),
        with("RenewDaysBefore", json!(-1)),
        with("RenewDaysBefore", json!(30.5)),
        with("RenewDaysBefore", json!("30")),
        with("ImportToAcm", json!(true)),
        with("ImportToAcm", json!(false)),
        with("ImportToAcm", json!("yes")),
        with("ImportToAcm", json!(1)),
    ]);
    let model = issuance_model();
    let mut taken = 0;
    for body in &samples {
        assert_eq!(
            model.is_valid(body),
            acme_takes(body),
            "the model and the rules disagree on {body}"
        );
        taken += usize::from(acme_takes(body));
    }
    // the samples are not one-sided
    assert!(taken > 15 && taken < samples.len() - 15, "{taken}");

    // and the model, stricter than serde, refuses what is not the contract's
    for extra in ["Trigger", "Force", "domains"] {
        assert!(!model.is_valid(&with(extra, json!("x"))), "{extra}");
    }
}

#[test]
fn a_deployment_names_an_acme_certificate_by_either_field_but_not_both() {
    let model = deployed(&StackValues::new("aws", "us-east-1"));
    let id = "wildcard.example.com-0123456789ab";
    let mut by_id = body();
    by_id.as_object_mut().unwrap().remove("CertificateArn");
    by_id["AcmeCertificateId"] = json!(id);
    assert!(model.is_valid(&by_id), "{by_id}");
    // what the request template makes of it, the functions take
    let mut as_input = by_id.clone();
    as_input
        .as_object_mut()
        .unwrap()
        .remove("AcmeCertificateId");
    as_input["CertificateArn"] = json!(format!("acme:{id}"));
    assert!(functions_take(&as_input, "us-east-1", DEFAULT_ALLOWLIST));

    let mut both = by_id.clone();
    both["CertificateArn"] = json!(ARN);
    let mut neither = by_id.clone();
    neither.as_object_mut().unwrap().remove("AcmeCertificateId");
    for (refused, why) in [
        (both, "both"),
        (neither, "neither"),
        (
            {
                let mut b = by_id.clone();
                b["AcmeCertificateId"] = json!(format!("acme:{id}"));
                b
            },
            "with the prefix",
        ),
        (
            {
                let mut b = by_id.clone();
                b["AcmeCertificateId"] = json!("wildcard.example.com-0123456789AB");
                b
            },
            "upper-case hex",
        ),
    ] {
        assert!(!model.is_valid(&refused), "{why}: {refused}");
    }
}
