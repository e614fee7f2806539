//! Convergence end to end on the local cloud: one State Manager association per mapping is the
//! desired state, the emulated agents apply it to hosts that are late, come back or drift, and
//! every run's outcome reaches the evidence table. Each test asserts the files on the hosts, the
//! evidence and the counts (executions, commands, reloads).
//!
//! The clouds here compress one hour of schedule to an hour, so no scheduled run comes round
//! during a test: only deployments, agents seeing a host for the first time or again, and
//! `local tick` run the association.

mod common;

use certship_cli::demo::{installed_files, next_execution, request};
use certship_local::hosts::Simulation;
use certship_local::renewal;
use certship_local::state_manager::AgentSettings;
use certship_shared::DeploymentRequest;
use certship_shared::evidence::HostEvidence;
use certship_shared::host_report::{Outcome, Reason};
use common::{CERT_NAME, Cloud, serial_of, start};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the issue promises: a late, newly tagged or returning host holds the current
/// certificate within 15 s on the local cloud (its agent polls every second).
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(15);

async fn start_quiet(configure: impl FnOnce(&mut certship_local::LocalOptions)) -> Cloud {
    start(|o| {
        o.agent = AgentSettings {
            poll_period: Duration::from_secs(1),
            schedule_hour: Duration::from_secs(3600),
            ..AgentSettings::default()
        };
        configure(o);
    })
    .await
}

/// A cloud whose env=dev hosts (`healthy` of them, plus `others` as given) got the certificate
/// by one successful deployment.
struct Deployed {
    cloud: Cloud,
    request: DeploymentRequest,
    serial: String,
    hosts: Vec<String>,
}

async fn deployed(
    configure: impl FnOnce(&mut certship_local::LocalOptions),
    simulations: &[Simulation],
) -> (Deployed, certship_cli::ops::execution::Ending) {
    let cloud = start_quiet(configure).await;
    let mut hosts = Vec::new();
    for simulate in simulations {
        hosts.push(cloud.host("dev", *simulate).await);
    }
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "dev"), Some("nginx"));
    let (_, ending) = cloud.deploy(&request).await;
    // The serial the deployment made desired (a failed execution has no output).
    let serial = cloud
        .mapping(&request)
        .await
        .and_then(|m| m.serial)
        .expect("the mapping records the serial");
    (
        Deployed {
            cloud,
            request,
            serial,
            hosts,
        },
        ending,
    )
}

impl Deployed {
    async fn evidence(&self) -> HashMap<String, HostEvidence> {
        self.cloud.evidence(&self.request).await
    }

    /// One `local tick`, then waits until each of `hosts` reported a run newer than its last.
    async fn tick_and_settle(&self, hosts: &[String]) -> HashMap<String, HostEvidence> {
        let before = self.evidence().await;
        assert_eq!(self.cloud.tick().await, 1, "one association");
        let mut after = HashMap::new();
        for host in hosts {
            let last = before.get(host).and_then(|e| e.run_id.clone());
            let evidence = self
                .cloud
                .until_evidence(&self.request, host, Duration::from_secs(30), |e| {
                    e.run_id != last
                })
                .await;
            after.insert(host.clone(), evidence);
        }
        after
    }
}

