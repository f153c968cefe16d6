//! The executor inside a cgroup standing for the one a Mesos agent makes for it
//! ([`TestCgroup`], real cgroups, root): containers are created under it on dockerd and
//! podman, its memory limit OOM-kills them, `cpuHardLimit` is its CFS quota and is put back
//! when overwritten; with `mesosCgroupIsolation: false`, or a cgroup that cannot be found,
//! containers are where the engine puts them and the tasks run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;
use singularity_test_support::{self as services, TestCgroup};

use crate::docker::{docker, docker_task, running_and_printed};
use crate::support::*;

/// An engine the tests run containers on.
struct Engine {
    socket: PathBuf,
    image: String,
}

impl Engine {
    fn docker() -> Self {
        Self::at(services::docker_socket())
    }

    fn podman() -> Self {
        Self::at(services::podman_socket())
    }

    fn at(socket: PathBuf) -> Self {
        let image = services::test_image_in(&socket);
        Self { socket, image }
    }
}

fn harness(engine: &Engine, extra: &str) -> Harness {
    Harness::new(&format!(
        "idleExecutorShutdownWaitMillis: 2000\nmaxTaskMessageLength: 400\ndockerSocket: {}\n{extra}",
        engine.socket.display()
    ))
}

/// Waits until `read` gives `wanted`; how long that took.
async fn until_equal(read: impl Fn() -> String, wanted: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let value = read();
        if value == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "still {value:?}, not {wanted:?}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn containers_run_inside_the_executors_cgroup_and_their_threads_count(engine: Engine) {
    let cgroup = TestCgroup::create();
    let harness = harness(&engine, "checkThreadsEveryMillis: 200");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn_in_cgroup(&agent, &cgroup, &[]);
    let executor_pid = executor.id().expect("executor pid");

    let id = task_id();
    agent.launch(docker_task(
        &agent,
        &id,
        &json!({"cmd": "sh -c 'sleep 600 & sleep 600 & echo ready; wait'",
                "sigKillProcessesAfterMillis": 500}),
        docker(&engine.image),
    ));
    running_and_printed(&agent, &harness, &id, "ready").await;
    let running = wait_state(&agent, &id, TaskState::TaskRunning).await;
    let pid = running_pid(&running);
    for controller in ["cpu", "cpuacct", "memory", "pids"] {
        assert!(
            cgroup.procs(controller).contains(&pid),
            "container pid {pid} not under {} in {controller}; log:\n{}",
            cgroup.path(),
            harness.stderr()
        );
    }
    // The executor sits in the cgroup itself, the container in one of its own below it.
    assert_eq!(
        cgroup.read("memory", "cgroup.procs"),
        executor_pid.to_string()
    );
    assert!(!cgroup.children("memory").is_empty());
    assert!(
        memory_cgroup(pid).starts_with(&format!("{}/", cgroup.path())),
        "{}",
        memory_cgroup(pid)
    );
    agent.kill(&id, None);
    assert_eq!(
        wait_terminal(&agent, &id).await.state,
        TaskState::TaskKilled
    );

    // The thread limit counts the container's own cgroup below the executor's.
    let threads = task_id();
    agent.launch(docker_task(
        &agent,
        &threads,
        &json!({"cmd": "sh -c 'for i in 1 2 3 4 5 6; do sleep 600 & done; echo forked; wait'",
                "maxTaskThreads": 4, "sigKillProcessesAfterMillis": 500}),
        docker(&engine.image),
    ));
    let status = wait_terminal(&agent, &threads).await;
    assert_eq!(
        status.state,
        TaskState::TaskFailed,
        "{:#?}",
        summary(&agent)
    );
    assert!(
        message(&status).starts_with("Task used ")
            && message(&status).ends_with("threads and was killed (max 4)"),
        "{}",
        message(&status)
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert!(
        harness
            .stderr()
            .contains("containers are created under the executor's cgroup"),
        "{}",
        harness.stderr()
    );
}

async fn a_memory_limit_on_the_executors_cgroup_oom_kills_its_container(engine: Engine) {
    let cgroup = TestCgroup::create();
    let limit = (96 * 1024 * 1024).to_string();
    cgroup.write("memory", "memory.limit_in_bytes", &limit);
    cgroup.write("memory", "memory.memsw.limit_in_bytes", &limit);
    let harness = harness(&engine, "");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn_in_cgroup(&agent, &cgroup, &[]);

    let id = task_id();
    // tail keeps the last lines of a file without newlines: all of it.
    agent.launch(docker_task(
        &agent,
        &id,
        &json!({"cmd": "tail /dev/zero"}),
        docker(&engine.image),
    ));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskFailed,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(
        message(&status),
        "Task ran out of memory and was killed by the OOM killer (code 137)"
    );
    assert_eq!(cgroup.read("memory", "memory.max_usage_in_bytes"), limit);
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_containers_run_inside_the_executors_cgroup_and_their_threads_count() {
    containers_run_inside_the_executors_cgroup_and_their_threads_count(Engine::docker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_containers_run_inside_the_executors_cgroup_and_their_threads_count() {
    containers_run_inside_the_executors_cgroup_and_their_threads_count(Engine::podman()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_on_the_executors_cgroup_oom_kills_its_docker_container() {
    a_memory_limit_on_the_executors_cgroup_oom_kills_its_container(Engine::docker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_on_the_executors_cgroup_oom_kills_its_podman_container() {
    a_memory_limit_on_the_executors_cgroup_oom_kills_its_container(Engine::podman()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_hard_limit_is_the_executors_quota_and_is_put_back_when_overwritten() {
    let engine = Engine::docker();
    let cgroup = TestCgroup::create();
    let harness = harness(&engine, "defaultCfsPeriod: 50000");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn_in_cgroup(&agent, &cgroup, &[]);
    let quota = || cgroup.read("cpu", "cpu.cfs_quota_us");
    let period = || cgroup.read("cpu", "cpu.cfs_period_us");
    assert_eq!(quota(), "-1");

    let plain = task_id();
    agent.launch(task(
        &agent,
        &plain,
        &json!({"cmd": "sleep 600", "cpuHardLimit": 2}),
    ));
    wait_state(&agent, &plain, TaskState::TaskRunning).await;
    assert_eq!(
        (quota(), period()),
        ("100000".to_owned(), "50000".to_owned())
    );

    // As the agent does on a resource update.
    cgroup.write("cpu", "cpu.cfs_quota_us", "150000");
    let restored = until_equal(quota, "100000", Duration::from_secs(1)).await;
    cgroup.write("cpu", "cpu.cfs_period_us", "100000");
    until_equal(period, "50000", Duration::from_secs(1)).await;
    cgroup.write("cpu", "cpu.cfs_quota_us", "-1");
    until_equal(quota, "100000", Duration::from_secs(1)).await;
    eprintln!("quota put back after {restored:?}");
    agent.kill(&plain, None);
    assert_eq!(
        wait_terminal(&agent, &plain).await.state,
        TaskState::TaskKilled
    );

    // A container's limit is its parent's, the executor's cgroup: none of its own.
    cgroup.write("cpu", "cpu.cfs_quota_us", "-1");
    let container = task_id();
    agent.launch(docker_task(
        &agent,
        &container,
        &json!({"cmd": "sh -c 'echo ready; sleep 600'", "cpuHardLimit": 1,
                "sigKillProcessesAfterMillis": 500}),
        docker(&engine.image),
    ));
    running_and_printed(&agent, &harness, &container, "ready").await;
    assert_eq!(quota(), "50000");
    let own = services::docker_cli(&[
        "inspect",
        "-f",
        "{{.HostConfig.CpuQuota}} {{.HostConfig.CgroupParent}}",
        &crate::docker::container_name(&container),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&own.stdout).trim(),
        format!("0 {}", cgroup.path())
    );
    agent.kill(&container, None);
    wait_terminal(&agent, &container).await;
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_isolation_off_containers_are_where_the_engine_puts_them_with_their_own_quota() {
    let engine = Engine::docker();
    let cgroup = TestCgroup::create();
    let harness = harness(&engine, "mesosCgroupIsolation: false");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn_in_cgroup(&agent, &cgroup, &[]);

    let id = task_id();
    agent.launch(docker_task(
        &agent,
        &id,
        &json!({"cmd": "sh -c 'echo ready; sleep 600'", "cpuHardLimit": 1,
                "sigKillProcessesAfterMillis": 500}),
        docker(&engine.image),
    ));
    running_and_printed(&agent, &harness, &id, "ready").await;
    let pid = running_pid(&wait_state(&agent, &id, TaskState::TaskRunning).await);
    assert!(!cgroup.procs("memory").contains(&pid));
    assert!(cgroup.children("memory").is_empty());
    assert!(
        memory_cgroup(pid).starts_with("/docker/"),
        "{}",
        memory_cgroup(pid)
    );
    let own = services::docker_cli(&[
        "inspect",
        "-f",
        "{{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}",
        &crate::docker::container_name(&id),
    ]);
    assert_eq!(String::from_utf8_lossy(&own.stdout).trim(), "100000 100000");
    assert_eq!(cgroup.read("cpu", "cpu.cfs_quota_us"), "-1");
    agent.kill(&id, None);
    wait_terminal(&agent, &id).await;

    // A plain task's limit has nowhere to go: it runs, and the log says so.
    let plain = task_id();
    agent.launch(task(
        &agent,
        &plain,
        &json!({"cmd": "true", "cpuHardLimit": 1}),
    ));
    assert_eq!(
        wait_terminal(&agent, &plain).await.state,
        TaskState::TaskFinished
    );
    assert_eq!(cgroup.read("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert!(
        harness
            .stderr()
            .contains("cpuHardLimit is not applied: mesosCgroupIsolation is off"),
        "{}",
        harness.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cgroup_that_cannot_be_found_is_logged_once_and_the_tasks_run() {
    let engine = Engine::docker();
    let gone = services::unique_name("/se-test-gone");
    let root = tempfile::tempdir().expect("temp dir");
    let file = root.path().join("cgroup");
    std::fs::write(&file, format!("4:memory:{gone}\n1:cpu:{gone}\n0::/\n")).expect("write");
    let harness = harness(&engine, &format!("procCgroupFormat: {}", file.display()));
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);

    for _ in 0..2 {
        let id = task_id();
        agent.launch(docker_task(
            &agent,
            &id,
            &json!({"cmd": "echo hello", "cpuHardLimit": 1}),
            docker(&engine.image),
        ));
        let status = wait_terminal(&agent, &id).await;
        assert_eq!(
            status.state,
            TaskState::TaskFinished,
            "{:#?}",
            summary(&agent)
        );
    }
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    let log = harness.stderr();
    let reasons: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("containers are not created under the executor's cgroup"))
        .collect();
    assert_eq!(reasons.len(), 1, "{log}");
    assert!(
        reasons[0].contains(&format!(
            "the executor's cgroup {gone} (from {})",
            file.display()
        )),
        "{}",
        reasons[0]
    );
    assert!(log.contains("cpuHardLimit is not applied"), "{log}");
}
