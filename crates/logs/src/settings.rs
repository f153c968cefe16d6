//! Everything the log pipeline of one task needs to know, from the executor's configuration
//! and the task's executor data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};
use singularity_common::config::{ExecutorConfig, LogrotateCompressionSettings};
use singularity_common::records::{LogrotateFrequency, SingularityTaskExecutorData};

use crate::LogError;

/// A MiB, the unit of `maxServiceLogSizeMb` and `maxRotatedLogsNotUploadedMb`.
const MIB: u64 = 1024 * 1024;

/// The compressor of rotated segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionKind {
    /// gzip (flate2), `.gz`.
    Gzip,
    /// bzip2, `.bz2`.
    Bzip2,
}

/// How rotated segments are compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// The format.
    pub kind: CompressionKind,
    /// Level, 1 (fastest) to 9 (smallest).
    pub level: u32,
    /// Appended to the segment's name, with its dot (`.gz`); always matched by the upload
    /// glob's `.[gb]z*`.
    pub extension: String,
}

impl Default for Compression {
    /// gzip at level 6, as `gzip` and logrotate's default `compressoptions` (`-6`) do.
    fn default() -> Self {
        Compression {
            kind: CompressionKind::Gzip,
            level: 6,
            extension: ".gz".to_owned(),
        }
    }
}

impl Compression {
    /// The compression `logrotateCompressionSettings` describes: `compressCmd` naming gzip
    /// (or pigz) or bzip2 (or pbzip2), `compressOptions` a level (`-1` … `-9`, other flags
    /// are refused), `compressExt` an extension the upload glob matches. `uncompressCmd` is
    /// not needed in-process.
    pub fn from_settings(settings: &LogrotateCompressionSettings) -> Result<Self, LogError> {
        let mut compression = Compression::default();
        if let Some(cmd) = settings.compress_cmd.as_deref().filter(|c| !c.is_empty()) {
            let program = Path::new(cmd.split_whitespace().next().unwrap_or(cmd))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            compression.kind = match program.as_str() {
                "gzip" | "pigz" => CompressionKind::Gzip,
                "bzip2" | "pbzip2" => CompressionKind::Bzip2,
                _ => {
                    return Err(LogError::Setting {
                        field: "logrotateCompressionSettings.compressCmd",
                        value: cmd.to_owned(),
                        reason: "only gzip (or pigz) and bzip2 (or pbzip2) are supported: \
                                 compression runs in-process",
                    });
                }
            };
            if compression.kind == CompressionKind::Bzip2 {
                compression.level = 9;
                compression.extension = ".bz2".to_owned();
            }
        }
        if let Some(options) = settings.compress_options.as_deref() {
            for option in options.split_whitespace() {
                compression.level = parse_level(option).ok_or_else(|| LogError::Setting {
                    field: "logrotateCompressionSettings.compressOptions",
                    value: options.to_owned(),
                    reason: "only a compression level (-1 to -9) is understood",
                })?;
            }
        }
        if let Some(ext) = settings.compress_ext.as_deref().filter(|e| !e.is_empty()) {
            let ext = if ext.starts_with('.') {
                ext.to_owned()
            } else {
                format!(".{ext}")
            };
            let matches_glob = ext.len() >= 3
                && matches!(ext.as_bytes()[1], b'g' | b'b')
                && ext.as_bytes()[2] == b'z'
                && !ext.contains('/');
            if !matches_glob {
                return Err(LogError::Setting {
                    field: "logrotateCompressionSettings.compressExt",
                    value: ext,
                    reason: "the upload glob `*.[gb]z*` would not match it; use e.g. .gz or .bz2",
                });
            }
            compression.extension = ext;
        }
        Ok(compression)
    }
}

fn parse_level(option: &str) -> Option<u32> {
    let digits = option.strip_prefix('-')?;
    match digits.parse::<u32>() {
        Ok(level @ 1..=9) => Some(level),
        _ => None,
    }
}

