//! S3 artifacts through the local downloader: the real `singularity-s3-downloader` binary as a
//! subprocess, over HTTP and over its unix socket, and the in-process fallback when it is not
//! there or fails.
//!
//! The downloader gets a cache of its own, separate from the executor's, so each test can tell
//! who fetched an artifact by where it was cached.

use serde_json::json;
use singularity_executor::staging::stage_artifacts;
use tokio_util::sync::CancellationToken;

use crate::staging_support::{
    BUCKET, Downloader, Listen, Sandbox, executor_data, free_port, md5, s3_server, tar_gz,
};

fn artifacts(tarball: &[u8], jar: &[u8]) -> serde_json::Value {
    json!({
        "s3Artifacts": [
            {"name": "app", "filename": "app.tar.gz", "md5sum": md5(tarball),
             "filesize": tarball.len(), "s3Bucket": BUCKET, "s3ObjectKey": "v1/app.tar.gz"},
            {"name": "lib", "filename": "lib.jar", "md5sum": md5(jar),
             "targetFolderRelativeToTask": "app/lib",
             "s3Bucket": BUCKET, "s3ObjectKey": "v1/lib.jar"}
        ]
    })
}

async fn served_by_the_downloader(listen: Listen) {
    let s3 = s3_server();
    let sandbox = Sandbox::new();
    let tarball = tar_gz(&[("app/run.sh", b"echo run\n")]);
    let jar = vec![9u8; 100_000];
    s3.s5cmd_put(BUCKET, "v1/app.tar.gz", &tarball);
    s3.s5cmd_put(BUCKET, "v1/lib.jar", &jar);
    let downloader = Downloader::start(&s3, sandbox.root.path(), listen).await;
    let mut ctx = sandbox.s3_context(&s3);
    downloader.configure(&mut ctx);

    stage_artifacts(
        &ctx,
        &executor_data(artifacts(&tarball, &jar)),
        CancellationToken::new(),
    )
    .await
    .expect("staged through the downloader");

    assert_eq!(sandbox.read("app/run.sh"), b"echo run\n");
    assert_eq!(sandbox.read("app/lib/lib.jar"), jar);
    let mut expected = [
        format!("{}-app.tar.gz", md5(&tarball)),
        format!("{}-lib.jar", md5(&jar)),
    ];
    expected.sort();
    assert_eq!(downloader.cached(), expected, "the downloader fetched both");
    assert!(
        sandbox.cached().is_empty(),
        "nothing was fetched in-process: {:?}",
        sandbox.cached()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_artifacts_through_the_downloader_over_http() {
    served_by_the_downloader(Listen::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_artifacts_through_the_downloader_over_its_unix_socket() {
    served_by_the_downloader(Listen::Socket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listening_downloader_the_executor_fetches_in_process() {
    let s3 = s3_server();
    let tarball = tar_gz(&[("app/run.sh", b"echo run\n")]);
    let jar = b"jar".to_vec();
    s3.s5cmd_put(BUCKET, "v1/app.tar.gz", &tarball);
    s3.s5cmd_put(BUCKET, "v1/lib.jar", &jar);
    let data = executor_data(artifacts(&tarball, &jar));

    // Nothing listens on the port.
    let sandbox = Sandbox::new();
    let mut ctx = sandbox.s3_context(&s3);
    ctx.executor.use_local_download_service = true;
    ctx.s3.local_download_http_port = Some(free_port());
    stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(sandbox.read("app/run.sh"), b"echo run\n");
    assert_eq!(sandbox.read("app/lib/lib.jar"), jar);
    assert_eq!(sandbox.cached().len(), 2, "{:?}", sandbox.cached());

    // The socket of a downloader that has been stopped.
    let sandbox = Sandbox::new();
    let downloader = Downloader::start(&s3, sandbox.root.path(), Listen::Socket).await;
    let mut ctx = sandbox.s3_context(&s3);
    downloader.configure(&mut ctx);
    downloader.stop();
    stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(sandbox.read("app/lib/lib.jar"), jar);
    assert_eq!(sandbox.cached().len(), 2, "{:?}", sandbox.cached());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_request_sends_every_artifact_in_process() {
    let s3 = s3_server();
    let tarball = tar_gz(&[("app/run.sh", b"echo run\n")]);
    let jar = b"jar".to_vec();
    s3.s5cmd_put(BUCKET, "v1/app.tar.gz", &tarball);
    s3.s5cmd_put(BUCKET, "v1/lib.jar", &jar);
    let sandbox = Sandbox::new();
    // The downloader may write only below a directory the task is not in: it refuses (403).
    let elsewhere = tempfile::Builder::new()
        .prefix("se-test-")
        .tempdir()
        .unwrap();
    let downloader = Downloader::start(&s3, elsewhere.path(), Listen::Http).await;
    let mut ctx = sandbox.s3_context(&s3);
    downloader.configure(&mut ctx);

    stage_artifacts(
        &ctx,
        &executor_data(artifacts(&tarball, &jar)),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(sandbox.read("app/run.sh"), b"echo run\n");
    assert_eq!(sandbox.read("app/lib/lib.jar"), jar);
    assert_eq!(sandbox.cached().len(), 2, "{:?}", sandbox.cached());
    assert!(downloader.cached().is_empty(), "{:?}", downloader.cached());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_md5_fails_the_fallback_too_as_a_verification_failure() {
    let s3 = s3_server();
    s3.s5cmd_put(BUCKET, "v1/lib.jar", b"content");
    let sandbox = Sandbox::new();
    let downloader = Downloader::start(&s3, sandbox.root.path(), Listen::Socket).await;
    let mut ctx = sandbox.s3_context(&s3);
    downloader.configure(&mut ctx);
    let data = executor_data(json!({
        "s3Artifacts": [{"name": "lib", "filename": "lib.jar", "md5sum": md5(b"something else"),
                         "s3Bucket": BUCKET, "s3ObjectKey": "v1/lib.jar"}]
    }));
    let err = stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    assert!(!sandbox.task_dir.join("lib.jar").exists());
}
