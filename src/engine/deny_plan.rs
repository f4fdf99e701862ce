//! A sweep's deny-policy reads, planned once before its projects run.
//!
//! Google allows 5 IAM v2 reads a minute, so a sweep of an organization can read a handful of the
//! attachment points its node accounts depend on, and each read should count. The plan takes the
//! points that matter to the most node accounts first, and those it knows least about:
//!
//! 1. points never read (in this process or, through the state store or the CLI's cache file, in
//!    any earlier run) before points read once and since grown old;
//! 2. then the organization, then folders by the number of projects with clusters beneath them,
//!    then projects;
//! 3. then the stalest read first.
//!
//! A point whose read is younger than `limits.deny_policy_max_age_minutes` is not in the plan. The
//! plan is pure (this module); [`Remediator::plan_deny_reads`](super::Remediator::plan_deny_reads)
//! makes its reads before the sweep's projects run, as many as the run's IAM v2 budget allows
//! (never waiting for the quota unless `--iam-v2-wait` asked for it), so every project of the sweep
//! sees the same reads whichever order its runs take. With the cache of earlier runs the
//! organization and its folders are all read within a few sweeps, and what a sweep could not read
//! keeps its node accounts `ok` with `deny_check` naming it (never a problem to act on).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::domain::iam::{ProjectId, ResourceRef};
use crate::ports::ProjectInfo;

/// What the caches know about one attachment point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// Never read (or forgotten).
    Never,
    /// Read at this time (ms since the epoch), and since grown older than the maximum age or
    /// marked stale by a change event: its last rules still apply until it is read again.
    ReadAt(i64),
    /// Read recently enough to be used as it is.
    Fresh,
}

/// The kind of an attachment point, in the order the plan reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// `organizations/N`: above every project.
    Organization,
    /// `folders/N`.
    Folder,
    /// `projects/NUMBER`: one project's own.
    Project,
}

/// One project of a sweep as the plan sees it.
#[derive(Clone, Debug)]
pub struct PlanProject {
    /// The project.
    pub project: ProjectId,
    /// `projects/NUMBER`.
    pub point: String,
    /// Its folders and organization, as far as they are known before it runs.
    pub ancestors: Vec<ResourceRef>,
    /// Whether it has clusters, when that is known before it runs (a Cloud Asset snapshot): deny
    /// rules bear only on node accounts. `None`: it may.
    pub clusters: Option<bool>,
}

impl PlanProject {
    /// The projects of a sweep as the plan sees them without a snapshot: each project's folders and
    /// organization as its listing knew them (a walk from the sweep's roots knows the whole chain; a
    /// lookup, the parent alone) and the sweep's roots, clusters unknown.
    pub fn of(projects: &[ProjectInfo], roots: &[ResourceRef]) -> Vec<PlanProject> {
        projects
            .iter()
            .map(|p| {
                let mut ancestors: Vec<ResourceRef> = match p.ancestors.is_empty() {
                    true => p.parent.iter().cloned().collect(),
                    false => p.ancestors.clone(),
                };
                for root in roots
                    .iter()
                    .filter(|r| !matches!(r, ResourceRef::Project(_)))
                {
                    if !ancestors.contains(root) {
                        ancestors.push(root.clone());
                    }
                }
                PlanProject {
                    project: p.project_id.clone(),
                    point: format!("projects/{}", p.project_number),
                    ancestors,
                    clusters: None,
                }
            })
            .collect()
    }
}

/// An attachment point the plan may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// `organizations/N`, `folders/N` or `projects/NUMBER`.
    pub name: String,
    /// Its kind.
    pub tier: Tier,
    /// Projects that may have clusters at or beneath it.
    pub gke_projects: usize,
    /// What the caches know of it.
    pub known: Known,
}

