//! The fake agent driven with raw HTTP: each rule refuses exactly what it should.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use singularity_fake_agent::FakeAgent;
use singularity_mesos::protocol::{Event, EventType};
use singularity_mesos::recordio::Decoder;
use singularity_mesos::{CallType, TaskState};

const WAIT: Duration = Duration::from_secs(10);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn v4() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

struct Raw {
    agent: FakeAgent,
    http: reqwest::Client,
}

impl Raw {
    async fn start() -> Raw {
        Raw::with(FakeAgent::start("fw", "ex").await)
    }

    fn with(agent: FakeAgent) -> Raw {
        Raw {
            agent,
            http: reqwest::Client::new(),
        }
    }

    fn call(&self, kind: &str) -> Value {
        json!({"framework_id": {"value": "fw"}, "executor_id": {"value": "ex"}, "type": kind})
    }

    fn update(&self, status: Value) -> Value {
        let mut call = self.call("UPDATE");
        call["update"] = json!({ "status": status });
        call
    }

    fn status(&self, uuid: &[u8]) -> Value {
        json!({
            "task_id": {"value": "t-1"}, "state": "TASK_RUNNING",
            "source": "SOURCE_EXECUTOR", "uuid": b64(uuid),
            "executor_id": {"value": "ex"}
        })
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.agent.url())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn expect(&self, body: &Value, status: u16, message: &str) {
        let response = self.post(body).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{text:?} lacks {message:?}");
    }

    async fn subscribe(&self) -> Stream {
        let mut call = self.call("SUBSCRIBE");
        call["subscribe"] = json!({});
        self.subscribe_with(&call).await
    }

    async fn subscribe_with(&self, call: &Value) -> Stream {
        let response = self.post(call).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let mut stream = Stream {
            response,
            decoder: Decoder::new(),
            ready: VecDeque::new(),
        };
        let first = stream.next().await.unwrap();
        assert_eq!(first.kind, EventType::Subscribed);
        stream
    }
}

struct Stream {
    response: reqwest::Response,
    decoder: Decoder,
    ready: VecDeque<Event>,
}

impl Stream {
    /// The next event, reading chunks as they arrive; None at the end of the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("a chunk within the wait")
                .unwrap()?;
            for record in self.decoder.feed(&chunk).unwrap() {
                self.ready
                    .push_back(serde_json::from_slice(&record).unwrap());
            }
        }
    }
}

fn statuses(agent: &FakeAgent) -> Vec<u16> {
    agent.rejections().iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn method_path_and_content_type() {
    let raw = Raw::start().await;
    let heartbeat = raw.call("HEARTBEAT").to_string();

    let get = raw.http.get(raw.agent.url()).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(get.headers()["allow"], "POST");

    let wrong_path = raw
        .http
        .post(format!("http://{}/api/v1/scheduler", raw.agent.endpoint()))
        .header("Content-Type", "application/json")
        .body(heartbeat.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_path.status().as_u16(), 404);

    let pid_path = raw
        .http
        .post(format!(
            "http://{}/slave(1)/api/v1/executor",
            raw.agent.endpoint()
        ))
        .header("Content-Type", "application/json")
        .body(heartbeat.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pid_path.status().as_u16(), 202);

    let no_type = raw
        .http
        .post(raw.agent.url())
        .body(heartbeat.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status().as_u16(), 400);
    assert_eq!(
        no_type.text().await.unwrap(),
        "Expecting 'Content-Type' to be present"
    );

    for content_type in [
        "text/plain",
        "application/json; charset=utf-8",
        "application/x-protobuf",
    ] {
        let response = raw
            .http
            .post(raw.agent.url())
            .header("Content-Type", content_type)
            .body(heartbeat.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 415, "{content_type}");
    }

    assert_eq!(statuses(&raw.agent), vec![405, 404, 400, 415, 415, 415]);
}

#[tokio::test]
async fn body_and_call_shape() {
    let raw = Raw::start().await;
    let response = raw
        .http
        .post(raw.agent.url())
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .starts_with("Failed to parse body into JSON")
    );

    raw.expect(
        &json!({"framework_id": {"value": "fw"}, "type": "HEARTBEAT"}),
        400,
        "Failed to convert JSON into Call protobuf",
    )
    .await;
    let mut untyped = raw.call("HEARTBEAT");
    untyped.as_object_mut().unwrap().remove("type");
    raw.expect(&untyped, 400, "Expecting 'type' to be present")
        .await;
    raw.expect(&raw.call("FLY"), 400, "Expecting 'type' to be present")
        .await;
    raw.expect(
        &raw.call("SUBSCRIBE"),
        400,
        "Expecting 'subscribe' to be present",
    )
    .await;
    raw.expect(&raw.call("UPDATE"), 400, "Expecting 'update' to be present")
        .await;
    raw.expect(
        &raw.call("MESSAGE"),
        400,
        "Expecting 'message' to be present",
    )
    .await;
    let mut no_data = raw.call("MESSAGE");
    no_data["message"] = json!({});
    raw.expect(&no_data, 400, "Failed to convert JSON into Call protobuf")
        .await;
    assert_eq!(raw.agent.rejections().len(), 8);
}

