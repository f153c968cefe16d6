use std::io;
use std::path::PathBuf;

pub use crate::extract::PathRefusal;

/// Everything that can go wrong while verifying, extracting or placing an artifact.
///
/// Every variant names the file, directory or archive entry concerned, so the message alone
/// is enough to act on (it ends up in a task's failure message and in the downloader's 500).
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The extraction target must exist beforehand, as it had to for the Java executor's `tar -C`.
    #[error("target directory {path} does not exist or is not a directory")]
    TargetDirMissing {
        /// The file or directory concerned.
        path: PathBuf,
    },

    /// A filesystem operation failed; `op` says which one.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The archive could not be read: corrupt or truncated compression, bad tar headers.
    #[error("cannot read archive {archive}: {source}")]
    ReadArchive {
        /// The archive being extracted.
        archive: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An entry would write, or point, outside the target directory.
    #[error("archive {archive}: refusing entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The archive being extracted.
        archive: PathBuf,
        /// The entry's path inside the archive.
        entry: String,
        /// Why it is refused.
        reason: UnsafeReason,
    },

    /// An entry of a kind this crate never creates (device, fifo, unknown type).
    #[error("archive {archive}: refusing entry {entry:?}: {kind} entries are not extracted")]
    UnsupportedEntry {
        /// The archive being extracted.
        archive: PathBuf,
        /// The entry's path inside the archive.
        entry: String,
        /// The entry's type.
        kind: &'static str,
    },

    /// An entry cannot be placed because of what is already at its path.
    #[error("archive {archive}: entry {entry:?} conflicts with {path}: {reason}")]
    Conflict {
        /// The archive being extracted.
        archive: PathBuf,
        /// The entry's path inside the archive.
        entry: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// What is in the way.
        reason: &'static str,
    },

    /// The extracted content grew past [`ExtractLimits::max_total_bytes`](crate::ExtractLimits).
    #[error("archive {archive} expands past the limit of {limit} bytes (at entry {entry:?})")]
    TooLarge {
        /// The archive being extracted.
        archive: PathBuf,
        /// The entry's path inside the archive.
        entry: String,
        /// The limit that was passed.
        limit: u64,
    },

    /// The archive has more than [`ExtractLimits::max_entries`](crate::ExtractLimits) entries.
    #[error("archive {archive} has more than {limit} entries")]
    TooManyEntries {
        /// The archive being extracted.
        archive: PathBuf,
        /// The limit that was passed.
        limit: u64,
    },

    /// Header data (long names, pax records, sparse maps) between two entries is implausibly large.
    #[error("archive {archive}: more than {limit} bytes of headers before entry {count}")]
    OversizedHeaders {
        /// The archive being extracted.
        archive: PathBuf,
        /// Entries read before the headers.
        count: u64,
        /// The limit that was passed.
        limit: u64,
    },

    /// The archive ended inside an entry's data.
    #[error(
        "archive {archive}: entry {entry:?} is truncated: expected {expected} bytes, read {actual}"
    )]
    Truncated {
        /// The archive being extracted.
        archive: PathBuf,
        /// The entry's path inside the archive.
        entry: String,
        /// What was expected.
        expected: u64,
        /// What was found.
        actual: u64,
    },

    /// A file name that must be a plain name (or a relative path) is not one.
    #[error("invalid artifact file name {filename:?}: {reason}")]
    InvalidFilename {
        /// The file name as given.
        filename: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The destination exists and is not a regular file, so it cannot hold the artifact.
    #[error("{path} already exists and is not a regular file")]
    NotAFile {
        /// The file or directory concerned.
        path: PathBuf,
    },

    /// The destination exists with different content; it is left untouched.
    #[error("{path} already exists with different content (expected {expected}, found {actual})")]
    ExistingDiffers {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was expected.
        expected: String,
        /// What was found.
        actual: String,
    },

    /// An embedded artifact's destination exists already (it is created exclusively).
    #[error("{path} already exists")]
    AlreadyExists {
        /// The file or directory concerned.
        path: PathBuf,
    },

    /// Content does not hash to the expected md5.
    #[error("md5 mismatch for {path}: expected {expected}, got {actual}")]
    Md5Mismatch {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was expected.
        expected: String,
        /// What was found.
        actual: String,
    },

    /// Content does not have the expected length.
    #[error("size mismatch for {path}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was expected.
        expected: u64,
        /// What was found.
        actual: u64,
    },
}

impl ArtifactError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArtifactError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Why an archive entry is refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeReason {
    /// The entry's own path.
    #[error("{0}")]
    Path(PathRefusal),
    /// A non-directory entry for the target directory itself.
    #[error("names the target directory itself")]
    TargetItself,
    /// A symlink entry without a target.
    #[error("symbolic link without a target")]
    SymlinkWithoutTarget,
    /// A hard link entry without a target.
    #[error("hard link without a target")]
    HardLinkWithoutTarget,
    /// The entry's path goes through a symlink from the archive.
    #[error("path goes through the symbolic link {}", link.display())]
    ThroughSymlink {
        /// The symlink, relative to the target directory.
        link: PathBuf,
    },
    /// A hard link's target path.
    #[error("hard link target {0}")]
    HardLinkTarget(PathRefusal),
    /// A hard link to anything but a regular file extracted earlier.
    #[error(
        "hard link target {} is not a regular file extracted earlier from this archive",
        target.display()
    )]
    HardLinkNotStaged {
        /// The link's target as written in the archive.
        target: PathBuf,
    },
    /// A symlink whose target leaves the target directory.
    #[error("symbolic link target {} {problem}", target.display())]
    SymlinkTarget {
        /// The link's target as written in the archive.
        target: PathBuf,
        /// What is wrong with it.
        problem: LinkProblem,
    },
}

/// What is wrong with a symbolic link's target.
#[derive(Debug, thiserror::Error)]
pub enum LinkProblem {
    /// It is empty.
    #[error("is empty")]
    Empty,
    /// Its path.
    #[error("{0}")]
    Path(PathRefusal),
    /// Resolved step by step, it leaves the target directory.
    #[error("resolves outside the target directory")]
    Outside,
    /// It goes through more symlinks than are followed.
    #[error("goes through too many symbolic links")]
    TooManyHops,
    /// It goes through another link whose target is refused.
    #[error("goes through {}, whose target {problem}", link.display())]
    Through {
        /// The other link's target.
        link: PathBuf,
        /// What is wrong with it.
        problem: PathRefusal,
    },
}
