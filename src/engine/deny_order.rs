//! The order of a sweep's deny-policy reads when its IAM v2 budget is short: project by project, in
//! the order the sweep takes its projects (by project id on both paths), so that which deny policies a short budget covers is the same whichever
//! way the sweep went (Cloud Asset Inventory or project by project) and however its calls
//! interleaved.
//!
//! Every project of the sweep has a place. A project reads its deny policies (its ancestors' not yet
//! read, outermost first, then its own) only once every project before it has *passed*: read its
//! own, found that it needs none (no clusters), or ended. A project passes when its [`Turn`] is
//! dropped or when [`DenyOrder::pass`] says so; the end of its run passes it in any case, so a
//! project that fails early never holds the others.
//!
//! The order costs one round of latency per project with clusters while the budget lasts (reads
//! are made one project at a time), and nothing once it is spent (a read with no budget is refused
//! at once). It is kept for budgets that might not cover the sweep ([`DenyOrder::needed`]): with
//! Google's default quota of 5 reads a minute, every sweep of more than a handful of projects.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::domain::iam::ProjectId;
use crate::ports::ProjectInfo;

/// The places of a sweep's projects and which have passed.
#[derive(Debug)]
pub struct DenyOrder {
    places: HashMap<ProjectId, usize>,
    passed: Mutex<Passed>,
    next: watch::Sender<usize>,
}

/// The first place not passed, and the places after it that have.
#[derive(Debug, Default)]
struct Passed {
    next: usize,
    above: BTreeSet<usize>,
}

/// A project's turn to read deny policies; the project passes when it is dropped.
#[derive(Debug)]
pub struct Turn {
    order: Arc<DenyOrder>,
    place: usize,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.order.pass_place(self.place);
    }
}

impl DenyOrder {
    /// Whether a sweep of `projects` with `budget` IAM v2 reads needs its reads in order: when the
    /// budget is under two reads per attachment point it might read (each project, each distinct
    /// parent, the organization), that is, when it might run out before the sweep ends.
    pub fn needed(budget: Option<u32>, projects: &[ProjectInfo]) -> bool {
        let Some(budget) = budget else {
            return false;
        };
        let parents: HashSet<_> = projects.iter().filter_map(|p| p.parent.as_ref()).collect();
        let points = projects.len() + parents.len() + 1;
        (budget as usize) < 2 * points
    }

    /// The order of `projects` as given (a project given twice keeps its first place). The sweep
    /// must start its projects in this order: a project waits only for those before it.
    pub fn new<'a>(projects: impl IntoIterator<Item = &'a ProjectId>) -> Arc<Self> {
        let mut places = HashMap::new();
        for id in projects {
            let place = places.len();
            places.entry(id.clone()).or_insert(place);
        }
        Arc::new(Self {
            places,
            passed: Mutex::default(),
            next: watch::Sender::new(0),
        })
    }

    /// Waits until every project before `project` has passed; `None` at once for a project not in
    /// the order.
    pub async fn turn(self: &Arc<Self>, project: &ProjectId) -> Option<Turn> {
        let place = *self.places.get(project)?;
        let mut next = self.next.subscribe();
        // The sender lives as long as `self`: the wait ends only when the place is reached.
        let _ = next.wait_for(|n| *n >= place).await;
        Some(Turn {
            order: self.clone(),
            place,
        })
    }

    /// `project` needs no (more) turn: the projects after it need not wait for it.
    pub fn pass(&self, project: &ProjectId) {
        if let Some(place) = self.places.get(project) {
            self.pass_place(*place);
        }
    }

    fn pass_place(&self, place: usize) {
        let mut passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        if place < passed.next || !passed.above.insert(place) {
            return;
        }
        let before = passed.next;
        while passed.above.first() == Some(&passed.next) {
            passed.above.pop_first();
            passed.next += 1;
        }
        if passed.next != before {
            self.next.send_replace(passed.next);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ids(names: &[&str]) -> Vec<ProjectId> {
        names.iter().map(|n| ProjectId::parse(n).unwrap()).collect()
    }

    /// A task waiting for `project`'s turn (ended at once); `Some` when the turn came.
    fn wait_for_turn(
        order: &Arc<DenyOrder>,
        project: &ProjectId,
    ) -> tokio::task::JoinHandle<Option<()>> {
        let (order, id) = (order.clone(), project.clone());
        tokio::spawn(async move { order.turn(&id).await.map(drop) })
    }

    #[tokio::test(start_paused = true)]
    async fn a_project_gets_its_turn_only_after_every_project_before_it_has_passed() {
        let projects = ids(&["proj-c", "proj-a", "proj-b"]);
        let order = DenyOrder::new(&[
            projects[1].clone(),
            projects[2].clone(),
            projects[0].clone(),
        ]);
        let c = wait_for_turn(&order, &projects[0]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!c.is_finished(), "proj-c waits for proj-a and proj-b");
        // proj-b passes first, out of order: proj-c still waits for proj-a.
        order.pass(&projects[2]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!c.is_finished(), "proj-c still waits for proj-a");
        // proj-a takes its turn (the first place: at once) and ends it.
        let a = order
            .turn(&projects[1])
            .await
            .expect("proj-a is in the order");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!c.is_finished(), "proj-a's turn is not over");
        drop(a);
        assert!(c.await.unwrap().is_some(), "proj-c's turn comes");
    }

    #[tokio::test(start_paused = true)]
    async fn passing_twice_or_taking_a_turn_again_after_passing_never_waits_or_skips_a_place() {
        let projects = ids(&["proj-a", "proj-b", "proj-c"]);
        let order = DenyOrder::new(&projects);
        drop(order.turn(&projects[0]).await);
        order.pass(&projects[0]);
        // A retried run takes its turn again: it has passed, so it does not wait.
        drop(order.turn(&projects[0]).await);
        let c = wait_for_turn(&order, &projects[2]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!c.is_finished(), "proj-b has not passed");
        order.pass(&projects[1]);
        assert!(c.await.unwrap().is_some());
        assert!(
            order
                .turn(&ProjectId::parse("proj-z").unwrap())
                .await
                .is_none(),
            "a project outside the sweep has no place and does not wait"
        );
    }

    #[test]
    fn the_order_is_kept_only_when_the_budget_might_not_cover_the_sweep() {
        let project = |id: &str, parent: &str| ProjectInfo {
            project_id: ProjectId::parse(id).unwrap(),
            project_number: crate::domain::iam::ProjectNumber::parse("1").unwrap(),
            parent: crate::domain::iam::ResourceRef::parse(parent).ok(),
        };
        let sweep: Vec<ProjectInfo> = (0..10)
            .map(|i| project(&format!("proj-{i}"), "folders/1"))
            .collect();
        // 10 projects, one folder, the organization: 12 points.
        assert!(DenyOrder::needed(Some(20), &sweep));
        assert!(DenyOrder::needed(Some(23), &sweep));
        assert!(!DenyOrder::needed(Some(24), &sweep));
        assert!(!DenyOrder::needed(None, &sweep), "no budget: no order");
    }
}
