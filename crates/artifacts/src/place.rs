//! Putting a cached artifact into a task's directory: copy, or extract a tarball.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::ArtifactError;
use crate::extract::{ExtractLimits, ExtractSummary, extract_tar_gz};
use crate::verify::{ARTIFACT_FILE_MODE, md5_file};

/// What [`place_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceOutcome {
    /// The file was copied (`reflinked`: as a copy-on-write clone sharing the cached blocks).
    Copied {
        /// Bytes written.
        bytes: u64,
        /// Whether the copy shares the cached file's blocks.
        reflinked: bool,
    },
    /// The destination already held identical content; nothing was written.
    AlreadyPresent,
    /// The file was written while the artifact downloaded ([`PendingFile`]) and published
    /// once the artifact was verified.
    WrittenAhead {
        /// Bytes written.
        bytes: u64,
    },
}

/// What [`place_artifact`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The artifact was a tarball and was extracted.
    Extracted(ExtractSummary),
    /// The artifact was copied as a file.
    File(PlaceOutcome),
}

/// Whether an artifact with this file name is extracted rather than copied.
///
/// The Java rule was "ends with `.tar.gz`" (case-sensitive); `.tgz` is added. A plain `.tar`
/// is copied, as before.
pub fn is_tarball(filename: &str) -> bool {
    filename.ends_with(".tar.gz") || filename.ends_with(".tgz")
}

/// Places a cached artifact: extracts it into `target_dir` when [`is_tarball`], else copies it
/// to `target_dir/filename` with [`place_file`].
pub fn place_artifact(
    cached: &Path,
    target_dir: &Path,
    filename: &str,
    limits: &ExtractLimits,
) -> Result<Placement, ArtifactError> {
    if is_tarball(filename) {
        extract_tar_gz(cached, target_dir, limits).map(Placement::Extracted)
    } else {
        place_file(cached, target_dir, filename).map(Placement::File)
    }
}

/// Copies `cached` to `target_dir/filename`, creating `target_dir` as needed.
///
/// The copy goes to a temporary file in `target_dir` which then takes the final name without
/// replacing anything, so the destination is either absent or complete. The copy is a reflink
/// (FICLONE) where the filesystem allows it, else an in-kernel copy (`copy_file_range`), else a
/// read/write loop. The file gets mode `rw-r--r--`.
///
/// An existing destination is accepted only if it is a regular file with the same size and md5
/// ([`PlaceOutcome::AlreadyPresent`]); otherwise it is left untouched and an error names it.
/// `filename` must be a plain file name: no `/`, not `.` or `..`.
pub fn place_file(
    cached: &Path,
    target_dir: &Path,
    filename: &str,
) -> Result<PlaceOutcome, ArtifactError> {
    check_plain_name(filename)?;
    fs::create_dir_all(target_dir)
        .map_err(|e| ArtifactError::io("create directory", target_dir, e))?;
    let dest = target_dir.join(filename);
    if let Some(outcome) = compare_existing(cached, &dest)? {
        return Ok(outcome);
    }

    let mut src = File::open(cached).map_err(|e| ArtifactError::io("open", cached, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name_prefix(filename)))
        .suffix(".part")
        .tempfile_in(target_dir)
        .map_err(|e| ArtifactError::io("create temporary file in", target_dir, e))?;

    let reflinked = rustix::fs::ioctl_ficlone(tmp.as_file(), &src).is_ok();
    let bytes = if reflinked {
        tmp.as_file()
            .metadata()
            .map_err(|e| ArtifactError::io("stat", tmp.path(), e))?
            .len()
    } else {
        // std specialises File-to-File copies to copy_file_range/sendfile, falling back to
        // a read/write loop where those are unsupported.
        io::copy(&mut src, tmp.as_file_mut())
            .map_err(|e| ArtifactError::io("copy to", tmp.path(), e))?
    };
    publish(
        tmp,
        cached,
        &dest,
        PlaceOutcome::Copied { bytes, reflinked },
    )
}

/// Gives the complete temporary file `tmp` its mode and the name `dest`, without replacing
/// anything: `outcome` if it took the name, [`PlaceOutcome::AlreadyPresent`] if an identical
/// `dest` appeared meanwhile, an error otherwise (and `tmp` is removed).
fn publish(
    tmp: tempfile::NamedTempFile,
    cached: &Path,
    dest: &Path,
    outcome: PlaceOutcome,
) -> Result<PlaceOutcome, ArtifactError> {
    tmp.as_file()
        .set_permissions(Permissions::from_mode(ARTIFACT_FILE_MODE))
        .map_err(|e| ArtifactError::io("chmod", tmp.path(), e))?;
    match tmp.persist_noclobber(dest) {
        Ok(_) => Ok(outcome),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            // Someone placed the same name meanwhile (a concurrent request for the same
            // artifact): fine if it is the same content.
            drop(e.file);
            compare_existing(cached, dest)?
                .ok_or_else(|| ArtifactError::io("rename to", dest, e.error))
        }
        Err(e) => Err(ArtifactError::io("rename to", dest, e.error)),
    }
}

