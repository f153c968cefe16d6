//! Graceful shutdown: a download in flight when shutdown is requested still completes and its
//! request gets 200; new connections are refused from then on.

use std::time::{Duration, Instant};

use crate::support::http::{self, Daemon, Options, request};
use crate::support::random_bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_an_in_flight_download() {
    let daemon = Daemon::start_with(Options::slow()).await;
    let data = random_bytes(4 << 20, 11);
    let md5 = daemon.put("big/slow.jar", &data);
    let target = daemon.target("task");

    let send = daemon
        .http
        .post(format!("{}/download", daemon.url))
        .json(&request("big/slow.jar", "slow.jar", Some(&md5), &target))
        .send();
    let in_flight = tokio::spawn(async move { http::answer(send.await.unwrap()).await });

    // Wait until the download has really started reading S3.
    let started = Instant::now();
    while daemon.s3.bytes_served() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "download never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        daemon.s3.bytes_served() < data.len() as u64,
        "still in flight"
    );

    daemon.shutdown.trigger();
    // New connections are refused once the listener is closed.
    let refused_by = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = reqwest::Client::new();
        if fresh
            .get(format!("{}/healthz", daemon.url))
            .send()
            .await
            .is_err()
        {
            break;
        }
        assert!(
            Instant::now() < refused_by,
            "still accepting after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (status, body) = tokio::time::timeout(Duration::from_secs(60), in_flight)
        .await
        .expect("the in-flight request is answered")
        .unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(std::fs::read(target.join("slow.jar")).unwrap(), data);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_grace_period_bounds_the_shutdown() {
    let mut options = Options::slow();
    options.shutdown_grace = Duration::from_millis(300);
    let daemon = Daemon::start_with(options).await;
    let data = random_bytes(8 << 20, 12);
    let md5 = daemon.put("big/slower.jar", &data);
    let target = daemon.target("task");
    let send = daemon
        .http
        .post(format!("{}/download", daemon.url))
        .json(&request(
            "big/slower.jar",
            "slower.jar",
            Some(&md5),
            &target,
        ))
        .send();
    let in_flight = tokio::spawn(send);
    let started = Instant::now();
    while daemon.s3.bytes_served() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "download never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let stopping = Instant::now();
    daemon.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        stopping.elapsed()
    );
    in_flight.abort();
}
