//! Connection hygiene for `serve`: slow or idle clients (slowloris) cannot starve `/healthz` or the push
//! endpoints.
//!
//! hyper does the deadlines: its header read timeout (`http1::Builder::header_read_timeout`, on tokio's
//! timer) closes a connection whose request head is not complete [`ConnLimits::header_timeout`] after
//! the connection started waiting for it (accepted, or its last response written), however slowly the
//! bytes trickle; a silent kept-alive connection is closed by the same timer. The body deadline is
//! applied where bodies are read ([`super::read_body`]).
//!
//! Owns: the connection limit (a tokio [`Semaphore`], as in mini-redis's accept loop: a permit per
//! connection, dropped when it ends; the accept loop admits one connection at a time, so connections
//! past the limit wait in the kernel's backlog and cost no descriptor) and load shedding at the limit.
//! A timeout alone does not keep `/healthz` answering: with `A` slow clients reconnecting against a
//! limit of `C`, a probe waits in the backlog behind `A - C` of them, each slot turning over once per
//! header timeout. So a connection admitted when no slot is free closes the connection that has waited
//! longest for a request head (trickling or silent; never one with a request in flight): the newest
//! connection is the last to go, and a prompt client's head is read before its turn comes. When every
//! slot has a request in flight, admission waits for one to end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Descriptors kept free for everything but inbound connections (Google API clients, Pub/Sub, SMTP).
const RESERVED_DESCRIPTORS: usize = 256;
/// Upper bound of the automatic connection limit (an idle connection costs about 25 KB).
const MAX_AUTO_CONNECTIONS: usize = 4096;

/// Limits on connections (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections served at once (default: [`default_max_connections`]).
    pub max_connections: usize,
    /// A request head must be complete this long after the connection started waiting for it.
    pub header_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// The connection limit when none is configured: as many as the process's open-file limit allows after
/// [`RESERVED_DESCRIPTORS`], at most [`MAX_AUTO_CONNECTIONS`], at least 64. The limit means accepting
/// never fails for lack of descriptors (which is what made `/healthz` unreachable before there was one).
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    soft.saturating_sub(RESERVED_DESCRIPTORS)
        .clamp(64, MAX_AUTO_CONNECTIONS)
}

/// Counters, reported by `/healthz`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections closed by the header timeout (a head trickled, or a kept-alive connection silent).
    pub header_timeouts: AtomicU64,
}

/// The open connections: their permits, and those waiting for a request head (which may be evicted).
#[derive(Debug)]
pub struct Connections {
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    /// Connections without a request in flight, with when they started waiting for one.
    waiting: Mutex<HashMap<u64, (Instant, Arc<Notify>)>>,
    /// Woken when a connection ends a request (it may be evicted from then on).
    became_waiting: Notify,
    next_id: AtomicU64,
    /// Counters.
    pub stats: ConnStats,
}

