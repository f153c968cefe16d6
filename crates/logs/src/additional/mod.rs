//! Files the task writes itself (`logrotateAdditionalFiles`), rotated while the task appends
//! to them, without losing what it appends.
//!
//! Each entry names a file or a glob relative to the task directory. A file rotates on its
//! own trigger: its `logrotateSizeOverride` (`10M`), else its `logrotateFrequencyOverride`,
//! else the task's frequency, aligned to the local clock. The rotated segment is
//! `<name>-<date>[.<ext>]` **beside the live file**, as Java's logrotate configuration put it
//! (no `olddir` for extra files): the date is the entry's `dateformat`, else
//! `logrotateExtrasDateformat`, a leading `-` dropped; the extension is the entry's
//! `extension`, else the file name's. When that name is taken (two rotations within one date
//! period), `-1`, `-2`, … is added after the date, so `<name>*.[gb]z*` upload globs still match
//! once the segment is compressed.
//!
//! How the bytes are taken out of the live file is in [`rotate`]. The finished, uncompressed
//! segment is handed to a [`SegmentSink`] (the log pipeline's compression).
//!
//! Upload metadata: Java writes none for these files; a task uploads them by listing them in
//! `s3UploaderAdditionalFiles`, whose records `singularity_common::task_logs::upload_plan`
//! writes (glob `<filename>*.[gb]z*` in the file's `directory`).
//!
//! The executor builds the driver once per task, ticks it while the task runs, and runs the
//! final rotation at teardown; the cleanup job does the same for a task whose executor died,
//! then [`AdditionalLogs::recover`] and deletes [`AdditionalLogs::files_to_delete_in_cleanup`]:
//!
//! ```no_run
//! # use std::path::Path;
//! # use singularity_common::config::ExecutorConfig;
//! # use singularity_common::records::SingularityTaskExecutorData;
//! # fn demo(config: &ExecutorConfig, data: &SingularityTaskExecutorData, task_dir: &Path)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use singularity_logs::LogSettings;
//! use singularity_logs::additional::AdditionalLogs;
//!
//! let settings = LogSettings::new(config, data, task_dir)?;
//! let extras = AdditionalLogs::for_task(&settings, config, data, chrono::Local::now())?;
//! // While the task runs: a tick every second on a thread of its own.
//! let running = extras.spawn(std::time::Duration::from_secs(1))?;
//! // At teardown, once the task has exited: the final rotation.
//! let (last, _extras) = running.finish()?;
//! # Ok(()) }
//! ```

mod entries;
mod rotate;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Local};
use singularity_common::config::ExecutorConfig;
use singularity_common::records::SingularityTaskExecutorData;

use crate::settings::Compression;
use crate::writer::next_boundary;
use crate::{LOG_END_XATTR, LOG_START_XATTR, LogSettings, compress, names};

pub use entries::{AdditionalFile, Trigger, from_executor};
pub use rotate::{Method, Phase, Rotated, rotate};

