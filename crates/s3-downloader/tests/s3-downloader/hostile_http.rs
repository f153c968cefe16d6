//! Hostile input on the HTTP API: each case a test of its own against a daemon of its own.
//! Every refusal is a 4xx naming the field, before any S3 request; nothing is written to the
//! target or the cache; the daemon keeps serving (health, then a real download).
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_case::test_case;

use crate::support::http::{self, BUCKET, Daemon, md5_hex, request, tree};

/// A request for `k/app.jar` into `{T}` (the test's target), changed by `edit`.
fn body(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = request("k/app.jar", "app.jar", None, std::path::Path::new("{T}"));
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

fn artifact(field: &str, value: Value) -> Vec<u8> {
    body(|v| v["s3Artifact"][field] = value)
}

fn top(field: &str, value: Value) -> Vec<u8> {
    body(|v| v[field] = value)
}

fn raw(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn two_documents() -> Vec<u8> {
    let mut bytes = body(|_| {});
    bytes.extend_from_slice(b" {}");
    bytes
}

/// A valid request padded with an unknown field of `bytes` bytes.
fn huge(bytes: usize) -> Vec<u8> {
    body(|v| v["padding"] = json!("x".repeat(bytes)))
}

async fn send(daemon: &Daemon, content_type: Option<&str>, bytes: Vec<u8>) -> (u16, String) {
    let target = daemon.target("task");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let bytes = if text.contains("{T}") {
        text.replace("{T}", &target.to_string_lossy()).into_bytes()
    } else {
        bytes
    };
    let mut post = daemon
        .http
        .post(format!("{}/download", daemon.url))
        .body(bytes);
    if let Some(content_type) = content_type {
        post = post.header("content-type", content_type);
    }
    http::answer(post.send().await.unwrap()).await
}

/// After a hostile request: nothing written, no S3 request, and a real download still works.
async fn still_serving(daemon: &Daemon) {
    assert_eq!(daemon.s3.get_requests(), 0, "an S3 request was made");
    let target = daemon.target("task");
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
    assert_eq!(daemon.get("/healthz").await, (200, "ok".to_owned()));
    let md5 = daemon.put("ok/app.jar", b"fine");
    let good = request("ok/app.jar", "app.jar", Some(&md5), &target);
    assert_eq!(daemon.post(&good).await, (200, String::new()));
    assert_eq!(std::fs::read(target.join("app.jar")).unwrap(), b"fine");
}

#[test_case(raw(""), 400, "EOF while parsing" ; "empty body")]
#[test_case(raw("hello"), 400, "expected value" ; "not json")]
#[test_case(raw("[1,2]"), 400, "[0]: invalid type: integer" ; "an array")]
#[test_case(raw("null"), 400, "invalid type: null" ; "json null")]
#[test_case(raw("{\"targetDirectory\": \"{T}\""), 400, "EOF while parsing" ; "truncated object")]
#[test_case(two_documents(), 400, "trailing characters" ; "two documents")]
#[test_case(b"{\"targetDirectory\": \"\xff\xfe\"}".to_vec(), 400, "invalid unicode" ; "invalid utf8")]
#[test_case(raw(&"[".repeat(100_000)), 400, "[0]: invalid type: sequence" ; "deeply nested json")]
#[test_case(body(|v| v["timeoutMillis"] = json!([[[[[[[[1]]]]]]]])), 400, "timeoutMillis: invalid type: sequence" ; "nested json in a field")]
#[test_case(huge(3 << 20), 413, "length limit exceeded" ; "body over the size limit")]
#[test_case(body(|v| { v.as_object_mut().unwrap().remove("targetDirectory"); }), 400, "missing field `targetDirectory`" ; "missing target")]
#[test_case(body(|v| { v["s3Artifact"].as_object_mut().unwrap().remove("s3Bucket"); }), 400, "missing field `s3Artifact.s3Bucket`" ; "missing bucket")]
#[test_case(top("targetDirectory", json!("relative/dir")), 403, "relative" ; "relative target")]
#[test_case(top("targetDirectory", json!("/etc")), 403, "not below an allowed directory" ; "target outside the allowed roots")]
#[test_case(top("targetDirectory", json!("{T}/../../../../etc")), 403, "not below an allowed directory" ; "target escaping with dotdot")]
#[test_case(top("targetDirectory", json!("{T}\u{0}x")), 403, "NUL byte" ; "nul in the target")]
#[test_case(top("targetDirectory", json!(12)), 400, "targetDirectory: invalid type: integer" ; "target of the wrong type")]
#[test_case(artifact("filename", json!("a\u{0}b.jar")), 400, "s3Artifact.filename" ; "nul in the file name")]
#[test_case(artifact("filename", json!("../../x.jar")), 400, "s3Artifact.filename" ; "dotdot in the file name")]
#[test_case(artifact("filename", json!("..")), 400, "s3Artifact.filename" ; "dotdot as the file name")]
#[test_case(artifact("filename", json!("/etc/passwd")), 400, "s3Artifact.filename" ; "absolute file name")]
#[test_case(artifact("filename", json!("")), 400, "s3Artifact.filename" ; "empty file name")]
#[test_case(artifact("filename", json!(".singularity-s3-downloader-index.db")), 400, "s3Artifact.filename" ; "the cache index as file name")]
#[test_case(artifact("md5sum", json!("zz0cc175b9c0f1b6a831c399e26977")), 400, "s3Artifact.md5sum" ; "non hex md5")]
#[test_case(artifact("md5sum", json!("0cc175b9c0f1b6a831c399e2697726")), 400, "s3Artifact.md5sum" ; "short md5")]
#[test_case(artifact("md5sum", json!("0cc175b9c0f1b6a831c399e26977266100")), 400, "s3Artifact.md5sum" ; "long md5")]
#[test_case(artifact("md5sum", json!(5)), 400, "s3Artifact.md5sum: invalid type" ; "md5 of the wrong type")]
#[test_case(artifact("filesize", json!(-1)), 400, "s3Artifact.filesize" ; "negative filesize")]
#[test_case(artifact("filesize", json!(1e30)), 400, "s3Artifact.filesize: invalid type" ; "filesize past i64")]
#[test_case(raw(r#"{"targetDirectory":"{T}","s3Artifact":{"filename":"a","s3Bucket":"b","s3ObjectKey":"k","filesize":99999999999999999999}}"#), 400, "s3Artifact.filesize" ; "filesize integer overflow")]
#[test_case(top("timeoutMillis", json!(-5)), 400, "timeoutMillis" ; "negative timeout")]
#[test_case(raw(r#"{"timeoutMillis":18446744073709551616,"targetDirectory":"{T}","s3Artifact":{"filename":"a","s3Bucket":"b","s3ObjectKey":"k"}}"#), 400, "timeoutMillis" ; "timeout overflowing u64")]
#[test_case(top("timeoutMillis", json!("soon")), 400, "timeoutMillis: invalid type" ; "timeout of the wrong type")]
#[test_case(artifact("s3Bucket", json!("")), 400, "s3Artifact.s3Bucket" ; "empty bucket")]
#[test_case(artifact("s3ObjectKey", json!("")), 400, "s3Artifact.s3ObjectKey" ; "empty key")]
#[test_case(raw(r#"{"targetDirectory":"{T}","targetDirectory":"/etc","s3Artifact":{"filename":"a","s3Bucket":"b","s3ObjectKey":"k"}}"#), 400, "duplicate field `targetDirectory`" ; "duplicate keys")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_refused(bytes: Vec<u8>, status: u16, fragment: &str) {
    let daemon = Daemon::start().await;
    let (got, text) = send(&daemon, Some("application/json"), bytes).await;
    assert_eq!(got, status, "{text}");
    assert!(
        text.contains(fragment),
        "{text:?} does not say {fragment:?}"
    );
    assert!(!text.contains('\n'), "one line: {text:?}");
    still_serving(&daemon).await;
    daemon.stop().await;
}

/// Accepted as the Java service accepted them: unknown fields, any or no Content-Type,
/// `timeoutMillis` 0 (no limit) or huge, control characters in the key.
#[test_case(Some("text/plain"), |_| {} ; "a text content type")]
#[test_case(None, |_| {} ; "no content type")]
#[test_case(Some("application/x-www-form-urlencoded"), |_| {} ; "a form content type")]
#[test_case(Some("application/json"), |v| v["unknown"] = json!({"a": [1, 2, {"b": null}]}) ; "unknown fields")]
#[test_case(Some("application/json"), |v| v["timeoutMillis"] = json!(0) ; "timeout 0 means no limit")]
#[test_case(Some("application/json"), |v| v["deep"] = json!(DEEP) ; "deeply nested unknown field")]
#[test_case(Some("application/json"), |v| v["timeoutMillis"] = json!(u64::MAX) ; "the largest timeout")]
#[test_case(Some("application/json"), |v| v["s3Artifact"]["s3ObjectKey"] = json!("odd/\u{7}\t key") ; "control characters in the key")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_accepted(content_type: Option<&str>, edit: fn(&mut Value)) {
    let daemon = Daemon::start().await;
    let target = daemon.target("task");
    let mut value = request("k/app.jar", "app.jar", None, &target);
    edit(&mut value);
    let key = value["s3Artifact"]["s3ObjectKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let md5 = daemon.put(&key, b"content");
    value["s3Artifact"]["md5sum"] = json!(md5);
    let text = serde_json::to_string(&value).unwrap();
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let text = text.replace(&format!("\"{DEEP}\""), &nested);
    let (status, text) = send(&daemon, content_type, text.into_bytes()).await;
    assert_eq!((status, text.as_str()), (200, ""));
    assert_eq!(std::fs::read(target.join("app.jar")).unwrap(), b"content");
    daemon.stop().await;
}

/// Stands for 100,000 nested arrays, put into the body as text (a `Value` that deep could
/// not even be dropped without overflowing the stack).
const DEEP: &str = "<deeply nested>";

/// A declared size far past the object's: refused after the first part, nothing cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_filesize_fails_without_caching_anything() {
    let daemon = Daemon::start().await;
    let target = daemon.target("task");
    let md5 = daemon.put("k/app.jar", b"small");
    let mut value = request("k/app.jar", "app.jar", Some(&md5), &target);
    value["s3Artifact"]["filesize"] = json!(i64::MAX);
    let (status, text) = daemon.post(&value).await;
    assert_eq!(status, 500, "{text}");
    assert!(text.contains(&i64::MAX.to_string()), "{text}");
    assert!(daemon.cached().is_empty(), "{:?}", daemon.cached());
    assert!(tree(&target).is_empty());
    daemon.stop().await;
}

