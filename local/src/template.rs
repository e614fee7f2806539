//! What the local cloud reads from the SAM template beyond `certship_stack`'s readers: a
//! DynamoDB table by logical id (the evidence table) and a function's S3 event (the
//! notification that feeds record-host-evidence), so the local cloud provisions what the stack
//! declares and cannot drift from it.

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use certship_stack::Template;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attribute {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyElement {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableProperties {
    billing_mode: String,
    attribute_definitions: Vec<Attribute>,
    key_schema: Vec<KeyElement>,
    #[serde(default)]
    global_secondary_indexes: Vec<serde_json::Value>,
}

/// The long-form JSON of resource `logical_id`'s properties, which must be of type `kind`.
fn properties<T: serde::de::DeserializeOwned>(
    template: &Template,
    logical_id: &str,
    kind: &str,
) -> Result<T> {
    let properties = certship_stack::intrinsics::long_form(template.properties(logical_id, kind)?)?;
    serde_json::from_value(properties)
        .with_context(|| format!("reading the properties of {logical_id}"))
}

/// CreateTable for table `logical_id` as the template declares its keys, attributes and billing
/// mode, under `table_name` (the stack lets CloudFormation name it).
pub fn create_table(
    template: &Template,
    dynamodb: &aws_sdk_dynamodb::Client,
    logical_id: &str,
    table_name: &str,
) -> Result<CreateTableFluentBuilder> {
    let table: TableProperties = properties(template, logical_id, "AWS::DynamoDB::Table")?;
    if !table.global_secondary_indexes.is_empty() {
        bail!("{logical_id}: indexes are not read here (certship_stack reads the mapping table's)");
    }
    let mut create = dynamodb
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::from(table.billing_mode.as_str()));
    for attribute in &table.attribute_definitions {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&attribute.attribute_name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                .build()?,
        );
    }
    for element in &table.key_schema {
        create = create.key_schema(
            KeySchemaElement::builder()
                .attribute_name(&element.attribute_name)
                .key_type(KeyType::from(element.key_type.as_str()))
                .build()?,
        );
    }
    Ok(create)
}

/// A SAM `Type: S3` event of a function: the bucket it watches, the events and the key filter
/// that SAM turns into the bucket's notification configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Event {
    /// The logical id of the bucket (`Bucket: !Ref <id>`).
    pub bucket: String,
    pub events: Vec<String>,
    /// `Filter.S3Key.Rules`: (`prefix` | `suffix`, value).
    pub key_rules: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionProperties {
    #[serde(default)]
    events: BTreeMap<String, SamEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SamEvent {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3EventProperties {
    bucket: BucketRef,
    events: OneOrMany,
    #[serde(default)]
    filter: Option<S3Filter>,
}

#[derive(Debug, Deserialize)]
struct BucketRef {
    #[serde(rename = "Ref")]
    logical_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct S3Filter {
    #[serde(rename = "S3Key")]
    s3_key: S3KeyFilter,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3KeyFilter {
    rules: Vec<FilterRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FilterRule {
    name: String,
    value: String,
}

/// The one S3 event of function `logical_id`.
pub fn s3_event(template: &Template, logical_id: &str) -> Result<S3Event> {
    let function: FunctionProperties =
        properties(template, logical_id, "AWS::Serverless::Function")?;
    let mut events = function.events.into_values().filter(|e| e.kind == "S3");
    let event = events
        .next()
        .with_context(|| format!("{logical_id} has no S3 event"))?;
    if events.next().is_some() {
        bail!("{logical_id} has more than one S3 event");
    }
    let properties: S3EventProperties = serde_json::from_value(event.properties)
        .with_context(|| format!("{logical_id}'s S3 event (Bucket must be a !Ref)"))?;
    Ok(S3Event {
        bucket: properties.bucket.logical_id,
        events: match properties.events {
            OneOrMany::One(event) => vec![event],
            OneOrMany::Many(events) => events,
        },
        key_rules: properties
            .filter
            .map(|f| {
                f.s3_key
                    .rules
                    .into_iter()
                    .map(|r| (r.name, r.value))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - { AttributeName: MappingId, AttributeType: S }
        - { AttributeName: InstanceId, AttributeType: S }
      KeySchema:
        - { AttributeName: MappingId, KeyType: HASH }
        - { AttributeName: InstanceId, KeyType: RANGE }
  Bucket:
    Type: AWS::S3::Bucket
  Function:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Output:
          Type: S3
          Properties:
            Bucket: !Ref Bucket
            Events: s3:ObjectCreated:*
            Filter:
              S3Key:
                Rules:
                  - Name: suffix
                    Value: /stdout
"#;

    fn dynamodb() -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
                .build(),
        )
    }

    #[test]
    fn a_table_and_an_s3_event_are_read_as_declared() {
        let template = Template::parse(TEMPLATE).unwrap();
        let create = create_table(&template, &dynamodb(), "Table", "t").unwrap();
        let input = create.as_input();
        let keys: Vec<(&str, &KeyType)> = input
            .get_key_schema()
            .as_deref()
            .unwrap()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type()))
            .collect();
        assert_eq!(
            keys,
            [
                ("MappingId", &KeyType::Hash),
                ("InstanceId", &KeyType::Range)
            ]
        );
        assert_eq!(input.get_billing_mode(), &Some(BillingMode::PayPerRequest));

        let event = s3_event(&template, "Function").unwrap();
        assert_eq!(
            event,
            S3Event {
                bucket: "Bucket".into(),
                events: vec!["s3:ObjectCreated:*".into()],
                key_rules: vec![("suffix".into(), "/stdout".into())],
            }
        );
        assert!(create_table(&template, &dynamodb(), "Bucket", "t").is_err());
        assert!(s3_event(&template, "Table").is_err());
    }

    #[test]
    fn the_projects_template_declares_what_the_local_cloud_provisions() {
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = Template::load(&project).unwrap();
        let event = s3_event(&template, crate::provision::RECORD_HOST_EVIDENCE_FUNCTION).unwrap();
        assert_eq!(event.bucket, crate::provision::OUTPUT_BUCKET);
        // the agent's stdout objects, and only those, reach record-host-evidence
        assert!(
            event
                .events
                .iter()
                .any(|e| e.starts_with("s3:ObjectCreated"))
        );
        assert_eq!(
            event.key_rules,
            [("suffix".to_string(), "/stdout".to_string())]
        );
        create_table(
            &template,
            &dynamodb(),
            crate::provision::EVIDENCE_TABLE,
            "certship-evidence",
        )
        .unwrap();
    }
}
