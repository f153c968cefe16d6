//! Placement safety through the HTTP API: hostile tarballs are refused with nothing left in the
//! target, and targets outside the allowed roots are refused with 403 before any work.

use crate::support::http::{Daemon, Options, Tarball, request, tree};

/// Uploads `archive`, asks for it in a fresh target, and returns the answer and the target.
async fn place(daemon: &Daemon, archive: &[u8]) -> (u16, String, std::path::PathBuf) {
    let md5 = daemon.put("hostile/app.tar.gz", archive);
    let target = daemon.target("task");
    let (status, body) = daemon
        .post(&request(
            "hostile/app.tar.gz",
            "app.tar.gz",
            Some(&md5),
            &target,
        ))
        .await;
    (status, body, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parent_directory_entry_is_refused() {
    let daemon = Daemon::start().await;
    let archive = Tarball::new()
        .file("ok.txt", b"fine")
        .file("../escaped.txt", b"evil")
        .gzip();
    let (status, body, target) = place(&daemon, &archive).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("../escaped.txt"), "{body}");
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
    assert!(!daemon.mesos().join("escaped.txt").exists());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_absolute_entry_is_refused() {
    let daemon = Daemon::start().await;
    let outside = daemon.dir.path().join("outside/abs.txt");
    let archive = Tarball::new()
        .file("ok.txt", b"fine")
        .file(outside.to_str().unwrap(), b"evil")
        .gzip();
    let (status, body, target) = place(&daemon, &archive).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("abs.txt"), "{body}");
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
    assert!(!outside.exists());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_symlink_escaping_the_target_is_refused() {
    let daemon = Daemon::start().await;
    let outside = daemon.dir.path().join("outside");
    let archive = Tarball::new()
        .symlink("link", outside.to_str().unwrap())
        .file("link/planted.txt", b"evil")
        .gzip();
    let (status, body, target) = place(&daemon, &archive).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("link"), "{body}");
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
    assert!(tree(&outside).is_empty());

    let relative = Tarball::new().symlink("up", "../../outside").gzip();
    let md5 = daemon.put("hostile/rel.tar.gz", &relative);
    let (status, body) = daemon
        .post(&request(
            "hostile/rel.tar.gz",
            "rel.tar.gz",
            Some(&md5),
            &target,
        ))
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("up"), "{body}");
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tar_bomb_past_the_cap_is_refused() {
    let mut options = Options::default();
    options.limits.max_total_bytes = 1 << 20;
    let daemon = Daemon::start_with(options).await;
    // 4 MiB of zeros: a few KiB compressed.
    let archive = Tarball::new()
        .file("small.txt", b"fine")
        .file("zeros.bin", &vec![0u8; 4 << 20])
        .gzip();
    assert!(archive.len() < 64 << 10);
    let (status, body, target) = place(&daemon, &archive).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("limit"), "{body}");
    assert!(body.contains("zeros.bin"), "{body}");
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn targets_outside_the_allowed_roots_are_forbidden() {
    let daemon = Daemon::start().await;
    let md5 = daemon.put("app/app.jar", b"content");
    let outside = daemon.dir.path().join("outside");
    std::os::unix::fs::symlink(&outside, daemon.mesos().join("sneaky")).unwrap();
    std::os::unix::fs::symlink(
        daemon.dir.path().join("nowhere"),
        daemon.mesos().join("dangling"),
    )
    .unwrap();

    let mesos = daemon.mesos();
    let cases = [
        outside.join("task"),
        mesos.join("../outside/task"),
        mesos.join("sneaky/task"),
        mesos.join("dangling/task"),
        mesos.clone(),
        "relative/task".into(),
        "".into(),
    ];
    for target in cases {
        let (status, body) = daemon
            .post(&request("app/app.jar", "app.jar", Some(&md5), &target))
            .await;
        assert_eq!(status, 403, "{}: {body}", target.display());
        assert!(body.starts_with("targetDirectory"), "{body}");
    }
    assert!(tree(&outside).is_empty(), "{:?}", tree(&outside));
    assert!(!daemon.dir.path().join("nowhere").exists());
    assert_eq!(daemon.s3.get_requests(), 0, "refused before any S3 request");
    assert!(daemon.cached().is_empty());

    // Inside the root, `..` that stays inside is fine, and the directory is created.
    let fine = mesos.join("a/../task-b/app");
    let (status, body) = daemon
        .post(&request("app/app.jar", "app.jar", Some(&md5), &fine))
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(mesos.join("task-b/app/app.jar").is_file());
    daemon.stop().await;
}
