//! The report model: what a run found, decided and did, per finding and per project, and the pure
//! rules read off it (the scan summary, what a recommendation should be marked).
//!
//! Every mode builds these values the same way; output, notifications and verdicts are derived from
//! them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize, Serializer};

use super::evaluate::{Finding, Status};
use super::plan::{Action, Decision};
use super::requirements::{CONTAINER_API, RequirementId};
use super::state::AccountState;

/// Why something could not be done, and whether trying again later can help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A fault that may pass (rate limits, 5xx, timeouts, a policy that kept changing): redeliver.
    Transient(String),
    /// Will not change by retrying (denied, not found, invalid, a limit): acknowledge and report.
    Permanent(String),
}

impl Failure {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Permanent(m) => m,
        }
    }

    /// True if retrying later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Written as its message (the JSON output and notifications carry a string).
impl Serialize for Failure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.message())
    }
}

/// Where a flapping count came from (the count decides restore or escalate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum FlapGuard {
    /// Cloud Audit Logs (every instance's restorations) and this instance's since the read.
    AuditLog,
    /// The state store's ledger of restorations, shared by every instance that uses the store:
    /// exact, counted in the same transaction as the write's intent.
    Ledger,
    /// Only this instance's restorations: the shared record could not be read.
    InstanceOnly {
        /// Why the shared record was not used.
        reason: String,
    },
}

/// How a recommendation is settled after a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecommendationVerdict {
    /// Every node service account of the target cluster holds what it needs.
    Succeeded,
    /// A restore for it failed.
    Failed,
}

/// What a finding came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The requirement holds.
    Healthy,
    /// The remediator restored it (write confirmed by reading back).
    Restored,
    /// Dry-run: it would have been restored.
    WouldRestore,
    /// The remediation policy does not allow restoring it (or a limit blocked it).
    NotAllowed,
    /// Needs a person: conditional, unknown or incomplete.
    Unknown,
    /// Restoring was attempted and failed.
    Failed,
    /// Restored too often within the window: not restored again.
    Escalated,
    /// Holds now, only through a time-bound grant that ends within `limits.expiry_warning_days`:
    /// a warning; nothing is written (it is healthy until it ends).
    Expiring,
    /// Healthy again without the remediator, after a problem was announced (a notification
    /// outcome only: the ledger turns a `healthy` after a problem into this).
    Resolved,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    /// Every outcome, in the order the README documents them.
    pub const ALL: [Self; 9] = [
        Self::Restored,
        Self::Resolved,
        Self::WouldRestore,
        Self::NotAllowed,
        Self::Unknown,
        Self::Failed,
        Self::Escalated,
        Self::Expiring,
        Self::Healthy,
    ];

    /// The outcome as written in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Restored => "restored",
            Self::WouldRestore => "would-restore",
            Self::NotAllowed => "not-allowed",
            Self::Unknown => "unknown",
            Self::Failed => "failed",
            Self::Escalated => "escalated",
            Self::Expiring => "expiring",
            Self::Resolved => "resolved",
        }
    }
}

/// The outcome of a finding the plan leaves alone (decision `healthy`): `expiring` when it is `ok` only
/// through a time-bound grant that ends within `warning_days` of `now`, else `healthy`. An
/// `expires_at` that cannot be read is treated as ending now (warn rather than stay silent).
pub fn healthy_outcome(finding: &Finding, now: SystemTime, warning_days: u32) -> Outcome {
    let Some(end) = finding.expires_at.as_deref() else {
        return Outcome::Healthy;
    };
    if finding.status != Status::Ok || warning_days == 0 {
        return Outcome::Healthy;
    }
    let end = super::condition::parse_timestamp(end).unwrap_or(now);
    let window = Duration::from_secs(u64::from(warning_days) * 86_400);
    if end <= now + window {
        Outcome::Expiring
    } else {
        Outcome::Healthy
    }
}

