//! A strict stand-in for the two HTTP services the executor cleanup asks: the Singularity API
//! and the Mesos agent's state endpoint. Real HTTP on `127.0.0.1:<ephemeral port>`, the JSON
//! shapes the real services answer, and the checks they make:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /slave(1)/state` (the agent; no credentials) | `{"id": <agent id>, "hostname": ..., ...}` |
//! | any API request without the configured credentials header, or a wrong token | 401 |
//! | API down ([`FakeSingularity::set_down`]) or a queued failure ([`FakeSingularity::fail_next`]) | that status |
//! | `GET /<ctx>/tasks/active/slave/<agentId>/ids` | `[SingularityTaskId]`; `[]` for another agent |
//! | `GET /<ctx>/agents?state=DECOMMISSIONED` | `[SingularityAgent]` in that state; 400 for an unknown state |
//! | `GET /<ctx>/history/task/<taskId>` | `SingularityTaskHistory`, 404 when unknown |
//! | anything else, or not `GET` | 404 / 405 |
//!
//! Every request is recorded ([`FakeSingularity::requests`]). The server runs on its own thread
//! and runtime, so it serves `#[test]` and `#[tokio::test]` alike, and stops on drop.
//!
//! ```no_run
//! use singularity_fake_singularity::{Credentials, FakeSingularity, TaskHistory};
//!
//! let api = FakeSingularity::start("singularity/api", Some(Credentials::new("X-Token", "s3cret")));
//! api.set_active(["req-dep-1-1-host-rack"]);
//! api.set_history(TaskHistory::new("req-dep-2-1-host-rack", "TASK_FINISHED", 1_700_000_000_000));
//! let hosts = api.hosts(); // ["127.0.0.1:<port>"], for singularityHosts
//! # let _ = hosts;
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use singularity_common::task_id::TaskId;

/// The header the API requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Header name.
    pub header_name: String,
    /// Its value.
    pub token: String,
}

impl Credentials {
    /// `header_name: token`.
    pub fn new(header_name: &str, token: &str) -> Self {
        Self {
            header_name: header_name.to_owned(),
            token: token.to_owned(),
        }
    }
}

/// The history of one task, as far as the cleanup reads it: the last update and whether the
/// deploy ran in a container. Rendered in full `SingularityTaskHistory` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskHistory {
    /// The task id.
    pub task_id: String,
    /// The last update's state (`TASK_FINISHED`, `TASK_FAILED`, `TASK_RUNNING`, ...).
    pub state: String,
    /// The last update's time, epoch milliseconds.
    pub timestamp: i64,
    /// The deploy's `containerInfo.type` is `DOCKER`.
    #[serde(default)]
    pub docker: bool,
}

impl TaskHistory {
    /// A history whose last update is `state` at `timestamp` (epoch ms).
    pub fn new(task_id: &str, state: &str, timestamp: i64) -> Self {
        Self {
            task_id: task_id.to_owned(),
            state: state.to_owned(),
            timestamp,
            docker: false,
        }
    }

    /// The same history for a container deploy.
    pub fn docker(mut self) -> Self {
        self.docker = true;
        self
    }
}

/// Everything the stand-in answers from; also the binary's `--state` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiState {
    /// The agent's id (`/slave(1)/state`).
    pub agent_id: String,
    /// The agent's hostname (`/slave(1)/state`).
    pub agent_hostname: String,
    /// Task ids active on the agent.
    pub active_task_ids: Vec<String>,
    /// Hosts in state DECOMMISSIONED.
    pub decommissioned_hosts: Vec<String>,
    /// Task histories by task id.
    pub histories: BTreeMap<String, TaskHistory>,
}

/// One request the stand-in received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The answer's status.
    pub status: u16,
}

#[derive(Debug, Default)]
struct Shared {
    state: ApiState,
    down: Option<u16>,
    failures: VecDeque<u16>,
    requests: Vec<RecordedRequest>,
}

#[derive(Debug, Clone)]
struct App {
    shared: Arc<Mutex<Shared>>,
    credentials: Option<Credentials>,
}

