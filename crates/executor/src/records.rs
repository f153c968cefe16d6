//! The files the executor writes for other daemons around a task run: the task definition
//! (written at launch, read by the cleanup), the S3 upload metadata (read by the uploader) and
//! the tail metadata (read by an external log watcher), both written when the task starts and
//! again at teardown.
//!
//! The records are built in [`singularity_common::task_logs`] and written by
//! [`singularity_common::log_records`], both shared with the cleanup; this module writes the
//! task definition and logs what the log records left out. Every write is atomic (temp file,
//! fsync, rename), so a reader never sees a torn record.

use std::path::PathBuf;

use singularity_common::config::{BaseConfig, ExecutorConfig};
use singularity_common::fsio::write_json_atomic;
use singularity_common::naming;
use singularity_common::records::TaskDefinition;

pub use singularity_common::log_records::{
    MetadataError, MetadataReport, TaskLogContext, write_log_metadata,
};
pub use singularity_common::task_logs::{LogPhase, task_definition as build_task_definition};

/// Writes the task definition to `<globalTaskDefinitionDirectory>/<safeTaskId><suffix>` and
/// returns that path.
pub fn write_task_definition(
    definition: &TaskDefinition,
    executor: &ExecutorConfig,
) -> Result<PathBuf, MetadataError> {
    let path = task_definition_path(&definition.task_id, executor);
    write_json_atomic(&path, definition)?;
    tracing::debug!(task_id = %definition.task_id, path = %path.display(), "wrote task definition");
    Ok(path)
}

/// Where the task definition of `task_id` lives.
pub fn task_definition_path(task_id: &str, executor: &ExecutorConfig) -> PathBuf {
    executor
        .global_task_definition_directory
        .join(naming::task_definition_file_name(
            task_id,
            &executor.global_task_definition_suffix,
        ))
}

/// [`write_log_metadata`] for the task `definition` describes. Failures are logged; they do
/// not stop the task (as in Singularity).
pub fn write_task_log_metadata(
    definition: &TaskDefinition,
    phase: LogPhase,
    base: &BaseConfig,
    executor: &ExecutorConfig,
) {
    let result = TaskLogContext::from_definition(definition)
        .and_then(|ctx| write_log_metadata(&ctx, phase, base, executor));
    match result {
        Ok(report) => {
            for skipped in &report.skipped {
                tracing::warn!(task_id = definition.task_id, "{skipped}");
            }
            tracing::debug!(
                task_id = definition.task_id,
                ?phase,
                written = report.s3_metadata.len(),
                tail = report.tail_metadata.is_some(),
                "wrote log metadata"
            );
        }
        Err(error) => {
            tracing::warn!(task_id = definition.task_id, ?phase, %error, "log metadata not written");
        }
    }
}
