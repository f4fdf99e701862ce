//! Settling `NODE_SA_MISSING_PERMISSIONS` recommendations from a run's verdicts: the one
//! claim-then-mark sequence (etag-guarded at each step), used for a recommendation named by a message
//! and for every recommendation of a swept project. Never in dry-run: a dry run must not make a
//! finding look fixed.

use std::collections::BTreeSet;

use crate::domain::iam::ProjectId;
use crate::domain::report::{self, ProjectReport, RecommendationVerdict};
use crate::domain::requirements::RequirementId;
use crate::ports::{ApiError, Cloud, NODE_SA_SUBTYPE, Recommendation, RecommendationMark};

const METADATA: [(&str, &str); 1] = [("remediator", "gke-iam-remediator")];

/// Whether a recommendation can still be settled by us: active or claimed, or failed (a later
/// run that restores everything marks it succeeded; the Recommender allows FAILED -> SUCCEEDED).
fn is_open(rec: &Recommendation) -> bool {
    rec.recommender_subtype == NODE_SA_SUBTYPE
        && matches!(
            rec.state_info.state.as_str(),
            "ACTIVE" | "CLAIMED" | "FAILED"
        )
}

/// Claims the recommendation, then marks it with the verdict (each step guarded by the etag the
/// previous one returned). Returns whether it was marked: `false` when the report leaves it for a
/// person.
pub async fn claim_then_mark(
    cloud: &dyn Cloud,
    rec: &Recommendation,
    report: &ProjectReport,
) -> Result<bool, ApiError> {
    let cluster = report::target_cluster(&rec.target_resources);
    let Some(verdict) = report::recommendation_verdict(report, cluster.as_deref()) else {
        return Ok(false);
    };
    let mark = match verdict {
        RecommendationVerdict::Succeeded => RecommendationMark::Succeeded,
        // Failed once is enough: a failed recommendation is re-marked only when it succeeds.
        RecommendationVerdict::Failed if rec.state_info.state == "FAILED" => return Ok(false),
        RecommendationVerdict::Failed => RecommendationMark::Failed,
    };
    tracing::info!(
        recommendation = %rec.name,
        from = %rec.state_info.state,
        mark = ?mark,
        cluster = cluster.as_deref().unwrap_or("-"),
        "recommendation marked: {}",
        match verdict {
            RecommendationVerdict::Succeeded =>
                "this run restored the node permissions and every node account now holds them",
            RecommendationVerdict::Failed => "a restoration of the node permissions failed",
        }
    );
    let claimed = cloud
        .mark_recommendation(&rec.name, RecommendationMark::Claimed, &rec.etag, &METADATA)
        .await?;
    cloud
        .mark_recommendation(&rec.name, mark, &claimed.etag, &METADATA)
        .await?;
    Ok(true)
}

/// Settles the recommendation a message named, after the run that handled it.
pub async fn settle_named(cloud: &dyn Cloud, name: &str, report: &ProjectReport) -> bool {
    let result = async {
        let rec = cloud.get_recommendation(name).await?;
        if !is_open(&rec) {
            return Ok(false);
        }
        claim_then_mark(cloud, &rec, report).await
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::warn!(recommendation = name, error = %e, "could not mark the recommendation");
        false
    })
}

/// Settles every open recommendation in the locations where the report's project has clusters;
/// returns how many were marked.
pub async fn settle_project(cloud: &dyn Cloud, report: &ProjectReport) -> usize {
    let locations: BTreeSet<String> = report
        .findings
        .iter()
        .filter(|f| f.finding.requirement == RequirementId::NodeSaPermissions)
        .flat_map(|f| f.finding.clusters.iter())
        .filter_map(|c| c.split_once('/').map(|(l, _)| l.to_owned()))
        .collect();
    let Ok(project) = ProjectId::parse(&report.project_id) else {
        return 0;
    };
    let mut marked = 0;
    for location in locations {
        let recs = match cloud
            .list_node_sa_recommendations(&project, &location)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(project = %report.project_id, %location, error = %e, "cannot list recommendations");
                continue;
            }
        };
        for rec in recs.iter().filter(|r| is_open(r)) {
            match claim_then_mark(cloud, rec, report).await {
                Ok(true) => marked += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(recommendation = %rec.name, error = %e, "cannot mark the recommendation")
                }
            }
        }
    }
    marked
}
