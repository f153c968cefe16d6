//! Kills, destroys, shutdown and process-group cleanup, through the real binary.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::{KillPolicy, TaskState};

use crate::support::*;

/// Runs until SIGTERM, then exits 0.
const TRAPS_TERM: &str =
    "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
/// Ignores SIGTERM (and so do its children).
const IGNORES_TERM: &str = "trap '' TERM; echo ready; while true; do sleep 0.1; done";
/// Writes when SIGTERM arrived to `../term` (the task directory), then carries on. Its `sleep`
/// children die of the SIGTERM, so the shell runs the trap at once.
const RECORDS_AND_IGNORES_TERM: &str =
    "trap 'date +%s%N > ../term' TERM; echo ready; while true; do sleep 0.1; done";

async fn running(agent: &FakeAgent, harness: &Harness, id: &str) -> u32 {
    let status = wait_state(agent, id, TaskState::TaskRunning).await;
    let pid = running_pid(&status);
    // The trap is set once the script printed "ready".
    let deadline = Instant::now() + SOON;
    while !harness.service_log(id).contains("ready") {
        assert!(Instant::now() < deadline, "the task never got ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_exits_on_sigterm_is_killed_gracefully() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": TRAPS_TERM})));
    let pid = running(&agent, &harness, &id).await;

    agent.kill(&id, None);
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.state, TaskState::TaskKilled);
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("Task killed. Process exited gracefully with code 0 (shutdownTime: "),
        "{message}"
    );
    assert!(harness.service_log(&id).contains("got TERM"));
    assert!(group_alive(pid).is_empty());
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_ignoring_sigterm_gets_sigkill_at_the_grace() {
    const GRACE: Duration = Duration::from_millis(1500);
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": RECORDS_AND_IGNORES_TERM, "sigKillProcessesAfterMillis": 1500}),
    ));
    let pid = running(&agent, &harness, &id).await;

    // The process group dies when SIGKILL lands; watch its leader from a thread polling /proc
    // every 5 ms, started before the KILL so that no moment is missed.
    let watcher = tokio::task::spawn_blocking(move || death_time(pid));
    let pushed_at = SystemTime::now();
    // The executor data's grace wins over the KILL event's policy.
    agent.kill(&id, Some(KillPolicy::with_grace(Duration::from_secs(30))));
    let killed_at = watcher.await.expect("the watcher");
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.state, TaskState::TaskKilled);
    let message = status.message.unwrap_or_default();
    assert!(
        message
            .starts_with("Task killed forcibly after waiting at least 00:01.500 (shutdownTime: "),
        "{message}"
    );

    let term_at = recorded_time(&harness.task_dir(&id).join("term"));
    let since_term = killed_at
        .duration_since(term_at)
        .expect("SIGKILL after SIGTERM");
    let since_push = killed_at
        .duration_since(pushed_at)
        .expect("SIGKILL after KILL");
    let tolerance = Duration::from_millis(100);
    assert!(
        since_term.abs_diff(GRACE) <= tolerance,
        "SIGKILL {since_term:?} after SIGTERM, grace {GRACE:?}"
    );
    assert!(
        since_push.abs_diff(GRACE) <= tolerance,
        "SIGKILL {since_push:?} after the KILL, grace {GRACE:?}"
    );
    assert!(group_alive(pid).is_empty());
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

