//! `scan` end to end: the real binary against the simulator over HTTP.

use std::collections::BTreeSet;

use gcp_sim::SimHandle;
use serde_json::Value;

use crate::support::binary::{Run, remediator, scan_in_process};
use crate::support::{TempFile, start_sim, world_file};

/// A world with one project, a folder and an organization, exercising every classification.
pub const WORLD: &str = r#"
organization: {id: "123456789012"}
folders:
  - id: "111"
    parent: organizations/123456789012
    iam_policy:
      bindings:
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:inherited@acme-prod.iam.gserviceaccount.com]
projects:
  - id: acme-prod
    number: "200000000001"
    parent: folders/111
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/container.serviceAgent
          members: [serviceAccount:service-200000000001@container-engine-robot.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAgent
          members: [serviceAccount:service-200000000001@gcp-sa-gkenode.iam.gserviceaccount.com]
        - role: roles/logging.logWriter
          members: [serviceAccount:split@acme-prod.iam.gserviceaccount.com]
        - role: roles/monitoring.metricWriter
          members: [serviceAccount:split@acme-prod.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:conditional@acme-prod.iam.gserviceaccount.com]
          condition: {title: gke-logs-bucket-only, expression: "resource.name.startsWith('projects/_/buckets/gke-logs')"}
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:healthy@acme-prod.iam.gserviceaccount.com]
    service_accounts:
      - {email: bare@acme-prod.iam.gserviceaccount.com, unique_id: "100000000000000000001"}
      - {email: split@acme-prod.iam.gserviceaccount.com, unique_id: "100000000000000000002"}
      - {email: conditional@acme-prod.iam.gserviceaccount.com, unique_id: "100000000000000000003"}
      - {email: healthy@acme-prod.iam.gserviceaccount.com, unique_id: "100000000000000000004"}
      - {email: inherited@acme-prod.iam.gserviceaccount.com, unique_id: "100000000000000000005"}
    clusters:
      - name: std
        location: us-central1
        node_pools:
          - {name: bare-pool, service_account: bare@acme-prod.iam.gserviceaccount.com}
          - {name: split-pool, service_account: split@acme-prod.iam.gserviceaccount.com}
          - {name: cond-pool, service_account: conditional@acme-prod.iam.gserviceaccount.com}
          - {name: ok-pool, service_account: healthy@acme-prod.iam.gserviceaccount.com}
          - {name: inh-pool, service_account: inherited@acme-prod.iam.gserviceaccount.com}
      - {name: auto, location: europe-west1, autopilot: true, autoprovisioning_service_account: default}
"#;

/// The findings of `requirement` in a scan's JSON document.
fn findings<'a>(doc: &'a Value, requirement: &str) -> Vec<&'a Value> {
    crate::support::findings(doc)
        .into_iter()
        .filter(|f| f["requirement"] == requirement)
        .collect()
}

fn principals_with(doc: &Value, requirement: &str, status: &str) -> BTreeSet<String> {
    findings(doc, requirement)
        .into_iter()
        .filter(|f| f["status"] == status)
        .map(|f| f["principal"].as_str().unwrap().to_owned())
        .collect()
}

/// `scan --project P --format json --apply --policy FILE`.
async fn scan_apply_json(project: &str, policy: &TempFile, sim: &SimHandle) -> Run {
    remediator(
        &[
            "scan",
            "--project",
            project,
            "--format",
            "json",
            "--apply",
            "--policy",
            policy.arg(),
        ],
        sim,
    )
    .await
}

const ENFORCE: &str = "mode: enforce\n";

