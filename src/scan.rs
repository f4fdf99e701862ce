//! The `scan` command: check projects (and folders / organizations) against the requirement list,
//! print a table for people or a stable JSON document for machines, and optionally restore.
//!
//! Exit codes: 0 every finding ok (or restored, or expiring), 1 findings remain, 2 error. Output is
//! streamed through one buffered writer: each report is written as it completes, then dropped.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::connect::{CLI_IAM_V2_WAIT, GcpArgs, IamV2Reads, SetupError};
use crate::domain::iam::ResourceRef;
use crate::domain::report::ProjectReport;
use crate::engine::snapshot::{self, Discovery};
use crate::engine::sweep::{SweepDriver, SweepProject};
use crate::engine::{Options, Remediator};
use crate::policy::PolicyFile;
use crate::render::progress::Progress;
use crate::render::summary::Tally;
use crate::render::{Format, JsonStream, Style, TableStream};

/// `scan` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ScanArgs {
    /// A project id to check. Repeatable.
    #[arg(long = "project", value_name = "PROJECT_ID")]
    pub projects: Vec<String>,
    /// Check every project under this folder (recursively). Repeatable.
    #[arg(long = "folder", value_name = "FOLDER_ID")]
    pub folders: Vec<String>,
    /// Check every project of this organization. Repeatable.
    #[arg(long = "organization", value_name = "ORG_ID")]
    pub organizations: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Remediation policy file (YAML). Without it: dry-run with the built-in defaults.
    #[arg(long, env = "REMEDIATOR_POLICY")]
    pub policy: Option<PathBuf>,
    /// Restore what the policy allows (the policy's mode must be `enforce`).
    #[arg(long)]
    pub apply: bool,
    /// Ask the Policy Troubleshooter to settle permissions that may come through groups.
    #[arg(long)]
    pub troubleshooter: bool,
    /// Projects checked concurrently.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Table: show healthy rows and healthy projects too (by default they are counted, not shown).
    #[arg(long)]
    pub all: bool,
    /// Check every project of a folder or organization live, without first reading a Cloud Asset
    /// Inventory snapshot.
    #[arg(long, env = "REMEDIATOR_NO_ASSET_INVENTORY")]
    pub no_asset_inventory: bool,
    /// Google connection settings.
    #[command(flatten)]
    pub gcp: GcpArgs,
}

/// Runs `scan` on stdout (coloured on a terminal unless `NO_COLOR` is set) and returns the process
/// exit code.
pub async fn run(args: ScanArgs) -> i32 {
    let color = crate::render::stdout_colour();
    // One buffered writer for everything on stdout: a report is written (and dropped) as soon as it
    // and every report before it are done, so memory stays flat in the number of projects.
    run_to(
        &args,
        std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        color,
    )
    .await
}

