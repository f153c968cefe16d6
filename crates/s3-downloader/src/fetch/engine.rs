//! The transfer itself: ranged GETs in parallel, each written in place at its offset, hashed
//! in order as the bytes arrive.
//!
//! The object is cut into parts of `part_size` bytes. Parts run as separate tasks; each
//! streams its range into the file with positional writes (no chunk files to join). md5 needs
//! the bytes in order, so every part also hands its bytes to one hasher thread, which hashes
//! the lowest unfinished part directly and keeps the bytes of later parts until their turn
//! (in reused part-sized buffers, see [`Batch`]). Hashing thus runs alongside the network
//! and the writes, and is done when the last byte has arrived: nothing is read back.
//! A part may start only within `part_concurrency` of the lowest unhashed part, and only
//! with a permit from a budget of `part_concurrency` parts shared by all transfers, kept
//! until the part is hashed. That bounds both the connections in use and the memory held
//! for hashing (about `part_concurrency × part_size`, however many transfers run).
//!
//! With `write_behind`, written pages are handed to the kernel for writeback as they land,
//! so an fsync right after the transfer does not have to write the whole file.
//!
//! A transfer may also write every byte to a second file, the mirror (the copy a request
//! will place in its target directory), so that placing the artifact after the download is
//! a rename rather than a copy of the whole file. The mirror is best effort: a write to it
//! that fails stops the mirroring, not the transfer, and the artifact is then copied.
//!
//! A part attempt has a deadline for its network reads (`part_timeout`); a failed attempt is
//! retried after a backoff and resumes where the last one stopped, so bytes already written
//! and hashed are never fetched twice. Every response is checked: the range served must be
//! the range asked for, the object's total size must stay what it was, and so must its ETag.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use md5::{Digest as _, Md5};
use rustix::fs::Advice;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use singularity_runtime::Backoff;

use super::{Change, InternalError, Request, S3Failure};

/// Bytes gathered from a response before they are written with one blocking call and
/// handed to the hasher in one message.
const WRITE_BATCH: usize = 1024 * 1024;

/// A response to a ranged GET (or to the probe that asks for the first part of an object of
/// unknown size).
pub(crate) struct RangeResponse<B> {
    /// First byte served.
    pub start: u64,
    /// Number of bytes the body carries.
    pub len: u64,
    /// The object's size.
    pub total: u64,
    /// Whether the server answered with a range (206); `false` means the whole object.
    pub partial: bool,
    /// The object's ETag, when the server sent one.
    pub etag: Option<String>,
    /// The bytes.
    pub body: B,
}

/// What a HEAD tells about the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// ETag, when sent.
    pub etag: Option<String>,
}

/// Where parts come from: S3 in production, fakes in the unit tests.
pub(crate) trait PartSource: Send + Sync + 'static {
    /// The body of a response.
    type Body: PartBody;

    /// GET of bytes `start..end` (`end` exclusive, `end > start`).
    fn get(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<RangeResponse<Self::Body>, SourceError>> + Send;

    /// HEAD of the object.
    fn head(&self) -> impl Future<Output = Result<ObjectInfo, SourceError>> + Send;
}

/// A response body, read chunk by chunk.
pub(crate) trait PartBody: Send + 'static {
    /// The next chunk, `None` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, SourceError>> + Send;
}

/// How a request to the source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceErrorKind {
    /// No such object (or bucket).
    NotFound,
    /// The range lies beyond the object's end (416).
    InvalidRange,
    /// Worth another try: a 5xx, throttling, a dropped connection, a short body.
    Transient,
    /// Not worth another try: access denied, a malformed answer.
    Permanent,
}

/// A failed request to the source: what went wrong, and what the transfer does about it.
#[derive(Debug, Clone)]
pub(crate) struct SourceError {
    pub kind: SourceErrorKind,
    pub failure: S3Failure,
}

impl SourceError {
    pub fn new(kind: SourceErrorKind, failure: S3Failure) -> Self {
        Self { kind, failure }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.failure.fmt(f)
    }
}

