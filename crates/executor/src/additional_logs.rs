//! Files the task writes itself (`logrotateAdditionalFiles`): rotated on a thread of their own
//! while the task runs ([`singularity_logs::additional`]), and a last time at teardown, before
//! the final log records tell the uploader to finish.

use std::time::Duration;

use singularity_logs::additional::{AdditionalLogs, RunningAdditionalLogs};

use crate::launch::LaunchPlan;
use crate::settings::Settings;

/// How often size triggers are checked and due schedules fired.
const TICK: Duration = Duration::from_secs(1);

/// Starts rotating the task's additional files, if the configuration names any. An entry the
/// configuration check let through but that cannot be used, or a thread that cannot start,
/// leaves the files unrotated (logged): the task runs regardless.
pub fn start(plan: &LaunchPlan, settings: &Settings) -> Option<RunningAdditionalLogs> {
    if settings.executor.logrotate_additional_files.is_empty() {
        return None;
    }
    let task_id = plan.task_id.as_str();
    let extras = AdditionalLogs::for_task(
        &plan.log_settings,
        &settings.executor,
        &plan.data,
        chrono::Local::now(),
    )
    .inspect_err(|error| {
        tracing::warn!(task_id, %error, "the additional log files are not rotated");
    })
    .ok()?;
    extras
        .spawn(TICK)
        .inspect_err(|error| {
            tracing::warn!(task_id, %error, "cannot start rotating the additional log files");
        })
        .ok()
}

/// Stops the rotation thread and makes the final rotation (the task has exited).
pub async fn finish(task_id: &str, extras: Option<RunningAdditionalLogs>) {
    let Some(extras) = extras else {
        return;
    };
    match tokio::task::spawn_blocking(move || extras.finish()).await {
        Ok(Ok((report, extras))) => {
            tracing::debug!(
                task_id,
                rotated = report.rotated.len(),
                failed = report.failed.len(),
                "additional log files finished"
            );
            if extras.fallbacks() > 0 {
                tracing::warn!(
                    task_id,
                    fallbacks = extras.fallbacks(),
                    "some additional log files were rotated by copy and truncate (their file \
                     system cannot collapse ranges): lines written meanwhile may be lost"
                );
            }
        }
        Ok(Err(error)) => tracing::warn!(task_id, %error, "cannot finish the additional log files"),
        Err(error) => tracing::warn!(task_id, %error, "cannot finish the additional log files"),
    }
}