/// What may be deleted of the rotated segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Upload metadata covers the rotated files: each is kept until the uploader takes it,
    /// unless the rotated-but-not-uploaded bytes exceed the budget, then oldest first go.
    Uploaded {
        /// `maxRotatedLogsNotUploadedMb` in bytes; 0 means unbounded.
        budget_bytes: u64,
    },
    /// No upload: keep the newest `count` and none older than `max_age` (`logrotateCount`,
    /// `logrotateMaxageDays`, as logrotate's `rotate` and `maxage`).
    Local {
        /// Rotated files kept.
        count: u32,
        /// Oldest rotated file kept.
        max_age: Duration,
    },
}

/// The log pipeline of one task: names, triggers, compression, retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The task directory.
    pub task_dir: PathBuf,
    /// The service log's file name (`serviceLog`, default `service.log`).
    pub service_log_name: String,
    /// `<taskDir>/<serviceLog>`.
    pub service_log: PathBuf,
    /// `<taskDir>/<serviceFinishedTailLog>`.
    pub tail_file: PathBuf,
    /// `<taskDir>/<logrotateToDirectory>`: where rotated segments go.
    pub logs_dir: PathBuf,
    /// Time trigger: `executorData.logrotateFrequency`, else `logrotateFrequency`.
    pub frequency: LogrotateFrequency,
    /// strftime format of the date in rotated names (`logrotateDateformat`, leading `-`
    /// stripped).
    pub dateformat: String,
    /// Compressor of rotated segments.
    pub compression: Compression,
    /// Size trigger (`maxServiceLogSizeMb` in bytes), checked as bytes are written.
    pub max_segment_bytes: Option<u64>,
    /// Lines kept for the tail file (`tailLogLinesToSave`); 0 writes no tail file.
    pub tail_lines: usize,
    /// Set `user.logstart` / `user.logend` on rotated files (`useFileAttributes`).
    pub use_file_attributes: bool,
    /// False with `executorData.skipLogrotateAndCompress`: service.log is never rotated and
    /// is uploaded raw at the end.
    pub rotate: bool,
    /// What may be deleted.
    pub retention: Retention,
    /// File name globs (basenames) of the logs other modules rotate into `logs_dir`
    /// (`logrotateAdditionalFiles`); recovery compresses their uncompressed segments too.
    pub additional_names: Vec<String>,
}

