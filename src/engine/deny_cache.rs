//! The process-wide cache of IAM v2 deny policies, per attachment point (`projects/NUMBER`,
//! `folders/N`, `organizations/N`), shared by every run of one process (`serve`, `job`, `scan`).
//!
//! Google allows 5 IAM v2 reads per consumer project per minute, so deny policies cannot be read on
//! every run: a run uses a read of at most `limits.deny_policy_max_age_minutes` (default 60), and only
//! a missing or older entry costs a read. Only successful reads are kept; an error (transient, a
//! refusal, the quota spent) is never cached here, so the next run that needs the point asks again
//! (a refusal is remembered for the rest of its own run by the run's caches). Concurrent runs that
//! need the same point share one read.
//!
//! The age of an entry is measured on tokio's clock from the moment its read started, so an entry is
//! never used for longer than the maximum age after Google answered.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::deny::DenyPolicy;
use crate::ports::ApiError;

/// Attachment points remembered before stale entries are dropped.
const MAX_ENTRIES: usize = 100_000;

/// One attachment point: its last successful read, behind the lock its readers share.
type Slot = Arc<tokio::sync::Mutex<Option<Fresh>>>;

/// A successful read.
#[derive(Debug)]
struct Fresh {
    /// When the read started.
    at: Instant,
    policies: Vec<DenyPolicy>,
}

/// Deny policies per attachment point, with the time of their read.
#[derive(Debug, Default)]
pub struct DenyPolicyCache {
    entries: std::sync::Mutex<HashMap<String, Slot>>,
}

impl DenyPolicyCache {
    /// The deny policies attached to `point`: from a read younger than `max_age`, else from `read`
    /// (kept when it succeeds). Callers for one point wait for one another's read, not for a
    /// second one.
    pub async fn get_or_read<F, Fut>(
        &self,
        point: &str,
        max_age: Duration,
        read: F,
    ) -> Result<Vec<DenyPolicy>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<DenyPolicy>, ApiError>>,
    {
        self.get_or(point, max_age, || async {
            let at = Instant::now();
            (at, read().await)
        })
        .await
    }

    /// Like [`Self::get_or_read`] with a read already made (started at `started`, under another
    /// name of the same attachment point): used unless a younger read is held, and kept when it
    /// succeeded.
    pub async fn get_or_use(
        &self,
        point: &str,
        max_age: Duration,
        started: Instant,
        result: Result<Vec<DenyPolicy>, ApiError>,
    ) -> Result<Vec<DenyPolicy>, ApiError> {
        self.get_or(point, max_age, || async move { (started, result) })
            .await
    }

    async fn get_or<F, Fut>(
        &self,
        point: &str,
        max_age: Duration,
        read: F,
    ) -> Result<Vec<DenyPolicy>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = (Instant, Result<Vec<DenyPolicy>, ApiError>)>,
    {
        let slot = self.slot(point, max_age);
        let mut entry = slot.lock().await;
        if let Some(fresh) = entry.as_ref().filter(|f| f.at.elapsed() < max_age) {
            return Ok(fresh.policies.clone());
        }
        let (at, result) = read().await;
        if let Ok(policies) = &result
            && at.elapsed() < max_age
        {
            *entry = Some(Fresh {
                at,
                policies: policies.clone(),
            });
        }
        result
    }

    /// Forgets the read of `point` (its deny policies changed): the next run that needs them reads
    /// them again. A read under way finishes first, and is forgotten too.
    pub async fn forget(&self, point: &str) {
        let slot = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(point)
            .cloned();
        if let Some(slot) = slot {
            *slot.lock().await = None;
        }
    }

    /// Attachment points with an entry (fresh or not).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// No entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, point: &str, max_age: Duration) -> Slot {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = entries.get(point) {
            return slot.clone();
        }
        if entries.len() >= MAX_ENTRIES {
            // Bounded: keep what is being read or still fresh.
            entries.retain(|_, slot| {
                slot.try_lock().map_or(true, |e| {
                    e.as_ref().is_some_and(|f| f.at.elapsed() < max_age)
                })
            });
        }
        entries.entry(point.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(name: &str) -> DenyPolicy {
        DenyPolicy {
            name: name.to_owned(),
            attached_to: "folders/1".to_owned(),
            display_name: String::new(),
            rules: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_is_reused_until_it_is_older_than_the_maximum_age() {
        let cache = DenyPolicyCache::default();
        let reads = AtomicU32::new(0);
        let max_age = Duration::from_secs(3600);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(vec![policy("p")])
        };
        assert_eq!(
            cache
                .get_or_read("folders/1", max_age, read)
                .await
                .unwrap()
                .len(),
            1
        );
        tokio::time::advance(Duration::from_secs(3599)).await;
        cache.get_or_read("folders/1", max_age, read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.get_or_read("folders/1", max_age, read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_is_not_kept_and_concurrent_callers_share_one_read() {
        let cache = DenyPolicyCache::default();
        let max_age = Duration::from_secs(60);
        let spent = cache
            .get_or_read("projects/1", max_age, || async {
                Err(ApiError::ReadQuotaSpent {
                    api: crate::ports::Api::Iam,
                    method: "policies.listPolicies",
                    limit: 5,
                    at_google: false,
                    budget: None,
                })
            })
            .await;
        assert!(spent.is_err_and(|e| e.is_read_quota_spent()));
        let reads = AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(vec![policy("p")])
        };
        let (a, b) = tokio::join!(
            cache.get_or_read("projects/1", max_age, read),
            cache.get_or_read("projects/1", max_age, read)
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }
}
