//! A hung and a slow S3 bucket: an endpoint that accepts and never answers, or trickles its
//! answer at 1 KB/s, for one bucket while another bucket is served normally. Every S3 call on
//! the stuck bucket ends at its deadline, its files stay, and the other bucket's uploads carry
//! on meanwhile.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use singularity_test_support::{Fault, FaultyS3};

use crate::support::{Env, bucket, data, files_in, server_with_bucket, wait_until};

/// `s3RequestTimeoutMillis`; a PUT of a small file gets one second more.
const TIMEOUT_MS: u64 = 1000;

async fn a_stuck_bucket_holds_up_no_other(fault: Fault) {
    let (server, ok_bucket) = server_with_bucket();
    let stuck_bucket = bucket();
    server.create_bucket(&stuck_bucket);
    let faulty = FaultyS3::start(fault, Some(&stuck_bucket), Some(server.addr()));
    let env = Env::new(server.s3(), "");
    env.write_config_for(
        &faulty.endpoint(),
        &format!("  s3RequestTimeoutMillis: {TIMEOUT_MS}\n"),
    );
    let stuck_dir = env.root.path().join("stuck");
    let ok_dir = env.root.path().join("ok");
    std::fs::create_dir_all(&stuck_dir).unwrap();
    std::fs::create_dir_all(&ok_dir).unwrap();
    for i in 0..3 {
        Env::write_file(&stuck_dir, &format!("s{i}.log"), &data(10_000, i), None);
    }
    let metadata = |dir: &std::path::Path, bucket: &str, name: &str| {
        let mut meta = Env::metadata(dir, "*.log", bucket, "h/%filename");
        meta["uploadImmediately"] = true.into();
        meta["checkIfOpen"] = false.into();
        env.write_metadata(&format!("{name}.s3.json"), &meta);
    };
    metadata(&stuck_dir, &stuck_bucket, "stuck");
    let running = env.start();
    wait_until(
        "the stuck bucket's calls under way",
        Duration::from_secs(10),
        || faulty.stats().faulted.load(Ordering::Relaxed) >= 1,
    )
    .await;

    // While the stuck bucket's calls hang, the other bucket's files go through.
    let mut expected = Vec::new();
    let started = Instant::now();
    for i in 0..10 {
        let content = data(5_000 + i * 100, 100 + i as u64);
        Env::write_file(&ok_dir, &format!("o{i}.log"), &content, None);
        expected.push((format!("h/o{i}.log"), content));
    }
    metadata(&ok_dir, &ok_bucket, "ok");
    wait_until(
        "the other bucket's uploads",
        Duration::from_secs(10),
        || files_in(&ok_dir).is_empty(),
    )
    .await;
    let other_bucket_took = started.elapsed();
    // Let several calls on the stuck bucket reach their deadline.
    tokio::time::sleep(Duration::from_millis(3 * (TIMEOUT_MS + 1000))).await;
    let stats = faulty.stats();
    let faulted = stats.faulted.load(Ordering::Relaxed);
    let longest = stats.longest_wait_ms.load(Ordering::Relaxed);
    running.stop().await;

    assert!(faulted >= 2, "{faulted} calls on the stuck bucket");
    // A small PUT's deadline is 2 s: no call waited much longer.
    assert!(
        (1000..3000).contains(&longest),
        "a call on the stuck bucket was given up after {longest} ms"
    );
    assert!(
        other_bucket_took < Duration::from_secs(5),
        "the other bucket took {other_bucket_took:?}"
    );
    assert_eq!(
        files_in(&stuck_dir).len(),
        3,
        "nothing of the stuck bucket deleted"
    );
    for (key, content) in &expected {
        assert_eq!(&server.s5cmd_cat(&ok_bucket, key), content, "{key}");
    }
    assert!(server.s5cmd_ls(&stuck_bucket, "").is_empty());
    // Every connection to the stuck bucket was closed by the uploader.
    wait_until(
        "the faulted connections closed",
        Duration::from_secs(5),
        || stats.open.load(Ordering::Relaxed) == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_never_answers_times_out_at_the_deadline_and_holds_up_no_other() {
    a_stuck_bucket_holds_up_no_other(Fault::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_answering_at_1_kb_per_second_times_out_and_holds_up_no_other() {
    a_stuck_bucket_holds_up_no_other(Fault::Trickle {
        bytes_per_sec: 1024,
    })
    .await;
}
