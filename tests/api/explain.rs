//! `explain` end to end: the real binary against the simulator, on a world whose node account holds
//! its permissions through a folder grant, an expired conditional grant and a group; the trace agrees
//! with `scan` on the same world (`infra/worlds/explain.yaml`).

use serde_json::Value;

use crate::support::binary::remediator;
use crate::support::start_sim;
use crate::support::world_file;

const NODES: &str = "serviceAccount:gke-nodes@shop-prod.iam.gserviceaccount.com";

fn permission<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["explanations"][0]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["permission"] == name)
        .unwrap_or_else(|| panic!("{name} in {doc:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_traces_a_folder_grant_an_expired_condition_and_a_group_and_agrees_with_scan() {
    let sim = start_sim(&world_file("explain.yaml")).await;
    let run = remediator(
        &[
            "explain",
            "--project",
            "shop-prod",
            "--member",
            NODES,
            "--format",
            "json",
        ],
        &sim,
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["schema"], "gke-iam-remediator.explain/v1");
    let e = &doc["explanations"][0];
    assert_eq!(e["member"], NODES);
    assert_eq!(e["clusters"], serde_json::json!(["us-central1/c1"]));

    let logging = permission(&doc, "logging.logEntries.create");
    assert_eq!(logging["verdict"], "ok");
    let grants = logging["grants"].as_array().unwrap();
    let folder = grants.iter().find(|g| g["level"] == "folder").unwrap();
    assert_eq!(folder["resource"], "folders/111");
    assert_eq!(folder["role"], "roles/logging.logWriter");
    assert_eq!(folder["effect"], "grants");
    let expired = grants.iter().find(|g| g["level"] == "project").unwrap();
    assert_eq!(expired["condition"]["now"], "false");
    assert_eq!(expired["condition"]["title"], "until-june");
    assert_eq!(expired["effect"], "nothing");

    // Through the group: unknown while its membership is unknown; granted once Cloud Identity says
    // the account is a member. Either way the trace and the verdict agree.
    let ts = permission(&doc, "monitoring.timeSeries.create");
    let group = ts["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["via_group"] == "group:gke-ops@example.com")
        .unwrap();
    assert_eq!(group["role"], "roles/monitoring.metricWriter");
    assert_eq!(group["level"], "project");
    match group["effect"].as_str().unwrap() {
        "unknown" => assert_eq!(ts["verdict"], "unknown"),
        "grants" => assert_eq!(ts["verdict"], "ok"),
        other => panic!("group grant effect {other}"),
    }

    let autoscaling = permission(&doc, "autoscaling.sites.writeMetrics");
    assert_eq!(autoscaling["verdict"], "missing");
    assert_eq!(
        autoscaling["fix"],
        format!(
            "gcloud projects add-iam-policy-binding shop-prod --member={NODES} --role=roles/container.defaultNodeServiceAccount --condition=None"
        )
    );

    // The same verdict as scan, on the same state.
    let scan = remediator(
        &["scan", "--project", "shop-prod", "--format", "json"],
        &sim,
    )
    .await;
    let scan: Value = serde_json::from_str(&scan.stdout).unwrap();
    let finding = scan["projects"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["requirement"] == "node-sa-permissions" && f["principal"] == NODES)
        .unwrap()
        .clone();
    assert_eq!(finding["status"], e["status"]);
    let listed = |key: &str| -> Vec<String> {
        finding[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    for p in e["permissions"].as_array().unwrap() {
        let name = p["permission"].as_str().unwrap().to_owned();
        let expected = if listed("missing_permissions").contains(&name) {
            "missing"
        } else if listed("conditional_permissions").contains(&name) {
            "conditional"
        } else if listed("unknown_permissions").contains(&name) {
            "unknown"
        } else {
            "ok"
        };
        assert_eq!(p["verdict"], expected, "{name}");
    }

    // The table for people: the cluster form explains every node account of the cluster.
    let table = remediator(
        &[
            "explain",
            "--project",
            "shop-prod",
            "--cluster",
            "us-central1/c1",
        ],
        &sim,
    )
    .await;
    assert_eq!(table.code, 1, "{}", table.stderr);
    for expected in [
        "PERMISSION",
        "folders/111",
        "false (expired)",
        "group:gke-ops@example.com",
        "until-june",
        "fix (",
        "gcloud projects add-iam-policy-binding shop-prod",
    ] {
        assert!(
            table.stdout.contains(expected),
            "{expected}:\n{}",
            table.stdout
        );
    }
    let missing = remediator(
        &[
            "explain",
            "--project",
            "shop-prod",
            "--cluster",
            "us-east1/nope",
        ],
        &sim,
    )
    .await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("us-central1/c1"),
        "{}",
        missing.stderr
    );
    sim.shutdown().await;
}
