//! A full disk under the log directory: compress-before-upload cannot write its `.gz`. The
//! original file stays intact, nothing half-written is left, and once there is room again the
//! file is compressed and uploaded.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use singularity_test_support::SmallFs;

use crate::support::{Env, data, files_in, server_with_bucket, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressing_on_a_full_disk_keeps_the_original_and_retries_once_there_is_room() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let logs = env.root.path().join("small");
    std::fs::create_dir_all(&logs).unwrap();
    let fs = SmallFs::mount(&logs, 3 << 20);
    // Incompressible: its .gz needs as much room again, and only 0.8 MiB is left.
    let content = data(1200 << 10, 5);
    let path = Env::write_file(fs.dir(), "app.log", &content, None);
    let filler = Env::write_file(fs.dir(), "filler.bin", &data(1 << 20, 6), None);
    let mut meta = Env::metadata(fs.dir(), "*.log", &bucket, "full/%filename");
    meta["compressBeforeUpload"] = true.into();
    meta["uploadImmediately"] = false.into();
    meta["checkIfOpen"] = false.into();
    env.write_metadata("full.s3.json", &meta);
    let running = env.start();

    // Several passes (one a second) fail to compress.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // A pass may be compressing right now; its temp file goes when the write fails.
    wait_until("no temp file left", Duration::from_secs(2), || {
        files_in(fs.dir()) == ["app.log", "filler.bin"]
    })
    .await;
    assert!(
        std::fs::read(&path).unwrap() == content,
        "the original changed"
    );
    assert!(server.s5cmd_ls(&bucket, "full/").is_empty());

    std::fs::remove_file(filler).unwrap();
    wait_until("compressed and uploaded", Duration::from_secs(20), || {
        files_in(fs.dir()).is_empty()
    })
    .await;
    running.stop().await;
    let gz = server.s5cmd_cat(&bucket, "full/app.log.gz");
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
    assert!(back == content, "the uploaded .gz holds other bytes");
}
