//! The executor's connection to the agent (docs/mesos-executor-api.md: transport,
//! acknowledgements, recovery, shutdown).
//!
//! One task owns the SUBSCRIBE connection and its event stream; every other call goes over a
//! second, persistent connection shared by the [`ExecutorClient`] handles. Calls on that second
//! connection are serialised, which also keeps status updates in the order they were made.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::http::{HeaderValue, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedMutexGuard, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use uuid::Uuid;

use crate::env::{AgentAddress, AgentEnv};
use crate::protocol::{Call, Event, EventType, Subscribe, Subscribed, Update};
use crate::recordio::{Decoder, RecordIoError};
use crate::types::{KillPolicy, Source, TaskId, TaskInfo, TaskState, TaskStatus};

/// Time allowed to open a TCP or Unix connection to the agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a call's response (and for SUBSCRIBE's response head).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay between SUBSCRIBE retries when the agent gave no backoff ceiling (no checkpointing);
/// the command executor retries every second too.
pub const DEFAULT_SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);
/// Capacity of the event channel; the stream is not read while it is full.
const EVENT_CHANNEL_CAPACITY: usize = 256;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum MesosError {
    /// The agent could not be reached.
    #[error("cannot connect to the agent at {address}: {source}")]
    Connect {
        /// Where we tried.
        address: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// HTTP-level failure on an established connection.
    #[error("HTTP exchange with the agent failed: {0}")]
    Http(#[from] hyper::Error),
    /// The agent did not answer in time.
    #[error("the agent did not answer {what} within {limit:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        limit: Duration,
    },
    /// The agent refused the call (its status and message).
    #[error("the agent answered {status}: {message}")]
    Agent {
        /// HTTP status.
        status: u16,
        /// Response body.
        message: String,
    },
    /// The update would be rejected by any agent and was not sent.
    #[error("invalid status update: {0}")]
    InvalidUpdate(InvalidUpdate),
    /// A call that needs a live subscription was made without one.
    #[error("not subscribed to the agent")]
    NotSubscribed,
    /// A request could not be built (bad token characters, ...).
    #[error("cannot build the request: {0}")]
    Request(RequestError),
    /// JSON encoding or decoding failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The event stream's framing broke.
    #[error("event stream: {0}")]
    RecordIo(#[from] RecordIoError),
    /// The event stream broke the protocol.
    #[error("protocol: {0}")]
    Protocol(ProtocolError),
}

/// Why a status update was refused before it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUpdate {
    /// TASK_STAGING is the agent's state, never an executor's.
    #[error("executors may not send TASK_STAGING")]
    Staging,
}

/// Why a request to the agent could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The authentication token holds characters a header cannot.
    #[error("authentication token: {0}")]
    Token(#[source] hyper::http::header::InvalidHeaderValue),
    /// The request itself.
    #[error("{0}")]
    Build(#[source] hyper::http::Error),
}

/// How the exchange with the agent broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A call failed on a reused connection and again on a fresh one.
    #[error("call retry exhausted")]
    RetryExhausted,
}

/// Why the client asks the executor to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The agent sent SHUTDOWN.
    Agent,
    /// The connection was lost and the framework does not checkpoint (`MESOS_CHECKPOINT=0`).
    Disconnected,
    /// The connection was lost and not re-established within `MESOS_RECOVERY_TIMEOUT`.
    RecoveryTimeout,
}

