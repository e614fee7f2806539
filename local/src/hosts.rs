//! Simulated hosts: an EC2 instance in the emulator plus a directory that is the host's
//! filesystem (`<state>/hosts/<instance-id>/`), where the install document writes and nowhere else.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a simulated host behaves when a command reaches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Simulation {
    /// Runs the document and reloads services normally.
    #[default]
    Healthy,
    /// Its `systemctl reload-or-restart` fails, so the document rolls back and fails.
    ReloadFails,
    /// Its SSM Agent is offline: commands stay pending until their delivery timeout,
    /// associations wait until it is back, and DescribeInstanceInformation says `ConnectionLost`.
    Offline,
    /// Its agent runs no script for an association: after the agents' `simulated_run` it uploads
    /// the report line the document prints after an install of the association's version (the
    /// serial it was asked for, no files, no reload). A fleet of hundreds then costs no shell,
    /// so what `make bench` times from 100 hosts up is certship's path, not the script's. Run
    /// Command still runs the script on it, as on a healthy host.
    ReportsOnly,
}

/// What the local cloud knows about a simulated host, kept in `<host>/host.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostInfo {
    pub instance_id: String,
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub simulate: Simulation,
}

/// The hosts directory of a local cloud.
#[derive(Debug, Clone)]
pub struct Hosts {
    dir: PathBuf,
}

const HOST_FILE: &str = "host.json";

impl Hosts {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host's filesystem root.
    pub fn root(&self, instance_id: &str) -> PathBuf {
        self.dir.join(instance_id)
    }

    /// A host's description, or `None` for an instance that is not a simulated host.
    pub fn load(&self, instance_id: &str) -> Option<HostInfo> {
        if !is_instance_id(instance_id) {
            return None;
        }
        let text = std::fs::read_to_string(self.root(instance_id).join(HOST_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, host: &HostInfo) -> Result<PathBuf> {
        if !is_instance_id(&host.instance_id) {
            bail!("{:?} is not an instance id", host.instance_id);
        }
        let root = self.root(&host.instance_id);
        std::fs::create_dir_all(root.join("tmp"))
            .with_context(|| format!("creating {}", root.display()))?;
        // Written aside and renamed into place: the host's agent reads it every poll and must
        // never see half a file.
        let temporary = root.join(format!("{HOST_FILE}.tmp"));
        std::fs::write(&temporary, serde_json::to_vec_pretty(host)?)?;
        std::fs::rename(&temporary, root.join(HOST_FILE))?;
        Ok(root)
    }

    /// Every simulated host, in instance id order.
    pub fn list(&self) -> Vec<HostInfo> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut hosts: Vec<HostInfo> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| self.load(&e.file_name().to_string_lossy()))
            .collect();
        hosts.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        hosts
    }
}

fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Launches an instance with `tags` in the emulator and gives it a host directory.
pub async fn add(
    ec2: &aws_sdk_ec2::Client,
    hosts: &Hosts,
    tags: &BTreeMap<String, String>,
    simulate: Simulation,
) -> Result<HostInfo> {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (key, value) in tags {
        spec = spec.tags(Tag::builder().key(key).value(value).build());
    }
    let out = ec2
        .run_instances()
        // Any image id will do in the emulator; this one is in moto's catalogue.
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .tag_specifications(spec.build())
        .send()
        .await
        .context("launching the host's instance (is the local cloud running?)")?;
    let instance_id = out
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .context("RunInstances returned no instance")?
        .to_string();
    let host = HostInfo {
        instance_id,
        tags: tags.clone(),
        simulate,
    };
    hosts.save(&host)?;
    Ok(host)
}

