//! Errors of the HTTP service: [`ApiError`] is every answer other than 200, [`ServeError`]
//! everything that stops the service from starting or serving.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use singularity_artifacts::ArtifactError;

use crate::fetch::FetchError;

/// The one error type of the download endpoint (and of 404 / 405 answers).
///
/// The body is the message as plain text. A 4xx message names the request field at fault; a
/// 500 is logged with its whole cause chain, inside the span of the request it belongs to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not an `ArtifactDownloadRequest`: not JSON, a field missing or mistyped.
    #[error("invalid request body: {0}")]
    InvalidBody(String),

    /// `targetDirectory` is relative or outside every allowed root.
    #[error("targetDirectory {path}: {reason}")]
    TargetNotAllowed {
        /// As the request gave it.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },

    /// No route for this path.
    #[error("no endpoint at {path}")]
    NotFound {
        /// The request path.
        path: String,
    },

    /// The path exists, the method does not.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },

    /// The request's hold time (`timeoutMillis`, else the configured default) ran out first.
    /// The Java service's exact message, which callers may match on.
    #[error("Hit client timeout")]
    HoldTimeout,

    /// The artifact could not be brought into the cache (400 when a field of `s3Artifact`
    /// is unusable, 500 otherwise).
    #[error("{0}")]
    Fetch(#[from] FetchError),

    /// The cached artifact could not be placed into the target directory (shared by the
    /// identical requests that waited on the same placement).
    #[error("{0}")]
    Place(Arc<ArtifactError>),

    /// The placement task died (a panic in blocking code).
    #[error("placing the artifact failed: {0}")]
    PlacementTask(String),
}

impl ApiError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidBody(_) | Self::Fetch(FetchError::Invalid { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Self::TargetNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HoldTimeout | Self::Fetch(_) | Self::Place(_) | Self::PlacementTask(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %chain(&self), "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %message, "request refused");
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response()
    }
}

/// The error and its sources, `: `-separated, skipping sources whose text the previous level
/// already contains (thiserror messages often embed their source).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Why the service could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A configuration value the service cannot use (exit code 78).
    #[error("{key} = {value}: {reason}")]
    Config {
        /// The key, YAML spelling.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it is unusable.
        reason: String,
    },

    /// The TCP listener could not be bound.
    #[error("listen on {addr}: {source}")]
    BindTcp {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },

    /// The unix socket could not be set up.
    #[error("listen on unix socket {path}: {reason}")]
    BindUnix {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl ServeError {
    /// Whether this is a configuration problem (exit 78) rather than a runtime one (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config { .. })
    }

    /// The [`singularity_common::exit`] code for this error.
    pub fn exit_code(&self) -> u8 {
        if self.is_config() {
            singularity_common::exit::CONFIG
        } else {
            singularity_common::exit::FAILURE
        }
    }
}

impl ServeError {
    pub(crate) fn unix(path: impl Into<PathBuf>, what: &str, error: &std::io::Error) -> Self {
        Self::BindUnix {
            path: path.into(),
            reason: format!("{what}: {error}"),
        }
    }
}
