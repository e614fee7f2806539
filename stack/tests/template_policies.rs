//! The IAM of the deployed stack against the code: the template after the SAM transform
//! (`scripts/translate_template.py`, samtranslator offline, from `.venv`), so these look at the
//! roles SAM generates, not at the template's shorthand.
//!
//! What "the code calls" is found mechanically, never listed by hand: the operations of every
//! AWS SDK crate a function crate depends on are the directories `src/operation/<snake_name>/`
//! of that SDK crate (located with `cargo metadata`), and a call is `.snake_name(` in the
//! function crate's own modules, walked from `src/lib.rs` and `src/main.rs` through `mod x;`
//! and each read up to its first `#[cfg(test)] mod`, `//` comment lines left out. A name that
//! is an operation of several SDKs the crate uses (ACM and Secrets Manager both have
//! TagResource) goes to the SDK of the receiver, `x` in `x.op(`, when the file declares
//! `x: aws_sdk_y::Client`, else to the only one of them the file names; if neither settles it,
//! the test fails and says where. Its IAM action is `<prefix>:<Operation>`, the operation's own
//! name from the SDK (for these six services IAM action and API operation names are the same).
//! Besides those, a role may hold only what Lambda itself does with it: delivering to the
//! function's EventInvokeConfig destinations.
//!
//! Limits: a method of another type that shares an operation's name (`Iterator::scan` and
//! DynamoDB's Scan, say) counts as a call; an operation reached any other way than
//! `.snake_name(` (a macro, a `#[path]` module, a block comment) does not; calls made by
//! another crate on a function's behalf are invisible, which is why the shared crate must
//! call none.

mod support;

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::{root, translated};

/// The SDK crates a function may use, with the IAM service prefix of their operations.
/// A function depending on another `aws-sdk-*` crate fails the test until it is named here.
const SDK_PREFIXES: [(&str, &str); 8] = [
    ("aws-sdk-acm", "acm"),
    ("aws-sdk-route53", "route53"),
    ("aws-sdk-s3", "s3"),
    ("aws-sdk-secretsmanager", "secretsmanager"),
    ("aws-sdk-dynamodb", "dynamodb"),
    ("aws-sdk-ssm", "ssm"),
    ("aws-sdk-sfn", "states"),
    ("aws-sdk-eventbridge", "events"),
];

/// The functions, as the template names them.
const FUNCTIONS: [&str; 6] = [
    "AcmeCertificateFunction",
    "CheckInstallStatusFunction",
    "DispatchInstallFunction",
    "ExportCertificateFunction",
    "RecordHostEvidenceFunction",
    "RenewalTriggerFunction",
];

