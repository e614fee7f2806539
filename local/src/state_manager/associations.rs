//! The association calls: every create and update makes a version, updates null what they leave
//! out, `AssociationVersion` guards against lost updates; the runs of each version are kept as
//! executions with one target row per host.

use super::schedule::Schedule;
use super::wire::*;
use super::{SsmError, StateManager};
use crate::hosts::HostInfo;
use crate::run_command::document;
use crate::run_command::wire::epoch;
use certship_shared::rate::Rate;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// "Each association has a limit of 1,000 versions" (`AssociationVersionLimitExceeded`, SSM API
/// Reference).
const VERSION_LIMIT: usize = 1000;

/// How a host's run of an association went (the status names of
/// DescribeAssociationExecutionTargets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunStatus {
    InProgress,
    Success,
    Failed,
    TimedOut,
}

impl RunStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::TimedOut => "TimedOut",
        }
    }
}

#[derive(Debug, Clone)]
struct Version {
    created: SystemTime,
    definition: Definition,
}

#[derive(Debug, Clone)]
struct ExecutionTarget {
    instance_id: String,
    status: RunStatus,
    detailed_status: String,
    at: SystemTime,
    /// The id of the run's command (`OutputSource.OutputSourceId`).
    output_source_id: String,
}

#[derive(Debug, Clone)]
struct Execution {
    id: String,
    version: u32,
    created: SystemTime,
    targets: Vec<ExecutionTarget>,
}

impl Execution {
    fn status(&self) -> &'static str {
        if self
            .targets
            .iter()
            .any(|t| t.status == RunStatus::InProgress)
        {
            "InProgress"
        } else if self.targets.iter().any(|t| t.status != RunStatus::Success) {
            "Failed"
        } else {
            "Success"
        }
    }

    fn last(&self) -> SystemTime {
        self.targets
            .iter()
            .map(|t| t.at)
            .max()
            .unwrap_or(self.created)
    }

    /// `{Failed=1, Success=2}`, as SSM writes `ResourceCountByStatus`.
    fn resource_count_by_status(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for target in &self.targets {
            *counts.entry(target.status.as_str()).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
        format!("{{{}}}", parts.join(", "))
    }
}

#[derive(Debug, Clone)]
pub(super) struct Association {
    id: String,
    /// Creation order, for listing.
    order: u64,
    created: SystemTime,
    /// `versions[n - 1]` is version `n`.
    versions: Vec<Version>,
    /// Bumped by StartAssociationsOnce.
    start_once: u64,
    /// Newest last.
    executions: Vec<Execution>,
    /// Each host's latest run: (version, status, when).
    results: BTreeMap<String, (u32, RunStatus, SystemTime)>,
    last_execution: Option<SystemTime>,
    last_success: Option<SystemTime>,
}

impl Association {
    fn latest(&self) -> (u32, &Version) {
        let number = u32::try_from(self.versions.len()).unwrap_or(u32::MAX);
        (number, &self.versions[self.versions.len() - 1])
    }
}

/// What an agent needs to decide whether and how to run an association on its host.
#[derive(Debug, Clone)]
pub(super) struct Assignment {
    pub(super) id: String,
    pub(super) version: u32,
    pub(super) version_created: SystemTime,
    pub(super) definition: Definition,
    pub(super) start_once: u64,
}

/// Every association the emulator holds, and the `certship local tick` count.
#[derive(Debug, Default)]
pub(super) struct Store {
    associations: BTreeMap<String, Association>,
    next_order: u64,
    pub(super) tick: u64,
}

impl Store {
    pub(super) fn len(&self) -> usize {
        self.associations.len()
    }

    fn get(&self, id: &str) -> Result<&Association, SsmError> {
        self.associations.get(id).ok_or_else(|| does_not_exist(id))
    }

    /// The associations whose current version targets `host` (its current tags), oldest first.
    pub(super) fn assignments(&self, host: &HostInfo) -> Vec<Assignment> {
        let mut list: Vec<&Association> = self
            .associations
            .values()
            .filter(|a| targets_host(&a.latest().1.definition, host))
            .collect();
        list.sort_by_key(|a| a.order);
        list.into_iter()
            .map(|a| {
                let (version, v) = a.latest();
                Assignment {
                    id: a.id.clone(),
                    version,
                    version_created: v.created,
                    definition: v.definition.clone(),
                    start_once: a.start_once,
                }
            })
            .collect()
    }

