//! Rotation while a task writes as fast as it can: every line exactly once, names as Java's.

use std::sync::Arc;
use std::time::Duration;

use singularity_common::config::{ExecutorConfig, LogrotateCompressionSettings};
use singularity_logs::{LOG_END_XATTR, LOG_START_XATTR, ServiceLog, WriterStats};

use crate::support::{all_output, assert_sequence, name, rotated, run_task, settings, upload_glob};

#[test]
fn every_line_exactly_once_across_size_and_time_rotations() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = settings(dir.path(), &ExecutorConfig::default(), r#"{"cmd":"x"}"#);
    // 64 KiB segments: about 30 size rotations for 300,000 lines.
    s.max_segment_bytes = Some(64 * 1024);
    // Every rotated file is kept for the check, as upload metadata would keep them.
    s.retention = singularity_logs::Retention::Uploaded { budget_bytes: 0 };
    let log = Arc::new(ServiceLog::open(s.clone()).expect("open"));
    let ticker = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            // The time trigger, fired while the task writes.
            std::thread::sleep(Duration::from_millis(20));
            log.rotate_soon();
        })
    };
    let code = run_task(&log, "seq 1 300000; seq 300001 300010 >&2");
    ticker.join().expect("ticker");
    assert_eq!(code, 0);
    assert!(
        s.service_log.exists(),
        "service.log exists while the task runs"
    );
    let stats_rotations = WriterStats::get(&log.stats().rotations);
    assert!(stats_rotations >= 10, "{stats_rotations} rotations");

    let tail = log.close();
    let files = rotated(&s);
    let glob = upload_glob();
    let pattern = regex_like_java_name();
    for file in &files {
        let n = name(file);
        assert!(glob.is_match(&n), "{n} does not match the upload glob");
        assert!(pattern(&n), "{n} is not service.log-<%Y%m%d%s>[-n].log.gz");
    }
    assert_eq!(files.len() as u64, WriterStats::get(&log.stats().rotations));
    assert_sequence(&all_output(&s), 300_010);
    let expected_tail: String = (300_010 - 2_499..=300_010)
        .map(|i| format!("{i}\n"))
        .collect();
    assert_eq!(String::from_utf8(tail).expect("utf-8"), expected_tail);
}

/// `service.log-<8 digit date><epoch seconds>[-n].log.gz`.
fn regex_like_java_name() -> impl Fn(&str) -> bool {
    |name: &str| {
        let Some(rest) = name.strip_prefix("service.log-") else {
            return false;
        };
        let Some(stem) = rest.strip_suffix(".log.gz") else {
            return false;
        };
        let (date, n) = stem.split_once('-').unwrap_or((stem, "0"));
        date.len() == 18 && date.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u32>().is_ok()
    }
}

#[test]
fn rotation_waits_for_the_line_end_and_skips_empty_segments() {
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(dir.path(), &ExecutorConfig::default(), r#"{"cmd":"x"}"#);
    let log = ServiceLog::open(s.clone()).expect("open");
    log.rotate_soon();
    assert!(rotated(&s).is_empty(), "an empty segment is not rotated");
    log.write(b"first half ");
    log.rotate_soon();
    assert!(rotated(&s).is_empty(), "no rotation inside a line");
    log.write(b"second half\nnext");
    log.write(b" line\n");
    log.close();
    let files = rotated(&s);
    assert_eq!(files.len(), 2);
    assert_eq!(
        singularity_logs::compress::read_decompressed(&files[0]).expect("read"),
        b"first half second half\n"
    );
    assert_eq!(
        singularity_logs::compress::read_decompressed(&files[1]).expect("read"),
        b"next line\n"
    );
}

#[test]
fn bzip2_from_the_compression_settings_and_xattrs_when_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let config = ExecutorConfig {
        logrotate_compression_settings: LogrotateCompressionSettings {
            compress_cmd: Some("/usr/bin/bzip2".into()),
            compress_ext: Some("bz2".into()),
            ..Default::default()
        },
        use_file_attributes: true,
        ..ExecutorConfig::default()
    };
    let s = settings(dir.path(), &config, r#"{"cmd":"x"}"#);
    let log = ServiceLog::open(s.clone()).expect("open");
    log.write(b"one\n");
    let before = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    log.close();
    let files = rotated(&s);
    assert_eq!(files.len(), 1);
    let n = name(&files[0]);
    assert!(n.ends_with(".log.bz2") && upload_glob().is_match(&n), "{n}");
    assert_eq!(
        singularity_logs::compress::read_decompressed(&files[0]).expect("read"),
        b"one\n"
    );
    // mtime is the time of the last line, not of the rotation a second later.
    let mtime = std::fs::metadata(&files[0])
        .and_then(|m| m.modified())
        .expect("mtime");
    assert!(mtime <= before, "mtime {mtime:?} is after the last line");
    let file = std::fs::File::open(&files[0]).expect("open");
    let start = singularity_logs::compress::get_xattr(&file, LOG_START_XATTR).expect("logstart");
    let end = singularity_logs::compress::get_xattr(&file, LOG_END_XATTR).expect("logend");
    let start: i64 = String::from_utf8(start)
        .expect("utf-8")
        .parse()
        .expect("ms");
    let end: i64 = String::from_utf8(end).expect("utf-8").parse().expect("ms");
    assert!(end - start >= 1_000, "logstart {start} logend {end}");
}

#[test]
fn retention_deletes_oldest_over_the_budget_and_counts() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = settings(
        dir.path(),
        &ExecutorConfig::default(),
        r#"{"cmd":"x","defaultS3Bucket":"logs"}"#,
    );
    s.max_segment_bytes = Some(16 * 1024);
    s.retention = singularity_logs::Retention::Uploaded {
        budget_bytes: 8 * 1024,
    };
    // Incompressible lines so the compressed files stay big.
    let log = Arc::new(ServiceLog::open(s.clone()).expect("open"));
    let code = run_task(
        &log,
        "i=0; while [ $i -lt 40 ]; do head -c 3000 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; i=$((i+1)); done",
    );
    assert_eq!(code, 0);
    log.close();
    let deleted = WriterStats::get(&log.stats().deleted_files);
    assert!(deleted > 0, "nothing deleted");
    let left: u64 = rotated(&s)
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    assert!(left <= 8 * 1024 + 16 * 1024, "{left} bytes left");
}
