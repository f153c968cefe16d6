//! `logrotateAdditionalFiles` entries, normalised: absolute glob, date format, extension and
//! trigger, checked once when the task starts so a bad entry is reported before any rotation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use singularity_common::config::{
    ExecutorConfig, LogrotateAdditionalFile, check_rotation_dateformat, parse_logrotate_size,
};
use singularity_common::records::{LogrotateFrequency, SingularityTaskExecutorData};

use super::AdditionalFileError;

/// When a file is rotated while the task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Once the file holds at least this many bytes (`logrotateSizeOverride`), checked on
    /// every tick.
    Size(u64),
    /// At each clock boundary of the schedule (`logrotateFrequencyOverride`, else the task's
    /// frequency).
    Every(LogrotateFrequency),
}

/// One `logrotateAdditionalFiles` entry, ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalFile {
    /// The `filename` as configured, relative to the task directory (may be a glob).
    pub filename: String,
    /// `<taskDir>/<filename>`: the glob expanded on every tick (the task directory's own
    /// characters escaped).
    pub pattern: String,
    /// `<taskDir>/<filename>` as a path: the file itself when `filename` is no glob.
    pub path: PathBuf,
    /// The task directory, which every file must resolve inside.
    pub task_directory: PathBuf,
    /// Date format of rotated names, without a leading `-`.
    pub dateformat: String,
    /// Extension kept after the date in rotated names.
    pub extension: Option<String>,
    /// When the file rotates.
    pub trigger: Trigger,
    /// The cleanup deletes the live file(s) once the task is done.
    pub delete_in_executor_cleanup: bool,
}

impl AdditionalFile {
    /// Normalises the `index`th entry (0-based) as Java's executor reads it: the file's
    /// `dateformat`, else `extras_dateformat`, a leading `-` dropped; the file's `extension`,
    /// else the filename's own; a size override wins over any schedule.
    pub fn from_config(
        index: usize,
        entry: &LogrotateAdditionalFile,
        task_directory: &Path,
        extras_dateformat: &str,
        task_frequency: LogrotateFrequency,
    ) -> Result<Self, AdditionalFileError> {
        let field = |name: &str| format!("logrotateAdditionalFiles[{index}].{name}");
        let filename = entry.filename.trim();
        if filename.is_empty() {
            return Err(AdditionalFileError::Invalid {
                field: field("filename"),
                value: entry.filename.clone(),
                reason: "must not be empty".to_owned(),
            });
        }
        if Path::new(filename).is_absolute() || Path::new(filename).components().any(is_parent) {
            return Err(AdditionalFileError::Invalid {
                field: field("filename"),
                value: entry.filename.clone(),
                reason: "must be relative to the task directory, without `..`".to_owned(),
            });
        }
        let path = task_directory.join(filename);
        let pattern = Path::new(&glob::Pattern::escape(&task_directory.to_string_lossy()))
            .join(filename)
            .to_string_lossy()
            .into_owned();
        glob::Pattern::new(&pattern).map_err(|error| AdditionalFileError::Invalid {
            field: field("filename"),
            value: entry.filename.clone(),
            reason: format!("not a valid glob: {error}"),
        })?;

        let (dateformat_field, configured) = match &entry.dateformat {
            Some(own) => (field("dateformat"), own.as_str()),
            None => ("logrotateExtrasDateformat".to_owned(), extras_dateformat),
        };
        let dateformat = configured
            .strip_prefix('-')
            .unwrap_or(configured)
            .to_owned();
        check_rotation_dateformat(&dateformat).map_err(|reason| AdditionalFileError::Invalid {
            field: dateformat_field,
            value: configured.to_owned(),
            reason,
        })?;

        let extension = match &entry.extension {
            Some(own) if !own.is_empty() => {
                check_name_part(own).map_err(|reason| AdditionalFileError::Invalid {
                    field: field("extension"),
                    value: own.clone(),
                    reason,
                })?;
                Some(own.clone())
            }
            _ => filename_extension(filename),
        };

        let trigger = match entry.logrotate_size_override.as_deref().map(str::trim) {
            Some(size) if !size.is_empty() => {
                Trigger::Size(parse_logrotate_size(size).map_err(|reason| {
                    AdditionalFileError::Invalid {
                        field: field("logrotateSizeOverride"),
                        value: size.to_owned(),
                        reason,
                    }
                })?)
            }
            _ => Trigger::Every(entry.logrotate_frequency_override.unwrap_or(task_frequency)),
        };

        Ok(AdditionalFile {
            filename: filename.to_owned(),
            pattern,
            path,
            task_directory: task_directory.to_path_buf(),
            dateformat,
            extension,
            trigger,
            delete_in_executor_cleanup: entry.delete_in_executor_cleanup,
        })
    }

