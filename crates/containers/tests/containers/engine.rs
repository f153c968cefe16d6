//! The Docker backend of the container engine interface, against both real engines of
//! `scripts/services.sh`: dockerd and podman's Docker-compatible service (each with
//! `local/busybox:1`), and the local registry on 127.0.0.1:5000. Every case runs once per
//! engine (`docker::*`, `podman::*`) and asserts the same outcomes on both.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use singularity_common::naming;
use singularity_containers::image::archive_image_id;
use singularity_containers::{ContainerEngine, DockerEngine, EngineErrorKind, Signal};
use singularity_test_support::{self as services, docker_cli, unique_name};

use crate::support::{Target, run};

on_both_engines!(
    the_engine_is_the_one_configured,
    a_container_runs_its_output_is_captured_and_its_exit_code_returned,
    signals_reach_the_main_process_and_stop_kills_at_the_grace,
    a_taken_name_and_signalling_a_stopped_container_are_conflicts,
    the_memory_limit_oom_kills_and_says_so,
    images_are_inspected_pulled_saved_loaded_and_removed,
    a_broken_tarball_and_an_unreachable_engine_are_errors_with_messages,
    containers_are_listed_by_name_prefix_stopped_and_removed,
    a_command_runs_inside_a_running_container_with_its_env_and_exit_code,
);

/// Runs until SIGTERM, then exits 7.
const TRAPS_TERM: &str =
    "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done";

async fn the_engine_is_the_one_configured(target: Target) {
    // A podman case that reached dockerd would prove nothing about podman.
    let version = target.engine.version().await.expect("version");
    assert!(
        version.starts_with(&format!("{} ", target.name)),
        "{version}"
    );
}

async fn a_container_runs_its_output_is_captured_and_its_exit_code_returned(target: Target) {
    let engine = &target.engine;
    let name = unique_name("se-test-engine");
    let config = target.busybox(
        &name,
        &["sh", "-c", "echo to stdout; echo to stderr >&2; exit 3"],
    );
    let (id, output) = run(engine, &config).await;
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

async fn signals_reach_the_main_process_and_stop_kills_at_the_grace(target: Target) {
    let engine = &target.engine;
    let trapping = unique_name("se-test-engine");
    let (id, output) = run(
        engine,
        &target.busybox(&trapping, &["sh", "-c", TRAPS_TERM]),
    )
    .await;
    let pid = engine
        .main_pid(&id)
        .await
        .expect("inspect")
        .expect("running");
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    assert!(singularity_containers::cgroup::threads(pid).expect("threads") >= 1);
    output.wait_for("ready").await;
    engine
        .signal(&id, Signal::Terminate)
        .await
        .expect("SIGTERM");
    let exit = engine.wait(&id).await.expect("wait");
    assert_eq!(exit.code, 7);
    output.wait_for("got TERM").await;
    engine.remove(&id).await.expect("remove");

    // PID 1 without a handler ignores SIGTERM: stop must SIGKILL at the grace.
    let ignoring = unique_name("se-test-engine");
    let (id, _output) = run(engine, &target.busybox(&ignoring, &["sleep", "60"])).await;
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
    let gone = engine.signal(&id, Signal::Kill).await.expect_err("gone");
    assert_eq!(gone.kind, EngineErrorKind::NotFound);
}

async fn a_taken_name_and_signalling_a_stopped_container_are_conflicts(target: Target) {
    // The runtime removes a leftover of the same name on Conflict, and treats a Conflict from
    // signal as "already stopped".
    let engine = &target.engine;
    let name = unique_name("se-test-engine");
    let config = target.busybox(&name, &["true"]);
    let id = engine.create(&config).await.expect("create");
    let taken = engine.create(&config).await.expect_err("name taken");
    assert_eq!(taken.kind, EngineErrorKind::Conflict, "{taken:?}");
    assert!(taken.message.contains(&name), "{taken:?}");

    let not_started = engine
        .signal(&id, Signal::Terminate)
        .await
        .expect_err("not running");
    assert_eq!(
        not_started.kind,
        EngineErrorKind::Conflict,
        "{not_started:?}"
    );
    engine.start(&id).await.expect("start");
    assert_eq!(engine.wait(&id).await.expect("wait").code, 0);
    let exited = engine
        .signal(&id, Signal::Kill)
        .await
        .expect_err("not running");
    assert_eq!(exited.kind, EngineErrorKind::Conflict, "{exited:?}");
    engine.remove(&id).await.expect("remove");
}

async fn the_memory_limit_oom_kills_and_says_so(target: Target) {
    let engine = &target.engine;
    let name = unique_name("se-test-engine");
    // tail keeps the last lines of a file without newlines: all of it.
    let mut config = target.busybox(&name, &["tail", "/dev/zero"]);
    config.memory = Some(16 * 1024 * 1024);
    let (id, _output) = run(engine, &config).await;
    let exit = engine.wait(&id).await.expect("wait");
    engine.remove(&id).await.expect("remove");
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137);

    // A SIGKILL that is not the OOM killer's, under the same limit, is not an OOM kill.
    let name = unique_name("se-test-engine");
    let mut config = target.busybox(&name, &["sleep", "60"]);
    config.memory = Some(16 * 1024 * 1024);
    let (id, _output) = run(engine, &config).await;
    engine.signal(&id, Signal::Kill).await.expect("SIGKILL");
    let exit = engine.wait(&id).await.expect("wait");
    engine.remove(&id).await.expect("remove");
    assert!(!exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137);
}

