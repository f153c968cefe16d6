//! Bringing S3 artifacts into the [`ArtifactCache`]: one download per artifact however many
//! requests want it, a bounded number of downloads at once, each a parallel ranged transfer
//! verified (size and md5) while the bytes stream in.
//!
//! [`Fetcher::fetch`] first looks in the cache (see [`crate::cache`] for what a hit needs).
//! On a miss it downloads into a temp file in the cache directory, checks the size and md5,
//! and renames the file to its cache name (mode `rw-r--r--`); a failed download leaves
//! nothing behind. Concurrent fetches of the same artifact (bucket, key, md5,
//! filename, size) share one flight: a task of its own that every caller waits on, so a
//! caller giving up (its future dropped) neither cancels the download nor disturbs the
//! others, and every caller gets the same result or the same error.
//!
//! # Durability
//!
//! A download with an md5 is handed out as soon as it is renamed; the fsync runs afterwards,
//! off the callers' path, and only then does the index record the md5 (see the cache's docs
//! on durability): a file a power loss damaged is hashed again, and found wrong, at its first
//! hit. Without an md5 nothing could tell, so such a download is fsynced before the rename,
//! with its pages handed to writeback while it streams in so that the fsync is short.
//!
//! # Memory
//!
//! md5 needs the bytes in order while parts arrive in parallel, so parts ahead of the first
//! unhashed one are held in memory until their turn. A part holds one of `part_concurrency`
//! permits, shared by all downloads, from its request until it is hashed: however many
//! downloads run, the bytes held are at most `part_concurrency × part_size` (16 MiB with
//! [`FetchSettings::default`]), and one download alone gets the whole width. Java's
//! `s3ChunkSize` default (100 MiB) suited its thread-per-chunk design, not this one: used as
//! `part_size`, it would multiply that bound by 50.

mod clients;
mod engine;
mod s3;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::DisplayErrorContext;
use singularity_artifacts::cache_dir::{self, CacheFileError};
use singularity_common::naming::artifact_cache_name;
use singularity_common::records::S3Artifact;
use singularity_runtime::Backoff;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

pub use self::clients::{S3Clients, configured_s3_clients};
use self::engine::{EngineConfig, EngineError, Output, PartBudget, Transfer};
use self::s3::S3Object;
use crate::cache::{ArtifactCache, CacheError, CacheStats, Lease, TEMP_PREFIX};

/// How downloads run. See the module docs for what they cost in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSettings {
    /// Bytes per ranged GET (at least 1).
    pub part_size: u64,
    /// Parts in flight or waiting to be hashed, all downloads together (at least 1). With
    /// `part_size`, the bound on memory held for transfers.
    pub part_concurrency: usize,
    /// Deadline of one attempt of one part (its request and its body).
    pub part_timeout: Duration,
    /// Attempts of a part in all, the first one included, with exponential backoff and
    /// jitter between them (`s3ChunkRetries` + 1).
    pub part_attempts: u32,
    /// Deadline of a whole download, from the moment it may start (waiting for one of the
    /// `max_concurrent_downloads` slots does not count).
    pub download_timeout: Duration,
    /// Downloads running at once (at least 1); more wait for a slot.
    pub max_concurrent_downloads: usize,
}

/// Wait before the first retry of a part, before jitter.
const PART_RETRY_BASE: Duration = Duration::from_millis(200);
/// Longest wait between two attempts of a part.
const PART_RETRY_MAX: Duration = Duration::from_secs(5);

impl FetchSettings {
    /// Default part size: 2 MiB.
    pub const DEFAULT_PART_SIZE: u64 = 2 * 1024 * 1024;
    /// Default parts in flight (or waiting to be hashed) at once.
    pub const DEFAULT_PART_CONCURRENCY: usize = 8;
}

impl Default for FetchSettings {
    /// 2 MiB × 8 parts: eight connections in flight and at most 16 MiB held for hashing,
    /// which keeps a 1 GiB download well under 64 MB of RSS. The timeouts, retries and
    /// download slots are the Java defaults (`s3ChunkDownloadTimeoutMillis`,
    /// `s3ChunkRetries`, `s3DownloadTimeoutMillis`, `numDownloaderThreads`).
    fn default() -> Self {
        Self {
            part_size: Self::DEFAULT_PART_SIZE,
            part_concurrency: Self::DEFAULT_PART_CONCURRENCY,
            part_timeout: Duration::from_secs(30),
            part_attempts: 4,
            download_timeout: Duration::from_secs(120),
            max_concurrent_downloads: 5,
        }
    }
}

