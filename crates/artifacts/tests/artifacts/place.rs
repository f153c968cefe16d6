//! Placing cached artifacts: copies, identical and different existing destinations, names.
// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use singularity_artifacts::{
    ArtifactError, ExtractLimits, PendingFile, PlaceOutcome, Placement, is_tarball, place_artifact,
    place_file,
};

use crate::support::{ArchiveBuilder, Work, listing, mode};

fn cached(work: &Work, name: &str, content: &[u8]) -> std::path::PathBuf {
    let cache = work.root().join("cache");
    fs::create_dir_all(&cache).unwrap();
    let path = cache.join(name);
    fs::write(&path, content).unwrap();
    path
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn copies_into_a_new_directory_with_mode_0644() {
    let work = Work::new();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let src = cached(&work, "abc-app.jar", &content);
    fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let target = work.root().join("task/sandbox/lib");

    let outcome = place_file(&src, &target, "app.jar").unwrap();
    assert!(
        matches!(outcome, PlaceOutcome::Copied { bytes: 200_000, .. }),
        "{outcome:?}"
    );
    assert_eq!(fs::read(target.join("app.jar")).unwrap(), content);
    assert_eq!(mode(&target.join("app.jar")), 0o644);
    assert_eq!(names(&target), ["app.jar"], "no temporary file left");
    assert_eq!(fs::read(&src).unwrap(), content, "cache untouched");
}

#[test]
fn identical_existing_destination_is_already_present() {
    let work = Work::new();
    let src = cached(&work, "app.jar", b"same bytes");
    let target = work.target();
    fs::write(target.join("app.jar"), b"same bytes").unwrap();
    let before = listing(&target);
    assert_eq!(
        place_file(&src, &target, "app.jar").unwrap(),
        PlaceOutcome::AlreadyPresent
    );
    assert_eq!(listing(&target), before);
}

#[test]
fn different_existing_destination_is_an_error_and_untouched() {
    let work = Work::new();
    let src = cached(&work, "app.jar", b"new bytes!");
    let target = work.target();
    for existing in [&b"old bytes!"[..], &b"shorter"[..]] {
        fs::write(target.join("app.jar"), existing).unwrap();
        let err = place_file(&src, &target, "app.jar").unwrap_err();
        match &err {
            ArtifactError::ExistingDiffers { path, .. } => {
                assert_eq!(*path, target.join("app.jar"));
            }
            other => panic!("expected ExistingDiffers, got {other:?}"),
        }
        assert!(err.to_string().contains("app.jar"));
        assert_eq!(fs::read(target.join("app.jar")).unwrap(), existing);
        assert_eq!(names(&target), ["app.jar"]);
    }
}

#[test]
fn existing_directory_or_symlink_is_not_a_file() {
    let work = Work::new();
    let src = cached(&work, "x", b"x");
    let target = work.target();
    fs::create_dir(target.join("dir")).unwrap();
    std::os::unix::fs::symlink(&src, target.join("link")).unwrap();
    for name in ["dir", "link"] {
        let err = place_file(&src, &target, name).unwrap_err();
        assert!(
            matches!(err, ArtifactError::NotAFile { ref path } if path.ends_with(name)),
            "{err:?}"
        );
    }
}

#[test]
fn bad_file_names_are_refused() {
    let work = Work::new();
    let src = cached(&work, "x", b"x");
    let target = work.root().join("never-created");
    for name in ["", ".", "..", "a/b", "/etc/passwd", "../x", "nul\0byte"] {
        let err = place_file(&src, &target, name).unwrap_err();
        assert!(
            matches!(err, ArtifactError::InvalidFilename { ref filename, .. } if filename == name),
            "{name:?}: {err:?}"
        );
    }
    assert!(!target.exists());
}

#[test]
fn longest_file_name_is_placed() {
    let work = Work::new();
    let src = cached(&work, "x", b"x");
    let target = work.target();
    let name = format!("{}.jar", "é".repeat(125));
    assert_eq!(name.len(), 254);
    place_file(&src, &target, &name).unwrap();
    assert_eq!(names(&target), [name]);
}

#[test]
fn zero_length_file_is_copied() {
    let work = Work::new();
    let src = cached(&work, "empty", b"");
    let target = work.target();
    assert!(matches!(
        place_file(&src, &target, "empty").unwrap(),
        PlaceOutcome::Copied { bytes: 0, .. }
    ));
    assert_eq!(fs::metadata(target.join("empty")).unwrap().len(), 0);
    assert_eq!(
        place_file(&src, &target, "empty").unwrap(),
        PlaceOutcome::AlreadyPresent
    );
}

#[test]
fn place_artifact_extracts_tarballs_and_copies_the_rest() {
    assert!(is_tarball("app.tar.gz"));
    assert!(is_tarball("app.tgz"));
    assert!(!is_tarball("app.tar"));
    assert!(!is_tarball("app.TAR.GZ"));
    assert!(!is_tarball("app.jar"));

    let work = Work::new();
    let target = work.target();
    let archive = ArchiveBuilder::new()
        .file("bin/run", 0o755, b"run")
        .write_gz(work.root(), "0cc1-app.tgz");
    let limits = ExtractLimits::default();

    match place_artifact(&archive, &target, "app.tgz", &limits).unwrap() {
        Placement::Extracted(summary) => assert_eq!(summary.files, 1),
        other => panic!("expected extraction, got {other:?}"),
    }
    assert_eq!(fs::read(target.join("bin/run")).unwrap(), b"run");
    assert!(!target.join("app.tgz").exists());

    // A plain .tar is copied, as the Java executor did.
    match place_artifact(&archive, &target, "app.tar", &limits).unwrap() {
        Placement::File(PlaceOutcome::Copied { .. }) => {}
        other => panic!("expected a copy, got {other:?}"),
    }
    assert_eq!(
        fs::read(target.join("app.tar")).unwrap(),
        fs::read(&archive).unwrap()
    );
}

#[test]
fn a_pending_file_takes_its_name_only_when_published() {
    use std::io::Write as _;
    let work = Work::new();
    let src = cached(&work, "abc-app.jar", b"downloaded bytes");
    let target = work.target();

    let pending = PendingFile::create(&target, "app.jar").unwrap().unwrap();
    let mut file = pending.file();
    file.write_all(b"downloaded bytes").unwrap();
    assert!(!target.join("app.jar").exists());
    assert_eq!(names(&target).len(), 1, "one temporary file");

    assert_eq!(
        pending.publish(&src).unwrap(),
        PlaceOutcome::WrittenAhead { bytes: 16 }
    );
    assert_eq!(
        fs::read(target.join("app.jar")).unwrap(),
        b"downloaded bytes"
    );
    assert_eq!(mode(&target.join("app.jar")), 0o644);
    assert_eq!(names(&target), ["app.jar"]);
}

#[test]
fn a_pending_file_dropped_leaves_nothing() {
    let work = Work::new();
    let target = work.target();
    let pending = PendingFile::create(&target, "app.jar").unwrap().unwrap();
    drop(pending);
    assert!(names(&target).is_empty());
}

#[test]
fn a_pending_file_meets_a_destination_placed_meanwhile() {
    use std::io::Write as _;
    let work = Work::new();
    let src = cached(&work, "abc-app.jar", b"downloaded bytes");
    let target = work.target();

    // Identical: already present, and the temporary file is gone.
    let pending = PendingFile::create(&target, "app.jar").unwrap().unwrap();
    pending.file().write_all(b"downloaded bytes").unwrap();
    fs::write(target.join("app.jar"), b"downloaded bytes").unwrap();
    assert_eq!(pending.publish(&src).unwrap(), PlaceOutcome::AlreadyPresent);
    assert_eq!(names(&target), ["app.jar"]);

    // Different: an error naming it, the destination untouched.
    let pending = PendingFile::create(&work.root().join("target"), "other.jar")
        .unwrap()
        .unwrap();
    pending.file().write_all(b"downloaded bytes").unwrap();
    fs::write(target.join("other.jar"), b"another file").unwrap();
    let error = pending.publish(&src).unwrap_err();
    assert!(error.to_string().contains("other.jar"), "{error}");
    assert_eq!(fs::read(target.join("other.jar")).unwrap(), b"another file");
    assert_eq!(names(&target), ["app.jar", "other.jar"]);
}

#[test]
fn nothing_is_written_ahead_where_a_placement_is_not_a_plain_new_file() {
    let work = Work::new();
    let target = work.target();
    fs::write(target.join("app.jar"), b"there already").unwrap();
    assert!(PendingFile::create(&target, "app.jar").unwrap().is_none());
    assert!(
        PendingFile::create(&target, "app.tar.gz")
            .unwrap()
            .is_none()
    );
    assert!(PendingFile::create(&target, "app.tgz").unwrap().is_none());
    let missing = work.root().join("not-yet");
    assert!(PendingFile::create(&missing, "app.jar").unwrap().is_none());
    assert!(!missing.exists());
    assert!(PendingFile::create(&target, "../escape.jar").is_err());
    assert_eq!(names(&target), ["app.jar"]);
}

/// A pending file left by a killed download (nobody holds its lock) is removed when the next
/// one for the same name is created; one still being written is kept, and so are others'.
#[test]
fn dead_pending_files_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join(".app.jar.dead01.part");
    let other = dir.path().join(".other.jar.dead02.part");
    std::fs::write(&dead, b"half").unwrap();
    std::fs::write(&other, b"half").unwrap();
    let live = singularity_artifacts::PendingFile::create(dir.path(), "app.jar")
        .unwrap()
        .unwrap();
    assert!(!dead.exists(), "the dead pending file stays");
    assert!(other.exists(), "another name's file was removed");
    let again = singularity_artifacts::PendingFile::create(dir.path(), "app.jar")
        .unwrap()
        .unwrap();
    let pending: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".app.jar."))
        .collect();
    assert_eq!(
        pending.len(),
        2,
        "a live pending file was removed: {pending:?}"
    );
    drop((live, again));
}
