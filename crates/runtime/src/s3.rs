//! S3 client construction, independent of how the daemons spell their configuration.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::Region;
use singularity_common::config::{S3BaseConfig, Secret};

/// Region used when neither the options nor the AWS environment/profile name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Access key pair given in configuration.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// How to build an S3 client. `Default` gives the AWS defaults: default credential chain,
/// region from the environment or profile (else [`DEFAULT_REGION`]), AWS endpoints,
/// virtual-hosted addressing, SDK timeouts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3ClientOptions {
    /// Endpoint URL of a non-AWS or non-default S3 service, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region to sign for; when `None`, the AWS chain's region, else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`.
    pub path_style: bool,
    /// Keys from configuration; `None` uses the AWS default credential chain (environment,
    /// profile files, web identity, container and instance metadata).
    pub credentials: Option<StaticCredentials>,
    /// Deadline for a whole operation, retries included.
    pub operation_timeout: Option<Duration>,
    /// Deadline for one attempt of an operation.
    pub operation_attempt_timeout: Option<Duration>,
    /// Deadline for establishing a connection.
    pub connect_timeout: Option<Duration>,
}

impl StaticCredentials {
    /// A key pair from configuration; `None` unless both halves are present, as the Java
    /// daemons required.
    pub fn from_pair(access_key: Option<&Secret>, secret_key: Option<&Secret>) -> Option<Self> {
        Some(Self {
            access_key: access_key?.expose().to_owned(),
            secret_key: secret_key?.expose().to_owned(),
        })
    }
}

impl S3ClientOptions {
    /// Options for reaching `bucket` with the s3base configuration: that bucket's
    /// `s3BucketCredentials` entry, else the configured keys, else the AWS default chain;
    /// endpoint, path-style addressing and region apply to every bucket.
    pub fn from_config(config: &S3BaseConfig, bucket: &str) -> Self {
        let credentials = match config.s3_bucket_credentials.get(bucket) {
            Some(bucket_keys) => StaticCredentials::from_pair(
                Some(&bucket_keys.access_key),
                Some(&bucket_keys.secret_key),
            ),
            None => StaticCredentials::from_pair(
                config.s3_access_key.as_ref(),
                config.s3_secret_key.as_ref(),
            ),
        };
        Self {
            endpoint: config.s3_endpoint.clone(),
            region: config.s3_region.clone(),
            path_style: config.s3_path_style_access,
            credentials,
            ..Self::default()
        }
    }
}

/// Builds an S3 client. Never fails: with no credentials anywhere, the client still builds
/// and each request reports the missing credentials, so a daemon starts and says why its
/// uploads fail instead of refusing to run.
pub async fn build_s3_client(options: &S3ClientOptions) -> aws_sdk_s3::Client {
    let region = RegionProviderChain::first_try(options.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static(DEFAULT_REGION));
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some(creds) = &options.credentials {
        loader = loader.credentials_provider(Credentials::new(
            &creds.access_key,
            &creds.secret_key,
            None,
            None,
            "singularity-config",
        ));
    }
    let mut timeouts = TimeoutConfig::builder();
    if let Some(t) = options.operation_timeout {
        timeouts = timeouts.operation_timeout(t);
    }
    if let Some(t) = options.operation_attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    if let Some(t) = options.connect_timeout {
        timeouts = timeouts.connect_timeout(t);
    }
    loader = loader.timeout_config(timeouts.build());
    let shared = loader.load().await;

    let mut config =
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(options.path_style);
    if let Some(endpoint) = &options.endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Keys, endpoint, region, and a bucket `special` with keys of its own.
    pub(crate) fn s3_config() -> S3BaseConfig {
        let mut config = S3BaseConfig {
            s3_access_key: Some(Secret::new("default-access")),
            s3_secret_key: Some(Secret::new("default-secret")),
            s3_endpoint: Some("http://127.0.0.1:9000".to_owned()),
            s3_path_style_access: true,
            s3_region: Some("eu-west-1".to_owned()),
            ..S3BaseConfig::default()
        };
        config.s3_bucket_credentials.insert(
            "special".to_owned(),
            singularity_common::config::BucketCredentials {
                access_key: Secret::new("special-access"),
                secret_key: Secret::new("special-secret"),
            },
        );
        config
    }

    #[test]
    fn bucket_credentials_win_over_the_configured_keys() {
        let options = S3ClientOptions::from_config(&s3_config(), "special");
        let creds = options.credentials.expect("credentials");
        assert_eq!(creds.access_key, "special-access");
        assert_eq!(creds.secret_key, "special-secret");
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(options.region.as_deref(), Some("eu-west-1"));
        assert!(options.path_style);
    }

    #[test]
    fn other_buckets_use_the_configured_keys() {
        let creds = S3ClientOptions::from_config(&s3_config(), "logs")
            .credentials
            .expect("credentials");
        assert_eq!(creds.access_key, "default-access");
        assert_eq!(creds.secret_key, "default-secret");
    }

    #[test]
    fn without_both_keys_the_default_chain_is_used() {
        let mut config = s3_config();
        config.s3_secret_key = None;
        let options = S3ClientOptions::from_config(&config, "logs");
        assert_eq!(options.credentials, None);
    }

    #[test]
    fn secret_is_not_printed() {
        let creds = StaticCredentials {
            access_key: "AKIAEXAMPLE".to_owned(),
            secret_key: "very-secret".to_owned(),
        };
        let printed = format!(
            "{:?}",
            S3ClientOptions {
                credentials: Some(creds),
                ..Default::default()
            }
        );
        assert!(printed.contains("AKIAEXAMPLE"));
        assert!(!printed.contains("very-secret"), "{printed}");
    }

    #[tokio::test]
    async fn options_reach_the_client_config() {
        let client = build_s3_client(&S3ClientOptions {
            endpoint: Some("http://127.0.0.1:1".to_owned()),
            region: Some("eu-west-3".to_owned()),
            path_style: true,
            credentials: Some(StaticCredentials {
                access_key: "a".to_owned(),
                secret_key: "b".to_owned(),
            }),
            operation_timeout: Some(Duration::from_secs(30)),
            operation_attempt_timeout: Some(Duration::from_secs(10)),
            connect_timeout: Some(Duration::from_secs(2)),
        })
        .await;
        let config = client.config();
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-3"));
        let timeouts = config.timeout_config().unwrap();
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(2)));
    }
}
