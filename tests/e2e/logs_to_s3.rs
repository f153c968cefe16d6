//! A task's log from the executor through the real uploader into S3: every line exactly once,
//! the local files and the metadata gone.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use singularity_test_support::S3Server;

use crate::support::binary;

const LINES: u64 = 1_500_000;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

#[test]
fn a_rotated_task_log_reaches_s3_line_for_line() {
    let s3 = S3Server::start();
    s3.create_bucket("task-logs");
    let root = tempfile::Builder::new()
        .prefix("se-test-e2e-")
        .tempdir()
        .expect("temp dir");
    let dir = |name: &str| {
        let d = root.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    };
    let (etc, meta, tail, cache, tasks, logrotate, sandbox) = (
        dir("etc"),
        dir("s3meta"),
        dir("tail"),
        dir("cache"),
        dir("tasks"),
        dir("logrotate.d"),
        dir("sandbox"),
    );
    write(
        &etc.join("singularity.base.yaml"),
        &format!(
            "s3UploaderMetadataDirectory: {}\nlogWatcherMetadataDirectory: {}\n",
            meta.display(),
            tail.display()
        ),
    );
    write(
        &etc.join("singularity.s3base.yaml"),
        &format!(
            "artifactCacheDirectory: {}\ns3Endpoint: {}\ns3PathStyleAccess: true\ns3Region: {}\n\
             s3AccessKey: {}\ns3SecretKey: {}\n",
            cache.display(),
            s3.endpoint(),
            s3.region(),
            s3.access_key(),
            s3.secret_key()
        ),
    );
    write(
        &etc.join("singularity.executor.yaml"),
        &format!(
            "globalTaskDefinitionDirectory: {}\ndefaultRunAsUser: root\nlogrotateConfDirectory: {}\n\
             logrotateHourlyConfDirectory: {}\ncronDirectory: {}\nmaxServiceLogSizeMb: 1\n\
             s3UploaderBucket: task-logs\n",
            tasks.display(),
            logrotate.display(),
            logrotate.join("hourly").display(),
            root.path().join("cron.d").display()
        ),
    );
    write(
        &etc.join("singularity.s3uploader.yaml"),
        &format!(
            "ledgerPath: {}\ncheckUploadsEverySeconds: 1\nhostname: e2e-host\n",
            root.path().join("uploader.db").display()
        ),
    );
    let task = root.path().join("task.json");
    write(
        &task,
        &format!(
            r#"{{"requestId": "e2e-request", "id": "d1", "executorData": {{"cmd": "seq 1 {LINES}"}}}}"#
        ),
    );

    let executor = Command::new(binary("singularity-executor"))
        .arg("--config-dir")
        .arg(&etc)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .arg("run")
        .arg(&task)
        .arg("--sandbox")
        .arg(&sandbox)
        .stdin(Stdio::null())
        .output()
        .expect("run the executor");
    assert_eq!(
        executor.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&executor.stderr)
    );
    let task_dir = std::fs::read_dir(&sandbox)
        .expect("sandbox")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("task directory");
    let logs = task_dir.join("logs");
    let rotated = std::fs::read_dir(&logs).expect("logs").count();
    assert!(rotated >= 10, "{rotated} rotated files");

    let uploader_log = std::fs::File::create(root.path().join("uploader.stderr")).expect("log");
    let mut uploader = Command::new(binary("singularity-s3-uploader"))
        .arg("--config-dir")
        .arg(&etc)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(uploader_log)
        .spawn()
        .expect("start the uploader");
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let metadata_left = std::fs::read_dir(&meta).expect("meta").count();
        let files_left = std::fs::read_dir(&logs).expect("logs").count();
        if metadata_left == 0 && files_left == 0 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = uploader.kill();
    let _ = uploader.wait();
    assert!(
        done,
        "uploads did not finish; uploader log:\n{}",
        std::fs::read_to_string(root.path().join("uploader.stderr")).unwrap_or_default()
    );

    let objects = s3.s5cmd_ls("task-logs", "e2e-request/");
    assert_eq!(objects.len(), rotated, "{objects:?}");
    let mut seen = vec![false; usize::try_from(LINES).expect("fits") + 1];
    for object in &objects {
        assert!(object.key.ends_with(".log.gz"), "{}", object.key);
        let gz = s3.s5cmd_cat("task-logs", &object.key);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(gz.as_slice())
            .read_to_string(&mut text)
            .expect("gunzip");
        for line in text.lines() {
            let n: usize = line.parse().expect("a number");
            assert!(!seen[n], "line {n} twice");
            seen[n] = true;
        }
    }
    let missing: Vec<usize> = (1..seen.len()).filter(|&n| !seen[n]).take(5).collect();
    assert!(missing.is_empty(), "lines missing from S3: {missing:?}");
}
