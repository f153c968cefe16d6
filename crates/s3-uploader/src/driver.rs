//! The driver: discovery of metadata files, one state per uploader, passes over uploader
//! directories feeding a bounded queue of files, and the workers that upload them.
//!
//! Discovery is a full scan at start, a watch (events only wake scans, debounced), a periodic
//! metadata rescan (`recheckFilesEverySeconds`) and a periodic pass over every uploader
//! (`checkUploadsEverySeconds`). Passes walk directories on blocking threads and hand files to
//! the queue as they go, so memory does not grow with the size of a directory. A failed file
//! waits for its own next attempt; a bucket that times out or is unreachable pauses only its
//! own files.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use singularity_runtime::Shutdown;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{RunError, UploadError};
use crate::ledger::Ledger;
use crate::metadata::{
    self, AfterPass, FileStamp, FinishReason, ReadOutcome, UploaderId, UploaderSpec,
};
use crate::metrics::{Metrics, Snapshot};
use crate::scan::{self, OpenFiles, SkipReason, TEMP_SUFFIX};
use crate::settings::Settings;
use crate::upload::{self, FileJob, Outcome, UploadContext, UploadTarget};

/// Passes walking directories at once.
const CONCURRENT_SCANS: usize = 4;
/// File system events buffered before they are replaced by a full rescan.
const EVENT_BUFFER: usize = 4096;
/// Finished ledger rows are kept this long.
const LEDGER_HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// State shared by the driver, the passes and the workers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Files queued or being uploaded, with when they were queued.
    inflight: Mutex<HashMap<PathBuf, Instant>>,
    /// Files that failed: when they are due again.
    retry: Mutex<HashMap<PathBuf, RetryEntry>>,
    /// Buckets paused after bucket-wide failures, until when, and how many in a row.
    paused: Mutex<HashMap<String, RetryEntry>>,
}

