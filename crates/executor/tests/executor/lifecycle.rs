//! The executor binary against the strict fake agent: launch to terminal update, exit codes,
//! launch failures, idle exits, and a lost agent connection (restored, never restored within
//! `MESOS_RECOVERY_TIMEOUT`, or lost without checkpointing).

use std::time::Duration;

use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_to_finished_with_its_output_in_service_log() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({
            "cmd": "echo \"$GREETING in $(pwd)\"; echo to-stderr >&2; echo task=$MESOS_TASK_ID",
            "extraCmdLineArgs": ["&&", "echo", "extra"],
            "user": current_user(),
            "defaultS3Bucket": "task-logs",
            "loggingTag": "sample"
        }),
    ));

    let starting = wait_state(&agent, &id, TaskState::TaskStarting).await;
    assert_eq!(
        starting.message.as_deref(),
        Some(
            format!(
                "Staging files... (executor pid: {})",
                executor.id().expect("pid")
            )
            .as_str()
        )
    );
    let running = wait_state(&agent, &id, TaskState::TaskRunning).await;
    assert!(
        running
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Task running process sh - (pid: ")),
        "{running:?}"
    );
    let finished = wait_terminal(&agent, &id).await;
    assert_eq!(
        finished.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(
        finished.message.as_deref(),
        Some("Process exited normally with code 0")
    );
    assert_eq!(
        states(&agent, &id),
        vec![
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );

    let task_dir = harness.task_dir(&id);
    let log = harness.service_log(&id);
    assert!(
        log.contains(&format!(
            "hello from the deploy in {}",
            task_dir.join("app").display()
        )),
        "{log}"
    );
    assert!(log.contains("to-stderr\n"), "{log}");
    assert!(log.contains(&format!("task={id}\n")), "{log}");
    assert!(log.contains("extra\n"), "{log}");
    for dir in ["app", "tmp", "logs"] {
        assert!(task_dir.join(dir).is_dir(), "{dir} missing");
    }
    let definition: serde_json::Value = serde_json::from_slice(
        &std::fs::read(harness.task_definitions.join(format!("{id}.task.json")))
            .expect("task definition"),
    )
    .expect("json");
    assert_eq!(definition["taskId"], json!(id));
    assert_eq!(
        definition["executorPid"],
        json!(executor.id().expect("pid").to_string())
    );

    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    // Log metadata rewritten at the end (before the executor exits), so the uploader
    // ships the logs now.
    let upload: serde_json::Value = serde_json::from_slice(
        &std::fs::read(harness.s3_metadata.join(format!("{id}-default.s3.json")))
            .expect("upload metadata"),
    )
    .expect("json");
    assert_eq!(upload["s3Bucket"], json!("task-logs"));
    assert_eq!(upload["finished"], json!(true));
    assert_eq!(upload["uploadImmediately"], json!(true));
    assert_eq!(
        std::fs::read_dir(&harness.tail_metadata)
            .expect("tail metadata dir")
            .count(),
        1
    );

    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_decide_between_finished_and_failed() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let failing = task_id();
    let accepted = task_id();
    let zero_not_listed = task_id();
    agent.launch(task(&agent, &failing, &json!({"cmd": "exit 3"})));
    agent.launch(task(
        &agent,
        &accepted,
        &json!({"cmd": "exit 3", "successfulExitCodes": [0, 3]}),
    ));
    agent.launch(task(
        &agent,
        &zero_not_listed,
        &json!({"cmd": "true", "successfulExitCodes": [1]}),
    ));

    let status = wait_terminal(&agent, &failing).await;
    assert_eq!(status.state, TaskState::TaskFailed);
    assert_eq!(
        status.message.as_deref(),
        Some("Process failed with code 3")
    );
    let status = wait_terminal(&agent, &accepted).await;
    assert_eq!(status.state, TaskState::TaskFinished);
    assert_eq!(
        status.message.as_deref(),
        Some("Process exited normally with code 3")
    );
    let status = wait_terminal(&agent, &zero_not_listed).await;
    assert_eq!(status.state, TaskState::TaskFailed);
    assert_eq!(
        status.message.as_deref(),
        Some("Process failed with code 0")
    );

    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_missing_data_is_task_lost_with_singularitys_message() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 200");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let raw_command = task_id();
    let mut info = agent.task(&raw_command);
    info.data = Some(b"./run.sh --port 8080".to_vec());
    agent.launch(info);
    let no_data = task_id();
    agent.launch(agent.task(&no_data));

    let status = wait_terminal(&agent, &raw_command).await;
    assert_eq!(status.state, TaskState::TaskLost);
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "Unexpected exception while launching task {raw_command} - invalid SingularityTaskExecutorData"
        )),
        "{message}"
    );
    let status = wait_terminal(&agent, &no_data).await;
    assert_eq!(status.state, TaskState::TaskLost);
    assert_eq!(
        status.message.as_deref(),
        Some(
            format!(
                "Unexpected exception while launching task {no_data} - TaskInfo has no data (SingularityTaskExecutorData expected)"
            )
            .as_str()
        )
    );
    assert_eq!(states(&agent, &raw_command), vec![TaskState::TaskLost]);

    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_cut_to_max_task_message_length() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 20");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": "exit 12"})));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.message.as_deref(), Some("Process failed with "));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_assigned_port_fails_the_launch() {
    let harness = Harness::new(
        "idleExecutorShutdownWaitMillis: 300\nverifyAssignedPorts: true\nmaxTaskMessageLength: 200",
    );
    let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).expect("bind");
    let port = u64::from(listener.local_addr().expect("addr").port());
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let mut info = task(&agent, &id, &json!({"cmd": "true"}));
    info.resources
        .push(singularity_mesos::types::Resource::ranges(
            "ports",
            [(port, port)],
        ));
    agent.launch(info);
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.state, TaskState::TaskLost);
    assert_eq!(
        status.message,
        Some(format!(
            "Unexpected exception while launching task {id} - Assigned port {port} was already in use"
        ))
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    drop(listener);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_task_the_executor_exits_after_the_initial_idle_wait() {
    let harness = Harness::new("initialIdleExecutorShutdownWaitMillis: 700");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let started = std::time::Instant::now();
    let mut executor = harness.spawn(&agent, true);
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
    assert!(agent.updates().is_empty());
    assert!(harness.stderr().contains("idle"), "{}", harness.stderr());
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_task_cancels_the_idle_exit() {
    let harness = Harness::new(
        "initialIdleExecutorShutdownWaitMillis: 400\nidleExecutorShutdownWaitMillis: 400",
    );
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let first = task_id();
    agent.launch(task(&agent, &first, &json!({"cmd": "sleep 0.6"})));
    wait_terminal(&agent, &first).await;
    // Within the idle wait after the first task, a second one keeps the executor alive.
    let second = task_id();
    agent.launch(task(&agent, &second, &json!({"cmd": "sleep 0.6"})));
    let status = wait_terminal(&agent, &second).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_task_is_restored_with_the_unacknowledged_updates() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    assert!(agent.wait_for_subscribes(1, SOON).await);
    agent.auto_ack(false);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": "sleep 3; echo done"})));
    let running = wait_state(&agent, &id, TaskState::TaskRunning).await;
    let pid = running_pid(&running);

    agent.drop_connection();
    assert!(
        agent.wait_for_subscribes(2, SOON).await,
        "{}",
        harness.stderr()
    );
    let resubscribe = agent.subscribes()[1]
        .subscribe
        .clone()
        .expect("a SUBSCRIBE payload");
    let resent: Vec<TaskState> = resubscribe
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.state)
        .collect();
    assert_eq!(
        resent[..2],
        [TaskState::TaskStarting, TaskState::TaskRunning],
        "{resent:?}"
    );
    assert_eq!(
        resubscribe.unacknowledged_updates[1].status.uuid, running.uuid,
        "the same update, not a new one"
    );
    assert_eq!(
        resubscribe
            .unacknowledged_tasks
            .iter()
            .map(|t| t.task_id.value.clone())
            .collect::<Vec<_>>(),
        vec![id.clone()]
    );
    // The task kept running across the reconnection.
    assert!(!group_alive(pid).is_empty());

    agent.auto_ack(true);
    agent.ack_all();
    let finished = wait_terminal(&agent, &id).await;
    assert_eq!(finished.state, TaskState::TaskFinished);
    agent.ack_all();
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert!(harness.service_log(&id).contains("done"));
    assert_no_rejections(&agent);
}

/// Runs until SIGTERM, then exits 0.
const TRAPS_TERM: &str =
    "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done";

/// Waits until the task printed "ready" (its trap is set).
async fn wait_ready(harness: &Harness, id: &str) {
    let deadline = std::time::Instant::now() + SOON;
    while !harness.service_log(id).contains("ready") {
        assert!(
            std::time::Instant::now() < deadline,
            "the task never got ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_returns_ends_the_executor_after_the_recovery_timeout() {
    let harness = Harness::new("");
    let agent = FakeAgent::builder("fw-1", "ex-1")
        .recovery_timeout(Duration::from_secs(2))
        .backoff_max(Duration::from_millis(200))
        .start()
        .await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": TRAPS_TERM})));
    let pid = running_pid(&wait_state(&agent, &id, TaskState::TaskRunning).await);
    wait_ready(&harness, &id).await;

    let lost_at = std::time::Instant::now();
    agent.stop().await;
    // Until the recovery timeout the task keeps running while the executor reconnects.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!group_alive(pid).is_empty(), "{}", harness.stderr());
    assert!(!harness.service_log(&id).contains("got TERM"));

    // Then it kills its task and exits 1: the TASK_KILLED can never be acknowledged.
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 1);
    let elapsed = lost_at.elapsed();
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(
        harness.service_log(&id).contains("got TERM"),
        "{}",
        harness.service_log(&id)
    );
    assert!(group_alive(pid).is_empty());
    let stderr = harness.stderr();
    assert!(
        stderr.contains("no new subscription within the recovery timeout"),
        "{stderr}"
    );
    assert_eq!(
        states(&agent, &id),
        vec![TaskState::TaskStarting, TaskState::TaskRunning]
    );
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checkpointing_a_dropped_connection_kills_the_tasks_and_exits_at_once() {
    let harness = Harness::new("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, false);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": TRAPS_TERM})));
    let pid = running_pid(&wait_state(&agent, &id, TaskState::TaskRunning).await);
    wait_ready(&harness, &id).await;

    let dropped_at = std::time::Instant::now();
    agent.drop_connection();
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 1);
    let elapsed = dropped_at.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert!(
        harness.service_log(&id).contains("got TERM"),
        "{}",
        harness.service_log(&id)
    );
    assert!(group_alive(pid).is_empty());
    // No attempt to subscribe again, and no call after the disconnection (Mesos' library
    // drops calls when not subscribed).
    assert_eq!(agent.subscribes().len(), 1);
    assert_eq!(
        states(&agent, &id),
        vec![TaskState::TaskStarting, TaskState::TaskRunning]
    );
    let stderr = harness.stderr();
    assert!(
        stderr.contains("disconnected from the agent without checkpointing"),
        "{stderr}"
    );
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_mesos_environment_the_executor_exits_1() {
    let harness = Harness::new("");
    let mut command = std::process::Command::new(EXECUTOR);
    command
        .arg("--config-dir")
        .arg(&harness.config_dir)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .current_dir(&harness.sandbox);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MESOS_") {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not started by a Mesos agent"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_exit_codes() {
    let harness = Harness::new("");
    let ok = std::process::Command::new(EXECUTOR)
        .arg("--config-dir")
        .arg(&harness.config_dir)
        .arg("--check-config")
        .env_remove("SINGULARITY_CONFIG_DIR")
        .output()
        .expect("run");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("globalTaskDefinitionDirectory"));

    std::fs::write(
        harness.config_dir.join("singularity.executor.yaml"),
        "globalTaskDefinitionDirectory: /nonexistent/se-test\nhardKillAfterMillis: soon\n",
    )
    .expect("write");
    let bad = std::process::Command::new(EXECUTOR)
        .arg("--config-dir")
        .arg(&harness.config_dir)
        .arg("--check-config")
        .env_remove("SINGULARITY_CONFIG_DIR")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("hardKillAfterMillis"), "{stderr}");
    assert!(stderr.contains("defaultRunAsUser"), "{stderr}");

    // Running with the invalid configuration exits 78 as well, before any work.
    let run = std::process::Command::new(EXECUTOR)
        .arg("--config-dir")
        .arg(&harness.config_dir)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(78));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_the_agent_refuses_ends_the_executor_with_code_4() {
    let harness = Harness::new("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    assert!(agent.wait_for_subscribes(1, SOON).await);
    let id = task_id();
    agent.respond_with(singularity_mesos::CallType::Update, 400);
    agent.launch(task(&agent, &id, &json!({"cmd": "sleep 100"})));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 4);
    assert!(
        harness
            .stderr()
            .contains("the agent refused a status update"),
        "{}",
        harness.stderr()
    );
    // The task did not outlive its executor.
    let pgids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.contains(&id))
        })
        .collect();
    assert!(pgids.is_empty(), "task processes left: {pgids:?}");
    assert_no_rejections(&agent);
}
