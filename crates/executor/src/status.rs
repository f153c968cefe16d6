//! Where status updates go: the Mesos agent, or standard output in standalone mode.

use std::fmt;
use std::io::Write as _;

use singularity_mesos::{ExecutorClient, StatusUpdate};
use tokio_util::sync::CancellationToken;

use crate::runtime::BoxFuture;

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
