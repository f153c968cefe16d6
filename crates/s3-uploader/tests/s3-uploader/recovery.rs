//! Crashes and outages: SIGKILL of the uploader binary in the middle of a multipart upload,
//! and the S3 server stopped for a while.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use singularity_test_support::S3Endpoint;

use crate::support::{
    self, Env, Proxy, ServerProcess, bucket, data, files_in, parts_recorded, server_with_bucket,
    wait_until_blocking,
};

const WAIT: Duration = Duration::from_secs(90);

fn history(ledger: &std::path::Path, path: &std::path::Path) -> Vec<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(support::ledger_history(ledger, path))
}

#[test]
fn sigkill_in_the_middle_of_a_multipart_upload_then_restart_completes_it_once() {
    let (server, bucket) = server_with_bucket();
    // About 1 s per 5 MiB part, one part at a time.
    let proxy = Proxy::start(server.addr(), 5 * 1024 * 1024);
    let env = Env::new(server.s3(), "");
    env.write_config_for(
        &proxy.endpoint(),
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n  uploadPartConcurrency: 1\n  \
         s3RequestTimeoutMillis: 60000\n",
    );
    let size = 6 * 5 * 1024 * 1024 + 777;
    let content = data(size, 21);
    let path = Env::write_file(&env.logs_dir, "crash.log.gz", &content, None);
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "crash/%guid/%filename");
    meta["uploadImmediately"] = true.into();
    let meta_path = env.write_metadata("crash.s3.json", &meta);

    let mut child = env.spawn_binary("before-kill.log");
    wait_until_blocking("two parts acknowledged", WAIT, || {
        parts_recorded(&env.ledger, &path) >= 2
    });
    child.kill();
    let parts_before = parts_recorded(&env.ledger, &path);
    assert!(
        (2..7).contains(&parts_before),
        "{parts_before} parts before the kill"
    );
    assert!(
        path.exists(),
        "nothing is deleted before the object is complete"
    );

    let sent_before = proxy.bytes_up.load(Ordering::Relaxed);
    proxy.rate.store(0, Ordering::Relaxed);
    let mut child = env.spawn_binary("after-kill.log");
    wait_until_blocking("the upload completed after the restart", WAIT, || {
        !path.exists() && !meta_path.exists()
    });
    child.kill();
    let sent_after = proxy.bytes_up.load(Ordering::Relaxed) - sent_before;

    // One object (the %guid key was chosen once), byte-identical.
    let listed = server.s5cmd_ls(&bucket, "crash/");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size as usize, size);
    assert_eq!(server.s5cmd_cat(&bucket, &listed[0].key), content);
    // Acknowledged parts were not sent again.
    let resent_at_most = (size - parts_before * 5 * 1024 * 1024) as u64 + 5 * 1024 * 1024;
    assert!(
        sent_after <= resent_at_most + 256 * 1024,
        "sent {sent_after} bytes after the restart; at most {resent_at_most} were missing"
    );
    // The ledger has one row for the file, completed and deleted once.
    assert_eq!(history(&env.ledger, &path), ["deleted"]);
    let log = env.read_log("after-kill.log");
    assert!(log.contains("resuming a multipart upload"), "{log}");
    assert_eq!(log.matches("uploaded and deleted").count(), 1, "{log}");
}