async fn images_are_inspected_pulled_saved_loaded_and_removed(target: Target) {
    let engine = &target.engine;
    let local = &target.image;
    let id = engine
        .image_id(local)
        .await
        .expect("inspect")
        .expect("present");
    assert!(id.starts_with("sha256:"), "{id}");
    let described = engine.inspect_image(local).await.expect("inspect");
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

    // A new image of its own (a commit with a unique label), saved by dockerd as the executor
    // gets archives, removed there, then loaded into the engine under test.
    let tag = format!("se-test/{}:1", unique_name("load"));
    let container = unique_name("se-test-commit");
    let docker_image = services::test_image();
    assert!(
        docker_cli(&["create", "--name", &container, &docker_image, "true"])
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
    assert!(docker_cli(&["rmi", &tag]).status.success());
    let image_id = archive_image_id(&tarball).expect("manifest");
    assert_eq!(engine.image_id(&image_id).await.expect("inspect"), None);
    engine.load_image(&tarball).await.expect("load");
    assert_eq!(
        engine.image_id(&image_id).await.expect("inspect"),
        Some(image_id.clone())
    );
    engine.remove_image(&image_id).await.expect("remove");
    assert_eq!(engine.image_id(&image_id).await.expect("inspect"), None);
}

async fn a_broken_tarball_and_an_unreachable_engine_are_errors_with_messages(target: Target) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tarball = dir.path().join("broken.tar");
    std::fs::write(&tarball, b"not a tar at all").expect("write");
    let error = target
        .engine
        .load_image(&tarball)
        .await
        .expect_err("broken");
    assert!(!error.message.is_empty());

    let nowhere = DockerEngine::new(dir.path().join("no.sock"), Duration::from_secs(2));
    let error = nowhere.image_id("busybox").await.expect_err("unreachable");
    assert_eq!(error.kind, EngineErrorKind::Unreachable);
    assert!(error.message.contains("no.sock"), "{error:?}");
}

async fn containers_are_listed_by_name_prefix_stopped_and_removed(target: Target) {
    // What the cleanup does with the containers an executor left: find them by the prefix
    // of the names `naming::container_name` gives, stop the running ones, remove them all.
    let engine = &target.engine;
    let prefix = format!("{}-", unique_name("se-test-list"));
    let running_name = naming::container_name(&prefix, "running-task");
    let exited_name = naming::container_name(&prefix, "exited-task");
    let (running, _output) = run(engine, &target.busybox(&running_name, &["sleep", "60"])).await;
    let (exited, _output) = run(engine, &target.busybox(&exited_name, &["true"])).await;
    assert_eq!(engine.wait(&exited).await.expect("wait").code, 0);
    // Another prefix, and a name holding the prefix elsewhere, are not listed.
    let other = unique_name("se-test-other");
    let inside = format!("x{prefix}inside");
    let other_id = engine
        .create(&target.busybox(&other, &["true"]))
        .await
        .expect("create");
    let inside_id = engine
        .create(&target.busybox(&inside, &["true"]))
        .await
        .expect("create");

    let mut listed = engine.list(&prefix).await.expect("list");
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<(&str, bool)> = listed
        .iter()
        .map(|c| (c.name.as_str(), c.running))
        .collect();
    assert_eq!(
        names,
        vec![(exited_name.as_str(), false), (running_name.as_str(), true)],
        "{listed:?}"
    );
    assert_eq!(
        naming::task_id_from_container_name(&prefix, &listed[1].name),
        Some("running-task")
    );
    assert!(listed.iter().any(|c| c.id == running));
    assert!(listed.iter().any(|c| c.id == exited));

    for container in &listed {
        if container.running {
            let started = Instant::now();
            engine
                .stop(&container.id, Duration::from_secs(1))
                .await
                .expect("stop");
            assert!(started.elapsed() < Duration::from_secs(10));
            assert_eq!(engine.wait(&container.id).await.expect("wait").code, 137);
        }
        engine.remove(&container.id).await.expect("remove");
    }
    assert_eq!(engine.list(&prefix).await.expect("list"), Vec::new());
    engine.remove(&other_id).await.expect("remove");
    engine.remove(&inside_id).await.expect("remove");
}

async fn a_command_runs_inside_a_running_container_with_its_env_and_exit_code(target: Target) {
    let engine = &target.engine;
    let name = unique_name("se-test-engine");
    let config = target.busybox(&name, &["sh", "-c", TRAPS_TERM]);
    let (id, output) = run(engine, &config).await;
    output.wait_for("ready").await;

    let argv = ["sh", "-c", "echo out $GREETING; echo err >&2; exit 5"].map(str::to_owned);
    let mut session = engine
        .exec(&name, &argv, &["GREETING=hello".to_owned()])
        .await
        .expect("exec");
    let pid = session.pid.expect("the exec's host pid");
    assert!(pid > 1);
    let mut printed = Vec::new();
    while let Some(chunk) = session.output.next().await {
        printed.extend_from_slice(&chunk.expect("output"));
    }
    let printed = String::from_utf8_lossy(&printed);
    assert!(printed.contains("out hello\n"), "{printed:?}");
    assert!(printed.contains("err\n"), "{printed:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(code) = engine.exec_exit_code(&session.id).await.expect("inspect") {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "the exec never reported its exit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(code, 5);

    let missing = engine
        .exec(&unique_name("se-test-missing"), &argv, &[])
        .await
        .expect_err("no such container");
    assert_eq!(missing.kind, EngineErrorKind::NotFound, "{missing}");
    engine.remove(&id).await.expect("remove");
}
