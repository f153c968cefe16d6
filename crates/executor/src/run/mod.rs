//! Step 3, run: how a task's process is run, whatever runs it.
//!
//! The supervisor ([`crate::supervise`]) drives a [`TaskBackend`]: it starts the task from a
//! [`TaskSpec`] (made by [`crate::launch`]), gets back a [`StartedTask`] (main pid, a
//! [`TaskControl`] to signal it or count its threads, and a future resolving to its
//! [`ExitStatus`]), and never learns whether it is a process group
//! ([`process::ProcessBackend`]) or a container ([`container::ContainerBackend`] on a
//! Docker-API engine, [`oci::OciBackend`] with an OCI runtime and no daemon);
//! [`select::SelectBackend`] picks one per task, and [`select::backends`] builds them from the
//! settings, wrapped in [`cgroup::CpuHardLimit`] for `cpuHardLimit`. The backend owns the
//! task's output and hands it to the task's [`ServiceLog`] (`singularity-logs`), which writes
//! and rotates `service.log`.

pub mod cgroup;
pub mod container;
pub mod oci;
pub mod process;
pub mod select;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use singularity_logs::ServiceLog;
use singularity_mesos::ContainerInfo;

/// Counts a task's threads on the blocking pool (a `/proc` or cgroup scan), for
/// [`TaskControl::thread_count`] of every backend.
pub(crate) async fn count_threads_blocking(
    task_id: &str,
    count: impl FnOnce() -> std::io::Result<u64> + Send + 'static,
) -> Result<u64, BackendError> {
    tokio::task::spawn_blocking(count)
        .await
        .map_err(std::io::Error::other)
        .and_then(|counted| counted)
        .map_err(|source| BackendError::Threads {
            task_id: task_id.to_owned(),
            source,
        })
}

/// Whether a task with this `TaskInfo.container` runs in a Docker container: `docker` is set
/// and the type is `DOCKER` (or absent).
pub fn is_docker(container: Option<&ContainerInfo>) -> bool {
    container.is_some_and(|c| {
        c.docker.is_some() && c.kind != Some(singularity_mesos::types::ContainerType::Mesos)
    })
}

/// Whether a task with this `TaskInfo.container` runs in a container of any runtime: a
/// Docker image, or a `type: MESOS` container with `mesos.image`.
pub fn is_container(container: Option<&ContainerInfo>) -> bool {
    is_docker(container)
        || container.is_some_and(|c| {
            c.docker.is_some() || c.mesos.as_ref().is_some_and(|m| m.get("image").is_some())
        })
}

/// The executor's own environment, as tasks inherit it; variables that are not UTF-8 are
/// left out.
pub fn executor_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The user a task runs as, when it is not the executor's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Everything a backend needs to start one task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Singularity task id.
    pub task_id: String,
    /// `<sandbox>/<safeTaskId>`.
    pub task_dir: PathBuf,
    /// Working directory of the command (`<task_dir>/app`).
    pub app_dir: PathBuf,
    /// Shell command line: `cmd` plus each extra argument after a single space.
    pub command: String,
    /// The complete environment of the command.
    pub env: Vec<(String, String)>,
    /// Switch to this user before running the command.
    pub run_as: Option<RunAs>,
    /// Soft `RLIMIT_NOFILE` of the command.
    pub max_open_files: Option<u64>,
    /// Source `/etc/profile.d/*.sh` and `app/.profile.d/*` first.
    pub source_profile_scripts: bool,
    /// File the command's stdout and stderr are appended to.
    pub service_log: PathBuf,
    /// The Mesos container description, for backends that run containers.
    pub container: Option<ContainerInfo>,
    /// What a container gets instead of `env`: the Mesos task environment alone, without
    /// the executor's own variables (empty for plain processes).
    pub container_env: Vec<(String, String)>,
    /// The task's `cpus` resource.
    pub cpus: Option<f64>,
    /// The task's `mem` resource, in MiB.
    pub mem_mib: Option<f64>,
    /// The task's thread limit (`maxTaskThreads`).
    pub max_threads: Option<u64>,
    /// CPUs the task may use at most (`cpuHardLimit`), enforced as a CFS quota.
    pub cpu_hard_limit: Option<u64>,
}

impl TaskSpec {
    /// Whether the task runs in a Docker container.
    pub fn is_docker(&self) -> bool {
        is_docker(self.container.as_ref())
    }
}

/// How the task's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// The kernel's out-of-memory killer ended it (containers report this).
    pub oom_killed: bool,
}

impl ExitStatus {
    /// The code Singularity reports: the exit code, or 128 + the signal number as a shell
    /// (and Java's `Process.exitValue`) reports a process killed by a signal.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => -1,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// Signals the supervisor sends to a whole task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// Ask it to stop (SIGTERM).
    Terminate,
    /// Stop it now (SIGKILL).
    Kill,
}