    /// Records that a host started a run: it joins the latest execution of that version unless
    /// the host already ran in it, else a new execution begins. `None` once the association is
    /// gone.
    pub(super) fn begin_run(
        &mut self,
        association_id: &str,
        version: u32,
        instance_id: &str,
        at: SystemTime,
        output_source_id: &str,
    ) -> Option<String> {
        let association = self.associations.get_mut(association_id)?;
        let joinable = association.executions.last_mut().filter(|e| {
            e.version == version && !e.targets.iter().any(|t| t.instance_id == instance_id)
        });
        let execution = match joinable {
            Some(e) => e,
            None => {
                association.executions.push(Execution {
                    id: new_id(),
                    version,
                    created: at,
                    targets: Vec::new(),
                });
                association.executions.last_mut()?
            }
        };
        execution.targets.push(ExecutionTarget {
            instance_id: instance_id.to_string(),
            status: RunStatus::InProgress,
            detailed_status: "InProgress".into(),
            at,
            output_source_id: output_source_id.to_string(),
        });
        association.results.insert(
            instance_id.to_string(),
            (version, RunStatus::InProgress, at),
        );
        association.last_execution = Some(at);
        Some(execution.id.clone())
    }

    /// Records how a host's run ended.
    pub(super) fn end_run(
        &mut self,
        association_id: &str,
        execution_id: &str,
        instance_id: &str,
        status: RunStatus,
        detailed_status: &str,
    ) {
        let Some(association) = self.associations.get_mut(association_id) else {
            return;
        };
        let now = SystemTime::now();
        if let Some(target) = association
            .executions
            .iter_mut()
            .filter(|e| e.id == execution_id)
            .flat_map(|e| e.targets.iter_mut())
            .find(|t| t.instance_id == instance_id)
        {
            target.status = status;
            target.detailed_status = detailed_status.to_string();
            target.at = now;
        }
        if let Some(result) = association.results.get_mut(instance_id) {
            result.1 = status;
            result.2 = now;
        }
        association.last_execution = Some(now);
        if status == RunStatus::Success {
            association.last_success = Some(now);
        }
    }
}

/// Whether `definition`'s targets select `host`: every target must match (several keys are
/// ANDed), `tag:K` against the host's current tags, `InstanceIds` by id or `*` for all.
pub(super) fn targets_host(definition: &Definition, host: &HostInfo) -> bool {
    let Some(targets) = definition.targets.as_ref().filter(|t| !t.is_empty()) else {
        return false;
    };
    targets
        .iter()
        .all(|target| match target.key.strip_prefix("tag:") {
            Some(key) => host
                .tags
                .get(key)
                .is_some_and(|value| target.values.contains(value)),
            None => {
                target.key == "InstanceIds"
                    && target
                        .values
                        .iter()
                        .any(|v| v == "*" || *v == host.instance_id)
            }
        })
}

fn does_not_exist(id: &str) -> SsmError {
    SsmError::new(
        "AssociationDoesNotExist",
        format!("The association {id} does not exist"),
    )
}

fn invalid(code: &'static str, message: impl Into<String>) -> SsmError {
    SsmError::new(code, message)
}

/// The input of a List/Describe call about one association: the request and the id it names.
fn one_association(input: Value) -> Result<(ListRequest, String), SsmError> {
    let request: ListRequest =
        serde_json::from_value(input).map_err(|e| invalid("ValidationException", e.to_string()))?;
    let id = request
        .association_id
        .clone()
        .ok_or_else(|| invalid("ValidationException", "AssociationId is required"))?;
    Ok((request, id))
}

fn matches_pattern(value: &str, pattern: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|r| r.is_match(value))
}

