//! Step 1, parse and plan: from a Mesos `TaskInfo` to a ready-to-run task ("What happens to a
//! task" in `docs/executor.md`). [`prepare`] parses the executor data, checks the assigned ports,
//! resolves the user ([`user`]), builds the environment ([`mod@env`]), creates the sandbox
//! directories and writes the task definition ([`crate::records`]); it returns the
//! [`LaunchPlan`] every later step reads, whose [`TaskSpec`] is what a backend runs.

pub mod env;
pub mod user;

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use singularity_common::records::{SingularityTaskExecutorData, TaskDefinition};
use singularity_common::{naming, task_logs};
use singularity_mesos::TaskInfo;

pub use env::{HIDDEN_VARIABLES, command_line, task_env};
pub use user::resolve_user;

use crate::records::{self, MetadataError};
use crate::run::TaskSpec;
use crate::settings::Settings;

/// Why a task could not be launched. Reported as TASK_LOST (TASK_FAILED for verification
/// failures) with Singularity's "Unexpected exception while launching task" message.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// `TaskInfo.data` is absent.
    #[error("TaskInfo has no data (SingularityTaskExecutorData expected)")]
    NoData,
    /// `TaskInfo.data` is not executor data.
    #[error("invalid SingularityTaskExecutorData: {0}")]
    InvalidData(#[source] serde_json::Error),
    /// `verifyAssignedPorts` found a port in use.
    #[error("Assigned port {port} was already in use")]
    PortInUse {
        /// The port.
        port: u64,
    },
    /// The task user does not exist.
    #[error("user {user} does not exist")]
    UnknownUser {
        /// The user.
        user: String,
    },
    /// The task user could not be looked up.
    #[error("cannot run as user {user}: {source}")]
    LookUpUser {
        /// The user.
        user: String,
        /// The cause.
        source: nix::Error,
    },
    /// Switching to another user needs root.
    #[error("cannot run as user {user}: the executor runs as uid {euid}, not root")]
    NotRoot {
        /// The user.
        user: String,
        /// The executor's effective uid.
        euid: u32,
    },
    /// The sandbox could not be prepared.
    #[error("cannot prepare {}: {source}", path.display())]
    Directory {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The task definition could not be written.
    #[error("cannot write the task definition: {source}")]
    TaskDefinition {
        /// The cause, naming the file.
        source: MetadataError,
    },
    /// The log settings cannot be honoured (a bad date format or compressor).
    #[error("cannot manage the task's logs: {source}")]
    LogSettings {
        /// The cause, naming the key and value.
        source: singularity_logs::LogError,
    },
}

/// File-based health check ("Health-check file" in `docs/executor.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckPlan {
    /// The file whose existence means healthy (`<app>/<healthcheckResultFilePath>`).
    pub file: PathBuf,
    /// Poll interval.
    pub interval: Duration,
    /// Give up after this many seconds.
    pub max_delay_seconds: u64,
}

/// A task ready to stage and run.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    /// The Mesos task id (the Singularity task id string).
    pub task_id: String,
    /// The executor data.
    pub data: SingularityTaskExecutorData,
    /// The sandbox holding the task directory.
    pub sandbox: PathBuf,
    /// What the backend needs to run it.
    pub spec: TaskSpec,
    /// `TaskInfo.kill_policy` grace.
    pub task_kill_grace: Option<Duration>,
    /// Thread limit.
    pub max_threads: Option<u64>,
    /// File-based health check gating TASK_RUNNING.
    pub healthcheck: Option<HealthcheckPlan>,
    /// The task definition written at launch.
    pub definition: TaskDefinition,
    /// How the task's logs are written, rotated, compressed and finished.
    pub log_settings: singularity_logs::LogSettings,
}

impl LaunchPlan {
    /// `<sandbox>/<safeTaskId>`.
    pub fn task_dir(&self) -> &Path {
        &self.spec.task_dir
    }
}

/// `TaskInfo.data` as executor data.
pub fn parse_executor_data(task: &TaskInfo) -> Result<SingularityTaskExecutorData, LaunchError> {
    let data = task.data.as_deref().ok_or(LaunchError::NoData)?;
    serde_json::from_slice(data).map_err(LaunchError::InvalidData)
}

