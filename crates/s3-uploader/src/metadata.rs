//! Upload metadata (`*.s3.json`): reading, checking, and the rules that decide when an
//! uploader is done.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{Glob, GlobBuilder, GlobMatcher};
use singularity_common::fsio::{RecordError, read_json_opt};
use singularity_common::records::{S3UploadMetadata, UploaderType};

/// What identifies an uploader: `(directory, fileGlob)`.
pub type UploaderId = (PathBuf, String);

/// A metadata file the uploader will not act on, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetadataProblem {
    /// Not JSON, or a required field is missing or has the wrong type.
    #[error("{source}")]
    Unreadable {
        /// The parser's error.
        source: Arc<serde_json::Error>,
    },
    /// The record could not be read as JSON for another reason.
    #[error("{source}")]
    Unusable {
        /// Why.
        source: Arc<RecordError>,
    },
    /// A required field is empty.
    #[error("{0} is empty")]
    EmptyField(&'static str),
    /// A glob does not compile.
    #[error("{field} {glob:?} is not a valid glob: {kind}")]
    BadGlob {
        /// `fileGlob` or `onFinishGlob`.
        field: &'static str,
        /// The glob.
        glob: String,
        /// Why.
        kind: globset::ErrorKind,
    },
    /// `directory` is relative: it would be resolved against the daemon's working directory.
    #[error("directory {0:?} is not an absolute path without NUL bytes")]
    RelativeDirectory(PathBuf),
    /// A glob holds `/`: globs match file names, so it could never match, or was meant to
    /// reach outside `directory`.
    #[error("{field} {glob:?} contains '/': globs match file names within directory")]
    GlobWithSlash {
        /// `fileGlob` or `onFinishGlob`.
        field: &'static str,
        /// The glob.
        glob: String,
    },
    /// The metadata file is a FIFO, socket, device or directory: never read (it could block).
    #[error("not a regular file")]
    NotRegular,
    /// The metadata file is larger than any real one.
    #[error("{len} bytes, more than the {MAX_METADATA_BYTES} a metadata file may have")]
    TooLarge {
        /// Its size.
        len: u64,
    },
    /// `uploaderType: GCS`, which this uploader does not implement.
    #[error(
        "uploaderType GCS is not supported by this uploader; its files are left in place for another uploader"
    )]
    Gcs,
}

/// Problems are equal when they say the same: parser errors compare by their message.
impl PartialEq for MetadataProblem {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Unreadable { source: a }, Self::Unreadable { source: b }) => {
                a.to_string() == b.to_string()
            }
            (Self::Unusable { source: a }, Self::Unusable { source: b }) => {
                a.to_string() == b.to_string()
            }
            (Self::EmptyField(a), Self::EmptyField(b)) => a == b,
            (Self::RelativeDirectory(a), Self::RelativeDirectory(b)) => a == b,
            (
                Self::GlobWithSlash {
                    field: f1,
                    glob: g1,
                },
                Self::GlobWithSlash {
                    field: f2,
                    glob: g2,
                },
            ) => f1 == f2 && g1 == g2,
            (Self::NotRegular, Self::NotRegular) => true,
            (Self::TooLarge { len: a }, Self::TooLarge { len: b }) => a == b,
            (
                Self::BadGlob {
                    field: f1,
                    glob: g1,
                    kind: k1,
                },
                Self::BadGlob {
                    field: f2,
                    glob: g2,
                    kind: k2,
                },
            ) => f1 == f2 && g1 == g2 && k1 == k2,
            (Self::Gcs, Self::Gcs) => true,
            _ => false,
        }
    }
}

impl Eq for MetadataProblem {}

/// Size, modification time and inode of a file: a change of any means "read it again".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number.
    pub ino: u64,
}

impl FileStamp {
    /// The stamp of `path`, following no symlink; `None` if it cannot be read.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = fs::symlink_metadata(path)?;
        Ok(Self {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ino: meta.ino(),
        })
    }
}

/// What reading a metadata file gave.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Not there, or empty (the Java executor writes in place: not written yet).
    Absent,
    /// A usable uploader.
    Spec(Box<UploaderSpec>),
    /// Not usable.
    Rejected(MetadataProblem),
}

/// Metadata files are a few hundred bytes; anything past this is refused unread.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;

/// Reads and checks the metadata file at `path`. Only a regular file (or a symlink to one) of
/// at most [`MAX_METADATA_BYTES`] is read.
pub fn read(path: &Path) -> Result<ReadOutcome, std::io::Error> {
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadOutcome::Absent),
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_file() => {
            return Ok(ReadOutcome::Rejected(MetadataProblem::NotRegular));
        }
        Ok(meta) if meta.len() > MAX_METADATA_BYTES => {
            return Ok(ReadOutcome::Rejected(MetadataProblem::TooLarge {
                len: meta.len(),
            }));
        }
        Ok(_) => {}
    }
    match read_json_opt::<S3UploadMetadata>(path) {
        Ok(None) => Ok(ReadOutcome::Absent),
        Ok(Some(metadata)) => Ok(match UploaderSpec::compile(metadata) {
            Ok(spec) => ReadOutcome::Spec(Box::new(spec)),
            Err(problem) => ReadOutcome::Rejected(problem),
        }),
        Err(RecordError::Parse { source, .. }) => {
            Ok(ReadOutcome::Rejected(MetadataProblem::Unreadable {
                source: Arc::new(source),
            }))
        }
        Err(RecordError::Read { source, .. }) => Err(source),
        Err(other) => Ok(ReadOutcome::Rejected(MetadataProblem::Unusable {
            source: Arc::new(other),
        })),
    }
}

