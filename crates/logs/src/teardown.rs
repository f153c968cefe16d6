//! Teardown of a task's logs (Singularity's `teardown()`, §4.11.3 of the compatibility
//! reference): the final rotation, the tail file, an empty service log removed. The upload
//! and tail metadata are the caller's (they are written after this, marked finished).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::recover::rotate_idle;
use crate::writer::ServiceLog;
use crate::{LogError, compress, names, retention, settings::LogSettings, tail};

/// What [`finish`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishReport {
    /// The tail file, when it was written now.
    pub tail_file: Option<PathBuf>,
    /// The service log was empty at the end and removed.
    pub service_log_removed: bool,
    /// Bytes of output that could not be written, over the task's life.
    pub dropped_bytes: u64,
}

/// Finishes the logs of the task of `settings`: closes `log` (the final rotation, and every
/// segment compressed), or, without a writer (the task never started, or the cleanup finishes
/// it), rotates a non-empty service log as it is; writes the tail file unless it exists
/// (rotating tasks only: from memory when `log` is given, else from the log on disk);
/// removes an empty service log.
pub fn finish(log: Option<&ServiceLog>, settings: &LogSettings) -> Result<FinishReport, LogError> {
    let mut report = FinishReport::default();
    let tail = match log {
        Some(log) => {
            let tail = log.close();
            report.dropped_bytes = crate::WriterStats::get(&log.stats().dropped_bytes);
            Some(tail)
        }
        None => None,
    };
    if settings.rotate {
        if settings.tail_lines > 0 && !settings.tail_file.exists() {
            let tail = match tail {
                Some(tail) => tail,
                None => tail_from_disk(settings)?,
            };
            write_atomic(&settings.tail_file, &tail)?;
            report.tail_file = Some(settings.tail_file.clone());
        }
        if log.is_none()
            && let Some(segment) = rotate_idle(settings)?
        {
            compress::compress_segment(&segment, &settings.compression)?;
        }
        retention::enforce(settings)?;
    }
    match fs::metadata(&settings.service_log) {
        Ok(meta) if meta.len() == 0 => {
            fs::remove_file(&settings.service_log)
                .map_err(|e| LogError::io("remove", &settings.service_log, e))?;
            report.service_log_removed = true;
        }
        _ => {}
    }
    Ok(report)
}

/// The last lines of the service log on disk, or of its newest rotated segment when the
/// service log is empty.
pub(crate) fn tail_from_disk(settings: &LogSettings) -> Result<Vec<u8>, LogError> {
    let n = settings.tail_lines;
    let live = match fs::read(&settings.service_log) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(LogError::io("read", &settings.service_log, e)),
    };
    if !live.is_empty() {
        return Ok(tail::tail_lines(&live, n).to_vec());
    }
    let newest = fs::read_dir(&settings.logs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            names::is_segment_of(&name, &settings.service_log_name) && !names::is_temporary(&name)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    let Some((_, newest)) = newest else {
        return Ok(Vec::new());
    };
    let bytes =
        compress::read_decompressed(&newest).map_err(|e| LogError::io("read", &newest, e))?;
    Ok(tail::tail_lines(&bytes, n).to_vec())
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(names::FRESH_SUFFIX);
    let temp = path.with_file_name(name);
    let result = fs::File::create(&temp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(LogError::io("write", path, e));
    }
    fs::rename(&temp, path).map_err(|e| LogError::io("rename", &temp, e))
}
