//! Reopening the cache: the index is matched against the directory.
#![allow(clippy::unwrap_used)]

use singularity_common::records::S3Artifact;
use singularity_s3_downloader::cache::{ArtifactCache, INDEX_FILE_NAME, TEMP_PREFIX};

use crate::support::fetch::{Env, MIB, settings};
use crate::support::random_bytes;

#[tokio::test]
async fn reopening_drops_missing_adopts_new_and_removes_leftovers() {
    let env = Env::new().await;
    let kept_data = random_bytes(MIB, 1);
    let kept = env.put("r/kept.bin", &kept_data).await;
    let gone = env.put("r/gone.bin", &random_bytes(MIB, 2)).await;
    {
        let fetcher = env.fetcher(settings(), 1 << 30).await;
        drop(fetcher.fetch(&kept).await.unwrap());
        let gone_path = fetcher.fetch(&gone).await.unwrap().path.clone();
        fetcher.drain(std::time::Duration::from_secs(10)).await;
        std::fs::remove_file(gone_path).unwrap();
    }
    // Written by someone else while the downloader was down.
    let foreign = random_bytes(1000, 3);
    std::fs::write(env.cache_dir.path().join("foreign.tar.gz"), &foreign).unwrap();
    // Left over from a crash in the middle of a download.
    let leftover = env.cache_dir.path().join(format!("{TEMP_PREFIX}abc"));
    std::fs::write(&leftover, b"partial").unwrap();

    let cache = ArtifactCache::open(env.cache_dir.path(), 1 << 30)
        .await
        .unwrap();
    assert!(!leftover.exists());
    let stats = cache.stats();
    assert_eq!(stats.entries, 2);
    assert_eq!(stats.bytes, (MIB + 1000) as u64);
    let mut names = cache.entries_by_last_use();
    names.sort();
    let kept_name = format!("{}-kept.bin", kept.md5sum.as_deref().unwrap());
    let mut expected = vec!["foreign.tar.gz".to_owned(), kept_name];
    expected.sort();
    assert_eq!(names, expected);

    let fetcher = singularity_s3_downloader::fetch::Fetcher::new(
        cache,
        std::sync::Arc::new(env.client.clone()),
        settings(),
    );
    let requests = env.s3.get_requests();
    // Both are hits: the kept entry, and the adopted file (whose md5 is checked once).
    let hit = fetcher.fetch(&kept).await.unwrap();
    assert!(hit.cache_hit);
    assert!(std::fs::read(&hit.path).unwrap() == kept_data);
    let adopted = fetcher
        .fetch(&S3Artifact {
            filename: "foreign.tar.gz".to_owned(),
            md5sum: None,
            filesize: Some(1000),
            ..kept.clone()
        })
        .await
        .unwrap();
    assert!(adopted.cache_hit);
    assert_eq!(env.s3.get_requests(), requests);
    // The deleted entry is downloaded again.
    assert!(!fetcher.fetch(&gone).await.unwrap().cache_hit);
}

#[tokio::test]
async fn a_changed_file_is_verified_again() {
    let env = Env::new().await;
    let data = random_bytes(MIB, 4);
    let artifact = env.put("c/app.bin", &data).await;
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    let path = fetcher.fetch(&artifact).await.unwrap().path.clone();
    // Same size, other content, new mtime: the recorded md5 no longer applies.
    let mut corrupt = data.clone();
    corrupt[0] ^= 0xff;
    std::fs::write(&path, &corrupt).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10))
        .unwrap();
    drop(file);

    let again = fetcher.fetch(&artifact).await.unwrap();
    assert!(!again.cache_hit, "the corrupted file must not be served");
    assert!(std::fs::read(&again.path).unwrap() == data);
}

#[tokio::test]
async fn the_index_vouches_for_a_download_once_it_is_on_disk() {
    let env = Env::new().await;
    let with_md5 = env.put("d/with.bin", &random_bytes(3 * MIB, 5)).await;
    let without_md5 = S3Artifact {
        md5sum: None,
        ..env.put("d/without.bin", &random_bytes(MIB, 6)).await
    };
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    let fetched = fetcher.fetch(&with_md5).await.unwrap();
    assert!(!fetched.cache_hit);
    let name = fetched.lease().name().to_owned();
    drop(fetched);
    drop(fetcher.fetch(&without_md5).await.unwrap());
    // Waits for the fsync that runs after the download has been handed out.
    fetcher.drain(std::time::Duration::from_secs(20)).await;
    drop(fetcher);

    let index = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        env.cache_dir.path().join(INDEX_FILE_NAME).display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT name, md5 FROM cache_entries ORDER BY name")
            .fetch_all(&index)
            .await
            .unwrap();
    index.close().await;
    let mut expected = vec![
        (name, with_md5.md5sum.clone()),
        (
            "without.bin".to_owned(),
            Some(
                singularity_artifacts::md5_file(&env.cache_dir.path().join("without.bin")).unwrap(),
            ),
        ),
    ];
    expected.sort();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn opening_a_missing_directory_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let error = ArtifactCache::open(&missing, 1).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "artifact cache directory {}: not a directory",
            missing.display()
        )
    );
}
