//! The shared state as the engine uses it: project ledgers read and committed by compare-and-swap
//! through the state port, with counters of every store operation.
//!
//! A commit applies a change to the ledger as read; when another instance committed first, the
//! ledger is read again and the same change applied to it (the change is a function, never a
//! stale copy), a bounded number of times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use serde::Serialize;

use super::ledger::{FORMAT, ProjectLedger};
use crate::notify;
use crate::ports::{Collection, StateError, StateStore, StoreInfo, Version, WriteFlags};

/// How often a commit is tried again after losing a race.
const COMMIT_ATTEMPTS: u32 = 16;

/// Store operations made, for logs, `/healthz` and benchmarks.
#[derive(Debug, Default, Serialize)]
pub struct StateOps {
    /// Documents read.
    pub reads: AtomicU64,
    /// Documents written.
    pub writes: AtomicU64,
    /// Writes refused because another writer came first (each is followed by a read and a retry).
    pub conflicts: AtomicU64,
    /// Queries for pending documents.
    pub queries: AtomicU64,
}

/// A ledger as read, with the version a commit must name.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The project.
    pub project: String,
    /// Its ledger.
    pub ledger: ProjectLedger,
    /// `None`: the document does not exist yet.
    pub version: Option<Version>,
}

/// The engine's handle on the state store.
pub struct SharedState {
    store: Arc<dyn StateStore>,
    /// Operations made.
    pub ops: StateOps,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("store", &self.store.info())
            .finish()
    }
}

impl SharedState {
    /// Over a store.
    pub fn new(store: Arc<dyn StateStore>) -> Arc<Self> {
        Arc::new(Self {
            store,
            ops: StateOps::default(),
        })
    }

    /// Over a fresh store in memory (nothing shared, nothing kept).
    pub fn in_memory() -> Arc<Self> {
        Self::new(Arc::new(crate::ports::state::MemoryStore::new()))
    }

    /// Where the store is and whether every instance shares it.
    pub fn info(&self) -> StoreInfo {
        self.store.info()
    }

    /// The underlying store (the channels' de-duplication, the deny-policy cache).
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Reads a project's ledger (an empty one when it has none).
    pub async fn load(&self, project: &str) -> Result<Snapshot, StateError> {
        self.ops.reads.fetch_add(1, Ordering::Relaxed);
        let stored = self.store.get(Collection::Projects, project).await?;
        let (ledger, version) = match stored {
            None => (ProjectLedger::new(), None),
            Some(s) => {
                let ledger: ProjectLedger = serde_json::from_str(&s.body)
                    .map_err(|e| StateError::Invalid(format!("project {project}: {e}")))?;
                if ledger.format > FORMAT {
                    return Err(StateError::Invalid(format!(
                        "project {project}: ledger format {} is newer than this release's {FORMAT}",
                        ledger.format
                    )));
                }
                (ledger, Some(s.version))
            }
        };
        Ok(Snapshot {
            project: project.to_owned(),
            ledger,
            version,
        })
    }

