//! The records describing a task's logs, built the same way by the executor (at task start and
//! end) and by the cleanup (when it finishes a task the executor left behind).
//!
//! - [`upload_plan`]: the `*.s3.json` upload metadata of a task (one per
//!   `s3UploaderAdditionalFiles` entry, the rotated service log, and at the end the unrotated
//!   service log when rotation is skipped), plus the entries left out and why.
//! - [`tail_metadata`]: the `*.tail.json` record, when the task has a `loggingTag`.
//! - [`task_definition`]: the `<safeTaskId>.task.json` record.
//!
//! Everything here is pure: callers write the records (atomically, with [`crate::fsio`]) under
//! the names [`crate::naming`] makes.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::config::ExecutorConfig;
use crate::keyfmt::{TaskKeyTokens, format_task_key_pattern};
use crate::naming;
use crate::records::{
    S3UploadMetadata, S3UploaderFile, SingularityTaskExecutorData, TailMetadata, TaskDefinition,
};
use crate::task_id::TaskId;

/// Singularity's default `s3KeyFormat`, used when neither the task nor the configuration names
/// a key pattern.
pub const DEFAULT_S3_KEY_PATTERN: &str = "%requestId/%Y/%m/%taskId_%index-%s-%filename";

/// When the records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogPhase {
    /// Task setup: uploads wait for rotated files (`finished: false`, `uploadImmediately: false`).
    Start,
    /// Teardown (executor) or cleanup: upload what is left now, then stop (`finished: true`,
    /// `uploadImmediately: true`).
    End,
}

impl LogPhase {
    /// The `finished` (and `uploadImmediately`) value of records written in this phase.
    pub fn finished(self) -> bool {
        matches!(self, LogPhase::End)
    }
}

/// Settings from the agent's configuration that the upload records depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadDefaults {
    /// Where rotated service logs go (`logrotateToDirectory`), relative to the task directory
    /// (an absolute path is taken as is).
    pub logrotate_to_directory: PathBuf,
    /// Bucket used when neither the file nor the task data names one (the executor's
    /// `s3UploaderBucket`).
    pub bucket: Option<String>,
    /// Key pattern used when neither the file nor the task data names one (the executor's
    /// `s3UploaderKeyPattern`); [`DEFAULT_S3_KEY_PATTERN`] when absent too.
    pub key_pattern: Option<String>,
}

impl UploadDefaults {
    /// The defaults an executor configuration gives.
    pub fn from_executor_config(config: &ExecutorConfig) -> Self {
        UploadDefaults {
            logrotate_to_directory: config.logrotate_to_directory.clone(),
            bucket: config.s3_uploader_bucket.clone(),
            key_pattern: config.s3_uploader_key_pattern.clone(),
        }
    }
}

impl Default for UploadDefaults {
    fn default() -> Self {
        UploadDefaults {
            logrotate_to_directory: PathBuf::from(naming::LOGS_DIRECTORY),
            bucket: None,
            key_pattern: None,
        }
    }
}

/// One upload metadata record and the hint naming its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUpload {
    /// The `<hint>` of `<taskId>-<hint><suffix>`.
    pub hint: String,
    /// The record.
    pub metadata: S3UploadMetadata,
}

impl PlannedUpload {
    /// The record's file name in the metadata directory.
    pub fn file_name(&self, task_id: &str, suffix: &str) -> String {
        naming::s3_metadata_file_name(task_id, &self.hint, suffix)
    }
}

/// An upload left out of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedUpload {
    /// The hint it would have had.
    pub hint: String,
    /// The glob it would have had.
    pub file_glob: String,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Why an upload is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Neither the file, the task data nor the configuration names a bucket.
    NoBucket,
    /// The file's `directory` resolves outside the task directory.
    OutsideTaskDirectory {
        /// The resolved directory.
        directory: PathBuf,
    },
}

impl fmt::Display for SkippedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            SkipReason::NoBucket => write!(
                f,
                "no S3 bucket for upload {:?} ({}): not writing its upload metadata",
                self.hint, self.file_glob
            ),
            SkipReason::OutsideTaskDirectory { directory } => write!(
                f,
                "directory {} of upload {:?} ({}) is not inside the task directory: not writing \
                 its upload metadata",
                directory.display(),
                self.hint,
                self.file_glob
            ),
        }
    }
}

