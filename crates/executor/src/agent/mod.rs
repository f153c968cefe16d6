//! Entry point for Mesos: events from the agent drive the tasks; idle timers and shutdown
//! decide when the executor exits.
//!
//! - LAUNCH: a task is registered at once (so a KILL can reach it while it prepares) and run
//!   by [`supervise::run_task`]. During shutdown: TASK_LOST "Task couldn't start because executor
//!   is shutting down". A duplicate task id is only logged.
//! - KILL: passed to the task with the event's kill policy. Unknown task: logged.
//! - MESSAGE ([`framework_messages`]): a Singularity destroy kills the task with SIGKILL; a
//!   shell-command request runs a configured command against the task ([`crate::shell`]);
//!   anything else is logged.
//! - SHUTDOWN, SIGTERM or SIGINT, or the client giving up on the agent (connection lost
//!   without checkpointing, or no new subscription within `MESOS_RECOVERY_TIMEOUT`): every
//!   task is killed with its grace capped so that the terminal update leaves within
//!   `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`; the executor then waits for the
//!   acknowledgements (at most [`ACK_FAIL_SAFE`]; not at all when the agent is gone) and
//!   exits.
//! - Idle: no task within `initialIdleExecutorShutdownWaitMillis` of the start, or none left
//!   `idleExecutorShutdownWaitMillis` after the last one ended: exit.
//!
//! Exit codes ([`AgentError`]): 0 once every update is acknowledged; 1 when some were not
//! (agent gone, or the fail-safe expired); 3 when a task supervisor failed; 4 when the agent
//! refused an update (Singularity exits at once when it cannot report).

pub mod framework_messages;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use singularity_common::exit::{self, ExitStatus};
use singularity_mesos::{
    AgentEnv, EnvError, ExecutorClient, ExecutorEvent, StatusUpdate, TaskInfo, TaskState,
};
use singularity_runtime::{Shutdown, SignalError};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::framework_messages::FrameworkMessage;
use crate::launch::LaunchInput;
use crate::run::TaskBackend;
use crate::settings::Settings;
use crate::shell::{self, ShellSlot, UpdateSink};
use crate::supervise::status_updates::{self as messages, MesosSink, StatusSink};
use crate::supervise::{self, TaskCommand, TaskEnv, TaskOutcome};

/// Longest wait for the acknowledgement of the last updates before exiting anyway (the
/// Mesos executors use the same).
pub const ACK_FAIL_SAFE: Duration = Duration::from_secs(60);

/// Kept from the shutdown grace period for sending the terminal updates after the kills.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

/// The grace each task gets when the executor shuts down: the agent's shutdown grace period
/// less [`SHUTDOWN_MARGIN`] (half of it when it is shorter than twice the margin).
pub fn shutdown_budget(grace_period: Duration) -> Duration {
    if grace_period > SHUTDOWN_MARGIN * 2 {
        grace_period - SHUTDOWN_MARGIN
    } else {
        grace_period / 2
    }
}

/// Why the executor stopped serving the agent other than cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The `MESOS_*` environment is missing or invalid.
    #[error("not started by a Mesos agent (use `run TASK.json` to run a task alone): {source}")]
    NotUnderAgent {
        /// What is wrong with the environment.
        source: EnvError,
    },
    /// SIGTERM and SIGINT cannot be watched.
    #[error("cannot install signal handlers: {source}")]
    Signals {
        /// The cause.
        source: SignalError,
    },
    /// A task supervisor panicked or was cancelled.
    #[error("a task supervisor failed: {source}")]
    SupervisorFailed {
        /// The cause.
        source: JoinError,
    },
    /// The agent refused a status update: the executor can no longer report its tasks.
    #[error("the agent refused a status update")]
    StatusUpdateRefused,
    /// Status updates were left unacknowledged (the agent is gone, or the fail-safe expired).
    #[error("exiting with {count} status update(s) not acknowledged")]
    Unacknowledged {
        /// How many.
        count: usize,
    },
}

impl ExitStatus for AgentError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::SupervisorFailed { .. } => exit::EXECUTOR_FINISH_TASK,
            Self::StatusUpdateRefused => exit::EXECUTOR_STATUS_UPDATE,
            Self::NotUnderAgent { .. } | Self::Signals { .. } | Self::Unacknowledged { .. } => {
                exit::FAILURE
            }
        }
    }
}

/// Serves the agent that started this process (its `MESOS_*` environment) until the executor
/// should exit; SIGTERM and SIGINT shut it down.
pub async fn serve(
    settings: Arc<Settings>,
    backend: Arc<dyn TaskBackend>,
) -> Result<(), AgentError> {
    let agent_env = AgentEnv::from_env().map_err(|source| AgentError::NotUnderAgent { source })?;
    tracing::info!(
        executor_id = agent_env.executor_id.value,
        framework_id = agent_env.framework_id.value,
        sandbox = %agent_env.directory.display(),
        "serving the Mesos agent"
    );
    let shutdown = Shutdown::on_signals().map_err(|source| AgentError::Signals { source })?;
    run(settings, agent_env, backend, shutdown).await
}

