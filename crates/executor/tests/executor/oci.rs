//! Daemonless containers through the real executor binary, the strict fake agent and the
//! real OCI runtime (runc): `type: MESOS` containers with a `docker-archive://` image (the
//! test image from `docker save`), staged from S3 through the real downloader or from a local
//! HTTP server; exit codes, env, the sandbox, limits, kills, OOM, shell commands through
//! `runc exec`, refusals naming the image, a task running while the Docker socket does not
//! exist, and containers under the executor's cgroup with `cpuHardLimit`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use singularity_fake_agent::FakeAgent;
use singularity_mesos::types::{ContainerType, Resource};
use singularity_mesos::{ContainerInfo, TaskInfo, TaskState};
use singularity_test_support::{self as services, TestCgroup};

use crate::staging_support::{BUCKET, Downloader, HttpServer, Listen, md5, s3_server};
use crate::support::*;

const ARCHIVE: &str = "busybox.tar";

/// The test image as a `docker save` tarball.
fn image_archive() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(ARCHIVE);
    services::save_test_image(&path);
    std::fs::read(path).expect("archive")
}

/// An executor whose image store and runtime state live in the test's directory and whose
/// Docker socket does not exist: nothing here may need dockerd.
fn harness(extra: &str) -> Harness {
    let harness = Harness::new("");
    let root = harness.root.path();
    let executor = harness.config_dir.join("singularity.executor.yaml");
    let mut config = std::fs::read_to_string(&executor).expect("config");
    config.push_str(&format!(
        "idleExecutorShutdownWaitMillis: 3000\nmaxTaskMessageLength: 400\n\
         dockerSocket: {}\nociRuntime: {}\nociRuntimeRoot: {}\nociImageStoreDirectory: {}\n{extra}\n",
        root.join("no-docker.sock").display(),
        services::oci_runtime().display(),
        root.join("runc").display(),
        root.join("images").display(),
    ));
    std::fs::write(&executor, config).expect("config");
    harness
}

/// A `type: MESOS` container of `image`.
fn mesos_task(agent: &FakeAgent, id: &str, data: &Value, image: Value) -> TaskInfo {
    let mut task = task(agent, id, data);
    task.container = Some(ContainerInfo {
        kind: Some(ContainerType::Mesos),
        volumes: Vec::new(),
        hostname: None,
        docker: None,
        mesos: Some(json!({"image": image})),
        network_infos: Vec::new(),
        linux_info: None,
        rlimit_info: None,
        tty_info: None,
    });
    task
}

fn archive_image() -> Value {
    json!({"type": "DOCKER", "docker": {"name": format!("docker-archive://{ARCHIVE}")}})
}

