//! A strict fake of the Mesos agent's executor endpoint, for tests of executors (docs/mesos-executor-api.md, "The fake agent").
//!
//! It is an HTTP/1.1 server on `127.0.0.1:<ephemeral port>` (and optionally a Unix socket)
//! answering `POST /api/v1/executor` and `POST /slave(1)/api/v1/executor` the way the agent's
//! `Http::executor` does, in the same order of checks:
//!
//! | check | answer |
//! | --- | --- |
//! | bearer token configured and `Authorization` missing or wrong | 401 |
//! | other path | 404 (TCP) / 403 (Unix socket: only `/slave(1)/api/v1/executor`) |
//! | not POST | 405, `Allow: POST` |
//! | no `Content-Type` | 400 `Expecting 'Content-Type' to be present` |
//! | `Content-Type` not exactly `application/json` | 415 (protobuf too: this fake speaks JSON only) |
//! | body not JSON / not a Call | 400 |
//! | `validateExecutorCall` (type, sub-message, uuid 16 bytes of a known version, executor id match, `SOURCE_EXECUTOR`, not `TASK_STAGING`) | 400 |
//! | SUBSCRIBE whose `Accept` does not allow JSON | 406 |
//! | HEARTBEAT | 202, before the id checks |
//! | unknown framework / executor id | 400 |
//! | non-SUBSCRIBE before a SUBSCRIBE (or after [`FakeAgent::restart`]) | 403 `Executor is not subscribed` |
//! | type `UNKNOWN` | 501 |
//!
//! Stricter than the agent (so tests catch sloppy executors): the updates inside a SUBSCRIBE's
//! `unacknowledged_updates` must pass the UPDATE rules too, and a `Mesos-Stream-Id` header is
//! recorded in [`RequestRecord`] for tests to assert its absence.
//!
//! SUBSCRIBE answers `200` with a chunked `application/json` RecordIO stream: SUBSCRIBED first,
//! then ACKNOWLEDGED for re-sent updates (when acking automatically), then the events the test
//! pushes. A new SUBSCRIBE ends the previous stream. Every rejected request is kept in
//! [`FakeAgent::rejections`]; a test should end by asserting it is empty.
//!
//! ```no_run
//! # async fn t() {
//! use singularity_fake_agent::FakeAgent;
//! use singularity_mesos::TaskState;
//! use std::time::Duration;
//!
//! let agent = FakeAgent::start("framework-1", "executor-1").await;
//! let sandbox = tempfile::tempdir().unwrap();
//! let env = agent.env_for_executor(sandbox.path(), true); // give these to the executor
//! # let _ = env;
//! agent.launch(agent.task("task-1"));
//! let finished = agent
//!     .wait_for_update(|s| s.state == TaskState::TaskFinished, Duration::from_secs(10))
//!     .await;
//! assert!(finished.is_some());
//! assert!(agent.rejections().is_empty());
//! # }
//! ```

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use singularity_mesos::env as vars;
use singularity_mesos::protocol::{CallMessage, Subscribe, Subscribed, Update};
use singularity_mesos::recordio;
use singularity_mesos::types::{
    AgentInfo, CommandInfo, ContainerId, ExecutorInfo, FrameworkInfo, Resource, Source,
};
use singularity_mesos::{
    AgentEnv, AgentId, Call, CallType, Event, ExecutorId, FrameworkId, KillPolicy, TaskId,
    TaskInfo, TaskState, TaskStatus, format_mesos_duration,
};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
const API_PATH: &str = "/api/v1/executor";
const PID_API_PATH: &str = "/slave(1)/api/v1/executor";

type Body = BoxBody<Bytes, Infallible>;