/// How a transfer failed.
#[derive(Debug)]
pub(crate) enum EngineError {
    /// The object does not exist.
    NotFound,
    /// The object's size is not the expected one.
    SizeMismatch { expected: u64, actual: u64 },
    /// The object changed between two requests of this transfer.
    Changed(Change),
    /// Every attempt of a request ran out of time.
    Timeout {
        request: Request,
        attempts: u32,
        per_attempt: Duration,
    },
    /// A request failed for good (after its retries, if it was worth retrying).
    Source {
        request: Request,
        attempts: u32,
        error: SourceError,
    },
    /// Writing the file failed.
    Write(std::io::Error),
    /// A task of the transfer died (a panic).
    Internal(InternalError),
}

/// The transfer's knobs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineConfig {
    pub part_size: u64,
    pub part_concurrency: usize,
    pub part_timeout: Duration,
    pub retry: Backoff,
    /// Start writeback of each batch as soon as it is written, for a transfer that is
    /// fsynced as soon as it ends.
    pub write_behind: bool,
}

/// A finished transfer: the file holds `size` bytes whose md5 is `md5`; so does the mirror,
/// if there was one, when `mirrored`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub size: u64,
    pub md5: String,
    pub mirrored: bool,
}

/// The parts all transfers together may hold (in flight or waiting to be hashed), and the
/// buffers their bytes are copied into (see [`Batch`]), kept for the next parts while
/// transfers run.
pub(crate) struct PartBudget {
    permits: Arc<Semaphore>,
    parts: usize,
    spare: Mutex<Vec<BytesMut>>,
}

impl PartBudget {
    /// A budget of `parts` parts (at least 1).
    pub fn new(parts: usize) -> Self {
        let parts = parts.max(1);
        Self {
            permits: Arc::new(Semaphore::new(parts)),
            parts,
            spare: Mutex::new(Vec::new()),
        }
    }

