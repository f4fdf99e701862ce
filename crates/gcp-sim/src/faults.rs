//! Fault injection: latency (fixed + jitter), error rates per API, denied permissions, and the simulated
//! concurrent writer. Owns the seeded random source so a fault run can be replayed with the same seed.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Added latency for every Google API request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Fixed delay in milliseconds.
    #[serde(default)]
    pub fixed_ms: u64,
    /// Uniform random extra delay in `[0, jitter_ms]`.
    #[serde(default)]
    pub jitter_ms: u64,
}

/// Faults, as sent to `PUT /_sim/faults`:
/// `{"latency":{"fixed_ms":20,"jitter_ms":5},"errors":{"cloudresourcemanager":{"429":0.1},"*":{"500":0.05}},
/// "deny":["resourcemanager.projects.setIamPolicy"],"seed":42}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added latency.
    #[serde(default)]
    pub latency: Latency,
    /// API name (`cloudresourcemanager`, `iam`, `container`, `recommender`, `serviceusage`,
    /// `policytroubleshooter`, `logging`, `cloudasset`, `orgpolicy`, `cloudidentity` (IAM v2 deny
    /// policies count as `iam`), or `*` for all) -> HTTP code (as a string) -> probability in `[0, 1]`.
    #[serde(default)]
    pub errors: BTreeMap<String, BTreeMap<String, f64>>,
    /// Permissions whose calls answer 403 PERMISSION_DENIED.
    #[serde(default)]
    pub deny: BTreeSet<String>,
    /// Seed of the random source (random when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The concurrent-writer fault, as sent to `PUT /_sim/concurrent-writer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrentWriter {
    /// Project id whose policy reads trigger the writer.
    pub project: String,
    /// Probability of a write after each getIamPolicy.
    #[serde(default = "one")]
    pub probability: f64,
    /// Maximum number of writes.
    #[serde(default = "ten")]
    pub max_writes: u32,
    /// Role the writer adds members to.
    #[serde(default = "viewer")]
    pub role: String,
}

fn one() -> f64 {
    1.0
}
fn ten() -> u32 {
    10
}
fn viewer() -> String {
    "roles/viewer".into()
}

/// Live fault state.
#[derive(Debug)]
pub struct FaultState {
    /// Current faults.
    pub faults: Faults,
    /// Current concurrent writer, if any.
    pub writer: Option<ConcurrentWriter>,
    /// Members the writer added so far.
    pub writer_added: Vec<String>,
    rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
            writer: None,
            writer_added: Vec::new(),
            rng: StdRng::from_os_rng(),
        }
    }
}

impl FaultState {
    /// Replaces the faults (reseeding when a seed is given).
    pub fn set(&mut self, faults: Faults) {
        self.rng = match faults.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        self.faults = faults;
    }

    /// The delay to add to one request, in milliseconds.
    pub fn delay_ms(&mut self) -> u64 {
        let l = &self.faults.latency;
        let jitter = if l.jitter_ms > 0 {
            self.rng.random_range(0..=l.jitter_ms)
        } else {
            0
        };
        l.fixed_ms.saturating_add(jitter)
    }

    /// An HTTP code to inject for a request to `api`, if the dice say so. API-specific rates are tried
    /// before `*`; within a table codes are tried in order, each with its own probability.
    pub fn roll_error(&mut self, api: &str) -> Option<u16> {
        let mut tables = Vec::new();
        if let Some(t) = self.faults.errors.get(api) {
            tables.push(t.clone());
        }
        if let Some(t) = self.faults.errors.get("*") {
            tables.push(t.clone());
        }
        let x: f64 = if tables.is_empty() {
            return None;
        } else {
            self.rng.random()
        };
        let mut acc = 0.0;
        for t in tables {
            for (code, p) in t {
                acc += p.clamp(0.0, 1.0);
                if x < acc {
                    return code.parse().ok();
                }
            }
        }
        None
    }

    /// True with the given probability.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }
}
