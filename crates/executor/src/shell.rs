//! Shell commands: the scheduler asks, in a framework message, for one of the configured
//! `shellCommands` to run against a running task (a thread dump, `lsof`); the executor answers
//! with `SingularityTaskShellCommandUpdate`s (ACKED, STARTED, FINISHED or FAILED, or INVALID).
//!
//! - The task must be known (else the request is ignored) and have a running process (else
//!   INVALID "No task process found"); the command must be configured (else INVALID naming
//!   the available ones).
//! - argv: `shellCommandPrefix` (unless `skipCommandPrefix`, or `skipCommandPrefixDockerOnly`
//!   for a container task), the command, then the `flag` of each requested option, in the
//!   descriptor's order. Elements equal to `shellCommandPidPlaceholder` become the pid in
//!   `<taskDir>/<shellCommandPidFile>` (unreadable: INVALID), else 1 in a container, else the
//!   task's main pid; elements equal to `shellCommandUserPlaceholder` become the task user.
//! - Output: `<taskDir>/<shellCommandOutFile>` with `{NAME}` (the request's `logfileName`,
//!   else the name lowercased with whitespace and `/` as `-`) and `{TIMESTAMP}` (the
//!   request's) filled in; a `#` header naming the command line comes first.
//! - A plain task's command runs on the host in its own process group, from the executor's
//!   working directory, with `TASK_SANDBOX_DIR=<taskDir>`; a container task's runs inside its
//!   container through the runtime ([`ContainerExec`]), with `TASK_SANDBOX_DIR` the sandbox
//!   as the container sees it. A command still running when its task ends is SIGKILLed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use singularity_common::config::types::ShellCommand;
use tokio_util::sync::CancellationToken;

use crate::agent::framework_messages::{ShellCommandRequest, ShellUpdate};
use crate::run::{ContainerExec, RunningCommand, ShellPlace};
use crate::settings::Settings;

/// The sandbox as a container sees it.
pub const CONTAINER_SANDBOX: &str = "/mnt/mesos/sandbox";

/// How long a killed command's output may take to be written before it is abandoned.
const KILLED_SETTLE: Duration = Duration::from_secs(5);

/// What a running task offers to shell commands.
#[derive(Debug, Clone)]
pub struct ShellTarget {
    /// `<sandbox>/<safeTaskId>`.
    pub task_dir: PathBuf,
    /// The task user (`executorData.user`, else `defaultRunAsUser`), for `{USER}`.
    pub user: String,
    /// The task's main pid, for `{PID}` of a plain task.
    pub pid: u32,
    /// Where commands run.
    pub place: ShellPlace,
    /// Cancelled when the task has ended: commands still running are killed.
    pub ended: CancellationToken,
}

/// A task's [`ShellTarget`] while its process runs; empty before and after.
#[derive(Debug, Default)]
pub struct ShellSlot(Mutex<Option<ShellTarget>>);

impl ShellSlot {
    /// Publishes the running task.
    pub fn set(&self, target: ShellTarget) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
    }

    /// The running task, if any.
    pub fn get(&self) -> Option<ShellTarget> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The task has ended: commands still running are killed and new ones refused.
    pub fn end(&self) {
        if let Some(target) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            target.ended.cancel();
        }
    }
}

/// Why a request is refused (the INVALID update's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The task has no running process.
    #[error("No task process found")]
    NoProcess,
    /// No configured command has the name.
    #[error("\"{name}\" command not found. Currently available commands are: [{available}]")]
    UnknownCommand {
        /// The requested name.
        name: String,
        /// The configured names, comma separated.
        available: String,
    },
    /// The pid file exists but holds no pid.
    #[error("No PID found due to exception reading pid file: {reason}")]
    PidFile {
        /// What is wrong with it.
        reason: String,
    },
}

/// The command line of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// What runs (on the host, or inside the container).
    pub argv: Vec<String>,
    /// What the ACKED update and the output header show.
    pub shown: Vec<String>,
}

