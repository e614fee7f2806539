//! A function's SAM `Type: S3` event, which SAM turns into the bucket's notification
//! configuration: the local cloud gives its output bucket the same notification, so what reaches
//! record-host-evidence there is what the stack declares.

use crate::Template;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;

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

impl Template {
    /// The one S3 event of function `logical_id`.
    pub fn s3_event(&self, logical_id: &str) -> Result<S3Event> {
        let function: FunctionProperties = serde_json::from_value(crate::intrinsics::long_form(
            self.properties(logical_id, "AWS::Serverless::Function")?,
        )?)
        .with_context(|| format!("reading the properties of {logical_id}"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
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

    #[test]
    fn an_s3_event_is_read_as_declared() {
        let template = Template::parse(TEMPLATE).unwrap();
        assert_eq!(
            template.s3_event("Function").unwrap(),
            S3Event {
                bucket: "Bucket".into(),
                events: vec!["s3:ObjectCreated:*".into()],
                key_rules: vec![("suffix".into(), "/stdout".into())],
            }
        );
        assert!(template.s3_event("Bucket").is_err());
    }

    #[test]
    fn the_projects_output_bucket_sends_only_stdout_to_record_host_evidence() {
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = Template::load(&project).unwrap();
        let event = template
            .s3_event(crate::RECORD_HOST_EVIDENCE_FUNCTION)
            .unwrap();
        assert_eq!(event.bucket, crate::OUTPUT_BUCKET);
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
    }
}