/// Why an artifact could not be brought into the cache. Every message names the object as
/// `s3://bucket/key`. Cloneable: all callers sharing a download get the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The artifact description cannot be fetched as given (a field is empty or malformed).
    #[error("s3://{bucket}/{key}: {field} {reason}")]
    Invalid {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The field at fault, as a JSON path (`s3Artifact.md5sum`).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No such object (or no such bucket).
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The content's md5 differs from `md5sum`.
    #[error("s3://{bucket}/{key}: md5 is {actual}, expected {expected}")]
    Md5Mismatch {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// `md5sum` as given.
        expected: String,
        /// md5 of what was downloaded.
        actual: String,
    },
    /// The object's size differs from `filesize`.
    #[error("s3://{bucket}/{key}: size is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// `filesize` as given.
        expected: u64,
        /// The object's size.
        actual: u64,
    },
    /// A deadline passed: of the whole download, or of every attempt of one part.
    #[error("s3://{bucket}/{key}: {what} timed out after {after:?}")]
    Timeout {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What ran out of time.
        what: Deadline,
        /// The deadline.
        after: Duration,
    },
    /// S3 refused or failed a request for good (after retries where retrying made sense).
    #[error("s3://{bucket}/{key}: {request} failed{}: {source}", retried(*attempts))]
    S3 {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The request.
        request: Request,
        /// How many times it was sent.
        attempts: u32,
        /// What S3 (or the connection) said, the last time.
        source: S3Failure,
    },
    /// The object changed while it was being downloaded (its size or ETag).
    #[error("s3://{bucket}/{key} changed during the download: {change}")]
    Changed {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What changed.
        change: Change,
    },
    /// A file operation in the cache directory failed.
    #[error("s3://{bucket}/{key}: {what} {}: {source}", path.display())]
    Io {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The operation.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// The cache failed.
    #[error("s3://{bucket}/{key}: {source}")]
    Cache {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        source: CacheError,
    },
    /// A task of the download died (a bug).
    #[error("s3://{bucket}/{key}: {source}")]
    Internal {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What happened.
        source: InternalError,
    },
}

/// A part of the downloader that should not fail did (a panic, a channel closed early).
/// Cloneable, like [`FetchError`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum InternalError {
    /// A task died.
    #[error("{task}: {source}")]
    Task {
        /// Which (`part task`, `hasher`, `rename task`...).
        task: &'static str,
        /// How it ended.
        source: Arc<tokio::task::JoinError>,
    },
    /// The task running a download ended without a result.
    #[error("the download task died")]
    DownloadTaskDied,
    /// The semaphore of download slots was closed.
    #[error("the download slots are closed")]
    SlotsClosed,
    /// The semaphore of part buffers was closed.
    #[error("the part budget is closed")]
    BudgetClosed,
    /// The object has more parts than this platform can count.
    #[error("{total} bytes is too many parts")]
    TooManyParts {
        /// The object's size.
        total: u64,
    },
    /// The hasher stopped taking parts before the transfer ended.
    #[error("the hasher stopped early")]
    HasherStoppedEarly,
    /// The hasher ended without hashing every part.
    #[error("the hasher stopped before the last part")]
    HasherIncomplete,
}

impl InternalError {
    /// A task that died.
    pub(crate) fn task(task: &'static str, source: tokio::task::JoinError) -> Self {
        Self::Task {
            task,
            source: Arc::new(source),
        }
    }
}

/// `" N times, last"` after "failed" when a request was sent more than once.
fn retried(attempts: u32) -> String {
    if attempts > 1 {
        format!(" {attempts} times, last")
    } else {
        String::new()
    }
}

/// A request of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The HEAD that tells the object's size.
    Head,
    /// The GET of the first part, which also tells the object's size.
    FirstPart,
    /// The GET of bytes `first..=last`.
    Range {
        /// The first byte.
        first: u64,
        /// The last byte (inclusive).
        last: u64,
    },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head => f.write_str("HEAD"),
            Self::FirstPart => f.write_str("GET of the first part"),
            Self::Range { first, last } => write!(f, "GET of bytes {first}-{last}"),
        }
    }
}

