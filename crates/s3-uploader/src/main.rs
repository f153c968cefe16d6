//! `singularity-s3-uploader`: parses arguments, sets up logging, loads and checks the
//! configuration, builds the S3 clients and runs the uploader until SIGTERM or SIGINT. Exit
//! codes: 0 after a clean stop, 1 on a runtime failure, 78 for an invalid configuration.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use singularity_common::config::{ConfigClass, DaemonArgs};
use singularity_common::exit;
use singularity_runtime::{Shutdown, start_daemon};
use singularity_s3_uploader::{Deps, RunError, SERVICE, Settings, run};

/// Uploads task logs named by *.s3.json metadata to S3, deleting each file only once S3 has
/// confirmed it.
#[derive(Debug, Parser)]
#[command(name = SERVICE, version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loaded = match start_daemon(
        SERVICE,
        env!("CARGO_PKG_VERSION"),
        &args.daemon.config,
        ConfigClass::FOR_S3_UPLOADER,
        args.daemon.log_format,
        "info,aws_smithy_runtime=warn,aws_config=warn",
    ) {
        Ok(loaded) => loaded,
        Err(code) => return ExitCode::from(code),
    };
    let settings = match Settings::from_loaded(&loaded) {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!(%error, "the configuration is invalid");
            return ExitCode::from(error.exit_code());
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = runtime.block_on(async move {
        match serve(settings).await {
            Ok(()) => exit::OK,
            Err(error) => {
                tracing::error!("{error:#}");
                error
                    .downcast_ref::<RunError>()
                    .map_or(exit::FAILURE, RunError::exit_code)
            }
        }
    });
    // Blocking reads cut off by the grace period must not hold the process up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals().context("install signal handlers")?;
    let deps = Deps::from_settings(&settings);
    run(settings, deps, shutdown).await?;
    Ok(())
}
