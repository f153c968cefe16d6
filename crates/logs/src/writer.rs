//! The writer of `service.log`: the executor's output pumps (stdout and stderr of a process,
//! or a container's output) all feed one [`ServiceLog`].
//!
//! Rotation is rename-based and happens under the writer's lock, at a line boundary: the
//! live file is hard-linked into the logs directory as the segment, then a fresh file is
//! renamed over `service.log`, so `service.log` exists at every moment and no byte is copied
//! or lost. Triggers: size (`maxServiceLogSizeMb`), checked as bytes are written; time
//! (`logrotateFrequency`), aligned to the local clock, driven by the writer's background
//! thread, which also compresses finished segments and applies retention, off the write path.
//! An empty segment is never rotated.
//!
//! A write error (a full disk) never reaches the task: its bytes are counted as dropped and,
//! once a write succeeds again, one marker line states how many were lost.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike as _, Days, Local, NaiveTime, TimeZone as _, Timelike as _};
use singularity_common::records::LogrotateFrequency;

use crate::compress::{self, set_xattr};
use crate::settings::LogSettings;
use crate::tail::Tail;
use crate::{LOG_END_XATTR, LOG_START_XATTR, LogError, names, retention};

/// A pending rotation happens at the next line end, unless the line grows past this (output
/// without newlines must not defeat the size limit).
const MAX_LINE_WAIT: u64 = 1024 * 1024;

/// Counters of one task's log pipeline.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Bytes written to service.log.
    pub written_bytes: AtomicU64,
    /// Bytes of output that could not be written.
    pub dropped_bytes: AtomicU64,
    /// Rotations done.
    pub rotations: AtomicU64,
    /// Rotations that failed (the segment stayed in service.log).
    pub rotation_failures: AtomicU64,
    /// Segments compressed.
    pub compressed: AtomicU64,
    /// Compressions that failed (the segment stays for recovery).
    pub compression_failures: AtomicU64,
    /// Rotated files deleted by retention.
    pub deleted_files: AtomicU64,
    /// Bytes of rotated files deleted by retention.
    pub deleted_bytes: AtomicU64,
}

impl WriterStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Why a rotation is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Size,
    Time,
}

enum Job {
    Compress(PathBuf),
    Stop,
}

struct State {
    file: Option<File>,
    segment_bytes: u64,
    at_line_start: bool,
    pending: Option<Trigger>,
    pending_bytes: u64,
    dropped_bytes: u64,
    drop_error: Option<String>,
    tail: Tail,
    /// The first-candidate name and number of the last rotation: the next one in the same
    /// date value is numbered above it even when the uploader has taken the file away.
    last_segment: Option<(String, u32)>,
}

struct Shared {
    settings: LogSettings,
    state: Mutex<State>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    stats: WriterStats,
}

/// The one writer of a task's `service.log`. Cheap to share (`Arc`); every method is safe to
/// call from several threads.
pub struct ServiceLog {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ServiceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLog")
            .field("service_log", &self.shared.settings.service_log)
            .finish_non_exhaustive()
    }
}

