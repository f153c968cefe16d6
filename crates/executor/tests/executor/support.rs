//! Shared by the executor's behaviour tests: a temp config dir and sandbox per test, the real
//! binary as a subprocess against the strict fake agent, and a few assertions helpers.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use singularity_fake_agent::FakeAgent;
use singularity_mesos::types::{CommandInfo, Environment, EnvironmentVariable};
use singularity_mesos::{TaskInfo, TaskState, TaskStatus};
use singularity_test_support::{AuthRegistry, REGISTRY_PASSWORD, REGISTRY_USER};
use tokio::process::{Child, Command};

/// The executor binary under test.
pub const EXECUTOR: &str = env!("CARGO_BIN_EXE_singularity-executor");

/// The default `logrotateDateformat`, without its leading `-`: how rotated logs are named.
pub const DATEFORMAT: &str = "%Y%m%d%s";

/// How long a test waits for something that should take well under a second.
pub const SOON: Duration = Duration::from_secs(20);

/// One test's directories and configuration.
pub struct Harness {
    pub root: tempfile::TempDir,
    pub config_dir: PathBuf,
    pub sandbox: PathBuf,
    pub task_definitions: PathBuf,
    pub s3_metadata: PathBuf,
    pub tail_metadata: PathBuf,
    pub cache: PathBuf,
}

impl Harness {
    /// Config files for base, s3base and executor; `executor_extra` is appended to the
    /// executor YAML (one `key: value` per line).
    pub fn new(executor_extra: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("se-test-executor-")
            .tempdir()
            .expect("temp dir");
        let path = root.path().to_path_buf();
        let dir = |name: &str| {
            let d = path.join(name);
            fs::create_dir_all(&d).expect("create dir");
            d
        };
        let config_dir = dir("etc");
        let sandbox = dir("sandbox");
        let task_definitions = dir("tasks");
        let s3_metadata = dir("s3-metadata");
        let tail_metadata = dir("tail-metadata");
        let cache = dir("cache");
        let logrotate = dir("logrotate.d");
        fs::write(
            config_dir.join("singularity.base.yaml"),
            format!(
                "s3UploaderMetadataDirectory: {}\nlogWatcherMetadataDirectory: {}\n",
                s3_metadata.display(),
                tail_metadata.display()
            ),
        )
        .expect("base config");
        fs::write(
            config_dir.join("singularity.s3base.yaml"),
            format!("artifactCacheDirectory: {}\n", cache.display()),
        )
        .expect("s3base config");
        fs::write(
            config_dir.join("singularity.executor.yaml"),
            format!(
                "globalTaskDefinitionDirectory: {}\ndefaultRunAsUser: {}\nlogrotateConfDirectory: {}\n\
                 logrotateHourlyConfDirectory: {}\ncronDirectory: {}\n{executor_extra}\n",
                task_definitions.display(),
                current_user(),
                logrotate.display(),
                logrotate.join("hourly").display(),
                path.join("cron.d").display(),
            ),
        )
        .expect("executor config");
        Harness {
            root,
            config_dir,
            sandbox,
            task_definitions,
            s3_metadata,
            tail_metadata,
            cache,
        }
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.root.path().join("executor.stderr")
    }

    /// The executor's log so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Starts the executor in Mesos mode against `agent`.
    pub fn spawn(&self, agent: &FakeAgent, checkpoint: bool) -> Child {
        self.spawn_with_env(agent, checkpoint, &[])
    }

    /// [`Harness::spawn`] with extra environment variables for the executor.
    pub fn spawn_with_env(
        &self,
        agent: &FakeAgent,
        checkpoint: bool,
        env: &[(&str, &str)],
    ) -> Child {
        self.spawn_through(Command::new(EXECUTOR), agent, checkpoint, env)
    }

    /// Starts the executor through `command` (the executor itself, or a program that `exec`s
    /// the arguments it is given) with this harness's configuration and the agent's
    /// environment.
    fn spawn_through(
        &self,
        mut command: Command,
        agent: &FakeAgent,
        checkpoint: bool,
        env: &[(&str, &str)],
    ) -> Child {
        let stderr = fs::File::create(self.stderr_path()).expect("stderr file");
        command
            .arg("--config-dir")
            .arg(&self.config_dir)
            .env_remove("SINGULARITY_CONFIG_DIR")
            .env("RUST_LOG", "info,singularity_executor=debug")
            .envs(agent.env_for_executor(&self.sandbox, checkpoint))
            .envs(env.iter().copied())
            .current_dir(&self.sandbox)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the executor")
    }

    /// [`Harness::spawn_with_env`] with the executor started inside `cgroup`, as a Mesos agent
    /// starts it inside the cgroup it made for the task: a shell enters the cgroup and
    /// `exec`s the executor.
    pub fn spawn_in_cgroup(
        &self,
        agent: &FakeAgent,
        cgroup: &singularity_test_support::TestCgroup,
        env: &[(&str, &str)],
    ) -> Child {
        let mut shell = Command::new("/bin/sh");
        shell
            .arg("-c")
            .arg(format!("{}exec \"$0\" \"$@\"", cgroup.enter_line()))
            .arg(EXECUTOR);
        self.spawn_through(shell, agent, true, env)
    }