#[tokio::test]
async fn heartbeat_before_ids_and_subscription() {
    let raw = Raw::start().await;
    let dummy = json!({"framework_id": {"value": "unused"}, "executor_id": {"value": "unused"},
                       "type": "HEARTBEAT"});
    raw.expect(&dummy, 202, "").await;
    assert!(raw.agent.rejections().is_empty());
}

#[tokio::test]
async fn ids_and_subscription_state() {
    let raw = Raw::start().await;
    let mut other_framework = raw.call("SUBSCRIBE");
    other_framework["subscribe"] = json!({});
    other_framework["framework_id"]["value"] = json!("someone-else");
    raw.expect(&other_framework, 400, "Framework cannot be found")
        .await;
    let mut other_executor = raw.call("SUBSCRIBE");
    other_executor["subscribe"] = json!({});
    other_executor["executor_id"]["value"] = json!("someone-else");
    raw.expect(&other_executor, 400, "Executor cannot be found")
        .await;

    let update = raw.update(raw.status(&v4()));
    raw.expect(&update, 403, "Executor is not subscribed").await;
    let mut message = raw.call("MESSAGE");
    message["message"] = json!({"data": b64(b"x")});
    raw.expect(&message, 403, "Executor is not subscribed")
        .await;

    let _stream = raw.subscribe().await;
    raw.expect(&update, 202, "").await;
    raw.expect(&message, 202, "").await;
    raw.expect(&raw.call("UNKNOWN"), 501, "").await;
    assert_eq!(statuses(&raw.agent), vec![400, 400, 403, 403, 501]);
    assert_eq!(raw.agent.messages(), vec![b"x".to_vec()]);
}

#[tokio::test]
async fn subscribe_accept_header() {
    let raw = Raw::start().await;
    let mut call = raw.call("SUBSCRIBE");
    call["subscribe"] = json!({});
    let with_accept = |accept: Option<&str>| {
        let mut request = raw
            .http
            .post(raw.agent.url())
            .header("Content-Type", "application/json")
            .body(call.to_string());
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        request.send()
    };
    for (accept, status) in [
        (Some("text/html"), 406),
        (Some("application/x-protobuf"), 406),
        (Some("application/json;q=0"), 406),
        (None, 200),
        (Some("*/*"), 200),
        (Some("text/html, application/*"), 200),
    ] {
        let response = with_accept(accept).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{accept:?}");
        if status == 200 {
            assert_eq!(response.headers()["content-type"], "application/json");
        }
    }
    assert_eq!(statuses(&raw.agent), vec![406, 406, 406]);
}

