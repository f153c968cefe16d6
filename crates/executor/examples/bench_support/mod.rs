//! Shared by the executor benchmarks: percentiles, /proc readings, a config directory, the
//! executor under the fake agent, its updates and the docker CLI.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use singularity_fake_agent::FakeAgent;
use singularity_mesos::TaskState;

/// Longest wait for one status update.
const UPDATE_WAIT: Duration = Duration::from_secs(60);

/// The `p` quantile (0..=1) of `values`, nearest rank.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((values.len() - 1) as f64 * p).round() as usize;
    values[rank]
}

/// A `kB` field of `/proc/<pid>/status` (0 when unreadable).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Config files for base, s3base and executor under `root` (with its directories), the
/// executor's keeping it alive between launches; `executor_extra` lines are appended.
/// Returns the config directory.
pub fn config(root: &Path, executor_extra: &str) -> PathBuf {
    let etc = root.join("etc");
    for d in [
        "etc",
        "sandbox",
        "tasks",
        "s3",
        "tail",
        "cache",
        "logrotate.d",
    ] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into());
    let r = root.display();
    fs::write(
        etc.join("singularity.base.yaml"),
        format!("s3UploaderMetadataDirectory: {r}/s3\nlogWatcherMetadataDirectory: {r}/tail\n"),
    )
    .expect("write");
    fs::write(
        etc.join("singularity.s3base.yaml"),
        format!("artifactCacheDirectory: {r}/cache\n"),
    )
    .expect("write");
    fs::write(
        etc.join("singularity.executor.yaml"),
        format!(
            "globalTaskDefinitionDirectory: {r}/tasks\ndefaultRunAsUser: {user}\n\
             logrotateConfDirectory: {r}/logrotate.d\nidleExecutorShutdownWaitMillis: 600000\n\
             initialIdleExecutorShutdownWaitMillis: 600000\nhardKillAfterMillis: 5000\n\
             {executor_extra}\n"
        ),
    )
    .expect("write");
    etc
}

/// Starts the executor `bin` with the config directory `etc` under `agent`, in `sandbox`,
/// its output discarded.
pub fn spawn_executor(
    bin: impl AsRef<std::ffi::OsStr>,
    etc: &Path,
    sandbox: &Path,
    agent: &FakeAgent,
) -> tokio::process::Child {
    tokio::process::Command::new(bin)
        .arg("--config-dir")
        .arg(etc)
        .env("RUST_LOG", "warn")
        .envs(agent.env_for_executor(sandbox, true))
        .current_dir(sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the executor")
}

/// Waits for task `id`'s TASK_RUNNING (or, with `terminal`, its terminal update); its message.
pub async fn wait_state(agent: &FakeAgent, id: &str, terminal: bool) -> Option<String> {
    let id = id.to_owned();
    agent
        .wait_for_update(
            move |s| {
                s.task_id.value == id
                    && if terminal {
                        s.state.is_terminal()
                    } else {
                        s.state == TaskState::TaskRunning
                    }
            },
            UPDATE_WAIT,
        )
        .await
        .expect("the update arrived")
        .message
}

/// The docker CLI against the engine at `socket`.
pub fn docker(socket: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", format!("unix://{socket}"))
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI")
}
