//! Extraction: real archives (built with the tar crate, and by the system `tar`), extracted
//! into real directories.
// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use singularity_artifacts::{
    ArtifactError, ExtractLimits, ExtractSummary, extract_tar, extract_tar_gz,
};
use tar::EntryType;

use crate::support::{
    self, ArchiveBuilder, MTIME, Work, listing, listing_seconds, mode, mtime, populate,
    staging_leftovers,
};

fn limits() -> ExtractLimits {
    ExtractLimits::default()
}

/// Extracts `archive` into a target that already holds some files, expects a failure, and
/// checks that the target is exactly as before. Returns the error.
fn refused(archive: ArchiveBuilder) -> ArtifactError {
    refused_with(archive, &limits(), true)
}

fn refused_with(archive: ArchiveBuilder, limits: &ExtractLimits, prefill: bool) -> ArtifactError {
    let work = Work::new();
    let target = work.target();
    if prefill {
        populate(&target);
    }
    let path = archive.write_gz(work.root(), "app.tar.gz");
    let before = listing(&target);
    let err = extract_tar_gz(&path, &target, limits).expect_err("extraction should fail");
    assert_eq!(listing(&target), before, "target changed after: {err}");
    assert!(staging_leftovers(&target).is_empty());
    err
}

fn assert_unsafe(err: &ArtifactError, expected_entry: &str, reason_part: &str) {
    match err {
        ArtifactError::UnsafeEntry { entry, reason, .. } => {
            assert_eq!(entry, expected_entry);
            assert!(
                reason.to_string().contains(reason_part),
                "reason {reason:?}"
            );
        }
        other => panic!("expected UnsafeEntry for {expected_entry}, got {other:?}"),
    }
    assert!(err.to_string().contains(expected_entry), "{err}");
}

