//! The engine interface: what a Singularity daemon needs from a container engine, and the
//! engine-neutral types it speaks.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::cgroup::CgroupDriver;

/// What kind of failure an engine call had; callers treat some kinds as success (removing a
/// container that is already gone) or retry them (a name conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineErrorKind {
    /// The container or image does not exist.
    NotFound,
    /// A container of that name exists, or the container is not in a state for the call.
    Conflict,
    /// The engine gave no answer in time.
    Timeout,
    /// The engine cannot be reached.
    Unreachable,
    /// Anything else the engine refused or failed.
    Other,
}

/// An engine call failed. The message is the engine's own answer where it gave one, else what
/// was being done; a failure below the engine (the socket, a file) is kept as the source.
#[derive(Debug, Clone)]
pub struct EngineError {
    /// The kind.
    pub kind: EngineErrorKind,
    /// The engine's answer, or what was being done; empty when the failure was below the
    /// engine and the source says it all.
    pub message: String,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl EngineError {
    /// An error of `kind`.
    pub fn new(kind: EngineErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` doing `context` (may be empty), caused by `source`.
    pub fn with_source(
        kind: EngineErrorKind,
        context: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// Whether the thing acted on does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == EngineErrorKind::NotFound
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) if self.message.is_empty() => write!(f, "{source}"),
            Some(source) => write!(f, "{}: {source}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Error for EngineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn Error + 'static))
    }
}

impl PartialEq for EngineError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.to_string() == other.to_string()
    }
}

impl Eq for EngineError {}

/// The signals a container's main process is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask it to stop (SIGTERM).
    Terminate,
    /// Stop it now (SIGKILL).
    Kill,
}

impl Signal {
    /// The signal's name as the engine API takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Kill => "SIGKILL",
        }
    }
}

/// A container as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    /// The container id.
    pub id: String,
    /// Its name, without the leading `/` the Docker API adds.
    pub name: String,
    /// Whether it is running (or restarting, or paused): it must be stopped before removal
    /// to give its process a grace.
    pub running: bool,
}

/// A mount of an existing container, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// The directory or file on the engine's host (a volume's data directory for a volume).
    pub source: String,
    /// Where it appears in the container.
    pub destination: String,
}

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Path on the host.
    pub host: String,
    /// Path in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPublish {
    /// Port on the host.
    pub host_port: u32,
    /// Port in the container.
    pub container_port: u32,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// A resource limit (`--ulimit name=soft:hard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Limit name (`nofile`, `nproc`, ...).
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// Network mode of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The engine's bridge network.
    Bridge,
    /// The host's network namespace.
    Host,
    /// No network.
    None,
}

impl NetworkMode {
    /// The engine's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::None => "none",
        }
    }
}

/// Everything a container is created with; engine-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    /// Container name.
    pub name: String,
    /// Image reference or id.
    pub image: String,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments; `None` keeps the image's default command.
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries, in order.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// User (`name`, `uid`, `uid:gid`).
    pub user: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// Published ports.
    pub ports: Vec<PortPublish>,
    /// Network mode.
    pub network: NetworkMode,
    /// Privileged container.
    pub privileged: bool,
    /// Run an init process as PID 1.
    pub init: Option<bool>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Process (task) limit.
    pub pids_limit: Option<i64>,
    /// Size of `/dev/shm` in bytes.
    pub shm_size: Option<i64>,
    /// Resource limits.
    pub ulimits: Vec<Ulimit>,
    /// Capabilities added.
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    pub cap_drop: Vec<String>,
    /// Extra `/etc/hosts` lines as `host:ip`.
    pub extra_hosts: Vec<String>,
    /// The cgroup the container's cgroup is created under, as the engine's driver spells it
    /// ([`crate::cgroup::engine_parent`]); `None`: the engine's default.
    pub cgroup_parent: Option<String>,
    /// CFS quota of the container in µs per [`ContainerConfig::cpu_period`].
    pub cpu_quota: Option<i64>,
    /// CFS period of the container in µs.
    pub cpu_period: Option<i64>,
}

impl ContainerConfig {
    /// A container of `image` named `name`, with nothing else set (host network, as the
    /// Mesos protobuf defaults to).
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            hostname: None,
            labels: BTreeMap::new(),
            binds: Vec::new(),
            ports: Vec::new(),
            network: NetworkMode::Host,
            privileged: false,
            init: None,
            memory: None,
            nano_cpus: None,
            pids_limit: None,
            shm_size: None,
            ulimits: Vec::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            extra_hosts: Vec::new(),
            cgroup_parent: None,
            cpu_quota: None,
            cpu_period: None,
        }
    }
}

