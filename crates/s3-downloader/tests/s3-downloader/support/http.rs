//! The daemon's `start` + `serve` (what `run` does) against the in-process S3 server, on an
//! ephemeral port and a unix socket in the test's own temp dir, driven by reqwest.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use md5::{Digest as _, Md5};
use serde_json::{Value, json};
use singularity_artifacts::ExtractLimits;
use singularity_common::config::{S3BaseConfig, Secret};
use singularity_runtime::Shutdown;
use singularity_s3_downloader::cache::{ArtifactCache, INDEX_FILE_NAME};
use singularity_s3_downloader::fetch::{FetchSettings, configured_s3_clients};
use singularity_s3_downloader::server::ServiceConfig;
use singularity_s3_downloader::{Config, Deps, start};
use singularity_test_support::S3Server;
use tar::{EntryType, Header};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// The bucket every test uses.
pub const BUCKET: &str = "se-artifacts";

/// What a test may change about the daemon.
#[derive(Debug, Clone)]
pub struct Options {
    pub fetch: FetchSettings,
    pub limits: ExtractLimits,
    pub default_request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub tcp: bool,
    pub socket: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            fetch: FetchSettings {
                part_size: 1 << 20,
                part_concurrency: 4,
                part_timeout: Duration::from_secs(30),
                part_attempts: 3,
                download_timeout: Duration::from_secs(120),
                max_concurrent_downloads: 5,
            },
            limits: ExtractLimits::default(),
            default_request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(20),
            tcp: true,
            socket: true,
        }
    }
}

impl Options {
    /// Slow transfers: 64 KiB parts one at a time, so a few MiB take long enough to be caught
    /// in flight.
    pub fn slow() -> Self {
        let mut options = Self::default();
        options.fetch.part_size = 64 << 10;
        options.fetch.part_concurrency = 1;
        options
    }
}

/// A running daemon with its S3 server and directories.
pub struct Daemon {
    pub s3: S3Server,
    pub dir: TempDir,
    pub http: reqwest::Client,
    pub url: String,
    pub socket: PathBuf,
    pub shutdown: Shutdown,
    pub task: Option<JoinHandle<()>>,
}

impl Daemon {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let s3 = S3Server::start();
        s3.create_bucket(BUCKET);
        let dir = tempfile::Builder::new()
            .prefix("se-test-dl-")
            .tempdir()
            .expect("temp dir");
        for sub in ["cache", "mesos", "outside", "run"] {
            std::fs::create_dir(dir.path().join(sub)).expect("test dirs");
        }
        let socket = dir.path().join("run/s3downloader.sock");
        let s3_config = S3BaseConfig {
            artifact_cache_directory: dir.path().join("cache"),
            s3_access_key: Some(Secret::new(s3.access_key())),
            s3_secret_key: Some(Secret::new(s3.secret_key())),
            s3_endpoint: Some(s3.endpoint().to_owned()),
            s3_path_style_access: true,
            s3_region: Some(s3.region().to_owned()),
            local_download_socket: options.socket.then(|| socket.clone()),
            ..S3BaseConfig::default()
        };
        let config = Config {
            service: ServiceConfig {
                tcp: options.tcp.then(|| "127.0.0.1:0".parse().expect("addr")),
                socket: options.socket.then(|| socket.clone()),
                download_path: "/download".to_owned(),
                allowed_target_directories: vec![dir.path().join("mesos")],
                default_request_timeout: options.default_request_timeout,
                extract_limits: options.limits,
                shutdown_grace: options.shutdown_grace,
            },
            fetch: options.fetch,
            cache_directory: dir.path().join("cache"),
            cache_max_bytes: 1 << 30,
            s3: s3_config.clone(),
        };
        let deps = Deps {
            clients: Arc::new(configured_s3_clients(&s3_config).await),
            cache: ArtifactCache::open(&config.cache_directory, config.cache_max_bytes)
                .await
                .expect("open cache"),
        };
        let server = start(config, deps).await.expect("start the daemon");
        let url = match server.tcp_addr() {
            Some(addr) => format!("http://{addr}"),
            None => String::new(),
        };
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        Self {
            s3,
            dir,
            http: reqwest::Client::new(),
            url,
            socket,
            shutdown,
            task: Some(task),
        }
    }

    /// The allowed root; task directories go below it.
    pub fn mesos(&self) -> PathBuf {
        self.dir.path().join("mesos")
    }

    /// A fresh task directory below the allowed root.
    pub fn target(&self, name: &str) -> PathBuf {
        let path = self.mesos().join(name);
        std::fs::create_dir_all(&path).expect("create target");
        path
    }

    /// Uploads `data` with s5cmd (an independent client) and returns its md5.
    pub fn put(&self, key: &str, data: &[u8]) -> String {
        self.s3.s5cmd_put(BUCKET, key, data);
        md5_hex(data)
    }

    /// POSTs `body` to /download over TCP; returns the status and body text.
    pub async fn post(&self, body: &Value) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}/download", self.url))
            .json(body)
            .send()
            .await
            .expect("POST /download");
        answer(response).await
    }

    /// GET `path` over TCP.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        answer(response).await
    }

    /// The value of one sample line of /metrics (`name` with its labels, as printed).
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    /// Names of the artifacts in the cache directory (the index and temp files excluded).
    pub fn cached(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("cache"))
            .expect("read cache dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| !name.starts_with(INDEX_FILE_NAME))
            .collect();
        names.sort();
        names
    }

    /// Requests shutdown and waits for the service to stop.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the service stops")
                .expect("the service task");
        }
    }
}

