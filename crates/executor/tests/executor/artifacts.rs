//! Artifacts as the executor binary stages them before the task runs: the file is there when
//! the command starts, and a failed verification fails the task.

use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_artifacts_are_in_place_before_the_command_runs() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let content = b"echo staged script ran\n";
    let good = task_id();
    agent.launch(task(
        &agent,
        &good,
        &json!({
            "cmd": "sh ../bin/run.sh",
            "embeddedArtifacts": [{"name": "run", "filename": "run.sh",
                                   "content": base64(content),
                                   "targetFolderRelativeToTask": "bin"}]
        }),
    ));
    let status = wait_terminal(&agent, &good).await;
    assert_eq!(
        status.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(harness.service_log(&good), "staged script ran\n");
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_md5_mismatch_fails_the_task_without_running_it() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 300");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(
        &agent,
        &id,
        &json!({
            "cmd": "echo should-not-run",
            "embeddedArtifacts": [{"name": "conf", "filename": "conf.txt",
                                   "md5sum": "00000000000000000000000000000000",
                                   "content": base64(b"x")}]
        }),
    ));
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        status.state,
        TaskState::TaskFailed,
        "{:#?}",
        summary(&agent)
    );
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with("Error while initializing task: "),
        "{message}"
    );
    assert_eq!(
        states(&agent, &id),
        vec![TaskState::TaskStarting, TaskState::TaskFailed]
    );
    assert!(!harness.service_log(&id).contains("should-not-run"));
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}
