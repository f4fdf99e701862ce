//! The engine's error policy: how a port error becomes a [`Failure`] in a report, and how a report
//! becomes what Pub/Sub is told (the one place that decides ack or redeliver).

use crate::domain::report::{Failure, Outcome, ProjectReport};
use crate::intake::Verdict;
use crate::ports::ApiError;

/// A port error as the report records it: transient faults and conflicts may pass, the rest will not.
pub fn failure(error: &ApiError) -> Failure {
    if error.is_transient() || error.is_conflict() {
        Failure::Transient(error.to_string())
    } else {
        Failure::Permanent(error.to_string())
    }
}

/// What Pub/Sub is told about a hint whose run produced `report`: redeliver when the project could
/// not be read for a transient reason or a restore failed transiently; acknowledge otherwise (the
/// outcome is reported either way).
pub fn error_policy(report: &ProjectReport) -> Verdict {
    if let Some(e) = &report.error {
        return if e.is_transient() {
            Verdict::Retry(e.to_string())
        } else {
            Verdict::Ack
        };
    }
    match report.actions.iter().find_map(|a| {
        a.error
            .as_ref()
            .filter(|e| a.outcome == Outcome::Failed && e.is_transient())
    }) {
        Some(e) => Verdict::Retry(e.to_string()),
        None => Verdict::Ack,
    }
}

/// What Pub/Sub is told when a hint's scope cannot be resolved into projects.
pub fn scope_policy(error: &ApiError) -> Verdict {
    if error.is_transient() {
        Verdict::Retry(error.to_string())
    } else {
        Verdict::Ack
    }
}
