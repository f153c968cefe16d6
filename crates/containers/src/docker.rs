//! The Docker backend of [`ContainerEngine`]: the Docker Engine API over a unix socket
//! (bollard), which podman's compatible service answers too.
//!
//! The client connects on first use and negotiates the API version then, so an executor
//! that never runs a container never needs the socket. Every call but the long ones (pull,
//! load, attach, wait) has the `dockerClientTimeLimitSeconds` deadline.
//!
//! Podman answers some calls differently; the interface hides that:
//! - a duplicate container name and signalling a container that is not running are 500s
//!   (Docker: 409): classified as [`EngineErrorKind::Conflict`] by podman's message;
//! - a missing image on pull is an error inside the progress stream (Docker: 404 up front):
//!   classified as [`EngineErrorKind::NotFound`];
//! - stop without `t` kills at once: `t` is always sent;
//! - podman before 5.0 never sets `State.OOMKilled` (containers/podman#13102), and dockerd
//!   sets it from an event that can come after the exit (containerd/containerd#12372): when a
//!   memory-limited container ends without the flag (on dockerd: killed by SIGKILL), the
//!   kernel log is read for an OOM kill in the container's memory cgroup.

use std::collections::HashMap;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, ResourcesUlimits, SystemVersion,
};
use bollard::models::{ContainerSummaryStateEnum, SystemInfoCgroupDriverEnum};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ImportImageOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, StopContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::OnceCell;

use crate::cgroup::CgroupDriver;
use crate::engine::{
    ContainerConfig, ContainerEngine, ContainerExit, ContainerSummary, EngineError,
    EngineErrorKind, ExecSession, MountPoint, OutputStream, RegistryAuth, Signal,
};

/// The engine's socket when none is configured.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How many times (10 ms apart) an exec is inspected for its pid.
const EXEC_PID_POLLS: u32 = 100;

/// A Docker-API engine on a unix socket.
#[derive(Debug)]
pub struct DockerEngine {
    socket: PathBuf,
    call_timeout: Duration,
    client: OnceCell<Client>,
}

/// A connected client and what the engine at the other end needs.
#[derive(Debug)]
struct Client {
    docker: Docker,
    /// Podman before 5.0: its `State.OOMKilled` is always false.
    never_flags_oom: bool,
}

/// bollard's error as an [`EngineError`] of the right kind.
fn classify(error: BollardError) -> EngineError {
    let kind = match &error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => EngineErrorKind::NotFound,
            409 | 304 => EngineErrorKind::Conflict,
            // Podman's 500s where Docker answers 409: a duplicate name, or a container that
            // is not running.
            500 if message.contains("that name is already in use")
                || message.contains("container state improper") =>
            {
                EngineErrorKind::Conflict
            }
            _ => EngineErrorKind::Other,
        },
        BollardError::RequestTimeoutError => EngineErrorKind::Timeout,
        BollardError::SocketNotFoundError(_) | BollardError::HyperLegacyError { .. } => {
            EngineErrorKind::Unreachable
        }
        // Podman reports a missing image inside the pull stream.
        BollardError::DockerStreamError { error }
            if error.contains("manifest unknown") || error.contains("not found") =>
        {
            EngineErrorKind::NotFound
        }
        _ => EngineErrorKind::Other,
    };
    match error {
        // The engine's own words.
        BollardError::DockerResponseServerError { message, .. } => EngineError::new(kind, message),
        BollardError::DockerStreamError { error } => EngineError::new(kind, error),
        // Below the engine: the socket, a timeout, a body that does not parse.
        other => EngineError::with_source(kind, "", other),
    }
}

fn credentials(auth: &RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: auth.username.clone(),
        password: auth.password.clone(),
        auth: auth.auth.clone(),
        email: auth.email.clone(),
        serveraddress: auth.server_address.clone(),
        ..DockerCredentials::default()
    }
}

