//! The executor cleanup: the hourly job finishing what Singularity executors left on an agent,
//! a drop-in for Singularity's `SingularityExecutorCleanup`, that never touches a running task.
//!
//! One run:
//!
//! 1. waits a random time up to `maxStartDelaySeconds`, so agents on one schedule do not all
//!    ask the API at once;
//! 2. asks the Mesos agent for its id and Singularity for the tasks active on it ([`api`]);
//!    with none, stops in safe mode (`safeModeWontRunWithNoTasks`) unless the host is
//!    decommissioned (and `cleanTasksWhenDecommissioned`). If the API cannot be asked,
//!    nothing is touched and the results say why;
//! 3. with `runDockerCleanup`, stops and removes every `<dockerPrefix>*` container whose task
//!    is not active ([`docker`]);
//! 4. for each `*.task.json` in `globalTaskDefinitionDirectory`, `cleanupThreads` at a time:
//!    takes the task lock the executor also takes, leaves the task alone if it is active or its
//!    executor is alive (same pid *and* started before the definition was written,
//!    [`liveness`]), else finishes it step by step ([`task`]): logs, finished upload
//!    metadata, flagged files, `app/`, Singularity's logrotate and cron files, the definition
//!    last;
//! 5. writes `<executorCleanupResultsDirectory>/<epochMillis><suffix>` atomically with
//!    Singularity's counters, deletes results older than `executorCleanupResultsMaxAgeMillis`,
//!    and writes the counts to `prometheusTextfilePath` when set ([`results`]).
//!
//! With `--dry-run` the whole pass runs, printing per task what it would do and why, and
//! nothing changes (no results file either).
//!
//! **Reads**: the configuration classes base, s3base, executor and executor cleanup
//! (`/etc/singularity.{base,s3base,executor,executor.cleanup}.{properties,yaml,toml}`); the
//! agent state; the Singularity API; task definitions and task directories; `/proc`.
//! **Writes**: task logs (rotation, compression, tail file), upload and tail metadata, results
//! files, the text file. **Deletes**: `app/` directories, flagged files, the Java executor's
//! logrotate and cron files, task definitions, orphaned containers (engine and OCI runtime).
//!
//! Example (consolidated YAML; every key is in `docs/configuration.md`):
//!
//! ```yaml
//! executor:
//!   globalTaskDefinitionDirectory: /var/lib/singularity/tasks
//! executorCleanup:
//!   singularityHosts: [singularity.example.com:443]
//!   singularityUseSsl: true
//!   singularityContextPath: singularity/api
//!   singularityClientCredentialsPath: /etc/singularity/cleanup-credentials.json
//!   executorCleanupResultsDirectory: /var/lib/singularity/cleanup
//!   runDockerCleanup: true
//!   prometheusTextfilePath: /var/lib/node_exporter/textfile/singularity_executor_cleanup.prom
//! ```
//!
//! Exit codes ([`singularity_common::exit`]): 0 when the pass ran to its end, a safe-mode or
//! API stop included (as Singularity); 1 on an unexpected failure (the definition directory
//! or the results directory unusable); 78 for an invalid configuration (also from
//! `--check-config`).

pub mod api;
pub mod docker;
pub mod error;
pub mod liveness;
pub mod metrics;
pub mod oci;
pub mod results;
pub mod settings;
pub mod task;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use singularity_containers::ContainerEngine;
use singularity_containers::oci::OciRuntime;
use singularity_runtime::Shutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use crate::api::SingularityClient;
pub use crate::error::{RunError, SettingsError};
pub use crate::results::RunReport;
pub use crate::settings::Settings;
use crate::task::Outcome;

/// The job's name: binary, log target, systemd unit.
pub const SERVICE: &str = "singularity-executor-cleanup";

/// Singularity's message when safe mode stops a run.
pub const SAFE_MODE_MESSAGE: &str =
    "Running in safe mode and found 0 running tasks - aborting cleanup";

/// The clients a run uses.
#[derive(Debug)]
pub struct Deps<E> {
    /// The agent and the Singularity API.
    pub api: SingularityClient,
    /// The container engine (Docker or podman).
    pub engine: E,
}

/// One run (see the crate documentation). Returns what it did; the results file is written
/// unless `settings.dry_run`.
pub async fn run<E: ContainerEngine>(
    settings: Settings,
    deps: Deps<E>,
    shutdown: Shutdown,
) -> Result<RunReport, RunError> {
    let settings = Arc::new(settings);
    let deps = Arc::new(deps);
    if !settings.dry_run {
        start_delay(&settings, &shutdown).await;
    }
    let mut report = RunReport::default();
    if !shutdown.is_triggered() {
        pass(&settings, &deps, &shutdown, &mut report).await?;
    } else {
        report.results.error_message = Some("stopped by a signal before starting".to_owned());
    }
    if let Some(message) = &report.results.error_message {
        tracing::warn!(message, "the run stopped early");
    }
    if settings.dry_run {
        println!(
            "{}",
            serde_json::to_string(&report.results).unwrap_or_default()
        );
    } else {
        let path = results::write(&report, &settings, SystemTime::now())?;
        tracing::info!(
            results = %path.display(),
            cleaned = report.results.successfully_cleaned_tasks,
            waiting = report.results.waiting_tasks,
            running = report.results.running_tasks_ignored,
            errors = report.results.error_tasks + report.results.io_error_tasks,
            "cleanup finished"
        );
    }
    Ok(report)
}