/// A bad entry, or a rotation that failed.
#[derive(Debug, thiserror::Error)]
pub enum AdditionalFileError {
    /// A configuration value that cannot be used.
    #[error("{field} = {value:?}: {reason}")]
    Invalid {
        /// The key, with the entry's index (`logrotateAdditionalFiles[0].dateformat`).
        field: String,
        /// The value as configured.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A rotation step failed; the live file keeps its data.
    #[error("rotating {path}: {step}: {source}")]
    Rotate {
        /// The live file.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The rotation thread is gone (it panicked): no final rotation was made.
    #[error("the additional-files rotation thread stopped unexpectedly")]
    ThreadLost,
}

/// Takes each finished, uncompressed segment (to compress it).
pub trait SegmentSink: Send {
    /// Called once per segment, after it is synced and the live file no longer holds its data.
    fn segment_finished(&mut self, rotated: &Rotated);
}

impl<F: FnMut(&Rotated) + Send> SegmentSink for F {
    fn segment_finished(&mut self, rotated: &Rotated) {
        self(rotated);
    }
}

/// What one tick (or the final rotation) did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// Segments made, in the order made.
    pub rotated: Vec<Rotated>,
    /// Files due that held less than one whole block: left for a later rotation.
    pub deferred: Vec<PathBuf>,
    /// Files whose rotation failed (logged at warn); they keep their data.
    pub failed: Vec<AdditionalFileError>,
}

/// Rotates a task's additional files: [`tick`](Self::tick) while the task runs,
/// [`finish`](Self::finish) at teardown.
pub struct AdditionalLogs {
    files: Vec<AdditionalFile>,
    /// Per file with a schedule: when it is next due.
    next_due: Vec<Option<DateTime<Local>>>,
    /// Per file: the canonical task directory its files must resolve inside.
    within: Vec<PathBuf>,
    sink: Box<dyn SegmentSink>,
    /// Segments made by this driver, never taken for live files.
    produced: HashSet<PathBuf>,
    fallbacks: Arc<AtomicU64>,
    file_attributes: bool,
}

/// An [`AdditionalLogs`] ticking on its own thread ([`AdditionalLogs::spawn`]). Dropping it
/// stops the thread without a final rotation.
#[derive(Debug)]
pub struct RunningAdditionalLogs {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<AdditionalLogs>>,
    fallbacks: Arc<AtomicU64>,
}

impl RunningAdditionalLogs {
    /// Rotations so far that fell back to copy-and-truncate.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Stops the ticking and makes the final rotation (call it once the task has exited);
    /// returns the driver too, for the cleanup's [`AdditionalLogs::recover`].
    ///
    /// # Errors
    /// The thread panicked: the driver, and so the final rotation, is lost.
    pub fn finish(mut self) -> Result<(TickReport, AdditionalLogs), AdditionalFileError> {
        let _ = self.stop.send(());
        let mut logs = self
            .thread
            .take()
            .and_then(|thread| thread.join().ok())
            .ok_or(AdditionalFileError::ThreadLost)?;
        let report = logs.finish(Local::now());
        Ok((report, logs))
    }
}

impl Drop for RunningAdditionalLogs {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// What [`AdditionalLogs::recover`] did.
#[derive(Debug, Default)]
pub struct AdditionalRecovery {
    /// Compression temporaries left by an interrupted compression, removed.
    pub temporaries_removed: Vec<PathBuf>,
    /// Uncompressed segments compressed (the compressed files).
    pub compressed: Vec<PathBuf>,
    /// Segments that could not be compressed; they stay for the next attempt.
    pub failures: Vec<String>,
}

impl std::fmt::Debug for AdditionalLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdditionalLogs")
            .field("files", &self.files)
            .field("next_due", &self.next_due)
            .field("fallbacks", &self.fallbacks)
            .finish_non_exhaustive()
    }
}

impl AdditionalLogs {
    /// A driver for `files`, starting at `now` (the first scheduled rotations are at the next
    /// boundaries after it). Build it once the task directory exists: its canonical path,
    /// taken now, is what every file must resolve inside (a task could later swap the
    /// directory for a symlink).
    pub fn new(
        files: Vec<AdditionalFile>,
        now: DateTime<Local>,
        sink: impl SegmentSink + 'static,
    ) -> Self {
        let next_due = files
            .iter()
            .map(|file| match file.trigger {
                Trigger::Every(frequency) => Some(next_boundary(frequency, now)),
                Trigger::Size(_) => None,
            })
            .collect();
        let within = files
            .iter()
            .map(|file| {
                std::fs::canonicalize(&file.task_directory)
                    .unwrap_or_else(|_| file.task_directory.clone())
            })
            .collect();
        AdditionalLogs {
            files,
            next_due,
            within,
            sink: Box::new(sink),
            produced: HashSet::new(),
            fallbacks: Arc::new(AtomicU64::new(0)),
            file_attributes: false,
        }
    }