/// Calls IAM authorizes as other actions than their own name, and why: each call found in the
/// code stands for exactly these actions.
const AUTHORIZED_AS: [(&str, &[&str], &str); 6] = [
    (
        "acm:ImportCertificate",
        &["acm:ImportCertificate", "acm:AddTagsToCertificate"],
        "acme-certificate imports with Tags, which ACM authorizes as acm:AddTagsToCertificate \
         besides ImportCertificate (Service Authorization Reference, AWS Certificate Manager, \
         \"API operations\": ImportCertificate)",
    ),
    (
        "secretsmanager:CreateSecret",
        &["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
        "both callers create their secrets with Tags, which Secrets Manager authorizes as \
         secretsmanager:TagResource besides CreateSecret (Secrets Manager API Reference, \
         CreateSecret, \"Required permissions\")",
    ),
    (
        "s3:GetObject",
        &["s3:GetObject", "s3:ListBucket"],
        "without s3:ListBucket on the bucket, S3 answers a missing key with 403 AccessDenied, not \
         404 NoSuchKey (S3 API Reference, GetObject, \"Permissions\"); record-host-evidence \
         skips an object that is gone only on NoSuchKey",
    ),
    (
        "dynamodb:TransactWriteItems",
        &["dynamodb:PutItem", "dynamodb:UpdateItem"],
        "no IAM action of its own: DynamoDB authorizes each item's Put, Update, Delete or \
         ConditionCheck; dispatch-install's transaction puts the name claim and updates the mapping",
    ),
    (
        "ssm:CreateAssociation",
        &[
            "ssm:CreateAssociation",
            "ssm:AddTagsToResource",
            "iam:PassRole",
        ],
        "the association is created with Tags (AddTagsToResource) and passes the dispatch role \
         to SSM (AssociationDispatchAssumeRole)",
    ),
    (
        "ssm:UpdateAssociation",
        &["ssm:UpdateAssociation", "iam:PassRole"],
        "the update resends AssociationDispatchAssumeRole",
    ),
];

/// AWS managed policies SAM attaches to the function roles, left out of the comparison: they
/// serve the Lambda runtime, not the code. AWSLambdaBasicExecutionRole (logs:CreateLogGroup,
/// logs:CreateLogStream, logs:PutLogEvents: the function's own logs) on every function, and
/// AWSXrayWriteOnlyAccess (X-Ray segments) for `Tracing: Active`. Any other managed policy on a
/// role fails the test, since its actions cannot be seen here.
const IGNORED_MANAGED_POLICIES: [&str; 2] = [
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
];

/// Actions AWS lets a policy grant only on `"*"`, and why. Every other action must name its
/// resources. An entry no role grants on `"*"` any more fails the test, so the list stays short.
const ONLY_ON_STAR: [(&str, &str); 13] = [
    ("ssm:DescribeInstanceInformation", NO_RESOURCE_TYPES),
    ("states:SendTaskSuccess", TASK_TOKENS),
    ("ssm:ListAssociations", NO_RESOURCE_TYPES),
    ("ec2:DescribeInstances", NO_RESOURCE_TYPES),
    ("tag:GetResources", NO_RESOURCE_TYPES),
    ("logs:CreateLogDelivery", STATES_LOGGING),
    ("logs:GetLogDelivery", STATES_LOGGING),
    ("logs:UpdateLogDelivery", STATES_LOGGING),
    ("logs:DeleteLogDelivery", STATES_LOGGING),
    ("logs:ListLogDeliveries", STATES_LOGGING),
    ("logs:PutResourcePolicy", STATES_LOGGING),
    ("logs:DescribeResourcePolicies", STATES_LOGGING),
    ("logs:DescribeLogGroups", STATES_LOGGING),
];
const NO_RESOURCE_TYPES: &str =
    "the Service Authorization Reference lists no resource type for it: only \"*\" applies";
const TASK_TOKENS: &str = "a service integration's task token (`.waitForTaskToken`) names no \
     resource a policy can match: only an activity's tasks can be scoped (the Service \
     Authorization Reference's one resource type for it is `activity`)";
const STATES_LOGGING: &str =
    "Step Functions' logging to CloudWatch Logs: AWS documents these actions on \"*\" only";

fn resources() -> &'static Map<String, Value> {
    translated()["Resources"]
        .as_object()
        .expect("translated Resources")
}

fn resource(id: &str) -> &'static Value {
    resources()
        .get(id)
        .unwrap_or_else(|| panic!("the translated template has no resource {id}"))
}

