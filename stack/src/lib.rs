//! The SAM template as the one source of what the stack creates. The local cloud and the tests
//! build the mapping table and the renewal rule from `cloudformation/template.yaml` itself, so
//! what runs on a laptop is what runs in the account; the local API validates bodies with the
//! API's own request model.

pub mod intrinsics;

pub use intrinsics::StackValues;

pub mod document;
mod s3_event;

pub use s3_event::S3Event;

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde_norway::Value;
use std::path::Path;

/// Where the template lives, relative to the project root.
pub const TEMPLATE_PATH: &str = "cloudformation/template.yaml";
/// The logical id of the mapping table.
pub const MAPPING_TABLE: &str = "MappingTable";
/// The logical id of the per-host evidence table.
pub const EVIDENCE_TABLE: &str = "EvidenceTable";
/// The logical id of the bucket the hosts write their association runs' output to.
pub const OUTPUT_BUCKET: &str = "AssociationOutputBucket";
/// The logical id of the function that bucket's S3 event invokes.
pub const RECORD_HOST_EVIDENCE_FUNCTION: &str = "RecordHostEvidenceFunction";
/// The logical id of the function the ACM renewal rule invokes.
pub const RENEWAL_TRIGGER_FUNCTION: &str = "RenewalTriggerFunction";
/// renewal-trigger's event for ACM's renewals.
pub const ACM_RENEWAL_EVENT: &str = "AcmRenewal";
/// The logical id of the ACME certificate registry.
pub const ACME_TABLE: &str = "AcmeCertificateTable";
/// The logical id of the deployment API.
pub const API: &str = "CertshipApi";
/// The API's resource whose POST starts a deployment.
pub const API_RESOURCE: &str = "/export-cert";
/// The API's resource whose POST starts an ACME issuance.
pub const CERTIFICATES_RESOURCE: &str = "/certificates";

/// The parsed template. Short-form intrinsics (`!Ref`, `!GetAtt`, `!Sub`) stay as tagged values.
#[derive(Debug, Clone)]
pub struct Template {
    document: Value,
}

impl Template {
    /// Reads `cloudformation/template.yaml` under `project`.
    pub fn load(project: &Path) -> Result<Self> {
        let path = project.join(TEMPLATE_PATH);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("reading {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let document: Value = serde_norway::from_str(text).context("not YAML")?;
        if !document["Resources"].is_mapping() {
            bail!("the template has no Resources");
        }
        Ok(Self { document })
    }

    /// The whole document, for checks that walk it.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The `Properties` of resource `logical_id`, which must be of type `kind`.
    pub fn properties(&self, logical_id: &str, kind: &str) -> Result<&Value> {
        let resource = &self.document["Resources"][logical_id];
        if resource["Type"].as_str() != Some(kind) {
            bail!("the template has no {kind} named {logical_id}");
        }
        Ok(&resource["Properties"])
    }

    /// CreateTable for the mapping table (see [`Self::create_table`]).
    pub fn create_mapping_table(
        &self,
        dynamodb: &aws_sdk_dynamodb::Client,
        table_name: &str,
    ) -> Result<CreateTableFluentBuilder> {
        self.create_table(dynamodb, MAPPING_TABLE, table_name)
    }

    /// CreateTable for table `logical_id` exactly as the template declares its keys, attributes,
    /// indexes and billing mode, under `table_name` (the stack lets CloudFormation name it).
    pub fn create_table(
        &self,
        dynamodb: &aws_sdk_dynamodb::Client,
        logical_id: &str,
        table_name: &str,
    ) -> Result<CreateTableFluentBuilder> {
        let table = self.properties(logical_id, "AWS::DynamoDB::Table")?;
        let mut create = dynamodb
            .create_table()
            .table_name(table_name)
            .billing_mode(BillingMode::from(text(table, "BillingMode")?));
        for definition in list(table, "AttributeDefinitions")? {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(text(definition, "AttributeName")?)
                    .attribute_type(ScalarAttributeType::from(text(
                        definition,
                        "AttributeType",
                    )?))
                    .build()?,
            );
        }
        for element in key_schema(table)? {
            create = create.key_schema(element);
        }
        let no_indexes = Vec::new();
        let indexes = table["GlobalSecondaryIndexes"]
            .as_sequence()
            .unwrap_or(&no_indexes);
        for index in indexes {
            if index["ProvisionedThroughput"].is_mapping() {
                bail!("{logical_id}: provisioned indexes are not supported here");
            }
            let projection = &index["Projection"];
            let non_key_attributes = projection["NonKeyAttributes"].as_sequence().map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            });
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(text(index, "IndexName")?)
                    .set_key_schema(Some(key_schema(index)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(text(
                                projection,
                                "ProjectionType",
                            )?))
                            .set_non_key_attributes(non_key_attributes)
                            .build(),
                    )
                    .build()?,
            );
        }
        Ok(create)
    }

    /// The event pattern of ACM's renewal rule (renewal-trigger's `AcmRenewal` event), as the
    /// JSON EventBridge takes.
    pub fn renewal_rule_pattern(&self) -> Result<String> {
        self.renewal_rule_patterns()?
            .into_iter()
            .find(|(name, _)| name == ACM_RENEWAL_EVENT)
            .map(|(_, pattern)| pattern)
            .with_context(|| {
                format!(
                    "{RENEWAL_TRIGGER_FUNCTION} has no EventBridgeRule event {ACM_RENEWAL_EVENT}"
                )
            })
    }

    /// Every `EventBridgeRule` event of renewal-trigger (ACM's renewals, certship's ACME
    /// issuances), by event name, with its pattern as the JSON EventBridge takes.
    pub fn renewal_rule_patterns(&self) -> Result<Vec<(String, String)>> {
        let function = self.properties(RENEWAL_TRIGGER_FUNCTION, "AWS::Serverless::Function")?;
        let mut patterns = Vec::new();
        for (name, event) in function["Events"].as_mapping().into_iter().flatten() {
            if event["Type"] != "EventBridgeRule" {
                continue;
            }
            let name = name
                .as_str()
                .context("an event name that is not a string")?;
            let pattern: serde_json::Value = serde_json::to_value(&event["Properties"]["Pattern"])
                .with_context(|| format!("the {name} rule's Pattern"))?;
            if !pattern.is_object() {
                bail!("{RENEWAL_TRIGGER_FUNCTION}'s EventBridgeRule {name} has no Pattern");
            }
            patterns.push((name.to_string(), pattern.to_string()));
        }
        if patterns.is_empty() {
            bail!("{RENEWAL_TRIGGER_FUNCTION} has no EventBridgeRule event");
        }
        Ok(patterns)
    }

    /// The input the renewal schedule (renewal-trigger's `ScheduleV2` event) invokes the function
    /// with, placeholders and all: `{"Sweep": {"ScheduledTime": "<aws.scheduler.scheduled-time>"}}`.
    pub fn renewal_schedule_input(&self) -> Result<String> {
        let function = self.properties(RENEWAL_TRIGGER_FUNCTION, "AWS::Serverless::Function")?;
        function["Events"]
            .as_mapping()
            .into_iter()
            .flat_map(|events| events.values())
            .find(|event| event["Type"] == "ScheduleV2")
            .and_then(|event| event["Properties"]["Input"].as_str())
            .map(str::to_string)
            .with_context(|| {
                format!("{RENEWAL_TRIGGER_FUNCTION} has no ScheduleV2 event with an Input")
            })
    }
}

