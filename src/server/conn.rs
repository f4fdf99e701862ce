//! Connection hygiene for `serve`: a cap on open connections and deadlines on the parts of a request a
//! client controls, so slow or idle clients (slowloris) cannot starve `/healthz` or the push endpoints.
//!
//! Owns: the connection limit (a semaphore, as in mini-redis's accept loop), the idle timeout (no byte
//! received while no request is in flight), the header timeout (a request head must be complete this long
//! after its first byte arrived, however slowly the bytes trickle) and load shedding at the limit: a new
//! connection evicts one that is trickling a request head (else the one that has sent nothing for
//! longest), so a flood of slow clients cycles through while every prompt client (a probe, a Pub/Sub
//! push) gets a slot. Connections
//! with a request in flight are never evicted. The body deadline is applied where bodies are read (the
//! handlers, [`super::read_body`]).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How often a connection's deadline is re-read (a byte arriving moves it from the idle to the header
/// deadline).
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How long a new connection waits for the slot of the connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Limits on connections (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections served at once (default: [`default_max_connections`]).
    pub max_connections: usize,
    /// A request head must be complete this long after its first byte.
    pub header_timeout: Duration,
    /// A connection without a request in flight is closed after this long without a byte.
    pub idle_timeout: Duration,
}

/// Descriptors kept free for everything but inbound connections (Google API clients, Pub/Sub, SMTP).
const RESERVED_DESCRIPTORS: usize = 256;
/// Upper bound of the automatic connection limit (an idle connection costs about 25 KB).
const MAX_AUTO_CONNECTIONS: usize = 4096;

/// The connection limit when none is configured: as many as the process's open-file limit allows after
/// [`RESERVED_DESCRIPTORS`], at most [`MAX_AUTO_CONNECTIONS`], at least 64. A limit above the number of
/// slow clients means they never cause evictions; the limit itself means accepting never fails for
/// lack of descriptors (which is what made `/healthz` unreachable before there was one).
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

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters, reported by `/healthz`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections refused because every slot had a request in flight.
    pub refused: AtomicU64,
    /// Connections closed by the header timeout.
    pub header_timeouts: AtomicU64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: AtomicU64,
}

#[derive(Debug)]
struct Phase {
    /// A request is being handled.
    busy: bool,
    /// When the connection started waiting for its next request head (accept, or the last response).
    waiting_since: Instant,
    /// When the first byte of the next request head arrived, if one has.
    first_byte: Option<Instant>,
}

/// The state of one connection, shared by its task, its I/O and the registry.
#[derive(Debug)]
pub struct Slot {
    phase: Mutex<Phase>,
    close: Notify,
}

impl Slot {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase {
                busy: false,
                waiting_since: Instant::now(),
                first_byte: None,
            }),
            close: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn saw_bytes(&self) {
        let mut p = self.phase();
        if !p.busy && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
        }
    }

    /// Marks a request in flight until the guard drops.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.phase().busy = true;
        RequestGuard(self.clone())
    }

    /// When the connection must be closed if nothing changes, and for which reason.
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Expiry)> {
        let p = self.phase();
        if p.busy {
            return None;
        }
        Some(match p.first_byte {
            Some(t) => (t + limits.header_timeout, Expiry::Header),
            None => (p.waiting_since + limits.idle_timeout, Expiry::Idle),
        })
    }
}

/// Ends the "request in flight" phase of a connection on drop.
pub struct RequestGuard(Arc<Slot>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        p.busy = false;
        p.waiting_since = Instant::now();
        p.first_byte = None;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
}

/// Why a connection task ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Evicted to make room.
    Evicted,
    /// No complete request head within the header timeout.
    HeaderTimeout,
    /// No byte within the idle timeout.
    IdleTimeout,
}

/// The open connections: the permits and the slots that may be evicted.
#[derive(Debug)]
pub struct Connections {
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// Counters.
    pub stats: ConnStats,
}

