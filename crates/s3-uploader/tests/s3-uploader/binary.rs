//! The real binary as a subprocess: `--check-config`, logging of malformed metadata,
//! SIGTERM with an upload in flight.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use singularity_test_support::S3Server;

use crate::support::{self, Env, Proxy, data, files_in, server_with_bucket, wait_until_blocking};

const WAIT: Duration = Duration::from_secs(60);

fn check_config(env: &Env) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_singularity-s3-uploader"))
        .arg("--config-dir")
        .arg(env.root.path().join("etc"))
        .arg("--config")
        .arg(&env.config_file)
        .arg("--check-config")
        .output()
        .unwrap()
}

#[test]
fn check_config_exits_0_for_a_valid_config_and_78_listing_problems() {
    let server = S3Server::start();
    let env = Env::new(server.s3(), "  metricsHttpPort: 7071\n");
    let out = check_config(&env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("s3uploader:"), "{stdout}");
    assert!(stdout.contains("metricsHttpPort: 7071"), "{stdout}");
    // Credentials are redacted.
    assert!(!stdout.contains(&server.s3().secret_key), "{stdout}");

    env.write_config("  uploadPartSize: 1000\n  uploadPartConcurrency: 0\n");
    let out = check_config(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("uploadPartSize"), "{stderr}");
    assert!(stderr.contains("uploadPartConcurrency"), "{stderr}");

    std::fs::remove_dir(&env.metadata_dir).unwrap();
    env.write_config("");
    let out = check_config(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("s3UploaderMetadataDirectory"), "{stderr}");

    // Without --check-config an invalid configuration exits 78 as well.
    let out = Command::new(env!("CARGO_BIN_EXE_singularity-s3-uploader"))
        .arg("--config-dir")
        .arg(env.root.path().join("etc"))
        .arg("--config")
        .arg(&env.config_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn malformed_metadata_is_logged_once_while_a_valid_neighbour_uploads() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    env.write_metadata_in_place("bad-json.s3.json", "{\"directory\": \"/x\", ");
    env.write_metadata_in_place(
        "no-bucket.s3.json",
        r#"{"directory":"/x","fileGlob":"*","s3KeyFormat":"k"}"#,
    );
    env.write_metadata_in_place(
        "gcs.s3.json",
        r#"{"directory":"/x","fileGlob":"*","s3Bucket":"b","s3KeyFormat":"k","uploaderType":"GCS"}"#,
    );
    Env::write_file(&env.logs_dir, "a.gz", b"valid", None);
    let mut valid = Env::metadata(&env.logs_dir, "*.gz", &bucket, "v/%filename");
    valid["uploadImmediately"] = true.into();
    let valid_path = env.write_metadata("valid.s3.json", &valid);

    let mut child = env.spawn_binary("uploader.log");
    wait_until_blocking("the valid neighbour uploaded", WAIT, || {
        !valid_path.exists() && files_in(&env.logs_dir).is_empty()
    });
    // More metadata events and rescans: the malformed files are not read again.
    for i in 0..5 {
        let mut other = Env::metadata(&env.logs_dir, "*.none", &bucket, "n/%filename");
        other["finishedAfterMillisWithoutNewFile"] = (-1).into();
        env.write_metadata(&format!("other-{i}.s3.json"), &other);
        std::thread::sleep(Duration::from_millis(300));
    }
    child.sigterm();
    let status = child.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(server.s5cmd_cat(&bucket, "v/a.gz"), b"valid");
    let log = env.read_log("uploader.log");
    for (file, reason) in [
        ("bad-json.s3.json", "EOF while parsing"),
        ("no-bucket.s3.json", "missing field `s3Bucket`"),
        ("gcs.s3.json", "GCS is not supported"),
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(file)).collect();
        assert_eq!(lines.len(), 1, "{file}: {lines:#?}\n{log}");
        assert!(lines[0].contains(reason), "{}", lines[0]);
    }
    // The malformed files are left alone.
    assert!(env.metadata_dir.join("bad-json.s3.json").exists());
}

#[test]
fn sigterm_lets_the_part_in_flight_finish_then_exits_0_and_the_next_start_resumes() {
    let (server, bucket) = server_with_bucket();
    // About 2.5 s per 5 MiB part through the proxy.
    let proxy = Proxy::start(server.addr(), 2 * 1024 * 1024);
    let env = Env::new(server.s3(), "");
    env.write_config_for(
        &proxy.endpoint(),
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n  uploadPartConcurrency: 1\n  \
         shutdownGraceMillis: 20000\n  s3RequestTimeoutMillis: 60000\n",
    );
    let content = data(16 * 1024 * 1024, 11);
    let path = Env::write_file(&env.logs_dir, "graceful.gz", &content, None);
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "g/%filename");
    meta["uploadImmediately"] = true.into();
    env.write_metadata("g.s3.json", &meta);

    let mut child = env.spawn_binary("first.log");
    // Wait for the first part to be under way.
    wait_until_blocking("the first part under way", WAIT, || {
        proxy.bytes_up.load(std::sync::atomic::Ordering::Relaxed) > 1024 * 1024
    });
    child.sigterm();
    let status = child.wait_exit(Duration::from_secs(25));
    assert_eq!(status.code(), Some(0), "{}", env.read_log("first.log"));
    let log = env.read_log("first.log");
    assert!(log.contains("stopped between parts"), "{log}");
    // One part made it; the file is untouched.
    assert!(path.exists());
    assert_eq!(support::parts_recorded(&env.ledger, &path), 1);

    proxy.rate.store(0, std::sync::atomic::Ordering::Relaxed);
    let mut child = env.spawn_binary("second.log");
    wait_until_blocking("the upload resumed and completed", WAIT, || !path.exists());
    child.sigterm();
    assert_eq!(child.wait_exit(Duration::from_secs(20)).code(), Some(0));
    assert_eq!(server.s5cmd_cat(&bucket, "g/graceful.gz"), content);
    let log = env.read_log("second.log");
    assert!(log.contains("resuming a multipart upload"), "{log}");
}
