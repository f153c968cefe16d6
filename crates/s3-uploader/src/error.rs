//! Errors of the uploader, one enum per domain.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ErrorMetadata};

use singularity_common::exit::{self, ExitStatus};

/// Why [`crate::run`] could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration lacks a class the uploader needs.
    #[error("the configuration was loaded without the {class} class")]
    ClassMissing {
        /// The class (`s3`, `s3uploader`).
        class: &'static str,
    },
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The metrics listener could not be bound.
    #[error("listen for metrics on 127.0.0.1:{port}: {source}")]
    MetricsListen {
        /// `metricsHttpPort`.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// The metadata directory cannot be watched.
    #[error("watch {}: {source}", path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: notify::Error,
    },
}

impl ExitStatus for RunError {
    /// 78 when a configuration class is missing, 1 otherwise.
    fn exit_code(&self) -> u8 {
        match self {
            Self::ClassMissing { .. } => exit::CONFIG,
            _ => exit::FAILURE,
        }
    }
}

/// A ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Opening or migrating the database failed.
    #[error(transparent)]
    Open(#[from] singularity_runtime::SqliteError),
    /// A query failed.
    #[error("ledger: {what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: sqlx::Error,
    },
    /// The transaction holding a write could not begin or commit: the write may not have been
    /// made.
    #[error("ledger: {what}: {step}: {source}")]
    Batch {
        /// What was being done.
        what: &'static str,
        /// The step of the transaction that failed (`begin a transaction`, `commit`).
        step: &'static str,
        /// Why (shared by every write of the batch).
        source: std::sync::Arc<sqlx::Error>,
    },
    /// An insert answered no row id.
    #[error("ledger: {what}: no row id answered")]
    NoRowId {
        /// What was being done.
        what: &'static str,
    },
    /// The ledger was closed before the write could be made.
    #[error("ledger: {what}: the ledger is closed")]
    Closed {
        /// What was being done.
        what: &'static str,
    },
    /// A row holds a value this build does not know.
    #[error("ledger: row {id} has unknown state {state:?}")]
    BadState {
        /// Row id.
        id: i64,
        /// The stored text.
        state: String,
    },
}

/// What went wrong with one file, by kind (the `kind` label of the error counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// An S3 request ran past its deadline.
    Timeout,
    /// No answer from S3 (connection refused or reset, DNS, TLS).
    Network,
    /// S3 answered 5xx or asked to slow down.
    S3Server,
    /// S3 refused the request (4xx): credentials, bucket, permissions.
    S3Client,
    /// S3 holds something other than what was sent (size or ETag).
    Verify,
    /// A local file could not be read, compressed or deleted.
    Local,
    /// The ledger could not be read or written.
    Ledger,
    /// Shutdown stopped the upload between parts; it resumes at the next start.
    Interrupted,
}

impl ErrorKind {
    /// Every kind, for the metrics.
    pub const ALL: [ErrorKind; 8] = [
        Self::Timeout,
        Self::Network,
        Self::S3Server,
        Self::S3Client,
        Self::Verify,
        Self::Local,
        Self::Ledger,
        Self::Interrupted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::S3Server => "s3_server",
            Self::S3Client => "s3_client",
            Self::Verify => "verify",
            Self::Local => "local",
            Self::Ledger => "ledger",
            Self::Interrupted => "interrupted",
        }
    }

    /// Whether trying the same request again soon may help.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Timeout | Self::Network | Self::S3Server)
    }
}

/// One file could not be uploaded (this time).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// An S3 request failed.
    #[error("{op} s3://{bucket}/{key}: {source}")]
    S3 {
        /// The operation, e.g. `PutObject`.
        op: &'static str,
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Its kind.
        kind: ErrorKind,
        /// The S3 error code, e.g. `NoSuchUpload`, when S3 answered.
        code: Option<String>,
        /// What S3 or the transport said.
        source: S3Failure,
    },
    /// A local file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Local {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// S3 does not hold what was sent.
    #[error("s3://{bucket}/{key} does not match {}: {reason}", path.display())]
    Verify {
        /// The local file.
        path: PathBuf,
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// What differs.
        reason: Mismatch,
    },
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Shutdown came between two parts.
    #[error("stopped between parts of {}: the upload resumes at the next start", path.display())]
    Interrupted {
        /// The file.
        path: PathBuf,
    },
}

impl UploadError {
    /// The kind, for retries and metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::S3 { kind, .. } => *kind,
            Self::Local { .. } => ErrorKind::Local,
            Self::Verify { .. } => ErrorKind::Verify,
            Self::Ledger(_) => ErrorKind::Ledger,
            Self::Interrupted { .. } => ErrorKind::Interrupted,
        }
    }

    /// The S3 error code, when S3 answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::S3 { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// How one S3 request failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Failure {
    /// S3 answered with an error status.
    #[error(
        "S3 answered {status} {}{}",
        s3_code(Some(*status), meta).unwrap_or("(no error code)"),
        meta.message().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Answered {
        /// The HTTP status.
        status: u16,
        /// The error code and message S3 sent.
        meta: ErrorMetadata,
        /// The SDK's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request failed without an answer from S3 (connection, timeout, unreadable
    /// response), or could not be built.
    #[error("{}", DisplayErrorContext(&**source))]
    Sdk {
        /// The SDK's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer came within the deadline.
    #[error("no answer within {} ms", after.as_millis())]
    NoAnswer {
        /// The deadline.
        after: Duration,
    },
}

/// The S3 error code of an answer: the one S3 sent, else `NotFound` for a 404 (HEAD
/// answers carry no body, so no code).
pub(crate) fn s3_code(status: Option<u16>, meta: &ErrorMetadata) -> Option<&str> {
    meta.code().or((status == Some(404)).then_some("NotFound"))
}

/// How what S3 holds (or answered) fails to vouch for the local file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// A single PUT got no ETag.
    #[error("PutObject answered without an ETag")]
    PutWithoutEtag,
    /// The file's bytes changed while they were read for the upload.
    #[error("the file changed while it was being uploaded")]
    ChangedDuringUpload,
    /// CreateMultipartUpload got no upload id.
    #[error("CreateMultipartUpload answered without an upload id")]
    NoUploadId,
    /// CompleteMultipartUpload got no ETag where one is needed.
    #[error("CompleteMultipartUpload answered without an ETag")]
    CompleteWithoutEtag,
    /// The completed multipart upload's ETag is not the one of the parts sent.
    #[error("S3 completed the upload with ETag {answered}, expected {expected}")]
    CompletedEtag {
        /// What S3 answered.
        answered: String,
        /// The multipart ETag of the parts sent.
        expected: String,
    },
    /// The ledger holds no ETag to confirm the object with.
    #[error("the ledger has no ETag for this object")]
    NoRecordedEtag,
    /// HeadObject found no object.
    #[error("S3 has no such object")]
    NoObject,
    /// The object's size differs from the file's.
    #[error("S3 holds {on_s3} bytes, the file has {local}")]
    Size {
        /// The object's size.
        on_s3: u64,
        /// The file's size.
        local: u64,
    },
    /// The object's ETag differs from the one the upload got.
    #[error("S3 answers ETag {on_s3}, the upload got {recorded}")]
    Etag {
        /// The object's ETag now.
        on_s3: String,
        /// The ETag recorded when it was uploaded.
        recorded: String,
    },
}
