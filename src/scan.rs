//! The `scan` command: check projects (and folders / organizations) against the requirement list,
//! print a table for people or a stable JSON document for machines, and optionally restore.
//!
//! Exit codes: 0 every finding ok (or restored, or expiring), 1 findings remain, 2 error. Output is
//! streamed through one buffered writer: each report is written as it completes, then dropped.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::domain::evaluate::Status;
use crate::domain::iam::ResourceRef;
use crate::domain::plan::{Action, Decision};
use crate::domain::report::{Outcome, ProjectReport, Summary};
use crate::engine::snapshot::{self, Discovery};
use crate::engine::{Options, Remediator};
use crate::gcp::{CallCounts, Client, ClientConfig, Credentials, Gcp};
use crate::policy::{ConfigError, PolicyFile};
use crate::ports::{Api, ApiError, ProjectInfo, RetryPolicy};

/// Connection settings shared by every command that calls Google.
#[derive(clap::Args, Debug, Clone)]
pub struct GcpArgs {
    /// Send every Google REST call to this base URL (the simulator), with anonymous credentials
    /// unless `--access-token` is given.
    #[arg(long, env = "REMEDIATOR_API_ENDPOINT")]
    pub api_endpoint: Option<String>,
    /// A fixed bearer token instead of Application Default Credentials (for the simulator:
    /// `sim:EMAIL` names the caller).
    #[arg(long, env = "REMEDIATOR_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,
    /// Client-side rate limit per API, requests per second: `cloudresourcemanager=10`; and
    /// `iam-v2=N`, IAM v2 (deny-policy) reads in any minute (default 5, Google's quota). Repeatable, or
    /// comma-separated in the environment.
    #[arg(
        long = "rate-limit",
        value_name = "API=N",
        env = "REMEDIATOR_RATE_LIMITS",
        value_delimiter = ','
    )]
    pub rate_limits: Vec<String>,
    /// Attempts per call on 429/5xx (including the first).
    #[arg(long, default_value_t = 6)]
    pub max_attempts: u32,
    /// How long deny-policy reads may take in the IAM v2 quota. `scan` and `explain` (default 0)
    /// and `job --sweep` without `--subscription` (default 0) make as many reads as the quota
    /// allows in that many seconds (5 a minute: turns at 0, 61, 122 and 183 s, 20 reads in 240),
    /// each waiting for its turn, in a fixed order, and no more: which deny policies are read does
    /// not depend on timing. `serve` and a `job` with a subscription (default 0) let a read wait
    /// for its turn only within that many seconds from the start; after that a read with no turn
    /// free is not made. Deny policies not read are reported as such.
    #[arg(long, value_name = "SECONDS", env = "REMEDIATOR_IAM_V2_WAIT_SECONDS")]
    pub iam_v2_wait: Option<u64>,
    /// Where state is kept (the finding ledger, restorations, the deny-policy cache):
    /// `firestore://projects/P/databases/D`, `file:DIR` or `memory`. Default: `serve` and `job`
    /// memory (guarantees per instance only, said at start-up); `scan` and `explain` a file store
    /// under `$XDG_STATE_HOME/gke-iam-remediator` (deny-policy reads reused across runs), or memory
    /// with `--api-endpoint`.
    #[arg(long, value_name = "LOCATION", env = "REMEDIATOR_STATE")]
    pub state: Option<String>,
    /// The project billed for API quota (`x-goog-user-project`), as `gcloud --billing-project`:
    /// overrides the quota project of the credentials (`gcloud auth application-default
    /// set-quota-project`).
    #[arg(long, value_name = "PROJECT_ID", env = "REMEDIATOR_BILLING_PROJECT")]
    pub billing_project: Option<String>,
}

/// The span of the quota `scan` and `explain` spend on deny-policy reads by default: none, so they
/// never wait for Google's 5 IAM v2 reads a minute unless asked (`--iam-v2-wait SECONDS`). They make
/// the reads the quota has free now (5), cache them in the state store (`--state`) so the next run
/// reads others, and report accounts whose deny policies were not all read as `ok*`.
pub const CLI_IAM_V2_WAIT: Duration = Duration::ZERO;

/// Errors before any project is examined.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The policy file is bad.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Credentials or the HTTP client.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// Standard output could not be written.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Opens the store a `--state` setting names; unset: `default` (memory when `None`).
pub fn open_store(
    setting: Option<&str>,
    default: Option<crate::state::StateLocation>,
) -> Result<Arc<dyn crate::ports::StateStore>, String> {
    use crate::state::StateLocation;
    let location = match setting.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s
            .parse::<StateLocation>()
            .map_err(|e| format!("REMEDIATOR_STATE: {e}"))?,
        None => default.unwrap_or(StateLocation::Memory),
    };
    match &location {
        StateLocation::Firestore(_) => {
            let store = crate::gcp::firestore::FirestoreStore::connect(&location.to_string())
                .map_err(|e| format!("REMEDIATOR_STATE: {e}"))?;
            Ok(store)
        }
        local => crate::state::open_local(local).map_err(|e| format!("REMEDIATOR_STATE: {e}")),
    }
}

