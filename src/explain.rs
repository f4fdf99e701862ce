//! The `explain` command: for one service account (`--member`) or every node account of one cluster
//! (`--cluster LOCATION/NAME`), why each required node permission is or is not held, as a table for
//! people or `--format json`.
//!
//! State is read through the engine exactly as `scan` reads it (same ports, caches and evaluation);
//! the trace itself is the pure [`crate::domain::explain::explain`]. Never writes.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::connect::{CLI_IAM_V2_WAIT, GcpArgs, IamV2Reads, SetupError};
use crate::domain::evaluate::{self, Status};
use crate::domain::explain::{self, ConditionNow, Effect, Explanation};
use crate::domain::iam::ServiceAccountEmail;
use crate::engine::{Options, Remediator};
use crate::policy::PolicyFile;
use crate::render::{Format, Style, Tone, paint};

/// `explain` arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["member", "cluster"])))]
pub struct ExplainArgs {
    /// The project whose IAM is explained.
    #[arg(long, value_name = "PROJECT_ID")]
    pub project: String,
    /// The service account to explain (`serviceAccount:EMAIL` or `EMAIL`).
    #[arg(long, value_name = "MEMBER")]
    pub member: Option<String>,
    /// Explain every node service account of this cluster (`LOCATION/NAME`).
    #[arg(long, value_name = "LOCATION/NAME")]
    pub cluster: Option<String>,
    /// Output format (`table` for people, `json` for machines).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Ask the Policy Troubleshooter about permissions that may come through groups.
    #[arg(long)]
    pub troubleshooter: bool,
    /// Google connection settings.
    #[command(flatten)]
    pub gcp: GcpArgs,
}

/// The `explain --format json` document. Fields may be added, never renamed.
#[derive(Serialize)]
pub struct ExplainDocument<'a> {
    /// Schema id: `gke-iam-remediator.explain/v1`.
    pub schema: &'static str,
    /// One explanation per account.
    pub explanations: &'a [Explanation],
}