/// When process `pid` stopped running (gone, or a zombie), polling every 5 ms.
fn death_time(pid: u32) -> SystemTime {
    let deadline = Instant::now() + SOON;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let dead = singularity_executor::run::process::procfs::parse_stat(&stat)
            .is_none_or(|fields| matches!(fields.state, 'Z' | 'X' | 'x'));
        if dead {
            return SystemTime::now();
        }
        assert!(Instant::now() < deadline, "process {pid} never died");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A time the task wrote with `date +%s%N`.
fn recorded_time(path: &std::path::Path) -> SystemTime {
    let text = std::fs::read_to_string(path).expect("the task recorded the time");
    let nanos: u64 = text.trim().parse().expect("nanoseconds since the epoch");
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_kill_only_shortens_the_grace() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nhardKillAfterMillis: 60000");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": IGNORES_TERM})));
    running(&agent, &harness, &id).await;

    agent.kill(&id, Some(KillPolicy::with_grace(Duration::from_secs(30))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shortened_at = Instant::now();
    agent.kill(
        &id,
        Some(KillPolicy::with_grace(Duration::from_millis(800))),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A longer grace does not push the SIGKILL back.
    agent.kill(&id, Some(KillPolicy::with_grace(Duration::from_secs(20))));
    let status = wait_terminal(&agent, &id).await;
    let elapsed = shortened_at.elapsed();
    assert_eq!(status.state, TaskState::TaskKilled);
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Task killed forcibly after waiting at least 00:01.")),
        "{status:?}"
    );
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2800), "{elapsed:?}");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_executor_data_grace_the_kill_policy_then_hard_kill_apply() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nhardKillAfterMillis: 700");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let by_task_policy = task_id();
    let mut info = task(&agent, &by_task_policy, &json!({"cmd": IGNORES_TERM}));
    info.kill_policy = Some(KillPolicy::with_grace(Duration::from_millis(400)));
    agent.launch(info);
    let by_config = task_id();
    agent.launch(task(&agent, &by_config, &json!({"cmd": IGNORES_TERM})));
    running(&agent, &harness, &by_task_policy).await;
    running(&agent, &harness, &by_config).await;

    agent.kill(&by_task_policy, None);
    agent.kill(&by_config, None);
    let status = wait_terminal(&agent, &by_task_policy).await;
    assert!(
        status.message.as_deref().is_some_and(
            |m| m.starts_with("Task killed forcibly after waiting at least 00:00.400 ")
        ),
        "{status:?}"
    );
    let status = wait_terminal(&agent, &by_config).await;
    assert!(
        status.message.as_deref().is_some_and(
            |m| m.starts_with("Task killed forcibly after waiting at least 00:00.700 ")
        ),
        "{status:?}"
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_message_kills_at_once() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": IGNORES_TERM})));
    let pid = running(&agent, &harness, &id).await;

    // A kill for a task this executor does not run changes nothing.
    agent.kill("req-other-1668780000000-1-host-rack", None);
    // A graceful kill in progress (default grace 180 s) is cut short by the destroy.
    agent.kill(&id, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!states(&agent, &id).iter().any(|s| s.is_terminal()));

    let destroyed_at = Instant::now();
    agent.message(destroy_message(&id, "ops@example.com"));
    let status = wait_terminal(&agent, &id).await;
    assert!(destroyed_at.elapsed() < Duration::from_secs(2));
    assert_eq!(status.state, TaskState::TaskKilled);
    let text = status.message.unwrap_or_default();
    assert!(
        text.starts_with("Task killed forcibly by ops@example.com (shutdownTime: "),
        "{text}"
    );
    assert!(group_alive(pid).is_empty());
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_of_a_task_survives_its_kill_or_its_exit() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let forks = task_id();
    agent.launch(task(
        &agent,
        &forks,
        &json!({"cmd": "sh -c 'sleep 1000 & sleep 1000 & wait' & sleep 1000 & echo ready; wait"}),
    ));
    let leaves_children = task_id();
    agent.launch(task(
        &agent,
        &leaves_children,
        &json!({"cmd": "sleep 1000 & sleep 1000 & echo started"}),
    ));

    let pid = running(&agent, &harness, &forks).await;
    let deadline = Instant::now() + SOON;
    while group_alive(pid).len() < 5 {
        assert!(Instant::now() < deadline, "children never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.kill(&forks, None);
    let status = wait_terminal(&agent, &forks).await;
    assert_eq!(status.state, TaskState::TaskKilled, "{status:?}");
    assert_eq!(group_alive(pid), Vec::<u32>::new());

    let running_status = wait_state(&agent, &leaves_children, TaskState::TaskRunning).await;
    let status = wait_terminal(&agent, &leaves_children).await;
    assert_eq!(status.state, TaskState::TaskFinished);
    assert_eq!(group_alive(running_pid(&running_status)), Vec::<u32>::new());

    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_every_task_within_the_grace_period_then_exits() {
    let harness = Harness::new("hardKillAfterMillis: 60000");
    let agent = FakeAgent::builder("fw-1", "ex-1")
        .shutdown_grace(Duration::from_secs(3))
        .start()
        .await;
    let mut executor = harness.spawn(&agent, true);
    let stubborn = task_id();
    let polite = task_id();
    agent.launch(task(&agent, &stubborn, &json!({"cmd": IGNORES_TERM})));
    agent.launch(task(&agent, &polite, &json!({"cmd": TRAPS_TERM})));
    running(&agent, &harness, &stubborn).await;
    running(&agent, &harness, &polite).await;

    let shutdown_at = Instant::now();
    agent.shutdown();
    let status = wait_terminal(&agent, &polite).await;
    assert_eq!(status.state, TaskState::TaskKilled);
    let status = wait_terminal(&agent, &stubborn).await;
    assert_eq!(status.state, TaskState::TaskKilled);
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Task killed forcibly after waiting at least 00:01.500")),
        "{status:?}"
    );
    assert!(shutdown_at.elapsed() < Duration::from_secs(3));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_executor_kills_its_tasks_and_it_exits_after_the_acks() {
    let harness = Harness::new("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": TRAPS_TERM})));
    let pid = running(&agent, &harness, &id).await;

    let executor_pid =
        nix::unistd::Pid::from_raw(i32::try_from(executor.id().expect("pid")).expect("pid fits"));
    nix::sys::signal::kill(executor_pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(status.state, TaskState::TaskKilled);
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert!(group_alive(pid).is_empty());
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_staging_cancels_it() {
    // A download server that accepts connections and never answers keeps staging busy.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": "echo should-not-run", "externalArtifacts": [
            {"name": "slow", "filename": "slow.bin", "url": format!("http://127.0.0.1:{port}/slow.bin")}
        ]}),
    ));
    wait_state(&agent, &id, TaskState::TaskStarting).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    agent.kill(&id, None);
    let status = wait_terminal(&agent, &id).await;
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    assert_eq!(
        status.state,
        TaskState::TaskKilled,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(
        status.message.as_deref(),
        Some("Task killed before service process started")
    );
    assert!(!harness.service_log(&id).contains("should-not-run"));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    drop(listener);
    assert_no_rejections(&agent);
}
