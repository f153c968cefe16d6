//! Daemonless containers as tasks: [`OciBackend`] runs a task's container with an OCI
//! runtime (runc, crun) as a child of the executor, through
//! `singularity_containers::oci`, so neither a restart nor the absence of dockerd reaches it.
//!
//! The container is planned exactly as a Docker task's ([`super::container::plan`]: env,
//! sandbox and volumes, working directory, command, docker parameters), from the
//! `TaskInfo.container` of `type: MESOS` with `mesos.image` (`type: DOCKER`, `docker.name`),
//! or of a Docker image when `defaultContainerRuntime` is `OCI`. Then:
//!
//! - the image: before staging, a registry image is pulled over the OCI distribution API
//!   with the Docker pull's credentials (`dockerAuthConfig`; the manifest every time, the
//!   layers when the store lacks the image); after staging, a `docker-archive://` tarball is
//!   unpacked. Either way an image is unpacked into the store once per image id and shared
//!   read-only; the store is then trimmed to `ociImageStoreMaxBytes`, sparing the images of
//!   running tasks;
//! - the bundle (`<store>/bundles/se-<taskId>/config.json`): the image's entrypoint, command,
//!   env, working directory and user under the task's; a read-only root with a fresh `/tmp`
//!   and the sandbox at `/mnt/mesos/sandbox`; network host or none; memory, CPU and pids limits
//!   from the task's resources always; rlimits from `--ulimit` and `maxOpenFiles`;
//! - the container's cgroup: under the executor's (`mesosCgroupIsolation`), else under
//!   `/singularity`;
//! - `run` in the foreground: its output goes to the task's service log writer (which writes
//!   and rotates `service.log`), its exit code is the
//!   task's; kills signal the container's init; the OOM kill count is read from the
//!   container's memory cgroup; the container's state and bundle are removed at the end.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus as ProcessStatus;
use std::sync::{Arc, Mutex};

use singularity_common::config::types::ContainerRuntime;
use singularity_containers::image::PullPolicy;
use singularity_containers::oci::{
    BundleConfig, ImageStore, OciError, OciRuntime, StoredImage, oom_killed, registry, runtime_spec,
};
use singularity_containers::{ContainerConfig, Signal, cgroup};
use singularity_logs::ServiceLog;
use singularity_mesos::types::ContainerType;
use singularity_mesos::{ContainerInfo, DockerInfo};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::cgroup::ExecutorCgroup;
use super::container::plan::{ContainerOptions, ImageSource, PlanError, plan};
use super::process::widen;
use super::{
    BackendError, BoxFuture, ContainerExec, ExitStatus, RunningCommand, ShellPlace, StartedTask,
    StopSignal, TaskBackend, TaskControl, TaskSpec, count_threads_blocking,
};
use crate::settings::Settings;

/// Cgroup parent of daemonless containers outside the executor's cgroup
/// (`<hierarchy>/singularity/se-<taskId>`).
pub const CGROUP_PARENT: &str = "/singularity";

/// Why a daemonless container could not be planned or run. The messages are the status
/// update messages of the failed task.
#[derive(Debug, thiserror::Error)]
pub enum OciTaskError {
    /// The task's container is not acceptable.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A `type: MESOS` container's image is not one this executor runs.
    #[error("unsupported mesos image: {reason}")]
    MesosImage {
        /// What is wrong.
        reason: String,
    },
    /// A docker parameter the OCI runtime cannot honour.
    #[error("docker parameter {parameter} is not supported by the OCI runtime")]
    Unsupported {
        /// Which.
        parameter: &'static str,
    },
    /// The image has no command and the task gives none.
    #[error("image {image} has no command and the task gives none")]
    NoCommand {
        /// The image id.
        image: String,
    },
    /// The image's or the task's user cannot be found in the image.
    #[error("user {user} is not in the image's /etc/passwd")]
    UnknownUser {
        /// The user.
        user: String,
    },
    /// The image store, the runtime configuration or the runtime failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The bundle could not be written.
    #[error("cannot write the bundle {}: {source}", path.display())]
    Bundle {
        /// The bundle directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A blocking step panicked or was cancelled.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
}

/// Settings of daemonless containers.
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// How containers are planned (shared with Docker tasks).
    pub container: ContainerOptions,
    /// Store size limit.
    pub max_store_bytes: u64,
}

