//! The executor client against the strict fake agent.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use singularity_fake_agent::{FakeAgent, FakeAgentBuilder};
use singularity_mesos::protocol::Event;
use singularity_mesos::recordio;
use singularity_mesos::{
    CallType, ExecutorClient, ExecutorEvent, KillPolicy, MesosError, ShutdownReason, Source,
    StatusUpdate, TaskId, TaskState,
};
use tempfile::TempDir;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    agent: FakeAgent,
    _sandbox: TempDir,
    client: ExecutorClient,
    events: Receiver<ExecutorEvent>,
}

impl Harness {
    async fn start(builder: FakeAgentBuilder, checkpoint: bool) -> Harness {
        let agent = builder.start().await;
        let sandbox = tempfile::tempdir().unwrap();
        let (client, events) = ExecutorClient::start(agent.agent_env(sandbox.path(), checkpoint));
        let mut harness = Harness {
            agent,
            _sandbox: sandbox,
            client,
            events,
        };
        match harness.next().await {
            ExecutorEvent::Subscribed(info) => {
                assert_eq!(
                    info.framework_info.id.as_ref(),
                    Some(harness.agent.framework_id())
                );
                assert_eq!(&info.executor_info.executor_id, harness.agent.executor_id());
                assert_eq!(info.agent_info.id.as_ref(), Some(harness.agent.agent_id()));
            }
            other => panic!("expected Subscribed, got {other:?}"),
        }
        harness
    }

    async fn default(checkpoint: bool) -> Harness {
        Self::start(builder(), checkpoint).await
    }

    async fn next(&mut self) -> ExecutorEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event within the wait")
            .expect("the event channel is open")
    }

    /// Asserts the executor never made a call the agent would refuse.
    fn assert_clean(&self) {
        assert_eq!(self.agent.rejections(), Vec::new());
        for request in self.agent.requests() {
            assert_eq!(
                request.stream_id, None,
                "Mesos-Stream-Id must never be sent"
            );
        }
    }
}

fn builder() -> FakeAgentBuilder {
    FakeAgent::builder("framework-1", &format!("executor-{}", uuid::Uuid::new_v4()))
}

fn running(task: &str) -> StatusUpdate {
    StatusUpdate::new(TaskId::new(task), TaskState::TaskRunning)
}

