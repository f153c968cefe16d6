//! The steps around a task's process that other modules of this crate implement: artifact
//! staging ([`crate::staging`]) and the task definition and log metadata records
//! ([`crate::logs_metadata`]). The supervisor calls them only through here.

use std::path::PathBuf;

use singularity_common::records::TaskDefinition;
use tokio_util::sync::CancellationToken;

use crate::launch::LaunchPlan;
use crate::logs_metadata::{self, LogPhase, TaskLogContext};
use crate::settings::Settings;
use crate::staging::{self, StagingContext};

/// Staging failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageFailure {
    /// An md5 or signature verification failed (TASK_FAILED rather than TASK_LOST).
    pub verification: bool,
    /// What went wrong.
    pub message: String,
}

/// Places the task's artifacts; returns early when `cancel` fires.
pub async fn stage(
    plan: &LaunchPlan,
    settings: &Settings,
    cancel: CancellationToken,
) -> Result<(), StageFailure> {
    let ctx = StagingContext {
        task_dir: plan.task_dir().to_path_buf(),
        executor: settings.executor.clone(),
        s3: settings.s3.clone(),
        base: settings.base.clone(),
    };
    staging::stage_artifacts(&ctx, &plan.data, cancel)
        .await
        .map_err(|error| StageFailure {
            verification: error.is_verification_failure(),
            message: error.to_string(),
        })
}

/// Writes `<globalTaskDefinitionDirectory>/<safeTaskId><suffix>`.
pub fn write_task_definition(def: &TaskDefinition, settings: &Settings) -> Result<PathBuf, String> {
    logs_metadata::write_task_definition(def, &settings.executor).map_err(|e| e.to_string())
}

fn write_log_metadata(plan: &LaunchPlan, settings: &Settings, phase: LogPhase) {
    let result = TaskLogContext::from_definition(&plan.definition).and_then(|ctx| {
        logs_metadata::write_log_metadata(&ctx, phase, &settings.base, &settings.executor)
    });
    if let Err(error) = result {
        tracing::warn!(task_id = plan.task_id, ?phase, %error, "log metadata not written");
    }
}

/// Log records at task start: S3 upload metadata (`finished: false`) and tail metadata.
/// Failures are logged; they do not stop the task (as in Singularity).
pub fn log_metadata_at_start(plan: &LaunchPlan, settings: &Settings) {
    write_log_metadata(plan, settings, LogPhase::Start);
}

/// Log records at task end: S3 upload metadata rewritten with `finished` and
/// `uploadImmediately` set, tail metadata finished. Failures are logged.
pub fn log_metadata_at_end(plan: &LaunchPlan, settings: &Settings) {
    write_log_metadata(plan, settings, LogPhase::End);
}
