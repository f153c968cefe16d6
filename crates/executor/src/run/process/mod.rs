//! The process backend: `/bin/sh -c <command>` in its own process group.
//!
//! No runner script is generated. The command runs in `app/` with exactly the environment of
//! the [`TaskSpec`]. When it must run as another user, or with a soft open-files limit, the
//! executor starts itself as a small helper (`singularity-executor __exec`, see
//! [`exec_helper`]) that switches user and limit and then `exec`s the shell, so no
//! `sudo` is needed and no unsafe `pre_exec` hook either. The process group is set by the
//! spawn itself, so the helper, the shell and everything they fork share it: signals go to
//! the group, threads are counted over the group, and the group is swept with SIGKILL once
//! the main process has ended.
//!
//! stdout and stderr are pipes owned by the executor, copied into the task's one
//! [`ServiceLog`] writer, so the log is rotated without touching the task.

pub mod exec_helper;
pub mod procfs;

use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use singularity_logs::ServiceLog;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::task::JoinHandle;

use super::{
    BackendError, BoxFuture, ExitStatus, ShellPlace, StartedTask, StopSignal, TaskBackend,
    TaskControl, TaskSpec, count_threads_blocking,
};

/// The shell every command runs under.
pub const SHELL: &str = "/bin/sh";

/// How long the output pumps may run on after the task's processes are gone (a process that
/// left the group can still hold the pipes).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// How long the final sweep keeps killing the group before giving up.
const SWEEP_LIMIT: Duration = Duration::from_secs(5);

/// Sourced before the command when `sourceProfileScripts` is on; output is discarded as
/// Singularity's runner did for `/etc/profile.d`.
const PROFILE_PRELUDE: &str = "for singularity_profile in /etc/profile.d/*.sh; do \
[ -r \"$singularity_profile\" ] && . \"$singularity_profile\" >/dev/null 2>&1; done; \
for singularity_profile in .profile.d/*; do \
[ -r \"$singularity_profile\" ] && . \"$singularity_profile\"; done; \
unset singularity_profile\n";

/// Runs tasks as process groups.
#[derive(Debug, Clone)]
pub struct ProcessBackend {
    helper: PathBuf,
}

impl ProcessBackend {
    /// A backend whose user-switching helper is the executable at `helper` (the executor's
    /// own binary, which understands `__exec`).
    pub fn new(helper: impl Into<PathBuf>) -> Self {
        Self {
            helper: helper.into(),
        }
    }

    /// A backend using the running executable as its helper.
    pub fn from_current_exe() -> io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?))
    }

    /// The script given to `/bin/sh -c`.
    pub fn script(spec: &TaskSpec) -> String {
        if spec.source_profile_scripts {
            format!("{PROFILE_PRELUDE}{}", spec.command)
        } else {
            spec.command.clone()
        }
    }

    fn command(&self, spec: &TaskSpec) -> tokio::process::Command {
        let script = Self::script(spec);
        let mut command = if spec.run_as.is_some() || spec.max_open_files.is_some() {
            let mut command = tokio::process::Command::new(&self.helper);
            command.args(exec_helper::helper_args(
                spec.run_as.as_ref(),
                spec.max_open_files,
                &[SHELL, "-c", &script],
            ));
            command
        } else {
            let mut command = tokio::process::Command::new(SHELL);
            command.arg("-c").arg(script);
            command
        };
        command
            .current_dir(&spec.app_dir)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        command
    }

    async fn start_task(
        &self,
        spec: &TaskSpec,
        log: Arc<ServiceLog>,
    ) -> Result<StartedTask, BackendError> {
        let mut child = self
            .command(spec)
            .spawn()
            .map_err(|source| BackendError::Spawn {
                shell: SHELL,
                task_id: spec.task_id.clone(),
                source,
            })?;
        let Some(pid) = child.id() else {
            return Err(BackendError::NoPid {
                task_id: spec.task_id.clone(),
            });
        };
        let mut pumps = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            widen(&stdout);
            pumps.push(tokio::spawn(pump(stdout, Arc::clone(&log))));
        }
        if let Some(stderr) = child.stderr.take() {
            widen(&stderr);
            pumps.push(tokio::spawn(pump(stderr, Arc::clone(&log))));
        }
        let group = Arc::new(ProcessGroup {
            task_id: spec.task_id.clone(),
            pgid: pid,
        });
        let task_id = spec.task_id.clone();
        let exit = Box::pin(async move {
            let status = child.wait().await.map_err(|source| BackendError::Wait {
                task_id: task_id.clone(),
                source,
            })?;
            sweep_group(&task_id, pid).await;
            drain(pumps).await;
            Ok(ExitStatus {
                code: status.code(),
                signal: status.signal(),
                oom_killed: false,
            })
        });
        Ok(StartedTask {
            pid,
            process_name: Path::new(SHELL)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| SHELL.to_owned()),
            control: group,
            exit,
            kill_grace: None,
            shell: ShellPlace::Host,
        })
    }
}

impl TaskBackend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start<'a>(
        &'a self,
        spec: &'a TaskSpec,
        log: Arc<ServiceLog>,
    ) -> BoxFuture<'a, Result<StartedTask, BackendError>> {
        Box::pin(self.start_task(spec, log))
    }
}

/// A task's process group; its id is the main process id.
#[derive(Debug)]
struct ProcessGroup {
    task_id: String,
    pgid: u32,
}

