//! Organization and folder sweeps through Cloud Asset Inventory: a snapshot decides what is healthy,
//! everything else is re-verified live, only the live path writes, and without Cloud Asset access the
//! sweep falls back to reading every project live.

use gke_iam_remediator::domain::deny::{DenyPolicy, DenyRule};
use gke_iam_remediator::domain::iam::ResourceRef;
use gke_iam_remediator::engine::snapshot::Discovery;
use serde_json::Value;

use super::fake::{FakeCloud, Fault, NODE_ROLE};
use super::{DRY_RUN, ENFORCE, P, Scenario, node_sa};

fn org() -> ResourceRef {
    ResourceRef::parse("organizations/777").unwrap()
}

/// Adds `n` healthy projects `team-1..` under the organization.
fn teams(cloud: &FakeCloud, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            let id = format!("team-{i}");
            cloud.add_healthy_project(&id, &format!("9{i:011}"), Some("organizations/777"));
            id
        })
        .collect()
}

fn counts(d: &Discovery) -> (usize, usize) {
    match d {
        Discovery::CloudAssetInventory {
            from_snapshot,
            reverified,
            ..
        } => (*from_snapshot, *reverified),
        other => panic!("not a snapshot sweep: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn healthy_projects_are_reported_from_the_snapshot_and_only_the_broken_one_is_read_live() {
    let s = Scenario::new(DRY_RUN);
    teams(&s.cloud, 3);
    s.cloud
        .remove_binding("team-2", NODE_ROLE, &node_sa("team-2"));
    let (reports, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(reports.len(), 4, "shop-prod and three teams");
    assert_eq!(counts(&discovery), (3, 1));
    assert_eq!(s.reads("team-2"), 1, "the suspect is read live");
    for healthy in ["team-1", "team-3", P] {
        assert_eq!(s.reads(healthy), 0, "{healthy} came from the snapshot");
    }
    assert_eq!(
        s.cloud.calls("projects.list"),
        0,
        "no walk of the hierarchy"
    );
    assert_eq!(s.cloud.calls("clusters.list"), 1);
    assert_eq!(s.sink.outcomes(), vec!["would-restore"]);
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_path_gives_the_same_verdicts_as_the_per_project_path() {
    let live = Scenario::with(DRY_RUN, |c| c.asset_inventory = false);
    let snap = Scenario::new(DRY_RUN);
    for s in [&live, &snap] {
        teams(&s.cloud, 4);
        s.cloud
            .remove_binding("team-1", NODE_ROLE, &node_sa("team-1"));
        s.cloud
            .delete_account("team-3", "nodes@team-3.iam.gserviceaccount.com");
        // A deny policy on the organization takes a node permission from team-2's nodes.
        s.cloud.with(|w| {
            w.deny_policies.insert(
                "organizations/777".to_owned(),
                vec![DenyPolicy {
                    name: "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F777/denypolicies/no-logs".to_owned(),
                    attached_to: "organizations/777".to_owned(),
                    display_name: String::new(),
                    rules: vec![DenyRule {
                        denied_principals: vec![
                            "principal://iam.googleapis.com/projects/-/serviceAccounts/nodes@team-2.iam.gserviceaccount.com"
                                .to_owned(),
                        ],
                        denied_permissions: vec!["logging.googleapis.com/logEntries.create".to_owned()],
                        ..DenyRule::default()
                    }],
                }],
            )
        });
    }
    let (a, _, da) = live.engine.sweep(&[], &[org()]).await.unwrap();
    let (b, _, db) = snap.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(
        da,
        Discovery::PerProject {
            reason: Some("turned off".to_owned())
        }
    );
    assert_eq!(
        counts(&db),
        (2, 3),
        "team-1, team-2 (denied) and team-3 re-verified"
    );
    let json = |r: &[std::sync::Arc<gke_iam_remediator::domain::report::ProjectReport>]| {
        r.iter()
            .map(|p| serde_json::to_value(&**p).unwrap())
            .collect::<Vec<Value>>()
    };
    assert_eq!(json(&a), json(&b));
}

#[tokio::test(start_paused = true)]
async fn a_deny_rule_attached_to_a_project_the_snapshot_shows_healthy_is_read_and_makes_it_denied()
{
    let live = Scenario::with(DRY_RUN, |c| c.asset_inventory = false);
    let snap = Scenario::new(DRY_RUN);
    for s in [&live, &snap] {
        teams(&s.cloud, 2);
        s.cloud.with(|w| {
            w.deny_policies.insert(
                "projects/900000000002".to_owned(),
                vec![DenyPolicy {
                    name: "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F900000000002/denypolicies/no-metrics".to_owned(),
                    attached_to: "projects/900000000002".to_owned(),
                    display_name: String::new(),
                    rules: vec![DenyRule {
                        denied_principals: vec![
                            "principal://iam.googleapis.com/projects/-/serviceAccounts/nodes@team-2.iam.gserviceaccount.com"
                                .to_owned(),
                        ],
                        denied_permissions: vec!["monitoring.googleapis.com/timeSeries.create".to_owned()],
                        ..DenyRule::default()
                    }],
                }],
            )
        });
    }
    let (a, _, _) = live.engine.sweep(&[], &[org()]).await.unwrap();
    let (b, _, db) = snap.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(counts(&db), (2, 1), "team-2 is a suspect, re-verified live");
    assert_eq!(snap.reads("team-2"), 1);
    let status = |r: &[std::sync::Arc<gke_iam_remediator::domain::report::ProjectReport>]| {
        r.iter()
            .find(|p| p.project_id == "team-2")
            .unwrap()
            .findings
            .iter()
            .map(|f| f.finding.status.as_str())
            .collect::<Vec<_>>()
    };
    assert!(status(&b).contains(&"denied"), "{:?}", status(&b));
    assert_eq!(status(&a), status(&b), "both paths agree");
    assert!(
        snap.sink.outcomes().iter().all(|o| o != "would-restore"),
        "a denied permission is never restored by a grant"
    );
}

#[tokio::test(start_paused = true)]
async fn without_cloud_asset_access_the_sweep_reads_every_project_live_and_says_so() {
    let s = Scenario::new(DRY_RUN);
    teams(&s.cloud, 2);
    s.cloud.break_method("assets.list", Fault::DENIED);
    let (reports, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(reports.len(), 3);
    let Discovery::PerProject { reason: Some(why) } = &discovery else {
        panic!("{discovery:?}")
    };
    assert!(why.contains("403"), "{why}");
    assert!(
        discovery
            .describe()
            .contains("Cloud Asset Inventory not used")
    );
    for p in ["team-1", "team-2", P] {
        assert_eq!(s.reads(p), 1, "{p} read live");
    }
    assert_eq!(
        s.cloud.calls("assets.list"),
        2,
        "the two listings (policies, resources) refused once each, then the fallback"
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_organization_is_listed_in_pages_of_a_thousand() {
    let s = Scenario::new(DRY_RUN);
    teams(&s.cloud, 1199);
    let (reports, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(reports.len(), 1200);
    assert_eq!(counts(&discovery), (1200, 0));
    let pages: Vec<String> = s
        .cloud
        .journal()
        .into_iter()
        .filter(|c| c.starts_with("assets.list "))
        .collect();
    // 1,201 policies (1,200 projects and the organization): 2 pages. 1,200 projects, services,
    // clusters and node accounts: 5 pages.
    assert_eq!(pages.len(), 7, "{pages:#?}");
    assert!(pages.iter().all(|p| p.contains("pageSize=1000")));
    assert_eq!(
        pages
            .iter()
            .filter(|p| p.contains("pageToken=page-1000"))
            .count(),
        2
    );
    assert_eq!(s.cloud.calls("getIamPolicy"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_project_broken_only_in_a_lagging_snapshot_is_verified_live_and_nothing_is_written() {
    let s = Scenario::new(ENFORCE);
    teams(&s.cloud, 2);
    s.cloud
        .remove_binding("team-1", NODE_ROLE, &node_sa("team-1"));
    s.cloud.freeze_assets();
    // Someone restores it before the sweep: the snapshot has not caught up.
    s.cloud.add_binding("team-1", NODE_ROLE, &node_sa("team-1"));
    let (reports, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(counts(&discovery), (2, 1));
    assert_eq!(s.reads("team-1"), 1);
    assert_eq!(s.writes(), 0, "the snapshot alone never causes a write");
    let team1 = reports.iter().find(|r| r.project_id == "team-1").unwrap();
    assert!(team1.actions.is_empty());
    assert!(
        s.sink.outcomes().is_empty(),
        "healthy outcomes are not published"
    );
}

#[tokio::test(start_paused = true)]
async fn a_project_broken_in_the_snapshot_and_live_is_restored_with_the_live_etag() {
    let s = Scenario::new(ENFORCE);
    teams(&s.cloud, 1);
    s.cloud
        .remove_binding("team-1", NODE_ROLE, &node_sa("team-1"));
    s.cloud.freeze_assets();
    // The policy moves on after the snapshot: its etag is stale.
    s.cloud
        .add_binding("team-1", "roles/viewer", "user:carol@example.com");
    let live_etag = s.cloud.policy("team-1").etag;
    let (_, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(counts(&discovery), (1, 1));
    assert_eq!(s.writes(), 1);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
    let n = &s.sink.published()[0];
    assert_eq!(
        n.actions[0].etag_before, live_etag,
        "guarded by the live read"
    );
    assert!(s.cloud.holds("team-1", NODE_ROLE, &node_sa("team-1")));
    assert!(
        s.cloud
            .holds("team-1", "roles/viewer", "user:carol@example.com")
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_snapshot_sends_every_project_to_the_live_path() {
    let s = Scenario::new(DRY_RUN);
    teams(&s.cloud, 2);
    s.cloud.set_asset_read_time("2020-01-01T00:00:00Z");
    let (_, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(counts(&discovery), (0, 3));
    for p in ["team-1", "team-2", P] {
        assert_eq!(s.reads(p), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_role_the_snapshot_does_not_hold_makes_the_project_a_suspect() {
    let s = Scenario::new(DRY_RUN);
    teams(&s.cloud, 1);
    let role = "organizations/777/roles/gkeNodes";
    s.cloud.with(|w| {
        w.roles.insert(
            gke_iam_remediator::domain::iam::Role::parse(role).unwrap(),
            super::fake::NODE_PERMISSIONS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        )
    });
    s.cloud
        .remove_binding("team-1", NODE_ROLE, &node_sa("team-1"));
    s.cloud.add_binding("team-1", role, &node_sa("team-1"));
    let (reports, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(counts(&discovery), (1, 1));
    assert_eq!(s.reads("team-1"), 1);
    let team1 = reports.iter().find(|r| r.project_id == "team-1").unwrap();
    assert!(
        team1
            .findings
            .iter()
            .all(|f| f.outcome == gke_iam_remediator::domain::report::Outcome::Healthy),
        "healthy once read live"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sweep_request_for_a_folder_starts_from_the_snapshot() {
    let s = Scenario::new(DRY_RUN);
    let teams = super::three_broken_projects(&s.cloud);
    // team-1 and team-3 get their node role back: only team-2 stays broken.
    for id in [&teams[0], &teams[2]] {
        s.cloud.add_binding(id, NODE_ROLE, &node_sa(id));
    }
    assert_eq!(
        s.deliver(s.sweep_folder("42")).await,
        gke_iam_remediator::intake::Verdict::Ack
    );
    assert_eq!(
        s.cloud.calls("assets.list"),
        2,
        "one policy and one resource listing"
    );
    assert_eq!(s.reads("team-1"), 0);
    assert_eq!(s.reads("team-3"), 0);
    assert_eq!(s.reads("team-2"), 1);
    assert_eq!(s.reads(P), 0, "shop-prod is not under folder 42");
    assert_eq!(s.sink.outcomes(), vec!["would-restore"]);
}

#[tokio::test(start_paused = true)]
async fn an_event_about_a_folder_policy_is_never_answered_from_the_snapshot() {
    let s = Scenario::new(DRY_RUN);
    super::three_broken_projects(&s.cloud);
    let entry = serde_json::json!({
        "insertId": "folder-change-1",
        "logName": "folders/42/logs/cloudaudit.googleapis.com%2Factivity",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "methodName": "SetIamPolicy",
            "resourceName": "folders/42",
            "serviceName": "cloudresourcemanager.googleapis.com",
            "serviceData": {
                "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                "policyDelta": {"bindingDeltas": [
                    {"action": "REMOVE", "member": node_sa("team-1"), "role": NODE_ROLE}
                ]}
            },
            "status": {}
        },
        "resource": {"labels": {"folder_id": "42"}, "type": "folder"},
        "severity": "NOTICE",
        "timestamp": "2026-12-01T10:00:00Z"
    });
    s.deliver(s.message(entry)).await;
    assert_eq!(
        s.cloud.calls("assets.list"),
        0,
        "events read live state only"
    );
    for id in ["team-1", "team-2", "team-3"] {
        assert_eq!(s.reads(id), 1, "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn with_the_deny_read_budget_spent_both_paths_call_the_same_projects_ok_star_and_restore_the_same()
 {
    use gke_iam_remediator::gcp::client::{IAM_V2_WINDOW, SlidingWindow};
    let live = Scenario::with(ENFORCE, |c| c.asset_inventory = false);
    let snap = Scenario::new(ENFORCE);
    for s in [&live, &snap] {
        teams(&s.cloud, 3);
        s.cloud
            .remove_binding("team-1", NODE_ROLE, &node_sa("team-1"));
        // Spent by earlier runs of this process.
        let window = std::sync::Arc::new(SlidingWindow::new(1, IAM_V2_WINDOW));
        assert!(window.try_acquire(0));
        s.cloud.with(|w| w.iam_v2_window = Some(window));
    }
    let (a, _, _) = live.engine.sweep(&[], &[org()]).await.unwrap();
    let (b, _, db) = snap.engine.sweep(&[], &[org()]).await.unwrap();
    // The healthy-looking projects are reported from the snapshot, ok* (deny policies not read):
    // re-verifying them
    // live could read no more deny policies within the same budget. Only team-1 is read live.
    assert_eq!(counts(&db), (3, 1));
    assert_eq!(snap.reads("team-1"), live.reads("team-1"));
    for healthy in ["team-2", "team-3", P] {
        assert_eq!(snap.reads(healthy), 0, "{healthy} came from the snapshot");
    }
    let json = |r: &[std::sync::Arc<gke_iam_remediator::domain::report::ProjectReport>]| {
        r.iter()
            .map(|p| serde_json::to_value(&**p).unwrap())
            .collect::<Vec<Value>>()
    };
    assert_eq!(json(&a), json(&b));
    for report in &b {
        let node = report
            .findings
            .iter()
            .find(|f| f.finding.requirement.as_str() == "node-sa-permissions")
            .expect("a node account");
        if report.project_id == "team-1" {
            assert_eq!(
                node.outcome.as_str(),
                "restored",
                "a spent budget stops no grant"
            );
        } else {
            assert_eq!(node.finding.status.as_str(), "ok", "{}", report.project_id);
            assert!(node.finding.deny_check.is_some(), "{}", report.project_id);
            assert!(
                node.finding.detail.contains("IAM v2 read quota"),
                "{}",
                node.finding.detail
            );
        }
    }
    assert_eq!(live.writes(), 1);
    assert_eq!(snap.writes(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_configured_sweep_naming_a_project_that_is_gone_still_checks_every_other_project() {
    for asset_inventory in [true, false] {
        configured_sweep_with_a_gone_project(asset_inventory).await;
    }
}

async fn configured_sweep_with_a_gone_project(asset_inventory: bool) {
    let s = Scenario::with(DRY_RUN, |c| {
        c.asset_inventory = asset_inventory;
        c.sweep_scope = vec![
            org(),
            ResourceRef::parse("projects/gone-project").unwrap(),
            ResourceRef::parse("projects/outside").unwrap(),
        ];
    });
    teams(&s.cloud, 2);
    s.cloud.add_healthy_project("outside", "955555555555", None);
    s.cloud
        .remove_binding("outside", NODE_ROLE, &node_sa("outside"));
    let verdict = s.deliver(s.message(serde_json::json!({"sweep": {}}))).await;
    // The missing project is reported on its own (not found: nothing to retry); the rest is checked.
    assert_eq!(verdict, gke_iam_remediator::intake::Verdict::Ack);
    assert_eq!(
        s.reads("outside"),
        1,
        "the project outside the organization is read live"
    );
    assert_eq!(s.sink.outcomes(), vec!["would-restore"]);
    assert!(
        s.cloud
            .journal()
            .iter()
            .any(|c| c == "projects.get gone-project"),
        "{:?}",
        s.cloud.journal()
    );
}

/// Sweeps the organization with a deny-read budget of `budget` (as `scan` does), through Cloud
/// Asset Inventory or project by project; the reports as JSON by project id, and the deny-policy
/// attachment points listed, in order.
async fn budgeted_sweep(
    cloud: &FakeCloud,
    budget: u32,
    asset_inventory: bool,
) -> (Vec<Value>, Vec<String>) {
    use gke_iam_remediator::engine::snapshot;
    cloud.with(|w| w.iam_v2_budget = Some((budget, budget)));
    let remediator = super::remediator_with(cloud, |o| o.settings.deny_read_budget = Some(budget));
    let found = snapshot::discover(&remediator, &[], &[org()], asset_inventory)
        .await
        .unwrap();
    assert_eq!(
        matches!(found.discovery, Discovery::CloudAssetInventory { .. }),
        asset_inventory
    );
    let mut reports: Vec<Value> = found
        .reports
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    for report in gke_iam_remediator::engine::sweep::check_all(&remediator, &found.live).await {
        reports.push(serde_json::to_value(&report).unwrap());
    }
    reports.sort_by(|a, b| a["project_id"].as_str().cmp(&b["project_id"].as_str()));
    let listed = cloud.with(|w| {
        w.journal
            .iter()
            .filter_map(|c| c.strip_prefix("denypolicies.list "))
            .map(str::to_owned)
            .collect()
    });
    (reports, listed)
}

#[tokio::test(start_paused = true)]
async fn a_short_deny_read_budget_is_spent_in_project_order_so_both_sweep_paths_read_the_same_points()
 {
    let mut runs = Vec::new();
    for asset_inventory in [false, true] {
        let cloud = FakeCloud::default();
        cloud.set_latency(std::time::Duration::from_millis(20));
        let ids = teams(&cloud, 6);
        cloud.remove_binding("team-5", NODE_ROLE, &node_sa("team-5"));
        // The first projects answer last: read as they come, the budget would go to the others.
        cloud.with(|w| {
            for (i, id) in ids.iter().enumerate() {
                let slower = std::time::Duration::from_millis(100 * (6 - i as u64));
                w.slow_targets.insert(id.clone(), slower);
            }
        });
        runs.push(budgeted_sweep(&cloud, 3, asset_inventory).await);
    }
    let (per_project, cai) = (&runs[0], &runs[1]);
    assert_eq!(
        per_project.1,
        vec![
            "organizations/777",
            "projects/900000000001",
            "projects/900000000002"
        ],
        "the organization, then the first projects by id"
    );
    assert_eq!(cai.1, per_project.1, "the same points through Cloud Asset");
    assert_eq!(cai.0, per_project.0, "identical reports");
    let status = |reports: &[Value], id: &str| -> String {
        reports
            .iter()
            .find(|r| r["project_id"] == id)
            .and_then(|r| {
                r["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["requirement"] == "node-sa-permissions")
            })
            .map(|f| match f.get("deny_check") {
                Some(_) => format!("{}*", f["status"].as_str().unwrap()),
                None => f["status"].as_str().unwrap().to_owned(),
            })
            .unwrap()
    };
    for (id, expected) in [
        ("team-1", "ok"),
        ("team-2", "ok"),
        ("team-3", "ok*"),
        ("team-5", "missing"),
        ("team-6", "ok*"),
    ] {
        assert_eq!(status(&cai.0, id), expected, "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_project_that_fails_in_its_first_round_never_holds_the_sweep_or_its_planned_reads() {
    let cloud = FakeCloud::default();
    cloud.set_latency(std::time::Duration::from_millis(20));
    teams(&cloud, 4);
    // team-1 is listed but its policy cannot be read: its run fails in its first round, and it
    // slows down (the others finish their first round before it fails).
    let team_1 = ResourceRef::parse("projects/team-1").unwrap();
    cloud.with(|w| {
        w.policies.remove(&team_1);
        w.slow_targets
            .insert("team-1".to_owned(), std::time::Duration::from_secs(30));
    });
    let sweep = budgeted_sweep(&cloud, 3, false);
    let (reports, listed) = tokio::time::timeout(std::time::Duration::from_secs(120), sweep)
        .await
        .expect("the sweep never stalls behind a failed project");
    assert_eq!(
        listed,
        vec![
            "organizations/777",
            "projects/900000000001",
            "projects/900000000002"
        ],
        "the plan's reads are made before the runs, in its order, whatever the runs then do"
    );
    assert!(!reports[0]["error"].is_null(), "{}", reports[0]);
    assert_eq!(reports[0]["project_id"], "team-1");
}

#[tokio::test(start_paused = true)]
async fn a_one_shot_job_sweep_spends_a_short_deny_read_budget_in_project_order_on_both_paths() {
    let mut runs = Vec::new();
    for asset_inventory in [false, true] {
        let s = Scenario::with(DRY_RUN, |c| {
            c.asset_inventory = asset_inventory;
            c.deny_read_budget = Some(3);
        });
        s.cloud.set_latency(std::time::Duration::from_millis(20));
        let ids = teams(&s.cloud, 6);
        s.cloud.with(|w| {
            w.iam_v2_budget = Some((3, 3));
            for (i, id) in ids.iter().enumerate() {
                let slower = std::time::Duration::from_millis(100 * (6 - i as u64));
                w.slow_targets.insert(id.clone(), slower);
            }
        });
        let (reports, _, _) = s.engine.sweep(&[], &[org()]).await.unwrap();
        let reports: Vec<Value> = reports
            .iter()
            .map(|r| serde_json::to_value(&**r).unwrap())
            .collect();
        let listed: Vec<String> = s.cloud.with(|w| {
            w.journal
                .iter()
                .filter_map(|c| c.strip_prefix("denypolicies.list "))
                .map(str::to_owned)
                .collect()
        });
        runs.push((reports, listed));
    }
    // shop-prod (the scenario's own project) sorts before the teams.
    assert_eq!(runs[0].1.len(), 3, "{:?}", runs[0].1);
    assert_eq!(runs[0].1[0], "organizations/777");
    assert!(
        !runs[0].1.contains(&"projects/900000000006".to_owned()),
        "the last project by id, which answers first, gets no read: {:?}",
        runs[0].1
    );
    assert_eq!(runs[1].1, runs[0].1, "the same points through Cloud Asset");
    assert_eq!(runs[1].0, runs[0].0, "identical reports");
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_without_enabled_service_assets_re_verifies_its_gke_projects_live_never_drops_them()
 {
    let s = Scenario::new(DRY_RUN);
    teams(&s.cloud, 2);
    s.cloud
        .remove_binding("team-1", NODE_ROLE, &node_sa("team-1"));
    s.cloud.freeze_assets();
    s.cloud.with(|w| {
        w.frozen_assets
            .as_mut()
            .unwrap()
            .retain(|(_, a)| !a.asset_type.starts_with("serviceusage.googleapis.com/"));
    });
    let (reports, _, discovery) = s.engine.sweep(&[], &[org()]).await.unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(counts(&discovery), (0, 3), "every project re-verified live");
    let team_1 = reports.iter().find(|r| r.project_id == "team-1").unwrap();
    assert!(
        team_1
            .findings
            .iter()
            .any(|f| f.outcome.as_str() == "would-restore"),
        "{team_1:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sweep_request_and_job_sweep_share_one_write_budget_and_settle_recommendations_alike() {
    let policy = "mode: enforce\nlimits:\n  max_writes_per_run: 2\n";
    let message = Scenario::new(policy);
    let job = Scenario::new(policy);
    let mut names = Vec::new();
    for s in [&message, &job] {
        let ids = teams(&s.cloud, 4);
        for id in &ids {
            s.cloud.remove_binding(id, NODE_ROLE, &node_sa(id));
        }
        names.push(s.cloud.add_recommendation("team-1", "900000000001", "r1"));
    }
    let listed: Vec<&str> = ["team-1", "team-2", "team-3", "team-4", P].to_vec();
    message.deliver(message.sweep(&listed)).await;
    let owned: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    job.engine.sweep(&owned, &[]).await.unwrap();
    for s in [&message, &job] {
        assert_eq!(s.writes(), 2, "one budget for the whole sweep");
    }
    assert_eq!(message.sink.outcomes(), job.sink.outcomes());
    assert_eq!(
        message.cloud.recommendation_state(&names[0]),
        job.cloud.recommendation_state(&names[1]),
        "the same recommendation marks on both paths"
    );
}

/// The deny-policy lists a sweep made, in order.
fn deny_lists(cloud: &FakeCloud) -> Vec<String> {
    cloud.with(|w| {
        w.journal
            .iter()
            .filter_map(|c| c.strip_prefix("denypolicies.list "))
            .map(str::to_owned)
            .collect()
    })
}

#[tokio::test(start_paused = true)]
async fn a_short_budget_reads_the_organization_then_the_folders_with_most_gke_projects_and_the_rest_on_later_sweeps()
 {
    let s = Scenario::with(DRY_RUN, |c| c.deny_read_budget = Some(2));
    for (folder, projects) in [("10", 1), ("20", 3), ("30", 2)] {
        s.cloud.add_folder(folder, "organizations/777");
        for i in 0..projects {
            let id = format!("team-{folder}-{i}");
            s.cloud.add_healthy_project(
                &id,
                &format!("9{folder}{i:09}"),
                Some(&format!("folders/{folder}")),
            );
        }
    }
    let mut read: Vec<Vec<String>> = Vec::new();
    for _ in 0..3 {
        s.cloud.with(|w| {
            w.iam_v2_budget = Some((2, 2));
            w.journal.clear();
        });
        let (reports, _, _) = s.engine.sweep(&[], &[org()]).await.unwrap();
        for r in &reports {
            assert!(r.error.is_none(), "{r:?}");
            assert!(
                r.findings
                    .iter()
                    .all(|f| f.finding.status.to_string() == "ok"),
                "unread deny policies never make a problem: {r:?}"
            );
        }
        read.push(deny_lists(&s.cloud));
        // Older than the maximum age by the next sweep: read again only after every point never read.
        tokio::time::advance(std::time::Duration::from_secs(2 * 3600)).await;
    }
    assert_eq!(read[0], ["organizations/777", "folders/20"], "{read:?}");
    assert_eq!(
        read[1],
        ["folders/30", "folders/10"],
        "never read before stale: {read:?}"
    );
    assert!(
        read[2].iter().all(|p| p.starts_with("projects/")),
        "then the projects: {read:?}"
    );
}
