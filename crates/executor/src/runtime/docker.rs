//! The Docker backend of [`ContainerEngine`]: the Docker Engine API over a unix socket
//! (bollard), which podman's compatible service answers too.
//!
//! The client connects on first use and negotiates the API version then, so an executor
//! that never runs a container never needs the socket. Every call but the long ones (pull,
//! load, attach, wait) has the `dockerClientTimeLimitSeconds` deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ImportImageOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::OnceCell;

use super::StopSignal;
use super::container::{
    ContainerConfig, ContainerEngine, ContainerExit, EngineError, EngineErrorKind, OutputStream,
    RegistryAuth,
};

/// The engine's socket when none is configured.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A Docker-API engine on a unix socket.
#[derive(Debug)]
pub struct DockerEngine {
    socket: PathBuf,
    call_timeout: Duration,
    client: OnceCell<Docker>,
}

/// bollard's error as an [`EngineError`] of the right kind.
fn classify(error: BollardError) -> EngineError {
    let kind = match &error {
        BollardError::DockerResponseServerError { status_code, .. } => match status_code {
            404 => EngineErrorKind::NotFound,
            409 | 304 => EngineErrorKind::Conflict,
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
    let message = match error {
        BollardError::DockerResponseServerError { message, .. } => message,
        BollardError::DockerStreamError { error } => error,
        other => other.to_string(),
    };
    EngineError::new(kind, message)
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
        self.client
            .get_or_try_init(|| async {
                let socket = self.socket.to_string_lossy();
                let timeout = self.call_timeout.as_secs().max(1);
                let docker =
                    Docker::connect_with_unix(&socket, timeout, bollard::API_DEFAULT_VERSION)
                        .map_err(|e| {
                            EngineError::new(
                                EngineErrorKind::Unreachable,
                                format!("cannot reach the container engine at {socket}: {e}"),
                            )
                        })?;
                docker.negotiate_version().await.map_err(|e| {
                    EngineError::new(
                        EngineErrorKind::Unreachable,
                        format!("the container engine at {socket} does not answer: {e}"),
                    )
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

    /// The engine's version string (`docker 20.10.24`, `podman 4.3.1`).
    pub async fn version(&self) -> Result<String, EngineError> {
        let client = self.client().await?;
        let version = self.short("version", client.version()).await?;
        let name = version
            .components
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| c.name.to_ascii_lowercase())
            .unwrap_or_else(|| "engine".to_owned());
        Ok(format!("{} {}", name, version.version.unwrap_or_default()))
    }
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
            .map_err(|e| EngineError::new(EngineErrorKind::Other, e.to_string()))
    }

    async fn load_image(&self, tarball: &Path) -> Result<(), EngineError> {
        let client = self.client().await?;
        let file = tokio::fs::File::open(tarball).await.map_err(|e| {
            EngineError::new(
                EngineErrorKind::Other,
                format!("cannot open {}: {e}", tarball.display()),
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

    async fn signal(&self, id: &str, signal: StopSignal) -> Result<(), EngineError> {
        let client = self.client().await?;
        let name = match signal {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Kill => "SIGKILL",
        };
        let options = KillContainerOptionsBuilder::default().signal(name).build();
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
        Ok(ContainerExit {
            code,
            oom_killed: state.oom_killed.unwrap_or(false),
        })
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
}
