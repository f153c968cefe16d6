//! md5 and size verification of artifact content, and embedded artifacts.

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use md5::{Digest, Md5};

use crate::ArtifactError;

/// Mode of every artifact file this crate writes (`rw-r--r--`, as the Java artifact manager).
pub(crate) const ARTIFACT_FILE_MODE: u32 = 0o644;

/// A writer that hashes (md5) and counts everything written through it.
///
/// Used to verify a download while it streams into the cache, so the file is never read
/// back just to be checked.
pub struct Md5Writer<W> {
    inner: W,
    hasher: Md5,
    bytes: u64,
    path: PathBuf,
}

/// What [`Md5Writer::finish`] hands back once the content has been checked.
#[derive(Debug)]
pub struct Verified<W> {
    /// The wrapped writer, flushed.
    pub inner: W,
    /// Lowercase hex md5 of everything written.
    pub md5: String,
    /// Number of bytes written.
    pub size: u64,
}

impl<W: Write> Md5Writer<W> {
    /// Wraps `inner`. `path` is the file being written, named in verification errors.
    pub fn new(inner: W, path: impl Into<PathBuf>) -> Self {
        Md5Writer {
            inner,
            hasher: Md5::new(),
            bytes: 0,
            path: path.into(),
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// The wrapped writer (read-only: writes must go through the hasher).
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Flushes, then checks the size and then the md5 (case-insensitively), in the Java order.
    ///
    /// `None` skips that check. On a mismatch the writer is dropped; the caller removes the
    /// partial file it was writing.
    pub fn finish(
        mut self,
        expected_md5: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<Verified<W>, ArtifactError> {
        self.inner
            .flush()
            .map_err(|e| ArtifactError::io("flush", &self.path, e))?;
        if let Some(expected) = expected_size
            && expected != self.bytes
        {
            return Err(ArtifactError::SizeMismatch {
                path: self.path,
                expected,
                actual: self.bytes,
            });
        }
        let md5 = hex::encode(self.hasher.finalize());
        if let Some(expected) = expected_md5 {
            check_md5(&self.path, expected, &md5)?;
        }
        Ok(Verified {
            inner: self.inner,
            md5,
            size: self.bytes,
        })
    }
}

impl<W: Write> Write for Md5Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> fmt::Debug for Md5Writer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Md5Writer")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// Compares md5 hex strings the way the Java artifact manager did: ignoring case.
pub fn md5_matches(expected: &str, actual: &str) -> bool {
    expected.trim().eq_ignore_ascii_case(actual.trim())
}

fn check_md5(path: &Path, expected: &str, actual: &str) -> Result<(), ArtifactError> {
    if md5_matches(expected, actual) {
        Ok(())
    } else {
        Err(ArtifactError::Md5Mismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

/// Lowercase hex md5 of a file's content.
pub fn md5_file(path: &Path) -> Result<String, ArtifactError> {
    let mut file = File::open(path).map_err(|e| ArtifactError::io("open", path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArtifactError::io("read", path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lowercase hex md5 of a byte slice.
pub fn md5_bytes(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Writes an embedded artifact to `dir/filename` and returns that path.
///
/// As the Java artifact manager: the parent directories are created, the file is created
/// exclusively (an existing file is an error naming it, and is left alone), its mode is
/// `rw-r--r--`. `filename` may contain subdirectories but must stay inside `dir` (no absolute
/// path, no `..`).
///
/// The md5, when given, is checked before anything is written, so a mismatch leaves no file
/// behind; a failed write removes the partial file.
pub fn write_embedded(
    dir: &Path,
    filename: &str,
    bytes: &[u8],
    md5: Option<&str>,
) -> Result<PathBuf, ArtifactError> {
    check_relative_name(filename)?;
    let dest = dir.join(filename);
    if let Some(expected) = md5 {
        check_md5(&dest, expected, &md5_bytes(bytes))?;
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| ArtifactError::io("create directory", parent, e))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(ARTIFACT_FILE_MODE)
        .open(&dest)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                ArtifactError::AlreadyExists { path: dest.clone() }
            } else {
                ArtifactError::io("create", &dest, e)
            }
        })?;
    let written = file
        .write_all(bytes)
        // The umask may have narrowed the creation mode.
        .and_then(|()| file.set_permissions(Permissions::from_mode(ARTIFACT_FILE_MODE)));
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&dest);
        return Err(ArtifactError::io("write", &dest, e));
    }
    Ok(dest)
}

/// Accepts a non-empty relative path made of plain names only.
fn check_relative_name(filename: &str) -> Result<(), ArtifactError> {
    let invalid = |reason| ArtifactError::InvalidFilename {
        filename: filename.to_string(),
        reason,
    };
    if filename.is_empty() {
        return Err(invalid("empty name"));
    }
    if filename.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    let mut names = 0;
    for component in Path::new(filename).components() {
        match component {
            Component::Normal(_) => names += 1,
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid("contains a `..` component")),
            Component::RootDir | Component::Prefix(_) => return Err(invalid("absolute path")),
        }
    }
    if names == 0 || filename.ends_with('/') {
        return Err(invalid("does not name a file"));
    }
    Ok(())
}