impl OciOptions {
    /// The options the executor settings give.
    pub fn from_settings(settings: &Settings, container: ContainerOptions) -> Self {
        Self {
            container: ContainerOptions {
                // The task's resources always bound a daemonless container.
                limits_from_resources: true,
                ..container
            },
            max_store_bytes: settings.executor.oci_image_store_max_bytes,
        }
    }
}

/// Runs tasks as daemonless containers.
#[derive(Debug)]
pub struct OciBackend {
    runtime: OciRuntime,
    store: ImageStore,
    options: OciOptions,
    /// Image id of each running task, spared by the store's eviction.
    in_use: Arc<Mutex<HashMap<String, String>>>,
    /// Registry images pulled before staging, by task.
    pulled: Mutex<HashMap<String, StoredImage>>,
    /// Containers are created under this cgroup when it has a usable path
    /// (`mesosCgroupIsolation`).
    executor_cgroup: Option<Arc<ExecutorCgroup>>,
}

/// The `docker` description of a task's container as the OCI backend runs it: a Docker
/// image, or the `mesos.image` of a `type: MESOS` container.
pub fn docker_info(container: &ContainerInfo) -> Result<DockerInfo, OciTaskError> {
    if container.kind != Some(ContainerType::Mesos)
        && let Some(docker) = &container.docker
    {
        return Ok(docker.clone());
    }
    let image = container
        .mesos
        .as_ref()
        .and_then(|m| m.get("image"))
        .ok_or_else(|| OciTaskError::MesosImage {
            reason: "no mesos.image".to_owned(),
        })?;
    let kind = image
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("DOCKER");
    if kind != "DOCKER" {
        return Err(OciTaskError::MesosImage {
            reason: format!("image type {kind}, only DOCKER is supported"),
        });
    }
    let name = image
        .get("docker")
        .and_then(|d| d.get("name"))
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| OciTaskError::MesosImage {
            reason: "no mesos.image.docker.name".to_owned(),
        })?;
    Ok(DockerInfo {
        image: name.to_owned(),
        network: Some("HOST".to_owned()),
        port_mappings: Vec::new(),
        privileged: None,
        parameters: Vec::new(),
        force_pull_image: None,
        volume_driver: None,
    })
}

/// Whether a task with this container runs under the OCI runtime: `type: MESOS` with an
/// image, or a Docker image without a type when `default` is [`ContainerRuntime::Oci`].
pub fn runs_under_oci(container: Option<&ContainerInfo>, default: ContainerRuntime) -> bool {
    let Some(container) = container else {
        return false;
    };
    match container.kind {
        Some(ContainerType::Mesos) => container
            .mesos
            .as_ref()
            .is_some_and(|m| m.get("image").is_some()),
        Some(ContainerType::Docker) => false,
        None => container.docker.is_some() && default == ContainerRuntime::Oci,
    }
}

/// The task's container, planned as a Docker task's.
fn plan_task(
    spec: &TaskSpec,
    options: &ContainerOptions,
) -> Result<(ImageSource, ContainerConfig), OciTaskError> {
    let container = spec
        .container
        .as_ref()
        .ok_or_else(|| OciTaskError::MesosImage {
            reason: "the task has no container".to_owned(),
        })?;
    let mut as_docker = spec.clone();
    let mut info = container.clone();
    info.docker = Some(docker_info(container)?);
    info.kind = Some(ContainerType::Docker);
    as_docker.container = Some(info);
    // Limits of its own even under the executor's cgroup: the runtime, not an engine, is
    // the container's only bound when the agent has no cgroup isolation.
    let planned = plan(&as_docker, options, None)?;
    let config = planned.config;
    for (set, parameter) in [
        (config.privileged, "--privileged"),
        (!config.cap_add.is_empty(), "--cap-add"),
        (!config.cap_drop.is_empty(), "--cap-drop"),
        (!config.extra_hosts.is_empty(), "--add-host"),
        (config.init == Some(true), "--init"),
        (config.shm_size.is_some(), "--shm-size"),
    ] {
        if set {
            return Err(OciTaskError::Unsupported { parameter });
        }
    }
    Ok((planned.image, config))
}

