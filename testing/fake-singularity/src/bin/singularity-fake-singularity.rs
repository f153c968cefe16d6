//! `singularity-fake-singularity`: the Singularity API and agent state stand-in as a process,
//! for scripts (benchmarks). Prints `http://<addr>` once listening; stops on SIGTERM / SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use singularity_fake_singularity::{ApiState, Credentials, FakeSingularity};

/// Serves the Singularity API calls of the executor cleanup and the agent's state on loopback.
#[derive(Debug, Parser)]
struct Args {
    /// JSON state: {agentId, agentHostname, activeTaskIds, decommissionedHosts, histories}.
    #[arg(long)]
    state: PathBuf,
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// API context path.
    #[arg(long, default_value = "singularity/api")]
    context_path: String,
    /// Required credentials header, `NAME:TOKEN`.
    #[arg(long)]
    credentials: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.addr.ip().is_loopback(),
        "--addr {} is not a loopback address",
        args.addr
    );
    let text = std::fs::read(&args.state)
        .with_context(|| format!("cannot read {}", args.state.display()))?;
    let state: ApiState = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a state document", args.state.display()))?;
    let credentials = args
        .credentials
        .as_deref()
        .map(|c| {
            c.split_once(':')
                .map(|(name, token)| Credentials::new(name, token))
                .with_context(|| format!("--credentials {c:?} is not NAME:TOKEN"))
        })
        .transpose()?;
    let server = FakeSingularity::start_on(args.addr, &args.context_path, credentials, state)
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("http://{}", server.addr());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}
