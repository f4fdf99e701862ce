//! Simulator semantics over HTTP (no gcloud): IAM policy rules, faults, service accounts, recommender,
//! service usage, container, troubleshooter, control endpoints and world loading.

use std::time::{Duration, Instant};

use gcp_sim::{Faults, Latency, World};
use serde_json::{Value, json};

use crate::support::{Api, start_sim, world_file};

const WORLD: &str = r#"
# roles/undefined.inThisWorld below is bound but defined nowhere: opt out of strict roles for it.
strict_roles: false
organization: {id: "123456789012"}
folders:
  - id: "111"
    parent: organizations/123456789012
groups:
  - email: node-accounts@example.com
    members: [serviceAccount:grouped@demo-project.iam.gserviceaccount.com]
projects:
  - id: demo-project
    number: "100000000001"
    parent: folders/111
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:admin@example.com]
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:gke-nodes@demo-project.iam.gserviceaccount.com, group:node-accounts@example.com]
        - role: roles/undefined.inThisWorld
          members: [user:legacy@example.com]
    custom_roles: [{name: projects/demo-project/roles/nodeLogger, included_permissions: [logging.logEntries.create]}]
    service_accounts:
      - {email: gke-nodes@demo-project.iam.gserviceaccount.com, unique_id: "104619873021358217463"}
      - {email: grouped@demo-project.iam.gserviceaccount.com}
    clusters:
      - {name: c1, location: us-central1, node_pools: [{name: pool-1, service_account: gke-nodes@demo-project.iam.gserviceaccount.com}]}
    recommendations:
      - {location: us-central1, subtype: NODE_SA_MISSING_PERMISSIONS, cluster: c1, id: rec-1, etag: 4f2c0e5e1d3b7a90}
  - id: off-project
    number: "100000000002"
    services: []
"#;

const GET_V3: &str = "v1/projects/demo-project:getIamPolicy";
const SET: &str = "v1/projects/demo-project:setIamPolicy";

async fn read_policy(api: &Api) -> Value {
    let (status, p) = api
        .post(GET_V3, json!({"options": {"requestedPolicyVersion": 3}}))
        .await;
    assert_eq!(status, 200, "{p}");
    p
}

