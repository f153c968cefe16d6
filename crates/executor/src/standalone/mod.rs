//! `singularity-executor run TASK.json`: one task without Mesos.
//!
//! `TASK.json` is either a Mesos `TaskInfo` in the agent's JSON (snake_case, `data` in
//! base64), or a Singularity deploy-like object:
//!
//! ```json
//! {"requestId": "my-request", "id": "my-deploy",
//!  "executorData": {"cmd": "./run.sh", "embeddedArtifacts": []},
//!  "env": {"GREETING": "hello"}}
//! ```
//!
//! A deploy's `containerInfo` (`{"type": "DOCKER", "docker": {"image": ...}}`, or `{"type":
//! "MESOS", "mesos": {"image": ...}}` for the OCI runtime) runs the task in a container,
//! translated as the scheduler translates it.
//!
//! For the latter the task id is `taskId` when given, else
//! `<requestId>-<id>-<now ms>-1-<host>-local` (`standalone` for missing ids), and the task
//! environment carries what the scheduler would set (`TASK_ID`, `TASK_REQUEST_ID`,
//! `TASK_DEPLOY_ID`, `INSTANCE_NO`, `TASK_HOST`, `TASK_RACK_ID`, `AVAILABILITY_ZONE`,
//! `ESTIMATED_INSTANCE_COUNT`) followed by `env`.
//!
//! Every status update is printed as `TASK_STATE: message`. SIGTERM or SIGINT kill the task
//! as a Mesos KILL would; a second one destroys it (SIGKILL). The exit code is 0 for
//! TASK_FINISHED, 1 otherwise ([`StandaloneError`]).

pub mod deploy;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use singularity_common::exit::ExitStatus;
use singularity_common::task_id::sanitize_id_part;
use singularity_mesos::types::{CommandInfo, Environment, EnvironmentVariable};
use singularity_mesos::{AgentId, ExecutorId, ExecutorInfo, TaskId, TaskInfo, TaskState};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use self::deploy::{DeployContainer, DeployContainerError};
use crate::launch::LaunchInput;
use crate::run::TaskBackend;
use crate::settings::Settings;
use crate::supervise::status_updates::{PrintSink, StatusSink};
use crate::supervise::{self, TaskCommand, TaskEnv};

/// Why the task file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TaskFileError {
    /// Unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Not a task.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: TaskJsonError,
    },
}

