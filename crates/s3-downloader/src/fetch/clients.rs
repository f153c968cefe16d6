//! Which S3 client reads which bucket.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use singularity_common::config::S3BaseConfig;
use singularity_runtime::{S3ClientOptions, build_s3_client};

/// Gives the S3 client to read a bucket with.
pub trait S3Clients: Send + Sync {
    /// The client for `bucket`.
    fn client_for(&self, bucket: &str) -> Client;
}

/// One client for every bucket.
impl S3Clients for Client {
    fn client_for(&self, _bucket: &str) -> Client {
        self.clone()
    }
}

/// Clients as the s3base configuration asks: `s3BucketCredentials[bucket]` when present, else
/// the configured `s3AccessKey` / `s3SecretKey`, else the AWS default credential chain; all
/// with the configured endpoint, path-style addressing and region. One client (and one
/// connection pool) per distinct key pair.
///
/// The clients do not retry by themselves: the fetcher retries each part with its own
/// deadline and backoff, so `s3ChunkRetries` is the real number of retries.
#[derive(Debug, Clone)]
pub struct ConfiguredS3Clients {
    default: Client,
    by_bucket: HashMap<String, Client>,
    distinct: usize,
}

impl ConfiguredS3Clients {
    /// Builds the clients. Never fails: missing credentials show up as errors of the
    /// requests that need them.
    pub async fn new(config: &S3BaseConfig) -> Self {
        let connect_timeout = Some(Duration::from_millis(
            config.s3_chunk_download_timeout_millis.max(1),
        ));
        let options = |bucket: &str| S3ClientOptions {
            connect_timeout,
            ..S3ClientOptions::from_config(config, bucket)
        };
        // Bucket names are never empty, so "" stands for any bucket without keys of its own.
        let default_options = options("");
        let default = client(&default_options).await;
        let mut built = vec![(default_options, default.clone())];
        let mut by_bucket = HashMap::new();
        for bucket in config.s3_bucket_credentials.keys() {
            let wanted = options(bucket);
            let client = match built.iter().find(|(options, _)| *options == wanted) {
                Some((_, client)) => client.clone(),
                None => {
                    let client = client(&wanted).await;
                    built.push((wanted, client.clone()));
                    client
                }
            };
            by_bucket.insert(bucket.clone(), client);
        }
        Self {
            default,
            by_bucket,
            distinct: built.len(),
        }
    }

    /// Number of distinct clients (one per key pair) built.
    pub fn distinct_clients(&self) -> usize {
        self.distinct
    }
}

/// A client that makes one attempt per request: the fetcher retries parts itself.
async fn client(options: &S3ClientOptions) -> Client {
    let client = build_s3_client(options).await;
    let config = client
        .config()
        .to_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    Client::from_conf(config)
}

impl S3Clients for ConfiguredS3Clients {
    fn client_for(&self, bucket: &str) -> Client {
        self.by_bucket.get(bucket).unwrap_or(&self.default).clone()
    }
}
