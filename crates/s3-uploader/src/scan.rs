//! Local file system work of a pass: walking an uploader's directory as a stream, the
//! open-file check over `/proc/*/fd`, and compression before upload.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileType};
use std::io::{self, BufWriter, Write as _};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

/// Name suffix of the uploader's own temporary files; the walk never takes them.
pub const TEMP_SUFFIX: &str = ".s3uploader-tmp";

/// Why a file in an uploader's directory was not uploaded in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// 0 bytes: nothing to upload (it stays until it has content).
    Empty,
    /// A process has it open (the check is on and the uploader is not immediate).
    Open,
    /// Its name matches neither `fileGlob` nor (once finished) `onFinishGlob`.
    NoGlobMatch,
    /// A symbolic link, socket, FIFO or device: what it names may lie outside the directory.
    OutsideDirectory,
    /// A subdirectory, and `checkSubdirectories` is off.
    Subdirectory,
    /// Compression failed.
    CompressFailed,
    /// It is waiting for its next attempt after a failure.
    RetryLater,
}

impl SkipReason {
    /// Every reason, for the metrics.
    pub const ALL: [SkipReason; 7] = [
        Self::Empty,
        Self::Open,
        Self::NoGlobMatch,
        Self::OutsideDirectory,
        Self::Subdirectory,
        Self::CompressFailed,
        Self::RetryLater,
    ];

    /// The label value and log text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Open => "open",
            Self::NoGlobMatch => "no_glob_match",
            Self::OutsideDirectory => "outside_directory",
            Self::Subdirectory => "subdirectory",
            Self::CompressFailed => "compress_failed",
            Self::RetryLater => "retry_later",
        }
    }
}

/// Calls `visit` with each entry of `root` (path, name, type), then of its subdirectories
/// when `recurse`, one directory at a time: only directory paths wait in memory, never the
/// entries of a directory. Symbolic links are not followed. Subdirectories are visited
/// themselves only when not recursing. An unreadable subdirectory is passed over; an
/// unreadable `root` is an error.
pub fn walk(
    root: &Path,
    recurse: bool,
    mut visit: impl FnMut(&Path, &OsStr, FileType) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if dir == root => return Err(error),
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "cannot list a subdirectory");
                continue;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if file_type.is_dir() && recurse {
                pending.push(path);
                continue;
            }
            if visit(&path, &entry.file_name(), file_type).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The files open in any other process, under some directories, read from `/proc/*/fd`.
#[derive(Debug, Default)]
pub struct OpenFiles {
    open: HashSet<PathBuf>,
    unknown: bool,
}

impl OpenFiles {
    /// Looks through every process's open descriptors (not this process's own) for files
    /// under `prefixes` (canonical paths). Processes that vanish or may not be inspected
    /// are passed over, as `lsof` does. If `/proc` itself cannot be read, every file
    /// counts as open: an error must not let a file being written be uploaded and deleted.
    pub fn snapshot(proc_root: &Path, prefixes: &[PathBuf]) -> Self {
        let me = std::process::id().to_string();
        let processes = match fs::read_dir(proc_root) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(
                    proc = %proc_root.display(),
                    %error,
                    "cannot read the process table: every file counts as open"
                );
                return Self {
                    open: HashSet::new(),
                    unknown: true,
                };
            }
        };
        let mut open = HashSet::new();
        for process in processes.flatten() {
            let name = process.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(target) = fs::read_link(fd.path()) else {
                    continue;
                };
                if prefixes.iter().any(|p| target.starts_with(p)) {
                    open.insert(target);
                }
            }
        }
        Self {
            open,
            unknown: false,
        }
    }

    /// Whether `path` (canonical) is open somewhere.
    pub fn is_open(&self, path: &Path) -> bool {
        self.unknown || self.open.contains(path)
    }
}

/// `<name>.gz` next to `path`.
pub fn gz_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsStr::to_owned).unwrap_or_default();
    name.push(".gz");
    path.with_file_name(name)
}

/// Compresses `path` into `<path>.gz` as `gzip` does (same modification time and
/// permissions), through a temporary file renamed into place, then removes `path`. A crash
/// leaves the original, or a complete `.gz` next to it (compressed again on the next pass),
/// never a partial `.gz`. Returns the `.gz` path.
pub fn gzip(path: &Path) -> io::Result<PathBuf> {
    let meta = fs::symlink_metadata(path)?;
    let target = gz_path(path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut prefix = OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".gz.");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    {
        let mut source = File::open(path)?;
        let mut encoder = GzEncoder::new(
            BufWriter::with_capacity(256 * 1024, tmp.as_file_mut()),
            Compression::default(),
        );
        io::copy(&mut source, &mut encoder)?;
        encoder.finish()?.flush()?;
    }
    tmp.as_file().set_permissions(meta.permissions())?;
    tmp.as_file().set_modified(meta.modified()?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    fs::remove_file(path)?;
    File::open(dir)?.sync_all()?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn walk_streams_and_recurses_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"1").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/b"), b"2").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();

        let mut seen = Vec::new();
        walk(dir.path(), false, |path, name, ty| {
            seen.push((
                name.to_string_lossy().into_owned(),
                ty.is_dir(),
                ty.is_symlink(),
            ));
            assert_eq!(path.parent(), Some(dir.path()));
            ControlFlow::Continue(())
        })
        .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a".to_owned(), false, false),
                ("link".to_owned(), false, true),
                ("sub".to_owned(), true, false)
            ]
        );

        let mut seen = Vec::new();
        walk(dir.path(), true, |_, name, _| {
            seen.push(name.to_string_lossy().into_owned());
            ControlFlow::Continue(())
        })
        .unwrap();
        seen.sort();
        assert_eq!(seen, ["a", "b", "link"]);

        assert!(
            walk(&dir.path().join("missing"), true, |_, _, _| {
                ControlFlow::Continue(())
            })
            .is_err()
        );
    }

    #[test]
    fn open_files_are_seen_in_other_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let held = root.join("held.log");
        let free = root.join("free.log");
        fs::write(&held, b"x").unwrap();
        fs::write(&free, b"x").unwrap();
        // Opened by this process: not "open" (the uploader reads files itself).
        let _mine = File::open(&free).unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; exec sleep 30")
            .arg(&held)
            .spawn()
            .unwrap();
        let mut open = OpenFiles::default();
        for _ in 0..100 {
            open = OpenFiles::snapshot(Path::new("/proc"), std::slice::from_ref(&root));
            if open.is_open(&held) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(open.is_open(&held));
        assert!(!open.is_open(&free));

        let unknown = OpenFiles::snapshot(&root.join("no-proc"), std::slice::from_ref(&root));
        assert!(unknown.is_open(&free));
    }

    #[test]
    fn gzip_replaces_the_file_atomically() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.log");
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        fs::write(&path, &data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let mtime =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_668_780_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();

        let gz = gzip(&path).unwrap();
        assert_eq!(gz, dir.path().join("service.log.gz"));
        assert!(!path.exists());
        let meta = fs::metadata(&gz).unwrap();
        assert_eq!(meta.modified().unwrap(), mtime);
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OsString::from("service.log.gz")]);
    }
}
