//! Crash-point sweep: the downloader binary SIGKILLed at points of cold downloads (a plain
//! artifact and a tarball: while the bytes arrive, right after the rename into the cache,
//! during extraction), restarted each time. The next request serves a verified file, and the
//! cache holds nothing half-written: no temp file, every index row matching its file.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use singularity_s3_downloader::cache::TEMP_PREFIX;

use crate::support::binary::{Setup, check_index};
use crate::support::http::{BUCKET, Tarball, md5_hex, request, tree};
use crate::support::random_bytes;

const WAIT: Duration = Duration::from_secs(60);

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_points_of_cold_downloads_then_the_next_request_serves_a_verified_file() {
    // 64 KiB parts one at a time: a download is long enough to be cut at many points.
    let setup = Setup::with_s3("downloadPartSizeBytes: 65536\ndownloadPartConcurrency: 1\n");
    let plain = random_bytes(3 << 20, 41);
    let plain_md5 = md5_hex(&plain);
    setup.s3().s5cmd_put(BUCKET, "app/app.jar", &plain);
    let mut archive = Tarball::new().dir("bundle/");
    let mut files = Vec::new();
    for i in 0..400 {
        let content = random_bytes(8 << 10, 500 + i);
        archive = archive.file(&format!("bundle/f{i:03}"), &content);
        files.push(content);
    }
    let archive = archive.gzip();
    let archive_md5 = md5_hex(&archive);
    setup.s3().s5cmd_put(BUCKET, "app/bundle.tar.gz", &archive);
    let plain_target = setup.root.path().join("mesos/task-plain");
    let tar_target = setup.root.path().join("mesos/task-tar");
    std::fs::create_dir_all(&plain_target).unwrap();
    std::fs::create_dir_all(&tar_target).unwrap();
    let plain_request = request("app/app.jar", "app.jar", Some(&plain_md5), &plain_target);
    let tar_request = request(
        "app/bundle.tar.gz",
        "bundle.tar.gz",
        Some(&archive_md5),
        &tar_target,
    );
    let cached_plain = setup.cache().join(format!("{plain_md5}-app.jar"));
    let mut kills = 0;

    // The plain artifact: cut at every ninth of its bytes, then right after the rename.
    for ninth in 1..=8u64 {
        let mut child = setup.spawn();
        setup.wait_healthy(&mut child).await;
        let post = setup.post_in_background(&plain_request);
        let at = plain.len() as u64 * ninth / 9;
        wait_for(&format!("{at} bytes downloaded"), || {
            setup.temp_bytes() >= at || cached_plain.exists()
        })
        .await;
        kill(child);
        post.abort();
        kills += 1;
    }
    if !cached_plain.exists() {
        let mut child = setup.spawn();
        setup.wait_healthy(&mut child).await;
        let post = setup.post_in_background(&plain_request);
        wait_for("the download renamed into the cache", || {
            cached_plain.exists()
        })
        .await;
        kill(child);
        post.abort();
        kills += 1;
    }
    // The tarball: cut during its download, then during its extraction.
    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let post = setup.post_in_background(&tar_request);
    wait_for("half the archive downloaded", || {
        setup.temp_bytes() >= archive.len() as u64 / 2
    })
    .await;
    kill(child);
    post.abort();
    kills += 1;
    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let post = setup.post_in_background(&tar_request);
    wait_for("the extraction under way", || {
        std::fs::read_dir(&tar_target).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".singularity-extract-")
        })
    })
    .await;
    kill(child);
    post.abort();
    kills += 1;
    assert!(kills >= 10, "{kills} kill points");

    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let restarted = Instant::now();
    assert_eq!(setup.post(&plain_request).await, (200, String::new()));
    assert_eq!(setup.post(&tar_request).await, (200, String::new()));
    eprintln!(
        "{kills} kills; both artifacts placed {:?} after the last restart",
        restarted.elapsed()
    );
    assert_eq!(
        md5_hex(&std::fs::read(plain_target.join("app.jar")).unwrap()),
        plain_md5
    );
    for (i, content) in files.iter().enumerate() {
        let placed = std::fs::read(tar_target.join(format!("bundle/f{i:03}"))).unwrap();
        assert!(placed == *content, "bundle/f{i:03}");
    }
    let visible = |dir: &Path| -> Vec<String> {
        tree(dir)
            .into_iter()
            .filter(|p| !p.starts_with('.'))
            .collect()
    };
    assert_eq!(visible(&plain_target), ["app.jar"]);
    // The pending files of the killed downloads went with the next request for the name.
    assert_eq!(tree(&plain_target), ["app.jar"]);
    assert_eq!(visible(&tar_target).len(), 401);
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());

    let temp_left: Vec<String> = std::fs::read_dir(setup.cache())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect();
    assert!(temp_left.is_empty(), "{temp_left:?}");
    assert_eq!(check_index(&setup.cache()).await, 2);
    eprintln!(
        "left in the targets: {:?} {:?}",
        tree(&plain_target),
        std::fs::read_dir(&tar_target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
}
