//! `<safeTaskId>.task.json`: what the cleanup needs to finish a task the executor started.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::executor_data::{HealthcheckOptions, SingularityTaskExecutorData};
use crate::naming;

/// A task definition, written by the executor at launch and read by the cleanup.
///
/// Path fields may be absolute or relative to `task_directory`; the `*_path` methods resolve
/// them. On read, `logrotateStateFile` and `logrotateStateFilePath` are both accepted (the
/// former wins when both are present); `logrotateStateFile` is written. `executorPid` is
/// written as a string and read from a string or a number. Path fields absent on read take the
/// sandbox default names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "TaskDefinitionWire")]
pub struct TaskDefinition {
    /// The task id string.
    pub task_id: String,
    /// The executor data the task was launched with.
    pub executor_data: SingularityTaskExecutorData,
    /// The task directory (`<sandbox>/<safeTaskId>`).
    pub task_directory: PathBuf,
    /// The executor's pid, as text.
    pub executor_pid: String,
    /// The service log.
    pub service_log_out: PathBuf,
    /// The service log's extension (after its last `.`), used in rotated names.
    pub service_log_out_extension: String,
    /// The tail written at teardown.
    pub service_finished_tail_log: PathBuf,
    /// The user command's working directory.
    pub task_app_directory: PathBuf,
    /// Output of the runner script.
    pub executor_bash_out: PathBuf,
    /// Logrotate state file for this task's own runs.
    pub logrotate_state_file: PathBuf,
    /// Output of artifact signature verification.
    pub signature_verify_out: PathBuf,
    /// The health check result file, when the deploy has a file health check.
    pub healthcheck_result_file_path: Option<PathBuf>,
}

impl TaskDefinition {
    /// `path` against the task directory; an absolute `path` is returned as is.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.task_directory.join(path)
    }

    /// The service log, resolved.
    pub fn service_log_out_path(&self) -> PathBuf {
        self.resolve(&self.service_log_out)
    }

    /// The finished tail log, resolved.
    pub fn service_finished_tail_log_path(&self) -> PathBuf {
        self.resolve(&self.service_finished_tail_log)
    }

    /// The app directory, resolved.
    pub fn task_app_directory_path(&self) -> PathBuf {
        self.resolve(&self.task_app_directory)
    }

    /// The runner output, resolved.
    pub fn executor_bash_out_path(&self) -> PathBuf {
        self.resolve(&self.executor_bash_out)
    }

    /// The logrotate state file, resolved.
    pub fn logrotate_state_file_path(&self) -> PathBuf {
        self.resolve(&self.logrotate_state_file)
    }

    /// The signature verification output, resolved.
    pub fn signature_verify_out_path(&self) -> PathBuf {
        self.resolve(&self.signature_verify_out)
    }

    /// The health check result file, resolved against the app directory (where the task's
    /// command runs and writes it): the definition's own field, else the one in the executor
    /// data's health check options.
    pub fn healthcheck_result_file_path(&self) -> Option<PathBuf> {
        self.healthcheck_result_file_path
            .as_deref()
            .map(Path::new)
            .or_else(|| {
                self.executor_data
                    .healthcheck_options
                    .as_ref()?
                    .healthcheck_result_file_path
                    .as_deref()
                    .map(Path::new)
            })
            .map(|p| self.task_app_directory_path().join(p))
    }

    /// The executor pid, if the text is a positive number.
    pub fn executor_pid(&self) -> Option<u32> {
        self.executor_pid
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|pid| *pid > 0)
    }
}

/// The written form. `healthcheckOptions` repeats the executor data's, as the Java getter does.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskDefinitionOut<'a> {
    task_id: &'a str,
    executor_data: &'a SingularityTaskExecutorData,
    task_directory: &'a Path,
    executor_pid: &'a str,
    service_log_out: &'a Path,
    service_log_out_extension: &'a str,
    service_finished_tail_log: &'a Path,
    task_app_directory: &'a Path,
    executor_bash_out: &'a Path,
    logrotate_state_file: &'a Path,
    signature_verify_out: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck_result_file_path: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck_options: Option<&'a HealthcheckOptions>,
}

impl Serialize for TaskDefinition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TaskDefinitionOut {
            task_id: &self.task_id,
            executor_data: &self.executor_data,
            task_directory: &self.task_directory,
            executor_pid: &self.executor_pid,
            service_log_out: &self.service_log_out,
            service_log_out_extension: &self.service_log_out_extension,
            service_finished_tail_log: &self.service_finished_tail_log,
            task_app_directory: &self.task_app_directory,
            executor_bash_out: &self.executor_bash_out,
            logrotate_state_file: &self.logrotate_state_file,
            signature_verify_out: &self.signature_verify_out,
            healthcheck_result_file_path: self.healthcheck_result_file_path.as_deref(),
            healthcheck_options: self.executor_data.healthcheck_options.as_ref(),
        }
        .serialize(serializer)
    }
}

/// The accepted input. A top-level `healthcheckOptions` is derived data and is ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskDefinitionWire {
    task_id: String,
    executor_data: SingularityTaskExecutorData,
    task_directory: PathBuf,
    #[serde(default, deserialize_with = "pid_text")]
    executor_pid: String,
    #[serde(default)]
    service_log_out: Option<PathBuf>,
    #[serde(default)]
    service_log_out_extension: Option<String>,
    #[serde(default)]
    service_finished_tail_log: Option<PathBuf>,
    #[serde(default)]
    task_app_directory: Option<PathBuf>,
    #[serde(default)]
    executor_bash_out: Option<PathBuf>,
    #[serde(default)]
    logrotate_state_file: Option<PathBuf>,
    #[serde(default)]
    logrotate_state_file_path: Option<PathBuf>,
    #[serde(default)]
    signature_verify_out: Option<PathBuf>,
    #[serde(default)]
    healthcheck_result_file_path: Option<PathBuf>,
}

impl From<TaskDefinitionWire> for TaskDefinition {
    fn from(w: TaskDefinitionWire) -> Self {
        let or_name = |p: Option<PathBuf>, name: &str| p.unwrap_or_else(|| PathBuf::from(name));
        TaskDefinition {
            task_id: w.task_id,
            executor_data: w.executor_data,
            task_directory: w.task_directory,
            executor_pid: w.executor_pid,
            service_log_out: or_name(w.service_log_out, naming::SERVICE_LOG),
            service_log_out_extension: w.service_log_out_extension.unwrap_or_default(),
            service_finished_tail_log: or_name(
                w.service_finished_tail_log,
                naming::SERVICE_FINISHED_TAIL_LOG,
            ),
            task_app_directory: or_name(w.task_app_directory, naming::APP_DIRECTORY),
            executor_bash_out: or_name(w.executor_bash_out, naming::EXECUTOR_BASH_LOG),
            logrotate_state_file: or_name(
                w.logrotate_state_file.or(w.logrotate_state_file_path),
                naming::LOGROTATE_STATE_FILE,
            ),
            signature_verify_out: or_name(w.signature_verify_out, naming::SIGNATURE_VERIFY_OUT),
            healthcheck_result_file_path: w.healthcheck_result_file_path,
        }
    }
}

/// `executorPid` from a string, a number or `null`.
fn pid_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct PidText;

    impl<'de> Visitor<'de> for PidText {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a pid as a string or a number")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }

    deserializer.deserialize_any(PidText)
}
