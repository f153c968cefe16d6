//! Docker tasks through the real executor binary, the strict fake agent and the real engine
//! of `scripts/services.sh` (dockerd, the registry on 127.0.0.1:5000, `local/busybox:1`).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use singularity_common::naming;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::types::{
    ContainerType, EnvironmentVariable, Parameter, PortMapping, Volume,
};
use singularity_mesos::{ContainerInfo, DockerInfo, TaskInfo, TaskState};
use singularity_test_support as services;

use crate::support::*;

/// Executor settings every test here uses, plus `extra` lines. The idle exit waits long
/// enough for the docker CLI checks a test runs between two launches.
fn harness(extra: &str) -> Harness {
    harness_idle(3_000, extra)
}

/// [`harness`] with the executor exiting `idle_ms` after its last task. These executors do
/// not run in a cgroup of their own (`cgroups.rs` tests the ones that do), so containers are
/// where the engine puts them.
fn harness_idle(idle_ms: u64, extra: &str) -> Harness {
    Harness::new(&format!(
        "idleExecutorShutdownWaitMillis: {idle_ms}\nmaxTaskMessageLength: 400\ndockerSocket: {}\n\
         mesosCgroupIsolation: false\n{extra}",
        services::docker_socket().display()
    ))
}

pub(crate) fn docker(image: &str) -> DockerInfo {
    DockerInfo {
        image: image.to_owned(),
        network: Some("HOST".to_owned()),
        port_mappings: Vec::new(),
        privileged: None,
        parameters: Vec::new(),
        force_pull_image: None,
        volume_driver: None,
    }
}

/// A Docker task running `cmd` in `docker`'s image.
pub(crate) fn docker_task(
    agent: &FakeAgent,
    id: &str,
    data: &Value,
    docker: DockerInfo,
) -> TaskInfo {
    docker_task_with_volumes(agent, id, data, docker, Vec::new())
}

fn docker_task_with_volumes(
    agent: &FakeAgent,
    id: &str,
    data: &Value,
    docker: DockerInfo,
    volumes: Vec<Volume>,
) -> TaskInfo {
    let mut task = task(agent, id, data);
    task.container = Some(ContainerInfo {
        kind: Some(ContainerType::Docker),
        volumes,
        hostname: None,
        docker: Some(docker),
        mesos: None,
        network_infos: Vec::new(),
        linux_info: None,
        rlimit_info: None,
        tty_info: None,
    });
    task
}

pub(crate) fn container_name(id: &str) -> String {
    naming::container_name(naming::DEFAULT_DOCKER_PREFIX, id)
}

