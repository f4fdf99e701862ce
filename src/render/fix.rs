//! The lines under a finding a person acts on: the detail, the clusters, why it was not restored, and
//! the command that fixes it.

use crate::domain::plan::{Action, Decision};
use crate::domain::report::{FindingReport, Fix, Outcome, fix_of};

/// The exact gcloud command a person would run for an action.
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
            out.push(fix_line(project, &Fix::Run(action.clone())));
        }
        Decision::NotAllowed { reason }
        | Decision::Blocked { reason }
        | Decision::NeedsReview { reason } => {
            if *reason == f.finding.detail {
                out.push("not restored".to_owned());
            } else {
                out.push(format!("not restored: {reason}"));
            }
            if let Some(fix) = fix_of(&f.finding) {
                out.push(fix_line(project, &fix));
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

/// The `fix:` line for a fix: the command Google accepts, or what to do when no command can.
pub fn fix_line(project: &str, fix: &Fix) -> String {
    match fix {
        Fix::Run(Action::UndeleteServiceAccount { email, unique_id }) => format!(
            "fix (within 30 days of the deletion): gcloud iam service-accounts undelete {unique_id}; after that the account is gone for good: {}",
            recreate(email)
        ),
        Fix::Run(action) => format!("fix: {}", gcloud_fix(project, action)),
        Fix::Recreate { email } => format!(
            "fix: {} (its unique id, which undeleting it within 30 days needs, is not known)",
            recreate(email)
        ),
    }
}

/// What recreating a deleted node account takes: a user-managed account (`NAME@HOME.iam...`) is
/// created again under its name; any other cannot be, and its node pools move to another account.
fn recreate(email: &str) -> String {
    let user_managed = email
        .split_once('@')
        .and_then(|(name, d)| Some((name, d.strip_suffix(".iam.gserviceaccount.com")?)));
    match user_managed {
        Some((name, home)) => format!(
            "recreate the account (gcloud iam service-accounts create {name} --project={home}) and grant its roles again"
        ),
        None => format!(
            "recreate the account {email} (or move its node pools to another service account) and grant its roles again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_account_is_undeleted_by_unique_id_else_recreated_under_its_name() {
        let email = "gke@p.iam.gserviceaccount.com".to_owned();
        let undelete = fix_line(
            "p",
            &Fix::Run(Action::UndeleteServiceAccount {
                email: email.clone(),
                unique_id: "104".to_owned(),
            }),
        );
        assert!(
            undelete.contains("gcloud iam service-accounts undelete 104")
                && undelete.contains("within 30 days"),
            "{undelete}"
        );
        let recreate = fix_line("other", &Fix::Recreate { email });
        assert!(
            recreate.contains("gcloud iam service-accounts create gke --project=p"),
            "{recreate}"
        );
        let default = fix_line(
            "p",
            &Fix::Recreate {
                email: "1-compute@developer.gserviceaccount.com".to_owned(),
            },
        );
        assert!(
            default.contains("move its node pools to another service account")
                && !default.contains("gcloud"),
            "{default}"
        );
    }
}
