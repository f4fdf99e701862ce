//! Discover: the projects of `--project`, `--folder` and `--organization` (or a sweep's scope)
//! resolved live, each named project looked up with its first-round reads started alongside. The
//! Cloud Asset Inventory path is [`super::snapshot`], which falls back to this one.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::remediate::Core;
use super::verify::Verifier;
use crate::domain::iam::{ProjectId, ResourceRef};
use crate::domain::report::ProjectReport;
use crate::ports::{ApiError, ProjectInfo};

/// The discover stage of one remediator: resolves a scope into projects.
#[derive(Clone, Copy)]
pub struct Discoverer<'a> {
    core: &'a Core,
}

impl<'a> Discoverer<'a> {
    /// The stage over a remediator's shared parts.
    pub(super) fn new(core: &'a Core) -> Self {
        Self { core }
    }
}

impl std::ops::Deref for Discoverer<'_> {
    type Target = Core;

    fn deref(&self) -> &Core {
        self.core
    }
}

impl Discoverer<'_> {
    /// Resolves `--project`, `--folder` and `--organization` into projects (deduplicated, sorted by id).
    ///
    /// A folder or organization that does not exist or cannot be read is an error (a typo must not
    /// look like a healthy, empty scope). A project that cannot be looked up becomes a failed report
    /// of its own, so the rest are still checked and printed.
    pub async fn resolve(
        &self,
        projects: &[String],
        roots: &[ResourceRef],
    ) -> Result<(Vec<ProjectInfo>, Vec<ProjectReport>), ApiError> {
        // Every root's walk and every named project's lookup run at once (the client's rate limits pace
        // them); a named project's policy and clusters are read while it is looked up, for its run.
        let walks = futures::future::join_all(roots.iter().map(|root| self.walk(root)));
        // Boxed with owned keys: the future stays `Send` for every caller (an engine's sweep
        // request runs inside a message's handling).
        let lookups = futures::stream::iter(projects.iter().cloned())
            .map(
                |p| -> futures::future::BoxFuture<'_, (String, Result<ProjectInfo, ApiError>)> {
                    Box::pin(self.look_up(p))
                },
            )
            .buffer_unordered(self.options.settings.concurrency.max(1))
            .collect::<Vec<_>>();
        let (walks, lookups) = tokio::join!(walks, lookups);
        let mut out: BTreeMap<String, ProjectInfo> = BTreeMap::new();
        for walk in walks {
            for p in walk? {
                out.insert(p.project_id.to_string(), p);
            }
        }
        let mut failures = Vec::new();
        for (id, p) in lookups {
            if out.contains_key(&id) {
                // Also under a root: the root's listing stands (as if it was never looked up alone).
                continue;
            }
            match p {
                Ok(p) => {
                    out.insert(p.project_id.to_string(), p);
                }
                Err(e) => failures.push(ProjectReport::failed(id, super::error::failure(&e))),
            }
        }
        failures.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        Ok((out.into_values().collect(), failures))
    }

    /// Every project under a root, after checking the root itself can be read (concurrently: the
    /// check's error, if any, is the one reported).
    async fn walk(&self, root: &ResourceRef) -> Result<Vec<ProjectInfo>, ApiError> {
        let check = async {
            match root {
                ResourceRef::Folder(id) => self.gcp.get_folder_parent(id).await.map(drop),
                ResourceRef::Organization(_) => self.gcp.get_iam_policy(root).await.map(drop),
                ResourceRef::Project(_) => Ok(()),
            }
        };
        let (check, listed) = tokio::join!(check, self.gcp.list_projects_under(root));
        check?;
        listed
    }

    /// A named project's lookup, with its first-round reads started alongside and kept for its run.
    async fn look_up(&self, key: String) -> (String, Result<ProjectInfo, ApiError>) {
        let id = match ProjectId::parse(&key) {
            Ok(id) if self.options.settings.lookup_reads_state => id,
            _ => {
                let info = self.gcp.get_project(&key).await;
                return (key, info);
            }
        };
        let verifier = Verifier::new(self.core);
        let (info, own) = tokio::join!(
            self.gcp.get_project(&key),
            verifier.read_own_first_round(&id, self.options.settings.read_ahead)
        );
        if info.as_ref().is_ok_and(|i| i.project_id == id) {
            self.prefetched
                .lock()
                .expect("prefetch lock")
                .insert(id, own);
        }
        (key, info)
    }
}
