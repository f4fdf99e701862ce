//! The `check-plan` command: reads the JSON of `terraform show -json PLANFILE` and says, before the
//! plan is applied, which of its changes would break what GKE needs (the requirement list), for
//! which principal, and what to change in the configuration.
//!
//! For every project the plan can take something from, the state after the plan is the live state
//! (read exactly as `scan` reads it, through the engine) with the plan's changes applied
//! ([`apply`]); both are evaluated by the same pure evaluation, and a requirement that holds before
//! and not after is a break, attributed to the changes whose effects caused it ([`verdict`]). A
//! plan that only adds grants (or touches nothing GKE needs) is decided without any API call.
//! `--no-live` decides from the plan alone ([`offline`]) and says what it could not know. Never
//! writes.
//!
//! Exit codes: 0 nothing breaks, 1 something breaks, 2 an error (unreadable file, not JSON, not a
//! plan, a project that cannot be read).

pub mod apply;
pub mod changes;
pub mod offline;
pub mod render;
pub mod terraform;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use self::changes::{Change, Scope, UNKNOWN_ACCOUNT, Unknown, What};
use self::terraform::Plan;
use self::verdict::Break;
use crate::connect::{GcpArgs, IamV2Reads, SetupError};
use crate::domain::evaluate::{self, Finding};
use crate::domain::iam::{ProjectId, ProjectNumber, ResourceRef, ServiceAccountEmail};
use crate::domain::requirements::RequirementId;
use crate::domain::state::{AccountState, OrgPolicyFact, ProjectState, RoleCatalog};
use crate::engine::{Options, Remediator};
use crate::gcp::{CallCounts, Gcp};
use crate::policy::PolicyFile;
use crate::ports::{ApiError, Cloud, ProjectInfo};
use crate::render::{Format, Style};

/// `check-plan` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckPlanArgs {
    /// The JSON of `terraform show -json PLANFILE` (`-`: standard input).
    #[arg(value_name = "PLAN.json")]
    pub plan: PathBuf,
    /// Also check this project (repeatable). Changes to a folder or organization are checked on
    /// the projects the plan names and these; without any `--project`, on every project under it.
    #[arg(long = "project", value_name = "PROJECT_ID")]
    pub projects: Vec<String>,
    /// Output format (`table` for people, `json` for machines).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Decide from the plan alone: no API call; the output says what could not be known.
    #[arg(long)]
    pub no_live: bool,
    /// Google connection settings.
    #[command(flatten)]
    pub gcp: GcpArgs,
}

/// Schema id of the JSON document.
pub const CHECK_PLAN_SCHEMA: &str = "gke-iam-remediator.check-plan/v1";

/// The `check-plan --format json` document (docs/check-plan.md). Fields may be added, never renamed.
#[derive(Debug, Serialize)]
pub struct CheckPlanDocument {
    /// [`CHECK_PLAN_SCHEMA`].
    pub schema: &'static str,
    /// `ok` (nothing breaks), `breaks`, or `error` (something could not be checked).
    pub result: &'static str,
    /// The plan read.
    pub plan: PlanSummary,
    /// Live state was read (false with `--no-live`, or when nothing needed it).
    pub live: bool,
    /// Every break, by address.
    pub breaks: Vec<Break>,
    /// The projects checked.
    pub projects: Vec<ProjectSummary>,
    /// Values known only after apply, and what was assumed in their place.
    pub unknown_values: Vec<Unknown>,
    /// What could not be known (`--no-live`, changes whose project is known only after apply).
    pub not_known: Vec<String>,
    /// Errors: projects that could not be read.
    pub errors: Vec<String>,
    /// Google API calls made.
    pub api_calls: CallCounts,
    /// Wall time of the check, milliseconds.
    pub elapsed_ms: u128,
}