/// One request as the fake saw it, whatever the answer.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When it arrived.
    pub at: Instant,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Call type, when the body got that far.
    pub call_type: Option<CallType>,
    /// Status answered.
    pub status: u16,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Accept` header.
    pub accept: Option<String>,
    /// `Mesos-Stream-Id` header (an executor must never send it).
    pub stream_id: Option<String>,
    /// Arrived over the Unix socket.
    pub via_unix_socket: bool,
}

/// A request the fake refused, and why (the response body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Status answered.
    pub status: u16,
    /// The message in the response body.
    pub reason: String,
    /// Request path.
    pub path: String,
    /// Call type, when the body got that far.
    pub call_type: Option<CallType>,
}

/// Settings for [`FakeAgent::builder`].
#[derive(Debug, Clone)]
pub struct FakeAgentBuilder {
    framework_id: String,
    executor_id: String,
    token: Option<String>,
    domain_socket: Option<PathBuf>,
    recovery_timeout: Duration,
    backoff_max: Duration,
    shutdown_grace: Duration,
}

impl FakeAgentBuilder {
    /// Require `Authorization: Bearer <token>` on every request, and hand the token to the
    /// executor in its environment.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Also listen on this Unix socket, and point `MESOS_DOMAIN_SOCKET` at it.
    pub fn domain_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.domain_socket = Some(path.into());
        self
    }

    /// `MESOS_RECOVERY_TIMEOUT` in the executor environment (default 5 s).
    pub fn recovery_timeout(mut self, d: Duration) -> Self {
        self.recovery_timeout = d;
        self
    }

    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX` in the executor environment (default 250 ms).
    pub fn backoff_max(mut self, d: Duration) -> Self {
        self.backoff_max = d;
        self
    }

    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD` in the executor environment (default 5 s).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }

    /// Binds and starts serving. Panics if nothing can be bound (test helper).
    pub async fn start(self) -> FakeAgent {
        let shared = Arc::new(Shared {
            framework_id: FrameworkId::new(self.framework_id),
            executor_id: ExecutorId::new(self.executor_id),
            agent_id: AgentId::new(format!("fake-agent-{}-S0", uuid::Uuid::new_v4())),
            container_id: uuid::Uuid::new_v4().to_string(),
            token: self.token,
            state: Mutex::new(State {
                auto_ack: true,
                ..State::default()
            }),
            changed: watch::channel(0).0,
        });
        let tcp = bind_tcp(0).await.expect("fake agent: bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("fake agent: local address").port();
        let agent = FakeAgent {
            shared,
            port,
            domain_socket: self.domain_socket,
            recovery_timeout: self.recovery_timeout,
            backoff_max: self.backoff_max,
            shutdown_grace: self.shutdown_grace,
            servers: Mutex::new(Vec::new()),
        };
        agent.serve(tcp);
        agent
    }
}

/// The fake agent. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeAgent {
    shared: Arc<Shared>,
    port: u16,
    domain_socket: Option<PathBuf>,
    recovery_timeout: Duration,
    backoff_max: Duration,
    shutdown_grace: Duration,
    servers: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        for server in lock(&self.servers).drain(..) {
            server.abort();
        }
    }
}

#[derive(Debug)]
struct Shared {
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    agent_id: AgentId,
    container_id: String,
    token: Option<String>,
    state: Mutex<State>,
    /// Bumped on every change, for waiters.
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// The executor has subscribed since the (re)start: RUNNING rather than REGISTERING.
    registered: bool,
    stream: Option<mpsc::UnboundedSender<Bytes>>,
    /// Events pushed while no stream was open; sent after the next SUBSCRIBED.
    backlog: Vec<Event>,
    auto_ack: bool,
    updates: Vec<TaskStatus>,
    seen_uuids: HashSet<Vec<u8>>,
    acked_uuids: HashSet<Vec<u8>>,
    subscribes: Vec<Call>,
    messages: Vec<Vec<u8>>,
    requests: Vec<RequestRecord>,
    rejections: Vec<Rejection>,
    faults: VecDeque<(CallType, StatusCode)>,
}

impl State {
    fn send_event(&mut self, event: &Event) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        let json = serde_json::to_vec(event).expect("events serialize");
        stream.send(Bytes::from(recordio::encode(&json))).is_ok()
    }

    /// Records an update once per uuid (the agent's update manager ignores duplicates).
    fn record_update(&mut self, status: &TaskStatus) {
        let uuid = status.uuid.clone().unwrap_or_default();
        if self.seen_uuids.insert(uuid) {
            self.updates.push(status.clone());
        }
    }

    fn ack(&mut self, task_id: &TaskId, uuid: &[u8]) -> bool {
        let sent = self.send_event(&Event::acknowledged(task_id.clone(), uuid.to_vec()));
        if sent {
            self.acked_uuids.insert(uuid.to_vec());
        }
        sent
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn bind_tcp(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // Lets restart() take the same port while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(128)
}

impl FakeAgent {
    /// Starts a fake agent for one executor of one framework, with default settings.
    pub async fn start(framework_id: &str, executor_id: &str) -> FakeAgent {
        Self::builder(framework_id, executor_id).start().await
    }

    /// A builder for a fake agent with a token, a Unix socket or other durations.
    pub fn builder(framework_id: &str, executor_id: &str) -> FakeAgentBuilder {
        FakeAgentBuilder {
            framework_id: framework_id.to_owned(),
            executor_id: executor_id.to_owned(),
            token: None,
            domain_socket: None,
            recovery_timeout: Duration::from_secs(5),
            backoff_max: Duration::from_millis(250),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    fn serve(&self, tcp: tokio::net::TcpListener) {
        let mut servers = lock(&self.servers);
        let shared = Arc::clone(&self.shared);
        servers.push(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(Arc::clone(&shared), stream, false));
                while connections.try_join_next().is_some() {}
            }
        }));
        if let Some(path) = &self.domain_socket {
            let _ = std::fs::remove_file(path);
            let unix = tokio::net::UnixListener::bind(path).expect("fake agent: bind Unix socket");
            let shared = Arc::clone(&self.shared);
            servers.push(tokio::spawn(async move {
                let mut connections = JoinSet::new();
                loop {
                    let Ok((stream, _)) = unix.accept().await else {
                        continue;
                    };
                    connections.spawn(serve_connection(Arc::clone(&shared), stream, true));
                    while connections.try_join_next().is_some() {}
                }
            }));
        }
    }

    /// `127.0.0.1:<port>`, as in `MESOS_AGENT_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port (the same across [`FakeAgent::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>/api/v1/executor`.
    pub fn url(&self) -> String {
        format!("http://{}{API_PATH}", self.endpoint())
    }

    /// The framework id it accepts.
    pub fn framework_id(&self) -> &FrameworkId {
        &self.shared.framework_id
    }

    /// The executor id it accepts.
    pub fn executor_id(&self) -> &ExecutorId {
        &self.shared.executor_id
    }

    /// Its agent id.
    pub fn agent_id(&self) -> &AgentId {
        &self.shared.agent_id
    }

    /// The environment the agent would give the executor (docs/mesos-executor-api.md, "Environment"), pointing at this fake.
    /// `MESOS_RECOVERY_TIMEOUT` and `MESOS_SUBSCRIPTION_BACKOFF_MAX` only with checkpointing,
    /// as the agent does.
    pub fn env_for_executor(&self, sandbox: &Path, checkpoint: bool) -> Vec<(String, String)> {
        let sandbox = sandbox.display().to_string();
        let mut env = vec![
            (
                vars::MESOS_FRAMEWORK_ID,
                self.shared.framework_id.value.clone(),
            ),
            (
                vars::MESOS_EXECUTOR_ID,
                self.shared.executor_id.value.clone(),
            ),
            (vars::MESOS_AGENT_ENDPOINT, self.endpoint()),
            (
                vars::MESOS_SLAVE_PID,
                format!("slave(1)@{}", self.endpoint()),
            ),
            (vars::MESOS_SLAVE_ID, self.shared.agent_id.value.clone()),
            (vars::MESOS_DIRECTORY, sandbox.clone()),
            (vars::MESOS_SANDBOX, sandbox),
            (
                vars::MESOS_CHECKPOINT,
                if checkpoint { "1" } else { "0" }.to_owned(),
            ),
            ("MESOS_HTTP_COMMAND_EXECUTOR", "0".to_owned()),
            (
                vars::MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD,
                format_mesos_duration(self.shutdown_grace),
            ),
        ];
        if checkpoint {
            env.push((
                vars::MESOS_RECOVERY_TIMEOUT,
                format_mesos_duration(self.recovery_timeout),
            ));
            env.push((
                vars::MESOS_SUBSCRIPTION_BACKOFF_MAX,
                format_mesos_duration(self.backoff_max),
            ));
        }
        if let Some(token) = &self.shared.token {
            env.push((vars::MESOS_EXECUTOR_AUTHENTICATION_TOKEN, token.clone()));
        }
        if let Some(path) = &self.domain_socket {
            env.push((vars::MESOS_DOMAIN_SOCKET, path.display().to_string()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// [`FakeAgent::env_for_executor`] parsed, for in-process clients.
    pub fn agent_env(&self, sandbox: &Path, checkpoint: bool) -> AgentEnv {
        AgentEnv::from_vars(self.env_for_executor(sandbox, checkpoint))
            .expect("the fake's environment parses")
    }

    /// A minimal valid TaskInfo for this agent and executor.
    pub fn task(&self, task_id: &str) -> TaskInfo {
        let mut executor = ExecutorInfo::new(self.shared.executor_id.clone());
        executor.framework_id = Some(self.shared.framework_id.clone());
        TaskInfo {
            executor: Some(executor),
            resources: vec![Resource::scalar("cpus", 0.1), Resource::scalar("mem", 64.0)],
            ..TaskInfo::new(task_id, TaskId::new(task_id), self.shared.agent_id.clone())
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    fn bump(&self) {
        self.shared.changed.send_modify(|n| *n += 1);
    }

    /// Sends an event on the open stream, or keeps it for the next SUBSCRIBED.
    pub fn push(&self, event: Event) {
        let mut state = self.state();
        if !state.send_event(&event) {
            state.backlog.push(event);
        }
    }

    /// Pushes LAUNCH.
    pub fn launch(&self, task: TaskInfo) {
        self.push(Event::launch(task));
    }

    /// Pushes KILL.
    pub fn kill(&self, task_id: &str, policy: Option<KillPolicy>) {
        self.push(Event::kill(TaskId::new(task_id), policy));
    }

    /// Pushes SHUTDOWN.
    pub fn shutdown(&self) {
        self.push(Event::shutdown());
    }

    /// Pushes MESSAGE.
    pub fn message(&self, data: impl Into<Vec<u8>>) {
        self.push(Event::message(data.into()));
    }

    /// Pushes HEARTBEAT.
    pub fn heartbeat(&self) {
        self.push(Event::heartbeat());
    }

    /// Writes raw bytes on the open stream (malformed-stream tests); false without a stream.
    pub fn push_raw(&self, bytes: impl Into<Bytes>) -> bool {
        let state = self.state();
        state
            .stream
            .as_ref()
            .is_some_and(|s| s.send(bytes.into()).is_ok())
    }

    /// Whether each accepted update is acknowledged right away (default) or held until
    /// [`FakeAgent::ack`]. The ACKNOWLEDGED is queued on the stream as the 202 is answered, so
    /// either may reach the executor first, as with the real agent. With no stream open the
    /// acknowledgement is lost and the executor must re-send the update in its next SUBSCRIBE.
    pub fn auto_ack(&self, on: bool) {
        self.state().auto_ack = on;
    }

    /// Acknowledges a received update on the open stream; false if unknown or no stream.
    pub fn ack(&self, uuid: &[u8]) -> bool {
        let mut state = self.state();
        let Some(task_id) = state
            .updates
            .iter()
            .find(|s| s.uuid.as_deref() == Some(uuid))
            .map(|s| s.task_id.clone())
        else {
            return false;
        };
        state.ack(&task_id, uuid)
    }

    /// Acknowledges every received update not acknowledged yet; returns how many.
    pub fn ack_all(&self) -> usize {
        let mut state = self.state();
        let pending: Vec<(TaskId, Vec<u8>)> = state
            .updates
            .iter()
            .filter_map(|s| Some((s.task_id.clone(), s.uuid.clone()?)))
            .filter(|(_, uuid)| !state.acked_uuids.contains(uuid))
            .collect();
        pending
            .iter()
            .filter(|(task_id, uuid)| state.ack(task_id, uuid))
            .count()
    }

    /// Every distinct update received (UPDATE calls and SUBSCRIBE re-sends), in order.
    pub fn updates(&self) -> Vec<TaskStatus> {
        self.state().updates.clone()
    }

    /// Every accepted SUBSCRIBE call, in order.
    pub fn subscribes(&self) -> Vec<Call> {
        self.state().subscribes.clone()
    }

    /// Data of every accepted MESSAGE call.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.state().messages.clone()
    }

    /// Every request, accepted or not.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// Every refused request with the reason. Injected faults are not included.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.state().rejections.clone()
    }

    /// Whether a subscription stream is open and its reader still there.
    pub fn connected(&self) -> bool {
        self.state().stream.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Answers the next call of this type with `status` (after validation, before the id
    /// checks), e.g. 503 on the next SUBSCRIBE. Queue several by calling again.
    pub fn respond_with(&self, kind: CallType, status: u16) {
        let status = StatusCode::from_u16(status).expect("a valid HTTP status");
        self.state().faults.push_back((kind, status));
    }

    /// Ends the subscription stream cleanly (the executor sees EOF), like the agent closing
    /// the connection. Later pushes wait for the next SUBSCRIBE.
    pub fn drop_connection(&self) {
        self.state().stream = None;
        self.bump();
    }

    /// Stops listening and cuts every connection, as an agent crash would.
    pub async fn stop(&self) {
        let servers: Vec<JoinHandle<()>> = lock(&self.servers).drain(..).collect();
        for server in servers {
            server.abort();
            let _ = server.await;
        }
        let mut state = self.state();
        state.stream = None;
        state.registered = false;
        drop(state);
        self.bump();
    }

    /// Listens again on the same port (and socket), like a restarted agent recovering the
    /// executor: it must SUBSCRIBE again before other calls are accepted.
    pub async fn restart(&self) {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let tcp = loop {
            match bind_tcp(self.port).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "port still busy; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("fake agent: rebind port {}: {e}", self.port),
            }
        };
        self.serve(tcp);
    }

    async fn wait(&self, limit: Duration, mut done: impl FnMut(&State) -> bool) -> bool {
        let mut rx = self.shared.changed.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if done(&self.state()) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }

    /// The first received update matching `predicate`, waiting up to `limit` for it.
    pub async fn wait_for_update(
        &self,
        predicate: impl Fn(&TaskStatus) -> bool,
        limit: Duration,
    ) -> Option<TaskStatus> {
        let mut found = None;
        self.wait(limit, |state| {
            found = state.updates.iter().find(|s| predicate(s)).cloned();
            found.is_some()
        })
        .await;
        found
    }

    /// Waits until `count` SUBSCRIBE calls have been accepted.
    pub async fn wait_for_subscribes(&self, count: usize, limit: Duration) -> bool {
        self.wait(limit, |state| state.subscribes.len() >= count)
            .await
    }

    /// Waits until `count` requests (of any kind and outcome) have arrived.
    pub async fn wait_for_requests(&self, count: usize, limit: Duration) -> bool {
        self.wait(limit, |state| state.requests.len() >= count)
            .await
    }

    /// Waits until `count` MESSAGE calls have been accepted.
    pub async fn wait_for_messages(&self, count: usize, limit: Duration) -> bool {
        self.wait(limit, |state| state.messages.len() >= count)
            .await
    }
}

async fn serve_connection<I>(shared: Arc<Shared>, io: I, via_unix_socket: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, request, via_unix_socket).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A refusal: status and message.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    (status, message.into())
}

/// Call as the agent parses it: `type` may be absent (an unknown name is dropped by stout).
#[derive(Debug, Deserialize)]
struct IncomingCall {
    executor_id: ExecutorId,
    framework_id: FrameworkId,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "singularity_mesos::wire::opt_enum"
    )]
    kind: Option<CallType>,
    #[serde(default)]
    subscribe: Option<Subscribe>,
    #[serde(default)]
    update: Option<Update>,
    #[serde(default)]
    message: Option<CallMessage>,
}

impl IncomingCall {
    fn into_call(self, kind: CallType) -> Call {
        Call {
            executor_id: self.executor_id,
            framework_id: self.framework_id,
            kind,
            subscribe: self.subscribe,
            update: self.update,
            message: self.message,
        }
    }
}

fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
    via_unix_socket: bool,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut record = RequestRecord {
        at: Instant::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        call_type: None,
        status: 0,
        authorization: header_text(&parts.headers, header::AUTHORIZATION),
        content_type: header_text(&parts.headers, header::CONTENT_TYPE),
        accept: header_text(&parts.headers, header::ACCEPT),
        stream_id: header_text(&parts.headers, "mesos-stream-id"),
        via_unix_socket,
    };
    let (response, rejection) = match process(shared, &parts, &body, via_unix_socket, &mut record) {
        Ok(response) => (response, None),
        Err((status, reason)) => {
            let mut response = text_response(status, &reason);
            if status == StatusCode::METHOD_NOT_ALLOWED {
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            }
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"mesos-agent-executor\""),
                );
            }
            (response, Some(reason))
        }
    };
    record.status = response.status().as_u16();
    let mut state = lock(&shared.state);
    if let Some(reason) = rejection {
        tracing::warn!(
            status = record.status,
            reason,
            path = record.path,
            "fake agent refused a request"
        );
        state.rejections.push(Rejection {
            status: record.status,
            reason,
            path: record.path.clone(),
            call_type: record.call_type,
        });
    }
    state.requests.push(record);
    drop(state);
    shared.changed.send_modify(|n| *n += 1);
    response
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())).boxed());
    *response.status_mut() = status;
    if !text.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// `Http::executor`, check by check.