/// Compiles a Java `glob:` pattern matched against base names: `*`, `?`, `[..]`, `[!..]`,
/// `{a,b}`, and `\` escapes.
pub fn compile_glob(field: &'static str, glob: &str) -> Result<GlobMatcher, MetadataProblem> {
    let built: Result<Glob, globset::Error> = GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build();
    built
        .map(|g| g.compile_matcher())
        .map_err(|e| MetadataProblem::BadGlob {
            field,
            glob: glob.to_owned(),
            kind: e.kind().clone(),
        })
}

/// A checked metadata file, its globs compiled.
#[derive(Debug, Clone)]
pub struct UploaderSpec {
    /// The metadata as read.
    pub metadata: S3UploadMetadata,
    glob: GlobMatcher,
    on_finish: Option<GlobMatcher>,
}

impl UploaderSpec {
    /// Checks `metadata` and compiles its globs.
    pub fn compile(metadata: S3UploadMetadata) -> Result<Self, MetadataProblem> {
        if metadata.uploader_type == UploaderType::Gcs {
            return Err(MetadataProblem::Gcs);
        }
        for (field, value) in [
            ("directory", metadata.directory.as_os_str().is_empty()),
            ("fileGlob", metadata.file_glob.is_empty()),
            ("s3Bucket", metadata.s3_bucket.is_empty()),
            ("s3KeyFormat", metadata.s3_key_format.is_empty()),
        ] {
            if value {
                return Err(MetadataProblem::EmptyField(field));
            }
        }
        if metadata
            .directory
            .as_os_str()
            .as_encoded_bytes()
            .contains(&0)
        {
            return Err(MetadataProblem::RelativeDirectory(
                metadata.directory.clone(),
            ));
        }
        if !metadata.directory.is_absolute() {
            return Err(MetadataProblem::RelativeDirectory(
                metadata.directory.clone(),
            ));
        }
        for (field, glob) in [
            ("fileGlob", Some(&metadata.file_glob)),
            ("onFinishGlob", metadata.on_finish_glob.as_ref()),
        ] {
            if let Some(glob) = glob.filter(|g| g.contains('/')) {
                return Err(MetadataProblem::GlobWithSlash {
                    field,
                    glob: glob.clone(),
                });
            }
        }
        let glob = compile_glob("fileGlob", &metadata.file_glob)?;
        let on_finish = metadata
            .on_finish_glob
            .as_deref()
            .filter(|g| !g.is_empty())
            .map(|g| compile_glob("onFinishGlob", g))
            .transpose()?;
        Ok(Self {
            metadata,
            glob,
            on_finish,
        })
    }

    /// The uploader's identity.
    pub fn id(&self) -> UploaderId {
        (
            self.metadata.directory.clone(),
            self.metadata.file_glob.clone(),
        )
    }

    /// Whether a file named `name` (a base name) is to be uploaded: `fileGlob` matches, or the
    /// uploader is finished and `onFinishGlob` matches.
    pub fn matches(&self, name: &str, finished: bool) -> bool {
        self.glob.is_match(name)
            || (finished && self.on_finish.as_ref().is_some_and(|g| g.is_match(name)))
    }
}

/// Why an uploader is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The metadata says `finished`.
    Flagged,
    /// Its `pid` no longer exists.
    ProcessGone,
    /// Its metadata file was deleted.
    MetadataDeleted,
    /// No new file for `finishedAfterMillisWithoutNewFile`.
    Expired,
}

impl FinishReason {
    /// For log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flagged => "metadata says finished",
            Self::ProcessGone => "its process is gone",
            Self::MetadataDeleted => "its metadata file was deleted",
            Self::Expired => "no new file for finishedAfterMillisWithoutNewFile",
        }
    }
}

/// Whether an uploader that last had files at `last_had_files_at_ms` has gone without new
/// ones for longer than its `finishedAfterMillisWithoutNewFile` (the configured default when
/// absent; negative: never).
pub fn expired(
    now_ms: i64,
    last_had_files_at_ms: i64,
    finished_after_millis: Option<i64>,
    default_after_millis: i64,
) -> bool {
    let after = finished_after_millis.unwrap_or(default_after_millis);
    after >= 0 && now_ms.saturating_sub(last_had_files_at_ms) > after
}

/// What to do with an uploader once a pass over its directory is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPass {
    /// Keep it: files remain, or it is not done.
    Keep,
    /// It just expired: mark it finished and run one final pass (with `onFinishGlob`).
    FinalPass,
    /// Done: forget it and delete its metadata file.
    Done,
}