    /// A standalone `run` command (not started).
    pub fn run_command(&self, task_file: &Path, sandbox: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(EXECUTOR);
        command
            .arg("--config-dir")
            .arg(&self.config_dir)
            .env_remove("SINGULARITY_CONFIG_DIR")
            .arg("run")
            .arg(task_file)
            .arg("--sandbox")
            .arg(sandbox)
            .stdin(Stdio::null());
        command
    }

    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.sandbox.join(task_id.replace(':', "_"))
    }

    /// Everything the task wrote so far: its rotated logs, then the live service.log.
    pub fn service_log(&self, task_id: &str) -> String {
        task_output(&self.task_dir(task_id))
    }
}

/// Everything a task in `task_dir` wrote: the rotated service logs in `logs/` decompressed,
/// oldest first, then what is left in `service.log` (teardown rotates it away).
///
/// The executor may rotate or compress while this reads (its teardown runs after the
/// terminal update): a read during which the segments or `service.log` changed is made again,
/// a segment still linked to `service.log` (a rotation under way) is the live file, and an
/// uncompressed segment whose compressed copy is in place is about to go.
pub fn task_output(task_dir: &Path) -> String {
    loop {
        let before = log_files(task_dir);
        let (segments, live) = &before;
        let mut out = Vec::new();
        let mut complete = true;
        for (file, inode) in segments {
            let compressed_too = ["gz", "bz2"].iter().any(|ext| {
                let mut name = file.as_os_str().to_owned();
                name.push(format!(".{ext}"));
                segments.iter().any(|(other, _)| other.as_os_str() == name)
            });
            if Some(*inode) == *live || compressed_too {
                continue;
            }
            match singularity_logs::compress::read_decompressed(file) {
                Ok(bytes) => out.extend(bytes),
                Err(_) if !file.exists() => complete = false,
                Err(error) => panic!("decompress {}: {error}", file.display()),
            }
        }
        out.extend(fs::read(task_dir.join("service.log")).unwrap_or_default());
        if complete && log_files(task_dir) == before {
            return String::from_utf8_lossy(&out).into_owned();
        }
    }
}

/// The rotated segments of `service.log` in order with their inodes, and the live file's
/// inode (a rotation links it into `logs/`, then renames a fresh file over it).
fn log_files(task_dir: &Path) -> (Vec<(PathBuf, u64)>, Option<u64>) {
    use std::os::unix::fs::MetadataExt as _;
    let inode = |path: &Path| fs::metadata(path).ok().map(|m| m.ino());
    let logs = task_dir.join("logs");
    let segments = if logs.is_dir() {
        singularity_logs::names::segments_in_order(&logs, "service.log", DATEFORMAT)
            .expect("list rotated logs")
            .into_iter()
            .filter_map(|path| Some((inode(&path)?, path)))
            .map(|(ino, path)| (path, ino))
            .collect()
    } else {
        Vec::new()
    };
    (segments, inode(&task_dir.join("service.log")))
}

/// The name of the user running the tests.
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the current user has a name")
}

/// A fresh Singularity task id.
pub fn task_id() -> String {
    let request = singularity_test_support::unique_name("req");
    let millis = chrono::Utc::now().timestamp_millis();
    format!("{request}-dep1-{millis}-1-testhost-rack1")
}

/// A TaskInfo for `agent` carrying `data` (executor data JSON) and the environment variables
/// the scheduler would set.
pub fn task(agent: &FakeAgent, task_id: &str, data: &Value) -> TaskInfo {
    let mut task = agent.task(task_id);
    task.data = Some(serde_json::to_vec(data).expect("json"));
    if let Some(executor) = &mut task.executor {
        executor.command = Some(CommandInfo {
            environment: Some(Environment {
                variables: vec![
                    var("TASK_ID", task_id),
                    var(
                        "TASK_REQUEST_ID",
                        task_id.split("-dep1-").next().unwrap_or("r"),
                    ),
                    var("INSTANCE_NO", "1"),
                    var("GREETING", "hello from the deploy"),
                ],
            }),
            ..CommandInfo::default()
        });
    }
    task
}

fn var(name: &str, value: &str) -> EnvironmentVariable {
    EnvironmentVariable {
        name: name.to_owned(),
        kind: None,
        value: Some(value.to_owned()),
        secret: None,
    }
}

/// `data` as the base64 the agent would put in JSON.
pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Waits for the first update of `task_id` in `state`.
pub async fn wait_state(agent: &FakeAgent, task_id: &str, state: TaskState) -> TaskStatus {
    let id = task_id.to_owned();
    match agent
        .wait_for_update(move |s| s.task_id.value == id && s.state == state, SOON)
        .await
    {
        Some(status) => status,
        None => panic!(
            "no {} for {task_id}; updates: {:#?}",
            state.as_str(),
            summary(agent)
        ),
    }
}

