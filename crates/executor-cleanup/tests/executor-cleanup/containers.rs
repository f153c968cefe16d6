//! The orphan container sweep against the real dockerd, and against the real OCI runtime
//! (runc) for daemonless containers.

use std::time::{Duration, SystemTime};

use serde_json::json;
use singularity_containers::NetworkMode;
use singularity_containers::oci::{BundleConfig, ImageStore, runtime_spec};
use singularity_test_support::{self as services, docker_cli, test_image};

use crate::support::*;

fn container(name: &str, running: bool) {
    let image = test_image();
    let out = if running {
        docker_cli(&["run", "-d", "--name", name, &image, "sleep", "300"])
    } else {
        docker_cli(&["create", "--name", name, &image, "true"])
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exists(name: &str) -> bool {
    docker_cli(&["inspect", "--type", "container", name])
        .status
        .success()
}

/// Each test's sweep removes every `se-` container whose task its own stand-in does not list
/// as active, the other test's included: they take turns.
static ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn orphaned_containers_go_running_or_exited_and_an_active_tasks_stays() {
    let _turn = ENGINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let agent = Agent::new("dockerStopTimeout: 5", "runDockerCleanup: true");
    let active = task_id();
    let orphan_running = task_id();
    let orphan_exited = task_id();
    let names = [&active, &orphan_running, &orphan_exited].map(|id| format!("se-{id}"));
    container(&names[0], true);
    container(&names[1], true);
    container(&names[2], false);
    agent.api.set_active([active.as_str()]);

    let results = agent.clean();
    let kept = exists(&names[0]);
    let orphans_left = [&names[1], &names[2]].map(|n| exists(n));
    let _ = docker_cli(&["rm", "-f", "-v", &names[0]]);
    let _ = docker_cli(&["rm", "-f", "-v", &names[1]]);
    let _ = docker_cli(&["rm", "-f", "-v", &names[2]]);
    assert!(kept, "the active task's container is kept");
    assert_eq!(orphans_left, [false, false], "orphans removed");
    expect_counts(&results, &[("mesosRunningTasks", 1)]);
    assert_eq!(results["errorMessage"], json!(null));
}

#[test]
fn a_cleaned_docker_tasks_container_is_removed_with_it() {
    let _turn = ENGINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let agent = Agent::new("dockerStopTimeout: 5", "");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let task_id = agent.run_task("echo boxed");
    let name = format!("se-{task_id}");
    container(&name, true);
    let at = chrono::Utc::now().timestamp_millis() - 30 * 60_000;
    agent.api.set_history(
        singularity_fake_singularity::TaskHistory::new(&task_id, "TASK_FINISHED", at).docker(),
    );
    let results = agent.clean();
    let left = exists(&name);
    let _ = docker_cli(&["rm", "-f", "-v", &name]);
    assert!(!left, "the task's container is removed");
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
        ],
    );
}

/// Daemonless containers as a killed executor leaves them: the runtime's state in `state`,
/// bundles in `<store>/bundles`.
struct Daemonless {
    dir: tempfile::TempDir,
    rootfs: std::path::PathBuf,
}

impl Daemonless {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let archive = dir.path().join("busybox.tar");
        services::save_test_image(&archive);
        let store = ImageStore::new(dir.path().join("store"));
        let rootfs = store.import_archive(&archive).expect("import").rootfs;
        Self { dir, rootfs }
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn bundle(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("store/bundles").join(name)
    }

    fn executor_config(&self) -> String {
        format!(
            "ociRuntime: {}\nociRuntimeRoot: {}\nociImageStoreDirectory: {}",
            services::oci_runtime().display(),
            self.state().display(),
            self.dir.path().join("store").display()
        )
    }

    fn runc(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(services::oci_runtime())
            .arg("--root")
            .arg(self.state())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("runc")
    }

