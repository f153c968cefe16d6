//! Teardown outputs.

use std::sync::Arc;

use singularity_common::config::ExecutorConfig;
use singularity_logs::ServiceLog;

use crate::support::{rotated, run_task, settings};

#[test]
fn teardown_rotates_writes_the_tail_and_removes_the_empty_log() {
    let dir = tempfile::tempdir().expect("dir");
    let config = ExecutorConfig {
        tail_log_lines_to_save: 3,
        ..ExecutorConfig::default()
    };
    let s = settings(dir.path(), &config, r#"{"cmd":"x"}"#);
    let log = Arc::new(ServiceLog::open(s.clone()).expect("open"));
    assert_eq!(run_task(&log, "seq 1 10"), 0);
    let report = singularity_logs::finish(Some(&log), &s).expect("finished");
    assert_eq!(report.tail_file.as_deref(), Some(s.tail_file.as_path()));
    assert!(report.service_log_removed);
    assert!(!s.service_log.exists());
    assert_eq!(std::fs::read(&s.tail_file).expect("tail"), b"8\n9\n10\n");
    assert_eq!(rotated(&s).len(), 1);
    // Twice is harmless: nothing more to rotate, the tail is kept.
    let again = singularity_logs::finish(None, &s).expect("again");
    assert_eq!(again.tail_file, None);
    assert_eq!(rotated(&s).len(), 1);
}

#[test]
fn skip_logrotate_keeps_service_log_for_the_raw_upload() {
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(
        dir.path(),
        &ExecutorConfig::default(),
        r#"{"cmd":"x","skipLogrotateAndCompress":true}"#,
    );
    let mut sized = s.clone();
    sized.max_segment_bytes = Some(10);
    let log = Arc::new(ServiceLog::open(sized).expect("open"));
    assert_eq!(run_task(&log, "seq 1 100"), 0);
    let report = singularity_logs::finish(Some(&log), &s).expect("finished");
    assert_eq!(report.tail_file, None);
    assert!(!report.service_log_removed);
    let expected: String = (1..=100).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(&s.service_log).expect("log"),
        expected
    );
    assert!(!s.logs_dir.exists(), "nothing is rotated");
}

#[test]
fn a_task_that_wrote_nothing_leaves_no_service_log_and_no_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(dir.path(), &ExecutorConfig::default(), r#"{"cmd":"x"}"#);
    let log = Arc::new(ServiceLog::open(s.clone()).expect("open"));
    assert_eq!(run_task(&log, "true"), 0);
    let report = singularity_logs::finish(Some(&log), &s).expect("finished");
    assert!(report.service_log_removed);
    assert!(rotated(&s).is_empty());
    assert_eq!(std::fs::read(&s.tail_file).expect("tail"), b"");
}
