//! The project ledger: what the shared state remembers about one project, and the pure rules that
//! turn a run's report into the notifications a person should get (transitions only).
//!
//! One document per project holds:
//! - the last known status and outcome of every (requirement, principal) and how many transitions
//!   of it were announced (the notification ids derive from that count, so every announcement has
//!   an id of its own and a re-publication keeps it);
//! - our restorations within the flapping window (the flap guard counts them, exactly, across
//!   every instance), each marked once its `restored` notification is in the outbox;
//! - write intents: recorded before a write, turned into a restoration after it, so a process that
//!   dies in between leaves a trace the next run resolves from live state;
//! - the outbox: notifications recorded before they are published, claimed by one publisher at a
//!   time, removed once published; and the ids published recently.
//!
//! Nothing here decides a grant: the engine decides from live state and only records here.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::domain::evaluate::Status;
use crate::domain::plan::Action;
use crate::domain::report::{FindingReport, Outcome};
use crate::notify::Notification;

/// The document's format version (a newer one is refused rather than misread).
pub const FORMAT: u32 = 1;

/// How long a write intent may stay open before another run resolves it from live state: longer
/// than a write, its retries and its read-back take.
pub const INTENT_LEASE_MS: i64 = 120_000;

/// How long a claim on an outbox entry holds before another publisher may take it over.
pub const CLAIM_MS: i64 = 60_000;

/// How many published ids a project remembers (the channels' de-duplication uses its own records).
const PUBLISHED_KEPT: usize = 256;

/// One project's document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectLedger {
    /// [`FORMAT`].
    #[serde(default)]
    pub format: u32,
    /// Per finding key ([`finding_key`]).
    #[serde(default)]
    pub findings: BTreeMap<String, Entry>,
    /// Our restorations (within the longest window the policy keeps).
    #[serde(default)]
    pub restorations: Vec<Restoration>,
    /// Writes about to be made.
    #[serde(default)]
    pub intents: Vec<Intent>,
    /// Notifications recorded and not yet published.
    #[serde(default)]
    pub outbox: Vec<OutboxEntry>,
    /// Ids published lately, newest last.
    #[serde(default)]
    pub published: VecDeque<String>,
    /// When open problems were last re-announced (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded_at_ms: Option<i64>,
}

/// What is known of one finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its last status.
    pub status: Status,
    /// Its last outcome.
    pub outcome: Outcome,
    /// Since when it has had that outcome (ms since the epoch).
    pub since_ms: i64,
    /// Announcements made of it so far.
    pub announced: u32,
    /// When an `expiring` grant ends: a renewed grant (a new end) is a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One of our restorations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restoration {
    /// [`action_key`] of what was restored.
    pub action: String,
    /// The finding it restored ([`finding_key`]), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Which run made it.
    pub run: String,
    /// The policy etag the write produced, if a policy write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag_after: Option<String>,
    /// Its `restored` notification is in the outbox (or was published).
    pub notified: bool,
    /// Who removed what it restored, with what tool, when the event said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// The change a restoration answered: who, with what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The principal (audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The tool (user agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<crate::intake::tool::Tool>,
}

/// A write about to be made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// [`action_key`] of the write.
    pub action: String,
    /// The finding it restores ([`finding_key`]), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// Which run.
    pub run: String,
    /// When recorded (ms since the epoch).
    pub at_ms: i64,
}

/// A notification waiting to be published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The notification, as it will be published.
    pub notification: Notification,
    /// Who is publishing it, until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
}

/// A publisher's claim on an outbox entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The run publishing it.
    pub run: String,
    /// Until when the claim holds (ms since the epoch).
    pub until_ms: i64,
}

/// The ledger key of a finding: requirement and principal.
pub fn finding_key(f: &FindingReport) -> String {
    key_of(&f.finding)
}

/// The ledger key of a finding as evaluated (before any outcome).
pub fn key_of(f: &crate::domain::evaluate::Finding) -> String {
    let principal = f.principal.as_ref().map(|p| p.to_string());
    format!(
        "{}|{}",
        f.requirement.as_str(),
        principal.as_deref().unwrap_or("-")
    )
}

/// The ledger key of an action: what it restores.
pub fn action_key(a: &Action) -> String {
    match a {
        Action::Grant { role, member } => format!("grant|{role}|{member}"),
        Action::EnableService { service } => format!("enable-service|{service}"),
        Action::EnableServiceAccount { email } => format!("enable-service-account|{email}"),
        Action::UndeleteServiceAccount { email, .. } => {
            format!("undelete-service-account|{email}")
        }
    }
}