/// The resource a `Fn::GetAtt [X, Arn]` (either form) or a `Ref X` names.
fn target(value: &Value) -> Option<&str> {
    if let Some(name) = value.get("Ref").and_then(Value::as_str) {
        return Some(name);
    }
    match value.get("Fn::GetAtt")? {
        Value::Array(parts) if parts.len() == 2 && parts[1] == "Arn" => parts[0].as_str(),
        Value::String(dotted) => dotted.strip_suffix(".Arn"),
        _ => None,
    }
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// One action an Allow statement grants, on the statement's resources.
struct Grant {
    action: String,
    resources: Vec<Value>,
    /// Which policy and statement, for messages.
    source: String,
}

fn grants_of(document: &Value, source: &str) -> Vec<Grant> {
    assert!(
        document["Statement"].is_object() || document["Statement"].is_array(),
        "{source}: not a policy document with statements: {document}"
    );
    let mut grants = Vec::new();
    for (i, statement) in as_list(&document["Statement"]).into_iter().enumerate() {
        let at = format!(
            "{source} statement {}",
            statement["Sid"]
                .as_str()
                .map_or(i.to_string(), str::to_string)
        );
        assert!(
            statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
            "{at}: NotAction and NotResource are not checked here; name the actions and resources"
        );
        if statement["Effect"] != "Allow" {
            continue;
        }
        for action in as_list(&statement["Action"]) {
            grants.push(Grant {
                action: action.as_str().expect("an action name").to_string(),
                resources: as_list(&statement["Resource"])
                    .into_iter()
                    .cloned()
                    .collect(),
                source: at.clone(),
            });
        }
    }
    grants
}

/// Everything a role allows: its inline policies, customer managed policies of the template it
/// lists, and any AWS::IAM::Policy or ManagedPolicy attaching itself to it, without the
/// [`IGNORED_MANAGED_POLICIES`].
fn role_grants(role_id: &str) -> Vec<Grant> {
    let role = resource(role_id);
    assert_eq!(role["Type"], "AWS::IAM::Role", "{role_id}");
    let mut grants = Vec::new();
    for policy in as_list(&role["Properties"]["Policies"]) {
        let name = policy["PolicyName"].as_str().unwrap_or("?");
        grants.extend(grants_of(
            &policy["PolicyDocument"],
            &format!("{role_id} policy {name}"),
        ));
    }
    for arn in as_list(&role["Properties"]["ManagedPolicyArns"]) {
        if arn
            .as_str()
            .is_some_and(|a| IGNORED_MANAGED_POLICIES.contains(&a))
        {
            continue;
        }
        let managed = target(arn)
            .filter(|id| resource(id)["Type"] == "AWS::IAM::ManagedPolicy")
            .unwrap_or_else(|| panic!("{role_id} has managed policy {arn}, which is not seen"));
        grants.extend(grants_of(
            &resource(managed)["Properties"]["PolicyDocument"],
            managed,
        ));
    }
    for (id, other) in resources() {
        let attaching = matches!(
            other["Type"].as_str(),
            Some("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy")
        ) && as_list(&other["Properties"]["Roles"])
            .into_iter()
            .any(|r| target(r) == Some(role_id));
        if attaching {
            grants.extend(grants_of(&other["Properties"]["PolicyDocument"], id));
        }
    }
    grants
}

/// What Lambda itself does with a function's role: deliver to the destinations of its
/// EventInvokeConfig. Maps each such action to the destination it needs.
fn destination_actions(function_id: &str) -> BTreeMap<String, Value> {
    let mut actions = BTreeMap::new();
    for config in resources().values() {
        if config["Type"] != "AWS::Lambda::EventInvokeConfig"
            || target(&config["Properties"]["FunctionName"]) != Some(function_id)
        {
            continue;
        }
        let destinations = &config["Properties"]["DestinationConfig"];
        for when in ["OnSuccess", "OnFailure"] {
            let destination = &destinations[when]["Destination"];
            if destination.is_null() {
                continue;
            }
            let kind = target(destination).map(|id| resource(id)["Type"].as_str());
            let action = match kind.flatten() {
                Some("AWS::SQS::Queue") => "sqs:SendMessage",
                Some("AWS::SNS::Topic") => "sns:Publish",
                Some("AWS::Lambda::Function") => "lambda:InvokeFunction",
                Some("AWS::Events::EventBus") => "events:PutEvents",
                _ => panic!("{function_id}'s {when} destination {destination} is not understood"),
            };
            actions.insert(action.to_string(), destination.clone());
        }
    }
    actions
}

fn cargo_metadata() -> &'static Value {
    static METADATA: OnceLock<Value> = OnceLock::new();
    METADATA.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(root())
            .output()
            .expect("running cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
    })
}

fn package(id: &str) -> &'static Value {
    cargo_metadata()["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("cargo metadata has no package {id}"))
}

