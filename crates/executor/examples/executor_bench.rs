//! Benchmark of `singularity-executor` against the fake agent (run by `bench/executor.sh`;
//! not a test). Prints:
//!
//! 1. LAUNCH → TASK_RUNNING latency (p50, p90) for a plain command with one embedded
//!    artifact, next to the time this process needs to spawn `/bin/sh -c true` and see it
//!    exit (the floor any executor pays);
//! 2. the executor's resident memory (VmRSS, and VmHWM) while it supervises a task;
//! 3. KILL → SIGTERM received by the task (p50, p90).
//!
//! Environment: `EXECUTOR_BIN` (the binary to measure, default: the debug build next to this
//! example), `RUNS` (launches measured, default 30).

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bench_support::{config, percentile, spawn_executor, status_kib};
use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;

const WAIT: Duration = Duration::from_secs(30);

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
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
        .unwrap_or(30);
    let root = tempfile::Builder::new()
        .prefix("se-bench-executor-")
        .tempdir()
        .expect("temp dir");
    let etc = config(root.path(), "");
    let sandbox = root.path().join("sandbox");

    let agent = FakeAgent::start("bench-fw", "bench-ex").await;
    let mut executor = spawn_executor(&bin, &etc, &sandbox, &agent);
    let executor_pid = executor.id().expect("pid");
    assert!(agent.wait_for_subscribes(1, WAIT).await, "no SUBSCRIBE");

    // Floor: spawning a shell and seeing it exit, from this process.
    let mut floor = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        tokio::process::Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()
            .await
            .expect("sh");
        floor.push(start.elapsed().as_secs_f64() * 1000.0);
    }

    // 1. LAUNCH → RUNNING with one embedded artifact.
    let content = b"#!/bin/sh\necho hello\n";
    let md5 = format!("{:x}", md5_of(content));
    let mut latencies = Vec::new();
    for i in 0..runs {
        let id = format!("bench-dep-1700000000000-{}-host-rack", i + 1);
        let mut task = agent.task(&id);
        let data = json!({
            "cmd": "sh ../hello.sh",
            "embeddedArtifacts": [{"name": "hello", "filename": "hello.sh", "md5sum": md5,
                "content": base64::engine::general_purpose::STANDARD.encode(content)}]
        });
        task.data = Some(serde_json::to_vec(&data).expect("json"));
        let start = Instant::now();
        agent.launch(task);
        let id2 = id.clone();
        agent
            .wait_for_update(
                move |s| s.task_id.value == id2 && s.state == TaskState::TaskRunning,
                WAIT,
            )
            .await
            .expect("TASK_RUNNING");
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        let id3 = id.clone();
        agent
            .wait_for_update(
                move |s| s.task_id.value == id3 && s.state.is_terminal(),
                WAIT,
            )
            .await
            .expect("terminal");
    }

    // 2 and 3. RSS while supervising, then KILL → SIGTERM in the task.
    let mut rss = Vec::new();
    let mut hwm = 0;
    let mut anon = 0;
    let mut file = 0;
    let mut threads = 0;
    let mut kill_ms = Vec::new();
    for i in 0..runs.clamp(1, 10) {
        let id = format!("bench-kill-1700000000000-{}-host-rack", i + 1);
        let mut task = agent.task(&id);
        let data = json!({"cmd": "trap 'date +%s%N > ../term; exit 0' TERM; sleep 1000 & wait"});
        task.data = Some(serde_json::to_vec(&data).expect("json"));
        agent.launch(task);
        let id2 = id.clone();
        agent
            .wait_for_update(
                move |s| s.task_id.value == id2 && s.state == TaskState::TaskRunning,
                WAIT,
            )
            .await
            .expect("TASK_RUNNING");
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss.push(status_kib(executor_pid, "VmRSS:") as f64);
        hwm = hwm.max(status_kib(executor_pid, "VmHWM:"));
        anon = status_kib(executor_pid, "RssAnon:");
        file = status_kib(executor_pid, "RssFile:");
        threads = status_kib(executor_pid, "Threads:");
        let sent = epoch_ns();
        agent.kill(&id, None);
        let id3 = id.clone();
        agent
            .wait_for_update(
                move |s| s.task_id.value == id3 && s.state.is_terminal(),
                WAIT,
            )
            .await
            .expect("terminal");
        let term_file = sandbox.join(&id).join("term");
        let received: u128 = fs::read_to_string(&term_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .expect("the task recorded SIGTERM");
        kill_ms.push((received.saturating_sub(sent)) as f64 / 1e6);
    }

    agent.shutdown();
    let _ = tokio::time::timeout(WAIT, executor.wait()).await;

    let floor_p50 = percentile(&mut floor, 0.5);
    let launch_p50 = percentile(&mut latencies, 0.5);
    let launch_p90 = percentile(&mut latencies, 0.9);
    println!("singularity-executor bench ({runs} launches, binary {bin})");
    println!(
        "LAUNCH -> TASK_RUNNING, 1 embedded artifact: p50 {launch_p50:.2} ms, p90 {launch_p90:.2} ms (target <= 15 ms p50)"
    );
    println!(
        "  floor: spawn /bin/sh -c true and reap it: p50 {floor_p50:.2} ms; ratio {:.1}x",
        launch_p50 / floor_p50
    );
    println!(
        "executor RSS while supervising a task: median {:.1} MiB, peak (VmHWM) {:.1} MiB (shared code counted in full: the per-task cost is PSS, below)",
        percentile(&mut rss, 0.5) / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "  of which anonymous {:.1} MiB, file-backed (binary and libraries) {:.1} MiB; {threads} threads",
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
    println!(
        "KILL -> SIGTERM in the task: p50 {:.2} ms, p90 {:.2} ms (target <= 50 ms; includes the task's `date` fork)",
        percentile(&mut kill_ms, 0.5),
        percentile(&mut kill_ms, 0.9)
    );
    let rejections = agent.rejections();
    if !rejections.is_empty() {
        println!("agent rejections: {rejections:?}");
    }
}

/// md5 without another dependency: the artifact's checksum via `md5sum`.
fn md5_of(content: &[u8]) -> u128 {
    use std::io::Write as _;
    let mut child = std::process::Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(content)
        .expect("write");
    let out = child.wait_with_output().expect("md5sum output");
    let text = String::from_utf8_lossy(&out.stdout);
    u128::from_str_radix(text.split_whitespace().next().unwrap_or("0"), 16).unwrap_or(0)
}
