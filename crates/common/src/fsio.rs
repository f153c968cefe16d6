//! Reading and writing JSON record files.
//!
//! Writes are atomic: a reader sees the old content or the new, never a torn file. The Java
//! executor writes in place (truncate, then write), so readers also treat an empty file as
//! "not written yet" rather than as an error.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Mode of written record files: `rw-r--r--`.
pub const RECORD_FILE_MODE: u32 = 0o644;

/// A record file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading the file failed (other than it not existing).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file holds something that is not the expected JSON.
    #[error("invalid JSON in {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause, with line and column.
        source: serde_json::Error,
    },
    /// The value could not be serialized.
    #[error("cannot serialize the record for {}: {source}", path.display())]
    Serialize {
        /// The file it was meant for.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// Writing, syncing or renaming failed; the target is unchanged.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl RecordError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            RecordError::Read { path, .. }
            | RecordError::Parse { path, .. }
            | RecordError::Serialize { path, .. }
            | RecordError::Write { path, .. } => path,
        }
    }
}

/// Writes `value` as compact JSON to `path`, atomically.
///
/// The JSON goes to a hidden temp file in the same directory (so the rename stays on one file
/// system, and its name never ends in a record suffix a scanner looks for), which is synced,
/// given mode 0644 and renamed over `path`; then the directory is synced so the rename
/// survives a crash. On error the temp file is removed and `path` is left as it was.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), RecordError> {
    let bytes = serde_json::to_vec(value).map_err(|source| RecordError::Serialize {
        path: path.to_owned(),
        source,
    })?;
    write_bytes_atomic(path, &bytes).map_err(|source| RecordError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` atomically, as [`write_json_atomic`] does.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");

    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    set_record_mode(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(unix)]
fn set_record_mode(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(RECORD_FILE_MODE))
}

#[cfg(not(unix))]
fn set_record_mode(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Reads a JSON record.
///
/// A missing file, an empty file and a file of only whitespace all give `Ok(None)`: the
/// record is not there (yet). Anything else that does not parse is an error naming the file.
pub fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RecordError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RecordError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RecordError::Parse {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        name: String,
        n: u32,
    }

    fn rec(name: &str, n: u32) -> Rec {
        Rec {
            name: name.into(),
            n,
        }
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.task.json");
        write_json_atomic(&path, &rec("x", 1)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), r#"{"name":"x","n":1}"#);
        assert_eq!(read_json_opt::<Rec>(&path).unwrap(), Some(rec("x", 1)));
        assert_eq!(dir_entries(dir.path()), ["a.task.json"]);
    }

    #[test]
    fn replace_keeps_old_content_readable_until_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.s3.json");
        write_json_atomic(&path, &rec("old", 1)).unwrap();

        // A reader that opened the file before the replace still reads the whole old record,
        // because the replace swaps in a new inode instead of truncating this one.
        let held = File::open(&path).unwrap();
        write_json_atomic(&path, &rec("new", 2)).unwrap();
        let old: Rec = serde_json::from_reader(held).unwrap();
        assert_eq!(old, rec("old", 1));
        assert_eq!(read_json_opt::<Rec>(&path).unwrap(), Some(rec("new", 2)));
        assert_eq!(dir_entries(dir.path()), ["a.s3.json"]);
    }

    #[test]
    fn failed_write_leaves_target_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.s3.json");
        write_json_atomic(&path, &rec("old", 1)).unwrap();

        // JSON object keys must be strings; a map keyed by a tuple fails to serialize.
        let mut bad = BTreeMap::new();
        bad.insert((1, 2), 3);
        let err = write_json_atomic(&path, &bad).unwrap_err();
        assert!(matches!(err, RecordError::Serialize { .. }), "{err}");
        assert_eq!(err.path(), path);

        // The rename fails when the target is a non-empty directory.
        let blocked = dir.path().join("blocked.json");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        let err = write_json_atomic(&blocked, &rec("x", 1)).unwrap_err();
        assert!(matches!(err, RecordError::Write { .. }), "{err}");
        assert!(err.to_string().contains("blocked.json"), "{err}");

        assert_eq!(read_json_opt::<Rec>(&path).unwrap(), Some(rec("old", 1)));
        assert_eq!(dir_entries(dir.path()), ["a.s3.json", "blocked.json"]);
    }

    #[test]
    fn write_into_missing_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("a.json");
        let err = write_json_atomic(&path, &rec("x", 1)).unwrap_err();
        assert!(matches!(err, RecordError::Write { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_json_atomic(&path, &rec("x", 1)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // Replacing a file with other permissions gives 0644 too.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_json_atomic(&path, &rec("y", 2)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn missing_file_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let read = read_json_opt::<Rec>(&dir.path().join("nope.json")).unwrap();
        assert_eq!(read, None);
    }

    #[test]
    fn empty_or_blank_file_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        for content in ["", " ", "\n", " \t\r\n "] {
            fs::write(&path, content).unwrap();
            assert_eq!(read_json_opt::<Rec>(&path).unwrap(), None, "{content:?}");
        }
    }

    #[test]
    fn invalid_json_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.s3.json");
        for content in [r#"{"name":"x","#, "not json", r#"{"name":"x"}"#] {
            fs::write(&path, content).unwrap();
            let err = read_json_opt::<Rec>(&path).unwrap_err();
            assert!(matches!(err, RecordError::Parse { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("bad.s3.json"), "{msg}");
        }
        fs::write(&path, r#"{"name":"x"}"#).unwrap();
        let msg = read_json_opt::<Rec>(&path).unwrap_err().to_string();
        assert!(msg.contains("missing field `n`"), "{msg}");
    }

    #[test]
    fn unreadable_path_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_json_opt::<Rec>(dir.path()).unwrap_err();
        assert!(matches!(err, RecordError::Read { .. }), "{err}");
        assert_eq!(err.path(), dir.path());
    }
}