fn manifest_dir(package: &Value) -> PathBuf {
    Path::new(package["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The workspace package whose bin target is `binary` (what cargo-lambda builds).
fn package_with_bin(binary: &str) -> &'static Value {
    let metadata = cargo_metadata();
    metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| package(id.as_str().unwrap()))
        .find(|p| {
            p["targets"].as_array().unwrap().iter().any(|t| {
                t["name"] == binary && t["kind"].as_array().unwrap().contains(&"bin".into())
            })
        })
        .unwrap_or_else(|| panic!("no workspace crate builds the binary {binary}"))
}

/// An AWS SDK crate a function crate depends on.
struct Sdk {
    prefix: &'static str,
    /// How the code names it: `aws_sdk_acm`.
    ident: String,
    operation_dir: PathBuf,
    /// snake_case operation names.
    operations: BTreeSet<String>,
}

impl Sdk {
    /// The operation's own name, as the SDK sends it.
    fn operation_name(&self, snake: &str) -> String {
        let path = self.operation_dir.join(format!("{snake}.rs"));
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = Regex::new(r#"Metadata::new\(\s*"(\w+)""#).unwrap();
        name.captures(&source)
            .unwrap_or_else(|| panic!("no operation name in {}", path.display()))[1]
            .to_string()
    }
}

/// The AWS SDK crates among the package's normal (not dev or build) dependencies.
fn sdk_dependencies(dependent: &Value) -> Vec<Sdk> {
    let node = cargo_metadata()["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == dependent["id"])
        .expect("the package in cargo metadata's resolve graph");
    let mut sdks = Vec::new();
    for dep in node["deps"].as_array().unwrap() {
        let normal = dep["dep_kinds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kind"].is_null());
        let dependency = package(dep["pkg"].as_str().unwrap());
        let name = dependency["name"].as_str().unwrap();
        if !normal || !name.starts_with("aws-sdk-") {
            continue;
        }
        let prefix = SDK_PREFIXES
            .iter()
            .find(|(sdk, _)| *sdk == name)
            .unwrap_or_else(|| panic!("{name} has no IAM prefix in SDK_PREFIXES"))
            .1;
        let operation_dir = manifest_dir(dependency).join("src/operation");
        let operations = std::fs::read_dir(&operation_dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", operation_dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_dir())
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        sdks.push(Sdk {
            prefix,
            ident: name.replace('-', "_"),
            operation_dir,
            operations,
        });
    }
    sdks
}

/// The crate's non-test source: its modules from `src/lib.rs` and `src/main.rs` through
/// `mod x;`, each cut at its first `#[cfg(test)] mod` (other attributes may stand between), so
/// test modules and their files are out.
fn non_test_sources(crate_dir: &Path) -> Vec<(PathBuf, String)> {
    // Other attributes may stand between, such as a `#[path = "x_tests.rs"]`.
    let test_module =
        Regex::new(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s+)?mod\s").unwrap();
    let module = Regex::new(r"(?m)^\s*(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*;").unwrap();
    let mut pending: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|f| crate_dir.join(f))
        .filter(|p| p.exists())
        .collect();
    let mut sources = Vec::new();
    while let Some(path) = pending.pop() {
        let text = std::fs::read_to_string(&path).unwrap();
        let text = match test_module.find(&text) {
            Some(m) => text[..m.start()].to_string(),
            None => text,
        };
        let stem = path.file_stem().unwrap().to_string_lossy();
        let dir = if ["lib", "main", "mod"].contains(&stem.as_ref()) {
            path.parent().unwrap().to_path_buf()
        } else {
            path.parent().unwrap().join(stem.as_ref())
        };
        for declared in module.captures_iter(&text) {
            let name = &declared[3];
            let file = [
                dir.join(format!("{name}.rs")),
                dir.join(name).join("mod.rs"),
            ]
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("module {name} of {} not found", path.display()));
            pending.push(file);
        }
        sources.push((path, text));
    }
    sources
}

/// The IAM actions the crate's non-test code calls, each with where it is called.
fn code_actions(crate_dir: &Path, sdks: &[Sdk]) -> BTreeMap<String, Vec<String>> {
    let call = Regex::new(r"\.([a-z][a-z0-9_]*)\s*\(").unwrap();
    let mut actions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, text) in non_test_sources(crate_dir) {
        let file = path.strip_prefix(root()).unwrap_or(&path).display();
        // Comment lines blanked, so that offsets still give line numbers.
        let code = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        for found in call.captures_iter(&code) {
            let name = &found[1];
            let offset = found.get(0).unwrap().start();
            let at = format!("{file}:{}", code[..offset].matches('\n').count() + 1);
            let candidates: Vec<&Sdk> = sdks
                .iter()
                .filter(|sdk| sdk.operations.contains(name))
                .collect();
            let sdk = match candidates[..] {
                [] => continue,
                [sdk] => sdk,
                _ => client_sdk(&code[..offset], &code, &candidates).unwrap_or_else(|| {
                    panic!(
                        ".{name}( at {at} is an operation of several SDKs the crate uses, and \
                         neither its receiver's declared type nor the file names one of them"
                    )
                }),
            };
            let action = format!("{}:{}", sdk.prefix, sdk.operation_name(name));
            let authorized = AUTHORIZED_AS
                .iter()
                .find(|(call, _, _)| *call == action)
                .map_or_else(
                    || vec![action.clone()],
                    |(_, as_, _)| as_.iter().map(|a| a.to_string()).collect(),
                );
            for action in authorized {
                actions.entry(action).or_default().push(at.clone());
            }
        }
    }
    actions
}

