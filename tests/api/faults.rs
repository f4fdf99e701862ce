//! Fault and abuse tests: the remediator under concurrent writers, injected 429/500/503 errors, a `serve`
//! killed mid-flight, and forged or hostile push bodies. No timing assertions: only end states.
//!
//! What is "allowed to be restored" is never hard-coded: a dry-run `scan` (no faults) lists the
//! would-restore actions first, and every check compares policies before and after. So the tests run
//! unchanged on other worlds and corpora:
//! - `FAULTS_WORLD=FILE` replaces the built-in broken world (its projects must exist; any breakage).
//! - `FAULTS_CORPUS=DIR` adds every file in DIR as a raw push body to the hostile-input test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gcp_sim::{ConcurrentWriter, Faults, Latency, SimHandle, SimOptions};
use serde_json::{Value, json};

use crate::support::binary::{Run, Serve, remediator_as};
use crate::support::service::{Loop, SELF, removal_entry, self_env};
use crate::support::{Api, TempFile, start_sim_with};

/// Roles the default requirement list may restore.
const LIST_ROLES: [&str; 4] = [
    "roles/container.serviceAgent",
    "roles/container.defaultNodeServiceAgent",
    "roles/container.defaultNodeServiceAccount",
    "roles/editor",
];

/// Four projects, three broken in different ways, one healthy; a folder grant and a conditional binding
/// that must survive untouched.
const WORLD: &str = r#"
organization:
  id: "900000000001"
folders:
  - id: "910000000001"
    parent: organizations/900000000001
    iam_policy:
      bindings:
        - role: roles/viewer
          members: [group:auditors@example.com]
