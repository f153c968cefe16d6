//! Fetching against a real S3-protocol server: misses, hits, verification failures, empty
//! and multi-part objects, what the server served.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use singularity_common::records::S3Artifact;
use singularity_s3_downloader::fetch::{FetchError, FetchSettings, Fetcher, S3Clients as _};

use crate::support::fetch::{Env, MIB, settings};
use crate::support::random_bytes;

#[tokio::test]
async fn miss_then_hit() {
    let env = Env::new().await;
    let data = random_bytes(3 * MIB + 5, 1);
    let artifact = env.put("releases/1.0/app.tar.gz", &data).await;
    let fetcher = env.fetcher(settings(), 1 << 30).await;

    let first = fetcher.fetch(&artifact).await.unwrap();
    let name = format!("{}-app.tar.gz", artifact.md5sum.as_deref().unwrap());
    assert_eq!(first.path, env.cache_dir.path().join(&name));
    assert!(!first.cache_hit);
    assert!(!first.joined);
    assert_eq!(first.size, data.len() as u64);
    assert_eq!(first.bytes_from_s3, data.len() as u64);
    assert!(first.download_duration.is_some());
    assert_eq!(first.md5.as_deref(), artifact.md5sum.as_deref());
    assert!(std::fs::read(&first.path).unwrap() == data);
    let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(env.s3.bytes_served(), data.len() as u64);
    assert_eq!(env.s3.get_requests(), 4);
    drop(first);

    let requests = env.s3.get_requests();
    let second = fetcher.fetch(&artifact).await.unwrap();
    assert!(second.cache_hit);
    assert_eq!(second.bytes_from_s3, 0);
    assert_eq!(second.download_duration, None);
    assert_eq!(second.path, env.cache_dir.path().join(&name));
    assert_eq!(
        env.s3.get_requests(),
        requests,
        "a hit reads nothing from S3"
    );
    assert_eq!(env.s3.bytes_served(), data.len() as u64);
    assert_eq!(env.cached_files(), [name]);

    let stats = fetcher.cache_stats();
    assert_eq!((stats.entries, stats.bytes), (1, data.len() as u64));
    let counters = fetcher.counters();
    assert_eq!(counters.downloads_started, 1);
    assert_eq!(counters.downloads_succeeded, 1);
    assert_eq!(counters.bytes_from_s3, data.len() as u64);
}

#[tokio::test]
async fn without_md5_and_size_the_object_is_taken_as_it_is() {
    let env = Env::new().await;
    let data = random_bytes(2 * MIB + 100, 2);
    let artifact = S3Artifact {
        md5sum: None,
        filesize: None,
        ..env.put("plain/tool.bin", &data).await
    };
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    let cached = fetcher.fetch(&artifact).await.unwrap();
    assert_eq!(cached.path, env.cache_dir.path().join("tool.bin"));
    assert!(std::fs::read(&cached.path).unwrap() == data);
    assert_eq!(cached.md5, Some(singularity_artifacts::md5_bytes(&data)));
    // The size came with the first part: no HEAD, three ranged GETs.
    assert_eq!(env.s3.get_requests(), 3);
    assert_eq!(env.s3.bytes_served(), data.len() as u64);
    assert!(fetcher.fetch(&artifact).await.unwrap().cache_hit);
}

#[tokio::test]
async fn md5_mismatch_leaves_nothing() {
    let env = Env::new().await;
    let data = random_bytes(MIB + 1, 3);
    let artifact = S3Artifact {
        md5sum: Some("0123456789abcdef0123456789abcdef".to_owned()),
        ..env.put("bad/app.tar.gz", &data).await
    };
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    let error = fetcher.fetch(&artifact).await.unwrap_err();
    match &error {
        FetchError::Md5Mismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, "0123456789abcdef0123456789abcdef");
            assert_eq!(actual, &singularity_artifacts::md5_bytes(&data));
        }
        other => panic!("{other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("s3://{}/bad/app.tar.gz", env.bucket)),
        "{message}"
    );
    assert!(env.cached_files().is_empty(), "{:?}", env.cached_files());
    assert_eq!(fetcher.cache_stats().entries, 0);
    assert_eq!(fetcher.counters().downloads_failed, 1);
}