impl LogSettings {
    /// The settings of the task with `data` in `task_dir` under `config`.
    ///
    /// Refuses (naming the key and value) a `logrotateDateformat` that is not a valid strftime
    /// format and compression settings the pipeline cannot honour.
    pub fn new(
        config: &ExecutorConfig,
        data: &SingularityTaskExecutorData,
        task_dir: &Path,
    ) -> Result<Self, LogError> {
        let dateformat = config
            .logrotate_dateformat
            .strip_prefix('-')
            .unwrap_or(&config.logrotate_dateformat)
            .to_owned();
        if dateformat.is_empty()
            || StrftimeItems::new(&dateformat).any(|item| matches!(item, Item::Error))
        {
            return Err(LogError::Setting {
                field: "logrotateDateformat",
                value: config.logrotate_dateformat.clone(),
                reason: "not a strftime format",
            });
        }
        let service_log_name = data.effective_service_log().to_owned();
        let uploaded = [
            data.default_s3_bucket.as_deref(),
            config.s3_uploader_bucket.as_deref(),
        ]
        .into_iter()
        .flatten()
        .chain(
            data.s3_uploader_additional_files
                .iter()
                .flatten()
                .filter_map(|f| f.s3_uploader_bucket.as_deref()),
        )
        .any(|bucket| !bucket.is_empty());
        let retention = if uploaded {
            Retention::Uploaded {
                budget_bytes: config.max_rotated_logs_not_uploaded_mb.saturating_mul(MIB),
            }
        } else {
            Retention::Local {
                count: config.logrotate_count,
                max_age: Duration::from_secs(u64::from(config.logrotate_maxage_days) * 86_400),
            }
        };
        Ok(LogSettings {
            task_dir: task_dir.to_path_buf(),
            service_log: task_dir.join(&service_log_name),
            tail_file: task_dir.join(data.effective_service_finished_tail_log()),
            logs_dir: task_dir.join(&config.logrotate_to_directory),
            service_log_name,
            frequency: data
                .executor_data
                .logrotate_frequency
                .unwrap_or(config.logrotate_frequency),
            dateformat,
            compression: Compression::from_settings(&config.logrotate_compression_settings)?,
            max_segment_bytes: config
                .max_service_log_size_mb
                .filter(|mb| *mb > 0)
                .map(|mb| mb.saturating_mul(MIB)),
            tail_lines: usize::try_from(config.tail_log_lines_to_save.max(0)).unwrap_or(0),
            use_file_attributes: config.use_file_attributes,
            rotate: !data
                .executor_data
                .skip_logrotate_and_compress
                .unwrap_or(false),
            retention,
            additional_names: config
                .logrotate_additional_files
                .iter()
                .filter_map(|file| {
                    Path::new(&file.filename)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> SingularityTaskExecutorData {
        serde_json::from_str(json).expect("executor data")
    }

    #[test]
    fn defaults_follow_singularity() {
        let config = ExecutorConfig::default();
        let s = LogSettings::new(&config, &data(r#"{"cmd":"x"}"#), Path::new("/t")).expect("ok");
        assert_eq!(s.service_log, Path::new("/t/service.log"));
        assert_eq!(s.tail_file, Path::new("/t/tail_of_finished_service.log"));
        assert_eq!(s.logs_dir, Path::new("/t/logs"));
        assert_eq!(s.dateformat, "%Y%m%d%s");
        assert_eq!(s.frequency, LogrotateFrequency::Daily);
        assert_eq!(s.compression, Compression::default());
        assert_eq!(s.tail_lines, 2_500);
        assert!(s.rotate);
        assert_eq!(
            s.retention,
            Retention::Local {
                count: 20,
                max_age: Duration::from_secs(7 * 86_400)
            }
        );
    }

    #[test]
    fn the_deploy_overrides_frequency_and_skips_rotation() {
        let config = ExecutorConfig {
            max_service_log_size_mb: Some(3),
            logrotate_dateformat: "-%Y-%m-%d".into(),
            ..ExecutorConfig::default()
        };
        let s = LogSettings::new(
            &config,
            &data(
                r#"{"cmd":"x","logrotateFrequency":"EVERY_MINUTE","skipLogrotateAndCompress":true,
                    "defaultS3Bucket":"b"}"#,
            ),
            Path::new("/t"),
        )
        .expect("ok");
        assert_eq!(s.frequency, LogrotateFrequency::EveryMinute);
        assert!(!s.rotate);
        assert_eq!(s.max_segment_bytes, Some(3 * MIB));
        assert_eq!(s.dateformat, "%Y-%m-%d");
        assert_eq!(
            s.retention,
            Retention::Uploaded {
                budget_bytes: config.max_rotated_logs_not_uploaded_mb * MIB
            }
        );
    }

    #[test]
    fn compression_settings_map_to_in_process_compressors() {
        let bz = Compression::from_settings(&LogrotateCompressionSettings {
            compress_cmd: Some("/bin/bzip2".into()),
            compress_options: Some("-5".into()),
            ..Default::default()
        })
        .expect("bzip2");
        assert_eq!(
            bz,
            Compression {
                kind: CompressionKind::Bzip2,
                level: 5,
                extension: ".bz2".into()
            }
        );
        let err = Compression::from_settings(&LogrotateCompressionSettings {
            compress_cmd: Some("xz".into()),
            ..Default::default()
        })
        .expect_err("xz");
        assert!(err.to_string().contains("compressCmd = xz"), "{err}");
        let err = Compression::from_settings(&LogrotateCompressionSettings {
            compress_ext: Some("xz".into()),
            ..Default::default()
        })
        .expect_err("ext");
        assert!(err.to_string().contains("compressExt = .xz"), "{err}");
        let err = Compression::from_settings(&LogrotateCompressionSettings {
            compress_options: Some("--rsyncable".into()),
            ..Default::default()
        })
        .expect_err("options");
        assert!(err.to_string().contains("--rsyncable"), "{err}");
    }

    #[test]
    fn a_bad_dateformat_is_refused_by_name() {
        let config = ExecutorConfig {
            logrotate_dateformat: "%Q".into(),
            ..ExecutorConfig::default()
        };
        let err = LogSettings::new(&config, &data(r#"{"cmd":"x"}"#), Path::new("/t"))
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "logrotateDateformat = %Q: not a strftime format"
        );
    }
}
