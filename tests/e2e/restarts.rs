//! Daemons SIGKILLed by pid and started again while a task needs them: the downloader while
//! the task stages (the executor falls back to fetching in-process, the task runs, the
//! restarted downloader serves the next task), the uploader during a task's rotations
//! (nothing lost, nothing uploaded twice).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    Agent, AgentOptions, SlowProxy, assert_numbers_once, counting_script, request, task_id,
};

/// Pseudo-random bytes (xorshift), so the artifact does not compress away in transit.
fn blob(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_downloader_killed_while_a_task_stages_leaves_the_executor_to_fetch_and_the_task_runs() {
    let agent = Agent::new(AgentOptions::default());
    // The downloader reads S3 through a slow proxy, so its download is still in flight when
    // it is killed; the executor's own fallback reads the server directly.
    let proxy = SlowProxy::start(agent.s3.addr());
    agent.downloader_endpoint(&proxy.endpoint);
    let mut downloader = agent.start_downloader();
    let data = blob(8 * 1024 * 1024);
    let artifacts = json!([
        agent.s3_artifact("app/1/blob.bin", "blob.bin", &data),
        agent.s3_artifact("app/1/count.sh", "count.sh", &counting_script(1000)),
    ]);
    let request = request("restart-dl");
    let first = task_id(&request);
    let task = agent.task_file(
        &request,
        &first,
        json!({"cmd": "test -s blob.bin && sh count.sh", "s3Artifacts": artifacts}),
        None,
    );
    let executor = agent
        .executor(&task)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the executor");

    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.passed.load(Ordering::Relaxed) < 256 * 1024 {
        assert!(
            Instant::now() < deadline,
            "the downloader never started downloading: {}",
            downloader.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    downloader.kill();
    let mut downloader = agent.start_downloader();

    let out = executor.wait_with_output().expect("executor output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.ends_with("TASK_FINISHED: Process exited normally with code 0\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("falling back to in-task fetch"),
        "the executor says why it fetched itself: {stderr}"
    );
    let app = agent.task_dir(&first).join("app");
    assert_eq!(std::fs::read(app.join("blob.bin")).expect("blob"), data);
    let mut fetched = names(&agent.cache);
    fetched.sort();
    assert!(
        fetched.len() == 2 && fetched.iter().all(|n| !n.starts_with('.')),
        "the executor fetched both artifacts itself: {fetched:?}"
    );

    // The restarted downloader serves the next task at full speed, over what its killed
    // predecessor left in its cache.
    proxy.throttled.store(false, Ordering::Relaxed);
    let second = task_id(&request);
    let task = agent.task_file(
        &request,
        &second,
        json!({"cmd": "test -s blob.bin && sh count.sh", "s3Artifacts": artifacts}),
        None,
    );
    agent.run_to_the_end(&task);
    assert_eq!(
        std::fs::read(agent.task_dir(&second).join("app/blob.bin")).expect("blob"),
        data
    );
    let cached = names(&agent.downloader_cache);
    assert!(
        cached.iter().any(|n| n.ends_with("-blob.bin")),
        "the restarted downloader fetched it: {cached:?}\n{}",
        downloader.log()
    );
    assert_eq!(
        names(&agent.cache).len(),
        2,
        "nothing more fetched in-process"
    );
    assert!(downloader.running());
}

#[test]
fn an_uploader_killed_during_rotations_loses_nothing_and_uploads_nothing_twice() {
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 50_000;
    let agent = Agent::new(AgentOptions::default());
    let mut uploader = agent.start_uploader();
    // About 15 MB over 40 batches 0.2 s apart: a rotation (1 MiB) every few batches.
    let script = format!(
        "#!/bin/sh\ni=0\nwhile [ $i -lt {BATCHES} ]; do\n  seq $((i * {PER_BATCH} + 1)) $((i * {PER_BATCH} + {PER_BATCH}))\n  i=$((i + 1))\n  sleep 0.2\ndone\n"
    );
    let request = request("restart-up");
    let task_id = task_id(&request);
    let artifact = agent.s3_artifact("app/1/batches.sh", "batches.sh", script.as_bytes());
    let task = agent.task_file(
        &request,
        &task_id,
        json!({"cmd": "sh batches.sh", "s3Artifacts": [artifact]}),
        None,
    );
    let mut executor = agent
        .executor(&task)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the executor");

    // Killed once it has uploaded a few segments, with more to come.
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.logs_in_s3(&request).0.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "nothing uploaded while the task runs: {}",
            uploader.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    uploader.kill();
    assert!(
        executor.try_wait().expect("executor").is_none(),
        "the task was still rotating when the uploader was killed"
    );
    std::thread::sleep(Duration::from_secs(1));
    let uploader = agent.start_uploader();

    let status = executor.wait().expect("executor");
    assert_eq!(status.code(), Some(0));
    agent.wait_uploaded(&task_id, &uploader);
    let objects = agent.log_objects(&request);
    let lines: Vec<String> = objects
        .iter()
        .flat_map(|(_, l)| l.iter().cloned())
        .collect();
    assert_numbers_once(&lines, usize::try_from(BATCHES * PER_BATCH).expect("fits"));
    // Each object is one rotated segment, whole: a run of consecutive numbers. (A segment's
    // name may come back once the uploader has deleted its namesake, so names prove nothing.)
    for (key, lines) in &objects {
        let numbers: Vec<u64> = lines.iter().map(|l| l.parse().expect("a number")).collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{key} is not one segment"
        );
    }
    assert!(objects.len() >= 10, "{} objects", objects.len());
}
