//! Starting and stopping the local cloud: moto server behind the gateway, provisioned from the
//! project's files, with renewal events drained into renewal-trigger.

use super::functions::{Function, FunctionSettings, Functions};
use super::gateway::Gateway;
use super::host_runner::{HostEnvironment, HostRunner};
use super::hosts::Hosts;
use super::provision::{self, Provisioned};
use super::run_command::RunCommand;
use super::state_manager::{AgentSettings, StateManager};
use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use certship_moto::{AcmeCa, AcmeCaOptions, MotoOptions, MotoServer};
use certship_shared::rules::{ReloadAllowlist, RequestRules};
use certship_stack::document::CommandDocument;
use dispatch_install::AssociationSettings;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The systemctl every simulated host runs.
const SYSTEMCTL: &str = include_str!("../assets/systemctl");

/// How to start a local cloud.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The certship checkout whose files are provisioned and whose `.venv` runs moto.
    pub project_dir: PathBuf,
    /// Where hosts and run-time files live (`.certship/local` by default).
    pub state_dir: PathBuf,
    /// The gateway's port (moto calls it back as `MOTO_PORT`); a free one when `None`.
    pub gateway_port: Option<u16>,
    pub region: String,
    pub allowed_reload_services: String,
    /// The association dispatch-install keeps per mapping, as the template's parameters set it
    /// in AWS (the output bucket and dispatch role are the local cloud's).
    pub association: AssociationSettings,
    /// The emulated SSM Agents' clock: how often they list their associations and how long an
    /// hour of an association's schedule lasts.
    pub agent: AgentSettings,
    /// How long the local ACME CA's certificates are valid (Pebble's default, 5 years, when
    /// `None`); a short one makes them due for renewal at once.
    pub acme_certificate_validity_seconds: Option<u64>,
}

impl LocalOptions {
    pub fn new(project_dir: impl Into<PathBuf>) -> Self {
        let project_dir = project_dir.into();
        Self {
            state_dir: project_dir.join(".certship/local"),
            project_dir,
            gateway_port: None,
            region: "us-east-1".into(),
            allowed_reload_services: "nginx,apache2,httpd,haproxy".into(),
            association: association_settings(&AssociationOverrides::default())
                .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}")),
            agent: AgentSettings::default(),
            acme_certificate_validity_seconds: None,
        }
    }
}

/// The association's settings that `certship local up` can change, as the template's
/// parameters change them in AWS; `None` keeps the default.
#[derive(Debug, Clone, Default)]
pub struct AssociationOverrides {
    pub install_deadline_seconds: Option<u64>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub reconcile_schedule: Option<String>,
}

/// dispatch-install's settings as the template gives them, with the local cloud's bucket and
/// dispatch role, read with dispatch-install's own parsing, so a value it would refuse in AWS is
/// refused here, before anything starts.
fn association_settings(overrides: &AssociationOverrides) -> Result<AssociationSettings> {
    use dispatch_install::settings;
    let values: std::collections::HashMap<&str, String> = [
        (
            settings::INSTALL_DEADLINE_SECONDS_VAR,
            overrides.install_deadline_seconds.map(|s| s.to_string()),
        ),
        (
            settings::MAX_CONCURRENCY_VAR,
            overrides.max_concurrency.clone(),
        ),
        (settings::MAX_ERRORS_VAR, overrides.max_errors.clone()),
        (
            settings::RECONCILE_SCHEDULE_VAR,
            overrides.reconcile_schedule.clone(),
        ),
        (
            settings::ASSOCIATION_OUTPUT_BUCKET_VAR,
            Some(provision::OUTPUT_BUCKET_NAME.to_string()),
        ),
        (
            settings::ASSOCIATION_DISPATCH_ROLE_ARN_VAR,
            Some(provision::dispatch_role_arn()),
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    Ok(AssociationSettings::from_lookup(|name| {
        values.get(name).cloned()
    })?)
}

impl LocalOptions {
    /// Applies `overrides` (see [`AssociationOverrides`]).
    pub fn override_association(&mut self, overrides: &AssociationOverrides) -> Result<()> {
        self.association = association_settings(overrides)?;
        Ok(())
    }
}

/// A running local cloud. Dropping it stops everything it started.
pub struct LocalCloud {
    pub endpoint: String,
    /// The gateway's port: the local cloud's one endpoint, and what moto calls back as `MOTO_PORT`.
    pub gateway_port: u16,
    /// moto server's own port, behind the gateway.
    pub moto_port: u16,
    pub region: String,
    pub state_machine_arn: String,
    /// The ACME issuance workflow.
    pub acme_state_machine_arn: String,
    /// The registry of ACME certificates (the template's `AcmeCertificateTable`).
    pub acme_table_name: String,
    pub table_name: String,
    /// The evidence table (the template's `EvidenceTable`).
    pub evidence_table_name: String,
    pub hosts: Hosts,
    pub functions: Arc<Functions>,
    config: SdkConfig,
    runner: Arc<HostRunner>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    moto: MotoServer,
    /// The local ACME CA (Pebble), validating DNS-01 against the emulated Route53.
    pub acme_ca: AcmeCa,
    /// The template's renewal schedule input, placeholders and all.
    renewal_schedule_input: String,
}

/// SDK configuration for an endpoint of the local cloud, with its dummy credentials.
pub async fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "certship-local",
        ))
        .load()
        .await
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn current_owner() -> Option<(String, String)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return None;
    }
    let id = |flag: &str| {
        std::process::Command::new("id")
            .arg(flag)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    Some((id("-un")?, id("-gn")?))
}

