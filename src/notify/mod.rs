//! Notifications: the `Notification v1` document (one per finding outcome), its Pub/Sub attributes,
//! routing and delivery to Slack, email and webhooks. Publishing to the notifications topic is the
//! sink port (`crate::ports::NotificationSink`, implemented in `crate::pubsub`).
//!
//! The document is a contract: fields may be added, never renamed. `schema/notification-v1.json`
//! describes it and a test validates every notification the code emits against it.

pub mod deliver;
pub mod email;
pub mod routing;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::domain::evaluate::Status;
use crate::domain::plan::Action;
use crate::domain::report::{ActionReport, FindingReport, FlapGuard, Outcome, ProjectReport};
use crate::domain::rules::Mode;

pub use deliver::{
    Channel, DeliverError, DeliverOptions, Deliverer, Delivery, DeliveryClaim, DeliveryRecord,
    SendError,
};
pub use routing::{
    ChannelConfig, ChannelFile, ChannelKind, ChannelSpec, EmailConfig, NotificationsConfig,
    NotificationsFile, Route, SmtpTls, Target, WebhookUrl,
};

/// A short label for people (Slack headers, email subjects).
pub fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Restored => "Restored",
        Outcome::WouldRestore => "Would restore (dry-run)",
        Outcome::NotAllowed => "Not allowed by policy",
        Outcome::Unknown => "Needs review",
        Outcome::Failed => "Restore failed",
        Outcome::Escalated => "Escalated: keeps being removed",
        Outcome::Expiring => "Expiring soon: a time-bound grant ends",
        Outcome::Resolved => "Resolved: healthy again",
        Outcome::Healthy => "Healthy",
    }
}

/// An emoji per outcome (Slack headers).
pub fn outcome_emoji(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Restored => "\u{2705}",
        Outcome::WouldRestore => "\u{1f7e1}",
        Outcome::NotAllowed => "\u{26d4}",
        Outcome::Unknown => "\u{2753}",
        Outcome::Failed => "\u{274c}",
        Outcome::Escalated => "\u{1f6a8}",
        Outcome::Expiring => "\u{23f3}",
        Outcome::Resolved => "\u{2714}\u{fe0f}",
        Outcome::Healthy => "\u{1f49a}",
    }
}

/// The schema id of version 1.
pub const SCHEMA_V1: &str = "gke-iam-remediator.notification/v1";

/// How urgent an outcome is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing to do.
    Info,
    /// Someone should look.
    Warning,
    /// Remediation failed.
    Error,
    /// A binding keeps being removed: a person must act.
    Critical,
}

impl Severity {
    /// The severity of an outcome.
    pub fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Healthy | Outcome::Restored | Outcome::Resolved => Self::Info,
            Outcome::WouldRestore | Outcome::NotAllowed | Outcome::Unknown | Outcome::Expiring => {
                Self::Warning
            }
            Outcome::Failed => Self::Error,
            Outcome::Escalated => Self::Critical,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the finding came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// `audit-log`, `recommendation`, `asset-feed`, `sweep` or `scan`.
    pub source: String,
    /// Who caused the change (audit log principal), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The tool the actor used (`kind`: terraform, config-connector, pulumi, gcloud, console,
    /// client-library; `name` for people), from the audit log's user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<crate::intake::tool::Tool>,
    /// Audit-log method name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Audit-log `insertId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert_id: Option<String>,
    /// Audit-log timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_timestamp: Option<String>,
    /// Recommendation name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<String>,
    /// Pub/Sub message id of the trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl Evidence {
    /// Who caused it, with what, for people: `alice@example.com with Terraform 1.7.5 with
    /// terraform-provider-google 5.22.0`, or `unknown`.
    pub fn who(&self) -> String {
        match (&self.actor, &self.tool) {
            (Some(actor), Some(tool)) => format!("{actor} with {}", tool.name),
            (Some(actor), None) => actor.clone(),
            (None, Some(tool)) => format!("someone with {}", tool.name),
            (None, None) => "unknown".to_owned(),
        }
    }
}