impl StateManager {
    /// Checks a version's definition as CreateAssociation and UpdateAssociation do.
    async fn validate(&self, definition: &Definition) -> Result<(), SsmError> {
        if !matches_pattern(&definition.name, r"^[a-zA-Z0-9_\-.:/]{3,128}$") {
            return Err(invalid(
                "InvalidDocument",
                format!("{:?} is not a document name", definition.name),
            ));
        }
        if let Some(version) = &definition.document_version
            && !matches_pattern(version, r"^(\$LATEST|\$DEFAULT|[1-9][0-9]*)$")
        {
            return Err(invalid(
                "InvalidDocumentVersion",
                format!("{version:?} is not a document version"),
            ));
        }
        // The document exists and the parameters pass its allowedPattern, as for SendCommand.
        let parameters = definition.parameters.clone().unwrap_or_default();
        document::plan(
            &self.moto_ssm,
            &definition.name,
            definition.document_version.as_deref(),
            &parameters,
        )
        .await?;
        if let Some(targets) = &definition.targets {
            if targets.len() > 5 {
                return Err(invalid("InvalidTarget", "at most 5 targets"));
            }
            for target in targets {
                let tag = target.key.strip_prefix("tag:");
                if tag.is_some_and(str::is_empty) || (tag.is_none() && target.key != "InstanceIds")
                {
                    return Err(invalid(
                        "InvalidTarget",
                        format!(
                            "target key {:?} is not served locally (use tag:KEY or InstanceIds)",
                            target.key
                        ),
                    ));
                }
                if target.values.is_empty() || target.values.len() > 50 {
                    return Err(invalid(
                        "InvalidTarget",
                        format!("target {} needs 1 to 50 values", target.key),
                    ));
                }
            }
        }
        if let Some(expression) = &definition.schedule_expression {
            Schedule::parse(expression).map_err(|e| invalid("InvalidSchedule", e))?;
            if definition.apply_only_at_cron_interval() && expression.trim().starts_with("rate") {
                return Err(invalid(
                    "ValidationException",
                    "ApplyOnlyAtCronInterval isn't supported for rate expressions",
                ));
            }
        } else if definition.apply_only_at_cron_interval() {
            return Err(invalid(
                "ValidationException",
                "ApplyOnlyAtCronInterval needs a cron ScheduleExpression",
            ));
        }
        if let Some(value) = &definition.max_concurrency
            && Rate::max_concurrency(value).is_none()
        {
            return Err(invalid(
                "ValidationException",
                format!("MaxConcurrency {value:?} is invalid"),
            ));
        }
        if let Some(value) = &definition.max_errors
            && Rate::max_errors(value).is_none()
        {
            return Err(invalid(
                "ValidationException",
                format!("MaxErrors {value:?} is invalid"),
            ));
        }
        let patterns = [
            (
                "AssociationName",
                definition.association_name.as_deref(),
                r"^[a-zA-Z0-9_\-.]{3,128}$",
            ),
            (
                "AssociationDispatchAssumeRole",
                definition.association_dispatch_assume_role.as_deref(),
                r"^arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+$",
            ),
            (
                "ComplianceSeverity",
                definition.compliance_severity.as_deref(),
                r"^(CRITICAL|HIGH|MEDIUM|LOW|UNSPECIFIED)$",
            ),
            (
                "SyncCompliance",
                definition.sync_compliance.as_deref(),
                r"^(AUTO|MANUAL)$",
            ),
        ];
        for (field, value, pattern) in patterns {
            if let Some(value) = value
                && !matches_pattern(value, pattern)
            {
                return Err(invalid(
                    "ValidationException",
                    format!("{field} {value:?} does not match {pattern}"),
                ));
            }
        }
        if let Some(location) = &definition.output_location {
            let s3 = location
                .s3_location
                .as_ref()
                .ok_or_else(|| invalid("InvalidOutputLocation", "no S3Location"))?;
            let bucket = s3
                .output_s3_bucket_name
                .as_deref()
                .ok_or_else(|| invalid("InvalidOutputLocation", "no OutputS3BucketName"))?;
            if s3
                .output_s3_key_prefix
                .as_ref()
                .is_some_and(|p| p.len() > 500)
            {
                return Err(invalid(
                    "InvalidOutputLocation",
                    "OutputS3KeyPrefix is longer than 500 characters",
                ));
            }
            self.s3
                .head_bucket()
                .bucket(bucket)
                .send()
                .await
                .map_err(|_| {
                    invalid(
                        "InvalidOutputLocation",
                        format!("the output bucket {bucket} does not exist"),
                    )
                })?;
        }
        Ok(())
    }