/// Builds the command line of `request` for `target`.
pub fn build_command(
    settings: &Settings,
    request: &ShellCommandRequest,
    target: &ShellTarget,
) -> Result<CommandLine, Invalid> {
    let config = &settings.executor;
    let descriptor = find_command(&config.shell_commands, &request.name)?;
    let container = match &target.place {
        ShellPlace::Host => None,
        ShellPlace::Container(exec) => Some(exec),
    };
    let mut argv = Vec::new();
    let skip_prefix = descriptor.skip_command_prefix
        || (container.is_some() && descriptor.skip_command_prefix_docker_only);
    if !skip_prefix {
        argv.extend(config.shell_command_prefix.iter().cloned());
    }
    argv.extend(descriptor.command.iter().cloned());
    for element in &mut argv {
        if *element == config.shell_command_pid_placeholder {
            let pid_file = target.task_dir.join(&config.shell_command_pid_file);
            let pid = match read_pid_file(&pid_file)? {
                Some(pid) => pid,
                None if container.is_some() => 1,
                None => i64::from(target.pid),
            };
            *element = pid.to_string();
        } else if *element == config.shell_command_user_placeholder {
            element.clone_from(&target.user);
        }
    }
    for option in &descriptor.options {
        if request.options.contains(&option.name) {
            argv.push(option.flag.clone());
        }
    }
    let shown = match container {
        Some(exec) => exec.shown_as().into_iter().chain(argv.clone()).collect(),
        None => argv.clone(),
    };
    Ok(CommandLine { argv, shown })
}

fn find_command<'a>(commands: &'a [ShellCommand], name: &str) -> Result<&'a ShellCommand, Invalid> {
    commands
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Invalid::UnknownCommand {
            name: name.to_owned(),
            available: commands
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The pid in `path`: `None` when the file does not exist. Like Singularity, the whole file
/// less its final line break must be the number.
fn read_pid_file(path: &Path) -> Result<Option<i64>, Invalid> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Invalid::PidFile {
                reason: format!("{}: {error}", path.display()),
            });
        }
    };
    let number = text.strip_suffix('\n').unwrap_or(&text);
    let number = number.strip_suffix('\r').unwrap_or(number);
    number
        .parse::<i32>()
        .map(|pid| Some(i64::from(pid)))
        .map_err(|error| Invalid::PidFile {
            reason: format!("{}: {number:?}: {error}", path.display()),
        })
}

/// The output file name of `request`.
pub fn output_file_name(pattern: &str, request: &ShellCommandRequest) -> String {
    let name = request
        .logfile_name
        .clone()
        .unwrap_or_else(|| logfile_name_of(&request.name));
    pattern
        .replace("{NAME}", &name)
        .replace("{TIMESTAMP}", &request.timestamp.to_string())
}

/// A command name as a file name part: lowercased, whitespace and `/` as `-`.
fn logfile_name_of(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_whitespace() || c == '/' {
                '-'
            } else {
                c
            }
        })
        .collect::<String>()
        .to_lowercase()
}

/// Sends the updates of one request.
pub trait UpdateSink: Send + Sync {
    /// Sends `update` to the scheduler.
    fn send(&self, update: Vec<u8>) -> crate::run::BoxFuture<'_, ()>;
}

/// Runs `request` against the task in `slot` (`None` when the task has no running process),
/// sending every update to `sink`, until the command ends or its task does.
pub async fn run(
    settings: &Settings,
    request: ShellCommandRequest,
    target: Option<ShellTarget>,
    sink: &dyn UpdateSink,
) {
    let now = || chrono::Utc::now().timestamp_millis();
    let Some(target) = target else {
        let message = Invalid::NoProcess.to_string();
        sink.send(request.update(ShellUpdate::Invalid, &message, None, now()))
            .await;
        return;
    };
    let line = match build_command(settings, &request, &target) {
        Ok(line) => line,
        Err(invalid) => {
            tracing::warn!(task_id = request.task_id, name = request.name, %invalid, "shell command refused");
            sink.send(request.update(ShellUpdate::Invalid, &invalid.to_string(), None, now()))
                .await;
            return;
        }
    };
    let file_name = output_file_name(&settings.executor.shell_command_out_file, &request);
    let shown = line.shown.join(" ");
    sink.send(request.update(ShellUpdate::Acked, &shown, Some(&file_name), now()))
        .await;
    tracing::info!(
        task_id = request.task_id,
        command = shown,
        output = file_name,
        "shell command"
    );
    let output_path = target.task_dir.join(&file_name);
    let result = run_command(&line, &target, &output_path, |pid| {
        let message = format!("pid - {}", pid.map_or("null".to_owned(), |p| p.to_string()));
        sink.send(request.update(ShellUpdate::Started, &message, None, now()))
    })
    .await;
    let (kind, message) = match result {
        Ok(code) => (ShellUpdate::Finished, format!("Finished with code {code}")),
        Err(failure) => (ShellUpdate::Failed, format!("Failed - {failure}")),
    };
    tracing::info!(
        task_id = request.task_id,
        name = request.name,
        message,
        "shell command ended"
    );
    sink.send(request.update(kind, &message, None, now())).await;
}

