//! The supervisor of a running task: kills (SIGTERM, then SIGKILL at the grace), destroys
//! (SIGKILL), the thread limit and the health-check file, until the process exits; then the
//! terminal state and message.

use std::sync::Arc;
use std::time::Duration;

use singularity_mesos::TaskState;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::status_updates as messages;
use super::{Reporter, TaskCommand};
use crate::launch::LaunchPlan;
use crate::run::{BackendError, BoxFuture, ExitStatus, StartedTask, StopSignal, TaskControl};
use crate::settings::Settings;

/// A kill in progress.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    requested_at: Instant,
    deadline: Instant,
    forced: bool,
}

/// Watches one running task: kills, destroys, the thread limit, the health check.
pub(super) struct Supervisor<'a> {
    plan: &'a LaunchPlan,
    settings: &'a Settings,
    reporter: &'a Reporter<'a>,
    control: Arc<dyn TaskControl>,
    pid: u32,
    process_name: String,
    /// The backend's own grace when the task sets none (a container's `dockerStopTimeout`).
    backend_grace: Option<Duration>,
    /// When the first stop request of any kind arrived.
    first_stop: Option<Instant>,
    stopping: Option<Stopping>,
    destroyed: Option<Option<String>>,
    threads: Option<(u64, u64)>,
    healthcheck_timed_out: Option<u64>,
    running_sent: bool,
}

impl<'a> Supervisor<'a> {
    /// A supervisor of `started`, not yet watching it.
    pub(super) fn new(
        plan: &'a LaunchPlan,
        settings: &'a Settings,
        reporter: &'a Reporter<'a>,
        started: &StartedTask,
    ) -> Self {
        Self {
            plan,
            settings,
            reporter,
            control: Arc::clone(&started.control),
            pid: started.pid,
            process_name: started.process_name.clone(),
            backend_grace: started.kill_grace,
            first_stop: None,
            stopping: None,
            destroyed: None,
            threads: None,
            healthcheck_timed_out: None,
            running_sent: false,
        }
    }

    fn task_id(&self) -> &str {
        &self.plan.task_id
    }

