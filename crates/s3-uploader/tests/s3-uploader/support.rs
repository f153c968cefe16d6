//! Shared pieces of the uploader's tests: a configured environment (temp dirs, config file,
//! S3 server), the uploader run in-process or as the real binary, a throttling proxy, and
//! waiting helpers.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use singularity_common::config::{self, ConfigClass, ConfigSources};
use singularity_runtime::Shutdown;
use singularity_s3_uploader::{Deps, RunError, S3ClientFactory, Settings};
use singularity_test_support::{S3Endpoint, S3Server};

/// A test's own directories and configuration.
pub struct Env {
    pub root: tempfile::TempDir,
    pub metadata_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub ledger: PathBuf,
    pub config_file: PathBuf,
    pub s3: S3Endpoint,
}

impl Env {
    /// Directories plus a consolidated YAML config pointing at `s3`, with `extra` lines
    /// (indented by two spaces, YAML) added to the `s3uploader` section.
    pub fn new(s3: &S3Endpoint, extra: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let root = tempfile::Builder::new()
            .prefix("se-test-uploader-")
            .tempdir()
            .unwrap();
        let metadata_dir = root.path().join("s3meta");
        let logs_dir = root.path().join("task/logs");
        for dir in [
            metadata_dir.clone(),
            logs_dir.clone(),
            root.path().join("lw"),
            root.path().join("cache"),
            root.path().join("etc"),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let env = Self {
            ledger: root.path().join("state/uploader.db"),
            config_file: root.path().join("uploader.yaml"),
            metadata_dir,
            logs_dir,
            root,
            s3: s3.clone(),
        };
        env.write_config(extra);
        env
    }

    /// Rewrites the config file with another `s3uploader` extra and S3 endpoint. Keys in
    /// `extra` replace the test defaults.
    pub fn write_config_for(&self, endpoint: &str, extra: &str) {
        let root = self.root.path().display();
        let ledger = self.ledger.display().to_string();
        let defaults = [
            ("hostname", "test-host"),
            ("checkUploadsEverySeconds", "1"),
            ("recheckFilesEverySeconds", "60"),
            ("ledgerPath", ledger.as_str()),
            ("retryWaitMs", "100"),
            ("retryMaxWaitMillis", "1000"),
            ("debounceMillis", "50"),
            ("s3RequestTimeoutMillis", "10000"),
            ("shutdownGraceMillis", "5000"),
        ];
        let mut uploader = String::new();
        for (key, value) in defaults {
            if !extra.contains(&format!("{key}:")) {
                uploader.push_str(&format!("  {key}: {value}\n"));
            }
        }
        let text = format!(
            "base:\n  s3UploaderMetadataDirectory: {meta}\n  logWatcherMetadataDirectory: {root}/lw\n\
             s3:\n  artifactCacheDirectory: {root}/cache\n  s3Endpoint: {endpoint}\n  s3PathStyleAccess: true\n  \
             s3Region: {region}\n  s3AccessKey: {ak}\n  s3SecretKey: {sk}\n\
             s3uploader:\n{uploader}{extra}",
            meta = self.metadata_dir.display(),
            region = self.s3.region,
            ak = self.s3.access_key,
            sk = self.s3.secret_key,
        );
        std::fs::write(&self.config_file, text).unwrap();
    }

    pub fn write_config(&self, extra: &str) {
        let endpoint = self.s3.endpoint.clone();
        self.write_config_for(&endpoint, extra);
    }

    pub fn sources(&self) -> ConfigSources {
        ConfigSources {
            config_dir: self.root.path().join("etc"),
            files: vec![self.config_file.clone()],
        }
    }

    /// The settings, through the real configuration loader.
    pub fn settings(&self) -> Settings {
        let loaded = match config::load(&self.sources(), ConfigClass::FOR_S3_UPLOADER) {
            Ok(loaded) => loaded,
            Err(errors) => panic!("test config invalid: {errors}"),
        };
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        Settings::from_loaded(&loaded).unwrap()
    }

    /// Writes a metadata file as the Rust executor does (atomically).
    pub fn write_metadata(&self, name: &str, value: &serde_json::Value) -> PathBuf {
        let path = self.metadata_dir.join(name);
        singularity_common::fsio::write_json_atomic(&path, value).unwrap();
        path
    }

    /// Writes a metadata file in place, as the Java executor does (truncate, then write).
    pub fn write_metadata_in_place(&self, name: &str, text: &str) -> PathBuf {
        let path = self.metadata_dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A metadata value for `dir` / `glob` / `bucket` / `key_format`, other fields default.
    pub fn metadata(dir: &Path, glob: &str, bucket: &str, key_format: &str) -> serde_json::Value {
        serde_json::json!({
            "directory": dir,
            "fileGlob": glob,
            "s3Bucket": bucket,
            "s3KeyFormat": key_format,
            "finished": false,
            "uploadImmediately": false,
            "checkSubdirectories": false,
            "compressBeforeUpload": false,
            "checkIfOpen": true,
            "uploaderType": "S3",
            "gcsCredentials": {},
            "useS3ServerSideEncryption": false
        })
    }

    /// Runs the uploader in-process on the current runtime.
    pub fn start(&self) -> Running {
        let settings = self.settings();
        let deps = Deps::from_settings(&settings);
        Self::start_with(settings, deps)
    }

    /// Runs the uploader in-process with these S3 clients (the system clock).
    pub fn start_with_clients(&self, clients: Arc<dyn S3ClientFactory>) -> Running {
        let settings = self.settings();
        let deps = Deps {
            clients,
            clock: Arc::new(singularity_s3_uploader::SystemClock),
        };
        Self::start_with(settings, deps)
    }

    fn start_with(settings: Settings, deps: Deps) -> Running {
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(singularity_s3_uploader::run(
            settings,
            deps,
            shutdown.clone(),
        ));
        Running { shutdown, handle }
    }

    /// Starts the real binary with this config; stderr goes to `<root>/<log_name>`. The
    /// process is killed when the handle is dropped (a failing test leaves nothing behind).
    pub fn spawn_binary(&self, log_name: &str) -> Daemon {
        let log = std::fs::File::create(self.root.path().join(log_name)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_singularity-s3-uploader"))
            .arg("--config-dir")
            .arg(self.root.path().join("etc"))
            .arg("--config")
            .arg(&self.config_file)
            .env(
                "RUST_LOG",
                "info,singularity_s3_uploader=debug,aws_smithy_runtime=warn",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { child }
    }

    pub fn read_log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.root.path().join(log_name)).unwrap_or_default()
    }

    /// Writes `data` to `dir/name` with the given mtime (epoch ms).
    pub fn write_file(dir: &Path, name: &str, data: &[u8], mtime_ms: Option<i64>) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        if let Some(ms) = mtime_ms {
            let time = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap());
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        path
    }
}

/// The uploader binary running as a child process.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM.
    pub fn sigterm(&self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }

