//! The unix-socket listener, driven by a real HTTP client: downloads, mode 0660, a stale socket
//! file replaced at start, a live one refused, the socket removed at shutdown.

use std::os::unix::fs::FileTypeExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use singularity_artifacts::ExtractLimits;
use singularity_common::config::S3BaseConfig;
use singularity_runtime::Shutdown;
use singularity_s3_downloader::cache::ArtifactCache;
use singularity_s3_downloader::error::ServeError;
use singularity_s3_downloader::fetch::{Fetcher, configured_s3_clients};
use singularity_s3_downloader::server::{Server, ServiceConfig};

use crate::support::http::{self, Daemon, Options, mode, request};
use crate::support::random_bytes;

fn client(daemon: &Daemon) -> reqwest::Client {
    reqwest::Client::builder()
        .unix_socket(daemon.socket.clone())
        .build()
        .expect("test setup")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_over_the_unix_socket() {
    let options = Options {
        tcp: false,
        ..Options::default()
    };
    let daemon = Daemon::start_with(options).await;
    assert!(daemon.url.is_empty(), "no TCP listener");
    let meta = std::fs::symlink_metadata(&daemon.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&daemon.socket), 0o660);

    let http = client(&daemon);
    let health = http.get("http://localhost/healthz").send().await.unwrap();
    assert_eq!(http::answer(health).await, (200, "ok".to_owned()));

    let data = random_bytes(2 << 20, 7);
    let md5 = daemon.put("sock/app.jar", &data);
    let target = daemon.target("task");
    let response = http
        .post("http://localhost/download")
        .json(&request("sock/app.jar", "app.jar", Some(&md5), &target))
        .send()
        .await
        .unwrap();
    assert_eq!(http::answer(response).await, (200, String::new()));
    assert_eq!(std::fs::read(target.join("app.jar")).unwrap(), data);

    let response = http.get("http://localhost/download").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);

    let socket = daemon.socket.clone();
    daemon.stop().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let first = Daemon::start().await;
    // What a killed daemon leaves: a socket file nobody listens on.
    let stale = first.dir.path().join("run/stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());

    let mut service = test_service_config(&first, stale.clone());
    let server = start_on(&first, service.clone())
        .await
        .expect("stale replaced");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    let http = reqwest::Client::builder()
        .unix_socket(stale.clone())
        .build()
        .unwrap();
    let health = http.get("http://localhost/healthz").send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // While it serves, a second daemon on the same socket must not steal it.
    service.tcp = None;
    let error = start_on(&first, service).await.expect_err("live socket");
    assert!(
        error.to_string().contains("another process is listening"),
        "{error}"
    );
    let health = http.get("http://localhost/healthz").send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // A path holding something else is never deleted.
    let file = first.dir.path().join("run/not-a-socket");
    std::fs::write(&file, b"keep").unwrap();
    let error = start_on(&first, test_service_config(&first, file.clone()))
        .await
        .expect_err("not a socket");
    assert!(error.to_string().contains("not a socket"), "{error}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");

    shutdown.trigger();
    task.await.unwrap();
    assert!(!stale.exists());
    first.stop().await;
}

fn test_service_config(daemon: &Daemon, socket: PathBuf) -> ServiceConfig {
    ServiceConfig {
        tcp: None,
        socket: Some(socket),
        download_path: "/download".to_owned(),
        allowed_target_directories: vec![daemon.mesos()],
        default_request_timeout: Duration::from_secs(5),
        extract_limits: ExtractLimits::default(),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// A second service with a cache of its own, reading the first daemon's S3 server.
async fn start_on(daemon: &Daemon, service: ServiceConfig) -> Result<Server, ServeError> {
    let cache_dir = tempfile::Builder::new()
        .prefix("cache-")
        .tempdir_in(daemon.dir.path())
        .expect("test setup")
        .keep();
    let cache = ArtifactCache::open(&cache_dir, 1 << 30)
        .await
        .expect("test setup");
    let s3 = S3BaseConfig {
        s3_endpoint: Some(daemon.s3.endpoint().to_owned()),
        s3_path_style_access: true,
        ..Default::default()
    };
    let clients = configured_s3_clients(&s3).await;
    let fetcher = Arc::new(Fetcher::new(cache, Arc::new(clients), Default::default()));
    Server::bind(service, fetcher).await
}
