//! One task definition: whether its task may be cleaned, and the cleaning itself.
//!
//! [`examine`] takes the task lock, reads the definition and decides whether the task still
//! runs; [`finish`] then runs the steps, each idempotent, so a run stopped at any step is
//! resumed by the next:
//!
//! 1. the task directory gone → Singularity's leftover files removed, definition deleted;
//! 2. logs recovered (temporaries removed, orphan segments compressed, `service.log` rotated,
//!    tail file written) by `singularity-logs`;
//! 3. upload metadata rewritten finished (`finished` and `uploadImmediately`), so the
//!    uploader takes everything left;
//! 4. until the last task update is [`LOGS_GRACE`] old (or while Singularity says the task is
//!    not done): waiting;
//! 5. `deleteInExecutorCleanup` files deleted;
//! 6. `app/` kept (waiting) for a preserved sandbox and for a FAILED task younger than
//!    `cleanupAppDirectoryOfFailedTasksAfterMillis`, else removed;
//! 7. the Java executor's logrotate and cron files removed;
//! 8. the definition deleted, last.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::Local;
use singularity_common::log_records::{TaskLogContext, write_log_metadata};
use singularity_common::naming;
use singularity_common::records::{LogrotateFrequency, TaskDefinition};
use singularity_common::task_lock::{LockOutcome, TaskLock};
use singularity_common::task_logs::LogPhase;
use singularity_logs::LogSettings;
use singularity_logs::additional::AdditionalLogs;

use crate::api::TaskHistory;
use crate::liveness::{Liveness, executor_liveness};
use crate::settings::Settings;

/// How old the last task update must be before logs and files are removed: the uploader's
/// final pass runs meanwhile.
pub const LOGS_GRACE: Duration = Duration::from_secs(15 * 60);

/// Singularity's done states (`ExtendedTaskState.isDone`).
const DONE_STATES: &[&str] = &[
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_LOST_WHILE_DOWN",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
];

/// What happened to one definition file; each maps to a counter of the results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything removed, the definition last.
    Cleaned,
    /// Logs finished, the rest kept for now.
    Waiting(String),
    /// The task runs, or its executor is still at work: untouched.
    Running(String),
    /// Not a readable task definition.
    Invalid(String),
    /// A file of the task could not be handled.
    IoError(String),
    /// Singularity could not be asked, or a container not removed.
    Error(String),
    /// The definition disappeared meanwhile (its executor or another run finished it).
    Vanished,
}

/// A definition this run may clean: locked, read, its executor gone.
#[derive(Debug)]
pub struct Candidate {
    /// The lock on the definition (released on drop).
    pub lock: TaskLock,
    /// The definition, with the cleanup's fallbacks applied.
    pub definition: TaskDefinition,
    /// Why the executor counts as gone.
    pub executor: Liveness,
}

/// Locks and reads the definition at `path` and decides whether its task still runs.
pub fn examine(
    path: &Path,
    settings: &Settings,
    running: &HashSet<String>,
) -> Result<Candidate, Outcome> {
    let lock = match TaskLock::try_acquire(path) {
        Ok(LockOutcome::Locked(lock)) => lock,
        Ok(LockOutcome::Busy) => {
            return Err(Outcome::Running(
                "its executor holds the task lock (tearing down)".to_owned(),
            ));
        }
        Ok(LockOutcome::Gone) => return Err(Outcome::Vanished),
        Err(error) => return Err(Outcome::IoError(format!("cannot lock: {error}"))),
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) => return Err(Outcome::IoError(format!("cannot read: {error}"))),
    };
    // The Java executor wrote definitions non-atomically: an empty one is unreadable.
    let mut definition: TaskDefinition = match serde_json::from_slice(&text) {
        Ok(definition) => definition,
        Err(error) => return Err(Outcome::Invalid(format!("not a task definition: {error}"))),
    };
    apply_fallbacks(&mut definition, settings);
    if running.contains(&definition.task_id) {
        return Err(Outcome::Running(
            "Singularity lists it as active on this agent".to_owned(),
        ));
    }
    let written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let executor = match definition.executor_pid() {
        Some(pid) => executor_liveness(pid, written),
        None => Liveness::Gone,
    };
    if executor == Liveness::Alive {
        return Err(Outcome::Running(format!(
            "its executor (pid {}) is alive",
            definition.executor_pid
        )));
    }
    Ok(Candidate {
        lock,
        definition,
        executor,
    })
}

