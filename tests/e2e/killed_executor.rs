//! An executor SIGKILLed mid-task, its task killed too: the cleanup (against the Singularity
//! API stand-in) finishes the task's logs, the uploader uploads them, and every line the task
//! had written is in S3 once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use singularity_fake_singularity::{FakeSingularity, TaskHistory};

use crate::support::{Agent, AgentOptions, HOST, binary, local_log_files, request, task_id};

const AGENT_ID: &str = "e2e-agent-1";

fn lines_of(files: impl IntoIterator<Item = Vec<u8>>) -> Vec<String> {
    let mut lines: Vec<String> = files
        .into_iter()
        .flat_map(|text| {
            String::from_utf8(text)
                .expect("text")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_cleanup_finishes_a_killed_executors_logs_and_the_uploader_takes_every_line() {
    let api = FakeSingularity::start("singularity/api", None);
    api.set_agent(AGENT_ID, HOST);
    // Some other task is active, so the cleanup is not in safe mode.
    api.set_active(["other-d1-1-1-testhost-local"]);
    let cleanup = format!(
        "singularityHosts: [{}]\nsingularityContextPath: singularity/api\nmesosAgentStateUrl: {}\n",
        api.hosts()[0],
        api.agent_state_url()
    );
    let agent = Agent::new(AgentOptions {
        cleanup: Some(&cleanup),
        ..AgentOptions::default()
    });
    let request = request("killed");
    let task_id = task_id(&request);
    // The task records its pid, then counts until it is killed.
    let task = agent.task_file(
        &request,
        &task_id,
        json!({"cmd": "echo $$ > ../task.pid; exec sh -c 'i=0; while :; do i=$((i + 1)); echo $i; done'"}),
        None,
    );
    let mut executor = agent
        .executor(&task)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the executor");
    let task_dir = agent.task_dir(&task_id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(task_dir.join("logs")).map_or(0, Iterator::count) < 2 {
        assert!(Instant::now() < deadline, "no rotation");
        std::thread::sleep(Duration::from_millis(50));
    }
    executor.kill().expect("SIGKILL the executor");
    executor.wait().expect("reap the executor");
    let pid = std::fs::read_to_string(task_dir.join("task.pid")).expect("task pid");
    let pid = pid.trim();
    // It may already have died of the broken pipe.
    let _ = Command::new("kill").args(["-KILL", pid]).status();
    let proc = std::path::Path::new("/proc").join(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc.exists() {
        assert!(Instant::now() < deadline, "the task {pid} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }

    // What the task wrote before the kill: complete numbers 1..=M (the last line may be cut).
    let written = lines_of(local_log_files(&task_dir).into_values());
    // A line cut by the kill is the end of the live service.log, without its newline.
    let cut = std::fs::read(task_dir.join("service.log"))
        .ok()
        .filter(|text| !text.is_empty() && !text.ends_with(b"\n"))
        .map(|text| {
            let start = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            String::from_utf8_lossy(&text[start..]).into_owned()
        });
    let complete = written.iter().filter_map(|l| l.parse::<u64>().ok()).count();
    assert!(complete > 100_000, "{complete} lines before the kill");

    let at = chrono::Utc::now().timestamp_millis() - 30 * 60_000;
    api.set_history(TaskHistory::new(&task_id, "TASK_LOST", at));
    let out = Command::new(binary("singularity-executor-cleanup"))
        .arg("--config-dir")
        .arg(&agent.etc)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run the cleanup");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !task_dir.join("service.log").exists(),
        "the cleanup rotated service.log: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let uploader = agent.start_uploader();
    agent.wait_uploaded(&task_id, &uploader);
    let (_keys, lines) = agent.logs_in_s3(&request);
    let mut uploaded = lines;
    uploaded.sort();
    assert_eq!(uploaded.len(), written.len(), "line count");
    assert!(
        uploaded == written,
        "S3 holds other lines than the task wrote"
    );
    let mut numbers: Vec<u64> = written.iter().filter_map(|l| l.parse().ok()).collect();
    numbers.sort_unstable();
    if let Some(cut) = cut {
        let n: u64 = cut.parse().expect("a cut number");
        let at = numbers.binary_search(&n).expect("the cut line is there");
        numbers.remove(at);
    }
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64 + 1),
        "the task's lines are 1..={complete}, each once"
    );
}