/// What ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Deadline {
    /// The whole download.
    #[error("the download")]
    Download,
    /// Every attempt of one request.
    #[error("{request} (each of {attempts} attempts)")]
    Request {
        /// The request.
        request: Request,
        /// How many times it was sent.
        attempts: u32,
    },
}

/// How one request to S3 failed: the SDK's error, or an answer that does not fit the
/// request. Cloneable, like [`FetchError`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum S3Failure {
    /// The SDK's error: S3's refusal, a dropped connection, an unreadable response.
    #[error("{}", DisplayErrorContext(&**source))]
    Sdk {
        /// The error.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Reading the body of a response failed.
    #[error("reading the body: {}", DisplayErrorContext(&**source))]
    Body {
        /// The error.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The Content-Range header cannot be parsed or makes no sense.
    #[error("unusable Content-Range {range:?}")]
    UnusableContentRange {
        /// The header as received.
        range: String,
    },
    /// Content-Length and Content-Range disagree.
    #[error("Content-Length {content_length} does not match Content-Range {range:?}")]
    LengthMismatch {
        /// Content-Length.
        content_length: u64,
        /// Content-Range as received.
        range: String,
    },
    /// A GET answered with neither a range nor a length.
    #[error("response has neither Content-Range nor Content-Length")]
    NoLength,
    /// A HEAD answered without a length.
    #[error("HEAD answered without a size")]
    HeadWithoutSize,
    /// The first part came back as another range than the one asked for.
    #[error("asked for bytes 0-{last} and got {len} bytes from {start} of {total}")]
    WrongFirstPart {
        /// The last byte asked for.
        last: u64,
        /// Bytes served.
        len: u64,
        /// First byte served.
        start: u64,
        /// The object's size.
        total: u64,
    },
    /// A part came back as another range than the one asked for.
    #[error(
        "asked for bytes {first}-{last} and got {len} bytes from {start}{}",
        if *partial { "" } else { " (the whole object)" }
    )]
    WrongRange {
        /// The first byte asked for.
        first: u64,
        /// The last byte asked for.
        last: u64,
        /// Bytes served.
        len: u64,
        /// First byte served.
        start: u64,
        /// Whether the server answered with a range, not the whole object.
        partial: bool,
    },
    /// A body carried more bytes than its range.
    #[error("the body of bytes {first}-{last} is longer than asked for")]
    BodyTooLong {
        /// The first byte of the range.
        first: u64,
        /// The last byte of the range.
        last: u64,
    },
    /// A body ended before its range did.
    #[error("the body of bytes {first}-{last} ended after {received} of {expected} bytes")]
    BodyTooShort {
        /// The first byte of the range.
        first: u64,
        /// The last byte of the range.
        last: u64,
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
}

/// How an object changed while it was being downloaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Change {
    /// Its size.
    #[error("size {before} became {after}")]
    Size {
        /// The size first seen.
        before: u64,
        /// The size seen later.
        after: u64,
    },
    /// Its ETag.
    #[error("ETag {before} became {after}")]
    Etag {
        /// The ETag first seen.
        before: String,
        /// The ETag seen later.
        after: String,
    },
}

/// An artifact in the cache, pinned there (never evicted) until this value and its clones
/// are dropped.
#[derive(Debug, Clone)]
pub struct CachedArtifact {
    /// The cache file.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its md5 (lowercase hex), when known.
    pub md5: Option<String>,
    /// Found in the cache: no download was needed.
    pub cache_hit: bool,
    /// This fetch waited on a download or lookup another fetch had started.
    pub joined: bool,
    /// Body bytes the download started by this fetch read from S3 (0 for a hit or when
    /// joining another fetch's download, so that summing it over fetches counts each byte
    /// once).
    pub bytes_from_s3: u64,
    /// How long the download started by this fetch took (`None` for a hit or a join).
    pub download_duration: Option<Duration>,
    /// The mirror given to [`Fetcher::fetch_into`] holds the whole artifact: this fetch
    /// started the download and every write to the mirror succeeded.
    pub mirrored: bool,
    lease: Lease,
}

