//! Run-time pieces every singularity-agent daemon needs, in one place so they are not copied:
//!
//! - [`init_tracing`]: logs to stderr (journald captures it), text or JSON, filtered by
//!   `RUST_LOG` or a default; [`log_startup`] records version and config files read.
//! - [`Shutdown`] and [`shutdown_signal`]: SIGTERM / SIGINT as a value passed into `run`.
//! - [`start_daemon`] then [`run_daemon`]: the one entry of every daemon binary (check or load
//!   the configuration, async runtime, signal shutdown, exit code through
//!   [`ExitStatus`](singularity_common::exit::ExitStatus), shutdown grace).
//! - [`notify_ready`], [`notify_stopping`], [`notify_status`]: systemd `Type=notify`
//!   readiness; no-ops when `NOTIFY_SOCKET` is unset.
//! - [`Backoff`]: exponential backoff with jitter; `attempts` counts the first try.
//! - [`build_s3_client`]: an `aws_sdk_s3::Client` from [`S3ClientOptions`] (static keys or the
//!   AWS default credential chain, custom endpoint, path-style, timeouts); [`S3ClientMap`]: one
//!   client per key pair, for buckets as the configuration assigns keys or for given keys.
//! - [`MetricsRegistry`], [`metrics_response`], [`serve_metrics`]: Prometheus / OpenMetrics
//!   text on `/metrics`; the metric names stay in each daemon.
//! - [`open_sqlite`]: a SQLite pool in WAL mode with foreign keys on, migrations applied.
//!
//! It reads only the environment (`RUST_LOG`, `NOTIFY_SOCKET`, `JOURNAL_STREAM`, the AWS
//! variables and profile files), writes only the SQLite database it is asked to open, and
//! listens only on the metrics listener it is given.
//! Configuration structs stay in `singularity-common`; callers map them to these options.

mod daemon;
mod metrics;
mod notify;
mod retry;
mod s3;
mod s3_clients;
mod shutdown;
mod sqlite;
mod startup;
mod telemetry;

pub use daemon::{SHUTDOWN_GRACE, error_chain, invalid_config, run_daemon};
pub use metrics::{
    METRICS_CONTENT_TYPE, MetricsRegistry, gauge_value, metrics_response, serve_metrics,
};
pub use notify::{NotifyError, notify_ready, notify_status, notify_stopping};
pub use retry::Backoff;
pub use s3::{DEFAULT_REGION, S3ClientOptions, StaticCredentials, build_s3_client};
pub use s3_clients::{S3ClientMap, S3ClientTuning};
pub use shutdown::{Shutdown, ShutdownSignal, SignalError, shutdown_signal};
pub use sqlite::{BUSY_TIMEOUT, SqliteError, open_sqlite};
pub use startup::start_daemon;
pub use telemetry::{LogFormat, TracingError, init_tracing, log_startup};