impl ProcessGroup {
    fn send(&self, signal: StopSignal) -> Result<(), BackendError> {
        let sig = match signal {
            StopSignal::Terminate => Signal::SIGTERM,
            StopSignal::Kill => Signal::SIGKILL,
        };
        match signal_group(self.pgid, sig) {
            Ok(()) => Ok(()),
            Err(errno) => Err(BackendError::Signal {
                task_id: self.task_id.clone(),
                signal,
                source: io::Error::from(errno),
            }),
        }
    }
}

impl TaskControl for ProcessGroup {
    fn signal(&self, signal: StopSignal) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move { self.send(signal) })
    }

    fn thread_count(&self) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            let pgid = self.pgid;
            count_threads_blocking(&self.task_id, move || procfs::group_threads(pgid)).await
        })
    }
}

/// `killpg`; a group with no process left counts as signalled.
fn signal_group(pgid: u32, signal: Signal) -> Result<(), Errno> {
    let Ok(raw) = i32::try_from(pgid) else {
        return Err(Errno::EINVAL);
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// Kills whatever is left of the group until nothing is.
async fn sweep_group(task_id: &str, pgid: u32) {
    let deadline = tokio::time::Instant::now() + SWEEP_LIMIT;
    loop {
        if let Err(errno) = signal_group(pgid, Signal::SIGKILL) {
            tracing::warn!(task_id, pgid, %errno, "cannot kill the rest of the task's process group");
            return;
        }
        match procfs::group_members(pgid) {
            Ok(members) if members.is_empty() => return,
            Ok(members) => {
                tracing::debug!(
                    task_id,
                    left = members.len(),
                    "processes of the task still exiting"
                );
            }
            Err(error) => {
                tracing::warn!(task_id, %error, "cannot scan /proc for the task's processes");
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(task_id, pgid, "processes of the task survived SIGKILL");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the output pumps to reach end of file, within [`OUTPUT_DRAIN`].
async fn drain(pumps: Vec<JoinHandle<()>>) {
    let aborts: Vec<_> = pumps.iter().map(JoinHandle::abort_handle).collect();
    let all = async {
        for pump in pumps {
            let _ = pump.await;
        }
    };
    if tokio::time::timeout(OUTPUT_DRAIN, all).await.is_err() {
        tracing::warn!("task output still open after its processes ended; no longer copied");
        for abort in aborts {
            abort.abort();
        }
    }
}

/// Output pipe capacity: a task writing fast runs ahead of the executor by this much instead of
/// waiting on it every 64 KiB (the kernel default).
const PIPE_BYTES: i32 = 1024 * 1024;

/// Grows a pipe to [`PIPE_BYTES`]; a refusal (above `/proc/sys/fs/pipe-max-size` for a user
/// without CAP_SYS_RESOURCE) keeps the default.
pub(crate) fn widen(pipe: &impl std::os::fd::AsFd) {
    if let Err(error) = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
        tracing::debug!(%error, "task output pipe keeps its default size");
    }
}

/// Copies a pipe into the log until end of file; the writer never fails, so the pipe is
/// always drained and the task never blocks on its output.
async fn pump(mut pipe: impl AsyncRead + Unpin, log: Arc<ServiceLog>) {
    // Large reads cost fewer wake-ups; the pages are only touched when a task writes this fast.
    let mut buf = vec![0_u8; 256 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => log.write(&buf[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read task output");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, command: &str) -> TaskSpec {
        TaskSpec {
            task_id: "t-1".into(),
            task_dir: dir.to_path_buf(),
            app_dir: dir.to_path_buf(),
            command: command.into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            run_as: None,
            max_open_files: None,
            source_profile_scripts: false,
            service_log: dir.join("service.log"),
            container: None,
            container_env: Vec::new(),
            cpus: None,
            mem_mib: None,
            max_threads: None,
            cpu_hard_limit: None,
        }
    }

    #[test]
    fn the_profile_prelude_comes_before_the_command_only_when_asked() {
        let dir = Path::new("/x");
        let mut s = spec(dir, "echo hi; exit 3");
        assert_eq!(ProcessBackend::script(&s), "echo hi; exit 3");
        s.source_profile_scripts = true;
        let script = ProcessBackend::script(&s);
        assert!(script.starts_with("for singularity_profile in /etc/profile.d/*.sh"));
        assert!(script.ends_with("\necho hi; exit 3"));
    }

    fn log(dir: &Path) -> Arc<ServiceLog> {
        let data = serde_json::from_str(r#"{"cmd":"x"}"#).expect("data");
        let settings = singularity_logs::LogSettings::new(
            &singularity_common::config::ExecutorConfig::default(),
            &data,
            dir,
        )
        .expect("settings");
        Arc::new(ServiceLog::open(settings).expect("log"))
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_the_status_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = ProcessBackend::new("/nonexistent");
        let s = spec(dir.path(), "echo out; echo err >&2; exit 7");
        let started = backend.start(&s, log(dir.path())).await.expect("starts");
        let status = started.exit.await.expect("exit status");
        assert_eq!(status.code, Some(7));
        let log = std::fs::read_to_string(dir.path().join("service.log")).expect("log");
        assert!(log.contains("out\n") && log.contains("err\n"), "{log:?}");
    }

    #[tokio::test]
    async fn stop_terminates_the_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = ProcessBackend::new("/nonexistent");
        let s = spec(dir.path(), "sleep 30 & sleep 30");
        let started = backend.start(&s, log(dir.path())).await.expect("starts");
        let pgid = started.pid;
        let status = started
            .stop(Duration::from_secs(5))
            .await
            .expect("exit status");
        assert_eq!(status.signal, Some(15));
        assert_eq!(status.exit_code(), 143);
        assert!(procfs::group_members(pgid).expect("scan").is_empty());
    }
}
