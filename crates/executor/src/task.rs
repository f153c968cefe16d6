//! The life of one task, from LAUNCH to its terminal status update (spec §4.3, §4.8–4.10).
//!
//! ```text
//! prepare (data, ports, user, dirs, task definition)  ── error ──> TASK_LOST "Unexpected exception ..."
//! TASK_STARTING "Staging files..."
//! stage artifacts (a kill cancels it)                 ── kill ───> TASK_KILLED "Task killed before ..."
//!                                                     ── error ──> TASK_LOST / TASK_FAILED (verification)
//! log metadata (start), start the process
//! TASK_RUNNING at once, or when the health-check file appears
//! supervise: kills (SIGTERM, SIGKILL at the grace), destroy (SIGKILL), thread limit,
//!            health-check timeout
//! exit → TASK_FINISHED / TASK_FAILED / TASK_KILLED, then log metadata (end)
//! ```
//!
//! The supervisor talks to the process only through [`TaskRuntime`] and [`TaskControl`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use singularity_mesos::{StatusUpdate, TaskId, TaskInfo, TaskState};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::launch::{self, LaunchInput, LaunchPlan};
use crate::messages;
use crate::runtime::{ExitStatus, RuntimeError, StopSignal, TaskControl, TaskRuntime};
use crate::settings::Settings;
use crate::sidecar;
use crate::status::StatusSink;

/// How long staging may take to notice a cancellation before it is abandoned.
const STAGING_CANCEL_LIMIT: Duration = Duration::from_secs(10);

/// A request the executor passes on to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    /// Mesos KILL: SIGTERM now, SIGKILL after the grace. `grace` is the KILL event's policy.
    Kill {
        /// Grace from the KILL event's kill policy.
        grace: Option<Duration>,
    },
    /// Singularity destroy: SIGKILL now.
    Destroy {
        /// Who asked.
        user: Option<String>,
    },
    /// Executor shutdown: kill, with the grace capped at `budget`.
    Shutdown {
        /// Longest grace that still lets the terminal update out in time.
        budget: Duration,
    },
}

/// What every task of an executor shares.
#[derive(Debug, Clone)]
pub struct TaskEnv {
    /// Configuration.
    pub settings: Arc<Settings>,
    /// Runs the task's process.
    pub runtime: Arc<dyn TaskRuntime>,
    /// Receives status updates.
    pub sink: Arc<dyn StatusSink>,
    /// The executor's pid (messages, task definition).
    pub executor_pid: u32,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The task.
    pub task_id: String,
    /// Its terminal state.
    pub state: TaskState,
    /// The terminal message (untruncated).
    pub message: String,
}

struct Reporter<'a> {
    env: &'a TaskEnv,
    task_id: TaskId,
}

impl Reporter<'_> {
    async fn send(&self, state: TaskState, message: &str) {
        let message = messages::truncate(message, self.env.settings.max_message_length());
        self.env
            .sink
            .send(StatusUpdate::new(self.task_id.clone(), state).message(message))
            .await;
    }

    async fn finish(&self, state: TaskState, message: String) -> TaskOutcome {
        self.send(state, &message).await;
        TaskOutcome {
            task_id: self.task_id.value.clone(),
            state,
            message,
        }
    }
}

