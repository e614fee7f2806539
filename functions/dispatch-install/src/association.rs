//! The mapping's State Manager association: its desired state. Creating or updating it is the
//! whole rollout: State Manager runs a new version at once on every target, then on the schedule,
//! and on nodes that gain the tag, register later or come back online.

use crate::settings::AssociationSettings;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::create_association::CreateAssociationError;
use aws_sdk_ssm::operation::delete_association::DeleteAssociationError;
use aws_sdk_ssm::operation::describe_association::DescribeAssociationError;
use aws_sdk_ssm::operation::update_association::UpdateAssociationError;
use aws_sdk_ssm::types::{
    AssociationComplianceSeverity, AssociationDescription, AssociationFilter, AssociationFilterKey,
    AssociationSyncCompliance, InstanceAssociationOutputLocation, S3OutputLocation, Tag, Target,
};
use certship_shared::naming::{association_name, output_key_prefix};
use certship_shared::{CertshipError, DeploymentRequest, ExportResult};
use std::collections::HashMap;

/// The document version an association follows unless an operator pinned one.
pub const DEFAULT_DOCUMENT_VERSION: &str = "$DEFAULT";
/// The tag naming the mapping an association belongs to.
pub const MAPPING_TAG: &str = "certship:mapping";
/// How often an update whose described version another writer overtook is described and sent
/// again before giving up.
pub const VERSION_CONFLICT_RETRIES: u32 = 3;

/// Every association field certship owns, for one mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub mapping_id: String,
    pub association_name: String,
    pub document_name: String,
    pub target: Target,
    pub parameters: HashMap<String, Vec<String>>,
    pub schedule: String,
    pub output_location: InstanceAssociationOutputLocation,
    pub max_concurrency: String,
    pub max_errors: String,
    pub dispatch_role_arn: Option<String>,
}

impl Desired {
    /// The desired state of the mapping `mapping_id` after `export`.
    pub fn new(
        settings: &AssociationSettings,
        request: &DeploymentRequest,
        export: &ExportResult,
        mapping_id: &str,
    ) -> Self {
        Self {
            mapping_id: mapping_id.to_string(),
            association_name: association_name(mapping_id),
            document_name: settings.document_name.clone(),
            target: Target::builder()
                .key(format!("tag:{}", request.target_tag_key))
                .values(&request.target_tag_value)
                .build(),
            parameters: document_parameters(
                settings,
                export,
                &request.cert_name,
                request.reload_service.as_deref(),
            ),
            schedule: settings.reconcile_schedule.clone(),
            output_location: InstanceAssociationOutputLocation::builder()
                .s3_location(
                    S3OutputLocation::builder()
                        .output_s3_bucket_name(&settings.output_bucket)
                        .output_s3_key_prefix(output_key_prefix(
                            &request.target_tag_value,
                            mapping_id,
                        ))
                        .build(),
                )
                .build(),
            max_concurrency: settings.max_concurrency.clone(),
            max_errors: settings.max_errors.clone(),
            dispatch_role_arn: settings.dispatch_role_arn.clone(),
        }
    }

    fn target_text(&self) -> String {
        format!(
            "{}={}",
            self.target.key().unwrap_or_default(),
            self.target.values().join(",")
        )
    }
}

/// The install document's parameters: references only, never secret material.
pub fn document_parameters(
    settings: &AssociationSettings,
    export: &ExportResult,
    cert_name: &str,
    reload_service: Option<&str>,
) -> HashMap<String, Vec<String>> {
    let mut parameters = HashMap::from([
        ("SecretId".to_string(), vec![export.secret_arn.clone()]),
        (
            "SecretVersionId".to_string(),
            vec![export.secret_version_id.clone()],
        ),
        ("ExpectedSerial".to_string(), vec![export.serial.clone()]),
        ("CertName".to_string(), vec![cert_name.to_string()]),
    ]);
    let backoff = settings.backoff_minutes.map(|m| m.to_string());
    let optional = [
        (
            "CertificateDirectory",
            settings.certificate_directory.as_deref(),
        ),
        (
            "PrivateKeyDirectory",
            settings.private_key_directory.as_deref(),
        ),
        ("FileOwner", settings.file_owner.as_deref()),
        ("FileGroup", settings.file_group.as_deref()),
        ("StateDirectory", settings.state_directory.as_deref()),
        ("BackoffMinutes", backoff.as_deref()),
        ("ReloadService", reload_service),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            parameters.insert(name.to_string(), vec![value.to_string()]);
        }
    }
    parameters
}

