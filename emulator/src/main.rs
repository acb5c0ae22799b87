//! `cloudvol-emulator --listen 127.0.0.1:0 [--config FILE] [--allow-remote]`

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use cloudvol_emulator::Config;

/// A local stand-in for NHN Cloud, OpenStack and Samsung Cloud Platform
/// block storage and image APIs (see emulator/README.md).
#[derive(Parser)]
#[command(name = "cloudvol-emulator", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        default_value = "127.0.0.1:8787",
        env = "CLOUDVOL_EMULATOR_LISTEN"
    )]
    listen: SocketAddr,
    /// YAML configuration; without it the two demo tenants are served.
    #[arg(long, env = "CLOUDVOL_EMULATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Allow a non-loopback --listen address. The admin API has no
    /// authentication: anyone who can reach it can change everything.
    #[arg(long)]
    allow_remote: bool,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOUDVOL_EMULATOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudvol-emulator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        return Err(format!(
            "refusing to listen on {} (not loopback): the admin API is unauthenticated; pass --allow-remote to do it anyway",
            args.listen
        ));
    }
    let config = match &args.config {
        None => Config::demo(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            Config::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let emulator = cloudvol_emulator::start(config, args.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", args.listen))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", emulator.base_url())
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing to stdout: {e}"))?;
        drop(out);
        shutdown_signal().await;
        emulator.shutdown().await;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