/// Totals since the fetcher was made. Unlike [`CachedArtifact`]'s fields, they also count
/// downloads whose callers all gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchCounters {
    /// Downloads started.
    pub downloads_started: u64,
    /// Downloads that landed in the cache.
    pub downloads_succeeded: u64,
    /// Downloads that failed.
    pub downloads_failed: u64,
    /// Body bytes read from S3 by finished downloads, successful or not.
    pub bytes_from_s3: u64,
}

/// Fetches artifacts into the cache. See the module docs.
pub struct Fetcher {
    shared: Arc<Shared>,
}

impl CachedArtifact {
    /// The lease pinning the entry; clone it to keep the file beyond this value.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("settings", &self.shared.settings)
            .field("active_downloads", &self.active_downloads())
            .field("cache", &self.shared.cache.dir())
            .finish_non_exhaustive()
    }
}

type FlightResult = Result<Arc<Landed>, FetchError>;

struct Shared {
    cache: ArtifactCache,
    clients: Arc<dyn S3Clients>,
    settings: FetchSettings,
    slots: Semaphore,
    /// Parts of all downloads in flight or waiting to be hashed: the memory bound.
    parts_budget: Arc<PartBudget>,
    flights: Mutex<HashMap<Wanted, watch::Receiver<Option<FlightResult>>>>,
    active: AtomicUsize,
    tasks: TaskTracker,
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    bytes_from_s3: AtomicU64,
}

/// What a flight produced: an entry in the cache, leased until every waiter has its own lease.
#[derive(Debug)]
struct Landed {
    lease: Lease,
    size: u64,
    md5: Option<String>,
    /// Bytes read and time taken, when the flight downloaded.
    download: Option<(u64, Duration)>,
    /// The flight's mirror holds the whole artifact.
    mirrored: bool,
}

/// One artifact as a flight key: everything that decides what the result is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Wanted {
    bucket: String,
    key: String,
    cache_name: String,
    md5: Option<String>,
    size: Option<u64>,
}

impl Wanted {
    fn of(artifact: &S3Artifact) -> Result<Self, FetchError> {
        let invalid = |field: &'static str, reason: &'static str| FetchError::Invalid {
            bucket: artifact.s3_bucket.clone(),
            key: artifact.s3_object_key.clone(),
            field,
            reason,
        };
        if artifact.s3_bucket.is_empty() {
            return Err(invalid("s3Artifact.s3Bucket", "is empty"));
        }
        if artifact.s3_object_key.is_empty() {
            return Err(invalid("s3Artifact.s3ObjectKey", "is empty"));
        }
        let filename = artifact.filename.as_str();
        if filename.is_empty() || filename == "." || filename == ".." {
            return Err(invalid("s3Artifact.filename", "is not a file name"));
        }
        if filename.contains(['/', '\0']) {
            return Err(invalid(
                "s3Artifact.filename",
                "must be a plain file name (no '/')",
            ));
        }
        if filename.starts_with(TEMP_PREFIX) || filename.starts_with(".singularity-s3-downloader") {
            return Err(invalid(
                "s3Artifact.filename",
                "is a name the cache reserves for itself",
            ));
        }
        let md5 = match &artifact.md5sum {
            None => None,
            Some(md5) => {
                let md5 = md5.trim();
                if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(
                        "s3Artifact.md5sum",
                        "must be 32 hexadecimal digits",
                    ));
                }
                Some(md5.to_owned())
            }
        };
        let size = match artifact.filesize {
            None => None,
            Some(size) => Some(
                u64::try_from(size).map_err(|_| invalid("s3Artifact.filesize", "is negative"))?,
            ),
        };
        Ok(Self {
            bucket: artifact.s3_bucket.clone(),
            key: artifact.s3_object_key.clone(),
            cache_name: artifact_cache_name(md5.as_deref(), filename),
            md5,
            size,
        })
    }

    fn internal(&self, source: InternalError) -> FetchError {
        FetchError::Internal {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            source,
        }
    }

    fn cache_error(&self, source: CacheError) -> FetchError {
        FetchError::Cache {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            source,
        }
    }

    fn io_error(&self, what: &'static str, path: PathBuf, source: std::io::Error) -> FetchError {
        FetchError::Io {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            what,
            path,
            source: Arc::new(source),
        }
    }

    fn engine_error(&self, error: EngineError, temp: &std::path::Path) -> FetchError {
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        match error {
            EngineError::NotFound => FetchError::NotFound { bucket, key },
            EngineError::SizeMismatch { expected, actual } => FetchError::SizeMismatch {
                bucket,
                key,
                expected,
                actual,
            },
            EngineError::Changed(change) => FetchError::Changed {
                bucket,
                key,
                change,
            },
            EngineError::Timeout {
                request,
                attempts,
                per_attempt,
            } => FetchError::Timeout {
                bucket,
                key,
                what: Deadline::Request { request, attempts },
                after: per_attempt,
            },
            EngineError::Source {
                request,
                attempts,
                error,
            } => FetchError::S3 {
                bucket,
                key,
                request,
                attempts,
                source: error.failure,
            },
            EngineError::Write(source) => self.io_error("write", temp.to_owned(), source),
            EngineError::Internal(source) => FetchError::Internal {
                bucket,
                key,
                source,
            },
        }
    }
}