/// Singularity cleanup's defaults for the log names old definitions lack. (The upload
/// defaults, `defaultS3Bucket` and `s3KeyFormat`, apply where the executor's own would:
/// [`Settings::from_loaded`].)
fn apply_fallbacks(definition: &mut TaskDefinition, settings: &Settings) {
    let cleanup = &settings.cleanup;
    let data = &mut definition.executor_data;
    let empty = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    if empty(&data.service_log) {
        data.service_log = Some(cleanup.default_service_log.clone());
    }
    if empty(&data.service_finished_tail_log) {
        data.service_finished_tail_log = Some(cleanup.default_service_finished_tail_log.clone());
    }
}

/// Cleans the task of `candidate`, whose history is `history` (`None`: Singularity has none),
/// at `now_millis`. With `dry_run` nothing changes; `log` gets one line per step either way.
pub fn finish(
    candidate: Candidate,
    history: Option<&TaskHistory>,
    settings: &Settings,
    now_millis: i64,
    dry_run: bool,
    log: &mut String,
) -> Outcome {
    let Candidate {
        lock, definition, ..
    } = candidate;
    let task_id = definition.task_id.as_str();
    let task_dir = definition.task_directory.clone();
    let mut step = |text: String| {
        let _ = writeln!(log, "  {}{text}", if dry_run { "would " } else { "" });
    };

    if !task_dir.exists() {
        step("remove Singularity's logrotate and cron files (the task directory is gone)".into());
        step("delete the task definition".into());
        if dry_run {
            return Outcome::Cleaned;
        }
        if let Err(error) = remove_java_leftovers(task_id, settings) {
            return Outcome::IoError(error);
        }
        return match lock.delete_definition() {
            Ok(()) => Outcome::Cleaned,
            Err(error) => Outcome::IoError(format!("cannot delete the definition: {error}")),
        };
    }

    // Logs first: whatever else happens, nothing the task wrote is lost.
    step(format!(
        "finish the logs in {} (rotate and compress service.log, write the tail file)",
        task_dir.display()
    ));
    let logs = LogSettings::new(&settings.executor, &definition.executor_data, &task_dir)
        .map_err(|e| e.to_string());
    // Files the task wrote itself: their final rotation, and which of them go below.
    let mut additional = logs.as_ref().ok().and_then(|logs| {
        AdditionalLogs::for_task(
            logs,
            &settings.executor,
            &definition.executor_data,
            Local::now(),
        )
        .map_err(|error| tracing::warn!(task_id, %error, "additional files left as they are"))
        .ok()
    });
    if !dry_run {
        let recovered = logs.and_then(|logs| {
            let report = singularity_logs::recover(&task_dir, &logs).map_err(|e| e.to_string())?;
            if let Some(additional) = additional.as_mut() {
                let rotated = additional.finish(Local::now());
                let recovered = additional.recover(&logs.compression);
                tracing::debug!(task_id, ?rotated, ?recovered, "finished additional files");
            }
            Ok(report)
        });
        match recovered {
            Ok(report) if !report.failures.is_empty() => {
                return Outcome::IoError(format!(
                    "logs not finished: {}",
                    report.failures.join("; ")
                ));
            }
            Ok(report) => {
                tracing::debug!(task_id, ?report, "recovered logs");
            }
            Err(error) => return Outcome::IoError(format!("logs not finished: {error}")),
        }
    }
    step("write the upload metadata as finished".into());
    if !dry_run && let Err(error) = write_final_metadata(&definition, settings) {
        return Outcome::IoError(error);
    }

    let state = history.and_then(|h| h.last_state.as_deref());
    let updated = history.and_then(|h| h.last_update_millis);
    if let Some(updated) = updated {
        let age = Duration::from_millis(u64::try_from(now_millis - updated).unwrap_or(0));
        let done = state.is_some_and(|s| DONE_STATES.contains(&s));
        if !done {
            return Outcome::Waiting(format!(
                "Singularity's last update is {}, not a finished state",
                state.unwrap_or("missing")
            ));
        }
        if age < LOGS_GRACE {
            return Outcome::Waiting(format!(
                "the task ended {} s ago; files are removed {} s after",
                age.as_secs(),
                LOGS_GRACE.as_secs()
            ));
        }
    }

    let flagged = additional
        .as_ref()
        .map(AdditionalLogs::files_to_delete_in_cleanup)
        .unwrap_or_default();
    for file in &flagged {
        step(format!(
            "delete {} (deleteInExecutorCleanup)",
            file.display()
        ));
        if !dry_run && let Err(error) = remove_file_if_exists(file) {
            return Outcome::IoError(format!("cannot delete {}: {error}", file.display()));
        }
    }

    if definition
        .executor_data
        .executor_data
        .preserve_task_sandbox_after_finish
        .unwrap_or(false)
    {
        return Outcome::Waiting("the deploy preserves its sandbox".to_owned());
    }
    if state == Some("TASK_FAILED")
        && let Some(updated) = updated
    {
        let keep = i64::try_from(
            settings
                .cleanup
                .cleanup_app_directory_of_failed_tasks_after_millis,
        )
        .unwrap_or(i64::MAX);
        if now_millis.saturating_sub(updated) < keep {
            return Outcome::Waiting(format!("app/ of a failed task is kept for {} ms", keep));
        }
    }

    let app = definition.task_app_directory_path();
    step(format!("remove {}", app.display()));
    step("remove Singularity's logrotate and cron files".into());
    step("delete the task definition".into());
    if dry_run {
        return Outcome::Cleaned;
    }
    if let Err(error) = remove_dir_if_exists(&app) {
        return Outcome::IoError(format!("cannot remove {}: {error}", app.display()));
    }
    if let Err(error) = remove_java_leftovers(task_id, settings) {
        return Outcome::IoError(error);
    }
    match lock.delete_definition() {
        Ok(()) => Outcome::Cleaned,
        Err(error) => Outcome::IoError(format!("cannot delete the definition: {error}")),
    }
}