impl OciBackend {
    /// A backend running containers with `runtime`, images unpacked into `store`.
    pub fn new(runtime: OciRuntime, store: ImageStore, options: OciOptions) -> Self {
        Self {
            runtime,
            store,
            options,
            in_use: Arc::default(),
            pulled: Mutex::default(),
            executor_cgroup: None,
        }
    }

    /// Creates containers under `cgroup` when it has a path; under [`CGROUP_PARENT`] otherwise.
    pub fn under(mut self, cgroup: Arc<ExecutorCgroup>) -> Self {
        self.executor_cgroup = Some(cgroup);
        self
    }

    /// The cgroup (relative to the hierarchy roots) the container named `name` is created in.
    /// The runtime's default cgroupfs driver takes the executor's path as it is.
    fn cgroups_path(&self, task_id: &str, name: &str) -> String {
        let parent = match self.executor_cgroup.as_deref().map(ExecutorCgroup::path) {
            Some(Ok(path)) => path.trim_end_matches('/'),
            Some(Err(reason)) => {
                tracing::warn!(
                    task_id,
                    reason,
                    "the container is not created under the executor's cgroup"
                );
                CGROUP_PARENT
            }
            None => CGROUP_PARENT,
        };
        format!("{parent}/{name}")
    }

    /// Pulls the task's registry image (nothing for an archive).
    async fn pull(&self, spec: &TaskSpec) -> Result<(), OciTaskError> {
        let (source, _) = plan_task(spec, &self.options.container)?;
        let ImageSource::Registry(image) = source else {
            return Ok(());
        };
        let auth = self
            .options
            .container
            .auth
            .as_ref()
            .and_then(|a| a.for_repository(&image.repository));
        // The attempts and the deadline of Docker pulls.
        let policy = PullPolicy {
            attempts: self.options.container.pull_attempts,
            timeout: self.options.container.pull_timeout,
        };
        let stored =
            registry::pull_with_policy(&self.store, &image.reference, auth.as_ref(), policy)
                .await?;
        tracing::info!(
            task_id = spec.task_id,
            image = image.reference,
            id = stored.id,
            "image pulled"
        );
        self.pulled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.task_id.clone(), stored);
        Ok(())
    }

    async fn image(
        &self,
        task_id: &str,
        source: &ImageSource,
    ) -> Result<StoredImage, OciTaskError> {
        let pulled = self
            .pulled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id);
        let got = match (source, pulled) {
            (ImageSource::Archive { path }, _) => Err(path.clone()),
            (ImageSource::Registry(_), Some(image)) => Ok(image),
            (ImageSource::Registry(image), None) => {
                return Err(OciError::Pull {
                    image: image.reference.clone(),
                    reason: "not pulled before staging".to_owned(),
                    transient: false,
                }
                .into());
            }
        };
        let store = self.store.clone();
        let max = self.options.max_store_bytes;
        let in_use = Arc::clone(&self.in_use);
        let task = task_id.to_owned();
        let image = tokio::task::spawn_blocking(move || {
            // `Err` holds the tarball still to import.
            let image = match got {
                Ok(image) => image,
                Err(path) => store.import_archive(&path)?,
            };
            let spared: Vec<String> = {
                let mut in_use = in_use.lock().unwrap_or_else(|e| e.into_inner());
                in_use.insert(task, image.id.clone());
                in_use.values().cloned().collect()
            };
            match store.evict(max, &spared) {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(?removed, "images removed from the store");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot trim the image store"),
            }
            Ok::<_, OciError>(image)
        })
        .await??;
        Ok(image)
    }

    async fn start_container(
        &self,
        spec: &TaskSpec,
        log: Arc<ServiceLog>,
    ) -> Result<StartedTask, OciTaskError> {
        let (source, config) = plan_task(spec, &self.options.container)?;
        let image = self.image(&spec.task_id, &source).await?;
        let cgroups_path = self.cgroups_path(&spec.task_id, &config.name);
        let bundle_config = bundle_config(spec, &config, &image, cgroups_path)?;
        let bundle = self.store.dir().join("bundles").join(&config.name);
        write_bundle(&bundle, &bundle_config)?;

        let name = config.name.clone();
        let mut running = match self.runtime.run(&name, &bundle).await {
            Ok(running) => running,
            Err(OciError::Start { message, .. }) if message.contains("already exists") => {
                // Left by an earlier executor of the same task.
                tracing::warn!(
                    task_id = spec.task_id,
                    container = name,
                    "removing a leftover container of the same name"
                );
                self.runtime.delete(&name).await?;
                self.runtime.run(&name, &bundle).await?
            }
            Err(error) => {
                let _ = self.runtime.delete(&name).await;
                return Err(error.into());
            }
        };
        let mut pumps = Vec::new();
        // The runtime hands these pipes to the container's process: widened as a plain task's.
        if let Some(stdout) = running.child.stdout.take() {
            widen(&stdout);
            pumps.push(tokio::spawn(pump(stdout, Arc::clone(&log))));
        }
        if let Some(stderr) = running.child.stderr.take() {
            widen(&stderr);
            pumps.push(tokio::spawn(pump(stderr, Arc::clone(&log))));
        }
        let pid = running.pid;
        let control = Arc::new(OciControl {
            runtime: self.runtime.clone(),
            name: name.clone(),
            task_id: spec.task_id.clone(),
            pid,
        });
        let runtime = self.runtime.clone();
        let task_id = spec.task_id.clone();
        let cgroups_path = bundle_config.cgroups_path.clone();
        let in_use = Arc::clone(&self.in_use);
        let container = name.clone();
        let mut child = running.child;
        let exit = Box::pin(async move {
            let status = child.wait().await;
            for pump in pumps {
                let _ = pump.await;
            }
            let oom = tokio::task::spawn_blocking(move || oom_killed(&cgroups_path))
                .await
                .map_err(io::Error::other)
                .and_then(|read| read)
                .unwrap_or_else(|error| {
                    tracing::warn!(task_id, %error, "cannot read the container's OOM count");
                    false
                });
            if let Err(error) = runtime.delete(&container).await {
                tracing::warn!(task_id, container, %error, "cannot delete the container");
            }
            if let Err(error) = tokio::fs::remove_dir_all(&bundle).await {
                tracing::warn!(task_id, bundle = %bundle.display(), %error, "cannot remove the bundle");
            }
            in_use
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task_id);
            let status = status.map_err(|source| BackendError::Wait {
                task_id: task_id.clone(),
                source,
            })?;
            Ok(exit_status(status, oom))
        });
        Ok(StartedTask {
            pid,
            process_name: self
                .runtime
                .binary()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "runc".to_owned()),
            control,
            exit,
            kill_grace: Some(self.options.container.stop_timeout),
            shell: ShellPlace::Container(Arc::new(OciShell {
                runtime: self.runtime.clone(),
                name,
                pid_dir: spec.task_dir.clone(),
            })),
        })
    }
}

