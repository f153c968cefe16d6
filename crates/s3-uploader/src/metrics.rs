//! Metrics of the uploader, served as Prometheus / OpenMetrics text on `GET /metrics` of
//! `127.0.0.1:<metricsHttpPort>`, with `GET /healthz`.
//!
//! The names are the constants below, exactly as they appear in the exposition. Gauges that
//! describe state held elsewhere (queue depth, oldest pending file, uploaders) are read at
//! scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use singularity_runtime::MetricsRegistry;

use crate::error::ErrorKind;
use crate::scan::SkipReason;

/// Files uploaded (S3 confirmed the object).
pub const FILES_UPLOADED_TOTAL: &str = "s3_uploader_files_uploaded_total";
/// Bytes of the files uploaded.
pub const BYTES_UPLOADED_TOTAL: &str = "s3_uploader_bytes_uploaded_total";
/// Local files deleted after S3 confirmed their object.
pub const FILES_DELETED_TOTAL: &str = "s3_uploader_files_deleted_total";
/// Failed attempts, by kind (label `kind`: timeout, network, s3_server, s3_client, verify,
/// local, ledger).
pub const ERRORS_TOTAL: &str = "s3_uploader_errors_total";
/// Files passed over in a pass, by reason (label `reason`).
pub const FILES_SKIPPED_TOTAL: &str = "s3_uploader_files_skipped_total";
/// Metadata files rejected (bad JSON, missing field, bad glob, GCS).
pub const METADATA_REJECTED_TOTAL: &str = "s3_uploader_metadata_rejected_total";
/// Files waiting for a worker.
pub const QUEUE_DEPTH: &str = "s3_uploader_queue_depth";
/// Files being uploaded now.
pub const UPLOADS_IN_PROGRESS: &str = "s3_uploader_uploads_in_progress";
/// Age in seconds of the oldest file found and not yet uploaded (queued, uploading or
/// waiting to be retried); 0 when there is none.
pub const OLDEST_PENDING_AGE_SECONDS: &str = "s3_uploader_oldest_pending_file_age_seconds";
/// Uploaders (metadata files) being served.
pub const ACTIVE_UPLOADERS: &str = "s3_uploader_active_uploaders";
/// Of those, immediate uploaders.
pub const IMMEDIATE_UPLOADERS: &str = "s3_uploader_immediate_uploaders";

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = singularity_runtime::METRICS_CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Read at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Oldest pending file's age in seconds.
    pub oldest_pending_age_seconds: i64,
}