/// A connection admitted by [`Connections::admit`]: holds its permit and removes its slot on drop.
pub struct Admitted {
    connections: Arc<Connections>,
    id: u64,
    /// The connection's state.
    pub slot: Arc<Slot>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Connections {
    /// A registry with these limits.
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stats: ConnStats::default(),
        })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Admits a new connection: at once when a slot is free, otherwise by evicting another (see
    /// [`Self::evict_one`]) and taking its slot. `None` when every slot has a request in
    /// flight (the caller closes the connection).
    pub async fn admit(self: &Arc<Self>) -> Option<Admitted> {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !self.evict_one() {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                match tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new());
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, slot.clone());
        Some(Admitted {
            connections: self.clone(),
            id,
            slot,
            _permit: permit,
        })
    }

    /// Tells one connection without a request in flight to close; false if every connection has one.
    /// First to go are connections that started a request head and have not finished it (a prompt
    /// client's head arrives in one read, so an unfinished head is the mark of a slow client), longest
    /// trickling first; then connections that have sent nothing since they opened or since their last
    /// response, longest waiting first. So a new prompt client whose first bytes are still on their way
    /// keeps its slot however fast slow clients churn, and so does a kept-alive Pub/Sub connection.
    fn evict_one(&self) -> bool {
        let victim = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .iter()
                .filter_map(|(id, slot)| {
                    let p = slot.phase();
                    let key = match p.first_byte {
                        Some(first) => (0, first),
                        None => (1, p.waiting_since),
                    };
                    (!p.busy).then_some((key, *id, slot.clone()))
                })
                .min_by_key(|(key, id, _)| (*key, *id))
                .map(|(_, _, slot)| slot)
        };
        match victim {
            Some(slot) => {
                // Make it unevictable for the next caller: its slot is already promised.
                slot.phase().busy = true;
                slot.close.notify_one();
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Resolves when the connection must close: evicted, or past its header or idle deadline.
    pub async fn closed(&self, slot: &Slot) -> Closed {
        let watchdog = async {
            loop {
                let now = Instant::now();
                match slot.deadline(&self.limits) {
                    Some((at, expiry)) if at <= now => {
                        let counter = match expiry {
                            Expiry::Header => &self.stats.header_timeouts,
                            Expiry::Idle => &self.stats.idle_timeouts,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        return match expiry {
                            Expiry::Header => Closed::HeaderTimeout,
                            Expiry::Idle => Closed::IdleTimeout,
                        };
                    }
                    Some((at, _)) => tokio::time::sleep((at - now).min(WATCH_INTERVAL)).await,
                    None => tokio::time::sleep(WATCH_INTERVAL).await,
                }
            }
        };
        tokio::select! {
            () = slot.close.notified() => Closed::Evicted,
            closed = watchdog => closed,
        }
    }
}

/// A socket that tells its slot when bytes arrive (the first byte of a request head starts the header
/// deadline).
pub struct Watched<S> {
    inner: S,
    slot: Arc<Slot>,
}

impl<S> Watched<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, slot: Arc<Slot>) -> Self {
        Self { inner, slot }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.slot.saw_bytes();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn at_the_limit_the_longest_waiting_connection_is_evicted_and_busy_ones_never_are() {
        let c = Connections::new(ConnLimits {
            max_connections: 2,
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        });
        let old = c.admit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let busy = c.admit().await.unwrap();
        let _in_flight = busy.slot.request();
        // Full: the third evicts `old` (waiting), not `busy`.
        let watch_old = {
            let c = c.clone();
            let slot = old.slot.clone();
            tokio::spawn(async move { c.closed(&slot).await })
        };
        let third = {
            let c = c.clone();
            tokio::spawn(async move { c.admit().await })
        };
        assert_eq!(watch_old.await.unwrap(), Closed::Evicted);
        drop(old);
        let third = third.await.unwrap();
        assert!(third.is_some());
        assert_eq!(c.stats.evicted.load(Ordering::Relaxed), 1);
        // Now every slot is busy or promised: the next connection is refused.
        assert!(c.admit().await.is_none());
        assert_eq!(c.stats.refused.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_trickling_a_head_is_evicted_before_an_older_or_newer_one_that_sent_nothing()
     {
        let c = Connections::new(ConnLimits {
            max_connections: 3,
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        });
        let kept_alive = c.admit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let slow = c.admit().await.unwrap();
        slow.slot.saw_bytes();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fresh = c.admit().await.unwrap();

        assert!(c.evict_one());
        let closed = |slot: Arc<Slot>| {
            let c = c.clone();
            async move {
                tokio::time::timeout(Duration::from_millis(500), c.closed(&slot))
                    .await
                    .ok()
            }
        };
        assert_eq!(closed(slow.slot.clone()).await, Some(Closed::Evicted));
        // Then the one that has waited longest without a byte, never the newest.
        assert!(c.evict_one());
        assert_eq!(closed(kept_alive.slot.clone()).await, Some(Closed::Evicted));
        assert_eq!(closed(fresh.slot.clone()).await, None);
    }

    #[tokio::test]
    async fn a_byte_moves_a_connection_from_the_idle_deadline_to_the_header_deadline() {
        let c = Connections::new(ConnLimits {
            max_connections: 4,
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(30),
        });
        let a = c.admit().await.unwrap();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.slot.saw_bytes();
        assert_eq!(c.closed(&a.slot).await, Closed::HeaderTimeout);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(340) && took < Duration::from_secs(2),
            "{took:?}"
        );

        let c2 = Connections::new(ConnLimits {
            max_connections: 4,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(200),
        });
        let b = c2.admit().await.unwrap();
        assert_eq!(c2.closed(&b.slot).await, Closed::IdleTimeout);
        // A request in flight is never timed out by the connection watchdog.
        let busy = c2.admit().await.unwrap();
        let _in_flight = busy.slot.request();
        assert!(
            tokio::time::timeout(Duration::from_millis(600), c2.closed(&busy.slot))
                .await
                .is_err()
        );
    }
}