impl Template {
    /// The JSON Schema (draft 4) API Gateway validates `POST /export-cert` bodies with, as
    /// CloudFormation deploys it for `stack`: the schema the method's request body names in the
    /// API's OpenAPI definition, with its intrinsic functions resolved (the reload allowlist from
    /// `AllowedReloadServices`, the partition from `AWS::Partition`). Works on the SAM template
    /// (`AWS::Serverless::Api`) and on its translation (`AWS::ApiGateway::RestApi`) alike.
    pub fn request_model(&self, stack: &StackValues) -> Result<serde_json::Value> {
        self.request_model_at(API_RESOURCE, stack)
    }

    /// [`Template::request_model`] of the POST method at `resource` (`/export-cert`,
    /// `/certificates`).
    pub fn request_model_at(
        &self,
        resource: &str,
        stack: &StackValues,
    ) -> Result<serde_json::Value> {
        let template = intrinsics::long_form(&self.document)?;
        let api = &template["Resources"][API];
        let body = match api["Type"].as_str() {
            Some("AWS::Serverless::Api") => &api["Properties"]["DefinitionBody"],
            Some("AWS::ApiGateway::RestApi") => &api["Properties"]["Body"],
            _ => bail!("the template has no API named {API}"),
        };
        let post = &body["paths"][resource]["post"];
        let validator = post["x-amazon-apigateway-request-validator"]
            .as_str()
            .or_else(|| body["x-amazon-apigateway-request-validator"].as_str())
            .with_context(|| format!("POST {resource} names no request validator"))?;
        if body["x-amazon-apigateway-request-validators"][validator]["validateRequestBody"]
            != serde_json::Value::Bool(true)
        {
            bail!("POST {resource}'s validator {validator} does not validate the body");
        }
        let reference = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .with_context(|| format!("POST {resource} has no application/json schema"))?;
        let name = reference
            .strip_prefix("#/components/schemas/")
            .with_context(|| format!("{reference} is not a schema of the API's components"))?;
        let model = &body["components"]["schemas"][name];
        if !model.is_object() {
            bail!("the API has no schema {name}");
        }
        check_parameters(&template, stack)?;
        let mut model = intrinsics::Resolver::new(&template, stack)
            .resolve(model)
            .with_context(|| format!("the API's model {name}"))?;
        model["$schema"] = "http://json-schema.org/draft-04/schema#".into();
        Ok(model)
    }
}