#[test]
fn an_s3_outage_deletes_nothing_and_everything_drains_afterwards() {
    let data_root = tempfile::Builder::new()
        .prefix("se-test-s3-outage-")
        .tempdir()
        .unwrap();
    let port = support::free_port();
    let s3 = S3Endpoint {
        endpoint: format!("http://127.0.0.1:{port}"),
        access_key: "AKIATESTOUTAGE0001".to_owned(),
        secret_key: "outage-secret-key-0123456789abcdef".to_owned(),
        region: "us-east-1".to_owned(),
    };
    let bucket = bucket();
    std::fs::create_dir_all(data_root.path().join(&bucket)).unwrap();
    let server = ServerProcess::start(data_root.path(), port, &s3);
    let env = Env::new(
        &s3,
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n",
    );
    let mut child = env.spawn_binary("outage.log");

    // Before the outage: one file goes through.
    Env::write_file(&env.logs_dir, "before.gz", b"before", None);
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "o/%filename");
    meta["checkIfOpen"] = false.into();
    env.write_metadata("outage.s3.json", &meta);
    wait_until_blocking("the first file uploaded", WAIT, || {
        !env.logs_dir.join("before.gz").exists()
    });

    server.stop();
    let mut expected = Vec::new();
    for i in 0..5 {
        let content = data(50_000 + i * 1000, i as u64);
        Env::write_file(&env.logs_dir, &format!("during-{i}.gz"), &content, None);
        expected.push((format!("during-{i}.gz"), content));
    }
    let big = data(11 * 1024 * 1024, 99);
    Env::write_file(&env.logs_dir, "during-big.gz", &big, None);
    expected.push(("during-big.gz".to_owned(), big));
    // Several passes and retries while the server is down: nothing may be deleted.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            files_in(&env.logs_dir).len(),
            6,
            "a file vanished during the outage"
        );
    }
    let log = env.read_log("outage.log");
    assert!(log.contains("upload failed; the file stays"), "{log}");

    let server = ServerProcess::start(data_root.path(), port, &s3);
    wait_until_blocking("everything drained after the outage", WAIT, || {
        files_in(&env.logs_dir).is_empty()
    });
    child.kill();
    for (name, content) in &expected {
        assert_eq!(
            &s3.s5cmd_cat(&bucket, &format!("o/{name}")),
            content,
            "{name}"
        );
    }
    assert_eq!(s3.s5cmd_cat(&bucket, "o/before.gz"), b"before");
    server.stop();
}

fn mtime_ms(path: &std::path::Path) -> i64 {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    i64::try_from(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A crash between "uploaded" and the deletion leaves an `uploaded` row: the next start
/// deletes the file only if S3 really holds the object (size and ETag); otherwise it uploads
/// the file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_row_is_confirmed_with_s3_before_its_file_is_deleted() {
    use md5::Digest as _;
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let confirmed = data(10_000, 1);
    let lost = data(20_000, 2);
    let confirmed_path = Env::write_file(&env.logs_dir, "confirmed.gz", &confirmed, None);
    let lost_path = Env::write_file(&env.logs_dir, "lost.gz", &lost, None);
    // S3 holds the first object, not the second.
    server.s5cmd_put(&bucket, "r/confirmed.gz", &confirmed);
    let ledger = singularity_s3_uploader::ledger::Ledger::open(&env.ledger)
        .await
        .unwrap();
    for (path, content, key) in [
        (&confirmed_path, &confirmed, "r/confirmed.gz"),
        (&lost_path, &lost, "r/lost.gz"),
    ] {
        let row = ledger
            .insert_pending(path, content.len() as u64, mtime_ms(path), &bucket, key, 1)
            .await
            .unwrap();
        let etag = hex::encode(md5::Md5::digest(content));
        ledger.mark_uploaded(row.id, &etag, 2).await.unwrap();
    }
    ledger.close().await;

    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "r/%filename");
    meta["checkIfOpen"] = false.into();
    env.write_metadata("r.s3.json", &meta);
    let running = env.start();
    support::wait_until("both files handled", Duration::from_secs(30), || {
        files_in(&env.logs_dir).is_empty()
    })
    .await;
    running.stop().await;
    assert_eq!(server.s5cmd_cat(&bucket, "r/confirmed.gz"), confirmed);
    // Not deleted on the strength of the ledger alone: uploaded again first.
    assert_eq!(server.s5cmd_cat(&bucket, "r/lost.gz"), lost);
    assert_eq!(
        support::ledger_history(&env.ledger, &confirmed_path).await,
        ["deleted"]
    );
    assert_eq!(
        support::ledger_history(&env.ledger, &lost_path).await,
        ["deleted"]
    );
}
