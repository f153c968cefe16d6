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
    unique_segment_from(dir, log_name, dateformat, at, compressed_ext, 0).0
}

/// [`unique_segment`] numbered `first` or above, with the number taken. A writer passes one
/// more than its previous number for the same date, so a name the uploader has already taken
/// away (and uploaded under a key that may not hold a time) is never given again.
pub fn unique_segment_from(
    dir: &Path,
    log_name: &str,
    dateformat: &str,
    at: DateTime<Local>,
    compressed_ext: &str,
    first: u32,
) -> (PathBuf, u32) {
    let mut n = first;
    loop {
        let name = segment_name_numbered(log_name, dateformat, at, n);
        let path = dir.join(&name);
        if !path.exists() && !dir.join(format!("{name}{compressed_ext}")).exists() {
            return (path, n);
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

/// The rotated segments (compressed or not) of `log_name` in `dir`, oldest first: by date
/// text, then by the number a same-date rotation got. `dateformat` (the one the segments were
/// named with) tells where the date text ends, as it may itself contain `-` or `.`.
pub fn segments_in_order(
    dir: &Path,
    log_name: &str,
    dateformat: &str,
) -> std::io::Result<Vec<PathBuf>> {
    let separators = date_separators(dateformat);
    let mut keyed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_segment_of(&name, log_name) || is_temporary(&name) {
            continue;
        }
        keyed.push((order_key(&name, log_name, &separators), entry.path()));
    }
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, path)| path).collect())
}

/// The `-` and `.` in a date text of `dateformat`, in order. Every date a format produces
/// has the same ones, so a sample of today's date tells them.
fn date_separators(dateformat: &str) -> Vec<char> {
    use std::fmt::Write as _;
    let mut sample = String::new();
    if write!(sample, "{}", Local::now().format(dateformat)).is_err() {
        // Not a strftime format (settings refuse those): no separators assumed.
        return Vec::new();
    }
    sample.chars().filter(|c| matches!(c, '-' | '.')).collect()
}

/// `(date text, number)` of a segment name `<log_name>-<date>[-<n>][.<ext>…]`, where the date
/// text holds `separators` and ends at the next `-` or `.` after them.
fn order_key(name: &str, log_name: &str, separators: &[char]) -> (String, u32) {
    let rest = &name[log_name.len() + 1..];
    let mut inside = 0;
    for separator in separators {
        match rest[inside..].find(*separator) {
            Some(at) => inside += at + 1,
            None => break,
        }
    }
    let date_end = rest[inside..]
        .find(['-', '.'])
        .map_or(rest.len(), |at| inside + at);
    let number = rest[date_end..]
        .strip_prefix('-')
        .map(|after| after.split('.').next().unwrap_or(after))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (rest[..date_end].to_owned(), number)
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
        let (third, n) = unique_segment_from(dir.path(), "service.log", "%s", t, ".gz", 5);
        assert_eq!(n, 5);
        assert!(
            third.to_string_lossy().ends_with("-5.log"),
            "{}",
            third.display()
        );
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
    fn numbered_segments_sort_after_their_first() {
        let dir = tempfile::tempdir().expect("dir");
        for name in [
            "service.log-2.log.gz",
            "service.log-1-1.log.gz",
            "service.log-1.log.gz",
            "service.log-1-10.log",
            "service.log-1-2.log.gz",
            "other",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(
            ordered(dir.path(), "%s"),
            [
                "service.log-1.log.gz",
                "service.log-1-1.log.gz",
                "service.log-1-2.log.gz",
                "service.log-1-10.log",
                "service.log-2.log.gz"
            ]
        );
    }

    /// The names `segments_in_order` lists in `dir`, for `service.log` rotated with `dateformat`.
    fn ordered(dir: &Path, dateformat: &str) -> Vec<String> {
        segments_in_order(dir, "service.log", dateformat)
            .expect("listed")
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn dates_with_dashes_and_dots_are_not_taken_for_numbers() {
        let dir = tempfile::tempdir().expect("dir");
        let expected = [
            "service.log-2026-03-02.log.gz",
            "service.log-2026-03-11.log.gz",
            "service.log-2026-03-11-1.log.gz",
            "service.log-2026-03-11-2.log",
            "service.log-2026-03-11-10.log.gz",
            "service.log-2026-03-12.log.gz",
        ];
        for name in expected.iter().rev() {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(ordered(dir.path(), "%Y-%m-%d"), expected);

        let dir = tempfile::tempdir().expect("dir");
        let expected = [
            "service.log-2026.03.11-0959.log.gz",
            "service.log-2026.03.11-0959-1.log.gz",
            "service.log-2026.03.11-1000.log.gz",
        ];
        for name in expected.iter().rev() {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(ordered(dir.path(), "%Y.%m.%d-%H%M"), expected);
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
