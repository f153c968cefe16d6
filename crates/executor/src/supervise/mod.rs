//! Step 4, supervise and report: the life of one task, from LAUNCH to its terminal status
//! update. [`run_task`] walks the steps in order — [`crate::launch`], [`crate::staging`],
//! [`crate::run`], the supervisor while the process runs, [`crate::teardown`] — and sends
//! each status update ([`status_updates`]) on the way.
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
//! The supervisor talks to the process only through [`TaskBackend`] and
//! [`crate::run::TaskControl`].

pub mod status_updates;
mod supervisor;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use singularity_common::task_logs::LogPhase;
use singularity_logs::ServiceLog;
use singularity_mesos::{StatusUpdate, TaskId, TaskInfo, TaskState};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::status_updates as messages;
use self::status_updates::StatusSink;
use self::supervisor::Supervisor;
use crate::additional_logs;
use crate::launch::{self, LaunchInput, LaunchPlan};
use crate::records;
use crate::run::TaskBackend;
use crate::settings::Settings;
use crate::shell::{self, ShellSlot, ShellTarget};
use crate::staging::{self, StagingContext};
use crate::teardown;

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
    pub backend: Arc<dyn TaskBackend>,
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

/// Sends one task's status updates.
pub(crate) struct Reporter<'a> {
    env: &'a TaskEnv,
    task_id: TaskId,
}

impl Reporter<'_> {
    pub(crate) async fn send(&self, state: TaskState, message: &str) {
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

/// Runs `task` to its terminal update, obeying `commands` meanwhile; `shell` holds the
/// running process for shell commands while there is one.
pub async fn run_task(
    env: Arc<TaskEnv>,
    task: Box<TaskInfo>,
    input: LaunchInput,
    mut commands: mpsc::UnboundedReceiver<TaskCommand>,
    shell: Arc<ShellSlot>,
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

    // Backend work before staging (a container image pull), interruptible like staging.
    if let Some(preparation) = env.backend.before_staging(&plan.spec) {
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
                tracing::warn!(task_id, %error, "the backend could not prepare the task");
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
    let context = StagingContext::new(plan.task_dir(), &env.settings);
    let staging = staging::stage_artifacts(&context, &plan.data, cancel.clone());
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
    if let Err(error) = staged {
        let message = error.to_string();
        tracing::warn!(task_id, message, "staging failed");
        let state = if error.is_verification_failure() {
            TaskState::TaskFailed
        } else {
            TaskState::TaskLost
        };
        return reporter
            .finish(state, messages::initializing_failed(&message))
            .await;
    }

    let prepared = {
        let plan = plan.clone();
        let settings = Arc::clone(&env.settings);
        tokio::task::spawn_blocking(move || {
            if let Some(user) = &plan.spec.run_as {
                staging::give_to_user(&plan.sandbox, plan.task_dir(), user.uid, user.gid)?;
            }
            records::write_task_log_metadata(
                &plan.definition,
                LogPhase::Start,
                &settings.base,
                &settings.executor,
            );
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

    let log = match ServiceLog::open(plan.log_settings.clone()) {
        Ok(log) => Arc::new(log),
        Err(error) => {
            tracing::warn!(task_id, %error, "cannot open the service log");
            let outcome = reporter
                .finish(
                    TaskState::TaskLost,
                    messages::launch_failed(&task_id, &error.to_string()),
                )
                .await;
            teardown::finish(&plan, &env.settings, None).await;
            return outcome;
        }
    };
    let extras = additional_logs::start(&plan, &env.settings);
    let started = match env.backend.start(&plan.spec, Arc::clone(&log)).await {
        Ok(started) => started,
        Err(error) => {
            tracing::warn!(task_id, %error, "the process did not start");
            let outcome = reporter
                .finish(
                    TaskState::TaskLost,
                    messages::launch_failed(&task_id, &error.to_string()),
                )
                .await;
            additional_logs::finish(&task_id, extras).await;
            teardown::finish(&plan, &env.settings, Some(log)).await;
            return outcome;
        }
    };
    tracing::info!(
        task_id,
        pid = started.pid,
        backend = env.backend.name(),
        "process started"
    );

    shell.set(ShellTarget {
        task_dir: plan.task_dir().to_owned(),
        user: shell::task_user(
            plan.data.executor_data.user.as_deref(),
            &env.settings.executor.default_run_as_user,
        ),
        pid: started.pid,
        place: started.shell.clone(),
        ended: CancellationToken::new(),
    });
    let mut supervisor = Supervisor::new(&plan, &env.settings, &reporter, &started);
    let exit = supervisor.supervise(started.exit, &mut commands).await;
    shell.end();
    let (state, message) = supervisor.terminal(exit).await;
    let outcome = reporter.finish(state, message).await;
    additional_logs::finish(&task_id, extras).await;
    teardown::finish(&plan, &env.settings, Some(log)).await;
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
    teardown::finish(plan, settings, None).await;
    outcome
}