/// Why a started request failed (the FAILED update's message after `Failed - `).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("IOException (cannot write {}: {source})", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("IOException (cannot start {program}: {source})")]
    Start { program: String, source: io::Error },
    #[error("IOException (cannot wait for the command: {0})")]
    Wait(io::Error),
    #[error("InterruptedException (the task ended; the command was killed)")]
    Interrupted,
}

async fn run_command<'a>(
    line: &CommandLine,
    target: &ShellTarget,
    output_path: &Path,
    started: impl FnOnce(Option<u32>) -> crate::run::BoxFuture<'a, ()>,
) -> Result<i32, Failure> {
    let output = write_header(output_path, &line.shown).map_err(|source| Failure::Output {
        path: output_path.to_owned(),
        source,
    })?;
    let program = line.argv.first().cloned().unwrap_or_default();
    let running = match &target.place {
        ShellPlace::Host => start_on_host(&line.argv, &target.task_dir, output),
        ShellPlace::Container(exec) => start_in_container(exec.as_ref(), &line.argv, output).await,
    }
    .map_err(|source| Failure::Start { program, source })?;
    started(running.pid).await;
    let RunningCommand { pid, mut exit } = running;
    tokio::select! {
        code = &mut exit => code.map_err(Failure::Wait),
        () = target.ended.cancelled() => {
            if let Some(pid) = pid {
                kill_command(pid, matches!(target.place, ShellPlace::Host));
            }
            let _ = tokio::time::timeout(KILLED_SETTLE, exit).await;
            Err(Failure::Interrupted)
        }
    }
}

/// Appends Singularity's header to the output file and returns it open for the command.
fn write_header(path: &Path, shown: &[String]) -> io::Result<File> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let date = chrono::Local::now().format("%a %b %d %H:%M:%S %Z %Y");
    write!(file, "#\n# {date} -- Launching {}\n#\n", shown.join(" "))?;
    Ok(file)
}

fn start_on_host(argv: &[String], task_dir: &Path, output: File) -> io::Result<RunningCommand> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let errors = output.try_clone()?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("TASK_SANDBOX_DIR", task_dir)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        // Its own group, so that a kill at the task's end reaches what it forked.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let pid = child.id();
    let exit = Box::pin(async move {
        let status = child.wait().await?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    });
    Ok(RunningCommand { pid, exit })
}

async fn start_in_container(
    exec: &dyn ContainerExec,
    argv: &[String],
    output: File,
) -> io::Result<RunningCommand> {
    if argv.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    }
    let env = vec![("TASK_SANDBOX_DIR".to_owned(), CONTAINER_SANDBOX.to_owned())];
    exec.exec(argv.to_vec(), env, output).await
}

fn kill_command(pid: u32, group: bool) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let pid = Pid::from_raw(raw);
    let result = if group {
        killpg(pid, Signal::SIGKILL)
    } else {
        kill(pid, Signal::SIGKILL)
    };
    if let Err(error) = result {
        tracing::debug!(pid = raw, %error, "the shell command was already gone");
    }
}