/// The association as it stands after [`set_desired_state`], and whether this call created it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub description: AssociationDescription,
    pub created: bool,
}

/// Makes the mapping's association hold `desired`: the recorded one (`recorded`) when it still
/// exists, else one of its name left by an earlier run that stopped before recording it, else a
/// new one.
pub async fn set_desired_state(
    ssm: &aws_sdk_ssm::Client,
    desired: &Desired,
    recorded: Option<&str>,
) -> Result<Applied, CertshipError> {
    if let Some(id) = recorded {
        if let Some(description) = update(ssm, desired, id).await? {
            return Ok(Applied {
                description,
                created: false,
            });
        }
        tracing::warn!(
            association_id = %id,
            association_name = %desired.association_name,
            "the recorded association no longer exists; looking for one by name"
        );
    }
    if let Some(id) = find_by_name(ssm, &desired.association_name).await?
        && let Some(description) = update(ssm, desired, &id).await?
    {
        return Ok(Applied {
            description,
            created: false,
        });
    }
    Ok(Applied {
        description: create(ssm, desired).await?,
        created: true,
    })
}

/// Describes the association and sends it back with `desired`, under the described version;
/// when another writer's update won meanwhile, describes it again (at most
/// [`VERSION_CONFLICT_RETRIES`] times). `None` when the association does not exist.
async fn update(
    ssm: &aws_sdk_ssm::Client,
    desired: &Desired,
    association_id: &str,
) -> Result<Option<AssociationDescription>, CertshipError> {
    let mut conflicts = 0;
    loop {
        let described = match ssm
            .describe_association()
            .association_id(association_id)
            .send()
            .await
        {
            Ok(out) => out.association_description.ok_or_else(|| {
                CertshipError::Service(format!(
                    "DescribeAssociation returned no description of {association_id}"
                ))
            })?,
            Err(err) => {
                return match err.as_service_error() {
                    Some(DescribeAssociationError::AssociationDoesNotExist(_)) => Ok(None),
                    _ => Err(CertshipError::from_sdk("DescribeAssociation", err)),
                };
            }
        };
        match update_request(ssm, desired, association_id, &described)
            .send()
            .await
        {
            Ok(out) => {
                return out.association_description.map(Some).ok_or_else(|| {
                    CertshipError::Service(format!(
                        "UpdateAssociation returned no description of {association_id}"
                    ))
                });
            }
            Err(err) => match err.as_service_error() {
                Some(UpdateAssociationError::AssociationDoesNotExist(_)) => return Ok(None),
                Some(UpdateAssociationError::InvalidAssociationVersion(_))
                    if conflicts < VERSION_CONFLICT_RETRIES =>
                {
                    conflicts += 1;
                    tracing::info!(
                        association_id = %association_id,
                        described_version = described.association_version().unwrap_or(""),
                        conflicts,
                        "another writer updated the association first; describing it again"
                    );
                }
                Some(e) => {
                    let refused = update_refusal(e);
                    return Err(ssm_error("UpdateAssociation", desired, refused, err));
                }
                None => return Err(CertshipError::from_sdk("UpdateAssociation", err)),
            },
        }
    }
}

/// Sets every field certship owns (but the document version) on a CreateAssociation or an
/// UpdateAssociation builder. The SDK's two builders are distinct types with the same setters;
/// one list keeps creation and update from drifting apart.
macro_rules! with_owned_fields {
    ($builder:expr, $desired:expr) => {{
        let desired: &Desired = $desired;
        $builder
            .name(&desired.document_name)
            .targets(desired.target.clone())
            .set_parameters(Some(desired.parameters.clone()))
            .schedule_expression(&desired.schedule)
            .output_location(desired.output_location.clone())
            .association_name(&desired.association_name)
            .max_concurrency(&desired.max_concurrency)
            .max_errors(&desired.max_errors)
            .compliance_severity(AssociationComplianceSeverity::High)
            .sync_compliance(AssociationSyncCompliance::Auto)
            // Not only at the cron interval: new and returning targets run it at once.
            .apply_only_at_cron_interval(false)
            .set_association_dispatch_assume_role(desired.dispatch_role_arn.clone())
    }};
}

