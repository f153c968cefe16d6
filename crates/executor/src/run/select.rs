//! Picks the backend per task, and builds the backends from the settings:
//!
//! | `TaskInfo.container` | backend |
//! |---|---|
//! | none, or `type: MESOS` without an image | a process group |
//! | `type: DOCKER` with `docker` | the Docker-API engine |
//! | `type: MESOS` with `mesos.image` | the OCI runtime, no daemon |
//! | no `type`, with `docker` | `defaultContainerRuntime` (`DOCKER` by default, or `OCI`) |

use std::io;
use std::sync::Arc;
use std::time::Duration;

use singularity_common::config::types::ContainerRuntime;
use singularity_containers::DockerEngine;
use singularity_containers::oci::{ImageStore, OciRuntime};
use singularity_logs::ServiceLog;

use super::cgroup::{CpuHardLimit, ExecutorCgroup};
use super::container::{ContainerBackend, ContainerOptions};
use super::oci::{OciBackend, OciOptions, runs_under_oci};
use super::process::ProcessBackend;
use super::{BackendError, BoxFuture, Preparation, StartedTask, TaskBackend, TaskSpec};
use crate::settings::Settings;

/// Dispatches each task to the process or the container backend.
#[derive(Debug, Clone)]
pub struct SelectBackend {
    process: Arc<dyn TaskBackend>,
    container: Arc<dyn TaskBackend>,
    oci: Arc<dyn TaskBackend>,
    default_runtime: ContainerRuntime,
}

impl SelectBackend {
    /// Plain tasks go to `process`, Docker tasks to `container`, daemonless ones to `oci`;
    /// untyped Docker-image tasks to the one `default_runtime` names.
    pub fn new(
        process: Arc<dyn TaskBackend>,
        container: Arc<dyn TaskBackend>,
        oci: Arc<dyn TaskBackend>,
        default_runtime: ContainerRuntime,
    ) -> Self {
        Self {
            process,
            container,
            oci,
            default_runtime,
        }
    }

    fn pick(&self, spec: &TaskSpec) -> &dyn TaskBackend {
        if runs_under_oci(spec.container.as_ref(), self.default_runtime) {
            self.oci.as_ref()
        } else if spec.is_docker() {
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
/// `__exec` helper, containers on the engine at `dockerSocket` (connected on first use), and
/// daemonless containers with `ociRuntime` and the image store at `ociImageStoreDirectory`;
/// containers under the executor's cgroup with `mesosCgroupIsolation`, all wrapped for
/// `cpuHardLimit`.
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
    let executor = &settings.executor;
    let cgroup = executor
        .mesos_cgroup_isolation
        .then(|| Arc::new(ExecutorCgroup::of_self(&executor.proc_cgroup_format)));
    let mut oci = OciBackend::new(
        OciRuntime::new(&executor.oci_runtime, executor.oci_runtime_root.clone()),
        ImageStore::new(&executor.oci_image_store_directory),
        OciOptions::from_settings(settings, options.clone()),
    );
    let mut container = ContainerBackend::new(engine, options);
    if let Some(cgroup) = &cgroup {
        container = container.under(Arc::clone(cgroup));
        oci = oci.under(Arc::clone(cgroup));
    }
    let select = SelectBackend::new(
        Arc::new(process),
        Arc::new(container),
        Arc::new(oci),
        executor.default_container_runtime,
    );
    Ok(Arc::new(CpuHardLimit::new(
        Arc::new(select),
        cgroup,
        executor.default_cfs_period,
    )))
}
