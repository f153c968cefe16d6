//! `singularity-executor-cleanup`: parses arguments, sets up logging, loads and checks the
//! configuration, builds the API client and the container engine and runs one cleanup pass.
//! Exit codes: 0 after a pass (a safe-mode or API stop included), 1 on an unexpected failure,
//! 78 for an invalid configuration.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use singularity_common::config::{ConfigClass, DaemonArgs};
use singularity_containers::DockerEngine;
use singularity_executor_cleanup::{Deps, SERVICE, Settings, SingularityClient, run};
use singularity_runtime::{invalid_config, run_daemon, start_daemon};

/// Finishes what Singularity executors left on this agent: final logs, app directories, task
/// definitions and orphaned containers. Never touches a running task.
#[derive(Debug, Parser)]
#[command(name = SERVICE, version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,

    /// Run the whole pass, printing per task what would be done and why; change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loaded = match start_daemon(
        SERVICE,
        env!("CARGO_PKG_VERSION"),
        &args.daemon.config,
        ConfigClass::FOR_EXECUTOR_CLEANUP,
        args.daemon.log_format,
        "info",
    ) {
        Ok(loaded) => loaded,
        Err(code) => return ExitCode::from(code),
    };
    let settings = match Settings::from_loaded(&loaded, args.dry_run) {
        Ok(settings) => settings,
        Err(error) => return invalid_config(&error),
    };
    let api = match SingularityClient::new(&settings) {
        Ok(api) => api,
        Err(error) => return invalid_config(&error),
    };
    let engine = DockerEngine::new(
        settings.executor.docker_socket.clone(),
        Duration::from_secs(settings.executor.docker_client_time_limit_seconds.max(1)),
    );
    run_daemon(|shutdown| async move {
        run(settings, Deps { api, engine }, shutdown)
            .await
            .map(|_| ())
    })
}
