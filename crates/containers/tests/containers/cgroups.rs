//! Containers under a cgroup parent, on both engines and real cgroups: a [`TestCgroup`]
//! stands for the cgroup a Mesos agent makes for an executor.

use std::process::Command;

use singularity_containers::cgroup::{self, CgroupDriver, engine_parent};
use singularity_containers::{ContainerEngine, Signal};
use singularity_test_support::{self as services, TestCgroup, unique_name};

use crate::support::{Target, run};

on_both_engines!(
    the_cgroup_driver_is_the_one_the_engine_reports,
    a_container_under_a_cgroup_parent_runs_and_is_counted_inside_it,
    a_memory_limit_on_the_parent_oom_kills_the_container_and_says_so,
);

/// The engine's cgroup driver as its own CLI prints it.
fn cli_driver(target: &Target) -> String {
    let output = if target.name == "podman" {
        Command::new("podman")
            .args(["--url", &services::podman_host(), "info", "--format"])
            .arg("{{.Host.CgroupManager}}")
            .output()
    } else {
        Command::new("docker")
            .args(["-H", &services::docker_host(), "info", "--format"])
            .arg("{{.CgroupDriver}}")
            .output()
    }
    .expect("run the engine's CLI");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

async fn the_cgroup_driver_is_the_one_the_engine_reports(target: Target) {
    let driver = target.engine.cgroup_driver().await.expect("driver");
    let expected = match cli_driver(&target).as_str() {
        "cgroupfs" => CgroupDriver::Cgroupfs,
        "systemd" => CgroupDriver::Systemd,
        other => panic!("unexpected driver {other}"),
    };
    assert_eq!(driver, expected);
}

/// The parent an engine takes for the test cgroup.
async fn parent_of(target: &Target, cgroup: &TestCgroup) -> String {
    let driver = target.engine.cgroup_driver().await.expect("driver");
    engine_parent(driver, cgroup.path()).expect("the test cgroup can be a parent")
}

async fn a_container_under_a_cgroup_parent_runs_and_is_counted_inside_it(target: Target) {
    let engine = &target.engine;
    let cgroup = TestCgroup::create();
    let name = unique_name("se-test-cgroup");
    let mut config = target.busybox(
        &name,
        &["sh", "-c", "sleep 60 & sleep 60 & echo ready; wait"],
    );
    config.cgroup_parent = Some(parent_of(&target, &cgroup).await);
    let (id, output) = run(engine, &config).await;
    output.wait_for("ready").await;
    let pid = engine
        .main_pid(&id)
        .await
        .expect("inspect")
        .expect("running");

    for controller in ["cpu", "cpuacct", "memory", "pids"] {
        let procs = cgroup.procs(controller);
        assert!(
            procs.contains(&pid),
            "{}: pid {pid} not under {} in {controller}: {procs:?}",
            target.name,
            cgroup.path()
        );
        assert_eq!(
            cgroup.read(controller, "cgroup.procs"),
            "",
            "the container has a cgroup of its own below the parent"
        );
    }
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup file");
    let memory = own
        .lines()
        .find(|l| l.split(':').nth(1) == Some("memory"))
        .expect("memory line");
    assert!(memory.contains(&format!("{}/", cgroup.path())), "{memory}");
    // The shell and its two sleeps share the container's pids cgroup.
    assert_eq!(cgroup::threads(pid).expect("threads"), 3);

    engine.signal(&id, Signal::Kill).await.expect("SIGKILL");
    let exit = engine.wait(&id).await.expect("wait");
    engine.remove(&id).await.expect("remove");
    assert_eq!(exit.code, 137);
    assert!(
        !exit.oom_killed,
        "a SIGKILL under a parent is not an OOM kill"
    );
}

async fn a_memory_limit_on_the_parent_oom_kills_the_container_and_says_so(target: Target) {
    let engine = &target.engine;
    let cgroup = TestCgroup::create();
    let limit = (32 * 1024 * 1024).to_string();
    cgroup.write("memory", "memory.limit_in_bytes", &limit);
    // No swap beyond it, or the container would swap instead of being killed.
    cgroup.write("memory", "memory.memsw.limit_in_bytes", &limit);

    let name = unique_name("se-test-cgroup");
    // tail keeps the last lines of a file without newlines: all of it.
    let mut config = target.busybox(&name, &["tail", "/dev/zero"]);
    config.cgroup_parent = Some(parent_of(&target, &cgroup).await);
    assert_eq!(config.memory, None, "no limit of its own");
    let (id, _output) = run(engine, &config).await;
    let exit = engine.wait(&id).await.expect("wait");
    engine.remove(&id).await.expect("remove");
    assert_eq!(exit.code, 137, "{}", target.name);
    assert!(exit.oom_killed, "{}: {exit:?}", target.name);
    // The limit that was reached was the parent's.
    assert_eq!(cgroup.read("memory", "memory.max_usage_in_bytes"), limit);
}