/// Outcomes a person is told about as a problem (and told about again when it ends).
pub fn is_problem(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::WouldRestore
            | Outcome::NotAllowed
            | Outcome::Unknown
            | Outcome::Failed
            | Outcome::Escalated
            | Outcome::Expiring
    )
}

/// What the ledger says should be announced of one finding of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// Nothing changed.
    Nothing,
    /// The finding's outcome, as the run reported it.
    Outcome(Outcome),
}

/// How a run's outcomes are read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules {
    /// Announce a finding's first `healthy` too (`REMEDIATOR_NOTIFY_HEALTHY`).
    pub notify_healthy: bool,
    /// A `failed` with a transient cause will be retried (the message is redelivered): it is not
    /// announced, and the ledger keeps what it knew.
    pub failures_retried: bool,
}

impl ProjectLedger {
    /// An empty ledger of the current format.
    pub fn new() -> Self {
        Self {
            format: FORMAT,
            ..Self::default()
        }
    }

    /// Whether the document holds work for whoever runs the project next.
    pub fn is_pending(&self) -> bool {
        !self.outbox.is_empty() || self.has_unsettled_writes()
    }

    /// Writes whose outcome only a run of the project can settle from live state: open intents,
    /// restorations not yet announced.
    pub fn has_unsettled_writes(&self) -> bool {
        !self.intents.is_empty() || self.restorations.iter().any(|r| !r.notified)
    }

    /// Problems announced and not over.
    pub fn open_problems(&self) -> usize {
        self.findings
            .values()
            .filter(|e| is_problem(e.outcome))
            .count()
    }

    /// Records one finding of a run and says what to announce. `transient_failure`: the finding
    /// failed for a cause that may pass.
    pub fn observe(
        &mut self,
        finding: &FindingReport,
        transient_failure: bool,
        rules: Rules,
        now_ms: i64,
    ) -> (Announce, u32) {
        let key = finding_key(finding);
        let outcome = finding.outcome;
        if outcome == Outcome::Failed && transient_failure && rules.failures_retried {
            return (Announce::Nothing, 0);
        }
        let prev = self.findings.get(&key).cloned();
        let announce = match (outcome, &prev) {
            // Every restoration is announced, repeats included.
            (Outcome::Restored, _) => Announce::Outcome(Outcome::Restored),
            (Outcome::Healthy, Some(p)) if is_problem(p.outcome) => {
                Announce::Outcome(Outcome::Resolved)
            }
            (Outcome::Healthy, None) if rules.notify_healthy => Announce::Outcome(Outcome::Healthy),
            (Outcome::Healthy | Outcome::Resolved, _) => Announce::Nothing,
            (o, Some(p))
                if p.outcome == o
                    && p.status == finding.finding.status
                    && p.expires_at == finding.finding.expires_at =>
            {
                Announce::Nothing
            }
            (o, _) => Announce::Outcome(o),
        };
        // A restored finding is healthy from now on: a later healthy run announces nothing.
        let (stored, status) = if outcome == Outcome::Restored {
            (Outcome::Healthy, Status::Ok)
        } else {
            (outcome, finding.finding.status)
        };
        let announced =
            prev.as_ref().map_or(0, |p| p.announced) + u32::from(announce != Announce::Nothing);
        let since_ms = match &prev {
            Some(p) if p.outcome == stored && p.status == status => p.since_ms,
            _ => now_ms,
        };
        self.findings.insert(
            key,
            Entry {
                status,
                outcome: stored,
                since_ms,
                announced,
                expires_at: finding.finding.expires_at.clone(),
            },
        );
        (announce, announced)
    }

    /// Forgets findings a complete run no longer reports (a node pool deleted, an account no
    /// longer used): nothing to announce, nothing left open.
    pub fn forget_except(&mut self, keys: &[String]) {
        self.findings.retain(|k, _| keys.iter().any(|x| x == k));
    }

    /// Our restorations and open intents of `action` since `since_ms`: the flapping count.
    pub fn restorations_since(&self, action: &str, since_ms: i64) -> u32 {
        let done = self
            .restorations
            .iter()
            .filter(|r| r.action == action && r.at_ms >= since_ms)
            .count();
        let open = self
            .intents
            .iter()
            .filter(|i| i.action == action && i.at_ms >= since_ms)
            .count();
        u32::try_from(done + open).unwrap_or(u32::MAX)
    }