    /// Waits for the exit; panics after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "the uploader did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Parts the ledger holds for the live row of `path`, read without migrating (the daemon may
/// be creating the database right now); 0 while there is none.
pub fn parts_recorded(ledger: &Path, path: &Path) -> usize {
    use sqlx::{ConnectOptions as _, Row as _};
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let Ok(mut conn) = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(ledger)
                .read_only(true)
                .connect()
                .await
            else {
                return 0;
            };
            let count = sqlx::query(
                "SELECT COUNT(*) AS n FROM parts JOIN files ON files.id = parts.file_id \
                 WHERE files.path = ? AND files.state = 'uploading'",
            )
            .bind(path.to_string_lossy().into_owned())
            .fetch_one(&mut conn)
            .await
            .map_or(0, |row| row.get::<i64, _>("n"));
            usize::try_from(count).unwrap_or(0)
        })
}

/// An in-process uploader.
pub struct Running {
    pub shutdown: Shutdown,
    pub handle: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the uploader stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

/// Waits (polling every 50 ms) until `cond` holds; panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Blocking variant of [`wait_until`].
pub fn wait_until_blocking(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A bucket name unique to the test.
pub fn bucket() -> String {
    singularity_test_support::unique_name("se-test")
}

/// A fresh S3 server holding one empty bucket, and that bucket's name.
pub fn server_with_bucket() -> (S3Server, String) {
    let server = S3Server::start();
    let bucket = bucket();
    server.create_bucket(&bucket);
    (server, bucket)
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port; (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A TCP proxy on 127.0.0.1 in front of an S3 server that counts the bytes clients send and
/// can throttle them, on its own thread and runtime.
pub struct Proxy {
    pub addr: SocketAddr,
    pub bytes_up: Arc<AtomicU64>,
    /// Bytes per second from clients; 0: unlimited.
    pub rate: Arc<AtomicU64>,
    /// CompleteMultipartUpload requests seen (`POST` with an `uploadId`).
    pub completions: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, rate: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes_up = Arc::new(AtomicU64::new(0));
        let rate = Arc::new(AtomicU64::new(rate));
        let completions = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, r, s) = (bytes_up.clone(), rate.clone(), stop.clone());
        let c = completions.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while !s.load(Ordering::Relaxed) {
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
                    let Ok(Ok((client, _))) = accepted else {
                        continue;
                    };
                    let (b, r, c) = (b.clone(), r.clone(), c.clone());
                    tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let up = async move {
                            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                            let mut buf = vec![0u8; 16 * 1024];
                            loop {
                                let n = match cr.read(&mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                b.fetch_add(n as u64, Ordering::Relaxed);
                                c.fetch_add(completions_in(&buf[..n]), Ordering::Relaxed);
                                let rate = r.load(Ordering::Relaxed);
                                if rate > 0 {
                                    let secs = n as f64 / rate as f64;
                                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                                }
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                            let _ = sw.shutdown().await;
                        };
                        let down = async move {
                            let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        };
                        tokio::join!(up, down);
                    });
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
        });
        Self {
            addr,
            bytes_up,
            rate,
            completions,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Request lines of CompleteMultipartUpload in a chunk a client sent (request lines arrive
/// whole at the start of a write).
fn completions_in(chunk: &[u8]) -> u64 {
    let mut found = 0;
    let mut rest = chunk;
    while let Some(at) = rest.windows(6).position(|w| w == b"POST /") {
        let line = &rest[at..];
        let end = line
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(line.len());
        if line[..end].windows(9).any(|w| w == b"uploadId=") {
            found += 1;
        }
        rest = &line[end..];
    }
    found
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `singularity-test-s3` binary, built by `cargo test --workspace` (or `cargo build -p
/// singularity-test-support`).
pub fn test_s3_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target = profile_dir.parent().unwrap().to_owned();
    for candidate in [
        profile_dir.join("singularity-test-s3"),
        target.join("release/singularity-test-s3"),
        target.join("debug/singularity-test-s3"),
    ] {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "singularity-test-s3 is not built under {}: run `cargo build -p singularity-test-support --bin singularity-test-s3`",
        target.display()
    );
}

/// The `singularity-test-s3` binary serving `root` on `port`, stopped on drop.
pub struct ServerProcess {
    pub child: Child,
}

impl ServerProcess {
    pub fn start(root: &Path, port: u16, s3: &S3Endpoint) -> Self {
        let mut child = Command::new(test_s3_binary())
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(root)
            .arg("--access-key")
            .arg(&s3.access_key)
            .arg("--secret-key")
            .arg(&s3.secret_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&line);
        assert!(
            line.contains("listening on"),
            "test S3 server said {line:?}"
        );
        Self { child }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files directly in `dir`, sorted by name.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Ledger rows for `path`: (state, count), read with the uploader's own ledger type.
pub async fn ledger_history(ledger: &Path, path: &Path) -> Vec<String> {
    let ledger = singularity_s3_uploader::ledger::Ledger::open(ledger)
        .await
        .unwrap();
    let rows = ledger.history(path).await.unwrap();
    ledger.close().await;
    rows.into_iter()
        .map(|r| r.state.as_str().to_owned())
        .collect()
}

/// The state of the live ledger row of `path`, if it has one.
pub async fn ledger_live(ledger: &Path, path: &Path) -> Option<String> {
    let ledger = singularity_s3_uploader::ledger::Ledger::open(ledger)
        .await
        .unwrap();
    let row = ledger.live(path).await.unwrap();
    ledger.close().await;
    row.map(|r| r.state.as_str().to_owned())
}
