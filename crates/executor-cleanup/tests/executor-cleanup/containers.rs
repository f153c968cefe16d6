//! The orphan container sweep against the real dockerd.

use serde_json::json;
use singularity_test_support::{docker_cli, test_image};

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