    /// Records the intent of a write unless the flapping limit is reached; true if recorded.
    pub fn begin(&mut self, intent: Intent, since_ms: i64, limit: u32) -> bool {
        // Idempotent: a commit retried after a lost answer may apply the same change twice.
        if self
            .intents
            .iter()
            .any(|i| i.run == intent.run && i.action == intent.action)
        {
            return true;
        }
        if self.restorations_since(&intent.action, since_ms) >= limit {
            return false;
        }
        self.intents.push(intent);
        true
    }

    /// A write of `run` is done: its intent becomes a restoration (`made`), or goes (not made).
    pub fn finish(&mut self, run: &str, action: &str, made: Option<Restoration>) {
        if let Some(i) = self
            .intents
            .iter()
            .position(|i| i.run == run && i.action == action)
        {
            self.intents.remove(i);
        }
        if let Some(r) = made {
            self.restorations.push(r);
        }
    }

    /// Whether any restoration of `finding` is on record (announced or not).
    pub fn has_restoration_of(&self, finding: &str) -> bool {
        self.restorations
            .iter()
            .any(|r| r.finding.as_deref() == Some(finding))
    }

    /// Drops restorations older than `since_ms` that were announced.
    pub fn prune(&mut self, since_ms: i64) {
        self.restorations
            .retain(|r| r.at_ms >= since_ms || !r.notified);
    }

    /// Intents of other runs older than the lease: their run died between recording and finishing.
    pub fn stale_intents(&self, now_ms: i64) -> Vec<Intent> {
        self.intents
            .iter()
            .filter(|i| now_ms - i.at_ms > INTENT_LEASE_MS)
            .cloned()
            .collect()
    }

    /// Puts a notification in the outbox (once per id).
    pub fn enqueue(&mut self, notification: Notification) {
        if self.published.contains(&notification.id)
            || self
                .outbox
                .iter()
                .any(|e| e.notification.id == notification.id)
        {
            return;
        }
        self.outbox.push(OutboxEntry {
            notification,
            claim: None,
        });
    }

    /// Claims every entry no live claim holds, for `run` until `until_ms`; returns them.
    pub fn claim(&mut self, run: &str, now_ms: i64, until_ms: i64) -> Vec<Notification> {
        let mut out = Vec::new();
        for e in &mut self.outbox {
            let free = e
                .claim
                .as_ref()
                .is_none_or(|c| c.until_ms < now_ms || c.run == run);
            if free {
                e.claim = Some(Claim {
                    run: run.to_owned(),
                    until_ms,
                });
                out.push(e.notification.clone());
            }
        }
        out
    }

    /// Marks notifications published (they leave the outbox) and releases `run`'s other claims.
    pub fn published(&mut self, run: &str, ids: &[String]) {
        self.outbox.retain(|e| !ids.contains(&e.notification.id));
        for e in &mut self.outbox {
            if e.claim.as_ref().is_some_and(|c| c.run == run) {
                e.claim = None;
            }
        }
        for id in ids {
            if !self.published.contains(id) {
                self.published.push_back(id.clone());
            }
        }
        while self.published.len() > PUBLISHED_KEPT {
            self.published.pop_front();
        }
    }
}

