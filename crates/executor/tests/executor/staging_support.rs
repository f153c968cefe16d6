//! Shared pieces of the staging tests: a task sandbox with its configuration, the in-process
//! S3 server, the downloader binary as a subprocess, and a small local HTTP server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;
use singularity_common::config::{BaseConfig, ExecutorConfig, S3BaseConfig, Secret};
use singularity_common::records::SingularityTaskExecutorData;
use singularity_executor::staging::StagingContext;
use singularity_test_support::S3Server;
use tempfile::TempDir;

/// The bucket every staging test uses.
pub const BUCKET: &str = "se-artifacts";
/// The task id every staging test uses.
pub const TASK_ID: &str = "myreq-dep1-1668780000000-1-host_a-rack1";

/// A task sandbox under a temp root, with the executor's own artifact cache.
pub struct Sandbox {
    pub root: TempDir,
    pub task_dir: PathBuf,
    pub cache: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("se-test-")
            .tempdir()
            .expect("temp dir");
        let task_dir = root.path().join("mesos/sandbox").join(TASK_ID);
        let cache = root.path().join("executor-cache");
        for dir in [&task_dir, &cache] {
            std::fs::create_dir_all(dir).expect("test dirs");
        }
        Sandbox {
            root,
            task_dir,
            cache,
        }
    }

    /// A staging context without S3 (embedded and external artifacts only).
    pub fn context(&self) -> StagingContext {
        StagingContext {
            task_dir: self.task_dir.clone(),
            executor: ExecutorConfig::default(),
            s3: S3BaseConfig {
                artifact_cache_directory: self.cache.clone(),
                ..S3BaseConfig::default()
            },
            base: BaseConfig::default(),
        }
    }

    /// A staging context reading S3 from `s3`, in-process.
    pub fn s3_context(&self, s3: &S3Server) -> StagingContext {
        let mut ctx = self.context();
        ctx.s3 = s3_config(s3, &self.cache);
        ctx
    }

    /// Names of the finished files in the executor's cache (temp files excluded).
    pub fn cached(&self) -> Vec<String> {
        visible_files(&self.cache)
    }

    pub fn read(&self, relative: &str) -> Vec<u8> {
        let path = self.task_dir.join(relative);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

/// The s3base configuration for the in-process S3 server with `cache` as the artifact cache.
pub fn s3_config(s3: &S3Server, cache: &Path) -> S3BaseConfig {
    S3BaseConfig {
        artifact_cache_directory: cache.to_path_buf(),
        s3_access_key: Some(Secret::new(s3.access_key())),
        s3_secret_key: Some(Secret::new(s3.secret_key())),
        s3_endpoint: Some(s3.endpoint().to_owned()),
        s3_path_style_access: true,
        s3_region: Some(s3.region().to_owned()),
        ..S3BaseConfig::default()
    }
}

/// Regular, non-hidden files of `dir`, sorted.
pub fn visible_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().into_string().expect("UTF-8 name"))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// An S3 server with the test bucket.
pub fn s3_server() -> S3Server {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3
}

/// Executor data from the JSON the scheduler would send (`cmd` is added).
pub fn executor_data(mut json: Value) -> SingularityTaskExecutorData {
    json["cmd"] = Value::from("true");
    serde_json::from_value(json).expect("valid executor data")
}

pub fn md5(bytes: &[u8]) -> String {
    singularity_artifacts::md5_bytes(bytes)
}

/// A gzipped tarball of `(path, content)` files.
pub fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, *content)
            .expect("tar entry");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

