//! Shell commands through the real executor binary and the strict fake agent: every INVALID
//! answer, a command with options and placeholders in a plain task and in a Docker task (an
//! exec through the engine API), and one still running when its task is killed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use singularity_fake_agent::FakeAgent;
use singularity_mesos::types::ContainerType;
use singularity_mesos::{ContainerInfo, DockerInfo, TaskInfo, TaskState};
use singularity_test_support as services;

use crate::support::*;

/// `info` prints its placeholders, options and `TASK_SANDBOX_DIR`; `hang` runs until killed.
/// The prefix (`/usr/bin/env`) is applied to plain tasks only for `info`.
const COMMANDS: &str = r#"shellCommandPrefix: ["/usr/bin/env"]
shellCommands: [{"name": "info", "skipCommandPrefixDockerOnly": true, "command": ["/bin/sh", "-c", "echo pid=$1 user=$2 args=$3,$4 dir=$TASK_SANDBOX_DIR", "sh", "{PID}", "{USER}"], "options": [{"name": "verbose", "flag": "-v"}, {"name": "extra", "flag": "--extra"}]}, {"name": "hang", "skipCommandPrefix": true, "command": ["/bin/sh", "-c", "echo hanging; exec sleep 600"]}]"#;

/// An executor configured with `commands` (YAML lines).
fn harness(commands: &str) -> Harness {
    Harness::new(&format!(
        "idleExecutorShutdownWaitMillis: 3000\nmaxTaskMessageLength: 400\ndockerSocket: {}\n{commands}",
        services::docker_socket().display()
    ))
}

fn request(id: &str, name: &str, options: &[&str], timestamp: i64) -> Vec<u8> {
    json!({
        "@class": ".SingularityTaskShellCommandRequest",
        "taskId": {"id": id},
        "user": "ops",
        "timestamp": timestamp,
        "shellCommand": {"name": name, "options": options}
    })
    .to_string()
    .into_bytes()
}

fn replies(agent: &FakeAgent) -> Vec<Value> {
    agent
        .messages()
        .iter()
        .map(|m| serde_json::from_slice(m).expect("a JSON update"))
        .collect()
}

/// Waits until `count` updates arrived, then returns them all.
async fn wait_replies(agent: &FakeAgent, count: usize) -> Vec<Value> {
    assert!(
        agent.wait_for_messages(count, SOON).await,
        "fewer than {count} updates: {:#?}",
        replies(agent)
    );
    replies(agent)
}

fn kind(update: &Value) -> &str {
    update["updateType"].as_str().unwrap_or_default()
}

fn text(update: &Value) -> &str {
    update["message"].as_str().unwrap_or_default()
}

