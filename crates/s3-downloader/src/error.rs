//! Errors of the HTTP service: [`ApiError`] is every answer other than 200, [`ServeError`]
//! everything that stops the service from starting or serving.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use singularity_artifacts::ArtifactError;

use singularity_common::exit::ExitStatus;
use singularity_runtime::error_chain;

use crate::cache::CacheError;
use crate::fetch::FetchError;
use crate::server::describe_json_error;

/// The one error type of the download endpoint (and of 404 / 405 answers).
///
/// The body is the message as plain text. A 4xx message names the request field at fault; a
/// 500 is logged with its whole cause chain, inside the span of the request it belongs to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not an `ArtifactDownloadRequest`: not JSON, a field missing or mistyped.
    #[error("invalid request body: {source}")]
    InvalidBody {
        /// What is wrong with it.
        source: BodyError,
    },

    /// `targetDirectory` is relative or outside every allowed root.
    #[error("targetDirectory {path}: {reason}")]
    TargetNotAllowed {
        /// As the request gave it.
        path: PathBuf,
        /// Why it is refused.
        reason: TargetRefusal,
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
    #[error("placing the artifact failed: {source}")]
    PlacementTask {
        /// The task's end (shared by every request that waited on the placement).
        source: Arc<tokio::task::JoinError>,
    },

    /// The placement task ended without publishing a result.
    #[error("placing the artifact failed: the placement task ended without a result")]
    PlacementLost,
}

/// Why a `targetDirectory` is refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetRefusal {
    /// A relative path.
    #[error("must be an absolute path")]
    Relative,
    /// Its existing part could not be canonicalised.
    #[error("cannot be resolved: {source}")]
    Unresolvable {
        /// Why.
        source: std::io::Error,
    },
    /// Not strictly below any allowed root.
    #[error(
        "is not below an allowed directory ({}){}",
        display_paths(roots),
        resolves_to.as_ref().map(|p| format!(" (it resolves to {})", p.display())).unwrap_or_default()
    )]
    NotBelowRoot {
        /// `allowedTargetDirectories`.
        roots: Vec<PathBuf>,
        /// Where the path leads once `..` and symlinks are resolved, when that differs from
        /// the path as given.
        resolves_to: Option<PathBuf>,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a request body is not an `ArtifactDownloadRequest`. Its message names the field at
/// fault: `missing field `s3Artifact.s3Bucket``, `s3Artifact.filesize: invalid type: ...`, or
/// the JSON syntax error with its position.
#[derive(Debug)]
pub enum BodyError {
    /// The body could not be read.
    Read(BytesRejection),
    /// The body is not the JSON of a request.
    Json {
        /// Where in the document (`.` for the document itself).
        path: String,
        /// The parser's error.
        source: serde_json::Error,
    },
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(rejection) => f.write_str(&rejection.body_text()),
            Self::Json { path, source } => f.write_str(&describe_json_error(path, source)),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read(rejection) => Some(rejection),
            Self::Json { source, .. } => Some(source),
        }
    }
}

impl ApiError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            // A body over the size limit is refused as such (413), as axum itself would.
            Self::InvalidBody {
                source: BodyError::Read(rejection),
            } if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::InvalidBody { .. } | Self::Fetch(FetchError::Invalid { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Self::TargetNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HoldTimeout
            | Self::Fetch(_)
            | Self::Place(_)
            | Self::PlacementTask { .. }
            | Self::PlacementLost => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %error_chain(&self), "request failed");
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
        reason: &'static str,
    },

    /// The artifact cache could not be opened.
    #[error("open the artifact cache in {}: {source}", dir.display())]
    OpenCache {
        /// `artifactCacheDirectory`.
        dir: PathBuf,
        /// Why.
        source: CacheError,
    },

    /// The TCP listener could not be bound.
    #[error("listen on {addr}: {source}")]
    BindTcp {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },

    /// A step of setting up the unix socket failed.
    #[error("listen on unix socket {}: {what}: {source}", path.display())]
    BindUnix {
        /// The socket path.
        path: PathBuf,
        /// The step (`bind`, `chmod`, ...).
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },

    /// Another process answers on the unix socket.
    #[error("listen on unix socket {}: another process is listening on it", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },

    /// The socket path holds something other than a socket.
    #[error("listen on unix socket {}: the path exists and is not a socket", path.display())]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
}

impl ExitStatus for ServeError {
    /// 78 for a configuration problem, 1 for a runtime one.
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config { .. } => singularity_common::exit::CONFIG,
            _ => singularity_common::exit::FAILURE,
        }
    }
}

impl ServeError {
    /// Whether this is a configuration problem (exit 78) rather than a runtime one (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config { .. })
    }

    pub(crate) fn unix(
        path: impl Into<PathBuf>,
        what: &'static str,
        source: std::io::Error,
    ) -> Self {
        Self::BindUnix {
            path: path.into(),
            what,
            source,
        }
    }
}
