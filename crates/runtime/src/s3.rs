//! S3 client construction, independent of how the daemons spell their configuration.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::Region;

/// Region used when neither the options nor the AWS environment/profile name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Access key pair given in configuration.
#[derive(Clone, PartialEq, Eq)]
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
mod tests {
    use super::*;

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