impl GcpArgs {
    /// The store of a one-shot command (`scan`, `explain`): the setting, else a file store under
    /// the user's state directory against Google, memory against the simulator (its worlds reuse
    /// project numbers).
    pub fn command_store(&self) -> Result<Arc<dyn crate::ports::StateStore>, SetupError> {
        let default = self
            .api_endpoint
            .is_none()
            .then(|| crate::state::StateLocation::File(crate::state::default_local_dir()));
        open_store(self.state.as_deref(), default).map_err(SetupError::Usage)
    }
}

/// How a mode holds its deny-policy reads to the IAM v2 quota.
#[derive(Clone, Copy, Debug)]
pub enum IamV2Reads {
    /// A one-shot run (`scan`, `explain`, `job --sweep` alone): a budget of what the window allows
    /// within `--iam-v2-wait` (else this many seconds), each read waiting for its turn until spent.
    Budget(Duration),
    /// A process that handles messages (`serve`, `job --subscription`): the window alone; a read may
    /// wait for its turn only within `--iam-v2-wait` seconds from the start (none by default).
    Window,
}

impl GcpArgs {
    /// Builds the Google adapters from the arguments.
    pub fn connect(&self, reads: IamV2Reads) -> Result<Gcp, SetupError> {
        let credentials = match (&self.access_token, &self.api_endpoint) {
            (Some(token), _) => Credentials::Static(token.clone()),
            (None, Some(_)) => Credentials::Anonymous,
            (None, None) => Credentials::application_default()?,
        };
        let (rate_limits, iam_v2_reads_per_minute) = self.rate_limits()?;
        let wait = self.iam_v2_wait.map(Duration::from_secs);
        let (iam_v2_wait_span, iam_v2_budget) = match reads {
            IamV2Reads::Budget(default) => (
                Duration::ZERO,
                Some(crate::gcp::client::iam_v2_budget(
                    iam_v2_reads_per_minute,
                    wait.unwrap_or(default),
                )),
            ),
            IamV2Reads::Window => (wait.unwrap_or_default(), None),
        };
        let client = Client::new(ClientConfig {
            api_endpoint: self.api_endpoint.clone(),
            credentials,
            retry: RetryPolicy {
                max_attempts: self.max_attempts.max(1),
                ..RetryPolicy::default()
            },
            rate_limits,
            iam_v2_reads_per_minute,
            iam_v2_wait_span,
            iam_v2_budget,
            timeout: Duration::from_secs(30),
            billing_project: self.billing_project.clone(),
        })?;
        Ok(Gcp::new(client))
    }

    /// The steady limits per API and the IAM v2 reads per minute, from `--rate-limit`.
    fn rate_limits(&self) -> Result<(std::collections::BTreeMap<Api, f64>, u32), SetupError> {
        let mut rate_limits = crate::gcp::client::default_rate_limits();
        let mut iam_v2_reads_per_minute = crate::gcp::client::IAM_V2_READS_PER_MINUTE;
        for spec in &self.rate_limits {
            let (name, value) = spec.split_once('=').ok_or_else(|| {
                SetupError::Usage(format!("--rate-limit `{spec}`: expected API=N"))
            })?;
            if name == crate::gcp::client::IAM_V2_KEY {
                // Google's IAM v2 read quota is per minute, and so is this limit.
                iam_v2_reads_per_minute = value
                    .parse()
                    .ok()
                    .filter(|n: &u32| *n > 0)
                    .ok_or_else(|| {
                        SetupError::Usage(format!(
                            "--rate-limit `{spec}`: N must be a whole number of deny-policy reads per minute, at least 1"
                        ))
                    })?;
                continue;
            }
            let api = Api::from_name(name).ok_or_else(|| {
                let mut names: Vec<_> = Api::ALL.iter().map(|a| a.name()).collect();
                names.push(crate::gcp::client::IAM_V2_KEY);
                SetupError::Usage(format!(
                    "--rate-limit: unknown API `{name}`, expected one of {}",
                    names.join(", ")
                ))
            })?;
            let n: f64 = value
                .parse()
                .ok()
                .filter(|n: &f64| *n > 0.0)
                .ok_or_else(|| {
                    SetupError::Usage(format!(
                        "--rate-limit `{spec}`: N must be a positive number"
                    ))
                })?;
            rate_limits.insert(api, n);
        }
        Ok((rate_limits, iam_v2_reads_per_minute))
    }
}

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table for people.
    Table,
    /// The stable JSON document.
    Json,
}

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

/// The `scan --format json` document. Field names are a stable contract: fields may be added, never
/// renamed.
#[derive(Serialize)]
pub struct ScanDocument<'a> {
    /// Schema id.
    pub schema: &'static str,
    /// `dry-run` or `enforce` (enforce only with `--apply`).
    pub mode: &'static str,
    /// Per-project results.
    pub projects: &'a [ProjectReport],
    /// Totals.
    pub summary: &'a Summary,
    /// Google API calls made.
    pub api_calls: &'a CallCounts,
    /// Wall time.
    pub elapsed_ms: u128,
    /// How projects were discovered and checked (`cloud-asset-inventory` or `per-project`).
    pub discovery: &'a Discovery,
}

