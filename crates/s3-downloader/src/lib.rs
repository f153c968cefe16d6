//! The S3 downloader: a local service that fetches S3 artifacts into a shared, bounded cache and
//! places them into task sandboxes, a drop-in for Singularity's `SingularityS3Downloader`.
//!
//! The executor sends `POST /download` with an `ArtifactDownloadRequest`
//! (`{"targetDirectory", "s3Artifact", "timeoutMillis"}`) over `127.0.0.1:7070` or the unix
//! socket `localDownloadSocket`. The answer is 200 with an empty body once the artifact is in
//! the cache and extracted (`.tar.gz`, `.tgz`) or copied into `targetDirectory`; 400 / 403 /
//! 404 / 405 / 500 otherwise, with a plain-text message (see [`error::ApiError`]). `GET
//! /healthz` answers `ok`; `GET /metrics` serves Prometheus text ([`metrics`]).
//!
//! - [`server`]: listeners, routes, request validation, placement, graceful shutdown.
//! - [`fetch`]: the transfer engine: parallel ranged GETs written in place, md5 and size
//!   checked while streaming, one download shared by every request for the same artifact.
//! - [`cache`]: the artifact cache (`<md5>-<filename>`), its SQLite index and LRU eviction.
//!
//! **Reads**: the configuration classes base, s3base and s3downloader
//! (`/etc/singularity.{base,s3base,s3downloader}.{properties,yaml,toml}`, or `--config`
//! files); S3. **Writes**: `artifactCacheDirectory` (artifacts and the index), the target
//! directories of requests (only below `allowedTargetDirectories`), the unix socket.
//!
//! Example (`/etc/singularity.s3base.yaml` plus `/etc/singularity.s3downloader.yaml`, here as
//! one consolidated YAML file; every key is in `docs/configuration.md`):
//!
//! ```yaml
//! s3:
//!   artifactCacheDirectory: /var/lib/singularity/artifacts
//!   localDownloadHttpPort: 7070
//!   localDownloadSocket: /run/singularity/s3downloader.sock
//! s3downloader:
//!   numDownloaderThreads: 5
//!   allowedTargetDirectories: [/var/lib/mesos, /tmp/mesos]
//!   artifactCacheMaxBytes: 10737418240
//!   defaultRequestTimeoutMillis: 30000
//!   shutdownGraceMillis: 20000
//! ```
//!
//! Exit codes ([`singularity_common::exit`]): 0 after a clean stop (SIGTERM / SIGINT), 1 on a
//! runtime failure (a listener cannot be bound, the cache cannot be opened), 78 when the
//! configuration is invalid (also from `--check-config`).

pub mod cache;
pub mod error;
pub mod fetch;
pub mod metrics;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use singularity_common::config::{LoadedConfig, S3BaseConfig};
use singularity_runtime::Shutdown;

use crate::cache::ArtifactCache;
use crate::error::ServeError;
use crate::fetch::{FetchSettings, Fetcher, S3Clients};
use crate::server::{Server, ServiceConfig};

/// The daemon's name: binary, log target, systemd unit.
pub const SERVICE: &str = "singularity-s3-downloader";

/// Everything [`run`] needs from the configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners, request handling and shutdown.
    pub service: ServiceConfig,
    /// Transfers.
    pub fetch: FetchSettings,
    /// `artifactCacheDirectory`.
    pub cache_directory: PathBuf,
    /// `artifactCacheMaxBytes`.
    pub cache_max_bytes: u64,
    /// The s3base class, for building the S3 clients.
    pub s3: S3BaseConfig,
}

impl Config {
    /// The settings of a configuration loaded with
    /// [`ConfigClass::FOR_S3_DOWNLOADER`](singularity_common::config::ConfigClass).
    pub fn from_loaded(loaded: &LoadedConfig) -> Result<Self, ServeError> {
        let missing = |key: &'static str| ServeError::Config {
            key,
            value: String::new(),
            reason: "the configuration was loaded without this class",
        };
        let s3 = loaded.s3.as_ref().ok_or_else(|| missing("s3"))?;
        let downloader = loaded
            .s3downloader
            .as_ref()
            .ok_or_else(|| missing("s3downloader"))?;
        Ok(Self {
            service: ServiceConfig::from_config(s3, downloader)?,
            fetch: fetch_settings(s3, downloader),
            cache_directory: s3.artifact_cache_directory.clone(),
            cache_max_bytes: downloader.artifact_cache_max_bytes,
            s3: s3.clone(),
        })
    }
}

/// The Java chunk settings keep their meaning for parts: `s3ChunkRetries` retries per part,
/// `s3ChunkDownloadTimeoutMillis` per part attempt, `s3DownloadTimeoutMillis` for the whole
/// object. The part size is `downloadPartSizeBytes`, not `s3ChunkSize`.
fn fetch_settings(
    s3: &S3BaseConfig,
    downloader: &singularity_common::config::S3DownloaderConfig,
) -> FetchSettings {
    FetchSettings {
        part_size: downloader.download_part_size_bytes,
        part_concurrency: usize::try_from(downloader.download_part_concurrency)
            .unwrap_or(usize::MAX)
            .max(1),
        part_timeout: Duration::from_millis(s3.s3_chunk_download_timeout_millis),
        part_attempts: s3.s3_chunk_retries.saturating_add(1),
        download_timeout: Duration::from_millis(s3.s3_download_timeout_millis),
        max_concurrent_downloads: usize::try_from(downloader.num_downloader_threads)
            .unwrap_or(usize::MAX)
            .max(1),
    }
}

/// What [`run`] works with, built by `main` (or by a test).
pub struct Deps {
    /// S3 clients by bucket.
    pub clients: Arc<dyn S3Clients>,
    /// The opened artifact cache.
    pub cache: ArtifactCache,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// Binds the listeners and returns the service, not yet serving: [`Server::serve`] runs it.
/// Split from [`run`] so that a caller can learn the bound addresses first.
pub async fn start(config: Config, deps: Deps) -> Result<Server, ServeError> {
    let fetcher = Arc::new(Fetcher::new(deps.cache, deps.clients, config.fetch));
    Server::bind(config.service, fetcher).await
}

/// Runs the downloader until `shutdown`: binds, tells systemd it is ready, serves, then
/// drains in-flight requests and downloads within `shutdownGraceMillis`.
pub async fn run(config: Config, deps: Deps, shutdown: Shutdown) -> Result<(), ServeError> {
    start(config, deps).await?.serve(shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use singularity_common::config::S3DownloaderConfig;

    /// `s3ChunkRetries` counts retries after the first attempt (the Java downloader tries a
    /// chunk up to `s3ChunkRetries + 1` times); the fetcher counts attempts in all.
    #[test]
    fn chunk_retries_become_part_attempts() {
        for (retries, attempts) in [(0, 1), (3, 4), (u32::MAX, u32::MAX)] {
            let s3 = S3BaseConfig {
                s3_chunk_retries: retries,
                ..S3BaseConfig::default()
            };
            let settings = fetch_settings(&s3, &S3DownloaderConfig::default());
            assert_eq!(settings.part_attempts, attempts, "{retries}");
        }
    }
}
