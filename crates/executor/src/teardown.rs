//! Step 5, teardown: once the terminal status update is sent (or the task never started),
//! the task's logs are finished ([`singularity_logs::finish`]: the final rotation with every
//! segment compressed, `tail_of_finished_service.log`, an empty `service.log` removed), then
//! the log records — the S3 upload metadata rewritten with `finished` and `uploadImmediately`
//! set, the tail metadata finished ([`crate::records`]) — so the uploader, told to finish,
//! finds every rotated file in place. The backend has already swept the task's processes or
//! removed its container when its exit resolved.

use std::sync::Arc;

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
