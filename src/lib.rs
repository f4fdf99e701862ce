//! gke-iam-remediator: keeps the IAM bindings a GKE cluster needs in place.
//!
//! Module map:
//! - [`domain`]: pure IAM model, requirement list, evaluation and planning (no I/O).
//! - [`config`]: the remediation policy file and its validation.
//! - [`gcp`]: adapters for the Google REST APIs behind small traits; auth, retries, rate limits.
//! - [`remediate`]: verify -> decide -> apply -> outcome, per project.
//! - [`scan`]: the `scan` command (table / JSON output, exit codes).
//! - [`demo`]: the self-contained demo on an embedded broken world.
//! - [`intake`]: Pub/Sub messages -> hints (never trusted, only re-verified).
//! - [`server`]: the `serve` HTTP service.
//! - [`service`]: the event engine shared by `serve` and `job` (coalescing, de-duplication).
//! - [`job`]: pull and sweep for the Cloud Run job.
//! - [`notify`]: Notification v1 and its publisher.
//! - [`telemetry`]: Cloud Logging JSON with trace correlation.
//! - [`clock`]: RFC 3339 timestamps.
//! - [`pubsub`]: the official Pub/Sub clients, emulator-aware.
//! - [`app`]: configuration and wiring of `serve` and `job`.

pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod gcp;
pub mod intake;
pub mod job;
pub mod notify;
pub mod pubsub;
pub mod remediate;
pub mod scan;
pub mod server;
pub mod service;
pub mod telemetry;