/// The runtime exits with the container's code, 128 + N when signal N ended it.
fn exit_status(status: ProcessStatus, oom_killed: bool) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt as _;
    ExitStatus {
        code: status.code().or_else(|| status.signal().map(|s| 128 + s)),
        signal: None,
        oom_killed,
    }
}

fn write_bundle(bundle: &Path, config: &BundleConfig) -> Result<(), OciTaskError> {
    let fail = |source| OciTaskError::Bundle {
        path: bundle.to_owned(),
        source,
    };
    std::fs::create_dir_all(bundle).map_err(fail)?;
    let spec = runtime_spec(config)?;
    let json = serde_json::to_vec(&spec).map_err(|e| fail(io::Error::other(e)))?;
    std::fs::write(bundle.join("config.json"), json).map_err(fail)
}

/// The container's runtime configuration: the task's plan over the image's defaults.
fn bundle_config(
    spec: &TaskSpec,
    config: &ContainerConfig,
    image: &StoredImage,
    cgroups_path: String,
) -> Result<BundleConfig, OciTaskError> {
    let defaults = &image.config;
    let entrypoint = config
        .entrypoint
        .clone()
        .unwrap_or_else(|| defaults.entrypoint.clone());
    // As Docker: a new entrypoint drops the image's command.
    let cmd = match (&config.cmd, &config.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => defaults.cmd.clone(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(OciTaskError::NoCommand {
            image: image.id.clone(),
        });
    }
    let mut env: Vec<String> = Vec::new();
    for entry in defaults.env.iter().chain(&config.env) {
        let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != name);
        env.push(entry.clone());
    }
    let user = config.user.clone().or_else(|| defaults.user.clone());
    let (uid, gid, additional_gids) = match &user {
        Some(user) => resolve_user(&image.rootfs, user)?,
        None => (0, 0, Vec::new()),
    };
    let mut rlimits = config.ulimits.clone();
    if let Some(max) = spec.max_open_files
        && !rlimits.iter().any(|l| l.name == "nofile")
    {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        rlimits.push(singularity_containers::Ulimit {
            name: "nofile".to_owned(),
            soft: max,
            hard: max,
        });
    }
    Ok(BundleConfig {
        rootfs: image.rootfs.clone(),
        args,
        env,
        cwd: config
            .working_dir
            .clone()
            .or_else(|| defaults.working_dir.clone())
            .unwrap_or_else(|| "/".to_owned()),
        uid,
        gid,
        additional_gids,
        hostname: config.hostname.clone(),
        binds: config.binds.clone(),
        network: config.network,
        memory: config.memory,
        cpus: cpu_limit(config),
        pids_limit: config.pids_limit,
        rlimits,
        cgroups_path,
    })
}