    /// Parts that may start now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Internal(InternalError::BudgetClosed))
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Vec<BytesMut>> {
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer of `size` bytes: a spare one whose bytes have all been hashed,
    /// written and dropped, else a new one. Reuse spares the allocator the churn of
    /// part-sized blocks (page faults, unmapping), which would cost more than the copies.
    fn buffer(&self, size: usize) -> BytesMut {
        let mut spare = self.spare();
        match spare.iter_mut().position(|buffer| buffer.try_reclaim(size)) {
            Some(found) => spare.swap_remove(found),
            None => BytesMut::with_capacity(size),
        }
    }

    /// Keeps `buffer` (from [`Self::buffer`]) for a later part, up to one per part of the
    /// budget.
    fn give_back(&self, buffer: BytesMut) {
        let mut spare = self.spare();
        if spare.len() < self.parts {
            spare.push(buffer);
        }
    }

    /// Frees the spare buffers when no part is held, so an idle service holds no buffers.
    fn trim_if_idle(&self) {
        let mut spare = self.spare();
        if self.permits.available_permits() == self.parts {
            spare.clear();
        }
    }
}

impl fmt::Debug for PartBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartBudget")
            .field("parts", &self.parts)
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// Where a transfer writes: `file` (empty, opened for writing) and, when given, `mirror`
/// (the same, best effort).
pub(crate) struct Output {
    pub file: Arc<File>,
    pub mirror: Option<Arc<File>>,
}

/// Downloads the object from `source` into the output's files, checking its size against
/// `expected_size` when given, and returns its size and md5. `bytes_read` counts every body
/// byte received, also for transfers that fail.
pub(crate) async fn download<S: PartSource>(
    source: Arc<S>,
    output: Output,
    expected_size: Option<u64>,
    config: EngineConfig,
    budget: Arc<PartBudget>,
    bytes_read: Arc<AtomicU64>,
) -> Result<Transfer, EngineError> {
    let result = transfer(source, output, expected_size, config, &budget, bytes_read).await;
    budget.trim_if_idle();
    result
}

async fn transfer<S: PartSource>(
    source: Arc<S>,
    output: Output,
    expected_size: Option<u64>,
    config: EngineConfig,
    budget: &Arc<PartBudget>,
    bytes_read: Arc<AtomicU64>,
) -> Result<Transfer, EngineError> {
    let part_size = config.part_size.max(1);
    let ctx = Arc::new(Ctx {
        source,
        mirrored: Arc::new(AtomicBool::new(output.mirror.is_some())),
        file: output.file,
        mirror: output.mirror,
        config,
        bytes_read,
        etag: Mutex::new(None),
        expected_size,
        budget: Arc::clone(budget),
    });
    let mut first_permit = None;
    let (total, first) = match expected_size {
        // Nothing to read, but the object must exist and be empty.
        Some(0) => (ctx.size_from_head().await?, None),
        Some(size) => (size, None),
        None => {
            // The probe's body becomes part 0, so it holds part 0's share of the budget.
            first_permit = Some(budget.acquire().await?);
            ctx.probe(part_size).await?
        }
    };
    if let Some(expected) = expected_size
        && total != expected
    {
        return Err(EngineError::SizeMismatch {
            expected,
            actual: total,
        });
    }
    // A server that ignored the range sent the whole object in the probe: one part.
    let part_size = match &first {
        Some(response) if !response.partial => total.max(1),
        _ => part_size,
    };
    if total == 0 {
        return Ok(Transfer {
            size: 0,
            md5: hex::encode(Md5::digest([])),
            mirrored: ctx.mirrored.load(Ordering::SeqCst),
        });
    }
    let parts = usize::try_from(total.div_ceil(part_size))
        .map_err(|_| EngineError::Internal(InternalError::TooManyParts { total }))?;
    let first = first.map(|response| (response, first_permit));
    let md5 = run_parts(&ctx, budget, total, part_size, parts, first).await?;
    Ok(Transfer {
        size: total,
        md5,
        mirrored: ctx.mirrored.load(Ordering::SeqCst),
    })
}

struct Ctx<S: PartSource> {
    source: Arc<S>,
    file: Arc<File>,
    mirror: Option<Arc<File>>,
    /// Whether the mirror has had every write so far.
    mirrored: Arc<AtomicBool>,
    config: EngineConfig,
    bytes_read: Arc<AtomicU64>,
    /// The first ETag seen; every later response must carry the same.
    etag: Mutex<Option<String>>,
    expected_size: Option<u64>,
    budget: Arc<PartBudget>,
}

/// How one attempt of a request failed.
enum AttemptError {
    TimedOut,
    Source(SourceError),
    /// Not to be retried, whatever happens.
    Fatal(EngineError),
}

impl From<SourceError> for AttemptError {
    fn from(error: SourceError) -> Self {
        Self::Source(error)
    }
}

impl<S: PartSource> Ctx<S> {
    /// Runs `attempt`, retrying timeouts and transient errors. Each attempt is given its
    /// deadline and enforces it on its network calls itself: it is never dropped half-way,
    /// so a write it has started always finishes before it returns.
    async fn with_retries<T, F, Fut>(
        &self,
        request: Request,
        mut attempt: F,
    ) -> Result<T, EngineError>
    where
        F: FnMut(Instant) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let mut retry = 0;
        loop {
            let deadline = Instant::now() + self.config.part_timeout;
            let error = match attempt(deadline).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let retryable = match &error {
                AttemptError::TimedOut => true,
                AttemptError::Source(e) => e.kind == SourceErrorKind::Transient,
                AttemptError::Fatal(_) => false,
            };
            if !retryable || self.config.retry.gives_up_after(retry + 1) {
                return Err(self.final_error(request, retry + 1, error));
            }
            let delay = self.config.retry.delay(retry);
            tracing::debug!(%request, retry, ?delay, error = %describe(&error), "retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    fn final_error(&self, request: Request, attempts: u32, error: AttemptError) -> EngineError {
        match error {
            AttemptError::TimedOut => EngineError::Timeout {
                request,
                attempts,
                per_attempt: self.config.part_timeout,
            },
            AttemptError::Source(e) if e.kind == SourceErrorKind::NotFound => EngineError::NotFound,
            AttemptError::Source(error) => EngineError::Source {
                request,
                attempts,
                error,
            },
            AttemptError::Fatal(e) => e,
        }
    }

    async fn size_from_head(&self) -> Result<u64, EngineError> {
        let info = self
            .with_retries(Request::Head, |deadline| async move {
                match timeout_at(deadline, self.source.head()).await {
                    Ok(result) => result.map_err(AttemptError::from),
                    Err(_) => Err(AttemptError::TimedOut),
                }
            })
            .await?;
        self.check_etag(info.etag.as_deref())
            .map_err(EngineError::Changed)?;
        Ok(info.size)
    }

    /// Learns the size of an object from a GET of its first part (saving a HEAD), and keeps
    /// that response for part 0. An empty object has no first byte to ask for: the server
    /// answers 416, and a HEAD gives the size.
    async fn probe(
        &self,
        part_size: u64,
    ) -> Result<(u64, Option<RangeResponse<S::Body>>), EngineError> {
        let probed = self
            .with_retries(Request::FirstPart, |deadline| async move {
                match timeout_at(deadline, self.source.get(0, part_size)).await {
                    Ok(Ok(response)) => Ok(Some(response)),
                    Ok(Err(e)) if e.kind == SourceErrorKind::InvalidRange => Ok(None),
                    Ok(Err(e)) => Err(AttemptError::Source(e)),
                    Err(_) => Err(AttemptError::TimedOut),
                }
            })
            .await?;
        let Some(response) = probed else {
            return Ok((self.size_from_head().await?, None));
        };
        let expected_len = if response.partial {
            part_size.min(response.total)
        } else {
            response.total
        };
        if response.start != 0 || response.len != expected_len {
            return Err(EngineError::Source {
                request: Request::FirstPart,
                attempts: 1,
                error: SourceError::new(
                    SourceErrorKind::Permanent,
                    S3Failure::WrongFirstPart {
                        last: part_size - 1,
                        len: response.len,
                        start: response.start,
                        total: response.total,
                    },
                ),
            });
        }
        self.check_etag(response.etag.as_deref())
            .map_err(EngineError::Changed)?;
        Ok((response.total, Some(response)))
    }

    /// A part past the object's end (416) means the object is smaller than the size this
    /// transfer works with; a HEAD tells by how much.
    async fn explain_invalid_range(
        &self,
        total: u64,
        request: Request,
        error: SourceError,
    ) -> EngineError {
        match self.size_from_head().await {
            Ok(actual) if actual != total => match self.expected_size {
                Some(expected) => EngineError::SizeMismatch { expected, actual },
                None => EngineError::Changed(Change::Size {
                    before: total,
                    after: actual,
                }),
            },
            Ok(_) => EngineError::Source {
                request,
                attempts: 1,
                error,
            },
            Err(head_error) => head_error,
        }
    }

    /// Records the first ETag seen, and fails if a later one differs.
    fn check_etag(&self, etag: Option<&str>) -> Result<(), Change> {
        let Some(etag) = etag else { return Ok(()) };
        let mut seen = self
            .etag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.as_deref() {
            None => {
                *seen = Some(etag.to_owned());
                Ok(())
            }
            Some(first) if first == etag => Ok(()),
            Some(first) => Err(Change::Etag {
                before: first.to_owned(),
                after: etag.to_owned(),
            }),
        }
    }

    /// Checks that a response serves exactly `start..end` of an object of the size this
    /// transfer is working with.
    fn check_response(
        &self,
        response: &RangeResponse<S::Body>,
        start: u64,
        end: u64,
        total: u64,
    ) -> Result<(), AttemptError> {
        if response.total != total {
            return Err(AttemptError::Fatal(match self.expected_size {
                Some(expected) => EngineError::SizeMismatch {
                    expected,
                    actual: response.total,
                },
                None => EngineError::Changed(Change::Size {
                    before: total,
                    after: response.total,
                }),
            }));
        }
        let whole = start == 0 && end == total;
        if response.start != start || response.len != end - start || !(response.partial || whole) {
            return Err(AttemptError::Source(SourceError::new(
                SourceErrorKind::Permanent,
                S3Failure::WrongRange {
                    first: start,
                    last: end - 1,
                    len: response.len,
                    start: response.start,
                    partial: response.partial,
                },
            )));
        }
        self.check_etag(response.etag.as_deref())
            .map_err(|change| AttemptError::Fatal(EngineError::Changed(change)))
    }
}

fn describe(error: &AttemptError) -> String {
    match error {
        AttemptError::TimedOut => "timed out".to_owned(),
        AttemptError::Source(e) => e.to_string(),
        AttemptError::Fatal(e) => format!("{e:?}"),
    }
}

/// A message to the hasher.
enum Hash {
    /// The next bytes of a part, in order within the part.
    Data(usize, Vec<Bytes>),
    /// The part is complete.
    Done(usize),
}

/// What the window loop waits for.
enum Event {
    Permit(Result<OwnedSemaphorePermit, EngineError>),
    Joined(Option<Result<Result<(), EngineError>, tokio::task::JoinError>>),
    Progress(bool),
}

/// Runs the parts through the window and returns the md5 of the whole object. A part may
/// start once it is within `part_concurrency` of the first part not yet hashed and it holds
/// one permit of `budget`, which it keeps until it is hashed; the budget is shared by all
/// downloads, so together they never hold more than its size in parts. Every holder of
/// permits holds one for its lowest unhashed part (permits are taken in part order), so
/// some download can always progress.
async fn run_parts<S: PartSource>(
    ctx: &Arc<Ctx<S>>,
    budget: &Arc<PartBudget>,
    total: u64,
    part_size: u64,
    parts: usize,
    mut first: Option<(RangeResponse<S::Body>, Option<OwnedSemaphorePermit>)>,
) -> Result<String, EngineError> {
    let (hash_tx, hash_rx) = std::sync::mpsc::channel::<Hash>();
    let (progress_tx, mut progress) = watch::channel(0usize);
    let hasher = tokio::task::spawn_blocking(move || hash_in_order(hash_rx, parts, progress_tx));
    let window = ctx.config.part_concurrency.max(1);
    let mut running = JoinSet::new();
    let mut held: VecDeque<(usize, OwnedSemaphorePermit)> = VecDeque::new();
    // Kept across iterations so the place in the budget's queue is not lost.
    let mut acquiring: Option<Pin<Box<dyn Future<Output = _> + Send>>> = None;
    let mut next = 0usize;
    let spawn = |running: &mut JoinSet<_>, part: usize, response| {
        let start = part as u64 * part_size;
        let end = (start + part_size).min(total);
        running.spawn(run_part(
            Arc::clone(ctx),
            hash_tx.clone(),
            part,
            start,
            end,
            total,
            response,
        ));
    };
    if let Some((response, permit)) = first.take() {
        spawn(&mut running, 0, Some(response));
        if let Some(permit) = permit {
            held.push_back((0, permit));
        }
        next = 1;
    }
    loop {
        let hashed = *progress.borrow_and_update();
        while held.front().is_some_and(|(part, _)| *part < hashed) {
            held.pop_front();
        }
        if hashed >= parts {
            break;
        }
        if acquiring.is_none() && next < parts && next < hashed + window {
            let budget = Arc::clone(budget);
            acquiring = Some(Box::pin(async move { budget.acquire().await }));
        }
        let permit = async {
            match acquiring.as_mut() {
                Some(acquire) => acquire.await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            permit = permit => Event::Permit(permit),
            joined = running.join_next(), if !running.is_empty() => Event::Joined(joined),
            changed = progress.changed() => Event::Progress(changed.is_ok()),
        };
        match event {
            Event::Permit(permit) => {
                acquiring = None;
                held.push_back((next, permit?));
                spawn(&mut running, next, None);
                next += 1;
            }
            Event::Joined(None | Some(Ok(Ok(())))) => {}
            Event::Joined(Some(Ok(Err(error)))) => return Err(error),
            Event::Joined(Some(Err(error))) => {
                return Err(EngineError::Internal(InternalError::task(
                    "part task",
                    error,
                )));
            }
            // The hasher has stopped: finished, or died (told apart below).
            Event::Progress(false) => break,
            Event::Progress(true) => {}
        }
    }
    drop(held);
    drop(hash_tx);
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(error) => {
                return Err(EngineError::Internal(InternalError::task(
                    "part task",
                    error,
                )));
            }
        }
    }
    match hasher.await {
        Ok(Some(md5)) => Ok(md5),
        Ok(None) => Err(EngineError::Internal(InternalError::HasherIncomplete)),
        Err(error) => Err(EngineError::Internal(InternalError::task("hasher", error))),
    }
}

/// Hashes the parts' bytes in part order. Returns `None` if the senders go away first (the
/// transfer was abandoned).
fn hash_in_order(
    messages: std::sync::mpsc::Receiver<Hash>,
    parts: usize,
    progress: watch::Sender<usize>,
) -> Option<String> {
    let mut md5 = Md5::new();
    let mut current = 0usize;
    // Later parts: bytes received so far, and whether the part is complete.
    let mut waiting: HashMap<usize, (Vec<Bytes>, bool)> = HashMap::new();
    while current < parts {
        match messages.recv().ok()? {
            Hash::Data(part, chunks) if part == current => {
                for chunk in chunks {
                    md5.update(&chunk);
                }
            }
            Hash::Data(part, chunks) => waiting.entry(part).or_default().0.extend(chunks),
            Hash::Done(part) if part == current => {
                current += 1;
                while let Some((chunks, complete)) = waiting.remove(&current) {
                    for chunk in chunks {
                        md5.update(&chunk);
                    }
                    if !complete {
                        break;
                    }
                    current += 1;
                }
                progress.send_replace(current);
            }
            Hash::Done(part) => waiting.entry(part).or_default().1 = true,
        }
    }
    Some(hex::encode(md5.finalize()))
}

/// Fetches `start..end` of the object into the file, retrying and resuming as needed, and
/// hands the bytes to the hasher.
async fn run_part<S: PartSource>(
    ctx: Arc<Ctx<S>>,
    hasher: std::sync::mpsc::Sender<Hash>,
    part: usize,
    start: u64,
    end: u64,
    total: u64,
    first: Option<RangeResponse<S::Body>>,
) -> Result<(), EngineError> {
    let request = Request::Range {
        first: start,
        last: end - 1,
    };
    // Bytes of this part written and hashed so far, kept across attempts.
    let done = AtomicU64::new(0);
    let first = Mutex::new(first);
    let result = ctx
        .with_retries(request, |deadline| {
            let resume_at = start + done.load(Ordering::SeqCst);
            let response = first
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let (ctx, hasher, done) = (&ctx, &hasher, &done);
            async move {
                let response = match response {
                    Some(response) => response,
                    None => match timeout_at(deadline, ctx.source.get(resume_at, end)).await {
                        Ok(result) => result?,
                        Err(_) => return Err(AttemptError::TimedOut),
                    },
                };
                ctx.check_response(&response, resume_at, end, total)?;
                stream_body(
                    ctx,
                    Sink { hasher, part },
                    response.body,
                    resume_at,
                    end,
                    done,
                    deadline,
                )
                .await
            }
        })
        .await;
    let result = match result {
        Err(EngineError::Source { error, .. }) if error.kind == SourceErrorKind::InvalidRange => {
            Err(ctx.explain_invalid_range(total, request, error).await)
        }
        other => other,
    };
    result?;
    hasher
        .send(Hash::Done(part))
        .map_err(|_| EngineError::Internal(InternalError::HasherStoppedEarly))
}

/// Where a part's bytes go: the hasher (told which part they belong to) and, through
/// [`Batch`], the file.
struct Sink<'a> {
    hasher: &'a std::sync::mpsc::Sender<Hash>,
    part: usize,
}

