//! Artifact placement shared by the S3 downloader and the executor's in-process fallback.
//!
//! Once an artifact is in the cache (or embedded in the task), this crate puts it into the
//! task's directory the way the Java artifact manager did, without running `tar` or `cp`:
//!
//! - [`place_artifact`]: a name ending in `.tar.gz` or `.tgz` is extracted with
//!   [`extract_tar_gz`]; anything else is copied with [`place_file`].
//! - [`place_file`]: `mkdir -p`, then a reflink or kernel copy through a temporary file in the
//!   target directory, mode `rw-r--r--`. An existing destination must be identical (size, then
//!   md5), else it is an error and is left alone.
//! - [`write_embedded`]: embedded artifacts, created exclusively, mode `rw-r--r--`, md5-checked.
//! - [`Md5Writer`] and [`md5_file`]: streaming size and md5 verification for the cache.
//! - [`cache_dir`]: the artifact cache directory's file protocol (temp names, adoption of a
//!   finished file, which files may be taken in), shared by every writer of the cache.
//!
//! Everything here blocks; async callers run it in `spawn_blocking`.
//!
//! # Extraction rules
//!
//! Extraction is `tar -o -x` (no owners restored; modes and mtimes from the archive; existing
//! files overwritten; existing directories merged) with these safety rules:
//!
//! - **Target.** `target_dir` must exist, as it had to for `tar -C`. The archive's own `./`
//!   entry does not change its mode or mtime (it is the task sandbox).
//! - **Paths.** An entry with an absolute path or a `..` component is refused. An entry whose
//!   path goes through a symlink from the archive is refused, so nothing is ever written
//!   through a link.
//! - **Symlinks.** A link's target is resolved from the link's directory against the tree as it
//!   will be once placed (archive entries over what `target_dir` already holds), following
//!   other symlinks; the link is refused if any step leaves `target_dir`. An absolute target is
//!   accepted only when it lies under `target_dir` (as given or canonical), i.e. absolute links
//!   to system paths such as `/etc/passwd` are refused. Targets that do not exist yet are fine.
//! - **Hard links** must name a regular file extracted earlier from the same archive; links to
//!   anything else, outside, or absent, are refused.
//! - **Devices and fifos** are refused (the whole archive fails): a deployable artifact has no
//!   use for them, and failing loudly beats silently dropping entries.
//! - **Modes**: permission and sticky bits from the archive; setuid and setgid are dropped.
//! - **Limits** ([`ExtractLimits`]): bytes actually written (not header sizes, so sparse or
//!   lying headers cannot hide a tar bomb) and the number of entries. Header data between two
//!   entries (long names, pax records) is bounded too.
//! - **All or nothing.** Entries are extracted into a private staging directory created inside
//!   `target_dir` (same filesystem). Only after every entry is staged and checked are the staged
//!   top-level entries renamed into place (directories that already exist are merged entry by
//!   entry; an existing symlink or file where the archive has a directory is replaced, never
//!   followed; an archive file where a directory exists is a conflict, found before anything
//!   moves). Any failure removes the staging directory and leaves `target_dir` as it was.
//!   The one exception: a crash (or I/O error) in the middle of the final renames leaves the
//!   entries renamed so far in place, plus a `.singularity-extract-*` directory with the rest.
//!   The target's own mtime, touched by the staging directory, is restored unless an entry
//!   was added directly to it.
//!
//! The target directory is assumed not to be modified concurrently by others during the call
//! (artifacts are staged before the task starts).

pub mod cache_dir;
mod error;
mod extract;
mod place;
mod verify;

pub use error::{ArtifactError, LinkProblem, PathRefusal, UnsafeReason};
pub use extract::{
    ExtractLimits, ExtractSummary, STAGING_PREFIX, extract_tar, extract_tar_gz, relative_entry_path,
};
pub use place::{PendingFile, PlaceOutcome, Placement, is_tarball, place_artifact, place_file};
pub use verify::{Md5Writer, Verified, md5_bytes, md5_file, md5_matches, write_embedded};