/// What the executor is told, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorEvent {
    /// The first SUBSCRIBED of this process.
    Subscribed(Box<Subscribed>),
    /// Start a task. Kept as an unacknowledged task until one of its updates is acknowledged.
    Launch(Box<TaskInfo>),
    /// Start a group of tasks.
    LaunchGroup(Vec<TaskInfo>),
    /// Kill a task; `kill_policy` overrides the task's own.
    Kill {
        /// The task.
        task_id: TaskId,
        /// Policy from the KILL event, if any.
        kill_policy: Option<KillPolicy>,
    },
    /// Framework message bytes.
    Message(Vec<u8>),
    /// Kill every task, send terminal updates, exit. After [`ShutdownReason::Agent`] the
    /// connection stays up so the updates and their acknowledgements get through; after the
    /// local reasons the client has stopped.
    Shutdown {
        /// Why.
        reason: ShutdownReason,
    },
    /// An ERROR event from the agent, an undecodable event, or an unexpected SUBSCRIBE answer.
    Error(String),
    /// A live subscription was lost; the client is reconnecting (checkpointing only).
    Disconnected,
    /// Any SUBSCRIBED after the first (normally after [`ExecutorEvent::Disconnected`]).
    Reconnected,
}

/// A status update to send; the client adds uuid, source, executor id, agent id and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The task.
    pub task_id: TaskId,
    /// New state (never `TASK_STAGING`).
    pub state: TaskState,
    /// Human-readable message.
    pub message: Option<String>,
    /// Opaque data.
    pub data: Option<Vec<u8>>,
    /// `TaskStatus.Reason` name, e.g. `REASON_CONTAINER_LAUNCH_FAILED`.
    pub reason: Option<String>,
    /// Health-check result.
    pub healthy: Option<bool>,
}

impl StatusUpdate {
    /// An update with only task and state.
    pub fn new(task_id: TaskId, state: TaskState) -> Self {
        Self {
            task_id,
            state,
            message: None,
            data: None,
            reason: None,
            healthy: None,
        }
    }

    /// Sets the message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the data.
    pub fn data(mut self, data: Vec<u8>) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the health flag.
    pub fn healthy(mut self, healthy: bool) -> Self {
        self.healthy = Some(healthy);
        self
    }
}

/// Handle to the agent connection. Cheap to clone; dropping the last handle stops the
/// connection task.
#[derive(Debug, Clone)]
pub struct ExecutorClient {
    inner: Arc<Inner>,
    _task: Arc<AbortOnDrop>,
}