/// Which of several SDKs sharing an operation name a call is to: the SDK of its receiver (`x`
/// in `x.op(`, or on the line before `.op(`) when the file declares `x: aws_sdk_y::Client`
/// (a field or a parameter, `&` allowed); else the only one of them the file names at all.
fn client_sdk<'a>(before: &str, code: &str, candidates: &[&'a Sdk]) -> Option<&'a Sdk> {
    let receiver = Regex::new(r"(\w+)\s*$").unwrap().captures(before);
    if let Some(receiver) = receiver {
        let declared = format!(r"\b{}\s*:\s*&?\s*(aws_sdk_\w+)::Client\b", &receiver[1]);
        if let Some(declared) = Regex::new(&declared).unwrap().captures(code) {
            return candidates.iter().find(|s| s.ident == declared[1]).copied();
        }
    }
    match candidates
        .iter()
        .filter(|s| code.contains(&s.ident))
        .collect::<Vec<_>>()[..]
    {
        [sdk] => Some(*sdk),
        _ => None,
    }
}

/// A translated function, its crate and its role.
struct Function {
    id: &'static str,
    crate_dir: PathBuf,
    role: &'static str,
    sdks: Vec<Sdk>,
}

fn functions() -> Vec<Function> {
    let mut functions = Vec::new();
    for (id, function) in resources() {
        if function["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has no Metadata.BuildProperties.Binary"));
        let package = package_with_bin(binary);
        let crate_dir = manifest_dir(package);
        assert!(
            crate_dir.starts_with(root().join("functions")),
            "{id} builds {binary} from {}, not a crate under functions/",
            crate_dir.display()
        );
        functions.push(Function {
            id: id.as_str(),
            crate_dir,
            role: target(&function["Properties"]["Role"])
                .unwrap_or_else(|| panic!("{id}'s Role is not a role of the template")),
            sdks: sdk_dependencies(package),
        });
    }
    functions.sort_by_key(|f| f.id);
    let ids: Vec<&str> = functions.iter().map(|f| f.id).collect();
    assert_eq!(ids, FUNCTIONS, "the template's functions");
    functions
}