/// CloudFormation refuses a parameter value its `AllowedPattern` does not match (the whole
/// value, Java regex syntax; the template's patterns mean the same in Rust's).
fn check_parameters(template: &serde_json::Value, stack: &StackValues) -> Result<()> {
    for (name, value) in &stack.parameters {
        let parameter = &template["Parameters"][name];
        if parameter.is_null() {
            bail!("{name} is not a parameter of the template");
        }
        if let Some(pattern) = parameter["AllowedPattern"].as_str() {
            let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
                .with_context(|| format!("{name}'s AllowedPattern"))?;
            if !pattern.is_match(value) {
                bail!("parameter {name} {value:?} does not match its AllowedPattern");
            }
        }
    }
    Ok(())
}

fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value[field]
        .as_str()
        .with_context(|| format!("{field} is not a plain string"))
}

fn list<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>> {
    value[field]
        .as_sequence()
        .with_context(|| format!("{field} is not a list"))
}

fn key_schema(value: &Value) -> Result<Vec<KeySchemaElement>> {
    list(value, "KeySchema")?
        .iter()
        .map(|element| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(element, "AttributeName")?)
                .key_type(KeyType::from(text(element, "KeyType")?))
                .build()?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use certship_shared::mapping::attr;

    fn template() -> Template {
        Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap()
    }

    fn dynamodb() -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
                .build(),
        )
    }

    fn keys(schema: &[KeySchemaElement]) -> Vec<(&str, &KeyType)> {
        schema
            .iter()
            .map(|k| (k.attribute_name(), k.key_type()))
            .collect()
    }

    #[test]
    fn the_evidence_table_has_the_keys_the_code_reads_and_writes() {
        use certship_shared::evidence::attr as evidence;
        let create = template()
            .create_table(&dynamodb(), EVIDENCE_TABLE, "certship-evidence")
            .unwrap();
        let input = create.as_input();
        assert_eq!(input.get_table_name().as_deref(), Some("certship-evidence"));
        assert_eq!(
            keys(input.get_key_schema().as_deref().unwrap()),
            [
                (evidence::MAPPING_ID, &KeyType::Hash),
                (evidence::INSTANCE_ID, &KeyType::Range)
            ]
        );
        assert!(input.get_global_secondary_indexes().is_none());
        assert!(
            template()
                .create_table(&dynamodb(), OUTPUT_BUCKET, "t")
                .is_err(),
            "a bucket is not a table"
        );
    }

    #[test]
    fn the_template_table_has_the_keys_and_index_the_code_reads_and_writes() {
        let create = template()
            .create_mapping_table(&dynamodb(), "certship-mappings")
            .unwrap();
        let input = create.as_input();
        assert_eq!(input.get_table_name().as_deref(), Some("certship-mappings"));
        assert_eq!(input.get_billing_mode(), &Some(BillingMode::PayPerRequest));
        assert_eq!(
            keys(input.get_key_schema().as_deref().unwrap()),
            [
                (attr::PARTITION_KEY, &KeyType::Hash),
                (attr::SORT_KEY, &KeyType::Range)
            ]
        );
        let indexes = input.get_global_secondary_indexes().as_deref().unwrap();
        assert_eq!(indexes.len(), 1);
        assert_eq!(indexes[0].index_name(), attr::BY_CERTIFICATE_ARN);
        assert_eq!(
            keys(indexes[0].key_schema()),
            [(attr::CERTIFICATE_ARN, &KeyType::Hash)]
        );
        assert_eq!(
            indexes[0].projection().and_then(|p| p.projection_type()),
            Some(&ProjectionType::All),
            "renewal-trigger reads whole mappings from the index"
        );
        let mut defined: Vec<_> = input
            .get_attribute_definitions()
            .as_deref()
            .unwrap()
            .iter()
            .map(|d| (d.attribute_name(), d.attribute_type().clone()))
            .collect();
        defined.sort();
        let mut expected = vec![
            (attr::CERTIFICATE_ARN, ScalarAttributeType::S),
            (attr::SORT_KEY, ScalarAttributeType::S),
            (attr::PARTITION_KEY, ScalarAttributeType::S),
        ];
        expected.sort();
        assert_eq!(defined, expected);
    }

    #[test]
    fn the_renewal_pattern_selects_acm_renewals_by_the_fields_the_event_carries() {
        let pattern: serde_json::Value =
            serde_json::from_str(&template().renewal_rule_pattern().unwrap()).unwrap();
        assert_eq!(pattern["source"], serde_json::json!(["aws.acm"]));
        assert_eq!(
            pattern["detail-type"],
            serde_json::json!(["ACM Certificate Available"])
        );
        assert_eq!(pattern["detail"]["Action"], serde_json::json!(["RENEWAL"]));
        assert!(
            pattern["detail"].get("Exportable").is_none(),
            "the real event carries Exported, not Exportable"
        );
    }

    #[test]
    fn a_template_without_the_table_or_the_rule_is_refused_by_name() {
        let template =
            Template::parse("Resources:\n  Other:\n    Type: AWS::SNS::Topic\n").unwrap();
        let error = template
            .create_mapping_table(&dynamodb(), "t")
            .unwrap_err()
            .to_string();
        assert!(error.contains("MappingTable"), "{error}");
        let error = template.renewal_rule_pattern().unwrap_err().to_string();
        assert!(error.contains("RenewalTriggerFunction"), "{error}");
        assert!(Template::parse("Outputs: {}").is_err());
    }
}