projects:
  - id: fa-one
    number: "400000000001"
    parent: folders/910000000001
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/container.defaultNodeServiceAgent
          members: [serviceAccount:service-400000000001@gcp-sa-gkenode.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:gke-nodes@fa-one.iam.gserviceaccount.com]
        - role: roles/storage.objectViewer
          members: [user:reader@example.com]
          condition: {title: gke-logs-bucket-only, expression: "resource.name.startsWith('projects/_/buckets/gke-logs')"}
    service_accounts:
      - {email: gke-nodes@fa-one.iam.gserviceaccount.com, unique_id: "140000000000000000001"}
    clusters:
      - name: c1
        location: us-central1
        node_pools:
          - {name: pool-1, service_account: gke-nodes@fa-one.iam.gserviceaccount.com}
  - id: fa-two
    number: "400000000002"
    parent: folders/910000000001
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/container.serviceAgent
          members: [serviceAccount:service-400000000002@container-engine-robot.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAgent
          members: [serviceAccount:service-400000000002@gcp-sa-gkenode.iam.gserviceaccount.com]
        - role: roles/logging.logWriter
          members: [serviceAccount:gke-nodes@fa-two.iam.gserviceaccount.com]
    service_accounts:
      - {email: gke-nodes@fa-two.iam.gserviceaccount.com, unique_id: "140000000000000000002"}
    clusters:
      - name: c1
        location: us-east1
        node_pools:
          - {name: pool-1, service_account: gke-nodes@fa-two.iam.gserviceaccount.com}
          - {name: pool-2, service_account: default}
  - id: fa-three
    number: "400000000003"
    parent: organizations/900000000001
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/editor
          members: [serviceAccount:400000000003-compute@developer.gserviceaccount.com]
    clusters:
      - {name: ap1, location: europe-west1, autopilot: true, autoprovisioning_service_account: default}
  - id: fa-healthy
    number: "400000000004"
    parent: organizations/900000000001
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/container.serviceAgent
          members: [serviceAccount:service-400000000004@container-engine-robot.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAgent
          members: [serviceAccount:service-400000000004@gcp-sa-gkenode.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:gke-nodes@fa-healthy.iam.gserviceaccount.com]
    service_accounts:
      - {email: gke-nodes@fa-healthy.iam.gserviceaccount.com, unique_id: "140000000000000000004"}
    clusters:
      - name: c1
        location: us-central1
        node_pools:
          - {name: pool-1, service_account: gke-nodes@fa-healthy.iam.gserviceaccount.com}
"#;

fn world_text() -> String {
    match std::env::var("FAULTS_WORLD") {
        Ok(p) if !p.is_empty() => {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("FAULTS_WORLD {p}: {e}"))
        }
        _ => WORLD.to_owned(),
    }
}

async fn start_world() -> SimHandle {
    start_sim_with(&world_text(), SimOptions::default()).await
}

/// Every resource's policy as JSON, keyed by `projects/ID`, `folders/N`, `organizations/N`.
fn all_policies(sim: &SimHandle) -> BTreeMap<String, Value> {
    let world = serde_json::to_value(sim.dump()).expect("world serializes");
    let mut names = Vec::new();
    if let Some(id) = world["organization"]["id"].as_str() {
        names.push(format!("organizations/{id}"));
    }
    for f in world["folders"].as_array().into_iter().flatten() {
        names.push(format!("folders/{}", f["id"].as_str().unwrap_or_default()));
    }
    for p in world["projects"].as_array().into_iter().flatten() {
        names.push(format!("projects/{}", p["id"].as_str().unwrap_or_default()));
    }
    names
        .into_iter()
        .filter_map(|n| {
            let p = sim.policy(&n)?;
            Some((n, serde_json::to_value(p).expect("policy serializes")))
        })
        .collect()
}

/// (role, condition as JSON text) -> members, for every binding of a policy.
fn grants(policy: &Value) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for b in policy["bindings"].as_array().into_iter().flatten() {
        let key = (
            b["role"].as_str().unwrap_or_default().to_owned(),
            b.get("condition")
                .map(|c| c.to_string())
                .unwrap_or_default(),
        );
        out.entry(key).or_default().extend(
            b["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_owned)),
        );
    }
    out
}

/// Panics if a binding lists a member twice, or a (role, condition) appears in two bindings with the
/// same member.
fn assert_no_duplicates(resource: &str, policy: &Value) {
    for ((role, cond), members) in grants(policy) {
        let set: BTreeSet<&String> = members.iter().collect();
        assert_eq!(
            set.len(),
            members.len(),
            "{resource}: duplicate member in {role} {cond}: {members:?}"
        );
    }
}

/// Panics if anything in `before` is missing from `after`.
fn assert_nothing_removed(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> BTreeMap<String, BTreeMap<(String, String), BTreeSet<String>>> {
    let mut added = BTreeMap::new();
    for (resource, b) in before {
        let a = after
            .get(resource)
            .unwrap_or_else(|| panic!("{resource} disappeared"));
        let (gb, ga) = (grants(b), grants(a));
        for (key, members) in &gb {
            for m in members {
                assert!(
                    ga.get(key).is_some_and(|ms| ms.contains(m)),
                    "{resource}: {m} lost {key:?}\nbefore: {b}\nafter: {a}"
                );
            }
        }
        let mut gained = BTreeMap::new();
        for (key, members) in ga {
            let old: BTreeSet<String> = gb
                .get(&key)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            let new: BTreeSet<String> = members.into_iter().filter(|m| !old.contains(m)).collect();
            if !new.is_empty() {
                gained.insert(key, new);
            }
        }
        added.insert(resource.clone(), gained);
    }
    added
}

/// `scan --format json EXTRA` as the remediator (the simulator enforces no IAM v2 quota here; these
/// worlds have more deny-policy attachment points than Google's 5 reads a minute, and the faults are
/// elsewhere).
async fn scan(sim: &SimHandle, extra: &[&str]) -> Run {
    let mut args = vec!["scan", "--format", "json", "--rate-limit", "iam-v2=10000"];
    args.extend(extra);
    remediator_as(SELF, &args, sim).await
}

fn project_args(sim: &SimHandle) -> Vec<String> {
    let world = serde_json::to_value(sim.dump()).unwrap();
    world["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| ["--project".to_owned(), p["id"].as_str().unwrap().to_owned()])
        .collect()
}

/// (project, role, member) the policy would restore, from a dry-run scan without faults.
async fn restorable(sim: &SimHandle, policy: &str) -> BTreeSet<(String, String, String)> {
    let args = project_args(sim);
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend(["--policy", policy]);
    let run = scan(sim, &a).await;
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "dry-run scan: not JSON ({e}): {}\n{}",
            run.stdout, run.stderr
        )
    });
    let mut out = BTreeSet::new();
    for p in doc["projects"].as_array().into_iter().flatten() {
        for a in p["actions"].as_array().into_iter().flatten() {
            if a["outcome"] == "would-restore" && a["action"]["kind"] == "grant" {
                out.insert((
                    p["project_id"].as_str().unwrap().to_owned(),
                    a["action"]["role"].as_str().unwrap().to_owned(),
                    a["action"]["member"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

fn assert_restored(sim: &SimHandle, expected: &BTreeSet<(String, String, String)>) {
    for (project, role, member) in expected {
        let p = serde_json::to_value(sim.policy(&format!("projects/{project}")).unwrap()).unwrap();
        let g = grants(&p);
        assert!(
            g.get(&(role.clone(), String::new()))
                .is_some_and(|ms| ms.contains(member)),
            "{project}: {member} not restored to {role}: {p}"
        );
    }
}

/// Another client's read-modify-write adding `member` to `role` on `project` (retrying on 409).
async fn side_write(api: &Api, project: &str, role: &str, member: &str) -> bool {
    for _ in 0..20 {
        let (s, mut policy) = api
            .post(
                &format!("v1/projects/{project}:getIamPolicy"),
                json!({"options": {"requestedPolicyVersion": 3}}),
            )
            .await;
        if s != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let bindings = policy["bindings"].as_array_mut().unwrap();
        bindings.push(json!({"role": role, "members": [member]}));
        policy["version"] = json!(3);
        let (s, _) = api
            .post(
                &format!("v1/projects/{project}:setIamPolicy"),
                json!({"policy": policy}),
            )
            .await;
        if s == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_lose_nothing_while_the_remediator_restores() {
    let sim = start_world().await;
    let policy = TempFile::new("mode: enforce\nlimits:\n  max_write_attempts: 20\n");
    let expected = restorable(&sim, policy.arg()).await;
    assert!(!expected.is_empty(), "the world has nothing to restore");
    let before = all_policies(&sim);
    let targets: BTreeSet<String> = expected.iter().map(|(p, _, _)| p.clone()).collect();

    // The simulator's own writer: after each read of the first broken project, someone else writes.
    let first = targets.first().unwrap().clone();
    sim.set_concurrent_writer(Some(ConcurrentWriter {
        project: first.clone(),
        probability: 1.0,
        max_writes: 4,
        role: "roles/viewer".to_owned(),
    }));
    sim.set_faults(Faults {
        latency: Latency {
            fixed_ms: 5,
            jitter_ms: 10,
        },
        seed: Some(7),
        ..Faults::default()
    });

    // And a second client hammering every broken project's policy while the scan runs.
    let api = Api::new(&sim).as_caller("terraform@ops-project.iam.gserviceaccount.com");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let side = {
        let stop = stop.clone();
        let targets = targets.clone();
        tokio::spawn(async move {
            let mut added = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 200 {
                for p in &targets {
                    let member = format!("user:side-{i}@example.com");
                    if side_write(&api, p, "roles/browser", &member).await {
                        added.push((p.clone(), member));
                    }
                }
                i += 1;
            }
            added
        })
    };
    let args = project_args(&sim);
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend(["--policy", policy.arg(), "--apply"]);
    let run = scan(&sim, &a).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let side_added = side.await.unwrap();
    sim.set_faults(Faults::default());

    let after = all_policies(&sim);
    assert_nothing_removed(&before, &after);
    assert_restored(&sim, &expected);
    for (p, m) in &side_added {
        let g = grants(&after[&format!("projects/{p}")]);
        assert!(
            g.get(&("roles/browser".to_owned(), String::new()))
                .is_some_and(|ms| ms.contains(m)),
            "{p}: the other client's {m} was lost"
        );
    }
    let writer: Value =
        serde_json::to_value(Api::new(&sim).get("_sim/concurrent-writer").await.1["added"].clone())
            .unwrap();
    let g = grants(&after[&format!("projects/{first}")]);
    for m in writer.as_array().into_iter().flatten() {
        let m = m.as_str().unwrap().to_owned();
        assert!(
            g.get(&("roles/viewer".to_owned(), String::new()))
                .is_some_and(|ms| ms.contains(&m)),
            "{first}: the concurrent writer's {m} was lost"
        );
    }
    for (r, p) in &after {
        assert_no_duplicates(r, p);
    }
    assert!(
        !side_added.is_empty(),
        "the other client never managed a write"
    );
    assert!(
        run.code == 0 || run.code == 1,
        "scan --apply failed ({}): {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_quarter_of_all_calls_failing_every_allowed_binding_is_restored_once() {
    let sim = start_world().await;
    let policy = TempFile::new("mode: enforce\nlimits:\n  max_write_attempts: 10\n");
    let expected = restorable(&sim, policy.arg()).await;
    assert!(!expected.is_empty(), "the world has nothing to restore");
    let before = all_policies(&sim);
    let faults: Faults = serde_json::from_value(json!({
        "errors": {"*": {"429": 0.09, "500": 0.08, "503": 0.08}},
        "latency": {"fixed_ms": 0, "jitter_ms": 3},
        "seed": 25
    }))
    .unwrap();
    sim.set_faults(faults);
    let args = project_args(&sim);
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend(["--policy", policy.arg(), "--apply", "--max-attempts", "10"]);
    // "Eventually": a run that gives up on a project (exit 2) is re-run, as a scheduler would.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = scan(&sim, &a).await;
        let code = run.code;
        runs.push(run);
        if code != 2 {
            break;
        }
    }
    let stats = sim.stats();
    sim.set_faults(Faults::default());
    let last = runs.last().unwrap();
    let after = all_policies(&sim);
    assert_restored(&sim, &expected);
    let gained = assert_nothing_removed(&before, &after);
    for (r, p) in &after {
        assert_no_duplicates(r, p);
    }
    for (resource, g) in gained {
        for ((role, cond), members) in g {
            assert!(
                cond.is_empty() && LIST_ROLES.contains(&role.as_str()),
                "{resource}: {role} {cond} gained {members:?}"
            );
            for m in members {
                let project = resource.trim_start_matches("projects/");
                assert!(
                    expected.contains(&(project.to_owned(), role.clone(), m.clone())),
                    "{resource}: {m} gained {role} without being a planned restore"
                );
            }
        }
    }
    // Faults really were injected.
    let injected: u64 = sim
        .journal()
        .iter()
        .filter(|e| matches!(e.status, 429 | 500 | 503))
        .count() as u64;
    assert!(
        injected > 0,
        "no fault was injected ({} calls): {}",
        stats.total,
        last.stderr
    );
}

fn wrap(id: &str, data: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "message": {"data": base64::engine::general_purpose::STANDARD.encode(data), "messageId": id,
                    "attributes": {"logging.googleapis.com/timestamp": "2026-11-29T00:31:00Z"}},
        "subscription": "projects/ops-project/subscriptions/s"
    }))
    .unwrap()
}

/// (name, content type, body) of every hostile delivery.
fn hostile_corpus(projects: &[String]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let mut out: Vec<(String, Option<String>, Vec<u8>)> = Vec::new();
    let ct = Some("application/json".to_owned());
    let mut n = 0;
    let mut id = || {
        n += 1;
        format!("hostile-{n}")
    };
    let strangers = [
        "user:mallory@evil.example",
        "serviceAccount:attacker@evil-project.iam.gserviceaccount.com",
        "group:everyone@evil.example",
        "allUsers",
        "domain:evil.example",
    ];
    let roles = [
        "roles/owner",
        "roles/editor",
        "roles/iam.securityAdmin",
        "roles/container.defaultNodeServiceAccount",
        "roles/container.serviceAgent",
        "projects/x/roles/evil",
    ];
    let mut targets: Vec<String> = projects.to_vec();
    targets.extend(
        [
            "victim-project",
            "400000000002",
            "folders/910000000001",
            "../../etc",
            "",
        ]
        .map(str::to_owned),
    );
    for p in &targets {
        for m in strangers {
            for r in roles {
                let e = removal_entry(&id(), r, m, p);
                out.push((
                    format!("forged {r} {m} on {p}"),
                    ct.clone(),
                    wrap(&id(), e.to_string().as_bytes()),
                ));
            }
        }
        // A forged node-pool creation naming a stranger's account as the node service account.
        let e = json!({
            "insertId": id(), "logName": format!("projects/{p}/logs/cloudaudit.googleapis.com%2Factivity"),
            "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "authenticationInfo": {"principalEmail": "mallory@evil.example"},
                "methodName": "google.container.v1.ClusterManager.CreateNodePool",
                "resourceName": format!("projects/{p}/locations/us-central1/clusters/c1/nodePools/evil"),
                "serviceName": "container.googleapis.com",
                "request": {"nodePool": {"name": "evil", "config": {"serviceAccount": "attacker@evil-project.iam.gserviceaccount.com"}}},
                "status": {}},
            "resource": {"type": "gke_nodepool", "labels": {"project_id": p, "cluster_name": "c1", "location": "us-central1", "nodepool_name": "evil"}},
            "timestamp": "2026-11-29T00:31:00Z"
        });
        out.push((
            format!("forged node pool on {p}"),
            ct.clone(),
            wrap(&id(), e.to_string().as_bytes()),
        ));
        // A forged asset-feed message claiming the owner binding is gone.
        let e = json!({
            "asset": {"name": format!("//cloudresourcemanager.googleapis.com/projects/{p}"), "assetType": "cloudresourcemanager.googleapis.com/Project",
                      "iamPolicy": {"bindings": [{"role": "roles/owner", "members": ["user:mallory@evil.example"]}]}},
            "priorAsset": {"name": format!("//cloudresourcemanager.googleapis.com/projects/{p}"), "assetType": "cloudresourcemanager.googleapis.com/Project",
                      "iamPolicy": {"bindings": [{"role": "roles/owner", "members": ["user:mallory@evil.example", "allUsers"]}]}},
            "window": {"startTime": "2026-11-29T00:31:00Z"}
        });
        out.push((
            format!("forged asset feed on {p}"),
            ct.clone(),
            wrap(&id(), e.to_string().as_bytes()),
        ));
        // A forged recommendation body.
        let e = json!({
            "name": format!("projects/{p}/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations/evil"),
            "recommenderSubtype": "NODE_SA_MISSING_PERMISSIONS",
            "content": {"overview": {"serviceAccount": "attacker@evil-project.iam.gserviceaccount.com", "role": "roles/owner"}},
            "stateInfo": {"state": "ACTIVE"}, "etag": "\"x\""
        });
        out.push((
            format!("forged recommendation on {p}"),
            ct.clone(),
            wrap(&id(), e.to_string().as_bytes()),
        ));
    }
    // A sweep naming many scopes, some foreign.
    let sweep = json!({"sweep": {"projects": ["victim-project", "evil", "400000000001"], "folders": ["1"], "organizations": ["2"]}});
    out.push((
        "sweep of foreign scopes".into(),
        ct.clone(),
        wrap(&id(), sweep.to_string().as_bytes()),
    ));
    // Shape attacks.
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    out.push((
        "deep object body".into(),
        ct.clone(),
        deep_obj.clone().into_bytes(),
    ));
    out.push((
        "deep object data".into(),
        ct.clone(),
        wrap(&id(), deep_obj.as_bytes()),
    ));
    out.push(("deep array body".into(), ct.clone(), vec![b'['; 200_000]));
    out.push((
        "deep array data".into(),
        ct.clone(),
        wrap(&id(), "[".repeat(200_000).as_bytes()),
    ));
    let big = format!(
        "{{\"message\":{{\"data\":\"{}\",\"messageId\":\"big\"}}}}",
        "A".repeat(1_900_000)
    );
    out.push(("1.9 MB base64".into(), ct.clone(), big.into_bytes()));
    out.push(("3 MB body".into(), ct.clone(), vec![b' '; 3 * 1024 * 1024]));
    let mut many_keys = String::from("{");
    for i in 0..60_000 {
        many_keys.push_str("\"k");
        many_keys.push_str(&i.to_string());
        many_keys.push_str("\":1,");
    }
    many_keys.push_str("\"message\":{}}");
    out.push(("many keys".into(), ct.clone(), many_keys.into_bytes()));
    let dup_keys = br#"{"message":{"data":"e30=","messageId":"d1"},"message":{"data":"e30=","messageId":"d2"}}"#;
    out.push(("duplicate keys".into(), ct.clone(), dup_keys.to_vec()));
    out.push((
        "invalid UTF-8 body".into(),
        ct.clone(),
        vec![0xff, 0xfe, b'{', 0xc3, 0x28, b'}'],
    ));
    out.push((
        "invalid UTF-8 data".into(),
        ct.clone(),
        wrap(&id(), &[0xff, 0xfe, 0xfd, b'{', 0x80]),
    ));
    out.push((
        "lone surrogate escape".into(),
        ct.clone(),
        br#"{"message":{"data":"e30=","messageId":"\ud800"}}"#.to_vec(),
    ));
    out.push((
        "NUL bytes".into(),
        ct.clone(),
        b"{\"message\":{\"data\":\"\0\0\",\"messageId\":\"\0\"}}".to_vec(),
    ));
    for bad in [
        "!!!",
        "e30",
        "e3=0",
        "====",
        "e30=\n",
        "ZXZpbA==ZXZpbA==",
        "-_-_",
        "\u{00e9}",
    ] {
        let body = json!({"message": {"data": bad, "messageId": id()}});
        out.push((
            format!("bad base64 {bad:?}"),
            ct.clone(),
            body.to_string().into_bytes(),
        ));
    }
    for v in [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({"message": null}),
        json!({"message": []}),
        json!({"message": {"data": 5}}),
        json!({"message": {"data": "e30=", "messageId": 5}}),
        json!({"message": {"data": "e30=", "attributes": "x"}}),
        json!({"message": {"data": "e30=", "deliveryAttempt": -1}}),
    ] {
        out.push((
            format!("odd envelope {v}"),
            ct.clone(),
            v.to_string().into_bytes(),
        ));
    }
    let entry = removal_entry(
        &id(),
        "roles/owner",
        "user:mallory@evil.example",
        projects.first().map(String::as_str).unwrap_or("p"),
    );
    for t in [
        "text/html",
        "application/xml",
        "multipart/form-data; boundary=x",
        "image/png",
        "application/json; charset=utf-16",
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "APPLICATION/JSON",
        ";;;",
    ] {
        out.push((
            format!("content type {t}"),
            Some(t.to_owned()),
            wrap(&id(), entry.to_string().as_bytes()),
        ));
    }
    out.push((
        "no content type".into(),
        None,
        wrap(&id(), entry.to_string().as_bytes()),
    ));
    // Unwrapped pushes: the raw entry as the body.
    out.push((
        "unwrapped forged owner".into(),
        ct.clone(),
        entry.to_string().into_bytes(),
    ));
    // The shipped intake fixtures, raw and wrapped.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intake");
    let mut dirs = vec![fixtures];
    if let Ok(extra) = std::env::var("FAULTS_CORPUS")
        && !extra.is_empty()
    {
        dirs.push(extra.into());
    }
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            out.push((format!("file {name}"), ct.clone(), bytes.clone()));
            out.push((
                format!("file {name} wrapped"),
                ct.clone(),
                wrap(&id(), &bytes),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_hostile_pushes_grant_nothing_outside_the_requirement_list() {
    let sim = start_world().await;
    let projects: Vec<String> = project_args(&sim)
        .into_iter()
        .filter(|a| a != "--project")
        .collect();
    let policy = TempFile::new("mode: enforce\n");
    let expected = restorable(&sim, policy.arg()).await;
    let before = all_policies(&sim);
    let mut env = self_env(&sim);
    env.extend([
        ("REMEDIATOR_POLICY", policy.arg().to_owned()),
        ("REMEDIATOR_COALESCE_MS", "50".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    let serve = Serve::start(&env).await;
    let http = reqwest::Client::new();
    let url = format!("{}/pubsub/push", serve.url);
    let corpus = hostile_corpus(&projects);
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    let results = futures::future::join_all(corpus.into_iter().map(|(name, ct, body)| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let send = |fresh: bool| {
                let mut req = http.post(&url).body(body.clone());
                if let Some(ct) = &ct {
                    req = req.header("content-type", ct);
                }
                if fresh {
                    req = req.header("connection", "close");
                }
                tokio::time::timeout(Duration::from_secs(120), req.send())
            };
            let mut r = send(false).await;
            // A connection dropped before any answer (a loaded machine: the server's header
            // deadline, a pooled connection it closed) is delivered again, as Pub/Sub would;
            // a server that died fails the second attempt too.
            if let Ok(Err(e)) = &r
                && name != "3 MB body"
                && (e.is_connect() || e.is_request())
            {
                eprintln!("{name}: delivered again after {e:?}");
                r = send(true).await;
            }
            (name, r)
        }
    }))
    .await;
    for (name, r) in results {
        let r = r.unwrap_or_else(|_| panic!("{name}: no answer within 120 s"));
        let code = match r {
            Ok(r) => r.status().as_u16(),
            // An oversized body is answered 413 from its Content-Length and the connection closed; a
            // client still writing may see the close (EPIPE / reset) before it reads the answer.
            Err(e)
                if name == "3 MB body"
                    && (format!("{e:?}").contains("BrokenPipe")
                        || format!("{e:?}").contains("ConnectionReset")) =>
            {
                413
            }
            Err(e) => panic!("{name}: the connection failed: {e} ({e:?})"),
        };
        *codes.entry(code).or_default() += 1;
        assert!(
            matches!(code, 200..=299 | 400 | 413 | 415 | 503),
            "{name}: answered {code}"
        );
    }
    eprintln!("hostile corpus answers: {codes:?}");
    let h = http
        .get(format!("{}/healthz", serve.url))
        .send()
        .await
        .expect("serve is still alive");
    assert_eq!(h.status().as_u16(), 200);
    // Let runs triggered by the corpus finish.
    let mut last = u64::MAX;
    for _ in 0..60 {
        let total = sim.stats().total;
        if total == last {
            break;
        }
        last = total;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = all_policies(&sim);
    let gained = assert_nothing_removed(&before, &after);
    for (r, p) in &after {
        assert_no_duplicates(r, p);
    }
    for (resource, g) in gained {
        for ((role, cond), members) in g {
            assert!(
                cond.is_empty() && LIST_ROLES.contains(&role.as_str()),
                "{resource}: {role} {cond} gained {members:?} from hostile input"
            );
            for m in members {
                assert!(
                    !m.contains("evil") && !m.contains("mallory") && !m.starts_with("all"),
                    "{resource}: the stranger {m} gained {role}"
                );
                let project = resource.trim_start_matches("projects/");
                assert!(
                    expected.contains(&(project.to_owned(), role.clone(), m.clone())),
                    "{resource}: {m} gained {role}, which a plain scan would not restore"
                );
            }
        }
    }
    serve.stop().await;
    sim.shutdown().await;
}

fn count_member(policy: &Value, role: &str, member: &str) -> usize {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role && b.get("condition").is_none())
        .flat_map(|b| b["members"].as_array().into_iter().flatten())
        .filter(|m| *m == member)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_killed_mid_flight_is_redelivered_and_restores_exactly_once_with_a_notification() {
    const PROJECT: &str = "fa-healthy";
    const ROLE: &str = "roles/container.serviceAgent";
    const AGENT: &str =
        "serviceAccount:service-400000000004@container-engine-robot.iam.gserviceaccount.com";
    let mut lp = Loop::start(WORLD, "mode: enforce\n").await;

    // Someone removes the binding; the simulator publishes the audit-log entry; Pub/Sub pushes it.
    Api::new(&lp.sim)
        .edit_project_policy(PROJECT, |policy| {
            policy["bindings"]
                .as_array_mut()
                .unwrap()
                .retain(|b| b["role"] != ROLE);
        })
        .await;
    // Slow every API call down so the delivery is still in flight when serve dies.
    lp.sim.set_faults(Faults {
        latency: Latency {
            fixed_ms: 1500,
            jitter_ms: 0,
        },
        ..Faults::default()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = lp.serve.health().await;
        if h["messages"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the push never reached serve: {}",
            lp.serve.logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    lp.serve.kill().await; // SIGKILL
    let writes_before_restart = lp.writes();
    lp.sim.set_faults(Faults {
        latency: Latency {
            fixed_ms: 20,
            jitter_ms: 0,
        },
        ..Faults::default()
    });

    // A new instance (a port of its own): the push subscription now delivers there, as Cloud Run's
    // one URL would.
    lp.restart_serve().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut notes = Vec::new();
    loop {
        let p =
            serde_json::to_value(lp.sim.policy(&format!("projects/{PROJECT}")).unwrap()).unwrap();
        notes.extend(lp.notifications(Duration::from_millis(200)).await);
        let restored_note = notes
            .iter()
            .any(|n| n["outcome"] == "restored" && n["principal"] == AGENT);
        if count_member(&p, ROLE, AGENT) >= 1 && restored_note {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not restored with a notification within 120 s (writes before restart {writes_before_restart}); policy {p}\nnotes {notes:#?}\nlogs:\n{}",
            lp.serve.logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = serde_json::to_value(lp.sim.policy(&format!("projects/{PROJECT}")).unwrap()).unwrap();
    assert_eq!(count_member(&p, ROLE, AGENT), 1, "{p}");
    assert_no_duplicates(PROJECT, &p);
    lp.stop().await;
}