/// Runs the executor against the agent described by `agent_env`, until it should exit.
pub async fn run(
    settings: Arc<Settings>,
    agent_env: AgentEnv,
    backend: Arc<dyn TaskBackend>,
    shutdown: Shutdown,
) -> Result<(), AgentError> {
    let sandbox = agent_env.directory.clone();
    let budget = shutdown_budget(agent_env.shutdown_grace_period);
    let (client, events) = ExecutorClient::start(agent_env);
    let fatal = CancellationToken::new();
    let sink: Arc<dyn StatusSink> = Arc::new(MesosSink::new(client.clone(), fatal.clone()));
    let env = Arc::new(TaskEnv {
        settings: Arc::clone(&settings),
        backend,
        sink,
        executor_pid: std::process::id(),
    });
    let mut executor = Executor {
        env,
        client,
        sandbox,
        budget,
        tasks: HashMap::new(),
        running: JoinSet::new(),
        shutting_down: false,
        shutdown_deadline: None,
        agent_gone: false,
    };
    executor.event_loop(events, shutdown, fatal).await
}

/// What the event loop holds of a task.
struct TaskHandle {
    commands: mpsc::UnboundedSender<TaskCommand>,
    shell: Arc<ShellSlot>,
}

/// Sends shell-command updates to the scheduler as framework messages.
struct MessageSink(ExecutorClient);

impl UpdateSink for MessageSink {
    fn send(&self, update: Vec<u8>) -> crate::run::BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(error) = self.0.message(update).await {
                tracing::warn!(%error, "cannot send a shell-command update");
            }
        })
    }
}

struct Executor {
    env: Arc<TaskEnv>,
    client: ExecutorClient,
    sandbox: PathBuf,
    budget: Duration,
    tasks: HashMap<String, TaskHandle>,
    running: JoinSet<TaskOutcome>,
    shutting_down: bool,
    /// Past this, tasks still running are abandoned.
    shutdown_deadline: Option<Instant>,
    agent_gone: bool,
}

