//! Shared by the cross-daemon tests: the daemons' binaries (built once per run), a temp agent
//! layout with the configuration of every class, the daemons as subprocesses, and reading a
//! task's log lines back from S3 with an independent client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use md5::Digest as _;
use serde_json::{Value, json};
use singularity_test_support::S3Server;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The daemons these tests run; `scripts/test.sh` builds them before `cargo test`, so the
/// build here finds nothing to do.
pub const DAEMONS: [&str; 4] = [
    "singularity-executor",
    "singularity-executor-cleanup",
    "singularity-s3-uploader",
    "singularity-s3-downloader",
];

/// The path of daemon `name`, built once per test run with the same cargo and target directory
/// (binaries of other packages have no `CARGO_BIN_EXE_*`).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        // The variables cargo sets for this test would change build scripts' fingerprints and
        // rebuild the daemons' dependencies on every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let keep = ["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&name.as_ref());
            if (name.starts_with("CARGO_") && !keep) || name == "OUT_DIR" {
                command.env_remove(name.as_ref());
            }
        }
        command.current_dir(workspace()).args(["build", "--bins"]);
        for daemon in DAEMONS {
            command.args(["-p", daemon]);
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success(), "building the daemons failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target.join("debug")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The bucket task logs go to.
pub const LOG_BUCKET: &str = "task-logs";
/// The bucket artifacts come from.
pub const ARTIFACT_BUCKET: &str = "artifacts";
/// The host name the daemons are configured with.
pub const HOST: &str = "e2e-host";

/// One test's agent: a temp directory holding the configuration of every class, the sandbox,
/// task definitions, metadata, caches and the downloader's socket, and its own S3 server.
pub struct Agent {
    pub root: tempfile::TempDir,
    pub s3: S3Server,
    /// Configuration of the executor, the uploader and the cleanup.
    pub etc: PathBuf,
    /// Configuration of the downloader (its own s3base: cache and, maybe, endpoint).
    pub downloader_etc: PathBuf,
    pub sandbox: PathBuf,
    pub definitions: PathBuf,
    pub s3_metadata: PathBuf,
    /// The executor's in-process artifact cache.
    pub cache: PathBuf,
    /// The downloader's artifact cache.
    pub downloader_cache: PathBuf,
    pub downloader_socket: PathBuf,
}

/// Options of [`Agent::new`].
#[derive(Default)]
pub struct AgentOptions<'a> {
    /// Extra YAML lines for the executor class.
    pub executor: &'a str,
    /// Extra YAML lines for the cleanup class (it is configured only when set).
    pub cleanup: Option<&'a str>,
}

impl Agent {
    pub fn new(options: AgentOptions<'_>) -> Self {
        let s3 = S3Server::start();
        s3.create_bucket(LOG_BUCKET);
        s3.create_bucket(ARTIFACT_BUCKET);
        let root = tempfile::Builder::new()
            .prefix("se-test-e2e-")
            .tempdir()
            .expect("temp dir");
        let dir = |name: &str| {
            let d = root.path().join(name);
            std::fs::create_dir_all(&d).expect("mkdir");
            d
        };
        let (etc, downloader_etc, sandbox, definitions, s3_metadata, tail_metadata) = (
            dir("etc"),
            dir("etc-downloader"),
            dir("sandbox"),
            dir("tasks"),
            dir("s3-metadata"),
            dir("tail-metadata"),
        );
        let (cache, downloader_cache, logrotate, results) = (
            dir("cache"),
            dir("cache-downloader"),
            dir("logrotate.d"),
            dir("cleanup-results"),
        );
        let downloader_socket = root.path().join("downloader.sock");
        let base = format!(
            "s3UploaderMetadataDirectory: {}\nlogWatcherMetadataDirectory: {}\nhostname: {HOST}\n",
            s3_metadata.display(),
            tail_metadata.display()
        );
        let s3base = |cache: &Path, endpoint: &str| {
            format!(
                "artifactCacheDirectory: {}\ns3Endpoint: {endpoint}\ns3PathStyleAccess: true\n\
                 s3Region: {}\ns3AccessKey: {}\ns3SecretKey: {}\nlocalDownloadSocket: {}\nlocalDownloadHttpPort: 0\n",
                cache.display(),
                s3.region(),
                s3.access_key(),
                s3.secret_key(),
                downloader_socket.display()
            )
        };
        write(&etc.join("singularity.base.yaml"), &base);
        write(
            &etc.join("singularity.s3base.yaml"),
            &s3base(&cache, s3.endpoint()),
        );
        write(
            &etc.join("singularity.executor.yaml"),
            &format!(
                "globalTaskDefinitionDirectory: {}\ndefaultRunAsUser: root\nlogrotateConfDirectory: {}\n\
                 logrotateHourlyConfDirectory: {}\ncronDirectory: {}\nmaxServiceLogSizeMb: 1\n\
                 s3UploaderBucket: {LOG_BUCKET}\nuseLocalDownloadService: true\n\
                 dockerSocket: {}\n{}\n",
                definitions.display(),
                logrotate.display(),
                logrotate.join("hourly").display(),
                root.path().join("cron.d").display(),
                singularity_test_support::docker_socket().display(),
                options.executor
            ),
        );
        write(
            &etc.join("singularity.s3uploader.yaml"),
            &format!(
                "ledgerPath: {}\ncheckUploadsEverySeconds: 1\n",
                root.path().join("uploader.db").display()
            ),
        );
        if let Some(cleanup) = options.cleanup {
            write(
                &etc.join("singularity.executor.cleanup.yaml"),
                &format!(
                    "executorCleanupResultsDirectory: {}\nmaxStartDelaySeconds: 0\n{cleanup}\n",
                    results.display()
                ),
            );
        }
        write(&downloader_etc.join("singularity.base.yaml"), &base);
        write(
            &downloader_etc.join("singularity.s3base.yaml"),
            &s3base(&downloader_cache, s3.endpoint()),
        );
        write(
            &downloader_etc.join("singularity.s3downloader.yaml"),
            &format!(
                "allowedTargetDirectories: [{}]\nshutdownGraceMillis: 1000\n\
                 downloadPartSizeBytes: 1048576\n",
                sandbox.display()
            ),
        );
        Agent {
            root,
            s3,
            etc,
            downloader_etc,
            sandbox,
            definitions,
            s3_metadata,
            cache,
            downloader_cache,
            downloader_socket,
        }
    }