    pub(super) async fn create_association(&self, input: Value) -> Result<Value, SsmError> {
        let request = AssociationRequest::parse(input)?;
        let definition = request.definition;
        if definition.targets.as_ref().is_none_or(Vec::is_empty) {
            return Err(invalid(
                "InvalidTarget",
                "Targets is required (the local cloud serves no InstanceId associations)",
            ));
        }
        self.validate(&definition).await?;
        let now = SystemTime::now();
        let description = {
            let mut store = self.lock();
            let order = store.next_order;
            store.next_order += 1;
            let association = Association {
                id: new_id(),
                order,
                created: now,
                versions: vec![Version {
                    created: now,
                    definition,
                }],
                start_once: 0,
                executions: Vec::new(),
                results: BTreeMap::new(),
                last_execution: None,
                last_success: None,
            };
            let description = self.description(&association, None);
            tracing::info!(association_id = %association.id, "association created");
            store
                .associations
                .insert(association.id.clone(), association);
            description
        };
        self.wake();
        Ok(json!({ "AssociationDescription": description }))
    }

    pub(super) async fn update_association(&self, input: Value) -> Result<Value, SsmError> {
        let request = AssociationRequest::parse(input)?;
        let id = request
            .association_id
            .clone()
            .ok_or_else(|| invalid("ValidationException", "AssociationId is required"))?;
        let mut definition = request.definition;
        {
            let store = self.lock();
            let association = store.get(&id)?;
            check_version(association, request.association_version.as_deref())?;
            // An association cannot be without its document: a request without Name keeps it.
            if definition.name.is_empty() {
                definition.name = association.latest().1.definition.name.clone();
            }
        }
        self.validate(&definition).await?;
        let description = {
            let mut store = self.lock();
            let association = store
                .associations
                .get_mut(&id)
                .ok_or_else(|| does_not_exist(&id))?;
            // Checked again: another update may have come in while the document was read.
            check_version(association, request.association_version.as_deref())?;
            if association.versions.len() >= VERSION_LIMIT {
                return Err(invalid(
                    "AssociationVersionLimitExceeded",
                    "an association has at most 1,000 versions",
                ));
            }
            association.versions.push(Version {
                created: SystemTime::now(),
                definition,
            });
            tracing::info!(association_id = %id, version = association.versions.len(), "association updated");
            self.description(association, None)
        };
        self.wake();
        Ok(json!({ "AssociationDescription": description }))
    }