/// What the plan is.
#[derive(Debug, Serialize)]
pub struct PlanSummary {
    /// The file (`-` for standard input).
    pub file: String,
    /// `format_version`.
    pub format_version: String,
    /// `terraform_version`.
    pub terraform_version: Option<String>,
    /// Resource changes in the plan (managed resources, no-ops included).
    pub resource_changes: usize,
    /// Changes that bear on GKE's IAM (types the check interprets, doing something).
    pub relevant_changes: usize,
}

/// One project checked.
#[derive(Debug, Serialize)]
pub struct ProjectSummary {
    /// Project id.
    pub project_id: String,
    /// Project number (`0`: not known).
    pub project_number: String,
    /// `live`: its state was read; `plan`: from the plan alone (`--no-live`, or a project the plan
    /// creates).
    pub source: &'static str,
    /// Addresses of the changes that apply to it.
    pub changes: Vec<String>,
    /// Breaks in it.
    pub breaks: usize,
}

/// Runs `check-plan` and returns the exit code.
pub async fn run(args: CheckPlanArgs) -> i32 {
    match run_inner(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Reads and parses the plan file.
pub fn read_plan(path: &std::path::Path) -> Result<Plan, SetupError> {
    let name = path.display().to_string();
    let mut text = Vec::new();
    let read = if name == "-" {
        std::io::stdin().read_to_end(&mut text).map(drop)
    } else {
        std::fs::read(path).map(|t| text = t)
    };
    read.map_err(|e| SetupError::Usage(format!("cannot read {name}: {e}")))?;
    terraform::parse(&text, &name).map_err(|e| SetupError::Usage(e.to_string()))
}

async fn run_inner(args: &CheckPlanArgs) -> Result<i32, SetupError> {
    let started = Instant::now();
    let plan = read_plan(&args.plan)?;
    for p in &args.projects {
        ProjectId::parse(p).map_err(|e| SetupError::Usage(format!("--project: {e}")))?;
    }
    let mut doc = check(&plan, args, started).await?;
    doc.plan.file = args.plan.display().to_string();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Table => {
            let style = Style {
                color: crate::render::stdout_colour(),
                ..Style::default()
            };
            out.write_all(render::table(&doc, style).as_bytes())?;
        }
    }
    out.flush()?;
    Ok(exit_code(&doc))
}

/// 1 when something breaks, else 2 when something could not be checked, else 0.
pub fn exit_code(doc: &CheckPlanDocument) -> i32 {
    if !doc.breaks.is_empty() {
        1
    } else if !doc.errors.is_empty() {
        2
    } else {
        0
    }
}

/// The projects and ancestors the plan can take something from.
#[derive(Default, Debug)]
struct Touched {
    /// Project ids (or numbers) named by changes that can break something, and `--project`s.
    projects: BTreeSet<String>,
    /// Folders and organizations changed in a way that can break something.
    roots: BTreeSet<ResourceRef>,
    /// Projects the plan creates: id -> (number, parent).
    created: BTreeMap<String, (Option<String>, Option<String>)>,
    /// Some breaking change's place is known only after apply.
    unknown_scope: Vec<String>,
}

fn touched(changes: &[Change], extra: &[String]) -> Touched {
    let mut t = Touched::default();
    for c in changes {
        if let What::Project {
            project_id,
            number,
            parent,
            created: true,
        } = &c.what
        {
            t.created
                .insert(project_id.clone(), (number.clone(), parent.clone()));
        }
    }
    for c in changes.iter().filter(|c| c.can_break()) {
        match &c.scope {
            Scope::Project(p) => {
                t.projects.insert(p.clone());
            }
            Scope::Folder(f) => {
                t.roots
                    .extend(ResourceRef::parse(&format!("folders/{f}")).ok());
            }
            Scope::Organization(o) => {
                t.roots
                    .extend(ResourceRef::parse(&format!("organizations/{o}")).ok());
            }
            Scope::Unknown => t.unknown_scope.push(c.address.clone()),
        }
        // A deleted or disabled account breaks the projects whose nodes run as it: its own project
        // is the one the plan names.
        if let What::ServiceAccount { email: Some(e), .. } = &c.what
            && let Some(p) = e
                .as_str()
                .strip_suffix(".iam.gserviceaccount.com")
                .and_then(|d| d.rsplit_once('@'))
                .map(|(_, p)| p.to_owned())
        {
            t.projects.insert(p);
        }
    }
    t.projects.extend(extra.iter().cloned());
    t
}

/// The whole check: the document, without printing it.
pub async fn check(
    plan: &Plan,
    args: &CheckPlanArgs,
    started: Instant,
) -> Result<CheckPlanDocument, SetupError> {
    let changes = changes::relevant(plan);
    let mut doc = CheckPlanDocument {
        schema: CHECK_PLAN_SCHEMA,
        result: "ok",
        plan: PlanSummary {
            file: String::new(),
            format_version: plan.format_version.clone(),
            terraform_version: plan.terraform_version.clone(),
            resource_changes: plan.changes.len(),
            relevant_changes: changes.len(),
        },
        live: false,
        breaks: Vec::new(),
        projects: Vec::new(),
        unknown_values: changes.iter().flat_map(|c| c.unknowns.clone()).collect(),
        not_known: Vec::new(),
        errors: Vec::new(),
        api_calls: CallCounts::default(),
        elapsed_ms: 0,
    };
    let t = touched(&changes, &args.projects);
    let checks = Options::new(PolicyFile::default().remediation)
        .settings
        .checks;
    let mut results: Vec<ProjectResult> = Vec::new();
    if args.no_live {
        results.extend(check_offline(
            plan,
            &changes,
            &t,
            &checks,
            &mut doc.not_known,
        ));
    } else {
        let live_projects: Vec<String> = t
            .projects
            .iter()
            .filter(|p| !t.created.contains_key(*p))
            .cloned()
            .collect();
        let roots: Vec<ResourceRef> = if args.projects.is_empty() {
            t.roots.iter().cloned().collect()
        } else {
            Vec::new()
        };
        if !live_projects.is_empty() || !roots.is_empty() {
            // Deny policies already in place bear on the state before and after alike: a check
            // reads those the IAM v2 quota has free now and never waits for more (`--iam-v2-wait`).
            let reads = IamV2Reads::Budget(std::time::Duration::ZERO);
            let gcp = Arc::new(args.gcp.connect(reads)?);
            doc.live = true;
            let live = check_live(&gcp, &args.gcp, &changes, &live_projects, &roots).await;
            doc.api_calls = gcp.client().counts();
            let live = live?;
            results.extend(live.results);
            doc.errors.extend(live.errors);
        }
        // Projects the plan creates are checked from the plan: they have no live state yet.
        let created_only = Touched {
            projects: t
                .created
                .keys()
                .filter(|p| t.projects.contains(*p))
                .cloned()
                .collect(),
            created: t.created.clone(),
            ..Touched::default()
        };
        if !created_only.projects.is_empty() {
            results.extend(check_offline(
                plan,
                &changes,
                &created_only,
                &checks,
                &mut doc.not_known,
            ));
        }
    }
    if !t.unknown_scope.is_empty() && results.is_empty() {
        doc.not_known.push(format!(
            "{}: the project is known only after apply; give --project to check the projects it may be",
            t.unknown_scope.join(", ")
        ));
    }
    for r in results {
        doc.projects.push(ProjectSummary {
            project_id: r.project_id,
            project_number: r.project_number,
            source: r.source,
            changes: r.changes,
            breaks: r.breaks.len(),
        });
        doc.breaks.extend(r.breaks);
    }
    doc.projects.sort_by(|a, b| a.project_id.cmp(&b.project_id));
    doc.breaks.sort_by(|a, b| {
        (&a.address, &a.project, a.requirement, &a.principal).cmp(&(
            &b.address,
            &b.project,
            b.requirement,
            &b.principal,
        ))
    });
    doc.not_known.sort();
    doc.not_known.dedup();
    doc.result = if !doc.breaks.is_empty() {
        "breaks"
    } else if !doc.errors.is_empty() {
        "error"
    } else {
        "ok"
    };
    doc.elapsed_ms = started.elapsed().as_millis();
    Ok(doc)
}

/// The outcome for one project.
struct ProjectResult {
    project_id: String,
    project_number: String,
    source: &'static str,
    changes: Vec<String>,
    breaks: Vec<Break>,
}

struct LiveOutcome {
    results: Vec<ProjectResult>,
    errors: Vec<String>,
}

async fn check_live(
    gcp: &Arc<Gcp>,
    settings: &GcpArgs,
    changes: &[Change],
    projects: &[String],
    roots: &[ResourceRef],
) -> Result<LiveOutcome, SetupError> {
    let mut options = Options::new(PolicyFile::default().remediation);
    options.context.deny_cache = Arc::new(crate::engine::deny_cache::DenyPolicyCache::with_store(
        settings.command_store()?,
    ));
    options.settings.deny_read_budget = gcp.client().iam_v2_budget();
    options.settings.read_ahead = true;
    let cloud: Arc<dyn Cloud> = gcp.clone();
    let remediator = Remediator::new(cloud.clone(), options);
    let (infos, failures) = remediator.resolve(projects, roots).await?;
    let mut errors: Vec<String> = failures
        .iter()
        .map(|f| {
            let why = f.error.as_ref().map(|e| e.to_string()).unwrap_or_default();
            format!("project {} cannot be read: {why}", f.project_id)
        })
        .collect();
    let outcomes: Vec<Result<Option<ProjectResult>, (String, ApiError)>> =
        futures::stream::iter(infos.iter())
            .map(|info| check_project_live(&remediator, cloud.as_ref(), changes, info))
            .buffer_unordered(16)
            .collect()
            .await;
    let mut results = Vec::new();
    for o in outcomes {
        match o {
            Ok(Some(r)) => results.push(r),
            Ok(None) => {}
            Err((project, e)) => errors.push(format!("project {project} cannot be read: {e}")),
        }
    }
    errors.sort();
    Ok(LiveOutcome { results, errors })
}

/// Roles whose definitions attribution needs: those evaluation needs before and after, and those
/// of the grants the plan removes.
fn roles_of(before: &ProjectState, applied: &apply::Applied) -> BTreeSet<crate::domain::iam::Role> {
    let mut roles = evaluate::roles_needed(before);
    roles.extend(evaluate::roles_needed(&applied.state));
    for (_, e) in &applied.effects {
        if let apply::Effect::RemovedGrant { role, .. } = e {
            roles.insert(role.clone());
        }
    }
    roles
}

async fn check_project_live(
    remediator: &Remediator,
    cloud: &dyn Cloud,
    changes: &[Change],
    info: &ProjectInfo,
) -> Result<Option<ProjectResult>, (String, ApiError)> {
    let fail = |e: ApiError| (info.project_id.to_string(), e);
    let mut before = remediator.read_state(info).await.map_err(fail)?;
    if !changes.iter().any(|c| apply::touches(&before, c)) {
        return Ok(None);
    }
    // A project without clusters had no deny policies read; the plan gives it node accounts.
    let adds_nodes = changes.iter().any(|c| {
        matches!(c.what, What::Cluster { .. } | What::NodePool { .. }) && apply::touches(&before, c)
    });
    if before.clusters.is_empty() && adds_nodes {
        read_deny_policies(cloud, &mut before).await;
    }
    let findings_before = remediator.evaluate(&mut before).await;
    let mut applied = apply::apply(&before, changes);
    if applied.applied.is_empty() {
        return Ok(None);
    }
    read_new_accounts(cloud, changes, &mut applied.state).await;
    let mut after = applied.state.clone();
    let findings_after = remediator.evaluate(&mut after).await;
    applied.state = after;
    let catalog = remediator.role_catalog(roles_of(&before, &applied)).await;
    Ok(Some(result(
        "live",
        &findings_before,
        &findings_after,
        &applied,
        changes,
        &catalog,
    )))
}

fn result(
    source: &'static str,
    before: &[Finding],
    after: &[Finding],
    applied: &apply::Applied,
    changes: &[Change],
    catalog: &RoleCatalog,
) -> ProjectResult {
    let breaks = verdict::breaks(before, after, applied, changes, catalog);
    ProjectResult {
        project_id: applied.state.project_id.to_string(),
        project_number: applied.state.project_number.to_string(),
        source,
        changes: applied
            .applied
            .iter()
            .map(|&i| changes[i].address.clone())
            .collect(),
        breaks,
    }
}

/// The deny policies of a project and its ancestors, for a project the plan gives its first nodes
/// (the live read skips them for a project without clusters).
async fn read_deny_policies(cloud: &dyn Cloud, state: &mut ProjectState) {
    let points: Vec<String> = std::iter::once(format!("projects/{}", state.project_number))
        .chain(state.ancestors.iter().map(|(r, _)| r.to_string()))
        .collect();
    let reads = futures::future::join_all(points.iter().map(|p| cloud.list_deny_policies(p))).await;
    for (point, read) in points.iter().zip(reads) {
        match read {
            Ok(mut policies) => state.access.deny_policies.append(&mut policies),
            Err(e) => state
                .access
                .deny_unreadable
                .push(format!("the deny policies of {point} ({e})")),
        }
    }
}

/// Node accounts the plan introduces that the live read did not look at: read each once.
async fn read_new_accounts(cloud: &dyn Cloud, changes: &[Change], state: &mut ProjectState) {
    let created: BTreeSet<&ServiceAccountEmail> = changes
        .iter()
        .filter_map(|c| match &c.what {
            What::ServiceAccount {
                email: Some(e),
                exists_after: true,
                ..
            } => Some(e),
            _ => None,
        })
        .collect();
    let wanted: Vec<ServiceAccountEmail> = evaluate::node_service_accounts(state)
        .into_iter()
        .map(|n| n.email)
        .filter(|e| !state.accounts.contains_key(e) && !created.contains(e))
        .collect();
    let reads = futures::future::join_all(wanted.iter().map(|e| async move {
        if e.as_str() == UNKNOWN_ACCOUNT {
            return AccountState::Active { unique_id: None };
        }
        match cloud.get_service_account(e.as_str()).await {
            Ok(Some(a)) if a.disabled => AccountState::Disabled {
                unique_id: a.unique_id,
            },
            Ok(Some(a)) => AccountState::Active {
                unique_id: a.unique_id,
            },
            Ok(None) => AccountState::Deleted { unique_id: None },
            Err(e) => AccountState::Unknown {
                reason: e.to_string(),
            },
        }
    }))
    .await;
    for (email, s) in wanted.into_iter().zip(reads) {
        state.accounts.insert(email, s);
    }
    for e in created {
        state
            .accounts
            .entry(e.clone())
            .or_insert(AccountState::Active { unique_id: None });
    }
}

/// Checks from the plan alone: the projects in `t`, with states built from the plan's `before`
/// values (or, for a project the plan creates, what Google sets up in a new project).
fn check_offline(
    plan: &Plan,
    changes: &[Change],
    t: &Touched,
    checks: &BTreeSet<RequirementId>,
    notes: &mut Vec<String>,
) -> Vec<ProjectResult> {
    let befores = offline::before_changes(plan);
    let ancestors = offline::plan_ancestors(
        &changes
            .iter()
            .chain(befores.iter())
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut projects: BTreeSet<String> = t.projects.clone();
    if projects.is_empty() && !t.roots.is_empty() {
        // Only folders or organizations change: check the projects whose agents the plan names
        // (by number), or one project standing for any under them.
        projects.extend(agent_numbers(changes.iter().chain(befores.iter())));
        if projects.is_empty() {
            projects.insert(offline::ANY_PROJECT.to_owned());
        }
        notes.push(format!(
            "which projects are under {} is not in the plan: checked as if above {}",
            t.roots
                .iter()
                .map(ResourceRef::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            projects.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    for project in projects {
        let (mut before, mut n) = match t.created.get(&project) {
            Some((number, parent)) => {
                let mut notes = Vec::new();
                let number = number.clone().unwrap_or_else(|| {
                    notes.push(format!(
                        "project {project} is created by the plan and its number is known only after apply: its GKE service agents are not identified"
                    ));
                    offline::UNKNOWN_NUMBER.to_owned()
                });
                let Ok(id) = ProjectId::parse(&project) else {
                    continue;
                };
                let number = ProjectNumber::parse(&number).unwrap_or_else(|_| {
                    ProjectNumber::parse(offline::UNKNOWN_NUMBER).expect("digits")
                });
                let mut s = offline::empty_state(id, number);
                let chain: Vec<ResourceRef> = match parent.as_deref().map(ResourceRef::parse) {
                    Some(Ok(r)) => vec![r],
                    _ => ancestors.clone(),
                };
                s.ancestors = chain.into_iter().map(|r| (r, Default::default())).collect();
                let enforced = changes.iter().any(|c| {
                    matches!(
                        c.what,
                        What::OrgPolicy {
                            enforced_after: true
                        }
                    ) && apply::touches(&s, c)
                });
                offline::google_grants(&mut s, !enforced);
                (s, notes)
            }
            None => offline::state_before(plan, &project, &befores, changes, &ancestors),
        };
        if t.created.contains_key(&project) {
            before.access.automatic_grants = OrgPolicyFact::NotEnforced;
        }
        before.read_at = now;
        let applied = apply::apply(&before, changes);
        if applied.applied.is_empty() && !t.created.contains_key(&project) {
            continue;
        }
        notes.append(&mut n);
        let roles = roles_of(&before, &applied);
        let catalog = offline::catalog_for(roles);
        let findings_before = evaluate::evaluate(&before, &catalog, checks);
        let findings_after = evaluate::evaluate(&applied.state, &catalog, checks);
        let mut r = result(
            "plan",
            &findings_before,
            &findings_after,
            &applied,
            changes,
            &catalog,
        );
        let (mut more, mut said) = offline::plan_only_findings(&applied, changes, &r.breaks);
        r.breaks.append(&mut more);
        if applied.state.project_number.as_str() == offline::UNKNOWN_NUMBER {
            for b in &mut r.breaks {
                offline::name_unknown_number(b);
            }
        }
        notes.append(&mut said);
        out.push(r);
    }
    out
}

fn agent_numbers<'a>(changes: impl Iterator<Item = &'a Change>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in changes {
        if matches!(c.scope, Scope::Folder(_) | Scope::Organization(_)) {
            let members: Vec<String> = match &c.what {
                What::Binding {
                    after: Some((_, ms)),
                    ..
                } => ms.iter().map(|m| m.to_string()).collect(),
                What::Member { before, after } => before
                    .iter()
                    .chain(after.iter())
                    .map(|g| g.member.to_string())
                    .collect(),
                What::Policy { after: Some(p) } => p
                    .bindings
                    .iter()
                    .flat_map(|b| b.members.iter().map(|m| m.to_string()))
                    .collect(),
                _ => Vec::new(),
            };
            for m in members {
                if let Some(rest) = m
                    .strip_prefix("serviceAccount:service-")
                    .and_then(|r| r.split_once('@'))
                    && rest.0.bytes().all(|b| b.is_ascii_digit())
                {
                    out.insert(rest.0.to_owned());
                }
            }
        }
    }
    out
}
