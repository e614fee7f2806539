//! Running a command on its hosts, MaxConcurrency at a time, stopping after MaxErrors; each
//! host's invocation through the shared runner.

use super::state::Details;
use super::*;
use crate::hosts::Simulation;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

impl RunCommand {
    /// Runs the command on its hosts, `concurrency` at a time, sending to no further host once
    /// more than `error_limit` have failed.
    pub(super) async fn run(
        self: Arc<Self>,
        command_id: String,
        plan: Plan,
        instance_ids: Vec<String>,
        concurrency: usize,
        error_limit: usize,
        delivery_deadline: tokio::time::Instant,
    ) {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let errors = Arc::new(AtomicUsize::new(0));
        let plan = Arc::new(plan);
        let mut tasks = Vec::new();
        for (index, instance_id) in instance_ids.iter().enumerate() {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            if self.runner.is_stopping() {
                break;
            }
            if errors.load(Ordering::SeqCst) > error_limit {
                for id in &instance_ids[index..] {
                    self.finish(&command_id, id, Details::Cancelled, -1, None);
                }
                break;
            }
            let this = Arc::clone(&self);
            let (command_id, instance_id, plan, errors) = (
                command_id.clone(),
                instance_id.clone(),
                Arc::clone(&plan),
                Arc::clone(&errors),
            );
            tasks.push(tokio::spawn(async move {
                let failed = this
                    .run_on_host(&command_id, &instance_id, &plan, delivery_deadline)
                    .await;
                if failed {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                drop(permit);
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Runs the script on one host; true when the host counts as an error toward MaxErrors.
    async fn run_on_host(
        &self,
        command_id: &str,
        instance_id: &str,
        plan: &Plan,
        delivery_deadline: tokio::time::Instant,
    ) -> bool {
        let host = self.hosts.load(instance_id);
        let Some(host) = host.filter(|h| h.simulate != Simulation::Offline) else {
            // Only simulated hosts are targeted, so this is one whose agent is offline.
            // No agent answers: SSM keeps the invocation pending until the delivery timeout,
            // which does not count toward MaxErrors.
            tokio::time::sleep_until(delivery_deadline).await;
            self.finish(command_id, instance_id, Details::DeliveryTimedOut, -1, None);
            return false;
        };
        self.update(command_id, instance_id, |i| {
            i.details = Details::InProgress;
            i.started = Some(SystemTime::now());
        });
        let root = self.hosts.root(instance_id);
        let outcome = self
            .runner
            .execute(
                instance_id,
                &root,
                Path::new(command_id),
                plan,
                host.simulate,
            )
            .await;
        match outcome {
            Ok(Some(out)) => {
                let details = if out.code == 0 {
                    Details::Success
                } else {
                    Details::Failed
                };
                self.finish(
                    command_id,
                    instance_id,
                    details,
                    out.code,
                    Some((out.stdout, out.stderr)),
                );
                out.code != 0
            }
            Ok(None) => {
                self.finish(
                    command_id,
                    instance_id,
                    Details::ExecutionTimedOut,
                    -1,
                    Some((
                        String::new(),
                        format!(
                            "the script ran longer than its {} s timeout and was stopped",
                            plan.execution_timeout.as_secs()
                        ),
                    )),
                );
                true
            }
            Err(e) => {
                self.finish(
                    command_id,
                    instance_id,
                    Details::Failed,
                    1,
                    Some((
                        String::new(),
                        format!("the local agent could not run the script: {e}"),
                    )),
                );
                true
            }
        }
    }

    pub(super) fn update(
        &self,
        command_id: &str,
        instance_id: &str,
        f: impl FnOnce(&mut Invocation),
    ) {
        if let Some(invocation) = self.lock().get_mut(command_id).and_then(|c| {
            c.invocations
                .iter_mut()
                .find(|i| i.instance_id == instance_id)
        }) {
            f(invocation);
        }
    }

    pub(super) fn finish(
        &self,
        command_id: &str,
        instance_id: &str,
        details: Details,
        code: i32,
        output: Option<(String, String)>,
    ) {
        tracing::info!(
            command_id,
            instance_id,
            status = details.as_str(),
            "host finished"
        );
        self.update(command_id, instance_id, |i| {
            i.details = details;
            i.response_code = code;
            i.finished = Some(SystemTime::now());
            if let Some((stdout, stderr)) = output {
                i.stdout = stdout;
                i.stderr = stderr;
            }
        });
    }
}