/// Runs `scan` and returns the process exit code.
pub async fn run(args: ScanArgs) -> i32 {
    match run_inner(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

async fn run_inner(args: &ScanArgs) -> Result<i32, SetupError> {
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
    options.deny_cache = Arc::new(crate::engine::deny_cache::DenyPolicyCache::with_store(
        store.clone(),
    ));
    if args.apply {
        // Writes are recorded (intent, restoration) like the service's.
        options.state = Some(crate::engine::shared::SharedState::new(store));
    }
    options.deny_read_budget = gcp.client().iam_v2_budget();
    options.apply = args.apply;
    options.troubleshooter = args.troubleshooter;
    options.concurrency = args.concurrency.max(1);
    // Projects named on the command line are few and waited for: one round of latency each.
    options.read_ahead = true;
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
    let stdout = std::io::stdout();
    let style = Style {
        color: stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        all: args.all,
        // One project asked for by name is always shown, healthy or not.
        healthy_projects: args.all || projects.len() + failures.len() == 1,
    };
    // One buffered writer for everything on stdout: a report is written (and dropped) as soon as it
    // and every report before it are done, so memory stays flat in the number of projects.
    let out = std::io::BufWriter::with_capacity(64 * 1024, stdout);
    let mut sink = match args.format {
        Format::Json => Output::Json(JsonStream::start(out, mode)?),
        Format::Table => Output::Table(TableStream::new(out, style)),
    };
    let mut tally = Tally::default();
    let progress = Progress::start(projects.len());
    {
        use futures::StreamExt;
        // Projects checked live spend a short IAM v2 budget in the order they are listed (by id).
        let live: Vec<ProjectInfo> = projects
            .iter()
            .filter_map(|p| match p {
                Project::Live(info) => Some(info.clone()),
                Project::FromSnapshot(_) => None,
            })
            .collect();
        let deny_reads = remediator
            .plan_deny_reads(&crate::engine::deny_plan::PlanProject::of(&live, &roots))
            .await;
        let mut reports = futures::stream::iter(projects)
            .map(|p| {
                let remediator = &remediator;
                async move {
                    match p {
                        Project::Live(info) => remediator.remediate(&info).await,
                        Project::FromSnapshot(report) => *report,
                    }
                }
            })
            .buffered(remediator.options().concurrency);
        let write_all = async {
            while let Some(report) = reports.next().await {
                progress.tick();
                tally.add(&report);
                sink.project(&report)?;
            }
            Ok::<(), SetupError>(())
        };
        // The planned deny reads are polled first: they take the IAM v2 budget.
        tokio::join!(deny_reads, write_all).1?;
    }
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
                writeln!(t.out, "{}", discovery.describe())?;
            }
            t.finish(&tally, mode, &counts, elapsed)?
        }
    }
    Ok(tally.exit_code)
}

/// A project of the scan: to check live, or decided healthy from a Cloud Asset Inventory snapshot.
enum Project {
    Live(ProjectInfo),
    FromSnapshot(Box<ProjectReport>),
}

impl Project {
    fn id(&self) -> &str {
        match self {
            Self::Live(info) => info.project_id.as_str(),
            Self::FromSnapshot(report) => &report.project_id,
        }
    }
}

