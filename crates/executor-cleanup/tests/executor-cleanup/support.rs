//! Shared by the cleanup's behaviour tests: per test a temp agent layout (config, sandbox,
//! task definitions, metadata, logrotate and cron directories), the Singularity API stand-in,
//! tasks run by the real executor binary in standalone mode, and the cleanup binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use singularity_fake_singularity::{Credentials, FakeSingularity, TaskHistory};

/// The cleanup binary under test.
pub const CLEANUP: &str = env!("CARGO_BIN_EXE_singularity-executor-cleanup");

/// The API credentials the stand-in requires.
pub const HEADER: &str = "X-Singularity-Token";
/// Their token.
pub const TOKEN: &str = "cleanup-test-token";

/// The agent's id and host as the stand-in reports them.
pub const AGENT_ID: &str = "agent-0001";
/// The host name the cleanup is configured with.
pub const HOST: &str = "cleanup-test-host";

/// The executor binary, built once per test run with the same cargo and target directory
/// (a daemon's tests cannot name another package's binary at compile time).
pub fn executor_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        // The variables cargo sets for this test would change build scripts' fingerprints
        // and rebuild the executor's dependencies on every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let keep = ["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&name.as_ref());
            if (name.starts_with("CARGO_") && !keep)
                || name == "OUT_DIR"
                || name == "LD_LIBRARY_PATH"
            {
                command.env_remove(name.as_ref());
            }
        }
        let out = command
            .args([
                "build",
                "-p",
                "singularity-executor",
                "--bin",
                "singularity-executor",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build for the executor");
        assert!(out.status.success(), "building the executor failed");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|msg| msg["target"]["name"] == "singularity-executor")
            .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
            .next_back()
            .expect("cargo names the executor binary")
    })
}

/// One test's agent.
pub struct Agent {
    pub root: tempfile::TempDir,
    pub config_dir: PathBuf,
    pub sandbox: PathBuf,
    pub definitions: PathBuf,
    pub s3_metadata: PathBuf,
    pub tail_metadata: PathBuf,
    pub results: PathBuf,
    pub logrotate: PathBuf,
    pub logrotate_hourly: PathBuf,
    pub cron: PathBuf,
    pub api: FakeSingularity,
}

impl Agent {
    /// An agent whose executor config gets `executor_extra` and cleanup config
    /// `cleanup_extra` (YAML lines).
    pub fn new(executor_extra: &str, cleanup_extra: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("se-test-cleanup-")
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
        let definitions = dir("tasks");
        let s3_metadata = dir("s3-metadata");
        let tail_metadata = dir("tail-metadata");
        let results = dir("results");
        let logrotate = dir("logrotate.d");
        let logrotate_hourly = dir("logrotate.d/hourly");
        let cron = dir("cron.d");
        let cache = dir("cache");
        let api = FakeSingularity::start("singularity/api", Some(Credentials::new(HEADER, TOKEN)));
        api.set_agent(AGENT_ID, HOST);
        let write = |name: &str, text: String| {
            fs::write(config_dir.join(name), text).expect("write config");
        };
        write(
            "singularity.base.yaml",
            format!(
                "s3UploaderMetadataDirectory: {}\nlogWatcherMetadataDirectory: {}\nhostname: {HOST}\n",
                s3_metadata.display(),
                tail_metadata.display()
            ),
        );
        write(
            "singularity.s3base.yaml",
            format!("artifactCacheDirectory: {}\n", cache.display()),
        );
        write(
            "singularity.executor.yaml",
            format!(
                "globalTaskDefinitionDirectory: {}\ndefaultRunAsUser: {}\nlogrotateConfDirectory: {}\n\
                 logrotateHourlyConfDirectory: {}\ncronDirectory: {}\ns3UploaderBucket: logs-bucket\n\
                 dockerSocket: {}\n{executor_extra}\n",
                definitions.display(),
                current_user(),
                logrotate.display(),
                logrotate_hourly.display(),
                cron.display(),
                singularity_test_support::docker_socket().display(),
            ),
        );
        write(
            "singularity.executor.cleanup.yaml",
            format!(
                "singularityHosts: [{}]\nsingularityContextPath: singularity/api\n\
                 singularityClientCredentials: {{headerName: {HEADER}, token: {TOKEN}}}\n\
                 executorCleanupResultsDirectory: {}\nmesosAgentStateUrl: {}\nmaxStartDelaySeconds: 0\n\
                 {cleanup_extra}\n",
                api.hosts()[0],
                results.display(),
                api.agent_state_url(),
            ),
        );
        Agent {
            root,
            config_dir,
            sandbox,
            definitions,
            s3_metadata,
            tail_metadata,
            results,
            logrotate,
            logrotate_hourly,
            cron,
            api,
        }
    }

    /// Runs one task to its end with the real executor; returns its id.
    pub fn run_task(&self, cmd: &str) -> String {
        self.run_task_with(cmd, json!({}))
    }

