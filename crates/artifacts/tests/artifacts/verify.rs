//! Streaming md5 verification, md5 of files, and embedded artifacts.
// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;

use singularity_artifacts::{ArtifactError, Md5Writer, md5_file, md5_matches, write_embedded};

use crate::support::{Work, mode};

const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

#[test]
fn md5_writer_passes_bytes_through_and_verifies() {
    let mut writer = Md5Writer::new(Vec::new(), "/cache/app.jar.tmp");
    writer.write_all(b"hel").unwrap();
    writer.write_all(b"lo").unwrap();
    assert_eq!(writer.bytes_written(), 5);
    let verified = writer.finish(Some(HELLO_MD5), Some(5)).unwrap();
    assert_eq!(verified.inner, b"hello");
    assert_eq!(verified.md5, HELLO_MD5);
    assert_eq!(verified.size, 5);
}

#[test]
fn md5_writer_compares_case_insensitively() {
    let mut writer = Md5Writer::new(Vec::new(), "f");
    writer.write_all(b"hello").unwrap();
    let verified = writer
        .finish(Some(&HELLO_MD5.to_uppercase()), None)
        .unwrap();
    assert_eq!(verified.md5, HELLO_MD5, "reported in lowercase");
    assert!(md5_matches("5D41402ABC4B2A76B9719D911017C592", HELLO_MD5));
}

#[test]
fn md5_writer_reports_mismatches() {
    let mut writer = Md5Writer::new(Vec::new(), "/cache/app.jar.tmp");
    writer.write_all(b"hellO").unwrap();
    let err = writer.finish(Some(HELLO_MD5), Some(5)).unwrap_err();
    match &err {
        ArtifactError::Md5Mismatch {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path.to_str(), Some("/cache/app.jar.tmp"));
            assert_eq!(expected, HELLO_MD5);
            assert_ne!(actual, HELLO_MD5);
        }
        other => panic!("expected Md5Mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("/cache/app.jar.tmp"));

    // Size is checked first, as the Java artifact manager did.
    let mut writer = Md5Writer::new(Vec::new(), "f");
    writer.write_all(b"hello!").unwrap();
    let err = writer.finish(Some(HELLO_MD5), Some(5)).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::SizeMismatch {
                expected: 5,
                actual: 6,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn md5_writer_without_expectations_just_reports() {
    let writer = Md5Writer::new(Vec::new(), "f");
    let verified = writer.finish(None, None).unwrap();
    assert_eq!((verified.md5.as_str(), verified.size), (EMPTY_MD5, 0));
}

#[test]
fn md5_of_files() {
    let work = Work::new();
    let path = work.root().join("hello");
    fs::write(&path, b"hello").unwrap();
    assert_eq!(md5_file(&path).unwrap(), HELLO_MD5);
    let empty = work.root().join("empty");
    fs::write(&empty, b"").unwrap();
    assert_eq!(md5_file(&empty).unwrap(), EMPTY_MD5);
    let err = md5_file(&work.root().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"));
}

#[test]
fn write_embedded_creates_parents_and_a_0644_file() {
    let work = Work::new();
    let dir = work.root().join("task/app");
    let path = write_embedded(&dir, "conf/app.yml", b"hello", Some(HELLO_MD5)).unwrap();
    assert_eq!(path, dir.join("conf/app.yml"));
    assert_eq!(fs::read(&path).unwrap(), b"hello");
    assert_eq!(mode(&path), 0o644);

    let path = write_embedded(&dir, "plain", b"", None).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn write_embedded_never_overwrites() {
    let work = Work::new();
    let dir = work.target();
    fs::write(dir.join("app.yml"), b"already here").unwrap();
    let err = write_embedded(&dir, "app.yml", b"hello", None).unwrap_err();
    assert!(
        matches!(err, ArtifactError::AlreadyExists { ref path } if *path == dir.join("app.yml")),
        "{err:?}"
    );
    assert!(err.to_string().contains("app.yml"));
    assert_eq!(fs::read(dir.join("app.yml")).unwrap(), b"already here");
}

#[test]
fn write_embedded_md5_mismatch_leaves_no_file() {
    let work = Work::new();
    let dir = work.target();
    let err = write_embedded(&dir, "app.yml", b"hellO", Some(HELLO_MD5)).unwrap_err();
    assert!(matches!(err, ArtifactError::Md5Mismatch { .. }), "{err:?}");
    assert!(!dir.join("app.yml").exists());
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);

    // Upper-case md5 in the task data is accepted.
    write_embedded(&dir, "app.yml", b"hello", Some(&HELLO_MD5.to_uppercase())).unwrap();
}

#[test]
fn write_embedded_refuses_names_leaving_the_directory() {
    let work = Work::new();
    let dir = work.target();
    for name in ["", "../escape", "a/../../escape", "/etc/escape", "dir/"] {
        let err = write_embedded(&dir, name, b"x", None).unwrap_err();
        assert!(
            matches!(err, ArtifactError::InvalidFilename { ref filename, .. } if filename == name),
            "{name:?}: {err:?}"
        );
    }
    assert!(!work.root().join("escape").exists());
}