#[test]
fn happy_path_files_dirs_modes_links_and_mtimes() {
    let work = Work::new();
    let target = work.target();
    let archive = ArchiveBuilder::new()
        .dir("app/", 0o750)
        .dir("app/bin/", 0o755)
        .file("app/bin/run", 0o755, b"#!/bin/sh\necho hi\n")
        .file("app/conf/app.yml", 0o600, b"port: 8080\n")
        .file("app/empty", 0o644, b"")
        .file_with_mtime("app/old", 0o444, b"old", 1_000_000)
        .file("app/suid", 0o4755, b"no setuid please")
        .symlink("app/conf/run", "../bin/run")
        .symlink("app/current", "conf")
        .symlink("app/dangling", "not-there-yet")
        .hard_link("app/bin/run2", "app/bin/run")
        .dir("app/ro/", 0o555)
        .file("app/ro/inside", 0o644, b"in a read-only dir")
        .write_gz(work.root(), "app.tar.gz");

    let summary = extract_tar_gz(&archive, &target, &limits()).unwrap();
    assert_eq!(
        summary,
        ExtractSummary {
            entries: 13,
            files: 6,
            directories: 3,
            symlinks: 3,
            hard_links: 1,
            bytes: 18 + 11 + 3 + 16 + 18,
        }
    );

    let app = target.join("app");
    assert_eq!(
        fs::read(app.join("bin/run")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode(&app.join("bin/run")), 0o755);
    assert_eq!(mode(&app.join("conf/app.yml")), 0o600);
    assert_eq!(fs::metadata(app.join("empty")).unwrap().len(), 0);
    assert_eq!(mode(&app.join("old")), 0o444);
    assert_eq!(mtime(&app.join("old")), 1_000_000);
    assert_eq!(mtime(&app.join("bin/run")), MTIME as i64);
    assert_eq!(mode(&app.join("suid")), 0o755, "setuid is dropped");
    assert_eq!(mode(&app), 0o750);
    assert_eq!(
        mtime(&app),
        MTIME as i64,
        "directory mtime set after its children"
    );
    assert_eq!(mode(&app.join("ro")), 0o555);
    assert_eq!(
        fs::read(app.join("ro/inside")).unwrap(),
        b"in a read-only dir"
    );
    // Implicit parent, not listed in the archive.
    assert_eq!(mode(&app.join("conf")), 0o755);

    assert_eq!(
        fs::read_link(app.join("conf/run")).unwrap(),
        Path::new("../bin/run")
    );
    assert_eq!(
        fs::read(app.join("conf/run")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        fs::read_link(app.join("current")).unwrap(),
        Path::new("conf")
    );
    assert_eq!(
        mtime(&app.join("current")),
        MTIME as i64,
        "symlink's own mtime"
    );
    assert!(
        fs::symlink_metadata(app.join("dangling"))
            .unwrap()
            .is_symlink()
    );

    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(app.join("bin/run")).unwrap().ino(),
        fs::metadata(app.join("bin/run2")).unwrap().ino(),
        "hard link shares the inode"
    );
    assert!(staging_leftovers(&target).is_empty());
}

#[test]
fn archive_made_by_system_tar() {
    let work = Work::new();
    let src = work.root().join("src");
    fs::create_dir_all(src.join("lib/deep/er")).unwrap();
    fs::write(
        src.join("start.sh"),
        b"#!/bin/sh\nexec java -jar lib/app.jar\n",
    )
    .unwrap();
    fs::set_permissions(src.join("start.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("lib/app.jar"), vec![7u8; 300_000]).unwrap();
    fs::write(src.join("lib/deep/er/empty"), b"").unwrap();
    fs::set_permissions(src.join("lib/deep"), fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::symlink("lib/app.jar", src.join("app.jar")).unwrap();
    // A name longer than the 100-byte ustar field, to exercise long-name records.
    let long = "a-rather-long-file-name-".repeat(6);
    fs::write(src.join("lib").join(&long), b"long").unwrap();

    // GNU long-name records in one, pax extended headers in the other.
    for format in ["gnu", "pax"] {
        let archive = work.root().join(format!("app-{format}.tgz"));
        let status = Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .expect("run system tar");
        assert!(status.success());

        let target = work.root().join(format!("target-{format}"));
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o751)).unwrap();
        let summary = extract_tar_gz(&archive, &target, &limits()).unwrap();
        assert_eq!(summary.files, 4, "{format}");
        assert_eq!(summary.symlinks, 1, "{format}");
        assert_eq!(summary.bytes, 37 + 300_000 + 4, "{format}");

        // Same tree, except the root itself, whose mode the archive's `./` does not change.
        let mut expected = listing_seconds(&src);
        let mut actual = listing_seconds(&target);
        expected.retain(|line| !line.starts_with("\"\" "));
        actual.retain(|line| !line.starts_with("\"\" "));
        assert_eq!(actual, expected, "{format}");
        assert_eq!(mode(&target), 0o751, "{format}");
        assert!(staging_leftovers(&target).is_empty());
    }
}

#[test]
fn plain_tar_variant() {
    let work = Work::new();
    let target = work.target();
    let archive = work.root().join("app.tar");
    fs::write(
        &archive,
        ArchiveBuilder::new().file("a/b.txt", 0o640, b"plain").tar(),
    )
    .unwrap();
    let summary = extract_tar(&archive, &target, &limits()).unwrap();
    assert_eq!(summary.files, 1);
    assert_eq!(fs::read(target.join("a/b.txt")).unwrap(), b"plain");
    assert_eq!(mode(&target.join("a/b.txt")), 0o640);
}

#[test]
fn missing_target_dir_is_an_error_naming_it() {
    let work = Work::new();
    let archive = ArchiveBuilder::new()
        .file("f", 0o644, b"x")
        .write_gz(work.root(), "a.tar.gz");
    let target = work.root().join("nope");
    let err = extract_tar_gz(&archive, &target, &limits()).unwrap_err();
    assert!(matches!(err, ArtifactError::TargetDirMissing { ref path } if *path == target));
    assert!(err.to_string().contains("nope"));
    assert!(!target.exists());
}

#[test]
fn dotdot_entry_is_refused() {
    let err = refused(ArchiveBuilder::new().file("ok", 0o644, b"fine").file(
        "sub/../../escape",
        0o644,
        b"evil",
    ));
    assert_unsafe(&err, "sub/../../escape", "..");
    let err = refused(ArchiveBuilder::new().file("../escape", 0o644, b"evil"));
    assert_unsafe(&err, "../escape", "..");
}

#[test]
fn absolute_entry_is_refused() {
    let err = refused(ArchiveBuilder::new().file("ok", 0o644, b"fine").file(
        "/tmp/se-test-absolute-escape",
        0o644,
        b"evil",
    ));
    assert_unsafe(&err, "/tmp/se-test-absolute-escape", "absolute");
    assert!(!Path::new("/tmp/se-test-absolute-escape").exists());
}

#[test]
fn relative_symlink_escaping_is_refused() {
    let err = refused(
        ArchiveBuilder::new()
            .dir("app/", 0o755)
            .symlink("app/etc", "../../etc"),
    );
    assert_unsafe(&err, "app/etc", "outside");
}

#[test]
fn absolute_symlink_outside_is_refused() {
    let err = refused(ArchiveBuilder::new().symlink("passwd", "/etc/passwd"));
    assert_unsafe(&err, "passwd", "absolute");
}

#[test]
fn absolute_symlink_inside_target_is_accepted() {
    let work = Work::new();
    let target = work.target();
    let inside = target.join("data/file");
    let archive = ArchiveBuilder::new()
        .file("data/file", 0o644, b"d")
        .symlink("link", inside.to_str().unwrap())
        .write_gz(work.root(), "a.tar.gz");
    extract_tar_gz(&archive, &target, &limits()).unwrap();
    assert_eq!(fs::read(target.join("link")).unwrap(), b"d");
}

#[test]
fn chained_symlinks_that_escape_together_are_refused() {
    // Each link alone stays inside when read lexically; followed, `up` is the target's parent.
    let err = refused(
        ArchiveBuilder::new()
            .symlink("up", "here/..")
            .symlink("here", "."),
    );
    assert_unsafe(&err, "up", "outside");
}

#[test]
fn symlink_through_an_existing_outward_link_is_refused() {
    let work = Work::new();
    let target = work.target();
    std::os::unix::fs::symlink("/", target.join("root")).unwrap();
    let archive = ArchiveBuilder::new()
        .symlink("shadow", "root/etc/shadow")
        .write_gz(work.root(), "a.tar.gz");
    let before = listing(&target);
    let err = extract_tar_gz(&archive, &target, &limits()).unwrap_err();
    assert_unsafe(&err, "shadow", "absolute");
    assert_eq!(listing(&target), before);
}

#[test]
fn links_are_judged_against_the_tree_as_placed() {
    // `root` points out of the target now, but the archive replaces it with a directory, so a
    // link through it stays inside once placed.
    let work = Work::new();
    let target = work.target();
    std::os::unix::fs::symlink("/", target.join("root")).unwrap();
    let archive = ArchiveBuilder::new()
        .file("root/etc/app.conf", 0o644, b"conf")
        .symlink("conf", "root/etc/app.conf")
        .write_gz(work.root(), "a.tar.gz");
    extract_tar_gz(&archive, &target, &limits()).unwrap();
    assert!(fs::symlink_metadata(target.join("root")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("conf")).unwrap(), b"conf");
}

#[test]
fn entry_written_through_an_archive_symlink_is_refused() {
    let work = Work::new();
    let outside = work.root().join("outside");
    fs::create_dir(&outside).unwrap();
    let err = refused(
        ArchiveBuilder::new()
            .dir("real/", 0o755)
            .symlink("alias", "real")
            .file("alias/f", 0o644, b"through a link"),
    );
    assert_unsafe(&err, "alias/f", "symbolic link");
}

#[test]
fn hard_links_outside_or_absent_are_refused() {
    let err = refused(ArchiveBuilder::new().hard_link("h", "../outside"));
    assert_unsafe(&err, "h", "..");
    let err = refused(ArchiveBuilder::new().hard_link("h", "/etc/passwd"));
    assert_unsafe(&err, "h", "absolute");
    // `stdout` exists in the target, but not in the archive.
    let err = refused(ArchiveBuilder::new().hard_link("h", "stdout"));
    assert_unsafe(&err, "h", "not a regular file extracted earlier");
    let err = refused(ArchiveBuilder::new().symlink("l", "x").hard_link("h", "l"));
    assert_unsafe(&err, "h", "not a regular file");
    let err = refused(
        ArchiveBuilder::new()
            .file("real/f", 0o644, b"f")
            .symlink("alias", "real")
            .hard_link("h", "alias/f"),
    );
    assert_unsafe(&err, "h", "not a regular file");
}

#[test]
fn refusals_in_an_empty_target_leave_it_empty() {
    let err = refused_with(
        ArchiveBuilder::new()
            .file("a/b", 0o644, b"staged first")
            .symlink("a/c", "/etc"),
        &limits(),
        false,
    );
    assert_unsafe(&err, "a/c", "absolute");
}

#[test]
fn devices_and_fifos_are_refused() {
    for (kind, name) in [
        (EntryType::Fifo, "fifo"),
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
    ] {
        let err = refused(
            ArchiveBuilder::new()
                .file("ok", 0o644, b"fine")
                .special(kind, "dev/thing"),
        );
        match &err {
            ArtifactError::UnsupportedEntry { entry, kind, .. } => {
                assert_eq!(entry, "dev/thing");
                assert_eq!(*kind, name);
            }
            other => panic!("expected UnsupportedEntry, got {other:?}"),
        }
    }
}

#[test]
fn tar_bomb_fails_fast_and_leaves_nothing() {
    // A 1 GiB file of zeros as concatenated gzip members (one header member, then the same
    // 1 MiB-of-zeros member 1024 times): about 1 MiB on disk.
    const GIB: u64 = 1 << 30;
    let mut header = tar::Header::new_gnu();
    header.set_path("bomb").unwrap();
    header.set_size(GIB);
    header.set_mode(0o644);
    header.set_cksum();
    let zeros = support::gzip(&vec![0u8; 1 << 20]);
    let mut gz = support::gzip(header.as_bytes());
    for _ in 0..GIB >> 20 {
        gz.extend_from_slice(&zeros);
    }
    gz.extend_from_slice(&support::gzip(&[0u8; 1024]));
    assert!(gz.len() < 4 << 20, "compressed size {}", gz.len());

    let work = Work::new();
    let target = work.target();
    populate(&target);
    let archive = work.root().join("bomb.tar.gz");
    fs::write(&archive, gz).unwrap();
    let before = listing(&target);
    let limits = ExtractLimits {
        max_total_bytes: 1 << 20,
        max_entries: 100,
    };
    let started = Instant::now();
    let err = extract_tar_gz(&archive, &target, &limits).unwrap_err();
    match &err {
        ArtifactError::TooLarge { entry, limit, .. } => {
            assert_eq!(entry, "bomb");
            assert_eq!(*limit, 1 << 20);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(started.elapsed().as_secs() < 5, "did not fail fast");
    assert_eq!(listing(&target), before);
    assert!(staging_leftovers(&target).is_empty());
}

#[test]
fn limit_counts_total_bytes_across_files() {
    let limits = ExtractLimits {
        max_total_bytes: 10,
        max_entries: 100,
    };
    let err = refused_with(
        ArchiveBuilder::new()
            .file("a", 0o644, b"123456")
            .file("b", 0o644, b"123456"),
        &limits,
        true,
    );
    assert!(matches!(err, ArtifactError::TooLarge { ref entry, .. } if entry == "b"));

    // Exactly at the limit is fine.
    let work = Work::new();
    let target = work.target();
    let archive = ArchiveBuilder::new()
        .file("a", 0o644, b"12345")
        .file("b", 0o644, b"12345")
        .write_gz(work.root(), "a.tar.gz");
    assert_eq!(
        extract_tar_gz(&archive, &target, &limits).unwrap().bytes,
        10
    );
}

#[test]
fn max_entries_is_enforced() {
    let mut archive = ArchiveBuilder::new();
    for i in 0..10 {
        archive = archive.file(&format!("f{i}"), 0o644, b"x");
    }
    let limits = ExtractLimits {
        max_total_bytes: 1 << 20,
        max_entries: 5,
    };
    let err = refused_with(archive, &limits, true);
    assert!(
        matches!(err, ArtifactError::TooManyEntries { limit: 5, .. }),
        "{err:?}"
    );
}

#[test]
fn oversized_long_name_headers_are_refused() {
    let err = refused(ArchiveBuilder::new().long_name_file(9 << 20));
    assert!(
        matches!(err, ArtifactError::OversizedHeaders { .. }),
        "{err:?}"
    );
}

#[test]
fn corrupt_gzip_is_an_error_and_leaves_nothing() {
    let good = ArchiveBuilder::new()
        .file("a", 0o644, &vec![b'a'; 100_000])
        .file("b", 0o644, b"bbbb")
        .tar_gz();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    for byte in &mut flipped[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    let truncated = good[..good.len() - 12].to_vec();
    let mut bad_crc = good.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    let not_gzip = b"this is not a gzip stream at all".to_vec();

    for (what, bytes) in [
        ("flipped", flipped),
        ("truncated", truncated),
        ("bad crc", bad_crc),
        ("not gzip", not_gzip),
    ] {
        let work = Work::new();
        let target = work.target();
        populate(&target);
        let archive = work.root().join("bad.tar.gz");
        fs::write(&archive, bytes).unwrap();
        let before = listing(&target);
        let err = extract_tar_gz(&archive, &target, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ArtifactError::ReadArchive { .. } | ArtifactError::Truncated { .. }
            ),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("bad.tar.gz"), "{what}: {err}");
        assert_eq!(listing(&target), before, "{what}");
        assert!(staging_leftovers(&target).is_empty(), "{what}");
    }
}

#[test]
fn existing_files_are_overwritten_and_directories_merged() {
    let work = Work::new();
    let target = work.target();
    populate(&target);
    fs::write(target.join("logs/keep.txt"), b"kept").unwrap();
    fs::write(target.join("app.conf"), b"old config that is longer").unwrap();
    let archive = ArchiveBuilder::new()
        .file("app.conf", 0o600, b"new")
        .dir("logs/", 0o750)
        .file("logs/service.log", 0o644, b"replaced\n")
        .file("logs/new.txt", 0o644, b"new file")
        .write_gz(work.root(), "a.tar.gz");
    extract_tar_gz(&archive, &target, &limits()).unwrap();

    assert_eq!(fs::read(target.join("app.conf")).unwrap(), b"new");
    assert_eq!(mode(&target.join("app.conf")), 0o600);
    assert_eq!(
        fs::read(target.join("logs/service.log")).unwrap(),
        b"replaced\n"
    );
    assert_eq!(fs::read(target.join("logs/new.txt")).unwrap(), b"new file");
    assert_eq!(fs::read(target.join("logs/keep.txt")).unwrap(), b"kept");
    assert_eq!(fs::read(target.join("stdout")).unwrap(), b"started\n");
    assert_eq!(mode(&target.join("logs")), 0o750);
    assert_eq!(mtime(&target.join("logs")), MTIME as i64);
    assert!(staging_leftovers(&target).is_empty());
}

#[test]
fn existing_symlink_is_replaced_not_followed() {
    let work = Work::new();
    let target = work.target();
    let outside = work.root().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("conf")).unwrap();
    std::os::unix::fs::symlink(outside.join("f"), target.join("file")).unwrap();
    let archive = ArchiveBuilder::new()
        .file("conf/app.yml", 0o644, b"inside")
        .file("file", 0o644, b"plain")
        .write_gz(work.root(), "a.tar.gz");
    extract_tar_gz(&archive, &target, &limits()).unwrap();

    assert!(fs::symlink_metadata(target.join("conf")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("conf/app.yml")).unwrap(), b"inside");
    assert!(fs::symlink_metadata(target.join("file")).unwrap().is_file());
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
}

#[test]
fn file_over_existing_directory_is_a_conflict() {
    let err = refused(ArchiveBuilder::new().file("a", 0o644, b"placed? no").file(
        "logs",
        0o644,
        b"a file where a directory is",
    ));
    match &err {
        ArtifactError::Conflict { entry, path, .. } => {
            assert_eq!(entry, "logs");
            assert!(path.ends_with("logs"));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[test]
fn later_entries_replace_earlier_ones() {
    let work = Work::new();
    let target = work.target();
    let archive = ArchiveBuilder::new()
        .file("f", 0o644, b"first")
        .file("f", 0o600, b"second")
        .symlink("l", "f")
        .file("l", 0o644, b"now a file")
        .dir("d/", 0o755)
        .file("d", 0o644, b"empty dir replaced")
        .write_gz(work.root(), "a.tar.gz");
    extract_tar_gz(&archive, &target, &limits()).unwrap();
    assert_eq!(fs::read(target.join("f")).unwrap(), b"second");
    assert_eq!(mode(&target.join("f")), 0o600);
    assert!(fs::symlink_metadata(target.join("l")).unwrap().is_file());
    assert_eq!(fs::read(target.join("d")).unwrap(), b"empty dir replaced");
}

#[test]
fn zero_length_files_and_empty_archive() {
    let work = Work::new();
    let target = work.target();
    let archive = ArchiveBuilder::new()
        .file("empty", 0o644, b"")
        .file("dir/also-empty", 0o600, b"")
        .write_gz(work.root(), "a.tar.gz");
    let summary = extract_tar_gz(&archive, &target, &limits()).unwrap();
    assert_eq!((summary.files, summary.bytes), (2, 0));
    assert_eq!(fs::metadata(target.join("empty")).unwrap().len(), 0);
    assert_eq!(
        fs::metadata(target.join("dir/also-empty")).unwrap().len(),
        0
    );

    let empty = ArchiveBuilder::new().write_gz(work.root(), "empty.tar.gz");
    let before = listing(&target);
    let summary = extract_tar_gz(&empty, &target, &limits()).unwrap();
    assert_eq!(summary, ExtractSummary::default());
    assert_eq!(listing(&target), before);
}