fn assert_outcome(evidence: &HostEvidence, outcome: Outcome, reason: Option<Reason>) {
    assert_eq!(evidence.outcome, outcome, "{evidence:?}");
    assert_eq!(
        evidence.reason.as_deref(),
        reason.map(|r| r.as_str()),
        "{evidence:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_launched_after_the_deployment_gets_the_certificate_without_a_new_execution() {
    let (fleet, ending) = deployed(|_| {}, &[Simulation::Healthy]).await;
    assert!(ending.succeeded(), "{ending:?}");
    let cloud = &fleet.cloud;

    let late = cloud.host("dev", Simulation::Healthy).await;
    let took = cloud
        .until_holds(&late, &fleet.serial, CONVERGENCE_LIMIT)
        .await;

    println!("late host converged in {} ms", took.as_millis());
    cloud.assert_installed(&late, &fleet.serial);
    let evidence = cloud
        .until_evidence(&fleet.request, &late, CONVERGENCE_LIMIT, |_| true)
        .await;
    assert_outcome(&evidence, Outcome::Installed, Some(Reason::Missing));
    assert!(evidence.holds(&fleet.secret_version().await));
    assert_eq!(cloud.executions().await, 1, "a second execution started");
    assert_eq!(cloud.commands_sent().await, 0, "a command was sent");
    assert_eq!(cloud.reloads(&late), ["reload-or-restart nginx"]);
}

impl Deployed {
    /// The secret version the mapping's association carries.
    async fn secret_version(&self) -> String {
        self.cloud
            .mapping(&self.request)
            .await
            .unwrap()
            .secret_version_id
            .expect("the mapping records its secret version")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_tagged_after_the_deployment_converges() {
    let cloud = start_quiet(|_| {}).await;
    let dev = cloud.host("dev", Simulation::Healthy).await;
    let untagged = cloud
        .host_tagged(&[("team", "web")], Simulation::Healthy)
        .await;
    let arn = cloud.certificate().await;
    let request = request(&arn, CERT_NAME, ("env", "dev"), None);
    let (_, ending) = cloud.deploy(&request).await;
    assert!(ending.succeeded(), "{ending:?}");
    let serial = serial_of(&ending);
    cloud.assert_installed(&dev, &serial);
    assert!(!cloud.has_files(&untagged));

    cloud.tag(&untagged, "env", "dev").await;
    cloud
        .until_holds(&untagged, &serial, CONVERGENCE_LIMIT)
        .await;

    cloud.assert_installed(&untagged, &serial);
    assert_eq!(cloud.executions().await, 1);
    assert_eq!(cloud.commands_sent().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_host_is_deferred_and_converges_when_it_is_back() {
    let (fleet, ending) = deployed(|_| {}, &[Simulation::Healthy, Simulation::Offline]).await;
    let cloud = &fleet.cloud;
    let [online, offline] = [&fleet.hosts[0], &fleet.hosts[1]];

    assert!(ending.succeeded(), "{ending:?}");
    let counts = ending
        .output
        .as_ref()
        .unwrap()
        .install
        .as_ref()
        .unwrap()
        .hosts;
    assert_eq!(
        (
            counts.total,
            counts.succeeded,
            counts.deferred,
            counts.pending,
            counts.failed
        ),
        (2, 1, 1, 0, 0),
        "{counts:?}"
    );
    cloud.assert_installed(online, &fleet.serial);
    assert!(!cloud.has_files(offline));
    assert!(!fleet.evidence().await.contains_key(offline));

    cloud.simulate(offline, Simulation::Healthy);
    cloud
        .until_holds(offline, &fleet.serial, CONVERGENCE_LIMIT)
        .await;

    cloud.assert_installed(offline, &fleet.serial);
    let evidence = cloud
        .until_evidence(&fleet.request, offline, CONVERGENCE_LIMIT, |_| true)
        .await;
    assert_outcome(&evidence, Outcome::Installed, Some(Reason::Missing));
    assert_eq!(cloud.executions().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_repaired_on_the_next_run_with_one_reload_and_untouched_hosts_are_not_reloaded() {
    let (fleet, ending) = deployed(|_| {}, &[Simulation::Healthy; 4]).await;
    assert!(ending.succeeded(), "{ending:?}");
    let cloud = &fleet.cloud;
    let [overwritten, loosened, deleted, untouched] = [0, 1, 2, 3].map(|i| fleet.hosts[i].clone());
    let installed: HashMap<String, _> = fleet
        .hosts
        .iter()
        .map(|h| (h.clone(), cloud.snapshot(h)))
        .collect();
    let reloads: HashMap<String, usize> = fleet
        .hosts
        .iter()
        .map(|h| (h.clone(), cloud.reloads(h).len()))
        .collect();
    let [(key, _), (chain, _)] = {
        let files = installed_files(CERT_NAME);
        [files[3].clone(), files[1].clone()]
    };
    assert!(key.ends_with("-privkey.pem") && chain.ends_with("-chain.pem"));

    std::fs::write(
        cloud.file(&overwritten, &key),
        "-----BEGIN PRIVATE KEY-----\nhand-edited\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            cloud.file(&loosened, &key),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    std::fs::remove_file(cloud.file(&deleted, &chain)).unwrap();

    let after = fleet.tick_and_settle(&fleet.hosts).await;

    for host in [&overwritten, &loosened, &deleted] {
        assert_eq!(cloud.snapshot(host), installed[host], "{host} after repair");
        assert_outcome(&after[host], Outcome::Repaired, Some(Reason::Drift));
        assert!(after[host].reloaded, "{:?}", after[host]);
        assert_eq!(cloud.reloads(host).len(), reloads[host] + 1, "{host}");
    }
    assert_outcome(&after[&untouched], Outcome::Unchanged, None);

    for _ in 0..2 {
        let again = fleet.tick_and_settle(&fleet.hosts).await;
        for host in &fleet.hosts {
            assert_outcome(&again[host], Outcome::Unchanged, None);
        }
    }
    assert_eq!(cloud.reloads(&untouched).len(), reloads[&untouched]);
    for host in [&overwritten, &loosened, &deleted] {
        assert_eq!(cloud.reloads(host).len(), reloads[host] + 1, "{host}");
        assert_eq!(cloud.snapshot(host), installed[host]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_updates_the_association_to_version_2_with_the_same_settings() {
    let (fleet, ending) = deployed(|_| {}, &[Simulation::Healthy; 2]).await;
    assert!(ending.succeeded(), "{ending:?}");
    let cloud = &fleet.cloud;
    let first = cloud.mapping(&fleet.request).await.unwrap();
    let association_id = first.association_id.clone().expect("the association");

    let renewed = renewal::renew(
        &cloud.endpoint,
        cloud.sdk_config(),
        &fleet.request.certificate_arn,
    )
    .await
    .unwrap();
    let earlier: Vec<String> = cloud
        .execution_list()
        .await
        .iter()
        .map(|e| e.execution_arn().to_string())
        .collect();
    let execution = next_execution(cloud.sdk_config(), &cloud.state_machine_arn, &earlier)
        .await
        .unwrap();
    let ending = cloud.wait(&execution).await;

    assert!(ending.succeeded(), "{ending:?}");
    assert!(certship_shared::serial::same_serial(
        &serial_of(&ending),
        &renewed.serial
    ));
    for host in &fleet.hosts {
        cloud.assert_installed(host, &renewed.serial);
    }
    let versions = cloud
        .ssm()
        .list_association_versions()
        .association_id(&association_id)
        .send()
        .await
        .unwrap();
    let mut versions = versions.association_versions().to_vec();
    versions.sort_by_key(|v| v.association_version().unwrap_or_default().to_string());
    assert_eq!(versions.len(), 2, "{versions:?}");
    let (v1, v2) = (&versions[0], &versions[1]);
    assert_eq!(v2.association_version(), Some("2"));
    assert_eq!(v1.schedule_expression(), v2.schedule_expression());
    assert!(v2.schedule_expression().is_some());
    assert_eq!(v1.max_concurrency(), v2.max_concurrency());
    assert_eq!(v1.max_errors(), v2.max_errors());
    assert_eq!(v1.output_location(), v2.output_location());
    assert!(v2.output_location().is_some());
    assert_eq!(v1.targets(), v2.targets());
    assert_eq!(v1.sync_compliance(), v2.sync_compliance());
    assert_eq!(
        v1.apply_only_at_cron_interval(),
        v2.apply_only_at_cron_interval()
    );
    let version_of = |v: &aws_sdk_ssm::types::AssociationVersionInfo| {
        v.parameters().unwrap()["SecretVersionId"].clone()
    };
    assert_ne!(version_of(v1), version_of(v2));
    let mapping = cloud.mapping(&fleet.request).await.unwrap();
    assert_eq!(
        mapping.association_id.as_deref(),
        Some(association_id.as_str())
    );
    assert_eq!(version_of(v2), [mapping.secret_version_id.clone().unwrap()]);
    assert_eq!(cloud.commands_sent().await, 0, "a command was sent");
    for (host, evidence) in fleet.evidence().await {
        assert_outcome(&evidence, Outcome::Installed, Some(Reason::NewSerial));
        assert!(
            evidence.holds(mapping.secret_version_id.as_deref().unwrap()),
            "{host}: {evidence:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_reload_fails_rolls_back_once_then_backs_off() {
    let (fleet, ending) = deployed(
        |o| o.association.max_concurrency = "100%".into(),
        &[Simulation::Healthy, Simulation::ReloadFails],
    )
    .await;
    let cloud = &fleet.cloud;
    let [healthy, broken] = [&fleet.hosts[0], &fleet.hosts[1]];

    assert_eq!(ending.error.as_deref(), Some("InstallFailed"), "{ending:?}");
    let cause = ending.cause.as_deref().unwrap_or_default();
    assert!(cause.contains(broken.as_str()), "{cause}");
    cloud.assert_installed(healthy, &fleet.serial);
    assert!(
        !cloud
            .file(broken, &installed_files(CERT_NAME)[0].0)
            .exists()
    );
    let evidence = fleet.evidence().await;
    assert_outcome(
        &evidence[broken],
        Outcome::RolledBack,
        Some(Reason::Missing),
    );
    let reloads = cloud.reloads(broken);
    assert!(
        reloads
            .iter()
            .any(|r| r.starts_with("reload-or-restart nginx")),
        "{reloads:?}"
    );

    for _ in 0..2 {
        let after = fleet.tick_and_settle(&fleet.hosts).await;
        assert_outcome(&after[broken], Outcome::Backoff, None);
        assert_outcome(&after[healthy], Outcome::Unchanged, None);
    }
    assert_eq!(
        cloud.reloads(broken),
        reloads,
        "the broken host was reloaded again"
    );
    assert!(
        !cloud
            .file(broken, &installed_files(CERT_NAME)[0].0)
            .exists()
    );
}

/// Runs the `certship` binary against `cloud`, as `eval "$(certship local env)"` sets it up.
fn certship(cloud: &Cloud, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_certship"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("CERTSHIP_") {
            command.env_remove(name);
        }
    }
    command
        .env("AWS_ENDPOINT_URL", &cloud.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", &cloud.region)
        .env("CERTSHIP_STATE_MACHINE_ARN", &cloud.state_machine_arn)
        .env("CERTSHIP_TABLE_NAME", &cloud.table_name)
        .env("CERTSHIP_EVIDENCE_TABLE_NAME", &cloud.evidence_table_name)
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("certship runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_not_serial_lists_exactly_the_hosts_that_do_not_hold_it() {
    let (fleet, ending) = deployed(|_| {}, &[Simulation::Healthy; 3]).await;
    assert!(ending.succeeded(), "{ending:?}");
    let cloud = &fleet.cloud;
    let [current, stale] = [&fleet.hosts[0], &fleet.hosts[1]];
    // `stale` misses the renewal; `missing` registered but has never run.
    cloud.simulate(stale, Simulation::Offline);
    let missing = cloud.host("dev", Simulation::Offline).await;
    let renewed = renewal::renew(
        &cloud.endpoint,
        cloud.sdk_config(),
        &fleet.request.certificate_arn,
    )
    .await
    .unwrap();
    for host in [current, &fleet.hosts[2]] {
        cloud
            .until_holds(host, &renewed.serial, Duration::from_secs(60))
            .await;
    }
    cloud
        .until_evidence(&fleet.request, current, Duration::from_secs(30), |e| {
            e.serial
                .as_deref()
                .is_some_and(|s| certship_shared::serial::same_serial(s, &renewed.serial))
        })
        .await;
    cloud
        .until_evidence(
            &fleet.request,
            &fleet.hosts[2],
            Duration::from_secs(30),
            |e| {
                e.serial
                    .as_deref()
                    .is_some_and(|s| certship_shared::serial::same_serial(s, &renewed.serial))
            },
        )
        .await;

    let listed = certship(
        cloud,
        &[
            "hosts",
            "--target",
            "env=dev",
            "--not-serial",
            &renewed.serial,
            "--output",
            "json",
        ],
    );

    assert!(listed.status.success(), "{listed:?}");
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut ids: Vec<&str> = json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["instanceId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![stale.as_str(), missing.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{json}");
    // The old serial, in any notation, is not held by the renewed hosts either.
    let old = certship(
        cloud,
        &[
            "hosts",
            "--target",
            "env=dev",
            "--not-serial",
            &fleet.serial,
            "--output",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&old.stdout).unwrap();
    assert_eq!(json["hosts"].as_array().unwrap().len(), 3, "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_loses_the_tag_is_no_longer_run_and_unmap_deletes_the_association() {
    let (fleet, ending) = deployed(|_| {}, &[Simulation::Healthy; 2]).await;
    assert!(ending.succeeded(), "{ending:?}");
    let cloud = &fleet.cloud;
    let [kept, left] = [&fleet.hosts[0], &fleet.hosts[1]];
    let left_evidence = fleet.evidence().await[left].clone();

    cloud.untag(left, "env").await;
    // The agents act on the next poll; the tick must not reach the untagged host.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = fleet.tick_and_settle(std::slice::from_ref(kept)).await;
    assert_outcome(&after[kept], Outcome::Unchanged, None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fleet.evidence().await[left].run_id, left_evidence.run_id);
    cloud.assert_installed(left, &fleet.serial);

    let unmapped = certship(
        cloud,
        &[
            "unmap",
            "--certificate-arn",
            &fleet.request.certificate_arn,
            "--target",
            "env=dev",
            "--name",
            CERT_NAME,
            "--yes",
        ],
    );
    assert!(unmapped.status.success(), "{unmapped:?}");

    let associations = cloud.ssm().list_associations().send().await.unwrap();
    assert!(
        associations.associations().is_empty(),
        "{:?}",
        associations.associations()
    );
    assert!(fleet.evidence().await.is_empty());
    assert!(cloud.mapping(&fleet.request).await.is_none());
    assert_eq!(cloud.tick().await, 0);
    for host in &fleet.hosts {
        cloud.assert_installed(host, &fleet.serial);
    }
    // Nothing runs any more: no new evidence, no reload, on any host.
    let outputs = cloud.association_outputs().await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(fleet.evidence().await.is_empty());
    assert_eq!(cloud.association_outputs().await.len(), outputs);
    assert_eq!(cloud.reloads(kept), ["reload-or-restart nginx"]);
    assert_eq!(cloud.reloads(left), ["reload-or-restart nginx"]);
}