/// The API body of a [`ContainerConfig`].
pub fn create_body(config: &ContainerConfig) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for port in &config.ports {
        let key = format!("{}/{}", port.container_port, port.protocol);
        port_bindings
            .entry(key.clone())
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(port.host_port.to_string()),
            });
        if !exposed.contains(&key) {
            exposed.push(key);
        }
    }
    let binds = config
        .binds
        .iter()
        .map(|b| {
            let mode = if b.read_only { "ro" } else { "rw" };
            format!("{}:{}:{mode}", b.host, b.container)
        })
        .collect();
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let host_config = HostConfig {
        binds: Some(binds),
        network_mode: Some(config.network.as_str().to_owned()),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        privileged: Some(config.privileged),
        init: config.init,
        memory: config.memory,
        // No swap beyond the memory limit, so the limit means what it says.
        memory_swap: config.memory,
        nano_cpus: config.nano_cpus,
        pids_limit: config.pids_limit,
        shm_size: config.shm_size,
        ulimits: (!config.ulimits.is_empty()).then(|| {
            config
                .ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        cap_add: some_vec(&config.cap_add),
        cap_drop: some_vec(&config.cap_drop),
        extra_hosts: some_vec(&config.extra_hosts),
        cgroup_parent: config.cgroup_parent.clone(),
        cpu_quota: config.cpu_quota,
        cpu_period: config.cpu_period,
        ..HostConfig::default()
    };
    ContainerCreateBody {
        image: Some(config.image.clone()),
        entrypoint: config.entrypoint.clone(),
        cmd: config.cmd.clone(),
        env: Some(config.env.clone()),
        working_dir: config.working_dir.clone(),
        user: config.user.clone(),
        hostname: config.hostname.clone(),
        labels: (!config.labels.is_empty()).then(|| {
            config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    }
}

impl DockerEngine {
    /// An engine at `socket` (a path, or `unix://path`); `call_timeout` bounds each short call.
    pub fn new(socket: impl Into<PathBuf>, call_timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            call_timeout,
            client: OnceCell::new(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn client(&self) -> Result<&Docker, EngineError> {
        Ok(&self.connected().await?.docker)
    }

    async fn connected(&self) -> Result<&Client, EngineError> {
        self.client
            .get_or_try_init(|| async {
                let socket = self.socket.to_string_lossy();
                let timeout = self.call_timeout.as_secs().max(1);
                let docker =
                    Docker::connect_with_unix(&socket, timeout, bollard::API_DEFAULT_VERSION)
                        .map_err(|e| {
                            EngineError::with_source(
                                EngineErrorKind::Unreachable,
                                format!("cannot reach the container engine at {socket}"),
                                e,
                            )
                        })?;
                let docker = docker.negotiate_version().await.map_err(|e| {
                    EngineError::with_source(
                        EngineErrorKind::Unreachable,
                        format!("the container engine at {socket} does not answer"),
                        e,
                    )
                })?;
                // Only the OOM fallback depends on this: an engine that will not say what it
                // is gets Docker's behaviour.
                let never_flags_oom = match self.short("version", docker.version()).await {
                    Ok(version) => podman_major(&version).is_some_and(|major| major < 5),
                    Err(error) => {
                        tracing::warn!(%socket, %error, "cannot read the engine's version");
                        false
                    }
                };
                Ok(Client {
                    docker,
                    never_flags_oom,
                })
            })
            .await
    }

    /// Runs a short call within the call deadline.
    async fn short<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(EngineError::new(
                EngineErrorKind::Timeout,
                format!("{what}: no answer within {}s", self.call_timeout.as_secs()),
            )),
        }
    }

    /// The engine's name and version (`docker 20.10.24`, `podman 4.3.1`).
    pub async fn version(&self) -> Result<String, EngineError> {
        let client = self.client().await?;
        let version = self.short("version", client.version()).await?;
        let name = if podman_major(&version).is_some() {
            "podman"
        } else {
            "docker"
        };
        Ok(format!("{name} {}", version.version.unwrap_or_default()))
    }
}

/// The major version of a podman engine; `None` for any other engine.
fn podman_major(version: &SystemVersion) -> Option<u64> {
    let component = version
        .components
        .as_deref()?
        .iter()
        .find(|c| c.name.to_ascii_lowercase().contains("podman"))?;
    component.version.split('.').next()?.parse().ok()
}

/// Whether the kernel log records an OOM kill in the memory cgroup of container `id` (its
/// full id). Needs read access to `/dev/kmsg` (root, or CAP_SYSLOG).
fn kernel_logged_oom_kill(id: &str) -> io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open("/dev/kmsg")?;
    // One record per read; a buffer smaller than a record is an error (EINVAL).
    let mut record = vec![0; 16 * 1024];
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                if is_oom_kill_of(&String::from_utf8_lossy(&record[..n]), id) {
                    return Ok(true);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            // Records were overwritten under the reader; the next read goes on from the
            // oldest one left.
            Err(error) if error.raw_os_error() == Some(nix::errno::Errno::EPIPE as i32) => {}
            Err(error) => return Err(error),
        }
    }
}

/// Whether a `/dev/kmsg` record is the kernel's OOM-kill summary for a memory cgroup of
/// container `id`: `6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/libpod_parent/
/// libpod-<id>,task_memcg=/libpod_parent/libpod-<id>,task=tail,pid=7,uid=0` (systemd cgroups:
/// `/machine.slice/libpod-<id>.scope`; dockerd: `/docker/<id>`, `/system.slice/docker-<id>.scope`).
fn is_oom_kill_of(record: &str, id: &str) -> bool {
    // A short id could match another container's.
    if id.len() < 32 {
        return false;
    }
    let Some((_, message)) = record.split_once(';') else {
        return false;
    };
    let Some(fields) = message
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("oom-kill:"))
    else {
        return false;
    };
    fields
        .split(',')
        .filter_map(|field| {
            field
                .strip_prefix("oom_memcg=")
                .or_else(|| field.strip_prefix("task_memcg="))
        })
        .flat_map(|path| path.split('/'))
        .any(|part| part.strip_suffix(".scope").unwrap_or(part).ends_with(id))
}

