//! The subset of `mesos.proto` (v1) and `executor.proto` the executor exchanges, as serde types
//! following stout's JSON mapping (docs/mesos-executor-api.md): snake_case proto field names, enum values as
//! their names, `bytes` as standard base64, int64 as JSON numbers (numeric strings accepted on
//! read), unknown fields ignored, unset optional and empty repeated fields omitted.
//!
//! Messages the executor only passes through (health checks, discovery, reservations, ...) are
//! kept as opaque [`serde_json::Value`]s so they survive a round trip unchanged.

use crate::wire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

type Opaque = serde_json::Value;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name {
            /// The identifier.
            pub value: String,
        }

        impl $name {
            /// Wraps an identifier.
            pub fn new(value: impl Into<String>) -> Self {
                Self { value: value.into() }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self { value }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.value)
            }
        }
    };
}

id_type!(
    /// `TaskID`.
    TaskId
);
id_type!(
    /// `FrameworkID`.
    FrameworkId
);
id_type!(
    /// `ExecutorID`.
    ExecutorId
);
id_type!(
    /// `AgentID`.
    AgentId
);

/// `ContainerID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerId {
    /// The identifier.
    pub value: String,
    /// Parent container, for nested containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<ContainerId>>,
}

/// `DurationInfo`: int64 nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationInfo {
    /// Nanoseconds (may be negative on the wire; see [`DurationInfo::to_duration`]).
    #[serde(deserialize_with = "wire::num")]
    pub nanoseconds: i64,
}

impl DurationInfo {
    /// The duration; negative values clamp to zero.
    pub fn to_duration(self) -> Duration {
        Duration::from_nanos(u64::try_from(self.nanoseconds).unwrap_or(0))
    }

    /// From a duration (saturating at `i64::MAX` nanoseconds).
    pub fn from_duration(d: Duration) -> Self {
        Self {
            nanoseconds: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        }
    }
}

/// `KillPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KillPolicy {
    /// Time between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationInfo>,
}

impl KillPolicy {
    /// A policy with the given grace period.
    pub fn with_grace(grace: Duration) -> Self {
        Self {
            grace_period: Some(DurationInfo::from_duration(grace)),
        }
    }

    /// The grace period, when set.
    pub fn grace(&self) -> Option<Duration> {
        self.grace_period.map(DurationInfo::to_duration)
    }
}

/// `Label`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `Labels`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Labels {
    /// The labels, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
}

/// `Value.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueType {
    /// A floating-point quantity.
    Scalar,
    /// Integer ranges (ports).
    Ranges,
    /// A set of strings.
    Set,
    /// Text.
    Text,
}

/// `Value.Scalar`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scalar {
    /// The quantity.
    #[serde(deserialize_with = "wire::num")]
    pub value: f64,
}

/// `Value.Range`: inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// First value.
    #[serde(deserialize_with = "wire::num")]
    pub begin: u64,
    /// Last value (inclusive).
    #[serde(deserialize_with = "wire::num")]
    pub end: u64,
}

/// `Value.Ranges`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ranges {
    /// The ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub range: Vec<Range>,
}

/// `Value.Set`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValueSet {
    /// The members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item: Vec<String>,
}

/// `Resource.AllocationInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AllocationInfo {
    /// The role the resource was allocated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `Resource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// `cpus`, `mem`, `disk`, `ports`, ...
    pub name: String,
    /// Which of `scalar` / `ranges` / `set` is meaningful.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "wire::opt_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<ValueType>,
    /// Scalar quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Scalar>,
    /// Ranges (ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Ranges>,
    /// Set of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<ValueSet>,
    /// Deprecated role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Allocation info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
    /// Reservations (passed through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<Opaque>,
    /// Disk info (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Opaque>,
    /// Revocable marker (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocable: Option<Opaque>,
    /// Shared marker (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<Opaque>,
    /// Resource provider (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<Opaque>,
}

impl Resource {
    /// A scalar resource such as `cpus` or `mem`.
    pub fn scalar(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            kind: Some(ValueType::Scalar),
            scalar: Some(Scalar { value }),
            ranges: None,
            set: None,
            role: None,
            allocation_info: None,
            reservations: Vec::new(),
            disk: None,
            revocable: None,
            shared: None,
            provider_id: None,
        }
    }

    /// A ranges resource such as `ports`.
    pub fn ranges(name: impl Into<String>, ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        Self {
            kind: Some(ValueType::Ranges),
            scalar: None,
            ranges: Some(Ranges {
                range: ranges
                    .into_iter()
                    .map(|(begin, end)| Range { begin, end })
                    .collect(),
            }),
            ..Self::scalar(name, 0.0)
        }
    }
}

/// `Environment.Variable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    /// Variable name.
    pub name: String,
    /// `VALUE` (default) or `SECRET`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The value, for `VALUE` variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The secret, for `SECRET` variables (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Opaque>,
}