/// UpdateAssociation of `described` to `desired`.
fn update_request(
    ssm: &aws_sdk_ssm::Client,
    desired: &Desired,
    association_id: &str,
    described: &AssociationDescription,
) -> aws_sdk_ssm::operation::update_association::builders::UpdateAssociationFluentBuilder {
    // A version an operator pinned is kept, unless the stack now runs another document.
    let document_version = match described.name() {
        Some(name) if name == desired.document_name => described
            .document_version()
            .unwrap_or(DEFAULT_DOCUMENT_VERSION),
        _ => DEFAULT_DOCUMENT_VERSION,
    };
    let update = ssm
        .update_association()
        .association_id(association_id)
        // Optimistic concurrency: refused if another update made a newer version meanwhile.
        .set_association_version(described.association_version().map(str::to_string));
    with_owned_fields!(update, desired)
        .document_version(document_version)
        // The fields certship does not own, copied from the described association:
        // UpdateAssociation overwrites every optional field it is not sent with null, so an
        // operator's additions (a change calendar, alarms, an offset...) would vanish at each
        // deployment otherwise.
        .set_calendar_names(non_empty(described.calendar_names()))
        .set_schedule_offset(described.schedule_offset())
        .set_duration(described.duration())
        .set_target_maps(non_empty(described.target_maps()))
        .set_alarm_configuration(described.alarm_configuration().cloned())
        .set_target_locations(non_empty(described.target_locations()))
        .set_automation_target_parameter_name(
            described
                .automation_target_parameter_name()
                .map(str::to_string),
        )
}

/// A list field as UpdateAssociation takes it: an empty one is not sent.
fn non_empty<T: Clone>(values: &[T]) -> Option<Vec<T>> {
    (!values.is_empty()).then(|| values.to_vec())
}

/// The id of an association named `name`, if there is one.
async fn find_by_name(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<Option<String>, CertshipError> {
    let filter = AssociationFilter::builder()
        .key(AssociationFilterKey::AssociationName)
        .value(name)
        .build()
        .map_err(|e| CertshipError::Service(format!("could not build the filter: {e}")))?;
    let mut found = Vec::new();
    let mut next_token = None;
    loop {
        let page = ssm
            .list_associations()
            .association_filter_list(filter.clone())
            .max_results(50)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| CertshipError::from_sdk("ListAssociations", e))?;
        found.extend(
            page.associations()
                .iter()
                .filter(|a| a.association_name() == Some(name))
                .filter_map(|a| a.association_id().map(str::to_string)),
        );
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => break,
        }
    }
    if found.len() > 1 {
        tracing::warn!(
            association_name = %name,
            associations = %found.join(","),
            "several associations have the mapping's name; updating the first"
        );
    }
    Ok(found.into_iter().next())
}

/// CreateAssociation of `desired`, tagged with its mapping.
async fn create(
    ssm: &aws_sdk_ssm::Client,
    desired: &Desired,
) -> Result<AssociationDescription, CertshipError> {
    let tag = Tag::builder()
        .key(MAPPING_TAG)
        .value(&desired.mapping_id)
        .build()
        .map_err(|e| CertshipError::Service(format!("could not build the tag: {e}")))?;
    let created = with_owned_fields!(ssm.create_association(), desired)
        .document_version(DEFAULT_DOCUMENT_VERSION)
        .tags(tag)
        .send()
        .await
        .map_err(|err| {
            let refused = err.as_service_error().and_then(create_refusal);
            ssm_error("CreateAssociation", desired, refused, err)
        })?;
    created.association_description.ok_or_else(|| {
        CertshipError::Service("CreateAssociation returned no association description".into())
    })
}

/// Deletes an association this call created but could not record (another deployment of the
/// mapping recorded its own first), so no unrecorded association keeps installing an old version.
pub async fn delete(ssm: &aws_sdk_ssm::Client, association_id: &str) -> Result<(), CertshipError> {
    match ssm
        .delete_association()
        .association_id(association_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err) => match err.as_service_error() {
            Some(DeleteAssociationError::AssociationDoesNotExist(_)) => Ok(()),
            _ => Err(CertshipError::from_sdk("DeleteAssociation", err)),
        },
    }
}

/// What State Manager refused in certship's configuration, read from the operations' modeled
/// errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Document,
    DocumentVersion,
    Parameters,
    Schedule,
    OutputLocation,
    Target,
    TargetMaps,
    AssociationLimit,
    VersionLimit,
    TooManyUpdates,
    VersionConflict,
}