    /// The SIGTERM → SIGKILL grace: `sigKillProcessesAfterMillis`, else the backend's own
    /// (a container's `dockerStopTimeout`), else the KILL event's policy, else the
    /// TaskInfo's, else `hardKillAfterMillis`.
    fn kill_grace(&self, event_grace: Option<Duration>) -> Duration {
        self.plan
            .data
            .executor_data
            .sig_kill_processes_after_millis
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis)
            .or(self.backend_grace)
            .or(event_grace)
            .or(self.plan.task_kill_grace)
            .unwrap_or_else(|| self.settings.hard_kill_after())
    }

    async fn signal(&self, signal: StopSignal) {
        if let Err(error) = self.control.signal(signal).await {
            tracing::warn!(task_id = self.task_id(), %error, "signal not delivered");
        }
    }

    /// SIGTERM now and SIGKILL after `grace`; a later request can only bring SIGKILL closer.
    async fn request_stop(&mut self, grace: Duration) {
        if self.destroyed.is_some() {
            return;
        }
        let now = Instant::now();
        self.first_stop.get_or_insert(now);
        match &mut self.stopping {
            Some(stopping) => {
                let deadline = now + grace;
                if deadline < stopping.deadline && !stopping.forced {
                    tracing::info!(task_id = self.plan.task_id, ?grace, "kill grace shortened");
                    stopping.deadline = deadline;
                }
            }
            None => {
                tracing::info!(
                    task_id = self.plan.task_id,
                    ?grace,
                    "killing: SIGTERM to the task"
                );
                self.stopping = Some(Stopping {
                    requested_at: now,
                    deadline: now + grace,
                    forced: false,
                });
                self.signal(StopSignal::Terminate).await;
            }
        }
    }

    async fn destroy(&mut self, user: Option<String>) {
        tracing::info!(
            task_id = self.plan.task_id,
            user,
            "destroying: SIGKILL to the task"
        );
        self.first_stop.get_or_insert_with(Instant::now);
        self.destroyed = Some(user);
        self.signal(StopSignal::Kill).await;
    }

    async fn handle(&mut self, command: TaskCommand) {
        match command {
            TaskCommand::Kill { grace } => {
                let grace = self.kill_grace(grace);
                self.request_stop(grace).await;
            }
            TaskCommand::Shutdown { budget } => {
                let grace = self.kill_grace(None).min(budget);
                self.request_stop(grace).await;
            }
            TaskCommand::Destroy { user } => {
                if self.destroyed.is_none() {
                    self.destroy(user).await;
                }
            }
        }
    }

    async fn check_threads(&mut self, max: u64) {
        if self.stopping.is_some() || self.destroyed.is_some() {
            return;
        }
        match self.control.thread_count().await {
            Ok(used) if used > max => {
                tracing::warn!(task_id = self.task_id(), used, max, "thread limit exceeded");
                self.threads = Some((used, max));
                let grace = self.kill_grace(None);
                self.request_stop(grace).await;
            }
            Ok(used) => tracing::trace!(task_id = self.task_id(), used, max, "threads"),
            Err(error) => tracing::debug!(task_id = self.task_id(), %error, "thread count"),
        }
    }

    async fn send_running(&mut self, healthy: bool) {
        if self.running_sent {
            return;
        }
        self.running_sent = true;
        let message = if healthy {
            messages::running_healthy(&self.process_name, self.pid)
        } else {
            messages::running(&self.process_name, self.pid)
        };
        self.reporter.send(TaskState::TaskRunning, &message).await;
    }

    /// Drives the task until its exit future resolves.
    pub(super) async fn supervise(
        &mut self,
        mut exit: BoxFuture<'static, Result<ExitStatus, BackendError>>,
        commands: &mut mpsc::UnboundedReceiver<TaskCommand>,
    ) -> Result<ExitStatus, BackendError> {
        let started_at = Instant::now();
        let healthcheck = self.plan.healthcheck.clone();
        let mut next_healthcheck = match &healthcheck {
            Some(_) => Some(started_at),
            None => {
                self.send_running(false).await;
                None
            }
        };
        let max_threads = self.plan.max_threads;
        let period = self.settings.check_threads_every();
        let mut thread_ticks = tokio::time::interval_at(started_at + period, period);
        thread_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        let far = started_at + Duration::from_secs(86_400 * 365);

        loop {
            let kill_at = self.stopping.filter(|s| !s.forced).map(|s| s.deadline);
            tokio::select! {
                status = &mut exit => return status,
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.handle(command).await,
                    None => commands_open = false,
                },
                () = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    if let Some(stopping) = &mut self.stopping {
                        stopping.forced = true;
                    }
                    tracing::info!(task_id = self.task_id(), "grace period over: SIGKILL to the task");
                    self.signal(StopSignal::Kill).await;
                }
                _ = thread_ticks.tick(), if max_threads.is_some() => {
                    if let Some(max) = max_threads {
                        self.check_threads(max).await;
                    }
                }
                () = tokio::time::sleep_until(next_healthcheck.unwrap_or(far)), if next_healthcheck.is_some() => {
                    next_healthcheck = None;
                    if let Some(check) = &healthcheck {
                        if tokio::fs::try_exists(&check.file).await.unwrap_or(false) {
                            self.send_running(true).await;
                        } else if started_at.elapsed() >= Duration::from_secs(check.max_delay_seconds) {
                            tracing::warn!(task_id = self.task_id(), file = %check.file.display(), "health check file not found in time");
                            self.healthcheck_timed_out = Some(check.max_delay_seconds);
                            self.first_stop.get_or_insert_with(Instant::now);
                            self.signal(StopSignal::Kill).await;
                        } else {
                            next_healthcheck = Some(Instant::now() + check.interval);
                        }
                    }
                }
            }
        }
    }

    /// The terminal state and message for how the process ended.
    pub(super) async fn terminal(
        &mut self,
        exit: Result<ExitStatus, BackendError>,
    ) -> (TaskState, String) {
        let shutdown_time = self.first_stop.map(|t| t.elapsed()).unwrap_or_default();
        let status = match exit {
            Ok(status) => status,
            Err(error) => {
                tracing::warn!(task_id = self.task_id(), %error, "lost track of the process");
                let state = if self.first_stop.is_some() {
                    TaskState::TaskKilled
                } else {
                    TaskState::TaskLost
                };
                return (state, messages::running_failed(&error.to_string()));
            }
        };
        let code = status.exit_code();
        tracing::info!(task_id = self.task_id(), %status, "process exited");
        if let Some((used, max)) = self.threads {
            return (TaskState::TaskFailed, messages::too_many_threads(used, max));
        }
        if let Some(seconds) = self.healthcheck_timed_out {
            return (
                TaskState::TaskFailed,
                messages::healthcheck_timed_out(seconds),
            );
        }
        if let Some(user) = &self.destroyed {
            return (
                TaskState::TaskKilled,
                messages::destroyed(user.as_deref(), shutdown_time),
            );
        }
        if let Some(stopping) = self.stopping {
            let message = if stopping.forced {
                messages::killed_after_waiting(
                    stopping
                        .deadline
                        .saturating_duration_since(stopping.requested_at),
                    shutdown_time,
                )
            } else {
                messages::killed_gracefully(code, shutdown_time)
            };
            return (TaskState::TaskKilled, message);
        }
        if status.oom_killed {
            return (TaskState::TaskFailed, messages::out_of_memory(code));
        }
        if self.plan.data.executor_data.is_successful_exit_code(code) {
            // A process that succeeds before its health-check file appears still counts as
            // having run (Singularity sends RUNNING, then FINISHED).
            self.send_running(true).await;
            (TaskState::TaskFinished, messages::exited_normally(code))
        } else {
            (TaskState::TaskFailed, messages::failed(code))
        }
    }
}