    /// [`Agent::run_task`] with extra executor data fields.
    pub fn run_task_with(&self, cmd: &str, extra: Value) -> String {
        let task_id = task_id();
        let out = self
            .executor_command(&task_id, cmd, extra)
            .output()
            .expect("run the executor");
        assert!(
            out.status.success() || out.status.code() == Some(1),
            "executor: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            self.definition_path(&task_id).exists(),
            "the executor wrote no definition: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        task_id
    }

    /// The executor command running `cmd` as task `task_id` (not started).
    pub fn executor_command(&self, task_id: &str, cmd: &str, extra: Value) -> Command {
        let mut data = json!({"cmd": cmd, "embeddedArtifacts": [], "user": current_user()});
        if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
            data.extend(extra.clone());
        }
        let request = task_id.split("-dep1-").next().unwrap_or("req");
        let task_file = self.root.path().join(format!("{task_id}.json"));
        fs::write(
            &task_file,
            serde_json::to_vec(&json!({
                "taskId": task_id, "requestId": request, "id": "dep1", "executorData": data
            }))
            .expect("task JSON"),
        )
        .expect("task file");
        let mut command = Command::new(executor_binary());
        command
            .arg("--config-dir")
            .arg(&self.config_dir)
            .env_remove("SINGULARITY_CONFIG_DIR")
            .env("RUST_LOG", "warn")
            .arg("run")
            .arg(&task_file)
            .arg("--sandbox")
            .arg(&self.sandbox)
            .stdin(Stdio::null());
        command
    }

    /// `<definitions>/<taskId>.task.json`.
    pub fn definition_path(&self, task_id: &str) -> PathBuf {
        self.definitions
            .join(format!("{}.task.json", task_id.replace(':', "_")))
    }

    /// `<sandbox>/<taskId>`.
    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.sandbox.join(task_id.replace(':', "_"))
    }

    /// Singularity's history: `state`, `minutes_ago` minutes ago.
    pub fn ended(&self, task_id: &str, state: &str, minutes_ago: i64) {
        let at = chrono::Utc::now().timestamp_millis() - minutes_ago * 60_000;
        self.api.set_history(TaskHistory::new(task_id, state, at));
    }

    /// Runs the cleanup binary with `args`.
    pub fn cleanup(&self, args: &[&str]) -> Output {
        Command::new(CLEANUP)
            .arg("--config-dir")
            .arg(&self.config_dir)
            .args(args)
            .env_remove("SINGULARITY_CONFIG_DIR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("run the cleanup")
    }

    /// Runs the cleanup, expects exit 0 and returns the results it wrote.
    pub fn clean(&self) -> Value {
        let before = self.results_files();
        let out = self.cleanup(&[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "cleanup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = self.results_files();
        let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(new.len(), 1, "one results file per run: {after:?}");
        serde_json::from_slice(&fs::read(new[0]).expect("results")).expect("results JSON")
    }

    /// The results files, sorted.
    pub fn results_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.results)
            .expect("results dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
    }

    /// Every file under the agent's directories with its size and modification time, for
    /// "nothing changed" checks (results excluded).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
        let mut out = BTreeMap::new();
        let mut pending = vec![self.root.path().to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).expect("read dir") {
                let entry = entry.expect("entry");
                let path = entry.path();
                if path.starts_with(&self.results) {
                    continue;
                }
                let meta = entry.metadata().expect("metadata");
                if meta.is_dir() {
                    pending.push(path.clone());
                }
                out.insert(path, (meta.len(), meta.modified().expect("mtime")));
            }
        }
        out
    }

    /// The upload metadata files of `task_id`, parsed.
    pub fn upload_metadata(&self, task_id: &str) -> Vec<Value> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.s3_metadata).expect("metadata dir") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            if name.starts_with(task_id) && name.ends_with(".s3.json") {
                let text = fs::read(&path).expect("read metadata");
                found.push(serde_json::from_slice(&text).expect("metadata JSON"));
            }
        }
        found
    }
}

/// Every line of the task's logs, from the rotated compressed files in `logs/`.
pub fn rotated_lines(task_dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = fs::read_dir(task_dir.join("logs"))
        .map(|entries| entries.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut lines = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("service.log") && name.ends_with(".gz"),
            "only compressed rotations in logs/: {name}"
        );
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(fs::File::open(&file).expect("open")),
            &mut text,
        )
        .expect("gunzip");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

/// The counters of a results document, in Singularity's field names.
pub fn counts(results: &Value) -> [(String, u64); 8] {
    [
        "totalTaskFiles",
        "mesosRunningTasks",
        "waitingTasks",
        "runningTasksIgnored",
        "successfullyCleanedTasks",
        "ioErrorTasks",
        "errorTasks",
        "invalidTasks",
    ]
    .map(|k| (k.to_owned(), results[k].as_u64().unwrap_or(u64::MAX)))
}

/// Expected counters: `(field, value)` pairs; others 0.
pub fn expect_counts(results: &Value, expected: &[(&str, u64)]) {
    for (field, value) in counts(results) {
        let want = expected
            .iter()
            .find(|(k, _)| *k == field)
            .map_or(0, |(_, v)| *v);
        assert_eq!(value, want, "{field} in {results}");
    }
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

/// Waits until `check` holds, panicking with `what` after 30 s.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets the modification time of `path` to `ago` in the past.
pub fn age(path: &Path, ago: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(std::time::SystemTime::now() - ago)
        .expect("set mtime");
}