/// Every attachment point of `projects` (their ancestors and their own), with the number of
/// projects that may have clusters beneath each; projects known to have none add nothing (no node
/// account of theirs depends on a deny rule).
pub fn points(projects: &[PlanProject]) -> Vec<(String, Tier, usize)> {
    let mut out: BTreeMap<String, (Tier, usize)> = BTreeMap::new();
    for p in projects.iter().filter(|p| p.clusters != Some(false)) {
        out.entry(p.point.clone()).or_insert((Tier::Project, 0)).1 += 1;
        for a in &p.ancestors {
            let tier = match a {
                ResourceRef::Organization(_) => Tier::Organization,
                ResourceRef::Folder(_) => Tier::Folder,
                ResourceRef::Project(_) => continue,
            };
            out.entry(a.to_string()).or_insert((tier, 0)).1 += 1;
        }
    }
    out.into_iter().map(|(n, (t, c))| (n, t, c)).collect()
}

/// The points to read, in the order to read them (fresh ones left out).
pub fn order(points: Vec<Point>) -> Vec<Point> {
    let mut out: Vec<Point> = points
        .into_iter()
        .filter(|p| p.known != Known::Fresh)
        .collect();
    out.sort_by_key(|p| {
        let read_at = match p.known {
            Known::ReadAt(ms) => Some(ms),
            _ => None,
        };
        (
            read_at.is_some(),
            p.tier,
            Reverse(p.gke_projects),
            read_at,
            p.name.clone(),
        )
    });
    out
}

/// What a sweep's plan did, for its summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOutcome {
    /// Attachment points the sweep's node accounts may depend on.
    pub points: usize,
    /// Of those, read recently enough to be used as they are.
    pub fresh: usize,
    /// Read now.
    pub read: usize,
    /// Left for later sweeps (the IAM v2 quota), in the order they will be read.
    pub left: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(name: &str, tier: Tier, gke: usize, known: Known) -> Point {
        Point {
            name: name.to_owned(),
            tier,
            gke_projects: gke,
            known,
        }
    }

    fn names(points: &[Point]) -> Vec<&str> {
        points.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn the_organization_comes_first_then_folders_by_the_projects_with_clusters_beneath_them() {
        let planned = order(vec![
            point("projects/7", Tier::Project, 1, Known::Never),
            point("folders/small", Tier::Folder, 2, Known::Never),
            point("folders/big", Tier::Folder, 40, Known::Never),
            point("organizations/1", Tier::Organization, 42, Known::Never),
        ]);
        assert_eq!(
            names(&planned),
            [
                "organizations/1",
                "folders/big",
                "folders/small",
                "projects/7"
            ]
        );
    }

    #[test]
    fn points_never_read_come_before_old_reads_and_the_oldest_read_comes_first() {
        let planned = order(vec![
            point("organizations/1", Tier::Organization, 9, Known::ReadAt(500)),
            point("folders/a", Tier::Folder, 5, Known::ReadAt(900)),
            point("folders/b", Tier::Folder, 5, Known::ReadAt(100)),
            point("folders/c", Tier::Folder, 1, Known::Never),
            point("folders/d", Tier::Folder, 9, Known::Fresh),
        ]);
        assert_eq!(
            names(&planned),
            ["folders/c", "organizations/1", "folders/b", "folders/a"]
        );
    }

    #[test]
    fn projects_without_clusters_add_no_points_and_ancestors_count_projects_beneath_them() {
        let org = ResourceRef::Organization("1".to_owned());
        let folder = ResourceRef::Folder("2".to_owned());
        let project = |n: &str, clusters| PlanProject {
            project: ProjectId::parse(&format!("p-{n}-x")).unwrap(),
            point: format!("projects/{n}"),
            ancestors: vec![folder.clone(), org.clone()],
            clusters,
        };
        let found = points(&[
            project("10", Some(true)),
            project("11", None),
            project("12", Some(false)),
        ]);
        assert_eq!(
            found,
            [
                ("folders/2".to_owned(), Tier::Folder, 2),
                ("organizations/1".to_owned(), Tier::Organization, 2),
                ("projects/10".to_owned(), Tier::Project, 1),
                ("projects/11".to_owned(), Tier::Project, 1),
            ]
        );
    }
}
