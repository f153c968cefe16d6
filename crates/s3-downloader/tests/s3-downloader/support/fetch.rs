//! What the fetch and cache tests share: a real S3-protocol server with one bucket, a cache
//! directory, and artifacts pointing at objects put there.
// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use singularity_common::records::S3Artifact;
use singularity_runtime::{S3ClientOptions, StaticCredentials, build_s3_client};
use singularity_s3_downloader::cache::{ArtifactCache, INDEX_FILE_NAME};
use singularity_s3_downloader::fetch::{FetchSettings, Fetcher};
use singularity_test_support::S3Server;
use tempfile::TempDir;

pub const MIB: usize = 1024 * 1024;

pub struct Env {
    pub s3: S3Server,
    pub client: Client,
    pub bucket: String,
    pub cache_dir: TempDir,
}

impl Env {
    pub async fn new() -> Self {
        let s3 = S3Server::start();
        let bucket = format!(
            "se-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        s3.create_bucket(&bucket);
        let client = build_s3_client(&options(&s3)).await;
        let cache_dir = tempfile::Builder::new()
            .prefix("se-test-cache-")
            .tempdir()
            .unwrap();
        Self {
            s3,
            client,
            bucket,
            cache_dir,
        }
    }

    /// Puts `data` at `key` and returns an artifact for it with md5 and size.
    pub async fn put(&self, key: &str, data: &[u8]) -> S3Artifact {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await
            .unwrap();
        S3Artifact {
            name: "artifact".to_owned(),
            filename: key.rsplit('/').next().unwrap().to_owned(),
            md5sum: Some(singularity_artifacts::md5_bytes(data)),
            target_folder_relative_to_task: None,
            filesize: Some(data.len() as i64),
            is_artifact_list: None,
            s3_bucket: self.bucket.clone(),
            s3_object_key: key.to_owned(),
        }
    }

    pub async fn fetcher(&self, settings: FetchSettings, max_bytes: u64) -> Arc<Fetcher> {
        let cache = ArtifactCache::open(self.cache_dir.path(), max_bytes)
            .await
            .unwrap();
        Arc::new(Fetcher::new(cache, Arc::new(self.client.clone()), settings))
    }

    /// Files in the cache directory, index files aside, sorted.
    pub fn cached_files(&self) -> Vec<String> {
        cached_files(self.cache_dir.path())
    }
}

pub fn cached_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.starts_with(INDEX_FILE_NAME))
        .collect();
    names.sort();
    names
}

pub fn options(s3: &S3Server) -> S3ClientOptions {
    S3ClientOptions {
        endpoint: Some(s3.endpoint().to_owned()),
        region: Some(s3.region().to_owned()),
        path_style: true,
        credentials: Some(StaticCredentials {
            access_key: s3.access_key().to_owned(),
            secret_key: s3.secret_key().to_owned(),
        }),
        ..Default::default()
    }
}

/// Small parts, so that a few MiB already make a multi-part transfer.
pub fn settings() -> FetchSettings {
    FetchSettings {
        part_size: MIB as u64,
        part_concurrency: 4,
        part_timeout: Duration::from_secs(20),
        part_attempts: 3,
        download_timeout: Duration::from_secs(60),
        max_concurrent_downloads: 4,
    }
}