fn process(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    via_unix_socket: bool,
    record: &mut RequestRecord,
) -> Result<Response<Body>, Refusal> {
    // Authentication runs before the handler, for every route.
    if let Some(token) = &shared.token {
        let expected = format!("Bearer {token}");
        match &record.authorization {
            None => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "Missing Authorization header",
                ));
            }
            Some(value) if *value != expected => {
                return Err(refuse(StatusCode::UNAUTHORIZED, "Invalid bearer token"));
            }
            Some(_) => {}
        }
    }
    let path = parts.uri.path();
    if via_unix_socket {
        if path != PID_API_PATH {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("Only {PID_API_PATH} is served on the executor socket"),
            ));
        }
    } else if path != API_PATH && path != PID_API_PATH {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("No route for {path}"),
        ));
    }
    if parts.method != Method::POST {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "Expecting one of {{ 'POST' }}, but received '{}'",
                parts.method
            ),
        ));
    }
    let Some(content_type) = record.content_type.clone() else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        ));
    };
    if content_type == PROTOBUF {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "This fake agent decodes only application/json (the real agent also takes application/x-protobuf)",
        ));
    }
    if content_type != JSON {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Expecting 'Content-Type' of {JSON} or {PROTOBUF}"),
        ));
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse body into JSON: {e}"),
        )
    })?;
    // stout drops an unknown enum name in an optional field.
    if let Some(object) = value.as_object_mut()
        && let Some(kind) = object.get("type")
        && serde_json::from_value::<CallType>(kind.clone()).is_err()
        && kind.is_string()
    {
        object.remove("type");
    }
    let incoming: IncomingCall = serde_json::from_value(value).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("Failed to convert JSON into Call protobuf: {e}"),
        )
    })?;
    record.call_type = incoming.kind;
    let call = validate(incoming).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate Executor::Call: {e}"),
        )
    })?;

    match call.kind {
        CallType::Subscribe => {
            let (json, protobuf) = accepts(record.accept.as_deref());
            if !json {
                let message = if protobuf {
                    "This fake agent streams only application/json (the real agent would stream protobuf)".to_owned()
                } else {
                    format!("Expecting 'Accept' to allow '{PROTOBUF}' or '{JSON}'")
                };
                return Err(refuse(StatusCode::NOT_ACCEPTABLE, message));
            }
        }
        CallType::Heartbeat => return Ok(text_response(StatusCode::ACCEPTED, "")),
        _ => {}
    }

    {
        let mut state = lock(&shared.state);
        if let Some(index) = state.faults.iter().position(|(kind, _)| *kind == call.kind)
            && let Some((_, status)) = state.faults.remove(index)
        {
            return Ok(text_response(status, "injected fault"));
        }
    }

    if call.framework_id != shared.framework_id {
        return Err(refuse(StatusCode::BAD_REQUEST, "Framework cannot be found"));
    }
    if call.executor_id != shared.executor_id {
        return Err(refuse(StatusCode::BAD_REQUEST, "Executor cannot be found"));
    }

    let mut state = lock(&shared.state);
    if !state.registered && call.kind != CallType::Subscribe {
        return Err(refuse(StatusCode::FORBIDDEN, "Executor is not subscribed"));
    }
    match call.kind {
        CallType::Subscribe => {
            let subscribe = call.subscribe.clone().unwrap_or_default();
            for update in &subscribe.unacknowledged_updates {
                validate_update(&call.executor_id, &call.framework_id, &update.status).map_err(
                    |e| {
                        refuse(
                            StatusCode::BAD_REQUEST,
                            format!("Invalid unacknowledged update in SUBSCRIBE: {e}"),
                        )
                    },
                )?;
            }
            state.registered = true;
            state.subscribes.push(call);
            let (tx, rx) = mpsc::unbounded_channel();
            // Replacing the sender ends the previous stream, as the agent closes it.
            state.stream = Some(tx);
            let subscribed = Event::subscribed(subscribed_event(shared));
            state.send_event(&subscribed);
            for update in subscribe.unacknowledged_updates {
                state.record_update(&update.status);
                if state.auto_ack
                    && let Some(uuid) = &update.status.uuid
                {
                    state.ack(&update.status.task_id, uuid);
                }
            }
            for event in std::mem::take(&mut state.backlog) {
                state.send_event(&event);
            }
            let mut response = Response::new(EventStream { rx }.boxed());
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(JSON));
            Ok(response)
        }
        CallType::Update => {
            let Some(update) = call.update else {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'update' to be present",
                ));
            };
            state.record_update(&update.status);
            if state.auto_ack
                && let Some(uuid) = &update.status.uuid
            {
                state.ack(&update.status.task_id, uuid);
            }
            Ok(text_response(StatusCode::ACCEPTED, ""))
        }
        CallType::Message => {
            if let Some(message) = call.message {
                state.messages.push(message.data);
            }
            Ok(text_response(StatusCode::ACCEPTED, ""))
        }
        CallType::Heartbeat => Ok(text_response(StatusCode::ACCEPTED, "")),
        CallType::Unknown => Err(refuse(StatusCode::NOT_IMPLEMENTED, "")),
    }
}

