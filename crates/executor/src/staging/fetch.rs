//! In-process downloads into the artifact cache: S3 objects (the fallback when the downloader
//! is not used or fails) and external URLs (always in-process).
//!
//! One object streams at a time, straight into a verified cache file; the downloader daemon is
//! the fast path for S3.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use singularity_common::config::S3BaseConfig;
use singularity_common::records::{ExternalArtifact, RemoteArtifact, S3Artifact};
use singularity_runtime::{S3ClientOptions, build_s3_client};

use super::cache::{self, CacheFill, Expected};
use super::{HttpFetchError, S3ReadError, StagingError};

/// Idle time allowed between two reads of an external download.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to connect for an external download.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A response body, read chunk by chunk.
trait Body: Send {
    /// Why a read failed.
    type Error;
    /// The next chunk; `None` at the end.
    fn next(&mut self) -> impl Future<Output = Result<Option<Bytes>, Self::Error>> + Send;
}

impl Body for aws_sdk_s3::primitives::ByteStream {
    type Error = aws_sdk_s3::primitives::ByteStreamError;

    async fn next(&mut self) -> Result<Option<Bytes>, Self::Error> {
        self.try_next().await
    }
}

impl Body for reqwest::Response {
    type Error = reqwest::Error;

    async fn next(&mut self) -> Result<Option<Bytes>, Self::Error> {
        self.chunk().await
    }
}

/// Downloads remote artifacts into the cache, reusing clients across artifacts.
pub(crate) struct Fetcher {
    s3: S3BaseConfig,
    s3_clients: HashMap<String, aws_sdk_s3::Client>,
    http: Option<reqwest::Client>,
}

impl Fetcher {
    pub(crate) fn new(s3: &S3BaseConfig) -> Self {
        Fetcher {
            s3: s3.clone(),
            s3_clients: HashMap::new(),
            http: None,
        }
    }

    fn cache_dir(&self) -> &Path {
        &self.s3.artifact_cache_directory
    }

    /// The cached file of an S3 artifact, downloading it on a miss.
    pub(crate) async fn fetch_s3(
        &mut self,
        artifact: &S3Artifact,
    ) -> Result<PathBuf, StagingError> {
        let expected = expected(artifact);
        if let Some(hit) = cache::lookup(self.cache_dir(), &expected).await? {
            tracing::info!(artifact = %artifact.name, path = %hit.display(), "using cached file");
            return Ok(hit);
        }
        let from = format!("s3://{}/{}", artifact.s3_bucket, artifact.s3_object_key);
        let millis = self.s3.s3_download_timeout_millis;
        let s3_error = |source: S3ReadError| StagingError::S3 {
            name: artifact.name.clone(),
            bucket: artifact.s3_bucket.clone(),
            key: artifact.s3_object_key.clone(),
            source,
        };
        let download = async {
            let client = self.s3_client(&artifact.s3_bucket).await;
            let object = client
                .get_object()
                .bucket(&artifact.s3_bucket)
                .key(&artifact.s3_object_key)
                .send()
                .await
                .map_err(|e| s3_error(S3ReadError::GetObject(Box::new(e))))?;
            fill(
                self.cache_dir(),
                &artifact.name,
                &from,
                &expected,
                object.body,
                |e| s3_error(S3ReadError::Body(e)),
            )
            .await
        };
        let started = std::time::Instant::now();
        let path = with_deadline(&artifact.name, &from, millis, download).await?;
        tracing::info!(
            artifact = %artifact.name,
            from,
            path = %path.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "downloaded artifact into the cache"
        );
        Ok(path)
    }

    /// The cached file of an external artifact, downloading it on a miss.
    pub(crate) async fn fetch_external(
        &mut self,
        artifact: &ExternalArtifact,
    ) -> Result<PathBuf, StagingError> {
        let expected = expected(artifact);
        if let Some(hit) = cache::lookup(self.cache_dir(), &expected).await? {
            tracing::info!(artifact = %artifact.name, path = %hit.display(), "using cached file");
            return Ok(hit);
        }
        let http_error = |source: HttpFetchError| StagingError::Http {
            name: artifact.name.clone(),
            url: artifact.url.clone(),
            source,
        };
        let client = self
            .http_client()
            .map_err(|e| http_error(HttpFetchError::Client(e)))?;
        let response = client
            .get(&artifact.url)
            .send()
            .await
            .map_err(|e| http_error(HttpFetchError::Request(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_error(HttpFetchError::Status(status)));
        }
        let started = std::time::Instant::now();
        let path = fill(
            self.cache_dir(),
            &artifact.name,
            &artifact.url,
            &expected,
            response,
            |e| http_error(HttpFetchError::Body(e)),
        )
        .await?;
        tracing::info!(
            artifact = %artifact.name,
            url = %artifact.url,
            path = %path.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "downloaded artifact into the cache"
        );
        Ok(path)
    }

    async fn s3_client(&mut self, bucket: &str) -> aws_sdk_s3::Client {
        if let Some(client) = self.s3_clients.get(bucket) {
            return client.clone();
        }
        let mut options = S3ClientOptions::from_config(&self.s3, bucket);
        options.connect_timeout = Some(Duration::from_millis(
            self.s3.s3_chunk_download_timeout_millis,
        ));
        options.operation_attempt_timeout = Some(Duration::from_millis(
            self.s3.s3_chunk_download_timeout_millis,
        ));
        let client = build_s3_client(&options).await;
        self.s3_clients.insert(bucket.to_owned(), client.clone());
        client
    }

    fn http_client(&mut self) -> Result<reqwest::Client, reqwest::Error> {
        if let Some(client) = &self.http {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(HTTP_CONNECT_TIMEOUT)
            .read_timeout(HTTP_READ_TIMEOUT)
            .build()?;
        self.http = Some(client.clone());
        Ok(client)
    }
}

fn expected(artifact: &impl RemoteArtifact) -> Expected {
    Expected {
        cache_name: artifact.cache_name(),
        md5: artifact.md5sum().map(str::to_owned),
        size: artifact.filesize(),
    }
}

/// Streams `body` into a verified cache file; `read_error` turns a failed read into the error
/// to report.
async fn fill<B: Body>(
    cache_dir: &Path,
    name: &str,
    from: &str,
    expected: &Expected,
    mut body: B,
    read_error: impl Fn(B::Error) -> StagingError,
) -> Result<PathBuf, StagingError> {
    let fill = CacheFill::start(cache_dir, expected);
    while let Some(data) = body.next().await.map_err(&read_error)? {
        if !fill.write(data).await {
            break;
        }
    }
    fill.finish().await?.map_err(|source| StagingError::Cache {
        name: name.to_owned(),
        from: from.to_owned(),
        source: Box::new(source),
    })
}

async fn with_deadline<T>(
    name: &str,
    from: &str,
    millis: u64,
    work: impl Future<Output = Result<T, StagingError>>,
) -> Result<T, StagingError> {
    if millis == 0 {
        return work.await;
    }
    tokio::time::timeout(Duration::from_millis(millis), work)
        .await
        .unwrap_or_else(|_| {
            Err(StagingError::Timeout {
                name: name.to_owned(),
                from: from.to_owned(),
                millis,
            })
        })
}

/// An error and its causes on one line (reqwest hides the interesting part in the sources).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
