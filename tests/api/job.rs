//! `job` end to end: pull from a real Pub/Sub emulator subscription, and sweeps that settle
//! `NODE_SA_MISSING_PERMISSIONS` recommendations.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::binary::job;
use crate::support::{Api, PubsubEmulator, TempFile, start_sim, world_file};

#[tokio::test(flavor = "multi_thread")]
async fn a_job_pulls_events_restores_and_exits_when_idle() {
    let policy = TempFile::new("mode: enforce\n");
    let emulator = PubsubEmulator::start().await;
    emulator
        .topic_with_subscription("ops-project", "iam-events", "iam-events-pull")
        .await;
    let sim = start_sim(&world_file("demo.yaml")).await;
    let entry = json!({
        "insertId": "abc",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "admin@example.com"},
            "methodName": "SetIamPolicy",
            "resourceName": "projects/demo-project",
            "serviceName": "cloudresourcemanager.googleapis.com",
            "serviceData": {"policyDelta": {"bindingDeltas": [{"action": "REMOVE", "role": "roles/container.serviceAgent",
                "member": "serviceAccount:service-100000000001@container-engine-robot.iam.gserviceaccount.com"}]}}
        },
        "resource": {"type": "project", "labels": {"project_id": "demo-project"}},
        "timestamp": "2026-11-29T00:31:00Z"
    });
    let data = base64::engine::general_purpose::STANDARD.encode(entry.to_string());
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/projects/ops-project/topics/iam-events:publish", emulator.host))
        .json(&json!({"messages": [{"data": data}, {"data": base64::engine::general_purpose::STANDARD.encode("not json")}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let run = job(
        &[
            "--subscription",
            "projects/ops-project/subscriptions/iam-events-pull",
            "--idle-timeout",
            "3",
        ],
        &[
            ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
            ("PUBSUB_EMULATOR_HOST", emulator.host.clone()),
            ("REMEDIATOR_POLICY", policy.arg().to_owned()),
        ],
    )
    .await
    .ok();

    let summary = run.summary();
    assert_eq!(summary["messages"], 2, "{summary}");
    assert_eq!(summary["acked"], 2, "{summary}");
    let policy = sim.policy("projects/demo-project").unwrap();
    assert!(policy.grants_unconditionally(
        "roles/container.serviceAgent",
        "serviceAccount:service-100000000001@container-engine-robot.iam.gserviceaccount.com",
    ));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_marks_a_recommendation_succeeded_only_when_every_node_account_is_ok_and_never_in_dry_run()
 {
    let policy = TempFile::new("mode: enforce\n");
    let sim = start_sim(&world_file("demo.yaml")).await;
    let api = Api::new(&sim);
    let list = "v1/projects/demo-project/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations";

    job(
        &["--sweep", "--organization", "123456789012"],
        &[("REMEDIATOR_API_ENDPOINT", sim.base_url())],
    )
    .await
    .ok();
    let (_, recs) = api.get(list).await;
    assert!(
        recs["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["stateInfo"]["state"] == "ACTIVE"),
        "dry-run marked: {recs}"
    );

    let run = job(
        &["--sweep", "--organization", "123456789012"],
        &[
            ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
            ("REMEDIATOR_POLICY", policy.arg().to_owned()),
        ],
    )
    .await
    .ok();
    let summary = run.summary();
    assert_eq!(summary["swept_projects"], 2, "{summary}");
    let (_, recs) = api.get(list).await;
    let (_, eu) = api.get(&list.replace("us-central1", "europe-west1")).await;
    let state_of = |cluster: &str| {
        recs["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .chain(eu["recommendations"].as_array().unwrap())
            .find(|r| r["targetResources"][0].as_str().unwrap().ends_with(cluster))
            .map(|r| r["stateInfo"]["state"].clone())
    };
    // c1's pool-3 account holds its permissions only under an IAM condition: that is not `ok`, so
    // the recommendation stays for a person. ap1's account was restored: succeeded.
    assert_eq!(
        state_of("/clusters/c1"),
        Some(Value::from("ACTIVE")),
        "{recs}"
    );
    assert_eq!(
        state_of("/clusters/ap1"),
        Some(Value::from("SUCCEEDED")),
        "{eu}"
    );
    sim.shutdown().await;
}
