//! The one sweep driver: every sweep (`scan --folder/--organization`, `job --sweep`, a sweep message
//! in `serve` or `job --subscription`) runs its discovered projects through it, so they get the same
//! verdicts, the same deny-read plan, one write budget and the same recommendation settlement.
//!
//! The caller says how one live project runs ([`Remediator::remediate`] for `scan`, the engine's
//! coalescing scheduler for the service) and what to do with each report as it is ready (`scan`
//! prints it, the engine concludes it); the driver plans the sweep's deny-policy reads and makes them
//! beside the runs ([`super::deny_plan`]), runs the projects `concurrency` at a time in their order
//! (by project id), and, when the sweep writes, settles the node-SA recommendations of every project
//! checked live ([`super::recommendation::settle_project`]). Projects reported from a Cloud Asset
//! snapshot are passed on as they are: their recommendations wait for a live check.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use super::RunResult;
use super::deny_plan::PlanProject;
use super::recommendation;
use super::remediate::Remediator;
use crate::domain::iam::ResourceRef;
use crate::domain::report::ProjectReport;
use crate::ports::ProjectInfo;

/// A project of a sweep: to check live, or reported healthy from a Cloud Asset snapshot.
#[derive(Debug)]
pub enum SweepProject {
    /// Checked live.
    Live(ProjectInfo),
    /// Reported from the snapshot.
    FromSnapshot(Box<ProjectReport>),
}

impl SweepProject {
    /// A sweep's projects as discovery found them: those to check live and those reported from a
    /// snapshot, by project id (the order the sweep takes them in).
    pub fn discovered(live: Vec<ProjectInfo>, from_snapshot: Vec<ProjectReport>) -> Vec<Self> {
        let mut all: Vec<Self> = live.into_iter().map(Self::Live).collect();
        all.extend(
            from_snapshot
                .into_iter()
                .map(|r| Self::FromSnapshot(Box::new(r))),
        );
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    /// The project id.
    pub fn id(&self) -> &str {
        match self {
            Self::Live(info) => info.project_id.as_str(),
            Self::FromSnapshot(report) => &report.project_id,
        }
    }
}

/// One sweep's driver over the remediator that plans its deny reads (and whose ports settle its
/// recommendations).
pub struct SweepDriver<'a> {
    remediator: &'a Remediator,
    /// The sweep writes (enforce): recommendations of live projects are settled.
    settle: bool,
}

impl<'a> SweepDriver<'a> {
    /// A driver; `settle` when the sweep writes.
    pub fn new(remediator: &'a Remediator, settle: bool) -> Self {
        Self { remediator, settle }
    }

    /// Runs the sweep: `run` checks one live project, `each` takes every report in the projects'
    /// order as soon as it and the ones before it are done (an error from it stops the sweep).
    /// Returns how many recommendations were marked.
    pub async fn drive<F, Fut, S, E>(
        &self,
        projects: Vec<SweepProject>,
        roots: &[ResourceRef],
        run: F,
        mut each: S,
    ) -> Result<usize, E>
    where
        F: Fn(ProjectInfo) -> Fut,
        Fut: Future<Output = RunResult>,
        S: FnMut(RunResult) -> Result<(), E>,
    {
        let live: Vec<ProjectInfo> = projects
            .iter()
            .filter_map(|p| match p {
                SweepProject::Live(info) => Some(info.clone()),
                SweepProject::FromSnapshot(_) => None,
            })
            .collect();
        let deny_reads = self
            .remediator
            .plan_deny_reads(&PlanProject::of(&live, roots))
            .await;
        let cloud = self.remediator.cloud();
        let (run, settle) = (&run, self.settle);
        let mut reports = futures::stream::iter(projects)
            .map(|p| async move {
                match p {
                    SweepProject::Live(info) => {
                        let report = run(info).await;
                        let marked = match settle {
                            true => recommendation::settle_project(cloud.as_ref(), &report).await,
                            false => 0,
                        };
                        (report, marked)
                    }
                    SweepProject::FromSnapshot(report) => (Arc::new(*report), 0),
                }
            })
            .buffered(self.remediator.options().settings.concurrency.max(1));
        let all = async {
            let mut marked = 0;
            while let Some((report, m)) = reports.next().await {
                marked += m;
                each(report)?;
            }
            Ok(marked)
        };
        // The planned deny reads are polled first: they take the IAM v2 budget.
        tokio::join!(deny_reads, all).1
    }
}

/// Every project checked live through the driver (settled when the remediator writes), the reports
/// in the projects' order: for callers that want them all at once (`demo`, tests).
pub async fn check_all(remediator: &Remediator, projects: &[ProjectInfo]) -> Vec<ProjectReport> {
    let mut reports = Vec::with_capacity(projects.len());
    let live = projects.iter().cloned().map(SweepProject::Live).collect();
    SweepDriver::new(remediator, remediator.options().writes())
        .drive(
            live,
            &[],
            |info| async move { Arc::new(remediator.remediate(&info).await) },
            |report| {
                reports.push(Arc::unwrap_or_clone(report));
                Ok::<(), std::convert::Infallible>(())
            },
        )
        .await
        .unwrap_or_else(|never| match never {});
    reports
}
