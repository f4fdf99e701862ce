//! What a run adds up to while reports stream past: the totals, the exit code and the lines that
//! end the table.

use std::collections::BTreeMap;

use crate::domain::report::{Outcome, ProjectReport, Summary};

use super::style::{Style, outcome_label, outcome_tone, paint, urgency};

/// What `scan` accumulates while reports stream past: the summary and the exit code.
#[derive(Default)]
pub struct Tally {
    /// The totals of the JSON document.
    pub summary: Summary,
    /// The exit code so far.
    pub exit_code: i32,
    /// Findings per outcome label.
    pub by_outcome: BTreeMap<&'static str, usize>,
    /// Node accounts `ok` on the allow side whose deny policies were partly not read.
    deny_unchecked: usize,
}

impl Tally {
    /// Counts one report.
    pub fn add(&mut self, report: &ProjectReport) {
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
    pub fn deny_line(&self) -> Option<String> {
        (self.deny_unchecked > 0).then(|| {
            format!(
                "{} node account(s) ok*: granted everything, some deny policies not read (Google's 5 IAM v2 reads a minute, or no permission); a later run reads more (reads are cached for limits.deny_policy_max_age_minutes), or give --iam-v2-wait SECONDS",
                self.deny_unchecked
            )
        })
    }
}

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

/// The one-line summary at the end of the table.
pub fn summary_line(
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
        line.push_str(&format!(
            "; {} project(s) counted above, not shown",
            super::rest::thousands(hidden_projects)
        ));
    }
    if hidden_projects + hidden_rows > 0 {
        line.push_str(" (--all shows them)");
    }
    line
}

#[cfg(test)]
mod tests {
    use crate::domain::report::{self, Summary};
    use crate::render::fixtures::sample;

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
}
