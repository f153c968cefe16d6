//! `singularity-executor`: a Mesos custom executor running Singularity tasks, drop-in
//! compatible with HubSpot Singularity's Java executor.
//!
//! Started by the Mesos agent once per executor id (no subcommand), it subscribes to the
//! agent's v1 executor HTTP API ([`singularity_mesos`]). Two entry points feed tasks in:
//! [`agent`] (the Mesos event loop: LAUNCH, KILL, framework messages, SHUTDOWN, idle timers)
//! and [`standalone`] (`run TASK.json`, one task without Mesos). Either hands each task to
//! [`supervise::run_task`], which takes it through five steps, each in its own module:
//!
//! 1. **Parse and plan** ([`launch`]): parses `TaskInfo.data` as
//!    `SingularityTaskExecutorData`, checks the assigned ports (`verifyAssignedPorts`),
//!    resolves the user, builds the environment, creates
//!    `<MESOS_DIRECTORY>/<safeTaskId>/{app,tmp,logs}` and writes
//!    `<globalTaskDefinitionDirectory>/<safeTaskId>.task.json` ([`records`]); the result is a
//!    [`launch::LaunchPlan`] holding the [`run::TaskSpec`] a backend runs.
//! 2. **Stage** ([`staging`]): after TASK_STARTING (and, for a container, the image pull of
//!    [`run::TaskBackend::before_staging`]), the artifacts are placed in the task directory,
//!    which is then handed to the task's user; the log upload metadata is written
//!    ([`records`]).
//! 3. **Run** ([`run`]): `cmd` plus `extraCmdLineArgs` with `/bin/sh -c` in `app/`, in its own
//!    process group, as the task user ([`run::process`]) — or, when `TaskInfo.container.docker`
//!    is set, in a container of a Docker-API engine ([`run::container`], over
//!    `singularity-containers`), or for `type: MESOS` with `mesos.image`, in a daemonless
//!    container of an OCI runtime ([`run::oci`]); [`run::select`] picks the backend per task
//!    and builds them from the settings. Output is appended to `service.log`.
//! 4. **Supervise and report** ([`supervise`]): TASK_RUNNING (at once, or when the
//!    health-check file appears), kills, destroys and the thread limit, then the terminal
//!    update; every update is worded and sent by [`supervise::status_updates`].
//! 5. **Teardown** ([`teardown`]): the log metadata is finished for the uploader.
//!
//! While a task's process runs, the scheduler may ask for configured shell commands against
//! it ([`shell`]); the supervisor publishes where they run, the agent loop runs them.
//!
//! Imports go one way: the entry points use `supervise`; `supervise` uses the steps; a step
//! uses what an earlier step made (the [`launch::LaunchPlan`]) and the types of [`run`], never
//! `supervise` or an entry point; [`records`] and [`settings`] use none of them.
//!
//! Reads: `/etc/singularity.{base,s3base,executor}.{properties,yaml,toml}` (or
//! `--config-dir`/`--config`), the `MESOS_*` environment, `TaskInfo`s. Writes: the task
//! directory, task definitions, log metadata; status updates and framework messages to the
//! agent. Tracing goes to stderr (the agent keeps it in the executor sandbox's `stderr`).
//!
//! Minimal configuration (`/etc/singularity.executor.yaml`; base and s3base need their
//! metadata and cache directories):
//!
//! ```yaml
//! globalTaskDefinitionDirectory: /var/lib/singularity/tasks
//! defaultRunAsUser: root
//! ```
//!
//! Exit codes ([`singularity_common::exit`], mapped by [`ExecutorError`] through
//! [`singularity_common::exit::ExitStatus`]): 0 after a clean stop with every update
//! acknowledged (standalone: the task finished); 1 runtime failure, updates left
//! unacknowledged (standalone: the task did not finish); 3 a task supervisor failed; 4 the
//! agent refused a status update; 78 invalid configuration. The `__exec` helper
//! ([`run::process::exec_helper`]) exits 127 when it cannot start the command.

pub mod additional_logs;
pub mod agent;
mod error;
pub mod launch;
pub mod records;
pub mod run;
pub mod settings;
pub mod shell;
pub mod staging;
pub mod standalone;
pub mod supervise;
pub mod teardown;

pub use error::ExecutorError;

/// Service name in logs.
pub const SERVICE: &str = "singularity-executor";
