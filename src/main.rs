//! Entry point: parse the command line, initialise logging, run one mode. Nothing else lives here.

use clap::{Parser, Subcommand};

use gke_iam_remediator::{demo, scan, sim};

/// Keeps the IAM bindings GKE needs in place: detect, restore safely, notify.
#[derive(Parser)]
#[command(name = "gke-iam-remediator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check projects, folders or an organization; optionally restore (`--apply`).
    Scan(scan::ScanArgs),
    /// Run the self-contained demo: simulator, broken world, scan, restore, scan again.
    Demo(demo::DemoArgs),
    /// Run the local Google Cloud simulator.
    Sim(sim::SimArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[tokio::main]
async fn main() {
    init_logging();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Scan(args) => scan::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Sim(args) => match sim::run_cli(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
    };
    std::process::exit(code);
}