/// One action in a notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifiedAction {
    /// `grant`, `enable-service`, `enable-service-account`, `undelete-service-account`.
    pub kind: String,
    /// Role granted (grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Member granted or account restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// `restored`, `would-restore`, `failed`, `not-allowed`.
    pub outcome: String,
    /// Policy etag before the write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag_before: Option<String>,
    /// Policy etag after the write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag_after: Option<String>,
    /// Error, if failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Google Cloud console links.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// The project's IAM page.
    pub iam: String,
    /// Cluster pages of the clusters involved.
    #[serde(default)]
    pub clusters: Vec<String>,
}

/// Notification v1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Always [`SCHEMA_V1`].
    pub schema: String,
    /// Stable for the same finding and outcome (and the same policy state), for de-duplication.
    pub id: String,
    /// RFC 3339 time of the outcome.
    pub time: String,
    /// Project id.
    pub project_id: String,
    /// Project number.
    pub project_number: String,
    /// Requirement id.
    pub requirement: String,
    /// Principal in member form, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Role that restores the requirement, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `restored`, `would-restore`, `healthy`, `not-allowed`, `unknown`, `failed`, `escalated`,
    /// `expiring`.
    pub outcome: Outcome,
    /// `dry-run` or `enforce`.
    pub mode: Mode,
    /// `info`, `warning`, `error`, `critical`.
    pub severity: Severity,
    /// Finding status (`ok`, `missing`, `conditional`, `unknown`, `incomplete`, `denied`).
    pub status: Status,
    /// A sentence for people.
    pub detail: String,
    /// Permissions the principal lacks.
    #[serde(default)]
    pub missing_permissions: Vec<String>,
    /// Clusters that use the principal.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// What triggered the check.
    #[serde(default)]
    pub evidence: Evidence,
    /// What was done.
    #[serde(default)]
    pub actions: Vec<NotifiedAction>,
    /// Console links.
    #[serde(default)]
    pub links: Links,
    /// Trace id of the request that produced it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Where the flapping count behind a restore or escalate decision came from (`audit-log`, or
    /// `instance-only` with the reason the shared record was not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap_guard: Option<FlapGuard>,
    /// When the time-bound grant the principal holds ends (RFC 3339), if it is time-bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Required permissions an IAM deny policy blocks (status `denied`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_permissions: Vec<String>,
    /// Full names of the deny policies that block them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_by: Vec<String>,
    /// On an `ok` verdict: deny policies that could not be read (attachment point and why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_unread: Vec<String>,
}

impl Notification {
    /// Pub/Sub attributes for subscription filters.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("outcome".to_owned(), self.outcome.to_string()),
            ("severity".to_owned(), self.severity.to_string()),
            ("project_id".to_owned(), self.project_id.clone()),
            ("requirement".to_owned(), self.requirement.clone()),
            ("schema".to_owned(), self.schema.clone()),
        ])
    }
}

fn action_kind(action: &Action) -> (&'static str, Option<String>, Option<String>) {
    match action {
        Action::Grant { role, member } => {
            ("grant", Some(role.to_string()), Some(member.to_string()))
        }
        Action::EnableService { service } => ("enable-service", None, Some(service.clone())),
        Action::EnableServiceAccount { email } => (
            "enable-service-account",
            None,
            Some(format!("serviceAccount:{email}")),
        ),
        Action::UndeleteServiceAccount { email, .. } => (
            "undelete-service-account",
            None,
            Some(format!("serviceAccount:{email}")),
        ),
    }
}

fn notified(a: &ActionReport) -> NotifiedAction {
    let (kind, role, member) = action_kind(&a.action);
    NotifiedAction {
        kind: kind.to_owned(),
        role,
        member,
        outcome: a.outcome.as_str().to_owned(),
        etag_before: a.etag_before.clone(),
        etag_after: a.etag_after.clone(),
        error: a.error.as_ref().map(|e| e.message().to_owned()),
    }
}

