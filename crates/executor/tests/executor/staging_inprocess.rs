//! Staging without the downloader: embedded artifacts, S3 objects fetched in-process through
//! the shared cache from a real S3-protocol server, and signature verification.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;
use singularity_executor::staging::{StagingError, stage_artifacts};
use tokio_util::sync::CancellationToken;

use crate::staging_support::{BUCKET, Sandbox, executor_data, md5, s3_server, tar_gz};

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn embedded_artifacts_are_written_into_their_folders() {
    let sandbox = Sandbox::new();
    let data = executor_data(json!({
        "embeddedArtifacts": [
            {"name": "conf", "filename": "config.yaml", "md5sum": md5(b"a: 1\n").to_uppercase(),
             "content": b64(b"a: 1\n")},
            {"name": "nested", "filename": "x.txt", "targetFolderRelativeToTask": "app/conf",
             "content": b64(b"x")},
            {"name": "absolute", "filename": "abs.txt", "targetFolderRelativeToTask": "/etc",
             "content": b64(b"abs")}
        ]
    }));
    stage_artifacts(&sandbox.context(), &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(sandbox.read("config.yaml"), b"a: 1\n");
    assert_eq!(sandbox.read("app/conf/x.txt"), b"x");
    // An absolute folder is ignored: the artifact lands in the task directory.
    assert_eq!(sandbox.read("abs.txt"), b"abs");
    let mode = std::fs::metadata(sandbox.task_dir.join("config.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[tokio::test]
async fn embedded_artifacts_are_created_exclusively() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.task_dir.join("config.yaml"), b"old").unwrap();
    let data = executor_data(json!({
        "embeddedArtifacts": [{"name": "conf", "filename": "config.yaml", "content": b64(b"new")}]
    }));
    let err = stage_artifacts(&sandbox.context(), &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StagingError::Embedded { .. }), "{err}");
    assert!(!err.is_verification_failure(), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(sandbox.read("config.yaml"), b"old");
}

#[tokio::test]
async fn embedded_md5_mismatch_is_a_verification_failure() {
    let sandbox = Sandbox::new();
    let data = executor_data(json!({
        "embeddedArtifacts": [{"name": "conf", "filename": "config.yaml",
                               "md5sum": md5(b"other"), "content": b64(b"content")}]
    }));
    let err = stage_artifacts(&sandbox.context(), &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    assert!(err.to_string().contains("md5 mismatch"), "{err}");
    assert!(!sandbox.task_dir.join("config.yaml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_artifacts_are_cached_extracted_and_copied() {
    let s3 = s3_server();
    let sandbox = Sandbox::new();
    let tarball = tar_gz(&[
        ("app/bin/run.sh", b"#!/bin/sh\necho hi\n"),
        ("app/lib/a.jar", b"jar"),
    ]);
    let jar = vec![42u8; 300_000];
    s3.s5cmd_put(BUCKET, "myapp/1.0/app.tar.gz", &tarball);
    s3.s5cmd_put(BUCKET, "myapp/1.0/extra.jar", &jar);
    s3.s5cmd_put(BUCKET, "myapp/1.0/empty.txt", b"");
    let data = executor_data(json!({
        "s3Artifacts": [
            {"name": "app", "filename": "app.tar.gz", "md5sum": md5(&tarball),
             "filesize": tarball.len(), "s3Bucket": BUCKET, "s3ObjectKey": "myapp/1.0/app.tar.gz"},
            {"name": "extra", "filename": "extra.jar", "targetFolderRelativeToTask": "app/lib",
             "s3Bucket": BUCKET, "s3ObjectKey": "myapp/1.0/extra.jar"},
            {"name": "empty", "filename": "empty.txt", "md5sum": md5(b""), "filesize": 0,
             "s3Bucket": BUCKET, "s3ObjectKey": "myapp/1.0/empty.txt"}
        ]
    }));
    let ctx = sandbox.s3_context(&s3);
    stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(sandbox.read("app/bin/run.sh"), b"#!/bin/sh\necho hi\n");
    assert_eq!(sandbox.read("app/lib/a.jar"), b"jar");
    assert_eq!(sandbox.read("app/lib/extra.jar"), jar);
    assert_eq!(sandbox.read("empty.txt"), b"");
    assert!(
        !sandbox.task_dir.join("app.tar.gz").exists(),
        "tarballs are extracted, not copied"
    );
    assert_eq!(
        sandbox.cached(),
        [
            format!("{}-app.tar.gz", md5(&tarball)),
            format!("{}-empty.txt", md5(b"")),
            "extra.jar".to_owned(),
        ]
    );
    let cached = sandbox.cache.join(format!("{}-app.tar.gz", md5(&tarball)));
    assert_eq!(std::fs::read(&cached).unwrap(), tarball);
    assert_eq!(
        std::fs::metadata(&cached).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // A second task with the same artifacts is served from the cache (the artifact without
    // md5 is trusted by its name, as Singularity does).
    let gets = s3.get_requests();
    let second = Sandbox::new();
    let mut ctx2 = second.s3_context(&s3);
    ctx2.s3.artifact_cache_directory = sandbox.cache.clone();
    stage_artifacts(&ctx2, &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        s3.get_requests(),
        gets,
        "every artifact came from the cache"
    );
    assert_eq!(second.read("app/lib/extra.jar"), jar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cache_entry_is_downloaded_again() {
    let s3 = s3_server();
    let sandbox = Sandbox::new();
    s3.s5cmd_put(BUCKET, "k/app.jar", b"fresh content");
    let name = format!("{}-app.jar", md5(b"fresh content"));
    std::fs::write(sandbox.cache.join(&name), b"corrupt content").unwrap();
    let data = executor_data(json!({
        "s3Artifacts": [{"name": "app", "filename": "app.jar", "md5sum": md5(b"fresh content"),
                         "s3Bucket": BUCKET, "s3ObjectKey": "k/app.jar"}]
    }));
    stage_artifacts(&sandbox.s3_context(&s3), &data, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(sandbox.read("app.jar"), b"fresh content");
    assert_eq!(
        std::fs::read(sandbox.cache.join(&name)).unwrap(),
        b"fresh content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_md5_or_size_mismatch_is_a_verification_failure() {
    let s3 = s3_server();
    let sandbox = Sandbox::new();
    s3.s5cmd_put(BUCKET, "k/app.jar", b"actual content");
    let ctx = sandbox.s3_context(&s3);

    let data = executor_data(json!({
        "s3Artifacts": [{"name": "app", "filename": "app.jar", "md5sum": md5(b"expected"),
                         "s3Bucket": BUCKET, "s3ObjectKey": "k/app.jar"}]
    }));
    let err = stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    let text = err.to_string();
    assert!(text.contains("md5 mismatch"), "{text}");
    assert!(text.contains(&format!("s3://{BUCKET}/k/app.jar")), "{text}");

    let data = executor_data(json!({
        "s3Artifacts": [{"name": "app", "filename": "app.jar", "filesize": 3,
                         "s3Bucket": BUCKET, "s3ObjectKey": "k/app.jar"}]
    }));
    let err = stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    assert!(err.to_string().contains("size mismatch"), "{err}");

    assert!(sandbox.cached().is_empty(), "{:?}", sandbox.cached());
    assert!(
        std::fs::read_dir(&sandbox.cache).unwrap().next().is_none(),
        "no temp file left behind"
    );
    assert!(!sandbox.task_dir.join("app.jar").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_not_a_verification_failure() {
    let s3 = s3_server();
    let sandbox = Sandbox::new();
    let data = executor_data(json!({
        "s3Artifacts": [{"name": "app", "filename": "app.jar",
                         "s3Bucket": BUCKET, "s3ObjectKey": "no/such/key"}]
    }));
    let err = stage_artifacts(&sandbox.s3_context(&s3), &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StagingError::S3 { .. }), "{err}");
    assert!(!err.is_verification_failure());
    assert!(err.to_string().contains("no/such/key"), "{err}");
}

/// A verification command that accepts a signature file holding the artifact's md5.
fn md5_verifier() -> Vec<String> {
    [
        "/bin/sh",
        "-c",
        r#"echo "checking $1"; test "$(md5sum < "$1" | cut -d' ' -f1)" = "$(cat "$2")""#,
        "verify",
        "{artifactPath}",
        "{artifactSignaturePath}",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_fetched_and_verified() {
    let s3 = s3_server();
    let content = b"signed artifact";
    s3.s5cmd_put(BUCKET, "k/app.jar", content);
    s3.s5cmd_put(BUCKET, "k/app.jar.sig", md5(content).as_bytes());
    s3.s5cmd_put(BUCKET, "k/bad.sig", b"0000");
    let data = |sig_key: &str| {
        executor_data(json!({
            "s3Artifacts": [{"name": "app", "filename": "app.jar", "md5sum": md5(content),
                             "s3Bucket": BUCKET, "s3ObjectKey": "k/app.jar"}],
            "s3ArtifactSignatures": [{"name": "sig", "filename": "app.jar.sig",
                                      "artifactFilename": "app.jar",
                                      "s3Bucket": BUCKET, "s3ObjectKey": sig_key}]
        }))
    };

    let good = Sandbox::new();
    let mut ctx = good.s3_context(&s3);
    ctx.executor.artifact_signature_verification_command = md5_verifier();
    stage_artifacts(&ctx, &data("k/app.jar.sig"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(good.read("app.jar.sig"), md5(content).as_bytes());
    let out = String::from_utf8(good.read("executor.gpg.out")).unwrap();
    assert!(out.contains("checking "), "{out}");

    let bad = Sandbox::new();
    let mut ctx = bad.s3_context(&s3);
    ctx.executor.artifact_signature_verification_command = md5_verifier();
    let err = stage_artifacts(&ctx, &data("k/bad.sig"), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StagingError::InvalidSignature { .. }),
        "{err}"
    );
    assert!(err.is_verification_failure());

    // Not failing the task on an invalid signature only logs it.
    let lenient = Sandbox::new();
    let mut ctx = lenient.s3_context(&s3);
    ctx.executor.artifact_signature_verification_command = md5_verifier();
    ctx.executor.fail_task_on_invalid_artifact_signature = false;
    stage_artifacts(&ctx, &data("k/bad.sig"), CancellationToken::new())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_signatures_and_artifacts_fail_only_when_configured() {
    let s3 = s3_server();
    s3.s5cmd_put(BUCKET, "k/app.jar", b"a");
    s3.s5cmd_put(BUCKET, "k/other.sig", b"s");
    let data = executor_data(json!({
        "s3Artifacts": [{"name": "app", "filename": "app.jar",
                         "s3Bucket": BUCKET, "s3ObjectKey": "k/app.jar"}],
        "s3ArtifactSignatures": [{"name": "sig", "filename": "other.sig",
                                  "artifactFilename": "other.jar",
                                  "s3Bucket": BUCKET, "s3ObjectKey": "k/other.sig"}]
    }));

    let sandbox = Sandbox::new();
    stage_artifacts(&sandbox.s3_context(&s3), &data, CancellationToken::new())
        .await
        .unwrap();

    let sandbox = Sandbox::new();
    let mut ctx = sandbox.s3_context(&s3);
    ctx.executor.fail_on_signature_with_no_matching_artifact = true;
    let err = stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StagingError::SignatureWithoutArtifact { .. }),
        "{err}"
    );
    assert!(err.is_verification_failure());

    let sandbox = Sandbox::new();
    let mut ctx = sandbox.s3_context(&s3);
    ctx.executor.fail_on_artifact_with_no_matching_signature = true;
    let err = stage_artifacts(&ctx, &data, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StagingError::ArtifactWithoutSignature { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("app.jar"), "{err}");
}
