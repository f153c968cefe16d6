//! Which S3 client signs a request: one client (and one connection pool) per distinct key
//! pair, built on first use and kept for the life of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::config::retry::RetryConfig;
use singularity_common::config::S3BaseConfig;

use crate::s3::{S3ClientOptions, StaticCredentials, build_s3_client};

/// What a daemon changes in the clients of an [`S3ClientMap`]. Every client makes one attempt
/// per request: the daemons retry with their own deadline and [`Backoff`](crate::Backoff).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct S3ClientTuning {
    /// Deadline for establishing a connection.
    pub connect_timeout: Option<Duration>,
    /// Compute request checksums only where S3 requires them, instead of the SDK's CRC32 of
    /// every body (for a daemon that sends a Content-MD5 and checks ETags itself).
    pub checksums_only_when_required: bool,
}

/// S3 clients for the s3base configuration (endpoint, path-style addressing, region), one per
/// distinct key pair (`None`: the AWS default credential chain). Clones share the clients.
///
/// A bucket's keys are its `s3BucketCredentials` entry, else the configured `s3AccessKey` /
/// `s3SecretKey`, else the default chain ([`S3ClientOptions::from_config`]); a daemon whose
/// keys come from elsewhere (the uploader's metadata files) asks by key pair.
#[derive(Debug, Clone)]
pub struct S3ClientMap {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: S3BaseConfig,
    tuning: S3ClientTuning,
    built: Mutex<HashMap<Option<StaticCredentials>, Client>>,
}

impl S3ClientMap {
    /// A map for `config`, with no client built yet. Never fails: missing credentials show up
    /// as errors of the requests that need them.
    pub fn new(config: &S3BaseConfig, tuning: S3ClientTuning) -> Self {
        Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                tuning,
                built: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Builds now the clients of every bucket the configuration names, and of any other
    /// bucket, so the first requests do not wait for them.
    pub async fn build_configured(&self) {
        // Bucket names are never empty, so "" stands for any bucket without keys of its own.
        let _ = self.client_for_bucket("").await;
        let buckets: Vec<String> = self
            .inner
            .config
            .s3_bucket_credentials
            .keys()
            .cloned()
            .collect();
        for bucket in buckets {
            let _ = self.client_for_bucket(&bucket).await;
        }
    }

    /// The keys requests to `bucket` are signed with, as the configuration says.
    pub fn credentials_for_bucket(&self, bucket: &str) -> Option<StaticCredentials> {
        S3ClientOptions::from_config(&self.inner.config, bucket).credentials
    }

    /// The client for `bucket`, built if it is the first with its keys.
    pub async fn client_for_bucket(&self, bucket: &str) -> Client {
        let credentials = self.credentials_for_bucket(bucket);
        self.client(credentials.as_ref()).await
    }

    /// The client signing with `credentials` (`None`: the AWS default chain), built if it is
    /// the first.
    pub async fn client(&self, credentials: Option<&StaticCredentials>) -> Client {
        let key = credentials.cloned();
        if let Some(client) = self.built().get(&key) {
            return client.clone();
        }
        let options = S3ClientOptions {
            credentials: key.clone(),
            connect_timeout: self.inner.tuning.connect_timeout,
            ..S3ClientOptions::from_config(&self.inner.config, "")
        };
        let client = build_s3_client(&options).await;
        let mut config = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::standard().with_max_attempts(1));
        if self.inner.tuning.checksums_only_when_required {
            config = config.request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        }
        let client = Client::from_conf(config.build());
        // Two first requests may build the same client; the first one stored is kept.
        self.built().entry(key).or_insert(client).clone()
    }

    /// Number of distinct clients (one per key pair) built so far.
    pub fn distinct_clients(&self) -> usize {
        self.built().len()
    }

    fn built(&self) -> MutexGuard<'_, HashMap<Option<StaticCredentials>, Client>> {
        // The map is consistent between any two statements: a panic elsewhere leaves it usable.
        self.inner
            .built
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use singularity_common::config::{BucketCredentials, Secret};

    /// The shared test configuration plus buckets `a` and `b` sharing a key pair and `c`
    /// with its own.
    fn config() -> S3BaseConfig {
        let mut config = crate::s3::tests::s3_config();
        for (bucket, access) in [("a", "a-access"), ("b", "a-access"), ("c", "c-access")] {
            config.s3_bucket_credentials.insert(
                bucket.to_owned(),
                BucketCredentials {
                    access_key: Secret::new(access),
                    secret_key: Secret::new("secret"),
                },
            );
        }
        config
    }

    #[tokio::test]
    async fn one_client_per_key_pair() {
        let map = S3ClientMap::new(&config(), S3ClientTuning::default());
        assert_eq!(map.distinct_clients(), 0);
        map.build_configured().await;
        // The configured keys, special's, a-access (buckets a and b) and c-access.
        assert_eq!(map.distinct_clients(), 4);
        let _ = map.client_for_bucket("other").await;
        let _ = map.client(None).await;
        assert_eq!(map.distinct_clients(), 5, "the default chain is a fifth");
        assert_eq!(
            map.credentials_for_bucket("b").map(|c| c.access_key),
            Some("a-access".to_owned())
        );
        assert_eq!(
            map.credentials_for_bucket("other").map(|c| c.access_key),
            Some("default-access".to_owned())
        );
    }

    #[tokio::test]
    async fn clients_make_one_attempt_with_the_tuning() {
        let map = S3ClientMap::new(
            &config(),
            S3ClientTuning {
                connect_timeout: Some(Duration::from_millis(1500)),
                checksums_only_when_required: true,
            },
        );
        let client = map.client_for_bucket("a").await;
        let config = client.config();
        assert_eq!(config.retry_config().map(|r| r.max_attempts()), Some(1));
        assert_eq!(
            config.timeout_config().and_then(|t| t.connect_timeout()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            config.request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
    }
}