    /// The task's additional files, their segments compressed as the task's service log's are
    /// (`logrotateCompressionSettings`), with `user.logstart` / `user.logend` kept when
    /// `useFileAttributes` is set. A segment whose compression fails stays uncompressed for
    /// [`recover`](Self::recover).
    ///
    /// # Errors
    /// An entry that cannot be used, naming its field and value.
    pub fn for_task(
        settings: &LogSettings,
        config: &ExecutorConfig,
        data: &SingularityTaskExecutorData,
        now: DateTime<Local>,
    ) -> Result<Self, AdditionalFileError> {
        let files = from_executor(&settings.task_dir, config, data)?;
        let compression = settings.compression.clone();
        let sink = move |rotated: &Rotated| {
            if let Err(error) = compress::compress_segment(&rotated.segment, &compression) {
                tracing::warn!(
                    segment = %rotated.segment.display(),
                    %error,
                    "cannot compress a rotated file; it stays for recovery"
                );
            }
        };
        let mut extras = Self::new(files, now, sink);
        extras.file_attributes = settings.use_file_attributes;
        Ok(extras)
    }

    /// Keeps `user.logstart` / `user.logend` (`useFileAttributes`): a segment gets its live
    /// file's `user.logstart` and `user.logend` = the rotation time; the live file's
    /// `user.logstart` becomes the rotation time.
    pub fn with_file_attributes(mut self, enabled: bool) -> Self {
        self.file_attributes = enabled;
        self
    }

    /// The entries.
    pub fn files(&self) -> &[AdditionalFile] {
        &self.files
    }

    /// Rotates every file whose trigger fired by `now`: size entries whose file holds at least
    /// their size, scheduled entries whose boundary has passed (each file of the entry that is
    /// not empty). Call it often (every second or so): size is checked only here.
    pub fn tick(&mut self, now: DateTime<Local>) -> TickReport {
        let mut report = TickReport::default();
        for index in 0..self.files.len() {
            let due = match (self.files[index].trigger, self.next_due[index]) {
                (Trigger::Every(frequency), Some(due)) if now >= due => {
                    self.next_due[index] = Some(next_boundary(frequency, now));
                    Some(None)
                }
                (Trigger::Size(size), _) => Some(Some(size)),
                _ => None,
            };
            let Some(min_size) = due else {
                continue;
            };
            for path in self.files[index].live_files(&self.produced) {
                if let Some(min_size) = min_size {
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if size < min_size {
                        continue;
                    }
                }
                self.rotate_one(index, &path, Phase::Running, now, &mut report);
            }
        }
        self.forget_gone_segments();
        report
    }

    /// The final rotation, at teardown once the task has ended: every non-empty file of every
    /// entry, whole.
    pub fn finish(&mut self, now: DateTime<Local>) -> TickReport {
        let mut report = TickReport::default();
        for index in 0..self.files.len() {
            for path in self.files[index].live_files(&self.produced) {
                self.rotate_one(index, &path, Phase::Final, now, &mut report);
            }
        }
        report
    }

