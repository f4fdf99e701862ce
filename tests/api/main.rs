//! The integration-test binary: every scenario against real parts (the simulator over HTTP, the real
//! gcloud CLI, the official Pub/Sub and Firestore emulators), in one binary to keep link times down.

mod access;
mod architecture;
mod asset_sweep;
mod check_plan;
mod deployment;
mod explain;
mod faults;
mod frontend;
mod hygiene;
mod job;
mod memory;
mod notify;
mod qa_worlds;
mod scan;
mod serve;
mod sim_gcloud;
mod sim_semantics;
mod state;
mod support;
