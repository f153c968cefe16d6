//! `singularity-executor`: parses arguments, sets up logging, loads the configuration, builds
//! the task backends and runs the executor against the Mesos agent (no subcommand) or one task
//! standalone (`run`). See the library documentation for the exit codes.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use singularity_common::config::{ConfigClass, DaemonArgs};
use singularity_common::exit::ExitStatus as _;
use singularity_executor::run::process::exec_helper;
use singularity_executor::run::select;
use singularity_executor::settings::Settings;
use singularity_executor::{ExecutorError, SERVICE, agent, standalone};
use singularity_runtime::start_daemon;

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
    match run(args.command, Settings::from_loaded(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(
    command: Option<Command>,
    settings: Result<Settings, singularity_executor::settings::MissingClass>,
) -> Result<(), ExecutorError> {
    let settings = Arc::new(settings?);
    let backend = select::backends(&settings)?;
    // One thread drives every task: the supervisors mostly wait, and blocking work (staging,
    // task definitions, /proc scans for thread limits) goes to the blocking pool. Each extra
    // worker would cost its stack and a malloc arena, about 0.25 MB resident.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ExecutorError::AsyncRuntime)?;
    let result = match command {
        None => tokio
            .block_on(agent::serve(settings, backend))
            .map_err(ExecutorError::from),
        Some(Command::Run { task, sandbox }) => tokio
            .block_on(standalone::run_file(settings, backend, &task, sandbox))
            .map_err(ExecutorError::from),
    };
    tokio.shutdown_timeout(Duration::from_secs(1));
    result
}