    /// Applies `change` to the ledger as read in `snapshot` and commits it; when another writer
    /// came first, reads again and applies `change` to that. Nothing is written when the change
    /// leaves the ledger as it was. Returns what the last application returned, and the snapshot
    /// as committed (for a following commit without a read).
    pub async fn commit<T>(
        &self,
        mut snapshot: Snapshot,
        mut change: impl FnMut(&mut ProjectLedger) -> T,
    ) -> Result<(T, Snapshot), StateError> {
        for _ in 0..COMMIT_ATTEMPTS {
            let mut ledger = snapshot.ledger.clone();
            let out = change(&mut ledger);
            if ledger == snapshot.ledger {
                return Ok((out, snapshot));
            }
            ledger.format = FORMAT;
            let body = serde_json::to_string(&ledger)
                .map_err(|e| StateError::Invalid(format!("project {}: {e}", snapshot.project)))?;
            let flags = WriteFlags {
                pending: ledger.is_pending(),
            };
            self.ops.writes.fetch_add(1, Ordering::Relaxed);
            match self
                .store
                .put(
                    Collection::Projects,
                    &snapshot.project,
                    &body,
                    flags,
                    snapshot.version.as_ref(),
                )
                .await
            {
                Ok(version) => {
                    snapshot.ledger = ledger;
                    snapshot.version = Some(version);
                    return Ok((out, snapshot));
                }
                Err(StateError::Conflict) => {
                    self.ops.conflicts.fetch_add(1, Ordering::Relaxed);
                    snapshot = self.load(&snapshot.project).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StateError::Unavailable(format!(
            "project {}: the ledger kept changing under {COMMIT_ATTEMPTS} commits",
            snapshot.project
        )))
    }

    /// Reads and commits in one go ([`Self::load`] then [`Self::commit`]).
    pub async fn update<T>(
        &self,
        project: &str,
        change: impl FnMut(&mut ProjectLedger) -> T,
    ) -> Result<(T, Snapshot), StateError> {
        let snapshot = self.load(project).await?;
        self.commit(snapshot, change).await
    }

    /// Projects whose ledger holds work for whoever runs them next.
    pub async fn pending_projects(&self) -> Result<Vec<String>, StateError> {
        self.ops.queries.fetch_add(1, Ordering::Relaxed);
        self.store.pending(Collection::Projects).await
    }

    /// Claims the delivery of notification `id` to a channel target (see
    /// [`notify::DeliveryRecord`]): a claim holds for [`DELIVERY_LEASE_MS`], so one whose instance
    /// died is taken over by a redelivery.
    pub async fn claim_delivery(
        &self,
        target: &str,
        id: &str,
    ) -> Result<notify::DeliveryClaim, StateError> {
        let key = format!("{target}:{id}");
        let now = crate::clock::epoch_ms(std::time::SystemTime::now());
        for _ in 0..COMMIT_ATTEMPTS {
            self.ops.reads.fetch_add(1, Ordering::Relaxed);
            let stored = self.store.get(Collection::Deliveries, &key).await?;
            let expected = match &stored {
                None => None,
                Some(s) => match serde_json::from_str::<DeliveryDoc>(&s.body) {
                    Ok(DeliveryDoc::Delivered) => return Ok(notify::DeliveryClaim::Delivered),
                    Ok(DeliveryDoc::Claimed { until_ms }) if until_ms > now => {
                        return Ok(notify::DeliveryClaim::Busy);
                    }
                    _ => Some(s.version.clone()),
                },
            };
            let body = serde_json::to_string(&DeliveryDoc::Claimed {
                until_ms: now + DELIVERY_LEASE_MS,
            })
            .map_err(|e| StateError::Invalid(e.to_string()))?;
            self.ops.writes.fetch_add(1, Ordering::Relaxed);
            match self
                .store
                .put(
                    Collection::Deliveries,
                    &key,
                    &body,
                    WriteFlags::default(),
                    expected.as_ref(),
                )
                .await
            {
                Ok(_) => return Ok(notify::DeliveryClaim::Mine),
                Err(StateError::Conflict) => {
                    self.ops.conflicts.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(notify::DeliveryClaim::Busy)
    }

    /// Settles a delivery claim: delivered for good, or released for a later attempt.
    pub async fn settle_delivery(
        &self,
        target: &str,
        id: &str,
        delivered: bool,
    ) -> Result<(), StateError> {
        let key = format!("{target}:{id}");
        self.ops.reads.fetch_add(1, Ordering::Relaxed);
        let Some(stored) = self.store.get(Collection::Deliveries, &key).await? else {
            return Ok(());
        };
        let doc = if delivered {
            DeliveryDoc::Delivered
        } else {
            DeliveryDoc::Released
        };
        let body = serde_json::to_string(&doc).map_err(|e| StateError::Invalid(e.to_string()))?;
        self.ops.writes.fetch_add(1, Ordering::Relaxed);
        self.store
            .put(
                Collection::Deliveries,
                &key,
                &body,
                WriteFlags::default(),
                Some(&stored.version),
            )
            .await
            .map(|_| ())
    }
}

/// How long a channel delivery claim holds (longer than a send with its retries takes).
pub const DELIVERY_LEASE_MS: i64 = 120_000;

/// A delivery document.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
enum DeliveryDoc {
    /// Being sent, until then.
    Claimed { until_ms: i64 },
    /// Sent.
    Delivered,
    /// Given back after a failed send.
    Released,
}

impl notify::DeliveryRecord for SharedState {
    fn claim<'a>(
        &'a self,
        target: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<notify::DeliveryClaim, String>> {
        Box::pin(async move {
            self.claim_delivery(target, id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn settle<'a>(&'a self, target: &'a str, id: &'a str, delivered: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.settle_delivery(target, id, delivered).await {
                tracing::warn!(notification_id = %id, error = %e, "a delivery cannot be recorded in the state store: its claim lapses and a redelivery may send it again");
            }
        })
    }
}
