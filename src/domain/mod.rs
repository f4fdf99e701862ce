//! The pure core: IAM vocabulary, the requirement list, evaluation of live state and the decide step.
//! Nothing in here performs I/O; adapters in `gcp` and `sim` feed it data.

pub mod evaluate;
pub mod iam;
pub mod plan;
pub mod requirements;
pub mod state;

#[cfg(test)]
mod proptests;