#[tokio::test]
async fn update_validation() {
    let raw = Raw::start().await;
    let mut stream = raw.subscribe().await;

    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut s = raw.status(&v4());
                s.as_object_mut().unwrap().remove("uuid");
                s
            },
            "Expecting 'uuid' to be present",
        ),
        (raw.status(&v4()[..15]), "Not a valid UUID"),
        (raw.status(&[0u8; 16]), "Not a valid UUID"),
        (raw.status(&[0xffu8; 16]), "Not a valid UUID"),
        (
            {
                let mut s = raw.status(&v4());
                s["source"] = json!("SOURCE_AGENT");
                s
            },
            "invalid source, expecting 'SOURCE_EXECUTOR'",
        ),
        (
            {
                let mut s = raw.status(&v4());
                s.as_object_mut().unwrap().remove("source");
                s
            },
            "invalid source",
        ),
        (
            {
                let mut s = raw.status(&v4());
                s["state"] = json!("TASK_STAGING");
                s
            },
            "Received TASK_STAGING from executor ex of framework fw which is not allowed",
        ),
        (
            {
                let mut s = raw.status(&v4());
                s["executor_id"] = json!({"value": "other"});
                s
            },
            "ExecutorID in Call: ex does not match ExecutorID in TaskStatus: other",
        ),
        (
            {
                let mut s = raw.status(&v4());
                s["state"] = json!("TASK_DANCING");
                s
            },
            "Failed to convert JSON into Call protobuf",
        ),
        (
            {
                let mut s = raw.status(&v4());
                s["uuid"] = json!("***");
                s
            },
            "Failed to convert JSON into Call protobuf",
        ),
    ];
    for (status, message) in &cases {
        raw.expect(&raw.update(status.clone()), 400, message).await;
    }
    assert_eq!(raw.agent.rejections().len(), cases.len());
    assert!(raw.agent.updates().is_empty());

    // A valid one: 202, recorded, acknowledged on the stream with its uuid.
    let uuid = v4();
    let mut status = raw.status(&uuid);
    status.as_object_mut().unwrap().remove("executor_id");
    raw.expect(&raw.update(status), 202, "").await;
    let ack = stream.next().await.unwrap();
    assert_eq!(ack.kind, EventType::Acknowledged);
    let ack = ack.acknowledged.unwrap();
    assert_eq!(ack.uuid, uuid);
    assert_eq!(ack.task_id.value, "t-1");
    let updates = raw.agent.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].state, TaskState::TaskRunning);

    // Version 1 uuids are known too.
    let mut v1 = v4();
    v1[6] = (v1[6] & 0x0f) | 0x10;
    raw.expect(&raw.update(raw.status(&v1)), 202, "").await;
    assert_eq!(raw.agent.rejections().len(), cases.len());
}

#[tokio::test]
async fn stream_carries_pushed_events_and_ends_on_drop_or_new_subscribe() {
    let raw = Raw::start().await;
    // Pushed before any subscription: delivered after SUBSCRIBED.
    raw.agent.message(b"early".to_vec());
    let mut first = raw.subscribe().await;
    assert_eq!(first.next().await.unwrap().message.unwrap().data, b"early");

    raw.agent.launch(raw.agent.task("t-1"));
    raw.agent.kill("t-1", None);
    raw.agent.heartbeat();
    raw.agent.shutdown();
    let kinds: Vec<EventType> = [
        first.next().await,
        first.next().await,
        first.next().await,
        first.next().await,
    ]
    .into_iter()
    .map(|e| e.unwrap().kind)
    .collect();
    assert_eq!(
        kinds,
        vec![
            EventType::Launch,
            EventType::Kill,
            EventType::Heartbeat,
            EventType::Shutdown
        ]
    );
    assert!(raw.agent.connected());

    // A second SUBSCRIBE closes the first stream.
    let mut second = raw.subscribe().await;
    assert!(first.next().await.is_none());
    raw.agent.message(b"to second".to_vec());
    assert_eq!(
        second.next().await.unwrap().message.unwrap().data,
        b"to second"
    );

    raw.agent.drop_connection();
    assert!(second.next().await.is_none());
    assert!(!raw.agent.connected());
    assert_eq!(raw.agent.subscribes().len(), 2);
    assert!(raw.agent.rejections().is_empty());
}