impl Connections {
    /// A registry with these limits.
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            waiting: Mutex::new(HashMap::new()),
            became_waiting: Notify::new(),
            next_id: AtomicU64::new(0),
            stats: ConnStats::default(),
        })
    }

    /// hyper's HTTP/1 settings for these limits (the header read timeout on tokio's timer).
    pub fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        builder
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.limits.max_connections.max(1) - self.permits.available_permits()
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, (Instant, Arc<Notify>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a just-accepted connection: at once when a slot is free, otherwise by evicting the
    /// connection that has waited longest for a request head and taking its slot; when every slot has
    /// a request in flight, once one of them ends.
    pub async fn admit(self: &Arc<Self>) -> Conn {
        let permit = loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                break p;
            }
            let became_waiting = self.became_waiting.notified();
            tokio::pin!(became_waiting);
            became_waiting.as_mut().enable();
            let evicted = self.evict_oldest();
            tokio::select! {
                p = self.permits.clone().acquire_owned() => {
                    break p.expect("the connection semaphore is never closed");
                }
                () = became_waiting, if !evicted => {}
            }
        };
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.waiting().insert(id, (Instant::now(), evict.clone()));
        Conn {
            connections: self.clone(),
            id,
            evict,
            _permit: permit,
        }
    }

    /// Tells the connection waiting longest for a request head to close; false if every connection
    /// has a request in flight.
    fn evict_oldest(&self) -> bool {
        let victim = {
            let mut waiting = self.waiting();
            let oldest = waiting
                .iter()
                .min_by_key(|(id, (since, _))| (*since, **id))
                .map(|(id, _)| *id);
            oldest.and_then(|id| waiting.remove(&id))
        };
        match victim {
            Some((_, evict)) => {
                evict.notify_one();
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Counts how a connection ended (hyper reports its header timeout as an error).
    pub fn ended(&self, result: &Result<(), hyper::Error>) {
        if let Err(e) = result {
            if e.is_timeout() {
                self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(error = %e, "connection closed with an error");
        }
    }
}

/// An admitted connection: holds its permit and leaves the registry on drop.
#[derive(Debug)]
pub struct Conn {
    connections: Arc<Connections>,
    id: u64,
    evict: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Marks a request in flight (the connection cannot be evicted) until the guard drops; `None` if
    /// the connection was evicted just before its request head was complete (it is closing).
    pub fn request(self: &Arc<Self>) -> Option<RequestGuard> {
        let waiting = self.connections.waiting().remove(&self.id);
        waiting.map(|_| RequestGuard(self.clone()))
    }

    /// Resolves when the connection was evicted to make room for a new one.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.connections.waiting().remove(&self.id);
    }
}

/// Ends the "request in flight" phase of a connection on drop: it waits for its next request head.
#[derive(Debug)]
pub struct RequestGuard(Arc<Conn>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.connections
            .waiting()
            .insert(conn.id, (Instant::now(), conn.evict.clone()));
        conn.connections.became_waiting.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize) -> ConnLimits {
        ConnLimits {
            max_connections,
            header_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_automatic_limit_leaves_descriptors_free_and_stays_in_bounds() {
        let n = default_max_connections();
        assert!((64..=MAX_AUTO_CONNECTIONS).contains(&n), "{n}");
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let soft: usize = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(
            n <= soft.saturating_sub(RESERVED_DESCRIPTORS).max(64),
            "{n} vs {soft}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_the_connection_waiting_longest_is_evicted_and_busy_ones_never_are() {
        let c = Connections::new(limits(3));
        let old = Arc::new(c.admit().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let busy = Arc::new(c.admit().await);
        let in_flight = busy.request().expect("not evicted");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fresh = Arc::new(c.admit().await);
        assert_eq!(c.open(), 3);

        // Full: the fourth evicts `old` (waiting longest), not `busy` (older than `fresh`, but busy).
        let fourth = tokio::spawn({
            let c = c.clone();
            async move { c.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(1), old.evicted())
            .await
            .expect("the oldest waiting connection is told to close");
        assert!(
            old.request().is_none(),
            "an evicted connection takes no request"
        );
        drop(old);
        let fourth = fourth.await.unwrap();
        assert_eq!(c.stats.evicted.load(Ordering::Relaxed), 1);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), fresh.evicted())
                .await
                .is_err(),
            "the newer connection stays"
        );

        // The request ended: `busy` waits for a head again, since after `fresh` and `fourth`.
        drop(in_flight);
        let fifth = tokio::spawn({
            let c = c.clone();
            async move { c.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(1), fresh.evicted())
            .await
            .expect("then the next oldest");
        drop(fresh);
        let _fifth = fifth.await.unwrap();
        drop((busy, fourth));
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_slot_has_a_request_in_flight_admission_waits_for_one_to_end() {
        let c = Connections::new(limits(1));
        let only = Arc::new(c.admit().await);
        let in_flight = only.request().expect("not evicted");
        let next = tokio::spawn({
            let c = c.clone();
            async move { c.admit().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!next.is_finished(), "admitted while the only slot was busy");
        assert_eq!(c.stats.evicted.load(Ordering::Relaxed), 0);

        // Its request ends: it is now the one waiting longest, and goes.
        drop(in_flight);
        tokio::time::timeout(Duration::from_secs(1), only.evicted())
            .await
            .expect("evicted once idle");
        drop(only);
        let _next = next.await.unwrap();
        assert_eq!(c.open(), 1);
    }
}
