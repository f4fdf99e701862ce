//! The flapping count: how often the remediator restored each binding of a project within the
//! policy's window, which decides "restore" or "escalate".
//!
//! Two sources, combined so the limit is never exceeded on a guess: Cloud Audit Logs (our own
//! `SetIamPolicy` writes, shared by every instance; read at most once per project per window, so the
//! read is off the critical path of later restorations) and this instance's own record of the
//! restorations it made (always known, even when Logging cannot be read or our identity is unknown).
//! When the shared record cannot be read the count is this instance's alone, and every decision made
//! on it says so ([`FlapSource::InstanceOnly`]).
//!
//! Shared reads are batched: a project that needs one joins whatever read is about to start, so one
//! `entries.list` answers for every project waiting (up to [`AUDIT_LOG_BATCH`]) and a cold instance
//! with a hundred projects to restore spends one or two of Logging's scarce reads, not a hundred,
//! and no project's read queues behind another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::domain::iam::{Member, ProjectId, Role};
use crate::domain::state::Restorations;
use crate::ports::{AUDIT_LOG_BATCH, Cloud};

pub use crate::domain::report::FlapGuard as FlapSource;

#[derive(Default)]
struct Entry {
    /// When the audit log was read, and what it counted.
    audit: Option<(Instant, Restorations)>,
    /// Restorations this instance made, newest last.
    local: Vec<(Instant, Role, Member)>,
}

/// Where a waiting run is answered: the combined count, or why it could not be read.
type Answer = oneshot::Sender<Result<Restorations, String>>;

/// A run waiting for a shared read of its project's count.
type Waiter = (ProjectId, Answer);

/// Shared reads asked for and not yet answered.
#[derive(Default)]
struct Reads {
    /// In the order asked.
    waiting: Vec<Waiter>,
    /// Whether a task is reading (it takes whatever is waiting when it starts its next read).
    reading: bool,
}

/// Per-project flapping counts of one process (shared by every run of the engine).
#[derive(Default)]
pub struct FlapLedger {
    entries: Mutex<HashMap<ProjectId, Entry>>,
    reads: Mutex<Reads>,
}

impl std::fmt::Debug for FlapLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let projects = self.with(|e| e.len());
        f.debug_struct("FlapLedger")
            .field("projects", &projects)
            .finish()
    }
}

