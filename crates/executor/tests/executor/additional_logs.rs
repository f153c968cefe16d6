//! `logrotateAdditionalFiles` through the executor: a file the task appends to itself is
//! rotated while the task runs and once more at teardown, compressed beside itself, with every
//! line kept.

use serde_json::json;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_task_appends_to_is_rotated_with_every_line_kept() {
    let harness = Harness::new(
        "idleExecutorShutdownWaitMillis: 300\nlogrotateAdditionalFiles:\n  \
         - filename: logs/access.log\n    logrotateSizeOverride: 64k\n    \
         deleteInExecutorCleanup: true",
    );
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    // 300,000 numbered lines appended (`>>`, O_APPEND) in 3,000 bursts over a few seconds.
    let cmd = "mkdir -p ../logs && i=0; while [ $i -lt 3000 ]; do \
               seq $((i * 100 + 1)) $((i * 100 + 100)); i=$((i + 1)); done >> ../logs/access.log";
    agent.launch(task(&agent, &id, &json!({"cmd": cmd})));
    let finished = wait_terminal(&agent, &id).await;
    assert_eq!(
        finished.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);

    let logs = harness.task_dir(&id).join("logs");
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(&logs)
        .expect("logs dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            name.starts_with("access.log-") && name.ends_with(".log.gz")
        })
        .collect();
    // Each rotation is at least a second after the previous one (the tick).
    segments.sort_by_key(|path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .expect("mtime")
    });
    assert!(
        segments.len() >= 2,
        "rotated while running and at teardown: {segments:?}"
    );
    let mut text = Vec::new();
    for segment in &segments {
        text.extend(singularity_logs::compress::read_decompressed(segment).expect("gunzip"));
    }
    let live = std::fs::read(logs.join("access.log")).expect("the live file stays");
    assert!(live.is_empty(), "the final rotation took everything");
    let text = String::from_utf8(text).expect("utf-8");
    let mut expected = 1;
    for line in text.lines() {
        assert_eq!(line, expected.to_string(), "line {expected}");
        expected += 1;
    }
    assert_eq!(expected - 1, 300_000);
}
