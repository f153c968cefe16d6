//! What the executor receives in `TaskInfo.data`: the deploy's executor data plus the fields the
//! scheduler injects.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::artifacts::{EmbeddedArtifact, ExternalArtifact, S3Artifact, S3ArtifactSignature};
use super::{default_true, null_as_default, null_as_true};
use crate::naming;

/// The deploy-level `executorData`, as the user wrote it in the deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorData {
    /// The shell command line, placed verbatim into the runner script.
    pub cmd: String,
    /// Artifacts whose content is inline.
    #[serde(default, deserialize_with = "null_as_default")]
    pub embedded_artifacts: Vec<EmbeddedArtifact>,
    /// Artifacts downloaded from URLs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub external_artifacts: Vec<ExternalArtifact>,
    /// Artifacts downloaded from S3.
    #[serde(default, deserialize_with = "null_as_default")]
    pub s3_artifacts: Vec<S3Artifact>,
    /// Exit codes counted as success; empty means only 0.
    #[serde(default, deserialize_with = "null_as_default")]
    pub successful_exit_codes: Vec<i32>,
    /// Unused by the executor; kept so it round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_sentinel: Option<String>,
    /// The Unix user to run as; the executor's `defaultRunAsUser` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Appended to `cmd`, separated by single spaces, unquoted.
    #[serde(default, deserialize_with = "null_as_default")]
    pub extra_cmd_line_args: Vec<String>,
    /// Enables tail metadata; also the `%tag` key token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_tag: Option<String>,
    /// Copied into the tail metadata.
    #[serde(default, deserialize_with = "null_as_default")]
    pub logging_extra_fields: BTreeMap<String, String>,
    /// SIGTERM→SIGKILL grace; the executor's `hardKillAfterMillis` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_kill_processes_after_millis: Option<i64>,
    /// Thread limit enforced by the thread checker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_threads: Option<i32>,
    /// Never delete the `app/` directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_task_sandbox_after_finish: Option<bool>,
    /// `ulimit -Sn` (non-docker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_files: Option<i32>,
    /// Don't rotate service.log; upload it raw at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_logrotate_and_compress: Option<bool>,
    /// Signatures of the S3 artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_artifact_signatures: Option<Vec<S3ArtifactSignature>>,
    /// Overrides the executor's `logrotateFrequency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logrotate_frequency: Option<LogrotateFrequency>,
}

impl ExecutorData {
    /// Whether `code` counts as success: listed in `successfulExitCodes`, or 0 when the list
    /// is empty.
    pub fn is_successful_exit_code(&self, code: i32) -> bool {
        if self.successful_exit_codes.is_empty() {
            code == 0
        } else {
            self.successful_exit_codes.contains(&code)
        }
    }
}

/// [`ExecutorData`] plus the fields the scheduler injects; serialized as one flat object.
///
/// The injected strings are optional because older schedulers did not send them; the
/// `effective_*` methods apply the scheduler's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SingularityTaskExecutorData {
    /// The deploy's executor data.
    #[serde(flatten)]
    pub executor_data: ExecutorData,
    /// Files to upload besides service.log. `None` when absent or `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uploader_additional_files: Option<Vec<S3UploaderFile>>,
    /// Upload bucket; `""` when the scheduler has no S3 configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_s3_bucket: Option<String>,
    /// Upload key pattern (tokens of [`crate::keyfmt`]); `""` when the scheduler has no S3 configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uploader_key_pattern: Option<String>,
    /// File name of the service log in the task directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_log: Option<String>,
    /// File name of the tail written at teardown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_finished_tail_log: Option<String>,
    /// Request group, the `%group` key token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_group: Option<String>,
    /// S3 storage class for uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_storage_class: Option<String>,
    /// Apply the storage class only above this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_s3_storage_class_after_bytes: Option<i64>,
    /// Hard CFS limit in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_hard_limit: Option<i32>,
    /// The deploy's health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_options: Option<HealthcheckOptions>,
}

impl SingularityTaskExecutorData {
    /// The service log file name, `service.log` when absent or empty.
    pub fn effective_service_log(&self) -> &str {
        non_empty_or(self.service_log.as_deref(), naming::SERVICE_LOG)
    }

    /// The finished-tail file name, `tail_of_finished_service.log` when absent or empty.
    pub fn effective_service_finished_tail_log(&self) -> &str {
        non_empty_or(
            self.service_finished_tail_log.as_deref(),
            naming::SERVICE_FINISHED_TAIL_LOG,
        )
    }

    /// The `%group` value: the request group, `default` when absent.
    pub fn effective_request_group(&self) -> &str {
        self.request_group
            .as_deref()
            .unwrap_or(naming::DEFAULT_REQUEST_GROUP)
    }
}

fn non_empty_or<'a>(value: Option<&'a str>, default: &'a str) -> &'a str {
    match value {
        Some(v) if !v.is_empty() => v,
        _ => default,
    }
}

/// An element of `s3UploaderAdditionalFiles`. Reads from a bare string (the file name) or an
/// object; always written as an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(remote = "Self")]
pub struct S3UploaderFile {
    /// File name (or glob) to upload.
    pub filename: String,
    /// Bucket; the executor data's `defaultS3Bucket` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uploader_bucket: Option<String>,
    /// Key pattern; the executor data's `s3UploaderKeyPattern` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uploader_key_pattern: Option<String>,
    /// The `<hint>` in the metadata file name; `file<n>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uploader_filename_hint: Option<String>,
    /// Directory relative to the task directory; the task directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Storage class; the executor data's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_storage_class: Option<String>,
    /// Storage class threshold; the executor data's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_s3_storage_class_after_bytes: Option<i64>,
    /// Recurse into subdirectories.
    #[serde(default, deserialize_with = "null_as_default")]
    pub check_subdirectories: bool,
    /// Gzip before upload.
    #[serde(default, deserialize_with = "null_as_default")]
    pub compress_before_upload: bool,
    /// Skip files still open.
    #[serde(default = "default_true", deserialize_with = "null_as_true")]
    pub check_if_open: bool,
}

