//! The `job` command (Cloud Run job): pull messages from a subscription with the official
//! `google-cloud-pubsub` subscriber and handle each exactly like `serve`, until idle or a budget is
//! spent; and/or sweep a scope (including `NODE_SA_MISSING_PERMISSIONS` recommendations). Exits
//! non-zero when anything failed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Mode;
use crate::domain::iam::ResourceRef;
use crate::domain::requirements::RequirementId;
use crate::gcp::{Gcp, RecommendationMark};
use crate::intake;
use crate::remediate::{self, Options, Outcome, ProjectReport, Remediator};
use crate::service::{Engine, Verdict};

/// Totals printed at the end of a job.
#[derive(Debug, Default, Serialize)]
pub struct JobSummary {
    /// Messages pulled.
    pub messages: u64,
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
    Api(#[from] crate::gcp::ApiError),
}

/// Pulls and handles messages until `idle` passes without one or `max_messages` were handled.
pub async fn pull(
    engine: &Arc<Engine>,
    subscription: &str,
    emulator_host: Option<&str>,
    max_messages: u64,
    idle: Duration,
    summary: &mut JobSummary,
) -> Result<(), JobError> {
    let subscriber = crate::pubsub::subscriber(emulator_host)
        .await
        .map_err(|message| JobError::Subscriber {
            subscription: subscription.to_owned(),
            message,
        })?;
    let mut stream = subscriber
        .subscribe(subscription.to_owned())
        .set_max_outstanding_messages(64)
        .build();
    let token = stream.shutdown_token();
    while summary.messages < max_messages {
        let next = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => break, // idle
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                token.shutdown().await;
                return Err(JobError::Subscriber {
                    subscription: subscription.to_owned(),
                    message: e.to_string(),
                });
            }
            Ok(Some(Ok(pair))) => pair,
        };
        let (message, handler) = next;
        summary.messages += 1;
        let msg = intake::Message {
            message_id: message.message_id.clone(),
            publish_time: None,
            attributes: message
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            data: message.data.to_vec(),
            subscription: Some(subscription.to_owned()),
            delivery_attempt: None,
        };
        match engine.handle(&msg, None).await {
            Verdict::Ack => {
                handler.ack();
                summary.acked += 1;
            }
            Verdict::Retry(reason) => {
                tracing::warn!(message_id = %message.message_id, %reason, "nack");
                handler.nack();
                summary.nacked += 1;
                summary.failures += 1;
            }
        }
    }
    token.shutdown().await;
    Ok(())
}

/// Sweeps every project in scope: verify, restore under the policy, and settle the
/// `NODE_SA_MISSING_PERMISSIONS` recommendations of the locations where the project has clusters.
pub async fn sweep(
    gcp: &Gcp,
    options: Options,
    projects: &[String],
    roots: &[ResourceRef],
    summary: &mut JobSummary,
) -> Result<Vec<ProjectReport>, JobError> {
    let enforce = options.policy.mode == Mode::Enforce;
    let remediator = Remediator::new(gcp.clone(), options);
    let infos = remediator.resolve(projects, roots).await?;
    let reports = remediator.run(&infos).await;
    summary.swept_projects = reports.len();
    let s = remediate::summarize(&reports);
    summary.sweep_outcomes = s.by_outcome.clone();
    for r in &reports {
        if r.error.is_some() || r.actions.iter().any(|a| a.outcome == Outcome::Failed) {
            summary.failures += 1;
        }
        if enforce {
            summary.recommendations_marked += settle_recommendations(gcp, r).await;
        }
    }
    Ok(reports)
}

/// What a recommendation about `cluster` (`location/name`; `None` = any) should become after a run:
/// succeeded when no node service account of that cluster still misses a permission, failed when a
/// restore failed, and nothing (left active for a person) otherwise.
pub fn recommendation_verdict(
    report: &ProjectReport,
    cluster: Option<&str>,
) -> Option<RecommendationMark> {
    let node: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.finding.requirement == RequirementId::NodeSaPermissions)
        .filter(|f| cluster.is_none_or(|c| f.finding.clusters.iter().any(|fc| fc == c)))
        .collect();
    if node.iter().any(|f| f.outcome == Outcome::Failed) {
        return Some(RecommendationMark::Failed);
    }
    let still_missing = node.iter().any(|f| {
        f.finding.status == crate::domain::evaluate::Status::Missing
            && f.outcome != Outcome::Restored
    });
    (!still_missing && report.error.is_none()).then_some(RecommendationMark::Succeeded)
}

/// `location/name` of the cluster a recommendation targets.
pub fn target_cluster(target_resources: &[String]) -> Option<String> {
    target_resources.iter().find_map(|t| {
        let rest = t.split("/locations/").nth(1)?;
        let (location, cluster) = rest.split_once("/clusters/")?;
        Some(format!("{location}/{}", cluster.split('/').next()?))
    })
}

async fn settle_recommendations(gcp: &Gcp, report: &ProjectReport) -> usize {
    let locations: BTreeSet<String> = report
        .findings
        .iter()
        .filter(|f| f.finding.requirement == RequirementId::NodeSaPermissions)
        .flat_map(|f| f.finding.clusters.iter())
        .filter_map(|c| c.split_once('/').map(|(l, _)| l.to_owned()))
        .collect();
    let Ok(project) = crate::domain::iam::ProjectId::parse(&report.project_id) else {
        return 0;
    };
    let mut marked = 0;
    for location in locations {
        let recs = match gcp.list_node_sa_recommendations(&project, &location).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(project = %report.project_id, %location, error = %e, "cannot list recommendations");
                continue;
            }
        };
        for rec in recs
            .into_iter()
            .filter(|r| matches!(r.state_info.state.as_str(), "ACTIVE" | "CLAIMED"))
        {
            let cluster = target_cluster(&rec.target_resources);
            let Some(verb) = recommendation_verdict(report, cluster.as_deref()) else {
                continue;
            };
            let meta = [("remediator", "gke-iam-remediator")];
            let result = async {
                let claimed = gcp
                    .mark_recommendation(&rec.name, RecommendationMark::Claimed, &rec.etag, &meta)
                    .await?;
                gcp.mark_recommendation(&rec.name, verb, &claimed.etag, &meta)
                    .await
            }
            .await;
            match result {
                Ok(_) => marked += 1,
                Err(e) => {
                    tracing::warn!(recommendation = %rec.name, error = %e, "cannot mark the recommendation")
                }
            }
        }
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_cluster_is_read_from_the_recommendation_resource_name() {
        let t = vec![
            "//container.googleapis.com/projects/123/locations/us-central1/clusters/c1".to_owned(),
        ];
        assert_eq!(target_cluster(&t).as_deref(), Some("us-central1/c1"));
        assert_eq!(
            target_cluster(&["//compute.googleapis.com/x".to_owned()]),
            None
        );
    }
}
