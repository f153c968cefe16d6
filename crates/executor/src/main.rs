//! `singularity-executor`: parses arguments, sets up logging, loads the configuration and
//! runs the executor against the Mesos agent (no subcommand) or one task standalone (`run`).
//! See the library documentation for the exit codes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use singularity_common::config::{ConfigClass, DaemonArgs};
use singularity_common::exit;
use std::time::Duration;

use singularity_executor::launch;
use singularity_executor::runtime::TaskRuntime;
use singularity_executor::runtime::container::{ContainerOptions, ContainerRuntime};
use singularity_executor::runtime::docker::DockerEngine;
use singularity_executor::runtime::process::ProcessRuntime;
use singularity_executor::runtime::select::SelectRuntime;
use singularity_executor::settings::Settings;
use singularity_executor::{SERVICE, agent, exec_helper, standalone};
use singularity_mesos::AgentEnv;
use singularity_runtime::{Shutdown, start_daemon};

/// Mesos custom executor for Singularity tasks. Without a subcommand it serves the Mesos
/// agent that started it (reading the MESOS_* environment).
#[derive(Debug, Parser)]
#[command(name = SERVICE, version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one task without Mesos, printing each status update; exit 0 when it finishes.
    Run {
        /// A Mesos TaskInfo (JSON) or a Singularity deploy-like JSON with executorData.
        task: PathBuf,
        /// Sandbox to run in (default: a new directory under the current one).
        #[arg(long, value_name = "DIR")]
        sandbox: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let mut raw = std::env::args_os();
    if raw.nth(1).as_deref() == Some(OsStr::new(exec_helper::SUBCOMMAND)) {
        return exec_helper::main(raw);
    }

    let args = Args::parse();
    let loaded = match start_daemon(
        SERVICE,
        env!("CARGO_PKG_VERSION"),
        &args.daemon.config,
        ConfigClass::FOR_EXECUTOR,
        args.daemon.log_format,
        "info",
    ) {
        Ok(loaded) => loaded,
        Err(code) => return ExitCode::from(code),
    };
    let settings = match Settings::from_loaded(loaded) {
        Ok(settings) => Arc::new(settings),
        Err(error) => {
            tracing::error!(%error, "the configuration is invalid");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let process: Arc<dyn TaskRuntime> = match ProcessRuntime::from_current_exe() {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            tracing::error!(%error, "cannot locate the executor binary");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let container = ContainerRuntime::new(
        DockerEngine::new(
            &settings.executor.docker_socket,
            Duration::from_secs(settings.executor.docker_client_time_limit_seconds.max(1)),
        ),
        ContainerOptions::from_settings(
            &settings,
            &launch::inherited_env(),
            std::env::home_dir().as_deref(),
        ),
    );
    let runtime: Arc<dyn TaskRuntime> = Arc::new(SelectRuntime::new(process, Arc::new(container)));

    // One thread drives every task: the supervisors mostly wait, and blocking work (staging,
    // task definitions, /proc scans for thread limits) goes to the blocking pool. Each extra
    // worker would cost its stack and a malloc arena, about 0.25 MB resident.
    let tokio = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = match args.command {
        None => tokio.block_on(run_agent(settings, runtime)),
        Some(Command::Run { task, sandbox }) => {
            tokio.block_on(run_standalone(settings, runtime, &task, sandbox))
        }
    };
    tokio.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}

async fn run_agent(settings: Arc<Settings>, runtime: Arc<dyn TaskRuntime>) -> u8 {
    let agent_env = match AgentEnv::from_env() {
        Ok(env) => env,
        Err(error) => {
            tracing::error!(%error, "not started by a Mesos agent (use `run TASK.json` to run a task alone)");
            return exit::FAILURE;
        }
    };
    tracing::info!(
        executor_id = agent_env.executor_id.value,
        framework_id = agent_env.framework_id.value,
        sandbox = %agent_env.directory.display(),
        "serving the Mesos agent"
    );
    let shutdown = match Shutdown::on_signals() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            tracing::error!(%error, "cannot install signal handlers");
            return exit::FAILURE;
        }
    };
    agent::run(settings, agent_env, runtime, shutdown).await
}

async fn run_standalone(
    settings: Arc<Settings>,
    runtime: Arc<dyn TaskRuntime>,
    task_file: &Path,
    sandbox: Option<PathBuf>,
) -> u8 {
    let task = match standalone::load_task(task_file) {
        Ok(task) => task,
        Err(error) => {
            tracing::error!(%error, "cannot use the task file");
            return exit::FAILURE;
        }
    };
    let sandbox = match make_sandbox(sandbox) {
        Ok(sandbox) => sandbox,
        Err(error) => {
            tracing::error!(%error, "cannot create the sandbox");
            return exit::FAILURE;
        }
    };
    tracing::info!(task_id = task.task_id.value, sandbox = %sandbox.display(), "running one task");
    standalone::run(settings, runtime, task, sandbox).await
}

/// The sandbox: `dir` (created if missing), else a new `singularity-run-*` directory under
/// the current one; absolute either way.
fn make_sandbox(dir: Option<PathBuf>) -> std::io::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("singularity-run-")
            .tempdir_in(".")?
            .keep(),
    };
    std::path::absolute(dir)
}