impl ServiceLog {
    /// Opens (creating it if needed) the service log of `settings` for appending and starts
    /// the background thread (time trigger, compression, retention).
    pub fn open(settings: LogSettings) -> Result<Self, LogError> {
        if settings.rotate {
            fs::create_dir_all(&settings.logs_dir)
                .map_err(|e| LogError::io("create", &settings.logs_dir, e))?;
        }
        let file = open_append(&settings.service_log)
            .map_err(|e| LogError::io("open", &settings.service_log, e))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if settings.use_file_attributes
            && settings.rotate
            && compress::get_xattr(&file, LOG_START_XATTR).is_none()
        {
            set_xattr(&file, LOG_START_XATTR, &now_millis().to_string());
        }
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                file: Some(file),
                segment_bytes: len,
                at_line_start: true,
                pending: None,
                pending_bytes: 0,
                dropped_bytes: 0,
                drop_error: None,
                tail: Tail::new(settings.tail_lines),
                last_segment: None,
            }),
            settings,
            jobs: Mutex::new(Some(tx)),
            stats: WriterStats::default(),
        });
        let worker = {
            let for_thread = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("service-log".into())
                .spawn(move || background(&for_thread, &rx))
                .map_err(|e| {
                    LogError::io("start the log thread for", &shared.settings.service_log, e)
                })?
        };
        Ok(ServiceLog {
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &LogSettings {
        &self.shared.settings
    }

    /// The counters.
    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// Appends task output. Never fails and never waits on anything but the file system:
    /// what cannot be written is counted.
    pub fn write(&self, mut buf: &[u8]) {
        let mut state = self.shared.lock();
        if state.file.is_none() {
            return;
        }
        state.tail.push(buf);
        self.shared.write_marker_if_dropped(&mut state);
        while !buf.is_empty() {
            // A large chunk crossing the size limit is cut there, so the rotation waits for
            // the first line end after the limit rather than the end of the chunk.
            if state.pending.is_none()
                && self.shared.settings.rotate
                && let Some(max) = self.shared.settings.max_segment_bytes
            {
                let room =
                    usize::try_from(max.saturating_sub(state.segment_bytes)).unwrap_or(usize::MAX);
                if room > 0 && room < buf.len() {
                    let (head, rest) = buf.split_at(room);
                    self.shared.append(&mut state, head);
                    buf = rest;
                    continue;
                }
            }
            if let Some(trigger) = state.pending {
                if state.at_line_start || state.pending_bytes >= MAX_LINE_WAIT {
                    self.shared.rotate(&mut state, trigger);
                } else if let Some(end) = memchr::memchr(b'\n', buf) {
                    self.shared.append(&mut state, &buf[..=end]);
                    buf = &buf[end + 1..];
                    self.shared.rotate(&mut state, trigger);
                    continue;
                }
            }
            self.shared.append(&mut state, buf);
            break;
        }
    }

    /// Rotates now if the service log holds anything (the final rotation), stops the
    /// background thread once it has compressed every segment, and returns the tail.
    /// Later writes are ignored.
    pub fn close(&self) -> Vec<u8> {
        let tail = {
            let mut state = self.shared.lock();
            if state.file.is_some() {
                self.shared.write_marker_if_dropped(&mut state);
                if self.shared.settings.rotate && state.segment_bytes > 0 {
                    self.shared.rotate(&mut state, Trigger::Time);
                }
                if let Some(file) = state.file.take() {
                    let _ = file.sync_all();
                }
            }
            state.tail.contents()
        };
        if let Some(tx) = self.shared.jobs_sender() {
            let _ = tx.send(Job::Stop);
        }
        if let Some(worker) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = worker.join();
        }
        tail
    }

    /// Requests a rotation as the time trigger does (at the next line end); for tests and
    /// callers with their own schedule.
    pub fn rotate_soon(&self) {
        self.shared.time_trigger();
    }
}