    /// Whether `filename` is a glob rather than one file.
    pub fn is_glob(&self) -> bool {
        self.filename.contains(['*', '?', '['])
    }

    /// The live files the entry names now: regular files matching the glob, in name order,
    /// without rotated segments of other matches (a glob such as `logs/*.log` also matches
    /// `logs/access.log-20221118.log`), without the segments in `produced`, and without
    /// compressed files. `*` does not match `/` or a leading `.`, as in logrotate.
    pub fn live_files(&self, produced: &HashSet<PathBuf>) -> Vec<PathBuf> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let Ok(paths) = glob::glob_with(&self.pattern, options) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|path| std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_file()))
            .filter(|path| !produced.contains(path))
            .filter(|path| !is_compressed(path) && !is_segment_of_sibling(path))
            .collect();
        files.sort();
        files
    }
}

/// Every entry of a task, in configuration order.
///
/// # Errors
/// The first entry that cannot be used, naming its field and value.
pub fn from_executor(
    task_directory: &Path,
    config: &ExecutorConfig,
    data: &SingularityTaskExecutorData,
) -> Result<Vec<AdditionalFile>, AdditionalFileError> {
    let frequency = data
        .executor_data
        .logrotate_frequency
        .unwrap_or(config.logrotate_frequency);
    config
        .logrotate_additional_files
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            AdditionalFile::from_config(
                index,
                entry,
                task_directory,
                &config.logrotate_extras_dateformat,
                frequency,
            )
        })
        .collect()
}

fn is_parent(component: std::path::Component<'_>) -> bool {
    matches!(component, std::path::Component::ParentDir)
}

/// The filename's extension as Java's executor takes it (after the last `.` of the last path
/// element), unless that is empty or part of a glob.
fn filename_extension(filename: &str) -> Option<String> {
    let name = filename.rsplit('/').next().unwrap_or(filename);
    let (_, extension) = name.rsplit_once('.')?;
    if extension.is_empty() || extension.contains(['*', '?', '[', ']']) {
        return None;
    }
    Some(extension.to_owned())
}

fn check_name_part(part: &str) -> Result<(), String> {
    if part.contains('/') || part.contains('\0') {
        return Err("must not contain `/`".to_owned());
    }
    Ok(())
}

/// Suffixes of compressed logs: never rotated again.
const COMPRESSED_SUFFIXES: [&str; 6] = [".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z"];