#[tokio::test]
async fn size_mismatch_leaves_nothing() {
    let env = Env::new().await;
    let data = random_bytes(3 * MIB, 4);
    let put = env.put("sized/app.bin", &data).await;
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    for (filesize, md5sum) in [(3 * MIB as i64 + 1, None), (1000, put.md5sum.clone())] {
        let artifact = S3Artifact {
            filesize: Some(filesize),
            md5sum,
            ..put.clone()
        };
        match fetcher.fetch(&artifact).await.unwrap_err() {
            FetchError::SizeMismatch {
                bucket,
                key,
                expected,
                actual,
            } => {
                assert_eq!(
                    (bucket.as_str(), key.as_str()),
                    (env.bucket.as_str(), "sized/app.bin")
                );
                assert_eq!(expected, filesize as u64);
                assert_eq!(actual, data.len() as u64);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(env.cached_files().is_empty(), "{:?}", env.cached_files());
}

#[tokio::test]
async fn missing_objects_and_buckets_are_not_found() {
    let env = Env::new().await;
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    for (bucket, filesize) in [
        (env.bucket.clone(), Some(10)),
        (env.bucket.clone(), None),
        ("se-test-no-such-bucket".to_owned(), None),
    ] {
        let artifact = S3Artifact {
            name: "x".to_owned(),
            filename: "nothing.tar.gz".to_owned(),
            md5sum: None,
            target_folder_relative_to_task: None,
            filesize,
            is_artifact_list: None,
            s3_bucket: bucket.clone(),
            s3_object_key: "no/such/nothing.tar.gz".to_owned(),
        };
        let error = fetcher.fetch(&artifact).await.unwrap_err();
        assert!(
            matches!(&error, FetchError::NotFound { bucket: b, key } if *b == bucket && key == "no/such/nothing.tar.gz"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("s3://{bucket}/no/such/nothing.tar.gz does not exist")
        );
    }
    assert!(env.cached_files().is_empty());
}

#[tokio::test]
async fn zero_length_objects() {
    let env = Env::new().await;
    let put = env.put("empty/marker", b"").await;
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    for (filesize, md5sum) in [
        (Some(0), put.md5sum.clone()),
        (None, None),
        (None, put.md5sum.clone()),
    ] {
        let artifact = S3Artifact {
            filesize,
            md5sum,
            ..put.clone()
        };
        let cached = fetcher.fetch(&artifact).await.unwrap();
        assert_eq!(cached.size, 0);
        assert_eq!(std::fs::metadata(&cached.path).unwrap().len(), 0);
        assert_eq!(
            cached.md5.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
    }
    assert_eq!(
        env.cached_files(),
        ["d41d8cd98f00b204e9800998ecf8427e-marker", "marker"]
    );
}

#[tokio::test]
async fn multi_part_objects_are_byte_identical() {
    let env = Env::new().await;
    let data = random_bytes(40 * MIB + 12_345, 5);
    let put = env.put("big/blob.bin", &data).await;
    let fetcher = env
        .fetcher(
            FetchSettings {
                part_size: 4 * MIB as u64,
                part_concurrency: 4,
                ..settings()
            },
            1 << 34,
        )
        .await;
    let cached = fetcher.fetch(&put).await.unwrap();
    assert!(std::fs::read(&cached.path).unwrap() == data);
    assert_eq!(cached.md5, put.md5sum);
    assert_eq!(env.s3.get_requests(), 11);
    assert_eq!(env.s3.bytes_served(), data.len() as u64);

    // The same object under another name, size unknown: the first GET tells it.
    let unsized_artifact = S3Artifact {
        filename: "blob-copy.bin".to_owned(),
        filesize: None,
        ..put.clone()
    };
    let copy = fetcher.fetch(&unsized_artifact).await.unwrap();
    assert_eq!(copy.size, data.len() as u64);
    assert!(std::fs::read(&copy.path).unwrap() == data);
    assert_eq!(env.s3.get_requests(), 22);
}

#[tokio::test]
async fn concurrent_identical_fetches_read_the_object_once() {
    let env = Env::new().await;
    let data = random_bytes(12 * MIB, 6);
    let artifact = env.put("shared/app.tar.gz", &data).await;
    let fetcher = env.fetcher(settings(), 1 << 30).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (fetcher, artifact) = (Arc::clone(&fetcher), artifact.clone());
        tasks.push(tokio::spawn(async move { fetcher.fetch(&artifact).await }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    assert_eq!(env.s3.bytes_served(), data.len() as u64);
    assert_eq!(env.s3.get_requests(), 12);
    let path = &results[0].path;
    assert!(results.iter().all(|r| &r.path == path));
    assert!(std::fs::read(path).unwrap() == data);
    // The bytes are reported once, by whichever fetch started the download.
    let reported: u64 = results.iter().map(|r| r.bytes_from_s3).sum();
    assert_eq!(reported, data.len() as u64);
    assert_eq!(results.iter().filter(|r| !r.joined).count(), 1);
    assert_eq!(fetcher.counters().downloads_started, 1);
    assert_eq!(fetcher.cache_stats().leased, 1);
    drop(results);
    assert_eq!(fetcher.cache_stats().leased, 0);
}

#[tokio::test]
async fn a_dropped_waiter_does_not_cancel_the_download() {
    let env = Env::new().await;
    let data = random_bytes(24 * MIB, 7);
    let artifact = env.put("drop/app.tar.gz", &data).await;
    let fetcher = env
        .fetcher(
            FetchSettings {
                part_concurrency: 1,
                ..settings()
            },
            1 << 30,
        )
        .await;
    let first = {
        let (fetcher, artifact) = (Arc::clone(&fetcher), artifact.clone());
        tokio::spawn(async move { fetcher.fetch(&artifact).await })
    };
    let second = {
        let (fetcher, artifact) = (Arc::clone(&fetcher), artifact.clone());
        tokio::spawn(async move { fetcher.fetch(&artifact).await })
    };
    // Mid-download: some bytes served, not all.
    while env.s3.bytes_served() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(env.s3.bytes_served() < data.len() as u64);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let cached = second.await.unwrap().unwrap();
    assert!(std::fs::read(&cached.path).unwrap() == data);
    assert_eq!(env.s3.bytes_served(), data.len() as u64);

    // With every waiter gone, the download still lands.
    let other = random_bytes(8 * MIB, 8);
    let lonely = env.put("drop/lonely.bin", &other).await;
    let only = {
        let (fetcher, lonely) = (Arc::clone(&fetcher), lonely.clone());
        tokio::spawn(async move { fetcher.fetch(&lonely).await })
    };
    while fetcher.counters().downloads_started < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    only.abort();
    fetcher.drain(Duration::from_secs(30)).await;
    assert_eq!(fetcher.active_downloads(), 0);
    let requests = env.s3.get_requests();
    assert!(fetcher.fetch(&lonely).await.unwrap().cache_hit);
    assert_eq!(env.s3.get_requests(), requests);
}

#[tokio::test]
async fn downloads_are_limited_to_the_configured_slots() {
    let env = Env::new().await;
    let mut artifacts = Vec::new();
    for i in 0..6 {
        let data = random_bytes(6 * MIB, 100 + i);
        artifacts.push(env.put(&format!("limit/a{i}.bin"), &data).await);
    }
    let fetcher = env
        .fetcher(
            FetchSettings {
                max_concurrent_downloads: 2,
                ..settings()
            },
            1 << 30,
        )
        .await;
    let mut tasks = tokio::task::JoinSet::new();
    for artifact in artifacts {
        let fetcher = Arc::clone(&fetcher);
        tasks.spawn(async move { fetcher.fetch(&artifact).await.map(|c| c.size) });
    }
    let mut peak = 0;
    while fetcher.counters().downloads_succeeded < 6 {
        peak = peak.max(fetcher.active_downloads());
        tokio::task::yield_now().await;
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), 6 * MIB as u64);
    }
    assert_eq!(fetcher.counters().downloads_started, 6);
    assert!((1..=2).contains(&peak), "peak {peak}");
    assert_eq!(env.cached_files().len(), 6);
}

#[tokio::test]
async fn a_download_over_its_deadline_fails_and_leaves_nothing() {
    let env = Env::new().await;
    let data = random_bytes(32 * MIB, 9);
    let artifact = env.put("slow/app.tar.gz", &data).await;
    let fetcher = env
        .fetcher(
            FetchSettings {
                download_timeout: Duration::from_millis(5),
                part_concurrency: 1,
                ..settings()
            },
            1 << 30,
        )
        .await;
    match fetcher.fetch(&artifact).await.unwrap_err() {
        FetchError::Timeout { what, after, .. } => {
            assert_eq!(what.to_string(), "the download");
            assert_eq!(after, Duration::from_millis(5));
        }
        other => panic!("{other:?}"),
    }
    assert!(env.cached_files().is_empty(), "{:?}", env.cached_files());
}

#[tokio::test]
async fn bucket_credentials_come_before_the_configured_keys() {
    let env = Env::new().await;
    let data = random_bytes(1000, 10);
    let artifact = env.put("creds/app.bin", &data).await;
    let mut config = singularity_common::config::S3BaseConfig {
        artifact_cache_directory: env.cache_dir.path().to_owned(),
        s3_access_key: Some(singularity_common::config::Secret::new("wrong-access-key")),
        s3_secret_key: Some(singularity_common::config::Secret::new("wrong-secret-key")),
        s3_endpoint: Some(env.s3.endpoint().to_owned()),
        s3_path_style_access: true,
        s3_region: Some(env.s3.region().to_owned()),
        ..Default::default()
    };
    config.s3_bucket_credentials.insert(
        env.bucket.clone(),
        singularity_common::config::BucketCredentials {
            access_key: singularity_common::config::Secret::new(env.s3.access_key()),
            secret_key: singularity_common::config::Secret::new(env.s3.secret_key()),
        },
    );
    config.s3_bucket_credentials.insert(
        "se-test-same-keys".to_owned(),
        singularity_common::config::BucketCredentials {
            access_key: singularity_common::config::Secret::new(env.s3.access_key()),
            secret_key: singularity_common::config::Secret::new(env.s3.secret_key()),
        },
    );
    let clients = singularity_s3_downloader::fetch::configured_s3_clients(&config).await;
    assert_eq!(clients.distinct_clients(), 2);
    let cache =
        singularity_s3_downloader::cache::ArtifactCache::open(env.cache_dir.path(), 1 << 30)
            .await
            .unwrap();
    let fetcher = Fetcher::new(cache, Arc::new(clients.clone()), settings());
    let cached = fetcher.fetch(&artifact).await.unwrap();
    assert!(std::fs::read(&cached.path).unwrap() == data);

    // Another bucket falls back to the configured (wrong) keys: refused, not retried.
    env.s3.create_bucket("se-test-other");
    let other = S3Artifact {
        s3_bucket: "se-test-other".to_owned(),
        filename: "other.bin".to_owned(),
        ..artifact.clone()
    };
    let requests = env.s3.get_requests();
    let error = fetcher.fetch(&other).await.unwrap_err();
    match &error {
        FetchError::S3 { bucket, .. } => {
            assert_eq!(bucket, "se-test-other");
            let message = error.to_string();
            assert!(message.contains("failed:"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.s3.get_requests(), requests + 1);
    assert!(
        clients
            .client_for("se-test-other")
            .await
            .config()
            .retry_config()
            .is_some_and(|r| r.max_attempts() == 1)
    );
}