/// Why a backend could not start or control a task.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Spawning the shell that runs the command failed.
    #[error("cannot start {shell} -c for task {task_id}: {source}")]
    Spawn {
        /// The shell.
        shell: &'static str,
        /// The task.
        task_id: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The process ended before its pid could be read.
    #[error("cannot start task {task_id}: the process exited before its pid was read")]
    NoPid {
        /// The task.
        task_id: String,
    },
    /// Signalling failed.
    #[error("cannot send {signal:?} to task {task_id}: {source}")]
    Signal {
        /// The task.
        task_id: String,
        /// The signal.
        signal: StopSignal,
        /// The cause.
        source: std::io::Error,
    },
    /// Waiting for the exit failed.
    #[error("cannot wait for task {task_id}: {source}")]
    Wait {
        /// The task.
        task_id: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Counting threads failed.
    #[error("cannot count the threads of task {task_id}: {source}")]
    Threads {
        /// The task.
        task_id: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The task's container is not acceptable, or the engine refused or failed an operation.
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    /// The task's daemonless container could not be planned or run.
    #[error(transparent)]
    Oci(#[from] oci::OciTaskError),
}

/// Controls a started task; shared by the supervisor's timers.
pub trait TaskControl: Send + Sync + fmt::Debug {
    /// Sends `signal` to every process of the task at once.
    fn signal(&self, signal: StopSignal) -> BoxFuture<'_, Result<(), BackendError>>;
    /// Threads used by every process of the task together.
    fn thread_count(&self) -> BoxFuture<'_, Result<u64, BackendError>>;
}

/// Where a task's shell commands ([`crate::shell`]) run.
#[derive(Clone, Debug)]
pub enum ShellPlace {
    /// On the host beside the task's process; `{PID}` is its main pid.
    Host,
    /// Inside the task's container, through its runtime; `{PID}` is 1.
    Container(Arc<dyn ContainerExec>),
}

/// Runs commands inside one task's container.
pub trait ContainerExec: Send + Sync + fmt::Debug {
    /// The words that stand for the runtime in the command line reported to the scheduler
    /// (`docker exec se-<taskId>`, as Singularity shows it).
    fn shown_as(&self) -> Vec<String>;
    /// Starts `argv` in the container with `env` added, its stdout and stderr appended to
    /// `output`.
    fn exec(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        output: std::fs::File,
    ) -> BoxFuture<'_, Result<RunningCommand, std::io::Error>>;
}

/// A shell command that has started.
pub struct RunningCommand {
    /// Host pid of the command (reported in STARTED, SIGKILLed when its task ends).
    pub pid: Option<u32>,
    /// Resolves to its exit code once it has ended and its output is written.
    pub exit: BoxFuture<'static, Result<i32, std::io::Error>>,
}

impl fmt::Debug for RunningCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningCommand")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// A task that is running.
pub struct StartedTask {
    /// The main process id (reported in TASK_RUNNING).
    pub pid: u32,
    /// Name of the main program, for the TASK_RUNNING message.
    pub process_name: String,
    /// Signals and counts.
    pub control: Arc<dyn TaskControl>,
    /// Resolves once the main process has ended, no other process of the task is left and its
    /// output is flushed to the service log. Poll it to completion exactly once.
    pub exit: BoxFuture<'static, Result<ExitStatus, BackendError>>,
    /// The SIGTERM → SIGKILL grace this backend uses when the task sets none
    /// (`sigKillProcessesAfterMillis`); `None` leaves it to the kill policy.
    pub kill_grace: Option<Duration>,
    /// Where its shell commands run.
    pub shell: ShellPlace,
}

impl fmt::Debug for StartedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartedTask")
            .field("pid", &self.pid)
            .field("process_name", &self.process_name)
            .field("control", &self.control)
            .field("kill_grace", &self.kill_grace)
            .field("shell", &self.shell)
            .finish_non_exhaustive()
    }
}

impl StartedTask {
    /// Stops the task with a grace period: SIGTERM now, SIGKILL if it is still running after
    /// `grace`; returns its exit status.
    pub async fn stop(self, grace: Duration) -> Result<ExitStatus, BackendError> {
        let mut exit = self.exit;
        self.control.signal(StopSignal::Terminate).await?;
        match tokio::time::timeout(grace, &mut exit).await {
            Ok(status) => status,
            Err(_) => {
                self.control.signal(StopSignal::Kill).await?;
                exit.await
            }
        }
    }
}

/// Work a backend does before the artifacts are staged (the container backend checks the
/// container and pulls its image).
pub struct Preparation<'a> {
    /// Announced with TASK_STARTING `<announce> (executor pid: P)` when set.
    pub announce: Option<&'static str>,
    /// The work; an error fails the task (TASK_FAILED) with its message.
    pub work: BoxFuture<'a, Result<(), BackendError>>,
}

impl fmt::Debug for Preparation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preparation")
            .field("announce", &self.announce)
            .finish_non_exhaustive()
    }
}

/// Starts tasks.
pub trait TaskBackend: Send + Sync + fmt::Debug {
    /// Short name for logs (`process`, `docker`).
    fn name(&self) -> &'static str;
    /// What to do for `spec` before its artifacts are staged; `None` for nothing.
    fn before_staging<'a>(&'a self, _spec: &'a TaskSpec) -> Option<Preparation<'a>> {
        None
    }
    /// Starts the task described by `spec`, once its artifacts are staged; all its output
    /// goes to `log`.
    fn start<'a>(
        &'a self,
        spec: &'a TaskSpec,
        log: Arc<ServiceLog>,
    ) -> BoxFuture<'a, Result<StartedTask, BackendError>>;
}
