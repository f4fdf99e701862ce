//! Report values the rendering tests share: findings, projects, and a sample of three projects.

use crate::domain::evaluate::{Finding, Status};
use crate::domain::iam::Member;
use crate::domain::plan::{Action, Decision};
use crate::domain::report::{FindingReport, Outcome, ProjectReport};
use crate::domain::requirements::RequirementId;

pub fn finding(
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
            account: None,
        },
        decision,
        outcome,
    }
}

pub fn project(id: &str, findings: Vec<FindingReport>) -> ProjectReport {
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

pub fn sample() -> Vec<ProjectReport> {
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
