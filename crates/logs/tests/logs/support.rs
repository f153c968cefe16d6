//! What the topics share.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use singularity_common::config::ExecutorConfig;
use singularity_logs::{LogSettings, ServiceLog, compress, names};

/// Settings of a task in `task_dir` with default configuration and `data` as executor data.
pub fn settings(task_dir: &Path, config: &ExecutorConfig, data: &str) -> LogSettings {
    let data = serde_json::from_str(data).expect("executor data");
    LogSettings::new(config, &data, task_dir).expect("settings")
}

/// Runs `sh -c script` with stdout and stderr each pumped into `log` by a thread, as the
/// executor's pumps do; returns the exit code.
pub fn run_task(log: &Arc<ServiceLog>, script: &str) -> i32 {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pumps: Vec<_> = [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|mut pipe| {
        let log = Arc::clone(log);
        std::thread::spawn(move || {
            let mut buf = vec![0_u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => log.write(&buf[..n]),
                }
            }
        })
    })
    .collect();
    let status = child.wait().expect("wait");
    for pump in pumps {
        pump.join().expect("pump");
    }
    status.code().expect("exit code")
}

/// The rotated files of the service log, oldest first.
pub fn rotated(settings: &LogSettings) -> Vec<PathBuf> {
    names::segments_in_order(
        &settings.logs_dir,
        &settings.service_log_name,
        &settings.dateformat,
    )
    .expect("list logs")
}

/// Everything the task wrote: the rotated files decompressed, oldest first, then what is
/// left in service.log.
pub fn all_output(settings: &LogSettings) -> String {
    let mut out = Vec::new();
    for file in rotated(settings) {
        out.extend(compress::read_decompressed(&file).expect("decompress"));
    }
    if let Ok(live) = std::fs::read(&settings.service_log) {
        out.extend(live);
    }
    String::from_utf8(out).expect("utf-8")
}

/// Asserts `text` is exactly the lines `1..=n`, in order.
pub fn assert_sequence(text: &str, n: usize) {
    let mut expected = 1;
    for line in text.lines() {
        assert_eq!(
            line,
            expected.to_string(),
            "line {expected} missing, duplicated or out of order"
        );
        expected += 1;
    }
    assert_eq!(expected - 1, n, "line count");
}

/// The upload glob of the service log.
pub fn upload_glob() -> globset::GlobMatcher {
    globset::Glob::new("service.log*.[gb]z*")
        .expect("glob")
        .compile_matcher()
}

/// The file name of `path`.
pub fn name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}