/// CPUs the container may use: the tighter of its `cpus` resource and its `cpuHardLimit`
/// quota (an engine takes only one of the two).
fn cpu_limit(config: &ContainerConfig) -> Option<f64> {
    let cpus = config.nano_cpus.map(|n| n as f64 / 1e9);
    let hard = match (config.cpu_quota, config.cpu_period) {
        (Some(quota), Some(period)) if period > 0 => Some(quota as f64 / period as f64),
        _ => None,
    };
    match (cpus, hard) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `user`, `uid`, `user:group` or `uid:gid` as ids, names looked up in the image's
/// `/etc/passwd` and `/etc/group`.
fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), OciTaskError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && (f[0] == user_part || f[2] == user_part));
    let (uid, mut gid) = match (&entry, user_part.parse::<u32>()) {
        (Some(f), _) => (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0)),
        (None, Ok(uid)) => (uid, 0),
        (None, Err(_)) => {
            return Err(OciTaskError::UnknownUser {
                user: user.to_owned(),
            });
        }
    };
    if let Some(group) = group_part {
        let groups = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| OciTaskError::UnknownUser {
                    user: user.to_owned(),
                })?,
        };
    }
    Ok((uid, gid, Vec::new()))
}

impl TaskBackend for OciBackend {
    fn name(&self) -> &'static str {
        "oci"
    }

    fn before_staging<'a>(&'a self, spec: &'a TaskSpec) -> Option<super::Preparation<'a>> {
        // A bad container or image fails the task before anything is downloaded; a registry
        // image is pulled then, interruptible by a kill.
        let pulls = plan_task(spec, &self.options.container)
            .map(|(source, _)| matches!(source, ImageSource::Registry(_)))
            .unwrap_or(false);
        Some(super::Preparation {
            announce: pulls.then_some("Pulling image..."),
            work: Box::pin(async move { Ok(self.pull(spec).await?) }),
        })
    }

    fn start<'a>(
        &'a self,
        spec: &'a TaskSpec,
        log: Arc<ServiceLog>,
    ) -> BoxFuture<'a, Result<StartedTask, BackendError>> {
        Box::pin(async move { Ok(self.start_container(spec, log).await?) })
    }
}

