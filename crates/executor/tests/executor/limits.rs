//! Thread limit, health-check gated TASK_RUNNING, user switching, open-files limit and
//! profile sourcing, through the real binary.

use std::time::{Duration, Instant};

use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_are_counted_over_the_whole_group_and_the_limit_fails_the_task() {
    let harness = Harness::new(
        "idleExecutorShutdownWaitMillis: 300\ncheckThreadsEveryMillis: 100\nhardKillAfterMillis: 2000",
    );
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let over = task_id();
    let under = task_id();
    // Eight single-threaded children plus the shell: nine threads over the group.
    let many = "for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; wait";
    agent.launch(task(
        &agent,
        &over,
        &json!({"cmd": many, "maxTaskThreads": 5}),
    ));
    agent.launch(task(
        &agent,
        &under,
        &json!({"cmd": "sleep 0.6 & sleep 0.6 & wait", "maxTaskThreads": 5}),
    ));

    let running = wait_state(&agent, &over, TaskState::TaskRunning).await;
    let status = wait_terminal(&agent, &over).await;
    assert_eq!(
        status.state,
        TaskState::TaskFailed,
        "{:#?}",
        summary(&agent)
    );
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("Task used ") && message.ends_with(" threads and was killed (max 5)"),
        "{message}"
    );
    let used: u64 = message["Task used ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a thread count");
    assert!(used > 5 && used <= 9, "{used}");
    assert!(group_alive(running_pid(&running)).is_empty());

    let status = wait_terminal(&agent, &under).await;
    assert_eq!(status.state, TaskState::TaskFinished);
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

fn healthcheck(file: &str) -> serde_json::Value {
    json!({"healthcheckResultFilePath": file, "intervalSeconds": 1, "maxRetries": 1})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_waits_for_the_health_check_file() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 200");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": "sleep 1.2; touch healthy; sleep 0.5",
                "healthcheckOptions": healthcheck("healthy")}),
    ));
    let starting = wait_state(&agent, &id, TaskState::TaskStarting).await;
    let _ = starting;
    let since = Instant::now();
    let running = wait_state(&agent, &id, TaskState::TaskRunning).await;
    assert!(
        since.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        since.elapsed()
    );
    let message = running.message.unwrap_or_default();
    assert!(
        message.starts_with("Task running process sh - (pid: ")
            && message.ends_with(") (health check file found successfully)."),
        "{message}"
    );
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.state, TaskState::TaskFinished);
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_health_check_file_fails_the_task_once() {
    let harness = Harness::new(
        "idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 200\ndefaultHealthcheckBaseTimeoutSeconds: 1",
    );
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": "sleep 100", "healthcheckOptions": healthcheck("never")}),
    ));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.state, TaskState::TaskFailed);
    assert_eq!(
        status.message.as_deref(),
        Some("Task timed out on health checks after 2 seconds (health check file not found).")
    );
    assert_eq!(
        states(&agent, &id),
        vec![TaskState::TaskStarting, TaskState::TaskFailed],
        "one terminal update, no TASK_RUNNING"
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exiting_before_the_health_check_file_counts_by_exit_code() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 200");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let succeeds = task_id();
    let fails = task_id();
    agent.launch(task(
        &agent,
        &succeeds,
        &json!({"cmd": "true", "healthcheckOptions": healthcheck("never")}),
    ));
    agent.launch(task(
        &agent,
        &fails,
        &json!({"cmd": "exit 4", "healthcheckOptions": healthcheck("never")}),
    ));
    let status = wait_terminal(&agent, &succeeds).await;
    assert_eq!(status.state, TaskState::TaskFinished);
    assert_eq!(
        states(&agent, &succeeds),
        vec![
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    let status = wait_terminal(&agent, &fails).await;
    assert_eq!(status.state, TaskState::TaskFailed);
    assert_eq!(
        status.message.as_deref(),
        Some("Process failed with code 4")
    );
    assert_eq!(
        states(&agent, &fails),
        vec![TaskState::TaskStarting, TaskState::TaskFailed]
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

/// A system user created for one test and removed when dropped.
struct TestUser {
    name: String,
}

impl TestUser {
    fn create() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates a user and switches to it: run the tests as root"
        );
        let name = format!(
            "se{}",
            &singularity_test_support::unique_name("u")[2..12].replace('-', "")
        );
        let status = std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", &name])
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name} failed");
        TestUser { name }
    }

    fn uid(&self) -> u32 {
        nix::unistd::User::from_name(&self.name)
            .ok()
            .flatten()
            .expect("the user exists")
            .uid
            .as_raw()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_runs_as_its_user_with_its_open_files_limit() {
    let user = TestUser::create();
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({
            "cmd": "echo uid=$(id -u) user=$USER home=$HOME nofile=$(ulimit -Sn); touch ../tmp/written && echo wrote-tmp",
            "user": user.name,
            "maxOpenFiles": 1234
        }),
    ));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{}",
        harness.service_log(&id)
    );
    let log = harness.service_log(&id);
    assert!(
        log.contains(&format!("uid={} user={}", user.uid(), user.name)),
        "{log}"
    );
    assert!(log.contains("nofile=1234"), "{log}");
    assert!(log.contains("wrote-tmp"), "{log}");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_a_launch_failure() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 200");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": "true", "user": "se-no-such-user"}),
    ));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.state, TaskState::TaskLost);
    assert_eq!(
        status.message,
        Some(format!(
            "Unexpected exception while launching task {id} - user se-no-such-user does not exist"
        ))
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_scripts_are_sourced_only_when_configured() {
    for (source, expected) in [(false, "value=unset"), (true, "value=from-profile")] {
        let harness = Harness::new(&format!(
            "idleExecutorShutdownWaitMillis: 300\nsourceProfileScripts: {source}"
        ));
        let agent = FakeAgent::start("fw-1", "ex-1").await;
        let mut executor = harness.spawn(&agent, true);
        let id = task_id();
        // The artifact would normally bring app/.profile.d; here the task dir is prepared
        // before the launch (the executor keeps what is there).
        let profile_dir = harness.task_dir(&id).join("app/.profile.d");
        std::fs::create_dir_all(&profile_dir).expect("mkdir");
        std::fs::write(
            profile_dir.join("env.sh"),
            "export PROFILE_VALUE=from-profile\n",
        )
        .expect("write");
        agent.launch(task(
            &agent,
            &id,
            &json!({"cmd": "echo value=${PROFILE_VALUE:-unset}"}),
        ));
        let status = wait_terminal(&agent, &id).await;
        assert_eq!(status.state, TaskState::TaskFinished);
        let log = harness.service_log(&id);
        assert!(log.contains(expected), "{source}: {log}");
        assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
        assert_no_rejections(&agent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_do_not_inherit_the_executors_ignored_sigpipe() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let direct = task_id();
    let through_helper = task_id();
    let cmd = "echo sigign=$(grep SigIgn /proc/$$/status | cut -f2)";
    agent.launch(task(&agent, &direct, &json!({"cmd": cmd})));
    agent.launch(task(
        &agent,
        &through_helper,
        &json!({"cmd": cmd, "maxOpenFiles": 512}),
    ));
    for id in [&direct, &through_helper] {
        let status = wait_terminal(&agent, id).await;
        assert_eq!(status.state, TaskState::TaskFinished);
        let log = harness.service_log(id);
        let mask = log
            .trim()
            .strip_prefix("sigign=")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("no mask in {log:?}"));
        let sigpipe = 1_u64 << (13 - 1);
        assert_eq!(mask & sigpipe, 0, "SIGPIPE ignored in {log:?}");
    }
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}
