//! Organization sweeps through Cloud Asset Inventory, end to end: the real binary against the
//! simulator's Cloud Asset v1 endpoints, compared with the per-project path on a generated world.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::binary::remediator;
use crate::support::{Api, TempDir, findings, start_sim};

const ORG: &str = "123456789012";

/// Rate limits high enough that the per-project path of a test world takes seconds, not minutes;
/// and room for every deny-policy read of a test world (the simulator enforces no IAM v2 quota here:
/// at Google's 5 per minute most of these verdicts would be `incomplete` on both paths).
const FAST: [&str; 10] = [
    "--rate-limit",
    "iam-v2=100000",
    "--rate-limit",
    "cloudresourcemanager=2000",
    "--rate-limit",
    "iam=2000",
    "--rate-limit",
    "container=2000",
    "--rate-limit",
    "serviceusage=2000",
];

/// A world from `infra/gen-world.py` (the benchmark generator), as JSON text.
fn generated_world(projects: u32, broken: f64, seed: u32) -> String {
    let dir = TempDir::new("gen-world");
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/gen-world.py"))
        .args(["--projects", &projects.to_string(), "--folders", "6"])
        .args(["--seed", &seed.to_string(), "--org-id", ORG])
        .args(["--broken-fraction", &broken.to_string()])
        .current_dir(dir.path())
        .output()
        .expect("python3 runs gen-world.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 world")
}

/// Google's IAM v2 read quota in the simulator: 5 deny-policy reads a minute, from now.
fn google_iam_v2_quota(sim: &gcp_sim::SimHandle) {
    sim.set_faults(gcp_sim::Faults {
        iam_v2_reads_per_minute: Some(5),
        ..gcp_sim::Faults::default()
    });
}

/// The deny-policy reads (IAM v2) among `journal`'s calls.
fn deny_reads(journal: &[gcp_sim::JournalEntry]) -> Vec<&gcp_sim::JournalEntry> {
    journal
        .iter()
        .filter(|e| e.endpoint.starts_with("iam.policies."))
        .collect()
}

