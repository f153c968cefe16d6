//! Bounded disk: what may be deleted of a task's rotated service logs.
//!
//! With upload metadata, a rotated file stays until the uploader takes it, unless the task's
//! rotated-but-not-uploaded bytes exceed the budget: then the oldest compressed files go
//! first, each deletion logged at warn. Without upload metadata, logrotate's `rotate`
//! (`logrotateCount`) and `maxage` (`logrotateMaxageDays`) apply.

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::settings::{LogSettings, Retention};
use crate::{LogError, names};

/// One rotated file of the service log.
#[derive(Debug, Clone)]
struct Rotated {
    path: PathBuf,
    modified: SystemTime,
    len: u64,
    compressed: bool,
}

/// Deletes what the retention rules of `settings` allow; returns the files deleted and their
/// bytes.
pub fn enforce(settings: &LogSettings) -> Result<(Vec<PathBuf>, u64), LogError> {
    let mut rotated = list(settings)?;
    // Oldest first; names break ties (their date, then their number).
    rotated.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
    let mut doomed = Vec::new();
    match settings.retention {
        Retention::Uploaded { budget_bytes } => {
            let mut total: u64 = rotated.iter().map(|r| r.len).sum();
            if budget_bytes > 0 {
                for r in rotated.iter().filter(|r| r.compressed) {
                    if total <= budget_bytes {
                        break;
                    }
                    total -= r.len;
                    doomed.push((r.clone(), "over the per-task budget of rotated logs not yet uploaded (maxRotatedLogsNotUploadedMb)"));
                }
            }
        }
        Retention::Local { count, max_age } => {
            let now = SystemTime::now();
            let compressed: Vec<&Rotated> = rotated.iter().filter(|r| r.compressed).collect();
            let keep_from = compressed.len().saturating_sub(count as usize);
            for (i, r) in compressed.iter().enumerate() {
                if i < keep_from {
                    doomed.push(((*r).clone(), "more rotated logs than logrotateCount"));
                } else if now
                    .duration_since(r.modified)
                    .is_ok_and(|age| age > max_age)
                {
                    doomed.push(((*r).clone(), "older than logrotateMaxageDays"));
                }
            }
        }
    }
    let mut deleted = Vec::new();
    let mut bytes = 0;
    for (r, why) in doomed {
        match fs::remove_file(&r.path) {
            Ok(()) => {
                tracing::warn!(path = %r.path.display(), bytes = r.len, "deleted a rotated log: {why}");
                bytes += r.len;
                deleted.push(r.path);
            }
            Err(error) => {
                tracing::warn!(path = %r.path.display(), %error, "cannot delete a rotated log");
            }
        }
    }
    Ok((deleted, bytes))
}

fn list(settings: &LogSettings) -> Result<Vec<Rotated>, LogError> {
    let entries = match fs::read_dir(&settings.logs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("list", &settings.logs_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !names::is_segment_of(&name, &settings.service_log_name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.push(Rotated {
            path: entry.path(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            len: meta.len(),
            compressed: names::is_compressed(&name, &settings.compression.extension),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use singularity_common::config::ExecutorConfig;

    use super::*;

    fn settings(dir: &Path, retention: Retention) -> LogSettings {
        let data = serde_json::from_str(r#"{"cmd":"x"}"#).expect("data");
        let mut s = LogSettings::new(&ExecutorConfig::default(), &data, dir).expect("settings");
        s.retention = retention;
        s
    }

    fn rotated(dir: &Path, name: &str, len: usize, age_secs: u64) {
        let path = dir.join("logs").join(name);
        fs::write(&path, vec![b'x'; len]).expect("write");
        let when = SystemTime::now() - Duration::from_secs(age_secs);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .expect("mtime");
    }

    #[test]
    fn the_budget_deletes_oldest_compressed_first() {
        let dir = tempfile::tempdir().expect("dir");
        fs::create_dir(dir.path().join("logs")).expect("mkdir");
        rotated(dir.path(), "service.log-1.log.gz", 100, 300);
        rotated(dir.path(), "service.log-2.log.gz", 100, 200);
        rotated(dir.path(), "service.log-3.log", 100, 100);
        rotated(dir.path(), "other.log", 1000, 400);
        let s = settings(dir.path(), Retention::Uploaded { budget_bytes: 150 });
        let (deleted, bytes) = enforce(&s).expect("enforced");
        assert_eq!(
            deleted,
            vec![
                dir.path().join("logs/service.log-1.log.gz"),
                dir.path().join("logs/service.log-2.log.gz")
            ]
        );
        assert_eq!(bytes, 200);
        assert!(dir.path().join("logs/service.log-3.log").exists());
        assert!(dir.path().join("logs/other.log").exists());
    }

    #[test]
    fn without_upload_count_and_maxage_apply() {
        let dir = tempfile::tempdir().expect("dir");
        fs::create_dir(dir.path().join("logs")).expect("mkdir");
        rotated(dir.path(), "service.log-1.log.gz", 1, 10 * 86_400);
        rotated(dir.path(), "service.log-2.log.gz", 1, 300);
        rotated(dir.path(), "service.log-3.log.gz", 1, 200);
        rotated(dir.path(), "service.log-4.log.gz", 1, 100);
        let s = settings(
            dir.path(),
            Retention::Local {
                count: 2,
                max_age: Duration::from_secs(7 * 86_400),
            },
        );
        let (deleted, _) = enforce(&s).expect("enforced");
        assert_eq!(
            deleted,
            vec![
                dir.path().join("logs/service.log-1.log.gz"),
                dir.path().join("logs/service.log-2.log.gz")
            ]
        );
    }
}