/// Counts a download as active while alive.
struct ActiveDownload<'a>(&'a AtomicUsize);

impl<'a> ActiveDownload<'a> {
    fn new(active: &'a AtomicUsize) -> Self {
        active.fetch_add(1, Ordering::SeqCst);
        Self(active)
    }
}

impl Drop for ActiveDownload<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Removes a flight from the map when its task ends, however it ends.
struct FlightEntry {
    shared: Arc<Shared>,
    wanted: Wanted,
}

impl Drop for FlightEntry {
    fn drop(&mut self) {
        self.shared.flights().remove(&self.wanted);
    }
}

impl Fetcher {
    /// A fetcher filling `cache` from S3 through `clients`.
    pub fn new(cache: ArtifactCache, clients: Arc<dyn S3Clients>, settings: FetchSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                cache,
                clients,
                slots: Semaphore::new(settings.max_concurrent_downloads.max(1)),
                parts_budget: Arc::new(PartBudget::new(settings.part_concurrency)),
                settings,
                flights: Mutex::new(HashMap::new()),
                active: AtomicUsize::new(0),
                tasks: TaskTracker::new(),
                started: AtomicU64::new(0),
                succeeded: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                bytes_from_s3: AtomicU64::new(0),
            }),
        }
    }

    /// Brings `artifact` into the cache (or finds it there) and leases it.
    ///
    /// Cancellation-safe: the work runs in a task of its own, shared with every concurrent
    /// fetch of the same artifact; dropping this future only stops waiting for it.
    pub async fn fetch(&self, artifact: &S3Artifact) -> Result<CachedArtifact, FetchError> {
        self.fetch_into(artifact, None).await
    }

    /// [`fetch`](Self::fetch), writing the bytes also into `mirror` (an empty file) if this
    /// fetch is the one that starts a download; [`CachedArtifact::mirrored`] says whether
    /// the mirror then holds the whole, verified artifact. A caller that gives up leaves the
    /// download writing to the mirror until it ends.
    pub async fn fetch_into(
        &self,
        artifact: &S3Artifact,
        mirror: Option<Arc<std::fs::File>>,
    ) -> Result<CachedArtifact, FetchError> {
        let wanted = Wanted::of(artifact)?;
        let (mut results, started_here) = self.join_or_start(&wanted, mirror);
        let landed = match results.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            Err(_) => None,
        };
        let landed =
            landed.unwrap_or_else(|| Err(wanted.internal(InternalError::DownloadTaskDied)))?;
        let (bytes_from_s3, download_duration) = match landed.download {
            Some((bytes, took)) if started_here => (bytes, Some(took)),
            _ => (0, None),
        };
        let lease = landed.lease.clone();
        Ok(CachedArtifact {
            path: lease.path(),
            size: landed.size,
            md5: landed.md5.clone(),
            cache_hit: landed.download.is_none(),
            joined: !started_here,
            bytes_from_s3,
            download_duration,
            mirrored: started_here && landed.mirrored,
            lease,
        })
    }

    /// Downloads running now (holding one of the `max_concurrent_downloads` slots).
    pub fn active_downloads(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// The cache's size right now.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }

    /// The cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.shared.cache
    }

    /// The settings in use.
    pub fn settings(&self) -> &FetchSettings {
        &self.shared.settings
    }

    /// Download totals so far.
    pub fn counters(&self) -> FetchCounters {
        FetchCounters {
            downloads_started: self.shared.started.load(Ordering::SeqCst),
            downloads_succeeded: self.shared.succeeded.load(Ordering::SeqCst),
            downloads_failed: self.shared.failed.load(Ordering::SeqCst),
            bytes_from_s3: self.shared.bytes_from_s3.load(Ordering::SeqCst),
        }
    }

    /// For shutdown: waits up to `grace` for the downloads (and lookups) in flight to end,
    /// then for the cache index to be written. Downloads still running after that are
    /// abandoned with the runtime; their temp files are removed as they are dropped, or at
    /// the next start.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.shared.tasks.close();
        if tokio::time::timeout_at(deadline, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                active_downloads = self.active_downloads(),
                ?grace,
                "downloads still running at the end of the grace period"
            );
        }
        self.shared.tasks.reopen();
        let _ = tokio::time::timeout_at(deadline, self.shared.cache.flush()).await;
    }

    fn join_or_start(
        &self,
        wanted: &Wanted,
        mirror: Option<Arc<std::fs::File>>,
    ) -> (watch::Receiver<Option<FlightResult>>, bool) {
        let mut flights = self.shared.flights();
        if let Some(results) = flights.get(wanted) {
            return (results.clone(), false);
        }
        let (publish, results) = watch::channel(None);
        flights.insert(wanted.clone(), results.clone());
        drop(flights);
        let entry = FlightEntry {
            shared: Arc::clone(&self.shared),
            wanted: wanted.clone(),
        };
        self.shared.tasks.spawn(async move {
            let result = entry.shared.fly(&entry.wanted, mirror).await;
            // Gone from the map before the result is out: a fetch arriving later starts
            // afresh (and finds the cache entry) instead of reading a stale error.
            drop(entry);
            publish.send_replace(Some(result));
        });
        (results, true)
    }
}