impl ExecutorClient {
    /// Spawns the connection task (SUBSCRIBE, stream, reconnects) and returns the handle and
    /// the events. Must be called inside a tokio runtime.
    pub fn start(env: AgentEnv) -> (ExecutorClient, mpsc::Receiver<ExecutorEvent>) {
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (unacked, _) = watch::channel(0);
        let (reconnect, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            http: Http::new(&env),
            env,
            state: Mutex::new(State {
                phase: Phase::Disconnected,
                updates: Vec::new(),
                tasks: Vec::new(),
            }),
            unacked,
            calls: Arc::new(tokio::sync::Mutex::new(None)),
            reconnect,
        });
        let task = tokio::spawn(Arc::clone(&inner).run(events_tx));
        (
            ExecutorClient {
                inner,
                _task: Arc::new(AbortOnDrop(task)),
            },
            events_rx,
        )
    }

    /// Sends a status update and returns its uuid.
    ///
    /// The update is kept (in order) until the agent ACKNOWLEDGES it. While subscribed it is
    /// sent at once; otherwise it is queued and goes out in the next SUBSCRIBE. `Ok` therefore
    /// means "accepted or queued". The agent refusing the update itself (400 and other 4xx
    /// except 403/404) is an error carrying the agent's message, and the update is dropped.
    pub async fn update(&self, update: StatusUpdate) -> Result<Uuid, MesosError> {
        if update.state == TaskState::TaskStaging {
            return Err(MesosError::InvalidUpdate(InvalidUpdate::Staging));
        }
        let uuid = Uuid::new_v4();
        let env = &self.inner.env;
        let status = TaskStatus {
            message: update.message,
            source: Some(Source::SourceExecutor),
            reason: update.reason,
            data: update.data,
            agent_id: env.agent_id.clone(),
            executor_id: Some(env.executor_id.clone()),
            timestamp: Some(now_seconds()),
            uuid: Some(uuid.as_bytes().to_vec()),
            healthy: update.healthy,
            ..TaskStatus::new(update.task_id, update.state)
        };

        // Taking the calls lock before recording the update keeps updates in order on the wire.
        let mut slot = self.inner.calls.lock().await;
        let epoch = {
            let mut state = self.inner.lock_state();
            let epoch = match state.phase {
                Phase::Subscribed(epoch) => Some(epoch),
                _ => None,
            };
            state.updates.push(Pending {
                uuid,
                status: status.clone(),
                sent_in: epoch,
            });
            self.inner.publish_count(&state);
            epoch
        };
        let Some(epoch) = epoch else {
            tracing::debug!(%uuid, state = %status.state, "not subscribed; update queued for the next SUBSCRIBE");
            return Ok(uuid);
        };
        let call = Call::update(&env.framework_id, &env.executor_id, status);
        match self.inner.http.post(&mut slot, &call).await {
            Ok((StatusCode::ACCEPTED, _)) => Ok(uuid),
            Ok((code, message)) if keeps_update(code) => {
                tracing::warn!(%uuid, %code, message, "update not accepted now; it goes out in the next SUBSCRIBE");
                Ok(uuid)
            }
            Ok((code, message)) => {
                self.inner.forget_update(uuid);
                Err(MesosError::Agent {
                    status: code.as_u16(),
                    message,
                })
            }
            Err(e) => {
                tracing::warn!(%uuid, error = %e, "update call failed; reconnecting to resend it");
                self.inner.request_reconnect(epoch);
                Ok(uuid)
            }
        }
    }

    /// Sends a framework message. Needs a live subscription (messages are best effort and are
    /// not queued).
    pub async fn message(&self, data: Vec<u8>) -> Result<(), MesosError> {
        let mut slot = self.inner.calls.lock().await;
        let Phase::Subscribed(epoch) = self.inner.lock_state().phase else {
            return Err(MesosError::NotSubscribed);
        };
        let env = &self.inner.env;
        let call = Call::message(&env.framework_id, &env.executor_id, data);
        match self.inner.http.post(&mut slot, &call).await {
            Ok((StatusCode::ACCEPTED, _)) => Ok(()),
            Ok((code, message)) => Err(MesosError::Agent {
                status: code.as_u16(),
                message,
            }),
            Err(e) => {
                self.inner.request_reconnect(epoch);
                Err(e)
            }
        }
    }

    /// Number of updates not yet acknowledged by the agent.
    pub fn unacknowledged(&self) -> usize {
        self.inner.lock_state().updates.len()
    }

    /// Waits until every update is acknowledged; false on timeout, or at once if the client
    /// has stopped with updates outstanding (they can no longer be acknowledged).
    pub async fn wait_all_acknowledged(&self, limit: Duration) -> bool {
        let mut rx = self.inner.unacked.subscribe();
        let wait = async {
            loop {
                if *rx.borrow_and_update() == 0 {
                    return true;
                }
                if matches!(self.inner.lock_state().phase, Phase::Stopped) {
                    return false;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        timeout(limit, wait).await.unwrap_or(false)
    }
}

/// Agent answers to UPDATE that say nothing against the update itself: it stays unacknowledged
/// and is resent in the next SUBSCRIBE (403 "Executor is not subscribed" after an agent restart,
/// 404 before routes exist, 5xx while recovering).
fn keeps_update(code: StatusCode) -> bool {
    code == StatusCode::FORBIDDEN || code == StatusCode::NOT_FOUND || code.is_server_error()
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A uniformly random wait in `[0, max)`, as the reference library backs off.
pub fn backoff(max: Duration) -> Duration {
    max.mul_f64(fastrand::f64())
}

#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    /// A SUBSCRIBE of this connection epoch is in flight.
    Subscribing(u64),
    /// SUBSCRIBED received on this epoch's stream.
    Subscribed(u64),
    /// Gave up (local shutdown); nothing more will be sent.
    Stopped,
}

#[derive(Debug)]
struct Pending {
    uuid: Uuid,
    status: TaskStatus,
    /// The epoch in which it was handed to the agent (UPDATE call or SUBSCRIBE body).
    sent_in: Option<u64>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Unacknowledged updates, oldest first.
    updates: Vec<Pending>,
    /// Launched tasks none of whose updates has been acknowledged yet.
    tasks: Vec<TaskInfo>,
}

#[derive(Debug)]
struct Inner {
    env: AgentEnv,
    http: Http,
    state: Mutex<State>,
    /// Unacknowledged update count, for waiters.
    unacked: watch::Sender<usize>,
    /// The calls connection; its lock also orders calls.
    calls: Arc<tokio::sync::Mutex<Option<Conn>>>,
    /// Epoch whose subscription must be dropped because a call on it failed.
    reconnect: watch::Sender<u64>,
}

enum Outcome {
    /// The event receiver is gone: stop quietly.
    ReceiverGone,
    /// MESOS_RECOVERY_TIMEOUT passed without a new subscription.
    RecoveryTimeout,
    /// SUBSCRIBE answered with something other than 200.
    Rejected { status: StatusCode, message: String },
    /// Connection failed, EOF, or a broken stream.
    Lost {
        reason: LostReason,
        was_subscribed: bool,
    },
}

/// Why a subscription (or an attempt at one) ended.
#[derive(Debug, thiserror::Error)]
enum LostReason {
    /// SUBSCRIBE could not be sent or got no answer.
    #[error("{0}")]
    Subscribe(#[source] MesosError),
    /// A call on this subscription's epoch failed.
    #[error("a call to the agent failed")]
    CallFailed,
    /// The stream ended between records.
    #[error("the agent closed the event stream")]
    Closed,
    /// The stream ended inside a record.
    #[error("the event stream ended inside a record")]
    EndedInsideRecord,
    /// Reading the stream failed.
    #[error("event stream failed: {0}")]
    Stream(#[source] hyper::Error),
    /// The stream's framing broke.
    #[error("event stream framing: {0}")]
    Framing(#[source] RecordIoError),
    /// The first event could not be decoded.
    #[error("undecodable first event: {0}")]
    UndecodableFirst(#[source] serde_json::Error),
    /// The first event was not SUBSCRIBED.
    #[error("first event was {0:?}, expected SUBSCRIBED")]
    NotSubscribedFirst(EventType),
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (plain pushes and removes).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish_count(&self, state: &State) {
        self.unacked.send_replace(state.updates.len());
    }

    fn forget_update(&self, uuid: Uuid) {
        let mut state = self.lock_state();
        state.updates.retain(|p| p.uuid != uuid);
        self.publish_count(&state);
    }

    fn request_reconnect(&self, epoch: u64) {
        self.reconnect.send_replace(epoch);
    }

    async fn run(self: Arc<Self>, events: mpsc::Sender<ExecutorEvent>) {
        let mut recovery: Option<Instant> = None;
        let mut ever_subscribed = false;
        let mut epoch = 0;
        loop {
            epoch += 1;
            let outcome = self
                .attempt(epoch, &events, &mut recovery, &mut ever_subscribed)
                .await;
            {
                let mut state = self.lock_state();
                state.phase = Phase::Disconnected;
            }
            let local_shutdown = match outcome {
                Outcome::ReceiverGone => {
                    self.stop();
                    return;
                }
                Outcome::RecoveryTimeout => Some(ShutdownReason::RecoveryTimeout),
                Outcome::Rejected { status, message } => {
                    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::NOT_FOUND
                    {
                        tracing::info!(%status, message, "SUBSCRIBE not possible yet; retrying");
                    } else {
                        tracing::error!(%status, message, "SUBSCRIBE refused; retrying");
                        let text = format!("SUBSCRIBE refused with {status}: {message}");
                        if events.send(ExecutorEvent::Error(text)).await.is_err() {
                            self.stop();
                            return;
                        }
                    }
                    None
                }
                Outcome::Lost {
                    reason,
                    was_subscribed,
                } => {
                    if !self.env.checkpoint {
                        tracing::warn!(
                            %reason,
                            "disconnected from the agent without checkpointing; shutting down"
                        );
                        Some(ShutdownReason::Disconnected)
                    } else {
                        tracing::warn!(%reason, "disconnected from the agent; reconnecting");
                        if recovery.is_none() {
                            let limit = self.env.recovery_timeout.unwrap_or_default();
                            recovery = Some(Instant::now() + limit);
                        }
                        if was_subscribed && events.send(ExecutorEvent::Disconnected).await.is_err()
                        {
                            self.stop();
                            return;
                        }
                        None
                    }
                }
            };
            let reason = match local_shutdown {
                Some(reason) => reason,
                None => {
                    let max = self
                        .env
                        .subscription_backoff_max
                        .unwrap_or(DEFAULT_SUBSCRIBE_RETRY);
                    let wake = Instant::now() + backoff(max);
                    match recovery {
                        Some(deadline) if deadline <= wake => {
                            sleep_until(deadline).await;
                            ShutdownReason::RecoveryTimeout
                        }
                        _ => {
                            sleep_until(wake).await;
                            continue;
                        }
                    }
                }
            };
            if reason == ShutdownReason::RecoveryTimeout {
                tracing::error!(
                    timeout = ?self.env.recovery_timeout,
                    "no new subscription within the recovery timeout; shutting down"
                );
            }
            self.stop();
            let _ = events.send(ExecutorEvent::Shutdown { reason }).await;
            return;
        }
    }

    fn stop(&self) {
        let mut state = self.lock_state();
        state.phase = Phase::Stopped;
        // Wake waiters so they notice.
        self.publish_count(&state);
    }

    /// One SUBSCRIBE and, if accepted, its stream until it ends.
    async fn attempt(
        self: &Arc<Self>,
        epoch: u64,
        events: &mpsc::Sender<ExecutorEvent>,
        recovery: &mut Option<Instant>,
        ever_subscribed: &mut bool,
    ) -> Outcome {
        let call = {
            let mut state = self.lock_state();
            state.phase = Phase::Subscribing(epoch);
            let mut subscribe = Subscribe {
                unacknowledged_tasks: state.tasks.clone(),
                unacknowledged_updates: Vec::with_capacity(state.updates.len()),
            };
            for pending in &mut state.updates {
                pending.sent_in = Some(epoch);
                subscribe.unacknowledged_updates.push(Update {
                    status: pending.status.clone(),
                });
            }
            Call::subscribe(&self.env.framework_id, &self.env.executor_id, subscribe)
        };
        let mut reconnect_rx = self.reconnect.subscribe();

        let open = async {
            let mut conn = self.http.connect().await?;
            let request = self.http.request(&call)?;
            conn.sender.ready().await?;
            let response = timeout(CALL_TIMEOUT, conn.sender.send_request(request))
                .await
                .map_err(|_| MesosError::Timeout {
                    what: "SUBSCRIBE",
                    limit: CALL_TIMEOUT,
                })??;
            Ok::<_, MesosError>((conn, response))
        };
        let opened = tokio::select! {
            opened = open => opened,
            () = sleep_until_opt(*recovery) => return Outcome::RecoveryTimeout,
        };
        // `_conn` drives the connection; it must live as long as the stream is read.
        let (_conn, response) = match opened {
            Ok(v) => v,
            Err(e) => {
                return Outcome::Lost {
                    reason: LostReason::Subscribe(e),
                    was_subscribed: false,
                };
            }
        };
        if response.status() != StatusCode::OK {
            let status = response.status();
            let message = read_text(response.into_body()).await;
            return Outcome::Rejected { status, message };
        }
        tracing::debug!(epoch, "SUBSCRIBE accepted; reading the event stream");

        let mut body = response.into_body();
        let mut decoder = Decoder::new();
        let mut subscribed = false;
        let lost = |reason: LostReason, subscribed: bool| Outcome::Lost {
            reason,
            was_subscribed: subscribed,
        };
        loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = sleep_until_opt(*recovery) => return Outcome::RecoveryTimeout,
                changed = reconnect_rx.changed() => {
                    if changed.is_ok() && *reconnect_rx.borrow_and_update() == epoch {
                        return lost(LostReason::CallFailed, subscribed);
                    }
                    continue;
                }
            };
            let data = match frame {
                None => {
                    let reason = if decoder.is_idle() {
                        LostReason::Closed
                    } else {
                        LostReason::EndedInsideRecord
                    };
                    return lost(reason, subscribed);
                }
                Some(Err(e)) => return lost(LostReason::Stream(e), subscribed),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            let records = match decoder.feed(&data) {
                Ok(records) => records,
                Err(e) => return lost(LostReason::Framing(e), subscribed),
            };
            for record in records {
                if record.is_empty() {
                    continue;
                }
                let event: Event = match serde_json::from_slice(&record) {
                    Ok(event) => event,
                    Err(e) if subscribed => {
                        let text = format!("failed to decode an event: {e}");
                        tracing::error!(error = %e, "undecodable event");
                        if events.send(ExecutorEvent::Error(text)).await.is_err() {
                            return Outcome::ReceiverGone;
                        }
                        continue;
                    }
                    Err(e) => return lost(LostReason::UndecodableFirst(e), false),
                };
                if !subscribed {
                    let Some(info) = event
                        .subscribed
                        .filter(|_| event.kind == EventType::Subscribed)
                    else {
                        return lost(LostReason::NotSubscribedFirst(event.kind), false);
                    };
                    subscribed = true;
                    *recovery = None;
                    self.on_subscribed(epoch, events.clone()).await;
                    tracing::info!(epoch, "subscribed to the agent");
                    let event = if *ever_subscribed {
                        ExecutorEvent::Reconnected
                    } else {
                        ExecutorEvent::Subscribed(info)
                    };
                    *ever_subscribed = true;
                    if events.send(event).await.is_err() {
                        return Outcome::ReceiverGone;
                    }
                    continue;
                }
                if let Some(event) = self.dispatch(event)
                    && events.send(event).await.is_err()
                {
                    return Outcome::ReceiverGone;
                }
            }
        }
    }

    /// Marks the epoch subscribed and sends, in order, the updates made after the SUBSCRIBE
    /// body was built (they were in neither it nor an UPDATE call). The sending runs in its own
    /// task holding the calls lock, so newer updates queue behind it and the stream keeps
    /// being read.
    async fn on_subscribed(self: &Arc<Self>, epoch: u64, events: mpsc::Sender<ExecutorEvent>) {
        let slot = Arc::clone(&self.calls).lock_owned().await;
        let pending: Vec<(Uuid, TaskStatus)> = {
            let mut state = self.lock_state();
            state.phase = Phase::Subscribed(epoch);
            state
                .updates
                .iter_mut()
                .filter(|p| p.sent_in != Some(epoch))
                .map(|p| {
                    p.sent_in = Some(epoch);
                    (p.uuid, p.status.clone())
                })
                .collect()
        };
        if !pending.is_empty() {
            tokio::spawn(Arc::clone(self).flush(slot, epoch, pending, events));
        }
    }

    async fn flush(
        self: Arc<Self>,
        mut slot: OwnedMutexGuard<Option<Conn>>,
        epoch: u64,
        pending: Vec<(Uuid, TaskStatus)>,
        events: mpsc::Sender<ExecutorEvent>,
    ) {
        for (uuid, status) in pending {
            let call = Call::update(&self.env.framework_id, &self.env.executor_id, status);
            match self.http.post(&mut slot, &call).await {
                Ok((StatusCode::ACCEPTED, _)) => {}
                Ok((code, message)) if keeps_update(code) => {
                    tracing::warn!(%uuid, %code, message, "queued update not accepted now; it goes out in the next SUBSCRIBE");
                }
                Ok((code, message)) => {
                    self.forget_update(uuid);
                    let text = format!("queued update {uuid} refused with {code}: {message}");
                    tracing::error!("{text}");
                    let _ = events.send(ExecutorEvent::Error(text)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "queued update call failed; reconnecting");
                    self.request_reconnect(epoch);
                    return;
                }
            }
        }
    }

    /// Bookkeeping for an event from the stream; returns what the executor should see.
    fn dispatch(&self, event: Event) -> Option<ExecutorEvent> {
        let missing = |field: &str| {
            let text = format!("{:?} event without '{field}'", event.kind);
            tracing::error!("{text}");
            Some(ExecutorEvent::Error(text))
        };
        match event.kind {
            EventType::Subscribed => {
                tracing::warn!("ignoring a second SUBSCRIBED on the same stream");
                None
            }
            EventType::Launch => match event.launch {
                Some(launch) => {
                    self.remember_tasks(std::slice::from_ref(&launch.task));
                    Some(ExecutorEvent::Launch(Box::new(launch.task)))
                }
                None => missing("launch"),
            },
            EventType::LaunchGroup => match event.launch_group {
                Some(group) => {
                    self.remember_tasks(&group.task_group.tasks);
                    Some(ExecutorEvent::LaunchGroup(group.task_group.tasks))
                }
                None => missing("launch_group"),
            },
            EventType::Kill => match event.kill {
                Some(kill) => Some(ExecutorEvent::Kill {
                    task_id: kill.task_id,
                    kill_policy: kill.kill_policy,
                }),
                None => missing("kill"),
            },
            EventType::Acknowledged => match event.acknowledged {
                Some(ack) => {
                    self.acknowledge(&ack.task_id, &ack.uuid);
                    None
                }
                None => missing("acknowledged"),
            },
            EventType::Message => match event.message {
                Some(message) => Some(ExecutorEvent::Message(message.data)),
                None => missing("message"),
            },
            EventType::Error => Some(ExecutorEvent::Error(
                event
                    .error
                    .map(|e| e.message)
                    .unwrap_or_else(|| "ERROR event without a message".into()),
            )),
            EventType::Shutdown => Some(ExecutorEvent::Shutdown {
                reason: ShutdownReason::Agent,
            }),
            EventType::Heartbeat => {
                tracing::trace!("heartbeat");
                None
            }
            EventType::Unknown => {
                tracing::warn!("ignoring an event of unknown type");
                None
            }
        }
    }

    fn remember_tasks(&self, tasks: &[TaskInfo]) {
        let mut state = self.lock_state();
        for task in tasks {
            if !state.tasks.iter().any(|t| t.task_id == task.task_id) {
                state.tasks.push(task.clone());
            }
        }
    }

    fn acknowledge(&self, task_id: &TaskId, uuid: &[u8]) {
        let mut state = self.lock_state();
        let before = state.updates.len();
        state
            .updates
            .retain(|p| p.uuid.as_bytes().as_slice() != uuid);
        if state.updates.len() == before {
            tracing::warn!(task_id = %task_id, "acknowledgement for an unknown update");
        } else {
            state.tasks.retain(|t| &t.task_id != task_id);
            tracing::debug!(task_id = %task_id, "update acknowledged");
        }
        self.publish_count(&state);
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn read_text(body: hyper::body::Incoming) -> String {
    match timeout(CALL_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        _ => String::new(),
    }
}

/// One HTTP/1.1 connection and the task driving it (aborted with it).
#[derive(Debug)]
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    _driver: AbortOnDrop,
}

/// How to reach the agent and what every request carries.
#[derive(Debug, Clone)]
struct Http {
    address: AgentAddress,
    path: String,
    host: String,
    token: Option<String>,
}

impl Http {
    fn new(env: &AgentEnv) -> Self {
        let host = match env.address() {
            AgentAddress::Tcp(endpoint) => endpoint,
            AgentAddress::Unix(_) => "localhost".to_owned(),
        };
        Self {
            address: env.address(),
            path: env.api_path(),
            host,
            token: env.authentication_token.clone(),
        }
    }

    async fn connect(&self) -> Result<Conn, MesosError> {
        let described = || match &self.address {
            AgentAddress::Tcp(endpoint) => endpoint.clone(),
            AgentAddress::Unix(path) => format!("unix:{}", path.display()),
        };
        let connect = async {
            match &self.address {
                AgentAddress::Tcp(endpoint) => {
                    let stream = tokio::net::TcpStream::connect(endpoint).await?;
                    stream.set_nodelay(true)?;
                    Ok(handshake(stream).await)
                }
                AgentAddress::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok(handshake(stream).await)
                }
            }
        };
        match timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(source)) => Err(MesosError::Connect {
                address: described(),
                source,
            }),
            Err(_) => Err(MesosError::Timeout {
                what: "the connection",
                limit: CONNECT_TIMEOUT,
            }),
        }
    }

    fn request(&self, call: &Call) -> Result<Request<Full<Bytes>>, MesosError> {
        let body = serde_json::to_vec(call)?;
        let mut builder = Request::post(self.path.as_str())
            .header(header::HOST, self.host.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| MesosError::Request(RequestError::Token(e)))?;
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| MesosError::Request(RequestError::Build(e)))
    }

    /// POSTs a non-SUBSCRIBE call on the calls connection, opening it as needed. A request that
    /// fails on a reused connection (the agent may have closed it while idle) is retried once
    /// on a fresh one; duplicates are harmless since the agent ignores repeated uuids.
    async fn post(
        &self,
        slot: &mut Option<Conn>,
        call: &Call,
    ) -> Result<(StatusCode, String), MesosError> {
        for attempt in 0..2 {
            let reused = slot.as_ref().is_some_and(|c| !c.sender.is_closed());
            if !reused {
                *slot = Some(self.connect().await?);
            }
            let Some(conn) = slot.as_mut() else {
                continue;
            };
            let request = self.request(call)?;
            let exchange = async {
                conn.sender.ready().await?;
                let response = conn.sender.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
            };
            match timeout(CALL_TIMEOUT, exchange).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => {
                    *slot = None;
                    if !(reused && attempt == 0) {
                        return Err(e.into());
                    }
                    tracing::debug!(error = %e, "call failed on a reused connection; retrying");
                }
                Err(_) => {
                    *slot = None;
                    return Err(MesosError::Timeout {
                        what: "a call",
                        limit: CALL_TIMEOUT,
                    });
                }
            }
        }
        Err(MesosError::Protocol(ProtocolError::RetryExhausted))
    }
}

async fn handshake<I>(io: I) -> Result<Conn, MesosError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "agent connection ended");
        }
    });
    Ok(Conn {
        sender,
        _driver: AbortOnDrop(driver),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_ceiling_and_varies() {
        let max = Duration::from_millis(250);
        let samples: Vec<Duration> = (0..2000).map(|_| backoff(max)).collect();
        assert!(samples.iter().all(|d| *d <= max));
        let low = samples.iter().filter(|d| **d < max / 4).count();
        let high = samples.iter().filter(|d| **d > max * 3 / 4).count();
        assert!(
            low > 100 && high > 100,
            "not spread: {low} low, {high} high"
        );
    }

    #[test]
    fn refusals_that_keep_the_update() {
        assert!(keeps_update(StatusCode::FORBIDDEN));
        assert!(keeps_update(StatusCode::SERVICE_UNAVAILABLE));
        assert!(keeps_update(StatusCode::NOT_FOUND));
        assert!(!keeps_update(StatusCode::BAD_REQUEST));
        assert!(!keeps_update(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
}