impl ContainerEngine for DockerEngine {
    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        let client = self.client().await?;
        match self
            .short("inspect image", client.inspect_image(image))
            .await
        {
            Ok(inspect) => Ok(Some(inspect.id.unwrap_or_else(|| image.to_owned()))),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn inspect_image(&self, image: &str) -> Result<serde_json::Value, EngineError> {
        let client = self.client().await?;
        let inspect = self
            .short("inspect image", client.inspect_image(image))
            .await?;
        serde_json::to_value(inspect)
            .map_err(|e| EngineError::with_source(EngineErrorKind::Other, "image description", e))
    }

    async fn load_image(&self, tarball: &Path) -> Result<(), EngineError> {
        let client = self.client().await?;
        let file = tokio::fs::File::open(tarball).await.map_err(|e| {
            EngineError::with_source(
                EngineErrorKind::Other,
                format!("cannot open {}", tarball.display()),
                e,
            )
        })?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut progress = client.import_image_stream(options, body, None);
        while let Some(message) = progress.next().await {
            message.map_err(classify)?;
        }
        Ok(())
    }

    async fn pull_image(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), EngineError> {
        let client = self.client().await?;
        let options = CreateImageOptionsBuilder::default()
            .from_image(repository)
            .tag(tag)
            .build();
        let mut progress = client.create_image(Some(options), None, auth.map(credentials));
        while let Some(message) = progress.next().await {
            message.map_err(classify)?;
        }
        Ok(())
    }

    async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        let client = self.client().await?;
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        self.short(
            "remove image",
            client.remove_image(image, Some(options), None),
        )
        .await
        .map(drop)
    }

