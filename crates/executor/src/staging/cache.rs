//! The shared artifact cache (`artifactCacheDirectory`), as the in-process fetch uses it:
//! hit checks, verified streaming fills, and placing a cached file into the task.
//!
//! The downloader indexes this directory too; both follow its file protocol
//! ([`singularity_artifacts::cache_dir`]): temp files here are hidden and end in `.tmp`, which
//! the downloader neither adopts nor removes; finished files get their cache name
//! (`<md5>-<filename>` or `<filename>`) by an atomic rename, so the downloader adopts them
//! whole.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use singularity_artifacts::cache_dir::{self, CacheWriter};
use singularity_artifacts::{
    ArtifactError, ExtractLimits, Md5Writer, Placement, md5_file, md5_matches, place_artifact,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::StagingError;

/// Chunks buffered between the network and the writer thread.
const FILL_QUEUE: usize = 16;

/// What a remote artifact is expected to be.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// `<md5>-<filename>` or `<filename>`.
    pub cache_name: String,
    /// Expected md5 (hex, any case).
    pub md5: Option<String>,
    /// Expected size; a negative value is ignored.
    pub size: Option<i64>,
}

impl Expected {
    fn size(&self) -> Option<u64> {
        self.size.and_then(|s| u64::try_from(s).ok())
    }
}

/// The cached file for `expected`, if the cache holds it: it exists, and has the expected size
/// and md5 where those are known. Anything unreadable counts as a miss.
pub(crate) async fn lookup(
    dir: &Path,
    expected: &Expected,
) -> Result<Option<PathBuf>, StagingError> {
    let path = dir.join(&expected.cache_name);
    let expected = expected.clone();
    let hit = tokio::task::spawn_blocking(move || {
        let Ok(meta) = fs::metadata(&path) else {
            return None;
        };
        if !meta.is_file() || expected.size().is_some_and(|size| size != meta.len()) {
            return None;
        }
        if let Some(md5) = &expected.md5 {
            match md5_file(&path) {
                Ok(actual) if md5_matches(md5, &actual) => {}
                _ => return None,
            }
        }
        Some(path)
    })
    .await?;
    Ok(hit)
}

enum Chunk {
    Data(Bytes),
    End,
}

/// A cache file being filled: chunks go to a blocking writer that hashes and counts them into
/// a temp file; [`CacheFill::finish`] verifies size and md5 and renames it into place.
/// Dropped unfinished, the temp file is removed.
pub(crate) struct CacheFill {
    tx: mpsc::Sender<Chunk>,
    writer: JoinHandle<Result<PathBuf, ArtifactError>>,
}

impl CacheFill {
    /// Starts filling `dir/<cache name>`.
    pub(crate) fn start(dir: &Path, expected: &Expected) -> Self {
        let (tx, rx) = mpsc::channel(FILL_QUEUE);
        let dir = dir.to_path_buf();
        let expected = expected.clone();
        let writer = tokio::task::spawn_blocking(move || write_cache_file(&dir, &expected, rx));
        CacheFill { tx, writer }
    }

    /// Queues a chunk. `false` means the writer stopped (an I/O error): call
    /// [`CacheFill::finish`] for the error.
    pub(crate) async fn write(&self, data: Bytes) -> bool {
        self.tx.send(Chunk::Data(data)).await.is_ok()
    }

    /// Ends the content, then verifies and renames it; returns the cached file.
    pub(crate) async fn finish(self) -> Result<Result<PathBuf, ArtifactError>, StagingError> {
        // A closed channel means the writer already stopped with an error, returned below.
        let _ = self.tx.send(Chunk::End).await;
        Ok(self.writer.await?)
    }
}