/// Why `validateExecutorCall` refuses a call; the messages are the agent's own.
#[derive(Debug, thiserror::Error)]
enum InvalidCall {
    #[error("Expecting 'type' to be present")]
    MissingType,
    #[error("Expecting 'subscribe' to be present")]
    MissingSubscribe,
    #[error("Expecting 'update' to be present")]
    MissingUpdate,
    #[error("Expecting 'message' to be present")]
    MissingMessage,
    #[error("Expecting 'uuid' to be present")]
    MissingUuid,
    #[error("Not a valid UUID")]
    InvalidUuid,
    #[error("ExecutorID in Call: {call} does not match ExecutorID in TaskStatus: {status}")]
    ExecutorMismatch {
        call: ExecutorId,
        status: ExecutorId,
    },
    #[error(
        "Received Call from executor {executor_id} of framework {framework_id} with invalid source, expecting 'SOURCE_EXECUTOR'"
    )]
    InvalidSource {
        executor_id: ExecutorId,
        framework_id: FrameworkId,
    },
    #[error(
        "Received TASK_STAGING from executor {executor_id} of framework {framework_id} which is not allowed"
    )]
    TaskStaging {
        executor_id: ExecutorId,
        framework_id: FrameworkId,
    },
}

/// `validateExecutorCall`.
fn validate(incoming: IncomingCall) -> Result<Call, InvalidCall> {
    let Some(kind) = incoming.kind else {
        return Err(InvalidCall::MissingType);
    };
    match kind {
        CallType::Subscribe if incoming.subscribe.is_none() => Err(InvalidCall::MissingSubscribe),
        CallType::Update => match &incoming.update {
            None => Err(InvalidCall::MissingUpdate),
            Some(update) => {
                validate_update(
                    &incoming.executor_id,
                    &incoming.framework_id,
                    &update.status,
                )?;
                Ok(incoming.into_call(kind))
            }
        },
        CallType::Message if incoming.message.is_none() => Err(InvalidCall::MissingMessage),
        _ => Ok(incoming.into_call(kind)),
    }
}

