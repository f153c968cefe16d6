//! Step 5, teardown: once the terminal status update is sent (or the task never started),
//! the task's log records are finished — the S3 upload metadata rewritten with `finished` and
//! `uploadImmediately` set, the tail metadata finished ([`crate::records`]). The backend has
//! already swept the task's processes or removed its container when its exit resolved.

use std::sync::Arc;

use singularity_common::task_logs::LogPhase;

use crate::launch::LaunchPlan;
use crate::records;
use crate::settings::Settings;

/// Writes the task's final log records; failures are logged.
pub async fn finish(plan: &LaunchPlan, settings: &Arc<Settings>) {
    let definition = plan.definition.clone();
    let settings = Arc::clone(settings);
    let written = tokio::task::spawn_blocking(move || {
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