/// Runs `task` to its terminal update, obeying `commands` meanwhile.
pub async fn run_task(
    env: Arc<TaskEnv>,
    task: Box<TaskInfo>,
    input: LaunchInput,
    mut commands: mpsc::UnboundedReceiver<TaskCommand>,
) -> TaskOutcome {
    let reporter = Reporter {
        env: &env,
        task_id: task.task_id.clone(),
    };
    let task_id = task.task_id.value.clone();

    let settings = Arc::clone(&env.settings);
    let prepared =
        tokio::task::spawn_blocking(move || launch::prepare(&settings, &task, input)).await;
    let plan = match prepared {
        Ok(Ok(plan)) => plan,
        Ok(Err(error)) => {
            tracing::warn!(task_id, %error, "launch failed");
            let message = messages::launch_failed(&task_id, &error.to_string());
            return reporter.finish(TaskState::TaskLost, message).await;
        }
        Err(error) => {
            let message = messages::launch_failed(&task_id, &error.to_string());
            return reporter.finish(TaskState::TaskLost, message).await;
        }
    };

    // Runtime work before staging (a container image pull), interruptible like staging.
    if let Some(preparation) = env.runtime.before_staging(&plan.spec) {
        if let Some(announce) = preparation.announce {
            reporter
                .send(
                    TaskState::TaskStarting,
                    &messages::preparing(announce, env.executor_pid),
                )
                .await;
        }
        let cancel = CancellationToken::new();
        match interruptible(
            &task_id,
            preparation.work,
            &cancel,
            Duration::ZERO,
            &mut commands,
        )
        .await
        {
            Interruptible::Done(Ok(())) => {}
            Interruptible::Done(Err(error)) => {
                tracing::warn!(task_id, %error, "the runtime could not prepare the task");
                return reporter
                    .finish(TaskState::TaskFailed, error.to_string())
                    .await;
            }
            Interruptible::Stopped => {
                return finish_unstarted(&reporter, &plan, &env.settings).await;
            }
        }
    }

    reporter
        .send(
            TaskState::TaskStarting,
            &messages::staging(env.executor_pid),
        )
        .await;

    // Staging, interruptible by any stop request.
    let cancel = CancellationToken::new();
    let staging = sidecar::stage(&plan, &env.settings, cancel.clone());
    let staged = interruptible(
        &task_id,
        staging,
        &cancel,
        STAGING_CANCEL_LIMIT,
        &mut commands,
    )
    .await;
    let staged = match staged {
        Interruptible::Done(result) => result,
        Interruptible::Stopped => return finish_unstarted(&reporter, &plan, &env.settings).await,
    };
    if let Err(failure) = staged {
        tracing::warn!(task_id, message = failure.message, "staging failed");
        let state = if failure.verification {
            TaskState::TaskFailed
        } else {
            TaskState::TaskLost
        };
        return reporter
            .finish(state, messages::initializing_failed(&failure.message))
            .await;
    }

    let prepared = {
        let plan = plan.clone();
        let settings = Arc::clone(&env.settings);
        tokio::task::spawn_blocking(move || {
            launch::chown_for_user(&plan)?;
            sidecar::log_metadata_at_start(&plan, &settings);
            Ok::<(), std::io::Error>(())
        })
        .await
    };
    match prepared {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            let message = messages::launch_failed(
                &task_id,
                &format!("cannot give the task directory to its user: {error}"),
            );
            return reporter.finish(TaskState::TaskLost, message).await;
        }
        Err(error) => {
            let message = messages::launch_failed(&task_id, &error.to_string());
            return reporter.finish(TaskState::TaskLost, message).await;
        }
    }
    if let Ok(command) = commands.try_recv() {
        tracing::info!(
            task_id,
            ?command,
            "stop requested before the process started"
        );
        return finish_unstarted(&reporter, &plan, &env.settings).await;
    }

    let started = match env.runtime.start(&plan.spec).await {
        Ok(started) => started,
        Err(error) => {
            tracing::warn!(task_id, %error, "the process did not start");
            let outcome = reporter
                .finish(
                    TaskState::TaskLost,
                    messages::launch_failed(&task_id, &error.to_string()),
                )
                .await;
            end_metadata(&plan, &env.settings).await;
            return outcome;
        }
    };
    tracing::info!(
        task_id,
        pid = started.pid,
        runtime = env.runtime.name(),
        "process started"
    );

    let mut supervisor = Supervisor {
        plan: &plan,
        settings: &env.settings,
        reporter: &reporter,
        control: Arc::clone(&started.control),
        pid: started.pid,
        process_name: started.process_name.clone(),
        runtime_grace: started.kill_grace,
        first_stop: None,
        stopping: None,
        destroyed: None,
        threads: None,
        healthcheck_timed_out: None,
        running_sent: false,
    };
    let exit = supervisor.supervise(started.exit, &mut commands).await;
    let (state, message) = supervisor.terminal(exit).await;
    let outcome = reporter.finish(state, message).await;
    end_metadata(&plan, &env.settings).await;
    outcome
}

