//! Metric names of the Prometheus text file (`prometheusTextfilePath`), in one place.

/// Task definitions of the last run by `outcome`.
pub const TASKS: &str = "singularity_executor_cleanup_tasks";
/// Task definition files found.
pub const TASK_FILES: &str = "singularity_executor_cleanup_task_files";
/// Tasks Singularity reported active on the agent.
pub const ACTIVE_TASKS: &str = "singularity_executor_cleanup_active_tasks";
/// Orphaned containers removed.
pub const CONTAINERS_REMOVED: &str = "singularity_executor_cleanup_containers_removed";
/// Orphaned containers not removed.
pub const CONTAINER_ERRORS: &str = "singularity_executor_cleanup_container_errors";
/// 1 when the run stopped before cleaning.
pub const ABORTED: &str = "singularity_executor_cleanup_aborted";
/// When the run ended.
pub const LAST_RUN: &str = "singularity_executor_cleanup_last_run_timestamp_seconds";
