//! Instance ids and `tag:` targets, resolved against the emulator's EC2 instances.

use super::*;

impl RunCommand {
    /// The managed nodes the command is for, in instance id order. The simulated hosts are the
    /// local cloud's managed nodes; other EC2 instances have no agent, so tags never select them.
    pub(super) async fn resolve_targets(
        &self,
        input: &SendCommandInput,
    ) -> Result<Vec<String>, SsmError> {
        let mut ids: Vec<String> = input.instance_ids.clone();
        for target in &input.targets {
            if target.key == "InstanceIds" {
                ids.extend(target.values.iter().cloned());
            }
        }
        if let Some(unknown) = ids.iter().find(|id| self.hosts.load(id).is_none()) {
            return Err(SsmError::new(
                "InvalidInstanceId",
                format!("{unknown} is not a managed node of the local cloud"),
            ));
        }
        for target in &input.targets {
            if target.key == "InstanceIds" {
                continue;
            }
            let Some(tag) = target.key.strip_prefix("tag:") else {
                return Err(SsmError::new(
                    "InvalidTarget",
                    format!(
                        "target key {} is not served locally (use tag:KEY or InstanceIds)",
                        target.key
                    ),
                ));
            };
            let mut pages = self
                .moto_ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name(format!("tag:{tag}"))
                        .set_values(Some(target.values.clone()))
                        .build(),
                )
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-state-name")
                        .values("running")
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    SsmError::new("InternalServerError", format!("DescribeInstances: {e}"))
                })?;
                for reservation in page.reservations() {
                    for instance in reservation.instances() {
                        if let Some(id) = instance.instance_id()
                            && self.hosts.load(id).is_some()
                        {
                            ids.push(id.to_string());
                        }
                    }
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}