    async fn cgroup_driver(&self) -> Result<CgroupDriver, EngineError> {
        let client = self.client().await?;
        let info = self.short("info", client.info()).await?;
        match info.cgroup_driver {
            Some(SystemInfoCgroupDriverEnum::CGROUPFS) => Ok(CgroupDriver::Cgroupfs),
            Some(SystemInfoCgroupDriverEnum::SYSTEMD) => Ok(CgroupDriver::Systemd),
            other => Err(EngineError::new(
                EngineErrorKind::Other,
                format!(
                    "the engine manages no cgroups (cgroup driver {})",
                    other.map_or_else(|| "unset".to_owned(), |d| d.to_string())
                ),
            )),
        }
    }

    async fn create(&self, config: &ContainerConfig) -> Result<String, EngineError> {
        let client = self.client().await?;
        let options = CreateContainerOptionsBuilder::default()
            .name(&config.name)
            .build();
        let created = self
            .short(
                "create container",
                client.create_container(Some(options), create_body(config)),
            )
            .await?;
        Ok(created.id)
    }

    async fn attach(&self, id: &str) -> Result<OutputStream, EngineError> {
        let client = self.client().await?;
        let options = AttachContainerOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        let attached = self
            .short("attach", client.attach_container(id, Some(options)))
            .await?;
        let output = attached
            .output
            .map_err(classify)
            .try_filter_map(|chunk| async move {
                Ok(match chunk {
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message } => Some(message),
                    LogOutput::StdIn { .. } => None,
                })
            });
        Ok(Box::pin(output))
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let client = self.client().await?;
        self.short("start container", client.start_container(id, None))
            .await
    }

    async fn signal(&self, id: &str, signal: Signal) -> Result<(), EngineError> {
        let client = self.client().await?;
        let options = KillContainerOptionsBuilder::default()
            .signal(signal.name())
            .build();
        self.short("kill container", client.kill_container(id, Some(options)))
            .await
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let client = self.client().await?;
        // Always pass `t`: podman kills at once without it.
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(seconds).build();
        let call = client.stop_container(id, Some(options));
        match tokio::time::timeout(grace + self.call_timeout, call).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(EngineError::new(
                EngineErrorKind::Timeout,
                format!(
                    "stop container: no answer within {}s",
                    (grace + self.call_timeout).as_secs()
                ),
            )),
        }
    }

    async fn wait(&self, id: &str) -> Result<ContainerExit, EngineError> {
        let client = self.client().await?;
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut waiting = client.wait_container(id, Some(options));
        let mut code = None;
        while let Some(answer) = waiting.next().await {
            match answer {
                Ok(response) => code = Some(response.status_code),
                // bollard reports any non-zero exit this way; it is an exit code, not a failure.
                Err(BollardError::DockerContainerWaitError { code: c, .. }) => code = Some(c),
                Err(error) => return Err(classify(error)),
            }
        }
        let inspect = self
            .short("inspect container", client.inspect_container(id, None))
            .await?;
        let state = inspect.state.unwrap_or_default();
        let code = code.or(state.exit_code).ok_or_else(|| {
            EngineError::new(EngineErrorKind::Other, "the engine reported no exit code")
        })?;
        let mut oom_killed = state.oom_killed.unwrap_or(false);
        // Podman 4 never sets the flag; dockerd may set it only after the exit. The kernel
        // logs its OOM report before the kill, so the report is there once the container ended.
        // A memory limit of its own, or one of its cgroup parent's.
        let memory_limited = inspect.host_config.is_some_and(|h| {
            h.memory.is_some_and(|m| m > 0) || h.cgroup_parent.is_some_and(|p| !p.is_empty())
        });
        if !oom_killed
            && memory_limited
            && (code == 137 || self.connected().await?.never_flags_oom)
            && let Some(full_id) = inspect.id
        {
            let read = tokio::task::spawn_blocking(move || kernel_logged_oom_kill(&full_id));
            oom_killed = match read.await {
                Ok(Ok(found)) => found,
                Ok(Err(error)) => {
                    tracing::warn!(container = id, %error, "cannot read the kernel log");
                    false
                }
                Err(error) => {
                    tracing::warn!(container = id, %error, "the kernel log reader failed");
                    false
                }
            };
        }
        Ok(ContainerExit { code, oom_killed })
    }

    async fn main_pid(&self, id: &str) -> Result<Option<u32>, EngineError> {
        let client = self.client().await?;
        let inspect = self
            .short("inspect container", client.inspect_container(id, None))
            .await?;
        Ok(inspect
            .state
            .and_then(|s| s.pid)
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0))
    }

    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        env: &[String],
    ) -> Result<ExecSession, EngineError> {
        let client = self.client().await?;
        let config = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            env: Some(env.to_vec()),
            cmd: Some(argv.to_vec()),
            ..Default::default()
        };
        let created = self
            .short("create exec", client.create_exec(id, config))
            .await?;
        let started = self
            .short("start exec", client.start_exec(&created.id, None))
            .await?;
        let StartExecResults::Attached { output, .. } = started else {
            return Err(EngineError::new(
                EngineErrorKind::Other,
                "the engine started the exec detached",
            ));
        };
        // The engine answers the start before the process exists: its pid shows up shortly.
        let mut pid = None;
        for _ in 0..EXEC_PID_POLLS {
            let inspect = self
                .short("inspect exec", client.inspect_exec(&created.id))
                .await?;
            pid = inspect
                .pid
                .and_then(|pid| u32::try_from(pid).ok())
                .filter(|pid| *pid > 0);
            if pid.is_some() || inspect.exit_code.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let output = output.map_err(classify).try_filter_map(|chunk| async move {
            Ok(match chunk {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => Some(message),
                LogOutput::StdIn { .. } => None,
            })
        });
        Ok(ExecSession {
            id: created.id,
            pid,
            output: Box::pin(output),
        })
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, EngineError> {
        let client = self.client().await?;
        let inspect = self
            .short("inspect exec", client.inspect_exec(exec_id))
            .await?;
        if inspect.running.unwrap_or(false) {
            return Ok(None);
        }
        Ok(inspect.exit_code)
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let client = self.client().await?;
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        self.short(
            "remove container",
            client.remove_container(id, Some(options)),
        )
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ContainerSummary>, EngineError> {
        let client = self.client().await?;
        // The engine's name filter matches anywhere in the name; it only narrows the answer,
        // the prefix is checked here.
        let filters = HashMap::from([("name", vec![prefix])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .short("list containers", client.list_containers(Some(options)))
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|summary| {
                let name = summary
                    .names?
                    .into_iter()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .find(|n| n.starts_with(prefix))?;
                let running = matches!(
                    summary.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING
                            | ContainerSummaryStateEnum::RESTARTING
                            | ContainerSummaryStateEnum::PAUSED
                    )
                );
                Some(ContainerSummary {
                    id: summary.id?,
                    name,
                    running,
                })
            })
            .collect())
    }

    async fn mounts(&self, id: &str) -> Result<Vec<MountPoint>, EngineError> {
        let client = self.client().await?;
        let inspect = self
            .short("inspect container", client.inspect_container(id, None))
            .await?;
        Ok(inspect
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mount| {
                Some(MountPoint {
                    source: mount.source?,
                    destination: mount.destination?,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::SystemVersionComponents;

    use super::*;

    fn engine_version(name: &str, version: &str) -> SystemVersion {
        SystemVersion {
            version: Some(version.to_owned()),
            components: Some(vec![SystemVersionComponents {
                name: name.to_owned(),
                version: version.to_owned(),
                details: None,
            }]),
            ..SystemVersion::default()
        }
    }

    #[test]
    fn podman_is_told_from_docker_by_its_version_components() {
        assert_eq!(
            podman_major(&engine_version("Podman Engine", "4.3.1")),
            Some(4)
        );
        assert_eq!(
            podman_major(&engine_version("Podman Engine", "5.2.0")),
            Some(5)
        );
        assert_eq!(podman_major(&engine_version("Engine", "20.10.24")), None);
        assert_eq!(podman_major(&SystemVersion::default()), None);
    }

    const ID: &str = "d379bde2fddc33f4bdf472bf1266e237a4e86099654fb6448fe15d019eaa5ae8";

    #[test]
    fn the_kernels_oom_kill_summary_names_the_container() {
        let v1 = format!(
            "6,1234,11896428326,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),\
             cpuset=libpod-{ID},mems_allowed=0,oom_memcg=/libpod_parent/libpod-{ID},\
             task_memcg=/libpod_parent/libpod-{ID},task=tail,pid=753,uid=0\n"
        );
        assert!(is_oom_kill_of(&v1, ID));
        let v2 = format!(
            "6,9,10,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,\
             mems_allowed=0,oom_memcg=/machine.slice/libpod-{ID}.scope,\
             task_memcg=/machine.slice/libpod-{ID}.scope/container,task=sh,pid=8,uid=0\n"
        );
        assert!(is_oom_kill_of(&v2, ID));
        let docker = format!(
            "6,9,10,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={ID},\
             mems_allowed=0,oom_memcg=/docker/{ID},task_memcg=/docker/{ID},task=tail,pid=9,uid=0\n"
        );
        assert!(is_oom_kill_of(&docker, ID));
        let systemd = format!(
            "6,9,10,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,\
             mems_allowed=0,oom_memcg=/system.slice/docker-{ID}.scope,\
             task_memcg=/system.slice/docker-{ID}.scope,task=tail,pid=9,uid=0\n"
        );
        assert!(is_oom_kill_of(&systemd, ID));

        let other = ID.replace('d', "e");
        assert!(!is_oom_kill_of(&v1, &other));
        // The kill line itself does not name the cgroup.
        let kill = "3,1235,11896428327,-;Memory cgroup out of memory: Killed process 753 (tail)\n";
        assert!(!is_oom_kill_of(kill, ID));
        assert!(!is_oom_kill_of(&v1, &ID[..12]));
        assert!(!is_oom_kill_of("garbage", ID));
    }

    #[test]
    fn podmans_500s_for_a_taken_name_and_a_stopped_container_are_conflicts() {
        let server_error = |message: &str| BollardError::DockerResponseServerError {
            status_code: 500,
            message: message.to_owned(),
        };
        let taken = classify(server_error(
            "container create: creating container storage: the container name \"se-x\" is \
             already in use by c8c0. You have to remove that container to be able to reuse \
             that name: that name is already in use",
        ));
        assert_eq!(taken.kind, EngineErrorKind::Conflict);
        let stopped = classify(server_error(
            "can only kill running containers. c8c0 is in state exited: container state improper",
        ));
        assert_eq!(stopped.kind, EngineErrorKind::Conflict);
        let other = classify(server_error("runc create failed: OCI permission denied"));
        assert_eq!(other.kind, EngineErrorKind::Other);
        assert_eq!(other.message, "runc create failed: OCI permission denied");
    }

    #[test]
    fn a_missing_image_reported_inside_the_pull_stream_is_not_found() {
        let missing = classify(BollardError::DockerStreamError {
            error: "initializing source docker://127.0.0.1:5000/test/busybox:x: reading \
                    manifest x in 127.0.0.1:5000/test/busybox: manifest unknown"
                .to_owned(),
        });
        assert_eq!(missing.kind, EngineErrorKind::NotFound);
        let refused = classify(BollardError::DockerStreamError {
            error: "pinging container registry 127.0.0.1:5999: connection refused".to_owned(),
        });
        assert_eq!(refused.kind, EngineErrorKind::Other);
    }
}