async fn wait_output(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + SOON;
    loop {
        let output = std::fs::read_to_string(path).unwrap_or_default();
        if output.contains(needle) {
            return output;
        }
        assert!(Instant::now() < deadline, "{needle:?} never in {output:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_request_is_answered_and_unknown_tasks_are_ignored() {
    // A download server that accepts connections and never answers keeps one task staging.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let harness = harness(r#"shellCommands: [{"name": "pid", "command": ["echo", "{PID}"]}]"#);
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let staging = task_id();
    agent.launch(task(
        &agent,
        &staging,
        &json!({"cmd": "true", "externalArtifacts": [
            {"name": "slow", "filename": "slow.bin", "url": format!("http://127.0.0.1:{port}/slow.bin")}
        ]}),
    ));
    let running = task_id();
    agent.launch(task(&agent, &running, &json!({"cmd": "sleep 30"})));
    wait_state(&agent, &staging, TaskState::TaskStarting).await;
    wait_state(&agent, &running, TaskState::TaskRunning).await;

    // Unknown task: no answer at all (the next answer is the next request's).
    agent.message(request("no-such-task", "pid", &[], 1));
    agent.message(request(&staging, "pid", &[], 2));
    let updates = wait_replies(&agent, 1).await;
    assert_eq!(updates[0]["shellRequestId"]["timestamp"], 2);
    assert_eq!(kind(&updates[0]), "INVALID");
    assert_eq!(text(&updates[0]), "No task process found");
    assert_eq!(updates[0]["shellRequestId"]["taskId"]["id"], json!(staging));

    agent.message(request(&running, "jstack", &[], 3));
    let updates = wait_replies(&agent, 2).await;
    assert_eq!(kind(&updates[1]), "INVALID");
    assert_eq!(
        text(&updates[1]),
        "\"jstack\" command not found. Currently available commands are: [pid]"
    );
    assert_eq!(updates[1]["shellRequestId"]["name"], "jstack");
    assert!(updates[1].get("outputFilename").is_none());

    std::fs::write(harness.task_dir(&running).join(".task-pid"), "12x\n").expect("pid file");
    agent.message(request(&running, "pid", &[], 4));
    let updates = wait_replies(&agent, 3).await;
    assert_eq!(kind(&updates[2]), "INVALID");
    assert!(
        text(&updates[2]).starts_with("No PID found due to exception reading pid file: "),
        "{}",
        text(&updates[2])
    );

    // With a readable pid file the same request runs.
    std::fs::write(harness.task_dir(&running).join(".task-pid"), "12\n").expect("pid file");
    agent.message(request(&running, "pid", &[], 5));
    let updates = wait_replies(&agent, 6).await;
    let kinds: Vec<&str> = updates[3..].iter().map(kind).collect();
    assert_eq!(kinds, ["ACKED", "STARTED", "FINISHED"]);
    assert_eq!(text(&updates[3]), "echo 12");
    let output = std::fs::read_to_string(
        harness
            .task_dir(&running)
            .join("executor.commands.pid.5.log"),
    )
    .expect("output file");
    assert!(output.ends_with("#\n12\n"), "{output:?}");

    agent.kill(&staging, None);
    agent.kill(&running, None);
    wait_terminal(&agent, &staging).await;
    wait_terminal(&agent, &running).await;
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    drop(listener);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_task_runs_a_command_with_options_and_placeholders() {
    let harness = harness(COMMANDS);
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": "sleep 30"})));
    let status = wait_state(&agent, &id, TaskState::TaskRunning).await;
    let pid = running_pid(&status);

    agent.message(request(&id, "info", &["extra", "verbose"], 1700));
    let updates = wait_replies(&agent, 3).await;
    let kinds: Vec<&str> = updates.iter().map(kind).collect();
    assert_eq!(kinds, ["ACKED", "STARTED", "FINISHED"]);
    let user = current_user();
    assert_eq!(
        text(&updates[0]),
        format!(
            "/usr/bin/env /bin/sh -c echo pid=$1 user=$2 args=$3,$4 dir=$TASK_SANDBOX_DIR sh {pid} {user} -v --extra"
        )
    );
    assert_eq!(
        updates[0]["outputFilename"],
        "executor.commands.info.1700.log"
    );
    assert!(
        text(&updates[1]).starts_with("pid - "),
        "{}",
        text(&updates[1])
    );
    assert_eq!(text(&updates[2]), "Finished with code 0");
    for update in &updates {
        assert_eq!(update["shellRequestId"]["name"], "info");
        assert_eq!(update["shellRequestId"]["timestamp"], 1700);
        assert_eq!(update["shellRequestId"]["taskId"]["id"], json!(id));
    }
    let output = std::fs::read_to_string(
        harness
            .task_dir(&id)
            .join("executor.commands.info.1700.log"),
    )
    .expect("output file");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "#");
    assert!(
        lines[1].ends_with(&format!(" -- Launching {}", text(&updates[0]))),
        "{output}"
    );
    assert_eq!(lines[2], "#");
    assert_eq!(
        lines[3],
        format!(
            "pid={pid} user={user} args=-v,--extra dir={}",
            harness.task_dir(&id).display()
        )
    );

    agent.kill(&id, None);
    wait_terminal(&agent, &id).await;
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_running_when_its_task_is_killed_is_killed() {
    let harness = harness(COMMANDS);
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(task(&agent, &id, &json!({"cmd": "sleep 30"})));
    wait_state(&agent, &id, TaskState::TaskRunning).await;

    agent.message(request(&id, "hang", &[], 9));
    let updates = wait_replies(&agent, 2).await;
    assert_eq!(kind(&updates[1]), "STARTED");
    let pid: i32 = text(&updates[1])
        .strip_prefix("pid - ")
        .and_then(|p| p.parse().ok())
        .expect("a pid");
    wait_output(
        &harness.task_dir(&id).join("executor.commands.hang.9.log"),
        "hanging",
    )
    .await;
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    agent.kill(&id, None);
    assert_eq!(
        wait_terminal(&agent, &id).await.state,
        TaskState::TaskKilled
    );
    let updates = wait_replies(&agent, 3).await;
    assert_eq!(kind(&updates[2]), "FAILED");
    assert_eq!(
        text(&updates[2]),
        "Failed - InterruptedException (the task ended; the command was killed)"
    );
    let deadline = Instant::now() + SOON;
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the command survived its task");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}

fn docker_task(agent: &FakeAgent, id: &str, data: &Value) -> TaskInfo {
    let mut task = task(agent, id, data);
    task.container = Some(ContainerInfo {
        kind: Some(ContainerType::Docker),
        volumes: Vec::new(),
        hostname: None,
        docker: Some(DockerInfo {
            image: services::test_image(),
            network: Some("HOST".to_owned()),
            port_mappings: Vec::new(),
            privileged: None,
            parameters: Vec::new(),
            force_pull_image: None,
            volume_driver: None,
        }),
        mesos: None,
        network_infos: Vec::new(),
        linux_info: None,
        rlimit_info: None,
        tty_info: None,
    });
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_task_runs_commands_inside_its_container_through_the_engine() {
    let harness = harness(COMMANDS);
    let agent = FakeAgent::start("fw-1", "ex-1").await;
    let mut executor = harness.spawn(&agent, true);
    let id = task_id();
    agent.launch(docker_task(
        &agent,
        &id,
        &json!({"cmd": "sh -c 'trap \"exit 0\" TERM; while true; do sleep 0.1; done'"}),
    ));
    wait_state(&agent, &id, TaskState::TaskRunning).await;

    agent.message(request(&id, "info", &["verbose"], 42));
    let updates = wait_replies(&agent, 3).await;
    let kinds: Vec<&str> = updates.iter().map(kind).collect();
    assert_eq!(kinds, ["ACKED", "STARTED", "FINISHED"], "{updates:#?}");
    let user = current_user();
    // No prefix for Docker tasks (skipCommandPrefixDockerOnly); {PID} is the container's init.
    assert_eq!(
        text(&updates[0]),
        format!(
            "docker exec se-{id} /bin/sh -c echo pid=$1 user=$2 args=$3,$4 dir=$TASK_SANDBOX_DIR sh 1 {user} -v"
        )
    );
    assert_eq!(text(&updates[2]), "Finished with code 0");
    let output =
        std::fs::read_to_string(harness.task_dir(&id).join("executor.commands.info.42.log"))
            .expect("output file");
    assert!(
        output.ends_with(&format!(
            "\npid=1 user={user} args=-v, dir=/mnt/mesos/sandbox\n"
        )),
        "{output:?}"
    );

    // A command in the container ends with it.
    agent.message(request(&id, "hang", &[], 43));
    let updates = wait_replies(&agent, 5).await;
    assert_eq!(kind(&updates[4]), "STARTED", "{updates:#?}");
    assert!(text(&updates[4]).starts_with("pid - "), "{updates:#?}");
    assert_ne!(text(&updates[4]), "pid - null", "{updates:#?}");
    wait_output(
        &harness.task_dir(&id).join("executor.commands.hang.43.log"),
        "hanging",
    )
    .await;
    agent.kill(&id, None);
    assert_eq!(
        wait_terminal(&agent, &id).await.state,
        TaskState::TaskKilled
    );
    // Whichever the executor sees first: the exec ending with its container, or the task's end.
    let updates = wait_replies(&agent, 6).await;
    let last = (kind(&updates[5]), text(&updates[5]));
    assert!(
        last == ("FINISHED", "Finished with code 137")
            || last
                == (
                    "FAILED",
                    "Failed - InterruptedException (the task ended; the command was killed)"
                ),
        "{updates:#?}"
    );
    assert_eq!(wait_exit(&mut executor, SOON, &harness).await, 0);
    assert_no_rejections(&agent);
}
