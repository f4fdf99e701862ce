//! Adapters for the Google REST APIs: one shared client (auth, rate limits, retries, counters) and
//! typed methods per API. Everything here is I/O; decisions live in `domain`.
//!
//! We call the REST APIs with `reqwest` and typed serde models rather than the generated
//! `google-cloud-*` clients: the handful of methods we need stay small and explicit, one HTTP stack
//! serves every API, and a single `--api-endpoint` can point all of them at the simulator.

pub mod apis;
pub mod client;
pub mod error;

pub use apis::{ClusterList, Gcp, ProjectInfo, Recommendation, RecommendationMark, ServiceAccount};
pub use client::{CallCounts, Client, ClientConfig, Credentials, RetryPolicy};
pub use error::{Api, ApiError};