/// The task user as shell commands see it: `executorData.user`, else `defaultRunAsUser`.
pub fn task_user(executor_data_user: Option<&str>, default_user: &str) -> String {
    executor_data_user
        .filter(|u| !u.is_empty())
        .unwrap_or(default_user)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use singularity_common::config::types::{
        BaseConfig, ExecutorConfig, S3BaseConfig, ShellCommandOption,
    };

    use super::*;
    use crate::run::BoxFuture;

    fn settings(prefix: &[&str], commands: Vec<ShellCommand>) -> Settings {
        let executor = ExecutorConfig {
            shell_commands: commands,
            shell_command_prefix: prefix.iter().map(|s| (*s).to_owned()).collect(),
            ..ExecutorConfig::default()
        };
        Settings::new(BaseConfig::default(), S3BaseConfig::default(), executor)
    }

    fn command(name: &str, argv: &[&str]) -> ShellCommand {
        ShellCommand {
            name: name.to_owned(),
            command: argv.iter().map(|s| (*s).to_owned()).collect(),
            options: vec![
                ShellCommandOption {
                    name: "all".to_owned(),
                    flag: "-a".to_owned(),
                },
                ShellCommandOption {
                    name: "long".to_owned(),
                    flag: "-l".to_owned(),
                },
            ],
            skip_command_prefix: false,
            skip_command_prefix_docker_only: false,
        }
    }

    fn request(name: &str, options: &[&str]) -> ShellCommandRequest {
        ShellCommandRequest {
            task_id: "t".to_owned(),
            task_id_json: serde_json::json!({"id": "t"}),
            name: name.to_owned(),
            timestamp: 77,
            options: options.iter().map(|s| (*s).to_owned()).collect(),
            logfile_name: None,
        }
    }

    #[derive(Debug)]
    struct FakeExec;

    impl ContainerExec for FakeExec {
        fn shown_as(&self) -> Vec<String> {
            vec!["docker".into(), "exec".into(), "se-t".into()]
        }
        fn exec(
            &self,
            _: Vec<String>,
            _: Vec<(String, String)>,
            _: File,
        ) -> BoxFuture<'_, Result<RunningCommand, io::Error>> {
            Box::pin(async { Err(io::Error::other("not run in unit tests")) })
        }
    }

    fn target(dir: &Path, container: bool) -> ShellTarget {
        ShellTarget {
            task_dir: dir.to_owned(),
            user: "app".to_owned(),
            pid: 4242,
            place: if container {
                ShellPlace::Container(std::sync::Arc::new(FakeExec))
            } else {
                ShellPlace::Host
            },
            ended: CancellationToken::new(),
        }
    }

    #[test]
    fn placeholders_prefix_and_options_in_singularitys_order() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = settings(
            &["nice", "{USER}"],
            vec![command("dump", &["jstack", "{PID}", "{USER}"])],
        );
        let line = build_command(
            &settings,
            &request("dump", &["long", "all", "other"]),
            &target(dir.path(), false),
        )
        .expect("valid");
        // Options follow the descriptor's order, not the request's; unknown ones are ignored.
        assert_eq!(
            line.argv,
            ["nice", "app", "jstack", "4242", "app", "-a", "-l"]
        );
        assert_eq!(line.shown, line.argv);

        let line = build_command(&settings, &request("dump", &[]), &target(dir.path(), true))
            .expect("valid");
        assert_eq!(line.argv, ["nice", "app", "jstack", "1", "app"]);
        assert_eq!(
            line.shown.join(" "),
            "docker exec se-t nice app jstack 1 app"
        );
    }

    #[test]
    fn the_pid_file_wins_and_a_bad_one_is_invalid() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = settings(&[], vec![command("dump", &["kill", "-3", "{PID}"])]);
        std::fs::write(dir.path().join(".task-pid"), "99\n").expect("write");
        for container in [false, true] {
            let line = build_command(
                &settings,
                &request("dump", &[]),
                &target(dir.path(), container),
            )
            .expect("valid");
            assert_eq!(line.argv, ["kill", "-3", "99"]);
        }
        std::fs::write(dir.path().join(".task-pid"), "nope").expect("write");
        let invalid = build_command(&settings, &request("dump", &[]), &target(dir.path(), false))
            .expect_err("invalid");
        assert!(
            invalid
                .to_string()
                .starts_with("No PID found due to exception reading pid file: "),
            "{invalid}"
        );
        std::fs::write(dir.path().join(".task-pid"), "").expect("write");
        assert!(matches!(
            build_command(&settings, &request("dump", &[]), &target(dir.path(), false)),
            Err(Invalid::PidFile { .. })
        ));
    }

    #[test]
    fn prefix_skips() {
        let dir = tempfile::tempdir().expect("dir");
        let mut skip = command("skip", &["a"]);
        skip.skip_command_prefix = true;
        let mut docker_only = command("docker-only", &["b"]);
        docker_only.skip_command_prefix_docker_only = true;
        let settings = settings(&["p"], vec![skip, docker_only]);
        let run = |name: &str, container: bool| {
            build_command(
                &settings,
                &request(name, &[]),
                &target(dir.path(), container),
            )
            .expect("valid")
            .argv
        };
        assert_eq!(run("skip", false), ["a"]);
        assert_eq!(run("skip", true), ["a"]);
        assert_eq!(run("docker-only", false), ["p", "b"]);
        assert_eq!(run("docker-only", true), ["b"]);
    }

    #[test]
    fn an_unknown_command_names_the_available_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = settings(&[], vec![command("a", &["x"]), command("b", &["y"])]);
        let invalid = build_command(&settings, &request("c", &[]), &target(dir.path(), false))
            .expect_err("invalid");
        assert_eq!(
            invalid.to_string(),
            "\"c\" command not found. Currently available commands are: [a, b]"
        );
    }

    #[test]
    fn output_file_names() {
        let mut request = request("Thread Dump/All", &[]);
        assert_eq!(
            output_file_name("executor.commands.{NAME}.{TIMESTAMP}.log", &request),
            "executor.commands.thread-dump-all.77.log"
        );
        request.logfile_name = Some("Mine".to_owned());
        assert_eq!(output_file_name("{NAME}-{NAME}", &request), "Mine-Mine");
    }

    #[derive(Debug, Default)]
    struct Recorded(Mutex<Vec<serde_json::Value>>);

    impl UpdateSink for Recorded {
        fn send(&self, update: Vec<u8>) -> BoxFuture<'_, ()> {
            let value = serde_json::from_slice(&update).expect("json");
            self.0.lock().expect("lock").push(value);
            Box::pin(async {})
        }
    }

    impl Recorded {
        fn kinds_and_messages(&self) -> Vec<(String, String)> {
            self.0
                .lock()
                .expect("lock")
                .iter()
                .map(|u| {
                    (
                        u["updateType"].as_str().unwrap_or_default().to_owned(),
                        u["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        }
    }

    #[tokio::test]
    async fn a_host_command_runs_to_its_end_with_the_sandbox_in_its_env() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = settings(
            &[],
            vec![command(
                "env",
                &["/bin/sh", "-c", "echo dir=$TASK_SANDBOX_DIR; exit 3"],
            )],
        );
        let sink = Recorded::default();
        run(
            &settings,
            request("env", &[]),
            Some(target(dir.path(), false)),
            &sink,
        )
        .await;
        let updates = sink.kinds_and_messages();
        assert_eq!(updates.len(), 3, "{updates:?}");
        assert_eq!(updates[0].0, "ACKED");
        assert_eq!(updates[1].0, "STARTED");
        assert!(updates[1].1.starts_with("pid - "), "{updates:?}");
        assert_eq!(
            updates[2],
            ("FINISHED".into(), "Finished with code 3".into())
        );
        let output = std::fs::read_to_string(dir.path().join("executor.commands.env.77.log"))
            .expect("output");
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines[0], "#");
        assert!(lines[1].ends_with(" -- Launching /bin/sh -c echo dir=$TASK_SANDBOX_DIR; exit 3"));
        assert_eq!(lines[2], "#");
        assert_eq!(lines[3], format!("dir={}", dir.path().display()));
    }

    #[tokio::test]
    async fn no_process_and_a_command_that_cannot_start() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = settings(&[], vec![command("missing", &["/nonexistent/x"])]);
        let sink = Recorded::default();
        run(&settings, request("missing", &[]), None, &sink).await;
        run(
            &settings,
            request("missing", &[]),
            Some(target(dir.path(), false)),
            &sink,
        )
        .await;
        let updates = sink.kinds_and_messages();
        assert_eq!(
            updates[0],
            ("INVALID".into(), "No task process found".into())
        );
        assert_eq!(updates[1].0, "ACKED");
        assert_eq!(updates[2].0, "FAILED");
        assert!(
            updates[2]
                .1
                .starts_with("Failed - IOException (cannot start /nonexistent/x: "),
            "{updates:?}"
        );
    }
}
