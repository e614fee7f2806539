//! The DynamoDB mapping record: which certificate goes to which tag target, under which name,
//! and how its last deployment went. It never holds secret material.

use crate::CertshipError;
use crate::naming::{certificate_arn_cert_name, tag_key_value};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

/// The variable naming the mapping table. Shared: dispatch-install, check-install-status and
/// renewal-trigger all read it, and the template sets it on each of them.
pub const TABLE_NAME_VAR: &str = "TABLE_NAME";

/// Attribute and index names, seed-compatible.
pub mod attr {
    pub const PARTITION_KEY: &str = "TagKeyValue";
    pub const SORT_KEY: &str = "CertificateArn#CertName";
    pub const CERTIFICATE_ARN: &str = "CertificateArn";
    pub const CERT_NAME: &str = "CertName";
    pub const TARGET_TAG_KEY: &str = "TargetTagKey";
    pub const TARGET_TAG_VALUE: &str = "TargetTagValue";
    pub const RELOAD_SERVICE: &str = "ReloadService";
    pub const SECRET_ARN: &str = "SecretArn";
    pub const SERIAL: &str = "Serial";
    pub const CERT_EXPIRY_DATE: &str = "CertExpiryDate";
    pub const LAST_EXPORTED_DATE: &str = "LastExportedDate";
    pub const LAST_DEPLOYMENT: &str = "LastDeployment";
    /// The mapping's State Manager association (its desired state).
    pub const ASSOCIATION_ID: &str = "AssociationId";
    /// The secret version the association currently installs.
    pub const SECRET_VERSION_ID: &str = "SecretVersionId";
    /// On a name claim item: the certificate that holds the CertName on the target.
    pub const CLAIMED_BY: &str = "ClaimedBy";
    /// The global secondary index renewals query (partition `CertificateArn`).
    pub const BY_CERTIFICATE_ARN: &str = "ByCertificateArn";
}

/// How a deployment ended: `LastDeployment.Status` on the mapping, and the deployment event's
/// `Outcome`. Stored and sent as the strings [`as_str`](Self::as_str) gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LastDeploymentStatus {
    Success,
    Failed,
    NoTargets,
    InstallTimedOut,
    /// A status this code does not know (a newer writer's), kept as it was stored.
    Other(String),
}

impl LastDeploymentStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::NoTargets => "NoTargets",
            Self::InstallTimedOut => "InstallTimedOut",
            Self::Other(status) => status,
        }
    }

    /// Reads a stored status; one this code does not know is [`Other`](Self::Other).
    pub fn parse(status: &str) -> Self {
        match status {
            "Success" => Self::Success,
            "Failed" => Self::Failed,
            "NoTargets" => Self::NoTargets,
            "InstallTimedOut" => Self::InstallTimedOut,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for LastDeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LastDeploymentStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LastDeploymentStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(deserializer)?))
    }
}

/// How the last deployment of a mapping ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDeployment {
    pub execution_arn: Option<String>,
    pub status: LastDeploymentStatus,
    pub succeeded: u32,
    pub failed: u32,
    pub finished_at: String,
}

/// One item of the mapping table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub certificate_arn: String,
    pub cert_name: String,
    pub target_tag_key: String,
    pub target_tag_value: String,
    pub reload_service: Option<String>,
    pub secret_arn: Option<String>,
    pub serial: Option<String>,
    pub cert_expiry_date: Option<String>,
    pub last_exported_date: Option<String>,
    pub association_id: Option<String>,
    pub secret_version_id: Option<String>,
    pub last_deployment: Option<LastDeployment>,
}

/// Sort-key prefix of a name claim. A claim item shares the mapping's partition
/// (`<key>#<value>`) and is keyed by the CertName alone, so one conditional write lets exactly
/// one certificate hold a name on a target. A mapping's sort key starts with `arn:`, never this.
pub const CLAIM_PREFIX: &str = "CertName#";

/// The primary key of the claim of `cert_name` on the target `tag_key=tag_value`.
pub fn claim_key(
    tag_key: &str,
    tag_value: &str,
    cert_name: &str,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            attr::PARTITION_KEY.to_string(),
            s(tag_key_value(tag_key, tag_value)),
        ),
        (
            attr::SORT_KEY.to_string(),
            s(format!("{CLAIM_PREFIX}{cert_name}")),
        ),
    ])
}