impl App {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running stand-in; stops on drop.
#[derive(Debug)]
pub struct FakeSingularity {
    addr: SocketAddr,
    context_path: String,
    app: App,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSingularity {
    /// Starts on an ephemeral loopback port, the API under `/<context_path>`, requiring
    /// `credentials` when given.
    pub fn start(context_path: &str, credentials: Option<Credentials>) -> Self {
        Self::start_on(
            "127.0.0.1:0".parse().expect("loopback address"),
            context_path,
            credentials,
            ApiState::default(),
        )
        .expect("start the Singularity stand-in")
    }

    /// Starts on `addr` with `state`.
    pub fn start_on(
        addr: SocketAddr,
        context_path: &str,
        credentials: Option<Credentials>,
        state: ApiState,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let app = App {
            shared: Arc::new(Mutex::new(Shared {
                state,
                ..Shared::default()
            })),
            credentials,
        };
        let context_path = context_path.trim_matches('/').to_owned();
        let router = router(&context_path, app.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("fake-singularity".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            addr,
            context_path,
            app,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `["127.0.0.1:<port>"]`, the `singularityHosts` value.
    pub fn hosts(&self) -> Vec<String> {
        vec![self.addr.to_string()]
    }

    /// The context path, without slashes.
    pub fn context_path(&self) -> &str {
        &self.context_path
    }

    /// The agent state URL (`mesosAgentStateUrl`).
    pub fn agent_state_url(&self) -> String {
        format!("http://{}/slave(1)/state", self.addr)
    }

    /// Replaces the whole state.
    pub fn set_state(&self, state: ApiState) {
        self.app.lock().state = state;
    }

    /// Sets the agent's id and hostname.
    pub fn set_agent(&self, agent_id: &str, hostname: &str) {
        let mut shared = self.app.lock();
        shared.state.agent_id = agent_id.to_owned();
        shared.state.agent_hostname = hostname.to_owned();
    }

    /// Sets the tasks active on the agent.
    pub fn set_active<I, S>(&self, task_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.app.lock().state.active_task_ids = task_ids.into_iter().map(Into::into).collect();
    }

    /// Sets the decommissioned hosts.
    pub fn set_decommissioned<I, S>(&self, hosts: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.app.lock().state.decommissioned_hosts = hosts.into_iter().map(Into::into).collect();
    }

    /// Adds or replaces a task's history.
    pub fn set_history(&self, history: TaskHistory) {
        self.app
            .lock()
            .state
            .histories
            .insert(history.task_id.clone(), history);
    }

    /// Answers every API request with `status` (e.g. 503) while `Some`.
    pub fn set_down(&self, status: Option<u16>) {
        self.app.lock().down = status;
    }

    /// Answers the next `count` API requests with `status`.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.app
            .lock()
            .failures
            .extend(std::iter::repeat_n(status, count));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.app.lock().requests.clone()
    }
}

impl Drop for FakeSingularity {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn router(context_path: &str, app: App) -> Router {
    let api = Router::new()
        .route("/tasks/active/slave/{agent_id}/ids", get(active_task_ids))
        .route("/agents", get(agents))
        .route("/history/task/{task_id}", get(task_history))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), api_gate));
    let root = Router::new().route("/slave(1)/state", get(agent_state));
    let root = if context_path.is_empty() {
        root.merge(api)
    } else {
        root.nest(&format!("/{context_path}"), api)
    };
    root.fallback(unknown)
        .layer(axum::middleware::from_fn_with_state(app.clone(), record))
        .with_state(app)
}

async fn record(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    app.lock().requests.push(RecordedRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        status: response.status().as_u16(),
    });
    response
}

/// Credentials, then injected failures, as a gateway in front of the real API would.
async fn api_gate(
    State(app): State<App>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(credentials) = &app.credentials {
        let given = headers
            .get(credentials.header_name.as_str())
            .and_then(|v| v.to_str().ok());
        if given != Some(credentials.token.as_str()) {
            return (StatusCode::UNAUTHORIZED, "missing or wrong credentials").into_response();
        }
    }
    let injected = {
        let mut shared = app.lock();
        shared.down.or_else(|| shared.failures.pop_front())
    };
    if let Some(status) = injected {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, "injected failure").into_response();
    }
    next.run(request).await
}

async fn unknown(method: Method) -> StatusCode {
    if method == Method::GET {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    }
}

async fn agent_state(State(app): State<App>) -> Response {
    let shared = app.lock();
    let state = &shared.state;
    axum::Json(json!({
        "version": "1.11.0",
        "id": state.agent_id,
        "pid": format!("slave(1)@127.0.0.1:5051"),
        "hostname": state.agent_hostname,
        "resources": {"cpus": 8.0, "mem": 15_000.0, "disk": 100_000.0, "ports": "[31000-32000]"},
        "attributes": {},
        "frameworks": [],
        "completed_frameworks": [],
        "flags": {},
    }))
    .into_response()
}

/// `SingularityTaskId` as the API serializes it.
fn task_id_json(id: &str) -> Value {
    match id.parse::<TaskId>() {
        Ok(t) => json!({
            "requestId": t.request_id,
            "deployId": t.deploy_id,
            "startedAt": t.started_at,
            "instanceNo": t.instance_no,
            "host": t.sanitized_host.replace('_', "-"),
            "sanitizedHost": t.sanitized_host,
            "sanitizedRackId": t.sanitized_rack_id,
            "rackId": t.sanitized_rack_id.replace('_', "-"),
            "id": id,
        }),
        Err(_) => json!({"id": id}),
    }
}

