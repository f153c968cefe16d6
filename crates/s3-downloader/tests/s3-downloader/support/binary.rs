//! The built daemon as a subprocess on a unix socket in the test's own temp dir, configured
//! through YAML files, with what the fault tests measure: its open descriptors and RSS.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use singularity_artifacts::cache_dir::CacheWriter;
use singularity_s3_downloader::cache::INDEX_FILE_NAME;
use singularity_test_support::S3Server;

use crate::support::http::BUCKET;

const BINARY: &str = env!("CARGO_BIN_EXE_singularity-s3-downloader");
const WAIT: Duration = Duration::from_secs(60);

/// Directories and configuration for the binary.
pub struct Setup {
    pub root: tempfile::TempDir,
    pub s3: Option<S3Server>,
    pub socket: PathBuf,
}

impl Setup {
    /// Against a fresh S3 server holding [`BUCKET`], with `downloader` YAML lines.
    pub fn with_s3(downloader: &str) -> Self {
        let s3 = S3Server::start();
        s3.create_bucket(BUCKET);
        let s3base = format!(
            "s3AccessKey: {}\ns3SecretKey: {}\ns3Endpoint: {}\ns3Region: {}\n",
            s3.access_key(),
            s3.secret_key(),
            s3.endpoint(),
            s3.region(),
        );
        let mut setup = Self::new(&s3base, downloader);
        setup.s3 = Some(s3);
        setup
    }

    /// With `s3base` and `downloader` YAML lines added to the two classes' files.
    pub fn new(s3base: &str, downloader: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("se-test-dl-bin-")
            .tempdir()
            .unwrap();
        let dir = root.path();
        for sub in ["etc", "cache", "mesos", "uploader", "logwatcher", "run"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let socket = dir.join("run/dl.sock");
        let etc = dir.join("etc");
        std::fs::write(
            etc.join("singularity.base.yaml"),
            format!(
                "s3UploaderMetadataDirectory: {}\nlogWatcherMetadataDirectory: {}\n",
                dir.join("uploader").display(),
                dir.join("logwatcher").display()
            ),
        )
        .unwrap();
        std::fs::write(
            etc.join("singularity.s3base.yaml"),
            format!(
                "artifactCacheDirectory: {}\nlocalDownloadHttpPort: 0\nlocalDownloadSocket: {}\n\
                 s3PathStyleAccess: true\n{s3base}",
                dir.join("cache").display(),
                socket.display(),
            ),
        )
        .unwrap();
        std::fs::write(
            etc.join("singularity.s3downloader.yaml"),
            format!(
                "allowedTargetDirectories: [{}]\nshutdownGraceMillis: 2000\n{downloader}",
                dir.join("mesos").display()
            ),
        )
        .unwrap();
        Self {
            root,
            s3: None,
            socket,
        }
    }

    pub fn s3(&self) -> &S3Server {
        self.s3.as_ref().unwrap()
    }

    pub fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    pub fn mesos(&self) -> PathBuf {
        self.root.path().join("mesos")
    }

    pub fn spawn(&self) -> Child {
        Command::new(BINARY)
            .arg("--config-dir")
            .arg(self.root.path().join("etc"))
            .env_remove("SINGULARITY_CONFIG_DIR")
            .env_remove("NOTIFY_SOCKET")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A client that opens a new connection for every request (a pooled one would hold
    /// descriptors of the daemon open between requests).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .unix_socket(self.socket.clone())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }

    pub async fn wait_healthy(&self, child: &mut Child) {
        let http = self.client();
        let started = Instant::now();
        loop {
            if let Ok(response) = http.get("http://localhost/healthz").send().await
                && response.status().as_u16() == 200
            {
                return;
            }
            assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
            assert!(started.elapsed() < WAIT, "the daemon never answered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `body` without waiting for the answer (the daemon will be killed under it).
    pub fn post_in_background(&self, body: &Value) -> tokio::task::JoinHandle<()> {
        let (http, body) = (self.client(), body.clone());
        tokio::spawn(async move {
            let _ = http
                .post("http://localhost/download")
                .json(&body)
                .send()
                .await;
        })
    }

    /// POSTs raw bytes with a content type; (status, body).
    pub async fn post_raw(&self, content_type: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .client()
            .post("http://localhost/download")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    pub async fn post(&self, body: &Value) -> (u16, String) {
        self.post_raw("application/json", serde_json::to_vec(body).unwrap())
            .await
    }

    /// A sample of /metrics.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self
            .client()
            .get("http://localhost/metrics")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    /// Bytes written so far into a download's temp file in the cache (0 if none).
    pub fn temp_bytes(&self) -> u64 {
        std::fs::read_dir(self.cache())
            .unwrap()
            .flatten()
            .filter(|e| CacheWriter::Downloader.owns_temp(&e.file_name().to_string_lossy()))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    }
}

/// Open descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Every index row names a file of that size whose recorded md5 (if any) is its md5.
pub async fn check_index(cache: &Path) -> usize {
    use sqlx::{ConnectOptions as _, Row as _};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(cache.join(INDEX_FILE_NAME))
        .connect()
        .await
        .unwrap();
    let rows = sqlx::query("SELECT name, size, md5 FROM cache_entries")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for row in &rows {
        let name: String = row.get("name");
        let bytes = std::fs::read(cache.join(&name))
            .unwrap_or_else(|e| panic!("index row {name} without its file: {e}"));
        assert_eq!(bytes.len() as i64, row.get::<i64, _>("size"), "{name}");
        if let Some(md5) = row.get::<Option<String>, _>("md5") {
            assert_eq!(
                md5,
                crate::support::http::md5_hex(&bytes),
                "{name}: recorded md5 of other bytes"
            );
        }
    }
    rows.len()
}