/// The projects of the scan in project-id order, those that cannot be found, and how they were
/// discovered ([`snapshot::discover`]).
async fn discover(
    remediator: &Remediator,
    projects: &[String],
    roots: &[ResourceRef],
    off: bool,
) -> Result<(Vec<Project>, Vec<ProjectReport>, Discovery), SetupError> {
    let found = snapshot::discover(remediator, projects, roots, !off).await?;
    let mut out: Vec<Project> = found.live.into_iter().map(Project::Live).collect();
    out.extend(
        found
            .reports
            .into_iter()
            .map(|r| Project::FromSnapshot(Box::new(r))),
    );
    out.sort_by(|a, b| a.id().cmp(b.id()));
    Ok((out, found.failures, found.discovery))
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

/// What `scan` accumulates while reports stream past: the summary and the exit code.
#[derive(Default)]
struct Tally {
    summary: Summary,
    exit_code: i32,
    by_outcome: BTreeMap<&'static str, usize>,
    /// Node accounts `ok` on the allow side whose deny policies were partly not read.
    deny_unchecked: usize,
}

impl Tally {
    fn add(&mut self, report: &ProjectReport) {
        self.summary.add(report);
        self.exit_code = self.exit_code.max(exit_code(std::slice::from_ref(report)));
        for f in &report.findings {
            *self.by_outcome.entry(outcome_label(f.outcome)).or_default() += 1;
            if f.finding.deny_check.is_some() {
                self.deny_unchecked += 1;
            }
        }
    }

    /// The line about `ok*` accounts, if any: how many, and what would read their deny policies.
    fn deny_line(&self) -> Option<String> {
        (self.deny_unchecked > 0).then(|| {
            format!(
                "{} node account(s) ok*: granted everything, some deny policies not read (Google's 5 IAM v2 reads a minute, or no permission); a later run reads more (reads are cached for limits.deny_policy_max_age_minutes), or give --iam-v2-wait SECONDS",
                self.deny_unchecked
            )
        })
    }
}

/// Progress on stderr, on a TTY only, for more than one project.
struct Progress {
    done: Arc<std::sync::atomic::AtomicUsize>,
    reporter: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(total: usize) -> Self {
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reporter = (std::io::stderr().is_terminal() && total > 1).then(|| {
            let done = done.clone();
            tokio::spawn(async move {
                loop {
                    let n = done.load(std::sync::atomic::Ordering::Relaxed);
                    eprint!("\r\x1b[2Kchecking projects: {n}/{total}");
                    if n >= total {
                        eprintln!();
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Self { done, reporter }
    }

    fn tick(&self) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn finish(self) {
        if let Some(r) = self.reporter {
            let _ = r.await;
        }
    }
}

/// The `scan/v1` JSON document written incrementally: the same document [`ScanDocument`] describes,
/// with each project serialised as it completes.
pub struct JsonStream<W: Write> {
    out: W,
    first: bool,
}

impl<W: Write> JsonStream<W> {
    /// Writes the opening of the document.
    pub fn start(mut out: W, mode: &str) -> std::io::Result<Self> {
        write!(
            out,
            "{{\n  \"schema\": {},\n  \"mode\": {},\n  \"projects\": [",
            serde_json::to_string(SCAN_SCHEMA)?,
            serde_json::to_string(mode)?
        )?;
        Ok(Self { out, first: true })
    }

    /// Writes one project.
    pub fn project(&mut self, report: &ProjectReport) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        self.out.write_all(b"\n")?;
        serde_json::to_writer_pretty(&mut self.out, report)?;
        Ok(())
    }

    /// Writes the totals and closes the document.
    pub fn finish(
        mut self,
        summary: &Summary,
        api_calls: &CallCounts,
        elapsed: Duration,
        discovery: &Discovery,
    ) -> std::io::Result<()> {
        let close = if self.first { "]" } else { "\n  ]" };
        write!(self.out, "{close},\n  \"summary\": ")?;
        serde_json::to_writer_pretty(&mut self.out, summary)?;
        write!(self.out, ",\n  \"api_calls\": ")?;
        serde_json::to_writer_pretty(&mut self.out, api_calls)?;
        write!(self.out, ",\n  \"elapsed_ms\": {}", elapsed.as_millis())?;
        write!(self.out, ",\n  \"discovery\": ")?;
        serde_json::to_writer_pretty(&mut self.out, discovery)?;
        writeln!(self.out, "\n}}")?;
        self.out.flush()
    }
}

/// The table for people, written one project at a time.
struct TableStream<W: Write> {
    out: W,
    style: Style,
    hidden_projects: usize,
    hidden_rows: usize,
}

impl<W: Write> TableStream<W> {
    fn new(out: W, style: Style) -> Self {
        Self {
            out,
            style,
            hidden_projects: 0,
            hidden_rows: 0,
        }
    }

    fn project(&mut self, report: &ProjectReport) -> std::io::Result<()> {
        let block = render_project(report, self.style);
        self.hidden_rows += block.hidden_rows;
        match block.text {
            Some(text) => self.out.write_all(text.as_bytes()),
            None => {
                self.hidden_projects += 1;
                Ok(())
            }
        }
    }

    fn finish(
        mut self,
        tally: &Tally,
        mode: &str,
        counts: &CallCounts,
        elapsed: Duration,
    ) -> std::io::Result<()> {
        let line = summary_line(
            &tally.summary,
            &tally.by_outcome,
            (self.hidden_projects, self.hidden_rows),
            mode,
            self.style,
        );
        writeln!(
            self.out,
            "{line}; {} API call(s) in {:.2}s",
            counts.total,
            elapsed.as_secs_f64()
        )?;
        if let Some(deny) = tally.deny_line() {
            writeln!(self.out, "{deny}")?;
        }
        self.out.flush()
    }
}

/// The schema id of the `scan --format json` document.
pub const SCAN_SCHEMA: &str = "gke-iam-remediator.scan/v1";

/// 2 if a project could not be checked, 1 if any finding is neither healthy, restored nor merely
/// expiring, else 0.
pub fn exit_code(reports: &[ProjectReport]) -> i32 {
    if reports.iter().any(|r| r.error.is_some()) {
        2
    } else if reports.iter().flat_map(|r| &r.findings).any(|f| {
        !matches!(
            f.outcome,
            Outcome::Healthy | Outcome::Restored | Outcome::Expiring
        )
    }) {
        1
    } else {
        0
    }
}

/// The exact gcloud command a person would run to restore a grant.
pub fn gcloud_fix(project: &str, action: &Action) -> String {
    crate::domain::explain::gcloud_command(project, action)
}

fn short(member: &str) -> &str {
    member.strip_prefix("serviceAccount:").unwrap_or(member)
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Unknown => "needs review",
        other => other.as_str(),
    }
}

/// Describes an action for people.
pub fn describe_action(project: &str, action: &Action) -> String {
    match action {
        Action::Grant { role, member } => format!("{role} to {member}"),
        other => gcloud_fix(project, other),
    }
}

/// How the table is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colour (a TTY without `NO_COLOR`).
    pub color: bool,
    /// Show healthy rows too (`--all`).
    pub all: bool,
    /// Show projects whose every finding is healthy (with their rows collapsed unless `all`).
    pub healthy_projects: bool,
}

/// What a piece of terminal text says, for its colour.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Broken, failed.
    Bad,
    /// Needs a look.
    Warn,
    /// Fine.
    Good,
    /// No colour.
    Plain,
    /// A heading (bold).
    Head,
}

/// `text` in the tone's ANSI colour when the style has colour, else as it is.
pub fn paint(style: Style, tone: Tone, text: &str) -> String {
    let code = match tone {
        _ if !style.color => return text.to_owned(),
        Tone::Bad => "31;1",
        Tone::Warn => "33",
        Tone::Good => "32",
        Tone::Head => "1",
        Tone::Plain => return text.to_owned(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Problems first: the lower, the more urgent.
fn urgency(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Failed | Outcome::Escalated => 0,
        Outcome::NotAllowed | Outcome::WouldRestore | Outcome::Unknown => 1,
        Outcome::Expiring => 2,
        Outcome::Restored => 3,
        Outcome::Healthy | Outcome::Resolved => 4,
    }
}

fn outcome_tone(outcome: Outcome) -> Tone {
    match urgency(outcome) {
        0 => Tone::Bad,
        1 | 2 => Tone::Warn,
        _ => Tone::Good,
    }
}

/// One cell: its text and how it is coloured.
type Cell = (String, Tone);

/// One line of a section: a principal (or a project-level check) and what is known about it.
struct Row<'a> {
    cells: Vec<Cell>,
    outcome: Outcome,
    findings: Vec<&'a crate::domain::report::FindingReport>,
}

/// A principal's cell for one required permission of a `node-sa-permissions` finding.
fn permission_cell(f: &crate::domain::evaluate::Finding, permission: &str) -> Cell {
    let has = |list: &[String]| list.iter().any(|p| p == permission);
    if has(&f.denied_permissions) {
        ("DENIED".to_owned(), Tone::Bad)
    } else if has(&f.missing_permissions) {
        ("MISSING".to_owned(), Tone::Bad)
    } else if has(&f.conditional_permissions) {
        ("condition".to_owned(), Tone::Warn)
    } else if has(&f.unknown_permissions) {
        ("unknown".to_owned(), Tone::Warn)
    } else if f.principal.is_none() || f.status == Status::Incomplete {
        (f.status.as_str().to_owned(), Tone::Warn)
    } else if f.deny_check.is_some() {
        ("ok*".to_owned(), Tone::Good)
    } else if f.expires_at.is_some() {
        ("ok (until)".to_owned(), Tone::Warn)
    } else {
        ("ok".to_owned(), Tone::Good)
    }
}

fn status_cell(status: Status) -> Cell {
    let tone = match status {
        Status::Ok => Tone::Good,
        Status::Missing | Status::Denied => Tone::Bad,
        _ => Tone::Warn,
    };
    (status.as_str().to_owned(), tone)
}

fn worst(findings: &[&crate::domain::report::FindingReport]) -> Outcome {
    findings
        .iter()
        .map(|f| f.outcome)
        .min_by_key(|o| urgency(*o))
        .unwrap_or(Outcome::Healthy)
}

/// What a person needs under a row that is not healthy: the detail, when a time-bound grant ends,
/// the clusters, and why it was not restored or the fix.
fn notes(project: &str, f: &crate::domain::report::FindingReport) -> Vec<String> {
    let mut out = vec![f.finding.detail.clone()];
    if !f.finding.clusters.is_empty() {
        out.push(format!("used by {}", f.finding.clusters.join(", ")));
    }
    match &f.decision {
        Decision::Restore { action } if f.outcome != Outcome::Restored => {
            out.push(format!("fix: {}", gcloud_fix(project, action)));
        }
        Decision::NotAllowed { reason }
        | Decision::Blocked { reason }
        | Decision::NeedsReview { reason } => {
            if *reason == f.finding.detail {
                out.push("not restored".to_owned());
            } else {
                out.push(format!("not restored: {reason}"));
            }
            if f.finding.status == Status::Missing
                && let (Some(role), Some(member)) = (&f.finding.role, &f.finding.principal)
            {
                let fix = Action::Grant {
                    role: role.clone(),
                    member: member.clone(),
                };
                out.push(format!("fix: {}", gcloud_fix(project, &fix)));
            }
        }
        Decision::Escalate { reason } => out.push(format!("escalated: {reason}")),
        _ => {}
    }
    if f.outcome == Outcome::Expiring
        && let (Some(role), Some(member)) = (&f.finding.role, &f.finding.principal)
    {
        let fix = Action::Grant {
            role: role.clone(),
            member: member.clone(),
        };
        out.push(format!(
            "renew the grant, or make it permanent: {}",
            gcloud_fix(project, &fix)
        ));
    }
    out
}

/// A project's part of the table; `None` text when everything in it is healthy and hidden.
pub struct Block {
    /// The lines, if the project is shown.
    pub text: Option<String>,
    /// Healthy rows collapsed behind a count.
    pub hidden_rows: usize,
}

const PERMISSION_HEADS: [&str; 4] = ["LOGGING", "TIMESERIES", "DESCRIPTORS", "AUTOSCALING"];

/// Renders one project: a section of node service accounts (one line per account with its four
/// permissions and whether it exists), one of service agents and one of project-level checks;
/// problems first, healthy rows collapsed behind a count unless `style.all`.
pub fn render_project(r: &ProjectReport, style: Style) -> Block {
    use crate::domain::requirements::{NODE_SA_PERMISSIONS, RequirementId as R};
    let number = if r.project_number.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.project_number)
    };
    let head = paint(
        style,
        Tone::Head,
        &format!("PROJECT {}{number}", r.project_id),
    );
    if let Some(e) = &r.error {
        let error = paint(style, Tone::Bad, "ERROR");
        return Block {
            text: Some(format!("{head}\n  {error} {e}\n\n")),
            hidden_rows: 0,
        };
    }
    let all_healthy =
        r.actions.is_empty() && r.findings.iter().all(|f| f.outcome == Outcome::Healthy);
    if all_healthy && !style.healthy_projects {
        return Block {
            text: None,
            hidden_rows: 0,
        };
    }
    if !r.gke && r.findings.is_empty() {
        return Block {
            text: Some(format!(
                "{head}\n  not a GKE project (Container API disabled, no clusters): nothing to check\n\n"
            )),
            hidden_rows: 0,
        };
    }

    // Node service accounts: one row per account, its permissions and its existence side by side.
    let mut by_account: BTreeMap<&str, Vec<&crate::domain::report::FindingReport>> =
        BTreeMap::new();
    let mut agents = Vec::new();
    let mut checks = Vec::new();
    for f in &r.findings {
        match (f.finding.requirement, &f.finding.principal) {
            (R::NodeSaPermissions | R::NodeSaExists, Some(p)) => {
                by_account.entry(p.as_str()).or_default().push(f)
            }
            (R::GkeServiceAgent | R::GkeNodeServiceAgent | R::GoogleApisServiceAgent, Some(_)) => {
                agents.push(f)
            }
            _ => checks.push(f),
        }
    }
    let mut nodes: Vec<Row> = by_account
        .into_iter()
        .map(|(principal, findings)| {
            let perms = findings
                .iter()
                .find(|f| f.finding.requirement == R::NodeSaPermissions);
            let exists = findings
                .iter()
                .find(|f| f.finding.requirement == R::NodeSaExists);
            let mut cells = vec![(short(principal).to_owned(), Tone::Plain)];
            for p in NODE_SA_PERMISSIONS {
                cells.push(perms.map_or(("-".to_owned(), Tone::Plain), |f| {
                    permission_cell(&f.finding, p)
                }));
            }
            cells.push(exists.map_or(("-".to_owned(), Tone::Plain), |f| {
                status_cell(f.finding.status)
            }));
            let outcome = worst(&findings);
            cells.push((outcome_label(outcome).to_owned(), outcome_tone(outcome)));
            Row {
                cells,
                outcome,
                findings,
            }
        })
        .collect();
    let mut agent_rows: Vec<Row> = agents
        .into_iter()
        .map(|f| {
            let principal = f.finding.principal.as_ref().map_or("-", |p| p.as_str());
            let role = f.finding.role.as_ref().map_or("-", |r| r.as_str());
            Row {
                cells: vec![
                    (short(principal).to_owned(), Tone::Plain),
                    (role.to_owned(), Tone::Plain),
                    status_cell(f.finding.status),
                    (outcome_label(f.outcome).to_owned(), outcome_tone(f.outcome)),
                ],
                outcome: f.outcome,
                findings: vec![f],
            }
        })
        .collect();
    let mut check_rows: Vec<Row> = checks
        .into_iter()
        .map(|f| Row {
            cells: vec![
                (f.finding.requirement.as_str().to_owned(), Tone::Plain),
                status_cell(f.finding.status),
                (outcome_label(f.outcome).to_owned(), outcome_tone(f.outcome)),
            ],
            outcome: f.outcome,
            findings: vec![f],
        })
        .collect();

    let mut s = format!("{head}\n");
    let mut hidden = 0;
    let node_head: Vec<&str> = std::iter::once("NODE SERVICE ACCOUNT")
        .chain(PERMISSION_HEADS)
        .chain(["EXISTS", "OUTCOME"])
        .collect();
    for (heads, rows) in [
        (node_head, &mut nodes),
        (
            vec!["SERVICE AGENT", "ROLE", "STATUS", "OUTCOME"],
            &mut agent_rows,
        ),
        (vec!["PROJECT CHECK", "STATUS", "OUTCOME"], &mut check_rows),
    ] {
        rows.sort_by_key(|row| urgency(row.outcome));
        let shown: Vec<&Row> = rows
            .iter()
            .filter(|row| style.all || row.outcome != Outcome::Healthy)
            .collect();
        hidden += rows.len() - shown.len();
        if shown.is_empty() {
            continue;
        }
        let mut widths: Vec<usize> = heads.iter().map(|h| h.len()).collect();
        for row in &shown {
            for (w, (text, _)) in widths.iter_mut().zip(&row.cells) {
                *w = (*w).max(text.chars().count());
            }
        }
        let line = |cells: Vec<Cell>| -> String {
            let last = cells.len() - 1;
            let parts: Vec<String> = cells
                .into_iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, ((text, tone), w))| {
                    let pad = if i == last {
                        String::new()
                    } else {
                        " ".repeat(w - text.chars().count())
                    };
                    format!("{}{pad}", paint(style, tone, &text))
                })
                .collect();
            format!("  {}\n", parts.join("  "))
        };
        s.push_str(&line(
            heads
                .iter()
                .map(|h| ((*h).to_owned(), Tone::Head))
                .collect(),
        ));
        for row in shown {
            s.push_str(&line(row.cells.clone()));
            for f in row
                .findings
                .iter()
                .filter(|f| f.outcome != Outcome::Healthy)
            {
                for note in notes(&r.project_id, f) {
                    s.push_str(&format!("      {note}\n"));
                }
            }
        }
    }
    if hidden > 0 && !style.all {
        s.push_str(&format!(
            "  {hidden} healthy row(s) not shown (--all shows them)\n"
        ));
    }
    for a in &r.actions {
        let (verb, tone) = match a.outcome {
            Outcome::Restored => ("restored", Tone::Good),
            Outcome::WouldRestore => ("would restore", Tone::Warn),
            Outcome::NotAllowed => ("not restored", Tone::Warn),
            _ => ("FAILED", Tone::Bad),
        };
        let etags = match (&a.etag_before, &a.etag_after) {
            (Some(b), Some(after)) => {
                format!(" (policy etag {b} -> {after}, {} attempt(s))", a.attempts)
            }
            _ => String::new(),
        };
        let err = a
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {}: {}{etags}{err}\n",
            paint(style, tone, verb),
            describe_action(&r.project_id, &a.action)
        ));
    }
    s.push('\n');
    Block {
        text: Some(s),
        hidden_rows: hidden,
    }
}