#[derive(Debug, Clone, Copy)]
struct RetryEntry {
    next: Instant,
    failures: u32,
    since: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it usable: every entry is complete.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn oldest_pending(&self) -> Option<Instant> {
        let inflight = lock(&self.inflight).values().min().copied();
        let retry = lock(&self.retry).values().map(|e| e.since).min();
        match (inflight, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

pub(crate) enum Event {
    ScanDone {
        id: UploaderId,
        found: usize,
        enqueued: usize,
        next_retry: Option<Instant>,
        missing_directory: bool,
    },
    JobDone {
        id: UploaderId,
        retry_at: Option<Instant>,
    },
}

/// One uploader: a `(directory, fileGlob)` and what the driver knows of it.
#[derive(Debug)]
struct Uploader {
    target: Arc<UploadTarget>,
    metadata_paths: BTreeSet<PathBuf>,
    immediate: bool,
    finished: Option<FinishReason>,
    last_had_files_at_ms: i64,
    scanning: bool,
    rescan: bool,
    due: Option<Instant>,
    jobs: i64,
    logged_skips: Arc<Mutex<HashSet<SkipReason>>>,
}

impl Uploader {
    fn spec(&self) -> &UploaderSpec {
        &self.target.spec
    }

    fn wake_at(&mut self, at: Instant) {
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
    }
}

pub(crate) struct Driver {
    settings: Arc<Settings>,
    ctx: Arc<UploadContext>,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    uploaders: HashMap<UploaderId, Uploader>,
    by_metadata_path: HashMap<PathBuf, UploaderId>,
    known: HashMap<PathBuf, FileStamp>,
    watched: HashSet<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
    fs_rx: mpsc::Receiver<notify::Result<notify::Event>>,
    overflow: Arc<AtomicBool>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    jobs_tx: Option<mpsc::Sender<FileJob>>,
    metadata_due: Option<Instant>,
    scan_permits: Arc<Semaphore>,
    scans: JoinSet<()>,
}

impl Driver {
    pub(crate) fn new(
        settings: Arc<Settings>,
        ctx: Arc<UploadContext>,
        shutdown: Shutdown,
        jobs_tx: mpsc::Sender<FileJob>,
    ) -> Result<Self, RunError> {
        let (fs_tx, fs_rx) = mpsc::channel(EVENT_BUFFER);
        let overflow = Arc::new(AtomicBool::new(false));
        let overflow_flag = Arc::clone(&overflow);
        let mut watcher = notify::recommended_watcher(move |event| {
            if fs_tx.try_send(event).is_err() {
                overflow_flag.store(true, Ordering::Relaxed);
            }
        })
        .map_err(|source| RunError::Watch {
            path: settings.metadata_directory.clone(),
            source,
        })?;
        watcher
            .watch(&settings.metadata_directory, RecursiveMode::NonRecursive)
            .map_err(|source| RunError::Watch {
                path: settings.metadata_directory.clone(),
                source,
            })?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let snapshot_shared = Arc::clone(&shared);
        ctx.metrics.set_snapshot(Arc::new(move || Snapshot {
            oldest_pending_age_seconds: snapshot_shared.oldest_pending().map_or(0, |since| {
                i64::try_from(since.elapsed().as_secs()).unwrap_or(i64::MAX)
            }),
        }));
        Ok(Self {
            settings,
            ctx,
            shared,
            shutdown,
            uploaders: HashMap::new(),
            by_metadata_path: HashMap::new(),
            known: HashMap::new(),
            watched: HashSet::new(),
            watcher: Some(watcher),
            fs_rx,
            overflow,
            events_tx,
            events_rx,
            jobs_tx: Some(jobs_tx),
            metadata_due: None,
            scan_permits: Arc::new(Semaphore::new(CONCURRENT_SCANS)),
            scans: JoinSet::new(),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    pub(crate) fn events(&self) -> mpsc::UnboundedSender<Event> {
        self.events_tx.clone()
    }

    /// Settles ledger rows whose file is gone (a crash after deleting it, or someone else
    /// removed it), aborting multipart uploads that can no longer complete, and prunes old
    /// history.
    pub(crate) async fn recover(&self) {
        let ledger = &self.ctx.ledger;
        let mut after = 0;
        loop {
            let page = match ledger.live_page(after, 500).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "cannot read the ledger to recover unfinished uploads");
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            after = last.id;
            for row in page {
                if tokio::fs::symlink_metadata(&row.path).await.is_ok() {
                    continue;
                }
                let credentials = self.settings.credentials.resolve(&row.bucket, None, None);
                let client = self.ctx.clients.client(credentials.as_ref()).await;
                if let Err(error) = upload::settle_vanished(&self.ctx, &client, &row).await {
                    tracing::warn!(%error, path = %row.path.display(), "cannot settle a ledger row");
                }
            }
        }
        let horizon = self.ctx.clock.now_millis()
            - i64::try_from(LEDGER_HISTORY.as_millis()).unwrap_or(i64::MAX);
        match ledger.prune(horizon).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "pruned old ledger rows"),
            Err(error) => tracing::warn!(%error, "cannot prune the ledger"),
        }
    }

    /// Runs until shutdown: the first metadata scan, readiness, then events and timers.
    pub(crate) async fn run(mut self) {
        self.rescan_metadata();
        self.start_due_scans();
        if let Err(error) = singularity_runtime::notify_ready() {
            tracing::warn!(%error, "cannot tell systemd the uploader is ready");
        }
        tracing::info!(
            uploaders = self.uploaders.len(),
            directory = %self.settings.metadata_directory.display(),
            "watching for upload metadata"
        );
        let start = Instant::now();
        let mut check_uploads = tokio::time::interval_at(
            start + self.settings.check_uploads_every,
            self.settings.check_uploads_every,
        );
        let mut recheck_files = tokio::time::interval_at(
            start + self.settings.recheck_files_every,
            self.settings.recheck_files_every,
        );
        check_uploads.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck_files.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.shutdown.clone();
        loop {
            let next = self.next_due();
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                Some(event) = self.events_rx.recv() => self.handle_event(event),
                Some(event) = self.fs_rx.recv() => self.handle_fs_event(event),
                _ = check_uploads.tick() => {
                    let now = Instant::now();
                    for uploader in self.uploaders.values_mut() {
                        uploader.wake_at(now);
                    }
                }
                _ = recheck_files.tick() => {
                    self.metadata_due = Some(Instant::now());
                    // Files that failed and then vanished would otherwise stay listed.
                    lock(&self.shared.retry).retain(|path, _| path.exists());
                    self.watch_missing_directories();
                    let horizon = self.ctx.clock.now_millis()
                        - i64::try_from(LEDGER_HISTORY.as_millis()).unwrap_or(i64::MAX);
                    if let Err(error) = self.ctx.ledger.prune(horizon).await {
                        tracing::warn!(%error, "cannot prune the ledger");
                    }
                }
                () = sleep_until(next) => {}
            }
            if self.overflow.swap(false, Ordering::Relaxed) {
                tracing::debug!("file system events overflowed: scanning everything");
                self.wake_everything();
            }
            if self.metadata_due.is_some_and(|due| due <= Instant::now()) {
                self.metadata_due = None;
                self.rescan_metadata();
            }
            self.start_due_scans();
            self.publish_counts();
        }
        // Passes stop at their next file; the queue closes once they have.
        self.jobs_tx = None;
        self.watcher = None;
        self.scans.shutdown().await;
    }

    fn next_due(&self) -> Option<Instant> {
        self.uploaders
            .values()
            .filter(|u| !u.scanning)
            .filter_map(|u| u.due)
            .chain(self.metadata_due)
            .min()
    }

    fn wake_everything(&mut self) {
        let now = Instant::now();
        self.metadata_due = Some(now);
        for uploader in self.uploaders.values_mut() {
            uploader.wake_at(now);
        }
    }

    fn publish_counts(&self) {
        let immediate = self.uploaders.values().filter(|u| u.immediate).count();
        self.ctx
            .metrics
            .set_uploaders(self.uploaders.len(), immediate);
    }

    // ----- metadata -----------------------------------------------------------------------

    fn is_metadata_name(&self, name: &str) -> bool {
        name.ends_with(&self.settings.metadata_suffix) && !name.starts_with('.')
    }

    /// Reads every metadata file that is new or changed since it was last read, and treats
    /// files that disappeared as deleted.
    fn rescan_metadata(&mut self) {
        let dir = self.settings.metadata_directory.clone();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(directory = %dir.display(), %error, "cannot list the metadata directory");
                return;
            }
        };
        let mut seen = HashSet::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !self.is_metadata_name(name) {
                continue;
            }
            let path = entry.path();
            let Ok(stamp) = FileStamp::of(&path) else {
                continue;
            };
            seen.insert(path.clone());
            self.metadata_file(&path, stamp);
        }
        let gone: Vec<PathBuf> = self
            .known
            .keys()
            .chain(self.by_metadata_path.keys())
            .filter(|p| !seen.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            self.metadata_gone(&path);
        }
    }

    fn metadata_file(&mut self, path: &Path, stamp: FileStamp) {
        if self.known.get(path) == Some(&stamp) {
            return;
        }
        match metadata::read(path) {
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot read upload metadata");
            }
            Ok(ReadOutcome::Absent) => {}
            Ok(ReadOutcome::Rejected(problem)) => {
                self.known.insert(path.to_owned(), stamp);
                self.ctx.metrics.metadata_rejected();
                if matches!(problem, metadata::MetadataProblem::Gcs) {
                    tracing::error!(file = %path.display(), reason = %problem, "ignoring upload metadata");
                } else {
                    tracing::warn!(file = %path.display(), reason = %problem, "ignoring malformed upload metadata");
                }
                self.detach(path);
            }
            Ok(ReadOutcome::Spec(spec)) => {
                self.known.insert(path.to_owned(), stamp);
                self.upsert(path, Arc::new(*spec));
            }
        }
    }

    fn metadata_gone(&mut self, path: &Path) {
        self.known.remove(path);
        if self.by_metadata_path.contains_key(path) {
            tracing::info!(file = %path.display(), "upload metadata deleted");
        }
        self.detach(path);
    }

    /// `path` no longer describes the uploader it described: an uploader left without any
    /// metadata file is finished.
    fn detach(&mut self, path: &Path) {
        let Some(id) = self.by_metadata_path.remove(path) else {
            return;
        };
        if let Some(uploader) = self.uploaders.get_mut(&id) {
            uploader.metadata_paths.remove(path);
            if uploader.metadata_paths.is_empty() && uploader.finished.is_none() {
                uploader.finished = Some(FinishReason::MetadataDeleted);
                uploader.wake_at(Instant::now());
            }
        }
    }

    fn upsert(&mut self, path: &Path, spec: Arc<UploaderSpec>) {
        let id = spec.id();
        if self
            .by_metadata_path
            .get(path)
            .is_some_and(|old| *old != id)
        {
            self.detach(path);
        }
        let metadata = &spec.metadata;
        let credentials = self.settings.credentials.resolve(
            &metadata.s3_bucket,
            metadata.s3_access_key.as_deref(),
            metadata.s3_secret_key.as_deref(),
        );
        let target = Arc::new(UploadTarget {
            id: id.clone(),
            spec: Arc::clone(&spec),
            credentials,
        });
        let now = Instant::now();
        let flagged = metadata.finished;
        let immediate = metadata.upload_immediately;
        self.by_metadata_path.insert(path.to_owned(), id.clone());
        if let Some(uploader) = self.uploaders.get_mut(&id) {
            uploader.target = target;
            uploader.metadata_paths.insert(path.to_owned());
            let became_immediate = immediate && !uploader.immediate;
            if became_immediate {
                tracing::info!(directory = %id.0.display(), glob = %id.1, "uploader is now immediate");
                uploader.immediate = true;
            }
            if flagged && uploader.finished.is_none() {
                uploader.finished = Some(FinishReason::Flagged);
            } else if !flagged
                && matches!(
                    uploader.finished,
                    Some(FinishReason::Flagged | FinishReason::MetadataDeleted)
                )
            {
                uploader.finished = None;
            }
            uploader.wake_at(now);
            if became_immediate {
                self.unwatch_directory(&id.0);
            }
            return;
        }
        tracing::info!(
            file = %path.display(),
            directory = %id.0.display(),
            glob = %id.1,
            bucket = %metadata.s3_bucket,
            immediate,
            finished = flagged,
            "new uploader"
        );
        let dir = id.0.clone();
        self.uploaders.insert(
            id,
            Uploader {
                target,
                metadata_paths: BTreeSet::from([path.to_owned()]),
                immediate,
                finished: flagged.then_some(FinishReason::Flagged),
                last_had_files_at_ms: self.ctx.clock.now_millis(),
                scanning: false,
                rescan: false,
                due: Some(now),
                jobs: 0,
                logged_skips: Arc::default(),
            },
        );
        self.watch_directory(&dir);
    }

    /// The uploader is done: forget it and delete its metadata files, unless a file was
    /// rewritten since it was read (then it is read again as a new uploader).
    fn retire(&mut self, id: &UploaderId) {
        let Some(uploader) = self.uploaders.remove(id) else {
            return;
        };
        for path in &uploader.metadata_paths {
            self.by_metadata_path.remove(path);
            let read = self.known.remove(path);
            match FileStamp::of(path) {
                Ok(stamp) if Some(stamp) == read => match std::fs::remove_file(path) {
                    Ok(()) => tracing::info!(file = %path.display(), "deleted upload metadata"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(file = %path.display(), %error, "cannot delete upload metadata");
                    }
                },
                Ok(_) => {
                    tracing::info!(file = %path.display(), "upload metadata changed since it was read: reading it again");
                    self.metadata_due = Some(Instant::now());
                }
                Err(_) => {}
            }
        }
        tracing::info!(
            directory = %id.0.display(),
            glob = %id.1,
            reason = uploader.finished.map_or("immediate upload complete", FinishReason::as_str),
            "uploader done"
        );
        self.unwatch_directory(&id.0);
    }

    // ----- watching -----------------------------------------------------------------------

    /// Whether some uploader of `dir` needs its events. An immediate uploader does not: it
    /// passes again each time its queued files are settled, until a pass finds nothing, so an
    /// event could only wake a pass it makes anyway; and watching would cost it an event for
    /// every file it opens and deletes.
    fn needs_watch(&self, dir: &Path) -> bool {
        self.uploaders
            .iter()
            .any(|((d, _), uploader)| d == dir && !uploader.immediate)
    }

    /// Watches an uploader directory (once, whatever the number of uploaders in it) if an
    /// uploader needs it. A directory that does not exist yet is watched once a pass finds it.
    fn watch_directory(&mut self, dir: &Path) {
        if self.watched.contains(dir) || !self.needs_watch(dir) {
            return;
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_owned());
            }
            Err(error) => {
                tracing::debug!(directory = %dir.display(), %error, "cannot watch an upload directory yet");
            }
        }
    }

    fn unwatch_directory(&mut self, dir: &Path) {
        if self.needs_watch(dir) {
            return;
        }
        if self.watched.remove(dir)
            && let Some(watcher) = self.watcher.as_mut()
        {
            let _ = watcher.unwatch(dir);
        }
    }

    fn watch_missing_directories(&mut self) {
        let missing: BTreeSet<PathBuf> = self
            .uploaders
            .keys()
            .map(|(dir, _)| dir.clone())
            .filter(|dir| !self.watched.contains(dir))
            .collect();
        for dir in missing {
            self.watch_directory(&dir);
        }
    }

    fn handle_fs_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::debug!(%error, "file system watch error: scanning everything");
                self.wake_everything();
                return;
            }
        };
        if event.need_rescan() {
            self.wake_everything();
            return;
        }
        let soon = Instant::now() + self.settings.debounce;
        let adds_file = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other)
                | EventKind::Modify(ModifyKind::Name(
                    RenameMode::To | RenameMode::Both | RenameMode::Any
                ))
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Any
        );
        for path in &event.paths {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy();
            if parent == self.settings.metadata_directory && self.is_metadata_name(&name) {
                // A file closed after writing or renamed into place is complete: read it now.
                // Other changes may be a write in progress (the Java executor writes in
                // place), so they wait for the debounce.
                let at = match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write))
                    | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                        Instant::now()
                    }
                    EventKind::Access(_) => continue,
                    _ => soon,
                };
                self.metadata_due = Some(self.metadata_due.map_or(at, |d| d.min(at)));
                continue;
            }
            if !adds_file || name.ends_with(TEMP_SUFFIX) {
                continue;
            }
            for (id, uploader) in &mut self.uploaders {
                if id.0 != parent {
                    continue;
                }
                let finished = uploader.finished.is_some();
                let is_dir = uploader.spec().metadata.check_subdirectories && path.is_dir();
                if is_dir || uploader.spec().matches(&name, finished) {
                    if uploader.scanning {
                        uploader.rescan = true;
                    } else {
                        uploader.wake_at(soon);
                    }
                }
            }
        }
    }

    // ----- passes -------------------------------------------------------------------------

    fn start_due_scans(&mut self) {
        let now = Instant::now();
        let due: Vec<UploaderId> = self
            .uploaders
            .iter()
            .filter(|(_, u)| !u.scanning && u.due.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.start_scan(&id);
        }
    }

    fn start_scan(&mut self, id: &UploaderId) {
        let Some(jobs_tx) = self.jobs_tx.clone() else {
            return;
        };
        let Some(uploader) = self.uploaders.get_mut(id) else {
            return;
        };
        uploader.due = None;
        uploader.rescan = false;
        uploader.scanning = true;
        if uploader.finished.is_none()
            && let Some(pid) = uploader.spec().metadata.pid
            && metadata::process_gone(pid)
        {
            tracing::info!(pid, directory = %id.0.display(), glob = %id.1, "the uploader's process is gone: final pass");
            uploader.finished = Some(FinishReason::ProcessGone);
        }
        let metadata = &uploader.spec().metadata;
        let pass = Pass {
            target: Arc::clone(&uploader.target),
            finished: uploader.finished.is_some(),
            check_open: self.settings.check_for_open_files
                && metadata.check_if_open
                && !uploader.immediate,
            logged_skips: Arc::clone(&uploader.logged_skips),
            shared: Arc::clone(&self.shared),
            metrics: Arc::clone(&self.ctx.metrics),
            jobs_tx,
            shutdown: self.shutdown.clone(),
        };
        let permits = Arc::clone(&self.scan_permits);
        let events = self.events_tx.clone();
        let id = id.clone();
        self.scans.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let handle = tokio::runtime::Handle::current();
            let result = tokio::task::spawn_blocking(move || pass.run(&handle)).await;
            let (found, enqueued, next_retry, missing_directory) = match result {
                Ok(r) => r,
                Err(error) => {
                    tracing::error!(%error, "a pass over an upload directory failed");
                    (1, 0, Some(Instant::now() + Duration::from_secs(1)), false)
                }
            };
            let _ = events.send(Event::ScanDone {
                id,
                found,
                enqueued,
                next_retry,
                missing_directory,
            });
        });
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::ScanDone {
                id,
                found,
                enqueued,
                next_retry,
                missing_directory,
            } => self.scan_done(&id, found, enqueued, next_retry, missing_directory),
            Event::JobDone { id, retry_at } => {
                let Some(uploader) = self.uploaders.get_mut(&id) else {
                    return;
                };
                uploader.jobs -= 1;
                if let Some(at) = retry_at {
                    uploader.wake_at(at);
                } else if (uploader.immediate || uploader.finished.is_some()) && uploader.jobs <= 0
                {
                    // Its last queued file is settled: the pass that tells whether anything is
                    // left can run at once (files written meanwhile woke it already).
                    if uploader.scanning {
                        uploader.rescan = true;
                    } else {
                        uploader.wake_at(Instant::now());
                    }
                }
            }
        }
    }

    fn scan_done(
        &mut self,
        id: &UploaderId,
        found: usize,
        enqueued: usize,
        next_retry: Option<Instant>,
        missing_directory: bool,
    ) {
        let now_ms = self.ctx.clock.now_millis();
        let default_after = self.settings.stop_checking_after_millis;
        let debounce = self.settings.debounce;
        if !self.uploaders.contains_key(id) {
            return;
        }
        if missing_directory {
            tracing::debug!(directory = %id.0.display(), "the upload directory does not exist");
        } else if !self.watched.contains(&id.0) {
            let dir = id.0.clone();
            self.watch_directory(&dir);
        }
        let Some(uploader) = self.uploaders.get_mut(id) else {
            return;
        };
        uploader.scanning = false;
        uploader.jobs += i64::try_from(enqueued).unwrap_or(i64::MAX);
        if found > 0 {
            uploader.last_had_files_at_ms = now_ms;
        }
        let expired = metadata::expired(
            now_ms,
            uploader.last_had_files_at_ms,
            uploader
                .spec()
                .metadata
                .finished_after_millis_without_new_file,
            default_after,
        );
        match metadata::after_pass(
            found,
            uploader.immediate,
            uploader.finished.is_some(),
            expired,
        ) {
            AfterPass::Done => self.retire(id),
            AfterPass::FinalPass => {
                tracing::info!(directory = %id.0.display(), glob = %id.1, "no new file for too long: final pass");
                uploader.finished = Some(FinishReason::Expired);
                uploader.wake_at(tokio::time::Instant::now());
            }
            AfterPass::Keep => {
                if uploader.rescan {
                    uploader.wake_at(Instant::now() + debounce);
                }
                if let Some(at) = next_retry
                    && (uploader.immediate || uploader.finished.is_some() || enqueued == 0)
                {
                    uploader.wake_at(at);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One pass over an uploader's directory, on a blocking thread.
struct Pass {
    target: Arc<UploadTarget>,
    finished: bool,
    check_open: bool,
    logged_skips: Arc<Mutex<HashSet<SkipReason>>>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    jobs_tx: mpsc::Sender<FileJob>,
    shutdown: Shutdown,
}

impl Pass {
    fn skip(&self, path: &Path, reason: SkipReason) {
        self.metrics.skipped(reason);
        let first = lock(&self.logged_skips).insert(reason);
        if first && reason != SkipReason::NoGlobMatch {
            tracing::info!(
                path = %path.display(),
                reason = reason.as_str(),
                glob = %self.target.id.1,
                "skipping a file (logged once per uploader and reason; the rest at debug level)"
            );
        } else {
            tracing::debug!(path = %path.display(), reason = reason.as_str(), "skipping a file");
        }
    }

    /// Returns (files found, files queued, earliest retry, directory missing).
    fn run(self, handle: &tokio::runtime::Handle) -> (usize, usize, Option<Instant>, bool) {
        let spec = &self.target.spec;
        let metadata = &spec.metadata;
        let dir = metadata.directory.clone();
        let canonical = match std::fs::canonicalize(&dir) {
            Ok(canonical) => canonical,
            Err(_) => return (0, 0, None, true),
        };
        let mut open_files: Option<OpenFiles> = None;
        let mut found = 0usize;
        let mut enqueued = 0usize;
        let mut next_retry: Option<Instant> = None;
        let now = Instant::now();
        let bucket = metadata.s3_bucket.clone();
        let walked = scan::walk(
            &dir,
            metadata.check_subdirectories,
            |path, name, file_type| {
                if self.shutdown.is_triggered() {
                    return ControlFlow::Break(());
                }
                let name = name.to_string_lossy();
                if name.ends_with(TEMP_SUFFIX) {
                    return ControlFlow::Continue(());
                }
                if file_type.is_dir() {
                    self.skip(path, SkipReason::Subdirectory);
                    return ControlFlow::Continue(());
                }
                if !spec.matches(&name, self.finished) {
                    self.skip(path, SkipReason::NoGlobMatch);
                    return ControlFlow::Continue(());
                }
                if !file_type.is_file() {
                    self.skip(path, SkipReason::OutsideDirectory);
                    return ControlFlow::Continue(());
                }
                let Ok(meta) = std::fs::symlink_metadata(path) else {
                    return ControlFlow::Continue(());
                };
                if meta.len() == 0 {
                    self.skip(path, SkipReason::Empty);
                    return ControlFlow::Continue(());
                }
                let index = found;
                found += 1;
                if lock(&self.shared.inflight).contains_key(path) {
                    return ControlFlow::Continue(());
                }
                let waiting = lock(&self.shared.retry)
                    .get(path)
                    .map(|e| e.next)
                    .into_iter()
                    .chain(lock(&self.shared.paused).get(&bucket).map(|e| e.next))
                    .filter(|next| *next > now)
                    .max();
                if let Some(at) = waiting {
                    next_retry = Some(next_retry.map_or(at, |n| n.min(at)));
                    self.skip(path, SkipReason::RetryLater);
                    return ControlFlow::Continue(());
                }
                if self.check_open {
                    let open = open_files.get_or_insert_with(|| {
                        OpenFiles::snapshot(Path::new("/proc"), std::slice::from_ref(&canonical))
                    });
                    let relative = path.strip_prefix(&dir).unwrap_or(path);
                    if open.is_open(&canonical.join(relative)) {
                        self.skip(path, SkipReason::Open);
                        return ControlFlow::Continue(());
                    }
                }
                let mut upload_path = path.to_owned();
                if metadata.compress_before_upload && !name.ends_with(".gz") {
                    match scan::gzip(path) {
                        Ok(gz) => {
                            tracing::debug!(path = %gz.display(), "compressed before upload");
                            upload_path = gz;
                        }
                        Err(error) => {
                            tracing::warn!(path = %path.display(), %error, "cannot compress a file before upload");
                            self.skip(path, SkipReason::CompressFailed);
                            return ControlFlow::Continue(());
                        }
                    }
                    if lock(&self.shared.inflight).contains_key(&upload_path) {
                        return ControlFlow::Continue(());
                    }
                }
                lock(&self.shared.inflight).insert(upload_path.clone(), now);
                self.metrics.enqueued();
                let job = FileJob {
                    target: Arc::clone(&self.target),
                    path: upload_path.clone(),
                    index,
                };
                let sent = handle.block_on(async {
                    tokio::select! {
                        biased;
                        () = self.shutdown.wait() => false,
                        sent = self.jobs_tx.send(job) => sent.is_ok(),
                    }
                });
                if !sent {
                    lock(&self.shared.inflight).remove(&upload_path);
                    self.metrics.started();
                    self.metrics.finished();
                    return ControlFlow::Break(());
                }
                enqueued += 1;
                ControlFlow::Continue(())
            },
        );
        if let Err(error) = walked {
            tracing::warn!(directory = %dir.display(), %error, "cannot list an upload directory");
            return (0, enqueued, next_retry, true);
        }
        (found, enqueued, next_retry, false)
    }
}

/// Takes files from the queue until it closes or shutdown, one at a time.
pub(crate) async fn worker(
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<FileJob>>>,
    ctx: Arc<UploadContext>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: Shutdown,
) {
    loop {
        let job = {
            let mut jobs = jobs.lock().await;
            tokio::select! {
                biased;
                () = shutdown.wait() => None,
                job = jobs.recv() => job,
            }
        };
        let Some(job) = job else { break };
        ctx.metrics.started();
        let result = ctx.process(&job).await;
        ctx.metrics.finished();
        let retry_at = settle(&ctx, &shared, &job, result).await;
        lock(&shared.inflight).remove(&job.path);
        let _ = events.send(Event::JobDone {
            id: job.target.id.clone(),
            retry_at,
        });
    }
}

/// Books a job's result: counters, the retry schedule of the file and of its bucket.
async fn settle(
    ctx: &UploadContext,
    shared: &Shared,
    job: &FileJob,
    result: Result<Outcome, UploadError>,
) -> Option<Instant> {
    let bucket = &job.target.spec.metadata.s3_bucket;
    match result {
        Ok(outcome) => {
            lock(&shared.retry).remove(&job.path);
            match outcome {
                Outcome::Done { .. } => {
                    ctx.metrics.deleted();
                    lock(&shared.paused).remove(bucket);
                    None
                }
                Outcome::Changed => Some(Instant::now() + ctx.settings.debounce),
                Outcome::Skipped(reason) => {
                    ctx.metrics.skipped(reason);
                    None
                }
                Outcome::Vanished => None,
            }
        }
        Err(UploadError::Interrupted { .. }) => {
            tracing::info!(path = %job.path.display(), "upload stopped between parts for shutdown; it resumes at the next start");
            None
        }
        Err(error) => {
            let kind = error.kind();
            ctx.metrics.error(kind);
            let now = Instant::now();
            let entry = {
                let mut retry = lock(&shared.retry);
                let entry = retry.entry(job.path.clone()).or_insert(RetryEntry {
                    next: now,
                    failures: 0,
                    since: now,
                });
                entry.failures = entry.failures.saturating_add(1);
                entry.next = now + ctx.settings.file_retry.delay(entry.failures - 1);
                *entry
            };
            if upload::is_bucket_wide(kind) {
                let mut paused = lock(&shared.paused);
                let pause = paused.entry(bucket.clone()).or_insert(RetryEntry {
                    next: now,
                    failures: 0,
                    since: now,
                });
                if pause.next <= now {
                    pause.failures = pause.failures.saturating_add(1);
                    pause.next = now + ctx.settings.file_retry.delay(pause.failures - 1);
                }
            }
            let wait = entry.next.saturating_duration_since(now);
            tracing::warn!(
                path = %job.path.display(),
                %error,
                kind = kind.as_str(),
                failures = entry.failures,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "upload failed; the file stays and is tried again"
            );
            let next_ms =
                ctx.clock.now_millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            if let Ok(Some(row)) = ctx.ledger.live(&job.path).await
                && let Err(error) = ctx
                    .ledger
                    .record_failure(row.id, &error.to_string(), next_ms, ctx.clock.now_millis())
                    .await
            {
                tracing::warn!(%error, "cannot record a failure in the ledger");
            }
            Some(entry.next)
        }
    }
}

/// Opens the ledger at the configured path.
pub(crate) async fn open_ledger(settings: &Settings) -> Result<Ledger, RunError> {
    Ok(Ledger::open(&settings.ledger_path).await?)
}