/// The upload metadata of a task, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadPlan {
    /// Records to write, in order: additional files, the rotated service log (`default`), and
    /// at [`LogPhase::End`] with `skipLogrotateAndCompress` the raw service log (`unrotated`).
    pub uploads: Vec<PlannedUpload>,
    /// Entries left out, each worth a warning.
    pub skipped: Vec<SkippedUpload>,
}

/// Builds the upload metadata of a task for `phase`.
///
/// - One record per `s3UploaderAdditionalFiles` entry: hint `s3UploaderFilenameHint`, else
///   `file<n>` where `n` counts (from 1) the entries not refused so far; directory
///   `<taskDir>/<directory>` (the task directory when absent; refused when it resolves outside
///   the task directory, after `.` and `..` are resolved); glob from
///   [`naming::s3_upload_file_glob`]; key pattern, storage class and threshold from the file,
///   else from the task data; `checkSubdirectories`, `compressBeforeUpload` and `checkIfOpen`
///   copied.
/// - The rotated service log (`default`): `<taskDir>/<logrotateToDirectory>`, glob
///   `<serviceLog>*.[gb]z*`, storage class from the task data; left out when an additional
///   file (not refused) names the service log itself.
/// - At [`LogPhase::End`] with `skipLogrotateAndCompress`: the raw service log (`unrotated`),
///   the task directory, the exact service log name.
///
/// The bucket is the file's `s3UploaderBucket`, else the task's `defaultS3Bucket`, else
/// `defaults.bucket`; empty values count as absent, and a record without a bucket is left out.
/// The key pattern likewise falls back to the task's `s3UploaderKeyPattern`, then
/// `defaults.key_pattern`, then [`DEFAULT_S3_KEY_PATTERN`], and is written with the task-level
/// tokens expanded. `finished` and `uploadImmediately` are [`LogPhase::finished`].
pub fn upload_plan(
    task_id: &TaskId,
    task_directory: &Path,
    data: &SingularityTaskExecutorData,
    defaults: &UploadDefaults,
    phase: LogPhase,
) -> UploadPlan {
    let builder = PlanBuilder {
        tokens: TaskKeyTokens::new(
            task_id,
            data.request_group.as_deref(),
            data.executor_data.logging_tag.as_deref(),
        ),
        data,
        defaults,
        finished: phase.finished(),
    };
    let mut plan = UploadPlan::default();
    let service_log = data.effective_service_log();
    let files = data.s3_uploader_additional_files.as_deref().unwrap_or(&[]);
    let mut handles_service_log = false;

    // Only files inside the task directory count towards `file<n>`, as in Singularity.
    let mut n = 0;
    for file in files {
        let hint = file
            .s3_uploader_filename_hint
            .clone()
            .unwrap_or_else(|| naming::additional_file_s3_hint(n + 1));
        let file_glob = naming::s3_upload_file_glob(&file.filename, file.compress_before_upload);
        let directory = match &file.directory {
            Some(dir) => normalize_lexically(&task_directory.join(dir)),
            None => task_directory.to_path_buf(),
        };
        if !directory.starts_with(normalize_lexically(task_directory)) {
            plan.skipped.push(SkippedUpload {
                hint,
                file_glob,
                reason: SkipReason::OutsideTaskDirectory { directory },
            });
            continue;
        }
        n += 1;
        handles_service_log |= file.filename == service_log;
        builder.push(&mut plan, hint, directory, file_glob, Some(file));
    }

    if !handles_service_log {
        builder.push(
            &mut plan,
            naming::DEFAULT_S3_UPLOAD_HINT.to_owned(),
            task_directory.join(&defaults.logrotate_to_directory),
            naming::s3_upload_file_glob(service_log, false),
            None,
        );
    }

    if phase == LogPhase::End
        && data
            .executor_data
            .skip_logrotate_and_compress
            .unwrap_or(false)
    {
        builder.push(
            &mut plan,
            naming::UNROTATED_S3_UPLOAD_HINT.to_owned(),
            task_directory.to_path_buf(),
            service_log.to_owned(),
            None,
        );
    }
    plan
}

struct PlanBuilder<'a> {
    tokens: TaskKeyTokens,
    data: &'a SingularityTaskExecutorData,
    defaults: &'a UploadDefaults,
    finished: bool,
}