/// A notification id for the `n`th announcement of a finding (or restoration) of a project.
pub fn notification_id(project: &str, key: &str, outcome: Outcome, n: u32, extra: &str) -> String {
    let seed = format!("{project}\u{1f}{key}\u{1f}{outcome}\u{1f}{n}\u{1f}{extra}");
    format!("n-{:016x}", crate::notify::fnv1a(seed.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::evaluate::Finding;
    use crate::domain::plan::Decision;
    use crate::domain::requirements::RequirementId;

    fn finding(outcome: Outcome, status: Status) -> FindingReport {
        let f = Finding {
            requirement: RequirementId::GkeServiceAgent,
            principal: Some(
                crate::domain::iam::Member::parse(
                    "serviceAccount:service-1@container-engine-robot.iam.gserviceaccount.com",
                )
                .expect("member"),
            ),
            status,
            missing_permissions: Vec::new(),
            conditional_permissions: Vec::new(),
            unknown_permissions: Vec::new(),
            role: None,
            clusters: Vec::new(),
            node_pools: Vec::new(),
            granted_via: Vec::new(),
            detail: "d".to_owned(),
            expires_at: None,
            denied_permissions: Vec::new(),
            denied_by: Vec::new(),
            org_policy: None,
            deny_check: None,
            account: None,
        };
        FindingReport {
            finding: f,
            decision: Decision::Healthy,
            outcome,
        }
    }

    fn say(l: &mut ProjectLedger, o: Outcome, s: Status) -> Announce {
        l.observe(&finding(o, s), false, Rules::default(), 0).0
    }

    #[test]
    fn an_unchanged_problem_is_announced_once_and_its_end_once() {
        let mut l = ProjectLedger::new();
        assert_eq!(
            say(&mut l, Outcome::NotAllowed, Status::Missing),
            Announce::Outcome(Outcome::NotAllowed)
        );
        assert_eq!(
            say(&mut l, Outcome::NotAllowed, Status::Missing),
            Announce::Nothing
        );
        assert_eq!(
            say(&mut l, Outcome::Unknown, Status::Unknown),
            Announce::Outcome(Outcome::Unknown)
        );
        assert_eq!(
            say(&mut l, Outcome::Healthy, Status::Ok),
            Announce::Outcome(Outcome::Resolved)
        );
        assert_eq!(say(&mut l, Outcome::Healthy, Status::Ok), Announce::Nothing);
        assert_eq!(l.open_problems(), 0);
    }

    #[test]
    fn every_restoration_is_announced_and_leaves_the_finding_healthy() {
        let mut l = ProjectLedger::new();
        assert_eq!(say(&mut l, Outcome::Healthy, Status::Ok), Announce::Nothing);
        for _ in 0..2 {
            assert_eq!(
                say(&mut l, Outcome::Restored, Status::Missing),
                Announce::Outcome(Outcome::Restored)
            );
            assert_eq!(
                say(&mut l, Outcome::Healthy, Status::Ok),
                Announce::Nothing,
                "not a resolution"
            );
        }
        // The restored finding is stored healthy and ok: a healthy run changes nothing stored.
        assert_eq!(
            say(&mut l, Outcome::Restored, Status::Missing),
            Announce::Outcome(Outcome::Restored)
        );
        let after_restoration = l.clone();
        assert_eq!(say(&mut l, Outcome::Healthy, Status::Ok), Announce::Nothing);
        assert_eq!(l, after_restoration);
    }

    #[test]
    fn a_transient_failure_that_will_be_retried_is_not_announced_nor_recorded() {
        let mut l = ProjectLedger::new();
        let rules = Rules {
            failures_retried: true,
            ..Rules::default()
        };
        let f = finding(Outcome::Failed, Status::Missing);
        assert_eq!(l.observe(&f, true, rules, 0).0, Announce::Nothing);
        assert!(l.findings.is_empty());
        assert_eq!(
            l.observe(&f, false, rules, 0).0,
            Announce::Outcome(Outcome::Failed)
        );
    }

    #[test]
    fn the_flapping_count_includes_open_intents_and_refuses_past_the_limit() {
        let mut l = ProjectLedger::new();
        let intent = |run: &str, at_ms| Intent {
            action: "grant|r|m".into(),
            finding: None,
            run: run.into(),
            at_ms,
        };
        assert!(l.begin(intent("a", 10), 0, 2));
        assert!(l.begin(intent("b", 20), 0, 2));
        assert!(
            !l.begin(intent("c", 30), 0, 2),
            "two open intents reach a limit of two"
        );
        l.finish("a", "grant|r|m", None);
        assert!(l.begin(intent("c", 30), 0, 2));
        assert_eq!(
            l.restorations_since("grant|r|m", 25),
            1,
            "only what is inside the window"
        );
    }

    #[test]
    fn an_outbox_entry_is_claimed_by_one_publisher_until_its_claim_ends() {
        let mut l = ProjectLedger::new();
        let n: Notification = serde_json::from_value(serde_json::json!({
            "schema": "gke-iam-remediator.notification/v1", "id": "n-1", "time": "t",
            "project_id": "p", "project_number": "1", "requirement": "gke-service-agent",
            "outcome": "restored", "mode": "enforce", "severity": "info", "status": "ok",
            "detail": "d"
        }))
        .expect("notification");
        l.enqueue(n.clone());
        l.enqueue(n.clone());
        assert_eq!(l.claim("a", 0, 100).len(), 1);
        assert!(l.claim("b", 50, 150).is_empty(), "a live claim holds");
        assert_eq!(
            l.claim("b", 101, 200).len(),
            1,
            "an expired claim is taken over"
        );
        l.published("b", &["n-1".to_owned()]);
        assert!(l.outbox.is_empty() && !l.is_pending());
        l.enqueue(n);
        assert!(l.outbox.is_empty(), "a published id is not queued again");
    }
}