/// How an interruptible step ended.
enum Interruptible<T> {
    /// It ran to its end.
    Done(T),
    /// A stop request came first.
    Stopped,
}

/// Runs `work` until it ends or a stop request arrives. On a stop, `cancel` is cancelled and
/// `work` gets `settle` to notice before it is abandoned (its result is then ignored).
async fn interruptible<T>(
    task_id: &str,
    work: impl Future<Output = T>,
    cancel: &CancellationToken,
    settle: Duration,
    commands: &mut mpsc::UnboundedReceiver<TaskCommand>,
) -> Interruptible<T> {
    tokio::pin!(work);
    let mut open = true;
    let mut stopped = false;
    loop {
        tokio::select! {
            result = &mut work => {
                return if stopped { Interruptible::Stopped } else { Interruptible::Done(result) };
            }
            command = commands.recv(), if open && !stopped => match command {
                Some(command) => {
                    tracing::info!(task_id, ?command, "stop requested before the process started");
                    stopped = true;
                    cancel.cancel();
                }
                None => open = false,
            },
            () = tokio::time::sleep(settle), if stopped => {
                if !settle.is_zero() {
                    tracing::warn!(task_id, "staging did not stop after its cancellation; abandoned");
                }
                return Interruptible::Stopped;
            }
        }
    }
}

async fn finish_unstarted(
    reporter: &Reporter<'_>,
    plan: &LaunchPlan,
    settings: &Arc<Settings>,
) -> TaskOutcome {
    let outcome = reporter
        .finish(
            TaskState::TaskKilled,
            messages::KILLED_BEFORE_START.to_owned(),
        )
        .await;
    end_metadata(plan, settings).await;
    outcome
}

async fn end_metadata(plan: &LaunchPlan, settings: &Arc<Settings>) {
    let plan = plan.clone();
    let settings = Arc::clone(settings);
    if let Err(error) =
        tokio::task::spawn_blocking(move || sidecar::log_metadata_at_end(&plan, &settings)).await
    {
        tracing::warn!(%error, "writing the final log metadata failed");
    }
}

/// A kill in progress.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    requested_at: Instant,
    deadline: Instant,
    forced: bool,
}

struct Supervisor<'a> {
    plan: &'a LaunchPlan,
    settings: &'a Settings,
    reporter: &'a Reporter<'a>,
    control: Arc<dyn TaskControl>,
    pid: u32,
    process_name: String,
    /// The runtime's own grace when the task sets none (a container's `dockerStopTimeout`).
    runtime_grace: Option<Duration>,
    /// When the first stop request of any kind arrived.
    first_stop: Option<Instant>,
    stopping: Option<Stopping>,
    destroyed: Option<Option<String>>,
    threads: Option<(u64, u64)>,
    healthcheck_timed_out: Option<u64>,
    running_sent: bool,
}

impl Supervisor<'_> {
    fn task_id(&self) -> &str {
        &self.plan.task_id
    }

    /// The SIGTERM → SIGKILL grace: `sigKillProcessesAfterMillis`, else the runtime's own
    /// (a container's `dockerStopTimeout`), else the KILL event's policy, else the
    /// TaskInfo's, else `hardKillAfterMillis`.
    fn kill_grace(&self, event_grace: Option<Duration>) -> Duration {
        self.plan
            .data
            .executor_data
            .sig_kill_processes_after_millis
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis)
            .or(self.runtime_grace)
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
    async fn supervise(
        &mut self,
        mut exit: crate::runtime::BoxFuture<'static, Result<ExitStatus, RuntimeError>>,
        commands: &mut mpsc::UnboundedReceiver<TaskCommand>,
    ) -> Result<ExitStatus, RuntimeError> {
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
    async fn terminal(&mut self, exit: Result<ExitStatus, RuntimeError>) -> (TaskState, String) {
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