pub async fn answer(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    (status, text)
}

/// An `ArtifactDownloadRequest` as the Java executor sends it.
pub fn request(key: &str, filename: &str, md5: Option<&str>, target: &Path) -> Value {
    let mut artifact = json!({
        "name": filename,
        "filename": filename,
        "s3Bucket": BUCKET,
        "s3ObjectKey": key,
    });
    if let Some(md5) = md5 {
        artifact["md5sum"] = json!(md5);
    }
    json!({
        "targetDirectory": target,
        "s3Artifact": artifact,
    })
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// Every path below `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            out.push(
                path.strip_prefix(root)
                    .expect("below root")
                    .display()
                    .to_string(),
            );
            if entry.file_type().expect("type").is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Builds `.tar.gz` archives entry by entry, writing names as raw bytes so that archives a
/// careful writer refuses (absolute paths, `..`) can be made.
#[derive(Default)]
pub struct Tarball {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl Tarball {
    pub fn new() -> Self {
        Self {
            builder: Some(tar::Builder::new(Vec::new())),
        }
    }

    fn header(kind: EntryType, path: &str, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_600_000_000);
        let name = &mut header.as_old_mut().name;
        assert!(path.len() < name.len(), "test path too long: {path}");
        name[..path.len()].copy_from_slice(path.as_bytes());
        header
    }

    fn append(mut self, mut header: Header, data: &[u8]) -> Self {
        header.set_cksum();
        self.builder
            .as_mut()
            .expect("builder")
            .append(&header, data)
            .expect("append");
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        let header = Self::header(EntryType::Regular, path, 0o644, data.len() as u64);
        self.append(header, data)
    }

    pub fn dir(self, path: &str) -> Self {
        let header = Self::header(EntryType::Directory, path, 0o755, 0);
        self.append(header, &[])
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        let mut header = Self::header(EntryType::Symlink, path, 0o777, 0);
        let slot = &mut header.as_old_mut().linkname;
        slot[..target.len()].copy_from_slice(target.as_bytes());
        self.append(header, &[])
    }

    pub fn gzip(mut self) -> Vec<u8> {
        let tar = self
            .builder
            .take()
            .expect("builder")
            .into_inner()
            .expect("finish tar");
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).expect("gzip");
        gz.finish().expect("gzip")
    }
}