/// Slow headers from 200 connections (slowloris) hold up nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_from_200_connections_hold_up_no_other_request() {
    let daemon = Daemon::start().await;
    let addr = daemon.url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .write_all(b"POST /download HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        slow.push(stream);
    }
    for stream in &mut slow {
        stream.write_all(b"a").unwrap();
    }
    let started = Instant::now();
    let md5 = daemon.put("k/app.jar", b"served");
    let target = daemon.target("task");
    let good = request("k/app.jar", "app.jar", Some(&md5), &target);
    assert_eq!(daemon.post(&good).await, (200, String::new()));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(slow);
    daemon.stop().await;
}

/// 1,000 connections at once, each with a bad request: every one answered 400, then a real
/// download works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_are_all_answered() {
    let daemon = Daemon::start().await;
    let addr = daemon.url.trim_start_matches("http://").to_owned();
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut streams = Vec::new();
                for _ in 0..100 {
                    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
                    stream
                        .write_all(
                            b"POST /download HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                        )
                        .unwrap();
                    streams.push(stream);
                }
                streams
                    .into_iter()
                    .map(|mut stream| {
                        stream
                            .set_read_timeout(Some(Duration::from_secs(30)))
                            .unwrap();
                        let mut answer = String::new();
                        stream.read_to_string(&mut answer).unwrap();
                        answer
                    })
                    .filter(|answer| answer.starts_with("HTTP/1.1 400"))
                    .count()
            })
        })
        .collect();
    let answered: usize =
        tokio::task::spawn_blocking(move || threads.into_iter().map(|t| t.join().unwrap()).sum())
            .await
            .unwrap();
    assert_eq!(answered, 1000);
    still_serving(&daemon).await;
    daemon.stop().await;
}

#[test]
fn the_md5_helper_matches_a_known_digest() {
    assert_eq!(md5_hex(b"a"), "0cc175b9c0f1b6a831c399e269772661");
    assert_eq!(BUCKET, "se-artifacts");
}