    /// Points the downloader (at its next start) at `endpoint` instead of the S3 server.
    pub fn downloader_endpoint(&self, endpoint: &str) {
        let path = self.downloader_etc.join("singularity.s3base.yaml");
        let text = std::fs::read_to_string(&path).expect("downloader s3base");
        let text: String = text
            .lines()
            .map(|line| {
                if line.starts_with("s3Endpoint:") {
                    format!("s3Endpoint: {endpoint}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        write(&path, &text);
    }

    /// Puts `content` into the artifact bucket as `key`; returns its `s3Artifacts` entry,
    /// placed in the task's `app/` directory (where a plain task starts).
    pub fn s3_artifact(&self, key: &str, filename: &str, content: &[u8]) -> Value {
        self.s3.s5cmd_put(ARTIFACT_BUCKET, key, content);
        json!({"name": filename, "filename": filename, "md5sum": hex::encode(md5::Md5::digest(content)),
               "filesize": content.len(), "s3Bucket": ARTIFACT_BUCKET, "s3ObjectKey": key,
               "targetFolderRelativeToTask": "app"})
    }

    /// Writes the task file of `task_id` (request `request`) with `executor_data` and, for a
    /// container task, `container_info`.
    pub fn task_file(
        &self,
        request: &str,
        task_id: &str,
        executor_data: Value,
        container_info: Option<Value>,
    ) -> PathBuf {
        let mut task = json!({"taskId": task_id, "requestId": request, "id": "d1",
                              "executorData": executor_data});
        if let Some(info) = container_info {
            task["containerInfo"] = info;
        }
        let path = self.root.path().join(format!("{task_id}.json"));
        write(&path, &task.to_string());
        path
    }

    /// The executor running `task_file` standalone (not started).
    pub fn executor(&self, task_file: &Path) -> Command {
        let mut command = Command::new(binary("singularity-executor"));
        command
            .arg("--config-dir")
            .arg(&self.etc)
            .env_remove("SINGULARITY_CONFIG_DIR")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .arg("run")
            .arg(task_file)
            .arg("--sandbox")
            .arg(&self.sandbox)
            .stdin(Stdio::null());
        command
    }

    /// Runs `task_file` to its end and expects TASK_FINISHED; returns the executor's output.
    pub fn run_to_the_end(&self, task_file: &Path) -> Output {
        let out = self.executor(task_file).output().expect("run the executor");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts the uploader.
    pub fn start_uploader(&self) -> Daemon {
        Daemon::start(
            "singularity-s3-uploader",
            &self.etc,
            &self.root.path().join("uploader.log"),
        )
    }

    /// Starts the downloader and waits until it answers on its socket.
    pub fn start_downloader(&self) -> Daemon {
        let daemon = Daemon::start(
            "singularity-s3-downloader",
            &self.downloader_etc,
            &self.root.path().join("downloader.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy(&self.downloader_socket) {
            assert!(
                Instant::now() < deadline,
                "the downloader never answered: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    /// `<sandbox>/<taskId>`.
    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.sandbox.join(task_id.replace(':', "_"))
    }

    /// Waits until the uploader has taken every log file of `task_id` and dropped its
    /// metadata; `uploader` is shown when it does not.
    pub fn wait_uploaded(&self, task_id: &str, uploader: &Daemon) {
        let logs = self.task_dir(task_id).join("logs");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let metadata_left = std::fs::read_dir(&self.s3_metadata)
                .expect("metadata dir")
                .count();
            let files_left = std::fs::read_dir(&logs).map_or(0, Iterator::count);
            if metadata_left == 0 && files_left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "uploads did not finish ({metadata_left} metadata, {files_left} files left); \
                 uploader log:\n{}",
                uploader.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The log objects of `request`, and every line they hold (keys in listing order).
    pub fn logs_in_s3(&self, request: &str) -> (Vec<String>, Vec<String>) {
        let mut keys = Vec::new();
        let mut lines = Vec::new();
        for (key, object_lines) in self.log_objects(request) {
            keys.push(key);
            lines.extend(object_lines);
        }
        (keys, lines)
    }

    /// Each log object of `request` with its lines, read with s5cmd.
    pub fn log_objects(&self, request: &str) -> Vec<(String, Vec<String>)> {
        let objects = self.s3.s5cmd_ls(LOG_BUCKET, &format!("{request}/"));
        let mut found = Vec::new();
        for object in objects {
            assert!(object.key.ends_with(".log.gz"), "{}", object.key);
            let gz = self.s3.s5cmd_cat(LOG_BUCKET, &object.key);
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(gz.as_slice())
                .read_to_string(&mut text)
                .expect("gunzip");
            assert!(!text.is_empty(), "{} is empty", object.key);
            found.push((object.key, text.lines().map(str::to_owned).collect()));
        }
        found
    }
}

/// Asserts that `lines` are the numbers `1..=count`, each exactly once.
pub fn assert_numbers_once(lines: &[String], count: usize) {
    let mut seen = vec![false; count + 1];
    for line in lines {
        let n: usize = line
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!((1..=count).contains(&n), "line {n} out of range");
        assert!(!seen[n], "line {n} twice");
        seen[n] = true;
    }
    let missing: Vec<usize> = (1..=count).filter(|&n| !seen[n]).take(5).collect();
    assert!(missing.is_empty(), "lines missing from S3: {missing:?}");
}

/// A script printing the numbers 1 to `count`, one a line.
pub fn counting_script(count: u64) -> Vec<u8> {
    format!("#!/bin/sh\nseq 1 {count}\n").into_bytes()
}

/// A unique task id of `request`, in Singularity's form.
pub fn task_id(request: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    // The host part has no `-`: task ids are parsed from the right.
    format!("{request}-d1-{millis}-1-testhost-local")
}

/// A unique request id.
pub fn request(prefix: &str) -> String {
    singularity_test_support::unique_name(prefix)
}

/// A daemon run as a subprocess, its stderr in a file; SIGKILLed by pid when dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(name: &str, etc: &Path, log: &Path) -> Self {
        // Appended to, so a restarted daemon's log follows the killed one's.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log");
        let child = Command::new(binary(name))
            .arg("--config-dir")
            .arg(etc)
            .env_remove("SINGULARITY_CONFIG_DIR")
            .env_remove("NOTIFY_SOCKET")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("daemon status").is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET /healthz` over the downloader's unix socket answers 200.
fn healthy(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Writes a file, panicking with its path.
pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A TCP proxy in front of the S3 server that, while `throttled`, passes answers on slowly
/// (16 KiB per 100 ms per connection), so a download can be caught in flight.
pub struct SlowProxy {
    pub endpoint: String,
    pub throttled: Arc<AtomicBool>,
    /// Bytes of answers passed on.
    pub passed: Arc<AtomicU64>,
}

impl SlowProxy {
    pub fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let throttled = Arc::new(AtomicBool::new(true));
        let passed = Arc::new(AtomicU64::new(0));
        let (slow, count) = (Arc::clone(&throttled), Arc::clone(&passed));
        // Detached: the threads end with the test process.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (slow, count) = (Arc::clone(&slow), Arc::clone(&count));
                let (mut c_read, mut s_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || pass_answers(server, client, &slow, &count));
            }
        });
        SlowProxy {
            endpoint,
            throttled,
            passed,
        }
    }
}

fn pass_answers(mut from: TcpStream, mut to: TcpStream, slow: &AtomicBool, count: &AtomicU64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        if slow.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Every `service.log*` file of a task directory (live, rotated, compressed), by name.
pub fn local_log_files(task_dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in [task_dir.to_path_buf(), task_dir.join("logs")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if !name.starts_with("service.log") || !path.is_file() {
                continue;
            }
            let raw = std::fs::read(&path).expect("read a log file");
            let text = if name.ends_with(".gz") {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(raw.as_slice())
                    .read_to_end(&mut out)
                    .expect("gunzip");
                out
            } else {
                raw
            };
            files.insert(path, text);
        }
    }
    files
}