impl PlanBuilder<'_> {
    /// Adds one record (or its skip reason); `file` is the additional file it is for.
    fn push(
        &self,
        plan: &mut UploadPlan,
        hint: String,
        directory: PathBuf,
        file_glob: String,
        file: Option<&S3UploaderFile>,
    ) {
        let bucket = first_non_empty(&[
            file.and_then(|f| f.s3_uploader_bucket.as_deref()),
            self.data.default_s3_bucket.as_deref(),
            self.defaults.bucket.as_deref(),
        ]);
        let Some(bucket) = bucket else {
            plan.skipped.push(SkippedUpload {
                hint,
                file_glob,
                reason: SkipReason::NoBucket,
            });
            return;
        };
        let pattern = first_non_empty(&[
            file.and_then(|f| f.s3_uploader_key_pattern.as_deref()),
            self.data.s3_uploader_key_pattern.as_deref(),
            self.defaults.key_pattern.as_deref(),
        ])
        .unwrap_or(DEFAULT_S3_KEY_PATTERN);

        let mut metadata = S3UploadMetadata::new(
            directory,
            file_glob,
            bucket,
            format_task_key_pattern(pattern, &self.tokens),
        );
        metadata.finished = self.finished;
        metadata.upload_immediately = self.finished;
        metadata.storage_class = file
            .and_then(|f| f.s3_storage_class.clone())
            .or_else(|| self.data.s3_storage_class.clone());
        metadata.apply_storage_class_if_over_bytes = file
            .and_then(|f| f.apply_s3_storage_class_after_bytes)
            .or(self.data.apply_s3_storage_class_after_bytes);
        if let Some(file) = file {
            metadata.check_subdirectories = file.check_subdirectories;
            metadata.compress_before_upload = file.compress_before_upload;
            metadata.check_if_open = file.check_if_open;
        }
        plan.uploads.push(PlannedUpload { hint, metadata });
    }
}

fn first_non_empty<'a>(values: &[Option<&'a str>]) -> Option<&'a str> {
    values.iter().flatten().copied().find(|v| !v.is_empty())
}

/// Resolves `.` and `..` without touching the file system (`..` at the root stays at the root).
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    out
}

/// The service log of a task: `<taskDir>/<serviceLog>`.
pub fn service_log_path(task_directory: &Path, data: &SingularityTaskExecutorData) -> PathBuf {
    task_directory.join(data.effective_service_log())
}

/// The tail metadata of a task, or `None` when the task has no `loggingTag`.
///
/// `finished` is false at [`LogPhase::Start`] and true at [`LogPhase::End`]. Its file name is
/// [`naming::tail_metadata_file_name`] of `service_log`.
pub fn tail_metadata(
    service_log: &Path,
    data: &SingularityTaskExecutorData,
    phase: LogPhase,
) -> Option<TailMetadata> {
    let tag = data.executor_data.logging_tag.as_ref()?;
    Some(TailMetadata {
        filename: service_log.to_path_buf(),
        tag: tag.clone(),
        extra_fields: data.executor_data.logging_extra_fields.clone(),
        finished: phase.finished(),
    })
}

