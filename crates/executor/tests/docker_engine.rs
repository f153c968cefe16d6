//! The Docker backend of the container engine interface, against the real engine of
//! `scripts/services.sh` (dockerd, the local registry on 127.0.0.1:5000, `local/busybox:1`).
//! `SINGULARITY_TEST_DOCKER_HOST` points the same suite at another Docker-API engine (podman).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use singularity_executor::runtime::StopSignal;
use singularity_executor::runtime::container::{
    ContainerConfig, ContainerEngine, EngineErrorKind, archive_image_id,
};
use singularity_executor::runtime::docker::DockerEngine;
use singularity_test_support::{self as services, docker_cli, unique_name};

fn engine() -> DockerEngine {
    DockerEngine::new(services::docker_socket(), Duration::from_secs(30))
}

fn busybox(name: &str, cmd: &[&str]) -> ContainerConfig {
    let mut config = ContainerConfig::new(name, services::test_image());
    config.cmd = Some(cmd.iter().map(|s| (*s).to_owned()).collect());
    config
}

/// Output collected from a container's attach stream.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    async fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never printed {needle:?}: {:?}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Creates, attaches and starts; returns the id and the output so far.
async fn run(engine: &DockerEngine, config: &ContainerConfig) -> (String, Output) {
    let id = engine.create(config).await.expect("create");
    let mut stream = engine.attach(&id).await.expect("attach");
    let output = Output::default();
    let sink = output.clone();
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = stream.next().await {
            sink.0.lock().expect("lock").extend_from_slice(&chunk);
        }
    });
    engine.start(&id).await.expect("start");
    (id, output)
}

/// Runs until SIGTERM, then exits 7.
const TRAPS_TERM: &str =
    "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done";

#[tokio::test]
async fn a_container_runs_its_output_is_captured_and_its_exit_code_returned() {
    let engine = engine();
    let name = unique_name("se-test-engine");
    let config = busybox(
        &name,
        &["sh", "-c", "echo to stdout; echo to stderr >&2; exit 3"],
    );
    let (id, output) = run(&engine, &config).await;
    let exit = engine.wait(&id).await.expect("wait");
    assert_eq!(exit.code, 3);
    assert!(!exit.oom_killed);
    output.wait_for("to stderr").await;
    let output = output.text();
    assert!(output.contains("to stdout\n"), "{output:?}");
    assert!(output.contains("to stderr\n"), "{output:?}");
    assert_eq!(engine.main_pid(&id).await.expect("inspect"), None);
    engine.remove(&id).await.expect("remove");
    let again = engine.remove(&id).await.expect_err("already gone");
    assert_eq!(again.kind, EngineErrorKind::NotFound);
}

#[tokio::test]
async fn signals_reach_the_main_process_and_stop_kills_at_the_grace() {
    let engine = engine();
    let trapping = unique_name("se-test-engine");
    let (id, output) = run(&engine, &busybox(&trapping, &["sh", "-c", TRAPS_TERM])).await;
    let pid = engine
        .main_pid(&id)
        .await
        .expect("inspect")
        .expect("running");
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    assert!(singularity_executor::procfs::cgroup_threads(pid).expect("threads") >= 1);
    output.wait_for("ready").await;
    engine
        .signal(&id, StopSignal::Terminate)
        .await
        .expect("SIGTERM");
    let exit = engine.wait(&id).await.expect("wait");
    assert_eq!(exit.code, 7);
    output.wait_for("got TERM").await;
    engine.remove(&id).await.expect("remove");

    // PID 1 without a handler ignores SIGTERM: stop must SIGKILL at the grace.
    let ignoring = unique_name("se-test-engine");
    let (id, _output) = run(&engine, &busybox(&ignoring, &["sleep", "60"])).await;
    let started = Instant::now();
    engine
        .stop(&id, Duration::from_secs(1))
        .await
        .expect("stop");
    let elapsed = started.elapsed();
    let exit = engine.wait(&id).await.expect("wait");
    assert_eq!(exit.code, 137);
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    engine.remove(&id).await.expect("remove");
    // Signalling a container that is gone says so.
    let gone = engine
        .signal(&id, StopSignal::Kill)
        .await
        .expect_err("gone");
    assert_eq!(gone.kind, EngineErrorKind::NotFound);
}

