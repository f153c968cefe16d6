//! `singularity-s3-uploader`: parses arguments, sets up logging, loads and checks the
//! configuration, builds the S3 clients and runs the uploader until SIGTERM or SIGINT. Exit
//! codes: 0 after a clean stop, 1 on a runtime failure, 78 for an invalid configuration.

use std::process::ExitCode;

use clap::Parser;
use singularity_common::config::{ConfigClass, DaemonArgs};
use singularity_runtime::{invalid_config, run_daemon, start_daemon};
use singularity_s3_uploader::{Deps, SERVICE, Settings, run};

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
        Err(error) => return invalid_config(&error),
    };
    run_daemon(|shutdown| async move {
        let deps = Deps::from_settings(&settings);
        run(settings, deps, shutdown).await
    })
}