/// Gives a [`Snapshot`] at scrape time.
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The uploader's metrics and their registry.
pub struct Metrics {
    registry: MetricsRegistry,
    files_uploaded: Counter,
    bytes_uploaded: Counter,
    files_deleted: Counter,
    errors: Family<KindLabel, Counter>,
    skipped: Family<ReasonLabel, Counter>,
    metadata_rejected: Counter,
    queue_depth: Gauge,
    in_progress: Gauge,
    oldest_pending: Gauge,
    uploaders: Gauge,
    immediate: Gauge,
    snapshot: std::sync::Mutex<Option<SnapshotFn>>,
    queued: AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = MetricsRegistry::new();
        let files_uploaded =
            registry.counter(FILES_UPLOADED_TOTAL, "Files uploaded and confirmed by S3");
        let bytes_uploaded = registry.counter(BYTES_UPLOADED_TOTAL, "Bytes of the files uploaded");
        let files_deleted = registry.counter(
            FILES_DELETED_TOTAL,
            "Local files deleted after S3 confirmed them",
        );
        let errors = registry.counter_family(ERRORS_TOTAL, "Failed attempts, by kind");
        for kind in ErrorKind::ALL {
            let _ = errors.get_or_create(&KindLabel {
                kind: kind.as_str(),
            });
        }
        let skipped = registry.counter_family(
            FILES_SKIPPED_TOTAL,
            "Files passed over in a pass, by reason",
        );
        let metadata_rejected =
            registry.counter(METADATA_REJECTED_TOTAL, "Metadata files rejected");
        let queue_depth = registry.gauge(QUEUE_DEPTH, "Files waiting for a worker");
        let in_progress = registry.gauge(UPLOADS_IN_PROGRESS, "Files being uploaded");
        let oldest_pending = registry.gauge(
            OLDEST_PENDING_AGE_SECONDS,
            "Age of the oldest file found and not yet uploaded, in seconds",
        );
        let uploaders = registry.gauge(ACTIVE_UPLOADERS, "Uploaders being served");
        let immediate = registry.gauge(IMMEDIATE_UPLOADERS, "Immediate uploaders being served");
        Self {
            registry,
            files_uploaded,
            bytes_uploaded,
            files_deleted,
            errors,
            skipped,
            metadata_rejected,
            queue_depth,
            in_progress,
            oldest_pending,
            uploaders,
            immediate,
            snapshot: std::sync::Mutex::new(None),
            queued: AtomicI64::new(0),
        }
    }

    /// Sets what is read at scrape time.
    pub fn set_snapshot(&self, snapshot: SnapshotFn) {
        if let Ok(mut slot) = self.snapshot.lock() {
            *slot = Some(snapshot);
        }
    }

    /// A file of `bytes` was uploaded.
    pub fn uploaded(&self, bytes: u64) {
        self.files_uploaded.inc();
        self.bytes_uploaded.inc_by(bytes);
    }

    /// A local file was deleted after its upload was confirmed.
    pub fn deleted(&self) {
        self.files_deleted.inc();
    }

    /// An attempt failed.
    pub fn error(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// A file was passed over.
    pub fn skipped(&self, reason: SkipReason) {
        self.skipped
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// A metadata file was rejected.
    pub fn metadata_rejected(&self) {
        self.metadata_rejected.inc();
    }

    /// A job entered the queue.
    pub fn enqueued(&self) {
        let now = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        self.queue_depth.set(now);
    }

    /// A worker took a job from the queue.
    pub fn started(&self) {
        let now = self.queued.fetch_sub(1, Ordering::Relaxed) - 1;
        self.queue_depth.set(now.max(0));
        self.in_progress.inc();
    }

    /// A worker finished a job.
    pub fn finished(&self) {
        self.in_progress.dec();
    }

    /// Files being uploaded now.
    pub fn in_progress(&self) -> i64 {
        self.in_progress.get()
    }

    /// The number of uploaders, and of immediate ones.
    pub fn set_uploaders(&self, total: usize, immediate: usize) {
        self.uploaders.set(i64::try_from(total).unwrap_or(i64::MAX));
        self.immediate
            .set(i64::try_from(immediate).unwrap_or(i64::MAX));
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let snapshot = self
            .snapshot
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
            .map(|f| f())
            .unwrap_or_default();
        self.oldest_pending.set(snapshot.oldest_pending_age_seconds);
        self.registry.encode()
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: singularity_runtime::Shutdown,
) {
    singularity_runtime::serve_metrics(listener, move || metrics.encode(), shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_by_its_name() {
        let metrics = Metrics::new();
        metrics.uploaded(100);
        metrics.uploaded(23);
        metrics.deleted();
        metrics.error(ErrorKind::Network);
        metrics.skipped(SkipReason::Open);
        metrics.metadata_rejected();
        metrics.enqueued();
        metrics.enqueued();
        metrics.started();
        metrics.set_uploaders(3, 1);
        metrics.set_snapshot(Arc::new(|| Snapshot {
            oldest_pending_age_seconds: 42,
        }));
        let text = metrics.encode();
        for line in [
            "s3_uploader_files_uploaded_total 2",
            "s3_uploader_bytes_uploaded_total 123",
            "s3_uploader_files_deleted_total 1",
            "s3_uploader_errors_total{kind=\"network\"} 1",
            "s3_uploader_errors_total{kind=\"timeout\"} 0",
            "s3_uploader_files_skipped_total{reason=\"open\"} 1",
            "s3_uploader_metadata_rejected_total 1",
            "s3_uploader_queue_depth 1",
            "s3_uploader_uploads_in_progress 1",
            "s3_uploader_oldest_pending_file_age_seconds 42",
            "s3_uploader_active_uploaders 3",
            "s3_uploader_immediate_uploaders 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
