//! Adapters for the Google REST APIs: one shared client (auth, rate limits, retries, counters) and
//! typed methods per API, implementing the [`crate::ports`] traits. Everything here is I/O;
//! decisions live in `domain` and `engine`.
//!
//! We call the REST APIs with `reqwest` and typed serde models rather than the generated
//! `google-cloud-*` clients: the handful of methods we need stay small and explicit, one HTTP stack
//! serves every API, and a single `--api-endpoint` can point all of them at the simulator.

mod access;
pub mod apis;
pub mod client;
mod cloudasset;
pub mod firestore;
mod pages;
mod ports;

pub use apis::Gcp;
pub use client::{CallCounts, Client, ClientConfig, Credentials};
pub use firestore::FirestoreStore;
