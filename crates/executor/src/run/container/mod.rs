//! Containers as tasks: [`ContainerBackend`] runs each task in a container of any
//! [`ContainerEngine`] (`singularity-containers`), so the supervisor drives a container
//! exactly as it drives a process group. [`mod@plan`] decides what a task's container gets; it is
//! pure, so every mapping is tested without an engine.
//!
//! Before staging, the container is planned (a bad parameter or image scheme fails the task
//! before anything is downloaded) and a registry image is pulled when the engine lacks it
//! or `force_pull_image` is set, with `maxDockerPullAttempts` attempts inside one deadline.
//! After staging, a `docker-archive://` tarball is loaded unless its image is already
//! present; the image description is written to `docker_image.json`; the container is
//! created, attached (so no output is missed), started, and its output handed to the task's
//! service log writer. Kills signal the container's main process at once. When it ends, the
//! output is drained and the container removed.

pub mod host_paths;
pub mod plan;

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use singularity_common::naming;
use singularity_containers::image::{self, PullError, PullPolicy};
use singularity_containers::{
    ContainerConfig, ContainerEngine, EngineError, EngineErrorKind, OutputStream, Signal, cgroup,
    own_container,
};
use singularity_logs::ServiceLog;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use plan::{ContainerOptions, PlanError};

use self::host_paths::{HostPaths, NoHostPath};
use self::plan::{ImageSource, plan};
use super::cgroup::ExecutorCgroup;
use crate::run::{
    BackendError, BoxFuture, ContainerExec, ExitStatus, Preparation, RunningCommand, ShellPlace,
    StartedTask, StopSignal, TaskBackend, TaskControl, TaskSpec, count_threads_blocking,
};