/// Starts moto server on `moto_port` from the project's virtualenv, logging to the state
/// directory, with Step Functions executing state machines.
async fn start_moto(
    project: &Path,
    state_dir: &Path,
    moto_port: u16,
    gateway_port: u16,
) -> Result<MotoServer> {
    let mut options = MotoOptions::new(project.join(".venv/bin/python"), project, moto_port);
    // moto's Step Functions calls Lambda and every other service at `localhost:$MOTO_PORT`
    // (moto's own variable); the gateway must take those calls, so MOTO_PORT is the gateway's
    // port, not moto's.
    options.callback_port = gateway_port;
    options.execute_state_machines = true;
    options.log = Some(state_dir.join("moto.log"));
    tokio::task::spawn_blocking(move || MotoServer::start(&options))
        .await
        .context("the thread starting moto server panicked")?
}

/// Starts the local ACME CA: Pebble, validating DNS-01 against moto's Route53 through a DNS
/// responder that reads the zones on every query.
async fn start_acme_ca(project: &Path, options: &LocalOptions, moto_port: u16) -> Result<AcmeCa> {
    let mut ca_options = AcmeCaOptions::new(
        project.join(".venv/bin/python"),
        project,
        format!("http://127.0.0.1:{moto_port}"),
        options.state_dir.join("acme-ca"),
    );
    ca_options.certificate_validity_seconds = options.acme_certificate_validity_seconds;
    tokio::task::spawn_blocking(move || AcmeCa::start(&ca_options))
        .await
        .context("the thread starting the ACME CA panicked")?
}

/// The install document only writes below directories its `allowedPattern` accepts; a state
/// directory whose path it refuses (spaces, `+`, too deep) would fail every host, so say so now.
fn check_host_paths(project: &Path, hosts_dir: &Path) -> Result<()> {
    let document = CommandDocument::install(project)?;
    let pattern = document
        .parameters
        .get("PrivateKeyDirectory")
        .and_then(|p| p.allowed_pattern.as_deref())
        .context("the install document has no PrivateKeyDirectory pattern")?;
    let example = hosts_dir.join("i-0123456789abcdef0/etc/ssl/private");
    if !regex::Regex::new(pattern)?.is_match(&example.display().to_string()) {
        bail!(
            "the install document refuses host paths like {} (its pattern is {pattern}); \
             choose a plainer directory with --state-dir",
            example.display()
        );
    }
    Ok(())
}