/// Signals and counts one daemonless container.
#[derive(Debug)]
struct OciControl {
    runtime: OciRuntime,
    name: String,
    task_id: String,
    pid: u32,
}

impl TaskControl for OciControl {
    fn signal(&self, signal: StopSignal) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let sent = match signal {
                StopSignal::Terminate => Signal::Terminate,
                StopSignal::Kill => Signal::Kill,
            };
            match self.runtime.kill(&self.name, sent).await {
                Ok(()) => Ok(()),
                // Already stopped: nothing left to signal.
                Err(OciError::Runtime { message, .. })
                    if message.contains("not running") || message.contains("does not exist") =>
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
            count_threads_blocking(&self.task_id, move || cgroup::threads(pid)).await
        })
    }
}

/// Runs shell commands in one daemonless container with the runtime's `exec`.
#[derive(Debug)]
struct OciShell {
    runtime: OciRuntime,
    name: String,
    /// Where the exec's pid file is written for a moment.
    pid_dir: PathBuf,
}

impl ContainerExec for OciShell {
    fn shown_as(&self) -> Vec<String> {
        let binary = self
            .runtime
            .binary()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runc".to_owned());
        vec![binary, "exec".to_owned(), self.name.clone()]
    }

    fn exec(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        output: File,
    ) -> BoxFuture<'_, Result<RunningCommand, io::Error>> {
        Box::pin(async move {
            let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let pid_file = self.pid_dir.join(format!(".exec-{}.pid", uuid_like()));
            let started = self
                .runtime
                .exec(&self.name, &argv, &env, output, &pid_file)
                .await
                .map_err(io::Error::other)?;
            let mut child = started.child;
            let exit = Box::pin(async move {
                let status = child.wait().await?;
                Ok(exit_status(status, false).exit_code())
            });
            Ok(RunningCommand {
                pid: started.pid,
                exit,
            })
        })
    }
}