/// The decision after a pass that found `found` matching files (files waiting to be
/// retried and files being uploaded included).
pub fn after_pass(found: usize, immediate: bool, finished: bool, expired: bool) -> AfterPass {
    if found > 0 {
        AfterPass::Keep
    } else if immediate || finished {
        AfterPass::Done
    } else if expired {
        AfterPass::FinalPass
    } else {
        AfterPass::Keep
    }
}

/// Whether process `pid` is gone: `kill(pid, 0)` fails with ESRCH. A process we may not
/// signal (EPERM) exists. Non-positive pids name process groups, never one process: they are
/// taken as alive.
pub fn process_gone(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(glob: &str) -> UploaderSpec {
        UploaderSpec::compile(S3UploadMetadata::new("/d", glob, "b", "k")).unwrap()
    }

    #[test]
    fn java_globs_match_base_names() {
        let s = spec("service.log*.[gb]z*");
        assert!(s.matches("service.log-20221118.gz", false));
        assert!(s.matches("service.log.1.bz2", false));
        assert!(!s.matches("service.log", false));
        assert!(!s.matches("other.log.gz", false));
        let s = spec("{a,b}?.log");
        assert!(s.matches("a1.log", false));
        assert!(s.matches("bx.log", false));
        assert!(!s.matches("c1.log", false));
        let s = spec("[!x]*.txt");
        assert!(s.matches("a.txt", false));
        assert!(!s.matches("x.txt", false));
    }

    #[test]
    fn on_finish_glob_matches_only_when_finished() {
        let mut m = S3UploadMetadata::new("/d", "*.gz", "b", "k");
        m.on_finish_glob = Some("service.log".into());
        let s = UploaderSpec::compile(m).unwrap();
        assert!(!s.matches("service.log", false));
        assert!(s.matches("service.log", true));
        assert!(s.matches("x.gz", false));
        assert_eq!(s.id(), (PathBuf::from("/d"), "*.gz".to_owned()));
    }

    #[test]
    fn bad_metadata_is_rejected_with_a_reason() {
        let mut m = S3UploadMetadata::new("/d", "[", "b", "k");
        let err = UploaderSpec::compile(m.clone()).unwrap_err();
        assert!(err.to_string().contains("fileGlob \"[\""), "{err}");
        m.file_glob = "*".into();
        m.s3_bucket = String::new();
        assert_eq!(
            UploaderSpec::compile(m.clone()).unwrap_err(),
            MetadataProblem::EmptyField("s3Bucket")
        );
        m.s3_bucket = "b".into();
        m.uploader_type = UploaderType::Gcs;
        assert_eq!(UploaderSpec::compile(m).unwrap_err(), MetadataProblem::Gcs);
    }

    #[test]
    fn reading_tells_absent_from_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.s3.json");
        fs::write(&path, "").unwrap();
        assert!(matches!(read(&path).unwrap(), ReadOutcome::Absent));
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            read(&path).unwrap(),
            ReadOutcome::Rejected(MetadataProblem::Unreadable { .. })
        ));
        fs::write(
            &path,
            r#"{"directory":"/d","fileGlob":"*","s3KeyFormat":"k"}"#,
        )
        .unwrap();
        match read(&path).unwrap() {
            ReadOutcome::Rejected(MetadataProblem::Unreadable { source }) => {
                let reason = source.to_string();
                assert!(reason.contains("missing field `s3Bucket`"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        fs::write(
            &path,
            r#"{"directory":"/d","fileGlob":"*","s3Bucket":"b","s3KeyFormat":"k","storageClass":"GLACIER"}"#,
        )
        .unwrap();
        match read(&path).unwrap() {
            ReadOutcome::Spec(spec) => {
                assert_eq!(spec.metadata.storage_class.as_deref(), Some("GLACIER"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read(&dir.path().join("missing.s3.json")).unwrap(),
            ReadOutcome::Absent
        ));
    }

    #[test]
    fn expiry_follows_finished_after_millis() {
        // Default applies when the metadata has none; strictly longer than the limit.
        assert!(!expired(1_000, 0, None, 1_000));
        assert!(expired(1_001, 0, None, 1_000));
        // The metadata's own value wins; negative never expires.
        assert!(expired(11, 0, Some(10), 1_000_000));
        assert!(!expired(i64::MAX, 0, Some(-1), 1));
        assert!(expired(1, 0, Some(0), 5));
    }

    #[test]
    fn decisions_after_a_pass() {
        use AfterPass::*;
        // Files left: always kept.
        for (immediate, finished, expired) in [(true, true, true), (false, false, false)] {
            assert_eq!(after_pass(1, immediate, finished, expired), Keep);
        }
        assert_eq!(after_pass(0, true, false, false), Done);
        assert_eq!(after_pass(0, false, true, false), Done);
        assert_eq!(after_pass(0, false, false, true), FinalPass);
        assert_eq!(after_pass(0, false, false, false), Keep);
    }

    #[test]
    fn process_liveness() {
        assert!(!process_gone(i32::try_from(std::process::id()).unwrap()));
        assert!(!process_gone(0));
        assert!(!process_gone(-5));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        child.wait().unwrap();
        assert!(process_gone(pid));
    }
}