async fn start_delay(settings: &Settings, shutdown: &Shutdown) {
    let max = settings.cleanup.max_start_delay_seconds;
    if max == 0 {
        return;
    }
    let delay = Duration::from_millis(fastrand::u64(0..=max.saturating_mul(1000)));
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "waiting before the run"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.wait() => {}
    }
}

async fn pass<E: ContainerEngine>(
    settings: &Arc<Settings>,
    deps: &Arc<Deps<E>>,
    shutdown: &Shutdown,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let results = &mut report.results;
    let agent_id = match deps.api.agent_id(&settings.agent_state_url).await {
        Ok(id) => id,
        Err(error) => {
            results.error_message = Some(format!("cannot get the Mesos agent id: {error}"));
            return Ok(());
        }
    };
    let active = match deps.api.active_task_ids(&agent_id).await {
        Ok(active) => active,
        Err(error) => {
            results.error_message = Some(format!(
                "cannot get the active tasks from Singularity: {error}"
            ));
            return Ok(());
        }
    };
    results.mesos_running_tasks = active.len() as u64;
    if active.is_empty() {
        let decommissioned = match deps.api.is_decommissioned(&settings.hostname).await {
            Ok(decommissioned) => decommissioned,
            Err(error) => {
                results.error_message = Some(format!(
                    "cannot get the decommissioned agents from Singularity: {error}"
                ));
                return Ok(());
            }
        };
        if !decommissioned {
            if settings.cleanup.safe_mode_wont_run_with_no_tasks {
                results.error_message = Some(SAFE_MODE_MESSAGE.to_owned());
                return Ok(());
            }
            tracing::warn!(
                "Singularity reports no active task here; cleaning anyway (safe mode off)"
            );
        } else if !settings.cleanup.clean_tasks_when_decommissioned {
            results.error_message = Some(format!(
                "{} is decommissioned and cleanTasksWhenDecommissioned is false - aborting cleanup",
                settings.hostname
            ));
            return Ok(());
        }
    }

    if settings.cleanup.run_docker_cleanup {
        let stop_timeout = Duration::from_secs(u64::from(settings.executor.docker_stop_timeout));
        match docker::sweep(
            &deps.engine,
            &settings.executor.docker_prefix,
            &active,
            stop_timeout,
            settings.dry_run,
        )
        .await
        {
            Ok(sweep) => {
                report.containers_removed = sweep.removed.len() as u64;
                report.container_errors = sweep.failed.len() as u64;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot list containers; no container removed");
                report.container_errors += 1;
            }
        }
        let runtime = OciRuntime::new(
            &settings.executor.oci_runtime,
            settings.executor.oci_runtime_root.clone(),
        );
        let bundles = settings.executor.oci_image_store_directory.join("bundles");
        match oci::sweep(
            &runtime,
            &settings.executor.docker_prefix,
            &bundles,
            &active,
            settings.dry_run,
        )
        .await
        {
            Ok(sweep) => {
                report.containers_removed += sweep.removed.len() as u64;
                report.container_errors += sweep.failed.len() as u64;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot list daemonless containers; none removed");
                report.container_errors += 1;
            }
        }
        oci::remove_stale_unpackings(
            &settings.executor.oci_image_store_directory,
            oci::STALE_UNPACK,
            settings.dry_run,
        )
        .await;
    }

    clean_definitions(
        settings,
        deps,
        shutdown,
        Arc::new(active),
        &mut report.results,
    )
    .await
}