#[tokio::test]
async fn held_acknowledgements() {
    let raw = Raw::start().await;
    let mut stream = raw.subscribe().await;
    raw.agent.auto_ack(false);
    let uuid = v4();
    raw.expect(&raw.update(raw.status(&uuid)), 202, "").await;
    raw.agent.message(b"marker".to_vec());
    assert_eq!(
        stream.next().await.unwrap().kind,
        EventType::Message,
        "no ack yet"
    );
    assert!(raw.agent.ack(&uuid));
    assert_eq!(
        stream.next().await.unwrap().acknowledged.unwrap().uuid,
        uuid
    );
    assert!(!raw.agent.ack(&v4()), "unknown uuid");
    assert_eq!(raw.agent.ack_all(), 0, "already acknowledged");
}

#[tokio::test]
async fn unacknowledged_updates_in_subscribe() {
    let raw = Raw::start().await;
    let _stream = raw.subscribe().await;
    let uuid = v4();
    raw.agent.auto_ack(false);
    raw.expect(&raw.update(raw.status(&uuid)), 202, "").await;
    raw.agent.auto_ack(true);

    let fresh = v4();
    let mut call = raw.call("SUBSCRIBE");
    call["subscribe"] = json!({
        "unacknowledged_tasks": [{"name": "t-1", "task_id": {"value": "t-1"},
                                  "agent_id": {"value": raw.agent.agent_id().value}}],
        "unacknowledged_updates": [{"status": raw.status(&uuid)}, {"status": raw.status(&fresh)}]
    });
    let mut stream = raw.subscribe_with(&call).await;
    let acked: Vec<Vec<u8>> = vec![
        stream.next().await.unwrap().acknowledged.unwrap().uuid,
        stream.next().await.unwrap().acknowledged.unwrap().uuid,
    ];
    assert_eq!(acked, vec![uuid.clone(), fresh.clone()]);
    // Each uuid counted once.
    let received: Vec<_> = raw
        .agent
        .updates()
        .iter()
        .map(|s| s.uuid.clone().unwrap())
        .collect();
    assert_eq!(received, vec![uuid, fresh]);
    let subscribe = raw.agent.subscribes()[1].subscribe.clone().unwrap();
    assert_eq!(subscribe.unacknowledged_tasks[0].task_id.value, "t-1");

    // Stricter than the agent: an invalid re-sent update is refused.
    let mut bad = raw.call("SUBSCRIBE");
    bad["subscribe"] = json!({"unacknowledged_updates": [{"status": raw.status(&[0u8; 16])}]});
    raw.expect(&bad, 400, "Invalid unacknowledged update in SUBSCRIBE")
        .await;
    assert_eq!(statuses(&raw.agent), vec![400]);
}

#[tokio::test]
async fn injected_faults_are_not_rejections() {
    let raw = Raw::start().await;
    raw.agent.respond_with(CallType::Subscribe, 503);
    let mut call = raw.call("SUBSCRIBE");
    call["subscribe"] = json!({});
    raw.expect(&call, 503, "injected fault").await;
    let _stream = raw.subscribe().await;
    raw.agent.respond_with(CallType::Update, 500);
    raw.expect(&raw.update(raw.status(&v4())), 500, "injected fault")
        .await;
    raw.expect(&raw.update(raw.status(&v4())), 202, "").await;
    assert!(raw.agent.rejections().is_empty());
    let codes: Vec<u16> = raw.agent.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, vec![503, 200, 500, 202]);
}

