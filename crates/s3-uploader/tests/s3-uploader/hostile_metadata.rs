//! Hostile upload metadata and log directories, one test per case: every bad metadata file
//! is rejected with a message naming the field (never read when it is no regular file or too
//! large), and odd entries in a log directory (symlinks, FIFOs, devices, symlinked
//! subdirectories) are neither uploaded nor deleted while the other files go through.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use singularity_s3_uploader::metadata::{self, MAX_METADATA_BYTES, ReadOutcome};
use test_case::test_case;

use crate::support::{Env, data, files_in, server_with_bucket, wait_until};

fn valid() -> Value {
    Env::metadata(Path::new("/var/log/task"), "*.log", "bucket", "k/%filename")
}

fn with(field: &str, value: Value) -> Vec<u8> {
    let mut meta = valid();
    meta[field] = value;
    serde_json::to_vec(&meta).unwrap()
}

fn without(field: &str) -> Vec<u8> {
    let mut meta = valid();
    meta.as_object_mut().unwrap().remove(field);
    serde_json::to_vec(&meta).unwrap()
}

fn read(make: impl FnOnce(&Path)) -> ReadOutcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.s3.json");
    make(&path);
    let started = Instant::now();
    let outcome = metadata::read(&path).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reading blocked"
    );
    outcome
}

fn rejected(outcome: ReadOutcome) -> String {
    match outcome {
        ReadOutcome::Rejected(problem) => problem.to_string(),
        other => panic!("accepted: {other:?}"),
    }
}

#[test_case(b"not json".to_vec(), "expected" ; "not json")]
#[test_case(b"{\"directory\": \"\xff\xfe\"}".to_vec(), "invalid unicode" ; "invalid utf8")]
#[test_case(b"[1, 2]".to_vec(), "invalid type: integer `1`, expected path string" ; "an array")]
#[test_case(without("directory"), "missing field `directory`" ; "no directory")]
#[test_case(with("directory", json!("relative/logs")), "not an absolute path" ; "relative directory")]
#[test_case(with("directory", json!("")), "directory is empty" ; "empty directory")]
#[test_case(with("directory", json!("/var/log/a\u{0}b")), "NUL" ; "nul in the directory")]
#[test_case(with("fileGlob", json!("sub/*.log")), "fileGlob \"sub/*.log\" contains '/'" ; "glob with a slash")]
#[test_case(with("fileGlob", json!("/etc/*")), "fileGlob \"/etc/*\" contains '/'" ; "absolute glob")]
#[test_case(with("fileGlob", json!("**/*.log")), "contains '/'" ; "recursive glob")]
#[test_case(with("fileGlob", json!("../*.log")), "contains '/'" ; "glob climbing out")]
#[test_case(with("fileGlob", json!("[a-")), "fileGlob \"[a-\" is not a valid glob" ; "unclosed class")]
#[test_case(with("fileGlob", json!("a{b,c")), "not a valid glob" ; "unclosed alternates")]
#[test_case(with("onFinishGlob", json!("/tmp/*")), "onFinishGlob \"/tmp/*\" contains '/'" ; "on finish glob with a slash")]
#[test_case(with("fileGlob", json!("")), "fileGlob is empty" ; "empty glob")]
#[test_case(with("s3Bucket", json!("")), "s3Bucket is empty" ; "empty bucket")]
#[test_case(with("s3KeyFormat", json!("")), "s3KeyFormat is empty" ; "empty key format")]
#[test_case(with("finished", json!("yes")), "invalid type: string \"yes\", expected a boolean" ; "a string for a boolean")]
#[test_case(with("directory", json!(5)), "invalid type: integer" ; "a number for the directory")]
#[test_case(with("uploaderType", json!("GCS")), "uploaderType GCS is not supported" ; "a gcs uploader")]
#[test_case(with("uploaderType", json!("FTP")), "unknown variant `FTP`" ; "an unknown uploader type")]
#[test_case(b"{\"directory\":\"/a\",\"directory\":\"/b\",\"fileGlob\":\"*\",\"s3Bucket\":\"b\",\"s3KeyFormat\":\"k\"}".to_vec(), "duplicate field `directory`" ; "duplicate keys")]
#[test_case(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(), "invalid type: sequence, expected path string" ; "deeply nested")]
fn a_bad_metadata_file_is_rejected(bytes: Vec<u8>, fragment: &str) {
    let message = rejected(read(|path| std::fs::write(path, &bytes).unwrap()));
    assert!(
        message.contains(fragment),
        "{message:?} does not say {fragment:?}"
    );
}