/// `Environment`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Environment {
    /// The variables, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<EnvironmentVariable>,
}

/// `CommandInfo.URI`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandUri {
    /// The URI.
    pub value: String,
    /// Make the fetched file executable.
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub executable: Option<bool>,
    /// Extract archives (default true).
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub extract: Option<bool>,
    /// Use the fetcher cache.
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache: Option<bool>,
    /// Output file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

/// `CommandInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommandInfo {
    /// URIs to fetch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<CommandUri>,
    /// Environment for the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Run through `/bin/sh -c` (proto default: true).
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub shell: Option<bool>,
    /// The command line (shell) or the program (no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Arguments when `shell` is false.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// User to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl CommandInfo {
    /// `shell` with its proto default (true) applied.
    pub fn is_shell(&self) -> bool {
        self.shell.unwrap_or(true)
    }
}

/// `ContainerInfo.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerType {
    /// Docker containerizer.
    Docker,
    /// Mesos containerizer.
    Mesos,
}

/// `Volume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Path inside the container.
    pub container_path: String,
    /// Path on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RW` or `RO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Image volume (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Opaque>,
    /// Volume source (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Opaque>,
}

/// `ContainerInfo.DockerInfo.PortMapping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host port.
    #[serde(deserialize_with = "wire::num")]
    pub host_port: u32,
    /// Container port.
    #[serde(deserialize_with = "wire::num")]
    pub container_port: u32,
    /// `tcp` / `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `Parameter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// Key (a `docker run` long option without dashes).
    pub key: String,
    /// Value.
    pub value: String,
}

/// `ContainerInfo.DockerInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerInfo {
    /// Image reference.
    pub image: String,
    /// `HOST`, `BRIDGE`, `NONE` or `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Port mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Privileged container.
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub privileged: Option<bool>,
    /// Extra `docker run` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Always pull the image.
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub force_pull_image: Option<bool>,
    /// Volume driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_driver: Option<String>,
}

/// `ContainerInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Containerizer type.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "wire::opt_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<ContainerType>,
    /// Volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Docker settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerInfo>,
    /// Mesos containerizer settings (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos: Option<Opaque>,
    /// Networks (passed through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<Opaque>,
    /// Linux settings (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_info: Option<Opaque>,
    /// Resource limits (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlimit_info: Option<Opaque>,
    /// TTY (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty_info: Option<Opaque>,
}

/// `ExecutorInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// `DEFAULT` or `CUSTOM`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Executor id.
    pub executor_id: ExecutorId,
    /// Framework id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
    /// How the executor is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container the executor runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Executor resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Deprecated source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Opaque executor data.
    #[serde(
        default,
        with = "wire::opt_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<Vec<u8>>,
    /// Discovery (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Opaque>,
    /// Shutdown grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_period: Option<DurationInfo>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

impl ExecutorInfo {
    /// A minimal executor info.
    pub fn new(executor_id: ExecutorId) -> Self {
        Self {
            kind: None,
            executor_id,
            framework_id: None,
            command: None,
            container: None,
            resources: Vec::new(),
            name: None,
            source: None,
            data: None,
            discovery: None,
            shutdown_grace_period: None,
            labels: None,
        }
    }
}

/// `TaskInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Task name.
    pub name: String,
    /// Task id.
    pub task_id: TaskId,
    /// Agent the task was launched on.
    pub agent_id: AgentId,
    /// Resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// The executor that runs the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorInfo>,
    /// Command (for command tasks; Singularity sets it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Health check (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Opaque>,
    /// Check (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Opaque>,
    /// Kill policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    /// Opaque task data (Singularity: its executor data JSON).
    #[serde(
        default,
        with = "wire::opt_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<Vec<u8>>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Discovery (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Opaque>,
    /// Maximum run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_time: Option<DurationInfo>,
    /// Resource limits (`map<string, Value.Scalar>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Scalar>,
}

impl TaskInfo {
    /// A minimal task info with the three required fields.
    pub fn new(name: impl Into<String>, task_id: TaskId, agent_id: AgentId) -> Self {
        Self {
            name: name.into(),
            task_id,
            agent_id,
            resources: Vec::new(),
            executor: None,
            command: None,
            container: None,
            health_check: None,
            check: None,
            kill_policy: None,
            data: None,
            labels: None,
            discovery: None,
            max_completion_time: None,
            limits: BTreeMap::new(),
        }
    }
}

/// `TaskGroupInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskGroupInfo {
    /// Tasks of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskInfo>,
}

/// `FrameworkInfo` (subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// User tasks run as by default.
    pub user: String,
    /// Framework name.
    pub name: String,
    /// Framework id (always set in SUBSCRIBED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FrameworkId>,
    /// Failover timeout in seconds.
    #[serde(
        default,
        deserialize_with = "wire::opt_num",
        skip_serializing_if = "Option::is_none"
    )]
    pub failover_timeout: Option<f64>,
    /// Checkpointing enabled.
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub checkpoint: Option<bool>,
    /// Deprecated single role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Web UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    /// Capabilities (`{"type": "TASK_KILLING_STATE"}`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Opaque>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