#[tokio::test]
async fn subscribe_launch_update_acknowledge() {
    let mut h = Harness::default(true).await;

    let subscribes = h.agent.subscribes();
    assert_eq!(subscribes.len(), 1);
    let subscribe = subscribes[0].subscribe.as_ref().unwrap();
    assert!(subscribe.unacknowledged_tasks.is_empty());
    assert!(subscribe.unacknowledged_updates.is_empty());
    let request = &h.agent.requests()[0];
    assert_eq!(request.path, "/api/v1/executor");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(request.accept.as_deref(), Some("application/json"));
    assert_eq!(request.authorization, None);

    let task = h.agent.task("task-1");
    h.agent.launch(task.clone());
    match h.next().await {
        ExecutorEvent::Launch(launched) => assert_eq!(*launched, task),
        other => panic!("expected Launch, got {other:?}"),
    }

    let uuid = h
        .client
        .update(running("task-1").message("started").data(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert!(h.client.wait_all_acknowledged(WAIT).await);
    assert_eq!(h.client.unacknowledged(), 0);

    let updates = h.agent.updates();
    assert_eq!(updates.len(), 1);
    let status = &updates[0];
    assert_eq!(status.uuid.as_ref().unwrap().len(), 16);
    assert_eq!(status.uuid(), Some(uuid));
    assert_eq!(status.state, TaskState::TaskRunning);
    assert_eq!(status.source, Some(Source::SourceExecutor));
    assert_eq!(status.executor_id.as_ref(), Some(h.agent.executor_id()));
    assert_eq!(status.agent_id.as_ref(), Some(h.agent.agent_id()));
    assert_eq!(status.message.as_deref(), Some("started"));
    assert_eq!(status.data.as_deref(), Some(&b"{}"[..]));
    assert!(status.timestamp.unwrap() > 1.6e9);

    // Calls went on a connection other than the stream's (the stream is still open).
    assert!(h.agent.connected());
    h.assert_clean();
}

#[tokio::test]
async fn updates_keep_their_order() {
    let h = Harness::default(true).await;
    let mut sent = Vec::new();
    for i in 0..10 {
        let update = StatusUpdate::new(TaskId::new("t"), TaskState::TaskRunning)
            .message(format!("update {i}"));
        sent.push(h.client.update(update).await.unwrap());
    }
    assert!(h.client.wait_all_acknowledged(WAIT).await);
    let received: Vec<_> = h
        .agent
        .updates()
        .iter()
        .map(|s| s.uuid().unwrap())
        .collect();
    assert_eq!(received, sent);
    h.assert_clean();
}

#[tokio::test]
async fn held_ack_and_dropped_stream_resend_in_subscribe() {
    let mut h = Harness::default(true).await;
    h.agent.auto_ack(false);
    let task = h.agent.task("task-1");
    h.agent.launch(task.clone());
    assert!(matches!(h.next().await, ExecutorEvent::Launch(_)));
    let starting = h
        .client
        .update(StatusUpdate::new(
            TaskId::new("task-1"),
            TaskState::TaskStarting,
        ))
        .await
        .unwrap();
    let run = h.client.update(running("task-1")).await.unwrap();
    assert_eq!(h.client.unacknowledged(), 2);
    assert!(
        !h.client
            .wait_all_acknowledged(Duration::from_millis(200))
            .await
    );

    h.agent.drop_connection();
    assert_eq!(h.next().await, ExecutorEvent::Disconnected);
    assert_eq!(h.next().await, ExecutorEvent::Reconnected);

    let subscribes = h.agent.subscribes();
    assert_eq!(subscribes.len(), 2);
    let resent = subscribes[1].subscribe.as_ref().unwrap();
    let uuids: Vec<_> = resent
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.uuid().unwrap())
        .collect();
    assert_eq!(uuids, vec![starting, run], "oldest first");
    assert_eq!(resent.unacknowledged_tasks, vec![task]);
    // The fake counts each uuid once, as the agent's update manager does.
    assert_eq!(h.agent.updates().len(), 2);

    // One acknowledged update releases the task; the other stays.
    assert!(h.agent.ack(starting.as_bytes()));
    let deadline = Instant::now() + WAIT;
    while h.client.unacknowledged() != 1 {
        assert!(Instant::now() < deadline, "ack not processed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.agent.drop_connection();
    assert_eq!(h.next().await, ExecutorEvent::Disconnected);
    assert_eq!(h.next().await, ExecutorEvent::Reconnected);
    let third = h.agent.subscribes()[2].subscribe.clone().unwrap();
    assert!(third.unacknowledged_tasks.is_empty());
    assert_eq!(third.unacknowledged_updates.len(), 1);
    assert_eq!(third.unacknowledged_updates[0].status.uuid(), Some(run));

    assert_eq!(h.agent.ack_all(), 1);
    assert!(h.client.wait_all_acknowledged(WAIT).await);
    h.assert_clean();
}

#[tokio::test]
async fn update_while_agent_is_down_goes_out_in_the_next_subscribe() {
    let mut h = Harness::start(builder().backoff_max(Duration::from_millis(100)), true).await;
    h.agent.stop().await;
    assert_eq!(h.next().await, ExecutorEvent::Disconnected);

    let started = Instant::now();
    let uuid = h.client.update(running("task-1")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "queued, not sent"
    );
    assert_eq!(h.client.unacknowledged(), 1);
    assert!(matches!(
        h.client.message(b"x".to_vec()).await,
        Err(MesosError::NotSubscribed)
    ));

    h.agent.restart().await;
    assert_eq!(h.next().await, ExecutorEvent::Reconnected);
    let last = h.agent.subscribes().pop().unwrap();
    let resent = last.subscribe.unwrap().unacknowledged_updates;
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].status.uuid(), Some(uuid));
    assert!(h.client.wait_all_acknowledged(WAIT).await);
    h.assert_clean();
}

#[tokio::test]
async fn resubscribe_attempts_are_spaced_by_at_most_the_backoff_ceiling() {
    let max = Duration::from_millis(300);
    let mut h = Harness::start(builder().backoff_max(max), true).await;
    for _ in 0..4 {
        h.agent.respond_with(CallType::Subscribe, 503);
    }
    h.agent.drop_connection();
    assert_eq!(h.next().await, ExecutorEvent::Disconnected);
    assert_eq!(h.next().await, ExecutorEvent::Reconnected);

    let attempts: Vec<_> = h
        .agent
        .requests()
        .into_iter()
        .filter(|r| r.call_type == Some(CallType::Subscribe))
        .collect();
    let statuses: Vec<_> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 503, 503, 503, 503, 200]);
    // Generous slack for scheduling; the point is "about max, never seconds".
    let ceiling = max + Duration::from_millis(400);
    for pair in attempts[1..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap <= ceiling, "retry gap {gap:?} exceeds {ceiling:?}");
    }
    h.assert_clean();
}

