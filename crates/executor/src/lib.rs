//! `singularity-executor`: a Mesos custom executor running Singularity tasks, drop-in
//! compatible with HubSpot Singularity's Java executor.
//!
//! Started by the Mesos agent once per executor id (no subcommand), it subscribes to the
//! agent's v1 executor HTTP API ([`singularity_mesos`]) and, for each LAUNCH:
//!
//! 1. parses `TaskInfo.data` as `SingularityTaskExecutorData`, checks the assigned ports
//!    (`verifyAssignedPorts`), creates `<MESOS_DIRECTORY>/<safeTaskId>/{app,tmp,logs}` and
//!    writes `<globalTaskDefinitionDirectory>/<safeTaskId>.task.json` ([`launch`]);
//! 2. sends TASK_STARTING, stages the artifacts ([`staging`]) and writes the log upload
//!    metadata ([`logs_metadata`]);
//! 3. runs `cmd` plus `extraCmdLineArgs` with `/bin/sh -c` in `app/`, in its own process
//!    group, as the task user ([`runtime::process`]) — or, when `TaskInfo.container.docker`
//!    is set, in a container of a Docker-API engine ([`runtime::container`],
//!    [`runtime::docker`]) — output appended to `service.log`;
//! 4. sends TASK_RUNNING (at once, or when the health-check file appears), handles kills,
//!    destroys and the thread limit, and sends the terminal update ([`task`]).
//!
//! Idle timers, SHUTDOWN and SIGTERM are handled in [`agent`]. `run TASK.json` runs one task
//! without Mesos ([`standalone`]).
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
//! Exit codes ([`singularity_common::exit`]): 0 after a clean stop with every update
//! acknowledged (standalone: the task finished); 1 runtime failure, updates left
//! unacknowledged (standalone: the task did not finish); 3 a task supervisor failed; 4 the
//! agent refused a status update; 78 invalid configuration. The `__exec` helper exits 127
//! when it cannot start the command.

pub mod agent;
pub mod container_info;
pub mod exec_helper;
pub mod framework_message;
pub mod launch;
pub mod logs_metadata;
pub mod messages;
pub mod procfs;
pub mod runtime;
pub mod settings;
pub mod sidecar;
pub mod staging;
pub mod standalone;
pub mod status;
pub mod task;

/// Service name in logs.
pub const SERVICE: &str = "singularity-executor";
