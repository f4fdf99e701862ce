//! The per-project coalescing scheduler: at most one run of a project at a time, and the hints that
//! arrive while one is under way join the next.
//!
//! Leading edge: a hint for an idle project starts a run at once (after its grace delay, for a
//! removal); hints arriving while a run is under way join the next run, which starts as soon as the
//! current one ends. A non-zero coalescing window makes an idle project's first hint wait that
//! long for others. A removal's grace delay is counted from the first removal of the batch, so a
//! stream of removals cannot postpone the run forever. What a run does is the caller's ([`Run`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::RunResult;
use super::apply::WriteBudget;
use crate::domain::report::{Failure, ProjectReport};
use crate::ports::ProjectInfo;

/// One run of a project, within a sweep's write budget when it shares one.
pub type Run = Arc<
    dyn Fn(ProjectInfo, Option<Arc<WriteBudget>>) -> BoxFuture<'static, RunResult> + Send + Sync,
>;

struct Batch {
    info: ProjectInfo,
    not_before: Instant,
    /// When the first removal hint joined: grace delays never push the run past this plus the grace.
    first_removal: Option<Instant>,
    /// The write budget of the sweep this batch serves, if any (else the run has its own).
    budget: Option<Arc<WriteBudget>>,
    done: watch::Sender<Option<RunResult>>,
}

#[derive(Default)]
struct Slot {
    next: Option<Arc<std::sync::Mutex<Batch>>>,
    running: bool,
}

/// The runs of every project, one at a time per project.
pub struct Coalescer {
    slots: Mutex<HashMap<String, Slot>>,
    /// How long an idle project's first hint waits for others.
    window: Duration,
}

impl Coalescer {
    /// A scheduler whose idle projects wait `window` for more hints.
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::default(),
            window,
        })
    }

    /// Joins (or starts) the next run of the project and waits for its report; `delay` is a
    /// removal's grace (zero otherwise), `budget` a sweep's shared write budget.
    pub async fn run(
        self: &Arc<Self>,
        info: ProjectInfo,
        delay: Duration,
        budget: Option<Arc<WriteBudget>>,
        run: Run,
    ) -> RunResult {
        let key = info.project_id.to_string();
        let now = Instant::now();
        let removal = !delay.is_zero();
        let mut rx = {
            let mut slots = self.slots.lock().await;
            let slot = slots.entry(key.clone()).or_default();
            let batch = match &slot.next {
                Some(b) => {
                    let mut guard = b.lock().unwrap_or_else(|e| e.into_inner());
                    if removal {
                        let first = *guard.first_removal.get_or_insert(now);
                        guard.not_before = guard.not_before.max(first + delay);
                    }
                    if guard.budget.is_none() {
                        guard.budget = budget;
                    }
                    drop(guard);
                    b.clone()
                }
                None => {
                    let (tx, _) = watch::channel(None);
                    let window = if slot.running {
                        Duration::ZERO
                    } else {
                        self.window
                    };
                    let b = Arc::new(std::sync::Mutex::new(Batch {
                        info,
                        not_before: now + window.max(delay),
                        first_removal: removal.then_some(now),
                        budget,
                        done: tx,
                    }));
                    slot.next = Some(b.clone());
                    b
                }
            };
            let rx = batch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .done
                .subscribe();
            if !slot.running {
                slot.running = true;
                let coalescer = self.clone();
                tokio::spawn(async move { coalescer.drive(key, run).await });
            }
            rx
        };
        loop {
            if let Some(result) = rx.borrow_and_update().clone() {
                return result;
            }
            if rx.changed().await.is_err() {
                // The driver vanished (panicked): report as a retryable failure.
                return Arc::new(ProjectReport::failed(
                    String::new(),
                    Failure::Transient("internal: the project run was abandoned".to_owned()),
                ));
            }
        }
    }

    async fn drive(self: Arc<Self>, key: String, run: Run) {
        loop {
            let batch = {
                let mut slots = self.slots.lock().await;
                let Some(slot) = slots.get_mut(&key) else {
                    return;
                };
                match &slot.next {
                    Some(b) => b.clone(),
                    None => {
                        slots.remove(&key);
                        return;
                    }
                }
            };
            // Wait until the batch's start time (it may be pushed back by grace delays meanwhile).
            loop {
                let nb = batch.lock().unwrap_or_else(|e| e.into_inner()).not_before;
                if Instant::now() >= nb {
                    break;
                }
                tokio::time::sleep_until(nb).await;
            }
            {
                let mut slots = self.slots.lock().await;
                if let Some(slot) = slots.get_mut(&key) {
                    slot.next = None;
                }
            }
            let (info, budget) = {
                let batch = batch.lock().unwrap_or_else(|e| e.into_inner());
                (batch.info.clone(), batch.budget.clone())
            };
            let report = run(info, budget).await;
            let _ = batch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .done
                .send(Some(report));
        }
    }
}
