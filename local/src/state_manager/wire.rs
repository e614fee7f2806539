//! State Manager's JSON on the wire: the Create/UpdateAssociation request, an association
//! version's definition, and the answers (`AssociationDescription`, `Association`,
//! `AssociationVersionInfo`, `AssociationExecution`, `AssociationExecutionTarget`) with the
//! field names and types of the SSM API Reference, which aws-sdk-ssm deserializes; timestamps
//! are epoch seconds, as the JSON protocol sends them.

use crate::run_command::SsmError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A target, `tag:<key>` or `InstanceIds` with its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Target {
    pub(super) key: String,
    #[serde(default)]
    pub(super) values: Vec<String>,
}

/// `InstanceAssociationOutputLocation.S3Location`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct S3Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) output_s3_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) output_s3_bucket_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) output_s3_key_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct OutputLocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) s3_location: Option<S3Location>,
}

/// What one association version holds: every field of Create/UpdateAssociation that the local
/// cloud serves. `None` is a field the request left out, which UpdateAssociation stores as null
/// ("the system removes all optional parameters from the request and overwrites the association
/// with null values for those parameters", SSM API Reference, UpdateAssociation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Definition {
    /// The document; the one field an association cannot be without.
    #[serde(default)]
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) document_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) parameters: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) targets: Option<Vec<Target>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) schedule_expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) output_location: Option<OutputLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) association_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_errors: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_concurrency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) compliance_severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sync_compliance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) apply_only_at_cron_interval: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) association_dispatch_assume_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) schedule_offset: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) duration: Option<i32>,
}

impl Definition {
    /// `ApplyOnlyAtCronInterval`, false when left out.
    pub(super) fn apply_only_at_cron_interval(&self) -> bool {
        self.apply_only_at_cron_interval.unwrap_or(false)
    }

    /// The output bucket and key prefix, when the association has an S3 output location.
    pub(super) fn output(&self) -> Option<(&str, &str)> {
        let s3 = self.output_location.as_ref()?.s3_location.as_ref()?;
        Some((
            s3.output_s3_bucket_name.as_deref()?,
            s3.output_s3_key_prefix.as_deref().unwrap_or(""),
        ))
    }
}

/// The fields of Create/UpdateAssociation besides the definition.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AssociationRequest {
    #[serde(flatten)]
    pub(super) definition: Definition,
    pub(super) association_id: Option<String>,
    pub(super) association_version: Option<String>,
    /// Fields of the API that the local cloud does not serve: refused rather than ignored.
    pub(super) instance_id: Option<String>,
    pub(super) target_maps: Option<serde_json::Value>,
    pub(super) target_locations: Option<serde_json::Value>,
    pub(super) calendar_names: Option<serde_json::Value>,
    pub(super) alarm_configuration: Option<serde_json::Value>,
    pub(super) automation_target_parameter_name: Option<String>,
    /// Accepted and not kept: nothing in the local cloud reads association tags.
    #[allow(dead_code)]
    pub(super) tags: Option<serde_json::Value>,
}

impl AssociationRequest {
    pub(super) fn parse(input: serde_json::Value) -> Result<Self, SsmError> {
        let request: Self = serde_json::from_value(input)
            .map_err(|e| SsmError::new("ValidationException", e.to_string()))?;
        let unserved = [
            ("InstanceId", request.instance_id.is_some()),
            ("TargetMaps", request.target_maps.is_some()),
            ("TargetLocations", request.target_locations.is_some()),
            ("CalendarNames", request.calendar_names.is_some()),
            ("AlarmConfiguration", request.alarm_configuration.is_some()),
            (
                "AutomationTargetParameterName",
                request.automation_target_parameter_name.is_some(),
            ),
        ];
        if let Some((field, _)) = unserved.iter().find(|(_, given)| *given) {
            return Err(SsmError::new(
                "ValidationException",
                format!("{field} is not served by the local cloud's State Manager"),
            ));
        }
        Ok(request)
    }
}

/// An association filter of ListAssociations (lower-case `key` and `value`, as the API has it).
#[derive(Debug, Deserialize)]
pub(super) struct AssociationFilter {
    pub(super) key: String,
    pub(super) value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListRequest {
    #[serde(default)]
    pub(super) association_filter_list: Vec<AssociationFilter>,
    #[serde(default)]
    pub(super) filters: Vec<ExecutionFilter>,
    pub(super) max_results: Option<i64>,
    pub(super) next_token: Option<String>,
    pub(super) association_id: Option<String>,
    pub(super) execution_id: Option<String>,
}

/// A filter of DescribeAssociationExecutions (`Key`, `Value`, `Type`) or of
/// DescribeAssociationExecutionTargets (`Key`, `Value`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ExecutionFilter {
    pub(super) key: String,
    pub(super) value: String,
    #[serde(default, rename = "Type")]
    pub(super) operator: Option<String>,
}

