//! Recovery of a task's logs after its executor died, for the cleanup job. Idempotent: a
//! second run finds nothing to do.
//!
//! 1. Temporary files are removed (a fresh service log never renamed, a half-compressed
//!    segment).
//! 2. Empty compressed twins of an uncompressed segment (an interrupted external compressor,
//!    Singularity cleanup's rule) are removed.
//! 3. A live service log: the tail file is written if missing, then a non-empty service log
//!    is rotated and an empty one removed (rotating tasks only).
//! 4. Every uncompressed rotated segment in the logs directory is compressed: the service
//!    log's and those of the additional files (`logrotateAdditionalFiles`).
//! 5. Retention.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::Local;
use globset::{Glob, GlobMatcher};

use crate::settings::LogSettings;
use crate::teardown::tail_from_disk;
use crate::{LogError, compress, names, retention};

/// What [`recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Temporary files removed.
    pub temporaries_removed: Vec<PathBuf>,
    /// Empty compressed twins removed.
    pub empty_twins_removed: Vec<PathBuf>,
    /// The segment the live service log was rotated to.
    pub rotated: Option<PathBuf>,
    /// The tail file, when it was written now.
    pub tail_file: Option<PathBuf>,
    /// The service log was empty and removed.
    pub service_log_removed: bool,
    /// Compressed files made from orphaned segments.
    pub compressed: Vec<PathBuf>,
    /// Rotated files deleted by retention.
    pub deleted: Vec<PathBuf>,
    /// Segments that could not be compressed (left in place for the next run).
    pub failures: Vec<String>,
}

impl RecoveryReport {
    /// Whether nothing had to be done.
    pub fn is_empty(&self) -> bool {
        *self == RecoveryReport::default()
    }
}

/// Recovers the logs of the task in `task_dir` (see the module documentation).
///
/// Errors only when a directory cannot be read or the service log cannot be handled; a
/// segment that cannot be compressed is listed in [`RecoveryReport::failures`].
pub fn recover(task_dir: &Path, settings: &LogSettings) -> Result<RecoveryReport, LogError> {
    let mut report = RecoveryReport::default();
    let logs_dir = &settings.logs_dir;
    debug_assert!(settings.service_log.starts_with(task_dir));

    let fresh = names::fresh(&settings.service_log);
    if remove_if_exists(&fresh)? {
        report.temporaries_removed.push(fresh);
    }
    let segment_matchers = segment_matchers(settings);
    let entries = list(logs_dir)?;
    for (name, path) in &entries {
        if names::is_temporary(name) && remove_if_exists(path)? {
            report.temporaries_removed.push(path.clone());
        }
    }

    // Singularity's cleanup rule: an empty compressed file next to its uncompressed original.
    for (name, path) in &entries {
        if names::is_temporary(name)
            || !segment_matchers.iter().any(|m| m.is_match(name))
            || !names::is_compressed(name, &settings.compression.extension)
        {
            continue;
        }
        if fs::metadata(path).is_ok_and(|m| m.len() == 0) && remove_if_exists(path)? {
            report.empty_twins_removed.push(path.clone());
        }
    }

    if settings.rotate {
        if settings.tail_lines > 0 && !settings.tail_file.exists() {
            let tail = tail_from_disk(settings)?;
            if !tail.is_empty() {
                fs::write(&settings.tail_file, &tail)
                    .map_err(|e| LogError::io("write", &settings.tail_file, e))?;
                report.tail_file = Some(settings.tail_file.clone());
            }
        }
        report.rotated = rotate_idle(settings)?;
    }
    if fs::metadata(&settings.service_log).is_ok_and(|m| m.len() == 0) {
        fs::remove_file(&settings.service_log)
            .map_err(|e| LogError::io("remove", &settings.service_log, e))?;
        report.service_log_removed = true;
    }

    for (name, path) in list(logs_dir)? {
        if names::is_temporary(&name)
            || names::is_compressed(&name, &settings.compression.extension)
            || !segment_matchers.iter().any(|m| m.is_match(&name))
            || !path.is_file()
        {
            continue;
        }
        match compress::compress_segment(&path, &settings.compression) {
            Ok(out) => report.compressed.push(out),
            Err(error) => report.failures.push(error.to_string()),
        }
    }
    if settings.rotate {
        report.deleted = retention::enforce(settings)?.0;
    }
    if !report.is_empty() {
        tracing::info!(task_dir = %task_dir.display(), ?report, "recovered task logs");
    }
    Ok(report)
}

/// Renames a non-empty service log nobody writes any more to a new segment; returns it.
pub(crate) fn rotate_idle(settings: &LogSettings) -> Result<Option<PathBuf>, LogError> {
    match fs::metadata(&settings.service_log) {
        Ok(meta) if meta.len() > 0 => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("stat", &settings.service_log, e)),
    }
    fs::create_dir_all(&settings.logs_dir)
        .map_err(|e| LogError::io("create", &settings.logs_dir, e))?;
    let segment = names::unique_segment(
        &settings.logs_dir,
        &settings.service_log_name,
        &settings.dateformat,
        Local::now(),
        &settings.compression.extension,
    );
    if settings.use_file_attributes
        && let Ok(file) = fs::File::open(&settings.service_log)
    {
        compress::set_xattr(
            &file,
            crate::LOG_END_XATTR,
            &Local::now().timestamp_millis().to_string(),
        );
    }
    match fs::rename(&settings.service_log, &segment) {
        Ok(()) => {}
        Err(_) => {
            // The logs directory is on another file system.
            fs::copy(&settings.service_log, &segment)
                .and_then(|_| fs::remove_file(&settings.service_log))
                .map_err(|e| LogError::io("move the service log to", &segment, e))?;
        }
    }
    compress::sync_dir(&segment);
    Ok(Some(segment))
}

/// Matchers of rotated segment names: `<serviceLog>-*` and `<additional file>-*`.
fn segment_matchers(settings: &LogSettings) -> Vec<GlobMatcher> {
    std::iter::once(settings.service_log_name.as_str())
        .chain(settings.additional_names.iter().map(String::as_str))
        .filter_map(|name| {
            let escaped = if name == settings.service_log_name {
                globset::escape(name)
            } else {
                name.to_owned()
            };
            Glob::new(&format!("{escaped}-?*"))
                .map(|g| g.compile_matcher())
                .ok()
        })
        .collect()
}

fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>, LogError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("list", dir, e)),
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    Ok(out)
}

fn remove_if_exists(path: &Path) -> Result<bool, LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LogError::io("remove", path, e)),
    }
}
