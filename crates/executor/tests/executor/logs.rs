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

/// A tmpfs of `size` mounted at `path`, unmounted (lazily, in case a process still uses it)
/// on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Self {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `path` with one file there; returns the file.
fn fill(path: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let filler = path.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let block = vec![0_u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    // The last partial block too.
    while file.write_all(&block[..512]).is_ok() {}
    filler
}

/// Waits until `path` exists, or panics naming what the executor logged.
async fn expect_file(path: &std::path::Path, harness: &Harness) {
    assert!(
        wait_for_file(path, SOON).await,
        "{} never appeared; the executor's log:\n{}",
        path.display(),
        harness.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sandbox_drops_output_without_stopping_the_task_and_says_how_much() {
    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300");
    let _tmpfs = Tmpfs::mount(&harness.sandbox, "1m");
    let flags = harness.root.path();
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    // The task prints, waits for the test to fill the disk, prints 100,000 lines into the
    // full disk, then waits for the space to come back and prints one more line.
    let script = format!(
        "seq 1 1000; while [ ! -e {go} ]; do sleep 0.05; done; seq 1 100000; touch {printed}; \
         while [ ! -e {freed} ]; do sleep 0.05; done; echo after",
        go = flags.join("go").display(),
        printed = flags.join("printed").display(),
        freed = flags.join("freed").display(),
    );
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": script, "defaultS3Bucket": "task-logs"}),
    ));
    wait_state(&agent, &id, TaskState::TaskRunning).await;
    let task_dir = harness.task_dir(&id);
    let deadline = std::time::Instant::now() + SOON;
    while !std::fs::read_to_string(task_dir.join("service.log"))
        .unwrap_or_default()
        .ends_with("1000\n")
    {
        assert!(std::time::Instant::now() < deadline, "no first output");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let filler = fill(&task_dir);
    std::fs::write(flags.join("go"), b"").expect("go");
    expect_file(&flags.join("printed"), &harness).await;
    std::fs::remove_file(&filler).expect("free the space");
    std::fs::write(flags.join("freed"), b"").expect("freed");

    let finished = wait_terminal(&agent, &id).await;
    assert_eq!(
        finished.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);

    // What the task printed, in order.
    let printed: String = (1..=1000)
        .chain(1..=100_000)
        .map(|i| format!("{i}\n"))
        .chain(std::iter::once("after\n".to_owned()))
        .collect();
    let text = task_output(&task_dir);
    let marker_at = text
        .find("[singularity-executor] ")
        .unwrap_or_else(|| panic!("no marker line; the executor's log:\n{}", harness.stderr()));
    let marker_end = marker_at + text[marker_at..].find('\n').expect("marker line end") + 1;
    let marker = &text[marker_at..marker_end];
    assert!(
        marker.contains("could not be written to service.log (No space left on device"),
        "{marker}"
    );
    let dropped: usize = marker["[singularity-executor] ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {marker}"));
    let after = &text[marker_end..];
    assert!(
        !after.contains("[singularity-executor]"),
        "a second marker: {after}"
    );
    assert!(dropped > 0);
    assert!(printed.ends_with(after), "the output after the marker");
    // Every byte the task printed is written or counted in the marker. The marker starts on a
    // line of its own: the newline before it is the executor's when the disk filled up in the
    // middle of a line.
    let before = &text[..marker_at];
    assert!(
        [Some(before), before.strip_suffix('\n')]
            .into_iter()
            .flatten()
            .any(|written| printed.starts_with(written)
                && written.len() + dropped + after.len() == printed.len()),
        "{} bytes before the marker, {dropped} dropped, {} after, {} printed",
        before.len(),
        after.len(),
        printed.len()
    );
    assert!(after.ends_with("after\n"), "{after:.200}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_rotates_at_the_minute_boundary_between_size_rotations() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    };
    // The task starts a few seconds before a minute boundary: the next one, or the one after
    // when the next is too close.
    let mut boundary = (now() / 60.0).floor() * 60.0 + 60.0;
    if boundary - now() < 8.0 {
        boundary += 60.0;
    }
    tokio::time::sleep(Duration::from_secs_f64(boundary - 6.0 - now())).await;

    let harness = Harness::new("idleExecutorShutdownWaitMillis: 300\nmaxServiceLogSizeMb: 1");
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let boundary = boundary as u64;
    // About 2.6 MiB before the boundary and as much after: size rotations on both sides.
    let script = format!(
        "seq 1 400000; while [ \"$(date +%s)\" -le {boundary} ]; do sleep 0.1; done; \
         seq 400001 800000"
    );
    agent.launch(task(
        &agent,
        &id,
        &json!({"cmd": script, "defaultS3Bucket": "task-logs",
                "logrotateFrequency": "EVERY_MINUTE"}),
    ));
    let finished = wait_terminal(&agent, &id).await;
    assert_eq!(
        finished.state,
        TaskState::TaskFinished,
        "{:#?}",
        summary(&agent)
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);

    let task_dir = harness.task_dir(&id);
    assert_rotated_sequence(&task_dir, 800_000, 5);
    // The segment the boundary closed: the rest of the first half, less than the size limit,
    // rotated at the boundary (its name's epoch seconds) and not the final rotation.
    let files = singularity_logs::names::segments_in_order(
        &task_dir.join("logs"),
        "service.log",
        DATEFORMAT,
    )
    .expect("list");
    let contents: Vec<String> = files
        .iter()
        .map(|f| {
            String::from_utf8(singularity_logs::compress::read_decompressed(f).expect("read"))
                .expect("utf-8")
        })
        .collect();
    let at_boundary = contents
        .iter()
        .position(|c| c.ends_with("\n400000\n"))
        .unwrap_or_else(|| panic!("no segment ends at the boundary: {files:?}"));
    assert!(
        at_boundary + 1 < files.len(),
        "the final rotation, not the time one"
    );
    assert!(contents[at_boundary].len() < 1024 * 1024, "a size rotation");
    assert!(contents[at_boundary + 1].starts_with("400001\n"));
    let name = files[at_boundary]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    // service.log-<%Y%m%d><epoch seconds>[-n].log.gz
    let rotated_at: u64 = name["service.log-".len() + 8..]
        .split(['-', '.'])
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no epoch seconds in {name}"));
    assert!(
        (boundary..boundary + 5).contains(&rotated_at),
        "{name} rotated at {rotated_at}, the boundary is {boundary}"
    );
    let size_rotations = contents.iter().filter(|c| c.len() >= 1024 * 1024).count();
    assert!(size_rotations >= 4, "{size_rotations} size rotations");
}
