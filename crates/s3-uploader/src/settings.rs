//! What the uploader takes from the configuration classes base, s3base and s3uploader.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use singularity_common::config::{
    BucketCredentials, LoadedConfig, S3BaseConfig, S3ContentHeaders, S3UploaderConfig,
};
use singularity_runtime::{Backoff, StaticCredentials};

use crate::error::RunError;

/// Everything [`crate::run`] needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `s3UploaderMetadataDirectory`: where `*.s3.json` files appear.
    pub metadata_directory: PathBuf,
    /// `s3UploaderMetadataSuffix`.
    pub metadata_suffix: String,
    /// The `%host` token: `hostname` from the configuration, else the system's.
    pub hostname: String,
    /// `executorMaxUploadThreads`: files uploaded at once.
    pub workers: usize,
    /// `checkUploadsEverySeconds`: period of the full upload pass.
    pub check_uploads_every: Duration,
    /// `recheckFilesEverySeconds`: period of the full metadata rescan.
    pub recheck_files_every: Duration,
    /// `stopCheckingAfterMillisWithoutNewFile`.
    pub stop_checking_after_millis: i64,
    /// `maxSingleUploadSizeBytes`: larger files go multipart.
    pub max_single_upload_size: u64,
    /// `uploadPartSize`.
    pub part_size: u64,
    /// `uploadPartConcurrency`.
    pub part_concurrency: usize,
    /// `retryCount` attempts of one S3 request, waiting per `retryWaitMs`.
    pub request_retry: Backoff,
    /// How long a failed file waits before its next pass: `retryWaitMs` doubling up to
    /// `retryMaxWaitMillis`.
    pub file_retry: Backoff,
    /// `checkForOpenFiles`.
    pub check_for_open_files: bool,
    /// `s3ContentHeaders`.
    pub content_headers: Vec<S3ContentHeaders>,
    /// `s3RequestTimeoutMillis`.
    pub request_timeout: Duration,
    /// `shutdownGraceMillis`.
    pub shutdown_grace: Duration,
    /// `debounceMillis`.
    pub debounce: Duration,
    /// `ledgerPath`.
    pub ledger_path: PathBuf,
    /// `metricsHttpPort`; `None` for no listener.
    pub metrics_port: Option<u16>,
    /// Configured keys, by precedence.
    pub credentials: CredentialConfig,
    /// The s3base class: endpoint, path style, region.
    pub s3: S3BaseConfig,
}

/// The keys the configuration offers, apart from those of each metadata file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialConfig {
    /// s3uploader `s3BucketCredentials`.
    pub uploader_buckets: BTreeMap<String, BucketCredentials>,
    /// s3base `s3BucketCredentials`.
    pub base_buckets: BTreeMap<String, BucketCredentials>,
    /// s3uploader `s3AccessKey` / `s3SecretKey`.
    pub uploader_keys: Option<StaticCredentials>,
    /// s3base `s3AccessKey` / `s3SecretKey`.
    pub base_keys: Option<StaticCredentials>,
}

impl CredentialConfig {
    /// The keys for an upload to `bucket`: the metadata's own pair when both halves are set,
    /// then the uploader's per-bucket keys, then s3base's, then the uploader's keys, then
    /// s3base's; `None` means the AWS default credential chain.
    pub fn resolve(
        &self,
        bucket: &str,
        metadata_access_key: Option<&str>,
        metadata_secret_key: Option<&str>,
    ) -> Option<StaticCredentials> {
        if let (Some(access_key), Some(secret_key)) = (metadata_access_key, metadata_secret_key) {
            return Some(StaticCredentials {
                access_key: access_key.to_owned(),
                secret_key: secret_key.to_owned(),
            });
        }
        let by_bucket = self
            .uploader_buckets
            .get(bucket)
            .or_else(|| self.base_buckets.get(bucket));
        if let Some(keys) = by_bucket {
            return Some(StaticCredentials {
                access_key: keys.access_key.expose().to_owned(),
                secret_key: keys.secret_key.expose().to_owned(),
            });
        }
        self.uploader_keys
            .clone()
            .or_else(|| self.base_keys.clone())
    }
}

