//! Metrics of the downloader, served as Prometheus / OpenMetrics text on `GET /metrics` of the
//! same listeners as the download endpoint.
//!
//! The names are the constants below, exactly as they appear in the exposition. Gauges that
//! describe state held elsewhere (cache size, active downloads) are read at scrape time.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use singularity_runtime::{MetricsRegistry, gauge_value};

/// Requests answered, by status code (label `code`), every path included.
pub const REQUESTS_TOTAL: &str = "s3_downloader_requests_total";
/// Time from receiving a download request to answering it, in seconds.
pub const REQUEST_DURATION_SECONDS: &str = "s3_downloader_request_duration_seconds";
/// Bytes read from S3.
pub const S3_BYTES_TOTAL: &str = "s3_downloader_s3_bytes_total";
/// Download requests served from the cache without reading S3.
pub const CACHE_HITS_TOTAL: &str = "s3_downloader_cache_hits_total";
/// Download requests that needed a download (their own, or one they joined).
pub const CACHE_MISSES_TOTAL: &str = "s3_downloader_cache_misses_total";
/// Bytes held by the artifact cache.
pub const CACHE_BYTES: &str = "s3_downloader_cache_bytes";
/// Artifacts held by the artifact cache.
pub const CACHE_ENTRIES: &str = "s3_downloader_cache_entries";
/// Downloads from S3 in progress.
pub const ACTIVE_DOWNLOADS: &str = "s3_downloader_active_downloads";
/// Duration of each download from S3 (not of cache hits), in seconds.
pub const DOWNLOAD_DURATION_SECONDS: &str = "s3_downloader_download_duration_seconds";
/// Artifacts placed, by how (label `method`): `written_ahead` (written into the target while
/// downloading, then renamed), `copied`, `extracted`, `already_present`.
pub const PLACEMENTS_TOTAL: &str = "s3_downloader_placements_total";

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = singularity_runtime::METRICS_CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

/// The downloader's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: MetricsRegistry,
    requests: Family<CodeLabel, Counter>,
    request_duration: Histogram,
    s3_bytes: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    active_downloads: Gauge,
    download_duration: Histogram,
    placements: Family<MethodLabel, Counter>,
}

/// State read from the fetch engine at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes in the cache.
    pub cache_bytes: u64,
    /// Entries in the cache.
    pub cache_entries: u64,
    /// Downloads in progress.
    pub active_downloads: u64,
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
        let requests = registry.counter_family(REQUESTS_TOTAL, "Requests answered, by status code");
        // 1 ms .. ~65 s: placement of a cached artifact up to large cold downloads.
        let request_duration = registry.histogram(
            REQUEST_DURATION_SECONDS,
            "Time to answer a download request, in seconds",
            exponential_buckets(0.001, 2.0, 17),
        );
        let s3_bytes = registry.counter(S3_BYTES_TOTAL, "Bytes read from S3");
        let cache_hits =
            registry.counter(CACHE_HITS_TOTAL, "Download requests served from the cache");
        let cache_misses = registry.counter(
            CACHE_MISSES_TOTAL,
            "Download requests that waited for a download from S3",
        );
        let cache_bytes = registry.gauge(CACHE_BYTES, "Bytes held by the artifact cache");
        let cache_entries = registry.gauge(CACHE_ENTRIES, "Artifacts held by the artifact cache");
        let active_downloads = registry.gauge(ACTIVE_DOWNLOADS, "Downloads from S3 in progress");
        // 10 ms .. ~11 min.
        let download_duration = registry.histogram(
            DOWNLOAD_DURATION_SECONDS,
            "Duration of downloads from S3, in seconds",
            exponential_buckets(0.01, 2.0, 17),
        );
        let placements = registry.counter_family(PLACEMENTS_TOTAL, "Artifacts placed, by method");
        Self {
            registry,
            requests,
            request_duration,
            s3_bytes,
            cache_hits,
            cache_misses,
            cache_bytes,
            cache_entries,
            active_downloads,
            download_duration,
            placements,
        }
    }

    /// Counts a placement made by `method` (see [`PLACEMENTS_TOTAL`]).
    pub fn record_placement(&self, method: &'static str) {
        self.placements.get_or_create(&MethodLabel { method }).inc();
    }

    /// Counts an answered request.
    pub fn record_response(&self, code: u16) {
        self.requests.get_or_create(&CodeLabel { code }).inc();
    }

    /// Records how long a download request took to answer.
    pub fn record_request_duration(&self, elapsed: Duration) {
        self.request_duration.observe(elapsed.as_secs_f64());
    }

    /// Records how a download request got its artifact: from the cache, or from a download
    /// that read `bytes_from_s3` bytes and took `download_duration` (`None` when this request
    /// joined a download another request started, whose own record counts the bytes).
    pub fn record_fetch(
        &self,
        cache_hit: bool,
        bytes_from_s3: u64,
        download_duration: Option<Duration>,
    ) {
        if cache_hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
        if bytes_from_s3 > 0 {
            self.s3_bytes.inc_by(bytes_from_s3);
        }
        if let Some(duration) = download_duration {
            self.download_duration.observe(duration.as_secs_f64());
        }
    }

    /// The exposition text, with the gauges set from `snapshot`.
    pub fn encode(&self, snapshot: Snapshot) -> String {
        self.cache_bytes.set(gauge_value(snapshot.cache_bytes));
        self.cache_entries.set(gauge_value(snapshot.cache_entries));
        self.active_downloads
            .set(gauge_value(snapshot.active_downloads));
        self.registry.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_uses_the_documented_names() {
        let metrics = Metrics::new();
        metrics.record_response(200);
        metrics.record_response(200);
        metrics.record_response(404);
        metrics.record_fetch(false, 1234, Some(Duration::from_millis(250)));
        metrics.record_fetch(true, 0, None);
        metrics.record_placement("written_ahead");
        let text = metrics.encode(Snapshot {
            cache_bytes: 1234,
            cache_entries: 1,
            active_downloads: 0,
        });
        for line in [
            "s3_downloader_requests_total{code=\"200\"} 2",
            "s3_downloader_requests_total{code=\"404\"} 1",
            "s3_downloader_s3_bytes_total 1234",
            "s3_downloader_cache_hits_total 1",
            "s3_downloader_cache_misses_total 1",
            "s3_downloader_cache_bytes 1234",
            "s3_downloader_cache_entries 1",
            "s3_downloader_active_downloads 0",
            "s3_downloader_download_duration_seconds_count 1",
            "s3_downloader_placements_total{method=\"written_ahead\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        for name in [
            REQUESTS_TOTAL,
            REQUEST_DURATION_SECONDS,
            S3_BYTES_TOTAL,
            CACHE_HITS_TOTAL,
            CACHE_MISSES_TOTAL,
            CACHE_BYTES,
            CACHE_ENTRIES,
            ACTIVE_DOWNLOADS,
            DOWNLOAD_DURATION_SECONDS,
            PLACEMENTS_TOTAL,
        ] {
            assert!(text.contains(name), "{name}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