#[tokio::test]
async fn both_sweep_paths_give_identical_verdicts_on_a_generated_organization() {
    let sim = start_sim(&generated_world(150, 0.3, 7)).await;
    let mut args = vec!["scan", "--organization", ORG, "--format", "json"];
    args.extend(FAST);
    let cai = remediator(&args, &sim).await;
    args.push("--no-asset-inventory");
    let live = remediator(&args, &sim).await;
    assert_eq!(cai.code, 1, "broken projects: {}", cai.stderr);
    assert_eq!(live.code, 1, "{}", live.stderr);
    let (cai, live) = (cai.json(), live.json());
    assert_eq!(cai["discovery"]["path"], "cloud-asset-inventory");
    assert_eq!(
        live["discovery"],
        json!({"path": "per-project", "reason": "turned off"})
    );
    let projects = live["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 150);
    assert_eq!(
        cai["projects"], live["projects"],
        "the snapshot path's verdicts differ from the per-project path's"
    );
    let not_healthy = projects
        .iter()
        .filter(|p| {
            p["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["status"] != "ok")
        })
        .count();
    assert!(
        not_healthy >= 20,
        "the world has broken projects: {not_healthy}"
    );
    assert_eq!(cai["discovery"]["reverified"], not_healthy);
    assert_eq!(cai["discovery"]["from_snapshot"], 150 - not_healthy);
    // 150 projects: the policy listing and the resource listing fit a few pages of 1,000.
    let asset_calls = cai["api_calls"]["by_api"]["cloudasset"].as_u64().unwrap();
    assert!(asset_calls <= 4, "{asset_calls}");
    assert_eq!(cai["discovery"]["asset_calls"], asset_calls);
    let live_calls = live["api_calls"]["total"].as_u64().unwrap();
    let cai_calls = cai["api_calls"]["total"].as_u64().unwrap();
    // Every project decided from the snapshot spares at least its policy, cluster and account reads,
    // less the one read of its own deny policies it still needs.
    let spared = 2 * (150 - not_healthy) as u64;
    assert!(
        cai_calls + spared <= live_calls,
        "{cai_calls} calls through the snapshot vs {live_calls} per project"
    );
}

const SMALL: &str = r#"
organization: {id: "123456789012"}
projects:
  - id: shop-prod
    number: "200000000001"
    parent: organizations/123456789012
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
  - id: platform-ops
    number: "200000000002"
    parent: organizations/123456789012
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
"#;

#[tokio::test]
async fn with_the_cloud_asset_api_disabled_in_its_project_a_scan_checks_every_project_live_and_says_so()
 {
    // The scan's caller is a service account of platform-ops, which has no cloudasset.googleapis.com.
    let sim = start_sim(SMALL).await;
    let run = remediator(&["scan", "--organization", ORG], &sim).await;
    // shop-prod uses GKE and its service agents have no roles: findings (1), not a failure (2).
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "discovery: per project (Cloud Asset Inventory not used: cloudasset assets.list: HTTP 403"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Cloud Asset API has not been used in project 200000000002")
    );
    let json = remediator(&["scan", "--organization", ORG, "--format", "json"], &sim).await;
    assert_eq!(json.code, 1, "{}", json.stderr);
    let d = json.json();
    assert_eq!(d["discovery"]["path"], "per-project");
    assert_eq!(d["projects"].as_array().unwrap().len(), 2);
    // The one project using GKE lacks both its service agents' roles: the reason for exit 1.
    let not_ok: Vec<(&str, &str, &str)> = findings(&d)
        .into_iter()
        .filter(|f| f["status"] != "ok")
        .map(|f| {
            (
                f["requirement"].as_str().unwrap(),
                f["principal"].as_str().unwrap(),
                f["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        not_ok,
        [
            (
                "gke-service-agent",
                "serviceAccount:service-200000000001@container-engine-robot.iam.gserviceaccount.com",
                "missing"
            ),
            (
                "gke-node-service-agent",
                "serviceAccount:service-200000000001@gcp-sa-gkenode.iam.gserviceaccount.com",
                "missing"
            ),
        ],
        "{}",
        json.stdout
    );
}

#[tokio::test]
async fn a_policy_written_through_set_iam_policy_is_in_the_next_asset_listing() {
    let sim = start_sim(SMALL).await;
    let api = Api::new(&sim);
    let written = api
        .edit_project_policy("shop-prod", |policy| {
            policy["bindings"]
                .as_array_mut()
                .unwrap()
                .push(json!({"role": "roles/viewer", "members": ["user:carol@example.com"]}));
        })
        .await;
    let (code, page) = api
        .get(&format!(
            "v1/organizations/{ORG}/assets?contentType=IAM_POLICY&assetTypes=cloudresourcemanager.googleapis.com%2FProject&pageSize=1"
        ))
        .await;
    assert_eq!(code, 200, "{page}");
    let asset = &page["assets"][0];
    assert_eq!(
        asset["name"],
        "//cloudresourcemanager.googleapis.com/projects/200000000001"
    );
    assert_eq!(asset["iamPolicy"]["etag"], written["etag"]);
    assert!(
        asset["iamPolicy"]["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["role"] == "roles/viewer")
    );
    assert!(
        page["nextPageToken"].is_string(),
        "two projects, pages of one"
    );
    // Denied callers get Google's 403 with the permission named.
    let (code, _) = api
        .put(
            "_sim/faults",
            json!({"deny": ["cloudasset.assets.listResource"]}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, err) = api
        .get(&format!(
            "v1/organizations/{ORG}/assets?contentType=RESOURCE"
        ))
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        err["error"]["details"][0]["metadata"]["permission"],
        "cloudasset.assets.listResource"
    );
}

#[tokio::test]
async fn with_googles_iam_v2_quota_enforced_by_the_simulator_both_sweep_paths_never_get_a_429_and_give_the_same_verdicts()
 {
    let sim = start_sim(&generated_world(40, 0.0, 11)).await;
    google_iam_v2_quota(&sim);
    let mut verdicts = Vec::new();
    for discovery in [&[][..], &["--no-asset-inventory"][..]] {
        sim.reset_stats();
        let before = sim.journal().len();
        let mut args = vec!["scan", "--organization", ORG, "--format", "json"];
        // Fast for every other API; IAM v2 at its default (Google's 5 per minute), and no read
        // waits for it (as in `serve`).
        args.extend(&FAST[2..]);
        args.extend(["--iam-v2-wait", "0"]);
        args.extend(discovery);
        let run = remediator(&args, &sim).await;
        // A healthy world: deny policies left unread for the quota are `ok*`, neither a finding
        // (1) nor a failed project (2).
        assert_eq!(
            run.code, 0,
            "a spent quota never fails the scan: {}",
            run.stderr
        );
        let doc = run.json();
        let journal = sim.journal();
        let deny = deny_reads(&journal[before..]);
        assert!(!deny.is_empty(), "{discovery:?}: deny policies were read");
        assert!(
            deny.iter().all(|e| e.status == 200),
            "{discovery:?}: a deny read got {:?}",
            deny.iter().map(|e| e.status).collect::<Vec<_>>()
        );
        assert!(deny.len() <= 5, "{discovery:?}: {} deny reads", deny.len());
        let projects = doc["projects"].as_array().unwrap();
        assert_eq!(projects.len(), 40, "{discovery:?}");
        assert!(
            projects.iter().all(|p| p["error"].is_null()),
            "{discovery:?}: no project failed"
        );
        // The projects whose deny policies did not fit are ok* (deny_check), and say why.
        let unread: Vec<_> = findings(&doc)
            .into_iter()
            .filter(|f| f.get("deny_check").is_some())
            .collect();
        assert!(
            !unread.is_empty(),
            "{discovery:?}: 40 projects cannot fit in 5 reads"
        );
        for f in &unread {
            let detail = f["detail"].as_str().unwrap();
            assert!(
                detail.contains("IAM v2 read quota") && detail.contains("--rate-limit iam-v2"),
                "{discovery:?}: {detail}"
            );
        }
        assert!(
            findings(&doc).iter().all(|f| f["status"] == "ok"),
            "{discovery:?}: a healthy world"
        );
        // Which projects the budget covered does not depend on the path: the same verdicts.
        verdicts.push(
            projects
                .iter()
                .flat_map(|p| {
                    p["findings"].as_array().unwrap().iter().map(move |f| {
                        let principal = f["principal"].as_str().unwrap_or("");
                        format!(
                            "{} {} {principal} {}",
                            p["project_id"], f["requirement"], f["status"]
                        )
                    })
                })
                .collect::<std::collections::BTreeSet<String>>(),
        );
        // The quota is the simulator's for a minute: the other path gets a fresh one.
        google_iam_v2_quota(&sim);
    }
    assert_eq!(
        verdicts[0], verdicts[1],
        "both sweep paths, the same verdicts"
    );
}

#[tokio::test]
async fn reading_ahead_never_waits_for_an_iam_v2_turn_so_named_projects_without_clusters_are_not_held()
 {
    // Seven named projects without clusters: they need no deny policies. Reading ahead takes the
    // turns free at once (four of Google's five a minute, the last left to ancestors) and skips the
    // rest; had it waited, the scan would have sat a minute in the window.
    let world = generated_world(40, 0.0, 5);
    let parsed: Value = serde_json::from_str(&world).unwrap();
    let idle: Vec<String> = parsed["projects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["clusters"].as_array().is_none_or(|c| c.is_empty()))
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .take(7)
        .collect();
    assert_eq!(
        idle.len(),
        7,
        "the generated world has projects without clusters"
    );
    let sim = start_sim(&world).await;
    google_iam_v2_quota(&sim);
    let mut args = vec!["scan", "--format", "json"];
    for p in &idle {
        args.extend(["--project", p.as_str()]);
    }
    args.extend(&FAST[2..]);
    let started = std::time::Instant::now();
    let run = remediator(&args, &sim).await;
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json()["projects"].as_array().unwrap().len(),
        7,
        "{}",
        run.stdout
    );
    let journal = sim.journal();
    let deny = deny_reads(&journal);
    assert!(
        (1..=5).contains(&deny.len()),
        "the turns free at once (the read ahead's four, the sweep's plan the last), no more: {deny:?}"
    );
    assert!(
        deny.iter().all(|e| e.status == 200),
        "never a 429: {deny:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(45),
        "no read waited for the next minute's turns: {took:?}"
    );
}

#[tokio::test]
async fn a_scan_asked_to_wait_takes_its_turns_in_googles_iam_v2_quota_and_reads_every_deny_policy()
{
    // An organization, six folders and a few GKE projects: more deny attachment points than
    // Google's 5 reads a minute, fewer than four minutes of waiting (`--iam-v2-wait 240`) can take.
    // Without it, scan never waits: the reads past the first five are left to later runs (ok*).
    let sim = start_sim(&generated_world(3, 0.0, 5)).await;
    google_iam_v2_quota(&sim);
    let mut args = vec!["scan", "--organization", ORG, "--format", "json"];
    args.extend(&FAST[2..]);
    args.extend(["--iam-v2-wait", "240"]);
    let started = std::time::Instant::now();
    let run = remediator(&args, &sim).await;
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let journal = sim.journal();
    let deny = deny_reads(&journal);
    assert!(
        deny.len() > 5,
        "the world needs more than a minute's reads: {}",
        deny.len()
    );
    assert!(
        deny.iter().all(|e| e.status == 200),
        "never a 429: {:?}",
        deny.iter().map(|e| e.status).collect::<Vec<_>>()
    );
    assert!(
        took >= std::time::Duration::from_secs(59),
        "the reads past the first five waited for the window: {took:?}"
    );
    let statuses: Vec<&str> = findings(&doc)
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| *s == "ok"),
        "every deny policy read, nothing incomplete: {statuses:?}"
    );
}
