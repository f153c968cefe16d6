//! The executor inside the agent image (`deploy/image/build.sh`), beside the host's dockerd:
//! the host's socket mounted, the host's work directory mounted at a different path. A Docker
//! task sees the sandbox at `/mnt/mesos/sandbox` and its output lands in the host-side sandbox;
//! a volume with no host equivalent fails the task with a message naming the path.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use md5::Digest as _;
use serde_json::json;

use crate::support::{DAEMONS, binary, local_log_files, workspace, write};

/// Where the host's work directory appears inside the agent's container.
const INSIDE: &str = "/agent-work";

/// The agent image, built once per run from the debug daemons.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        for daemon in DAEMONS {
            binary(daemon);
        }
        let previous = image_id("singularity-agent:latest");
        let out = Command::new(workspace().join("deploy/image/build.sh"))
            .args(["--profile", "debug", "--no-build"])
            .env("DOCKER_HOST", singularity_test_support::docker_host())
            .stdin(Stdio::null())
            .output()
            .expect("run deploy/image/build.sh");
        assert!(
            out.status.success(),
            "image build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reference = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("the image reference")
            .to_owned();
        // Each build imports a new image; the one it untagged would stay behind, unnamed. An
        // image some container still uses is kept by the engine.
        if let Some(previous) = previous
            && image_id(&reference).as_ref() != Some(&previous)
        {
            let _ = singularity_test_support::docker_cli(&["rmi", &previous]);
        }
        reference
    })
}

/// The id of `reference` on the engine, if it is there.
fn image_id(reference: &str) -> Option<String> {
    let out = singularity_test_support::docker_cli(&[
        "image", "inspect", "--format", "{{.Id}}", reference,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A host work directory with the executor's configuration, written with the paths the
/// executor sees inside its container.
fn work_dir() -> tempfile::TempDir {
    let work = tempfile::Builder::new()
        .prefix("se-test-agent-container-")
        .tempdir()
        .expect("temp dir");
    for dir in ["etc", "tasks", "meta", "tail", "cache", "sandbox"] {
        std::fs::create_dir_all(work.path().join(dir)).expect("work dir");
    }
    let etc = work.path().join("etc");
    write(
        &etc.join("singularity.base.yaml"),
        &format!(
            "s3UploaderMetadataDirectory: {INSIDE}/meta\nlogWatcherMetadataDirectory: {INSIDE}/tail\n"
        ),
    );
    write(
        &etc.join("singularity.s3base.yaml"),
        &format!("artifactCacheDirectory: {INSIDE}/cache\n"),
    );
    write(
        &etc.join("singularity.executor.yaml"),
        &format!(
            "globalTaskDefinitionDirectory: {INSIDE}/tasks\ndefaultRunAsUser: root\n\
             dockerSocket: /var/run/docker.sock\nmaxTaskMessageLength: 2000\n"
        ),
    );
    work
}

/// Runs `task` (a file in `work`) with the executor in the agent image.
fn run_in_agent_container(work: &Path, task: &str) -> Output {
    let socket = singularity_test_support::docker_socket();
    Command::new("docker")
        .env("DOCKER_HOST", singularity_test_support::docker_host())
        .args(["run", "--rm", "-v"])
        .arg(format!("{}:/var/run/docker.sock", socket.display()))
        .arg("-v")
        .arg(format!("{}:{INSIDE}", work.display()))
        .arg(image())
        .args(["singularity-executor", "--config-dir"])
        .arg(format!("{INSIDE}/etc"))
        .arg("run")
        .arg(format!("{INSIDE}/{task}"))
        .arg("--sandbox")
        .arg(format!("{INSIDE}/sandbox"))
        .stdin(Stdio::null())
        .output()
        .expect("docker run the agent image")
}

#[test]
fn a_docker_task_of_the_containerised_executor_uses_the_host_side_sandbox() {
    let work = work_dir();
    let marker = b"placed by the executor";
    let task_id = "agentc-d1-1765000000000-1-testhost-local";
    write(
        &work.path().join("task.json"),
        &json!({
            "taskId": task_id, "requestId": "agentc", "id": "d1",
            "executorData": {
                "cmd": "sh -c 'cat /mnt/mesos/sandbox/marker.txt; echo; ls /mnt/mesos/sandbox > /mnt/mesos/sandbox/seen.txt'",
                "embeddedArtifacts": [{"name": "marker", "filename": "marker.txt",
                    "content": base64_of(marker), "md5sum": hex::encode(md5::Md5::digest(marker))}]
            },
            "containerInfo": {"type": "DOCKER", "docker": {
                "image": singularity_test_support::test_image(), "network": "NONE"}}
        })
        .to_string(),
    );
    let out = run_in_agent_container(work.path(), "task.json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with("TASK_FINISHED: Process exited normally with code 0\n"),
        "{stdout}"
    );

    let task_dir = work.path().join("sandbox").join(task_id);
    let seen = std::fs::read_to_string(task_dir.join("seen.txt")).expect("seen.txt on the host");
    let seen: Vec<&str> = seen.lines().collect();
    assert!(seen.contains(&"marker.txt"), "{seen:?}");
    let output: Vec<u8> = local_log_files(&task_dir).into_values().flatten().collect();
    assert_eq!(
        String::from_utf8_lossy(&output),
        "placed by the executor\n",
        "the task's output in the host-side sandbox"
    );
}

#[test]
fn a_volume_with_no_host_equivalent_fails_the_task_naming_the_path() {
    let work = work_dir();
    let task_id = "agentc-d1-1765000000001-1-testhost-local";
    write(
        &work.path().join("task.json"),
        &json!({
            "taskId": task_id, "requestId": "agentc", "id": "d1",
            "executorData": {"cmd": "true"},
            "containerInfo": {"type": "DOCKER",
                "volumes": [{"containerPath": "/data", "hostPath": "/agent-only/data", "mode": "RW"}],
                "docker": {"image": singularity_test_support::test_image(), "network": "NONE"}}
        })
        .to_string(),
    );
    let out = run_in_agent_container(work.path(), "task.json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        (last.starts_with("TASK_FAILED: ") || last.starts_with("TASK_LOST: "))
            && last.contains("/agent-only/data has no path on the container engine's host"),
        "{stdout}"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
