//! External (URL) artifacts from a local HTTP server, artifact lists, and cancellation of a
//! download that stalls.

use std::time::{Duration, Instant};

use serde_json::json;
use singularity_executor::staging::{StagingError, stage_artifacts};
use tokio_util::sync::CancellationToken;

use crate::staging_support::{
    BUCKET, HttpServer, Sandbox, StallServer, executor_data, md5, s3_server, tar_gz,
};

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_artifacts_are_cached_and_placed() {
    let http = HttpServer::start().await;
    let tarball = tar_gz(&[("app/tool/bin", b"tool")]);
    http.put("tool.tar.gz", &tarball);
    http.put("notes.txt", b"notes");
    let sandbox = Sandbox::new();
    let data = executor_data(json!({
        "externalArtifacts": [
            {"name": "tool", "filename": "tool.tar.gz", "md5sum": md5(&tarball),
             "filesize": tarball.len(), "url": http.url("tool.tar.gz")},
            {"name": "notes", "filename": "notes.txt", "targetFolderRelativeToTask": "docs",
             "url": http.url("notes.txt")}
        ]
    }));
    stage_artifacts(&sandbox.context(), &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(sandbox.read("app/tool/bin"), b"tool");
    assert_eq!(sandbox.read("docs/notes.txt"), b"notes");
    assert_eq!(
        sandbox.cached(),
        [
            format!("{}-tool.tar.gz", md5(&tarball)),
            "notes.txt".to_owned()
        ]
    );
    assert_eq!(http.requests(), 2);

    // Cached: a second task does not download again.
    let second = Sandbox::new();
    let mut ctx = second.context();
    ctx.s3.artifact_cache_directory = sandbox.cache.clone();
    stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(second.read("docs/notes.txt"), b"notes");
    assert_eq!(http.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_failures_name_the_url() {
    let http = HttpServer::start().await;
    http.put("a.txt", b"content");
    let sandbox = Sandbox::new();

    let missing = executor_data(json!({
        "externalArtifacts": [{"name": "gone", "filename": "gone.txt", "url": http.url("gone.txt")}]
    }));
    let err = stage_artifacts(&sandbox.context(), &missing, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StagingError::Http { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("404"), "{text}");
    assert!(text.contains(&http.url("gone.txt")), "{text}");
    assert!(!err.is_verification_failure());

    let wrong = executor_data(json!({
        "externalArtifacts": [{"name": "a", "filename": "a.txt", "md5sum": md5(b"x"),
                               "url": http.url("a.txt")}]
    }));
    let err = stage_artifacts(&sandbox.context(), &wrong, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    assert!(!sandbox.task_dir.join("a.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_lists_are_expanded_one_level() {
    let s3 = s3_server();
    let http = HttpServer::start().await;
    let sandbox = Sandbox::new();

    // The inner list is an artifact list itself: it is placed, never expanded.
    let inner = json!({"embeddedArtifacts": [
        {"name": "deep", "filename": "deep.txt", "content": b64(b"deep")}
    ]});
    http.put("inner.json", inner.to_string().as_bytes());
    s3.s5cmd_put(BUCKET, "lists/lib.jar", b"lib from the list");
    let outer = json!({
        "embeddedArtifacts": [{"name": "conf", "filename": "listed.conf",
                               "targetFolderRelativeToTask": "app/conf", "content": b64(b"conf")}],
        "s3Artifacts": [{"name": "lib", "filename": "lib.jar", "s3Bucket": BUCKET,
                         "s3ObjectKey": "lists/lib.jar", "targetFolderRelativeToTask": "app/lib"}],
        "externalArtifacts": [{"name": "inner", "filename": "inner.json", "isArtifactList": true,
                               "url": http.url("inner.json")}],
        "s3ArtifactSignatures": null
    });
    s3.s5cmd_put(BUCKET, "lists/outer.json", outer.to_string().as_bytes());
    let data = executor_data(json!({
        "s3Artifacts": [{"name": "outer", "filename": "outer.json", "isArtifactList": true,
                         "targetFolderRelativeToTask": "lists",
                         "s3Bucket": BUCKET, "s3ObjectKey": "lists/outer.json"}]
    }));

    stage_artifacts(&sandbox.s3_context(&s3), &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        sandbox.read("lists/outer.json"),
        outer.to_string().as_bytes()
    );
    assert_eq!(sandbox.read("app/conf/listed.conf"), b"conf");
    assert_eq!(sandbox.read("app/lib/lib.jar"), b"lib from the list");
    assert_eq!(sandbox.read("inner.json"), inner.to_string().as_bytes());
    assert!(
        !sandbox.task_dir.join("deep.txt").exists(),
        "a list inside a list is not expanded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_artifact_list_is_an_error_naming_it() {
    let http = HttpServer::start().await;
    http.put("list.json", b"not json");
    let sandbox = Sandbox::new();
    let data = executor_data(json!({
        "externalArtifacts": [{"name": "list", "filename": "list.json", "isArtifactList": true,
                               "url": http.url("list.json")}]
    }));
    let err = stage_artifacts(&sandbox.context(), &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StagingError::ArtifactList { .. }), "{err}");
    assert!(err.to_string().contains("list.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_stalled_download_returns_promptly() {
    let stall = StallServer::start().await;
    let sandbox = Sandbox::new();
    let data = executor_data(json!({
        "embeddedArtifacts": [{"name": "first", "filename": "first.txt", "content": b64(b"1")}],
        "externalArtifacts": [{"name": "big", "filename": "big.bin", "url": stall.url("big.bin")}]
    }));
    let cancel = CancellationToken::new();
    let ctx = sandbox.context();
    let staging = tokio::spawn({
        let cancel = cancel.clone();
        async move { stage_artifacts(&ctx, &data, cancel).await }
    });

    // Wait until the download is in flight.
    let started = Instant::now();
    while stall.connections() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!staging.is_finished(), "the download stalls");

    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(2), staging)
        .await
        .expect("staging returns promptly after cancellation")
        .unwrap();
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert!(matches!(result, Err(StagingError::Cancelled)), "{result:?}");
    assert_eq!(sandbox.read("first.txt"), b"1");
    assert!(!sandbox.task_dir.join("big.bin").exists());

    // The partial download is removed from the cache.
    let started = Instant::now();
    while std::fs::read_dir(&sandbox.cache).unwrap().next().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "partial file left in the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_already_cancelled_token_stages_nothing() {
    let sandbox = Sandbox::new();
    let data = executor_data(json!({
        "embeddedArtifacts": [{"name": "first", "filename": "first.txt", "content": b64(b"1")}]
    }));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = stage_artifacts(&sandbox.context(), &data, cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, StagingError::Cancelled));
    assert!(!sandbox.task_dir.join("first.txt").exists());
}
