//! `singularity-executor run TASK.json`: one task without Mesos.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn write_task(harness: &Harness, name: &str, value: &serde_json::Value) -> std::path::PathBuf {
    let path = harness.root.path().join(name);
    std::fs::write(&path, value.to_string()).expect("write task file");
    path
}

fn only_task_dir(sandbox: &std::path::Path) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(sandbox)
        .expect("sandbox")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().expect("one task directory")
}

#[test]
fn a_deploy_json_runs_to_finished_and_exits_zero() {
    let harness = Harness::new("");
    let file = write_task(
        &harness,
        "task.json",
        &json!({"requestId": "my-request", "id": "d1",
                "executorData": {"cmd": "echo \"$GREETING from $TASK_REQUEST_ID\"; pwd"},
                "env": {"GREETING": "hi"}}),
    );
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
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("TASK_STARTING: Staging files... (executor pid: "));
    assert!(lines[1].starts_with("TASK_RUNNING: Task running process sh - (pid: "));
    assert_eq!(
        lines[2],
        "TASK_FINISHED: Process exited normally with code 0"
    );

    let task_dir = only_task_dir(&sandbox);
    let name = task_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(name.starts_with("my-request-d1-"), "{name}");
    let log = crate::support::task_output(&task_dir);
    assert!(log.contains("hi from my-request\n"), "{log}");
    assert!(
        log.contains(&format!("{}\n", task_dir.join("app").display())),
        "{log}"
    );
    assert!(
        harness
            .task_definitions
            .join(format!("{name}.task.json"))
            .is_file()
    );
}

#[test]
fn a_failing_task_exits_non_zero() {
    let harness = Harness::new("");
    let file = write_task(
        &harness,
        "task.json",
        &json!({"executorData": {"cmd": "exit 2"}}),
    );
    let output = harness
        .run_command(&file, &harness.root.path().join("run"))
        .output()
        .expect("run the executor");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.ends_with("TASK_FAILED: Process failed with code 2\n"),
        "{stdout}"
    );
}

#[test]
fn a_mesos_task_info_runs_in_a_new_directory_by_default() {
    let harness = Harness::new("");
    let id = task_id();
    let data = json!({"cmd": "echo from-task-info"}).to_string();
    let file = write_task(
        &harness,
        "taskinfo.json",
        &json!({"name": "t", "task_id": {"value": id}, "agent_id": {"value": "a"},
                "data": base64(data.as_bytes())}),
    );
    let cwd = harness.root.path().join("cwd");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let output = std::process::Command::new(EXECUTOR)
        .arg("--config-dir")
        .arg(&harness.config_dir)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .args(["run"])
        .arg(&file)
        .current_dir(&cwd)
        .output()
        .expect("run the executor");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sandbox = only_task_dir(&cwd);
    assert!(
        sandbox
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("singularity-run-"))
    );
    let log = crate::support::task_output(&sandbox.join(&id));
    assert_eq!(log, "from-task-info\n");
}

#[test]
fn sigterm_kills_the_task() {
    let harness = Harness::new("");
    let file = write_task(
        &harness,
        "task.json",
        &json!({"executorData": {"cmd": "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done"}}),
    );
    let sandbox = harness.root.path().join("run");
    let mut child = harness
        .run_command(&file, &sandbox)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let running = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(running.starts_with("TASK_STARTING"), "{running}");
    let running = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(running.starts_with("TASK_RUNNING"), "{running}");
    let deadline = Instant::now() + SOON;
    loop {
        let dir = only_task_dir(&sandbox);
        if std::fs::read_to_string(dir.join("service.log"))
            .unwrap_or_default()
            .contains("ready")
        {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let killed = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        killed.starts_with("TASK_KILLED: Task killed. Process exited gracefully with code 0"),
        "{killed}"
    );
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn an_unusable_task_file_exits_non_zero() {
    let harness = Harness::new("");
    let file = write_task(&harness, "task.json", &json!({"nothing": true}));
    let output = harness
        .run_command(&file, &harness.root.path().join("run"))
        .output()
        .expect("run the executor");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("executorData"));
}
