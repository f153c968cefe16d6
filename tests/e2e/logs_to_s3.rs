//! A task's artifact from S3 through the real downloader, its output rotated by the executor,
//! its logs through the real uploader into S3: every line exactly once, read back with s5cmd;
//! the local files and the metadata gone. Once as a plain task, once in a Docker container.

use serde_json::json;

use crate::support::{Agent, AgentOptions, assert_numbers_once, counting_script, request, task_id};

const LINES: u64 = 1_500_000;

fn artifact_to_s3(container: bool) {
    let agent = Agent::new(AgentOptions::default());
    let downloader = agent.start_downloader();
    let request = request("e2e");
    let task_id = task_id(&request);
    let artifact = agent.s3_artifact("app/1/count.sh", "count.sh", &counting_script(LINES));
    let (cmd, container_info) = if container {
        (
            "sh /mnt/mesos/sandbox/app/count.sh",
            Some(json!({"type": "DOCKER", "docker": {
                "image": singularity_test_support::test_image(), "network": "NONE"}})),
        )
    } else {
        ("sh count.sh", None)
    };
    let task = agent.task_file(
        &request,
        &task_id,
        json!({"cmd": cmd, "s3Artifacts": [artifact]}),
        container_info,
    );

    agent.run_to_the_end(&task);
    let cached: Vec<_> = std::fs::read_dir(&agent.downloader_cache)
        .expect("downloader cache")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.iter().any(|name| name.ends_with("-count.sh")),
        "the downloader fetched the artifact: {cached:?}\n{}",
        downloader.log()
    );
    assert_eq!(
        std::fs::read_dir(&agent.cache).expect("cache").count(),
        0,
        "nothing fetched in-process"
    );
    let rotated = std::fs::read_dir(agent.task_dir(&task_id).join("logs"))
        .expect("logs")
        .count();
    assert!(rotated >= 10, "{rotated} rotated files");

    let uploader = agent.start_uploader();
    agent.wait_uploaded(&task_id, &uploader);
    let (keys, lines) = agent.logs_in_s3(&request);
    assert_eq!(keys.len(), rotated, "{keys:?}");
    assert_numbers_once(&lines, usize::try_from(LINES).expect("fits"));
}

#[test]
fn an_artifact_from_s3_runs_and_its_rotated_log_reaches_s3_line_for_line() {
    artifact_to_s3(false);
}

#[test]
fn a_docker_tasks_artifact_and_rotated_log_take_the_same_path() {
    artifact_to_s3(true);
}
