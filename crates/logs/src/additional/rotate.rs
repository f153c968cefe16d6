//! Rotating a file that another process keeps appending to, without losing what it appends.
//!
//! The block-aligned prefix of the file is copied to the segment, the segment is synced, and
//! the prefix is then removed from the live file with `fallocate(FALLOC_FL_COLLAPSE_RANGE)`
//! (ext4, XFS). The kernel shifts the rest of the file down under the inode lock, so a writer
//! using `O_APPEND` carries on at the new end and nothing it wrote is lost or duplicated. The
//! bytes past the last whole block stay in the live file for the next rotation, so a segment
//! can end, and the next one begin, in the middle of a line.
//!
//! Where the file system refuses the collapse (tmpfs, NFS, ext4 with bigalloc), the rest of the
//! file is copied and the file truncated, as logrotate's `copytruncate` did: what the task
//! appends between the copy and the truncation is lost. That is logged and reported.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use super::AdditionalFileError;

/// Block size assumed when the file system does not report one.
const FALLBACK_BLOCK_SIZE: u64 = 4096;

/// How a rotation took the data out of the live file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The copied prefix was collapsed out of the live file: nothing the task appended was
    /// lost. At the final rotation the remaining tail was then copied and the file truncated.
    CollapseRange,
    /// The file system refused the collapse: the whole file was copied and truncated, and what
    /// the task appended in between is lost.
    CopyTruncateFallback,
    /// Final rotation of a file smaller than a block, after the task ended: copied and
    /// truncated, with nobody left to append.
    CopyTruncateFinal,
}

/// When the rotation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The task may be appending: only whole blocks are taken.
    Running,
    /// The task has ended: everything is taken.
    Final,
}

/// One rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The live file.
    pub source: PathBuf,
    /// The new uncompressed segment, synced to disk.
    pub segment: PathBuf,
    /// Bytes in the segment.
    pub bytes: u64,
    /// How the bytes were taken out of the live file.
    pub method: Method,
}

/// Rotates `source` into a segment that `create_segment` makes (and names) beside the file's
/// resolved path, or returns `None` when there is nothing to take: an empty file, or, while
/// the task runs, a file holding no whole block before its last byte.
///
/// The file is refused unless it resolves inside `within` (the task directory, canonical): a
/// task cannot point the executor, which runs as root, at a host file through a symlink.
pub fn rotate(
    source: &Path,
    phase: Phase,
    within: &Path,
    create_segment: impl FnOnce(&Path) -> io::Result<(PathBuf, File)>,
) -> Result<Option<Rotated>, AdditionalFileError> {
    let fail = |step: &'static str| {
        let path = source.to_path_buf();
        move |source: io::Error| AdditionalFileError::Rotate { path, step, source }
    };
    let mut live = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(source)
        .map_err(fail("open"))?;
    // Where the descriptor really points, whatever symlinked directories led there.
    let resolved = std::fs::read_link(format!("/proc/self/fd/{}", live.as_raw_fd()))
        .map_err(fail("resolve"))?;
    if !resolved.starts_with(within) {
        return Err(fail("check it is inside the task directory")(
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("it resolves to {}", resolved.display()),
            ),
        ));
    }
    let size = live.metadata().map_err(fail("stat"))?.len();
    let block = block_size(&live);
    // The collapsed range must be whole blocks and must end before the end of the file.
    let prefix = size.saturating_sub(1) / block * block;
    if size == 0 || (phase == Phase::Running && prefix == 0) {
        return Ok(None);
    }

    let (segment_path, mut segment) = create_segment(&resolved).map_err(fail("create segment"))?;
    let discard = |error: AdditionalFileError| {
        let _ = std::fs::remove_file(&segment_path);
        error
    };

    let mut bytes = copy_exact(&mut live, &mut segment, prefix)
        .map_err(fail("copy to segment"))
        .map_err(discard)?;
    sync(&segment, &segment_path)
        .map_err(fail("sync segment"))
        .map_err(discard)?;

    let collapse = if prefix == 0 {
        None
    } else {
        Some(rustix::fs::fallocate(
            &live,
            FallocateFlags::COLLAPSE_RANGE,
            0,
            prefix,
        ))
    };
    let method = match collapse {
        Some(Ok(())) => {
            if phase == Phase::Final {
                live.seek(SeekFrom::Start(0)).map_err(fail("seek"))?;
                bytes += copy_rest_and_truncate(&mut live, &mut segment)
                    .map_err(fail("copy the tail"))?;
            }
            Method::CollapseRange
        }
        Some(Err(errno)) if refused(errno) => {
            tracing::warn!(
                file = %source.display(),
                error = %errno,
                "the file system cannot collapse a range of this file: rotating by copy and \
                 truncate, losing what the task writes meanwhile"
            );
            bytes += copy_rest_and_truncate(&mut live, &mut segment)
                .map_err(fail("copy and truncate"))
                .map_err(discard)?;
            Method::CopyTruncateFallback
        }
        Some(Err(errno)) => {
            return Err(discard(fail("collapse range")(errno.into())));
        }
        None => {
            bytes += copy_rest_and_truncate(&mut live, &mut segment)
                .map_err(fail("copy and truncate"))
                .map_err(discard)?;
            Method::CopyTruncateFinal
        }
    };
    if method != Method::CollapseRange || phase == Phase::Final {
        segment.sync_all().map_err(fail("sync segment"))?;
    }
    Ok(Some(Rotated {
        source: source.to_path_buf(),
        segment: segment_path,
        bytes,
        method,
    }))
}

/// Errors meaning "this file system (or this file) cannot collapse ranges".
fn refused(errno: Errno) -> bool {
    errno == Errno::OPNOTSUPP || errno == Errno::INVAL || errno == Errno::NOSYS
}

fn block_size(file: &File) -> u64 {
    rustix::fs::fstatvfs(file)
        .ok()
        .map(|stat| stat.f_bsize.max(stat.f_frsize))
        .filter(|&size| size > 0)
        .unwrap_or(FALLBACK_BLOCK_SIZE)
}

/// Copies exactly `len` bytes from the start of `live`.
fn copy_exact(live: &mut File, segment: &mut File, len: u64) -> io::Result<u64> {
    let copied = io::copy(&mut Read::by_ref(live).take(len), segment)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file shrank while it was copied ({copied} of {len} bytes)"),
        ));
    }
    Ok(copied)
}

/// Copies from the current offset to the end, then empties the file.
fn copy_rest_and_truncate(live: &mut File, segment: &mut File) -> io::Result<u64> {
    let copied = io::copy(live, segment)?;
    live.set_len(0)?;
    Ok(copied)
}

/// Syncs the segment and its directory entry, so the copy survives a crash before the
/// collapse makes it the only copy.
fn sync(segment: &File, path: &Path) -> io::Result<()> {
    segment.sync_all()?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
