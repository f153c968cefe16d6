//! Containers: the orphan sweep (`runDockerCleanup`) and the container of one cleaned task.
//!
//! Every container named `<dockerPrefix><taskId>` whose task Singularity does not list as
//! active is stopped with `dockerStopTimeout` and removed with its volumes, running or exited.
//! The engine's listing gives names without the API's leading `/` (Singularity compared the
//! raw names with the prefix, so its sweep never matched). "Not found" counts as removed: the
//! container went away meanwhile.

use std::collections::HashSet;
use std::time::Duration;

use singularity_common::naming;
use singularity_containers::{ContainerEngine, EngineError};

/// What the sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Names of the containers removed.
    pub removed: Vec<String>,
    /// Containers that could not be removed, with why.
    pub failed: Vec<(String, String)>,
    /// Names kept because their task is active.
    pub kept: Vec<String>,
}

/// Stops and removes the orphaned containers (with `dry_run`, only lists them).
pub async fn sweep<E: ContainerEngine>(
    engine: &E,
    prefix: &str,
    active: &HashSet<String>,
    stop_timeout: Duration,
    dry_run: bool,
) -> Result<SweepReport, EngineError> {
    let mut report = SweepReport::default();
    for container in engine.list(prefix).await? {
        let Some(task_id) = naming::task_id_from_container_name(prefix, &container.name) else {
            continue;
        };
        if active.contains(task_id) {
            report.kept.push(container.name);
            continue;
        }
        if dry_run {
            println!(
                "would stop and remove container {} ({})",
                container.name,
                if container.running {
                    "running"
                } else {
                    "exited"
                }
            );
            report.removed.push(container.name);
            continue;
        }
        match stop_and_remove(engine, &container.id, container.running, stop_timeout).await {
            Ok(()) => {
                tracing::info!(name = container.name, "removed an orphaned container");
                report.removed.push(container.name);
            }
            Err(error) => {
                tracing::warn!(name = container.name, %error, "cannot remove an orphaned container");
                report.failed.push((container.name, error.to_string()));
            }
        }
    }
    Ok(report)
}

/// Stops (when running) and removes the container `name_or_id`; a missing one is fine.
pub async fn stop_and_remove<E: ContainerEngine>(
    engine: &E,
    name_or_id: &str,
    running: bool,
    stop_timeout: Duration,
) -> Result<(), EngineError> {
    if running {
        match engine.stop(name_or_id, stop_timeout).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => return Ok(()),
            // It may have stopped by itself meanwhile; the forced removal below kills
            // whatever still runs.
            Err(error) => tracing::debug!(name_or_id, %error, "stop failed; removing by force"),
        }
    }
    match engine.remove(name_or_id).await {
        Err(error) if !error.is_not_found() => Err(error),
        _ => Ok(()),
    }
}
