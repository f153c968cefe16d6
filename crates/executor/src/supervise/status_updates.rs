//! Outgoing status updates: their messages, worded as Singularity's executor words them (the
//! scheduler and UI show them; keep the wording), their truncation to `maxTaskMessageLength`,
//! and where they go ([`StatusSink`]: the Mesos agent, or standard output in standalone mode).
//! Incoming framework messages are the agent's (`agent::framework_messages`).

use std::fmt;
use std::io::Write as _;
use std::time::Duration;

use singularity_mesos::{ExecutorClient, StatusUpdate};
use tokio_util::sync::CancellationToken;

use crate::run::BoxFuture;

/// TASK_STARTING, before artifacts are staged.
pub fn staging(executor_pid: u32) -> String {
    format!("Staging files... (executor pid: {executor_pid})")
}

/// TASK_STARTING before backend work such as an image pull (`Pulling image...`).
pub fn preparing(what: &str, executor_pid: u32) -> String {
    format!("{what} (executor pid: {executor_pid})")
}

/// TASK_FAILED when the out-of-memory killer ended the task.
pub fn out_of_memory(code: i32) -> String {
    format!("Task ran out of memory and was killed by the OOM killer (code {code})")
}

/// TASK_RUNNING right after the process started.
pub fn running(process_name: &str, pid: u32) -> String {
    format!("Task running process {process_name} - (pid: {pid})")
}

/// TASK_RUNNING once the health-check file exists (or the process exited 0 before it did).
pub fn running_healthy(process_name: &str, pid: u32) -> String {
    format!(
        "{} (health check file found successfully).",
        running(process_name, pid)
    )
}

/// TASK_FAILED when the health-check file did not appear in time.
pub fn healthcheck_timed_out(max_delay_seconds: u64) -> String {
    format!(
        "Task timed out on health checks after {max_delay_seconds} seconds (health check file not found)."
    )
}

/// TASK_FINISHED.
pub fn exited_normally(code: i32) -> String {
    format!("Process exited normally with code {code}")
}

/// TASK_FAILED for an unsuccessful exit code.
pub fn failed(code: i32) -> String {
    format!("Process failed with code {code}")
}

/// TASK_FAILED after a kill for too many threads.
pub fn too_many_threads(used: u64, max: u64) -> String {
    format!("Task used {used} threads and was killed (max {max})")
}

/// TASK_KILLED when the process exited within the grace period.
pub fn killed_gracefully(code: i32, shutdown: Duration) -> String {
    format!(
        "Task killed. Process exited gracefully with code {code} (shutdownTime: {}ms)",
        shutdown.as_millis()
    )
}

/// TASK_KILLED when SIGKILL was needed after the grace period.
pub fn killed_after_waiting(grace: Duration, shutdown: Duration) -> String {
    format!(
        "Task killed forcibly after waiting at least {} (shutdownTime: {}ms)",
        java_duration(grace),
        shutdown.as_millis()
    )
}

/// TASK_KILLED after a destroy request.
pub fn destroyed(user: Option<&str>, shutdown: Duration) -> String {
    match user {
        Some(user) => format!(
            "Task killed forcibly by {user} (shutdownTime: {}ms)",
            shutdown.as_millis()
        ),
        None => format!(
            "Task killed forcibly after multiple kill requests from framework (shutdownTime: {}ms)",
            shutdown.as_millis()
        ),
    }
}

/// TASK_KILLED when the kill came before the process started.
pub const KILLED_BEFORE_START: &str = "Task killed before service process started";

/// TASK_LOST for a launch arriving while the executor shuts down.
pub const SHUTTING_DOWN: &str = "Task couldn't start because executor is shutting down";

/// TASK_LOST (or TASK_FAILED) when the launch itself failed.
pub fn launch_failed(task_id: &str, error: &str) -> String {
    format!("Unexpected exception while launching task {task_id} - {error}")
}

/// TASK_LOST (or TASK_FAILED for a verification failure) when staging failed.
pub fn initializing_failed(error: &str) -> String {
    format!("Error while initializing task: {error}")
}

/// TASK_LOST when the process could not be started or watched.
pub fn running_failed(error: &str) -> String {
    format!("Error while running process {error}")
}

/// A duration as Java's `DurationFormatUtils.formatDuration(millis, "mm:ss.S")` prints it:
/// total minutes (two digits at least), seconds, milliseconds.
pub fn java_duration(d: Duration) -> String {
    let millis = d.as_millis();
    let minutes = millis / 60_000;
    let seconds = (millis / 1000) % 60;
    let ms = millis % 1000;
    format!("{minutes:02}:{seconds:02}.{ms}")
}

/// `message` cut to `max` characters, as the executor caps every status message.
pub fn truncate(message: &str, max: usize) -> String {
    match message.char_indices().nth(max) {
        Some((at, _)) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Receives a task's status updates.
pub trait StatusSink: Send + Sync + fmt::Debug {
    /// Delivers (or queues) one update. Failures are handled by the sink.
    fn send(&self, update: StatusUpdate) -> BoxFuture<'_, ()>;
}

/// Sends updates to the agent. An update the agent refuses means the executor can no longer
/// report its tasks: the sink then cancels `fatal`, and the executor exits with code 4 as
/// Singularity's does.
#[derive(Debug, Clone)]
pub struct MesosSink {
    client: ExecutorClient,
    fatal: CancellationToken,
}

impl MesosSink {
    /// A sink over `client`; `fatal` is cancelled when an update is refused.
    pub fn new(client: ExecutorClient, fatal: CancellationToken) -> Self {
        Self { client, fatal }
    }
}

impl StatusSink for MesosSink {
    fn send(&self, update: StatusUpdate) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let task_id = update.task_id.value.clone();
            let state = update.state;
            tracing::info!(
                task_id,
                state = state.as_str(),
                message = update.message.as_deref().unwrap_or(""),
                "status update"
            );
            if let Err(error) = self.client.update(update).await {
                tracing::error!(task_id, state = state.as_str(), %error, "the agent refused a status update");
                self.fatal.cancel();
            }
        })
    }
}

/// Prints each update as `TASK_STATE: message` on standard output.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrintSink;

impl StatusSink for PrintSink {
    fn send(&self, update: StatusUpdate) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let line = format!(
                "{}: {}",
                update.state.as_str(),
                update.message.as_deref().unwrap_or("")
            );
            tracing::debug!(task_id = update.task_id.value, "{line}");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_java() {
        assert_eq!(java_duration(Duration::from_millis(180_000)), "03:00.0");
        assert_eq!(java_duration(Duration::from_millis(2_000)), "00:02.0");
        assert_eq!(java_duration(Duration::from_millis(1_500)), "00:01.500");
        assert_eq!(java_duration(Duration::from_millis(3_723_004)), "62:03.4");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn messages_keep_singularity_wording() {
        assert_eq!(running("sh", 42), "Task running process sh - (pid: 42)");
        assert_eq!(
            running_healthy("sh", 42),
            "Task running process sh - (pid: 42) (health check file found successfully)."
        );
        assert_eq!(
            killed_after_waiting(Duration::from_secs(2), Duration::from_millis(2004)),
            "Task killed forcibly after waiting at least 00:02.0 (shutdownTime: 2004ms)"
        );
        assert_eq!(
            launch_failed("t", "bad"),
            "Unexpected exception while launching task t - bad"
        );
    }
}
