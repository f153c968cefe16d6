//! Crash-point sweep: the uploader binary SIGKILLed again and again, at points spread across a
//! multipart upload (its completion included) and across a batch of 1,000 small files, and
//! restarted each time. Afterwards every object is byte-identical (read back with boto3),
//! every local file was deleted exactly once, and no ledger row is left in between.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use md5::Digest as _;

use crate::support::{Env, Proxy, data, files_in, parts_recorded, server_with_bucket};

const PART: usize = 5 * 1024 * 1024;
const PARTS: usize = 12;
const SMALL_FILES: usize = 1000;
const WAIT: Duration = Duration::from_secs(90);

/// Polls `cond` every 5 ms (kill points must not be overshot by much).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every object under `prefix`: key → (size, MD5 hex), downloaded by s5cmd (in parallel:
/// a thousand GETs from boto3 take ten seconds).
fn objects(env: &Env, bucket: &str, prefix: &str) -> BTreeMap<String, (u64, String)> {
    let into = tempfile::tempdir().unwrap();
    let target = format!("{}/", into.path().display());
    let output = env
        .s3
        .s5cmd(&["cp", &format!("s3://{bucket}/{prefix}*"), &target]);
    assert!(
        output.status.success(),
        "s5cmd cp: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    walkdir(into.path())
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let key = path.strip_prefix(into.path()).unwrap().to_string_lossy();
            (
                format!("{prefix}{key}"),
                (bytes.len() as u64, md5_hex(&bytes)),
            )
        })
        .collect()
}

/// Every file under `dir`, recursively.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walkdir(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// (rows by state, paths with more than one row), read without the daemon's ledger type.
fn ledger_summary(ledger: &Path) -> (BTreeMap<String, i64>, i64) {
    use sqlx::{ConnectOptions as _, Row as _};
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(ledger)
                .read_only(true)
                .connect()
                .await
                .unwrap();
            let states = sqlx::query("SELECT state, COUNT(*) AS n FROM files GROUP BY state")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .map(|row| (row.get::<String, _>("state"), row.get::<i64, _>("n")))
                .collect();
            let repeated = sqlx::query(
                "SELECT COUNT(*) AS n FROM (SELECT path FROM files GROUP BY path HAVING COUNT(*) > 1)",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get::<i64, _>("n");
            (states, repeated)
        })
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(md5::Md5::digest(bytes))
}

#[test]
fn sigkill_at_24_points_of_a_multipart_upload_and_a_batch_of_1000_files_converges() {
    let (server, bucket) = server_with_bucket();
    // About 100 ms per part: the kill points fall between distinct parts.
    let proxy = Proxy::start(server.addr(), 50 * 1024 * 1024);
    let env = Env::new(server.s3(), "");
    env.write_config_for(
        &proxy.endpoint(),
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n  uploadPartConcurrency: 1\n",
    );
    let mut kills = 0;
    let mut run = 0;
    let mut spawn = || {
        run += 1;
        env.spawn_binary(&format!("run-{run}.log"))
    };

    // A multipart upload: killed after each of parts 1–11, then during its completion.
    let big = data(PARTS * PART + 4321, 77);
    let big_path = Env::write_file(&env.logs_dir, "big.log", &big, None);
    let mut meta = Env::metadata(&env.logs_dir, "big.log", &bucket, "sweep/big/%filename");
    meta["uploadImmediately"] = true.into();
    meta["checkIfOpen"] = false.into();
    env.write_metadata("big.s3.json", &meta);
    for target in 1..PARTS {
        let mut daemon = spawn();
        wait_for(&format!("part {target} recorded"), || {
            parts_recorded(&env.ledger, &big_path) >= target
        });
        daemon.kill();
        kills += 1;
    }
    // The last part goes, then the completion: killed as soon as its request is on the wire.
    proxy.rate.store(0, Ordering::Relaxed);
    let mut daemon = spawn();
    wait_for("CompleteMultipartUpload sent", || {
        proxy.completions.load(Ordering::Relaxed) >= 1
    });
    daemon.kill();
    kills += 1;
    assert!(big_path.exists(), "deleted while its upload was completing");

    // 1,000 small files: killed at once after start, then every ~90 files deleted.
    let small_dir = env.root.path().join("small");
    std::fs::create_dir_all(&small_dir).unwrap();
    let mut expected: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for i in 0..SMALL_FILES {
        let content = data(64 + (i * 37) % 8000, 1000 + i as u64);
        let name = format!("f{i:04}.log");
        Env::write_file(&small_dir, &name, &content, None);
        expected.insert(
            format!("sweep/small/{name}"),
            (content.len() as u64, md5_hex(&content)),
        );
    }
    let mut meta = Env::metadata(&small_dir, "*.log", &bucket, "sweep/small/%filename");
    meta["uploadImmediately"] = true.into();
    meta["checkIfOpen"] = false.into();
    env.write_metadata("small.s3.json", &meta);
    let mut daemon = spawn();
    std::thread::sleep(Duration::from_millis(20));
    daemon.kill();
    kills += 1;
    for step in 1..=11 {
        let left = SMALL_FILES - step * 90;
        let mut daemon = spawn();
        wait_for(&format!("at most {left} small files left"), || {
            files_in(&small_dir).len() <= left
        });
        daemon.kill();
        kills += 1;
    }
    assert!(kills >= 24, "{kills} kill points");

    let restarted = Instant::now();
    let _daemon = spawn();
    wait_for("every file uploaded and deleted", || {
        !big_path.exists() && files_in(&small_dir).is_empty()
    });
    let converged = restarted.elapsed();
    eprintln!("{kills} kills; converged {converged:?} after the last restart");

    expected.insert(
        "sweep/big/big.log".to_owned(),
        (big.len() as u64, md5_hex(&big)),
    );
    let on_s3 = objects(&env, &bucket, "sweep/");
    assert_eq!(on_s3.len(), expected.len());
    for (key, want) in &expected {
        assert_eq!(on_s3.get(key), Some(want), "{key}");
    }
    let (states, repeated) = ledger_summary(&env.ledger);
    assert_eq!(
        states,
        BTreeMap::from([("deleted".to_owned(), (SMALL_FILES + 1) as i64)]),
        "every row deleted, none left in between"
    );
    assert_eq!(repeated, 0, "a file was taken on twice");
    assert!(converged < Duration::from_secs(30), "took {converged:?}");
}