/// Builds the notification for one finding of a project report.
pub fn build(
    project: &ProjectReport,
    finding: &FindingReport,
    mode: Mode,
    evidence: &Evidence,
    trace_id: Option<&str>,
    now: SystemTime,
) -> Notification {
    let f = &finding.finding;
    let actions: Vec<NotifiedAction> = match &finding.decision {
        crate::domain::plan::Decision::Restore { action } => project
            .actions
            .iter()
            .filter(|a| &a.action == action)
            .map(notified)
            .collect(),
        _ => Vec::new(),
    };
    // Same finding + outcome + policy state => same id; a new restoration (new etag), or the same
    // outcome reached again on a policy that changed since (a new etag), => a new id.
    // A restoration is identified by the etag its write produced alone, so the notification rebuilt
    // from the audit log (the outbox) has the id the first attempt had.
    let restored_etag = actions
        .iter()
        .find_map(|a| a.etag_after.clone())
        .filter(|_| finding.outcome == Outcome::Restored);
    // An expiring grant is identified by the grant and its end alone (not the policy etag): the
    // same grant warns once however often it is checked, a renewed one (a new end) warns again.
    let expiring = (finding.outcome == Outcome::Expiring).then(|| {
        let mut grants = crate::domain::report::expiring_grants(f);
        grants.sort_unstable();
        format!(
            "{}\u{1f}{}",
            f.expires_at.as_deref().unwrap_or("-"),
            grants.join("\u{1e}")
        )
    });
    let state_marker = match restored_etag.or(expiring) {
        Some(marker) => marker,
        None => actions
            .iter()
            .find_map(|a| a.etag_after.clone().or_else(|| a.etag_before.clone()))
            .or_else(|| project.policy_etag.clone())
            .map_or_else(
                || f.detail.clone(),
                |etag| format!("{etag}\u{1f}{}", f.detail),
            ),
    };
    let principal = f.principal.as_ref().map(|p| p.to_string());
    let key = [
        project.project_id.as_str(),
        f.requirement.as_str(),
        principal.as_deref().unwrap_or("-"),
        finding.outcome.as_str(),
        mode.as_str(),
        &state_marker,
    ]
    .join("\u{1f}");
    let clusters = f
        .clusters
        .iter()
        .map(|c| {
            let (location, name) = c.split_once('/').unwrap_or(("-", c));
            format!(
                "https://console.cloud.google.com/kubernetes/clusters/details/{location}/{name}/details?project={}",
                project.project_id
            )
        })
        .collect();
    Notification {
        schema: SCHEMA_V1.to_owned(),
        id: format!("n-{:016x}", fnv1a(key.as_bytes())),
        time: rfc3339(now),
        project_id: project.project_id.clone(),
        project_number: project.project_number.clone(),
        requirement: f.requirement.as_str().to_owned(),
        principal,
        role: f.role.as_ref().map(|r| r.to_string()),
        outcome: finding.outcome,
        mode,
        severity: Severity::of(finding.outcome),
        status: f.status,
        detail: f.detail.clone(),
        missing_permissions: f.missing_permissions.clone(),
        clusters: f.clusters.clone(),
        evidence: evidence.clone(),
        actions,
        links: Links {
            iam: format!(
                "https://console.cloud.google.com/iam-admin/iam?project={}",
                project.project_id
            ),
            clusters,
        },
        trace_id: trace_id.map(str::to_owned),
        flap_guard: matches!(
            finding.outcome,
            Outcome::Restored | Outcome::Escalated | Outcome::Failed
        )
        .then(|| project.flap_guard.clone())
        .flatten(),
        expires_at: f.expires_at.clone(),
        denied_permissions: f.denied_permissions.clone(),
        deny_unread: f
            .deny_check
            .as_ref()
            .map(|d| d.unread.clone())
            .unwrap_or_default(),
        denied_by: {
            let mut names: Vec<String> = f
                .denied_by
                .iter()
                .filter(|b| b.uncertain.is_none())
                .map(|b| b.policy.clone())
                .collect();
            names.dedup();
            names
        },
    }
}

/// 64-bit FNV-1a: a stable, dependency-free hash for notification ids.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// RFC 3339 UTC timestamp with milliseconds (the `time` field).
pub fn rfc3339(t: SystemTime) -> String {
    crate::clock::rfc3339(t, crate::clock::Precision::Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_rise_with_the_outcome() {
        assert_eq!(Severity::of(Outcome::Restored), Severity::Info);
        assert_eq!(Severity::of(Outcome::Failed), Severity::Error);
        assert_eq!(Severity::of(Outcome::Escalated), Severity::Critical);
        assert_eq!(Severity::of(Outcome::Expiring), Severity::Warning);
    }
}
