//! The pure core: IAM vocabulary, the requirement list, the remediation rules, evaluation of live
//! state, the decide step and the report model. Nothing in here performs I/O; the engine feeds it
//! data read through the ports.

pub mod condition;
pub mod deny;
pub mod evaluate;
pub mod explain;
pub mod iam;
pub mod plan;
pub mod report;
pub mod requirements;
pub mod rules;
pub mod state;

#[cfg(test)]
mod proptests;
