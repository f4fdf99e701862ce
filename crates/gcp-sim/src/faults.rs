//! Fault injection: latency (fixed + jitter), error rates per API, denied permissions, the simulated
//! concurrent writer, and Google's IAM v2 read quota when asked for. Owns the seeded random source so
//! a fault run can be replayed with the same seed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

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
    /// Enforce Google's IAM v2 read quota (deny policies: list and get): at most this many requests
    /// per caller in any 60 s, the rest answered 429 `RESOURCE_EXHAUSTED` as Google answers a spent
    /// quota (Google's default is 5 per consumer project per minute). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_v2_reads_per_minute: Option<u32>,
}

/// The window of the IAM v2 read quota.
const IAM_V2_WINDOW: Duration = Duration::from_secs(60);

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
    /// Admission times of IAM v2 reads in the last minute, per caller (the consumer of the quota).
    iam_v2_reads: HashMap<String, VecDeque<Instant>>,
    rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
            writer: None,
            writer_added: Vec::new(),
            iam_v2_reads: HashMap::new(),
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
        self.iam_v2_reads.clear();
    }

    /// Counts one IAM v2 read by `caller` against the quota, if one is enforced. `Err(limit)` when the
    /// caller's last 60 s already hold `limit` reads (the refused request is not counted).
    pub fn take_iam_v2_read(&mut self, caller: &str) -> Result<(), u32> {
        let Some(limit) = self.faults.iam_v2_reads_per_minute else {
            return Ok(());
        };
        let now = Instant::now();
        let reads = self.iam_v2_reads.entry(caller.to_owned()).or_default();
        while reads
            .front()
            .is_some_and(|t| now.duration_since(*t) >= IAM_V2_WINDOW)
        {
            reads.pop_front();
        }
        if reads.len() >= limit as usize {
            return Err(limit);
        }
        reads.push_back(now);
        Ok(())
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

#[cfg(test)]
mod quota_tests {
    use super::*;

    #[test]
    fn the_iam_v2_read_quota_is_off_unless_asked_for() {
        let mut f = FaultState::default();
        for _ in 0..100 {
            assert_eq!(f.take_iam_v2_read("user:a@example.com"), Ok(()));
        }
    }

    #[test]
    fn the_iam_v2_read_quota_admits_its_limit_per_caller_and_refuses_the_rest() {
        let mut f = FaultState::default();
        f.set(Faults {
            iam_v2_reads_per_minute: Some(5),
            ..Faults::default()
        });
        for _ in 0..5 {
            assert_eq!(f.take_iam_v2_read("user:a@example.com"), Ok(()));
        }
        assert_eq!(f.take_iam_v2_read("user:a@example.com"), Err(5));
        assert_eq!(f.take_iam_v2_read("user:a@example.com"), Err(5));
        // Another consumer has its own quota; new faults start the count over.
        assert_eq!(f.take_iam_v2_read("user:b@example.com"), Ok(()));
        f.set(Faults {
            iam_v2_reads_per_minute: Some(5),
            ..Faults::default()
        });
        assert_eq!(f.take_iam_v2_read("user:a@example.com"), Ok(()));
    }

    #[test]
    fn a_spent_iam_v2_quota_is_answered_in_googles_shape() {
        let e = crate::error::ApiError::iam_v2_read_quota(5, "caller:a@example.com");
        let body = e.to_json();
        assert_eq!(body["error"]["code"], 429);
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        let info = &body["error"]["details"][0];
        assert_eq!(info["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
        assert_eq!(info["reason"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(info["metadata"]["service"], "iam.googleapis.com");
        assert_eq!(info["metadata"]["quota_limit_value"], "5");
    }
}
