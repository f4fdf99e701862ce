//! The table for people: one block per project that is shown (node service accounts, service agents,
//! project-level checks; problems first) and the summary at the end.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use crate::domain::evaluate::{Finding, Status};
use crate::domain::report::{FindingReport, Outcome, ProjectReport};
use crate::domain::state::AccountState;
use crate::gcp::CallCounts;

use super::fix::{describe_action, notes};
use super::rest::{Rest, actionable};
use super::style::{Style, Tone, outcome_label, outcome_tone, paint, urgency};
use super::summary::{Tally, summary_line};

/// The table for people, written one project at a time.
pub struct TableStream<W: Write> {
    out: W,
    style: Style,
    /// The projects not shown as blocks, by category.
    rest: Rest,
    hidden_rows: usize,
}

impl<W: Write> TableStream<W> {
    /// A table written to `out`.
    pub fn new(out: W, style: Style) -> Self {
        Self {
            out,
            style,
            rest: Rest::default(),
            hidden_rows: 0,
        }
    }

    /// Writes one project's block as soon as it is done when it has something to act on (so those
    /// come first), else counts it in its category (one line each at the end).
    pub fn project(&mut self, report: &ProjectReport) -> std::io::Result<()> {
        let block = render_project(report, self.style);
        self.hidden_rows += block.hidden_rows;
        match block.text {
            Some(text) => self.out.write_all(text.as_bytes()),
            None => {
                self.rest.add(report);
                Ok(())
            }
        }
    }

    /// Writes a line of its own (how projects were discovered).
    pub fn line(&mut self, text: &str) -> std::io::Result<()> {
        writeln!(self.out, "{text}")
    }

    /// Writes one line per category of the projects not shown, the summary, and flushes.
    pub fn finish(
        mut self,
        tally: &Tally,
        mode: &str,
        counts: &CallCounts,
        elapsed: Duration,
    ) -> std::io::Result<()> {
        for line in self.rest.lines(self.style) {
            writeln!(self.out, "{line}")?;
        }
        let line = summary_line(
            &tally.summary,
            &tally.by_outcome,
            (self.rest.projects(), self.hidden_rows),
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

fn short(member: &str) -> &str {
    member.strip_prefix("serviceAccount:").unwrap_or(member)
}

/// One cell: its text and how it is coloured.
type Cell = (String, Tone);

/// One line of a section: a principal (or a project-level check) and what is known about it.
struct Row<'a> {
    cells: Vec<Cell>,
    outcome: Outcome,
    findings: Vec<&'a FindingReport>,
}

/// A principal's cell for one required permission of a `node-sa-permissions` finding.
fn permission_cell(f: &Finding, permission: &str) -> Cell {
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

/// The `EXISTS` cell of a node account: its status, but `disabled` for an account that exists
/// disabled (it is not missing: enabling it restores it).
fn exists_cell(f: &Finding) -> Cell {
    match (&f.account, f.status) {
        (Some(AccountState::Disabled { .. }), Status::Missing) => {
            ("disabled".to_owned(), Tone::Bad)
        }
        (_, status) => status_cell(status),
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

fn worst(findings: &[&FindingReport]) -> Outcome {
    findings
        .iter()
        .map(|f| f.outcome)
        .min_by_key(|o| urgency(*o))
        .unwrap_or(Outcome::Healthy)
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
    if !style.every_project && !actionable(r) {
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
    let mut by_account: BTreeMap<&str, Vec<&FindingReport>> = BTreeMap::new();
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
            cells.push(exists.map_or(("-".to_owned(), Tone::Plain), |f| exists_cell(&f.finding)));
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

/// Renders the whole table at once (the demo prints it): every project shown, healthy rows
/// collapsed, no colour.
pub fn render_table(reports: &[ProjectReport], mode: &str) -> String {
    let style = Style {
        color: false,
        all: false,
        every_project: true,
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
    use crate::domain::evaluate::DenyCheck;
    use crate::domain::requirements::RequirementId;
    use crate::render::fixtures::{finding, project, sample};

    #[test]
    fn an_account_whose_deny_policies_were_not_all_read_is_ok_star_with_one_line_saying_why() {
        let mut f = finding(
            RequirementId::NodeSaPermissions,
            "serviceAccount:nodes@p.iam.gserviceaccount.com",
            Status::Ok,
            Outcome::Healthy,
        );
        f.finding.deny_check = Some(DenyCheck {
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
            every_project: true,
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

    #[test]
    fn the_table_shows_projects_to_act_on_first_then_one_line_per_category_of_the_rest() {
        let mut reports = sample();
        let mut starred = project(
            "starred",
            vec![finding(
                RequirementId::NodeSaPermissions,
                "serviceAccount:n@starred.iam.gserviceaccount.com",
                Status::Ok,
                Outcome::Healthy,
            )],
        );
        starred.findings[0].finding.deny_check = Some(DenyCheck {
            unread: vec!["the deny policies of folders/1 (IAM v2 read quota)".to_owned()],
        });
        let mut no_gke = project("no-gke", Vec::new());
        no_gke.gke = false;
        let review = project(
            "review-me",
            vec![finding(
                RequirementId::NodeSaPermissions,
                "serviceAccount:c@review-me.iam.gserviceaccount.com",
                Status::Conditional,
                Outcome::Unknown,
            )],
        );
        // Healthy ones before and after the broken one, as a sweep streams them.
        reports.insert(0, starred);
        reports.push(no_gke);
        reports.push(review);
        let mut out = Vec::new();
        let mut table = TableStream::new(&mut out, Style::default());
        let mut tally = Tally::default();
        for r in &reports {
            tally.add(r);
            table.project(r).unwrap();
        }
        table
            .finish(&tally, "dry-run", &CallCounts::default(), Duration::ZERO)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        assert!(
            lines[0].starts_with("PROJECT broken"),
            "the project to act on comes first:\n{text}"
        );
        for quiet in [
            "PROJECT fine-a",
            "PROJECT fine-b",
            "PROJECT starred",
            "PROJECT no-gke",
            "PROJECT review-me",
        ] {
            assert!(
                !text.contains(quiet),
                "{quiet} is a count, not a block:\n{text}"
            );
        }
        let rest: Vec<&str> = lines
            .iter()
            .copied()
            .skip_while(|l| !l.contains("project(s) need review"))
            .take(4)
            .collect();
        assert_eq!(
            rest,
            [
                "1 project(s) need review (a grant under a condition, through a group, or unreadable): review-me",
                "1 project(s) ok* (deny policies not read: folders/1; why: Google's IAM v2 read quota (5 reads a minute))",
                "2 project(s) ok",
                "1 project(s) not using GKE",
            ],
            "one line per category, after the blocks:\n{text}"
        );
        let last = lines.iter().find(|l| l.starts_with("mode: ")).unwrap();
        assert!(
            last.starts_with("mode: dry-run; 6 project(s)")
                && last.contains("5 project(s) counted above, not shown (--all shows them)"),
            "{text}"
        );
    }

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(super::super::rest::thousands(1640), "1,640");
        assert_eq!(super::super::rest::thousands(999), "999");
        assert_eq!(super::super::rest::thousands(1_000_000), "1,000,000");
    }
}