/// Why a `TASK.json` is not a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskJsonError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// Has `task_id` but is not a Mesos `TaskInfo`.
    #[error("not a Mesos TaskInfo: {0}")]
    NotTaskInfo(#[source] serde_json::Error),
    /// Neither kind of task file.
    #[error("neither a Mesos TaskInfo (task_id) nor a deploy with executorData")]
    Neither,
    /// Has `executorData` but is not a deploy.
    #[error("not a deploy: {0}")]
    NotDeploy(#[source] serde_json::Error),
    /// The executor data cannot be encoded again.
    #[error(transparent)]
    EncodeData(serde_json::Error),
    /// The deploy's container cannot run here.
    #[error(transparent)]
    Container(#[from] DeployContainerError),
}

/// Why a standalone run did not finish its task.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The task file cannot be used.
    #[error("cannot use the task file: {0}")]
    TaskFile(#[from] TaskFileError),
    /// The sandbox cannot be created.
    #[error("cannot create the sandbox: {source}")]
    Sandbox {
        /// The cause.
        source: io::Error,
    },
    /// SIGTERM and SIGINT cannot be watched.
    #[error("cannot install signal handlers: {source}")]
    Signals {
        /// The cause.
        source: io::Error,
    },
    /// The task ended otherwise than TASK_FINISHED.
    #[error("the task ended {}", state.as_str())]
    NotFinished {
        /// Its terminal state.
        state: TaskState,
    },
}

impl ExitStatus for StandaloneError {}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployLike {
    task_id: Option<String>,
    request_id: Option<String>,
    id: Option<String>,
    executor_data: Value,
    #[serde(default)]
    env: BTreeMap<String, String>,
    container_info: Option<DeployContainer>,
}

fn variable(name: &str, value: impl Into<String>) -> EnvironmentVariable {
    EnvironmentVariable {
        name: name.to_owned(),
        kind: None,
        value: Some(value.into()),
        secret: None,
    }
}

/// The task a `TASK.json` describes; `now_millis` and `host` make the generated task id.
pub fn parse_task(bytes: &[u8], now_millis: i64, host: &str) -> Result<TaskInfo, TaskJsonError> {
    let value: Value = serde_json::from_slice(bytes).map_err(TaskJsonError::NotJson)?;
    if value.get("task_id").is_some() {
        return serde_json::from_value(value).map_err(TaskJsonError::NotTaskInfo);
    }
    if value.get("executorData").is_none() {
        return Err(TaskJsonError::Neither);
    }
    let deploy: DeployLike = serde_json::from_value(value).map_err(TaskJsonError::NotDeploy)?;
    let request_id = deploy.request_id.unwrap_or_else(|| "standalone".to_owned());
    let deploy_id = deploy.id.unwrap_or_else(|| "standalone".to_owned());
    let host = sanitize_id_part(host);
    let rack = "local";
    let task_id = deploy
        .task_id
        .unwrap_or_else(|| format!("{request_id}-{deploy_id}-{now_millis}-1-{host}-{rack}"));
    let mut variables = vec![
        variable("INSTANCE_NO", "1"),
        variable("TASK_HOST", host.clone()),
        variable("TASK_RACK_ID", rack),
        variable("AVAILABILITY_ZONE", rack),
        variable("TASK_REQUEST_ID", request_id),
        variable("TASK_DEPLOY_ID", deploy_id),
        variable("TASK_ID", task_id.clone()),
        variable("ESTIMATED_INSTANCE_COUNT", "1"),
    ];
    variables.extend(deploy.env.iter().map(|(k, v)| variable(k, v.clone())));
    let mut executor = ExecutorInfo::new(ExecutorId::new("singularity-executor-standalone"));
    executor.command = Some(CommandInfo {
        environment: Some(Environment { variables }),
        ..CommandInfo::default()
    });
    let data = serde_json::to_vec(&deploy.executor_data).map_err(TaskJsonError::EncodeData)?;
    let container = deploy
        .container_info
        .as_ref()
        .map(DeployContainer::to_mesos)
        .transpose()?;
    Ok(TaskInfo {
        executor: Some(executor),
        data: Some(data),
        container,
        ..TaskInfo::new(
            task_id.clone(),
            TaskId::new(task_id),
            AgentId::new("standalone"),
        )
    })
}

/// Reads and parses `path`.
pub fn load_task(path: &Path) -> Result<TaskInfo, TaskFileError> {
    let bytes = std::fs::read(path).map_err(|source| TaskFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    parse_task(&bytes, chrono::Utc::now().timestamp_millis(), &host).map_err(|source| {
        TaskFileError::Invalid {
            path: path.to_owned(),
            source,
        }
    })
}

/// The sandbox: `dir` (created if missing), else a new `singularity-run-*` directory under
/// the current one; absolute either way.
pub fn make_sandbox(dir: Option<PathBuf>) -> io::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("singularity-run-")
            .tempdir_in(".")?
            .keep(),
    };
    std::path::absolute(dir)
}

/// Runs the task of `task_file` in `sandbox` (see [`make_sandbox`]) to its end.
pub async fn run_file(
    settings: Arc<Settings>,
    backend: Arc<dyn TaskBackend>,
    task_file: &Path,
    sandbox: Option<PathBuf>,
) -> Result<(), StandaloneError> {
    let task = load_task(task_file)?;
    let sandbox = make_sandbox(sandbox).map_err(|source| StandaloneError::Sandbox { source })?;
    tracing::info!(task_id = task.task_id.value, sandbox = %sandbox.display(), "running one task");
    run(settings, backend, task, sandbox).await
}

/// Runs `task` in `sandbox` to its end.
pub async fn run(
    settings: Arc<Settings>,
    backend: Arc<dyn TaskBackend>,
    task: TaskInfo,
    sandbox: PathBuf,
) -> Result<(), StandaloneError> {
    let sink: Arc<dyn StatusSink> = Arc::new(PrintSink);
    let env = Arc::new(TaskEnv {
        settings,
        backend,
        sink,
        executor_pid: std::process::id(),
    });
    let sandbox_text = sandbox.display().to_string();
    let input = LaunchInput {
        sandbox,
        inherited_env: crate::run::executor_env(),
        extra_env: vec![
            ("MESOS_SANDBOX".to_owned(), sandbox_text.clone()),
            ("MESOS_DIRECTORY".to_owned(), sandbox_text),
        ],
        executor_pid: env.executor_pid,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(source), _) | (_, Err(source)) => return Err(StandaloneError::Signals { source }),
    };
    let run = supervise::run_task(env, Box::new(task), input, rx, Arc::default());
    tokio::pin!(run);
    let mut signals = 0;
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            _ = term.recv() => signals += 1,
            _ = int.recv() => signals += 1,
        }
        let command = if signals == 1 {
            tracing::info!("signal received: killing the task");
            TaskCommand::Kill { grace: None }
        } else {
            tracing::info!("signal received again: destroying the task");
            TaskCommand::Destroy { user: None }
        };
        let _ = tx.send(command);
    };
    if outcome.state == TaskState::TaskFinished {
        Ok(())
    } else {
        Err(StandaloneError::NotFinished {
            state: outcome.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_becomes_a_task_with_scheduler_variables() {
        let json = br#"{"requestId": "r", "id": "d", "executorData": {"cmd": "true"},
                        "env": {"A": "b"}}"#;
        let task = parse_task(json, 1700000000000, "my-host").expect("a task");
        assert_eq!(task.task_id.value, "r-d-1700000000000-1-my_host-local");
        let data: Value =
            serde_json::from_slice(task.data.as_deref().expect("data")).expect("json");
        assert_eq!(data["cmd"], "true");
        let vars = &task
            .executor
            .and_then(|e| e.command)
            .and_then(|c| c.environment)
            .expect("environment")
            .variables;
        let find = |name: &str| {
            vars.iter()
                .find(|v| v.name == name)
                .and_then(|v| v.value.clone())
        };
        assert_eq!(
            find("TASK_ID").as_deref(),
            Some("r-d-1700000000000-1-my_host-local")
        );
        assert_eq!(find("A").as_deref(), Some("b"));
    }

    #[test]
    fn a_mesos_task_info_is_taken_as_is() {
        let json = br#"{"name": "n", "task_id": {"value": "t-1"}, "agent_id": {"value": "a"},
                        "data": "eyJjbWQiOiJ0cnVlIn0="}"#;
        let task = parse_task(json, 0, "h").expect("a task");
        assert_eq!(task.task_id.value, "t-1");
        assert_eq!(task.data.as_deref(), Some(&br#"{"cmd":"true"}"#[..]));
    }

    #[test]
    fn other_json_is_refused() {
        assert!(matches!(
            parse_task(b"{}", 0, "h"),
            Err(TaskJsonError::Neither)
        ));
        assert!(matches!(
            parse_task(b"[", 0, "h"),
            Err(TaskJsonError::NotJson(_))
        ));
    }
}