/// Container ids the runtime still knows.
fn runtime_containers(harness: &Harness) -> String {
    let output = std::process::Command::new(services::oci_runtime())
        .arg("--root")
        .arg(harness.root.path().join("runc"))
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn bundles(harness: &Harness) -> Vec<PathBuf> {
    std::fs::read_dir(harness.root.path().join("images/bundles"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn wait_in_log(harness: &Harness, id: &str, needle: &str) {
    let deadline = Instant::now() + SOON;
    while !harness.service_log(id).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never in {:?}",
            harness.service_log(id)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_staged_from_s3_through_the_downloader_runs_without_dockerd() {
    let archive = image_archive();
    let s3 = s3_server();
    s3.s5cmd_put(BUCKET, "images/busybox.tar", &archive);
    let harness = harness("useLocalDownloadService: true");
    let downloader = Downloader::start(&s3, &harness.sandbox, Listen::Http).await;
    let s3base = harness.config_dir.join("singularity.s3base.yaml");
    let mut config = std::fs::read_to_string(&s3base).expect("s3base");
    config.push_str(&format!(
        "localDownloadHttpPort: {}\n",
        downloader.port.expect("port")
    ));
    std::fs::write(&s3base, config).expect("s3base");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let data = json!({
        "cmd": "sh -c 'echo greeting=$GREETING; echo sandbox=$MESOS_SANDBOX; id -u; pwd; \
                echo made > ../made-inside; exit 3'",
        "s3Artifacts": [{"name": "image", "filename": ARCHIVE, "md5sum": md5(&archive),
                         "filesize": archive.len(), "s3Bucket": BUCKET,
                         "s3ObjectKey": "images/busybox.tar"}]
    });
    agent.launch(mesos_task(&agent, &id, &data, archive_image()));
    let running = wait_state(&agent, &id, TaskState::TaskRunning).await;
    assert!(
        message(&running).starts_with("Task running process runc - (pid: "),
        "{}",
        message(&running)
    );
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskFailed,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(message(&status), "Process failed with code 3");
    assert_eq!(
        harness.service_log(&id),
        "greeting=hello from the deploy\nsandbox=/mnt/mesos/sandbox\n0\n/mnt/mesos/sandbox/app\n"
    );
    assert_eq!(
        std::fs::read_to_string(harness.task_dir(&id).join("made-inside")).expect("written"),
        "made\n"
    );
    assert_eq!(
        downloader.cached(),
        [format!("{}-{ARCHIVE}", md5(&archive))],
        "the downloader fetched the image"
    );
    assert_eq!(runtime_containers(&harness), "");
    assert!(bundles(&harness).is_empty(), "{:?}", bundles(&harness));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    downloader.stop();
    assert_no_rejections(&agent);
}

/// Serves the image archive and returns the artifact list naming it.
async fn served_archive(server: &HttpServer, archive: &[u8]) -> Value {
    server.put(ARCHIVE, archive);
    json!([{"name": "image", "filename": ARCHIVE, "url": server.url(ARCHIVE)}])
}

const INFO: &str = r#"shellCommands: [{"name": "info", "command": ["sh", "-c", "echo pid=$1 dir=$TASK_SANDBOX_DIR comm=$(cat /proc/1/comm)", "sh", "{PID}"]}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_with_a_grace_and_shell_commands_through_exec() {
    let archive = image_archive();
    let server = HttpServer::start().await;
    let artifacts = served_archive(&server, &archive).await;
    let harness = harness(INFO);
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let data = json!({
        "cmd": "sh -c 'trap \"echo got TERM; exit 0\" TERM; echo ready; while true; do sleep 0.1; done'",
        "externalArtifacts": artifacts,
    });
    agent.launch(mesos_task(&agent, &id, &data, archive_image()));
    wait_state(&agent, &id, TaskState::TaskRunning).await;
    wait_in_log(&harness, &id, "ready").await;

    agent.message(
        json!({"taskId": {"id": id}, "timestamp": 5, "shellCommand": {"name": "info"}})
            .to_string()
            .into_bytes(),
    );
    assert!(agent.wait_for_messages(3, SOON).await);
    let updates: Vec<Value> = agent
        .messages()
        .iter()
        .map(|m| serde_json::from_slice(m).expect("json"))
        .collect();
    let kinds: Vec<&str> = updates
        .iter()
        .filter_map(|u| u["updateType"].as_str())
        .collect();
    assert_eq!(kinds, ["ACKED", "STARTED", "FINISHED"], "{updates:#?}");
    let container = format!("se-{id}");
    assert_eq!(
        updates[0]["message"],
        format!(
            "runc exec {container} sh -c echo pid=$1 dir=$TASK_SANDBOX_DIR comm=$(cat /proc/1/comm) sh 1"
        )
    );
    assert_ne!(updates[1]["message"], "pid - null");
    assert_eq!(updates[2]["message"], "Finished with code 0");
    let output =
        std::fs::read_to_string(harness.task_dir(&id).join("executor.commands.info.5.log"))
            .expect("output");
    assert!(
        output.ends_with("\npid=1 dir=/mnt/mesos/sandbox comm=sh\n"),
        "{output:?}"
    );

    let killed_at = Instant::now();
    agent.kill(&id, None);
    let status = wait_terminal(&agent, &id).await;
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    assert_eq!(status.state, TaskState::TaskKilled);
    assert!(
        message(&status).starts_with("Task killed. Process exited gracefully with code 0"),
        "{}",
        message(&status)
    );
    assert!(harness.service_log(&id).contains("got TERM"));
    assert_eq!(runtime_containers(&harness), "");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ignored_gets_sigkill_at_the_grace_and_memory_runs_out() {
    let archive = image_archive();
    let server = HttpServer::start().await;
    let artifacts = served_archive(&server, &archive).await;
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);

    let stubborn = task_id();
    let data = json!({
        "cmd": "sh -c 'trap \"\" TERM; echo ready; while true; do sleep 0.1; done'",
        "sigKillProcessesAfterMillis": 1000,
        "externalArtifacts": artifacts,
    });
    agent.launch(mesos_task(&agent, &stubborn, &data, archive_image()));
    wait_state(&agent, &stubborn, TaskState::TaskRunning).await;
    wait_in_log(&harness, &stubborn, "ready").await;
    let killed_at = Instant::now();
    agent.kill(&stubborn, None);
    let status = wait_terminal(&agent, &stubborn).await;
    let took = killed_at.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(status.state, TaskState::TaskKilled);
    assert!(
        message(&status).starts_with("Task killed forcibly after waiting at least 00:01.0 "),
        "{}",
        message(&status)
    );

    let hungry = task_id();
    let data = json!({"cmd": "tail /dev/zero", "externalArtifacts": artifacts});
    let mut task = mesos_task(&agent, &hungry, &data, archive_image());
    task.resources = vec![Resource::scalar("mem", 16.0), Resource::scalar("cpus", 0.5)];
    agent.launch(task);
    let status = wait_terminal(&agent, &hungry).await;
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
    assert_eq!(runtime_containers(&harness), "");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_images_fail_the_task_naming_them() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let cases = [
        (
            json!({"type": "APPC", "appc": {"name": "x"}}),
            "unsupported mesos image: image type APPC, only DOCKER is supported",
        ),
        (
            json!({"type": "DOCKER", "docker": {"name": "oci-layout://x"}}),
            "unsupported image scheme `oci-layout://`",
        ),
        (
            json!({"type": "DOCKER", "docker": {"name": format!("{}/test/busybox:missing", services::registry())}}),
            "cannot pull",
        ),
    ];
    for (image, expected) in cases {
        let id = task_id();
        agent.launch(mesos_task(&agent, &id, &json!({"cmd": "true"}), image));
        let status = wait_terminal(&agent, &id).await;
        assert_eq!(
            status.state,
            TaskState::TaskFailed,
            "{:#?}",
            summary(&agent)
        );
        assert!(
            message(&status).starts_with(expected),
            "{}",
            message(&status)
        );
    }
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_image_is_pulled_without_a_daemon_and_runs() {
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let image = format!("{}/test/busybox:1", services::registry());
    agent.launch(mesos_task(
        &agent,
        &id,
        &json!({"cmd": "sh -c 'echo pulled; ls /bin/busybox'"}),
        json!({"type": "DOCKER", "docker": {"name": image}}),
    ));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert!(
        summary(&agent)
            .iter()
            .any(|(_, m)| m.starts_with("Pulling image... (executor pid: "))
    );
    assert_eq!(harness.service_log(&id), "pulled\n/bin/busybox\n");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[test]
fn a_standalone_deploy_with_a_mesos_image_runs_without_a_daemon() {
    let harness = harness("");
    let file = harness.root.path().join("deploy.json");
    let image = format!("{}/test/busybox:1", services::registry());
    let deploy = json!({
        "requestId": "oci-request", "id": "d1",
        "executorData": {"cmd": "sh -c 'echo standalone $GREETING in $(pwd)'"},
        "env": {"GREETING": "hello"},
        "containerInfo": {"type": "MESOS",
                          "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}}
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
        stdout.contains("TASK_RUNNING: Task running process runc - (pid: "),
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
        "standalone hello in /mnt/mesos/sandbox/app\n"
    );
}

/// Runs `reference` as a daemonless container through an executor with `settings` and
/// `env`; its terminal update.
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
    agent.launch(mesos_task(
        &agent,
        &id,
        &json!({"cmd": "echo pulled"}),
        json!({"type": "DOCKER", "docker": {"name": reference}}),
    ));
    let status = wait_terminal(&agent, &id).await;
    if status.state == TaskState::TaskFinished {
        assert_eq!(harness.service_log(&id), "pulled\n");
    }
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pulls_take_the_docker_pull_credentials() {
    // Without credentials the registry refuses, and the task says which image.
    let (reference, refused) = pull_with_each_credential(pull_with).await;
    let text = message(&refused);
    assert!(text.contains(&reference), "{text}");
    assert!(text.contains("Not authorized"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_under_the_executors_cgroup_with_the_cpu_hard_limit() {
    let cgroup = TestCgroup::create();
    let server = HttpServer::start().await;
    let harness = harness("");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn_in_cgroup(&agent, &cgroup, &[]);
    let artifacts = served_archive(&server, &image_archive()).await;
    let id = task_id();
    let data = json!({"cmd": "sh -c 'echo ready; sleep 600'", "cpuHardLimit": 1,
                      "sigKillProcessesAfterMillis": 500, "externalArtifacts": artifacts});
    let mut task = mesos_task(&agent, &id, &data, archive_image());
    // Two CPUs offered, one allowed: the hard limit is the tighter bound.
    task.resources = vec![Resource::scalar("cpus", 2.0), Resource::scalar("mem", 64.0)];
    agent.launch(task);
    let running = wait_state(&agent, &id, TaskState::TaskRunning).await;
    wait_in_log(&harness, &id, "ready").await;
    let pid = running_pid(&running);

    let container = format!("{}/se-", cgroup.path());
    assert!(
        memory_cgroup(pid).starts_with(&container),
        "{} is not under {}; log:\n{}",
        memory_cgroup(pid),
        cgroup.path(),
        harness.stderr()
    );
    // One CPU: the executor's quota, and the container's own.
    assert_eq!(cgroup.read("cpu", "cpu.cfs_quota_us"), "100000");
    let own = cgroup
        .children("cpu")
        .into_iter()
        .find(|c| c.starts_with("se-"))
        .expect("the container's cpu cgroup");
    assert_eq!(
        cgroup.read("cpu", &format!("{own}/cpu.cfs_quota_us")),
        "100000"
    );

    agent.kill(&id, None);
    assert_eq!(
        wait_terminal(&agent, &id).await.state,
        TaskState::TaskKilled
    );
    assert_eq!(harness.service_log(&id), "ready\n");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert!(runtime_containers(&harness).is_empty());
    assert_no_rejections(&agent);
}
