//! The built binary as a subprocess: `--check-config` exit codes, and a real run that serves
//! on its unix socket and stops with exit 0 on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::http;

const BINARY: &str = env!("CARGO_BIN_EXE_singularity-s3-downloader");

/// A config dir with every directory the three classes need, the listeners on `socket`.
fn config_dir(root: &Path, socket: &Path) -> std::path::PathBuf {
    let etc = root.join("etc");
    for dir in ["etc", "cache", "uploader", "logwatcher", "mesos"] {
        std::fs::create_dir_all(root.join(dir)).expect("test setup");
    }
    std::fs::write(
        etc.join("singularity.base.yaml"),
        format!(
            "s3UploaderMetadataDirectory: {}\nlogWatcherMetadataDirectory: {}\n",
            root.join("uploader").display(),
            root.join("logwatcher").display()
        ),
    )
    .expect("test setup");
    std::fs::write(
        etc.join("singularity.s3base.yaml"),
        format!(
            "artifactCacheDirectory: {}\nlocalDownloadHttpPort: 0\nlocalDownloadSocket: {}\n\
             s3AccessKey: AKIAEXAMPLEKEY12\ns3SecretKey: example-secret-9876\n\
             s3Endpoint: http://127.0.0.1:1\ns3PathStyleAccess: true\n",
            root.join("cache").display(),
            socket.display()
        ),
    )
    .expect("test setup");
    std::fs::write(
        etc.join("singularity.s3downloader.properties"),
        format!(
            "s3downloader.allowed.target.directories={}\n\
             s3downloader.shutdown.grace.millis=2000\n",
            root.join("mesos").display()
        ),
    )
    .expect("test setup");
    etc
}

fn check_config(etc: &Path) -> std::process::Output {
    Command::new(BINARY)
        .arg("--config-dir")
        .arg(etc)
        .arg("--check-config")
        .env_remove("SINGULARITY_CONFIG_DIR")
        .output()
        .expect("test setup")
}

#[test]
fn check_config_exits_0_for_a_good_config_and_78_for_a_bad_one() {
    let root = tempfile::Builder::new()
        .prefix("se-test-")
        .tempdir()
        .unwrap();
    let etc = config_dir(root.path(), &root.path().join("dl.sock"));

    let good = check_config(&etc);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.contains("allowedTargetDirectories"), "{stdout}");
    assert!(stdout.contains("****9876"), "secret redacted: {stdout}");
    assert!(!stdout.contains("example-secret-9876"), "{stdout}");

    std::fs::write(
        etc.join("singularity.s3downloader.properties"),
        "s3downloader.download.part.concurrency=0\n",
    )
    .unwrap();
    std::fs::remove_dir(root.path().join("cache")).unwrap();
    let bad = check_config(&etc);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("artifactCacheDirectory"), "{stderr}");
    assert!(
        stderr.contains("s3downloader.download.part.concurrency"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_config_stops_the_daemon_with_78() {
    let root = tempfile::Builder::new()
        .prefix("se-test-")
        .tempdir()
        .unwrap();
    let etc = config_dir(root.path(), &root.path().join("dl.sock"));
    std::fs::remove_dir(root.path().join("cache")).unwrap();
    let output = Command::new(BINARY)
        .arg("--config-dir")
        .arg(&etc)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_and_stops_on_sigterm() {
    let root = tempfile::Builder::new()
        .prefix("se-test-")
        .tempdir()
        .unwrap();
    let socket = root.path().join("run/dl.sock");
    let etc = config_dir(root.path(), &socket);
    let mut child = Command::new(BINARY)
        .arg("--config-dir")
        .arg(&etc)
        .env_remove("SINGULARITY_CONFIG_DIR")
        .env_remove("NOTIFY_SOCKET")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let http = reqwest::Client::builder()
        .unix_socket(socket.clone())
        .build()
        .unwrap();
    let started = Instant::now();
    let health = loop {
        if let Ok(response) = http.get("http://localhost/healthz").send().await {
            break response;
        }
        if started.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the daemon never answered: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(http::answer(health).await, (200, "ok".to_owned()));

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(!socket.exists(), "socket removed");
}