/// The bytes of a response gathered for one write and one message to the hasher.
///
/// They are copied out of the receive buffers into part-sized buffers from the
/// [`PartBudget`]. Parts ahead of the hasher wait for their turn; kept as received, their
/// bytes would pin the connection's receive buffers, whose varied sizes leave the allocator
/// holding far more memory than the bytes themselves (RSS over 64 MB for a 1 GiB download
/// at the defaults). Copied, the receive buffers are reused at once, and the part buffers,
/// all of one size, are reused from part to part. The copy costs less than a tenth of what
/// md5 does.
struct Batch<'a> {
    /// Filled pieces of earlier buffers, in order, before those of `buffer`.
    pieces: Vec<Bytes>,
    /// The buffer being filled, once there is one.
    buffer: Option<BytesMut>,
    len: usize,
    /// File offset of the first byte.
    at: u64,
    budget: &'a PartBudget,
    /// Size of the part buffers.
    buffer_size: usize,
}

impl<'a> Batch<'a> {
    fn new(at: u64, budget: &'a PartBudget, buffer_size: usize) -> Self {
        Self {
            pieces: Vec::new(),
            buffer: None,
            len: 0,
            at,
            budget,
            buffer_size: buffer_size.max(1),
        }
    }

    /// Copies a chunk in.
    fn push(&mut self, mut chunk: &[u8]) {
        self.len += chunk.len();
        while !chunk.is_empty() {
            let buffer = match self.buffer.take() {
                Some(buffer) if buffer.capacity() > buffer.len() => buffer,
                full => {
                    if let Some(mut full) = full {
                        if !full.is_empty() {
                            self.pieces.push(full.split().freeze());
                        }
                        self.budget.give_back(full);
                    }
                    self.budget.buffer(self.buffer_size)
                }
            };
            let buffer = self.buffer.insert(buffer);
            let room = (buffer.capacity() - buffer.len()).min(chunk.len());
            buffer.extend_from_slice(&chunk[..room]);
            chunk = &chunk[room..];
        }
    }

