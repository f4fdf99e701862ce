//! Entry point: parse the command line, initialise logging, run one mode. Nothing else lives here.

use clap::{Parser, Subcommand};

#[cfg(feature = "simulator")]
use gcp_sim as sim;
#[cfg(feature = "simulator")]
use gke_iam_remediator::demo;
use gke_iam_remediator::{app, explain, plan_guard, scan};

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
    /// Explain, per required permission, why a service account holds it or not, and the fix.
    Explain(explain::ExplainArgs),
    /// Say what a Terraform plan (`terraform show -json PLANFILE`) would break, before applying it.
    CheckPlan(plan_guard::CheckPlanArgs),
    /// Run the self-contained demo: simulator, broken world, scan, restore, scan again.
    #[cfg(feature = "simulator")]
    Demo(demo::DemoArgs),
    /// Run the local Google Cloud simulator.
    #[cfg(feature = "simulator")]
    Sim(sim::SimArgs),
    /// Serve Pub/Sub push deliveries (Cloud Run service).
    Serve(app::ServeArgs),
    /// Pull from a subscription and/or sweep a scope (Cloud Run job).
    Job(app::JobArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Job(_)) {
        gke_iam_remediator::telemetry::init_command();
    }
    let code = match cli.command {
        Command::Scan(args) => scan::run(args).await,
        Command::Explain(args) => explain::run(args).await,
        Command::CheckPlan(args) => plan_guard::run(args).await,
        #[cfg(feature = "simulator")]
        Command::Demo(args) => demo::run(args).await,
        #[cfg(feature = "simulator")]
        Command::Sim(args) => match sim::run_cli(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
        Command::Serve(args) => match app::serve(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
        Command::Job(args) => app::job(args).await.unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            2
        }),
    };
    std::process::exit(code);
}