/// The grants behind an `expiring` finding: its `granted_via` entries that end at its `expires_at`
/// (`roles/x on projects/p until T`). With the expiry they identify the warning: the same grant and
/// end warn once; a renewed grant (a new end) warns again.
pub fn expiring_grants(finding: &Finding) -> Vec<&str> {
    let Some(end) = finding.expires_at.as_deref() else {
        return Vec::new();
    };
    let suffix = format!(" until {end}");
    finding
        .granted_via
        .iter()
        .filter(|g| g.ends_with(&suffix))
        .map(String::as_str)
        .collect()
}

/// The result of one action of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct ActionReport {
    /// What was (or would be) done.
    pub action: Action,
    /// `restored`, `would-restore` or `failed`.
    pub outcome: Outcome,
    /// Policy etag read before the write (grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag_before: Option<String>,
    /// Policy etag after the write (grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag_after: Option<String>,
    /// Read-modify-write attempts (grants).
    pub attempts: u32,
    /// Why it failed (or was blocked by a limit), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

/// One finding with the decision and outcome.
#[derive(Clone, Debug, Serialize)]
pub struct FindingReport {
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// What the plan decided.
    pub decision: Decision,
    /// What came of it.
    pub outcome: Outcome,
}

/// Everything about one project.
#[derive(Clone, Debug, Serialize)]
pub struct ProjectReport {
    /// Project id.
    pub project_id: String,
    /// Project number (empty if it could not be read).
    pub project_number: String,
    /// True if the project uses GKE (Container API enabled or clusters present).
    pub gke: bool,
    /// Folder ids above the project, nearest first.
    pub folders: Vec<String>,
    /// The etag of the project policy the findings were decided on (after any write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_etag: Option<String>,
    /// Where the flapping count came from, when a write was planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flap_guard: Option<FlapGuard>,
    /// Findings in requirement order.
    pub findings: Vec<FindingReport>,
    /// Actions taken or planned.
    pub actions: Vec<ActionReport>,
    /// A project-level error (nothing could be decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

impl ProjectReport {
    /// The report of a project about which nothing could be decided: `error` says why.
    pub fn failed(project_id: impl Into<String>, error: Failure) -> Self {
        Self {
            project_id: project_id.into(),
            project_number: String::new(),
            gke: false,
            folders: Vec::new(),
            policy_etag: None,
            flap_guard: None,
            findings: Vec::new(),
            actions: Vec::new(),
            error: Some(error),
        }
    }
}

/// Counts used by the scan summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Projects examined.
    pub projects: usize,
    /// Projects using GKE.
    pub gke_projects: usize,
    /// Projects that could not be checked.
    pub errors: usize,
    /// Findings by status.
    pub by_status: BTreeMap<String, usize>,
    /// Findings by outcome.
    pub by_outcome: BTreeMap<String, usize>,
    /// Node service accounts missing permissions (member form), across projects.
    pub missing_node_service_accounts: Vec<String>,
}

impl Summary {
    /// Counts one more project (reports can be summarised as they complete, without keeping them).
    pub fn add(&mut self, r: &ProjectReport) {
        self.projects += 1;
        self.gke_projects += usize::from(r.gke);
        self.errors += usize::from(r.error.is_some());
        for f in &r.findings {
            *self
                .by_status
                .entry(f.finding.status.as_str().to_owned())
                .or_default() += 1;
            *self
                .by_outcome
                .entry(f.outcome.as_str().to_owned())
                .or_default() += 1;
            if f.finding.requirement == RequirementId::NodeSaPermissions
                && f.finding.status == Status::Missing
                && let Some(p) = &f.finding.principal
            {
                let p = p.to_string();
                if let Err(at) = self.missing_node_service_accounts.binary_search(&p) {
                    self.missing_node_service_accounts.insert(at, p);
                }
            }
        }
    }
}

/// Summarises reports.
pub fn summarize(reports: &[ProjectReport]) -> Summary {
    let mut s = Summary::default();
    for r in reports {
        s.add(r);
    }
    s
}

