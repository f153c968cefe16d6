//! Which S3 client reads which bucket.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_sdk_s3::Client;
use singularity_common::config::S3BaseConfig;
use singularity_runtime::{S3ClientMap, S3ClientTuning};

/// Gives the S3 client to read a bucket with.
pub trait S3Clients: Send + Sync {
    /// The client for `bucket`.
    fn client_for<'a>(
        &'a self,
        bucket: &'a str,
    ) -> Pin<Box<dyn Future<Output = Client> + Send + 'a>>;
}

/// One client for every bucket.
impl S3Clients for Client {
    fn client_for<'a>(
        &'a self,
        _bucket: &'a str,
    ) -> Pin<Box<dyn Future<Output = Client> + Send + 'a>> {
        Box::pin(std::future::ready(self.clone()))
    }
}

/// Clients as the s3base configuration assigns keys to buckets ([`S3ClientMap`]).
impl S3Clients for S3ClientMap {
    fn client_for<'a>(
        &'a self,
        bucket: &'a str,
    ) -> Pin<Box<dyn Future<Output = Client> + Send + 'a>> {
        Box::pin(self.client_for_bucket(bucket))
    }
}

/// The downloader's clients for the s3base configuration: `s3BucketCredentials[bucket]` when
/// present, else the configured `s3AccessKey` / `s3SecretKey`, else the AWS default
/// credential chain; one client (and one connection pool) per distinct key pair, those of
/// the configured buckets built at once. They connect within `s3ChunkDownloadTimeoutMillis`.
///
/// The clients do not retry by themselves: the fetcher retries each part with its own
/// deadline and backoff, so `s3ChunkRetries` is the real number of retries.
pub async fn configured_s3_clients(config: &S3BaseConfig) -> S3ClientMap {
    let clients = S3ClientMap::new(
        config,
        S3ClientTuning {
            connect_timeout: Some(Duration::from_millis(
                config.s3_chunk_download_timeout_millis.max(1),
            )),
            checksums_only_when_required: false,
        },
    );
    clients.build_configured().await;
    clients
}