    pub(super) fn describe_association(&self, input: &Value) -> Result<Value, SsmError> {
        let id = association_id(input)?;
        let store = self.lock();
        let association = store.get(&id)?;
        let version = match input["AssociationVersion"].as_str() {
            None | Some("$LATEST") => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=association.versions.len()).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "InvalidAssociationVersion",
                            format!("association {id} has no version {v}"),
                        )
                    })?,
            ),
        };
        Ok(json!({ "AssociationDescription": self.description(association, version) }))
    }

    pub(super) fn delete_association(&self, input: &Value) -> Result<Value, SsmError> {
        let id = association_id(input)?;
        let removed = self.lock().associations.remove(&id);
        if removed.is_none() {
            return Err(does_not_exist(&id));
        }
        tracing::info!(association_id = %id, "association deleted");
        Ok(json!({}))
    }

    pub(super) fn list_associations(&self, input: Value) -> Result<Value, SsmError> {
        let request: ListRequest = serde_json::from_value(input)
            .map_err(|e| invalid("ValidationException", e.to_string()))?;
        let store = self.lock();
        let mut list: Vec<&Association> = store.associations.values().collect();
        list.sort_by_key(|a| a.order);
        let mut selected = Vec::new();
        for association in list {
            let (_, version) = association.latest();
            let d = &version.definition;
            let mut keep = true;
            for filter in &request.association_filter_list {
                let value = filter.value.as_str();
                keep &= match filter.key.as_str() {
                    "AssociationName" => d.association_name.as_deref() == Some(value),
                    "Name" => d.name == value,
                    "AssociationId" => association.id == value,
                    "AssociationStatusName" => self.overview(association).0 == value,
                    "LastExecutedBefore" | "LastExecutedAfter" => {
                        let at = certship_shared::time::parse_rfc3339(value).ok_or_else(|| {
                            invalid("ValidationException", format!("{value:?} is not a date"))
                        })?;
                        association.last_execution.is_some_and(|last| {
                            if filter.key == "LastExecutedBefore" {
                                last < at
                            } else {
                                last > at
                            }
                        })
                    }
                    other => {
                        return Err(invalid(
                            "ValidationException",
                            format!("association filter {other} is not served locally"),
                        ));
                    }
                };
            }
            if keep {
                selected.push(self.list_item(association));
            }
        }
        paged(
            "Associations",
            &selected,
            request.max_results,
            request.next_token.as_deref(),
        )
    }

    pub(super) fn list_association_versions(&self, input: Value) -> Result<Value, SsmError> {
        let (request, id) = one_association(input)?;
        let store = self.lock();
        let association = store.get(&id)?;
        let versions: Vec<Value> = association
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut info = definition_json(&v.definition);
                info["AssociationId"] = json!(association.id);
                info["AssociationVersion"] = json!((i + 1).to_string());
                info["CreatedDate"] = json!(epoch(v.created));
                info
            })
            .collect();
        paged(
            "AssociationVersions",
            &versions,
            request.max_results,
            request.next_token.as_deref(),
        )
    }

    pub(super) fn start_associations_once(&self, input: &Value) -> Result<Value, SsmError> {
        let ids: Vec<String> = input["AssociationIds"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() || ids.len() > 10 {
            return Err(invalid(
                "ValidationException",
                "AssociationIds takes 1 to 10 ids",
            ));
        }
        {
            let mut store = self.lock();
            if let Some(unknown) = ids.iter().find(|id| !store.associations.contains_key(*id)) {
                return Err(does_not_exist(unknown));
            }
            for id in &ids {
                if let Some(association) = store.associations.get_mut(id) {
                    association.start_once += 1;
                }
            }
        }
        self.wake();
        Ok(json!({}))
    }

    pub(super) fn describe_association_executions(&self, input: Value) -> Result<Value, SsmError> {
        let (request, id) = one_association(input)?;
        let store = self.lock();
        let association = store.get(&id)?;
        let mut rows = Vec::new();
        for execution in association.executions.iter().rev() {
            let mut keep = true;
            for filter in &request.filters {
                let operator = filter.operator.as_deref().unwrap_or("EQUAL");
                keep &= match filter.key.as_str() {
                    "ExecutionId" => execution.id == filter.value,
                    "Status" => execution.status() == filter.value,
                    "CreatedTime" => {
                        let at = certship_shared::time::parse_rfc3339(&filter.value).ok_or_else(
                            || {
                                invalid(
                                    "ValidationException",
                                    format!("{:?} is not a date", filter.value),
                                )
                            },
                        )?;
                        match operator {
                            "LESS_THAN" => execution.created < at,
                            "GREATER_THAN" => execution.created > at,
                            _ => execution.created == at,
                        }
                    }
                    other => {
                        return Err(invalid(
                            "ValidationException",
                            format!("execution filter {other} is not valid"),
                        ));
                    }
                };
            }
            if keep {
                rows.push(json!({
                    "AssociationId": association.id,
                    "AssociationVersion": execution.version.to_string(),
                    "ExecutionId": execution.id,
                    "Status": execution.status(),
                    "DetailedStatus": execution.status(),
                    "CreatedTime": epoch(execution.created),
                    "LastExecutionDate": epoch(execution.last()),
                    "ResourceCountByStatus": execution.resource_count_by_status(),
                }));
            }
        }
        paged(
            "AssociationExecutions",
            &rows,
            request.max_results,
            request.next_token.as_deref(),
        )
    }

    pub(super) fn describe_association_execution_targets(
        &self,
        input: Value,
    ) -> Result<Value, SsmError> {
        let (request, id) = one_association(input)?;
        let execution_id = request
            .execution_id
            .clone()
            .ok_or_else(|| invalid("ValidationException", "ExecutionId is required"))?;
        let store = self.lock();
        let association = store.get(&id)?;
        let execution = association
            .executions
            .iter()
            .find(|e| e.id == execution_id)
            .ok_or_else(|| {
                invalid(
                    "AssociationExecutionDoesNotExist",
                    format!("execution {execution_id} of {id} does not exist"),
                )
            })?;
        let mut rows = Vec::new();
        for target in &execution.targets {
            let keep = request.filters.iter().try_fold(true, |keep, filter| {
                Ok::<bool, SsmError>(
                    keep && match filter.key.as_str() {
                        "Status" => target.status.as_str() == filter.value,
                        "ResourceId" => target.instance_id == filter.value,
                        "ResourceType" => filter.value == "ManagedInstance",
                        other => {
                            return Err(invalid(
                                "ValidationException",
                                format!("execution target filter {other} is not valid"),
                            ));
                        }
                    },
                )
            })?;
            if keep {
                rows.push(json!({
                    "AssociationId": association.id,
                    "AssociationVersion": execution.version.to_string(),
                    "ExecutionId": execution.id,
                    "ResourceId": target.instance_id,
                    "ResourceType": "ManagedInstance",
                    "Status": target.status.as_str(),
                    "DetailedStatus": target.detailed_status,
                    "LastExecutionDate": epoch(target.at),
                    "OutputSource": {
                        "OutputSourceId": target.output_source_id,
                        "OutputSourceType": "RunCommand",
                    },
                }));
            }
        }
        paged(
            "AssociationExecutionTargets",
            &rows,
            request.max_results,
            request.next_token.as_deref(),
        )
    }

    /// `Overview`: the status of the current version over the hosts it targets now, a host
    /// counting as Pending until it has run that version.
    fn overview(&self, association: &Association) -> (&'static str, BTreeMap<&'static str, u32>) {
        let (version, current) = association.latest();
        let mut counts: BTreeMap<&'static str, u32> = BTreeMap::new();
        for host in self.hosts.list() {
            if !targets_host(&current.definition, &host) {
                continue;
            }
            let status = match association.results.get(&host.instance_id) {
                Some((v, status, _)) if *v == version => match status {
                    RunStatus::InProgress => "Pending",
                    RunStatus::Success => "Success",
                    RunStatus::Failed | RunStatus::TimedOut => "Failed",
                },
                _ => "Pending",
            };
            *counts.entry(status).or_default() += 1;
        }
        let status = if counts.contains_key("Failed") {
            "Failed"
        } else if counts.contains_key("Pending") || counts.is_empty() {
            "Pending"
        } else {
            "Success"
        };
        (status, counts)
    }

    fn overview_json(&self, association: &Association) -> Value {
        let (status, counts) = self.overview(association);
        json!({
            "Status": status,
            "DetailedStatus": status,
            "AssociationStatusAggregatedCount": counts,
        })
    }

    /// `AssociationDescription` of version `version` (the latest when `None`).
    fn description(&self, association: &Association, version: Option<usize>) -> Value {
        let number = version.unwrap_or(association.versions.len());
        let v = &association.versions[number - 1];
        let mut description = definition_json(&v.definition);
        description["AssociationId"] = json!(association.id);
        description["AssociationVersion"] = json!(number.to_string());
        description["Date"] = json!(epoch(association.created));
        description["LastUpdateAssociationDate"] = json!(epoch(v.created));
        description["Overview"] = self.overview_json(association);
        if let Some(at) = association.last_execution {
            description["LastExecutionDate"] = json!(epoch(at));
        }
        if let Some(at) = association.last_success {
            description["LastSuccessfulExecutionDate"] = json!(epoch(at));
        }
        description
    }

    /// An `Association` of ListAssociations.
    fn list_item(&self, association: &Association) -> Value {
        let (number, v) = association.latest();
        let d = &v.definition;
        let mut item = json!({
            "Name": d.name,
            "AssociationId": association.id,
            "AssociationVersion": number.to_string(),
            "DocumentVersion": d.document_version.as_deref().unwrap_or("$DEFAULT"),
            "Targets": d.targets.clone().unwrap_or_default(),
            "Overview": self.overview_json(association),
        });
        let optional = [
            (
                "ScheduleExpression",
                d.schedule_expression.clone().map(Value::from),
            ),
            (
                "AssociationName",
                d.association_name.clone().map(Value::from),
            ),
            ("ScheduleOffset", d.schedule_offset.map(Value::from)),
            ("Duration", d.duration.map(Value::from)),
            (
                "LastExecutionDate",
                association.last_execution.map(|t| Value::from(epoch(t))),
            ),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                item[field] = value;
            }
        }
        item
    }
}

