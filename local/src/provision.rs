//! Provisions the local cloud from the project's own files: the state machine's ASL, the install
//! document, and, from the SAM template itself, the mapping and evidence tables, the renewal
//! rule's pattern, the association output bucket and the S3 event that feeds
//! record-host-evidence.

use super::functions::Function;
use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use certship_stack::{EVIDENCE_TABLE, OUTPUT_BUCKET, RECORD_HOST_EVIDENCE_FUNCTION, Template};
use std::path::Path;

pub const TABLE_NAME: &str = "certship-mappings";
pub const DOCUMENT_NAME: &str = "Install-Certificate-Linux";
pub const STATE_MACHINE_NAME: &str = "certship-certificate-deployment";
/// The ACME issuance workflow's name in the local cloud.
pub const ACME_STATE_MACHINE_NAME: &str = "certship-acme-issuance";
/// The local rules are named `certship-<event name, lower case>` (`certship-acmrenewal`,
/// `certship-acmeissued`), one per `EventBridgeRule` event of renewal-trigger.
pub const RULE_NAME_PREFIX: &str = "certship-";
/// The registry of ACME certificates (`AcmeCertificateTable`).
pub const ACME_TABLE_NAME: &str = "certship-acme-certificates";
/// EventBridge in the emulator cannot invoke Lambda, so the rule's target is this queue, which
/// the local cloud drains into renewal-trigger.
pub const RENEWAL_QUEUE_NAME: &str = "certship-local-renewal-events";

/// The names the local cloud gives what convergence adds (in AWS, CloudFormation names them and
/// the functions read the names from their environment).
pub const EVIDENCE_TABLE_NAME: &str = "certship-evidence";
pub const OUTPUT_BUCKET_NAME: &str = "certship-association-output";
/// moto's S3 cannot invoke Lambda either: the bucket notifies this queue with the template's
/// events and filter, and the local cloud drains it into record-host-evidence.
pub const OUTPUT_QUEUE_NAME: &str = "certship-local-association-output-events";
/// The role State Manager dispatches the associations with (`AssociationDispatchRole`).
pub const DISPATCH_ROLE_NAME: &str = "certship-association-dispatch";

/// The ARN Step Functions gives the local cloud's state machine `name` in `region`.
pub fn state_machine_arn(region: &str, name: &str) -> String {
    format!(
        "arn:aws:states:{region}:{}:stateMachine:{name}",
        super::ACCOUNT_ID
    )
}

/// The dispatch role's ARN, as dispatch-install passes it (`ASSOCIATION_DISPATCH_ROLE_ARN`).
pub fn dispatch_role_arn() -> String {
    format!(
        "arn:aws:iam::{}:role/{DISPATCH_ROLE_NAME}",
        super::ACCOUNT_ID
    )
}

pub const ASL_PATH: &str = "statemachine/certificate-deployment.asl.json";
pub const ACME_ASL_PATH: &str = "statemachine/acme-issuance.asl.json";
pub use certship_stack::document::INSTALL_DOCUMENT_PATH as DOCUMENT_PATH;

/// What provisioning created.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub state_machine_arn: String,
    pub acme_state_machine_arn: String,
    pub renewal_queue_url: String,
    /// Where the output bucket's notifications go, for record-host-evidence.
    pub output_queue_url: String,
}

/// The ASL at `asl_path` with the function ARNs substituted, refusing any placeholder left over.
pub fn state_machine_definition(project: &Path, asl_path: &str, region: &str) -> Result<String> {
    let path = project.join(asl_path);
    let mut definition =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for function in Function::ALL {
        if let Some(key) = function.substitution() {
            definition = definition.replace(&format!("${{{key}}}"), &function.arn(region));
        }
    }
    if let Some(start) = definition.find("${") {
        let rest = &definition[start..];
        let end = rest.find('}').map_or(rest.len(), |i| i + 1);
        bail!(
            "{asl_path} uses {} which the local cloud does not define",
            &rest[..end]
        );
    }
    serde_json::from_str::<serde_json::Value>(&definition)
        .with_context(|| format!("{asl_path} is not valid JSON"))?;
    Ok(definition)
}

pub async fn provision(config: &SdkConfig, project: &Path, region: &str) -> Result<Provisioned> {
    let template = Template::load(project)?;
    template
        .create_mapping_table(&aws_sdk_dynamodb::Client::new(config), TABLE_NAME)?
        .send()
        .await
        .context("creating the mapping table")?;
    create_document(&aws_sdk_ssm::Client::new(config), project).await?;
    let state_machine_arn =
        create_state_machine(config, project, region, STATE_MACHINE_NAME, ASL_PATH).await?;
    let acme_state_machine_arn = create_state_machine(
        config,
        project,
        region,
        ACME_STATE_MACHINE_NAME,
        ACME_ASL_PATH,
    )
    .await?;
    let renewal_queue_url =
        create_renewal_rules(config, &template.renewal_rule_patterns()?).await?;
    template
        .create_table(
            &aws_sdk_dynamodb::Client::new(config),
            EVIDENCE_TABLE,
            EVIDENCE_TABLE_NAME,
        )?
        .send()
        .await
        .context("creating the evidence table")?;
    template
        .create_table(
            &aws_sdk_dynamodb::Client::new(config),
            certship_stack::ACME_TABLE,
            ACME_TABLE_NAME,
        )?
        .send()
        .await
        .context("creating the ACME certificate registry")?;
    let output_queue_url = create_output_bucket(config, &template, region).await?;
    Ok(Provisioned {
        state_machine_arn,
        acme_state_machine_arn,
        renewal_queue_url,
        output_queue_url,
    })
}