/// A name part unique within this process.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Copies one of the container's output pipes into the service log writer until it closes.
async fn pump(mut pipe: impl AsyncRead + Unpin, log: Arc<ServiceLog>) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => log.write(&buf[..n]),
            Err(error) => {
                tracing::warn!(%error, "container output interrupted");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn container(
        kind: Option<ContainerType>,
        docker: bool,
        mesos: Option<serde_json::Value>,
    ) -> ContainerInfo {
        ContainerInfo {
            kind,
            volumes: Vec::new(),
            hostname: None,
            docker: docker.then(|| DockerInfo {
                image: "docker-archive://image.tar".to_owned(),
                network: Some("HOST".to_owned()),
                port_mappings: Vec::new(),
                privileged: None,
                parameters: Vec::new(),
                force_pull_image: None,
                volume_driver: None,
            }),
            mesos,
            network_infos: Vec::new(),
            linux_info: None,
            rlimit_info: None,
            tty_info: None,
        }
    }

    #[test]
    fn the_runtime_is_chosen_by_type_and_the_default() {
        let image = json!({"image": {"type": "DOCKER", "docker": {"name": "busybox"}}});
        let mesos = container(Some(ContainerType::Mesos), false, Some(image));
        assert!(runs_under_oci(Some(&mesos), ContainerRuntime::Docker));
        let bare_mesos = container(Some(ContainerType::Mesos), false, None);
        assert!(!runs_under_oci(Some(&bare_mesos), ContainerRuntime::Oci));
        let docker = container(Some(ContainerType::Docker), true, None);
        assert!(!runs_under_oci(Some(&docker), ContainerRuntime::Oci));
        let untyped = container(None, true, None);
        assert!(!runs_under_oci(Some(&untyped), ContainerRuntime::Docker));
        assert!(runs_under_oci(Some(&untyped), ContainerRuntime::Oci));
        assert!(!runs_under_oci(None, ContainerRuntime::Oci));
    }

    #[test]
    fn mesos_images_become_docker_descriptions_and_others_are_refused() {
        let image =
            json!({"image": {"type": "DOCKER", "docker": {"name": "docker-archive://b.tar"}}});
        let info =
            docker_info(&container(Some(ContainerType::Mesos), false, Some(image))).expect("info");
        assert_eq!(info.image, "docker-archive://b.tar");
        assert_eq!(info.network.as_deref(), Some("HOST"));
        let appc = json!({"image": {"type": "APPC", "appc": {"name": "x"}}});
        assert_eq!(
            docker_info(&container(Some(ContainerType::Mesos), false, Some(appc)))
                .expect_err("refused")
                .to_string(),
            "unsupported mesos image: image type APPC, only DOCKER is supported"
        );
        let unnamed = json!({"image": {"type": "DOCKER", "docker": {}}});
        assert!(docker_info(&container(Some(ContainerType::Mesos), false, Some(unnamed))).is_err());
    }

    #[test]
    fn the_cpu_limit_is_the_tighter_of_cpus_and_the_hard_limit() {
        let mut config = ContainerConfig::new("se-t".to_owned(), String::new());
        assert_eq!(cpu_limit(&config), None);
        config.nano_cpus = Some(2_500_000_000);
        assert_eq!(cpu_limit(&config), Some(2.5));
        config.cpu_quota = Some(100_000);
        config.cpu_period = Some(100_000);
        assert_eq!(cpu_limit(&config), Some(1.0));
        config.nano_cpus = Some(500_000_000);
        assert_eq!(cpu_limit(&config), Some(0.5));
        config.nano_cpus = None;
        assert_eq!(cpu_limit(&config), Some(1.0));
    }

    #[test]
    fn containers_go_under_the_executors_cgroup_when_it_has_a_path() {
        let backend = || {
            OciBackend::new(
                OciRuntime::new("runc", None),
                ImageStore::new(Path::new("/nonexistent")),
                OciOptions {
                    container: ContainerOptions::default(),
                    max_store_bytes: 0,
                },
            )
        };
        assert_eq!(backend().cgroups_path("t", "se-t"), "/singularity/se-t");

        // A hierarchy mounted in a temporary directory, holding the executor's cgroup.
        let dir = tempfile::tempdir().expect("dir");
        let mount = dir.path().join("cpu");
        std::fs::create_dir_all(mount.join("mesos/0f1e")).expect("cgroup dir");
        let mounts = cgroup::Mounts::parse(&format!(
            "32 31 0:29 / {} rw,relatime - cgroup cgroup rw,cpu,memory\n",
            mount.display()
        ));
        std::fs::write(dir.path().join("cgroup-7"), "2:cpu,memory:/mesos/0f1e\n").expect("write");
        std::fs::write(dir.path().join("cgroup-8"), "2:cpu,memory:/\n").expect("write");
        let format = dir.path().join("cgroup-%s").display().to_string();
        let under = Arc::new(ExecutorCgroup::read(&format, 7, &mounts));
        assert_eq!(
            backend().under(under).cgroups_path("t", "se-t"),
            "/mesos/0f1e/se-t"
        );
        // The root cgroup is no parent.
        let root = Arc::new(ExecutorCgroup::read(&format, 8, &mounts));
        assert_eq!(
            backend().under(root).cgroups_path("t", "se-t"),
            "/singularity/se-t"
        );
    }

    #[test]
    fn users_resolve_in_the_image() {
        let root = tempfile::tempdir().expect("dir");
        std::fs::create_dir(root.path().join("etc")).expect("etc");
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:100:101::/:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("group");
        assert_eq!(
            resolve_user(root.path(), "app").expect("app"),
            (100, 101, Vec::new())
        );
        assert_eq!(
            resolve_user(root.path(), "app:staff").expect("app"),
            (100, 50, Vec::new())
        );
        assert_eq!(
            resolve_user(root.path(), "1234:7").expect("ids"),
            (1234, 7, Vec::new())
        );
        assert_eq!(
            resolve_user(root.path(), "ghost")
                .expect_err("unknown")
                .to_string(),
            "user ghost is not in the image's /etc/passwd"
        );
    }
}
