//! Crash-point sweep: the downloader binary SIGKILLed at points of cold downloads (a plain
//! artifact and a tarball: while the bytes arrive, right after the rename into the cache,
//! during extraction), restarted each time. The next request serves a verified file, and the
//! cache holds nothing half-written: no temp file, every index row matching its file.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use singularity_s3_downloader::cache::{INDEX_FILE_NAME, TEMP_PREFIX};
use singularity_test_support::S3Server;

use crate::support::http::{BUCKET, Tarball, md5_hex, request, tree};
use crate::support::random_bytes;

const BINARY: &str = env!("CARGO_BIN_EXE_singularity-s3-downloader");
const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    root: tempfile::TempDir,
    s3: S3Server,
    socket: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let s3 = S3Server::start();
        s3.create_bucket(BUCKET);
        let root = tempfile::Builder::new()
            .prefix("se-test-dl-sweep-")
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
                 s3AccessKey: {}\ns3SecretKey: {}\ns3Endpoint: {}\ns3PathStyleAccess: true\n\
                 s3Region: {}\n",
                dir.join("cache").display(),
                socket.display(),
                s3.access_key(),
                s3.secret_key(),
                s3.endpoint(),
                s3.region(),
            ),
        )
        .unwrap();
        // 64 KiB parts one at a time: a download is long enough to be cut at many points.
        std::fs::write(
            etc.join("singularity.s3downloader.yaml"),
            format!(
                "allowedTargetDirectories: [{}]\ndownloadPartSizeBytes: 65536\n\
                 downloadPartConcurrency: 1\nshutdownGraceMillis: 2000\n",
                dir.join("mesos").display()
            ),
        )
        .unwrap();
        Self { root, s3, socket }
    }

    fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    fn spawn(&self) -> Child {
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

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .unix_socket(self.socket.clone())
            .build()
            .unwrap()
    }

    async fn wait_healthy(&self, child: &mut Child) {
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
    fn post_in_background(&self, body: &Value) -> tokio::task::JoinHandle<()> {
        let (http, body) = (self.client(), body.clone());
        tokio::spawn(async move {
            let _ = http
                .post("http://localhost/download")
                .json(&body)
                .send()
                .await;
        })
    }

    async fn post(&self, body: &Value) -> (u16, String) {
        let response = self
            .client()
            .post("http://localhost/download")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Bytes written so far into the download's temp file in the cache (0 if none).
    fn temp_bytes(&self) -> u64 {
        std::fs::read_dir(self.cache())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Every index row names a file of that size whose recorded md5 (if any) is its md5.
async fn check_index(cache: &Path) -> usize {
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
            assert_eq!(md5, md5_hex(&bytes), "{name}: recorded md5 of other bytes");
        }
    }
    rows.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_points_of_cold_downloads_then_the_next_request_serves_a_verified_file() {
    let setup = Setup::new();
    let plain = random_bytes(3 << 20, 41);
    let plain_md5 = md5_hex(&plain);
    setup.s3.s5cmd_put(BUCKET, "app/app.jar", &plain);
    let mut archive = Tarball::new().dir("bundle/");
    let mut files = Vec::new();
    for i in 0..400 {
        let content = random_bytes(8 << 10, 500 + i);
        archive = archive.file(&format!("bundle/f{i:03}"), &content);
        files.push(content);
    }
    let archive = archive.gzip();
    let archive_md5 = md5_hex(&archive);
    setup.s3.s5cmd_put(BUCKET, "app/bundle.tar.gz", &archive);
    let plain_target = setup.root.path().join("mesos/task-plain");
    let tar_target = setup.root.path().join("mesos/task-tar");
    std::fs::create_dir_all(&plain_target).unwrap();
    std::fs::create_dir_all(&tar_target).unwrap();
    let plain_request = request("app/app.jar", "app.jar", Some(&plain_md5), &plain_target);
    let tar_request = request(
        "app/bundle.tar.gz",
        "bundle.tar.gz",
        Some(&archive_md5),
        &tar_target,
    );
    let cached_plain = setup.cache().join(format!("{plain_md5}-app.jar"));
    let mut kills = 0;

    // The plain artifact: cut at every ninth of its bytes, then right after the rename.
    for ninth in 1..=8u64 {
        let mut child = setup.spawn();
        setup.wait_healthy(&mut child).await;
        let post = setup.post_in_background(&plain_request);
        let at = plain.len() as u64 * ninth / 9;
        wait_for(&format!("{at} bytes downloaded"), || {
            setup.temp_bytes() >= at || cached_plain.exists()
        })
        .await;
        kill(child);
        post.abort();
        kills += 1;
    }
    if !cached_plain.exists() {
        let mut child = setup.spawn();
        setup.wait_healthy(&mut child).await;
        let post = setup.post_in_background(&plain_request);
        wait_for("the download renamed into the cache", || {
            cached_plain.exists()
        })
        .await;
        kill(child);
        post.abort();
        kills += 1;
    }
    // The tarball: cut during its download, then during its extraction.
    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let post = setup.post_in_background(&tar_request);
    wait_for("half the archive downloaded", || {
        setup.temp_bytes() >= archive.len() as u64 / 2
    })
    .await;
    kill(child);
    post.abort();
    kills += 1;
    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let post = setup.post_in_background(&tar_request);
    wait_for("the extraction under way", || {
        std::fs::read_dir(&tar_target).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".singularity-extract-")
        })
    })
    .await;
    kill(child);
    post.abort();
    kills += 1;
    assert!(kills >= 10, "{kills} kill points");

    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let restarted = Instant::now();
    assert_eq!(setup.post(&plain_request).await, (200, String::new()));
    assert_eq!(setup.post(&tar_request).await, (200, String::new()));
    eprintln!(
        "{kills} kills; both artifacts placed {:?} after the last restart",
        restarted.elapsed()
    );
    assert_eq!(
        md5_hex(&std::fs::read(plain_target.join("app.jar")).unwrap()),
        plain_md5
    );
    for (i, content) in files.iter().enumerate() {
        let placed = std::fs::read(tar_target.join(format!("bundle/f{i:03}"))).unwrap();
        assert!(placed == *content, "bundle/f{i:03}");
    }
    let visible = |dir: &Path| -> Vec<String> {
        tree(dir)
            .into_iter()
            .filter(|p| !p.starts_with('.'))
            .collect()
    };
    assert_eq!(visible(&plain_target), ["app.jar"]);
    assert_eq!(visible(&tar_target).len(), 401);
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());

    let temp_left: Vec<String> = std::fs::read_dir(setup.cache())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect();
    assert!(temp_left.is_empty(), "{temp_left:?}");
    assert_eq!(check_index(&setup.cache()).await, 2);
    eprintln!(
        "left in the targets: {:?} {:?}",
        tree(&plain_target),
        std::fs::read_dir(&tar_target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
}
