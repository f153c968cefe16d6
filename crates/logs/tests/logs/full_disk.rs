//! A full disk never reaches the task: output is counted, and one marker line states how much
//! was dropped once writing works again. Needs root (mounts a small tmpfs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use singularity_common::config::ExecutorConfig;
use singularity_logs::{ServiceLog, WriterStats};

use crate::support::{run_task, settings};

/// A tmpfs of `size` mounted at `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_drops_and_counts_output_then_writes_one_marker() {
    let dir = tempfile::tempdir().expect("dir");
    let task_dir = dir.path().join("task");
    std::fs::create_dir(&task_dir).expect("mkdir");
    let _fs = Tmpfs::mount(&task_dir, "256k");
    let s = settings(&task_dir, &ExecutorConfig::default(), r#"{"cmd":"x"}"#);
    let log = Arc::new(ServiceLog::open(s.clone()).expect("open"));

    assert_eq!(run_task(&log, "echo before"), 0);
    // Fill the file system.
    let filler = task_dir.join("filler");
    let _ = std::fs::write(&filler, vec![0_u8; 512 * 1024]);
    let code = run_task(&log, "seq 1 100000; echo done; exit 3");
    assert_eq!(code, 3, "the task ran to its own exit");
    let dropped = WriterStats::get(&log.stats().dropped_bytes);
    assert!(dropped > 0, "nothing was dropped");

    std::fs::remove_file(&filler).expect("free space");
    assert_eq!(run_task(&log, "echo after"), 0);
    let text = std::fs::read_to_string(&s.service_log).expect("service.log");
    let markers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("[singularity-executor]"))
        .collect();
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(
        markers[0].contains(&format!(
            "{dropped} bytes of task output could not be written"
        )),
        "{}",
        markers[0]
    );
    assert!(text.starts_with("before\n"), "{text:.40}");
    assert!(
        text.ends_with("after\n"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    // Every byte the task printed was either written or counted as dropped (the marker is
    // the executor's, not the task's).
    let written = WriterStats::get(&log.stats().written_bytes);
    let printed = 7
        + (1..=100_000_u64)
            .map(|i| i.to_string().len() as u64 + 1)
            .sum::<u64>()
        + 5
        + 6;
    assert_eq!(written + dropped, printed);
    log.close();
}