/// Runs `explain` and returns the exit code: 0 every explained account holds every permission, 1
/// something is lacking (or needs review), 2 an error.
pub async fn run(args: ExplainArgs) -> i32 {
    match run_inner(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn parse_member(raw: &str) -> Result<ServiceAccountEmail, SetupError> {
    let email = match raw.split_once(':') {
        Some(("serviceAccount", email)) => email,
        Some((kind, _)) => {
            return Err(SetupError::Usage(format!(
                "--member `{raw}`: explain traces service accounts (serviceAccount:EMAIL), not `{kind}:` members"
            )));
        }
        None => raw,
    };
    ServiceAccountEmail::parse(email)
        .map_err(|e| SetupError::Usage(format!("--member `{raw}`: {e}")))
}

async fn run_inner(args: &ExplainArgs) -> Result<i32, SetupError> {
    let member = args.member.as_deref().map(parse_member).transpose()?;
    let reads = IamV2Reads::Budget(CLI_IAM_V2_WAIT);
    let gcp = Arc::new(args.gcp.connect(reads)?);
    let mut options = Options::new(PolicyFile::default().remediation);
    options.context.deny_cache = Arc::new(crate::engine::deny_cache::DenyPolicyCache::with_store(
        args.gcp.command_store()?,
    ));
    options.settings.deny_read_budget = gcp.client().iam_v2_budget();
    options.settings.troubleshooter = args.troubleshooter;
    options.settings.read_ahead = true;
    let remediator = Remediator::new(gcp, options);
    let (infos, failures) = remediator
        .resolve(std::slice::from_ref(&args.project), &[])
        .await?;
    if let Some(f) = failures.first() {
        let why = f.error.as_ref().map(|e| e.to_string()).unwrap_or_default();
        return Err(SetupError::Usage(format!(
            "project `{}` cannot be read: {why}",
            f.project_id
        )));
    }
    let Some(info) = infos.first() else {
        return Err(SetupError::Usage(format!(
            "project `{}` not found",
            args.project
        )));
    };
    let mut state = remediator.read_state(info).await?;
    // The same evaluation scan runs: it records in the state what Cloud Identity says about group
    // memberships, the org policy behind a role-less default account and (with --troubleshooter) the
    // troubleshooter's answers, so the trace and scan's verdict agree.
    remediator.evaluate(&mut state).await;
    let emails: Vec<ServiceAccountEmail> = match (&member, &args.cluster) {
        (Some(m), _) => vec![m.clone()],
        (None, Some(cluster)) => {
            let accounts: Vec<ServiceAccountEmail> = evaluate::node_service_accounts(&state)
                .into_iter()
                .filter(|n| n.clusters.contains(cluster))
                .map(|n| n.email)
                .collect();
            if accounts.is_empty() {
                let known: BTreeSet<String> = state
                    .clusters
                    .iter()
                    .map(|c| format!("{}/{}", c.location, c.name))
                    .collect();
                return Err(SetupError::Usage(format!(
                    "cluster `{cluster}` not found in project {} (clusters: {})",
                    info.project_id,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.into_iter().collect::<Vec<_>>().join(", ")
                    }
                )));
            }
            accounts
        }
        (None, None) => {
            return Err(SetupError::Usage("give --member or --cluster".to_owned()));
        }
    };
    let mut roles = BTreeSet::new();
    for email in &emails {
        roles.extend(explain::roles_needed(&state, email));
    }
    let catalog = remediator.role_catalog(roles).await;
    let explanations: Vec<Explanation> = emails
        .iter()
        .map(|e| explain::explain(&state, &catalog, e))
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &ExplainDocument {
                    schema: "gke-iam-remediator.explain/v1",
                    explanations: &explanations,
                },
            )
            .map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Table => {
            let style = Style {
                color: crate::render::stdout_colour(),
                ..Style::default()
            };
            for e in &explanations {
                out.write_all(render(e, style).as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(if explanations.iter().all(|e| e.status == Status::Ok) {
        0
    } else {
        1
    })
}

fn status_tone(status: Status) -> Tone {
    match status {
        Status::Ok => Tone::Good,
        Status::Missing | Status::Denied => Tone::Bad,
        Status::Conditional | Status::Unknown | Status::Incomplete => Tone::Warn,
    }
}

fn effect_label(effect: Effect) -> &'static str {
    match effect {
        Effect::Grants => "grants",
        Effect::GrantsUntil => "grants until",
        Effect::Nothing => "grants nothing",
        Effect::Conditional => "conditional",
        Effect::Unknown => "unknown",
    }
}

/// One account's explanation as a table: one row per binding that could grant a permission (a
/// permission nothing could grant gets a row of its own), then the conditions' expressions, the
/// deny rules and the fix. Verdicts are coloured when `style` has colour (a TTY without `NO_COLOR`).
pub fn render(e: &Explanation, style: Style) -> String {
    let mut s = format!(
        "{} in project {} ({}): {}\n  {}\n",
        paint(style, Tone::Head, e.member.as_str()),
        e.project_id,
        e.project_number,
        paint(style, status_tone(e.status), e.status.as_str()),
        e.detail
    );
    if !e.clusters.is_empty() {
        s.push_str(&format!("  node account of {}\n", e.clusters.join(", ")));
    }
    for u in &e.unreadable {
        s.push_str(&format!("  could not be read: {u}\n"));
    }
    let heads = [
        "PERMISSION",
        "VERDICT",
        "EFFECT",
        "ROLE",
        "LEVEL",
        "RESOURCE",
        "BINDING",
        "CONDITION NOW",
        "THROUGH",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    // The verdict shown in each row (the permission's first row), for its colour.
    let mut verdicts: Vec<Option<Status>> = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    for p in &e.permissions {
        let verdict = match p.troubleshooter {
            Some(t) => format!("{} ({t})", p.verdict),
            None => p.verdict.to_string(),
        };
        if p.grants.is_empty() {
            verdicts.push(Some(p.verdict));
            rows.push([
                p.permission.clone(),
                verdict.clone(),
                "-".to_owned(),
                "no binding grants it".to_owned(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for (i, g) in p.grants.iter().enumerate() {
            let condition = match &g.condition {
                None => "none".to_owned(),
                Some(c) => {
                    let key = format!("{} #{}", g.resource, g.binding);
                    let line = format!(
                        "  [{key}] {}{}",
                        c.title
                            .as_deref()
                            .map(|t| format!("\"{t}\": "))
                            .unwrap_or_default(),
                        c.expression
                    );
                    if !conditions.contains(&line) {
                        conditions.push(line);
                    }
                    match (c.now, &c.expires_at) {
                        (ConditionNow::True, Some(end)) => format!("true until {end}"),
                        (ConditionNow::True, None) => "true".to_owned(),
                        (ConditionNow::False, _) => "false (expired)".to_owned(),
                        (ConditionNow::Unknown, _) => "unknown".to_owned(),
                    }
                }
            };
            let effect = match (
                &g.effect,
                g.condition.as_ref().and_then(|c| c.expires_at.as_ref()),
            ) {
                (Effect::GrantsUntil, Some(end)) => format!("grants until {end}"),
                (other, _) => effect_label(*other).to_owned(),
            };
            verdicts.push((i == 0).then_some(p.verdict));
            rows.push([
                if i == 0 {
                    p.permission.clone()
                } else {
                    String::new()
                },
                if i == 0 {
                    verdict.clone()
                } else {
                    String::new()
                },
                effect,
                g.role.clone(),
                g.level.as_str().to_owned(),
                g.resource.clone(),
                format!("#{}", g.binding),
                condition,
                g.via_group.clone().unwrap_or_else(|| "direct".to_owned()),
            ]);
        }
    }
    let mut widths: Vec<usize> = heads.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Padded first, painted after, so colour codes never count towards a width.
    let line = |cells: Vec<(&str, Tone)>| -> String {
        let n = cells.len();
        let parts: Vec<String> = cells
            .into_iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, ((c, tone), w))| {
                let padded = if i + 1 == n {
                    c.to_owned()
                } else {
                    format!("{c:<w$}")
                };
                paint(style, tone, &padded)
            })
            .collect();
        format!("  {}\n", parts.join("  ").trim_end())
    };
    s.push('\n');
    s.push_str(&line(heads.iter().map(|h| (*h, Tone::Head)).collect()));
    for (row, verdict) in rows.iter().zip(&verdicts) {
        s.push_str(&line(
            row.iter()
                .enumerate()
                .map(|(i, c)| {
                    let tone = match verdict {
                        Some(v) if i == 1 => status_tone(*v),
                        _ => Tone::Plain,
                    };
                    (c.as_str(), tone)
                })
                .collect(),
        ));
    }
    if !conditions.is_empty() {
        s.push_str("\n  conditions (binding: expression):\n");
        for c in &conditions {
            s.push_str(&format!("  {c}\n"));
        }
    }
    for p in &e.permissions {
        for d in &p.denied_by {
            let how = match &d.uncertain {
                Some(why) => paint(style, Tone::Warn, &format!("may be denied ({why})")),
                None => paint(style, Tone::Bad, "is denied"),
            };
            s.push_str(&format!(
                "  {} {how} by rule #{} of deny policy {} (attached to {}): no grant can fix that\n",
                p.permission, d.rule, d.policy, d.attached_to
            ));
        }
    }
    let mut fixes: Vec<&str> = e
        .permissions
        .iter()
        .filter_map(|p| p.fix.as_deref())
        .collect();
    fixes.dedup();
    if let Some(first) = fixes.first() {
        let lacking: Vec<&str> = e
            .permissions
            .iter()
            .filter(|p| p.fix.is_some())
            .map(|p| p.permission.as_str())
            .collect();
        s.push_str(&format!(
            "\n  {} ({}):\n    {first}\n",
            paint(style, Tone::Head, "fix"),
            lacking.join(", ")
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::explain::{GrantTrace, Level, PermissionTrace};

    fn sample() -> Explanation {
        Explanation {
            project_id: "shop".to_owned(),
            project_number: "123".to_owned(),
            member: "serviceAccount:nodes@shop.iam.gserviceaccount.com".to_owned(),
            clusters: vec!["us-central1/c1".to_owned()],
            status: Status::Missing,
            detail: "lacks monitoring.timeSeries.create".to_owned(),
            expires_at: None,
            unreadable: Vec::new(),
            permissions: vec![
                PermissionTrace {
                    permission: "logging.logEntries.create".to_owned(),
                    verdict: Status::Ok,
                    grants: vec![GrantTrace {
                        role: "roles/logging.logWriter".to_owned(),
                        resource: "folders/111".to_owned(),
                        level: Level::Folder,
                        binding: 0,
                        member: "serviceAccount:nodes@shop.iam.gserviceaccount.com".to_owned(),
                        via_group: None,
                        condition: None,
                        effect: Effect::Grants,
                        note: None,
                    }],
                    denied_by: Vec::new(),
                    troubleshooter: None,
                    fix: None,
                },
                PermissionTrace {
                    permission: "monitoring.timeSeries.create".to_owned(),
                    verdict: Status::Missing,
                    grants: Vec::new(),
                    denied_by: Vec::new(),
                    troubleshooter: None,
                    fix: Some("gcloud projects add-iam-policy-binding shop ...".to_owned()),
                },
            ],
        }
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn verdicts_are_coloured_only_when_asked_and_colour_never_shifts_a_column() {
        let plain = render(&sample(), Style::default());
        assert!(!plain.contains('\x1b'), "{plain}");
        let colour = render(
            &sample(),
            Style {
                color: true,
                ..Style::default()
            },
        );
        assert!(colour.contains("\x1b[31;1mmissing"), "{colour}");
        assert!(colour.contains("\x1b[32mok"), "{colour}");
        assert_eq!(strip_ansi(&colour), plain);
    }
}

#[cfg(test)]
mod usage_tests {
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::ExplainArgs,
    }

    #[test]
    fn the_usage_line_names_both_ways_to_pick_what_is_explained() {
        let usage = Cli::command().render_usage().to_string();
        assert!(
            usage.contains("--member") && usage.contains("--cluster"),
            "{usage}"
        );
        assert!(Cli::try_parse_from(["x", "--project", "p"]).is_err());
        assert!(Cli::try_parse_from(["x", "--project", "p", "--cluster", "l/c"]).is_ok());
    }
}
