//! The `cloudvol` command: the operator, and the tools people run next to it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cloudvol",
    version,
    about = "Kubernetes operator for cloud block storage, volume images and image sharing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tools for cloud credentials.
    Cloud {
        #[command(subcommand)]
        command: CloudCommand,
    },
}

#[derive(Subcommand)]
enum CloudCommand {
    /// Authenticate with a clouds.yaml, print the endpoints, count volumes and images.
    Check(cloudvol::cloud::check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cloud {
            command: CloudCommand::Check(args),
        } => {
            init_logging();
            cloudvol::cloud::check::run(&args)
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default (warnings, so that
/// `verify: false` is visible).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
