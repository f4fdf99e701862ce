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
//!
//! **Stale, never forgotten.** A deny-policy change (an IAM v2 create, update or delete event) marks
//! the point's entry stale: the next run reads it again, and until a read succeeds the last rules
//! known are still applied. A stale entry is never treated as "no deny policy": when the re-read
//! cannot be made (the quota spent, a refusal) a point whose last read held rules keeps them, so a
//! change event (real or forged) cannot make a blocked account look grantable.
//!
//! **Shared.** With a state store, every successful read is also written there (rules and read
//! time, per attachment point) and a missing or old entry is looked up there before Google is
//! asked: the reads of every instance and run add up, so coverage grows across runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use crate::domain::deny::DenyPolicy;
use crate::ports::{ApiError, Collection, StateError, StateStore, WriteFlags};

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
    /// A change event came after the read: read again, keep these until then.
    stale: bool,
    /// When the read started on the wall clock (ms since the epoch), to compare with the store's.
    wall_ms: i64,
}

/// One attachment point as the state store keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRead {
    /// When the read started (ms since the epoch).
    read_at_ms: i64,
    /// A change event came after the read.
    #[serde(default)]
    stale: bool,
    policies: Vec<DenyPolicy>,
}

/// Deny policies per attachment point, with the time of their read.
#[derive(Default)]
pub struct DenyPolicyCache {
    entries: std::sync::Mutex<HashMap<String, Slot>>,
    store: Option<Arc<dyn StateStore>>,
    /// The wall clock read times are recorded and compared in (the engine's).
    clock: crate::clock::Clock,
    /// Held (written) by a sweep's plan of reads while it reads; every other deny read waits for it
    /// first, so the plan takes the IAM v2 budget before any run can ([`super::deny_plan`]).
    planning: Arc<tokio::sync::RwLock<()>>,
}

impl std::fmt::Debug for DenyPolicyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenyPolicyCache")
            .field("points", &self.len())
            .field("store", &self.store.as_ref().map(|s| s.info().location))
            .finish()
    }
}

impl DenyPolicyCache {
    /// A cache backed by a state store (shared by every instance and run that use it).
    pub fn with_store(store: Arc<dyn StateStore>) -> Self {
        Self {
            entries: std::sync::Mutex::default(),
            store: Some(store),
            clock: crate::clock::Clock::default(),
            planning: Arc::default(),
        }
    }

    /// Held by a sweep's plan while it makes its reads: deny reads of runs wait for it to end
    /// ([`Self::after_plan`]).
    pub async fn plan_lock(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.planning.clone().write_owned().await
    }

    /// Returns once no plan of reads is under way (at once when none is).
    pub async fn after_plan(&self) {
        drop(self.planning.read().await);
    }

    /// The same cache, its read times taken from `clock`.
    pub fn clocked(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store's read of `point`, if it has one.
    async fn stored(&self, point: &str) -> Option<StoredRead> {
        let store = self.store.as_ref()?;
        match store.get(Collection::DenyPolicies, point).await {
            Ok(Some(doc)) => serde_json::from_str(&doc.body).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(%point, error = %e, "the state store's deny-policy cache cannot be read");
                None
            }
        }
    }

