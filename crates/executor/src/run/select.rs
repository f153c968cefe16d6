//! Picks the backend per task: a container when `TaskInfo.container.docker` is set (Docker
//! mode is on exactly then, see `docs/executor.md`), else a process group; and builds the
//! backends from the settings.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use singularity_containers::DockerEngine;
use singularity_logs::ServiceLog;

use super::container::{ContainerBackend, ContainerOptions};
use super::process::ProcessBackend;
use super::{BackendError, BoxFuture, Preparation, StartedTask, TaskBackend, TaskSpec};
use crate::settings::Settings;

/// Dispatches each task to the process or the container backend.
#[derive(Debug, Clone)]
pub struct SelectBackend {
    process: Arc<dyn TaskBackend>,
    container: Arc<dyn TaskBackend>,
}

impl SelectBackend {
    /// Plain tasks go to `process`, Docker tasks to `container`.
    pub fn new(process: Arc<dyn TaskBackend>, container: Arc<dyn TaskBackend>) -> Self {
        Self { process, container }
    }

    fn pick(&self, spec: &TaskSpec) -> &dyn TaskBackend {
        if spec.is_docker() {
            self.container.as_ref()
        } else {
            self.process.as_ref()
        }
    }
}

impl TaskBackend for SelectBackend {
    fn name(&self) -> &'static str {
        "process or container"
    }

    fn before_staging<'a>(&'a self, spec: &'a TaskSpec) -> Option<Preparation<'a>> {
        self.pick(spec).before_staging(spec)
    }

    fn start<'a>(
        &'a self,
        spec: &'a TaskSpec,
        log: Arc<ServiceLog>,
    ) -> BoxFuture<'a, Result<StartedTask, BackendError>> {
        self.pick(spec).start(spec, log)
    }
}

/// The backends could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendSetupError {
    /// The process backend runs the executor's own binary as its user-switching helper.
    #[error("cannot locate the executor binary: {source}")]
    CurrentExe {
        /// The cause.
        source: io::Error,
    },
}

/// The task backends the settings describe: process groups through the running executable's
/// `__exec` helper, containers on the engine at `dockerSocket` (connected on first use).
pub fn backends(settings: &Settings) -> Result<Arc<dyn TaskBackend>, BackendSetupError> {
    let process = ProcessBackend::from_current_exe()
        .map_err(|source| BackendSetupError::CurrentExe { source })?;
    let engine = DockerEngine::new(
        &settings.executor.docker_socket,
        Duration::from_secs(settings.executor.docker_client_time_limit_seconds.max(1)),
    );
    let options = ContainerOptions::from_settings(
        settings,
        &super::executor_env(),
        std::env::home_dir().as_deref(),
    );
    let container = ContainerBackend::new(engine, options);
    Ok(Arc::new(SelectBackend::new(
        Arc::new(process),
        Arc::new(container),
    )))
}