/// Registry credentials for a pull.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// User.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// `base64(user:password)`, as docker config files store it.
    pub auth: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Registry address.
    pub server_address: Option<String>,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerExit {
    /// Exit code of its main process (128 + signal when a signal ended it).
    pub code: i64,
    /// The kernel's out-of-memory killer ended it.
    pub oom_killed: bool,
}

/// A command started in a running container ([`ContainerEngine::exec`]).
pub struct ExecSession {
    /// The engine's id of the exec, for [`ContainerEngine::exec_exit_code`].
    pub id: String,
    /// Host pid of the command, when the engine says.
    pub pid: Option<u32>,
    /// Its stdout and stderr, interleaved; ends when the command has ended.
    pub output: OutputStream,
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSession")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// A chunk of container output.
pub type OutputStream = Pin<Box<dyn Stream<Item = Result<Bytes, EngineError>> + Send>>;

/// What the daemons need from a container engine: the executor runs a task's container
/// through it, the cleanup lists, stops and removes the containers left behind.
pub trait ContainerEngine: Send + Sync + fmt::Debug + 'static {
    /// The image's id, or `None` when the engine does not have it.
    fn image_id(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<String>, EngineError>> + Send;
    /// The engine's description of an image, as `docker image inspect` prints it.
    fn inspect_image(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<serde_json::Value, EngineError>> + Send;
    /// Loads a `docker save` tarball.
    fn load_image(&self, tarball: &Path) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Pulls `repository:tag` (or `repository@digest`) once.
    fn pull_image(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Removes an image.
    fn remove_image(&self, image: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// How the engine makes containers' cgroups, which decides how a cgroup parent is
    /// spelled ([`crate::cgroup::engine_parent`]).
    fn cgroup_driver(&self) -> impl Future<Output = Result<CgroupDriver, EngineError>> + Send;
    /// Creates a container; returns its id.
    fn create(
        &self,
        config: &ContainerConfig,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// The container's stdout and stderr from now on, interleaved as written. Attach before
    /// start so that nothing is missed.
    fn attach(&self, id: &str) -> impl Future<Output = Result<OutputStream, EngineError>> + Send;
    /// Starts a created container.
    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Sends a signal to the container's main process.
    fn signal(
        &self,
        id: &str,
        signal: Signal,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// SIGTERM, then SIGKILL after `grace` (the engine keeps the timer).
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Waits until the container is not running.
    fn wait(&self, id: &str) -> impl Future<Output = Result<ContainerExit, EngineError>> + Send;
    /// The host pid of the container's main process; `None` when it is not running.
    fn main_pid(&self, id: &str) -> impl Future<Output = Result<Option<u32>, EngineError>> + Send;
    /// Starts `argv` in the running container `id` with `env` (`NAME=value`) added, its output
    /// attached.
    fn exec(
        &self,
        id: &str,
        argv: &[String],
        env: &[String],
    ) -> impl Future<Output = Result<ExecSession, EngineError>> + Send;
    /// The exit code of an exec whose output has ended; `None` while it still runs.
    fn exec_exit_code(
        &self,
        exec_id: &str,
    ) -> impl Future<Output = Result<Option<i64>, EngineError>> + Send;
    /// Removes the container (forced, with its anonymous volumes).
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Every container, running or not, whose name starts with `prefix` (the executor's
    /// containers: [`singularity_common::naming::container_name`] with `dockerPrefix`).
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ContainerSummary>, EngineError>> + Send;
    /// The mounts of a container: what an executor running in a container needs to turn the
    /// paths it sees into host paths for the containers it creates.
    fn mounts(&self, id: &str)
    -> impl Future<Output = Result<Vec<MountPoint>, EngineError>> + Send;
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn a_failure_below_the_engine_is_the_source_with_its_context() {
        let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let error = EngineError::with_source(
            EngineErrorKind::Unreachable,
            "cannot reach the container engine at /s.sock",
            refused(),
        );
        assert_eq!(
            error.to_string(),
            "cannot reach the container engine at /s.sock: connection refused"
        );
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("connection refused")
        );
        let bare = EngineError::with_source(EngineErrorKind::Other, "", refused());
        assert_eq!(bare.to_string(), "connection refused");
        let answer = EngineError::new(EngineErrorKind::Conflict, "name in use");
        assert_eq!(answer.to_string(), "name in use");
        assert!(answer.source().is_none());
    }
}
