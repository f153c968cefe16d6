//! The artifact cache directory's file protocol, shared by every process writing into it (the
//! downloader and the executor's in-process staging):
//!
//! - A finished artifact has its cache name (`<md5>-<filename>` or `<filename>`, see
//!   `singularity_common::naming::artifact_cache_name`), mode `rw-r--r--`, and appears whole:
//!   it is written to a temp file in the same directory and renamed ([`adopt`]).
//! - Temp files are hidden and end in `.tmp`: `<writer prefix><name>.<random>.tmp`
//!   ([`create_temp`]). Each writer has its own prefix ([`CacheWriter`]) and removes only its
//!   own leftovers.
//! - A file an index does not know may be taken in as an artifact when it is neither hidden
//!   nor a `.tmp` file ([`is_adoptable`]): another writer's file in progress never is.

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempPath};

use crate::ArtifactError;

/// Mode of cached artifacts: `rw-r--r--`.
pub const CACHED_FILE_MODE: u32 = 0o644;

/// Suffix of every temp file in the cache directory.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Who writes a temp file into the cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWriter {
    /// `singularity-s3-downloader`, which owns the directory's index.
    Downloader,
    /// The executor's in-process staging (the fallback when the downloader is not used).
    Executor,
}

impl CacheWriter {
    /// The prefix of this writer's temp files.
    pub const fn temp_prefix(self) -> &'static str {
        match self {
            Self::Downloader => ".singularity-s3-downloader-tmp-",
            Self::Executor => ".singularity-executor-",
        }
    }

    /// Whether `name` is one of this writer's temp files.
    pub fn owns_temp(self, name: &str) -> bool {
        name.starts_with(self.temp_prefix())
    }
}

/// Whether a file of the cache directory an index does not know may be taken in as an
/// artifact: not hidden, not a temp file of any writer.
pub fn is_adoptable(name: &str) -> bool {
    !name.starts_with('.') && !name.ends_with(TEMP_SUFFIX)
}

/// A file operation of the cache protocol failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct CacheFileError {
    /// The operation (`create temporary file in`, `chmod`, `rename to`).
    pub op: &'static str,
    /// The directory or file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl From<CacheFileError> for ArtifactError {
    fn from(error: CacheFileError) -> Self {
        Self::Io {
            op: error.op,
            path: error.path,
            source: error.source,
        }
    }
}

/// A new, empty temp file in `dir` for the artifact to be named `cache_name`, mode
/// `rw-r--r--` whatever the umask, removed when dropped unless [`adopt`]ed first.
pub fn create_temp(
    dir: &Path,
    writer: CacheWriter,
    cache_name: &str,
) -> Result<NamedTempFile, CacheFileError> {
    let temp = tempfile::Builder::new()
        .prefix(&format!(
            "{}{}.",
            writer.temp_prefix(),
            name_prefix(cache_name)
        ))
        .suffix(TEMP_SUFFIX)
        .permissions(Permissions::from_mode(CACHED_FILE_MODE))
        .tempfile_in(dir)
        .map_err(|source| CacheFileError {
            op: "create temporary file in",
            path: dir.to_owned(),
            source,
        })?;
    // The mode given at creation is reduced by the umask.
    temp.as_file()
        .set_permissions(Permissions::from_mode(CACHED_FILE_MODE))
        .map_err(|source| CacheFileError {
            op: "chmod",
            path: temp.path().to_owned(),
            source,
        })?;
    Ok(temp)
}

/// Gives a finished temp file its cache name in `dir` by an atomic rename, replacing any file
/// of that name (one that failed a check, or an identical copy another writer verified
/// meanwhile). Returns the cached file's path.
pub fn adopt(temp: TempPath, dir: &Path, cache_name: &str) -> Result<PathBuf, CacheFileError> {
    let dest = dir.join(cache_name);
    temp.persist(&dest).map_err(|error| CacheFileError {
        op: "rename to",
        path: dest.clone(),
        source: error.error,
    })?;
    Ok(dest)
}

/// At most 64 bytes of `name`, so temp names stay under NAME_MAX.
fn name_prefix(name: &str) -> &str {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temp_files_are_hidden_owned_and_never_adoptable() {
        let dir = tempfile::tempdir().unwrap();
        for writer in [CacheWriter::Downloader, CacheWriter::Executor] {
            let long = "é".repeat(100);
            for name in ["abc-app.tar.gz", long.as_str()] {
                let temp = create_temp(dir.path(), writer, name).unwrap();
                let temp_name = temp
                    .path()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                assert!(writer.owns_temp(&temp_name), "{temp_name}");
                assert!(temp_name.ends_with(TEMP_SUFFIX), "{temp_name}");
                assert!(temp_name.len() < 255, "{temp_name}");
                assert!(!is_adoptable(&temp_name), "{temp_name}");
                let mode = temp.as_file().metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, CACHED_FILE_MODE);
            }
        }
        assert!(!CacheWriter::Executor.owns_temp(".singularity-s3-downloader-tmp-x"));
        assert!(is_adoptable("0123-app.bin"));
        assert!(!is_adoptable(".hidden"));
        assert!(!is_adoptable("other-writer.tmp"));
        assert!(
            entries(dir.path()).is_empty(),
            "dropped temp files are removed"
        );
    }

    #[test]
    fn adoption_renames_into_place() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"stale").unwrap();
        let mut temp = create_temp(dir.path(), CacheWriter::Executor, "a.txt").unwrap();
        temp.write_all(b"fresh").unwrap();
        let path = adopt(temp.into_temp_path(), dir.path(), "a.txt").unwrap();
        assert_eq!(path, dir.path().join("a.txt"));
        assert_eq!(std::fs::read(&path).unwrap(), b"fresh");
        assert_eq!(entries(dir.path()), ["a.txt"]);

        let temp = create_temp(dir.path(), CacheWriter::Downloader, "b").unwrap();
        let error = adopt(temp.into_temp_path(), dir.path(), "missing/b").unwrap_err();
        assert_eq!(error.op, "rename to");
        assert_eq!(error.path, dir.path().join("missing/b"));
        let error = ArtifactError::from(error);
        assert!(
            error.to_string().starts_with("cannot rename to "),
            "{error}"
        );
    }
}
