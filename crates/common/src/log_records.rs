//! Writing a task's log records: the tail metadata and the S3 upload metadata built by
//! [`crate::task_logs`], under the names [`crate::naming`] makes, each atomically. The
//! executor writes them when a task starts and at its teardown; the cleanup writes the final
//! ones again for a task whose executor died.

use std::path::{Path, PathBuf};

use crate::config::{BaseConfig, ExecutorConfig};
use crate::fsio::{RecordError, write_json_atomic};
use crate::naming;
use crate::records::{SingularityTaskExecutorData, TaskDefinition};
use crate::task_id::{TaskId, TaskIdError};
use crate::task_logs::{self, LogPhase, SkippedUpload, UploadDefaults};

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
    /// Uploads left out (no bucket, directory outside the task), for the caller to warn about.
    pub skipped: Vec<SkippedUpload>,
}

/// Writes the tail metadata (when the task has a `loggingTag`) and the S3 upload metadata of
/// a task for `phase`: `finished: false` at [`LogPhase::Start`], `finished: true` and
/// `uploadImmediately: true` at [`LogPhase::End`].
///
/// Every record is attempted even when one fails; the error then lists all failures. Uploads
/// left out of the plan are in the report, for the caller to warn about.
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
    }

    let plan = task_logs::upload_plan(
        &task.task_id,
        &task.task_directory,
        &task.executor_data,
        &UploadDefaults::from_executor_config(executor),
        phase,
    );
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

fn tail_metadata_path(service_log: &Path, base: &BaseConfig) -> PathBuf {
    base.log_watcher_metadata_directory
        .join(naming::tail_metadata_file_name(
            service_log,
            &base.log_watcher_metadata_suffix,
        ))
}