    /// Rotations so far that fell back to copy-and-truncate.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Ticks on a thread of its own every `every` until [`RunningAdditionalLogs::finish`]:
    /// what the executor runs beside the task. Rotations are logged (failures at warn).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(self, every: Duration) -> io::Result<RunningAdditionalLogs> {
        let fallbacks = Arc::clone(&self.fallbacks);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("additional-logs".to_owned())
            .spawn(move || {
                let mut logs = self;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    logs.tick(Local::now());
                }
                logs
            })?;
        Ok(RunningAdditionalLogs {
            stop,
            thread: Some(thread),
            fallbacks,
        })
    }

    /// For the cleanup after an executor died: removes compression temporaries beside the live
    /// files and compresses the segments a rotation left uncompressed (an empty compressed twin
    /// is replaced). Idempotent. Run it after [`finish`](Self::finish).
    pub fn recover(&self, compression: &Compression) -> AdditionalRecovery {
        let mut report = AdditionalRecovery::default();
        let lives = self.lives_for_recovery();
        let mut dirs: Vec<&Path> = lives.iter().filter_map(|live| live.parent()).collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(segment) = name
                    .strip_prefix('.')
                    .and_then(|rest| rest.strip_suffix(names::COMPRESSING_SUFFIX))
                else {
                    continue;
                };
                let ours = lives.iter().any(|live| {
                    live.parent() == Some(dir)
                        && is_segment_name(
                            segment,
                            &live.file_name().unwrap_or_default().to_string_lossy(),
                        )
                });
                if ours && std::fs::remove_file(entry.path()).is_ok() {
                    report.temporaries_removed.push(entry.path());
                }
            }
        }
        for segment in self.unfinished_segments() {
            match compress::compress_segment(&segment, compression) {
                Ok(compressed) => report.compressed.push(compressed),
                Err(error) => report.failures.push(error.to_string()),
            }
        }
        report
    }

    /// Uncompressed segments beside the live files (`<name>-<digit>…`, not `.gz`/`.bz2`…):
    /// what a rotation left behind when compression did not happen (the executor died). The
    /// cleanup hands them to the compression again.
    pub fn unfinished_segments(&self) -> Vec<PathBuf> {
        let mut segments: Vec<PathBuf> = self
            .lives_for_recovery()
            .iter()
            .flat_map(|live| segments_of(live))
            .collect();
        segments.sort();
        segments.dedup();
        segments
    }

    /// The live files, and the path a plain (glob-free) entry names even when its file is
    /// gone: what recovery looks beside.
    fn lives_for_recovery(&self) -> Vec<PathBuf> {
        let mut lives = Vec::new();
        for (index, file) in self.files.iter().enumerate() {
            let mut candidates = file.live_files(&HashSet::new());
            if !file.is_glob() {
                candidates.push(file.path.clone());
            }
            lives.extend(candidates.into_iter().filter(|live| {
                live.parent()
                    .is_some_and(|dir| self.resolves_inside(index, dir))
            }));
        }
        lives.sort();
        lives.dedup();
        lives
    }

    /// The live files of the entries marked `deleteInExecutorCleanup`, which the cleanup
    /// deletes after the final rotation. Rotated segments are not among them: they wait for
    /// the uploader.
    pub fn files_to_delete_in_cleanup(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, file)| file.delete_in_executor_cleanup)
            .flat_map(|(index, file)| {
                file.live_files(&self.produced)
                    .into_iter()
                    .filter(move |live| self.resolves_inside(index, live))
            })
            .collect()
    }

    /// Whether `path` resolves inside the task directory of entry `index` (symlinks followed).
    fn resolves_inside(&self, index: usize, path: &Path) -> bool {
        std::fs::canonicalize(path).is_ok_and(|resolved| resolved.starts_with(&self.within[index]))
    }

    fn rotate_one(
        &mut self,
        index: usize,
        path: &Path,
        phase: Phase,
        now: DateTime<Local>,
        report: &mut TickReport,
    ) {
        let file = &self.files[index];
        let within = &self.within[index];
        let result = rotate(path, phase, within, |resolved| {
            create_segment(resolved, &file.dateformat, file.extension.as_deref(), now)
        });
        match result {
            Ok(Some(rotated)) => {
                if rotated.method == Method::CopyTruncateFallback {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(
                    file = %path.display(),
                    segment = %rotated.segment.display(),
                    bytes = rotated.bytes,
                    method = ?rotated.method,
                    "rotated"
                );
                if self.file_attributes {
                    keep_file_attributes(path, &rotated.segment, now);
                }
                self.produced.insert(rotated.segment.clone());
                self.sink.segment_finished(&rotated);
                report.rotated.push(rotated);
            }
            Ok(None) => {
                if phase == Phase::Running
                    && std::fs::metadata(path).is_ok_and(|metadata| metadata.len() > 0)
                {
                    report.deferred.push(path.to_path_buf());
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "rotation failed; the file keeps its data");
                report.failed.push(error);
            }
        }
    }

    /// Segments compressed (and so renamed) by the sink need no remembering.
    fn forget_gone_segments(&mut self) {
        if self.produced.len() > 64 {
            self.produced.retain(|path| path.exists());
        }
    }
}

