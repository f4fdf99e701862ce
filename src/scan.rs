//! The `scan` command: check projects (and folders / organizations) against the requirement list,
//! print a table for people or a stable JSON document for machines, and optionally restore.
//!
//! Exit codes: 0 every finding ok (or restored), 1 findings remain, 2 error.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::domain::evaluate::Status;
use crate::domain::iam::ResourceRef;
use crate::domain::plan::{Action, Decision};
use crate::domain::report::{self, Outcome, ProjectReport, Summary};
use crate::engine::snapshot::{self, Discovery, SnapshotSettings};
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
    /// Client-side rate limit per API, requests per second: `cloudresourcemanager=10`. Repeatable, or
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
}

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
}

impl GcpArgs {
    /// Builds the Google adapters from the arguments.
    pub fn connect(&self) -> Result<Gcp, SetupError> {
        let credentials = match (&self.access_token, &self.api_endpoint) {
            (Some(token), _) => Credentials::Static(token.clone()),
            (None, Some(_)) => Credentials::Anonymous,
            (None, None) => Credentials::application_default()?,
        };
        let mut rate_limits = crate::gcp::client::default_rate_limits();
        for spec in &self.rate_limits {
            let (name, value) = spec.split_once('=').ok_or_else(|| {
                SetupError::Usage(format!("--rate-limit `{spec}`: expected API=N"))
            })?;
            let api = Api::from_name(name).ok_or_else(|| {
                let names: Vec<_> = Api::ALL.iter().map(|a| a.name()).collect();
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
        let client = Client::new(ClientConfig {
            api_endpoint: self.api_endpoint.clone(),
            credentials,
            retry: RetryPolicy {
                max_attempts: self.max_attempts.max(1),
                ..RetryPolicy::default()
            },
            rate_limits,
            timeout: Duration::from_secs(30),
        })?;
        Ok(Gcp::new(client))
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
    /// How projects were discovered and checked (`cloud-asset-inventory` or `per-project`).
    pub discovery: &'a Discovery,
    /// Per-project results.
    pub projects: &'a [ProjectReport],
    /// Totals.
    pub summary: &'a Summary,
    /// Google API calls made.
    pub api_calls: &'a CallCounts,
    /// Wall time.
    pub elapsed_ms: u128,
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
    let gcp = Arc::new(args.gcp.connect()?);
    let mut options = Options::new(policy);
    options.apply = args.apply;
    options.troubleshooter = args.troubleshooter;
    options.concurrency = args.concurrency.max(1);
    let remediator = Arc::new(Remediator::new(gcp.clone(), options));
    let started = Instant::now();
    if args.apply && !remediator.options().writes() {
        eprintln!(
            "note: --apply with a dry-run policy writes nothing; set `mode: enforce` in the policy file to restore"
        );
    }
    let (projects, failures, discovery, from_snapshot) =
        discover(&remediator, &args.projects, &roots, args.no_asset_inventory).await?;
    let mut reports = run_with_progress(&remediator, &projects).await;
    reports.extend(from_snapshot);
    reports.sort_by(|a, b| a.project_id.cmp(&b.project_id));
    reports.extend(failures);
    let summary = report::summarize(&reports);
    let counts = gcp.client().counts();
    let mode = if remediator.options().writes() {
        "enforce"
    } else {
        "dry-run"
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let doc = ScanDocument {
                schema: "gke-iam-remediator.scan/v1",
                mode,
                discovery: &discovery,
                projects: &reports,
                summary: &summary,
                api_calls: &counts,
                elapsed_ms: started.elapsed().as_millis(),
            };
            let _ = serde_json::to_writer_pretty(&mut out, &doc);
            let _ = writeln!(out);
        }
        Format::Table => {
            let _ = write!(out, "{}", render_table(&reports, mode));
            if !roots.is_empty() {
                let _ = writeln!(out, "{}", discovery.describe());
            }
            let _ = writeln!(
                out,
                "{} project(s), {} using GKE, {} API call(s) in {:.2}s",
                summary.projects,
                summary.gke_projects,
                counts.total,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(exit_code(&reports))
}

/// The projects to check live, those that cannot be found, how they were discovered, and the
/// reports of projects a Cloud Asset Inventory snapshot showed healthy. Folders and organizations go
/// through the snapshot first (unless turned off); without Cloud Asset access every project is read
/// live, and that is said once.
async fn discover(
    remediator: &Remediator,
    projects: &[String],
    roots: &[ResourceRef],
    off: bool,
) -> Result<
    (
        Vec<ProjectInfo>,
        Vec<ProjectReport>,
        Discovery,
        Vec<ProjectReport>,
    ),
    SetupError,
> {
    if roots.is_empty() || off {
        let (infos, failures) = remediator.resolve(projects, roots).await?;
        let reason = (off && !roots.is_empty()).then(|| "turned off".to_owned());
        return Ok((
            infos,
            failures,
            Discovery::PerProject { reason },
            Vec::new(),
        ));
    }
    match snapshot::survey(remediator, roots, &SnapshotSettings::default()).await {
        Ok(survey) => {
            let known: std::collections::BTreeSet<String> = survey
                .healthy
                .iter()
                .map(|r| r.project_id.clone())
                .chain(
                    survey
                        .suspects
                        .iter()
                        .map(|s| s.info.project_id.to_string()),
                )
                .collect();
            let explicit: Vec<String> = projects
                .iter()
                .filter(|p| !known.contains(*p))
                .cloned()
                .collect();
            let (mut infos, failures) = remediator.resolve(&explicit, &[]).await?;
            for s in &survey.suspects {
                tracing::debug!(project = %s.info.project_id, reason = %s.reason, "re-verifying live");
            }
            infos.extend(survey.suspects.iter().map(|s| s.info.clone()));
            infos.sort_by(|a, b| a.project_id.cmp(&b.project_id));
            let discovery = Discovery::of(&survey);
            Ok((infos, failures, discovery, survey.healthy))
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cloud Asset Inventory cannot be read: every project is checked live");
            let (infos, failures) = remediator.resolve(projects, roots).await?;
            let discovery = Discovery::PerProject {
                reason: Some(e.to_string()),
            };
            Ok((infos, failures, discovery, Vec::new()))
        }
    }
}

async fn run_with_progress(
    remediator: &Arc<Remediator>,
    projects: &[ProjectInfo],
) -> Vec<ProjectReport> {
    let tty = std::io::stderr().is_terminal() && projects.len() > 1;
    if !tty {
        return remediator.run(projects).await;
    }
    let total = projects.len();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reporter = {
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
    };
    use futures::StreamExt;
    let reports = futures::stream::iter(projects)
        .map(|p| {
            let done = done.clone();
            async move {
                let r = remediator.remediate(p).await;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                r
            }
        })
        .buffered(remediator.options().concurrency)
        .collect()
        .await;
    let _ = reporter.await;
    reports
}

/// 2 if a project could not be checked, 1 if any finding is neither healthy nor restored, else 0.
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
    match action {
        Action::Grant { role, member } => {
            format!(
                "gcloud projects add-iam-policy-binding {project} --member={member} --role={role} --condition=None"
            )
        }
        Action::EnableService { service } => {
            format!("gcloud services enable {service} --project={project}")
        }
        Action::EnableServiceAccount { email } => {
            format!("gcloud iam service-accounts enable {email}")
        }
        Action::UndeleteServiceAccount { unique_id, .. } => {
            format!("gcloud beta iam service-accounts undelete {unique_id}")
        }
    }
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

/// Renders the table for people: one line per finding, details and the fix under anything not ok.
pub fn render_table(reports: &[ProjectReport], mode: &str) -> String {
    let mut s = String::new();
    for r in reports {
        let number = if r.project_number.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.project_number)
        };
        s.push_str(&format!("PROJECT {}{number}\n", r.project_id));
        if let Some(e) = &r.error {
            s.push_str(&format!("  ERROR {e}\n\n"));
            continue;
        }
        if !r.gke && r.findings.is_empty() {
            s.push_str(
                "  not a GKE project (Container API disabled, no clusters): nothing to check\n\n",
            );
            continue;
        }
        s.push_str(&format!(
            "  {:<12} {:<24} {:<14} {}\n",
            "STATUS", "REQUIREMENT", "OUTCOME", "PRINCIPAL"
        ));
        for f in &r.findings {
            let principal = f
                .finding
                .principal
                .as_ref()
                .map(|p| short(p.as_str()).to_owned())
                .unwrap_or_else(|| "-".to_owned());
            s.push_str(&format!(
                "  {:<12} {:<24} {:<14} {}\n",
                f.finding.status.as_str(),
                f.finding.requirement.as_str(),
                outcome_label(f.outcome),
                principal,
            ));
            if f.finding.status == Status::Ok {
                continue;
            }
            s.push_str(&format!("  {:<12} {}\n", "", f.finding.detail));
            if !f.finding.clusters.is_empty() {
                s.push_str(&format!(
                    "  {:<12} used by {}\n",
                    "",
                    f.finding.clusters.join(", ")
                ));
            }
            match &f.decision {
                Decision::Restore { action } if f.outcome != Outcome::Restored => {
                    s.push_str(&format!(
                        "  {:<12} fix: {}\n",
                        "",
                        gcloud_fix(&r.project_id, action)
                    ));
                }
                Decision::NotAllowed { reason }
                | Decision::Blocked { reason }
                | Decision::NeedsReview { reason } => {
                    s.push_str(&format!("  {:<12} not restored: {reason}\n", ""));
                    if f.finding.status == Status::Missing
                        && let (Some(role), Some(member)) = (&f.finding.role, &f.finding.principal)
                    {
                        let fix = Action::Grant {
                            role: role.clone(),
                            member: member.clone(),
                        };
                        s.push_str(&format!(
                            "  {:<12} fix: {}\n",
                            "",
                            gcloud_fix(&r.project_id, &fix)
                        ));
                    }
                }
                _ => {}
            }
        }
        for a in &r.actions {
            let verb = match a.outcome {
                Outcome::Restored => "restored",
                Outcome::WouldRestore => "would restore",
                Outcome::NotAllowed => "not restored",
                _ => "FAILED",
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
                "  {verb}: {}{etags}{err}\n",
                describe_action(&r.project_id, &a.action)
            ));
        }
        s.push('\n');
    }
    let by: BTreeMap<&str, usize> =
        reports
            .iter()
            .flat_map(|r| &r.findings)
            .fold(BTreeMap::new(), |mut m, f| {
                *m.entry(outcome_label(f.outcome)).or_default() += 1;
                m
            });
    let parts: Vec<String> = by.iter().map(|(k, v)| format!("{v} {k}")).collect();
    s.push_str(&format!(
        "mode: {mode}; findings: {}\n",
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    ));
    s
}
