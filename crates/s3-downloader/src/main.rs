//! `singularity-s3-downloader`: parses arguments, sets up logging, loads and checks the
//! configuration, builds the S3 clients and the cache, and runs the service until SIGTERM or
//! SIGINT. Exit codes: 0 after a clean stop, 1 on a runtime failure, 78 for an invalid
//! configuration.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use singularity_common::config::{ConfigClass, DaemonArgs};
use singularity_common::exit;
use singularity_runtime::{Shutdown, start_daemon};
use singularity_s3_downloader::cache::ArtifactCache;
use singularity_s3_downloader::fetch::ConfiguredS3Clients;
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
        match serve(config).await {
            Ok(()) => exit::OK,
            Err(error) => {
                tracing::error!("{error:#}");
                error
                    .downcast_ref::<singularity_s3_downloader::error::ServeError>()
                    .map_or(exit::FAILURE, |error| error.exit_code())
            }
        }
    });
    // Abandoned requests past the grace period must not hold the process up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals().context("install signal handlers")?;
    let clients = ConfiguredS3Clients::new(&config.s3).await;
    let cache = ArtifactCache::open(&config.cache_directory, config.cache_max_bytes)
        .await
        .with_context(|| {
            format!(
                "open the artifact cache in {}",
                config.cache_directory.display()
            )
        })?;
    let deps = Deps {
        clients: Arc::new(clients),
        cache,
    };
    run(config, deps, shutdown).await?;
    Ok(())
}