#[tokio::test]
async fn recovery_timeout_shuts_down() {
    let recovery = Duration::from_secs(1);
    let mut h = Harness::start(
        builder()
            .recovery_timeout(recovery)
            .backoff_max(Duration::from_millis(100)),
        true,
    )
    .await;
    let uuid = {
        h.agent.auto_ack(false);
        h.client.update(running("task-1")).await.unwrap()
    };
    let stopped = Instant::now();
    h.agent.stop().await;
    assert_eq!(h.next().await, ExecutorEvent::Disconnected);
    assert_eq!(
        h.next().await,
        ExecutorEvent::Shutdown {
            reason: ShutdownReason::RecoveryTimeout
        }
    );
    let elapsed = stopped.elapsed();
    assert!(elapsed >= recovery, "shut down after {elapsed:?}");
    assert!(
        elapsed < recovery + Duration::from_secs(5),
        "shut down after {elapsed:?}"
    );
    // Outstanding updates can no longer be acknowledged: no point waiting.
    let started = Instant::now();
    assert!(!h.client.wait_all_acknowledged(WAIT).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(h.agent.updates()[0].uuid(), Some(uuid));
    h.assert_clean();
}

#[tokio::test]
async fn without_checkpointing_a_disconnection_shuts_down() {
    let mut h = Harness::default(false).await;
    h.agent.drop_connection();
    assert_eq!(
        h.next().await,
        ExecutorEvent::Shutdown {
            reason: ShutdownReason::Disconnected
        }
    );
    assert_eq!(h.agent.subscribes().len(), 1, "no reconnection attempt");
    h.assert_clean();
}

#[tokio::test]
async fn bearer_token_on_every_request() {
    let token = "eyJhbGciOiJIUzI1NiJ9.e30.sig";
    let h = Harness::start(builder().token(token), true).await;
    h.client.update(running("t")).await.unwrap();
    h.client.message(b"hello".to_vec()).await.unwrap();
    assert!(h.client.wait_all_acknowledged(WAIT).await);
    let requests = h.agent.requests();
    assert_eq!(requests.len(), 3);
    for request in requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(&*format!("Bearer {token}"))
        );
    }
    h.assert_clean();
}