impl FrameworkInfo {
    /// Whether the framework declared the capability (e.g. `TASK_KILLING_STATE`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.get("type").and_then(|t| t.as_str()) == Some(name))
    }
}

/// `AgentInfo` (subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent hostname.
    pub hostname: String,
    /// Agent port.
    #[serde(
        default,
        deserialize_with = "wire::opt_num",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<i32>,
    /// Agent resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// Attributes (passed through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Opaque>,
    /// Agent id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AgentId>,
    /// Fault domain (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Opaque>,
}

/// `TaskState`: every value of `mesos.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// 6: never sent by executors (the agent rejects it).
    TaskStaging,
    /// 0.
    TaskStarting,
    /// 1.
    TaskRunning,
    /// 8: only with the framework's `TASK_KILLING_STATE` capability.
    TaskKilling,
    /// 2: terminal.
    TaskFinished,
    /// 3: terminal.
    TaskFailed,
    /// 4: terminal.
    TaskKilled,
    /// 7: terminal.
    TaskError,
    /// 5: not always terminal.
    TaskLost,
    /// 9: terminal.
    TaskDropped,
    /// 10.
    TaskUnreachable,
    /// 11: terminal.
    TaskGone,
    /// 12.
    TaskGoneByOperator,
    /// 13.
    TaskUnknown,
}

impl TaskState {
    /// The proto enum name (`TASK_RUNNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskStaging => "TASK_STAGING",
            Self::TaskStarting => "TASK_STARTING",
            Self::TaskRunning => "TASK_RUNNING",
            Self::TaskKilling => "TASK_KILLING",
            Self::TaskFinished => "TASK_FINISHED",
            Self::TaskFailed => "TASK_FAILED",
            Self::TaskKilled => "TASK_KILLED",
            Self::TaskError => "TASK_ERROR",
            Self::TaskLost => "TASK_LOST",
            Self::TaskDropped => "TASK_DROPPED",
            Self::TaskUnreachable => "TASK_UNREACHABLE",
            Self::TaskGone => "TASK_GONE",
            Self::TaskGoneByOperator => "TASK_GONE_BY_OPERATOR",
            Self::TaskUnknown => "TASK_UNKNOWN",
        }
    }

    /// Whether the state ends the task (`TASK_LOST` counts as terminal for an executor, which
    /// reports it only for tasks it could not start).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::TaskFinished
                | Self::TaskFailed
                | Self::TaskKilled
                | Self::TaskError
                | Self::TaskLost
                | Self::TaskDropped
                | Self::TaskGone
                | Self::TaskGoneByOperator
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `TaskStatus.Source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Source {
    /// The master.
    SourceMaster,
    /// The agent.
    SourceAgent,
    /// The executor: the only value the agent accepts from an executor.
    SourceExecutor,
}

/// `TaskStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// Task id.
    pub task_id: TaskId,
    /// State.
    pub state: TaskState,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who produced the update.
    #[serde(
        default,
        deserialize_with = "wire::opt_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<Source>,
    /// `TaskStatus.Reason` enum name, e.g. `REASON_CONTAINER_LAUNCH_FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Opaque data.
    #[serde(
        default,
        with = "wire::opt_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<Vec<u8>>,
    /// Agent id (the agent fills it when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// Executor id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    /// Seconds since the epoch.
    #[serde(
        default,
        deserialize_with = "wire::opt_num",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<f64>,
    /// 16 raw bytes of an RFC 4122 UUID.
    #[serde(
        default,
        with = "wire::opt_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub uuid: Option<Vec<u8>>,
    /// Health-check result.
    #[serde(
        default,
        deserialize_with = "wire::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub healthy: Option<bool>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Check status (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_status: Option<Opaque>,
    /// Container status (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<Opaque>,
    /// Unreachable time (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_time: Option<Opaque>,
    /// Limitation (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limitation: Option<Opaque>,
}

impl TaskStatus {
    /// A status with only the required fields.
    pub fn new(task_id: TaskId, state: TaskState) -> Self {
        Self {
            task_id,
            state,
            message: None,
            source: None,
            reason: None,
            data: None,
            agent_id: None,
            executor_id: None,
            timestamp: None,
            uuid: None,
            healthy: None,
            labels: None,
            check_status: None,
            container_status: None,
            unreachable_time: None,
            limitation: None,
        }
    }

    /// The uuid as a [`uuid::Uuid`], when it is 16 bytes.
    pub fn uuid(&self) -> Option<uuid::Uuid> {
        self.uuid
            .as_deref()
            .and_then(|b| uuid::Uuid::from_slice(b).ok())
    }
}