/// `useFileAttributes` bookkeeping of one rotation, as Java's logrotate `lastaction` did it.
/// Best effort: file systems without user xattrs just lack them.
fn keep_file_attributes(live: &Path, segment: &Path, now: DateTime<Local>) {
    let now_ms = now.timestamp_millis().to_string();
    let (Ok(live), Ok(segment)) = (File::open(live), File::open(segment)) else {
        return;
    };
    if let Some(start) = compress::get_xattr(&live, LOG_START_XATTR) {
        compress::set_xattr(&segment, LOG_START_XATTR, &String::from_utf8_lossy(&start));
    }
    compress::set_xattr(&segment, LOG_END_XATTR, &now_ms);
    compress::set_xattr(&live, LOG_START_XATTR, &now_ms);
}

/// The rotated name of `live`: `<dir>/<name>-<date>[.<ext>]`.
pub fn rotated_name(live: &Path, date: &str, extension: Option<&str>, collision: u32) -> PathBuf {
    let name = live
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rotated = format!("{name}-{date}");
    if collision > 0 {
        rotated.push_str(&format!("-{collision}"));
    }
    if let Some(extension) = extension {
        rotated.push('.');
        rotated.push_str(extension);
    }
    live.with_file_name(rotated)
}

/// Creates the segment under the first free rotated name. A name counts as taken while any
/// file in the directory contains it (its compressed form, a compression temp file).
fn create_segment(
    live: &Path,
    dateformat: &str,
    extension: Option<&str>,
    now: DateTime<Local>,
) -> io::Result<(PathBuf, File)> {
    let date = now.format(dateformat).to_string();
    let dir = live.parent().unwrap_or(Path::new("."));
    let existing: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    for collision in 0..10_000 {
        let candidate = rotated_name(live, &date, extension, collision);
        let name = candidate
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if existing.iter().any(|existing| existing.contains(&name)) {
            continue;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => {
                same_owner_and_mode(live, &file);
                return Ok((candidate, file));
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free rotated name for {}", live.display()),
    ))
}

/// Gives a segment its live file's owner and permission bits, as logrotate does, so the task's
/// user can still read its rotated logs. Best effort.
fn same_owner_and_mode(live: &Path, segment: &File) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let Ok(metadata) = std::fs::metadata(live) else {
        return;
    };
    let _ = std::os::unix::fs::fchown(segment, Some(metadata.uid()), Some(metadata.gid()));
    let _ = segment.set_permissions(std::fs::Permissions::from_mode(metadata.mode() & 0o777));
}

/// Whether `name` is `<live_name>-<digit>…`: a segment of `live_name`, compressed or not.
fn is_segment_name(name: &str, live_name: &str) -> bool {
    name.strip_prefix(live_name)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Uncompressed siblings `<name>-<digit>…` of `live`.
fn segments_of(live: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name()) else {
        return Vec::new();
    };
    let live_name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            is_segment_name(&name, &live_name) && !entries::is_compressed(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_can_move_to_a_blocking_thread() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<AdditionalLogs>();
    }

    #[test]
    fn rotated_names_are_javas_with_a_counter_on_collision() {
        let live = Path::new("/t/logs/access.log");
        assert_eq!(
            rotated_name(live, "20221118", Some("log"), 0),
            Path::new("/t/logs/access.log-20221118.log")
        );
        assert_eq!(
            rotated_name(live, "20221118", Some("log"), 2),
            Path::new("/t/logs/access.log-20221118-2.log")
        );
        assert_eq!(
            rotated_name(Path::new("/t/gc"), "1668785678", None, 0),
            Path::new("/t/gc-1668785678")
        );
    }

    #[test]
    fn a_name_is_taken_while_its_compressed_form_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("access.log");
        std::fs::write(&live, "x").expect("write");
        std::fs::write(dir.path().join("access.log-20221118.log.gz"), "").expect("write");
        let now = DateTime::parse_from_rfc3339("2022-11-18T12:00:00+00:00")
            .expect("time")
            .with_timezone(&Local);
        let (first, _) = create_segment(&live, "20221118", Some("log"), now).expect("create");
        assert_eq!(first, dir.path().join("access.log-20221118-1.log"));
        let (second, _) = create_segment(&live, "20221118", Some("log"), now).expect("create");
        assert_eq!(second, dir.path().join("access.log-20221118-2.log"));
    }
}