#[tokio::test]
async fn every_policy_write_changes_the_etag_and_a_stale_etag_gets_409_aborted() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let before = read_policy(&api).await;
    let etag = before["etag"].as_str().expect("etag").to_owned();

    let mut policy = before.clone();
    policy["bindings"]
        .as_array_mut()
        .expect("bindings")
        .push(json!({"role": "roles/viewer", "members": ["user:bob@example.com"]}));
    let (status, written) = api.post(SET, json!({"policy": policy})).await;
    assert_eq!(status, 200, "{written}");
    assert_ne!(written["etag"], json!(etag));

    let (status, err) = api.post(SET, json!({"policy": before})).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["status"], "ABORTED");
    assert_eq!(
        err["error"]["message"],
        "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."
    );

    // Without an etag the write overwrites.
    let (status, over) = api
        .post(SET, json!({"policy": {"bindings": before["bindings"]}}))
        .await;
    assert_eq!(status, 200, "{over}");
    assert_eq!(over["bindings"], before["bindings"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn conditional_bindings_need_version_3_and_old_clients_see_withcond_roles() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let p = read_policy(&api).await;
    assert_eq!(
        p["version"], 1,
        "no conditions yet: version 1 even when 3 was requested"
    );

    let mut bindings = p["bindings"].as_array().cloned().expect("bindings");
    bindings.push(json!({"role": "roles/viewer", "members": ["user:c@example.com"], "condition": {"title": "t", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}}));
    let (status, err) = api
        .post(
            SET,
            json!({"policy": {"bindings": bindings, "etag": p["etag"], "version": 1}}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{err}"
    );

    let (status, ok) = api
        .post(
            SET,
            json!({"policy": {"bindings": bindings, "etag": p["etag"], "version": 3}}),
        )
        .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["version"], 3);

    let (_, v1) = api
        .post(GET_V3, json!({"options": {"requestedPolicyVersion": 1}}))
        .await;
    assert_eq!(v1["version"], 1);
    let mangled = v1["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["members"][0] == "user:c@example.com")
        .expect("binding")
        .clone();
    assert!(
        mangled["role"]
            .as_str()
            .expect("role")
            .starts_with("roles/viewer_withcond_"),
        "{mangled}"
    );
    assert!(mangled.get("condition").is_none());
    let (_, v3) = api.post(GET_V3, json!({})).await;
    assert!(
        v3["bindings"].to_string().contains("_withcond_"),
        "no requested version means version 1"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn limits_unknown_roles_and_missing_projects_answer_like_google() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let members: Vec<String> = (0..1501)
        .map(|i| format!("user:u{i}@example.com"))
        .collect();
    let (status, err) = api
        .post(
            SET,
            json!({"policy": {"bindings": [{"role": "roles/viewer", "members": members}]}}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("1501"),
        "{err}"
    );

    let (status, err) = api.post(SET, json!({"policy": {"bindings": [{"role": "roles/no.suchRole", "members": ["user:a@example.com"]}]}})).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "Role roles/no.suchRole is not supported for this resource."
    );

    let (status, err) = api
        .post("v1/projects/nope-project:getIamPolicy", json!({}))
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let (status, err) = api.get("v1/no/such/path").await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, err) = api.get("v1/roles/no.suchRole").await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    // Through `projects/-` Google refuses an account it cannot find (403); in its project, 404.
    let (status, err) = api
        .get("v1/projects/-/serviceAccounts/ghost@demo-project.iam.gserviceaccount.com")
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{err}"
    );
    let (status, err) = api
        .get("v1/projects/demo-project/serviceAccounts/ghost@demo-project.iam.gserviceaccount.com")
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (404, Some("NOT_FOUND")),
        "{err}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_concurrent_writer_makes_the_next_set_with_the_old_etag_conflict() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let (status, _) = api.put("_sim/concurrent-writer", json!({"project": "demo-project", "probability": 1.0, "max_writes": 1, "role": "roles/viewer"})).await;
    assert_eq!(status, 200);

    let p = read_policy(&api).await;
    let (status, err) = api.post(SET, json!({"policy": p})).await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (409, Some("ABORTED"))
    );

    let (_, writer) = api.get("_sim/concurrent-writer").await;
    assert_eq!(writer["added"], json!(["user:writer-1@example.com"]));
    let stored = sim.policy("projects/demo-project").expect("policy");
    assert!(stored.bindings.iter().any(|b| {
        b.role.as_str() == "roles/viewer"
            && b.members
                .iter()
                .any(|m| m.as_str() == "user:writer-1@example.com")
    }));

    // max_writes reached: a retry with a fresh read succeeds.
    let p = read_policy(&api).await;
    let (status, _) = api.post(SET, json!({"policy": p})).await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_errors_target_one_api_and_denied_permissions_get_error_info() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let (status, _) = api
        .put(
            "_sim/faults",
            json!({"errors": {"cloudresourcemanager": {"503": 1.0}}, "seed": 7}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, err) = api.post(GET_V3, json!({})).await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (503, Some("UNAVAILABLE"))
    );
    let (status, _) = api
        .get("v1/roles/container.defaultNodeServiceAccount")
        .await;
    assert_eq!(status, 200, "other APIs are untouched");

    sim.set_faults(Faults {
        deny: ["resourcemanager.projects.setIamPolicy".to_owned()].into(),
        ..Faults::default()
    });
    let p = read_policy(&api).await;
    let (status, err) = api.post(SET, json!({"policy": p})).await;
    assert_eq!(status, 403);
    assert_eq!(
        err["error"]["message"],
        "Permission 'resourcemanager.projects.setIamPolicy' denied on resource (or it may not exist)."
    );
    assert_eq!(
        err["error"]["details"][0]["reason"],
        "IAM_PERMISSION_DENIED"
    );
    assert_eq!(
        err["error"]["details"][0]["metadata"]["permission"],
        "resourcemanager.projects.setIamPolicy"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_latency_delays_every_google_call() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    sim.set_faults(Faults {
        latency: Latency {
            fixed_ms: 150,
            jitter_ms: 20,
        },
        ..Faults::default()
    });
    let started = Instant::now();
    let (status, _) = api.get("v1/projects/demo-project").await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let (status, _) = api.get("_sim/stats").await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "control endpoints are not delayed"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_service_account_marks_its_members_deleted_and_undelete_reverts() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let sa = "v1/projects/-/serviceAccounts/gke-nodes@demo-project.iam.gserviceaccount.com";
    let (status, body) = api.get(sa).await;
    assert_eq!(status, 200);
    assert!(
        body.get("disabled").is_none(),
        "enabled accounts have no `disabled` key: {body}"
    );
    assert_eq!(body["uniqueId"], "104619873021358217463");

    let (status, _) = api.post(&format!("{sa}:disable"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(api.get(sa).await.1["disabled"], true);

    let (status, _) = api.call("DELETE", sa, None).await;
    assert_eq!(status, 200);
    let member = "deleted:serviceAccount:gke-nodes@demo-project.iam.gserviceaccount.com?uid=104619873021358217463";
    assert!(read_policy(&api).await.to_string().contains(member));
    assert_eq!(
        api.get(sa).await.0,
        403,
        "a deleted account is refused through projects/- (as Google does)"
    );
    let in_project = sa.replace("projects/-/", "projects/demo-project/");
    assert_eq!(
        api.get(&in_project).await.0,
        404,
        "and not found in its project"
    );

    let (status, body) = api
        .post(
            "v1/projects/-/serviceAccounts/104619873021358217463:undelete",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["restoredAccount"]["email"],
        "gke-nodes@demo-project.iam.gserviceaccount.com"
    );
    let p = read_policy(&api).await.to_string();
    assert!(
        !p.contains("deleted:")
            && p.contains("serviceAccount:gke-nodes@demo-project.iam.gserviceaccount.com")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn recommendations_follow_etags_and_state_rules() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let base = "v1/projects/demo-project/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations";
    let (status, list) = api.get(base).await;
    assert_eq!(status, 200);
    let rec = &list["recommendations"][0];
    assert_eq!(
        rec["name"],
        format!(
            "projects/100000000001/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations/rec-1"
        )
    );
    assert_eq!(rec["etag"], "\"4f2c0e5e1d3b7a90\"");
    assert_eq!(
        rec["targetResources"][0],
        "//container.googleapis.com/projects/100000000001/locations/us-central1/clusters/c1"
    );
    assert_eq!(rec["stateInfo"]["state"], "ACTIVE");

    let (status, claimed) = api
        .post(
            &format!("{base}/rec-1:markClaimed"),
            json!({"etag": rec["etag"], "stateMetadata": {"run": "abc123"}}),
        )
        .await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["stateInfo"]["state"], "CLAIMED");
    assert_ne!(claimed["etag"], rec["etag"]);

    let (status, err) = api
        .post(
            &format!("{base}/rec-1:markSucceeded"),
            json!({"etag": rec["etag"]}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (409, Some("ABORTED"))
    );
    let (status, err) = api
        .post(
            &format!("{base}/rec-1:markDismissed"),
            json!({"etag": claimed["etag"]}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (400, Some("FAILED_PRECONDITION"))
    );
    let (status, done) = api
        .post(
            &format!("{base}/rec-1:markSucceeded"),
            json!({"etag": claimed["etag"]}),
        )
        .await;
    assert_eq!(
        (status, done["stateInfo"]["state"].as_str()),
        (200, Some("SUCCEEDED"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn services_enable_and_disable_and_a_disabled_container_api_answers_service_disabled() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let (status, err) = api
        .get("v1/projects/off-project/locations/-/clusters")
        .await;
    assert_eq!(status, 403);
    assert_eq!(err["error"]["details"][0]["reason"], "SERVICE_DISABLED");

    let svc = "v1/projects/100000000002/services/container.googleapis.com";
    assert_eq!(api.get(svc).await.1["state"], "DISABLED");
    let (status, op) = api.post(&format!("{svc}:enable"), json!({})).await;
    assert_eq!((status, op["done"].as_bool()), (200, Some(true)), "{op}");
    let op_name = op["name"].as_str().expect("name");
    assert!(op_name.starts_with("operations/acf.p2-100000000002-"));
    assert_eq!(api.get(&format!("v1/{op_name}")).await.0, 200);
    assert_eq!(api.get(svc).await.1["state"], "ENABLED");
    assert_eq!(
        api.get("v1/projects/off-project/locations/-/clusters")
            .await
            .0,
        200
    );

    assert_eq!(api.post(&format!("{svc}:disable"), json!({})).await.0, 200);
    let (status, err) = api.post(&format!("{svc}:disable"), json!({})).await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (400, Some("FAILED_PRECONDITION"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_node_pool_created_through_the_api_is_listed_with_its_service_account() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let pools = "v1/projects/demo-project/locations/us-central1/clusters/c1/nodePools";
    let (status, op) = api.post(pools, json!({"nodePool": {"name": "pool-2", "config": {"serviceAccount": "grouped@demo-project.iam.gserviceaccount.com"}}})).await;
    assert_eq!((status, op["status"].as_str()), (200, Some("DONE")), "{op}");
    let op_name = op["name"].as_str().expect("operation name");
    assert_eq!(
        api.get(&format!(
            "v1/projects/demo-project/locations/us-central1/operations/{op_name}"
        ))
        .await
        .0,
        200
    );
    let (_, pool) = api.get(&format!("{pools}/pool-2")).await;
    assert_eq!(
        pool["config"]["serviceAccount"],
        "grouped@demo-project.iam.gserviceaccount.com"
    );
    let (_, cluster) = api
        .get("v1/projects/demo-project/locations/us-central1/clusters/c1")
        .await;
    assert_eq!(cluster["autopilot"], json!({}));
    assert_eq!(cluster["nodePools"].as_array().map(Vec::len), Some(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_troubleshooter_resolves_groups_and_inherited_policies() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let ask = |principal: &str, permission: &str| json!({"accessTuple": {"principal": principal, "fullResourceName": "//cloudresourcemanager.googleapis.com/projects/demo-project", "permission": permission}});
    let (status, r) = api
        .post(
            "v3/iam:troubleshoot",
            ask(
                "grouped@demo-project.iam.gserviceaccount.com",
                "monitoring.timeSeries.create",
            ),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["overallAccessState"], "CAN_ACCESS");
    assert_eq!(
        r["accessTuple"]["permissionFqdn"],
        "monitoring.googleapis.com/timeSeries.create"
    );
    let (_, r) = api
        .post(
            "v3/iam:troubleshoot",
            ask("someone@example.com", "monitoring.timeSeries.create"),
        )
        .await;
    assert_eq!(r["overallAccessState"], "CANNOT_ACCESS");
    let explained = r["allowPolicyExplanation"]["explainedPolicies"]
        .as_array()
        .map(Vec::len);
    assert_eq!(
        explained,
        Some(3),
        "project, folder and organization policies are explained"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn callers_named_by_bearer_tokens_appear_in_the_journal_and_stats_count_endpoints() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    api.as_caller("gke-iam-remediator@ops.iam.gserviceaccount.com")
        .get("v1/projects/demo-project")
        .await;
    api.get("v3/projects/100000000001").await;
    let (_, journal) = api.get("_sim/journal").await;
    let callers: Vec<&str> = journal["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["caller"].as_str())
        .collect();
    assert_eq!(
        callers,
        [
            "serviceAccount:gke-iam-remediator@ops.iam.gserviceaccount.com",
            "user:admin@example.com"
        ]
    );
    let stats = sim.stats();
    assert_eq!(stats.total, 2);
    assert_eq!(
        stats.by_endpoint.get("cloudresourcemanager.projects.get"),
        Some(&2)
    );
    sim.reset_stats();
    assert_eq!(sim.stats().total, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_world_can_be_dumped_reloaded_and_reset() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let p = read_policy(&api).await;
    assert_eq!(
        api.post(SET, json!({"policy": {"bindings": [], "etag": p["etag"]}}))
            .await
            .0,
        200
    );
    let (_, dumped) = api.get("_sim/world").await;
    let world = World::from_yaml(&dumped.to_string(), "dump").expect("a dump is a valid world");
    assert!(world.projects[0].iam_policy.is_none());
    let (status, _) = api.post("_sim/reset", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(read_policy(&api).await["bindings"], p["bindings"]);

    let url = format!("{}_sim/world", api.base);
    let r = reqwest::Client::new()
        .put(url)
        .body("projects:\n  - id: other-project\n    number: \"5\"\n    bogus: 1\n")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(":4:") && message.contains("projects[0]") && message.contains("bogus"),
        "{message}"
    );
    sim.shutdown().await;
}

#[test]
fn bad_world_files_name_the_file_the_line_and_the_field() {
    let err = World::from_yaml("projects:\n  - id: demo-project\n    number: \"1\"\n    clusters:\n      - {name: c1, location: us-central1, nodepools: []}\n", "bad.yaml")
        .expect_err("unknown key");
    let text = err.to_string();
    assert!(text.starts_with("bad.yaml:5:"), "{text}");
    assert!(
        text.contains("projects[0].clusters[0]") && text.contains("nodepools"),
        "{text}"
    );

    let err = World::from_yaml(
        "projects:\n  - id: a-project\n    number: \"1\"\n  - id: b-project\n    number: \"1\"\n",
        "dup.yaml",
    )
    .expect_err("duplicate");
    let text = err.to_string();
    assert!(
        text.starts_with("dup.yaml:3:") && text.contains("projects[1].number"),
        "{text}"
    );

    let err = World::from_yaml("projects:\n  - id: a-project\n    number: x1\n", "num.yaml")
        .expect_err("number");
    assert!(err.to_string().contains("projects[0].number"), "{err}");
}

#[test]
fn every_shipped_world_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/worlds");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("infra/worlds exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            World::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 9, "expected the nine shipped worlds, found {n}");
    let _ = world_file("demo.yaml");
}

#[tokio::test]
async fn resource_manager_lists_projects_by_parent_and_walks_the_hierarchy() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let (_, v1) = api
        .get("v1/projects?filter=parent.id:111%20parent.type:folder")
        .await;
    assert_eq!(v1["projects"].as_array().map(Vec::len), Some(1));
    assert_eq!(v1["projects"][0]["projectNumber"], "100000000001");
    let (_, v3) = api.get("v3/projects?parent=folders/111").await;
    assert_eq!(v3["projects"][0]["name"], "projects/100000000001");
    let (_, search) = api.get("v3/projects:search?query=parent:folders/111").await;
    assert_eq!(search["projects"][0]["projectId"], "demo-project");
    let (_, folders) = api
        .get("v3/folders?parent=organizations/123456789012")
        .await;
    assert_eq!(folders["folders"][0]["name"], "folders/111");
    let (_, ancestry) = api
        .post("v1/projects/demo-project:getAncestry", json!({}))
        .await;
    let types: Vec<&str> = ancestry["ancestor"]
        .as_array()
        .expect("ancestors")
        .iter()
        .filter_map(|a| a["resourceId"]["type"].as_str())
        .collect();
    assert_eq!(types, ["project", "folder", "organization"]);
    let (status, folder_policy) = api.post("v3/folders/111:getIamPolicy", json!({})).await;
    assert_eq!(status, 200);
    assert!(folder_policy["etag"].is_string());
    let (status, _) = api.get("v3/organizations/123456789012").await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn set_iam_policy_keeps_audit_configs_unless_the_update_mask_names_them() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let audit = json!([{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}]);
    let p = read_policy(&api).await;
    let (status, set) = api.post(SET, json!({"policy": {"bindings": p["bindings"], "auditConfigs": audit}, "updateMask": "bindings,etag,auditConfigs"})).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["auditConfigs"], audit);
    let (status, set) = api
        .post(SET, json!({"policy": {"bindings": p["bindings"]}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        set["auditConfigs"], audit,
        "the default mask `bindings,etag` keeps audit configs"
    );
    // gcloud echoes the etag URL-safe encoded; it still matches.
    let etag = set["etag"]
        .as_str()
        .expect("etag")
        .replace('+', "-")
        .replace('/', "_");
    let (status, _) = api
        .post(
            SET,
            json!({"policy": {"bindings": p["bindings"], "etag": etag}}),
        )
        .await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn custom_roles_are_served_and_only_known_roles_can_be_newly_bound() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let (status, role) = api.get("v1/projects/demo-project/roles/nodeLogger").await;
    assert_eq!(status, 200, "{role}");
    assert_eq!(
        role["includedPermissions"],
        json!(["logging.logEntries.create"])
    );
    assert_eq!(
        api.get("v1/projects/demo-project/roles/missing").await.0,
        404
    );
    let (_, predefined) = api
        .get("v1/roles/container.defaultNodeServiceAccount")
        .await;
    assert_eq!(
        (predefined["etag"].as_str(), predefined["stage"].as_str()),
        (Some("AA=="), Some("GA"))
    );

    // A role the world binds without defining stays writable; a new unknown custom role is rejected.
    let p = read_policy(&api).await;
    let mut bindings = p["bindings"].as_array().cloned().expect("bindings");
    bindings.push(json!({"role": "projects/demo-project/roles/nodeLogger", "members": ["serviceAccount:grouped@demo-project.iam.gserviceaccount.com"]}));
    let (status, body) = api
        .post(
            SET,
            json!({"policy": {"bindings": bindings, "etag": p["etag"]}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    bindings.push(
        json!({"role": "projects/demo-project/roles/ghost", "members": ["user:a@example.com"]}),
    );
    let (status, err) = api
        .post(SET, json!({"policy": {"bindings": bindings}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "Role (projects/demo-project/roles/ghost) does not exist in the resource's hierarchy."
    );
    sim.shutdown().await;
}

/// A world for the strictness checks: strict by default, one lenient twin.
const STRICT: &str = r#"
projects:
  - id: strict-project
    number: "400000000001"
    services: [container.googleapis.com, compute.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:admin@example.com]
    service_accounts:
      - {email: nodes@strict-project.iam.gserviceaccount.com}
      - {email: gone@strict-project.iam.gserviceaccount.com, deleted: true}
    clusters:
      - {name: nap, location: us-central1, autoprovisioning_service_account: nodes@strict-project.iam.gserviceaccount.com, node_pools: [{name: p1, service_account: nodes@strict-project.iam.gserviceaccount.com}]}
"#;

async fn grant(api: &Api, member: &str) -> (u16, Value) {
    let mut p = api
        .post("v1/projects/strict-project:getIamPolicy", json!({}))
        .await
        .1;
    p["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "roles/compute.viewer", "members": [member]}));
    api.post(
        "v1/projects/strict-project:setIamPolicy",
        json!({"policy": p}),
    )
    .await
}

#[tokio::test]
async fn set_iam_policy_rejects_members_that_do_not_exist_unless_the_world_is_lenient() {
    let sim = start_sim(STRICT).await;
    let api = Api::new(&sim);
    for (member, message) in [
        (
            "serviceAccount:ghost@strict-project.iam.gserviceaccount.com",
            "Service account ghost@strict-project.iam.gserviceaccount.com does not exist.",
        ),
        (
            "serviceAccount:gone@strict-project.iam.gserviceaccount.com",
            "Service account gone@strict-project.iam.gserviceaccount.com does not exist.",
        ),
        (
            "serviceAccount:service-400000000001@gcp-sa-pubsub.iam.gserviceaccount.com",
            "Service account service-400000000001@gcp-sa-pubsub.iam.gserviceaccount.com does not exist.",
        ),
        (
            "group:nobody@example.com",
            "Group nobody@example.com does not exist.",
        ),
    ] {
        let (status, err) = grant(&api, member).await;
        assert_eq!(status, 400, "{member}: {err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(err["error"]["message"], message);
    }
    for member in [
        "serviceAccount:nodes@strict-project.iam.gserviceaccount.com",
        "serviceAccount:400000000001-compute@developer.gserviceaccount.com",
        "serviceAccount:service-400000000001@container-engine-robot.iam.gserviceaccount.com",
        "serviceAccount:400000000001@cloudservices.gserviceaccount.com",
        "user:someone@example.com",
    ] {
        let (status, err) = grant(&api, member).await;
        assert_eq!(status, 200, "{member}: {err}");
    }
    // Sorted as IAM serves it, whatever order it was written in.
    let p = api
        .post("v1/projects/strict-project:getIamPolicy", json!({}))
        .await
        .1;
    let roles: Vec<&str> = p["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["roles/compute.viewer", "roles/owner"]);
    let members = p["bindings"][0]["members"].as_array().unwrap();
    assert!(
        members.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
        "{p}"
    );
    // Unknown fields are refused with Google's message.
    let (status, err) = api
        .post(
            "v1/projects/strict-project:setIamPolicy",
            json!({"policy": {"bindings": [], "bogus": 1}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "Invalid JSON payload received. Unknown name \"bogus\" at 'policy': Cannot find field."
    );
    sim.load_world(
        World::from_yaml(&format!("strict_members: false\n{STRICT}"), "lenient").unwrap(),
    );
    let (status, err) = grant(
        &api,
        "serviceAccount:ghost@strict-project.iam.gserviceaccount.com",
    )
    .await;
    assert_eq!(status, 200, "{err}");
    sim.shutdown().await;
}

async fn pubsub_state(api: &Api) -> Value {
    api.get("v1/projects/400000000001/services/pubsub.googleapis.com")
        .await
        .1["state"]
        .clone()
}

#[tokio::test]
async fn standard_clusters_with_an_autoprovisioning_account_run_nap_and_operations_can_stay_pending()
 {
    let sim = start_sim(STRICT).await;
    let api = Api::new(&sim);
    let (status, cl) = api
        .get("v1/projects/strict-project/locations/us-central1/clusters/nap")
        .await;
    assert_eq!(status, 200, "{cl}");
    assert_eq!(cl["autoscaling"]["enableNodeAutoprovisioning"], true);
    assert_eq!(
        cl["autoscaling"]["autoprovisioningNodePoolDefaults"]["serviceAccount"],
        "nodes@strict-project.iam.gserviceaccount.com"
    );
    assert_eq!(
        cl["nodeConfig"]["serviceAccount"],
        "nodes@strict-project.iam.gserviceaccount.com"
    );
    assert!(cl["loggingService"].is_string() && cl["endpoint"].is_string());

    let (status, _) = api
        .call(
            "PUT",
            "_sim/operations",
            Some(json!({"polls_until_done": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, op) = api
        .post(
            "v1/projects/400000000001/services/pubsub.googleapis.com:enable",
            json!({}),
        )
        .await;
    assert_eq!((status, op["done"].as_bool()), (200, Some(false)), "{op}");
    let path = format!("v1/{}", op["name"].as_str().unwrap());
    assert_eq!(api.get(&path).await.1["done"], false);
    assert_eq!(
        pubsub_state(&api).await,
        "DISABLED",
        "not before the operation is done"
    );
    assert_eq!(api.get(&path).await.1["done"], true);
    assert_eq!(pubsub_state(&api).await, "ENABLED");
    // Back to operations that are done at once for the rest.
    let (status, _) = api
        .call(
            "PUT",
            "_sim/operations",
            Some(json!({"polls_until_done": 0})),
        )
        .await;
    assert_eq!(status, 200);
    // Made-up services do not exist; compute cannot go while container depends on it.
    let (status, err) = api
        .post(
            "v1/projects/400000000001/services/made-up.googleapis.com:enable",
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{err}");
    let (status, err) = api
        .post(
            "v1/projects/400000000001/services/compute.googleapis.com:disable",
            json!({}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (400, Some("FAILED_PRECONDITION")),
        "{err}"
    );
    let (status, _) = api
        .post(
            "v1/projects/400000000001/services/compute.googleapis.com:disable",
            json!({"disableDependentServices": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, svc) = api
        .get("v1/projects/400000000001/services/container.googleapis.com")
        .await;
    assert_eq!(svc["state"], "DISABLED", "dependents go with it");
    sim.shutdown().await;
}

#[tokio::test]
async fn logging_pages_to_the_last_entry_and_reads_or_not_and_unquoted_values() {
    let sim = start_sim(STRICT).await;
    let api = Api::new(&sim);
    for i in 0..5 {
        let (status, err) = grant(&api, &format!("user:u{i}@example.com")).await;
        assert_eq!(status, 200, "{err}");
    }
    let mut token = String::new();
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let (status, page) = api
            .post(
                "v2/entries:list",
                json!({"resourceNames": ["projects/strict-project"], "pageSize": 2,
                       "filter": "protoPayload.methodName=SetIamPolicy AND (resource.type=project OR resource.type=\"nothing\") AND NOT severity<NOTICE",
                       "orderBy": "timestamp desc", "pageToken": token}),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen += page["entries"].as_array().map_or(0, Vec::len);
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!((seen, pages), (5, 3));
    let (status, _) = api
        .post(
            "v2/entries:list",
            json!({"resourceNames": ["projects/strict-project"], "filter": "thud=1"}),
        )
        .await;
    assert_eq!(status, 400);
    sim.shutdown().await;
}

/// Google's answer to a query parameter the method does not declare, as the front end words it.
fn unbound(name: &str) -> String {
    format!(
        "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message."
    )
}

#[tokio::test]
async fn a_query_parameter_the_method_does_not_declare_is_refused_with_400_and_the_system_ones_pass()
 {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let accounts = "v1/projects/demo-project/serviceAccounts";
    // Declared ones, in either spelling, and the standard parameters (plain or `$`-prefixed as GAPIC
    // sends them) are bound.
    let (status, page) = api
        .get(&format!(
            "{accounts}?page_size=1&pageToken=&alt=json&prettyPrint=false&quotaUser=q&fields=accounts&%24alt=json%3Benum-encoding%3Dint&%24.xgafv=2"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["accounts"].as_array().map(Vec::len), Some(1), "{page}");
    // `filter` is another list method's parameter, `bogus` nobody's.
    for name in ["bogus", "filter", "PageSize"] {
        let (status, err) = api.get(&format!("{accounts}?{name}=1")).await;
        assert_eq!(status, 400, "{name}: {err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(err["error"]["message"], unbound(name));
        assert_eq!(
            err["error"]["details"][0],
            json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
                   "fieldViolations": [{"description": unbound(name)}]})
        );
    }
    // Per method and version: v3 projects.list binds `parent`, v1 does not; a POST whose body is the
    // request binds nothing from the query.
    let (status, _) = api
        .get("v3/projects?parent=folders/111&showDeleted=false")
        .await;
    assert_eq!(status, 200);
    let (status, err) = api.get("v1/projects?parent=folders/111").await;
    assert_eq!(
        (status, err["error"]["message"].clone()),
        (400, json!(unbound("parent")))
    );
    let (status, err) = api
        .post(
            &format!("{GET_V3}?options.requestedPolicyVersion=3"),
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["error"]["message"],
        unbound("options.requestedPolicyVersion")
    );
    // Container's zonal path names the cluster by `name`, its location path by `clusterId`.
    let (status, err) = api
        .get("v1/projects/demo-project/locations/us-central1/clusters/c1?name=x")
        .await;
    assert_eq!(
        (status, err["error"]["message"].clone()),
        (400, json!(unbound("name")))
    );
    let (status, _) = api
        .get("v1/projects/demo-project/zones/us-central1/clusters/c1?name=projects/demo-project/locations/us-central1/clusters/c1")
        .await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_asset_type_google_does_not_support_for_the_content_type_is_refused_with_400() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let assets = "v1/projects/demo-project/assets";
    let refused = |content: &str, ty: &str| {
        format!(
            "No {content} found that matches asset type {ty} for consumer project: 100000000001. For a list of supported content types and asset types, see https://cloud.google.com/asset-inventory/docs/supported-asset-types"
        )
    };
    for (content, ty) in [
        ("RESOURCE", "container.googleapis.com/Bogus"),
        ("RESOURCE", "Cluster"),
        ("RESOURCE", "nothing\\.googleapis\\.com/.*"),
        ("IAM_POLICY", "iam.googleapis.com/Role"),
    ] {
        let (status, err) = api
            .get(&format!("{assets}?contentType={content}&assetTypes={ty}"))
            .await;
        assert_eq!(status, 400, "{content} {ty}: {err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(err["error"]["message"], refused(content, ty));
        assert_eq!(
            err["error"]["details"][0]["fieldViolations"][0]["field"],
            "asset_types"
        );
    }
    // A supported type the world holds nothing of lists empty; a pattern matching one is fine.
    for ty in [
        "compute.googleapis.com/Instance",
        "compute.googleapis.com.*",
        "storage.googleapis.com/Bucket",
    ] {
        let (status, page) = api
            .get(&format!("{assets}?contentType=IAM_POLICY&assetTypes={ty}"))
            .await;
        assert_eq!(status, 200, "{ty}: {page}");
        assert!(page.get("assets").is_none(), "{page}");
    }
    let (status, page) = api
        .get(&format!(
            "{assets}?content_type=RESOURCE&asset_types=container.googleapis.com/Cluster"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["assets"].as_array().map(Vec::len), Some(1), "{page}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_recommendation_filter_over_500_characters_is_refused_with_400() {
    let sim = start_sim(WORLD).await;
    let api = Api::new(&sim);
    let list = |recommender: &str, filter: &str| {
        format!(
            "v1/projects/demo-project/locations/us-central1/recommenders/{recommender}/recommendations?filter={}",
            filter.replace(' ', "%20")
        )
    };
    let state = "stateInfo.state = ACTIVE";
    let at_limit = format!("{state}{}", " ".repeat(500 - state.len()));
    let (status, page) = api
        .get(&list("google.container.DiagnosisRecommender", &at_limit))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["recommendations"].as_array().map(Vec::len), Some(1));
    let over = format!("{at_limit} ");
    for recommender in [
        "google.container.DiagnosisRecommender",
        "google.iam.policy.Recommender",
    ] {
        let (status, err) = api.get(&list(recommender, &over)).await;
        assert_eq!(status, 400, "{recommender}: {err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("501") && message.contains("500 characters"),
            "{message}"
        );
        assert_eq!(
            err["error"]["details"][0]["fieldViolations"][0]["field"],
            "filter"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn org_policy_answers_a_constraint_that_does_not_exist_with_404_not_found() {
    let world = WORLD.replace(
        "organization: {id: \"123456789012\"}",
        "organization:\n  id: \"123456789012\"\n  org_policies:\n    - {constraint: custom.denyPublicClusters, enforce: true}",
    );
    let sim = start_sim(&world).await;
    let api = Api::new(&sim);
    let effective = |c: &str| format!("v2/projects/demo-project/policies/{c}:getEffectivePolicy");
    let (status, p) = api
        .get(&effective(
            "iam.automaticIamGrantsForDefaultServiceAccounts",
        ))
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["spec"]["rules"][0]["enforce"], false);
    // A custom constraint exists when the world sets a policy on it.
    let (status, p) = api.get(&effective("custom.denyPublicClusters")).await;
    assert_eq!(
        (status, p["spec"]["rules"][0]["enforce"].clone()),
        (200, json!(true))
    );
    for path in [
        effective("iam.automaticIamGrantsForDefaultServiceAccount"),
        effective("custom.neverDefined"),
        "v2/organizations/123456789012/policies/iam.noSuchConstraint".to_owned(),
    ] {
        let (status, err) = api.get(&path).await;
        assert_eq!(status, 404, "{path}: {err}");
        assert_eq!(
            err["error"],
            json!({"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"})
        );
    }
    sim.shutdown().await;
}
