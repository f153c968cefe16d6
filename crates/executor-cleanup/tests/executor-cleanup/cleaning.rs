//! Finished tasks: logs finalised, metadata finished, files removed in order, or waiting.

use std::fs;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn lines_cmd(n: usize) -> String {
    format!("for i in $(seq 1 {n}); do echo line-$i; done")
}

fn expected_lines(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("line-{i}")).collect()
}

#[test]
fn a_task_finished_20_minutes_ago_is_cleaned_and_one_5_minutes_ago_waits() {
    let agent = Agent::new("", "");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let old = agent.run_task(&lines_cmd(500));
    let recent = agent.run_task(&lines_cmd(10));
    agent.ended(&old, "TASK_FINISHED", 20);
    agent.ended(&recent, "TASK_FINISHED", 5);
    fs::create_dir_all(agent.task_dir(&old).join("app/sub")).unwrap();
    fs::write(agent.task_dir(&old).join("app/sub/data"), "x").unwrap();

    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 2),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
            ("waitingTasks", 1),
        ],
    );

    let old_dir = agent.task_dir(&old);
    assert_eq!(rotated_lines(&old_dir), expected_lines(500));
    assert!(!old_dir.join("service.log").exists(), "rotated away");
    assert!(!old_dir.join("app").exists());
    assert!(!agent.definition_path(&old).exists());
    let tail = fs::read_to_string(old_dir.join("tail_of_finished_service.log")).unwrap();
    assert!(tail.ends_with("line-500\n"), "{tail}");
    let metadata = agent.upload_metadata(&old);
    assert!(!metadata.is_empty());
    for record in &metadata {
        assert_eq!(record["finished"], json!(true), "{record}");
        assert_eq!(record["uploadImmediately"], json!(true), "{record}");
    }

    // The recent task's logs are finished too, but its files stay for now.
    let recent_dir = agent.task_dir(&recent);
    assert_eq!(rotated_lines(&recent_dir), expected_lines(10));
    assert!(recent_dir.join("app").exists());
    assert!(agent.definition_path(&recent).exists());

    // A second run finds the recent one still waiting and changes nothing else.
    let again = agent.clean();
    expect_counts(
        &again,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("waitingTasks", 1),
        ],
    );
    assert_eq!(rotated_lines(&recent_dir), expected_lines(10));
}

#[test]
fn a_failed_task_keeps_its_app_directory_and_a_missing_sandbox_drops_the_definition() {
    let agent = Agent::new("", "");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let failed = agent.run_task("echo failing; exit 3");
    agent.ended(&failed, "TASK_FAILED", 120);
    let gone = agent.run_task("echo bye");
    agent.ended(&gone, "TASK_FINISHED", 60);
    fs::remove_dir_all(agent.task_dir(&gone)).unwrap();

    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 2),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
            ("waitingTasks", 1),
        ],
    );
    assert!(agent.task_dir(&failed).join("app").exists());
    assert!(agent.definition_path(&failed).exists());
    assert_eq!(rotated_lines(&agent.task_dir(&failed)), ["failing"]);
    assert!(!agent.definition_path(&gone).exists());
}

#[test]
fn an_executor_killed_mid_task_has_every_line_rotated_and_its_metadata_finished() {
    let agent = Agent::new("", "");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let task_id = task_id();
    let mut executor = agent
        .executor_command(
            &task_id,
            &format!("{}; sleep 2", lines_cmd(2000)),
            json!({}),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let service_log = agent.task_dir(&task_id).join("service.log");
    wait_for("2000 lines in service.log", || {
        fs::read_to_string(&service_log).is_ok_and(|t| t.contains("line-2000\n"))
    });
    executor.kill().unwrap();
    executor.wait().unwrap();
    // Before: the executor's metadata says the task is still running.
    for record in agent.upload_metadata(&task_id) {
        assert_eq!(record["finished"], json!(false));
    }
    agent.ended(&task_id, "TASK_LOST", 30);
    std::thread::sleep(Duration::from_secs(2));

    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
        ],
    );
    assert_eq!(
        rotated_lines(&agent.task_dir(&task_id)),
        expected_lines(2000)
    );
    let metadata = agent.upload_metadata(&task_id);
    assert!(!metadata.is_empty());
    for record in metadata {
        assert_eq!(record["finished"], json!(true));
        assert_eq!(record["uploadImmediately"], json!(true));
        assert_eq!(record["fileGlob"], json!("service.log*.[gb]z*"));
    }
}

#[test]
fn files_flagged_for_the_cleanup_go_and_the_java_executors_confs_are_removed() {
    let agent = Agent::new(
        "logrotateAdditionalFiles:\n  - filename: '*.scratch'\n    deleteInExecutorCleanup: true\n  - filename: keep.out",
        "",
    );
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let task_id = agent.run_task("echo hi");
    agent.ended(&task_id, "TASK_FINISHED", 30);
    let dir = agent.task_dir(&task_id);
    fs::write(dir.join("b.scratch"), "x").unwrap();
    fs::write(dir.join("notes.txt"), "x").unwrap();
    let leftovers = [
        agent.logrotate.join(&task_id),
        agent.logrotate_hourly.join(format!("{task_id}.HOURLY")),
        agent
            .logrotate_hourly
            .join(format!("{task_id}.EVERY_MINUTE")),
        agent.logrotate_hourly.join(format!("{task_id}.sizebased")),
        agent.cron.join(format!("{task_id}.logrotate")),
    ];
    for file in &leftovers {
        fs::write(file, "# written by the Java executor\n").unwrap();
    }
    let unrelated = agent.logrotate.join("another-task-dep1-1-1-host-rack");
    fs::write(&unrelated, "x").unwrap();

    let results = agent.clean();
    expect_counts(
        &results,
        &[
            ("totalTaskFiles", 1),
            ("mesosRunningTasks", 1),
            ("successfullyCleanedTasks", 1),
        ],
    );
    assert!(!dir.join("b.scratch").exists());
    assert!(dir.join("notes.txt").exists());
    for file in &leftovers {
        assert!(!file.exists(), "{} left", file.display());
    }
    assert!(unrelated.exists());
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let agent = Agent::new("", "runDockerCleanup: true");
    agent.api.set_active(["other-dep1-1-1-testhost-rack1"]);
    let done = agent.run_task(&lines_cmd(5));
    agent.ended(&done, "TASK_FINISHED", 30);
    let recent = agent.run_task(&lines_cmd(5));
    agent.ended(&recent, "TASK_FINISHED", 1);
    let before = agent.snapshot();

    let out = agent.cleanup(&["--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("{done}: would be cleaned")),
        "{printed}"
    );
    assert!(printed.contains("would remove"), "{printed}");
    assert!(
        printed.contains(&format!("{recent}: would wait")),
        "{printed}"
    );
    assert_eq!(agent.snapshot(), before);
    assert!(agent.results_files().is_empty());
}