impl Shared {
    fn flights(&self) -> MutexGuard<'_, HashMap<Wanted, watch::Receiver<Option<FlightResult>>>> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn lookup(&self, wanted: &Wanted) -> Result<Option<Arc<Landed>>, FetchError> {
        let lease = self
            .cache
            .get(&wanted.cache_name, wanted.size, wanted.md5.as_deref())
            .await
            .map_err(|e| wanted.cache_error(e))?;
        Ok(lease.map(|lease| {
            Arc::new(Landed {
                size: lease.size(),
                md5: lease.md5(),
                lease,
                download: None,
                mirrored: false,
            })
        }))
    }

    /// A flight: a hit, or a download once a slot is free.
    async fn fly(&self, wanted: &Wanted, mirror: Option<Arc<std::fs::File>>) -> FlightResult {
        if let Some(hit) = self.lookup(wanted).await? {
            return Ok(hit);
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| wanted.internal(InternalError::SlotsClosed))?;
        // Another flight for the same file (with a different expected size) may have landed
        // while this one waited.
        if let Some(hit) = self.lookup(wanted).await? {
            return Ok(hit);
        }
        let _active = ActiveDownload::new(&self.active);
        self.started.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let bytes_read = Arc::new(AtomicU64::new(0));
        let result = match tokio::time::timeout(
            self.settings.download_timeout,
            self.download(wanted, Arc::clone(&bytes_read), mirror),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                bucket: wanted.bucket.clone(),
                key: wanted.key.clone(),
                what: Deadline::Download,
                after: self.settings.download_timeout,
            }),
        };
        let took = started.elapsed();
        let bytes = bytes_read.load(Ordering::SeqCst);
        self.bytes_from_s3.fetch_add(bytes, Ordering::SeqCst);
        match result {
            Ok((lease, transfer)) => {
                self.succeeded.fetch_add(1, Ordering::SeqCst);
                tracing::info!(
                    bucket = %wanted.bucket,
                    key = %wanted.key,
                    size = transfer.size,
                    ms = took.as_millis(),
                    mib_per_s = format!("{:.1}", transfer.size as f64 / 1_048_576.0 / took.as_secs_f64().max(1e-6)),
                    "downloaded"
                );
                Ok(Arc::new(Landed {
                    lease,
                    size: transfer.size,
                    md5: Some(transfer.md5),
                    download: Some((bytes, took)),
                    mirrored: transfer.mirrored,
                }))
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(%error, ms = took.as_millis(), "download failed");
                Err(error)
            }
        }
    }

    fn engine_config(&self, wanted: &Wanted) -> EngineConfig {
        EngineConfig {
            part_size: self.settings.part_size.max(1),
            part_concurrency: self.settings.part_concurrency.max(1),
            part_timeout: self.settings.part_timeout,
            retry: Backoff {
                attempts: self.settings.part_attempts,
                base: PART_RETRY_BASE,
                max: PART_RETRY_MAX,
            },
            // Only a download without an md5 is fsynced before anyone may use it.
            write_behind: wanted.md5.is_none(),
        }
    }

    /// Downloads into a temp file, verifies it and renames it into the cache; makes it durable
    /// before the rename (no md5) or after it, in the background (see the module docs).
    async fn download(
        &self,
        wanted: &Wanted,
        bytes_read: Arc<AtomicU64>,
        mirror: Option<Arc<std::fs::File>>,
    ) -> Result<(Lease, Transfer), FetchError> {
        let source = Arc::new(S3Object {
            client: self.clients.client_for(&wanted.bucket).await,
            bucket: wanted.bucket.clone(),
            key: wanted.key.clone(),
        });
        let (file, temp) = self
            .cache
            .temp_file(&wanted.cache_name)
            .map_err(|e| wanted.cache_error(e))?;
        let file = Arc::new(file);
        let transfer = engine::download(
            source,
            Output {
                file: Arc::clone(&file),
                mirror,
            },
            wanted.size,
            self.engine_config(wanted),
            Arc::clone(&self.parts_budget),
            bytes_read,
        )
        .await
        .map_err(|e| wanted.engine_error(e, &temp))?;
        if let Some(expected) = &wanted.md5
            && !singularity_artifacts::md5_matches(expected, &transfer.md5)
        {
            return Err(FetchError::Md5Mismatch {
                bucket: wanted.bucket.clone(),
                key: wanted.key.clone(),
                expected: expected.clone(),
                actual: transfer.md5,
            });
        }
        let dir = self.cache.dir().to_owned();
        let name = wanted.cache_name.clone();
        let adopt_error =
            |e: CacheFileError| wanted.io_error("rename a download to", e.path, e.source);
        if wanted.md5.is_some() {
            // Named by its md5, so a hit whose md5 the index does not vouch for hashes the
            // file first: the entry can be used at once and made durable afterwards, off the
            // requests' path (see the cache's docs on durability).
            let path = tokio::task::spawn_blocking(move || cache_dir::adopt(temp, &dir, &name))
                .await
                .map_err(|e| wanted.internal(InternalError::task("rename task", e)))?
                .map_err(adopt_error)?;
            let (lease, unsynced) = self
                .cache
                .insert_unsynced(&wanted.cache_name, transfer.md5.clone())
                .await
                .map_err(|e| wanted.cache_error(e))?;
            let cache = self.cache.clone();
            self.tasks.spawn(async move {
                let syncing = Instant::now();
                match tokio::task::spawn_blocking(move || file.sync_all()).await {
                    Ok(Ok(())) => {
                        cache.mark_synced(unsynced);
                        tracing::debug!(
                            path = %path.display(),
                            fsync_ms = syncing.elapsed().as_millis(),
                            "download on disk"
                        );
                    }
                    // The index keeps no md5 for it, so after a restart the file is hashed
                    // again before it is used.
                    Ok(Err(error)) => tracing::warn!(
                        path = %path.display(),
                        %error,
                        "fsync of a download failed"
                    ),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "fsync task failed")
                    }
                }
            });
            return Ok((lease, transfer));
        }
        // Without an md5 nothing could tell a damaged file from a good one after a crash, so
        // it is durable before it appears under its name. The rename itself is not made
        // durable: lost in a crash, it costs a download again, nothing more.
        let landed = tokio::task::spawn_blocking(move || {
            let syncing = Instant::now();
            file.sync_all()
                .map_err(|e| ("fsync", temp.to_path_buf(), e))?;
            let synced = syncing.elapsed();
            cache_dir::adopt(temp, &dir, &name)
                .map_err(|e| ("rename a download to", e.path, e.source))?;
            Ok::<_, (&'static str, PathBuf, std::io::Error)>(synced)
        })
        .await
        .map_err(|e| wanted.internal(InternalError::task("fsync task", e)))?;
        let synced = landed.map_err(|(what, path, e)| wanted.io_error(what, path, e))?;
        tracing::debug!(
            key = %wanted.key,
            fsync_ms = synced.as_millis(),
            "download written to disk"
        );
        let lease = self
            .cache
            .insert(&wanted.cache_name, Some(transfer.md5.clone()))
            .await
            .map_err(|e| wanted.cache_error(e))?;
        Ok((lease, transfer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> S3Artifact {
        S3Artifact {
            name: "app".to_owned(),
            filename: "app.tar.gz".to_owned(),
            md5sum: Some(" 0CC175B9C0F1B6A831C399E269772661 ".to_owned()),
            target_folder_relative_to_task: None,
            filesize: Some(12),
            is_artifact_list: None,
            s3_bucket: "bucket".to_owned(),
            s3_object_key: "a/b/app.tar.gz".to_owned(),
        }
    }

    #[test]
    fn wanted_uses_the_java_cache_name() {
        let wanted = Wanted::of(&artifact()).unwrap();
        assert_eq!(
            wanted.cache_name,
            "0CC175B9C0F1B6A831C399E269772661-app.tar.gz"
        );
        assert_eq!(wanted.size, Some(12));
        let plain = Wanted::of(&S3Artifact {
            md5sum: None,
            ..artifact()
        })
        .unwrap();
        assert_eq!(plain.cache_name, "app.tar.gz");
    }

    #[test]
    fn unusable_artifacts_name_the_field() {
        let cases = [
            (
                S3Artifact {
                    filename: "../etc/passwd".to_owned(),
                    ..artifact()
                },
                "s3Artifact.filename",
            ),
            (
                S3Artifact {
                    filename: "..".to_owned(),
                    ..artifact()
                },
                "s3Artifact.filename",
            ),
            (
                S3Artifact {
                    filename: format!("{TEMP_PREFIX}x"),
                    md5sum: None,
                    ..artifact()
                },
                "s3Artifact.filename",
            ),
            (
                S3Artifact {
                    md5sum: Some("abc/def".to_owned()),
                    ..artifact()
                },
                "s3Artifact.md5sum",
            ),
            (
                S3Artifact {
                    filesize: Some(-1),
                    ..artifact()
                },
                "s3Artifact.filesize",
            ),
            (
                S3Artifact {
                    s3_bucket: String::new(),
                    ..artifact()
                },
                "s3Artifact.s3Bucket",
            ),
        ];
        for (artifact, expected) in cases {
            match Wanted::of(&artifact) {
                Err(FetchError::Invalid { field, .. }) => assert_eq!(field, expected),
                other => panic!("{artifact:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn errors_name_bucket_and_key() {
        let wanted = Wanted::of(&artifact()).unwrap();
        let message = wanted
            .engine_error(EngineError::NotFound, std::path::Path::new("/tmp/x"))
            .to_string();
        assert_eq!(message, "s3://bucket/a/b/app.tar.gz does not exist");
    }

    #[test]
    fn request_failures_name_the_request_and_attempts() {
        let wanted = Wanted::of(&artifact()).unwrap();
        let temp = std::path::Path::new("/tmp/x");
        let failed = |request, attempts| {
            let error = engine::SourceError::new(
                engine::SourceErrorKind::Permanent,
                S3Failure::HeadWithoutSize,
            );
            let error = EngineError::Source {
                request,
                attempts,
                error,
            };
            wanted.engine_error(error, temp).to_string()
        };
        assert_eq!(
            failed(Request::Head, 1),
            "s3://bucket/a/b/app.tar.gz: HEAD failed: HEAD answered without a size"
        );
        assert_eq!(
            failed(Request::Range { first: 0, last: 99 }, 3),
            "s3://bucket/a/b/app.tar.gz: GET of bytes 0-99 failed 3 times, last: \
             HEAD answered without a size"
        );
        let timeout = EngineError::Timeout {
            request: Request::FirstPart,
            attempts: 2,
            per_attempt: Duration::from_secs(1),
        };
        assert_eq!(
            wanted.engine_error(timeout, temp).to_string(),
            "s3://bucket/a/b/app.tar.gz: GET of the first part (each of 2 attempts) timed out \
             after 1s"
        );
    }
}
