//! Tracing set-up: one subscriber per process, to stderr.

use std::io::IsTerminal as _;
use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use singularity_common::config::LogFormat;

/// Why [`init_tracing`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// A filter directive (from `RUST_LOG` or the default) does not parse.
    #[error("invalid log filter {source_name} = {value:?}: {source}")]
    InvalidFilter {
        /// `RUST_LOG` or `default level`.
        source_name: &'static str,
        /// The directive as given.
        value: String,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is already installed (e.g. `init_tracing` was called twice).
    #[error("tracing is already initialised: {0}")]
    AlreadyInitialized(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the process-wide subscriber for `service`: level filter from `RUST_LOG` when set
/// and non-empty, else `default_level` (a directive such as `info` or
/// `info,aws_smithy_runtime=warn`); output to stderr. Text lines carry no timestamp when
/// stderr goes to journald (`JOURNAL_STREAM` set), which stamps them itself.
///
/// Returns an error, rather than panicking, if called twice.
pub fn init_tracing(
    service: &str,
    format: LogFormat,
    default_level: &str,
) -> Result<(), TracingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(&value).map_err(|source| TracingError::InvalidFilter {
                source_name: "RUST_LOG",
                value,
                source,
            })?
        }
        _ => EnvFilter::try_new(default_level).map_err(|source| TracingError::InvalidFilter {
            source_name: "default level",
            value: default_level.to_owned(),
            source,
        })?,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal());
            if std::env::var_os("JOURNAL_STREAM").is_some() {
                registry.with(layer.without_time()).try_init()
            } else {
                registry.with(layer).try_init()
            }
        }
    };
    result.map_err(TracingError::AlreadyInitialized)?;
    tracing::debug!(service, ?format, "tracing initialised");
    Ok(())
}

/// Logs, at info level, that `service` `version` starts and which config files it read.
pub fn log_startup<P: AsRef<Path>>(service: &str, version: &str, config_files: &[P]) {
    let files: Vec<String> = config_files
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect();
    tracing::info!(
        service,
        version,
        config_files = ?files,
        pid = std::process::id(),
        "starting"
    );
}