/// The one-line summary at the end of the table.
fn summary_line(
    summary: &Summary,
    by_outcome: &BTreeMap<&'static str, usize>,
    (hidden_projects, hidden_rows): (usize, usize),
    mode: &str,
    style: Style,
) -> String {
    // Problems first, in the order of urgency; healthy last.
    let mut parts: Vec<(u8, String)> = by_outcome
        .iter()
        .map(|(label, n)| {
            let outcome = Outcome::ALL
                .into_iter()
                .find(|o| outcome_label(*o) == *label)
                .unwrap_or(Outcome::Unknown);
            let text = format!("{n} {label}");
            (urgency(outcome), paint(style, outcome_tone(outcome), &text))
        })
        .collect();
    parts.sort_by_key(|(u, _)| *u);
    let findings = if parts.is_empty() {
        "none".to_owned()
    } else {
        parts
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = format!(
        "mode: {mode}; {} project(s), {} using GKE, {} error(s); findings: {findings}",
        summary.projects, summary.gke_projects, summary.errors
    );
    if hidden_projects > 0 {
        line.push_str(&format!("; {hidden_projects} healthy project(s) not shown"));
    }
    if hidden_projects + hidden_rows > 0 {
        line.push_str(" (--all shows them)");
    }
    line
}

/// Renders the whole table at once (the demo prints it): every project shown, healthy rows
/// collapsed, no colour.
pub fn render_table(reports: &[ProjectReport], mode: &str) -> String {
    let style = Style {
        color: false,
        all: false,
        healthy_projects: true,
    };
    let mut s = String::new();
    let mut tally = Tally::default();
    let mut hidden_rows = 0;
    for r in reports {
        tally.add(r);
        let block = render_project(r, style);
        hidden_rows += block.hidden_rows;
        s.push_str(block.text.as_deref().unwrap_or_default());
    }
    s.push_str(&summary_line(
        &tally.summary,
        &tally.by_outcome,
        (0, hidden_rows),
        mode,
        style,
    ));
    s.push('\n');
    if let Some(deny) = tally.deny_line() {
        s.push_str(&deny);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::evaluate::Finding;
    use crate::domain::iam::Member;
    use crate::domain::report::{self, FindingReport};
    use crate::domain::requirements::RequirementId;

    fn finding(
        requirement: RequirementId,
        principal: &str,
        status: Status,
        outcome: Outcome,
    ) -> FindingReport {
        let member = Member::parse(principal).unwrap();
        let role = requirement.restore_role();
        let decision = match outcome {
            Outcome::WouldRestore => Decision::Restore {
                action: Action::Grant {
                    role: role.clone().unwrap(),
                    member: member.clone(),
                },
            },
            Outcome::Unknown => Decision::NeedsReview {
                reason: "granted only under an IAM condition".to_owned(),
            },
            _ => Decision::Healthy,
        };
        FindingReport {
            finding: Finding {
                requirement,
                principal: Some(member),
                status,
                missing_permissions: if status == Status::Missing {
                    vec!["monitoring.timeSeries.create".to_owned()]
                } else {
                    Vec::new()
                },
                conditional_permissions: Vec::new(),
                unknown_permissions: Vec::new(),
                role,
                clusters: vec!["us-central1/c1".to_owned()],
                node_pools: Vec::new(),
                granted_via: Vec::new(),
                detail: format!("detail of {principal}"),
                expires_at: (outcome == Outcome::Expiring)
                    .then(|| "2026-12-10T00:00:00.000Z".to_owned()),
                denied_permissions: Vec::new(),
                denied_by: Vec::new(),
                org_policy: None,
                deny_check: None,
            },
            decision,
            outcome,
        }
    }

    fn project(id: &str, findings: Vec<FindingReport>) -> ProjectReport {
        ProjectReport {
            project_id: id.to_owned(),
            project_number: "100".to_owned(),
            gke: true,
            folders: Vec::new(),
            policy_etag: Some("BwE=".to_owned()),
            flap_guard: None,
            findings,
            actions: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn an_account_whose_deny_policies_were_not_all_read_is_ok_star_with_one_line_saying_why() {
        let mut f = finding(
            RequirementId::NodeSaPermissions,
            "serviceAccount:nodes@p.iam.gserviceaccount.com",
            Status::Ok,
            Outcome::Healthy,
        );
        f.finding.deny_check = Some(crate::domain::evaluate::DenyCheck {
            unread: vec!["the deny policies of folders/1 (IAM v2 read quota)".to_owned()],
        });
        let table = render_table(&[project("p", vec![f])], "dry-run");
        assert!(table.contains("ok*"), "{table}");
        assert!(
            table.contains("1 node account(s) ok*") && table.contains("--iam-v2-wait"),
            "{table}"
        );
        let plain = render_table(&sample(), "dry-run");
        assert!(!plain.contains("ok*"), "{plain}");
    }

    fn sample() -> Vec<ProjectReport> {
        let healthy = |id: &str| {
            project(
                id,
                vec![
                    finding(
                        RequirementId::NodeSaPermissions,
                        &format!("serviceAccount:ok@{id}.iam.gserviceaccount.com"),
                        Status::Ok,
                        Outcome::Healthy,
                    ),
                    finding(
                        RequirementId::GkeServiceAgent,
                        "serviceAccount:service-100@container-engine-robot.iam.gserviceaccount.com",
                        Status::Ok,
                        Outcome::Healthy,
                    ),
                ],
            )
        };
        let mut broken = healthy("broken");
        broken.findings.push(finding(
            RequirementId::NodeSaPermissions,
            "serviceAccount:bad@broken.iam.gserviceaccount.com",
            Status::Missing,
            Outcome::WouldRestore,
        ));
        broken.findings.push(finding(
            RequirementId::NodeSaExists,
            "serviceAccount:bad@broken.iam.gserviceaccount.com",
            Status::Ok,
            Outcome::Healthy,
        ));
        broken.findings.push(finding(
            RequirementId::NodeSaPermissions,
            "serviceAccount:soon@broken.iam.gserviceaccount.com",
            Status::Ok,
            Outcome::Expiring,
        ));
        vec![healthy("fine-a"), broken, healthy("fine-b")]
    }

    #[test]
    fn the_streamed_json_is_the_scan_document() {
        let reports = sample();
        let summary = report::summarize(&reports);
        let counts = CallCounts::default();
        let discovery = Discovery::CloudAssetInventory {
            read_time: Some("2026-12-01T10:00:00Z".to_owned()),
            asset_calls: 2,
            from_snapshot: 2,
            reverified: 1,
        };
        let mut buf = Vec::new();
        {
            let mut stream = JsonStream::start(&mut buf, "dry-run").unwrap();
            for r in &reports {
                stream.project(r).unwrap();
            }
            stream
                .finish(&summary, &counts, Duration::from_millis(12), &discovery)
                .unwrap();
        }
        let streamed: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let whole = serde_json::to_value(ScanDocument {
            schema: SCAN_SCHEMA,
            mode: "dry-run",
            projects: &reports,
            summary: &summary,
            api_calls: &counts,
            elapsed_ms: 12,
            discovery: &discovery,
        })
        .unwrap();
        assert_eq!(streamed, whole);
        // No project at all is still a valid document.
        let mut empty = Vec::new();
        JsonStream::start(&mut empty, "enforce")
            .unwrap()
            .finish(
                &Summary::default(),
                &counts,
                Duration::ZERO,
                &Discovery::PerProject { reason: None },
            )
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(doc["projects"], serde_json::json!([]));
    }

    #[test]
    fn summarising_as_reports_stream_past_equals_summarising_them_all() {
        let reports = sample();
        let mut s = Summary::default();
        for r in reports.iter().rev() {
            s.add(r);
        }
        let whole = report::summarize(&reports);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::to_value(&whole).unwrap()
        );
    }

    #[test]
    fn the_table_shows_one_line_per_node_account_problems_first_and_collapses_healthy_rows() {
        let style = Style::default();
        let reports = sample();
        assert!(
            render_project(&reports[0], style).text.is_none(),
            "a healthy project is counted, not shown"
        );
        let block = render_project(&reports[1], style);
        let text = block.text.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("NODE SERVICE ACCOUNT") && lines[1].contains("TIMESERIES"));
        // The broken account first, on one line with its four permissions and existence.
        assert!(
            lines[2].starts_with("  bad@broken.iam.gserviceaccount.com"),
            "{text}"
        );
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "bad@broken.iam.gserviceaccount.com",
                "ok",
                "MISSING",
                "ok",
                "ok",
                "ok",
                "would-restore"
            ]
        );
        assert!(
            text.contains("fix: gcloud projects add-iam-policy-binding broken"),
            "{text}"
        );
        let soon = lines.iter().position(|l| l.contains("soon@")).unwrap();
        assert!(soon > 2 && lines[soon].contains("expiring"), "{text}");
        assert!(
            !text.contains("ok@broken"),
            "healthy rows are collapsed: {text}"
        );
        assert_eq!(block.hidden_rows, 2, "{text}");
        assert!(
            text.contains("2 healthy row(s) not shown (--all shows them)"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colour unless asked");

        let all = Style {
            all: true,
            healthy_projects: true,
            color: false,
        };
        let text = render_project(&reports[1], all).text.unwrap();
        assert!(
            text.contains("ok@broken") && text.contains("SERVICE AGENT"),
            "{text}"
        );
        assert!(render_project(&reports[0], all).text.is_some());
    }

    #[test]
    fn colour_is_ansi_and_only_when_asked() {
        let reports = sample();
        let style = Style {
            color: true,
            ..Style::default()
        };
        let text = render_project(&reports[1], style).text.unwrap();
        assert!(text.contains("\x1b[31;1mMISSING\x1b[0m"), "{text}");
    }

    #[test]
    fn the_summary_is_one_line_with_problems_first() {
        let text = render_table(&sample(), "dry-run");
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("mode: dry-run; 3 project(s), 3 using GKE, 0 error(s); findings: 1 would-restore, 1 expiring, 7 healthy"), "{last}");
    }
}