impl Executor {
    async fn event_loop(
        &mut self,
        mut events: mpsc::Receiver<ExecutorEvent>,
        shutdown: Shutdown,
        fatal: CancellationToken,
    ) -> Result<(), AgentError> {
        let settings = Arc::clone(&self.env.settings);
        let mut idle_at = Some(Instant::now() + settings.initial_idle_wait());
        let mut events_open = true;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            if self.shutting_down && self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                event = events.recv(), if events_open => match event {
                    Some(event) => {
                        if self.handle_event(event).await {
                            idle_at = None;
                        }
                    }
                    None => {
                        events_open = false;
                        tracing::warn!("the agent connection has stopped");
                        self.agent_gone = true;
                        self.begin_shutdown();
                    }
                },
                Some(joined) = self.running.join_next() => {
                    match joined {
                        Ok(outcome) => {
                            tracing::info!(task_id = outcome.task_id, state = outcome.state.as_str(), "task ended");
                            self.tasks.remove(&outcome.task_id);
                        }
                        Err(source) => return Err(AgentError::SupervisorFailed { source }),
                    }
                    if self.tasks.is_empty() && !self.shutting_down {
                        tracing::info!(wait = ?settings.idle_wait(), "no task left; exiting unless one arrives");
                        idle_at = Some(Instant::now() + settings.idle_wait());
                    }
                }
                () = tokio::time::sleep_until(idle_at.unwrap_or(far)), if idle_at.is_some() => {
                    if self.tasks.is_empty() {
                        tracing::info!("idle: no task to run; exiting");
                        self.shutting_down = true;
                    } else {
                        idle_at = None;
                    }
                }
                () = shutdown.wait(), if !self.shutting_down => {
                    tracing::info!("asked to stop: killing every task");
                    self.begin_shutdown();
                }
                () = fatal.cancelled() => {
                    tracing::error!("cannot report to the agent: killing every task and exiting");
                    for task in self.tasks.values() {
                        let _ = task.commands.send(TaskCommand::Destroy { user: None });
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while self.running.join_next().await.is_some() {}
                    })
                    .await;
                    return Err(AgentError::StatusUpdateRefused);
                }
                () = tokio::time::sleep_until(self.shutdown_deadline.unwrap_or(far)), if self.shutdown_deadline.is_some() => {
                    tracing::error!(left = self.tasks.len(), "tasks still running after the shutdown grace period");
                    break;
                }
            }
        }
        self.running.abort_all();
        if self.agent_gone {
            return match self.client.unacknowledged() {
                0 => Ok(()),
                count => Err(AgentError::Unacknowledged { count }),
            };
        }
        if self.client.wait_all_acknowledged(ACK_FAIL_SAFE).await {
            tracing::info!("every status update acknowledged; exiting");
            Ok(())
        } else {
            Err(AgentError::Unacknowledged {
                count: self.client.unacknowledged(),
            })
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for task in self.tasks.values() {
            let _ = task.commands.send(TaskCommand::Shutdown {
                budget: self.budget,
            });
        }
        self.shutdown_deadline = Some(Instant::now() + self.budget + SHUTDOWN_MARGIN * 5);
    }

    /// Handles one event; true when a task was launched.
    async fn handle_event(&mut self, event: ExecutorEvent) -> bool {
        match event {
            ExecutorEvent::Subscribed(subscribed) => {
                tracing::info!(
                    framework = ?subscribed.framework_info.id,
                    "subscribed to the agent"
                );
                false
            }
            ExecutorEvent::Reconnected => {
                tracing::info!("subscribed to the agent again");
                false
            }
            ExecutorEvent::Disconnected => {
                tracing::warn!("disconnected from the agent; reconnecting");
                false
            }
            ExecutorEvent::Error(message) => {
                tracing::error!(message, "error from the agent");
                false
            }
            ExecutorEvent::Launch(task) => self.launch(task).await,
            ExecutorEvent::LaunchGroup(tasks) => {
                let mut any = false;
                for task in tasks {
                    any |= self.launch(Box::new(task)).await;
                }
                any
            }
            ExecutorEvent::Kill {
                task_id,
                kill_policy,
            } => {
                let grace = kill_policy.and_then(|p| p.grace());
                self.command(&task_id.value, TaskCommand::Kill { grace });
                false
            }
            ExecutorEvent::Message(bytes) => {
                self.framework_message(&bytes).await;
                false
            }
            ExecutorEvent::Shutdown { reason } => {
                tracing::info!(?reason, "shutdown");
                if reason != singularity_mesos::ShutdownReason::Agent {
                    self.agent_gone = true;
                }
                self.begin_shutdown();
                false
            }
        }
    }

    fn command(&self, task_id: &str, command: TaskCommand) {
        match self.tasks.get(task_id) {
            Some(task) => {
                if task.commands.send(command).is_err() {
                    tracing::info!(task_id, "the task is already ending");
                }
            }
            None => tracing::warn!(task_id, ?command, "request for an unknown task"),
        }
    }

    async fn launch(&mut self, task: Box<TaskInfo>) -> bool {
        let task_id = task.task_id.value.clone();
        if self.shutting_down {
            tracing::warn!(task_id, "launch refused: shutting down");
            self.env
                .sink
                .send(
                    StatusUpdate::new(task.task_id.clone(), TaskState::TaskLost)
                        .message(messages::SHUTTING_DOWN),
                )
                .await;
            return false;
        }
        if self.tasks.contains_key(&task_id) {
            tracing::warn!(task_id, "duplicate launch ignored");
            return false;
        }
        tracing::info!(task_id, "launching");
        let (tx, rx) = mpsc::unbounded_channel();
        let shell = Arc::new(ShellSlot::default());
        self.tasks.insert(
            task_id,
            TaskHandle {
                commands: tx,
                shell: Arc::clone(&shell),
            },
        );
        let input = LaunchInput {
            sandbox: self.sandbox.clone(),
            inherited_env: crate::run::executor_env(),
            extra_env: Vec::new(),
            executor_pid: self.env.executor_pid,
        };
        self.running.spawn(supervise::run_task(
            Arc::clone(&self.env),
            task,
            input,
            rx,
            shell,
        ));
        true
    }

    async fn framework_message(&self, bytes: &[u8]) {
        match framework_messages::parse(bytes) {
            Ok(FrameworkMessage::Destroy { task_id, user }) => {
                self.command(&task_id, TaskCommand::Destroy { user });
            }
            Ok(FrameworkMessage::ShellCommand(request)) => {
                let Some(task) = self.tasks.get(&request.task_id) else {
                    tracing::warn!(
                        task_id = request.task_id,
                        name = request.name,
                        "shell command for an unknown task ignored"
                    );
                    return;
                };
                tracing::info!(
                    task_id = request.task_id,
                    name = request.name,
                    "shell command requested"
                );
                let target = task.shell.get();
                let settings = Arc::clone(&self.env.settings);
                let sink = MessageSink(self.client.clone());
                tokio::spawn(async move { shell::run(&settings, request, target, &sink).await });
            }
            Ok(FrameworkMessage::Unknown { class }) => {
                tracing::warn!(class, "framework message of an unknown class ignored");
            }
            Err(error) => tracing::warn!(%error, "framework message ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_budget_leaves_room_for_the_updates() {
        assert_eq!(
            shutdown_budget(Duration::from_secs(5)),
            Duration::from_secs(3)
        );
        assert_eq!(
            shutdown_budget(Duration::from_secs(3)),
            Duration::from_millis(1500)
        );
        assert_eq!(shutdown_budget(Duration::ZERO), Duration::ZERO);
    }
}
