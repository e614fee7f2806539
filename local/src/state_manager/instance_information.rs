//! DescribeInstanceInformation from the simulated hosts: each is an EC2 instance with an agent,
//! `Online` while it answers and `ConnectionLost` while it is set `--simulate offline`.
//!
//! What AWS does (SSM API Reference, DescribeInstanceInformation): `Filters` of `tag:<key>`
//! (tag filters can't be combined with other filter types), `tag-key`, `InstanceIds`,
//! `PingStatus`, `PlatformTypes`, `ResourceType`, values 1 to 100 each, all ANDed; the legacy
//! `InstanceInformationFilterList` cannot be combined with `Filters`; `MaxResults` 5 to 50,
//! default 10, with `NextToken` paging.

use super::wire::{page, with_next_token};
use super::{SsmError, StateManager};
use crate::hosts::{HostInfo, Simulation};
use crate::run_command::wire::epoch;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::SystemTime;

/// The agent version the simulated hosts report.
const AGENT_VERSION: &str = "3.3.1142.0";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StringFilter {
    key: String,
    values: Vec<String>,
}

/// The legacy filter (`key`, `valueSet`).
#[derive(Debug, Deserialize)]
struct LegacyFilter {
    key: String,
    #[serde(rename = "valueSet")]
    value_set: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(default)]
    filters: Vec<StringFilter>,
    #[serde(default)]
    instance_information_filter_list: Vec<LegacyFilter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn ping_status(host: &HostInfo) -> &'static str {
    if host.simulate == Simulation::Offline {
        "ConnectionLost"
    } else {
        "Online"
    }
}

/// Whether `host` passes one filter; `Err` for a key AWS does not know.
fn passes(host: &HostInfo, key: &str, values: &[String]) -> Result<bool, SsmError> {
    if values.is_empty() || values.len() > 100 {
        return Err(SsmError::new(
            "InvalidInstanceInformationFilterValue",
            format!("filter {key} takes 1 to 100 values"),
        ));
    }
    let any = |value: &str| values.iter().any(|v| v == value);
    Ok(match key {
        "InstanceIds" => any(&host.instance_id),
        "PingStatus" => any(ping_status(host)),
        "PlatformTypes" => any("Linux"),
        "ResourceType" => any("EC2Instance"),
        "AgentVersion" => any(AGENT_VERSION),
        "tag-key" => host.tags.keys().any(|k| any(k)),
        _ => match key.strip_prefix("tag:") {
            Some(tag) if !tag.is_empty() => host.tags.get(tag).is_some_and(|v| any(v)),
            _ => {
                return Err(SsmError::new(
                    "InvalidFilterKey",
                    format!("{key} is not a filter key the local cloud serves"),
                ));
            }
        },
    })
}

impl StateManager {
    pub(super) fn describe_instance_information(&self, input: Value) -> Result<Value, SsmError> {
        let request: Request = serde_json::from_value(input)
            .map_err(|e| SsmError::new("ValidationException", e.to_string()))?;
        if !request.filters.is_empty() && !request.instance_information_filter_list.is_empty() {
            return Err(SsmError::new(
                "ValidationException",
                "InstanceInformationFilterList and Filters cannot be used together",
            ));
        }
        let filters: Vec<(&str, &[String])> = request
            .filters
            .iter()
            .map(|f| (f.key.as_str(), f.values.as_slice()))
            .chain(
                request
                    .instance_information_filter_list
                    .iter()
                    .map(|f| (f.key.as_str(), f.value_set.as_slice())),
            )
            .collect();
        let tags = filters.iter().filter(|(k, _)| k.starts_with("tag")).count();
        if tags > 0 && tags < filters.len() {
            return Err(SsmError::new(
                "ValidationException",
                "Tag filters can't be combined with other filter types",
            ));
        }
        let mut selected = Vec::new();
        for host in self.hosts.list() {
            let mut keep = true;
            for (key, values) in &filters {
                keep &= passes(&host, key, values)?;
            }
            if keep {
                selected.push(host);
            }
        }
        let (page, next) = page(
            &selected,
            request.max_results,
            request.next_token.as_deref(),
            10,
            50,
            5,
        )?;
        let list: Vec<Value> = page
            .iter()
            .map(|host| {
                let last_ping = self
                    .last_ping(&host.instance_id)
                    .unwrap_or_else(SystemTime::now);
                json!({
                    "InstanceId": host.instance_id,
                    "PingStatus": ping_status(host),
                    "LastPingDateTime": epoch(last_ping),
                    "AgentVersion": AGENT_VERSION,
                    "IsLatestVersion": true,
                    "PlatformType": "Linux",
                    "PlatformName": "Amazon Linux",
                    "PlatformVersion": "2023",
                    "ResourceType": "EC2Instance",
                    "ComputerName": format!("{}.local", host.instance_id),
                    "SourceId": host.instance_id,
                    "SourceType": "AWS::EC2::Instance",
                })
            })
            .collect();
        Ok(with_next_token(
            json!({ "InstanceInformationList": list }),
            next,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(simulate: Simulation) -> HostInfo {
        HostInfo {
            instance_id: "i-0abc".into(),
            tags: [("env".to_string(), "dev".to_string())].into(),
            simulate,
        }
    }

    #[test]
    fn filters_read_tags_and_ping_status() {
        let online = host(Simulation::Healthy);
        let offline = host(Simulation::Offline);
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(passes(&online, "tag:env", &v(&["dev", "qa"])).unwrap());
        assert!(!passes(&online, "tag:env", &v(&["prod"])).unwrap());
        assert!(!passes(&online, "tag:role", &v(&["dev"])).unwrap());
        assert!(passes(&online, "tag-key", &v(&["env"])).unwrap());
        assert!(passes(&offline, "PingStatus", &v(&["ConnectionLost"])).unwrap());
        assert!(!passes(&online, "PingStatus", &v(&["ConnectionLost"])).unwrap());
        assert_eq!(
            passes(&online, "Color", &v(&["x"])).unwrap_err().code,
            "InvalidFilterKey"
        );
        assert_eq!(
            passes(&online, "tag:env", &[]).unwrap_err().code,
            "InvalidInstanceInformationFilterValue"
        );
    }
}