#[tokio::test]
async fn bearer_token() {
    let raw = Raw::with(FakeAgent::builder("fw", "ex").token("s3cret").start().await);
    let heartbeat = raw.call("HEARTBEAT").to_string();
    for (authorization, status) in [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some("s3cret"), 401),
        (Some("Bearer s3cret"), 202),
    ] {
        let mut request = raw
            .http
            .post(raw.agent.url())
            .header("Content-Type", "application/json")
            .body(heartbeat.clone());
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        assert_eq!(request.send().await.unwrap().status().as_u16(), status);
    }
    assert_eq!(statuses(&raw.agent), vec![401, 401, 401]);
    let env = raw
        .agent
        .env_for_executor(std::path::Path::new("/tmp/x"), false);
    assert!(env.contains(&(
        "MESOS_EXECUTOR_AUTHENTICATION_TOKEN".to_owned(),
        "s3cret".to_owned()
    )));
}

#[tokio::test]
async fn stop_and_restart_on_the_same_port() {
    let raw = Raw::start().await;
    let mut stream = raw.subscribe().await;
    let port = raw.agent.port();

    raw.agent.stop().await;
    // The stream is cut (reset or EOF, depending on timing).
    let cut = tokio::time::timeout(WAIT, stream.response.chunk())
        .await
        .unwrap();
    assert!(matches!(cut, Ok(None) | Err(_)));
    let refused = raw
        .http
        .post(raw.agent.url())
        .header("Content-Type", "application/json")
        .body(raw.call("HEARTBEAT").to_string())
        .send()
        .await;
    assert!(refused.is_err());

    raw.agent.restart().await;
    assert_eq!(raw.agent.port(), port);
    let update = raw.update(raw.status(&v4()));
    raw.expect(&update, 403, "Executor is not subscribed").await;
    let _stream = raw.subscribe().await;
    raw.expect(&update, 202, "").await;
    assert_eq!(statuses(&raw.agent), vec![403]);
}

#[tokio::test]
async fn unix_socket_serves_only_the_pid_path() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let agent = FakeAgent::builder("fw", "ex")
        .domain_socket(&socket)
        .start()
        .await;
    let http = reqwest::Client::builder()
        .unix_socket(socket.clone())
        .build()
        .unwrap();
    let body = json!({"framework_id": {"value": "fw"}, "executor_id": {"value": "ex"},
                      "type": "HEARTBEAT"})
    .to_string();
    let send = |path: &str| {
        http.post(format!("http://localhost{path}"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
    };
    assert_eq!(
        send("/slave(1)/api/v1/executor")
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    assert_eq!(
        send("/api/v1/executor").await.unwrap().status().as_u16(),
        403
    );
    assert!(agent.requests().iter().all(|r| r.via_unix_socket));
    assert_eq!(statuses(&agent), vec![403]);
    let env = agent.env_for_executor(dir.path(), true);
    assert!(env.contains(&(
        "MESOS_DOMAIN_SOCKET".to_owned(),
        socket.display().to_string()
    )));
}

#[tokio::test]
async fn environment_for_the_executor() {
    let agent = FakeAgent::builder("fw", "ex")
        .recovery_timeout(Duration::from_secs(3))
        .backoff_max(Duration::from_millis(250))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let env = agent.agent_env(dir.path(), true);
    assert_eq!(env.agent_endpoint, agent.endpoint());
    assert_eq!(env.framework_id.value, "fw");
    assert_eq!(env.executor_id.value, "ex");
    assert_eq!(env.recovery_timeout, Some(Duration::from_secs(3)));
    assert_eq!(
        env.subscription_backoff_max,
        Some(Duration::from_millis(250))
    );
    assert_eq!(env.directory, dir.path());
    assert!(env.checkpoint);
    let plain = agent.env_for_executor(dir.path(), false);
    assert!(plain.iter().all(|(k, _)| k != "MESOS_RECOVERY_TIMEOUT"));
    assert!(plain.contains(&("MESOS_CHECKPOINT".to_owned(), "0".to_owned())));
    let task = agent.task("t");
    assert_eq!(&task.agent_id, agent.agent_id());
    assert_eq!(
        task.executor.unwrap().executor_id.value,
        agent.executor_id().value
    );
}
