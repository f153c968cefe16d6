//! `<epochMillis>.cleanup.json`: statistics of one cleanup run.

use serde::{Deserialize, Serialize};

/// What one cleanup run did. Counters absent on read are 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CleanupResults {
    /// Files in the task definition directory with the definition suffix.
    pub total_task_files: u64,
    /// Tasks Singularity reports as running on this agent.
    pub mesos_running_tasks: u64,
    /// Tasks not cleaned yet (logs or `app/` kept for now).
    pub waiting_tasks: u64,
    /// Definitions skipped because the task still runs.
    pub running_tasks_ignored: u64,
    /// Tasks fully cleaned (definition deleted).
    pub successfully_cleaned_tasks: u64,
    /// Tasks whose files could not be read.
    pub io_error_tasks: u64,
    /// Tasks whose cleanup failed.
    pub error_tasks: u64,
    /// Files without the suffix, or unreadable definitions.
    pub invalid_tasks: u64,
    /// Why the run stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}
