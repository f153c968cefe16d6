//! The S3 uploader: uploads task log files named by upload metadata (`*.s3.json`) to S3 and
//! deletes each local file only once S3 has confirmed the object, a drop-in for Singularity's
//! `SingularityS3Uploader`.
//!
//! The executor and the cleanup write metadata files into `s3UploaderMetadataDirectory`; each
//! names a directory, a glob matched against file names, a bucket and a key pattern (see
//! `S3UploadMetadata`). An uploader per `(directory, fileGlob)` uploads the matching files,
//! then, once finished (the metadata says so, its `pid` is gone, the metadata file was
//! deleted, or no new file came for `finishedAfterMillisWithoutNewFile`), makes a final pass
//! and deletes its metadata file.
//!
//! - `driver` (private): discovery (start-up scan, file system watch, periodic rescans),
//!   per-uploader state, passes over directories feeding a bounded queue, the workers.
//! - [`upload`]: one file's upload: single PUT or multipart (parts in parallel, resumed after a
//!   crash), then S3 must confirm size and ETag before the file is deleted: the PUT's own
//!   answer when its ETag is the MD5 of the bytes read, else HeadObject.
//! - [`ledger`]: each file's state in SQLite (`ledgerPath`), so a restart resumes; concurrent
//!   writes share commits.
//! - [`metrics`]: Prometheus `/metrics` and `/healthz` on `127.0.0.1:<metricsHttpPort>`.
//!
//! **Reads**: the configuration classes base, s3base and s3uploader
//! (`/etc/singularity.{base,s3base,s3uploader}.{properties,yaml,toml}`, or `--config` files);
//! the metadata directory; the directories the metadata names; `/proc/*/fd` (open-file check);
//! the `user.logstart` / `user.logend` extended attributes. **Writes**: S3; the ledger;
//! `<file>.gz` for `compressBeforeUpload`. **Deletes**: uploaded files (after S3 confirmed
//! them), metadata files of finished uploaders.
//!
//! Example (consolidated YAML; every key is in `docs/configuration.md`):
//!
//! ```yaml
//! base:
//!   s3UploaderMetadataDirectory: /var/lib/singularity/s3uploader
//!   logWatcherMetadataDirectory: /var/lib/singularity/logwatcher
//! s3:
//!   artifactCacheDirectory: /var/lib/singularity/artifacts
//!   s3Region: us-east-1
//! s3uploader:
//!   executorMaxUploadThreads: 25
//!   checkUploadsEverySeconds: 600
//!   ledgerPath: /var/lib/singularity/s3uploader.db
//!   metricsHttpPort: 7071
//!   shutdownGraceMillis: 20000
//! ```
//!
//! Exit codes ([`singularity_common::exit`]): 0 after a clean stop (SIGTERM / SIGINT), 1 on a
//! runtime failure (the ledger cannot be opened, the metadata directory cannot be watched, the
//! metrics port cannot be bound), 78 when the configuration is invalid (also from
//! `--check-config`).

pub mod clients;
mod driver;
pub mod error;
pub mod ledger;
pub mod metadata;
pub mod metrics;
pub mod plan;
pub mod scan;
pub mod settings;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use singularity_runtime::Shutdown;
use tokio::task::JoinSet;

pub use crate::clients::{S3ClientFactory, configured_clients};
use crate::driver::Driver;
pub use crate::error::RunError;
use crate::metrics::Metrics;
pub use crate::settings::Settings;
use crate::upload::UploadContext;

/// The daemon's name: binary, log target, systemd unit.
pub const SERVICE: &str = "singularity-s3-uploader";

/// How long connecting to S3 may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Wall-clock time, for the expiry rules and the ledger.
pub trait Clock: Send + Sync {
    /// Milliseconds since the epoch.
    fn now_millis(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// What [`run`] works with, built by `main` (or by a test).
pub struct Deps {
    /// S3 clients by key pair.
    pub clients: Arc<dyn S3ClientFactory>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl Deps {
    /// Clients from the s3base configuration and the system clock.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            clients: Arc::new(configured_clients(&settings.s3, CONNECT_TIMEOUT)),
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// Runs the uploader until `shutdown`: opens the ledger, settles what a previous run left,
/// serves metrics, scans, tells systemd it is ready, uploads; on shutdown stops taking work
/// and gives in-flight uploads `shutdownGraceMillis` to finish (what is cut off resumes at
/// the next start).
pub async fn run(settings: Settings, deps: Deps, shutdown: Shutdown) -> Result<(), RunError> {
    let settings = Arc::new(settings);
    let ledger = driver::open_ledger(&settings).await?;
    let metrics = Arc::new(Metrics::new());
    let mut background = JoinSet::new();
    if let Some(port) = settings.metrics_port {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| RunError::MetricsListen { port, source })?;
        tracing::info!(port, "serving /metrics and /healthz on 127.0.0.1");
        background.spawn(metrics::serve(
            listener,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    let ctx = Arc::new(UploadContext {
        settings: Arc::clone(&settings),
        ledger: ledger.clone(),
        clients: deps.clients,
        clock: deps.clock,
        metrics,
        shutdown: shutdown.clone(),
    });
    let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(settings.workers.saturating_mul(2).max(2));
    let driver = Driver::new(
        Arc::clone(&settings),
        Arc::clone(&ctx),
        shutdown.clone(),
        jobs_tx,
    )?;
    driver.recover().await;
    let jobs_rx = Arc::new(tokio::sync::Mutex::new(jobs_rx));
    let mut workers = JoinSet::new();
    for _ in 0..settings.workers {
        workers.spawn(driver::worker(
            Arc::clone(&jobs_rx),
            Arc::clone(&ctx),
            driver.shared(),
            driver.events(),
            shutdown.clone(),
        ));
    }
    driver.run().await;

    if let Err(error) = singularity_runtime::notify_stopping() {
        tracing::debug!(%error, "cannot tell systemd the uploader is stopping");
    }
    let in_flight = ctx.metrics.in_progress();
    tracing::info!(in_flight, "stopping: letting in-flight uploads finish");
    let drained = tokio::time::timeout(settings.shutdown_grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            cut = ctx.metrics.in_progress(),
            grace_ms = u64::try_from(settings.shutdown_grace.as_millis()).unwrap_or(u64::MAX),
            "grace period over: stopping the uploads still running; they resume at the next start"
        );
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while background.join_next().await.is_some() {}
    })
    .await;
    ledger.close().await;
    tracing::info!("stopped");
    Ok(())
}
