//! From a Mesos `TaskInfo` to a ready-to-run task (spec §4.3 steps 1–4): executor data parsed,
//! assigned ports checked, user resolved, environment built, sandbox directories created and
//! the task definition written.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{User, geteuid};
use singularity_common::naming;
use singularity_common::records::{SingularityTaskExecutorData, TaskDefinition};
use singularity_mesos::TaskInfo;

use crate::runtime::{RunAs, TaskSpec};
use crate::settings::Settings;
use crate::sidecar;

/// Removed from the environment tasks inherit: the agent's credential is the executor's only.
pub const HIDDEN_VARIABLES: &[&str] = &["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"];

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
    #[error("Assigned port {0} was already in use")]
    PortInUse(u64),
    /// The task user does not exist.
    #[error("user {0} does not exist")]
    UnknownUser(String),
    /// The task user cannot be switched to.
    #[error("cannot run as user {user}: {reason}")]
    SwitchUser {
        /// The user.
        user: String,
        /// Why not.
        reason: String,
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
    #[error("cannot write the task definition: {0}")]
    TaskDefinition(String),
}

/// File-based health check (spec §4.8).
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
    /// What the runtime needs.
    pub spec: TaskSpec,
    /// `TaskInfo.kill_policy` grace.
    pub task_kill_grace: Option<Duration>,
    /// Thread limit.
    pub max_threads: Option<u64>,
    /// File-based health check gating TASK_RUNNING.
    pub healthcheck: Option<HealthcheckPlan>,
    /// The task definition written at launch.
    pub definition: TaskDefinition,
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
            return Err(LaunchError::PortInUse(port));
        };
        if TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).is_err() {
            return Err(LaunchError::PortInUse(port));
        }
    }
    Ok(())
}

