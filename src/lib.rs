//! gke-iam-remediator: keeps the IAM bindings a GKE cluster needs in place.
//!
//! # Layout
//!
//! Imports run one way, top to bottom; nothing lower imports anything higher:
//!
//! ```text
//! main -> app -> { server, scan, explain, job, demo } -> engine -> { ports, intake, policy, notify } -> domain
//!                                     gcp, pubsub: adapters implementing ports
//! ```
//!
//! - [`app`]: wiring: settings read once -> adapters -> engine -> mode (`serve`, `job`).
//! - [`server`]: the `serve` HTTP service (push hygiene, OIDC, shutdown).
//! - [`scan`], [`explain`], [`job`], [`demo`]: the commands (`job` owns the one Pub/Sub pull loop);
//!   no command imports another.
//! - [`connect`]: the connection settings commands share (Google endpoints, credentials, quotas, the
//!   state store) and the errors of setting a command up.
//! - [`render`]: what commands print: the `scan` table, the JSON document, fix lines, colour,
//!   progress, the exit code.
//! - [`plan_guard`]: `check-plan`: what a Terraform plan would break, before it is applied.
//! - [`engine`]: coalescing, de-duplication, grace, verify -> decide -> apply, the error policy.
//! - [`ports`]: one small async trait per Google API the engine uses, and the notification sink.
//! - [`intake`]: Pub/Sub messages -> hints (never trusted, only re-verified) and the verdict.
//! - [`policy`]: the remediation policy file (typed, positioned errors).
//! - [`notify`]: Notification v1, routing, Slack / email / webhook delivery.
//! - [`domain`]: the pure core: IAM newtypes, requirements, rules, evaluation, plan, report model.
//! - [`gcp`], [`pubsub`]: adapters implementing the ports (REST with auth, limits and retries; Pub/Sub).
//! - [`telemetry`], [`clock`]: Cloud Logging JSON with trace correlation; RFC 3339 timestamps.
//! - [`bounded`]: the one bounded, insertion-ordered map behind every "seen before" memory.
//!
//! The simulator is its own crate (`crates/gcp-sim`); `main` and `demo` use it, it never uses this one.

pub mod app;
pub mod bounded;
pub mod clock;
pub mod connect;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod domain;
pub mod engine;
pub mod explain;
pub mod gcp;
pub mod http;
pub mod intake;
pub mod job;
pub mod notify;
pub mod plan_guard;
pub mod policy;
pub mod ports;
pub mod pubsub;
pub mod render;
pub mod scan;
pub mod server;
pub mod state;
pub mod telemetry;