impl FlapLedger {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<ProjectId, Entry>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn with_reads<T>(&self, f: impl FnOnce(&mut Reads) -> T) -> T {
        f(&mut self.reads.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the shared count of `project` from the audit log (with every other project waiting for
    /// one), stores it and returns the combined count, or why it could not be read.
    pub async fn read_shared(
        self: &Arc<Self>,
        gcp: &Arc<dyn Cloud>,
        project: &ProjectId,
        self_email: &str,
        window: Duration,
        clock: &crate::clock::Clock,
    ) -> Result<Restorations, String> {
        let (tx, rx) = oneshot::channel();
        let start = self.with_reads(|r| {
            r.waiting.push((project.clone(), tx));
            !std::mem::replace(&mut r.reading, true)
        });
        if start {
            tokio::spawn(read_waiting(
                self.clone(),
                gcp.clone(),
                self_email.to_owned(),
                window,
                clock.clone(),
            ));
        }
        rx.await
            .unwrap_or_else(|_| Err("the shared read was abandoned".to_owned()))
    }

    /// Takes up to [`AUDIT_LOG_BATCH`] distinct projects from the waiting list with all their
    /// waiters, or ends the reading when nothing waits.
    fn next_batch(&self) -> Option<Vec<(ProjectId, Vec<Answer>)>> {
        self.with_reads(|r| {
            if r.waiting.is_empty() {
                r.reading = false;
                return None;
            }
            let mut batch: Vec<(ProjectId, Vec<_>)> = Vec::new();
            let mut left = Vec::new();
            for (project, tx) in r.waiting.drain(..) {
                if let Some((_, txs)) = batch.iter_mut().find(|(p, _)| *p == project) {
                    txs.push(tx);
                } else if batch.len() < AUDIT_LOG_BATCH {
                    batch.push((project, vec![tx]));
                } else {
                    left.push((project, tx));
                }
            }
            r.waiting = left;
            Some(batch)
        })
    }

    /// The count from a shared read made within `window`, plus this instance's restorations since
    /// (and never less than this instance alone knows); `None` when no such read exists.
    pub fn cached(&self, project: &ProjectId, window: Duration) -> Option<Restorations> {
        self.with(|entries| {
            let entry = entries.get_mut(project)?;
            prune(entry, window);
            let (read_at, audit) = entry.audit.as_ref()?;
            if read_at.elapsed() >= window {
                return None;
            }
            Some(combine(audit, &entry.local, *read_at))
        })
    }

    /// Stores a fresh shared count and returns the combined count.
    pub fn store(
        &self,
        project: &ProjectId,
        audit: Restorations,
        window: Duration,
    ) -> Restorations {
        self.with(|entries| {
            let entry = entries.entry(project.clone()).or_default();
            prune(entry, window);
            let now = Instant::now();
            let combined = combine(&audit, &entry.local, now);
            entry.audit = Some((now, audit));
            combined
        })
    }

    /// What this instance alone knows for the window.
    pub fn local(&self, project: &ProjectId, window: Duration) -> Restorations {
        self.with(|entries| {
            let Some(entry) = entries.get_mut(project) else {
                return Restorations::new();
            };
            prune(entry, window);
            let mut counts = Restorations::new();
            for (_, role, member) in &entry.local {
                *counts.entry((role.clone(), member.clone())).or_default() += 1;
            }
            counts
        })
    }

    /// Records a restoration this instance just made.
    pub fn record(&self, project: &ProjectId, role: &Role, member: &Member) {
        self.with(|entries| {
            let entry = entries.entry(project.clone()).or_default();
            entry
                .local
                .push((Instant::now(), role.clone(), member.clone()));
            // Bounded: a binding restored this often is escalated long before.
            if entry.local.len() > 10_000 {
                entry.local.drain(..entry.local.len() - 10_000);
            }
        });
    }
}

/// Reads for whatever waits until nothing does. Should the task end early (a panic), the waiting
/// runs are answered with an error and a later run starts a new task.
async fn read_waiting(
    ledger: Arc<FlapLedger>,
    gcp: Arc<dyn Cloud>,
    self_email: String,
    window: Duration,
    clock: crate::clock::Clock,
) {
    struct Reset(Arc<FlapLedger>, bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            if !self.1 {
                self.0.with_reads(|r| {
                    r.waiting.clear();
                    r.reading = false;
                });
            }
        }
    }
    let mut reset = Reset(ledger.clone(), false);
    while let Some(batch) = ledger.next_batch() {
        let since = crate::clock::rfc3339(clock.now() - window, crate::clock::Precision::Millis);
        let projects: Vec<ProjectId> = batch.iter().map(|(p, _)| p.clone()).collect();
        match gcp
            .count_own_restorations(&projects, &self_email, &since)
            .await
        {
            Ok(mut counts) => {
                for (project, txs) in batch {
                    let audit = counts.remove(&project).unwrap_or_default();
                    let combined = ledger.store(&project, audit, window);
                    for tx in txs {
                        let _ = tx.send(Ok(combined.clone()));
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                for tx in batch.into_iter().flat_map(|(_, txs)| txs) {
                    let _ = tx.send(Err(message.clone()));
                }
            }
        }
    }
    reset.1 = true;
}

fn prune(entry: &mut Entry, window: Duration) {
    entry.local.retain(|(at, _, _)| at.elapsed() < window);
}

/// Per binding: the larger of the shared count and what this instance made up to the read (the audit
/// log may lag our own last write), plus what this instance made after the read.
fn combine(
    audit: &Restorations,
    local: &[(Instant, Role, Member)],
    read_at: Instant,
) -> Restorations {
    let mut before: Restorations = Restorations::new();
    let mut after: Restorations = Restorations::new();
    for (at, role, member) in local {
        let key = (role.clone(), member.clone());
        if *at <= read_at {
            *before.entry(key).or_default() += 1;
        } else {
            *after.entry(key).or_default() += 1;
        }
    }
    let mut counts = audit.clone();
    for (key, n) in before {
        let c = counts.entry(key).or_default();
        *c = (*c).max(n);
    }
    for (key, n) in after {
        *counts.entry(key).or_default() += n;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (ProjectId, Role, Member) {
        (
            ProjectId::parse("p").unwrap(),
            Role::parse("roles/container.defaultNodeServiceAccount").unwrap(),
            Member::parse("serviceAccount:n@p.iam.gserviceaccount.com").unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn restorations_after_a_shared_read_are_added_to_it() {
        let (p, r, m) = key();
        let ledger = FlapLedger::default();
        let window = Duration::from_secs(3600);
        let audit = Restorations::from([((r.clone(), m.clone()), 2)]);
        ledger.store(&p, audit, window);
        tokio::time::advance(Duration::from_secs(1)).await;
        ledger.record(&p, &r, &m);
        let counts = ledger.cached(&p, window).unwrap();
        assert_eq!(counts[&(r, m)], 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_audit_log_never_counts_less_than_this_instance_made() {
        let (p, r, m) = key();
        let ledger = FlapLedger::default();
        let window = Duration::from_secs(3600);
        ledger.record(&p, &r, &m);
        ledger.record(&p, &r, &m);
        tokio::time::advance(Duration::from_secs(1)).await;
        let counts = ledger.store(&p, Restorations::new(), window);
        assert_eq!(counts[&(r, m)], 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_read_is_reused_only_within_the_window() {
        let (p, _, _) = key();
        let ledger = FlapLedger::default();
        let window = Duration::from_secs(60);
        ledger.store(&p, Restorations::new(), window);
        assert!(ledger.cached(&p, window).is_some());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(ledger.cached(&p, window).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn restorations_older_than_the_window_are_forgotten() {
        let (p, r, m) = key();
        let ledger = FlapLedger::default();
        let window = Duration::from_secs(60);
        ledger.record(&p, &r, &m);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(ledger.local(&p, window).is_empty());
    }
}
