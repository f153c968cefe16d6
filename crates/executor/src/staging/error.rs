use std::io;
use std::path::PathBuf;

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStreamError;
use singularity_artifacts::ArtifactError;

use super::fetch::error_chain;

/// Why staging a task's artifacts failed. Every variant names the artifact and where it came
/// from or was going, so the message alone says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The task was killed while staging.
    #[error("artifact staging cancelled")]
    Cancelled,

    /// An embedded artifact could not be written (or its md5 does not match).
    #[error("embedded artifact {name:?}: {source}")]
    Embedded {
        /// The artifact's name.
        name: String,
        /// The cause, naming the file.
        #[source]
        source: Box<ArtifactError>,
    },

    /// Reading an S3 object failed.
    #[error("S3 artifact {name:?} (s3://{bucket}/{key}): {source}")]
    S3 {
        /// The artifact's name.
        name: String,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// What the S3 client reported.
        source: S3ReadError,
    },

    /// Downloading an external artifact failed.
    #[error("external artifact {name:?} ({url}): {source}")]
    Http {
        /// The artifact's name.
        name: String,
        /// The URL.
        url: String,
        /// What went wrong (connection error, HTTP status).
        source: HttpFetchError,
    },

    /// A download did not finish in time.
    #[error("artifact {name:?} ({from}): not downloaded within {millis} ms")]
    Timeout {
        /// The artifact's name.
        name: String,
        /// `s3://bucket/key` or the URL.
        from: String,
        /// The time limit.
        millis: u64,
    },

    /// The downloaded content does not verify (size or md5), or the cache could not hold it.
    #[error("artifact {name:?} ({from}): {source}")]
    Cache {
        /// The artifact's name.
        name: String,
        /// `s3://bucket/key` or the URL.
        from: String,
        /// The cause, naming the file.
        #[source]
        source: Box<ArtifactError>,
    },

    /// The cached artifact could not be extracted or copied into the task.
    #[error("artifact {name:?}: cannot place it into {}: {source}", target.display())]
    Place {
        /// The artifact's name.
        name: String,
        /// The directory it was going to.
        target: PathBuf,
        /// The cause.
        #[source]
        source: Box<ArtifactError>,
    },

    /// A file system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// An artifact list (`isArtifactList: true`) could not be read as one.
    #[error("artifact list {name:?} ({}): {source}", path.display())]
    ArtifactList {
        /// The list artifact's name.
        name: String,
        /// The placed file.
        path: PathBuf,
        /// What is wrong with it.
        source: ArtifactListError,
    },

    /// A signature names an artifact that is not staged (`failOnSignatureWithNoMatchingArtifact`).
    #[error("no matching artifact(s) found for signature(s) {filenames:?}")]
    SignatureWithoutArtifact {
        /// The `artifactFilename`s without an artifact.
        filenames: Vec<String>,
    },

    /// An artifact has no signature (`failOnArtifactWithNoMatchingSignature`).
    #[error("no signature(s) found for artifact(s) {filenames:?}")]
    ArtifactWithoutSignature {
        /// The artifacts without a signature.
        filenames: Vec<String>,
    },

    /// The verification command rejected a signature (`failTaskOnInvalidArtifactSignature`).
    #[error("failed to validate signature for artifact {} ({status}); see {}", artifact.display(), output.display())]
    InvalidSignature {
        /// The cached artifact.
        artifact: PathBuf,
        /// How the command exited.
        status: String,
        /// Where its output went.
        output: PathBuf,
    },

    /// The verification command could not be run.
    #[error("cannot run the signature verification command {command:?}: {source}")]
    VerificationCommand {
        /// The command line.
        command: Vec<String>,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A blocking staging step panicked.
    #[error("artifact staging step failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl StagingError {
    /// Whether this is the task's content failing verification (an md5 or size mismatch, a
    /// rejected or missing signature): the task then fails (TASK_FAILED) rather than being
    /// lost (TASK_LOST), as it would fail the same way anywhere.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            StagingError::Embedded { source, .. } | StagingError::Cache { source, .. } => {
                matches!(
                    **source,
                    ArtifactError::Md5Mismatch { .. } | ArtifactError::SizeMismatch { .. }
                )
            }
            StagingError::SignatureWithoutArtifact { .. }
            | StagingError::ArtifactWithoutSignature { .. }
            | StagingError::InvalidSignature { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StagingError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Reading an S3 object failed.
#[derive(Debug, thiserror::Error)]
pub enum S3ReadError {
    /// The GET was refused or failed.
    #[error("{}", DisplayErrorContext(.0.as_ref()))]
    GetObject(#[source] Box<SdkError<GetObjectError>>),
    /// The body broke off.
    #[error(transparent)]
    Body(ByteStreamError),
}

/// Downloading a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpFetchError {
    /// The HTTP client could not be built.
    #[error("{}", error_chain(.0))]
    Client(#[source] reqwest::Error),
    /// The request failed (connection, timeout).
    #[error("{}", error_chain(.0))]
    Request(#[source] reqwest::Error),
    /// The server answered with an error status.
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    /// The body broke off.
    #[error("{}", error_chain(.0))]
    Body(#[source] reqwest::Error),
}

/// A placed artifact list could not be read as one.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactListError {
    /// The file could not be read.
    #[error(transparent)]
    Read(io::Error),
    /// The file is not an artifact list.
    #[error(transparent)]
    Parse(serde_json::Error),
}

/// The local download service could not be used, or one request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloaderError {
    /// Neither a socket nor a port is configured.
    #[error("neither localDownloadSocket nor localDownloadHttpPort is set")]
    NotConfigured,
    /// The HTTP client could not be built.
    #[error("{}", error_chain(.0))]
    Client(#[source] reqwest::Error),
    /// The request could not be encoded.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// The request failed (connection, timeout).
    #[error("{}", error_chain(.0))]
    Request(#[source] reqwest::Error),
    /// The service refused or failed the request; `body` is its answer, cut to 1 KiB.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status.
        status: reqwest::StatusCode,
        /// The service's answer.
        body: String,
    },
    /// The request's task panicked.
    #[error(transparent)]
    Join(tokio::task::JoinError),
}

/// Why the S3 artifacts are fetched in-process after all ("falling back to in-task fetch").
#[derive(Debug, thiserror::Error)]
pub enum DownloaderFallback {
    /// The service is not configured, or no client could be built for it.
    #[error("cannot use the local download service: {source}")]
    Unusable {
        /// The cause.
        source: DownloaderError,
    },
    /// A target directory could not be created (the service extracts into existing ones).
    #[error("cannot create {}: {source}", path.display())]
    CreateTarget {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Some requests failed; each was logged.
    #[error("{failed} of {requested} local download request(s) failed")]
    Failed {
        /// Requests that failed.
        failed: usize,
        /// Requests made.
        requested: usize,
    },
}