impl Drop for ServiceLog {
    fn drop(&mut self) {
        if let Some(tx) = self.shared.jobs_sender() {
            let _ = tx.send(Job::Stop);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jobs_sender(&self) -> Option<mpsc::Sender<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn append(&self, state: &mut State, buf: &[u8]) {
        let Some(file) = state.file.as_mut() else {
            return;
        };
        let (written, error) = write_counting(file, buf);
        WriterStats::add(&self.stats.written_bytes, written as u64);
        if written > 0 {
            state.segment_bytes += written as u64;
            state.at_line_start = buf[written - 1] == b'\n';
            if state.pending.is_some() {
                state.pending_bytes += written as u64;
            }
        }
        if let Some(error) = error {
            let lost = (buf.len() - written) as u64;
            if state.dropped_bytes == 0 {
                tracing::warn!(path = %self.settings.service_log.display(), %error, "cannot write task output; counting what is dropped until writing works again");
            }
            state.dropped_bytes += lost;
            state.drop_error = Some(error.to_string());
            WriterStats::add(&self.stats.dropped_bytes, lost);
        }
        if self.settings.rotate
            && state.pending.is_none()
            && self
                .settings
                .max_segment_bytes
                .is_some_and(|max| state.segment_bytes >= max)
        {
            state.pending = Some(Trigger::Size);
            state.pending_bytes = 0;
        }
    }

    fn write_marker_if_dropped(&self, state: &mut State) {
        if state.dropped_bytes == 0 {
            return;
        }
        let Some(file) = state.file.as_mut() else {
            return;
        };
        let marker = format!(
            "{}[singularity-executor] {} bytes of task output could not be written to {} ({}) and were dropped\n",
            if state.at_line_start { "" } else { "\n" },
            state.dropped_bytes,
            self.settings.service_log_name,
            state.drop_error.as_deref().unwrap_or("unknown error"),
        );
        let (written, error) = write_counting(file, marker.as_bytes());
        if error.is_none() {
            tracing::info!(
                dropped = state.dropped_bytes,
                "writing task output works again"
            );
            state.dropped_bytes = 0;
            state.drop_error = None;
            state.segment_bytes += written as u64;
            state.at_line_start = true;
        } else if written > 0 {
            // A torn marker: the next attempt starts on a new line.
            state.segment_bytes += written as u64;
            state.at_line_start = false;
        }
    }

    /// Rotates the live file into the logs directory; on failure the output stays in
    /// service.log and the next trigger tries again.
    fn rotate(&self, state: &mut State, trigger: Trigger) {
        state.pending = None;
        state.pending_bytes = 0;
        if !self.settings.rotate || state.segment_bytes == 0 {
            return;
        }
        match self.swap(state) {
            Ok(segment) => {
                tracing::debug!(?trigger, segment = %segment.display(), "rotated the service log");
                WriterStats::add(&self.stats.rotations, 1);
                if let Some(tx) = self.jobs_sender() {
                    let _ = tx.send(Job::Compress(segment));
                }
            }
            Err(error) => {
                WriterStats::add(&self.stats.rotation_failures, 1);
                tracing::warn!(%error, "cannot rotate the service log; it keeps growing until the next attempt");
            }
        }
    }

    fn swap(&self, state: &mut State) -> Result<PathBuf, LogError> {
        let s = &self.settings;
        let now = Local::now();
        let base = names::segment_name(&s.service_log_name, &s.dateformat, now);
        let first = match &state.last_segment {
            Some((last, n)) if *last == base => n + 1,
            _ => 0,
        };
        let (segment, n) = names::unique_segment_from(
            &s.logs_dir,
            &s.service_log_name,
            &s.dateformat,
            now,
            &s.compression.extension,
            first,
        );
        state.last_segment = Some((base, n));
        if s.use_file_attributes
            && let Some(file) = state.file.as_ref()
        {
            set_xattr(file, LOG_END_XATTR, &now.timestamp_millis().to_string());
        }
        if let Err(link_error) = fs::hard_link(&s.service_log, &segment) {
            // Another file system for the logs directory: we are the only writer and hold the
            // lock, so a copy loses nothing.
            tracing::debug!(%link_error, "cannot hard-link the service log; copying it");
            fs::copy(&s.service_log, &segment).map_err(|e| {
                let _ = fs::remove_file(&segment);
                LogError::io("copy the service log to", &segment, e)
            })?;
        }
        let fresh_path = names::fresh(&s.service_log);
        // A leftover from a crash is stale: nothing but a rotation writes it.
        let _ = fs::remove_file(&fresh_path);
        let fresh = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&fresh_path)
            .and_then(|f| {
                if s.use_file_attributes {
                    set_xattr(&f, LOG_START_XATTR, &now.timestamp_millis().to_string());
                }
                fs::rename(&fresh_path, &s.service_log)?;
                Ok(f)
            });
        match fresh {
            Ok(file) => {
                state.file = Some(file);
                state.segment_bytes = 0;
                state.at_line_start = true;
                Ok(segment)
            }
            Err(e) => {
                let _ = fs::remove_file(&fresh_path);
                let _ = fs::remove_file(&segment);
                Err(LogError::io("replace", &s.service_log, e))
            }
        }
    }

    fn time_trigger(&self) {
        let mut state = self.lock();
        if state.file.is_none() || state.segment_bytes == 0 {
            return;
        }
        if state.at_line_start {
            self.rotate(&mut state, Trigger::Time);
        } else {
            state.pending = Some(Trigger::Time);
            state.pending_bytes = 0;
        }
    }

    fn compress_and_retain(&self, segment: &Path) {
        match compress::compress_segment(segment, &self.settings.compression) {
            Ok(_) => WriterStats::add(&self.stats.compressed, 1),
            Err(error) => {
                WriterStats::add(&self.stats.compression_failures, 1);
                tracing::warn!(%error, "cannot compress a rotated log; left for recovery");
            }
        }
        match retention::enforce(&self.settings) {
            Ok((deleted, bytes)) => {
                WriterStats::add(&self.stats.deleted_files, deleted.len() as u64);
                WriterStats::add(&self.stats.deleted_bytes, bytes);
            }
            Err(error) => tracing::warn!(%error, "cannot apply log retention"),
        }
    }
}

/// The background thread: compresses what rotations hand over and fires the time trigger at
/// each clock-aligned boundary.
fn background(shared: &Shared, jobs: &mpsc::Receiver<Job>) {
    let mut next = next_boundary(shared.settings.frequency, Local::now());
    loop {
        let wait = (next - Local::now()).to_std().unwrap_or(Duration::ZERO);
        match jobs.recv_timeout(wait) {
            Ok(Job::Compress(segment)) => shared.compress_and_retain(&segment),
            Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => {
                // Finish what was handed over before the stop.
                while let Ok(job) = jobs.try_recv() {
                    if let Job::Compress(segment) = job {
                        shared.compress_and_retain(&segment);
                    }
                }
                *shared.jobs.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.settings.rotate {
                    shared.time_trigger();
                }
                next = next_boundary(shared.settings.frequency, Local::now());
            }
        }
    }
}

/// The next time after `now` at which `frequency` rotates: the next minute, multiple of five
/// minutes, hour, local midnight, Sunday midnight (logrotate's week) or first of the month.
pub fn next_boundary(frequency: LogrotateFrequency, now: DateTime<Local>) -> DateTime<Local> {
    let start_of_minute = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let midnight = |date: chrono::NaiveDate| {
        Local
            .from_local_datetime(&date.and_time(NaiveTime::MIN))
            .earliest()
            .unwrap_or(now + chrono::Duration::days(1))
    };
    match frequency {
        LogrotateFrequency::EveryMinute => start_of_minute + chrono::Duration::minutes(1),
        LogrotateFrequency::EveryFiveMinutes => {
            let into = i64::from(start_of_minute.minute() % 5);
            start_of_minute + chrono::Duration::minutes(5 - into)
        }
        LogrotateFrequency::Hourly => {
            start_of_minute.with_minute(0).unwrap_or(start_of_minute) + chrono::Duration::hours(1)
        }
        LogrotateFrequency::Daily => midnight(
            now.date_naive()
                .checked_add_days(Days::new(1))
                .unwrap_or(now.date_naive()),
        ),
        LogrotateFrequency::Weekly => {
            let days = 7 - u64::from(now.weekday().num_days_from_sunday());
            midnight(
                now.date_naive()
                    .checked_add_days(Days::new(days))
                    .unwrap_or(now.date_naive()),
            )
        }
        LogrotateFrequency::Monthly => {
            let first = now.date_naive().with_day(1).unwrap_or(now.date_naive());
            midnight(
                first
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(first),
            )
        }
    }
}

/// Opens `path` for appending, creating it.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Writes as much of `buf` as the file takes; returns the bytes written and the error that
/// stopped it.
fn write_counting(file: &mut File, buf: &[u8]) -> (usize, Option<io::Error>) {
    let mut written = 0;
    while written < buf.len() {
        match file.write(&buf[written..]) {
            Ok(0) => return (written, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;

    use super::*;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Local> {
        Local
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("time")
    }

    #[test]
    fn boundaries_are_aligned_to_the_clock() {
        let now = local(2026, 3, 11, 10, 17, 42);
        use LogrotateFrequency as F;
        assert_eq!(
            next_boundary(F::EveryMinute, now),
            local(2026, 3, 11, 10, 18, 0)
        );
        assert_eq!(
            next_boundary(F::EveryFiveMinutes, now),
            local(2026, 3, 11, 10, 20, 0)
        );
        assert_eq!(
            next_boundary(F::EveryFiveMinutes, local(2026, 3, 11, 10, 20, 0)),
            local(2026, 3, 11, 10, 25, 0)
        );
        assert_eq!(next_boundary(F::Hourly, now), local(2026, 3, 11, 11, 0, 0));
        assert_eq!(next_boundary(F::Daily, now), local(2026, 3, 12, 0, 0, 0));
        let weekly = next_boundary(F::Weekly, now);
        assert_eq!(weekly.weekday(), Weekday::Sun);
        assert!(weekly > now && weekly - now <= chrono::Duration::days(7));
        assert_eq!(next_boundary(F::Monthly, now), local(2026, 4, 1, 0, 0, 0));
    }
}