fn create_refusal(err: &CreateAssociationError) -> Option<Refused> {
    match err {
        CreateAssociationError::InvalidDocument(_) => Some(Refused::Document),
        CreateAssociationError::InvalidDocumentVersion(_) => Some(Refused::DocumentVersion),
        CreateAssociationError::InvalidParameters(_) => Some(Refused::Parameters),
        CreateAssociationError::InvalidSchedule(_) => Some(Refused::Schedule),
        CreateAssociationError::InvalidOutputLocation(_) => Some(Refused::OutputLocation),
        CreateAssociationError::InvalidTarget(_) => Some(Refused::Target),
        CreateAssociationError::InvalidTargetMaps(_) => Some(Refused::TargetMaps),
        CreateAssociationError::AssociationLimitExceeded(_) => Some(Refused::AssociationLimit),
        _ => None,
    }
}

fn update_refusal(err: &UpdateAssociationError) -> Option<Refused> {
    match err {
        UpdateAssociationError::InvalidDocument(_) => Some(Refused::Document),
        UpdateAssociationError::InvalidDocumentVersion(_) => Some(Refused::DocumentVersion),
        UpdateAssociationError::InvalidParameters(_) => Some(Refused::Parameters),
        UpdateAssociationError::InvalidSchedule(_) => Some(Refused::Schedule),
        UpdateAssociationError::InvalidOutputLocation(_) => Some(Refused::OutputLocation),
        UpdateAssociationError::InvalidTarget(_) => Some(Refused::Target),
        UpdateAssociationError::InvalidTargetMaps(_) => Some(Refused::TargetMaps),
        UpdateAssociationError::AssociationVersionLimitExceeded(_) => Some(Refused::VersionLimit),
        UpdateAssociationError::TooManyUpdates(_) => Some(Refused::TooManyUpdates),
        UpdateAssociationError::InvalidAssociationVersion(_) => Some(Refused::VersionConflict),
        _ => None,
    }
}

/// An SSM failure as an operator can act on it: what State Manager refused in certship's
/// configuration is a `ConfigurationError` naming the setting; throttling is `Throttled`.
fn ssm_error<E, R>(
    operation: &str,
    desired: &Desired,
    refused: Option<Refused>,
    err: SdkError<E, R>,
) -> CertshipError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (Some(refused), Some(service)) = (refused, err.as_service_error()) else {
        return CertshipError::from_sdk(operation, err);
    };
    let message = service.message().unwrap_or("no message").to_string();
    let document = &desired.document_name;
    let rejected = |what: String| {
        CertshipError::Configuration(format!(
            "{operation}: State Manager refused {what}: {message}"
        ))
    };
    match refused {
        Refused::Document => CertshipError::Configuration(format!(
            "{operation}: the install document {document} does not exist in this account and \
             region (INSTALL_DOCUMENT_NAME); deploy the stack's document: {message}"
        )),
        Refused::DocumentVersion => rejected(format!(
            "the version of the install document {document} the association runs; set it to \
             $DEFAULT or an existing version"
        )),
        Refused::Parameters => rejected(format!(
            "the parameters of the install document {document} (is the deployed document older \
             than this function?)"
        )),
        Refused::Schedule => rejected(format!(
            "the schedule {} (RECONCILE_SCHEDULE)",
            desired.schedule
        )),
        Refused::OutputLocation => {
            let location = desired.output_location.s3_location();
            rejected(format!(
                "the output location s3://{}/{} (ASSOCIATION_OUTPUT_BUCKET must name a bucket in \
                 this region that the hosts may write to)",
                location
                    .and_then(|l| l.output_s3_bucket_name())
                    .unwrap_or_default(),
                location
                    .and_then(|l| l.output_s3_key_prefix())
                    .unwrap_or_default()
            ))
        }
        Refused::Target => rejected(format!("the target {}", desired.target_text())),
        Refused::TargetMaps => rejected(
            "the association's TargetMaps, which an operator added and which cannot be combined \
             with certship's tag target"
                .to_string(),
        ),
        Refused::AssociationLimit => CertshipError::Configuration(format!(
            "{operation}: this account and region hold State Manager's maximum of associations \
             (2,000 per account and region unless Service Quotas says otherwise); unmap \
             certificates no longer deployed or delete unused associations, then redeploy: \
             {message}"
        )),
        Refused::VersionLimit => CertshipError::Configuration(format!(
            "{operation}: the association {} has reached State Manager's 1,000 versions; delete \
             it and redeploy (certship creates a new one): {message}",
            desired.association_name
        )),
        Refused::TooManyUpdates => CertshipError::Throttled(format!(
            "{operation}: State Manager is applying another update of {}: {message}",
            desired.association_name
        )),
        Refused::VersionConflict => CertshipError::Service(format!(
            "{operation}: the association {} was updated by another writer {} times in a row; \
             retry: {message}",
            desired.association_name,
            VERSION_CONFLICT_RETRIES + 1
        )),
    }
}
