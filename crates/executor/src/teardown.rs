//! Step 5, teardown: once the terminal status update is sent (or the task never started),
//! the task's logs are finished ([`singularity_logs::finish`]: the final rotation with every
//! segment compressed, `tail_of_finished_service.log`, an empty `service.log` removed), then
//! the log records — the S3 upload metadata rewritten with `finished` and `uploadImmediately`
//! set, the tail metadata finished ([`crate::records`]) — so the uploader, told to finish,
//! finds every rotated file in place. The backend has already swept the task's processes or
//! removed its container when its exit resolved.
//!
//! The teardown holds the task lock ([`singularity_common::task_lock`]) on the task definition
//! while it works, so the cleanup job, which takes the same lock, never finishes the same
//! task's logs at the same time (the cleanup leaves a task whose lock is held alone).

use std::sync::Arc;

use singularity_common::task_lock::{LockOutcome, TaskLock};
use singularity_common::task_logs::LogPhase;
use singularity_logs::ServiceLog;

use crate::launch::LaunchPlan;
use crate::records;
use crate::settings::Settings;

/// Finishes the task's logs and writes its final log records; failures are logged.
pub async fn finish(plan: &LaunchPlan, settings: &Arc<Settings>, log: Option<Arc<ServiceLog>>) {
    let definition = plan.definition.clone();
    let log_settings = plan.log_settings.clone();
    let settings = Arc::clone(settings);
    let task_id = plan.task_id.clone();
    let written = tokio::task::spawn_blocking(move || {
        let path = records::task_definition_path(&definition.task_id, &settings.executor);
        // Held until the records are written; dropped (released) at the end of this closure.
        let _lock = match TaskLock::acquire(&path) {
            Ok(LockOutcome::Locked(lock)) => Some(lock),
            // Never written (the launch failed before it): nothing to coordinate with, since
            // the cleanup only acts on tasks that have a definition.
            Ok(LockOutcome::Gone | LockOutcome::Busy) => None,
            Err(error) => {
                // The records matter more than the lock: without it the cleanup may redo
                // the same idempotent steps, nothing is lost.
                tracing::warn!(task_id = definition.task_id, path = %path.display(), %error, "cannot lock the task definition");
                None
            }
        };
        match singularity_logs::finish(log.as_deref(), &log_settings) {
            Ok(report) => {
                if report.dropped_bytes > 0 {
                    tracing::warn!(
                        task_id,
                        dropped_bytes = report.dropped_bytes,
                        "some task output could not be written to the service log"
                    );
                }
                tracing::debug!(task_id, ?report, "task logs finished");
            }
            Err(error) => tracing::warn!(task_id, %error, "cannot finish the task's logs"),
        }
        records::write_task_log_metadata(
            &definition,
            LogPhase::End,
            &settings.base,
            &settings.executor,
        );
    })
    .await;
    if let Err(error) = written {
        tracing::warn!(%error, "writing the final log metadata failed");
    }
}
