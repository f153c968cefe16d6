//! The task's logs through the executor: rotated in-process while the task runs, finished at
//! teardown (final rotation, tail file, empty service.log removed) before the final metadata.

use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;

use crate::support::*;

/// Asserts the task directory holds what a finished task with `n` sequence lines leaves:
/// at least `min_rotations` compressed rotations named as Java's and matched by the upload
/// glob, no service.log, the tail file, and every line exactly once in order.
pub fn assert_rotated_sequence(task_dir: &std::path::Path, n: usize, min_rotations: usize) {
    let logs = task_dir.join("logs");
    let glob = globset_like("service.log");
    let files =
        singularity_logs::names::segments_in_order(&logs, "service.log", DATEFORMAT).expect("list");
    assert!(files.len() >= min_rotations, "{} rotations", files.len());
    for file in &files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(glob(&name), "{name} does not match service.log*.[gb]z*");
    }
    assert!(!task_dir.join("service.log").exists(), "service.log left");
    let text = task_output(task_dir);
    let mut expected = 1;
    for line in text.lines() {
        assert_eq!(line, expected.to_string(), "line {expected}");
        expected += 1;
    }
    assert_eq!(expected - 1, n);
    let tail =
        std::fs::read_to_string(task_dir.join("tail_of_finished_service.log")).expect("tail file");
    let expected_tail: String = (n - 2_499..=n).map(|i| format!("{i}\n")).collect();
    assert_eq!(tail, expected_tail);
}

/// `<name>*.[gb]z*` as the uploader matches it: the name, anything, a dot, g or b, z.
fn globset_like(name: &'static str) -> impl Fn(&str) -> bool {
    move |candidate: &str| {
        candidate.starts_with(name)
            && candidate
                .as_bytes()
                .windows(3)
                .any(|w| w[0] == b'.' && (w[1] == b'g' || w[1] == b'b') && w[2] == b'z')
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_writing_fast_is_rotated_by_size_with_every_line_kept() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxServiceLogSizeMb: 1");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    // About 11 MiB of numbered lines: at least 10 size rotations.
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": "seq 1 1500000", "defaultS3Bucket": "task-logs"}),
    ));
    let finished = wait_terminal(&agent, &id).await;
    assert_eq!(
        finished.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_rotated_sequence(&harness.task_dir(&id), 1_500_000, 10);
    let upload: serde_json::Value = serde_json::from_slice(
        &std::fs::read(harness.s3_metadata.join(format!("{id}-default.s3.json")))
            .expect("upload metadata"),
    )
    .expect("json");
    assert_eq!(upload["finished"], json!(true));
    // No logrotate or cron file is written anywhere.
    for dir in ["/etc/logrotate.d", "/etc/logrotate.d/hourly", "/etc/cron.d"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                assert!(
                    !entry.file_name().to_string_lossy().contains(&id),
                    "{} written",
                    entry.path().display()
                );
            }
        }
    }
}
