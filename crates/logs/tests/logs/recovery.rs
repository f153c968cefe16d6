//! Recovery from each interrupted state, and a second run that finds nothing to do.

use std::fs;
use std::time::Duration;

use singularity_common::config::{ExecutorConfig, LogrotateAdditionalFile};
use singularity_logs::{compress, recover};

use crate::support::{name, rotated, settings, upload_glob};

#[test]
fn every_interrupted_state_is_recovered_and_a_second_run_is_a_no_op() {
    let dir = tempfile::tempdir().expect("dir");
    let task = dir.path();
    let config = ExecutorConfig {
        logrotate_additional_files: vec![LogrotateAdditionalFile::named("logs/access.log")],
        tail_log_lines_to_save: 2,
        ..ExecutorConfig::default()
    };
    let s = settings(task, &config, r#"{"cmd":"x"}"#);
    let logs = &s.logs_dir;
    fs::create_dir_all(logs).expect("mkdir");
    // A rotation the executor never renamed over service.log.
    fs::write(task.join(".service.log.new"), b"").expect("write");
    // A compression that died half way.
    fs::write(logs.join(".service.log-1.log.compressing"), b"\x1f\x8b").expect("write");
    fs::write(logs.join("service.log-1.log"), b"one\n").expect("write");
    // An external compressor that died: empty twin next to its original.
    fs::write(logs.join("service.log-2.log"), b"two\n").expect("write");
    fs::write(logs.join("service.log-2.log.gz"), b"").expect("write");
    // A segment of an additional file, and the live file the app writes (left alone).
    fs::write(logs.join("access.log-20260101.log"), b"GET /\n").expect("write");
    fs::write(logs.join("access.log"), b"live\n").expect("write");
    // The live service log of the dead executor.
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(&s.service_log, b"a\nb\nc\n").expect("write");

    let report = recover(task, &s).expect("recovered");
    assert_eq!(report.temporaries_removed.len(), 2, "{report:?}");
    assert_eq!(
        report.empty_twins_removed,
        vec![logs.join("service.log-2.log.gz")]
    );
    assert!(report.rotated.is_some());
    assert_eq!(report.tail_file.as_deref(), Some(s.tail_file.as_path()));
    assert_eq!(fs::read(&s.tail_file).expect("tail"), b"b\nc\n");
    assert!(!s.service_log.exists());
    assert_eq!(report.compressed.len(), 4, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");

    let files = rotated(&s);
    let texts: Vec<Vec<u8>> = files
        .iter()
        .map(|f| compress::read_decompressed(f).expect("read"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| upload_glob().is_match(name(f))));
    assert!(texts.contains(&b"one\n".to_vec()));
    assert!(texts.contains(&b"two\n".to_vec()));
    assert!(texts.contains(&b"a\nb\nc\n".to_vec()));
    assert_eq!(
        compress::read_decompressed(&logs.join("access.log-20260101.log.gz")).expect("read"),
        b"GET /\n"
    );
    assert_eq!(fs::read(logs.join("access.log")).expect("live"), b"live\n");
    let mut leftovers: Vec<String> = fs::read_dir(logs)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    leftovers.sort();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let again = recover(task, &s).expect("recovered again");
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn an_empty_service_log_is_removed_and_skip_mode_keeps_a_full_one() {
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(dir.path(), &ExecutorConfig::default(), r#"{"cmd":"x"}"#);
    fs::write(&s.service_log, b"").expect("write");
    let report = recover(dir.path(), &s).expect("recovered");
    assert!(report.service_log_removed);
    assert!(report.rotated.is_none());

    let skip = settings(
        dir.path(),
        &ExecutorConfig::default(),
        r#"{"cmd":"x","skipLogrotateAndCompress":true}"#,
    );
    fs::write(&skip.service_log, b"raw\n").expect("write");
    let report = recover(dir.path(), &skip).expect("recovered");
    assert!(report.rotated.is_none());
    assert_eq!(fs::read(&skip.service_log).expect("kept"), b"raw\n");
}