/// Whether the engine has a container of that name, running or not.
fn container_exists(name: &str) -> bool {
    let output = services::docker_cli(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")]);
    assert!(output.status.success(), "{output:?}");
    !output.stdout.is_empty()
}

fn parameter(key: &str, value: &str) -> Parameter {
    Parameter {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

/// Waits for the task's RUNNING and for `needle` in its service log.
pub(crate) async fn running_and_printed(
    agent: &FakeAgent,
    harness: &Harness,
    id: &str,
    needle: &str,
) {
    wait_state(agent, id, TaskState::TaskRunning).await;
    let deadline = Instant::now() + SOON;
    while !harness.service_log(id).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "the container never printed {needle:?}; log: {:?}",
            harness.service_log(id)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Launches a container of the test image running `data`'s command and waits until it is
/// running and has printed `ready`; its task id.
async fn launch_ready(agent: &FakeAgent, harness: &Harness, data: &Value) -> String {
    let id = task_id();
    agent.launch(docker_task(
        agent,
        &id,
        data,
        docker(&services::test_image()),
    ));
    running_and_printed(agent, harness, &id, "ready").await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_hello_world_deploy_runs_and_its_exit_code_propagates() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let image = services::test_image();

    let hello = task_id();
    agent.launch(docker_task(
        &agent,
        &hello,
        &json!({"cmd": "echo hello from the container"}),
        docker(&image),
    ));
    let status = wait_terminal(&agent, &hello).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(message(&status), "Process exited normally with code 0");
    assert_eq!(harness.service_log(&hello), "hello from the container\n");
    let running = wait_state(&agent, &hello, TaskState::TaskRunning).await;
    assert!(
        message(&running).starts_with("Task running process docker - (pid: "),
        "{}",
        message(&running)
    );
    // Announced as Singularity does for every registry image; present, so not pulled.
    assert!(
        summary(&agent)
            .iter()
            .any(|(_, m)| m.starts_with("Pulling image... (executor pid: "))
    );
    assert!(harness.stderr().contains("image present; not pulled"));
    let described: Value = serde_json::from_slice(
        &std::fs::read(harness.task_dir(&hello).join("docker_image.json")).expect("image json"),
    )
    .expect("json");
    assert!(
        described[0]["Id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:"))
    );
    assert!(!container_exists(&container_name(&hello)));

    let failing = task_id();
    agent.launch(docker_task(
        &agent,
        &failing,
        &json!({"cmd": "sh -c 'exit 3'"}),
        docker(&image),
    ));
    let status = wait_terminal(&agent, &failing).await;
    assert_eq!(status.state, TaskState::TaskFailed);
    assert_eq!(message(&status), "Process failed with code 3");
    assert!(!container_exists(&container_name(&failing)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_gets_the_task_env_intact_the_sandbox_and_its_working_directory() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let tricky = "line one\nline 'two' \"three\" `four` $HOME";
    let mut task = docker_task(
        &agent,
        &id,
        &json!({"cmd": "sh -c 'printf %s \"$TRICKY\" > $MESOS_SANDBOX/tricky.out; env > $MESOS_SANDBOX/env.out; pwd > $MESOS_SANDBOX/pwd.out'"}),
        docker(&services::test_image()),
    );
    let environment = task
        .executor
        .as_mut()
        .and_then(|e| e.command.as_mut())
        .and_then(|c| c.environment.as_mut())
        .expect("environment");
    environment.variables.push(EnvironmentVariable {
        name: "TRICKY".to_owned(),
        kind: None,
        value: Some(tricky.to_owned()),
        secret: None,
    });
    agent.launch(task);
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );

    let dir = harness.task_dir(&id);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    assert_eq!(read("tricky.out"), tricky);
    assert_eq!(read("pwd.out"), "/mnt/mesos/sandbox/app\n");
    let env = read("env.out");
    for line in [
        "MESOS_SANDBOX=/mnt/mesos/sandbox".to_owned(),
        "LOG_DIR=/mnt/mesos/sandbox/logs".to_owned(),
        "LOG_HOME=/mnt/mesos/sandbox/logs".to_owned(),
        format!("MESOS_TASK_ID={id}"),
        format!("HOST_SANDBOX_DIR={}", dir.display()),
        "GREETING=hello from the deploy".to_owned(),
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }
    // The executor's own environment stays outside.
    assert!(!env.contains("RUST_LOG="), "{env}");
    assert!(!env.contains("MESOS_AGENT_ENDPOINT="), "{env}");
    assert!(!container_exists(&container_name(&id)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_port_mapping_is_reachable_on_localhost_and_volumes_keep_their_modes() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();

    let volumes_root = harness.root.path().join("volumes");
    let ro = volumes_root.join("ro");
    let rw = volumes_root.join("rw");
    std::fs::create_dir_all(&ro).expect("ro dir");
    std::fs::create_dir_all(&rw).expect("rw dir");
    std::fs::write(ro.join("in.txt"), "from the host\n").expect("ro file");
    let www = harness.root.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "pong\n").expect("index");

    let host_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("addr").port()
    };
    let mut info = docker(&services::test_image());
    info.network = Some("BRIDGE".to_owned());
    info.port_mappings = vec![PortMapping {
        host_port: u32::from(host_port),
        container_port: 8080,
        protocol: Some("tcp".to_owned()),
    }];
    let script = "cat /ro/in.txt > /rw/out.txt; \
                  if touch /ro/x 2>/dev/null; then echo writable; else echo read-only; fi > /rw/ro-check; \
                  echo serving; exec httpd -f -p 8080 -h /www";
    let volume = |container: &str, host: &std::path::Path, mode: &str| Volume {
        container_path: container.to_owned(),
        host_path: Some(host.display().to_string()),
        mode: Some(mode.to_owned()),
        image: None,
        source: None,
    };
    agent.launch(docker_task_with_volumes(
        &agent,
        &id,
        &json!({"cmd": format!("sh -c '{script}'"), "sigKillProcessesAfterMillis": 1000}),
        info,
        vec![
            volume("/ro", &ro, "RO"),
            volume("/rw", &rw, "RW"),
            volume("/www", &www, "RO"),
        ],
    ));
    running_and_printed(&agent, &harness, &id, "serving").await;
    assert!(container_exists(&container_name(&id)));

    let deadline = Instant::now() + SOON;
    let body = loop {
        let attempt = TcpStream::connect(("127.0.0.1", host_port)).and_then(|mut stream| {
            stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            stream.read_to_string(&mut body)?;
            Ok(body)
        });
        match attempt {
            Ok(body) if body.contains("pong") => break body,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("port {host_port} never answered: {other:?}"),
        }
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert_eq!(
        std::fs::read_to_string(rw.join("out.txt")).expect("rw write"),
        "from the host\n"
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("ro-check")).expect("check"),
        "read-only\n"
    );
    assert!(!ro.join("x").exists());

    agent.kill(&id, None);
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskKilled,
        "{:#?}",
        summary(&agent)
    );
    assert!(!container_exists(&container_name(&id)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

/// Runs until SIGTERM, then exits 0.
const TRAPS_TERM: &str =
    "sh -c 'trap \"echo got TERM; exit 0\" TERM; echo ready; while true; do sleep 0.1; done'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_trapping_sigterm_is_killed_gracefully_at_once() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = launch_ready(&agent, &harness, &json!({"cmd": TRAPS_TERM})).await;
    let killed_at = Instant::now();
    agent.kill(&id, None);
    let status = wait_terminal(&agent, &id).await;
    let elapsed = killed_at.elapsed();
    assert_eq!(
        status.state,
        TaskState::TaskKilled,
        "{:#?}",
        summary(&agent)
    );
    assert!(
        message(&status).starts_with("Task killed. Process exited gracefully with code 0"),
        "{}",
        message(&status)
    );
    assert!(harness.service_log(&id).contains("got TERM"));
    // SIGTERM went out at once, not after a polling interval.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(!container_exists(&container_name(&id)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_ignoring_sigterm_is_killed_at_the_grace() {
    // dockerStopTimeout is the grace when the task sets none.
    let harness = harness("dockerStopTimeout: 5");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let image = services::test_image();

    // PID 1 without a handler ignores SIGTERM.
    let with_grace = task_id();
    agent.launch(docker_task(
        &agent,
        &with_grace,
        &json!({"cmd": "sh -c 'echo ready; exec sleep 600'", "sigKillProcessesAfterMillis": 1500}),
        docker(&image),
    ));
    running_and_printed(&agent, &harness, &with_grace, "ready").await;
    let killed_at = Instant::now();
    agent.kill(&with_grace, None);
    let status = wait_terminal(&agent, &with_grace).await;
    let elapsed = killed_at.elapsed();
    assert_eq!(status.state, TaskState::TaskKilled);
    assert!(
        message(&status)
            .starts_with("Task killed forcibly after waiting at least 00:01.500 (shutdownTime: "),
        "{}",
        message(&status)
    );
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(3500), "{elapsed:?}");
    assert!(!container_exists(&container_name(&with_grace)));

    let default_grace = task_id();
    agent.launch(docker_task(
        &agent,
        &default_grace,
        &json!({"cmd": "sh -c 'echo ready; exec sleep 600'"}),
        docker(&image),
    ));
    running_and_printed(&agent, &harness, &default_grace, "ready").await;
    let killed_at = Instant::now();
    agent.kill(&default_grace, None);
    let status = wait_terminal(&agent, &default_grace).await;
    let elapsed = killed_at.elapsed();
    assert!(
        message(&status).starts_with("Task killed forcibly after waiting at least 00:05.0 "),
        "{}",
        message(&status)
    );
    assert!(elapsed >= Duration::from_secs(5), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert!(!container_exists(&container_name(&default_grace)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_memory_container_fails_saying_so_and_the_thread_limit_holds() {
    let harness = harness("checkThreadsEveryMillis: 200");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let image = services::test_image();

    let oom = task_id();
    let mut info = docker(&image);
    info.parameters = vec![parameter("memory", "16m")];
    agent.launch(docker_task(
        &agent,
        &oom,
        &json!({"cmd": "tail /dev/zero"}),
        info,
    ));
    let status = wait_terminal(&agent, &oom).await;
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
    assert!(!container_exists(&container_name(&oom)));

    let threads = task_id();
    agent.launch(docker_task(
        &agent,
        &threads,
        &json!({"cmd": "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 600 & done; echo forked; wait'",
                "maxTaskThreads": 5, "sigKillProcessesAfterMillis": 500}),
        docker(&image),
    ));
    let status = wait_terminal(&agent, &threads).await;
    assert_eq!(
        status.state,
        TaskState::TaskFailed,
        "{:#?}",
        summary(&agent)
    );
    assert!(
        message(&status).starts_with("Task used 1")
            && message(&status).ends_with("threads and was killed (max 5)"),
        "{}",
        message(&status)
    );
    assert!(!container_exists(&container_name(&threads)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_pull_downloads_from_the_registry_and_a_missing_tag_fails_the_task() {
    let harness = harness("maxDockerPullAttempts: 3");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let registry = services::registry();

    let pulled = task_id();
    let mut info = docker(&format!("docker://{registry}/test/busybox:1"));
    info.force_pull_image = Some(true);
    agent.launch(docker_task(
        &agent,
        &pulled,
        &json!({"cmd": "echo pulled and ran"}),
        info,
    ));
    let status = wait_terminal(&agent, &pulled).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(harness.service_log(&pulled), "pulled and ran\n");
    let states: Vec<(String, String)> = summary(&agent);
    let pulling = states
        .iter()
        .position(|(s, m)| {
            s == "TASK_STARTING" && m.starts_with("Pulling image... (executor pid: ")
        })
        .expect("a Pulling image update");
    let staging = states
        .iter()
        .position(|(s, m)| s == "TASK_STARTING" && m.starts_with("Staging files..."))
        .expect("a Staging files update");
    assert!(pulling < staging, "{states:#?}");
    assert!(
        harness.stderr().contains("image pulled"),
        "{}",
        harness.stderr()
    );

    let missing = task_id();
    agent.launch(docker_task(
        &agent,
        &missing,
        &json!({"cmd": "echo never"}),
        docker(&format!("{registry}/test/busybox:no-such-tag")),
    ));
    let status = wait_terminal(&agent, &missing).await;
    assert_eq!(
        status.state,
        TaskState::TaskFailed,
        "{:#?}",
        summary(&agent)
    );
    let text = message(&status);
    assert!(
        text.starts_with(&format!(
            "Could not pull docker image {registry}/test/busybox:no-such-tag: "
        )),
        "{text}"
    );
    assert!(
        text.contains("manifest unknown") || text.contains("not found"),
        "{text}"
    );
    // A missing tag is the registry's final answer: one attempt, not three.
    assert_eq!(
        harness.stderr().matches("pull failed").count(),
        1,
        "{}",
        harness.stderr()
    );
    assert!(!container_exists(&container_name(&missing)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

/// A new image with `/marker` holding `marker`, saved as a `docker save` tarball and removed
/// from the engine; returns the tarball bytes.
fn saved_image_without_registry(marker: &str) -> Vec<u8> {
    let image = services::test_image();
    let container = services::unique_name("se-test-archive");
    let tag = format!("se-test/{}:1", services::unique_name("archive"));
    let create = services::docker_cli(&[
        "create",
        "--name",
        &container,
        &image,
        "sh",
        "-c",
        &format!("echo {marker} > /marker"),
    ]);
    assert!(create.status.success(), "{create:?}");
    assert!(
        services::docker_cli(&["start", "-a", &container])
            .status
            .success()
    );
    assert!(
        services::docker_cli(&["commit", &container, &tag])
            .status
            .success()
    );
    assert!(
        services::docker_cli(&["rm", "-f", &container])
            .status
            .success()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let tarball = dir.path().join("image.tar");
    let saved = services::docker_cli(&["save", "-o", &tarball.display().to_string(), &tag]);
    assert!(saved.status.success(), "{saved:?}");
    assert!(services::docker_cli(&["rmi", "-f", &tag]).status.success());
    std::fs::read(&tarball).expect("tarball")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_archive_artifact_is_loaded_once_without_any_registry() {
    let marker = services::unique_name("marker");
    let tarball = {
        let marker = marker.clone();
        tokio::task::spawn_blocking(move || saved_image_without_registry(&marker))
            .await
            .expect("image saved")
    };
    // The second LAUNCH carries the tarball too: give it time to arrive.
    let harness = harness_idle(5_000, "");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let data = json!({
        "cmd": "cat /marker",
        "embeddedArtifacts": [{"name": "image", "filename": "image.tar",
                               "targetFolderRelativeToTask": "images",
                               "content": base64(&tarball)}]
    });

    let first = task_id();
    agent.launch(docker_task(
        &agent,
        &first,
        &data,
        docker("docker-archive://images/image.tar"),
    ));
    let status = wait_terminal(&agent, &first).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(harness.service_log(&first), format!("{marker}\n"));
    assert!(harness.stderr().contains("archive image loaded"));

    let second = task_id();
    agent.launch(docker_task(
        &agent,
        &second,
        &data,
        docker("docker-archive://images/image.tar"),
    ));
    let status = wait_terminal(&agent, &second).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert!(
        harness
            .stderr()
            .contains("archive image present; not loaded")
    );
    assert_eq!(harness.stderr().matches("archive image loaded").count(), 1);
    assert!(!container_exists(&container_name(&first)));
    assert!(!container_exists(&container_name(&second)));

    let id = singularity_containers::image::archive_image_id(
        &harness.task_dir(&second).join("images/image.tar"),
    )
    .expect("manifest");
    assert!(services::docker_cli(&["rmi", "-f", &id]).status.success());
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_schemes_and_parameters_fail_the_task_naming_them() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);

    let scheme = task_id();
    agent.launch(docker_task(
        &agent,
        &scheme,
        &json!({"cmd": "true"}),
        docker("oci://thing"),
    ));
    let status = wait_terminal(&agent, &scheme).await;
    assert_eq!(status.state, TaskState::TaskFailed);
    assert_eq!(message(&status), "unsupported image scheme `oci://`");

    let parameter_task = task_id();
    let mut info = docker(&services::test_image());
    info.parameters = vec![parameter("memory", "32m"), parameter("volumes-from", "db")];
    agent.launch(docker_task(
        &agent,
        &parameter_task,
        &json!({"cmd": "true"}),
        info,
    ));
    let status = wait_terminal(&agent, &parameter_task).await;
    assert_eq!(status.state, TaskState::TaskFailed);
    assert_eq!(
        message(&status),
        "unsupported docker parameter --volumes-from"
    );
    assert!(!container_exists(&container_name(&parameter_task)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_executor_stops_a_container_like_a_kill() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = launch_ready(&agent, &harness, &json!({"cmd": TRAPS_TERM})).await;
    assert!(container_exists(&container_name(&id)));
    let pid = executor.id().expect("executor pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskKilled,
        "{:#?}",
        summary(&agent)
    );
    assert!(harness.service_log(&id).contains("got TERM"));
    wait_exit(&mut executor, SOON, &harness).await;
    assert!(!container_exists(&container_name(&id)));
}

/// Runs one forced pull of `reference` through an executor with `settings`; its terminal
/// update.
async fn pull_with(
    settings: String,
    env: Vec<(String, String)>,
    reference: String,
) -> singularity_mesos::TaskStatus {
    let harness = harness(&settings);
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut executor = harness.spawn_with_env(&agent, true, &env);
    let id = task_id();
    let mut info = docker(&reference);
    info.force_pull_image = Some(true);
    agent.launch(docker_task(
        &agent,
        &id,
        &json!({"cmd": "echo pulled"}),
        info,
    ));
    let status = wait_terminal(&agent, &id).await;
    if status.state == TaskState::TaskFinished {
        assert_eq!(harness.service_log(&id), "pulled\n");
    }
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_use_the_configured_registry_credentials() {
    let (reference, refused) = pull_with_each_credential(pull_with).await;
    let text = message(&refused);
    assert!(
        text.starts_with(&format!("Could not pull docker image {reference}: ")),
        "{text}"
    );
    assert!(text.contains("no basic auth credentials"), "{text}");
    services::docker_cli(&["rmi", "-f", &reference]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_limits_from_the_task_resources_when_configured() {
    let harness = harness("dockerLimitsFromResources: true");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let mut task = docker_task(
        &agent,
        &id,
        &json!({"cmd": "sh -c 'echo ready; exec sleep 600'", "maxTaskThreads": 50,
                "sigKillProcessesAfterMillis": 500}),
        docker(&services::test_image()),
    );
    task.resources = vec![
        singularity_mesos::types::Resource::scalar("cpus", 0.5),
        singularity_mesos::types::Resource::scalar("mem", 48.0),
    ];
    agent.launch(task);
    running_and_printed(&agent, &harness, &id, "ready").await;
    let inspect = services::docker_cli(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
        &container_name(&id),
    ]);
    assert!(inspect.status.success(), "{inspect:?}");
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        format!("{0} {0} 500000000 50", 48 * 1024 * 1024)
    );
    agent.kill(&id, None);
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskKilled,
        "{:#?}",
        summary(&agent)
    );
    assert!(!container_exists(&container_name(&id)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
}

#[test]
fn a_standalone_deploy_with_container_info_runs_in_a_container() {
    let harness = harness("");
    let file = harness.root.path().join("deploy.json");
    let deploy = json!({
        "requestId": "docker-request", "id": "d1",
        "executorData": {"cmd": "sh -c 'echo standalone $GREETING from $(hostname)'"},
        "env": {"GREETING": "hello"},
        "containerInfo": {"type": "DOCKER",
                          "docker": {"image": services::test_image(), "network": "NONE",
                                     "dockerParameters": [{"key": "hostname", "value": "boxed"}]}}
    });
    std::fs::write(&file, deploy.to_string()).expect("task file");
    let sandbox = harness.root.path().join("run");
    let output = harness
        .run_command(&file, &sandbox)
        .output()
        .expect("run the executor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("TASK_STARTING: Pulling image... (executor pid: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("TASK_RUNNING: Task running process docker - (pid: "),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("TASK_FINISHED: Process exited normally with code 0\n"),
        "{stdout}"
    );
    let task_dir = std::fs::read_dir(&sandbox)
        .expect("sandbox")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("task directory");
    assert_eq!(
        crate::support::task_output(&task_dir),
        "standalone hello from boxed\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_kills_a_container_at_once_during_its_grace() {
    let harness = harness("dockerStopTimeout: 60");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = launch_ready(
        &agent,
        &harness,
        &json!({"cmd": "sh -c 'echo ready; exec sleep 600'"}),
    )
    .await;
    // A graceful kill in progress (60 s for a PID 1 ignoring SIGTERM) is cut short.
    agent.kill(&id, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!states(&agent, &id).iter().any(|s| s.is_terminal()));

    let destroyed_at = Instant::now();
    agent.message(destroy_message(&id, "ops@example.com"));
    let status = wait_terminal(&agent, &id).await;
    assert!(
        destroyed_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        destroyed_at.elapsed()
    );
    assert_eq!(status.state, TaskState::TaskKilled);
    assert!(
        message(&status).starts_with("Task killed forcibly by ops@example.com (shutdownTime: "),
        "{}",
        message(&status)
    );
    assert!(!container_exists(&container_name(&id)));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_output_is_rotated_like_a_process() {
    let harness = harness_idle(300, "maxServiceLogSizeMb: 1");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(docker_task(
        &agent,
        &id,
        &json!({"cmd": "seq 1 1500000"}),
        docker(&services::test_image()),
    ));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    crate::logs::assert_rotated_sequence(&harness.task_dir(&id), 1_500_000, 10);
}
