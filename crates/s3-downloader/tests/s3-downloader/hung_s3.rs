//! A hung and a slow S3: the daemon binary against an endpoint that accepts and never
//! answers, or trickles 1 KB/s. Requests answer 500 within their `timeoutMillis`, downloads
//! end at their deadlines, and after 100 such requests the daemon's descriptors and RSS are
//! back where they started.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use singularity_test_support::{Fault, FaultyS3};

use crate::support::binary::{Setup, open_fds, rss_kib};
use crate::support::http::request;

/// Part attempts end after 500 ms, one attempt each, a whole download after 1 s.
fn setup_against(faulty: &FaultyS3) -> Setup {
    Setup::new(
        &format!(
            "s3AccessKey: AKIAHUNG\ns3SecretKey: hung-secret\ns3Endpoint: {}\ns3Region: us-east-1\n\
             s3ChunkDownloadTimeoutMillis: 500\ns3ChunkRetries: 0\ns3DownloadTimeoutMillis: 1000\n",
            faulty.endpoint()
        ),
        "",
    )
}

async fn settle(setup: &Setup, faulty: &FaultyS3) {
    let started = Instant::now();
    while setup.metric("s3_downloader_active_downloads").await != Some(0.0)
        || faulty.stats().open.load(Ordering::Relaxed) != 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "downloads never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_hung_s3_answer_500_within_their_timeout_and_leak_nothing() {
    let faulty = FaultyS3::start(Fault::Hang, None, None);
    let setup = setup_against(&faulty);
    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let target = setup.mesos().join("task");
    std::fs::create_dir_all(&target).unwrap();
    let batch = |from: usize, count: usize| {
        let mut sends = tokio::task::JoinSet::new();
        for i in from..from + count {
            let mut body = request(&format!("k/{i}.jar"), &format!("a{i}.jar"), None, &target);
            body["timeoutMillis"] = 300.into();
            let http = setup.client();
            sends.spawn(async move {
                let started = Instant::now();
                let response = http
                    .post("http://localhost/download")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                ((status, text), started.elapsed())
            });
        }
        sends.join_all()
    };
    // Warm up (first connections, first downloads), then measure.
    batch(0, 5).await;
    settle(&setup, &faulty).await;
    let pid = child.id();
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));

    let mut slowest = Duration::ZERO;
    for round in 0..10 {
        for ((status, body), took) in batch(100 + round * 10, 10).await {
            assert_eq!((status, body.as_str()), (500, "Hit client timeout"));
            slowest = slowest.max(took);
        }
    }
    settle(&setup, &faulty).await;
    // The connection of the last /metrics request may still be closing.
    let started = Instant::now();
    while open_fds(pid) > fds_before && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (fds_after, rss_after) = (open_fds(pid), rss_kib(pid));
    eprintln!(
        "100 requests: slowest answer {slowest:?}; fds {fds_before} -> {fds_after}; \
         RSS {rss_before} -> {rss_after} KiB; longest S3 wait {} ms",
        faulty.stats().longest_wait_ms.load(Ordering::Relaxed)
    );
    assert!(slowest < Duration::from_millis(1000), "{slowest:?}");
    assert!(
        fds_after <= fds_before,
        "{fds_before} -> {fds_after}: {:?}",
        fd_targets(pid)
    );
    assert!(
        rss_after <= rss_before + 4096,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    // Every S3 call was given up at the part deadline.
    let longest = faulty.stats().longest_wait_ms.load(Ordering::Relaxed);
    assert!((400..1500).contains(&longest), "{longest} ms");
    assert!(std::fs::read_dir(&target).unwrap().next().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_trickling_at_1_kb_per_second_fails_at_its_deadline_with_a_500() {
    let faulty = FaultyS3::start(
        Fault::Trickle {
            bytes_per_sec: 1024,
        },
        None,
        None,
    );
    let setup = setup_against(&faulty);
    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let target = setup.mesos().join("task");
    std::fs::create_dir_all(&target).unwrap();
    let started = Instant::now();
    let (status, body) = setup
        .post(&request("slow/app.jar", "app.jar", None, &target))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("s3://se-artifacts/slow/app.jar"), "{body}");
    assert!(body.contains("timed out after 500ms"), "{body}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    settle(&setup, &faulty).await;
    assert!(std::fs::read_dir(&target).unwrap().next().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| format!("{:?}", std::fs::read_link(e.path())))
        .collect()
}
