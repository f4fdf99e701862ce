//! The request journal and per-endpoint counters behind `GET /_sim/journal` and `GET /_sim/stats`.
//! Owns nothing else; entries are appended by the server after each Google API request.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Most entries kept; older ones are dropped first.
const CAPACITY: usize = 100_000;

/// One journaled request.
#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    /// RFC 3339 time the request arrived.
    pub time: String,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// API name (`cloudresourcemanager`, ...; `unknown` for unmatched paths).
    pub api: String,
    /// Endpoint key, e.g. `cloudresourcemanager.projects.getIamPolicy`.
    pub endpoint: String,
    /// HTTP status answered.
    pub status: u16,
    /// Caller in member form.
    pub caller: String,
    /// Time spent, in milliseconds (including injected latency).
    pub duration_ms: f64,
}

/// Request counts: total and per endpoint key.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// All Google API requests.
    pub total: u64,
    /// Per endpoint key, e.g. `cloudresourcemanager.projects.getIamPolicy`.
    pub by_endpoint: BTreeMap<String, u64>,
}

/// Journal plus counters.
#[derive(Debug, Default)]
pub struct Journal {
    entries: VecDeque<JournalEntry>,
    stats: Stats,
}

impl Journal {
    /// Records one request.
    pub fn record(&mut self, e: JournalEntry) {
        self.stats.total += 1;
        *self
            .stats
            .by_endpoint
            .entry(e.endpoint.clone())
            .or_default() += 1;
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    /// All kept entries, oldest first.
    pub fn entries(&self) -> Vec<JournalEntry> {
        self.entries.iter().cloned().collect()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Clears the counters.
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    /// Clears entries and counters.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.reset_stats();
    }
}