#[tokio::test]
async fn heartbeat_and_unknown_events_are_ignored() {
    let mut h = Harness::default(true).await;
    h.agent.heartbeat();
    assert!(
        h.agent
            .push_raw(recordio::encode(br#"{"type":"SOMETHING_NEW","x":1}"#))
    );
    assert!(h.agent.push_raw(recordio::encode(br#"{"type":"UNKNOWN"}"#)));
    h.agent.message(b"after".to_vec());
    assert_eq!(h.next().await, ExecutorEvent::Message(b"after".to_vec()));
    assert!(h.agent.connected());
    h.assert_clean();
}

#[tokio::test]
async fn kill_launch_group_error_and_shutdown_events() {
    let mut h = Harness::default(true).await;
    h.agent.kill(
        "task-1",
        Some(KillPolicy::with_grace(Duration::from_secs(3))),
    );
    match h.next().await {
        ExecutorEvent::Kill {
            task_id,
            kill_policy,
        } => {
            assert_eq!(task_id, TaskId::new("task-1"));
            assert_eq!(kill_policy.unwrap().grace(), Some(Duration::from_secs(3)));
        }
        other => panic!("expected Kill, got {other:?}"),
    }
    h.agent.kill("task-2", None);
    assert_eq!(
        h.next().await,
        ExecutorEvent::Kill {
            task_id: TaskId::new("task-2"),
            kill_policy: None
        }
    );

    let group = vec![h.agent.task("a"), h.agent.task("b")];
    h.agent.push(Event::launch_group(group.clone()));
    assert_eq!(h.next().await, ExecutorEvent::LaunchGroup(group));

    h.agent.push(Event::error("agent trouble"));
    assert_eq!(h.next().await, ExecutorEvent::Error("agent trouble".into()));

    h.agent.shutdown();
    assert_eq!(
        h.next().await,
        ExecutorEvent::Shutdown {
            reason: ShutdownReason::Agent
        }
    );
    // The stream stays up for the terminal updates.
    let killed = StatusUpdate::new(TaskId::new("a"), TaskState::TaskKilled);
    h.client.update(killed).await.unwrap();
    assert!(h.client.wait_all_acknowledged(WAIT).await);
    h.assert_clean();
}

#[tokio::test]
async fn agent_refusal_is_an_error_with_its_message() {
    let h = Harness::default(true).await;
    h.agent.respond_with(CallType::Update, 400);
    match h.client.update(running("t")).await {
        Err(MesosError::Agent { status, message }) => {
            assert_eq!(status, 400);
            assert_eq!(message, "injected fault");
        }
        other => panic!("expected an agent error, got {other:?}"),
    }
    assert_eq!(h.client.unacknowledged(), 0, "a refused update is dropped");

    let staging = StatusUpdate::new(TaskId::new("t"), TaskState::TaskStaging);
    assert!(matches!(
        h.client.update(staging).await,
        Err(MesosError::InvalidUpdate(_))
    ));
    assert!(h.agent.updates().is_empty());
    h.assert_clean();
}

#[tokio::test]
async fn framework_messages_both_ways() {
    let mut h = Harness::default(true).await;
    h.client.message(b"to scheduler".to_vec()).await.unwrap();
    assert_eq!(h.agent.messages(), vec![b"to scheduler".to_vec()]);
    h.agent.message(&b"\x00binary\xff"[..]);
    assert_eq!(
        h.next().await,
        ExecutorEvent::Message(b"\x00binary\xff".to_vec())
    );
    h.assert_clean();
}

#[tokio::test]
async fn broken_framing_is_a_disconnection() {
    let mut h = Harness::default(true).await;
    assert!(h.agent.push_raw(&b"garbage\n"[..]));
    assert_eq!(h.next().await, ExecutorEvent::Disconnected);
    assert_eq!(h.next().await, ExecutorEvent::Reconnected);
    h.assert_clean();
}

#[tokio::test]
async fn undecodable_event_is_reported_and_the_stream_continues() {
    let mut h = Harness::default(true).await;
    assert!(h.agent.push_raw(recordio::encode(b"{not json")));
    assert!(matches!(h.next().await, ExecutorEvent::Error(_)));
    h.agent.message(b"still here".to_vec());
    assert_eq!(
        h.next().await,
        ExecutorEvent::Message(b"still here".to_vec())
    );
    assert_eq!(h.agent.subscribes().len(), 1);
    h.assert_clean();
}

#[tokio::test]
async fn refused_subscribe_is_retried() {
    let agent = builder()
        .backoff_max(Duration::from_millis(50))
        .start()
        .await;
    agent.respond_with(CallType::Subscribe, 503);
    agent.respond_with(CallType::Subscribe, 404);
    let sandbox = tempfile::tempdir().unwrap();
    let (_client, mut events) = ExecutorClient::start(agent.agent_env(sandbox.path(), true));
    let first = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, ExecutorEvent::Subscribed(_)), "{first:?}");
    let statuses: Vec<_> = agent.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 404, 200]);
    assert!(agent.rejections().is_empty());
}

#[tokio::test]
async fn unix_domain_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let h = Harness::start(builder().domain_socket(&socket), true).await;
    h.client.update(running("t")).await.unwrap();
    assert!(h.client.wait_all_acknowledged(WAIT).await);
    for request in h.agent.requests() {
        assert!(request.via_unix_socket);
        assert_eq!(request.path, "/slave(1)/api/v1/executor");
    }
    h.assert_clean();
}