fn millis(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn count(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX).max(1)
}

impl Settings {
    /// The settings of a configuration loaded with
    /// [`ConfigClass::FOR_S3_UPLOADER`](singularity_common::config::ConfigClass).
    pub fn from_loaded(loaded: &LoadedConfig) -> Result<Self, RunError> {
        let s3 = loaded
            .s3
            .as_ref()
            .ok_or(RunError::ClassMissing { class: "s3" })?;
        let uploader = loaded.s3uploader.as_ref().ok_or(RunError::ClassMissing {
            class: "s3uploader",
        })?;
        let hostname = uploader
            .common
            .hostname
            .clone()
            .or_else(|| loaded.base.common.hostname.clone())
            .unwrap_or_else(system_hostname);
        Ok(Self::new(
            loaded.base.s3_uploader_metadata_directory.clone(),
            loaded.base.s3_uploader_metadata_suffix.clone(),
            hostname,
            s3,
            uploader,
        ))
    }

    /// Settings from the classes themselves.
    pub fn new(
        metadata_directory: PathBuf,
        metadata_suffix: String,
        hostname: String,
        s3: &S3BaseConfig,
        uploader: &S3UploaderConfig,
    ) -> Self {
        let retry_base = millis(uploader.retry_wait_ms);
        let retry_max = millis(uploader.retry_max_wait_millis).max(retry_base);
        Self {
            metadata_directory,
            metadata_suffix,
            hostname,
            workers: count(uploader.executor_max_upload_threads),
            check_uploads_every: Duration::from_secs(uploader.check_uploads_every_seconds.max(1)),
            recheck_files_every: Duration::from_secs(uploader.recheck_files_every_seconds.max(1)),
            stop_checking_after_millis: i64::try_from(
                uploader.stop_checking_after_millis_without_new_file,
            )
            .unwrap_or(i64::MAX),
            max_single_upload_size: uploader.max_single_upload_size_bytes,
            part_size: uploader.upload_part_size.max(crate::plan::MIN_PART_SIZE),
            part_concurrency: count(uploader.upload_part_concurrency),
            request_retry: Backoff {
                attempts: uploader.retry_count.max(1),
                base: retry_base,
                // Inline waits stay short: a file that keeps failing waits for its next pass.
                max: retry_max.min(Duration::from_secs(30)),
            },
            file_retry: Backoff {
                attempts: u32::MAX,
                base: retry_base,
                max: retry_max,
            },
            check_for_open_files: uploader.check_for_open_files,
            content_headers: uploader.s3_content_headers.clone(),
            request_timeout: millis(uploader.s3_request_timeout_millis.max(1)),
            shutdown_grace: millis(uploader.shutdown_grace_millis),
            debounce: millis(uploader.debounce_millis),
            ledger_path: uploader.ledger_path.clone(),
            metrics_port: uploader.metrics_http_port.filter(|port| *port != 0),
            credentials: CredentialConfig {
                uploader_buckets: uploader.s3_bucket_credentials.clone(),
                base_buckets: s3.s3_bucket_credentials.clone(),
                uploader_keys: StaticCredentials::from_pair(
                    uploader.s3_access_key.as_ref(),
                    uploader.s3_secret_key.as_ref(),
                ),
                base_keys: StaticCredentials::from_pair(
                    s3.s3_access_key.as_ref(),
                    s3.s3_secret_key.as_ref(),
                ),
            },
            s3: s3.clone(),
        }
    }
}