/// One page of `items` from `NextToken` on, at most `MaxResults` (`1..=max`, `default` when left
/// out), with the token of the next page.
pub(super) fn page<T: Clone>(
    items: &[T],
    max_results: Option<i64>,
    next_token: Option<&str>,
    default: usize,
    max: usize,
    min: usize,
) -> Result<(Vec<T>, Option<String>), SsmError> {
    let size = match max_results {
        None => default,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                SsmError::new(
                    "ValidationException",
                    format!("MaxResults must be between {min} and {max}"),
                )
            })?,
    };
    let start: usize = match next_token {
        None => 0,
        Some(token) => token
            .parse()
            .ok()
            .filter(|start| *start <= items.len())
            .ok_or_else(|| SsmError::new("InvalidNextToken", "the NextToken is not valid"))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}

/// The association List/Describe calls' answer: one page of `items` under `list_key` (50 at most
/// and by default, as the SSM API Reference gives for each), and `NextToken` when there is more.
pub(super) fn paged(
    list_key: &str,
    items: &[Value],
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> Result<Value, SsmError> {
    let (page, next) = page(items, max_results, next_token, 50, 50, 1)?;
    Ok(with_next_token(json!({ list_key: page }), next))
}

/// `response` with `NextToken` set when there is a next page.
pub(super) fn with_next_token(mut response: Value, next: Option<String>) -> Value {
    if let Some(next) = next {
        response["NextToken"] = json!(next);
    }
    response
}

/// A new id in SSM's association and execution id format (a UUID).
pub(super) fn new_id() -> String {
    crate::run_command::wire::new_command_id()
}

/// The run id the agent gives an association run, its start as `yyyy-MM-ddTHH-mm-ss.fffZ` UTC
/// (amazon-ssm-agent `agent/times/times.go`, `ToIsoDashUTC`).
pub(super) fn run_id(at: std::time::SystemTime) -> String {
    let millis = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let rfc3339 = certship_shared::time::rfc3339(at);
    // rfc3339 gives `yyyy-mm-ddThh:mm:ssZ`; the agent's form has dashes and milliseconds.
    format!("{}.{:03}Z", rfc3339[..19].replace(':', "-"), millis % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_tokens_and_bad_ones_are_refused() {
        let items: Vec<u32> = (0..7).collect();
        let (first, next) = page(&items, Some(3), None, 50, 50, 1).unwrap();
        assert_eq!((first, next.as_deref()), (vec![0, 1, 2], Some("3")));
        let (last, next) = page(&items, Some(5), Some("3"), 50, 50, 1).unwrap();
        assert_eq!((last, next), (vec![3, 4, 5, 6], None));
        assert_eq!(page(&items, None, None, 10, 50, 5).unwrap().0.len(), 7);
        assert_eq!(
            page(&items, Some(51), None, 10, 50, 5).unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            page(&items, Some(4), None, 10, 50, 5).unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            page(&items, None, Some("x"), 10, 50, 1).unwrap_err().code,
            "InvalidNextToken"
        );
    }

    #[test]
    fn run_ids_have_the_agents_shape() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_755_781_123);
        assert_eq!(run_id(at), "2026-11-27T05-03-01.123Z");
    }

    #[test]
    fn left_out_fields_stay_null_and_unserved_ones_are_refused() {
        let request = AssociationRequest::parse(serde_json::json!({
            "AssociationId": "x", "Name": "Doc",
            "Targets": [{"Key": "tag:env", "Values": ["dev"]}]
        }))
        .unwrap();
        assert_eq!(request.definition.name, "Doc");
        assert_eq!(request.definition.schedule_expression, None);
        let json = serde_json::to_value(&request.definition).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Name": "Doc", "Targets": [{"Key": "tag:env", "Values": ["dev"]}]})
        );
        let err = AssociationRequest::parse(serde_json::json!({"Name": "D", "TargetMaps": []}))
            .unwrap_err();
        assert!(err.message.contains("TargetMaps"), "{err:?}");
    }
}