fn write_final_metadata(definition: &TaskDefinition, settings: &Settings) -> Result<(), String> {
    let context = TaskLogContext::from_definition(definition).map_err(|e| e.to_string())?;
    let report = write_log_metadata(&context, LogPhase::End, &settings.base, &settings.executor)
        .map_err(|e| format!("upload metadata not written: {e}"))?;
    for skipped in &report.skipped {
        tracing::warn!(task_id = definition.task_id, "{skipped}");
    }
    Ok(())
}

/// The logrotate confs and cron file the Java executor wrote for `task_id`: left behind when
/// it died, they would rotate a directory that no longer matters, forever.
fn remove_java_leftovers(task_id: &str, settings: &Settings) -> Result<(), String> {
    let executor = &settings.executor;
    let mut files = vec![
        executor
            .logrotate_conf_directory
            .join(naming::logrotate_conf_name(task_id)),
        executor
            .logrotate_hourly_conf_directory
            .join(naming::logrotate_sizebased_conf_name(task_id)),
        executor
            .cron_directory
            .join(naming::cron_file_name(task_id)),
    ];
    for frequency in LogrotateFrequency::ALL {
        files.push(
            executor
                .logrotate_hourly_conf_directory
                .join(naming::logrotate_forced_conf_name(task_id, frequency)),
        );
    }
    for file in files {
        // The hourly conf directory sits inside the main one: never remove a directory.
        if file.is_dir() {
            continue;
        }
        remove_file_if_exists(&file)
            .map_err(|error| format!("cannot remove {}: {error}", file.display()))?;
    }
    Ok(())
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn remove_dir_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