#[tokio::test(flavor = "multi_thread")]
async fn scan_json_classifies_missing_split_conditional_inherited_and_healthy_node_accounts() {
    let sim = start_sim(WORLD).await;

    // In-process: the scan command itself, its output captured.
    let (code, out) = scan_in_process(&["--project", "acme-prod", "--format", "json"], &sim).await;

    assert_eq!(code, 1, "{out}");
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    let missing = principals_with(&doc, "node-sa-permissions", "missing");
    assert_eq!(
        missing,
        BTreeSet::from([
            "serviceAccount:bare@acme-prod.iam.gserviceaccount.com".to_owned(),
            "serviceAccount:split@acme-prod.iam.gserviceaccount.com".to_owned(),
            "serviceAccount:200000000001-compute@developer.gserviceaccount.com".to_owned(),
        ])
    );
    let ok = principals_with(&doc, "node-sa-permissions", "ok");
    assert!(ok.contains("serviceAccount:inherited@acme-prod.iam.gserviceaccount.com"));
    assert!(ok.contains("serviceAccount:healthy@acme-prod.iam.gserviceaccount.com"));
    let conditional = principals_with(&doc, "node-sa-permissions", "conditional");
    assert_eq!(
        conditional,
        BTreeSet::from(["serviceAccount:conditional@acme-prod.iam.gserviceaccount.com".to_owned()])
    );
    let split = findings(&doc, "node-sa-permissions")
        .into_iter()
        .find(|f| f["principal"] == "serviceAccount:split@acme-prod.iam.gserviceaccount.com")
        .unwrap();
    assert_eq!(
        split["missing_permissions"],
        serde_json::json!(["autoscaling.sites.writeMetrics"])
    );
    assert_eq!(split["role"], "roles/container.defaultNodeServiceAccount");
    assert_eq!(
        split["node_pools"],
        serde_json::json!(["us-central1/std/split-pool"])
    );
    assert_eq!(doc["projects"][0]["project_number"], "200000000001");
    // Without --apply nothing is written.
    assert!(
        sim.stats()
            .by_endpoint
            .keys()
            .all(|k| !k.contains("setIamPolicy")),
        "{:?}",
        sim.stats()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_apply_restores_missing_grants_and_leaves_conditional_and_inherited_alone() {
    let sim = start_sim(WORLD).await;
    let before = sim.policy("projects/acme-prod").unwrap();
    let policy = TempFile::new(ENFORCE);

    let run = scan_apply_json("acme-prod", &policy, &sim).await;

    let doc = run.json();
    assert_eq!(
        run.code, 1,
        "the conditional grant remains for a person: {}",
        run.stderr
    );
    let after = sim.policy("projects/acme-prod").unwrap();
    let role =
        gke_iam_remediator::domain::iam::Role::parse("roles/container.defaultNodeServiceAccount")
            .unwrap();
    for sa in [
        "bare@acme-prod.iam.gserviceaccount.com",
        "split@acme-prod.iam.gserviceaccount.com",
        "200000000001-compute@developer.gserviceaccount.com",
    ] {
        let m = gke_iam_remediator::domain::iam::Member::parse(&format!("serviceAccount:{sa}"))
            .unwrap();
        assert!(after.grants_unconditionally(&role, &m), "{sa} not granted");
    }
    for sa in [
        "conditional@acme-prod.iam.gserviceaccount.com",
        "inherited@acme-prod.iam.gserviceaccount.com",
    ] {
        let m = gke_iam_remediator::domain::iam::Member::parse(&format!("serviceAccount:{sa}"))
            .unwrap();
        assert!(
            !after.grants_unconditionally(&role, &m),
            "{sa} must not be granted"
        );
    }
    // Everything that was there is still there, conditions intact (IAM serves bindings and members
    // sorted, so the order is the server's, not the writer's).
    for old in &before.bindings {
        let new = after
            .bindings
            .iter()
            .find(|b| b.role == old.role && b.condition == old.condition)
            .unwrap_or_else(|| panic!("binding {} disappeared", old.role));
        for m in &old.members {
            assert!(new.members.contains(m), "{m} lost from {}", old.role);
        }
    }
    let actions = doc["projects"][0]["actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .all(|a| a["outcome"] == "restored" && a["etag_before"] != a["etag_after"]),
        "{actions:?}"
    );
    assert_eq!(
        sim.stats()
            .by_endpoint
            .get("cloudresourcemanager.projects.setIamPolicy")
            .copied(),
        Some(1),
        "one write for all grants"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_apply_survives_concurrent_writers_and_injected_errors_without_losing_a_change() {
    let sim = start_sim(WORLD).await;
    let client = reqwest::Client::new();
    let put = |path: &str, body: Value| {
        client
            .put(format!("{}{path}", sim.base_url()))
            .json(&body)
            .send()
    };
    put(
        "_sim/faults",
        serde_json::json!({"errors": {"*": {"429": 0.1, "503": 0.1}}, "seed": 7}),
    )
    .await
    .unwrap();
    // The writer races every chance it gets (up to 4 times): with a probability below 1 it could miss
    // all of them, because the concurrent reads change how the seeded fault draws are consumed.
    put("_sim/concurrent-writer", serde_json::json!({"project": "acme-prod", "probability": 1.0, "max_writes": 4, "role": "roles/viewer"}))
        .await
        .unwrap();
    let policy = TempFile::new("mode: enforce\nlimits:\n  max_write_attempts: 10\n");

    let run = remediator(
        &[
            "scan",
            "--project",
            "acme-prod",
            "--format",
            "json",
            "--apply",
            "--policy",
            policy.arg(),
            "--max-attempts",
            "10",
        ],
        &sim,
    )
    .await;

    assert!(
        run.code == 0 || run.code == 1,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    put("_sim/faults", serde_json::json!({})).await.unwrap();
    let after = sim.policy("projects/acme-prod").unwrap();
    let added: Value = client
        .get(format!("{}_sim/concurrent-writer", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer: Vec<String> = after
        .bindings
        .iter()
        .filter(|b| b.role.as_str() == "roles/viewer")
        .flat_map(|b| b.members.iter().map(|m| m.to_string()))
        .collect();
    let added_members = added["added"]
        .as_array()
        .expect("the concurrent writer reports what it added");
    assert!(
        !added_members.is_empty(),
        "the concurrent writer never wrote: {added}"
    );
    for m in added_members {
        assert!(
            viewer.contains(&m.as_str().unwrap().to_owned()),
            "concurrent change {m} lost"
        );
    }
    let role =
        gke_iam_remediator::domain::iam::Role::parse("roles/container.defaultNodeServiceAccount")
            .unwrap();
    let bare = gke_iam_remediator::domain::iam::Member::parse(
        "serviceAccount:bare@acme-prod.iam.gserviceaccount.com",
    )
    .unwrap();
    assert!(
        after.grants_unconditionally(&role, &bare),
        "restore lost: {}",
        run.stdout
    );
    // The faults really happened: at least one stale-etag conflict and one injected error were answered.
    let journal: Value = client
        .get(format!("{}_sim/journal", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = journal
        .as_array()
        .or_else(|| journal["entries"].as_array())
        .expect("journal entries")
        .iter()
        .filter_map(|e| e["status"].as_u64())
        .collect();
    assert!(
        statuses.contains(&409),
        "no write conflict happened: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| [429, 503].contains(s)),
        "no error was injected: {statuses:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_set_iam_policy_names_the_missing_permission() {
    let sim = start_sim(WORLD).await;
    reqwest::Client::new()
        .put(format!("{}_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"deny": ["resourcemanager.projects.setIamPolicy"]}))
        .send()
        .await
        .unwrap();
    let policy = TempFile::new(ENFORCE);

    let run = remediator(
        &[
            "scan",
            "--project",
            "acme-prod",
            "--apply",
            "--policy",
            policy.arg(),
        ],
        &sim,
    )
    .await;

    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("resourcemanager.projects.setIamPolicy"),
        "{}",
        run.stdout
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_policy_file_is_an_error_naming_file_line_and_field() {
    let sim = start_sim(WORLD).await;
    let policy = TempFile::new("mode: enforce\nlimits:\n  max_writes: 3\n");

    let run = remediator(
        &["scan", "--project", "acme-prod", "--policy", policy.arg()],
        &sim,
    )
    .await;

    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!("{}:3:", policy.arg())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("max_writes"), "{}", run.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organization_scan_finds_every_project_and_a_healthy_world_exits_zero() {
    let healthy = WORLD.replace(
        "        - role: roles/container.defaultNodeServiceAccount\n          members: [serviceAccount:healthy@acme-prod.iam.gserviceaccount.com]",
        "        - role: roles/container.defaultNodeServiceAccount\n          members: [serviceAccount:healthy@acme-prod.iam.gserviceaccount.com, serviceAccount:bare@acme-prod.iam.gserviceaccount.com, serviceAccount:split@acme-prod.iam.gserviceaccount.com, serviceAccount:conditional@acme-prod.iam.gserviceaccount.com, serviceAccount:200000000001-compute@developer.gserviceaccount.com]",
    );
    let sim = start_sim(&healthy).await;

    let run = remediator(
        &["scan", "--organization", "123456789012", "--format", "json"],
        &sim,
    )
    .await;

    let doc = run.json();
    assert_eq!(doc["summary"]["projects"], 1);
    assert_eq!(run.code, 0, "{}", run.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_through_a_group_is_settled_by_cloud_identity_else_by_the_troubleshooter_else_unknown()
 {
    let sim = start_sim(&world_file("groups.yaml")).await;
    let node = "serviceAccount:gke-nodes@demo-project.iam.gserviceaccount.com";
    let resolved = remediator(
        &["scan", "--project", "demo-project", "--format", "json"],
        &sim,
    )
    .await
    .json();
    assert!(
        principals_with(&resolved, "node-sa-permissions", "ok").contains(node),
        "Cloud Identity's transitive check settles it: {resolved:#}"
    );
    // A caller without Cloud Identity's transitive checks (another edition, no Groups Reader role).
    sim.set_faults(gcp_sim::Faults {
        deny: ["cloudidentity.memberships.checkTransitiveMembership".to_owned()].into(),
        ..Default::default()
    });

    let without = remediator(
        &["scan", "--project", "demo-project", "--format", "json"],
        &sim,
    )
    .await
    .json();
    let with = remediator(
        &[
            "scan",
            "--project",
            "demo-project",
            "--format",
            "json",
            "--troubleshooter",
        ],
        &sim,
    )
    .await
    .json();

    assert!(
        principals_with(&without, "node-sa-permissions", "unknown").contains(node),
        "{without:#}"
    );
    assert!(
        principals_with(&with, "node-sa-permissions", "ok").contains(node),
        "{with:#}"
    );
    assert!(
        sim.stats()
            .by_endpoint
            .keys()
            .any(|k| k.contains("troubleshoot")),
        "{:?}",
        sim.stats()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_node_account_is_reported_and_never_granted_and_a_disabled_one_is_reported() {
    let sim = start_sim(&world_file("deleted-sa.yaml")).await;
    let policy = TempFile::new(ENFORCE);
    let before = sim.policy("projects/demo-project").unwrap();

    let run = scan_apply_json("demo-project", &policy, &sim).await;

    let doc = run.json();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let missing = principals_with(&doc, "node-sa-exists", "missing");
    assert!(
        missing.contains("serviceAccount:gke-nodes@demo-project.iam.gserviceaccount.com"),
        "{doc:#}"
    );
    assert!(
        missing.contains("serviceAccount:gke-off@demo-project.iam.gserviceaccount.com"),
        "{doc:#}"
    );
    let after = sim.policy("projects/demo-project").unwrap();
    assert_eq!(
        before.bindings, after.bindings,
        "nothing may be granted to a deleted account"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_role_and_a_policy_at_the_principal_limit_give_findings_not_wrong_grants() {
    let mut members = String::new();
    for i in 0..1497 {
        members.push_str(&format!("            - user:u{i}@example.com\n"));
    }
    let world = format!(
        r#"
# The custom role below is defined nowhere (as when a policy still names a purged role).
strict_roles: false
projects:
  - id: full-project
    number: "300000000001"
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/container.serviceAgent
          members: [serviceAccount:service-300000000001@container-engine-robot.iam.gserviceaccount.com]
        - role: projects/full-project/roles/doesNotExist
          members: [serviceAccount:gke@full-project.iam.gserviceaccount.com]
        - role: roles/viewer
          members:
{members}
    service_accounts:
      - {{email: gke@full-project.iam.gserviceaccount.com, unique_id: "1"}}
    clusters:
      - {{name: c1, location: us-central1, node_pools: [{{name: p, service_account: gke@full-project.iam.gserviceaccount.com}}]}}
"#
    );
    let sim = start_sim(&world).await;
    let policy = TempFile::new(ENFORCE);
    let before = sim.policy("projects/full-project").unwrap();

    let run = scan_apply_json("full-project", &policy, &sim).await;

    let doc = run.json();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        principals_with(&doc, "node-sa-permissions", "missing")
            .contains("serviceAccount:gke@full-project.iam.gserviceaccount.com")
    );
    let after = sim.policy("projects/full-project").unwrap();
    assert!(
        after.principal_count() <= 1500,
        "the limit was exceeded: {}",
        after.principal_count()
    );
    // IAM serves bindings sorted by role, so a new one may sit between old ones: compare by content.
    for old in &before.bindings {
        assert!(
            after.bindings.contains(old),
            "existing binding changed: {old:?}"
        );
    }
    let text = run.stdout;
    assert!(
        text.contains("1500") || text.contains("principal"),
        "the blocked grant is explained: {text}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_folder_policy_makes_findings_unknown_not_missing() {
    let sim = start_sim(WORLD).await;
    reqwest::Client::new()
        .put(format!("{}_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"deny": ["resourcemanager.folders.getIamPolicy"]}))
        .send()
        .await
        .unwrap();

    let run = remediator(
        &["scan", "--project", "acme-prod", "--format", "json"],
        &sim,
    )
    .await;

    let doc = run.json();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(doc["projects"][0]["error"].is_null(), "{doc:#}");
    assert!(
        principals_with(&doc, "node-sa-permissions", "missing").is_empty(),
        "{doc:#}"
    );
    let unknown = principals_with(&doc, "node-sa-permissions", "unknown");
    assert!(
        unknown.contains("serviceAccount:inherited@acme-prod.iam.gserviceaccount.com"),
        "{doc:#}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_that_does_not_exist_is_an_error_and_a_missing_project_does_not_hide_the_others() {
    let sim = start_sim(WORLD).await;
    for scope in [["--folder", "999"], ["--organization", "999"]] {
        let run = remediator(&["scan", scope[0], scope[1]], &sim).await;
        assert_eq!(run.code, 2, "{scope:?}: {}\n{}", run.stdout, run.stderr);
        assert!(!run.stdout.contains("findings: none"), "{}", run.stdout);
    }
    let run = remediator(
        &[
            "scan",
            "--project",
            "acme-prod",
            "--project",
            "missing-project",
            "--format",
            "json",
        ],
        &sim,
    )
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    let ids: Vec<&str> = doc["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"acme-prod") && ids.contains(&"missing-project"),
        "{doc}"
    );
    let run = remediator(&["scan", "--project", "acme-prod", "--apply"], &sim).await;
    assert!(
        run.stderr
            .contains("--apply with a dry-run policy writes nothing"),
        "{}",
        run.stderr
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enabling_the_container_api_waits_for_the_service_usage_operation() {
    // Service Usage operations need two polls here; the API is enabled only once the operation is done.
    let world = format!("operation_polls: 2\n{}", world_file("api-disabled.yaml"));
    let sim = start_sim(&world).await;
    let policy = TempFile::new("mode: enforce\nrestore: [container-api-enabled]\n");

    let run = scan_apply_json("demo-project", &policy, &sim).await;

    let polls = sim
        .journal()
        .iter()
        .filter(|e| e.endpoint == "serviceusage.operations.get")
        .count();
    let calls: Vec<String> = sim.journal().iter().map(|e| e.endpoint.clone()).collect();
    assert!(
        polls >= 2,
        "the operation was polled to the end: {polls} polls\n{calls:?}\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let client = reqwest::Client::new();
    let svc: Value = client
        .get(format!(
            "{}v1/projects/demo-project/services/container.googleapis.com",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(svc["state"], "ENABLED", "{}", run.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scan_table_is_one_line_per_account_healthy_rows_collapsed_and_uncoloured_off_a_tty() {
    let sim = start_sim(WORLD).await;
    let run = remediator(&["scan", "--project", "acme-prod"], &sim).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let text = &run.stdout;
    assert!(!text.contains('\x1b'), "no colour off a TTY:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.contains("NODE SERVICE ACCOUNT"))
        .expect("the node account section");
    assert!(lines[head].contains("LOGGING") && lines[head].contains("AUTOSCALING"));
    let bare = lines
        .iter()
        .find(|l| l.trim_start().starts_with("bare@acme-prod"))
        .expect("one line for the bare account");
    assert_eq!(bare.matches("MISSING").count(), 4, "{bare}");
    // Every service agent is healthy: their rows (and section) are collapsed behind the count.
    assert!(
        !text.contains("SERVICE AGENT") && !text.contains("container-engine-robot"),
        "healthy rows are collapsed:\n{text}"
    );
    assert!(
        text.contains("healthy row(s) not shown (--all shows them)"),
        "{text}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("mode: dry-run; 1 project(s), 1 using GKE, 0 error(s); findings: "),
        "{last}"
    );

    let all = remediator(&["scan", "--project", "acme-prod", "--all"], &sim).await;
    let agent = "service-200000000001@container-engine-robot.iam.gserviceaccount.com";
    assert!(
        all.stdout
            .lines()
            .any(|l| l.trim_start().starts_with(agent)),
        "{}",
        all.stdout
    );
    assert!(all.stdout.contains("SERVICE AGENT"), "{}", all.stdout);
    assert!(!all.stdout.contains("not shown"), "{}", all.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fix_line_is_a_command_google_accepts_undelete_enable_and_the_container_api() {
    let sim = start_sim(&world_file("deleted-sa.yaml")).await;

    let run = remediator(&["scan", "--project", "demo-project"], &sim).await;

    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let text = &run.stdout;
    assert!(
        text.contains("gcloud iam service-accounts undelete 104619873021358217463"),
        "the deleted account is undeleted by its unique id:\n{text}"
    );
    assert!(
        text.contains(
            "gcloud iam service-accounts enable gke-off@demo-project.iam.gserviceaccount.com --project=demo-project"
        ),
        "the disabled account is enabled:\n{text}"
    );
    assert!(
        !text.contains("--member=serviceAccount:gke-nodes@") && !text.contains("--member=deleted:"),
        "no grant to an account that is gone (Google refuses it):\n{text}"
    );
    let off = text
        .lines()
        .find(|l| l.trim_start().starts_with("gke-off@"))
        .expect("a row for the disabled account");
    let cells: Vec<&str> = off.split_whitespace().collect();
    assert_eq!(cells[5], "disabled", "the EXISTS column: {off}");
    let gone = text
        .lines()
        .find(|l| l.trim_start().starts_with("gke-nodes@"))
        .expect("a row for the deleted account");
    assert_eq!(gone.split_whitespace().nth(5), Some("missing"), "{gone}");
    sim.shutdown().await;

    let sim = start_sim(&world_file("api-disabled.yaml")).await;
    let run = remediator(&["scan", "--project", "demo-project"], &sim).await;
    assert!(
        run.stdout.contains(
            "fix: gcloud services enable container.googleapis.com --project=demo-project"
        ),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    sim.shutdown().await;
}

/// A project of the organization `1`: with GKE, its node account granted or not.
fn org_project(id: &str, number: &str, granted: bool) -> String {
    let grant = if granted {
        format!(
            "        - role: roles/container.defaultNodeServiceAccount\n          members: [serviceAccount:nodes@{id}.iam.gserviceaccount.com]\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"  - id: {id}
    number: "{number}"
    parent: organizations/1
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/container.serviceAgent
          members: [serviceAccount:service-{number}@container-engine-robot.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAgent
          members: [serviceAccount:service-{number}@gcp-sa-gkenode.iam.gserviceaccount.com]
{grant}    service_accounts:
      - {{email: nodes@{id}.iam.gserviceaccount.com, unique_id: "{number}1"}}
    clusters:
      - {{name: c1, location: us-central1, node_pools: [{{name: p, service_account: nodes@{id}.iam.gserviceaccount.com}}]}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organization_table_shows_the_broken_project_first_and_one_line_per_category_of_the_rest()
 {
    let mut world = String::from("organization: {id: \"1\"}\nprojects:\n");
    world.push_str(&org_project("a-fine", "500000000001", true));
    world.push_str(&org_project("b-broken", "500000000002", false));
    world.push_str(&org_project("c-fine", "500000000003", true));
    world.push_str(
        "  - {id: d-plain, number: \"500000000004\", parent: organizations/1, services: [compute.googleapis.com]}\n",
    );
    let sim = start_sim(&world).await;

    let run = remediator(&["scan", "--organization", "1"], &sim).await;

    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("PROJECT b-broken"),
        "the project to act on first:\n{}",
        run.stdout
    );
    let blocks = lines.iter().filter(|l| l.starts_with("PROJECT ")).count();
    assert_eq!(blocks, 1, "healthy projects are counted:\n{}", run.stdout);
    let ok = lines
        .iter()
        .position(|l| *l == "2 project(s) ok")
        .unwrap_or_else(|| panic!("one line for the healthy projects:\n{}", run.stdout));
    assert_eq!(
        lines[ok + 1],
        "1 project(s) not using GKE",
        "{}",
        run.stdout
    );
    sim.shutdown().await;
}
