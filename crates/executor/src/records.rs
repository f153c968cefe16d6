//! The files the executor writes for other daemons around a task run: the task definition
//! (written at launch, read by the cleanup), the S3 upload metadata (read by the uploader) and
//! the tail metadata (read by an external log watcher), both written when the task starts and
//! again at teardown.
//!
//! The records themselves are built in [`singularity_common::task_logs`], which the cleanup
//! shares; this module names and writes them. Every write is atomic (temp file, fsync,
//! rename), so a reader never sees a torn record.

use std::path::{Path, PathBuf};

use singularity_common::config::{BaseConfig, ExecutorConfig};
use singularity_common::fsio::{RecordError, write_json_atomic};
use singularity_common::naming;
use singularity_common::records::{SingularityTaskExecutorData, TaskDefinition};
use singularity_common::task_id::{TaskId, TaskIdError};
use singularity_common::task_logs::{self, SkippedUpload, UploadDefaults};

pub use singularity_common::task_logs::{LogPhase, task_definition as build_task_definition};

/// What the log metadata of one task is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLogContext {
    /// The task id (its parts are the key pattern tokens).
    pub task_id: TaskId,
    /// The task directory, `<sandbox>/<safeTaskId>`.
    pub task_directory: PathBuf,
    /// The task's executor data.
    pub executor_data: SingularityTaskExecutorData,
}

impl TaskLogContext {
    /// The context of a task.
    pub fn new(
        task_id: TaskId,
        task_directory: impl Into<PathBuf>,
        executor_data: SingularityTaskExecutorData,
    ) -> Self {
        TaskLogContext {
            task_id,
            task_directory: task_directory.into(),
            executor_data,
        }
    }

    /// The context a task definition describes.
    pub fn from_definition(definition: &TaskDefinition) -> Result<Self, MetadataError> {
        let task_id = definition
            .task_id
            .parse()
            .map_err(|source| MetadataError::TaskId { source })?;
        Ok(Self::new(
            task_id,
            definition.task_directory.clone(),
            definition.executor_data.clone(),
        ))
    }

    /// The task's service log, `<taskDir>/<serviceLog>`.
    pub fn service_log_path(&self) -> PathBuf {
        task_logs::service_log_path(&self.task_directory, &self.executor_data)
    }
}

/// A metadata file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The task id is not a Singularity task id, so the key tokens cannot be filled in.
    #[error(transparent)]
    TaskId {
        /// The parse error, naming the id.
        source: TaskIdError,
    },
    /// Writing one record failed.
    #[error(transparent)]
    Write {
        /// The error, naming the file.
        #[from]
        source: RecordError,
    },
    /// Some records were written, others failed; every failure is listed.
    #[error("{} of {} log metadata files could not be written; first: {}", failures.len(), failures.len() + written.len(), failures[0])]
    Partial {
        /// The files written.
        written: Vec<PathBuf>,
        /// The failures, each naming its file (never empty).
        failures: Vec<RecordError>,
    },
}

/// What [`write_log_metadata`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataReport {
    /// The upload metadata files written, in plan order.
    pub s3_metadata: Vec<PathBuf>,
    /// The tail metadata file, when the task has a `loggingTag`.
    pub tail_metadata: Option<PathBuf>,
    /// Uploads left out (no bucket, directory outside the task); each was logged as a warning.
    pub skipped: Vec<SkippedUpload>,
}

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

/// Writes the tail metadata (when the task has a `loggingTag`) and the S3 upload metadata of
/// a task for `phase`: `finished: false` at [`LogPhase::Start`], `finished: true` and
/// `uploadImmediately: true` at [`LogPhase::End`].
///
/// Every record is attempted even when one fails; the error then lists all failures.
pub fn write_log_metadata(
    task: &TaskLogContext,
    phase: LogPhase,
    base: &BaseConfig,
    executor: &ExecutorConfig,
) -> Result<MetadataReport, MetadataError> {
    let task_id = task.task_id.to_string();
    let mut report = MetadataReport::default();
    let mut failures = Vec::new();

    let service_log = task.service_log_path();
    if let Some(tail) = task_logs::tail_metadata(&service_log, &task.executor_data, phase) {
        let path = tail_metadata_path(&service_log, base);
        match write_json_atomic(&path, &tail) {
            Ok(()) => report.tail_metadata = Some(path),
            Err(e) => failures.push(e),
        }
    } else if phase == LogPhase::Start {
        tracing::debug!(%task_id, "no loggingTag: not writing tail metadata");
    }

    let plan = task_logs::upload_plan(
        &task.task_id,
        &task.task_directory,
        &task.executor_data,
        &UploadDefaults::from_executor_config(executor),
        phase,
    );
    for skipped in &plan.skipped {
        tracing::warn!(%task_id, "{skipped}");
    }
    for upload in &plan.uploads {
        let path = base
            .s3_uploader_metadata_directory
            .join(upload.file_name(&task_id, &base.s3_uploader_metadata_suffix));
        match write_json_atomic(&path, &upload.metadata) {
            Ok(()) => report.s3_metadata.push(path),
            Err(e) => failures.push(e),
        }
    }
    report.skipped = plan.skipped;

    tracing::debug!(
        %task_id,
        ?phase,
        written = report.s3_metadata.len(),
        tail = report.tail_metadata.is_some(),
        "wrote log metadata"
    );
    if failures.is_empty() {
        return Ok(report);
    }
    let mut written = report.s3_metadata;
    written.extend(report.tail_metadata);
    if written.is_empty() && failures.len() == 1 {
        return Err(failures.remove(0).into());
    }
    Err(MetadataError::Partial { written, failures })
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
    if let Err(error) = result {
        tracing::warn!(task_id = definition.task_id, ?phase, %error, "log metadata not written");
    }
}

fn tail_metadata_path(service_log: &Path, base: &BaseConfig) -> PathBuf {
    base.log_watcher_metadata_directory
        .join(naming::tail_metadata_file_name(
            service_log,
            &base.log_watcher_metadata_suffix,
        ))
}
