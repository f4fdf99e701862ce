//! The `job` command (Cloud Run job): the one Pub/Sub pull loop (official `google-cloud-pubsub`
//! subscriber), which hands each message to a handler exactly as `serve` would (the event engine, or
//! notification delivery) until idle or a budget is spent; and/or a sweep of a scope (including
//! `NODE_SA_MISSING_PERMISSIONS` recommendations). Exits non-zero when anything failed.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::domain::iam::ResourceRef;
use crate::domain::report::{self, Outcome, ProjectReport};
use crate::engine::Engine;
use crate::intake::{self, Verdict};
use crate::ports::ApiError;

/// Totals printed at the end of a job.
#[derive(Debug, Default, Serialize)]
pub struct JobSummary {
    /// Messages pulled (distinct message ids).
    pub messages: u64,
    /// Deliveries pulled: every message once, and again each time it was redelivered.
    pub deliveries: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages nacked for redelivery.
    pub nacked: u64,
    /// Projects swept.
    pub swept_projects: usize,
    /// Findings by outcome in the sweep.
    pub sweep_outcomes: std::collections::BTreeMap<String, usize>,
    /// Recommendations marked succeeded / failed.
    pub recommendations_marked: usize,
    /// Failures (nacks, failed restores, project errors).
    pub failures: u64,
    /// How the sweep discovered and checked projects (`cloud-asset-inventory` or `per-project`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<crate::engine::snapshot::Discovery>,
    /// Notifications of the sweep still unpublished (id: why); they stay in the outbox for the
    /// next run, and the job exits 1.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unpublished: std::collections::BTreeMap<String, String>,
    /// Notifications earlier runs left in the outbox, published at start-up.
    #[serde(skip_serializing_if = "is_zero")]
    pub drained: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A job could not run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The subscriber could not be created or failed for good.
    #[error("subscriber for {subscription}: {message}")]
    Subscriber {
        /// Subscription.
        subscription: String,
        /// Why.
        message: String,
    },
    /// Resolving the sweep scope failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Handles one pulled message and says what Pub/Sub should be told.
pub type Handler = Arc<dyn Fn(intake::Message) -> BoxFuture<'static, Verdict> + Send + Sync>;

/// How the pull loop runs.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Messages held (leased) at once; each is handled concurrently with the others.
    pub max_outstanding: i64,
    /// Stop after this many messages.
    pub max_messages: u64,
    /// Stop when this long passes with nothing received (in-flight messages still finish).
    pub idle: Duration,
}

/// How long the `attempt`th delivery of a message that failed is held before its nack.
pub fn nack_backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(5);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(30))
}

/// Pulls messages and hands each to `handler` concurrently, acking or nacking per its verdict; stops
/// after `max_messages`, or when `idle` passes with nothing received and nothing in flight. The one
/// pull loop: events and notifications both go through it.
pub async fn pull(
    subscription: &str,
    emulator_host: Option<&str>,
    options: &PullOptions,
    handler: Handler,
    summary: &mut JobSummary,
) -> Result<(), JobError> {
    let subscriber_error = |message: String| JobError::Subscriber {
        subscription: subscription.to_owned(),
        message,
    };
    let subscriber = crate::pubsub::subscriber(emulator_host)
        .await
        .map_err(subscriber_error)?;
    let mut stream = subscriber
        .subscribe(subscription.to_owned())
        .set_max_outstanding_messages(options.max_outstanding)
        .build();
    let token = stream.shutdown_token();
    let mut tasks = tokio::task::JoinSet::new();
    let mut failure = None;
    let mut quiet = false;
    // Deliveries per message id: a redelivery is counted apart, and waits longer before its nack.
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    // A message that keeps failing (no dead-letter policy, as on the emulator) cannot hold the job
    // forever: reading stops after this many deliveries in all.
    let max_deliveries = options.max_messages.saturating_mul(4).max(16);
    loop {
        let reading = summary.messages < options.max_messages
            && summary.deliveries < max_deliveries
            && failure.is_none()
            && !quiet;
        if !reading && tasks.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Ok(true) => summary.acked += 1,
                    Ok(false) | Err(_) => {
                        summary.nacked += 1;
                        summary.failures += 1;
                    }
                }
            }
            next = tokio::time::timeout(options.idle, stream.next()), if reading => {
                match next {
                    Err(_) | Ok(None) => {
                        if tasks.is_empty() { break; }
                        // Nothing new: stop reading and let the in-flight messages finish.
                        quiet = true;
                    }
                    Ok(Some(Err(e))) => failure = Some(e.to_string()),
                    Ok(Some(Ok((message, ack)))) => {
                        summary.deliveries += 1;
                        let attempt = {
                            let n = seen.entry(message.message_id.clone()).or_insert(0);
                            *n += 1;
                            *n
                        };
                        if attempt == 1 {
                            summary.messages += 1;
                        }
                        let msg = intake::Message {
                            message_id: message.message_id.clone(),
                            publish_time: None,
                            attributes: message.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                            data: message.data.to_vec(),
                            subscription: Some(subscription.to_owned()),
                            delivery_attempt: None,
                        };
                        let handle = handler.clone();
                        tasks.spawn(async move {
                            let id = msg.message_id.clone();
                            match handle(msg).await {
                                Verdict::Ack => { ack.ack(); true }
                                Verdict::Retry(reason) => {
                                    // Held a while before the nack (the lease keeps it from
                                    // anyone else): 1 s, 2 s, 4 s ... at most 30 s by delivery.
                                    let wait = nack_backoff(attempt);
                                    tracing::warn!(message_id = %id, attempt, wait_ms = wait.as_millis() as u64, %reason, "nack after a backoff");
                                    tokio::time::sleep(wait).await;
                                    ack.nack();
                                    false
                                }
                            }
                        });
                    }
                }
            }
        }
    }
    token.shutdown().await;
    match failure {
        Some(message) => Err(subscriber_error(message)),
        None => Ok(()),
    }
}

/// Sweeps every project in scope through the engine (exactly as `serve` handles a sweep message:
/// one write budget, every outcome logged and published) and settles the `NODE_SA_MISSING_PERMISSIONS`
/// recommendations of the locations where the project has clusters.
pub async fn sweep(
    engine: &Arc<Engine>,
    projects: &[String],
    roots: &[ResourceRef],
    summary: &mut JobSummary,
) -> Result<Vec<Arc<ProjectReport>>, JobError> {
    let (reports, marked, discovery) = engine.sweep(projects, roots).await?;
    tracing::info!(discovery = %discovery.describe(), "sweep discovery");
    summary.discovery = Some(discovery);
    summary.swept_projects = reports.len();
    let plain: Vec<ProjectReport> = reports.iter().map(|r| (**r).clone()).collect();
    summary.sweep_outcomes = report::summarize(&plain).by_outcome;
    summary.recommendations_marked = marked;
    for r in &reports {
        if r.error.is_some() || r.actions.iter().any(|a| a.outcome == Outcome::Failed) {
            summary.failures += 1;
        }
    }
    summary.unpublished = engine.unpublished().into_iter().collect();
    if !summary.unpublished.is_empty() {
        summary.failures += 1;
        for (id, why) in &summary.unpublished {
            tracing::error!(notification_id = %id, reason = %why, "notification not published: it stays in the outbox for the next run");
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod backoff_tests {
    use super::nack_backoff;
    use std::time::Duration;

    #[test]
    fn a_failing_message_waits_longer_before_each_nack_up_to_thirty_seconds() {
        let waits: Vec<u64> = (1..=8).map(|a| nack_backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(nack_backoff(0), Duration::from_secs(1));
    }
}