async fn clean_definitions<E: ContainerEngine>(
    settings: &Arc<Settings>,
    deps: &Arc<Deps<E>>,
    shutdown: &Shutdown,
    active: Arc<HashSet<String>>,
    results: &mut singularity_common::records::CleanupResults,
) -> Result<(), RunError> {
    let dir = settings.definition_directory().clone();
    let suffix = settings.executor.global_task_definition_suffix.clone();
    let files = {
        let listed = dir.clone();
        tokio::task::spawn_blocking(move || list_files(&listed))
            .await
            .map_err(RunError::Worker)?
            .map_err(|source| RunError::ListDefinitions { path: dir, source })?
    };
    let permits = Arc::new(Semaphore::new(
        settings.cleanup.cleanup_threads.max(1) as usize
    ));
    let mut workers = JoinSet::new();
    for (name, path) in files {
        if !name.ends_with(&suffix) {
            results.invalid_tasks += 1;
            continue;
        }
        results.total_task_files += 1;
        if shutdown.is_triggered() {
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let settings = Arc::clone(settings);
        let deps = Arc::clone(deps);
        let active = Arc::clone(&active);
        workers.spawn(async move {
            let outcome = clean_one(path.clone(), &settings, &deps, &active).await;
            drop(permit);
            (path, outcome)
        });
        while let Some(done) = workers.try_join_next() {
            count(results, done.map_err(RunError::Worker)?);
        }
    }
    while let Some(done) = workers.join_next().await {
        count(results, done.map_err(RunError::Worker)?);
    }
    if shutdown.is_triggered() {
        results.error_message = Some("stopped by a signal; the next run goes on".to_owned());
    }
    Ok(())
}

fn count(results: &mut singularity_common::records::CleanupResults, done: (PathBuf, Outcome)) {
    let (path, outcome) = done;
    let file = path.display();
    match &outcome {
        Outcome::Cleaned => {
            tracing::info!(definition = %file, "cleaned");
            results.successfully_cleaned_tasks += 1;
        }
        Outcome::Waiting(why) => {
            tracing::info!(definition = %file, why, "waiting");
            results.waiting_tasks += 1;
        }
        Outcome::Running(why) => {
            tracing::debug!(definition = %file, why, "still running");
            results.running_tasks_ignored += 1;
        }
        Outcome::Invalid(why) => {
            tracing::warn!(definition = %file, why, "invalid task definition");
            results.invalid_tasks += 1;
        }
        Outcome::IoError(why) => {
            tracing::warn!(definition = %file, why, "cannot clean");
            results.io_error_tasks += 1;
        }
        Outcome::Error(why) => {
            tracing::warn!(definition = %file, why, "cannot clean");
            results.error_tasks += 1;
        }
        Outcome::Vanished => {
            tracing::debug!(definition = %file, "gone meanwhile");
        }
    }
}

/// Regular files directly in `dir`, by name.
fn list_files(dir: &std::path::Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        // Temp files of atomic writes in progress are nobody's definition yet.
        if name.starts_with('.') && name.ends_with(".tmp") {
            continue;
        }
        files.push((name, entry.path()));
    }
    files.sort();
    Ok(files)
}

async fn clean_one<E: ContainerEngine>(
    path: PathBuf,
    settings: &Arc<Settings>,
    deps: &Deps<E>,
    active: &Arc<HashSet<String>>,
) -> Outcome {
    let examined = {
        let settings = Arc::clone(settings);
        let active = Arc::clone(active);
        let path = path.clone();
        tokio::task::spawn_blocking(move || task::examine(&path, &settings, &active)).await
    };
    let candidate = match examined {
        Ok(Ok(candidate)) => candidate,
        Ok(Err(outcome)) => {
            report_dry(settings, &path, None, &outcome, "");
            return outcome;
        }
        Err(error) => return Outcome::Error(format!("worker failed: {error}")),
    };
    let task_id = candidate.definition.task_id.clone();
    let history = match deps.api.task_history(&task_id).await {
        Ok(history) => history,
        Err(error) => {
            let outcome = Outcome::Error(format!("cannot get the task history: {error}"));
            report_dry(settings, &path, Some(&task_id), &outcome, "");
            return outcome;
        }
    };
    let docker_failed = if history.as_ref().is_some_and(|h| h.docker) {
        let name =
            singularity_common::naming::container_name(&settings.executor.docker_prefix, &task_id);
        if settings.dry_run {
            None
        } else {
            let stop = Duration::from_secs(u64::from(settings.executor.docker_stop_timeout));
            docker::stop_and_remove(&deps.engine, &name, true, stop)
                .await
                .err()
                .map(|error| format!("cannot remove container {name}: {error}"))
        }
    } else {
        None
    };
    let finished = {
        let settings = Arc::clone(settings);
        tokio::task::spawn_blocking(move || {
            let mut log = String::new();
            let now = chrono::Utc::now().timestamp_millis();
            let outcome = task::finish(
                candidate,
                history.as_ref(),
                &settings,
                now,
                settings.dry_run,
                &mut log,
            );
            (outcome, log)
        })
        .await
    };
    let (outcome, log) = match finished {
        Ok(done) => done,
        Err(error) => return Outcome::Error(format!("worker failed: {error}")),
    };
    let outcome = match (outcome, docker_failed) {
        // Singularity: a task cleaned but its container not removed is an error.
        (Outcome::Cleaned, Some(error)) => Outcome::Error(error),
        (outcome, _) => outcome,
    };
    report_dry(settings, &path, Some(&task_id), &outcome, &log);
    outcome
}

/// `--dry-run`: what was found for one definition, and the steps it would take.
fn report_dry(
    settings: &Settings,
    path: &std::path::Path,
    task_id: Option<&str>,
    outcome: &Outcome,
    steps: &str,
) {
    if !settings.dry_run {
        return;
    }
    let name = task_id.map_or_else(|| path.display().to_string(), str::to_owned);
    let verdict = match outcome {
        Outcome::Cleaned => "would be cleaned".to_owned(),
        Outcome::Waiting(why) => format!("would wait: {why}"),
        Outcome::Running(why) => format!("left alone: {why}"),
        Outcome::Invalid(why) => format!("invalid: {why}"),
        Outcome::IoError(why) | Outcome::Error(why) => format!("error: {why}"),
        Outcome::Vanished => "gone meanwhile".to_owned(),
    };
    print!("{name}: {verdict}\n{steps}");
}