#[test]
fn every_function_role_grants_exactly_what_its_code_calls() {
    let mut mismatches = Vec::new();
    for function in functions() {
        let called = code_actions(&function.crate_dir, &function.sdks);
        let grants = role_grants(function.role);
        let granted: BTreeSet<&str> = grants.iter().map(|g| g.action.as_str()).collect();
        let by_lambda = destination_actions(function.id);
        let crate_dir = function.crate_dir.strip_prefix(root()).unwrap().display();
        eprintln!(
            "{} ({crate_dir}, role {}): calls {:?}; Lambda delivers with {:?}",
            function.id,
            function.role,
            called.keys().collect::<Vec<_>>(),
            by_lambda.keys().collect::<Vec<_>>()
        );

        let mut problems = Vec::new();
        for (action, at) in &called {
            if !granted.contains(action.as_str()) {
                problems.push(format!(
                    "  called but not granted: {action} ({})",
                    at.join(", ")
                ));
            }
        }
        for action in &granted {
            if !called.contains_key(*action) && !by_lambda.contains_key(*action) {
                let sources: BTreeSet<&str> = grants
                    .iter()
                    .filter(|g| g.action == *action)
                    .map(|g| g.source.as_str())
                    .collect();
                problems.push(format!(
                    "  granted but never called: {action} ({})",
                    sources.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for (action, destination) in &by_lambda {
            let on_destination = grants
                .iter()
                .any(|g| g.action == *action && g.resources == [destination.clone()]);
            if !on_destination {
                problems.push(format!(
                    "  Lambda cannot deliver: no {action} on exactly {destination}"
                ));
            }
        }
        if !problems.is_empty() {
            mismatches.push(format!(
                "{} ({crate_dir}, role {}):\n{}",
                function.id,
                function.role,
                problems.join("\n")
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "roles and code disagree:\n{}",
        mismatches.join("\n")
    );
}

/// The scan attributes a call to the crate making it: calls in the shared crate would belong to
/// every function using the helper, so there must be none.
#[test]
fn the_shared_crate_calls_no_aws_operation() {
    let shared = cargo_metadata()["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| package(id.as_str().unwrap()))
        .find(|p| p["name"] == "certship-shared")
        .expect("certship-shared in the workspace");
    let called = code_actions(&manifest_dir(shared), &sdk_dependencies(shared));
    assert!(called.is_empty(), "certship-shared calls {called:?}");
}

#[test]
fn every_grant_names_its_resources_unless_aws_allows_only_star() {
    let mut problems = Vec::new();
    let mut used_on_star = BTreeSet::new();
    for (id, role) in resources() {
        if role["Type"] != "AWS::IAM::Role" {
            continue;
        }
        for grant in role_grants(id) {
            let on_star = grant.resources.iter().any(|r| r == "*");
            if grant.resources.is_empty() {
                problems.push(format!(
                    "{}: {} has no Resource",
                    grant.source, grant.action
                ));
            } else if on_star {
                match ONLY_ON_STAR.iter().find(|(a, _)| *a == grant.action) {
                    Some((action, _)) => {
                        used_on_star.insert(*action);
                    }
                    None => problems.push(format!(
                        "{}: {} on \"*\" (name its resources, or add it to ONLY_ON_STAR with \
                         AWS's reason)",
                        grant.source, grant.action
                    )),
                }
            }
        }
    }
    for (action, reason) in ONLY_ON_STAR {
        if !used_on_star.contains(action) {
            problems.push(format!(
                "ONLY_ON_STAR lists {action} ({reason}), which no role grants on \"*\""
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The function a `lambda:InvokeFunction` resource names: its `Fn::GetAtt [F, Arn]`, or the
/// ARN pattern SAM's LambdaInvokePolicy writes, `Fn::Sub [".../function:${name}*", {name: Ref F}]`.
fn invoked_function(resource: &Value) -> Option<&str> {
    if let Some(id) = target(resource).filter(|_| resource.get("Fn::GetAtt").is_some()) {
        return Some(id);
    }
    let [pattern, variables] = resource.get("Fn::Sub")?.as_array()?.as_slice() else {
        return None;
    };
    let pattern = pattern.as_str()?;
    let tail = &pattern[pattern.find(":function:${")? + ":function:${".len()..];
    let (variable, rest) = tail.split_once('}')?;
    ["", "*", ":*"]
        .contains(&rest)
        .then(|| target(&variables[variable]))
        .flatten()
        .filter(|_| variables[variable].get("Ref").is_some())
}

/// The Task states of an ASL `States` object, through Parallel branches and Map processors.
fn task_resources(states: &Value, out: &mut Vec<(String, String)>) {
    for (name, state) in states.as_object().expect("ASL States") {
        match state["Type"].as_str() {
            // The Lambda service integration (`arn:aws:states:::lambda:invoke`, with or without
            // `.waitForTaskToken`) names its function in `Parameters.FunctionName`.
            Some("Task") => {
                let resource = state["Resource"].as_str().expect("a Task Resource");
                let function = if resource.starts_with("arn:aws:states:::lambda:invoke") {
                    state["Parameters"]["FunctionName"]
                        .as_str()
                        .expect("a lambda:invoke Task's FunctionName")
                } else {
                    resource
                };
                out.push((name.clone(), function.into()));
            }
            Some("Parallel") => {
                for branch in state["Branches"].as_array().unwrap() {
                    task_resources(&branch["States"], out);
                }
            }
            Some("Map") => {
                let processor = if state["ItemProcessor"].is_null() {
                    &state["Iterator"]
                } else {
                    &state["ItemProcessor"]
                };
                task_resources(&processor["States"], out);
            }
            _ => {}
        }
    }
}

#[test]
fn the_state_machine_role_invokes_exactly_the_functions_its_tasks_call() {
    let machines: Vec<(&String, &Value)> = resources()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::StepFunctions::StateMachine")
        .collect();
    // The deployment and the ACME issuance.
    assert_eq!(machines.len(), 2, "state machines: {machines:?}");
    for (id, machine) in machines {
        invokes_exactly_its_tasks_functions(id, machine);
    }
}

fn invokes_exactly_its_tasks_functions(id: &str, machine: &Value) {
    let properties = &machine["Properties"];

    // The definition SAM wrote: a Fn::Join of lines, with `${...}` substitutions.
    let definition = match &properties["DefinitionString"] {
        Value::String(text) => text.clone(),
        joined => {
            let parts = joined["Fn::Join"].as_array().expect("DefinitionString");
            let lines: Vec<&str> = parts[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().expect("a literal definition line"))
                .collect();
            lines.join(parts[0].as_str().unwrap())
        }
    };
    let asl: Value = serde_json::from_str(&definition).expect("the definition is JSON");
    let mut tasks = Vec::new();
    task_resources(&asl["States"], &mut tasks);
    assert!(!tasks.is_empty(), "{id} has no Task");
    let mut called = BTreeSet::new();
    for (state, task_resource) in &tasks {
        let name = task_resource
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or_else(|| panic!("Task {state:?} calls {task_resource}, not a function"));
        let arn = &properties["DefinitionSubstitutions"][name];
        let function = target(arn)
            .filter(|_| arn.get("Fn::GetAtt").is_some())
            .unwrap_or_else(|| panic!("Task {state:?}: ${{{name}}} is {arn}, not a GetAtt Arn"));
        let kind = resources().get(function).map(|f| &f["Type"]);
        assert_eq!(
            kind,
            Some(&Value::from("AWS::Lambda::Function")),
            "Task {state:?} calls {function}, which is no function of the translated template"
        );
        called.insert(function.to_string());
    }

    let role = target(&properties["RoleArn"]).expect("the state machine's role");
    let mut invokable = BTreeSet::new();
    for grant in role_grants(role) {
        if grant.action != "lambda:InvokeFunction" {
            continue;
        }
        for resource in &grant.resources {
            let function = invoked_function(resource).unwrap_or_else(|| {
                panic!(
                    "{}: lambda:InvokeFunction on {resource}, not one function",
                    grant.source
                )
            });
            invokable.insert(function.to_string());
        }
    }
    eprintln!("{id}: Tasks call {called:?}; role {role} may invoke {invokable:?}");
    assert_eq!(invokable, called, "functions {role} may invoke vs. Tasks");
}