fn validate_update(
    executor_id: &ExecutorId,
    framework_id: &FrameworkId,
    status: &TaskStatus,
) -> Result<(), InvalidCall> {
    let Some(uuid) = &status.uuid else {
        return Err(InvalidCall::MissingUuid);
    };
    // boost's UUID versions 1..=5 are the known ones; anything else is "unknown".
    let known_version = uuid.len() == 16 && (1..=5).contains(&(uuid[6] >> 4));
    if !known_version {
        return Err(InvalidCall::InvalidUuid);
    }
    if let Some(status_executor) = &status.executor_id
        && status_executor != executor_id
    {
        return Err(InvalidCall::ExecutorMismatch {
            call: executor_id.clone(),
            status: status_executor.clone(),
        });
    }
    if status.source != Some(Source::SourceExecutor) {
        return Err(InvalidCall::InvalidSource {
            executor_id: executor_id.clone(),
            framework_id: framework_id.clone(),
        });
    }
    if status.state == TaskState::TaskStaging {
        return Err(InvalidCall::TaskStaging {
            executor_id: executor_id.clone(),
            framework_id: framework_id.clone(),
        });
    }
    Ok(())
}

/// Whether an `Accept` header allows JSON, and protobuf. A missing or empty header allows all.
fn accepts(accept: Option<&str>) -> (bool, bool) {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return (true, true);
    };
    let allows = |media: &str| {
        let (kind, _) = media.split_once('/').unwrap_or((media, ""));
        accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let name = params.next().unwrap_or("").to_ascii_lowercase();
            let q_zero = params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            !q_zero && (name == media || name == "*/*" || name == format!("{kind}/*"))
        })
    };
    (allows(JSON), allows(PROTOBUF))
}

