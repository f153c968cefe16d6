//! Benchmark of `singularity-executor`'s daemonless containers (the OCI runtime) against the
//! fake agent, next to `docker run -d` of the same image on the real engine (run by
//! `bench/oci-runtime.sh`; not a test). Prints:
//!
//! 1. LAUNCH → TASK_RUNNING (p50, p90) of a `type: MESOS` container whose image is already
//!    in the image store (its `docker-archive://` tarball comes from the artifact cache),
//!    next to `docker run -d` of the same image and command measured in the same run;
//! 2. the memory that supervises one running container: the OCI runtime's `run` process
//!    (the container's parent) against dockerd's shim (`containerd-shim-runc-v2`, the
//!    container's parent), as RSS and PSS.
//!
//! Environment: `EXECUTOR_BIN` (default: the build next to this example), `RUNS` (default
//! 20), `DOCKER_SOCKET` (default `/var/run/docker.sock`), `IMAGE` (default
//! `local/busybox:1`), `OCI_RUNTIME` (default `/usr/sbin/runc`).

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::path::Path;
use std::time::{Duration, Instant};

use bench_support::{config, docker, percentile, spawn_executor, status_kib, wait_state};
use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::types::ContainerType;
use singularity_mesos::{ContainerInfo, TaskInfo};

const WAIT: Duration = Duration::from_secs(60);
const ARCHIVE: &str = "image.tar";

fn oci_task(agent: &FakeAgent, id: &str, artifact: &serde_json::Value, cmd: &str) -> TaskInfo {
    let mut task = agent.task(id);
    let data = json!({"cmd": cmd, "externalArtifacts": [artifact]});
    task.data = Some(serde_json::to_vec(&data).expect("json"));
    task.container = Some(ContainerInfo {
        kind: Some(ContainerType::Mesos),
        volumes: Vec::new(),
        hostname: None,
        docker: None,
        mesos: Some(json!({"image": {"type": "DOCKER",
                                      "docker": {"name": format!("docker-archive://{ARCHIVE}")}}})),
        network_infos: Vec::new(),
        linux_info: None,
        rlimit_info: None,
        tty_info: None,
    });
    task
}

/// The parent of `pid`.
fn parent(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `Pss:` of `/proc/<pid>/smaps_rollup`, in KiB.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A local HTTP server answering every request with `body` (the image tarball).
async fn serve(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}/{ARCHIVE}")
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
    let runtime = std::env::var("OCI_RUNTIME").unwrap_or_else(|_| "/usr/sbin/runc".to_owned());
    let root = tempfile::Builder::new()
        .prefix("se-bench-oci-")
        .tempdir()
        .expect("temp dir");
    let archive_path = root.path().join(ARCHIVE);
    let saved = docker(
        &socket,
        &["save", "-o", &archive_path.display().to_string(), &image],
    );
    assert!(saved.status.success(), "docker save: {saved:?}");
    let archive = std::fs::read(&archive_path).expect("archive");
    // With its md5, the artifact cache serves every launch after the first.
    let md5 = singularity_artifacts::md5_bytes(&archive);
    let url = serve(archive.clone()).await;
    let artifact = json!({"name": "image", "filename": ARCHIVE, "url": url, "md5sum": md5,
                          "filesize": archive.len()});
    let etc = config(
        root.path(),
        &format!(
            "dockerPrefix: se-bench-\nociRuntime: {runtime}\nociRuntimeRoot: {0}/runc\n\
             ociImageStoreDirectory: {0}/images\n",
            root.path().display()
        ),
    );
    let sandbox = root.path().join("sandbox");

    let agent = FakeAgent::start("bench-fw", "bench-ex").await;
    let mut executor = spawn_executor(&bin, &etc, &sandbox, &agent);
    assert!(agent.wait_for_subscribes(1, WAIT).await, "no SUBSCRIBE");

    // Warm-up: downloads the tarball into the artifact cache and unpacks the image.
    let warm = "bench-warm-1700000000000-1-host-rack";
    agent.launch(oci_task(&agent, warm, &artifact, "true"));
    let message = wait_state(&agent, warm, true).await;
    assert_eq!(
        message.as_deref(),
        Some("Process exited normally with code 0"),
        "warm-up"
    );

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut runtime_memory = Vec::new();
    let mut shim_memory = Vec::new();
    for i in 0..runs {
        let id = format!("bench-dep-1700000000000-{}-host-rack", i + 1);
        let start = Instant::now();
        agent.launch(oci_task(&agent, &id, &artifact, "sleep 1000"));
        let message = wait_state(&agent, &id, false).await.unwrap_or_default();
        ours.push(start.elapsed().as_secs_f64() * 1000.0);
        let init: u32 = message
            .rsplit("(pid: ")
            .next()
            .and_then(|p| p.trim_end_matches(')').parse().ok())
            .unwrap_or(0);
        let supervisor = parent(init);
        if i == 0 {
            println!(
                "daemonless container parent: {} (pid {supervisor})",
                comm(supervisor)
            );
        }
        runtime_memory.push((status_kib(supervisor, "VmRSS:"), pss_kib(supervisor)));
        agent.kill(&id, None);
        wait_state(&agent, &id, true).await;

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
        let inspect = docker(&socket, &["inspect", "-f", "{{.State.Pid}}", &name]);
        let pid: u32 = String::from_utf8_lossy(&inspect.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let shim = parent(pid);
        if i == 0 {
            println!("docker container parent: {} (pid {shim})", comm(shim));
        }
        shim_memory.push((status_kib(shim, "VmRSS:"), pss_kib(shim)));
        docker(&socket, &["rm", "-f", &name]);
    }

    agent.shutdown();
    let _ = tokio::time::timeout(WAIT, executor.wait()).await;

    let ours_p50 = percentile(&mut ours, 0.5);
    let theirs_p50 = percentile(&mut theirs, 0.5);
    println!(
        "singularity-executor OCI runtime bench ({runs} containers, image {image}, runtime {runtime}, binary {bin})"
    );
    println!(
        "LAUNCH -> TASK_RUNNING (OCI, cached image): p50 {ours_p50:.1} ms, p90 {:.1} ms",
        percentile(&mut ours, 0.9)
    );
    println!(
        "docker run -d (same image):                p50 {theirs_p50:.1} ms, p90 {:.1} ms",
        percentile(&mut theirs, 0.9)
    );
    println!(
        "  ratio {:.2}x docker run -d (target <= 0.5x)",
        ours_p50 / theirs_p50
    );
    let median = |values: &mut Vec<(u64, u64)>, pick: fn(&(u64, u64)) -> u64| {
        let mut picked: Vec<f64> = values.iter().map(|v| pick(v) as f64).collect();
        percentile(&mut picked, 0.5)
    };
    println!(
        "supervising process per container: OCI runtime RSS {:.0} KiB, PSS {:.0} KiB; docker shim RSS {:.0} KiB, PSS {:.0} KiB",
        median(&mut runtime_memory, |v| v.0),
        median(&mut runtime_memory, |v| v.1),
        median(&mut shim_memory, |v| v.0),
        median(&mut shim_memory, |v| v.1),
    );
    let rejections = agent.rejections();
    if !rejections.is_empty() {
        println!("agent rejections: {rejections:?}");
    }
}
