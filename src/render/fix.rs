//! The lines under a finding a person acts on: the detail, the clusters, why it was not restored, and
//! the command that fixes it.

use crate::domain::evaluate::Status;
use crate::domain::plan::{Action, Decision};
use crate::domain::report::{FindingReport, Outcome};

/// The exact gcloud command a person would run to restore a grant.
pub fn gcloud_fix(project: &str, action: &Action) -> String {
    crate::domain::explain::gcloud_command(project, action)
}

/// Describes an action for people.
pub fn describe_action(project: &str, action: &Action) -> String {
    match action {
        Action::Grant { role, member } => format!("{role} to {member}"),
        other => gcloud_fix(project, other),
    }
}

/// What a person needs under a row that is not healthy: the detail, when a time-bound grant ends,
/// the clusters, and why it was not restored or the fix.
pub fn notes(project: &str, f: &FindingReport) -> Vec<String> {
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