/// Runs `scan` writing its table or JSON document to `out` (errors go to stderr) and returns the
/// exit code: the command in-process, as tests run it.
pub async fn run_to(args: &ScanArgs, out: impl Write, color: bool) -> i32 {
    match run_inner(args, out, color).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

async fn run_inner(args: &ScanArgs, out: impl Write, color: bool) -> Result<i32, SetupError> {
    let policy = match &args.policy {
        Some(path) => PolicyFile::load(path)?.remediation,
        None => PolicyFile::default().remediation,
    };
    let mut roots = Vec::new();
    for f in &args.folders {
        roots.push(
            ResourceRef::parse(&format!("folders/{}", f.trim_start_matches("folders/")))
                .map_err(|e| SetupError::Usage(e.to_string()))?,
        );
    }
    for o in &args.organizations {
        roots.push(
            ResourceRef::parse(&format!(
                "organizations/{}",
                o.trim_start_matches("organizations/")
            ))
            .map_err(|e| SetupError::Usage(e.to_string()))?,
        );
    }
    if args.projects.is_empty() && roots.is_empty() {
        return Err(SetupError::Usage(
            "nothing to scan: give --project, --folder or --organization".to_owned(),
        ));
    }
    let gcp = Arc::new(args.gcp.connect(IamV2Reads::Budget(CLI_IAM_V2_WAIT))?);
    let store = args.gcp.command_store()?;
    let mut options = Options::new(policy);
    options.context.deny_cache = Arc::new(crate::engine::deny_cache::DenyPolicyCache::with_store(
        store.clone(),
    ));
    if args.apply {
        // Writes are recorded (intent, restoration) like the service's.
        options.context.state = Some(crate::engine::shared::SharedState::new(store));
    }
    options.settings.deny_read_budget = gcp.client().iam_v2_budget();
    options.settings.apply = args.apply;
    options.settings.troubleshooter = args.troubleshooter;
    options.settings.concurrency = args.concurrency.max(1);
    // Projects named on the command line are few and waited for: one round of latency each.
    options.settings.read_ahead = true;
    let remediator = Arc::new(Remediator::new(gcp.clone(), options));
    let started = Instant::now();
    if args.apply && !remediator.options().writes() {
        eprintln!(
            "note: --apply with a dry-run policy writes nothing; set `mode: enforce` in the policy file to restore"
        );
    }
    let (projects, failures, discovery) =
        discover(&remediator, &args.projects, &roots, args.no_asset_inventory).await?;
    let mode = if remediator.options().writes() {
        "enforce"
    } else {
        "dry-run"
    };
    let style = Style {
        color,
        all: args.all,
        // One project asked for by name is always shown, healthy or not.
        every_project: args.all || projects.len() + failures.len() == 1,
    };
    let mut sink = match args.format {
        Format::Json => Output::Json(JsonStream::start(out, mode)?),
        Format::Table => Output::Table(TableStream::new(out, style)),
    };
    let mut tally = Tally::default();
    let progress = Progress::start(projects.len(), {
        let gcp = gcp.clone();
        Box::new(move || gcp.client().iam_v2_waiting_for())
    });
    // The one sweep driver (`job --sweep` and sweep messages use it too): the deny-read plan, one
    // write budget (the remediator's), recommendations settled when the scan writes.
    let driver = SweepDriver::new(&remediator, remediator.options().writes());
    driver
        .drive(
            projects,
            &roots,
            |info| {
                let remediator = &remediator;
                async move { Arc::new(remediator.remediate(&info).await) }
            },
            |report| {
                progress.tick();
                tally.add(&report);
                sink.project(&report)
            },
        )
        .await?;
    progress.finish().await;
    for report in &failures {
        tally.add(report);
        sink.project(report)?;
    }
    let counts = gcp.client().counts();
    let elapsed = started.elapsed();
    match sink {
        Output::Json(j) => j.finish(&tally.summary, &counts, elapsed, &discovery)?,
        Output::Table(mut t) => {
            if !roots.is_empty() {
                t.line(&discovery.describe())?;
            }
            t.finish(&tally, mode, &counts, elapsed)?
        }
    }
    Ok(tally.exit_code)
}

/// The projects of the scan in project-id order, those that cannot be found, and how they were
/// discovered ([`snapshot::discover`]).
async fn discover(
    remediator: &Remediator,
    projects: &[String],
    roots: &[ResourceRef],
    off: bool,
) -> Result<(Vec<SweepProject>, Vec<ProjectReport>, Discovery), SetupError> {
    let found = snapshot::discover(remediator, projects, roots, !off).await?;
    let projects = SweepProject::discovered(found.live, found.reports);
    Ok((projects, found.failures, found.discovery))
}

/// Where `scan` writes: the JSON document or the table, one project at a time.
enum Output<W: Write> {
    Json(JsonStream<W>),
    Table(TableStream<W>),
}

impl<W: Write> Output<W> {
    fn project(&mut self, report: &ProjectReport) -> std::io::Result<()> {
        match self {
            Self::Json(j) => j.project(report),
            Self::Table(t) => t.project(report),
        }
    }
}