    /// Writes `point`'s read (or marks it stale) in the store; losing a race to another writer is
    /// fine (its read is as good).
    async fn keep(&self, point: &str, change: impl Fn(Option<StoredRead>) -> Option<StoredRead>) {
        let Some(store) = &self.store else { return };
        for _ in 0..3 {
            let current = match store.get(Collection::DenyPolicies, point).await {
                Ok(c) => c,
                Err(_) => return,
            };
            let (version, old) = match current {
                Some(doc) => (Some(doc.version), serde_json::from_str(&doc.body).ok()),
                None => (None, None),
            };
            let Some(new) = change(old) else { return };
            let Ok(body) = serde_json::to_string(&new) else {
                return;
            };
            match store
                .put(
                    Collection::DenyPolicies,
                    point,
                    &body,
                    WriteFlags::default(),
                    version.as_ref(),
                )
                .await
            {
                Err(StateError::Conflict) => continue,
                Err(e) => {
                    tracing::debug!(%point, error = %e, "the deny-policy cache cannot be written to the state store");
                    return;
                }
                Ok(_) => return,
            }
        }
    }

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
        if let Some(fresh) = entry
            .as_ref()
            .filter(|f| !f.stale && f.at.elapsed() < max_age)
        {
            return Ok(fresh.policies.clone());
        }
        let max_age_ms = crate::clock::span_ms(max_age);
        let stored = if entry.as_ref().is_some_and(|f| f.stale) {
            None
        } else {
            self.stored(point).await
        };
        // The store's read serves when it is younger than ours (another instance or run made it).
        let ours = entry.as_ref().map_or(i64::MIN, |f| f.wall_ms);
        if let Some(s) = stored.as_ref().filter(|s| s.read_at_ms > ours) {
            let age_ms = crate::clock::epoch_ms(self.clock.now())
                .saturating_sub(s.read_at_ms)
                .max(0);
            if !s.stale && age_ms < max_age_ms {
                let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(0));
                *entry = Some(Fresh {
                    at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
                    policies: s.policies.clone(),
                    stale: false,
                    wall_ms: s.read_at_ms,
                });
                return Ok(s.policies.clone());
            }
        }
        let (at, result) = read().await;
        match result {
            Ok(policies) => {
                let read_at_ms =
                    crate::clock::epoch_ms(self.clock.now()) - crate::clock::span_ms(at.elapsed());
                if at.elapsed() < max_age {
                    *entry = Some(Fresh {
                        at,
                        policies: policies.clone(),
                        stale: false,
                        wall_ms: read_at_ms,
                    });
                }
                let kept = policies.clone();
                self.keep(point, move |_| {
                    Some(StoredRead {
                        read_at_ms,
                        stale: false,
                        policies: kept.clone(),
                    })
                })
                .await;
                Ok(policies)
            }
            Err(e) => {
                // The last rules known still apply until a read succeeds: a point that blocked
                // keeps blocking (never "no deny policy" because a re-read could not be made).
                let last = entry
                    .as_ref()
                    .map(|f| f.policies.clone())
                    .or_else(|| stored.map(|s| s.policies))
                    .filter(|p| !p.is_empty());
                match last {
                    Some(policies) => {
                        tracing::info!(%point, error = %e, "deny policies not read again: their last known rules still apply");
                        Ok(policies)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// What this cache (and its store) knows of `point` for a plan of reads: fresh enough to be
    /// used as it is, read once and since grown old or marked stale (when), or never read.
    pub async fn known(&self, point: &str, max_age: Duration) -> crate::engine::deny_plan::Known {
        use crate::engine::deny_plan::Known;
        let slot = self.existing(point);
        let mut ours = None;
        if let Some(slot) = slot
            && let Some(fresh) = slot.lock().await.as_ref()
        {
            if !fresh.stale && fresh.at.elapsed() < max_age {
                return Known::Fresh;
            }
            if fresh.stale {
                return Known::ReadAt(fresh.wall_ms);
            }
            ours = Some(fresh.wall_ms);
        }
        match self.stored(point).await {
            Some(s) if s.stale => Known::ReadAt(s.read_at_ms),
            Some(s) if ours.is_none_or(|o| s.read_at_ms > o) => {
                let age_ms = crate::clock::epoch_ms(self.clock.now()).saturating_sub(s.read_at_ms);
                match age_ms < crate::clock::span_ms(max_age) {
                    true => Known::Fresh,
                    false => Known::ReadAt(s.read_at_ms),
                }
            }
            _ => ours.map_or(Known::Never, Known::ReadAt),
        }
    }

    /// Marks the read of `point` stale (its deny policies changed): the next run that needs them
    /// reads them again, and its last known rules still apply until a read succeeds. A read under
    /// way finishes first, and is marked too; so is the store's entry.
    pub async fn forget(&self, point: &str) {
        let slot = self.existing(point);
        if let Some(slot) = slot
            && let Some(fresh) = slot.lock().await.as_mut()
        {
            fresh.stale = true;
        }
        self.keep(point, |old| {
            old.filter(|o| !o.stale)
                .map(|o| StoredRead { stale: true, ..o })
        })
        .await;
    }

    /// The slot of `point`, if it has one (never creates it).
    fn existing(&self, point: &str) -> Option<Slot> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(point)
            .cloned()
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
