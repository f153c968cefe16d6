//! Downloads through the HTTP API against a real S3-protocol server: cache miss and hit,
//! tarballs, verification failures, shared downloads, hold timeouts and metrics.

use std::time::Duration;

use crate::support::http::{self, Daemon, Options, Tarball, md5_hex, mode, request, tree};
use crate::support::random_bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_miss_downloads_and_a_second_request_is_a_hit() {
    let daemon = Daemon::start().await;
    let data = random_bytes(3 << 20, 1);
    let md5 = daemon.put("app/1.0/app.jar", &data);

    let first = daemon.target("task-1");
    let (status, body) = daemon
        .post(&request("app/1.0/app.jar", "app.jar", Some(&md5), &first))
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(std::fs::read(first.join("app.jar")).unwrap(), data);
    assert_eq!(mode(&first.join("app.jar")), 0o644);
    assert_eq!(daemon.cached(), [format!("{md5}-app.jar")]);
    let served = daemon.s3.bytes_served();
    assert_eq!(served, data.len() as u64);

    let second = daemon.target("task-2");
    let (status, body) = daemon
        .post(&request("app/1.0/app.jar", "app.jar", Some(&md5), &second))
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(std::fs::read(second.join("app.jar")).unwrap(), data);
    assert_eq!(
        daemon.s3.bytes_served(),
        served,
        "the hit read nothing from S3"
    );

    assert_eq!(
        daemon.metric("s3_downloader_cache_hits_total").await,
        Some(1.0)
    );
    assert_eq!(
        daemon.metric("s3_downloader_cache_misses_total").await,
        Some(1.0)
    );
    assert_eq!(
        daemon.metric("s3_downloader_s3_bytes_total").await,
        Some(data.len() as f64)
    );
    // The miss wrote the file into its existing target while downloading; the hit copied.
    assert_eq!(
        daemon
            .metric("s3_downloader_placements_total{method=\"written_ahead\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        daemon
            .metric("s3_downloader_placements_total{method=\"copied\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(tree(&first), ["app.jar"], "no temporary file is left");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_directory_that_does_not_exist_yet_is_created_and_copied_into() {
    let daemon = Daemon::start().await;
    let data = random_bytes(1 << 20, 7);
    let md5 = daemon.put("app/new.jar", &data);
    let target = daemon.mesos().join("task-new").join("nested");

    let (status, body) = daemon
        .post(&request("app/new.jar", "new.jar", Some(&md5), &target))
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(std::fs::read(target.join("new.jar")).unwrap(), data);
    assert_eq!(mode(&target.join("new.jar")), 0o644);
    assert_eq!(
        daemon
            .metric("s3_downloader_placements_total{method=\"copied\"}")
            .await,
        Some(1.0)
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tarball_is_extracted_into_the_target() {
    let daemon = Daemon::start().await;
    let archive = Tarball::new()
        .dir("bin/")
        .file("bin/run.sh", b"#!/bin/sh\necho hi\n")
        .file("conf/app.properties", b"a=b\n")
        .gzip();
    let md5 = daemon.put("app/app.tar.gz", &archive);
    let target = daemon.target("task");

    let (status, body) = daemon
        .post(&request(
            "app/app.tar.gz",
            "app.tar.gz",
            Some(&md5),
            &target,
        ))
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(
        tree(&target),
        ["bin", "bin/run.sh", "conf", "conf/app.properties"]
    );
    assert_eq!(
        std::fs::read(target.join("bin/run.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_md5_mismatch_is_a_500_and_leaves_nothing() {
    let daemon = Daemon::start().await;
    daemon.put("app/app.jar", b"the real content");
    let wrong = md5_hex(b"something else");
    let target = daemon.target("task");

    let (status, body) = daemon
        .post(&request("app/app.jar", "app.jar", Some(&wrong), &target))
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("md5"), "{body}");
    assert!(body.contains(&wrong), "{body}");
    assert!(daemon.cached().is_empty(), "{:?}", daemon.cached());
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_object_is_a_500_naming_bucket_and_key() {
    let daemon = Daemon::start().await;
    let target = daemon.target("task");

    let (status, body) = daemon
        .post(&request("no/such/key.jar", "key.jar", None, &target))
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains(http::BUCKET), "{body}");
    assert!(body.contains("no/such/key.jar"), "{body}");
    assert!(daemon.cached().is_empty());
    assert!(tree(&target).is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zero_length_object_is_placed() {
    let daemon = Daemon::start().await;
    let md5 = daemon.put("empty/marker", b"");
    let target = daemon.target("task");
    let mut body = request("empty/marker", "marker", Some(&md5), &target);
    body["s3Artifact"]["filesize"] = 0.into();

    let (status, text) = daemon.post(&body).await;
    assert_eq!((status, text.as_str()), (200, ""));
    assert_eq!(std::fs::metadata(target.join("marker")).unwrap().len(), 0);
    assert_eq!(daemon.cached(), [format!("{md5}-marker")]);
    daemon.stop().await;
}

/// Sends every body at once and checks that each is answered 200 with an empty body.
async fn post_all(daemon: &Daemon, bodies: Vec<serde_json::Value>) {
    let mut requests = tokio::task::JoinSet::new();
    for body in bodies {
        let send = daemon
            .http
            .post(format!("{}/download", daemon.url))
            .json(&body)
            .send();
        requests.spawn(async move { http::answer(send.await.expect("POST")).await });
    }
    while let Some(answer) = requests.join_next().await {
        let (status, text) = answer.expect("request task");
        assert_eq!((status, text.as_str()), (200, ""));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_identical_requests_read_the_object_once() {
    let daemon = Daemon::start().await;
    let data = random_bytes(24 << 20, 2);
    let md5 = daemon.put("big/app.jar", &data);
    let target = daemon.target("task");
    let body = request("big/app.jar", "app.jar", Some(&md5), &target);
    let gets_before = daemon.s3.get_requests();

    post_all(&daemon, vec![body; 16]).await;
    assert_eq!(std::fs::read(target.join("app.jar")).unwrap(), data);
    assert_eq!(
        daemon.s3.bytes_served(),
        data.len() as u64,
        "one read of the object"
    );
    let parts = data.len().div_ceil(1 << 20) as u64;
    let gets = daemon.s3.get_requests() - gets_before;
    assert!(gets <= parts + 1, "{gets} GETs for {parts} parts");
    let (_, metrics) = daemon.get("/metrics").await;
    for line in [
        format!("s3_downloader_s3_bytes_total {}", data.len()),
        "s3_downloader_requests_total{code=\"200\"} 16".to_owned(),
        "s3_downloader_cache_misses_total 16".to_owned(),
        "s3_downloader_download_duration_seconds_count 1".to_owned(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_starting_together_share_the_download() {
    let daemon = Daemon::start().await;
    let archive = Tarball::new()
        .file("lib/app.jar", &random_bytes(3 << 20, 5))
        .gzip();
    let md5 = daemon.put("app/app.tar.gz", &archive);
    let targets: Vec<_> = (0..6)
        .map(|i| daemon.target(&format!("task-{i}")))
        .collect();
    let bodies = targets
        .iter()
        .map(|target| request("app/app.tar.gz", "app.tar.gz", Some(&md5), target))
        .collect();

    post_all(&daemon, bodies).await;
    for target in &targets {
        assert_eq!(tree(target), ["lib", "lib/app.jar"]);
    }
    assert_eq!(daemon.s3.bytes_served(), archive.len() as u64);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hold_timeout_answers_500_while_the_download_goes_on() {
    let daemon = Daemon::start_with(Options::slow()).await;
    let data = random_bytes(4 << 20, 3);
    let md5 = daemon.put("big/slow.jar", &data);
    let target = daemon.target("task");
    let mut body = request("big/slow.jar", "slow.jar", Some(&md5), &target);
    body["timeoutMillis"] = 50.into();

    let (status, text) = daemon.post(&body).await;
    assert_eq!((status, text.as_str()), (500, "Hit client timeout"));
    assert!(!target.join("slow.jar").exists());
    // Nor the file that was being written ahead under a temporary name.
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));

    // The download was not cancelled: a patient request gets it without a second read.
    body.as_object_mut().unwrap().remove("timeoutMillis");
    let (status, text) = daemon.post(&body).await;
    assert_eq!((status, text.as_str()), (200, ""));
    assert_eq!(std::fs::read(target.join("slow.jar")).unwrap(), data);
    assert_eq!(daemon.s3.bytes_served(), data.len() as u64);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_hold_time_applies_without_timeout_millis() {
    let mut options = Options::slow();
    options.default_request_timeout = Duration::from_millis(50);
    // The download goes on after the answer; do not wait for it when stopping.
    options.shutdown_grace = Duration::from_millis(100);
    let daemon = Daemon::start_with(options).await;
    let data = random_bytes(4 << 20, 4);
    let md5 = daemon.put("big/slow.jar", &data);
    let target = daemon.target("task");

    let (status, text) = daemon
        .post(&request("big/slow.jar", "slow.jar", Some(&md5), &target))
        .await;
    assert_eq!((status, text.as_str()), (500, "Hit client timeout"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_requests_by_status_and_the_cache() {
    let daemon = Daemon::start().await;
    let md5 = daemon.put("m/a.txt", b"metrics");
    let target = daemon.target("task");
    assert_eq!(
        daemon
            .post(&request("m/a.txt", "a.txt", Some(&md5), &target))
            .await
            .0,
        200
    );
    assert_eq!(daemon.get("/nowhere").await.0, 404);
    assert_eq!(daemon.get("/download").await.0, 405);

    let (status, text) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "s3_downloader_requests_total{code=\"200\"} 1",
        "s3_downloader_requests_total{code=\"404\"} 1",
        "s3_downloader_requests_total{code=\"405\"} 1",
        "s3_downloader_cache_misses_total 1",
        "s3_downloader_cache_entries 1",
        "s3_downloader_cache_bytes 7",
        "s3_downloader_s3_bytes_total 7",
        "s3_downloader_active_downloads 0",
        "s3_downloader_download_duration_seconds_count 1",
        "s3_downloader_request_duration_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    daemon.stop().await;
}