impl S3UploaderFile {
    /// The form a bare string in the JSON stands for.
    pub fn from_filename(filename: impl Into<String>) -> Self {
        S3UploaderFile {
            filename: filename.into(),
            s3_uploader_bucket: None,
            s3_uploader_key_pattern: None,
            s3_uploader_filename_hint: None,
            directory: None,
            s3_storage_class: None,
            apply_s3_storage_class_after_bytes: None,
            check_subdirectories: false,
            compress_before_upload: false,
            check_if_open: true,
        }
    }
}

impl Serialize for S3UploaderFile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        S3UploaderFile::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for S3UploaderFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringOrObject;

        impl<'de> Visitor<'de> for StringOrObject {
            type Value = S3UploaderFile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file name or an s3UploaderAdditionalFiles object")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(S3UploaderFile::from_filename(value))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                S3UploaderFile::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_any(StringOrObject)
    }
}

/// The deploy's health check. The executor uses only the file-based fields
/// (`healthcheckResultFilePath`, `intervalSeconds`, `maxRetries`); the rest is kept so it
/// round-trips. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthcheckOptions {
    /// HTTP path to check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Index into the task's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i32>,
    /// A literal port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<i64>,
    /// `HTTP`, `HTTPS`, `HTTP2`, `HTTPS2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Time allowed for the task to become healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_timeout_seconds: Option<i32>,
    /// Delay before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_delay_seconds: Option<i32>,
    /// Interval between checks during startup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_interval_seconds: Option<i32>,
    /// Interval between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i32>,
    /// Timeout of one check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_seconds: Option<i32>,
    /// Checks allowed to fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// HTTP statuses that fail at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_status_codes: Option<Vec<i32>>,
    /// File (relative to the task directory) whose existence means healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_result_file_path: Option<String>,
}

/// How often a task's logs are rotated, at boundaries of the local clock.
///
/// The default, `DAILY`, is the executor's `logrotateFrequency` default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogrotateFrequency {
    /// Every minute.
    EveryMinute,
    /// Every five minutes.
    EveryFiveMinutes,
    /// Hourly.
    Hourly,
    /// Daily.
    #[default]
    Daily,
    /// Weekly.
    Weekly,
    /// Monthly.
    Monthly,
}

impl LogrotateFrequency {
    /// Every value, in declaration order.
    pub const ALL: [LogrotateFrequency; 6] = [
        LogrotateFrequency::EveryMinute,
        LogrotateFrequency::EveryFiveMinutes,
        LogrotateFrequency::Hourly,
        LogrotateFrequency::Daily,
        LogrotateFrequency::Weekly,
        LogrotateFrequency::Monthly,
    ];

    /// The accepted spellings (the Java enum names), in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "EVERY_MINUTE",
        "EVERY_FIVE_MINUTES",
        "HOURLY",
        "DAILY",
        "WEEKLY",
        "MONTHLY",
    ];

    /// The Java enum name, e.g. `EVERY_FIVE_MINUTES`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogrotateFrequency::EveryMinute => "EVERY_MINUTE",
            LogrotateFrequency::EveryFiveMinutes => "EVERY_FIVE_MINUTES",
            LogrotateFrequency::Hourly => "HOURLY",
            LogrotateFrequency::Daily => "DAILY",
            LogrotateFrequency::Weekly => "WEEKLY",
            LogrotateFrequency::Monthly => "MONTHLY",
        }
    }
}

impl fmt::Display for LogrotateFrequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown logrotate frequency name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown logrotate frequency {0:?}: expected one of EVERY_MINUTE, EVERY_FIVE_MINUTES, HOURLY, DAILY, WEEKLY, MONTHLY"
)]
pub struct ParseLogrotateFrequencyError(pub String);

impl FromStr for LogrotateFrequency {
    type Err = ParseLogrotateFrequencyError;

    /// Parses the Java enum name, exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogrotateFrequency::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| ParseLogrotateFrequencyError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_table() {
        for freq in LogrotateFrequency::ALL {
            assert_eq!(freq.as_str().parse::<LogrotateFrequency>().unwrap(), freq);
            assert_eq!(
                serde_json::to_string(&freq).unwrap(),
                format!("\"{}\"", freq.as_str())
            );
            assert_eq!(freq.to_string(), freq.as_str());
        }
        let names: Vec<&str> = LogrotateFrequency::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names, LogrotateFrequency::NAMES);
        assert_eq!(LogrotateFrequency::default(), LogrotateFrequency::Daily);
        let err = "hourly".parse::<LogrotateFrequency>().unwrap_err();
        assert!(err.to_string().contains("\"hourly\""));
    }

    #[test]
    fn successful_exit_codes() {
        let mut data: ExecutorData = serde_json::from_str(r#"{"cmd":"true"}"#).unwrap();
        assert!(data.is_successful_exit_code(0));
        assert!(!data.is_successful_exit_code(1));
        data.successful_exit_codes = vec![1, 2];
        assert!(!data.is_successful_exit_code(0));
        assert!(data.is_successful_exit_code(2));
    }
}