/// Every port of the task's `ports` resources.
pub fn assigned_ports(task: &TaskInfo) -> Vec<u64> {
    task.resources
        .iter()
        .filter(|r| r.name == "ports")
        .filter_map(|r| r.ranges.as_ref())
        .flat_map(|ranges| ranges.range.iter())
        .flat_map(|range| range.begin..=range.end)
        .collect()
}

/// The total of a scalar resource (`cpus`, `mem`) of the task.
pub fn scalar_resource(task: &TaskInfo, name: &str) -> Option<f64> {
    let values: Vec<f64> = task
        .resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Binds each assigned port once, as Singularity's `verifyAssignedPorts` does.
pub fn verify_ports(task: &TaskInfo) -> Result<(), LaunchError> {
    for port in assigned_ports(task) {
        let Ok(p) = u16::try_from(port) else {
            return Err(LaunchError::PortInUse { port });
        };
        if TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).is_err() {
            return Err(LaunchError::PortInUse { port });
        }
    }
    Ok(())
}

/// Where the launch happens and with what.
#[derive(Debug, Clone)]
pub struct LaunchInput {
    /// The sandbox (Mesos: `MESOS_DIRECTORY`).
    pub sandbox: PathBuf,
    /// Environment the task inherits (normally the executor's own,
    /// [`crate::run::executor_env`]).
    pub inherited_env: Vec<(String, String)>,
    /// Variables set last (standalone mode sets `MESOS_SANDBOX` and friends).
    pub extra_env: Vec<(String, String)>,
    /// The executor's pid, for the task definition.
    pub executor_pid: u32,
}

