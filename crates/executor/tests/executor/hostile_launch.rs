//! Hostile TaskInfo, one test per case, each against an executor of its own: data that is
//! not JSON or not executor data, JSON bombs, 100,000 environment variables, unknown users,
//! ports no host has, artifact names and folders that climb out of the sandbox. Each ends in
//! a terminal update whose message names the problem, nothing is written outside the
//! sandbox, and the executor exits cleanly.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskInfo;
use singularity_mesos::TaskState;
use singularity_mesos::types::{EnvironmentVariable, Resource};
use test_case::test_case;

use crate::support::*;

enum Data {
    Json(Value),
    Raw(Vec<u8>),
}

fn with(edit: impl FnOnce(&mut Value)) -> Data {
    let mut data = json!({"cmd": "echo ran > ran.txt", "user": current_user()});
    edit(&mut data);
    Data::Json(data)
}

fn embedded(filename: &str, folder: Option<&str>) -> Data {
    with(|v| {
        let mut artifact = json!({
            "name": "a", "filename": filename,
            "content": base64(b"escaped"),
        });
        if let Some(folder) = folder {
            artifact["targetFolderRelativeToTask"] = json!(folder);
        }
        v["embeddedArtifacts"] = json!([artifact]);
    })
}

/// Every file below `dir` named `escaped` or `ran.txt`, outside `sandbox`.
fn escaped_files(dir: &std::path::Path, sandbox: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.starts_with(sandbox) {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            found.extend(escaped_files(&path, sandbox));
        } else if std::fs::read(&path).is_ok_and(|b| b == b"escaped") {
            found.push(path.display().to_string());
        }
    }
    found
}

async fn launch(data: Data, edit: impl FnOnce(&mut TaskInfo)) -> (TaskState, String) {
    let harness = Harness::new(
        "idleExecutorShutdownWaitMillis: 300\nmaxTaskMessageLength: 400\nverifyAssignedPorts: true",
    );
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    let mut info = task(&agent, &id, &json!({}));
    info.data = Some(match data {
        Data::Json(value) => serde_json::to_vec(&value).unwrap(),
        Data::Raw(bytes) => bytes,
    });
    edit(&mut info);
    agent.launch(info);
    let status = wait_terminal(&agent, &id).await;
    assert_eq!(
        wait_exit(&mut executor, SOON, &harness).await,
        0,
        "{}",
        harness.stderr()
    );
    assert_no_rejections(&agent);
    let escaped = escaped_files(harness.root.path(), &harness.sandbox);
    assert!(
        escaped.is_empty(),
        "written outside the sandbox: {escaped:?}"
    );
    let ran = harness.task_dir(&id).join("app/ran.txt").exists();
    let message = status.message.unwrap_or_default();
    assert!(
        !ran || status.state == TaskState::TaskFinished,
        "the command ran: {message}"
    );
    (status.state, message)
}