/// The `singularity-s3-downloader` binary, built by `cargo test --workspace` (or
/// `cargo build -p singularity-s3-downloader`).
pub fn downloader_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    let binary = profile_dir.join("singularity-s3-downloader");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p singularity-s3-downloader` (cargo test --workspace \
         builds it)",
        binary.display()
    );
    binary
}

/// How the downloader listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Http,
    Socket,
}

/// The downloader binary running as a subprocess, with its own cache, allowed to write below
/// the sandbox root. Killed when dropped.
pub struct Downloader {
    child: Child,
    pub cache: PathBuf,
    pub port: Option<u16>,
    pub socket: Option<PathBuf>,
    _dir: TempDir,
}

impl Downloader {
    pub async fn start(s3: &S3Server, allowed: &Path, listen: Listen) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("se-test-dl-")
            .tempdir()
            .expect("temp dir");
        let etc = dir.path().join("etc");
        let cache = dir.path().join("cache");
        for d in [&etc, &cache, &dir.path().join("s3"), &dir.path().join("lw")] {
            std::fs::create_dir_all(d).expect("test dirs");
        }
        let (port, socket) = match listen {
            Listen::Http => (Some(free_port()), None),
            Listen::Socket => (None, Some(dir.path().join("dl.sock"))),
        };
        write(
            &etc.join("singularity.base.yaml"),
            &format!(
                "s3UploaderMetadataDirectory: {}\nlogWatcherMetadataDirectory: {}\n",
                dir.path().join("s3").display(),
                dir.path().join("lw").display()
            ),
        );
        let mut s3base = format!(
            "artifactCacheDirectory: {}\nlocalDownloadHttpPort: {}\n\
             s3AccessKey: {}\ns3SecretKey: {}\ns3Endpoint: {}\ns3PathStyleAccess: true\n\
             s3Region: {}\n",
            cache.display(),
            port.unwrap_or(0),
            s3.access_key(),
            s3.secret_key(),
            s3.endpoint(),
            s3.region()
        );
        if let Some(socket) = &socket {
            s3base.push_str(&format!("localDownloadSocket: {}\n", socket.display()));
        }
        write(&etc.join("singularity.s3base.yaml"), &s3base);
        write(
            &etc.join("singularity.s3downloader.yaml"),
            &format!(
                "allowedTargetDirectories: [{}]\nshutdownGraceMillis: 1000\n",
                allowed.display()
            ),
        );
        let log = std::fs::File::create(dir.path().join("downloader.log")).expect("log file");
        let child = Command::new(downloader_binary())
            .arg("--config-dir")
            .arg(&etc)
            .env_remove("SINGULARITY_CONFIG_DIR")
            .env_remove("NOTIFY_SOCKET")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the downloader");
        let mut downloader = Downloader {
            child,
            cache,
            port,
            socket,
            _dir: dir,
        };
        downloader.wait_ready().await;
        downloader
    }

    async fn wait_ready(&mut self) {
        let (client, url) = match (&self.socket, self.port) {
            (Some(socket), _) => (
                reqwest::Client::builder()
                    .unix_socket(socket.clone())
                    .build()
                    .expect("client"),
                "http://localhost/healthz".to_owned(),
            ),
            (None, Some(port)) => (
                reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .expect("client"),
                format!("http://127.0.0.1:{port}/healthz"),
            ),
            _ => unreachable!("a listener is configured"),
        };
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("the downloader exited before answering: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the downloader never answered on {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Point `ctx` at this downloader.
    pub fn configure(&self, ctx: &mut StagingContext) {
        ctx.executor.use_local_download_service = true;
        ctx.s3.local_download_http_port = self.port;
        ctx.s3.local_download_socket = self.socket.clone();
    }

    /// Names of the finished files in the downloader's cache.
    pub fn cached(&self) -> Vec<String> {
        visible_files(&self.cache)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Downloader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &Path, text: &str) {
    let mut file = std::fs::File::create(path).expect("config file");
    file.write_all(text.as_bytes()).expect("config file");
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A local HTTP server: `GET /files/<name>` serves the registered bytes; everything else is
/// 404.
pub struct HttpServer {
    pub addr: SocketAddr,
    state: Arc<HttpState>,
    task: tokio::task::JoinHandle<()>,
}

struct HttpState {
    files: std::sync::Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicU64,
}

impl HttpServer {
    pub async fn start() -> Self {
        let state = Arc::new(HttpState {
            files: std::sync::Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/files/{name}", get(serve_file))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpServer { addr, state, task }
    }

    pub fn put(&self, name: &str, content: &[u8]) {
        self.state
            .files
            .lock()
            .expect("lock")
            .insert(name.to_owned(), content.to_vec());
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/files/{name}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_file(
    State(state): State<Arc<HttpState>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let content = state.files.lock().expect("lock").get(&name).cloned();
    match content {
        Some(bytes) => bytes.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A server that answers every request with headers promising 1 MiB, sends 1 KiB and then
/// stalls (keeping the connection open) until dropped.
pub struct StallServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StallServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            // Aborting the accept loop drops this set, which aborts every connection.
            let mut open = tokio::task::JoinSet::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                open.spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n";
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&[7u8; 1024]).await;
                    std::future::pending::<()>().await;
                });
            }
        });
        StallServer {
            addr,
            connections,
            task,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for StallServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