impl LocalCloud {
    /// Starts moto and the gateway, provisions everything, and returns once it all answers.
    pub async fn start(options: LocalOptions) -> Result<Self> {
        let project = options.project_dir.clone();
        let gateway_port = match options.gateway_port {
            Some(p) => p,
            None => free_port()?,
        };
        let listener = TcpListener::bind(("127.0.0.1", gateway_port))
            .await
            .with_context(|| {
                format!("listening on 127.0.0.1:{gateway_port} (choose another port with --port)")
            })?;
        let moto_port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{gateway_port}");

        // A fresh cloud: hosts of an earlier run belonged to instances that no longer exist.
        let hosts = Hosts::new(options.state_dir.join("hosts"));
        if hosts.dir().exists() {
            std::fs::remove_dir_all(hosts.dir())
                .with_context(|| format!("clearing {}", hosts.dir().display()))?;
        }
        std::fs::create_dir_all(hosts.dir())?;
        let bin = options.state_dir.join("bin");
        std::fs::create_dir_all(&bin)?;
        let systemctl = bin.join("systemctl");
        std::fs::write(&systemctl, SYSTEMCTL)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755))?;
        }

        check_host_paths(&project, hosts.dir())?;
        let moto = start_moto(&project, &options.state_dir, moto_port, gateway_port).await?;
        moto.extension().enable_step_functions_execution().await?;
        let moto_config =
            sdk_config(&format!("http://127.0.0.1:{moto_port}"), &options.region).await;
        let config = sdk_config(&endpoint, &options.region).await;
        let acme_ca = start_acme_ca(&project, &options, moto_port).await?;

        let state_machine_arn =
            provision::state_machine_arn(&options.region, provision::STATE_MACHINE_NAME);
        let rules = RequestRules::new(
            options.region.clone(),
            ReloadAllowlist::parse(&options.allowed_reload_services)?,
        );
        // The API's model as CloudFormation would deploy it with this allowlist, in this
        // region's partition.
        let mut units = rules.reload_allowlist().units().to_vec();
        units.sort();
        units.dedup();
        let template = certship_stack::Template::load(&project)?;
        let renewal_schedule_input = template.renewal_schedule_input()?;
        let stack_values =
            certship_stack::StackValues::new(rules.partition(), options.region.clone())
                .parameter("AllowedReloadServices", units.join(","));
        let request_model = template
            .request_model(&stack_values)
            .context("the API's request model")?;
        let issuance_model = template
            .request_model_at(certship_stack::CERTIFICATES_RESOURCE, &stack_values)
            .context("the API's issuance model")?;
        let acme_state_machine_arn =
            provision::state_machine_arn(&options.region, provision::ACME_STATE_MACHINE_NAME);
        let functions = Arc::new(Functions::new(
            &config,
            FunctionSettings {
                table_name: provision::TABLE_NAME.into(),
                event_bus_name: "default".into(),
                state_machine_arn: state_machine_arn.clone(),
                evidence_table_name: provision::EVIDENCE_TABLE_NAME.into(),
                rules,
                association: options.association.clone(),
                acme: acme_certificate::Settings {
                    ca_bundle: Some(acme_ca.tls_ca_pem_path().to_path_buf()),
                    table_name: provision::ACME_TABLE_NAME.into(),
                },
                acme_state_machine_arn: acme_state_machine_arn.clone(),
            },
        ));
        let runner = Arc::new(HostRunner::new(HostEnvironment {
            endpoint: endpoint.clone(),
            region: options.region.clone(),
            path_prefix: vec![bin, project.join(".venv/bin")],
            owner: current_owner(),
        }));
        let run_command = Arc::new(RunCommand::new(
            &moto_config,
            hosts.clone(),
            Arc::clone(&runner),
        ));
        let state_manager = Arc::new(StateManager::new(
            &moto_config,
            hosts.clone(),
            Arc::clone(&runner),
            options.agent,
        ));
        let api = super::api::LocalApi::new(
            aws_sdk_sfn::Client::new(&moto_config),
            state_machine_arn.clone(),
            &request_model,
            acme_state_machine_arn.clone(),
            &issuance_model,
        )?;
        let gateway = Arc::new(Gateway::new(
            Arc::clone(&functions),
            Arc::clone(&run_command),
            Arc::clone(&state_manager),
            api,
            moto_port,
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(gateway.serve(listener, shutdown_rx.clone()))];

        let Provisioned {
            state_machine_arn: created_arn,
            acme_state_machine_arn: created_acme_arn,
            renewal_queue_url,
            output_queue_url,
        } = provision::provision(&config, &project, &options.region).await?;
        if created_arn != state_machine_arn {
            bail!("the state machine is {created_arn}, expected {state_machine_arn}");
        }
        if created_acme_arn != acme_state_machine_arn {
            bail!(
                "the ACME state machine is {created_acme_arn}, expected {acme_state_machine_arn}"
            );
        }
        tasks.push(tokio::spawn(super::evidence::drain_output_queue(
            aws_sdk_sqs::Client::new(&config),
            output_queue_url,
            Arc::clone(&functions),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(super::state_manager::run_agents(
            Arc::clone(&state_manager),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(super::renewal::drain_renewal_queue(
            aws_sdk_sqs::Client::new(&config),
            renewal_queue_url,
            Arc::clone(&functions),
            shutdown_rx,
        )));

        Ok(Self {
            endpoint,
            gateway_port,
            moto_port,
            region: options.region,
            state_machine_arn,
            acme_state_machine_arn,
            acme_table_name: provision::ACME_TABLE_NAME.into(),
            table_name: provision::TABLE_NAME.into(),
            evidence_table_name: provision::EVIDENCE_TABLE_NAME.into(),
            hosts,
            functions,
            config,
            runner,
            shutdown,
            tasks,
            moto,
            acme_ca,
            renewal_schedule_input,
        })
    }

    /// SDK configuration that reaches this cloud through the gateway.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// Fires the ACME renewal schedule once, as EventBridge Scheduler does at `scheduled_time`
    /// (moto never fires schedules; see [`super::renewal::schedule_input`]), and returns
    /// renewal-trigger's answer: what the sweep found and started.
    pub async fn fire_renewal_schedule(
        &self,
        scheduled_time: std::time::SystemTime,
    ) -> Result<serde_json::Value> {
        let input = super::renewal::schedule_input(&self.renewal_schedule_input, scheduled_time)?;
        self.functions
            .invoke(Function::RenewalTrigger, input)
            .await
            .map_err(|e| anyhow::anyhow!("the renewal sweep failed: {e:?}"))
    }

    /// Invokes one of the functions as Lambda would.
    pub async fn invoke(
        &self,
        function: Function,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, super::functions::FunctionError> {
        self.functions.invoke(function, payload).await
    }

    /// Stops the gateway, every host script and moto.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.runner.shutdown();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.moto.stop();
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.runner.shutdown();
        self.moto.stop();
    }
}