async fn create_state_machine(
    config: &SdkConfig,
    project: &Path,
    region: &str,
    name: &str,
    asl_path: &str,
) -> Result<String> {
    Ok(aws_sdk_sfn::Client::new(config)
        .create_state_machine()
        .name(name)
        .definition(state_machine_definition(project, asl_path, region)?)
        .role_arn(format!(
            "arn:aws:iam::{}:role/certship-state-machine",
            super::ACCOUNT_ID
        ))
        .send()
        .await
        .with_context(|| format!("creating the state machine {name}"))?
        .state_machine_arn)
}

/// The association output bucket, notifying a queue of what record-host-evidence's S3 event
/// selects (its events and key filter, read from the template). Returns the queue's URL.
async fn create_output_bucket(
    config: &SdkConfig,
    template: &Template,
    region: &str,
) -> Result<String> {
    use aws_sdk_s3::types::{
        BucketLocationConstraint, CreateBucketConfiguration, Event, FilterRule, FilterRuleName,
        NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration,
        S3KeyFilter,
    };
    template.properties(OUTPUT_BUCKET, "AWS::S3::Bucket")?;
    let event = template.s3_event(RECORD_HOST_EVIDENCE_FUNCTION)?;
    if event.bucket != OUTPUT_BUCKET {
        bail!(
            "{RECORD_HOST_EVIDENCE_FUNCTION}'s S3 event watches {}, not {OUTPUT_BUCKET}",
            event.bucket
        );
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    );
    let mut create = s3.create_bucket().bucket(OUTPUT_BUCKET_NAME);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    create.send().await.context("creating the output bucket")?;
    let (queue_url, queue_arn) = create_queue(config, OUTPUT_QUEUE_NAME).await?;
    let mut rules = Vec::new();
    for (name, value) in &event.key_rules {
        rules.push(
            FilterRule::builder()
                .name(FilterRuleName::from(name.as_str()))
                .value(value)
                .build(),
        );
    }
    let mut queue = QueueConfiguration::builder()
        .id(RECORD_HOST_EVIDENCE_FUNCTION)
        .queue_arn(queue_arn)
        .set_events(Some(
            event
                .events
                .iter()
                .map(|e| Event::from(e.as_str()))
                .collect(),
        ));
    if !rules.is_empty() {
        queue = queue.filter(
            NotificationConfigurationFilter::builder()
                .key(S3KeyFilter::builder().set_filter_rules(Some(rules)).build())
                .build(),
        );
    }
    s3.put_bucket_notification_configuration()
        .bucket(OUTPUT_BUCKET_NAME)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue.build()?)
                .build(),
        )
        .send()
        .await
        .context("notifying the output queue of the bucket's run output")?;
    // Saving the configuration put S3's `s3:TestEvent` on the queue; a Lambda destination never
    // receives one, so neither does record-host-evidence.
    aws_sdk_sqs::Client::new(config)
        .purge_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .context("emptying the output queue of S3's test event")?;
    Ok(queue_url)
}

/// A queue and its ARN.
async fn create_queue(config: &SdkConfig, name: &str) -> Result<(String, String)> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .with_context(|| format!("creating the queue {name}"))?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .with_context(|| format!("the queue {name} has no ARN"))?;
    Ok((queue_url, queue_arn))
}

async fn create_document(ssm: &aws_sdk_ssm::Client, project: &Path) -> Result<()> {
    let path = project.join(DOCUMENT_PATH);
    let content =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    ssm.create_document()
        .name(DOCUMENT_NAME)
        .content(content)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
        .document_type(aws_sdk_ssm::types::DocumentType::Command)
        .send()
        .await
        .context("creating the install document")?;
    Ok(())
}

/// One rule per renewal-trigger `EventBridgeRule` event (ACM's renewals, the ACME issuances),
/// all routed to the one queue the local cloud drains into renewal-trigger.
async fn create_renewal_rules(config: &SdkConfig, patterns: &[(String, String)]) -> Result<String> {
    let (queue_url, queue_arn) = create_queue(config, RENEWAL_QUEUE_NAME).await?;
    let events = aws_sdk_eventbridge::Client::new(config);
    for (event, pattern) in patterns {
        let rule = format!("{RULE_NAME_PREFIX}{}", event.to_ascii_lowercase());
        events
            .put_rule()
            .name(&rule)
            .event_pattern(pattern)
            .description(format!("renewal-trigger's {event} events"))
            .send()
            .await
            .with_context(|| format!("creating the rule {rule}"))?;
        events
            .put_targets()
            .rule(&rule)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("renewal-trigger")
                    .arn(&queue_arn)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("targeting the rule {rule}"))?;
    }
    Ok(queue_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_left_in_the_asl_are_refused() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("statemachine")).unwrap();
        let write = |text: &str| std::fs::write(project.path().join(ASL_PATH), text).unwrap();

        write(r#"{"States": {"A": {"Resource": "${DispatchInstallFunctionArn}"}}}"#);
        let definition = state_machine_definition(project.path(), ASL_PATH, "eu-west-1").unwrap();
        assert!(
            definition.contains(
                "arn:aws:lambda:eu-west-1:123456789012:function:certship-dispatch-install"
            )
        );

        write(r#"{"States": {"A": {"Resource": "${SomethingElse}"}}}"#);
        let err = state_machine_definition(project.path(), ASL_PATH, "eu-west-1").unwrap_err();
        assert!(err.to_string().contains("${SomethingElse}"), "{err}");
    }
}