    /// The gathered bytes in order, leaving the batch empty, at the next offset, and with
    /// the rest of its buffer for the bytes to come.
    fn take(&mut self) -> (u64, Vec<Bytes>) {
        let at = self.at;
        self.at += self.len as u64;
        self.len = 0;
        let mut chunks = std::mem::take(&mut self.pieces);
        if let Some(buffer) = self.buffer.as_mut().filter(|buffer| !buffer.is_empty()) {
            chunks.push(buffer.split().freeze());
        }
        (at, chunks)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.budget.give_back(buffer);
        }
    }
}

/// Streams one response body into the file at `offset` onwards and to the hasher. Network
/// reads respect `deadline`; writes do not (they are not the server's fault, and every
/// write started has finished when this returns, so that the bytes counted as done are in
/// the file, or the transfer fails).
async fn stream_body<S: PartSource>(
    ctx: &Ctx<S>,
    sink: Sink<'_>,
    body: S::Body,
    offset: u64,
    end: u64,
    done: &AtomicU64,
    deadline: Instant,
) -> Result<(), AttemptError> {
    let mut writer = Writer::default();
    let streamed = stream_into(ctx, &sink, body, offset, end, done, deadline, &mut writer).await;
    writer.finish().await?;
    streamed
}

#[allow(clippy::too_many_arguments)]
async fn stream_into<S: PartSource>(
    ctx: &Ctx<S>,
    sink: &Sink<'_>,
    mut body: S::Body,
    offset: u64,
    end: u64,
    done: &AtomicU64,
    deadline: Instant,
    writer: &mut Writer,
) -> Result<(), AttemptError> {
    let expected = end - offset;
    let mut received = 0u64;
    let buffer_size = usize::try_from(ctx.config.part_size).unwrap_or(usize::MAX);
    let mut batch = Batch::new(offset, &ctx.budget, buffer_size);
    loop {
        let error = match timeout_at(deadline, body.next_chunk()).await {
            Ok(Ok(Some(chunk))) => {
                if chunk.is_empty() {
                    continue;
                }
                ctx.bytes_read
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                received += chunk.len() as u64;
                if received > expected {
                    return Err(AttemptError::Source(SourceError::new(
                        SourceErrorKind::Permanent,
                        S3Failure::BodyTooLong {
                            first: offset,
                            last: end - 1,
                        },
                    )));
                }
                batch.push(&chunk);
                if batch.len >= WRITE_BATCH {
                    deliver(ctx, sink, &mut batch, done, writer).await?;
                }
                continue;
            }
            Ok(Ok(None)) => break,
            Ok(Err(error)) => AttemptError::Source(error),
            Err(_) => AttemptError::TimedOut,
        };
        // Whatever arrived is kept: the next attempt resumes after it.
        deliver(ctx, sink, &mut batch, done, writer).await?;
        return Err(error);
    }
    deliver(ctx, sink, &mut batch, done, writer).await?;
    if received < expected {
        return Err(AttemptError::Source(SourceError::new(
            SourceErrorKind::Transient,
            S3Failure::BodyTooShort {
                first: offset,
                last: end - 1,
                received,
                expected,
            },
        )));
    }
    Ok(())
}