/// The executor's own environment, as tasks inherit it; variables that are not UTF-8 are
/// left out.
pub fn inherited_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The command line: `cmd`, then each extra argument after a single space, unquoted.
pub fn command_line(data: &SingularityTaskExecutorData) -> String {
    let mut line = data.executor_data.cmd.clone();
    for arg in &data.executor_data.extra_cmd_line_args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// The task environment (spec §4.6): the executor's own environment (less
/// [`HIDDEN_VARIABLES`]), then `ExecutorInfo.command.environment`, then `MESOS_TASK_ID`
/// (= `TASK_ID`) and `RODAN_HOSTNAME` as Singularity's runner exported them, then `extra`.
/// Later entries replace earlier ones.
pub fn task_env(
    inherited: impl IntoIterator<Item = (String, String)>,
    task: &TaskInfo,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = inherited
        .into_iter()
        .filter(|(k, _)| !HIDDEN_VARIABLES.contains(&k.as_str()))
        .collect();
    let variables = task
        .executor
        .as_ref()
        .and_then(|e| e.command.as_ref())
        .and_then(|c| c.environment.as_ref())
        .map(|e| e.variables.as_slice())
        .unwrap_or_default();
    for var in variables {
        env.insert(var.name.clone(), var.value.clone().unwrap_or_default());
    }
    let task_id = env
        .get("TASK_ID")
        .cloned()
        .unwrap_or_else(|| task.task_id.value.clone());
    env.insert("MESOS_TASK_ID".to_owned(), task_id);
    if let (Some(request), Some(instance)) = (env.get("TASK_REQUEST_ID"), env.get("INSTANCE_NO")) {
        let rodan = format!("{request}-{instance}");
        env.insert("RODAN_HOSTNAME".to_owned(), rodan);
    }
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

/// The user to switch to: `executorData.user`, else `defaultRunAsUser`; `None` when that is
/// the executor's own user (or neither is set).
pub fn resolve_user(
    data: &SingularityTaskExecutorData,
    default_user: &str,
) -> Result<Option<(RunAs, PathBuf)>, LaunchError> {
    let wanted = data
        .executor_data
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or(default_user);
    if wanted.is_empty() {
        return Ok(None);
    }
    let euid = geteuid();
    let me = User::from_uid(euid).ok().flatten();
    if me.as_ref().is_some_and(|me| me.name == wanted) {
        return Ok(None);
    }
    let user = User::from_name(wanted)
        .map_err(|e| LaunchError::SwitchUser {
            user: wanted.to_owned(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| LaunchError::UnknownUser(wanted.to_owned()))?;
    if user.uid == euid {
        return Ok(None);
    }
    if !euid.is_root() {
        return Err(LaunchError::SwitchUser {
            user: wanted.to_owned(),
            reason: format!("the executor runs as uid {euid}, not root"),
        });
    }
    Ok(Some((
        RunAs {
            name: user.name.clone(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        },
        user.dir,
    )))
}

/// Where the launch happens and with what.
#[derive(Debug, Clone)]
pub struct LaunchInput {
    /// The sandbox (Mesos: `MESOS_DIRECTORY`).
    pub sandbox: PathBuf,
    /// Environment the task inherits (normally the executor's own).
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
    let docker = crate::runtime::is_docker(task.container.as_ref());
    // A container runs as its image (or `--user`) says: no user switch (spec §4.7).
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

    let definition = singularity_common::task_logs::task_definition(
        &task_id,
        data.clone(),
        &task_dir,
        input.executor_pid,
        &settings.executor,
    );
    sidecar::write_task_definition(&definition, settings).map_err(LaunchError::TaskDefinition)?;

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
    })
}

/// Gives the task user the task directory (recursively: staged artifacts belong to the
/// executor until now) and the sandbox directory itself, so the user can reach `app/`.
/// Singularity's runner did `chown -R <user> $MESOS_SANDBOX` for the same reason.
pub fn chown_for_user(plan: &LaunchPlan) -> io::Result<()> {
    let Some(user) = &plan.spec.run_as else {
        return Ok(());
    };
    std::os::unix::fs::chown(&plan.sandbox, Some(user.uid), Some(user.gid))?;
    chown_tree(plan.task_dir(), user.uid, user.gid)
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use singularity_mesos::types::{CommandInfo, Environment, EnvironmentVariable, Resource};
    use singularity_mesos::{AgentId, ExecutorId, ExecutorInfo, TaskId};

    fn task(data: Option<&str>) -> TaskInfo {
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
    fn the_environment_layers_in_order() {
        let inherited = vec![
            ("PATH".to_owned(), "/bin".to_owned()),
            ("TASK_ID".to_owned(), "overridden".to_owned()),
            (
                "MESOS_EXECUTOR_AUTHENTICATION_TOKEN".to_owned(),
                "secret".to_owned(),
            ),
        ];
        let env: BTreeMap<_, _> = task_env(
            inherited,
            &task(None),
            &[("MESOS_SANDBOX".to_owned(), "/s".to_owned())],
        )
        .into_iter()
        .collect();
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(env["TASK_ID"], "req-dep-1-1-h-r");
        assert_eq!(env["MESOS_TASK_ID"], "req-dep-1-1-h-r");
        assert_eq!(env["RODAN_HOSTNAME"], "req-1");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(env["MESOS_SANDBOX"], "/s");
        assert!(!env.contains_key("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"));
    }

    #[test]
    fn busy_ports_are_reported() {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        let port = u64::from(listener.local_addr().expect("addr").port());
        let mut t = task(None);
        t.resources = vec![Resource::ranges("ports", [(port, port)])];
        assert_eq!(assigned_ports(&t), vec![port]);
        assert!(matches!(verify_ports(&t), Err(LaunchError::PortInUse(p)) if p == port));
        drop(listener);
        assert!(verify_ports(&t).is_ok());
    }

    #[test]
    fn the_executor_user_needs_no_switch() {
        let data = parse_executor_data(&task(Some(r#"{"cmd":"x"}"#))).expect("valid");
        let me = User::from_uid(geteuid())
            .ok()
            .flatten()
            .expect("current user");
        assert!(resolve_user(&data, &me.name).expect("resolves").is_none());
        assert!(resolve_user(&data, "").expect("resolves").is_none());
        assert!(matches!(
            resolve_user(&data, "no-such-user-se-test"),
            Err(LaunchError::UnknownUser(_))
        ));
    }
}