/// How long output may keep arriving after the container stopped.
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// Why a task's container could not be prepared or started. The messages are the status
/// update messages of the failed task.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The task's container is not acceptable.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Whether the engine has the image could not be learnt.
    #[error("cannot inspect the image: {source}")]
    ImagePresence {
        /// The engine's error.
        source: EngineError,
    },
    /// The registry image could not be pulled.
    #[error(transparent)]
    Pull(#[from] PullError),
    /// A `docker-archive://` tarball names no image.
    #[error("cannot read the docker-archive {}: {source}", path.display())]
    ReadArchive {
        /// The tarball.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A `docker-archive://` tarball could not be loaded.
    #[error("cannot load {}: {source}", path.display())]
    LoadArchive {
        /// The tarball.
        path: PathBuf,
        /// The engine's error.
        source: EngineError,
    },
    /// The image description for `docker_image.json` could not be read.
    #[error("cannot inspect image {image}: {source}")]
    DescribeImage {
        /// The image.
        image: String,
        /// The engine's error.
        source: EngineError,
    },
    /// The image description could not be encoded.
    #[error(transparent)]
    EncodeDescription(serde_json::Error),
    /// `docker_image.json` could not be written.
    #[error("cannot start {}: {source}", path.display())]
    WriteDescription {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The container could not be created.
    #[error("cannot create container {name}: {source}")]
    Create {
        /// The container's name.
        name: String,
        /// The engine's error.
        source: EngineError,
    },
    /// The container's output could not be attached to.
    #[error("cannot attach to container {name}: {source}")]
    Attach {
        /// The container's name.
        name: String,
        /// The engine's error.
        source: EngineError,
    },
    /// The container did not start.
    #[error("cannot start container {name}: {source}")]
    Start {
        /// The container's name.
        name: String,
        /// The engine's error.
        source: EngineError,
    },
    /// A bind mount's source has no path on the engine's host.
    #[error(transparent)]
    NoHostPath(#[from] NoHostPath),
    /// The executor's own container could not be inspected for its mounts.
    #[error("cannot learn the mounts of the executor's own container {id}: {source}")]
    OwnMounts {
        /// The executor's container.
        id: String,
        /// The engine's error.
        source: EngineError,
    },
    /// A blocking step panicked or was cancelled.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
}

/// Runs tasks as containers of `E`.
#[derive(Debug)]
pub struct ContainerBackend<E> {
    engine: Arc<E>,
    options: ContainerOptions,
    /// Learnt on the first container task: the executor's own container does not change.
    host_paths: OnceCell<HostPaths>,
    /// Containers are created under this cgroup when set (`mesosCgroupIsolation`).
    executor_cgroup: Option<Arc<ExecutorCgroup>>,
    /// The parent as the engine spells it, once learnt; `None`: not under it.
    cgroup_parent: OnceCell<Option<String>>,
}

fn signal_of(signal: StopSignal) -> Signal {
    match signal {
        StopSignal::Terminate => Signal::Terminate,
        StopSignal::Kill => Signal::Kill,
    }
}

impl<E: ContainerEngine> ContainerBackend<E> {
    /// A backend creating containers on `engine`, with limits of their own
    /// ([`ContainerBackend::under`] puts them under the executor's cgroup instead).
    pub fn new(engine: E, options: ContainerOptions) -> Self {
        Self {
            engine: Arc::new(engine),
            options,
            host_paths: OnceCell::new(),
            executor_cgroup: None,
            cgroup_parent: OnceCell::new(),
        }
    }

    /// Creates containers under `cgroup` when the engine can (see [`ContainerBackend::cgroup_parent`]).
    pub fn under(mut self, cgroup: Arc<ExecutorCgroup>) -> Self {
        self.executor_cgroup = Some(cgroup);
        self
    }

    /// The cgroup parent of every container, as the engine spells it: the executor's cgroup,
    /// once the engine's cgroup driver is known. When there is none to use, containers get
    /// limits of their own and the reason is logged once; an engine that does not answer is
    /// asked again for the next task.
    pub async fn cgroup_parent(&self) -> Option<&str> {
        let cgroup = self.executor_cgroup.as_ref()?;
        let resolved = self
            .cgroup_parent
            .get_or_try_init(|| async {
                let path = match cgroup.path() {
                    Ok(path) => path,
                    Err(reason) => {
                        tracing::warn!(
                            reason,
                            "containers are not created under the executor's cgroup; they get limits of their own"
                        );
                        return Ok(None);
                    }
                };
                let driver = self.engine.cgroup_driver().await?;
                match cgroup::engine_parent(driver, path) {
                    Ok(parent) => {
                        tracing::info!(parent, "containers are created under the executor's cgroup");
                        Ok(Some(parent))
                    }
                    Err(error) => {
                        tracing::warn!(
                            reason = %error,
                            "containers are not created under the executor's cgroup; they get limits of their own"
                        );
                        Ok(None)
                    }
                }
            })
            .await;
        match resolved {
            Ok(parent) => parent.as_deref(),
            Err::<_, EngineError>(error) => {
                tracing::warn!(%error, "cannot learn the engine's cgroup driver; this container gets limits of its own");
                None
            }
        }
    }

    /// Turns the bind sources (and `HOST_SANDBOX_DIR`) of `config` into paths on the engine's
    /// host ([`host_paths`]).
    async fn to_host_paths(&self, config: &mut ContainerConfig) -> Result<(), ContainerError> {
        let paths = self
            .host_paths
            .get_or_try_init(|| async {
                let own = own_container::own_container_id();
                HostPaths::resolve(&*self.engine, &self.options.host_path_mappings, own.clone())
                    .await
                    .map_err(|source| ContainerError::OwnMounts {
                        id: own.unwrap_or_default(),
                        source,
                    })
            })
            .await?;
        if *paths == HostPaths::Same {
            return Ok(());
        }
        for bind in &mut config.binds {
            // A relative source is a named volume, which the engine resolves itself.
            if Path::new(&bind.host).is_absolute() {
                bind.host = paths
                    .host_path(Path::new(&bind.host))?
                    .display()
                    .to_string();
            }
        }
        for var in &mut config.env {
            if let Some(dir) = var.strip_prefix("HOST_SANDBOX_DIR=") {
                *var = format!(
                    "HOST_SANDBOX_DIR={}",
                    paths.host_path(Path::new(dir))?.display()
                );
            }
        }
        Ok(())
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<E> {
        &self.engine
    }

    async fn prepare(&self, spec: &TaskSpec) -> Result<(), ContainerError> {
        let plan = plan(spec, &self.options, None)?;
        let ImageSource::Registry(image) = &plan.image else {
            return Ok(());
        };
        if !plan.force_pull {
            let present = self
                .engine
                .image_id(&image.reference)
                .await
                .map_err(|source| ContainerError::ImagePresence { source })?;
            if present.is_some() {
                tracing::info!(
                    task_id = spec.task_id,
                    image = image.reference,
                    "image present; not pulled"
                );
                return Ok(());
            }
        }
        let policy = PullPolicy {
            attempts: self.options.pull_attempts,
            timeout: self.options.pull_timeout,
        };
        image::pull(&*self.engine, image, self.options.auth.as_ref(), policy)
            .instrument(tracing::info_span!("pull", task_id = spec.task_id))
            .await?;
        Ok(())
    }

    /// Loads the tarball unless the engine has its image; returns the image id.
    async fn load_archive(&self, task_id: &str, path: &Path) -> Result<String, ContainerError> {
        let file = path.to_path_buf();
        let id = tokio::task::spawn_blocking(move || image::archive_image_id(&file))
            .await?
            .map_err(|source| ContainerError::ReadArchive {
                path: path.to_owned(),
                source,
            })?;
        let present = self
            .engine
            .image_id(&id)
            .await
            .map_err(|source| ContainerError::ImagePresence { source })?;
        if present.is_some() {
            tracing::info!(task_id, image = id, "archive image present; not loaded");
        } else {
            let started = Instant::now();
            self.engine
                .load_image(path)
                .await
                .map_err(|source| ContainerError::LoadArchive {
                    path: path.to_owned(),
                    source,
                })?;
            tracing::info!(task_id, image = id, elapsed = ?started.elapsed(), "archive image loaded");
        }
        Ok(id)
    }

    async fn write_image_description(
        &self,
        image: &str,
        task_dir: &Path,
    ) -> Result<(), ContainerError> {
        let description = self.engine.inspect_image(image).await.map_err(|source| {
            ContainerError::DescribeImage {
                image: image.to_owned(),
                source,
            }
        })?;
        // `docker image inspect` prints a list. Informational, like the file Singularity's
        // runner wrote with a redirect: no sync.
        let bytes =
            serde_json::to_vec_pretty(&[description]).map_err(ContainerError::EncodeDescription)?;
        let path = task_dir.join(naming::DOCKER_IMAGE_JSON);
        tokio::fs::write(&path, bytes)
            .await
            .map_err(|source| ContainerError::WriteDescription { path, source })
    }

    async fn start_container(
        &self,
        spec: &TaskSpec,
        log: Arc<ServiceLog>,
    ) -> Result<StartedTask, BackendError> {
        let parent = self.cgroup_parent().await;
        let mut plan = plan(spec, &self.options, parent).map_err(ContainerError::from)?;
        self.to_host_paths(&mut plan.config).await?;
        if let ImageSource::Archive { path } = &plan.image {
            plan.config.image = self.load_archive(&spec.task_id, path).await?;
        }
        self.write_image_description(&plan.config.image, &spec.task_dir)
            .await?;
        let name = plan.config.name.clone();
        let id = match self.engine.create(&plan.config).await {
            Err(error) if error.kind == EngineErrorKind::Conflict => {
                // Left by an earlier executor of the same task: it cannot be running a task
                // that is being launched now.
                tracing::warn!(
                    task_id = spec.task_id,
                    container = name,
                    "removing a leftover container of the same name"
                );
                self.remove_quietly(&name).await;
                self.engine.create(&plan.config).await
            }
            other => other,
        }
        .map_err(|source| ContainerError::Create {
            name: name.clone(),
            source,
        })?;

        let output = match self.engine.attach(&id).await {
            Ok(output) => output,
            Err(error) => {
                self.remove_quietly(&id).await;
                return Err(ContainerError::Attach {
                    name,
                    source: error,
                }
                .into());
            }
        };
        let pump = tokio::spawn(pump(output, log));
        if let Err(error) = self.engine.start(&id).await {
            pump.abort();
            self.remove_quietly(&id).await;
            return Err(ContainerError::Start {
                name,
                source: error,
            }
            .into());
        }
        let pid = match self.engine.main_pid(&id).await {
            Ok(pid) => pid.unwrap_or(0),
            Err(error) => {
                tracing::warn!(task_id = spec.task_id, %error, "cannot read the container's pid");
                0
            }
        };

        let control = Arc::new(ContainerControl {
            engine: Arc::clone(&self.engine),
            id: id.clone(),
            task_id: spec.task_id.clone(),
            pid,
        });
        let engine = Arc::clone(&self.engine);
        let task_id = spec.task_id.clone();
        let exit = Box::pin(async move {
            let ended = engine.wait(&id).await;
            drain(pump).await;
            match engine.remove(&id).await {
                Ok(()) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(task_id, container = id, %error, "cannot remove the container")
                }
            }
            let ended = ended.map_err(|error| BackendError::Wait {
                task_id,
                source: io::Error::other(error),
            })?;
            Ok(ExitStatus {
                code: Some(i32::try_from(ended.code).unwrap_or(i32::MAX)),
                signal: None,
                oom_killed: ended.oom_killed,
            })
        });
        Ok(StartedTask {
            pid,
            process_name: "docker".to_owned(),
            control,
            exit,
            kill_grace: Some(self.options.stop_timeout),
            shell: ShellPlace::Container(Arc::new(ContainerShell {
                engine: Arc::clone(&self.engine),
                name,
            })),
        })
    }

    async fn remove_quietly(&self, id: &str) {
        if let Err(error) = self.engine.remove(id).await
            && !error.is_not_found()
        {
            tracing::warn!(container = id, %error, "cannot remove the container");
        }
    }
}

impl<E: ContainerEngine> TaskBackend for ContainerBackend<E> {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn before_staging<'a>(&'a self, spec: &'a TaskSpec) -> Option<Preparation<'a>> {
        let pulls = plan(spec, &self.options, None)
            .map(|p| matches!(p.image, ImageSource::Registry(_)))
            .unwrap_or(false);
        Some(Preparation {
            announce: pulls.then_some("Pulling image..."),
            work: Box::pin(async move { Ok(self.prepare(spec).await?) }),
        })
    }

    fn start<'a>(
        &'a self,
        spec: &'a TaskSpec,
        log: Arc<ServiceLog>,
    ) -> BoxFuture<'a, Result<StartedTask, BackendError>> {
        Box::pin(self.start_container(spec, log))
    }
}

/// Signals and counts one container.
#[derive(Debug)]
struct ContainerControl<E> {
    engine: Arc<E>,
    id: String,
    task_id: String,
    pid: u32,
}

impl<E: ContainerEngine> TaskControl for ContainerControl<E> {
    fn signal(&self, signal: StopSignal) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            match self.engine.signal(&self.id, signal_of(signal)).await {
                Ok(()) => Ok(()),
                // Already stopped or gone: nothing left to signal.
                Err(error)
                    if matches!(
                        error.kind,
                        EngineErrorKind::NotFound | EngineErrorKind::Conflict
                    ) =>
                {
                    Ok(())
                }
                Err(error) => Err(BackendError::Signal {
                    task_id: self.task_id.clone(),
                    signal,
                    source: io::Error::other(error),
                }),
            }
        })
    }

    fn thread_count(&self) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            let pid = self.pid;
            if pid == 0 {
                return Ok(0);
            }
            count_threads_blocking(&self.task_id, move || cgroup::threads(pid)).await
        })
    }
}

