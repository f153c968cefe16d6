//! A multipart upload S3 no longer accepts: the uploader was killed while S3 was completing
//! it, so the stored upload id is dead (real S3 answers NoSuchUpload, s3s-fs AccessDenied and
//! still lists the parts it had not consumed yet). The file must be checked against the
//! object, else sent again from part 1, never retried on that upload id forever.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use md5::Digest as _;
use singularity_s3_uploader::ledger::{Ledger, PartRecord};

use crate::confirmation::watched;
use crate::support::{self, Env, data, server_with_bucket, wait_until};

const PART: usize = 5 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(30);

/// Creates a multipart upload with boto3, sends every part of `file`, then completes it with
/// the first `complete_with` parts only: S3 consumes those parts and the upload id, as a
/// completion cut short leaves it. Prints the upload id and one line per part's ETag.
const CUT_SHORT: &str = r#"
bucket, key, path, part, complete_with = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
parts = []
with open(path, "rb") as f:
    n = 1
    while True:
        chunk = f.read(part)
        if not chunk:
            break
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=chunk)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
        n += 1
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
    MultipartUpload={"Parts": parts[:complete_with]})
print(up)
for p in parts:
    print(p["ETag"].strip('"'))
"#;

fn mtime_ms(path: &Path) -> i64 {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    i64::try_from(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Leaves the ledger as a crash during CompleteMultipartUpload does: the row `uploading` with
/// every part recorded, and S3 having consumed the upload id after `complete_with` parts.
/// Returns the dead upload id.
async fn cut_short(
    env: &Env,
    bucket: &str,
    key: &str,
    path: &Path,
    content: &[u8],
    complete_with: usize,
) -> String {
    let output = env.s3.boto3(
        CUT_SHORT,
        &[
            bucket,
            key,
            &path.to_string_lossy(),
            &PART.to_string(),
            &complete_with.to_string(),
        ],
    );
    assert!(
        output.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines();
    let upload_id = lines.next().unwrap().to_owned();
    let etags: Vec<String> = lines.map(str::to_owned).collect();
    let ledger = Ledger::open(&env.ledger).await.unwrap();
    let row = ledger
        .insert_pending(path, content.len() as u64, mtime_ms(path), bucket, key, 1)
        .await
        .unwrap();
    ledger
        .start_multipart(row.id, &upload_id, PART as u64, 2)
        .await
        .unwrap();
    for (i, (chunk, etag)) in content.chunks(PART).zip(&etags).enumerate() {
        let part = PartRecord {
            number: i32::try_from(i + 1).unwrap(),
            size: chunk.len() as u64,
            etag: etag.clone(),
            md5: md5::Md5::digest(chunk).into(),
        };
        ledger.record_part(row.id, &part).await.unwrap();
    }
    ledger.close().await;
    upload_id
}

fn multipart_env(server: &singularity_test_support::S3Server) -> Env {
    Env::new(
        server.s3(),
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n",
    )
}

/// S3 consumed parts 1–2 and the upload id, and still lists parts 3–5: UploadPart on that id
/// is refused. The file is sent again from part 1 under a new upload id, and the dead one is
/// not tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_cut_short_is_started_over_from_part_one() {
    let (server, bucket) = server_with_bucket();
    let env = multipart_env(&server);
    let content = data(4 * PART + 777, 31);
    let path = Env::write_file(&env.logs_dir, "cut.log.gz", &content, None);
    let dead = cut_short(&env, &bucket, "cut/cut.log.gz", &path, &content, 2).await;

    let (clients, seen) = watched(&env);
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "cut/%filename");
    meta["uploadImmediately"] = true.into();
    env.write_metadata("cut.s3.json", &meta);
    let started = Instant::now();
    let running = env.start_with_clients(clients);
    wait_until("the file uploaded again and deleted", WAIT, || {
        !path.exists()
    })
    .await;
    let converged = started.elapsed();
    running.stop().await;

    assert_eq!(server.s5cmd_cat(&bucket, "cut/cut.log.gz"), content);
    assert_eq!(
        support::ledger_history(&env.ledger, &path).await,
        ["deleted"]
    );
    // Parts on the dead id: at most one try each of those S3 still listed as missing.
    let on_dead = seen.requests("PUT", &format!("uploadId={dead}"));
    assert!(on_dead <= 5, "{on_dead} UploadParts on the dead upload id");
    assert_eq!(seen.requests("POST", "?uploads"), 1, "one new upload");
    assert!(converged < Duration::from_secs(15), "took {converged:?}");
}

/// The completion landed before the crash: the object is whole with the ETag of the recorded
/// parts. HeadObject vouches for it; nothing is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_landed_before_the_crash_is_taken_as_it_is() {
    let (server, bucket) = server_with_bucket();
    let env = multipart_env(&server);
    let content = data(3 * PART + 99, 32);
    let path = Env::write_file(&env.logs_dir, "landed.log.gz", &content, None);
    cut_short(&env, &bucket, "landed/landed.log.gz", &path, &content, 4).await;

    let (clients, seen) = watched(&env);
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "landed/%filename");
    meta["uploadImmediately"] = true.into();
    env.write_metadata("landed.s3.json", &meta);
    let running = env.start_with_clients(clients);
    wait_until("the file deleted", WAIT, || !path.exists()).await;
    running.stop().await;

    assert_eq!(server.s5cmd_cat(&bucket, "landed/landed.log.gz"), content);
    assert_eq!(
        support::ledger_history(&env.ledger, &path).await,
        ["deleted"]
    );
    assert_eq!(seen.requests("POST", "?uploads"), 0, "no new upload");
}
