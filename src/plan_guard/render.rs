//! The `check-plan` table for people: one block per break (address, requirement and principal,
//! what the change does, the verdict after, the fix), then the values known only after apply,
//! what could not be known, errors, and one summary line.

use super::CheckPlanDocument;
use crate::domain::evaluate::Status;
use crate::render::{Style, Tone, paint};

fn status_word(s: Option<Status>) -> String {
    s.map_or_else(|| "new".to_owned(), |s| s.to_string())
}

/// The whole table.
pub fn table(doc: &CheckPlanDocument, style: Style) -> String {
    let mut s = String::new();
    let checked: Vec<String> = doc
        .projects
        .iter()
        .map(|p| {
            if p.source == "live" {
                p.project_id.clone()
            } else {
                format!("{} (from the plan)", p.project_id)
            }
        })
        .collect();
    s.push_str(&format!(
        "{}: {} resource change(s), {} bear on GKE's IAM; {}\n",
        paint(style, Tone::Head, &doc.plan.file),
        doc.plan.resource_changes,
        doc.plan.relevant_changes,
        if checked.is_empty() {
            "no project needed checking".to_owned()
        } else {
            format!(
                "checked {} project(s){}: {}",
                checked.len(),
                if doc.live { " against live state" } else { "" },
                checked.join(", ")
            )
        }
    ));
    for b in &doc.breaks {
        s.push('\n');
        s.push_str(&format!(
            "{} {}\n",
            paint(style, Tone::Bad, "BREAKS"),
            paint(style, Tone::Head, &b.address)
        ));
        s.push_str(&format!(
            "  {} for {} in project {}: {} -> {}\n",
            b.requirement,
            b.principal.as_deref().unwrap_or("the project"),
            b.project,
            status_word(b.before),
            paint(style, Tone::Bad, b.after.as_str())
        ));
        s.push_str(&format!("  change: {}\n", b.change));
        s.push_str(&format!("  after:  {}\n", b.detail));
        s.push_str(&format!(
            "  {}    {}\n",
            paint(style, Tone::Good, "fix:"),
            b.fix
        ));
    }
    if !doc.unknown_values.is_empty() {
        s.push_str(&format!(
            "\n{}\n",
            paint(
                style,
                Tone::Warn,
                "values known only after apply (the worst case for GKE was assumed):"
            )
        ));
        for u in &doc.unknown_values {
            s.push_str(&format!(
                "  {}: {} -> assumed {}\n",
                u.address, u.attribute, u.assumed
            ));
        }
    }
    if !doc.not_known.is_empty() {
        s.push_str(&format!(
            "\n{}\n",
            paint(style, Tone::Warn, "not known from the plan alone:")
        ));
        for n in &doc.not_known {
            s.push_str(&format!("  {n}\n"));
        }
    }
    if !doc.errors.is_empty() {
        s.push_str(&format!("\n{}\n", paint(style, Tone::Bad, "errors:")));
        for e in &doc.errors {
            s.push_str(&format!("  {e}\n"));
        }
    }
    let projects: std::collections::BTreeSet<&str> =
        doc.breaks.iter().map(|b| b.project.as_str()).collect();
    let summary = if !doc.breaks.is_empty() {
        paint(
            style,
            Tone::Bad,
            &format!(
                "{} break(s) in {} project(s): this plan takes away what GKE needs",
                doc.breaks.len(),
                projects.len()
            ),
        )
    } else if !doc.errors.is_empty() {
        paint(style, Tone::Bad, "not every project could be checked")
    } else if !doc.live && !doc.not_known.is_empty() {
        paint(
            style,
            Tone::Good,
            "nothing in this plan breaks what GKE needs, as far as the plan alone shows",
        )
    } else {
        paint(
            style,
            Tone::Good,
            "nothing in this plan breaks what GKE needs",
        )
    };
    s.push_str(&format!(
        "\n{summary} ({} API call(s), {} ms)\n",
        doc.api_calls.total, doc.elapsed_ms
    ));
    s
}