#[tokio::test]
async fn the_memory_limit_oom_kills_and_says_so() {
    let engine = engine();
    let name = unique_name("se-test-engine");
    // tail keeps the last lines of a file without newlines: all of it.
    let mut config = busybox(&name, &["tail", "/dev/zero"]);
    config.memory = Some(16 * 1024 * 1024);
    let (id, _output) = run(&engine, &config).await;
    let exit = engine.wait(&id).await.expect("wait");
    engine.remove(&id).await.expect("remove");
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137);
}

#[tokio::test]
async fn images_are_inspected_pulled_saved_loaded_and_removed() {
    let engine = engine();
    let local = services::test_image();
    let id = engine
        .image_id(&local)
        .await
        .expect("inspect")
        .expect("present");
    assert!(id.starts_with("sha256:"), "{id}");
    let described = engine.inspect_image(&local).await.expect("inspect");
    assert_eq!(described["Id"], serde_json::Value::String(id.clone()));
    assert_eq!(
        engine.image_id("se-test/none:0").await.expect("inspect"),
        None
    );

    // A registry pull really downloads: the pulled tag is removed first.
    let registry = services::registry();
    let repository = format!("{registry}/test/busybox");
    let _ = engine.remove_image(&format!("{repository}:1")).await;
    engine
        .pull_image(&repository, "1", None)
        .await
        .expect("pull");
    assert!(
        engine
            .image_id(&format!("{repository}:1"))
            .await
            .expect("inspect")
            .is_some()
    );
    engine
        .remove_image(&format!("{repository}:1"))
        .await
        .expect("remove");
    let missing = engine
        .pull_image(&repository, "no-such-tag", None)
        .await
        .expect_err("missing tag");
    assert_eq!(missing.kind, EngineErrorKind::NotFound, "{missing:?}");
    assert!(
        missing.message.contains("manifest unknown") || missing.message.contains("not found"),
        "{missing:?}"
    );

    // A new image of its own (a commit with a unique label), saved, removed, then loaded.
    let tag = format!("se-test/{}:1", unique_name("load"));
    let container = unique_name("se-test-commit");
    assert!(
        docker_cli(&["create", "--name", &container, &local, "true"])
            .status
            .success()
    );
    let label = format!("LABEL se.test={container}");
    assert!(
        docker_cli(&["commit", "--change", &label, &container, &tag])
            .status
            .success()
    );
    assert!(docker_cli(&["rm", "-f", &container]).status.success());
    let dir = tempfile::tempdir().expect("temp dir");
    let tarball = dir.path().join("image.tar");
    let tarball_arg = tarball.display().to_string();
    let saved = docker_cli(&["save", "-o", &tarball_arg, &tag]);
    assert!(saved.status.success(), "{saved:?}");
    let image_id = archive_image_id(&tarball).expect("manifest");
    engine.remove_image(&tag).await.expect("remove");
    assert_eq!(engine.image_id(&image_id).await.expect("inspect"), None);
    engine.load_image(&tarball).await.expect("load");
    assert_eq!(
        engine.image_id(&image_id).await.expect("inspect"),
        Some(image_id.clone())
    );
    engine.remove_image(&image_id).await.expect("remove");
}

#[tokio::test]
async fn a_broken_tarball_and_an_unreachable_engine_are_errors_with_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tarball = dir.path().join("broken.tar");
    std::fs::write(&tarball, b"not a tar at all").expect("write");
    let error = engine().load_image(&tarball).await.expect_err("broken");
    assert!(!error.message.is_empty());

    let nowhere = DockerEngine::new(dir.path().join("no.sock"), Duration::from_secs(2));
    let error = nowhere.image_id("busybox").await.expect_err("unreachable");
    assert_eq!(error.kind, EngineErrorKind::Unreachable);
    assert!(error.message.contains("no.sock"), "{error:?}");
}