/// The host name the kernel reports (`uname -n`).
pub fn system_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use singularity_common::config::Secret;

    fn pair(access: &str, secret: &str) -> StaticCredentials {
        StaticCredentials {
            access_key: access.to_owned(),
            secret_key: secret.to_owned(),
        }
    }

    fn bucket_keys(access: &str, secret: &str) -> BucketCredentials {
        BucketCredentials {
            access_key: Secret::new(access),
            secret_key: Secret::new(secret),
        }
    }

    fn full() -> CredentialConfig {
        let mut config = CredentialConfig {
            uploader_keys: Some(pair("uploader-a", "uploader-s")),
            base_keys: Some(pair("base-a", "base-s")),
            ..CredentialConfig::default()
        };
        config
            .uploader_buckets
            .insert("both".into(), bucket_keys("ub-a", "ub-s"));
        config
            .base_buckets
            .insert("both".into(), bucket_keys("bb-a", "bb-s"));
        config
            .base_buckets
            .insert("base-only".into(), bucket_keys("bo-a", "bo-s"));
        config
    }

    #[test]
    fn metadata_keys_win_only_as_a_pair() {
        let config = full();
        assert_eq!(
            config.resolve("both", Some("m-a"), Some("m-s")),
            Some(pair("m-a", "m-s"))
        );
        assert_eq!(
            config.resolve("both", Some("m-a"), None),
            Some(pair("ub-a", "ub-s"))
        );
        assert_eq!(
            config.resolve("both", None, Some("m-s")),
            Some(pair("ub-a", "ub-s"))
        );
    }

    #[test]
    fn bucket_keys_then_configured_keys_then_the_default_chain() {
        let mut config = full();
        assert_eq!(
            config.resolve("base-only", None, None),
            Some(pair("bo-a", "bo-s"))
        );
        assert_eq!(
            config.resolve("other", None, None),
            Some(pair("uploader-a", "uploader-s"))
        );
        config.uploader_keys = None;
        assert_eq!(
            config.resolve("other", None, None),
            Some(pair("base-a", "base-s"))
        );
        config.base_keys = None;
        assert_eq!(config.resolve("other", None, None), None);
        assert_eq!(
            config.resolve("both", None, None),
            Some(pair("ub-a", "ub-s"))
        );
    }

    fn settings_of(uploader: &S3UploaderConfig) -> Settings {
        Settings::new(
            "/m".into(),
            ".s3.json".into(),
            "h".into(),
            &S3BaseConfig::default(),
            uploader,
        )
    }

    #[test]
    fn settings_follow_the_java_keys() {
        let uploader = S3UploaderConfig {
            retry_wait_ms: 500,
            retry_count: 0,
            executor_max_upload_threads: 0,
            upload_part_size: 1,
            metrics_http_port: Some(0),
            ..S3UploaderConfig::default()
        };
        let settings = settings_of(&uploader);
        assert_eq!(settings.request_retry.attempts, 1);
        assert_eq!(settings.request_retry.base, Duration::from_millis(500));
        assert_eq!(settings.file_retry.max, Duration::from_secs(300));
        assert_eq!(settings.workers, 1);
        assert_eq!(settings.part_size, crate::plan::MIN_PART_SIZE);
        assert_eq!(settings.metrics_port, None);
        assert_eq!(settings.stop_checking_after_millis, 604_800_000);
    }

    /// `retryCount` counts attempts in all (the Java uploader stops after N attempts), which
    /// is what [`Backoff::attempts`] counts: no translation, only at least one attempt.
    #[test]
    fn retry_count_is_the_number_of_attempts() {
        for (retry_count, attempts) in [(0, 1), (1, 1), (2, 2), (5, 5)] {
            let uploader = S3UploaderConfig {
                retry_count,
                ..S3UploaderConfig::default()
            };
            let settings = settings_of(&uploader);
            assert_eq!(settings.request_retry.attempts, attempts, "{retry_count}");
            assert!(!settings.request_retry.gives_up_after(attempts - 1));
            assert!(settings.request_retry.gives_up_after(attempts));
        }
    }
}
