//! Compression of finished segments, the one way every rotated file becomes what the uploader
//! takes: into a temporary name no upload glob matches, fsynced, its mtime set to the
//! segment's (the time of its last line, the uploader's `%s`), its `user.logstart` /
//! `user.logend` copied, renamed to `<segment><ext>`, then the segment removed.
//!
//! Other modules hand their finished uncompressed segments to [`compress_segment`]; a failure
//! leaves the segment in place for [`crate::recover()`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};

use crate::settings::{Compression, CompressionKind};
use crate::{LOG_END_XATTR, LOG_START_XATTR, LogError, names};

/// Read and write buffer size.
const BUFFER: usize = 256 * 1024;

/// Compresses `segment` to `<segment><compression.extension>` and removes `segment`; returns
/// the compressed file.
///
/// A complete (non-empty) compressed twin left by an interrupted earlier call is kept and the
/// segment removed; an empty twin (an interrupted external compressor) is replaced.
pub fn compress_segment(segment: &Path, compression: &Compression) -> Result<PathBuf, LogError> {
    let target = names::compressed(segment, &compression.extension);
    if fs::metadata(&target).is_ok_and(|m| m.len() > 0) {
        remove(segment)?;
        return Ok(target);
    }
    let temp = names::compressing(segment);
    let result = write_compressed(segment, &temp, compression);
    if let Err(error) = result {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    fs::rename(&temp, &target).map_err(|e| LogError::io("rename", &temp, e))?;
    sync_dir(segment);
    remove(segment)?;
    Ok(target)
}

fn remove(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("remove", path, e)),
    }
}

fn write_compressed(
    segment: &Path,
    temp: &Path,
    compression: &Compression,
) -> Result<(), LogError> {
    let mut input = File::open(segment).map_err(|e| LogError::io("open", segment, e))?;
    let meta = input
        .metadata()
        .map_err(|e| LogError::io("stat", segment, e))?;
    let output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(|e| LogError::io("create", temp, e))?;
    let sink = BufWriter::with_capacity(BUFFER, output);
    let output = match compression.kind {
        CompressionKind::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(sink, flate2::Compression::new(compression.level));
            copy(&mut input, &mut encoder, segment, temp)?;
            encoder.finish()
        }
        CompressionKind::Bzip2 => {
            let mut encoder =
                bzip2::write::BzEncoder::new(sink, bzip2::Compression::new(compression.level));
            copy(&mut input, &mut encoder, segment, temp)?;
            encoder.finish()
        }
    }
    .map_err(|e| LogError::io("compress into", temp, e))?;
    let output = output
        .into_inner()
        .map_err(|e| LogError::io("write", temp, e.into_error()))?;
    copy_log_xattrs(&input, &output);
    if let Ok(modified) = meta.modified() {
        output
            .set_modified(modified)
            .map_err(|e| LogError::io("set the mtime of", temp, e))?;
    }
    output
        .sync_all()
        .map_err(|e| LogError::io("fsync", temp, e))
}

fn copy(
    input: &mut File,
    output: &mut impl Write,
    segment: &Path,
    temp: &Path,
) -> Result<(), LogError> {
    let mut buf = vec![0_u8; BUFFER];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LogError::io("read", segment, e)),
        };
        output
            .write_all(&buf[..n])
            .map_err(|e| LogError::io("compress into", temp, e))?;
    }
}

/// Copies `user.logstart` / `user.logend` when the source has them; file systems without
/// user xattrs simply have none.
fn copy_log_xattrs(from: &File, to: &File) {
    for name in [LOG_START_XATTR, LOG_END_XATTR] {
        if let Some(value) = get_xattr(from, name) {
            let _ = rustix::fs::fsetxattr(to, name, &value, rustix::fs::XattrFlags::empty());
        }
    }
}

/// The value of xattr `name` on `file`, when set.
pub fn get_xattr(file: &File, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0_u8; 64];
    let n = rustix::fs::fgetxattr(file, name, &mut buf[..]).ok()?;
    Some(buf[..n].to_vec())
}

/// Sets xattr `name` on `file` to `value`; failures are logged at debug (many file systems
/// have no user xattrs).
pub fn set_xattr(file: &File, name: &str, value: &str) {
    if let Err(error) = rustix::fs::fsetxattr(
        file,
        name,
        value.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    ) {
        tracing::debug!(name, %error, "cannot set a log xattr");
    }
}

/// fsyncs the directory holding `path`, so a rename survives a crash; best effort.
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// Decompresses a file this crate wrote (by extension: gzip or bzip2) or returns the bytes of
/// an uncompressed one.
pub fn read_decompressed(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut out = Vec::new();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(".bz2") {
        bzip2::read::MultiBzDecoder::new(file).read_to_end(&mut out)?;
    } else if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out)?;
    } else {
        io::BufReader::new(file).read_to_end(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn gzip_and_bzip2_round_trip_keeping_the_mtime() {
        let dir = tempfile::tempdir().expect("dir");
        for (compression, ext) in [
            (Compression::default(), ".gz"),
            (
                Compression {
                    kind: CompressionKind::Bzip2,
                    level: 9,
                    extension: ".bz2".into(),
                },
                ".bz2",
            ),
        ] {
            let segment = dir.path().join("service.log-1.log");
            fs::write(&segment, b"one\ntwo\n").expect("write");
            let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_668_785_678);
            File::options()
                .write(true)
                .open(&segment)
                .and_then(|f| f.set_modified(when))
                .expect("mtime");
            let out = compress_segment(&segment, &compression).expect("compressed");
            assert_eq!(out, dir.path().join(format!("service.log-1.log{ext}")));
            assert!(!segment.exists());
            assert_eq!(read_decompressed(&out).expect("read"), b"one\ntwo\n");
            assert_eq!(
                fs::metadata(&out)
                    .and_then(|m| m.modified())
                    .expect("mtime"),
                when
            );
            assert!(!names::compressing(&segment).exists());
        }
    }

    #[test]
    fn an_empty_twin_is_replaced_and_a_complete_one_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let segment = dir.path().join("service.log-2.log");
        let twin = dir.path().join("service.log-2.log.gz");
        fs::write(&segment, b"a\n").expect("write");
        fs::write(&twin, b"").expect("write");
        compress_segment(&segment, &Compression::default()).expect("compressed");
        assert_eq!(read_decompressed(&twin).expect("read"), b"a\n");

        fs::write(&segment, b"a\n").expect("write");
        compress_segment(&segment, &Compression::default()).expect("compressed");
        assert!(!segment.exists());
        assert_eq!(read_decompressed(&twin).expect("read"), b"a\n");
    }

    #[test]
    fn a_missing_segment_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let err = compress_segment(&dir.path().join("nope"), &Compression::default())
            .expect_err("missing");
        assert!(err.to_string().contains("cannot open"), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
