//! The OCI runtime's command line (runc; crun takes the same commands), each container a
//! child of the caller: `run --keep` in the foreground, so the caller waits for the exit code
//! itself and the container's stdout and stderr are the caller's pipes; `kill`, `exec`,
//! `state`, `list` and `delete` beside it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::OciError;
use crate::Signal;

/// Name of the pid file written into the bundle by `run`.
pub const PID_FILE: &str = "container.pid";

/// How long `run` may take to write the container's pid.
const PID_WAIT: Duration = Duration::from_secs(30);

/// An OCI runtime binary and its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    binary: PathBuf,
    root: Option<PathBuf>,
}

/// A container started by [`OciRuntime::run`].
#[derive(Debug)]
pub struct RunningContainer {
    /// The runtime process; it exits with the container's exit code (128 + signal when a
    /// signal ended it), and its stdout and stderr are the container's.
    pub child: Child,
    /// The container's init process on the host.
    pub pid: u32,
}

/// A command started by [`OciRuntime::exec`].
#[derive(Debug)]
pub struct ExecChild {
    /// The runtime process; it exits with the command's exit code.
    pub child: Child,
    /// The command on the host, once the runtime wrote it.
    pub pid: Option<u32>,
}

impl OciRuntime {
    /// The runtime at `binary` (a path, or a name looked up in `PATH`), keeping its state
    /// under `root` (its default, `/run/runc` for runc, when `None`).
    pub fn new(binary: impl Into<PathBuf>, root: Option<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root,
        }
    }

    /// The binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if let Some(root) = &self.root {
            command.arg("--root").arg(root);
        }
        command.stdin(Stdio::null()).kill_on_drop(false);
        command
    }

    /// Runs one runtime command to its end; its stderr is the error's message.
    async fn call(&self, what: &'static str, args: &[&str]) -> Result<Vec<u8>, OciError> {
        let output = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| OciError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(OciError::Runtime {
            what,
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }

    /// Starts the container `id` of the bundle at `bundle` and waits until its init process
    /// exists. stdout and stderr are piped, stdin is empty.
    pub async fn run(&self, id: &str, bundle: &Path) -> Result<RunningContainer, OciError> {
        let pid_file = bundle.join(PID_FILE);
        let _ = std::fs::remove_file(&pid_file);
        let mut child = self
            .command()
            .arg("run")
            .arg("--keep")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| OciError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let pid = wait_for_pid(&pid_file, &mut child).await?;
        Ok(RunningContainer { child, pid })
    }

    /// Sends `signal` to the container's init process.
    pub async fn kill(&self, id: &str, signal: Signal) -> Result<(), OciError> {
        self.call("kill", &["kill", id, signal.name()])
            .await
            .map(drop)
    }

    /// Removes the container's state (and its cgroup), killing what is left of it.
    /// A container that does not exist is not an error.
    pub async fn delete(&self, id: &str) -> Result<(), OciError> {
        match self.call("delete", &["delete", "--force", id]).await {
            Ok(_) => Ok(()),
            Err(OciError::Runtime { message, .. }) if is_not_found(&message) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The ids of every container whose id starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, OciError> {
        let output = self.call("list", &["list", "--format", "json"]).await?;
        // runc prints `null` when there is no container.
        let listed: Option<Vec<serde_json::Value>> =
            serde_json::from_slice(&output).map_err(OciError::List)?;
        Ok(listed
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["id"].as_str())
            .filter(|id| id.starts_with(prefix))
            .map(str::to_owned)
            .collect())
    }

    /// Starts `argv` in the running container `id` with `env` (`NAME=value`) added, its stdout
    /// and stderr appended to `output`. `pid_file` receives the command's host pid.
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        env: &[String],
        output: File,
        pid_file: &Path,
    ) -> Result<ExecChild, OciError> {
        let errors = output.try_clone().map_err(|source| OciError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(pid_file);
        let mut command = self.command();
        command.arg("exec").arg("--pid-file").arg(pid_file);
        for entry in env {
            command.arg("--env").arg(entry);
        }
        let mut child = command
            .arg(id)
            .args(argv)
            .stdout(output)
            .stderr(errors)
            .spawn()
            .map_err(|source| OciError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let pid = wait_for_pid(pid_file, &mut child).await.ok();
        let _ = std::fs::remove_file(pid_file);
        Ok(ExecChild { child, pid })
    }
}

fn is_not_found(message: &str) -> bool {
    message.contains("does not exist") || message.contains("not found")
}

/// Waits for the runtime to write `pid_file`, or to exit first (then its stderr says why).
async fn wait_for_pid(pid_file: &Path, child: &mut Child) -> Result<u32, OciError> {
    let deadline = tokio::time::Instant::now() + PID_WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(pid_file)
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut message = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ = stderr.read_to_string(&mut message).await;
            }
            return Err(OciError::Start {
                status: status.code().unwrap_or(-1),
                message: message.trim().to_owned(),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(OciError::Start {
                status: -1,
                message: format!("no pid in {} after {PID_WAIT:?}", pid_file.display()),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether the kernel's OOM killer killed a process of the cgroup at `cgroups_path` (as in
/// the container's config): the `oom_kill` count of cgroup v1's `memory.oom_control` or v2's
/// `memory.events`. Read before the container is deleted.
pub fn oom_killed(cgroups_path: &str) -> io::Result<bool> {
    let relative = cgroups_path.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup/memory")
            .join(relative)
            .join("memory.oom_control"),
        Path::new("/sys/fs/cgroup")
            .join(relative)
            .join("memory.events"),
    ];
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(oom_kill_count(&text) > 0),
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_kill_count_is_read_from_either_cgroup_version() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1), 2);
        assert_eq!(oom_kill_count(v2), 1);
        assert_eq!(oom_kill_count("oom_kill_disable 0\n"), 0);
    }
}