/// What a recommendation about `cluster` (`location/name`; `None` = any) should become after a run:
/// succeeded when every node service account of that cluster is `ok` (or was restored), failed when
/// a restore failed, and nothing (left active for a person) otherwise.
pub fn recommendation_verdict(
    report: &ProjectReport,
    cluster: Option<&str>,
) -> Option<RecommendationVerdict> {
    let node: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.finding.requirement == RequirementId::NodeSaPermissions)
        .filter(|f| cluster.is_none_or(|c| f.finding.clusters.iter().any(|fc| fc == c)))
        .collect();
    if report.error.is_some() || node.is_empty() {
        return None;
    }
    if node.iter().any(|f| f.outcome == Outcome::Failed) {
        return Some(RecommendationVerdict::Failed);
    }
    // Succeeded only when this run restored something and every node account is known to hold
    // what it needs: healthy without us (through a group, granted by a person) means nothing was
    // done here, and `conditional`, `unknown`, `incomplete` or a dry run leave it for a person.
    let restored = node.iter().any(|f| f.outcome == Outcome::Restored);
    (restored
        && node
            .iter()
            .all(|f| f.finding.status == Status::Ok || f.outcome == Outcome::Restored))
    .then_some(RecommendationVerdict::Succeeded)
}

/// `location/name` of the cluster a recommendation targets.
pub fn target_cluster(target_resources: &[String]) -> Option<String> {
    target_resources.iter().find_map(|t| {
        let rest = t.split("/locations/").nth(1)?;
        let (location, cluster) = rest.split_once("/clusters/")?;
        Some(format!("{location}/{}", cluster.split('/').next()?))
    })
}

/// What fixes a broken finding, in a form Google accepts: never a grant to an account that is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Run this action (grant, enable the API, enable the account, undelete it by unique id).
    Run(Action),
    /// The account was deleted and its unique id is not known, so it cannot be undeleted: recreate it
    /// (or move the node pools to another account), then grant its roles again.
    Recreate {
        /// The account's email.
        email: String,
    },
}