fn write_cache_file(
    dir: &Path,
    expected: &Expected,
    mut rx: mpsc::Receiver<Chunk>,
) -> Result<PathBuf, ArtifactError> {
    let io_error = |op, path: &Path, source| ArtifactError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let dest = dir.join(&expected.cache_name);
    let tmp = cache_dir::create_temp(dir, CacheWriter::Executor, &expected.cache_name)?;
    let tmp_path = tmp.path().to_path_buf();
    let mut writer = Md5Writer::new(tmp, &dest);
    loop {
        match rx.blocking_recv() {
            Some(Chunk::Data(data)) => writer
                .write_all(&data)
                .map_err(|e| io_error("write", &tmp_path, e))?,
            Some(Chunk::End) => break,
            // The download was abandoned (cancelled or failed): drop the temp file.
            None => {
                return Err(io_error(
                    "finish",
                    &tmp_path,
                    io::Error::new(io::ErrorKind::Interrupted, "download abandoned"),
                ));
            }
        }
    }
    let verified = writer.finish(expected.md5.as_deref(), expected.size())?;
    // Replacing an existing file is right: it either failed the hit check or is an identical
    // copy someone else verified meanwhile.
    Ok(cache_dir::adopt(
        verified.inner.into_temp_path(),
        dir,
        &expected.cache_name,
    )?)
}

/// Puts a cached artifact into `target`: a tarball is extracted there, anything else copied to
/// `target/<filename>`. `target` is created first (extraction needs it to exist).
pub(crate) async fn place(
    name: &str,
    cached: PathBuf,
    target: &Path,
    filename: &str,
) -> Result<Placement, StagingError> {
    let target_dir = target.to_path_buf();
    let filename = filename.to_owned();
    let placed = tokio::task::spawn_blocking(move || {
        fs::create_dir_all(&target_dir).map_err(|source| ArtifactError::Io {
            op: "create directory",
            path: target_dir.clone(),
            source,
        })?;
        place_artifact(&cached, &target_dir, &filename, &ExtractLimits::default())
    })
    .await?;
    placed.map_err(|source| StagingError::Place {
        name: name.to_owned(),
        target: target.to_path_buf(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn expected(name: &str, md5: Option<&str>, size: Option<i64>) -> Expected {
        Expected {
            cache_name: name.to_owned(),
            md5: md5.map(str::to_owned),
            size,
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn fill_verifies_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let md5 = singularity_artifacts::md5_bytes(b"hello world");
        let exp = expected("a.txt", Some(&md5.to_uppercase()), Some(11));
        assert_eq!(lookup(dir.path(), &exp).await.unwrap(), None);

        let fill = CacheFill::start(dir.path(), &exp);
        assert!(fill.write(Bytes::from_static(b"hello ")).await);
        assert!(fill.write(Bytes::from_static(b"world")).await);
        let path = fill.finish().await.unwrap().unwrap();
        assert_eq!(path, dir.path().join("a.txt"));
        assert_eq!(fs::read(&path).unwrap(), b"hello world");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(lookup(dir.path(), &exp).await.unwrap(), Some(path));
        assert_eq!(entries(dir.path()), ["a.txt"]);

        // A wrong size or md5 is a miss.
        let wrong = expected("a.txt", None, Some(3));
        assert_eq!(lookup(dir.path(), &wrong).await.unwrap(), None);
        let wrong = expected("a.txt", Some(&singularity_artifacts::md5_bytes(b"x")), None);
        assert_eq!(lookup(dir.path(), &wrong).await.unwrap(), None);
    }

    #[tokio::test]
    async fn mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let exp = expected(
            "b.txt",
            Some(&singularity_artifacts::md5_bytes(b"other")),
            None,
        );
        let fill = CacheFill::start(dir.path(), &exp);
        assert!(fill.write(Bytes::from_static(b"content")).await);
        let err = fill.finish().await.unwrap().unwrap_err();
        assert!(matches!(err, ArtifactError::Md5Mismatch { .. }), "{err}");
        assert!(entries(dir.path()).is_empty());

        let exp = expected("c.txt", None, Some(99));
        let fill = CacheFill::start(dir.path(), &exp);
        assert!(fill.write(Bytes::from_static(b"short")).await);
        let err = fill.finish().await.unwrap().unwrap_err();
        assert!(matches!(err, ArtifactError::SizeMismatch { .. }), "{err}");
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn dropped_fill_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let fill = CacheFill::start(dir.path(), &expected("d.txt", None, None));
        assert!(fill.write(Bytes::from_static(b"partial")).await);
        let CacheFill { tx, writer } = fill;
        drop(tx);
        assert!(writer.await.unwrap().is_err());
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn empty_content() {
        let dir = tempfile::tempdir().unwrap();
        let exp = expected("e", Some(&singularity_artifacts::md5_bytes(b"")), Some(0));
        let path = CacheFill::start(dir.path(), &exp)
            .finish()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fs::metadata(path).unwrap().len(), 0);
    }
}
