//! Names of rotated segments and of the temporary files around them.
//!
//! A segment is `<name>-<date>[.<ext>]` (Java's logrotate `dateext`, `dateformat
//! -<format>.<ext>`); a second rotation within the same date value gets `-1`, `-2`, … before
//! the extension, so it stays distinct and still matches `<name>*.[gb]z*` once compressed.
//! Temporary files start with a dot and contain no `.gz`/`.bz`, so no upload glob matches
//! them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

/// Suffix of a segment being compressed (after a leading dot).
pub const COMPRESSING_SUFFIX: &str = ".compressing";
/// Suffix of the fresh file renamed over the service log at a rotation (after a leading dot).
pub const FRESH_SUFFIX: &str = ".new";

/// The first candidate name of a segment of `log_name` rotated at `at`.
pub fn segment_name(log_name: &str, dateformat: &str, at: DateTime<Local>) -> String {
    segment_name_numbered(log_name, dateformat, at, 0)
}

fn segment_name_numbered(log_name: &str, dateformat: &str, at: DateTime<Local>, n: u32) -> String {
    let date = at.format(dateformat);
    let numbered = if n == 0 {
        String::new()
    } else {
        format!("-{n}")
    };
    match Path::new(log_name).extension() {
        Some(ext) => format!("{log_name}-{date}{numbered}.{}", ext.to_string_lossy()),
        None => format!("{log_name}-{date}{numbered}"),
    }
}

/// A segment path in `dir` for `log_name` rotated at `at` that neither exists nor exists
/// compressed (`compressed_ext`).
pub fn unique_segment(
    dir: &Path,
    log_name: &str,
    dateformat: &str,
    at: DateTime<Local>,
    compressed_ext: &str,
) -> PathBuf {
    let mut n = 0;
    loop {
        let name = segment_name_numbered(log_name, dateformat, at, n);
        let path = dir.join(&name);
        if !path.exists() && !dir.join(format!("{name}{compressed_ext}")).exists() {
            return path;
        }
        n += 1;
    }
}

/// The compressed file of `segment`.
pub fn compressed(segment: &Path, extension: &str) -> PathBuf {
    let mut name = segment.file_name().unwrap_or_default().to_os_string();
    name.push(extension);
    segment.with_file_name(name)
}

/// The temporary file `segment` is compressed into.
pub fn compressing(segment: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(segment.file_name().unwrap_or_default());
    name.push(COMPRESSING_SUFFIX);
    segment.with_file_name(name)
}

/// The fresh file renamed over `service_log` at a rotation.
pub fn fresh(service_log: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(service_log.file_name().unwrap_or_default());
    name.push(FRESH_SUFFIX);
    service_log.with_file_name(name)
}

/// Whether `name` is one of this crate's temporary files.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(COMPRESSING_SUFFIX) || name.ends_with(FRESH_SUFFIX))
}

/// Whether `name` is a rotated segment of `log_name` (compressed or not): `<log_name>-…`.
pub fn is_segment_of(name: &str, log_name: &str) -> bool {
    name.strip_prefix(log_name)
        .is_some_and(|rest| rest.starts_with('-') && rest.len() > 1)
}

/// Whether `name` ends with a compressed extension the upload glob matches (`.gz`, `.bz2`,
/// or `extension`).
pub fn is_compressed(name: &str, extension: &str) -> bool {
    name.ends_with(extension) || name.ends_with(".gz") || name.ends_with(".bz2")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(secs: i64) -> DateTime<Local> {
        Local.timestamp_opt(secs, 0).single().expect("time")
    }

    #[test]
    fn names_follow_logrotate_dateext() {
        let t = at(1_668_785_678);
        let date = t.format("%Y%m%d").to_string();
        assert_eq!(
            segment_name("service.log", "%Y%m%d%s", t),
            format!("service.log-{date}1668785678.log")
        );
        assert_eq!(
            segment_name("output", "%s", t),
            "output-1668785678".to_owned()
        );
    }

    #[test]
    fn a_second_rotation_in_the_same_second_is_numbered_and_still_globbed() {
        let dir = tempfile::tempdir().expect("dir");
        let t = at(1_668_785_678);
        let first = unique_segment(dir.path(), "service.log", "%s", t, ".gz");
        assert_eq!(first, dir.path().join("service.log-1668785678.log"));
        std::fs::write(compressed(&first, ".gz"), b"x").expect("write");
        let second = unique_segment(dir.path(), "service.log", "%s", t, ".gz");
        assert_eq!(second, dir.path().join("service.log-1668785678-1.log"));
        let glob = globset::Glob::new("service.log*.[gb]z*")
            .expect("glob")
            .compile_matcher();
        assert!(glob.is_match("service.log-1668785678-1.log.gz"));
        assert!(
            !glob.is_match(
                compressing(&second)
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .as_ref()
            )
        );
        assert!(!glob.is_match(".service.log.new"));
    }

    #[test]
    fn temporaries_and_segments_are_told_apart() {
        assert!(is_temporary(".service.log-1.log.compressing"));
        assert!(is_temporary(".service.log.new"));
        assert!(!is_temporary("service.log-1.log"));
        assert!(is_segment_of("service.log-1.log.gz", "service.log"));
        assert!(!is_segment_of("service.log", "service.log"));
        assert!(!is_segment_of("service.logx", "service.log"));
    }
}