/// The write of the last batch of a response, left running while the next batch arrives so
/// that the connection keeps being read.
#[derive(Default)]
struct Writer {
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Writer {
    /// Waits for the write running, if any.
    async fn finish(&mut self) -> Result<(), AttemptError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        match running.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(AttemptError::Fatal(EngineError::Write(error))),
            Err(error) => Err(AttemptError::Fatal(EngineError::Internal(
                InternalError::task("write task", error),
            ))),
        }
    }

    /// Starts `write` once the one before it has finished.
    async fn start(
        &mut self,
        write: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), AttemptError> {
        self.finish().await?;
        self.running = Some(tokio::task::spawn_blocking(write));
        Ok(())
    }
}

/// Hands what the batch holds to the hasher and starts writing it in place.
async fn deliver<S: PartSource>(
    ctx: &Ctx<S>,
    sink: &Sink<'_>,
    batch: &mut Batch<'_>,
    done: &AtomicU64,
    writer: &mut Writer,
) -> Result<(), AttemptError> {
    if batch.len == 0 {
        return Ok(());
    }
    let len = batch.len as u64;
    let (at, chunks) = batch.take();
    sink.hasher
        .send(Hash::Data(sink.part, chunks.clone()))
        .map_err(|_| {
            AttemptError::Fatal(EngineError::Internal(InternalError::HasherStoppedEarly))
        })?;
    // Counted before the write completes: the bytes are hashed already, and the write below
    // either lands or fails the whole transfer.
    done.fetch_add(len, Ordering::SeqCst);
    let file = Arc::clone(&ctx.file);
    let mirror = ctx.mirror.clone();
    let mirrored = Arc::clone(&ctx.mirrored);
    let write_behind = ctx.config.write_behind;
    writer
        .start(move || {
            let mut offset = at;
            for chunk in &chunks {
                file.write_all_at(chunk, offset)?;
                offset += chunk.len() as u64;
            }
            if let Some(mirror) = mirror
                && mirrored.load(Ordering::SeqCst)
            {
                let mut offset = at;
                for chunk in &chunks {
                    if let Err(error) = mirror.write_all_at(chunk, offset) {
                        tracing::debug!(%error, "writing the mirror failed; the artifact will be copied");
                        mirrored.store(false, Ordering::SeqCst);
                        break;
                    }
                    offset += chunk.len() as u64;
                }
            }
            if write_behind {
                // Starts writing these pages to disk now (on dirty pages, DONTNEED only queues
                // writeback), so an fsync right after the download has little left to wait for.
                // Advice only: a failure changes nothing but the timing.
                let _ = rustix::fs::fadvise(&*file, at, NonZeroU64::new(len), Advice::DontNeed);
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests;
