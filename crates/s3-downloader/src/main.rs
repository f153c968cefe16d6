//! `singularity-s3-downloader`: parses arguments, sets up logging, loads and checks the
//! configuration, builds the S3 clients and the cache, and runs the service until SIGTERM or
//! SIGINT. Exit codes: 0 after a clean stop, 1 on a runtime failure, 78 for an invalid
//! configuration.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use singularity_common::config::{ConfigClass, DaemonArgs};
use singularity_runtime::{invalid_config, run_daemon, start_daemon};
use singularity_s3_downloader::cache::ArtifactCache;
use singularity_s3_downloader::error::ServeError;
use singularity_s3_downloader::fetch::configured_s3_clients;
use singularity_s3_downloader::{Config, Deps, SERVICE, run};

/// Local service placing S3 artifacts into task sandboxes through a shared, bounded cache.
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
        ConfigClass::FOR_S3_DOWNLOADER,
        args.daemon.log_format,
        "info",
    ) {
        Ok(loaded) => loaded,
        Err(code) => return ExitCode::from(code),
    };
    let config = match Config::from_loaded(&loaded) {
        Ok(config) => config,
        Err(error) => return invalid_config(&error),
    };
    run_daemon(|shutdown| async move {
        let clients = configured_s3_clients(&config.s3).await;
        let cache = ArtifactCache::open(&config.cache_directory, config.cache_max_bytes)
            .await
            .map_err(|source| ServeError::OpenCache {
                dir: config.cache_directory.clone(),
                source,
            })?;
        let deps = Deps {
            clients: Arc::new(clients),
            cache,
        };
        run(config, deps, shutdown).await
    })
}