pub(super) fn is_compressed(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    COMPRESSED_SUFFIXES
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// `<dir>/<L>-<digit>…` where `<dir>/<L>` is a regular file: a rotated segment of `L`.
fn is_segment_of_sibling(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let name = name.to_string_lossy();
    name.match_indices('-').any(|(at, _)| {
        at > 0
            && name[at + 1..].starts_with(|c: char| c.is_ascii_digit())
            && std::fs::symlink_metadata(dir.join(&name[..at])).is_ok_and(|m| m.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(filename: &str) -> LogrotateAdditionalFile {
        LogrotateAdditionalFile::named(filename)
    }

    fn normalise(entry: &LogrotateAdditionalFile) -> Result<AdditionalFile, AdditionalFileError> {
        AdditionalFile::from_config(
            2,
            entry,
            Path::new("/tasks/t1"),
            "%Y%m%d",
            LogrotateFrequency::Daily,
        )
    }

    #[test]
    fn a_plain_name_takes_the_defaults_and_its_own_extension() {
        let file = normalise(&entry("logs/access.log")).expect("valid");
        assert_eq!(file.pattern, "/tasks/t1/logs/access.log");
        assert_eq!(file.path, Path::new("/tasks/t1/logs/access.log"));
        assert_eq!(file.dateformat, "%Y%m%d");
        assert_eq!(file.extension.as_deref(), Some("log"));
        assert_eq!(file.trigger, Trigger::Every(LogrotateFrequency::Daily));
        assert!(!file.delete_in_executor_cleanup);
    }

    #[test]
    fn the_object_form_overrides_each_default() {
        let mut e = entry("logs/gc.out");
        e.extension = Some("txt".to_owned());
        e.dateformat = Some("-%Y-%m-%d-%s".to_owned());
        e.logrotate_frequency_override = Some(LogrotateFrequency::Hourly);
        e.delete_in_executor_cleanup = true;
        let file = normalise(&e).expect("valid");
        assert_eq!(file.dateformat, "%Y-%m-%d-%s");
        assert_eq!(file.extension.as_deref(), Some("txt"));
        assert_eq!(file.trigger, Trigger::Every(LogrotateFrequency::Hourly));
        assert!(file.delete_in_executor_cleanup);
    }

    #[test]
    fn a_size_override_wins_over_the_schedule() {
        let mut e = entry("logs/big.log");
        e.logrotate_frequency_override = Some(LogrotateFrequency::Hourly);
        e.logrotate_size_override = Some("10M".to_owned());
        assert_eq!(
            normalise(&e).expect("valid").trigger,
            Trigger::Size(10 << 20)
        );
        e.logrotate_size_override = Some(String::new());
        assert_eq!(
            normalise(&e).expect("valid").trigger,
            Trigger::Every(LogrotateFrequency::Hourly)
        );
    }

    #[test]
    fn the_extras_dateformat_loses_its_leading_dash() {
        let file = AdditionalFile::from_config(
            0,
            &entry("a.log"),
            Path::new("/t"),
            "-%Y%m%d%H",
            LogrotateFrequency::Daily,
        )
        .expect("valid");
        assert_eq!(file.dateformat, "%Y%m%d%H");
    }

    #[test]
    fn extensions_come_from_the_last_element_and_never_from_a_glob() {
        assert_eq!(
            filename_extension("logs/access.log").as_deref(),
            Some("log")
        );
        assert_eq!(filename_extension("logs/*.log").as_deref(), Some("log"));
        assert_eq!(filename_extension("logs/access.*"), None);
        assert_eq!(filename_extension("logs.d/access"), None);
        assert_eq!(filename_extension("logs/access."), None);
    }

    #[test]
    fn bad_entries_name_their_field_and_value() {
        let mut e = entry("logs/a.log");
        e.logrotate_size_override = Some("ten".to_owned());
        let message = normalise(&e).expect_err("bad size").to_string();
        assert_eq!(
            message,
            "logrotateAdditionalFiles[2].logrotateSizeOverride = \"ten\": expected a size such \
             as 10M, 500k, 1G or a byte count"
        );

        let mut e = entry("logs/a.log");
        e.dateformat = Some("%Y/%m".to_owned());
        let message = normalise(&e).expect_err("slash").to_string();
        assert!(
            message.starts_with("logrotateAdditionalFiles[2].dateformat = \"%Y/%m\""),
            "{message}"
        );

        let mut e = entry("logs/a.log");
        e.dateformat = Some("%Q".to_owned());
        assert!(normalise(&e).is_err());

        for bad in ["", "/var/log/a.log", "../a.log", "logs/../../a.log"] {
            let message = normalise(&entry(bad)).expect_err(bad).to_string();
            assert!(
                message.starts_with("logrotateAdditionalFiles[2].filename"),
                "{message}"
            );
        }

        let message = AdditionalFile::from_config(
            0,
            &entry("a.log"),
            Path::new("/t"),
            "%Y%",
            LogrotateFrequency::Daily,
        )
        .expect_err("bad extras format")
        .to_string();
        assert!(
            message.starts_with("logrotateExtrasDateformat = \"%Y%\""),
            "{message}"
        );
    }

    #[test]
    fn the_task_directory_is_never_read_as_a_glob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let task = dir.path().join("task[1]*");
        std::fs::create_dir(&task).expect("mkdir");
        std::fs::write(task.join("a.log"), "x\n").expect("write");
        let file = AdditionalFile::from_config(
            0,
            &entry("*.log"),
            &task,
            "%Y%m%d",
            LogrotateFrequency::Daily,
        )
        .expect("valid");
        assert!(file.is_glob());
        assert_eq!(file.live_files(&HashSet::new()), [task.join("a.log")]);
    }

    #[test]
    fn globs_match_live_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).expect("mkdir");
        for name in [
            "access.log",
            "error.log",
            "access.log-20221118.log",
            "error.log-1668785678.log.gz",
            "notes.txt",
            ".hidden.log",
            "app.log-debug.log",
            "app.log",
        ] {
            std::fs::write(logs.join(name), "x\n").expect("write");
        }
        std::fs::create_dir(logs.join("dir.log")).expect("mkdir");
        let file = AdditionalFile::from_config(
            0,
            &entry("logs/*.log"),
            dir.path(),
            "%Y%m%d",
            LogrotateFrequency::Daily,
        )
        .expect("valid");
        let mut produced = HashSet::new();
        produced.insert(logs.join("error.log"));
        let names: Vec<String> = file
            .live_files(&produced)
            .iter()
            .map(|path| {
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["access.log", "app.log", "app.log-debug.log"]);
    }
}