fn subscribed_event(shared: &Shared) -> Subscribed {
    let mut executor_info = ExecutorInfo::new(shared.executor_id.clone());
    executor_info.framework_id = Some(shared.framework_id.clone());
    executor_info.command = Some(CommandInfo {
        value: Some("singularity-executor".into()),
        shell: Some(true),
        ..CommandInfo::default()
    });
    Subscribed {
        executor_info,
        framework_info: FrameworkInfo {
            user: "root".into(),
            name: "Singularity".into(),
            id: Some(shared.framework_id.clone()),
            failover_timeout: Some(604_800.0),
            checkpoint: Some(true),
            role: None,
            roles: Vec::new(),
            hostname: None,
            principal: None,
            webui_url: None,
            capabilities: Vec::new(),
            labels: None,
        },
        agent_info: AgentInfo {
            hostname: "localhost".into(),
            port: None,
            resources: Vec::new(),
            attributes: Vec::new(),
            id: Some(shared.agent_id.clone()),
            domain: None,
        },
        container_id: Some(ContainerId {
            value: shared.container_id.clone(),
            parent: None,
        }),
    }
}

/// The SUBSCRIBE response body: records written by the fake as they are produced.
struct EventStream {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl http_body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_matching() {
        assert_eq!(accepts(None), (true, true));
        assert_eq!(accepts(Some("")), (true, true));
        assert_eq!(accepts(Some("application/json")), (true, false));
        assert_eq!(accepts(Some("*/*")), (true, true));
        assert_eq!(accepts(Some("application/*")), (true, true));
        assert_eq!(
            accepts(Some("text/html, application/json;q=0.5")),
            (true, false)
        );
        assert_eq!(accepts(Some("application/json;q=0")), (false, false));
        assert_eq!(accepts(Some("application/x-protobuf")), (false, true));
        assert_eq!(accepts(Some("text/plain")), (false, false));
    }
}