/// Prepares `task`: the launch steps that must succeed before TASK_STARTING.
pub fn prepare(
    settings: &Settings,
    task: &TaskInfo,
    input: LaunchInput,
) -> Result<LaunchPlan, LaunchError> {
    let data = parse_executor_data(task)?;
    if settings.executor.verify_assigned_ports {
        verify_ports(task)?;
    }
    let task_id = task.task_id.value.clone();
    let task_dir = naming::task_directory(&input.sandbox, &task_id);
    let app_dir = task_dir.join(&settings.executor.task_app_directory);
    let service_log = task_dir.join(data.effective_service_log());
    let log_settings = singularity_logs::LogSettings::new(&settings.executor, &data, &task_dir)
        .map_err(|source| LaunchError::LogSettings { source })?;
    let docker = crate::run::is_container(task.container.as_ref());
    // A container runs as its image (or `--user`) says: no user switch.
    let run_as = if docker {
        None
    } else {
        resolve_user(&data, &settings.executor.default_run_as_user)?
    };

    let mut extra = Vec::new();
    if let Some((user, home)) = &run_as {
        extra.push(("USER".to_owned(), user.name.clone()));
        extra.push(("LOGNAME".to_owned(), user.name.clone()));
        extra.push(("HOME".to_owned(), home.display().to_string()));
    }
    extra.extend(input.extra_env.iter().cloned());
    let env = task_env(input.inherited_env, task, &extra);
    let container_env = if docker {
        task_env(Vec::new(), task, &[])
    } else {
        Vec::new()
    };

    for dir in [
        task_dir.clone(),
        app_dir.clone(),
        task_dir.join(naming::TMP_DIRECTORY),
        task_dir.join(&settings.executor.logrotate_to_directory),
    ] {
        fs::create_dir_all(&dir).map_err(|source| LaunchError::Directory { path: dir, source })?;
    }

    let definition = task_logs::task_definition(
        &task_id,
        data.clone(),
        &task_dir,
        input.executor_pid,
        &settings.executor,
    );
    records::write_task_definition(&definition, &settings.executor)
        .map_err(|source| LaunchError::TaskDefinition { source })?;

    let healthcheck = data.healthcheck_options.as_ref().and_then(|options| {
        let path = options.healthcheck_result_file_path.as_deref()?;
        let interval = options
            .interval_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(settings.executor.default_healthcheck_interval_seconds);
        let retries = options
            .max_retries
            .and_then(|r| u64::try_from(r).ok())
            .unwrap_or(u64::from(settings.executor.default_healthcheck_max_retries));
        Some(HealthcheckPlan {
            file: app_dir.join(path),
            interval: Duration::from_secs(interval.max(1)),
            max_delay_seconds: settings.executor.default_healthcheck_base_timeout_seconds
                + interval * retries,
        })
    });

    let max_threads = data
        .executor_data
        .max_task_threads
        .and_then(|n| u64::try_from(n).ok())
        .or(settings.executor.max_task_threads.map(u64::from))
        .filter(|n| *n > 0);
    let max_open_files = data
        .executor_data
        .max_open_files
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0);

    let spec = TaskSpec {
        task_id: task_id.clone(),
        task_dir,
        app_dir,
        command: command_line(&data),
        env,
        run_as: run_as.map(|(user, _)| user),
        max_open_files,
        source_profile_scripts: settings.executor.source_profile_scripts,
        service_log,
        container: task.container.clone(),
        container_env,
        cpus: scalar_resource(task, "cpus"),
        mem_mib: scalar_resource(task, "mem"),
        max_threads,
        cpu_hard_limit: data
            .cpu_hard_limit
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0),
    };
    Ok(LaunchPlan {
        task_id,
        data,
        sandbox: input.sandbox,
        spec,
        task_kill_grace: task.kill_policy.as_ref().and_then(|p| p.grace()),
        max_threads,
        healthcheck,
        definition,
        log_settings,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use singularity_mesos::types::{CommandInfo, Environment, EnvironmentVariable, Resource};
    use singularity_mesos::{AgentId, ExecutorId, ExecutorInfo, TaskId};

    pub(crate) fn task(data: Option<&str>) -> TaskInfo {
        let mut executor = ExecutorInfo::new(ExecutorId::new("e"));
        executor.command = Some(CommandInfo {
            environment: Some(Environment {
                variables: vec![
                    EnvironmentVariable {
                        name: "TASK_ID".into(),
                        kind: None,
                        value: Some("req-dep-1-1-h-r".into()),
                        secret: None,
                    },
                    EnvironmentVariable {
                        name: "TASK_REQUEST_ID".into(),
                        kind: None,
                        value: Some("req".into()),
                        secret: None,
                    },
                    EnvironmentVariable {
                        name: "INSTANCE_NO".into(),
                        kind: None,
                        value: Some("1".into()),
                        secret: None,
                    },
                    EnvironmentVariable {
                        name: "EMPTY".into(),
                        kind: None,
                        value: None,
                        secret: None,
                    },
                ],
            }),
            ..CommandInfo::default()
        });
        TaskInfo {
            executor: Some(executor),
            data: data.map(|d| d.as_bytes().to_vec()),
            ..TaskInfo::new("t", TaskId::new("req-dep-1-1-h-r"), AgentId::new("a"))
        }
    }

    #[test]
    fn missing_and_invalid_data_are_launch_errors() {
        assert!(matches!(
            parse_executor_data(&task(None)),
            Err(LaunchError::NoData)
        ));
        assert!(matches!(
            parse_executor_data(&task(Some("./run.sh"))),
            Err(LaunchError::InvalidData(_))
        ));
        let data = parse_executor_data(&task(Some(
            r#"{"cmd":"run","extraCmdLineArgs":["a","b c"]}"#,
        )))
        .expect("valid");
        assert_eq!(command_line(&data), "run a b c");
    }

    #[test]
    fn busy_ports_are_reported() {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        let port = u64::from(listener.local_addr().expect("addr").port());
        let mut t = task(None);
        t.resources = vec![Resource::ranges("ports", [(port, port)])];
        assert_eq!(assigned_ports(&t), vec![port]);
        assert!(matches!(verify_ports(&t), Err(LaunchError::PortInUse { port: p }) if p == port));
        drop(listener);
        assert!(verify_ports(&t).is_ok());
    }
}
