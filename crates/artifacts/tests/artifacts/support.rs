//! Helpers shared by the integration tests: archive builders and directory listings.
// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use singularity_artifacts::md5_bytes;
use tar::{EntryType, Header};

/// Mtime given to every entry unless a test sets another.
pub const MTIME: u64 = 1_600_000_000;

/// Builds archives entry by entry, writing names as raw bytes so that the tests can produce
/// archives a well-behaved writer refuses to (absolute paths, `..`).
pub struct ArchiveBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for ArchiveBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveBuilder {
    pub fn new() -> Self {
        ArchiveBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, path: &str, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(MTIME);
        header.set_uid(4242);
        header.set_gid(4242);
        let name = &mut header.as_old_mut().name;
        assert!(path.len() < name.len(), "test path too long: {path}");
        name[..path.len()].copy_from_slice(path.as_bytes());
        header
    }

    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
        self.file_with_mtime(path, mode, data, MTIME)
    }

    pub fn file_with_mtime(mut self, path: &str, mode: u32, data: &[u8], mtime: u64) -> Self {
        let mut header = Self::header(EntryType::Regular, path, mode, data.len() as u64);
        header.set_mtime(mtime);
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut header = Self::header(EntryType::Directory, path, mode, 0);
        header.set_cksum();
        self.builder.append(&header, &[][..]).unwrap();
        self
    }

    fn link(mut self, kind: EntryType, path: &str, target: &str) -> Self {
        let mut header = Self::header(kind, path, 0o777, 0);
        let slot = &mut header.as_old_mut().linkname;
        assert!(
            target.len() < slot.len(),
            "test link target too long: {target}"
        );
        slot[..target.len()].copy_from_slice(target.as_bytes());
        header.set_cksum();
        self.builder.append(&header, &[][..]).unwrap();
        self
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.link(EntryType::Symlink, path, target)
    }

    pub fn hard_link(self, path: &str, target: &str) -> Self {
        self.link(EntryType::Link, path, target)
    }

    pub fn special(mut self, kind: EntryType, path: &str) -> Self {
        let mut header = Self::header(kind, path, 0o644, 0);
        header.set_cksum();
        self.builder.append(&header, &[][..]).unwrap();
        self
    }

    /// A GNU long-name record of `len` bytes, followed by a file that uses it.
    pub fn long_name_file(mut self, len: usize) -> Self {
        let name = vec![b'n'; len];
        let mut header = Self::header(EntryType::GNULongName, "././@LongLink", 0o644, len as u64);
        header.set_cksum();
        self.builder.append(&header, &name[..]).unwrap();
        self.file("short", 0o644, b"x")
    }

    pub fn tar(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }

    pub fn tar_gz(self) -> Vec<u8> {
        gzip(&self.tar())
    }

    /// Writes the gzipped archive to `dir/name` and returns its path.
    pub fn write_gz(self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, self.tar_gz()).unwrap();
        path
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Test workspace: `root/target` is the extraction target, archives live beside it.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Self {
        Work {
            dir: tempfile::Builder::new()
                .prefix("se-test-artifacts-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Creates (empty) and returns the target directory.
    pub fn target(&self) -> PathBuf {
        let target = self.root().join("target");
        fs::create_dir_all(&target).unwrap();
        target
    }
}

/// Everything under `dir` (symlinks not followed): path, kind, mode, size, content md5 or link
/// target, mtime, one line each, sorted. Two equal listings mean an unchanged tree.
/// Mtimes are to the nanosecond.
pub fn listing(dir: &Path) -> Vec<String> {
    listing_with(dir, true)
}

/// As [`listing`], with mtimes to the second (what a tar header holds).
pub fn listing_seconds(dir: &Path) -> Vec<String> {
    listing_with(dir, false)
}

fn listing_with(dir: &Path, nanos: bool) -> Vec<String> {
    let mut lines = Vec::new();
    walk(dir, dir, nanos, &mut lines);
    lines.sort();
    lines
}

fn walk(root: &Path, dir: &Path, nanos: bool, lines: &mut Vec<String>) {
    let meta = fs::symlink_metadata(dir).unwrap();
    lines.push(describe(root, dir, &meta, nanos));
    if !meta.is_dir() {
        return;
    }
    for child in fs::read_dir(dir).unwrap() {
        let path = child.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            walk(root, &path, nanos, lines);
        } else {
            lines.push(describe(root, &path, &meta, nanos));
        }
    }
}

fn describe(root: &Path, path: &Path, meta: &fs::Metadata, nanos: bool) -> String {
    let rel = path.strip_prefix(root).unwrap().display().to_string();
    let mode = meta.permissions().mode() & 0o7777;
    let what = if meta.file_type().is_symlink() {
        format!("link -> {}", fs::read_link(path).unwrap().display())
    } else if meta.is_dir() {
        format!("dir {mode:o}")
    } else {
        format!(
            "file {mode:o} {} {}",
            meta.len(),
            md5_bytes(&fs::read(path).unwrap())
        )
    };
    let nsec = if nanos { meta.mtime_nsec() } else { 0 };
    format!("{rel:?} {what} mtime={}.{nsec:09}", meta.mtime())
}

/// Fills `dir` with a few files, a directory and a symlink, as a task sandbox might hold.
pub fn populate(dir: &Path) {
    fs::create_dir_all(dir.join("logs")).unwrap();
    fs::write(dir.join("stdout"), b"started\n").unwrap();
    fs::write(dir.join("logs/service.log"), b"line\n").unwrap();
    std::os::unix::fs::symlink("logs/service.log", dir.join("current.log")).unwrap();
}

/// Names in `dir` that look like a leftover staging directory.
pub fn staging_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(singularity_artifacts::STAGING_PREFIX))
        .collect()
}

pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

pub fn mtime(path: &Path) -> i64 {
    fs::symlink_metadata(path).unwrap().mtime()
}