/// The task definition the executor writes at launch.
///
/// Paths are absolute (under `task_directory`) except `signatureVerifyOut`, which is the
/// configured name, as Singularity writes it. The service log extension is the text after the
/// last `.` of the service log name (empty without one). `healthcheckResultFilePath` is the
/// deploy's value as given: Singularity resolves it against the app directory when it polls.
pub fn task_definition(
    task_id: &str,
    data: SingularityTaskExecutorData,
    task_directory: &Path,
    executor_pid: u32,
    config: &ExecutorConfig,
) -> TaskDefinition {
    let service_log = data.effective_service_log();
    let extension = service_log
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_owned())
        .unwrap_or_default();
    let app_directory = task_directory.join(&config.task_app_directory);
    let healthcheck_result_file_path = data
        .healthcheck_options
        .as_ref()
        .and_then(|h| h.healthcheck_result_file_path.as_deref())
        .map(PathBuf::from);
    TaskDefinition {
        task_id: task_id.to_owned(),
        task_directory: task_directory.to_path_buf(),
        executor_pid: executor_pid.to_string(),
        service_log_out: task_directory.join(service_log),
        service_log_out_extension: extension,
        service_finished_tail_log: task_directory.join(data.effective_service_finished_tail_log()),
        task_app_directory: app_directory,
        executor_bash_out: task_directory.join(&config.executor_bash_log),
        logrotate_state_file: task_directory.join(&config.logrotate_state_file),
        signature_verify_out: PathBuf::from(&config.signature_verify_out),
        healthcheck_result_file_path,
        executor_data: data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ExecutorData;

    const ID: &str = "myreq-dep1-1668780000000-1-host_a-rack1";

    fn data() -> SingularityTaskExecutorData {
        SingularityTaskExecutorData {
            executor_data: ExecutorData {
                cmd: "true".into(),
                embedded_artifacts: vec![],
                external_artifacts: vec![],
                s3_artifacts: vec![],
                successful_exit_codes: vec![],
                running_sentinel: None,
                user: None,
                extra_cmd_line_args: vec![],
                logging_tag: None,
                logging_extra_fields: Default::default(),
                sig_kill_processes_after_millis: None,
                max_task_threads: None,
                preserve_task_sandbox_after_finish: None,
                max_open_files: None,
                skip_logrotate_and_compress: None,
                s3_artifact_signatures: None,
                logrotate_frequency: None,
            },
            s3_uploader_additional_files: None,
            default_s3_bucket: Some("logs".into()),
            s3_uploader_key_pattern: Some("%requestId/%group/%tag/%host/%filename".into()),
            service_log: None,
            service_finished_tail_log: None,
            request_group: None,
            s3_storage_class: None,
            apply_s3_storage_class_after_bytes: None,
            cpu_hard_limit: None,
            healthcheck_options: None,
        }
    }

    fn plan(data: &SingularityTaskExecutorData, phase: LogPhase) -> UploadPlan {
        upload_plan(
            &ID.parse().unwrap(),
            Path::new("/sandbox/t"),
            data,
            &UploadDefaults::default(),
            phase,
        )
    }

    #[test]
    fn phases() {
        assert!(!LogPhase::Start.finished());
        assert!(LogPhase::End.finished());
    }

    #[test]
    fn default_entry_only() {
        let p = plan(&data(), LogPhase::Start);
        assert!(p.skipped.is_empty());
        assert_eq!(p.uploads.len(), 1);
        let u = &p.uploads[0];
        assert_eq!(u.hint, "default");
        assert_eq!(u.file_name(ID, ".s3.json"), format!("{ID}-default.s3.json"));
        assert_eq!(u.metadata.directory, Path::new("/sandbox/t/logs"));
        assert_eq!(u.metadata.file_glob, "service.log*.[gb]z*");
        assert_eq!(u.metadata.s3_key_format, "myreq/default//host_a/%filename");
        assert!(!u.metadata.finished && !u.metadata.upload_immediately);
        assert!(u.metadata.check_if_open);
    }

    #[test]
    fn end_phase_finishes_and_adds_unrotated_when_skipping_rotation() {
        let mut d = data();
        assert_eq!(plan(&d, LogPhase::End).uploads.len(), 1);
        d.executor_data.skip_logrotate_and_compress = Some(true);
        assert_eq!(plan(&d, LogPhase::Start).uploads.len(), 1);
        let p = plan(&d, LogPhase::End);
        let hints: Vec<_> = p.uploads.iter().map(|u| u.hint.as_str()).collect();
        assert_eq!(hints, ["default", "unrotated"]);
        let unrotated = &p.uploads[1].metadata;
        assert_eq!(unrotated.directory, Path::new("/sandbox/t"));
        assert_eq!(unrotated.file_glob, "service.log");
        assert!(p.uploads.iter().all(|u| u.metadata.finished));
        assert!(p.uploads.iter().all(|u| u.metadata.upload_immediately));
    }

    #[test]
    fn bucket_falls_back_and_empty_means_none() {
        let mut d = data();
        d.default_s3_bucket = Some(String::new());
        let p = plan(&d, LogPhase::Start);
        assert!(p.uploads.is_empty());
        assert_eq!(p.skipped[0].reason, SkipReason::NoBucket);
        assert!(p.skipped[0].to_string().contains("no S3 bucket"));

        let defaults = UploadDefaults {
            bucket: Some("fallback".into()),
            key_pattern: Some("%taskId".into()),
            ..UploadDefaults::default()
        };
        d.s3_uploader_key_pattern = None;
        let p = upload_plan(
            &ID.parse().unwrap(),
            Path::new("/t"),
            &d,
            &defaults,
            LogPhase::Start,
        );
        assert_eq!(p.uploads[0].metadata.s3_bucket, "fallback");
        assert_eq!(p.uploads[0].metadata.s3_key_format, ID);
    }

    #[test]
    fn key_pattern_defaults_to_singularitys() {
        let mut d = data();
        d.s3_uploader_key_pattern = Some(String::new());
        let p = plan(&d, LogPhase::Start);
        assert_eq!(
            p.uploads[0].metadata.s3_key_format,
            format!("myreq/%Y/%m/{ID}_%index-%s-%filename")
        );
    }

    #[test]
    fn additional_files() {
        let mut d = data();
        let mut access = S3UploaderFile::from_filename("access.log");
        access.s3_uploader_filename_hint = Some("access".into());
        access.directory = Some("app/./logs".into());
        access.compress_before_upload = true;
        access.check_if_open = false;
        access.s3_uploader_bucket = Some("other".into());
        access.s3_storage_class = Some("GLACIER".into());
        let mut escape = S3UploaderFile::from_filename("x.log");
        escape.directory = Some("app/../../elsewhere".into());
        d.s3_uploader_additional_files = Some(vec![
            access,
            S3UploaderFile::from_filename("*.hprof"),
            escape,
        ]);
        d.s3_storage_class = Some("STANDARD_IA".into());
        d.apply_s3_storage_class_after_bytes = Some(10);
        let p = plan(&d, LogPhase::Start);
        let hints: Vec<_> = p.uploads.iter().map(|u| u.hint.as_str()).collect();
        assert_eq!(hints, ["access", "file2", "default"]);

        let a = &p.uploads[0].metadata;
        assert_eq!(a.directory, Path::new("/sandbox/t/app/logs"));
        assert_eq!(a.file_glob, "access.log*");
        assert_eq!(a.s3_bucket, "other");
        assert_eq!(a.storage_class.as_deref(), Some("GLACIER"));
        assert_eq!(a.apply_storage_class_if_over_bytes, Some(10));
        assert!(a.compress_before_upload && !a.check_if_open);

        let b = &p.uploads[1].metadata;
        assert_eq!(b.directory, Path::new("/sandbox/t"));
        assert_eq!(b.file_glob, "*.hprof");
        assert_eq!(b.s3_bucket, "logs");
        assert_eq!(b.storage_class.as_deref(), Some("STANDARD_IA"));

        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].hint, "file3");
        assert_eq!(
            p.skipped[0].reason,
            SkipReason::OutsideTaskDirectory {
                directory: PathBuf::from("/sandbox/elsewhere")
            }
        );
    }

    #[test]
    fn refused_files_do_not_count_towards_file_n() {
        let mut d = data();
        let mut escape = S3UploaderFile::from_filename("x.log");
        escape.directory = Some("/etc".into());
        d.s3_uploader_additional_files =
            Some(vec![escape, S3UploaderFile::from_filename("gc.log")]);
        let p = plan(&d, LogPhase::Start);
        let hints: Vec<_> = p.uploads.iter().map(|u| u.hint.as_str()).collect();
        assert_eq!(hints, ["file1", "default"]);
        assert_eq!(p.skipped[0].hint, "file1");
    }

    #[test]
    fn an_additional_service_log_replaces_the_default_entry() {
        let mut d = data();
        d.service_log = Some("out.txt".into());
        d.s3_uploader_additional_files = Some(vec![S3UploaderFile::from_filename("out.txt")]);
        let p = plan(&d, LogPhase::Start);
        let hints: Vec<_> = p.uploads.iter().map(|u| u.hint.as_str()).collect();
        assert_eq!(hints, ["file1"]);
        assert_eq!(p.uploads[0].metadata.file_glob, "out.txt*.[gb]z*");
    }

    #[test]
    fn tail_only_with_a_tag() {
        let mut d = data();
        let log = service_log_path(Path::new("/t"), &d);
        assert_eq!(log, Path::new("/t/service.log"));
        assert_eq!(tail_metadata(&log, &d, LogPhase::Start), None);
        d.executor_data.logging_tag = Some("app".into());
        d.executor_data
            .logging_extra_fields
            .insert("team".into(), "infra".into());
        let t = tail_metadata(&log, &d, LogPhase::End).unwrap();
        assert_eq!(t.tag, "app");
        assert!(t.finished);
        assert_eq!(
            t.extra_fields.get("team").map(String::as_str),
            Some("infra")
        );
    }

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize_lexically(Path::new("/a/./b/../c")),
            Path::new("/a/c")
        );
        assert_eq!(normalize_lexically(Path::new("/../a")), Path::new("/a"));
    }
}