/// A copy of an artifact written into its target directory while the artifact downloads,
/// so that placing it after the download is a rename instead of a copy. It lives under a
/// temporary name (like [`place_file`]'s copies) and takes the artifact's name only in
/// [`PendingFile::publish`], once the artifact is verified; dropped, it is removed.
#[derive(Debug)]
pub struct PendingFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl PendingFile {
    /// An empty pending file for `target_dir/filename`, or `None` where [`place_artifact`]
    /// would not simply write the file: a tarball (extracted), an existing destination
    /// (compared), a target directory that does not exist yet (created by the placement, so
    /// that a failed download leaves no directory behind).
    pub fn create(target_dir: &Path, filename: &str) -> Result<Option<Self>, ArtifactError> {
        check_plain_name(filename)?;
        let dest = target_dir.join(filename);
        if is_tarball(filename) || !target_dir.is_dir() || fs::symlink_metadata(&dest).is_ok() {
            return Ok(None);
        }
        let prefix = format!(".{}.", name_prefix(filename));
        let lock_error = |e: rustix::io::Errno| {
            ArtifactError::io(
                "lock",
                target_dir,
                io::Error::from_raw_os_error(e.raw_os_error()),
            )
        };
        let dir = File::open(target_dir).map_err(|e| ArtifactError::io("open", target_dir, e))?;
        remove_dead_pending(&dir, target_dir, &prefix).map_err(lock_error)?;
        // Held shared while the new file is created and locked, so that a sweep (exclusive)
        // never sees it unlocked.
        rustix::fs::flock(&dir, FlockOperation::LockShared).map_err(lock_error)?;
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(PENDING_SUFFIX)
            .tempfile_in(target_dir)
            .map_err(|e| ArtifactError::io("create temporary file in", target_dir, e))?;
        // Held as long as the file is open: gone with the process, so a pending file nobody
        // holds is debris of a crash.
        rustix::fs::flock(tmp.as_file(), FlockOperation::NonBlockingLockExclusive)
            .map_err(lock_error)?;
        Ok(Some(Self { tmp, dest }))
    }

    /// The file to write the artifact's bytes into, at their offsets.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Publishes the file, now holding the verified artifact whose cached copy is `cached`,
    /// as [`place_file`] would: it takes its name unless an identical file appeared there
    /// meanwhile ([`PlaceOutcome::AlreadyPresent`]); a different one is an error.
    pub fn publish(self, cached: &Path) -> Result<PlaceOutcome, ArtifactError> {
        let bytes = self
            .tmp
            .as_file()
            .metadata()
            .map_err(|e| ArtifactError::io("stat", self.tmp.path(), e))?
            .len();
        publish(
            self.tmp,
            cached,
            &self.dest,
            PlaceOutcome::WrittenAhead { bytes },
        )
    }
}

/// Suffix of pending files.
const PENDING_SUFFIX: &str = ".part";

/// Removes the pending files for the same name (`prefix`) that no process holds any more:
/// left by a download killed before it was placed. A live one is locked by its writer.
fn remove_dead_pending(dir: &File, dir_path: &Path, prefix: &str) -> rustix::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    rustix::fs::flock(dir, FlockOperation::LockExclusive)?;
    let Ok(entries) = fs::read_dir(dir_path) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(prefix) || !name.ends_with(PENDING_SUFFIX) {
            continue;
        }
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        let Ok(file) = File::options()
            .read(true)
            .custom_flags(i32::try_from(flags.bits()).unwrap_or(0))
            .open(entry.path())
        else {
            continue;
        };
        if file.metadata().is_ok_and(|m| m.is_file())
            && rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
        {
            let _ = fs::remove_file(entry.path());
        }
    }
    rustix::fs::flock(dir, FlockOperation::Unlock)
}

/// `None` if `dest` does not exist; `AlreadyPresent` if it is a regular file identical to
/// `cached` (size first, then md5); an error otherwise.
fn compare_existing(cached: &Path, dest: &Path) -> Result<Option<PlaceOutcome>, ArtifactError> {
    let existing = match fs::symlink_metadata(dest) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArtifactError::io("stat", dest, e)),
    };
    if !existing.is_file() {
        return Err(ArtifactError::NotAFile {
            path: dest.to_path_buf(),
        });
    }
    let source_len = fs::metadata(cached)
        .map_err(|e| ArtifactError::io("stat", cached, e))?
        .len();
    if existing.len() != source_len {
        return Err(ArtifactError::ExistingDiffers {
            path: dest.to_path_buf(),
            expected: format!("{source_len} bytes"),
            actual: format!("{} bytes", existing.len()),
        });
    }
    let expected = md5_file(cached)?;
    let actual = md5_file(dest)?;
    if expected == actual {
        Ok(Some(PlaceOutcome::AlreadyPresent))
    } else {
        Err(ArtifactError::ExistingDiffers {
            path: dest.to_path_buf(),
            expected: format!("md5 {expected}"),
            actual: format!("md5 {actual}"),
        })
    }
}

/// At most 64 bytes of `filename`, so the temporary name stays under NAME_MAX.
fn name_prefix(filename: &str) -> &str {
    let mut end = filename.len().min(64);
    while !filename.is_char_boundary(end) {
        end -= 1;
    }
    &filename[..end]
}

fn check_plain_name(filename: &str) -> Result<(), ArtifactError> {
    let reason = if filename.is_empty() {
        "empty name"
    } else if filename == "." || filename == ".." {
        "not a file name"
    } else if filename.contains('/') {
        "contains `/`"
    } else if filename.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(ArtifactError::InvalidFilename {
        filename: filename.to_string(),
        reason,
    })
}
