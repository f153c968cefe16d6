//! Client for the Mesos v1 executor HTTP API (`POST /api/v1/executor`), written for
//! `singularity-executor`; no maintained Rust crate covers the executor side.
//!
//! What it does:
//! * reads the agent's environment ([`AgentEnv::from_env`]: ids, endpoint or Unix socket,
//!   checkpointing, durations such as `5secs`, bearer token);
//! * opens the SUBSCRIBE stream on one connection and reads its RecordIO-framed JSON events
//!   as they arrive, whatever the HTTP chunking ([`recordio::Decoder`]); sends every other call
//!   on a second connection and expects `202 Accepted`;
//! * gives each status update a fresh v4 UUID (16 raw bytes, base64 in JSON), marks it
//!   `SOURCE_EXECUTOR`, keeps it, in order, until the agent's ACKNOWLEDGED, and keeps launched
//!   tasks until one of their updates is acknowledged; both go into the next SUBSCRIBE;
//! * on a lost connection: without checkpointing, a local [`ExecutorEvent::Shutdown`]; with
//!   it, one `MESOS_RECOVERY_TIMEOUT` timer from the first disconnection, re-SUBSCRIBE after
//!   a uniformly random wait in `[0, MESOS_SUBSCRIPTION_BACKOFF_MAX]`, and a local shutdown when
//!   the timer fires first.
//!
//! It reads only environment variables and the agent's HTTP answers; it writes nothing to
//! disk. HEARTBEAT events are consumed here; the executor sees [`ExecutorEvent`]s.
//!
//! The JSON mapping is stout's (docs/mesos-executor-api.md): snake_case proto names, enum names as strings,
//! base64 bytes, int64 as numbers (numeric strings accepted), unknown fields ignored.
//!
//! Not covered: the protobuf encoding (JSON only), HTTPS agents, sending HEARTBEAT calls.
//!
//! ```no_run
//! use singularity_mesos::{AgentEnv, ExecutorClient, ExecutorEvent, StatusUpdate, TaskState};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let env = AgentEnv::from_env()?;
//! let (client, mut events) = ExecutorClient::start(env);
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ExecutorEvent::Launch(task) => {
//!             client
//!                 .update(StatusUpdate::new(task.task_id.clone(), TaskState::TaskRunning))
//!                 .await?;
//!         }
//!         ExecutorEvent::Shutdown { .. } => break,
//!         _ => {}
//!     }
//! }
//! client.wait_all_acknowledged(Duration::from_secs(60)).await;
//! # Ok(())
//! # }
//! ```

mod client;
pub mod env;
pub mod protocol;
pub mod recordio;
pub mod types;
pub mod wire;

pub use client::{
    CALL_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_SUBSCRIBE_RETRY, ExecutorClient, ExecutorEvent,
    InvalidUpdate, MesosError, ProtocolError, RequestError, ShutdownReason, StatusUpdate, backoff,
};
pub use env::{
    AgentAddress, AgentEnv, DurationError, EnvError, Requirement, format_mesos_duration,
    parse_mesos_duration,
};
pub use protocol::{Call, CallType, Event, EventType, Subscribed};
pub use types::{
    AgentId, AgentInfo, CommandInfo, ContainerInfo, DockerInfo, ExecutorId, ExecutorInfo,
    FrameworkId, FrameworkInfo, KillPolicy, Source, TaskId, TaskInfo, TaskState, TaskStatus,
};
pub use uuid::Uuid;
