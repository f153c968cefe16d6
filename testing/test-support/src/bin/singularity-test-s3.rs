//! Serves s3s-fs over a directory on loopback for `scripts/services.sh` and benches, with the
//! same TCP_NODELAY and frame coalescing as the in-process test server.
//!
//! Prints `listening on http://ADDR` on stdout once it accepts connections; stops on SIGTERM
//! or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(about = "S3-protocol test server (s3s-fs) on loopback")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    addr: SocketAddr,
    /// Data directory (created if missing): `<root>/<bucket>/<key>`.
    #[arg(long)]
    root: PathBuf,
    /// The only access key accepted.
    #[arg(long)]
    access_key: String,
    /// Its secret key.
    #[arg(long)]
    secret_key: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("create {}", args.root.display()))?;
    let service =
        singularity_test_support::build_service(&args.root, &args.access_key, &args.secret_key)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listen on {}", args.addr))?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        println!("listening on http://{}", listener.local_addr()?);
        singularity_test_support::serve(listener, service, async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await;
        Ok(())
    })
}