async fn active_task_ids(State(app): State<App>, Path(agent_id): Path<String>) -> Response {
    let shared = app.lock();
    let ids: Vec<Value> = if agent_id == shared.state.agent_id {
        shared
            .state
            .active_task_ids
            .iter()
            .map(|id| task_id_json(id))
            .collect()
    } else {
        Vec::new()
    };
    axum::Json(ids).into_response()
}

#[derive(Debug, Deserialize)]
struct AgentsQuery {
    state: Option<String>,
}

const MACHINE_STATES: &[&str] = &[
    "MISSING_ON_STARTUP",
    "ACTIVE",
    "STARTING_DECOMMISSION",
    "DECOMMISSIONING",
    "DECOMMISSIONED",
    "DEAD",
    "FROZEN",
];

async fn agents(State(app): State<App>, Query(query): Query<AgentsQuery>) -> Response {
    if let Some(state) = &query.state
        && !MACHINE_STATES.contains(&state.as_str())
    {
        return (StatusCode::BAD_REQUEST, format!("unknown state {state}")).into_response();
    }
    let shared = app.lock();
    let wants_decommissioned = query.state.as_deref().is_none_or(|s| s == "DECOMMISSIONED");
    let agents: Vec<Value> = if wants_decommissioned {
        shared
            .state
            .decommissioned_hosts
            .iter()
            .enumerate()
            .map(|(n, host)| {
                json!({
                    "agentId": format!("agent-{n}"),
                    "id": format!("agent-{n}"),
                    "host": host,
                    "rackId": "rack1",
                    "attributes": {},
                    "resources": {"numCpus": 8, "memoryMegaBytes": 15000, "diskMegaBytes": 100000},
                    "firstSeenAt": 1_600_000_000_000_i64,
                    "currentState": {"state": "DECOMMISSIONED", "timestamp": 1_600_000_000_000_i64, "user": "ops"},
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    axum::Json(agents).into_response()
}

async fn task_history(State(app): State<App>, Path(task_id): Path<String>) -> Response {
    let shared = app.lock();
    let Some(history) = shared.state.histories.get(&task_id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("Task history {task_id} not found")})),
        )
            .into_response();
    };
    axum::Json(history_json(history)).into_response()
}

/// `SingularityTaskHistory` in full.
fn history_json(history: &TaskHistory) -> Value {
    let task_id = task_id_json(&history.task_id);
    let request_id = task_id["requestId"].clone();
    let deploy_id = task_id["deployId"].clone();
    let container_info = if history.docker {
        json!({"type": "DOCKER", "volumes": [], "docker": {"image": "local/busybox:1", "privileged": false, "network": "BRIDGE", "portMappings": [], "forcePullImage": false, "parameters": {}, "dockerParameters": []}})
    } else {
        Value::Null
    };
    let mut deploy = json!({
        "requestId": request_id,
        "id": deploy_id,
        "command": "./run.sh",
        "resources": {"cpus": 1.0, "memoryMb": 128.0, "numPorts": 0, "diskMb": 0.0},
        "timestamp": history.timestamp - 60_000,
    });
    if !container_info.is_null() {
        deploy["containerInfo"] = container_info;
    }
    json!({
        "taskUpdates": [
            {"taskId": task_id, "timestamp": history.timestamp - 30_000, "taskState": "TASK_RUNNING", "statusMessage": "started", "previous": []},
            {"taskId": task_id, "timestamp": history.timestamp, "taskState": history.state, "statusMessage": "ended", "previous": []},
        ],
        "directory": "/var/lib/mesos/slaves/s/frameworks/f/executors/e/runs/latest",
        "containerId": "c0ffee",
        "task": {
            "taskId": task_id,
            "taskRequest": {
                "request": {"id": request_id, "requestType": "SERVICE", "owners": []},
                "deploy": deploy,
                "pendingTask": {"pendingTaskId": {"requestId": request_id, "deployId": deploy_id, "nextRunAt": history.timestamp - 60_000, "instanceNo": 1, "pendingType": "NEW_DEPLOY", "createdAt": history.timestamp - 60_000, "id": format!("{}-{}", request_id.as_str().unwrap_or(""), deploy_id.as_str().unwrap_or(""))}, "user": "ops"},
            },
            "offers": [],
            "mesosTask": {"taskId": {"value": history.task_id}, "name": "task", "agentId": {"value": "agent"}},
            "rackId": "rack1",
        },
        "healthcheckResults": [],
        "loadBalancerUpdates": [],
        "shellCommandHistory": [],
        "taskMetadata": [],
    })
}
