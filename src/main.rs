//! The `cloudvol` command: the operator, and the tools people run next to it.

use std::path::PathBuf;
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
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind into a folder.
    Crds {
        /// Write `<plural>.cloudvol.dev.yaml` files into this folder instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run the operator.
    Run(cloudvol::operator::RunArgs),
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
        Command::Crds { out_dir } => write_crds(out_dir),
        Command::Run(args) => run_operator(args),
        Command::Cloud {
            command: CloudCommand::Check(args),
        } => {
            // Warnings by default, so that `verify: false` is visible; RUST_LOG overrides.
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
            cloudvol::logging::init_logging(&filter, cloudvol::logging::LogFormat::Text);
            cloudvol::cloud::check::run(&args)
        }
    }
}

fn run_operator(args: cloudvol::operator::RunArgs) -> ExitCode {
    cloudvol::operator::memory::tune_allocator();
    cloudvol::logging::init_logging(&args.log_level, args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cloudvol::operator::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "cloudvol stopped");
            ExitCode::FAILURE
        }
    }
}

fn write_crds(out_dir: Option<PathBuf>) -> ExitCode {
    for crd in cloudvol::api::crds() {
        let yaml = cloudvol::api::crd_yaml(&crd);
        match &out_dir {
            None => print!("{yaml}"),
            Some(dir) => {
                let path = dir.join(cloudvol::api::crd_file_name(&crd));
                if let Err(err) = std::fs::write(&path, yaml) {
                    eprintln!("cannot write {}: {err}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}