impl Hosts {
    /// A host's description, or an error naming the hosts there are.
    pub fn require(&self, instance_id: &str) -> Result<HostInfo> {
        self.load(instance_id).with_context(|| {
            let known: Vec<String> = self.list().into_iter().map(|h| h.instance_id).collect();
            format!(
                "{instance_id} is not a simulated host of this local cloud (hosts: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }
}

/// Adds or replaces `tags` on a host: on its EC2 instance (CreateTags), then in its record, which
/// its agent and DescribeInstanceInformation read.
pub async fn tag(
    ec2: &aws_sdk_ec2::Client,
    hosts: &Hosts,
    instance_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<HostInfo> {
    use aws_sdk_ec2::types::Tag;
    let mut host = hosts.require(instance_id)?;
    let mut request = ec2.create_tags().resources(instance_id);
    for (key, value) in tags {
        request = request.tags(Tag::builder().key(key).value(value).build());
    }
    request
        .send()
        .await
        .with_context(|| format!("tagging {instance_id} (is the local cloud running?)"))?;
    host.tags
        .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    hosts.save(&host)?;
    Ok(host)
}

/// Removes the tags `keys` from a host, on its EC2 instance and in its record. A key the host
/// does not carry is an error, so a typo does not pass for success.
pub async fn untag(
    ec2: &aws_sdk_ec2::Client,
    hosts: &Hosts,
    instance_id: &str,
    keys: &[String],
) -> Result<HostInfo> {
    use aws_sdk_ec2::types::Tag;
    let mut host = hosts.require(instance_id)?;
    if let Some(missing) = keys.iter().find(|k| !host.tags.contains_key(*k)) {
        bail!(
            "{instance_id} has no tag {missing:?} (its tags: {})",
            host.tags.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let mut request = ec2.delete_tags().resources(instance_id);
    for key in keys {
        request = request.tags(Tag::builder().key(key).build());
    }
    request
        .send()
        .await
        .with_context(|| format!("untagging {instance_id} (is the local cloud running?)"))?;
    for key in keys {
        host.tags.remove(key);
    }
    hosts.save(&host)?;
    Ok(host)
}

/// Sets how a host behaves from now on; its agent reads it at its next poll.
pub fn set_simulation(hosts: &Hosts, instance_id: &str, simulate: Simulation) -> Result<HostInfo> {
    let mut host = hosts.require(instance_id)?;
    host.simulate = simulate;
    hosts.save(&host)?;
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that would fail any call it made: the checks below refuse before calling EC2.
    fn ec2() -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_ec2::config::Region::new("us-east-1"))
                .endpoint_url("http://127.0.0.1:1")
                .build(),
        )
    }

    #[tokio::test]
    async fn unknown_hosts_and_missing_tags_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = Hosts::new(dir.path());
        hosts
            .save(&HostInfo {
                instance_id: "i-0abc".into(),
                tags: BTreeMap::from([("env".into(), "dev".into())]),
                simulate: Simulation::Healthy,
            })
            .unwrap();
        let tags = BTreeMap::from([("role".to_string(), "web".to_string())]);

        let unknown = tag(&ec2(), &hosts, "i-0fff", &tags).await.unwrap_err();
        assert!(unknown.to_string().contains("i-0fff"), "{unknown}");
        assert!(unknown.to_string().contains("hosts: i-0abc"), "{unknown}");
        let missing = untag(&ec2(), &hosts, "i-0abc", &["role".to_string()])
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("no tag \"role\""), "{missing}");
        assert!(missing.to_string().contains("env"), "{missing}");
        // nothing changed
        assert_eq!(hosts.load("i-0abc").unwrap().tags.len(), 1);
    }

    #[test]
    fn hosts_round_trip_and_foreign_names_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = Hosts::new(dir.path());
        let host = HostInfo {
            instance_id: "i-0abc".into(),
            tags: BTreeMap::from([("env".into(), "dev".into())]),
            simulate: Simulation::ReloadFails,
        };
        hosts.save(&host).unwrap();
        std::fs::create_dir(dir.path().join("not-a-host")).unwrap();
        assert_eq!(hosts.load("i-0abc"), Some(host.clone()));
        assert_eq!(hosts.load("../i-0abc"), None);
        assert_eq!(hosts.list(), vec![host.clone()]);
        assert_eq!(
            set_simulation(&hosts, "i-0abc", Simulation::Offline)
                .unwrap()
                .simulate,
            Simulation::Offline
        );
        let err = set_simulation(&hosts, "i-0def", Simulation::Offline).unwrap_err();
        assert!(err.to_string().contains("i-0abc"), "{err}");
        let written = std::fs::read_dir(dir.path().join("i-0abc"))
            .unwrap()
            .count();
        assert_eq!(written, 2, "host.json and tmp/, no temporary file left");
        assert!(
            hosts
                .save(&HostInfo {
                    instance_id: "../x".into(),
                    tags: BTreeMap::new(),
                    simulate: Simulation::Healthy
                })
                .is_err()
        );
    }
}