#[test]
fn a_10_mb_metadata_file_is_rejected_unread() {
    let message = rejected(read(|path| {
        let mut bytes = serde_json::to_vec(&valid()).unwrap();
        bytes.resize(10 << 20, b' ');
        std::fs::write(path, bytes).unwrap();
    }));
    assert_eq!(
        message,
        format!("10485760 bytes, more than the {MAX_METADATA_BYTES} a metadata file may have")
    );
}

#[test]
fn a_fifo_named_like_metadata_is_rejected_without_blocking() {
    let message = rejected(read(|path| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }));
    assert_eq!(message, "not a regular file");
}

#[test]
fn a_symlink_to_a_device_named_like_metadata_is_rejected() {
    let message = rejected(read(|path| {
        std::os::unix::fs::symlink("/dev/zero", path).unwrap();
    }));
    assert_eq!(message, "not a regular file");
}

#[test]
fn a_directory_named_like_metadata_is_rejected() {
    let message = rejected(read(|path| std::fs::create_dir(path).unwrap()));
    assert_eq!(message, "not a regular file");
}

#[test]
fn unknown_fields_and_deep_nesting_in_them_are_ignored() {
    let outcome = read(|path| {
        let text = String::from_utf8(with("extra", json!("DEEP"))).unwrap();
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        std::fs::write(path, text.replace("\"DEEP\"", &deep)).unwrap();
    });
    assert!(matches!(outcome, ReadOutcome::Spec(_)), "{outcome:?}");
}

#[test]
fn a_whitespace_only_file_is_not_there_yet() {
    let outcome = read(|path| std::fs::write(path, b"  \n\t ").unwrap());
    assert!(matches!(outcome, ReadOutcome::Absent), "{outcome:?}");
}

/// A log directory holding a symlink to a file outside, a FIFO, a character device and a
/// subdirectory symlinked to elsewhere, all matching the glob: none is read, uploaded or
/// deleted; the real file goes through, and the uploader is not wedged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_entries_in_a_log_directory_are_left_alone() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let outside = env.root.path().join("outside");
    std::fs::create_dir_all(outside.join("deep")).unwrap();
    let secret = Env::write_file(&outside, "secret.log", b"not for upload", None);
    Env::write_file(
        &outside.join("deep"),
        "inner.log",
        b"not for upload either",
        None,
    );
    let logs = &env.logs_dir;
    std::os::unix::fs::symlink(&secret, logs.join("link.log")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        logs.join("pipe.log"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        logs.join("null.log"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("deep"), logs.join("sub")).unwrap();
    let content = data(3000, 3);
    Env::write_file(logs, "real.log", &content, None);
    let mut meta = Env::metadata(logs, "*.log", &bucket, "odd/%filename");
    meta["checkSubdirectories"] = true.into();
    meta["checkIfOpen"] = false.into();
    meta["uploadImmediately"] = true.into();
    env.write_metadata("odd.s3.json", &meta);
    let running = env.start();
    wait_until("the real file uploaded", Duration::from_secs(20), || {
        !logs.join("real.log").exists()
    })
    .await;
    // Later files still go through: nothing is stuck on the FIFO or the device.
    Env::write_file(logs, "later.txt", b"later", None);
    let meta_path = env.write_metadata("odd2.s3.json", &{
        let mut m = meta.clone();
        m["fileGlob"] = "*.txt".into();
        m
    });
    wait_until("a later file uploaded", Duration::from_secs(20), || {
        !logs.join("later.txt").exists() && !meta_path.exists()
    })
    .await;
    running.stop().await;
    let listed: Vec<String> = server
        .s5cmd_ls(&bucket, "odd/")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, ["odd/later.txt", "odd/real.log"]);
    assert_eq!(server.s5cmd_cat(&bucket, "odd/real.log"), content);
    assert_eq!(std::fs::read(&secret).unwrap(), b"not for upload");
    assert!(outside.join("deep/inner.log").exists());
    assert_eq!(files_in(logs), ["link.log", "null.log", "pipe.log", "sub"]);
}