#[test_case(Data::Raw(b"\x00\x01\x02".to_vec()), "invalid SingularityTaskExecutorData" ; "binary data")]
#[test_case(Data::Raw(b"\xff\xfe{}".to_vec()), "invalid SingularityTaskExecutorData" ; "invalid utf8")]
#[test_case(Data::Raw(b"[1,2,3]".to_vec()), "invalid SingularityTaskExecutorData" ; "an array")]
#[test_case(Data::Raw(b"null".to_vec()), "invalid SingularityTaskExecutorData" ; "json null")]
#[test_case(Data::Raw(b"42".to_vec()), "invalid SingularityTaskExecutorData" ; "a number")]
#[test_case(Data::Raw(b"{\"cmd\": \"true\"".to_vec()), "invalid SingularityTaskExecutorData" ; "truncated json")]
#[test_case(Data::Raw("[".repeat(100_000).into_bytes()), "invalid SingularityTaskExecutorData" ; "a json bomb of nesting")]
#[test_case(Data::Raw(format!("{{\"cmd\":\"true\",\"env\":{}{}}}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes()), "invalid SingularityTaskExecutorData" ; "nesting in a field")]
#[test_case(with(|v| v["cmd"] = json!(5)), "invalid SingularityTaskExecutorData" ; "cmd of the wrong type")]
#[test_case(with(|v| v["defaultS3Bucket"] = json!(["a"])), "invalid SingularityTaskExecutorData" ; "bucket of the wrong type")]
#[test_case(with(|v| v["extraCmdLineArgs"] = json!({"a": 1})), "invalid SingularityTaskExecutorData" ; "args of the wrong type")]
#[test_case(Data::Raw(b"{\"cmd\":\"true\",\"cmd\":\"false\"}".to_vec()), "invalid SingularityTaskExecutorData" ; "duplicate keys")]
#[test_case(with(|v| v["user"] = json!("no-such-user-se-test")), "no-such-user-se-test" ; "an unknown user")]
#[test_case(with(|v| v["user"] = json!("root\u{0}evil")), "root" ; "a user with a nul byte")]
#[test_case(with(|v| v["user"] = json!("../../etc")), "../../etc" ; "a user that is a path")]
#[test_case(embedded("../escaped", None), "../escaped" ; "embedded artifact climbing out")]
#[test_case(embedded("/tmp/escaped", None), "/tmp/escaped" ; "embedded artifact at an absolute path")]
#[test_case(embedded("a/../../escaped", None), "escaped" ; "embedded artifact with dotdot inside")]
#[test_case(with(|v| v["embeddedArtifacts"] = json!([{"name": "a", "filename": "f", "content": "!!not base64!!"}])), "invalid SingularityTaskExecutorData" ; "embedded content not base64")]
#[test_case(with(|v| v["embeddedArtifacts"] = json!([{"name": "a", "filename": "f", "md5sum": "00000000000000000000000000000000", "content": base64(b"x")}])), "md5" ; "embedded md5 mismatch")]
#[test_case(with(|v| v["s3Artifacts"] = json!([{"name": "a", "filename": "../escaped", "s3Bucket": "b", "s3ObjectKey": "k", "filesize": 1_073_741_824}])), "" ; "s3 artifact name climbing out")]
#[test_case(with(|v| v["externalArtifacts"] = json!([{"name": "a", "filename": "x/../../escaped", "url": "http://127.0.0.1:1/x"}])), "" ; "external artifact name climbing out")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_refused(data: Data, fragment: &str) {
    let (state, message) = launch(data, |_| {}).await;
    assert!(
        matches!(state, TaskState::TaskLost | TaskState::TaskFailed),
        "{state:?}: {message}"
    );
    assert!(
        message.contains(fragment),
        "{message:?} does not say {fragment:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_no_host_has_fails_the_launch() {
    let (state, message) = launch(with(|_| {}), |info| {
        info.resources
            .push(Resource::ranges("ports", [(70_000, 70_000)]));
    })
    .await;
    assert_eq!(state, TaskState::TaskLost, "{message}");
    assert!(message.contains("70000"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_environment_variables_end_the_task_without_harm() {
    let (state, message) = launch(with(|_| {}), |info| {
        let command = info.executor.as_mut().unwrap().command.as_mut().unwrap();
        let env = command.environment.as_mut().unwrap();
        for i in 0..100_000 {
            env.variables.push(EnvironmentVariable {
                name: format!("SE_VAR_{i}"),
                kind: None,
                value: Some("x".repeat(16)),
                secret: None,
            });
        }
    })
    .await;
    assert!(
        matches!(
            state,
            TaskState::TaskFinished | TaskState::TaskFailed | TaskState::TaskLost
        ),
        "{state:?}: {message}"
    );
    assert!(!message.is_empty());
}

/// A target folder that climbs out or is absolute stays inside the sandbox.
#[test_case(embedded("escaped", Some("../../..")) ; "embedded artifact folder climbing out")]
#[test_case(embedded("escaped", Some("/etc")) ; "embedded artifact absolute folder")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_kept_inside_the_sandbox(data: Data) {
    let (state, message) = launch(data, |_| {}).await;
    assert_eq!(state, TaskState::TaskFinished, "{message}");
    assert!(!std::path::Path::new("/etc/escaped").exists());
}