/// A version's fields as the API names them; a field left out stays out (null).
fn definition_json(definition: &Definition) -> Value {
    let mut value = serde_json::to_value(definition).unwrap_or_else(|_| json!({}));
    // What the service shows for an association with no explicit document version.
    if definition.document_version.is_none() {
        value["DocumentVersion"] = json!("$DEFAULT");
    }
    value["ApplyOnlyAtCronInterval"] = json!(definition.apply_only_at_cron_interval());
    value
}

fn association_id(input: &Value) -> Result<String, SsmError> {
    input["AssociationId"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| {
            invalid(
                "ValidationException",
                "AssociationId is required (the local cloud serves no Name/InstanceId lookups)",
            )
        })
}

/// `AssociationVersion`, when given, must be the latest (or `$LATEST`).
fn check_version(association: &Association, given: Option<&str>) -> Result<(), SsmError> {
    let latest = association.versions.len().to_string();
    match given {
        None | Some("$LATEST") => Ok(()),
        Some(v) if v == latest => Ok(()),
        Some(v) => Err(invalid(
            "InvalidAssociationVersion",
            format!(
                "association {} is at version {latest}, not {v}",
                association.id
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::Simulation;

    fn host(tags: &[(&str, &str)]) -> HostInfo {
        HostInfo {
            instance_id: "i-0abc".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            simulate: Simulation::Healthy,
        }
    }

    fn targets(targets: &[(&str, &[&str])]) -> Definition {
        Definition {
            name: "Doc".into(),
            targets: Some(
                targets
                    .iter()
                    .map(|(k, vs)| Target {
                        key: k.to_string(),
                        values: vs.iter().map(|v| v.to_string()).collect(),
                    })
                    .collect(),
            ),
            ..Definition::default()
        }
    }

    #[test]
    fn targets_match_current_tags_and_are_anded() {
        let web_dev = host(&[("env", "dev"), ("role", "web")]);
        assert!(targets_host(
            &targets(&[("tag:env", &["dev", "qa"])]),
            &web_dev
        ));
        assert!(!targets_host(&targets(&[("tag:env", &["prod"])]), &web_dev));
        assert!(targets_host(
            &targets(&[("tag:env", &["dev"]), ("tag:role", &["web"])]),
            &web_dev
        ));
        assert!(!targets_host(
            &targets(&[("tag:env", &["dev"]), ("tag:role", &["db"])]),
            &web_dev
        ));
        assert!(targets_host(&targets(&[("InstanceIds", &["*"])]), &web_dev));
        assert!(targets_host(
            &targets(&[("InstanceIds", &["i-0abc"])]),
            &web_dev
        ));
        assert!(!targets_host(&targets(&[]), &web_dev));
        assert!(!targets_host(&Definition::default(), &web_dev));
    }

    #[test]
    fn a_stale_version_is_refused_and_latest_accepted() {
        let mut store = Store::default();
        let definition = targets(&[("tag:env", &["dev"])]);
        let version = || Version {
            created: SystemTime::now(),
            definition: definition.clone(),
        };
        store.associations.insert(
            "a".into(),
            Association {
                id: "a".into(),
                order: 0,
                created: SystemTime::now(),
                versions: vec![version(), version()],
                start_once: 0,
                executions: Vec::new(),
                results: BTreeMap::new(),
                last_execution: None,
                last_success: None,
            },
        );
        let association = store.get("a").unwrap();
        assert!(check_version(association, Some("2")).is_ok());
        assert!(check_version(association, Some("$LATEST")).is_ok());
        assert!(check_version(association, None).is_ok());
        assert_eq!(
            check_version(association, Some("1")).unwrap_err().code,
            "InvalidAssociationVersion"
        );
        assert_eq!(store.get("b").unwrap_err().code, "AssociationDoesNotExist");
    }

    #[test]
    fn runs_join_the_versions_execution_once_per_host() {
        let mut store = Store::default();
        store.associations.insert(
            "a".into(),
            Association {
                id: "a".into(),
                order: 0,
                created: SystemTime::now(),
                versions: vec![Version {
                    created: SystemTime::now(),
                    definition: Definition::default(),
                }],
                start_once: 0,
                executions: Vec::new(),
                results: BTreeMap::new(),
                last_execution: None,
                last_success: None,
            },
        );
        let now = SystemTime::now();
        let first = store.begin_run("a", 1, "i-1", now, "c1").unwrap();
        let joined = store.begin_run("a", 1, "i-2", now, "c2").unwrap();
        assert_eq!(first, joined);
        let again = store.begin_run("a", 1, "i-1", now, "c3").unwrap();
        assert_ne!(first, again, "a second run on a host is a new execution");
        store.end_run("a", &first, "i-1", RunStatus::Success, "Success");
        store.end_run("a", &first, "i-2", RunStatus::Failed, "Failed");
        let execution = &store.associations["a"].executions[0];
        assert_eq!(execution.status(), "Failed");
        assert_eq!(
            execution.resource_count_by_status(),
            "{Failed=1, Success=1}"
        );
        assert!(store.begin_run("gone", 1, "i-1", now, "c").is_none());
    }
}
