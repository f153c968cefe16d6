//! Benchmark of `singularity-executor`'s Docker runtime against the fake agent and the real
//! engine (run by `bench/executor-docker.sh`; not a test). Prints:
//!
//! 1. LAUNCH → TASK_RUNNING (p50, p90) for a container of an image the engine has, next to
//!    `docker run -d` of the same image and command measured in the same run;
//! 2. KILL → SIGTERM seen inside the container (p50, p90): the container's trap writes a file
//!    in the sandbox, which this process polls for.
//!
//! Environment: `EXECUTOR_BIN` (default: the debug build next to this example), `RUNS`
//! (default 20), `DOCKER_SOCKET` (default `/var/run/docker.sock`), `IMAGE` (default
//! `local/busybox:1`).

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::path::Path;
use std::time::{Duration, Instant};

use bench_support::{config, docker, percentile, spawn_executor, wait_state};
use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::types::ContainerType;
use singularity_mesos::{ContainerInfo, DockerInfo, TaskInfo};

const WAIT: Duration = Duration::from_secs(60);

/// Waits for SIGTERM without a foreground child (so the trap runs at once), then writes
/// the marker file.
const TRAP_TERM: &str =
    "sh -c 'trap \"echo > /mnt/mesos/sandbox/term; exit 0\" TERM; sleep 1000 & wait'";

fn docker_task(agent: &FakeAgent, id: &str, image: &str, cmd: &str) -> TaskInfo {
    let mut task = agent.task(id);
    task.data = Some(serde_json::to_vec(&json!({"cmd": cmd})).expect("json"));
    task.container = Some(ContainerInfo {
        kind: Some(ContainerType::Docker),
        volumes: Vec::new(),
        hostname: None,
        docker: Some(DockerInfo {
            image: image.to_owned(),
            network: Some("HOST".to_owned()),
            port_mappings: Vec::new(),
            privileged: None,
            parameters: Vec::new(),
            force_pull_image: None,
            volume_driver: None,
        }),
        mesos: None,
        network_infos: Vec::new(),
        linux_info: None,
        rlimit_info: None,
        tty_info: None,
    });
    task
}

async fn wait_for_file(path: &Path) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if path.exists() {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = std::env::var("EXECUTOR_BIN").unwrap_or_else(|_| {
        let exe = std::env::current_exe().expect("exe");
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        dir.join("singularity-executor").display().to_string()
    });
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let socket =
        std::env::var("DOCKER_SOCKET").unwrap_or_else(|_| "/var/run/docker.sock".to_owned());
    let image = std::env::var("IMAGE").unwrap_or_else(|_| "local/busybox:1".to_owned());
    let root = tempfile::Builder::new()
        .prefix("se-bench-docker-")
        .tempdir()
        .expect("temp dir");
    let etc = config(
        root.path(),
        &format!("dockerSocket: {socket}\ndockerPrefix: se-bench-"),
    );
    let sandbox = root.path().join("sandbox");

    let agent = FakeAgent::start("bench-fw", "bench-ex").await;
    let mut executor = spawn_executor(&bin, &etc, &sandbox, &agent);
    assert!(agent.wait_for_subscribes(1, WAIT).await, "no SUBSCRIBE");

    // Warm-up: the first task connects to the engine and negotiates its API version.
    let warm = "bench-warm-1700000000000-1-host-rack";
    agent.launch(docker_task(&agent, warm, &image, "true"));
    wait_state(&agent, warm, true).await;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut kill_ms = Vec::new();
    for i in 0..runs {
        // Ours: LAUNCH → RUNNING, then KILL → SIGTERM in the container.
        let id = format!("bench-dep-1700000000000-{}-host-rack", i + 1);
        let start = Instant::now();
        agent.launch(docker_task(&agent, &id, &image, TRAP_TERM));
        wait_state(&agent, &id, false).await;
        ours.push(start.elapsed().as_secs_f64() * 1000.0);
        // Let the shell set its trap.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let term = sandbox.join(&id).join("term");
        let sent = Instant::now();
        agent.kill(&id, None);
        let seen = wait_for_file(&term).await;
        kill_ms.push(seen.duration_since(sent).as_secs_f64() * 1000.0);
        wait_state(&agent, &id, true).await;

        // Theirs: `docker run -d` of the same image and command until it returns.
        let name = format!("se-bench-run-{}", i + 1);
        let start = Instant::now();
        let run = docker(
            &socket,
            &[
                "run", "-d", "--name", &name, "--net", "host", &image, "sleep", "1000",
            ],
        );
        theirs.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(run.status.success(), "docker run: {run:?}");
        docker(&socket, &["rm", "-f", &name]);
    }

    agent.shutdown();
    let _ = tokio::time::timeout(WAIT, executor.wait()).await;

    let ours_p50 = percentile(&mut ours, 0.5);
    let theirs_p50 = percentile(&mut theirs, 0.5);
    println!("singularity-executor docker bench ({runs} containers, image {image}, binary {bin})");
    println!(
        "LAUNCH -> TASK_RUNNING (container): p50 {ours_p50:.1} ms, p90 {:.1} ms",
        percentile(&mut ours, 0.9)
    );
    println!(
        "docker run -d (same image):         p50 {theirs_p50:.1} ms, p90 {:.1} ms",
        percentile(&mut theirs, 0.9)
    );
    println!(
        "  ratio {:.2}x docker run -d (target <= 1.1x)",
        ours_p50 / theirs_p50
    );
    println!(
        "KILL -> SIGTERM seen in the container: p50 {:.1} ms, p90 {:.1} ms (target <= 50 ms)",
        percentile(&mut kill_ms, 0.5),
        percentile(&mut kill_ms, 0.9)
    );
    let rejections = agent.rejections();
    if !rejections.is_empty() {
        println!("agent rejections: {rejections:?}");
    }
}