/// Runs shell commands in one container through the engine's exec API.
#[derive(Debug)]
struct ContainerShell<E> {
    engine: Arc<E>,
    name: String,
}

/// How long the engine may take to record an exec's exit code after its output ended.
const EXEC_EXIT_SETTLE: Duration = Duration::from_secs(5);

impl<E: ContainerEngine> ContainerExec for ContainerShell<E> {
    fn shown_as(&self) -> Vec<String> {
        vec!["docker".to_owned(), "exec".to_owned(), self.name.clone()]
    }

    fn exec(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        output: File,
    ) -> BoxFuture<'_, Result<RunningCommand, io::Error>> {
        Box::pin(async move {
            let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let session = self
                .engine
                .exec(&self.name, &argv, &env)
                .await
                .map_err(io::Error::other)?;
            let engine = Arc::clone(&self.engine);
            let exit = Box::pin(async move {
                copy_to_file(session.output, output).await;
                let deadline = Instant::now() + EXEC_EXIT_SETTLE;
                loop {
                    match engine.exec_exit_code(&session.id).await {
                        Ok(Some(code)) => return Ok(i32::try_from(code).unwrap_or(i32::MAX)),
                        Ok(None) if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(None) => {
                            return Err(io::Error::other(
                                "the engine reports the command still running after its output ended",
                            ));
                        }
                        Err(error) => return Err(io::Error::other(error)),
                    }
                }
            });
            Ok(RunningCommand {
                pid: session.pid,
                exit,
            })
        })
    }
}

/// Copies a shell command's output into its own file until it ends.
async fn copy_to_file(mut output: OutputStream, file: File) {
    while let Some(chunk) = output.next().await {
        match chunk {
            Ok(bytes) => {
                if let Err(error) = (&file).write_all(&bytes) {
                    tracing::warn!(%error, "cannot append the command's output to its file");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "command output interrupted");
                return;
            }
        }
    }
}

/// Copies the container's output (stdout and stderr, as the engine multiplexes them) into
/// the service log writer until it ends.
async fn pump(mut output: OutputStream, log: Arc<ServiceLog>) {
    while let Some(chunk) = output.next().await {
        match chunk {
            Ok(bytes) => log.write(&bytes),
            Err(error) => {
                tracing::warn!(%error, "container output interrupted");
                return;
            }
        }
    }
}

async fn drain(pump: JoinHandle<()>) {
    let abort = pump.abort_handle();
    if tokio::time::timeout(OUTPUT_DRAIN, pump).await.is_err() {
        tracing::warn!("container output still open after it stopped; no longer copied");
        abort.abort();
    }
}