    /// Starts `sleep 300` detached as container `name`.
    fn start(&self, name: &str) {
        let config = BundleConfig {
            rootfs: self.rootfs.clone(),
            args: vec!["sleep".into(), "300".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: None,
            binds: Vec::new(),
            network: NetworkMode::Host,
            memory: None,
            cpus: None,
            pids_limit: None,
            rlimits: Vec::new(),
            cgroups_path: format!("/se-test/{name}"),
        };
        let bundle = self.bundle(name);
        std::fs::create_dir_all(&bundle).expect("bundle");
        runtime_spec(&config)
            .expect("spec")
            .save(bundle.join("config.json"))
            .expect("config.json");
        // The detached container inherits the runtime's output: a file, not a pipe to wait on.
        let errors = self.dir.path().join(format!("{name}.err"));
        let status = std::process::Command::new(services::oci_runtime())
            .arg("--root")
            .arg(self.state())
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&errors).expect("errors file"))
            .status()
            .expect("runc");
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&errors).unwrap_or_default()
        );
    }

    fn listed(&self) -> String {
        String::from_utf8_lossy(&self.runc(&["list", "-q"]).stdout).into_owned()
    }
}

impl Drop for Daemonless {
    fn drop(&mut self) {
        for name in self.listed().split_whitespace() {
            let _ = self.runc(&["delete", "--force", name]);
        }
    }
}

/// An agent whose Docker sweep finds no engine: the sweeps of these tests must not remove the
/// containers other tests run on the shared dockerd.
fn agent_without_docker(executor_extra: &str) -> Agent {
    let agent = Agent::new(executor_extra, "runDockerCleanup: true");
    let file = agent.config_dir.join("singularity.executor.yaml");
    let text = std::fs::read_to_string(&file).expect("config");
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("dockerSocket:") {
                "dockerSocket: /nonexistent/docker.sock".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&file, text.join("\n")).expect("config");
    agent
}

#[test]
fn orphaned_daemonless_containers_are_deleted_with_their_bundles_and_an_active_tasks_stays() {
    let oci = Daemonless::new();
    let agent = agent_without_docker(&oci.executor_config());
    let active = task_id();
    let orphan = task_id();
    let names = [&active, &orphan].map(|id| format!("se-{id}"));
    oci.start(&names[0]);
    oci.start(&names[1]);
    // Bundles the runtime does not list: an executor killed before `runc run`.
    let never_ran = format!("se-{}", task_id());
    let active_unlisted = task_id();
    for name in [&never_ran, &format!("se-{active_unlisted}")] {
        std::fs::create_dir_all(oci.bundle(name)).expect("bundle");
        std::fs::write(oci.bundle(name).join("config.json"), "{}").expect("config.json");
    }
    // Unpackings in the store's tmp/: one abandoned two days ago, one under way.
    let tmp = oci.dir.path().join("store/tmp");
    for name in ["unpack-old", "unpack-new"] {
        std::fs::create_dir_all(tmp.join(name).join("rootfs/bin")).expect("unpacking");
    }
    std::fs::File::open(tmp.join("unpack-old"))
        .and_then(|d| d.set_modified(SystemTime::now() - Duration::from_secs(2 * 24 * 3600)))
        .expect("age the abandoned unpacking");
    agent
        .api
        .set_active([active.as_str(), active_unlisted.as_str()]);

    let results = agent.clean();
    assert!(
        !oci.bundle(&never_ran).exists(),
        "the unlisted orphan's bundle goes"
    );
    assert!(
        oci.bundle(&format!("se-{active_unlisted}")).exists(),
        "an active task's bundle stays"
    );
    assert!(
        !tmp.join("unpack-old").exists(),
        "the abandoned unpacking goes"
    );
    assert!(tmp.join("unpack-new").exists(), "the recent one stays");
    let listed = oci.listed();
    assert!(
        listed.contains(&names[0]),
        "the active task's stays: {listed}"
    );
    assert!(oci.bundle(&names[0]).exists());
    assert!(
        !listed.contains(&names[1]),
        "the orphan is deleted: {listed}"
    );
    assert!(!oci.bundle(&names[1]).exists(), "its bundle is removed");
    expect_counts(&results, &[("mesosRunningTasks", 2)]);
    assert_eq!(results["errorMessage"], json!(null));
}

#[test]
fn without_an_oci_runtime_installed_the_sweep_finds_nothing() {
    let agent = Agent::new("ociRuntime: /nonexistent/runc", "runDockerCleanup: true");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let results = agent.clean();
    assert_eq!(results["errorMessage"], json!(null));
    expect_counts(&results, &[("mesosRunningTasks", 1)]);
}