/// Waits for the first terminal update of `task_id`.
pub async fn wait_terminal(agent: &FakeAgent, task_id: &str) -> TaskStatus {
    let id = task_id.to_owned();
    match agent
        .wait_for_update(
            move |s| s.task_id.value == id && s.state.is_terminal(),
            SOON,
        )
        .await
    {
        Some(status) => status,
        None => panic!(
            "no terminal update for {task_id}; updates: {:#?}",
            summary(agent)
        ),
    }
}

/// (state, message) of every update received.
pub fn summary(agent: &FakeAgent) -> Vec<(String, String)> {
    agent
        .updates()
        .iter()
        .map(|s| {
            (
                s.state.as_str().to_owned(),
                s.message.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// States of the updates of `task_id`, in order.
pub fn states(agent: &FakeAgent, task_id: &str) -> Vec<TaskState> {
    agent
        .updates()
        .iter()
        .filter(|s| s.task_id.value == task_id)
        .map(|s| s.state)
        .collect()
}

/// The pid in a TASK_RUNNING message.
pub fn running_pid(status: &TaskStatus) -> u32 {
    let message = status.message.as_deref().unwrap_or_default();
    let start = message.find("(pid: ").expect("a pid in the message") + 6;
    let end = start + message[start..].find(')').expect("closing parenthesis");
    message[start..end].parse().expect("a numeric pid")
}

/// Waits for the executor to exit; its exit code.
pub async fn wait_exit(child: &mut Child, limit: Duration, harness: &Harness) -> i32 {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status.code().unwrap_or(-1),
        Ok(Err(e)) => panic!("wait for the executor: {e}"),
        Err(_) => panic!(
            "the executor did not exit within {limit:?}; its log:\n{}",
            harness.stderr()
        ),
    }
}

/// Live processes of the process group `pgid`.
pub fn group_alive(pgid: u32) -> Vec<u32> {
    singularity_executor::run::process::procfs::group_members(pgid)
        .expect("scan /proc")
        .iter()
        .map(|m| m.pid)
        .collect()
}

/// Waits until `path` exists.
pub async fn wait_for_file(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Asserts the fake refused nothing.
pub fn assert_no_rejections(agent: &FakeAgent) {
    let rejections = agent.rejections();
    assert!(rejections.is_empty(), "the agent refused: {rejections:#?}");
}

/// The Singularity destroy framework message for `task_id`, sent by `user`.
pub fn destroy_message(task_id: &str, user: &str) -> Vec<u8> {
    serde_json::json!({
        "@class": ".SingularityTaskDestroyFrameworkMessage",
        "taskId": {"requestId": "r", "deployId": "dep1", "startedAt": 1, "instanceNo": 1,
                   "host": "testhost", "sanitizedHost": "testhost", "rackId": "rack1",
                   "sanitizedRackId": "rack1", "id": task_id},
        "user": user
    })
    .to_string()
    .into_bytes()
}

/// The memory cgroup of process `pid` (its `memory` line of `/proc/<pid>/cgroup`).
pub fn memory_cgroup(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup file");
    text.lines()
        .find_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            (controllers == "memory").then(|| path.to_owned())
        })
        .expect("a memory line")
}

/// The message of an update (empty when it has none).
pub fn message(status: &TaskStatus) -> String {
    status.message.clone().unwrap_or_default()
}

/// Runs `pull` (executor settings, executor env, image reference → the task's terminal
/// update) three times against a fresh registry behind basic auth: with the docker CLI's
/// login read through `fromDockerConfig`, and with explicit credentials, both of which must
/// finish the task, then with none. Returns the reference and that last update.
pub async fn pull_with_each_credential<F, Fut>(pull: F) -> (String, TaskStatus)
where
    F: Fn(String, Vec<(String, String)>, String) -> Fut,
    Fut: std::future::Future<Output = TaskStatus>,
{
    let registry = AuthRegistry::start();
    let home = tempfile::tempdir().expect("home");
    let reference = registry.push_test_image(&home.path().join(".docker"));
    let cases = [
        (
            "dockerAuthConfig: {fromDockerConfig: true}".to_owned(),
            vec![("HOME".to_owned(), home.path().display().to_string())],
        ),
        (
            format!(
                "dockerAuthConfig: {{username: {REGISTRY_USER}, password: '{REGISTRY_PASSWORD}'}}"
            ),
            Vec::new(),
        ),
    ];
    for (settings, env) in cases {
        let status = pull(settings.clone(), env, reference.clone()).await;
        assert_eq!(
            status.state,
            TaskState::TaskFinished,
            "{settings}: {status:?}"
        );
    }
    let refused = pull(String::new(), Vec::new(), reference.clone()).await;
    assert_eq!(refused.state, TaskState::TaskFailed, "{refused:?}");
    (reference, refused)
}