/// The fix for a finding that is `missing` (an absent grant, a disabled or deleted node account, the
/// Container API off), read from what the finding knows of its account; `None` when nothing a person
/// runs fixes it (`ok`, `denied`: a deny rule overrides every grant; `conditional`, `unknown`), and for
/// the permissions of a deleted account (the account is restored first: its `node-sa-exists` fix).
pub fn fix_of(finding: &Finding) -> Option<Fix> {
    if finding.status != Status::Missing {
        return None;
    }
    let email = || {
        finding
            .principal
            .as_ref()
            .map(|m| m.as_str().trim_start_matches("serviceAccount:").to_owned())
    };
    match finding.requirement {
        RequirementId::ContainerApiEnabled => Some(Fix::Run(Action::EnableService {
            service: CONTAINER_API.to_owned(),
        })),
        RequirementId::NodeSaExists => match finding.account.as_ref()? {
            AccountState::Disabled { .. } => {
                Some(Fix::Run(Action::EnableServiceAccount { email: email()? }))
            }
            AccountState::Deleted {
                unique_id: Some(uid),
            } => Some(Fix::Run(Action::UndeleteServiceAccount {
                email: email()?,
                unique_id: uid.clone(),
            })),
            AccountState::Deleted { unique_id: None } => Some(Fix::Recreate { email: email()? }),
            AccountState::Active { .. } | AccountState::Unknown { .. } => None,
        },
        _ if matches!(finding.account, Some(AccountState::Deleted { .. })) => None,
        _ => {
            let (role, member) = (finding.role.clone()?, finding.principal.clone()?);
            Some(Fix::Run(Action::Grant { role, member }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_until(end: Option<&str>) -> Finding {
        Finding {
            requirement: RequirementId::NodeSaPermissions,
            principal: None,
            status: Status::Ok,
            missing_permissions: Vec::new(),
            conditional_permissions: Vec::new(),
            unknown_permissions: Vec::new(),
            role: None,
            clusters: Vec::new(),
            node_pools: Vec::new(),
            granted_via: end
                .map(|e| {
                    vec![
                        "roles/x on organizations/1".to_owned(),
                        format!("roles/y on projects/p until {e}"),
                    ]
                })
                .unwrap_or_default(),
            detail: String::new(),
            expires_at: end.map(str::to_owned),
            denied_permissions: Vec::new(),
            denied_by: Vec::new(),
            org_policy: None,
            deny_check: None,
            account: None,
        }
    }

    #[test]
    fn a_grant_ending_within_the_warning_window_is_expiring_and_later_ones_are_healthy() {
        let now = super::super::condition::parse_timestamp("2026-12-01T00:00:00Z").unwrap();
        let soon = ok_until(Some("2026-12-10T00:00:00.000Z"));
        let later = ok_until(Some("2027-03-31T00:00:00.000Z"));
        let edge = ok_until(Some("2026-12-15T00:00:00.000Z"));
        assert_eq!(healthy_outcome(&soon, now, 14), Outcome::Expiring);
        assert_eq!(healthy_outcome(&edge, now, 14), Outcome::Expiring);
        assert_eq!(healthy_outcome(&later, now, 14), Outcome::Healthy);
        assert_eq!(healthy_outcome(&soon, now, 0), Outcome::Healthy, "0 = off");
        assert_eq!(healthy_outcome(&ok_until(None), now, 14), Outcome::Healthy);
        let mut conditional = soon.clone();
        conditional.status = Status::Conditional;
        assert_eq!(healthy_outcome(&conditional, now, 14), Outcome::Healthy);
    }

    #[test]
    fn the_expiring_grants_are_those_that_end_at_the_expiry() {
        let f = ok_until(Some("2026-12-10T00:00:00.000Z"));
        assert_eq!(
            expiring_grants(&f),
            vec!["roles/y on projects/p until 2026-12-10T00:00:00.000Z"]
        );
    }

    #[test]
    fn the_target_cluster_is_read_from_the_recommendation_resource_name() {
        let t = vec![
            "//container.googleapis.com/projects/123/locations/us-central1/clusters/c1".to_owned(),
        ];
        assert_eq!(target_cluster(&t).as_deref(), Some("us-central1/c1"));
        assert_eq!(
            target_cluster(&["//compute.googleapis.com/x".to_owned()]),
            None
        );
    }

    fn broken(requirement: RequirementId, account: Option<AccountState>) -> Finding {
        let mut f = ok_until(None);
        f.requirement = requirement;
        f.status = Status::Missing;
        f.role = requirement.restore_role();
        f.principal = (requirement != RequirementId::ContainerApiEnabled).then(|| {
            super::super::iam::Member::parse("serviceAccount:n@p.iam.gserviceaccount.com").unwrap()
        });
        f.account = account;
        f
    }

    #[test]
    fn each_broken_finding_gets_the_fix_google_accepts_and_a_gone_account_never_a_grant() {
        let email = "n@p.iam.gserviceaccount.com".to_owned();
        let deleted = |uid: Option<&str>| AccountState::Deleted {
            unique_id: uid.map(str::to_owned),
        };
        let exists = |account| fix_of(&broken(RequirementId::NodeSaExists, Some(account)));
        assert_eq!(
            exists(AccountState::Disabled { unique_id: None }),
            Some(Fix::Run(Action::EnableServiceAccount {
                email: email.clone()
            }))
        );
        assert_eq!(
            exists(deleted(Some("104"))),
            Some(Fix::Run(Action::UndeleteServiceAccount {
                email: email.clone(),
                unique_id: "104".to_owned()
            }))
        );
        assert_eq!(
            exists(deleted(None)),
            Some(Fix::Recreate {
                email: email.clone()
            })
        );
        assert_eq!(
            fix_of(&broken(RequirementId::ContainerApiEnabled, None)),
            Some(Fix::Run(Action::EnableService {
                service: CONTAINER_API.to_owned()
            }))
        );
        // The permissions of a deleted account: a grant to it is refused; its existence fix comes first.
        assert_eq!(
            fix_of(&broken(
                RequirementId::NodeSaPermissions,
                Some(deleted(Some("104")))
            )),
            None
        );
        let lacking = broken(
            RequirementId::NodeSaPermissions,
            Some(AccountState::Disabled { unique_id: None }),
        );
        assert!(matches!(
            fix_of(&lacking),
            Some(Fix::Run(Action::Grant { .. }))
        ));
        let mut denied = lacking;
        denied.status = Status::Denied;
        assert_eq!(fix_of(&denied), None, "a grant cannot beat a deny rule");
    }
}
