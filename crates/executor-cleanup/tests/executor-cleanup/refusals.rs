//! What the cleanup leaves alone: running tasks, live executors, tasks whose executor holds
//! the task lock, and everything when Singularity cannot vouch for the agent.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use singularity_common::task_lock::{LockOutcome, TaskLock};

use crate::support::*;

#[test]
fn an_active_task_and_a_task_with_a_live_executor_are_untouched() {
    let agent = Agent::new("", "");
    let finished_but_listed = agent.run_task("echo listed");
    agent.ended(&finished_but_listed, "TASK_FINISHED", 60);
    let live = task_id();
    let mut executor = agent
        .executor_command(&live, "echo started; sleep 60", json!({}))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Started: its definition, upload metadata and first line are written.
    wait_for("the live task to start", || {
        agent.definition_path(&live).exists()
            && !agent.upload_metadata(&live).is_empty()
            && fs::read_to_string(agent.task_dir(&live).join("service.log"))
                .is_ok_and(|t| t.contains("started"))
    });
    std::thread::sleep(Duration::from_millis(300));
    // Singularity thinks the live one ended long ago; only its executor says otherwise.
    agent.ended(&live, "TASK_FINISHED", 60);
    agent.api.set_active([finished_but_listed.as_str()]);
    let before = agent.snapshot();

    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 2),
            ("mesosRunningTasks", 1),
            ("runningTasksIgnored", 2),
        ],
    );
    assert_eq!(agent.snapshot(), before);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(executor.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    executor.wait().unwrap();
}

#[test]
fn a_reused_pid_does_not_keep_a_finished_task() {
    let agent = Agent::new("", "");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let task_id = agent.run_task("echo done");
    agent.ended(&task_id, "TASK_FINISHED", 60);
    // The definition was written an hour ago; its pid now belongs to a process started since.
    let mut stranger = Command::new("sleep").arg("60").spawn().unwrap();
    let path = agent.definition_path(&task_id);
    let mut definition: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    definition["executorPid"] = json!(stranger.id().to_string());
    fs::write(&path, serde_json::to_vec(&definition).unwrap()).unwrap();
    age(&path, Duration::from_secs(3600));

    let results = agent.clean();
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
        ],
    );
    assert!(!path.exists());
}

#[test]
fn a_task_whose_lock_is_held_waits_for_its_executor_then_is_cleaned_once() {
    let agent = Agent::new("", "");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let task_id = agent.run_task("for i in $(seq 1 100); do echo line-$i; done");
    agent.ended(&task_id, "TASK_FINISHED", 60);
    let path = agent.definition_path(&task_id);
    // What the executor holds during its teardown.
    let LockOutcome::Locked(lock) = TaskLock::acquire(&path).unwrap() else {
        panic!("the definition can be locked");
    };
    let before = agent.snapshot();
    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("runningTasksIgnored", 1),
        ],
    );
    assert_eq!(
        agent.snapshot(),
        before,
        "nothing touched while the lock is held"
    );
    drop(lock);

    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
        ],
    );
    let lines = rotated_lines(&agent.task_dir(&task_id));
    assert_eq!(lines.len(), 100, "each line once");
}

fn assert_stopped(
    agent: &Agent,
    results: &Value,
    message: &str,
    before: &std::collections::BTreeMap<std::path::PathBuf, (u64, std::time::SystemTime)>,
) {
    let text = results["errorMessage"].as_str().unwrap_or_default();
    assert!(text.contains(message), "{results}");
    expect_counts(results, &[]);
    assert_eq!(&agent.snapshot(), before, "nothing touched");
}

#[test]
fn safe_mode_stops_without_active_tasks_unless_the_host_is_decommissioned() {
    let agent = Agent::new("", "");
    let task_id = agent.run_task("echo x");
    agent.ended(&task_id, "TASK_FINISHED", 60);
    let before = agent.snapshot();
    let results = agent.clean();
    assert_stopped(
        &agent,
        &results,
        "Running in safe mode and found 0 running tasks - aborting cleanup",
        &before,
    );

    agent.api.set_decommissioned([HOST]);
    let results = agent.clean();
    expect_counts(
        &results,
        &[("totalTaskFiles", 1), ("successfullyCleanedTasks", 1)],
    );
    assert!(results.get("errorMessage").is_none(), "{results}");
}

#[test]
fn a_decommissioned_host_stops_when_told_not_to_clean() {
    let agent = Agent::new("", "cleanTasksWhenDecommissioned: false");
    agent.api.set_decommissioned([HOST]);
    let task_id = agent.run_task("echo x");
    agent.ended(&task_id, "TASK_FINISHED", 60);
    let before = agent.snapshot();
    let results = agent.clean();
    assert_stopped(
        &agent,
        &results,
        "cleanTasksWhenDecommissioned is false",
        &before,
    );
}

#[test]
fn an_unreachable_api_touches_nothing_after_three_attempts() {
    let agent = Agent::new("", "");
    let task_id = agent.run_task("echo x");
    agent.ended(&task_id, "TASK_FINISHED", 60);
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    agent.api.set_down(Some(503));
    let before = agent.snapshot();
    let results = agent.clean();
    assert_stopped(&agent, &results, "HTTP 503", &before);
    let api_calls = agent
        .api
        .requests()
        .iter()
        .filter(|r| r.uri.contains("/tasks/active/"))
        .count();
    assert_eq!(api_calls, 3);

    // Two failures then an answer: retried, and the run goes on.
    agent.api.set_down(None);
    agent.api.fail_next(2, 502);
    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
        ],
    );
}

#[test]
fn wrong_credentials_touch_nothing_and_a_credentials_file_wins() {
    let agent = Agent::new("", "");
    let task_id = agent.run_task("echo x");
    agent.ended(&task_id, "TASK_FINISHED", 60);
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let file = agent.root.path().join("credentials.json");
    fs::write(
        &file,
        format!(r#"{{"headerName": "{HEADER}", "token": "wrong"}}"#),
    )
    .unwrap();
    let config = agent.config_dir.join("singularity.executor.cleanup.yaml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        format!(
            "{text}singularityClientCredentialsPath: {}\n",
            file.display()
        ),
    )
    .unwrap();
    let before = agent.snapshot();
    let results = agent.clean();
    assert_stopped(&agent, &results, "HTTP 401", &before);
    assert_eq!(
        agent
            .api
            .requests()
            .iter()
            .filter(|r| r.status == 401)
            .count(),
        1,
        "a 401 is not retried"
    );
}

#[test]
fn an_invalid_configuration_exits_78_naming_the_key() {
    let agent = Agent::new("", "");
    let config = agent.config_dir.join("singularity.executor.cleanup.yaml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace("singularityHosts:", "unusedHosts:")).unwrap();
    for args in [&["--check-config"][..], &[][..]] {
        let out = agent.cleanup(args);
        assert_eq!(out.status.code(), Some(78), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("singularityHosts"), "{stderr}");
    }
    let file = agent.root.path().join("broken.json");
    fs::write(&file, "not json").unwrap();
    fs::write(
        &config,
        format!(
            "{text}singularityClientCredentialsPath: {}\n",
            file.display()
        ),
    )
    .unwrap();
    let out = agent.cleanup(&[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("singularityClientCredentialsPath"),
        "{stderr}"
    );
    assert!(agent.results_files().is_empty());
}
