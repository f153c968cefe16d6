//! `mesos.v1.executor.Call` and `mesos.v1.executor.Event` (docs/mesos-executor-api.md), in stout's JSON
//! mapping. Both are flat messages: `type` plus the sub-message matching it.

use crate::types::{
    AgentInfo, ContainerId, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, KillPolicy,
    TaskGroupInfo, TaskId, TaskInfo, TaskStatus,
};
use crate::wire;
use serde::{Deserialize, Serialize};

/// `Call.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallType {
    /// Guard value; the agent answers 501.
    Unknown,
    /// Opens the event stream.
    Subscribe,
    /// A task status update.
    Update,
    /// A framework message.
    Message,
    /// Keep-alive; answered 202 before any id check.
    Heartbeat,
}

impl CallType {
    /// The proto enum name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Subscribe => "SUBSCRIBE",
            Self::Update => "UPDATE",
            Self::Message => "MESSAGE",
            Self::Heartbeat => "HEARTBEAT",
        }
    }
}

impl std::fmt::Display for CallType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Call.Subscribe`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Subscribe {
    /// Tasks launched but with no acknowledged update yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unacknowledged_tasks: Vec<TaskInfo>,
    /// Updates sent (or queued) but not acknowledged, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unacknowledged_updates: Vec<Update>,
}

/// `Call.Update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// The status.
    pub status: TaskStatus,
}

/// `Call.Message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMessage {
    /// Opaque bytes for the scheduler.
    #[serde(with = "wire::b64")]
    pub data: Vec<u8>,
}

/// `mesos.v1.executor.Call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Executor id (required on every call).
    pub executor_id: ExecutorId,
    /// Framework id (required on every call).
    pub framework_id: FrameworkId,
    /// Call type.
    #[serde(rename = "type")]
    pub kind: CallType,
    /// For SUBSCRIBE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    /// For UPDATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    /// For MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<CallMessage>,
}

impl Call {
    fn bare(framework_id: &FrameworkId, executor_id: &ExecutorId, kind: CallType) -> Self {
        Self {
            executor_id: executor_id.clone(),
            framework_id: framework_id.clone(),
            kind,
            subscribe: None,
            update: None,
            message: None,
        }
    }

    /// A SUBSCRIBE call.
    pub fn subscribe(
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        subscribe: Subscribe,
    ) -> Self {
        Self {
            subscribe: Some(subscribe),
            ..Self::bare(framework_id, executor_id, CallType::Subscribe)
        }
    }

    /// An UPDATE call.
    pub fn update(
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        status: TaskStatus,
    ) -> Self {
        Self {
            update: Some(Update { status }),
            ..Self::bare(framework_id, executor_id, CallType::Update)
        }
    }

    /// A MESSAGE call.
    pub fn message(framework_id: &FrameworkId, executor_id: &ExecutorId, data: Vec<u8>) -> Self {
        Self {
            message: Some(CallMessage { data }),
            ..Self::bare(framework_id, executor_id, CallType::Message)
        }
    }

    /// A HEARTBEAT call.
    pub fn heartbeat(framework_id: &FrameworkId, executor_id: &ExecutorId) -> Self {
        Self::bare(framework_id, executor_id, CallType::Heartbeat)
    }
}

/// `Event.Type`. An unknown name reads as [`EventType::Unknown`] so a newer agent never breaks
/// the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The subscription is live.
    Subscribed,
    /// Start a task.
    Launch,
    /// Start a group of tasks.
    LaunchGroup,
    /// Kill a task.
    Kill,
    /// An update was checkpointed by the agent.
    Acknowledged,
    /// Framework message.
    Message,
    /// Error from the agent.
    Error,
    /// Kill all tasks and exit.
    Shutdown,
    /// Keep-alive.
    Heartbeat,
    /// Unknown or missing type: logged and ignored.
    #[default]
    #[serde(other)]
    Unknown,
}

/// `Event.Subscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    /// This executor.
    pub executor_info: ExecutorInfo,
    /// The framework (its `id` is set).
    pub framework_info: FrameworkInfo,
    /// The agent.
    pub agent_info: AgentInfo,
    /// The executor's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
}

/// `Event.Launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The task.
    pub task: TaskInfo,
}

/// `Event.LaunchGroup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    /// The tasks.
    pub task_group: TaskGroupInfo,
}

/// `Event.Kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    /// The task to kill.
    pub task_id: TaskId,
    /// Overrides `TaskInfo.kill_policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// `Event.Acknowledged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// Task of the acknowledged update.
    pub task_id: TaskId,
    /// The update's uuid (16 bytes).
    #[serde(with = "wire::b64")]
    pub uuid: Vec<u8>,
}

/// `Event.Message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMessage {
    /// Opaque framework bytes.
    #[serde(with = "wire::b64")]
    pub data: Vec<u8>,
}

/// `Event.Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventError {
    /// What went wrong.
    pub message: String,
}

/// `mesos.v1.executor.Event`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Event {
    /// Event type.
    #[serde(rename = "type", default)]
    pub kind: EventType,
    /// For SUBSCRIBED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Box<Subscribed>>,
    /// For LAUNCH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Box<Launch>>,
    /// For LAUNCH_GROUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
    /// For KILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    /// For ACKNOWLEDGED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledged>,
    /// For MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<EventMessage>,
    /// For ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EventError>,
}

impl Event {
    fn of(kind: EventType) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// SUBSCRIBED.
    pub fn subscribed(subscribed: Subscribed) -> Self {
        Self {
            subscribed: Some(Box::new(subscribed)),
            ..Self::of(EventType::Subscribed)
        }
    }

    /// LAUNCH.
    pub fn launch(task: TaskInfo) -> Self {
        Self {
            launch: Some(Box::new(Launch { task })),
            ..Self::of(EventType::Launch)
        }
    }

    /// LAUNCH_GROUP.
    pub fn launch_group(tasks: Vec<TaskInfo>) -> Self {
        Self {
            launch_group: Some(LaunchGroup {
                task_group: TaskGroupInfo { tasks },
            }),
            ..Self::of(EventType::LaunchGroup)
        }
    }

    /// KILL.
    pub fn kill(task_id: TaskId, kill_policy: Option<KillPolicy>) -> Self {
        Self {
            kill: Some(Kill {
                task_id,
                kill_policy,
            }),
            ..Self::of(EventType::Kill)
        }
    }

    /// ACKNOWLEDGED.
    pub fn acknowledged(task_id: TaskId, uuid: Vec<u8>) -> Self {
        Self {
            acknowledged: Some(Acknowledged { task_id, uuid }),
            ..Self::of(EventType::Acknowledged)
        }
    }

    /// MESSAGE.
    pub fn message(data: Vec<u8>) -> Self {
        Self {
            message: Some(EventMessage { data }),
            ..Self::of(EventType::Message)
        }
    }

    /// ERROR.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(EventError {
                message: message.into(),
            }),
            ..Self::of(EventType::Error)
        }
    }

    /// SHUTDOWN.
    pub fn shutdown() -> Self {
        Self::of(EventType::Shutdown)
    }

    /// HEARTBEAT.
    pub fn heartbeat() -> Self {
        Self::of(EventType::Heartbeat)
    }
}
