//! One metrics registry and `/metrics` exposition for every daemon. The metric names stay in
//! each daemon's own definitions module; this is only how they are registered and served
//! (Prometheus / OpenMetrics text).

use std::future::Future;
use std::hash::Hash;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::shutdown::Shutdown;

/// The content type of the exposition text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A daemon's metrics registry. Each `register_*` call takes the name exactly as it appears
/// in the exposition (counters with their `_total`) and returns the handle to update.
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    registry: Registry,
}

/// Counters are registered without `_total`; the encoder appends it.
fn counter_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

impl MetricsRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a counter exposed as `name` (which ends in `_total`).
    pub fn counter(&mut self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.registry
            .register(counter_name(name), help, counter.clone());
        counter
    }

    /// Registers a family of counters exposed as `name`, one per label set.
    pub fn counter_family<L>(&mut self, name: &str, help: &str) -> Family<L, Counter>
    where
        L: EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let family = Family::<L, Counter>::default();
        self.registry
            .register(counter_name(name), help, family.clone());
        family
    }

    /// Registers a gauge exposed as `name`.
    pub fn gauge(&mut self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.registry.register(name, help, gauge.clone());
        gauge
    }

    /// Registers a histogram exposed as `name`, with the upper bounds of its buckets.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: impl Iterator<Item = f64>,
    ) -> Histogram {
        let histogram = Histogram::new(buckets);
        self.registry.register(name, help, histogram.clone());
        histogram
    }

    /// The exposition text of every metric registered.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            // Writing into a String cannot fail; a metric's encoder could, and then a partial
            // text would be worse than none.
            text.clear();
        }
        text
    }
}

/// A gauge value from a count, saturating.
pub fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The answer to `GET /metrics`: `text` with [`METRICS_CONTENT_TYPE`].
pub fn metrics_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

/// Serves `GET /metrics` (the text `encode` gives at each scrape) and `GET /healthz` (`ok`)
/// on `listener` until `shutdown`, for a daemon with no HTTP service of its own.
pub fn serve_metrics<F>(
    listener: tokio::net::TcpListener,
    encode: F,
    shutdown: Shutdown,
) -> impl Future<Output = ()> + Send + 'static
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let encode = encode.clone();
                async move { metrics_response(encode()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "the metrics listener failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Code {
        code: u16,
    }

    #[test]
    fn names_appear_as_given() {
        let mut registry = MetricsRegistry::new();
        let requests = registry.counter_family::<Code>("d_requests_total", "Requests");
        let bytes = registry.counter("d_bytes_total", "Bytes");
        let depth = registry.gauge("d_queue_depth", "Queue");
        let seconds = registry.histogram("d_seconds", "Time", exponential_buckets(0.5, 2.0, 2));
        requests.get_or_create(&Code { code: 200 }).inc();
        bytes.inc_by(7);
        depth.set(gauge_value(u64::MAX));
        seconds.observe(0.7);
        let text = registry.encode();
        for line in [
            "d_requests_total{code=\"200\"} 1",
            "d_bytes_total 7",
            "d_queue_depth 9223372036854775807",
            "d_seconds_count 1",
            "d_seconds_bucket{le=\"1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn serves_metrics_and_health_until_shutdown() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let server = tokio::spawn(serve_metrics(
            listener,
            || "x_total 1\n# EOF\n".to_owned(),
            shutdown.clone(),
        ));
        for (path, body, content_type) in [
            ("/metrics", "x_total 1\n# EOF\n", METRICS_CONTENT_TYPE),
            ("/healthz", "ok\n", "text/plain; charset=utf-8"),
        ] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains(&format!("content-type: {content_type}")),
                "{answer}"
            );
            assert!(answer.ends_with(body), "{answer}");
        }
        shutdown.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