/// Whether a table item is a name claim rather than a mapping (readers of the partition skip it).
pub fn is_claim(item: &HashMap<String, AttributeValue>) -> bool {
    item.get(attr::SORT_KEY)
        .and_then(|v| v.as_s().ok())
        .is_some_and(|k| k.starts_with(CLAIM_PREFIX))
}

/// The primary key of a mapping.
pub fn key(
    tag_key: &str,
    tag_value: &str,
    certificate_arn: &str,
    cert_name: &str,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            attr::PARTITION_KEY.to_string(),
            s(tag_key_value(tag_key, tag_value)),
        ),
        (
            attr::SORT_KEY.to_string(),
            s(certificate_arn_cert_name(certificate_arn, cert_name)),
        ),
    ])
}

/// The primary key of the mapping a deployment request writes.
pub fn request_key(request: &crate::DeploymentRequest) -> HashMap<String, AttributeValue> {
    key(
        &request.target_tag_key,
        &request.target_tag_value,
        &request.certificate_arn,
        &request.cert_name,
    )
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u32) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_s(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> u32 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl LastDeployment {
    pub fn to_attribute(&self) -> AttributeValue {
        let mut m = HashMap::from([
            ("Status".to_string(), s(self.status.as_str())),
            ("Succeeded".to_string(), n(self.succeeded)),
            ("Failed".to_string(), n(self.failed)),
            ("FinishedAt".to_string(), s(&self.finished_at)),
        ]);
        if let Some(arn) = &self.execution_arn {
            m.insert("ExecutionArn".to_string(), s(arn));
        }
        AttributeValue::M(m)
    }

    fn from_attribute(value: &AttributeValue) -> Option<Self> {
        let m = value.as_m().ok()?;
        Some(Self {
            execution_arn: get_s(m, "ExecutionArn"),
            status: LastDeploymentStatus::parse(&get_s(m, "Status")?),
            succeeded: get_n(m, "Succeeded"),
            failed: get_n(m, "Failed"),
            finished_at: get_s(m, "FinishedAt").unwrap_or_default(),
        })
    }
}

impl Mapping {
    /// The whole item, keys included.
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let mut item = key(
            &self.target_tag_key,
            &self.target_tag_value,
            &self.certificate_arn,
            &self.cert_name,
        );
        item.insert(attr::CERTIFICATE_ARN.into(), s(&self.certificate_arn));
        item.insert(attr::CERT_NAME.into(), s(&self.cert_name));
        item.insert(attr::TARGET_TAG_KEY.into(), s(&self.target_tag_key));
        item.insert(attr::TARGET_TAG_VALUE.into(), s(&self.target_tag_value));
        let optional = [
            (attr::RELOAD_SERVICE, &self.reload_service),
            (attr::SECRET_ARN, &self.secret_arn),
            (attr::SERIAL, &self.serial),
            (attr::CERT_EXPIRY_DATE, &self.cert_expiry_date),
            (attr::LAST_EXPORTED_DATE, &self.last_exported_date),
            (attr::ASSOCIATION_ID, &self.association_id),
            (attr::SECRET_VERSION_ID, &self.secret_version_id),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        if let Some(last) = &self.last_deployment {
            item.insert(attr::LAST_DEPLOYMENT.into(), last.to_attribute());
        }
        item
    }

    /// Reads an item (from the table or the `ByCertificateArn` index).
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, CertshipError> {
        let required = |name: &str| {
            get_s(item, name).ok_or_else(|| {
                CertshipError::Service(format!("mapping item without a string {name}"))
            })
        };
        Ok(Self {
            certificate_arn: required(attr::CERTIFICATE_ARN)?,
            cert_name: required(attr::CERT_NAME)?,
            target_tag_key: required(attr::TARGET_TAG_KEY)?,
            target_tag_value: required(attr::TARGET_TAG_VALUE)?,
            reload_service: get_s(item, attr::RELOAD_SERVICE).filter(|r| !r.is_empty()),
            secret_arn: get_s(item, attr::SECRET_ARN),
            serial: get_s(item, attr::SERIAL),
            cert_expiry_date: get_s(item, attr::CERT_EXPIRY_DATE),
            last_exported_date: get_s(item, attr::LAST_EXPORTED_DATE),
            association_id: get_s(item, attr::ASSOCIATION_ID),
            secret_version_id: get_s(item, attr::SECRET_VERSION_ID),
            last_deployment: item
                .get(attr::LAST_DEPLOYMENT)
                .and_then(LastDeployment::from_attribute),
        })
    }

    /// The workflow input that redeploys this mapping.
    pub fn to_request(&self, trigger: crate::Trigger) -> crate::DeploymentRequest {
        crate::DeploymentRequest {
            certificate_arn: self.certificate_arn.clone(),
            cert_name: self.cert_name.clone(),
            target_tag_key: self.target_tag_key.clone(),
            target_tag_value: self.target_tag_value.clone(),
            reload_service: self.reload_service.clone(),
            trigger,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_round_trips_through_an_item_with_seed_keys() {
        let mapping = Mapping {
            certificate_arn: "arn:aws:acm:us-east-1:123456789012:certificate/abc".into(),
            cert_name: "web".into(),
            target_tag_key: "env".into(),
            target_tag_value: "dev".into(),
            reload_service: Some("nginx".into()),
            secret_arn: Some(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:certship/web-x".into(),
            ),
            serial: Some("0a:1b".into()),
            cert_expiry_date: Some("2027-01-01T00:00:00Z".into()),
            last_exported_date: Some("2026-01-01T00:00:00Z".into()),
            association_id: Some("8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a".into()),
            secret_version_id: Some("v-1".into()),
            last_deployment: Some(LastDeployment {
                execution_arn: Some("arn:aws:states:us-east-1:123456789012:execution:m:e".into()),
                status: LastDeploymentStatus::Success,
                succeeded: 2,
                failed: 0,
                finished_at: "2026-01-01T00:01:00Z".into(),
            }),
        };
        let item = mapping.to_item();
        assert_eq!(item[attr::PARTITION_KEY].as_s().unwrap(), "env#dev");
        assert_eq!(
            item[attr::SORT_KEY].as_s().unwrap(),
            "arn:aws:acm:us-east-1:123456789012:certificate/abc#web"
        );
        assert_eq!(Mapping::from_item(&item).unwrap(), mapping);
    }

    #[test]
    fn a_claim_shares_the_partition_and_never_looks_like_a_mapping() {
        let claim = claim_key("env", "dev", "web");
        assert_eq!(
            claim[attr::PARTITION_KEY],
            key("env", "dev", "arn:aws:acm:x", "web")[attr::PARTITION_KEY]
        );
        assert!(is_claim(&claim));
        assert!(!is_claim(&key("env", "dev", "arn:aws:acm:x", "web")));
    }

    #[test]
    fn an_item_without_required_attributes_is_an_error() {
        let mut item = key("env", "dev", "arn", "web");
        item.insert(attr::CERTIFICATE_ARN.into(), s("arn"));
        let err = Mapping::from_item(&item).unwrap_err();
        assert!(err.to_string().contains("CertName"), "{err}");
    }

    #[test]
    fn last_deployment_statuses_round_trip_the_stored_strings() {
        for (status, stored) in [
            (LastDeploymentStatus::Success, "Success"),
            (LastDeploymentStatus::Failed, "Failed"),
            (LastDeploymentStatus::NoTargets, "NoTargets"),
            (LastDeploymentStatus::InstallTimedOut, "InstallTimedOut"),
            (LastDeploymentStatus::Other("Deferred".into()), "Deferred"),
        ] {
            assert_eq!(status.as_str(), stored);
            assert_eq!(status.to_string(), stored);
            assert_eq!(LastDeploymentStatus::parse(stored), status);
            assert_eq!(serde_json::to_value(&status).unwrap(), stored);
            assert_eq!(
                serde_json::from_value::<LastDeploymentStatus>(stored.into()).unwrap(),
                status
            );
            let last = LastDeployment {
                execution_arn: None,
                status: status.clone(),
                succeeded: 1,
                failed: 0,
                finished_at: "2026-01-01T00:01:00Z".into(),
            };
            let attribute = last.to_attribute();
            assert_eq!(attribute.as_m().unwrap()["Status"].as_s().unwrap(), stored);
            assert_eq!(LastDeployment::from_attribute(&attribute), Some(last));
        }
    }
}
