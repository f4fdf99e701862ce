//! The projects the table does not show as blocks (nothing in them to act on), told in one line per
//! category: `1,640 project(s) ok`, `3 project(s) ok* (deny policies not read: folders/1; why: ...)`,
//! `12 project(s) not using GKE`, with the first few names where a person may want to look.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::evaluate::Status;
use crate::domain::report::{FindingReport, Outcome, ProjectReport};

use super::style::{Style, Tone, paint};

/// Names listed in a category's line before `and N more`.
const NAMES_SHOWN: usize = 3;

/// Whether a project is shown as a block: it could not be checked, something was (or would be)
/// written, or a finding needs a person to act (would-restore, failed, escalated, not allowed,
/// missing or denied).
pub fn actionable(r: &ProjectReport) -> bool {
    r.error.is_some() || !r.actions.is_empty() || r.findings.iter().any(actionable_finding)
}

fn actionable_finding(f: &FindingReport) -> bool {
    matches!(
        f.outcome,
        Outcome::WouldRestore | Outcome::Failed | Outcome::Escalated | Outcome::NotAllowed
    ) || matches!(f.finding.status, Status::Missing | Status::Denied)
}

/// The category of a project with nothing to act on, the most telling first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// A verdict a person should read (a grant under a condition, through a group, unreadable).
    NeedsReview,
    /// Held through a time-bound grant that ends soon.
    Expiring,
    /// Granted everything; some deny policies were not read.
    OkStar,
    /// Every requirement holds.
    Ok,
    /// Neither the Container API nor clusters: nothing to check.
    NotGke,
}

impl Category {
    /// The category of a project [`actionable`] rejects.
    pub fn of(r: &ProjectReport) -> Self {
        let any = |o: Outcome| r.findings.iter().any(|f| f.outcome == o);
        if !r.gke && r.findings.iter().all(|f| f.outcome == Outcome::Healthy) {
            Self::NotGke
        } else if any(Outcome::Unknown) {
            Self::NeedsReview
        } else if any(Outcome::Expiring) {
            Self::Expiring
        } else if r.findings.iter().any(|f| f.finding.deny_check.is_some()) {
            Self::OkStar
        } else {
            Self::Ok
        }
    }
}

/// The projects not shown, counted by category as reports stream past.
#[derive(Default)]
pub struct Rest {
    counts: BTreeMap<Category, usize>,
    /// The first few project ids of the categories whose line names them.
    names: BTreeMap<Category, Vec<String>>,
    /// Attachment points whose deny policies went unread (`folders/1`), distinct.
    unread: BTreeSet<String>,
    /// Why, in a few words each (`Google's IAM v2 read quota`), distinct.
    why: BTreeSet<String>,
}

impl Rest {
    /// Counts a project that is not shown.
    pub fn add(&mut self, r: &ProjectReport) {
        let category = Category::of(r);
        *self.counts.entry(category).or_default() += 1;
        let names = self.names.entry(category).or_default();
        if names.len() < NAMES_SHOWN {
            names.push(r.project_id.clone());
        }
        if category == Category::OkStar {
            for check in r
                .findings
                .iter()
                .filter_map(|f| f.finding.deny_check.as_ref())
            {
                for entry in &check.unread {
                    let (point, why) = unread_point(entry);
                    self.unread.insert(point.to_owned());
                    self.why.insert(why.to_owned());
                }
            }
        }
    }

    /// How many projects were counted.
    pub fn projects(&self) -> usize {
        self.counts.values().sum()
    }

    /// One line per category, the most telling first.
    pub fn lines(&self, style: Style) -> Vec<String> {
        self.counts
            .iter()
            .map(|(category, n)| {
                let n = thousands(*n);
                let names = || named(&self.names[category], self.counts[category]);
                let (text, tone) = match category {
                    Category::NeedsReview => (
                        format!(
                            "{n} project(s) need review (a grant under a condition, through a group, or unreadable): {}",
                            names()
                        ),
                        Tone::Warn,
                    ),
                    Category::Expiring => (
                        format!(
                            "{n} project(s) expiring (a time-bound grant ends within limits.expiry_warning_days): {}",
                            names()
                        ),
                        Tone::Warn,
                    ),
                    Category::OkStar => (
                        format!(
                            "{n} project(s) ok* (deny policies not read: {}; why: {})",
                            listed(self.unread.iter().map(String::as_str), self.unread.len()),
                            self.why.iter().cloned().collect::<Vec<_>>().join("; ")
                        ),
                        Tone::Good,
                    ),
                    Category::Ok => (format!("{n} project(s) ok"), Tone::Good),
                    Category::NotGke => (format!("{n} project(s) not using GKE"), Tone::Plain),
                };
                paint(style, tone, &text)
            })
            .collect()
    }
}

/// An unread entry (`the deny policies of folders/1 (iam policies.listPolicies: IAM v2 read quota:
/// ...)`) as its attachment point and why in a few words.
fn unread_point(entry: &str) -> (&str, &str) {
    let rest = entry.strip_prefix("the deny policies of ").unwrap_or(entry);
    let (point, detail) = rest.split_once(" (").unwrap_or((rest, ""));
    let why = if detail.contains("IAM v2 read quota") || detail.contains("429") {
        "Google's IAM v2 read quota (5 reads a minute)"
    } else if detail.contains("denypolicies") || detail.contains("403") {
        "no permission to read them (iam.denypolicies.list)"
    } else {
        "they could not be read"
    };
    (point, why)
}

fn named(names: &[String], total: usize) -> String {
    listed(names.iter().map(String::as_str), total)
}

/// The first [`NAMES_SHOWN`] of `items` (of `total`), then `and N more`.
fn listed<'a>(items: impl Iterator<Item = &'a str>, total: usize) -> String {
    let shown: Vec<&str> = items.take(NAMES_SHOWN).collect();
    let mut s = shown.join(", ");
    if total > shown.len() {
        s.push_str(&format!(" and {} more", thousands(total - shown.len())));
    }
    s
}

/// `1640` as `1,640`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
