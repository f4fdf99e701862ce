//! The real `gcloud` CLI against the simulator (isolated config, endpoint overrides, no credentials),
//! and an audit-log entry arriving on the real Pub/Sub emulator. Each gcloud call takes ~1.7 s, so the
//! scenarios group several commands.

use std::time::Duration;

use gcp_sim::SimOptions;

use serde_json::json;

use crate::support::{Api, Gcloud, PubsubEmulator, start_sim, start_sim_with, world_file};

const NODE_SA: &str = "gke-nodes@demo-project.iam.gserviceaccount.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_describes_projects_policies_roles_and_service_accounts() {
    let sim = start_sim(&world_file("demo.yaml")).await;
    let gcloud = Gcloud::new(&sim.base_url(), "demo-project");

    let project = gcloud
        .run(&["projects", "describe", "demo-project", "--format=json"])
        .await
        .ok()
        .json();
    assert_eq!(project["projectNumber"], "100000000001");
    assert_eq!(project["parent"]["type"], "folder");

    let policy = gcloud
        .run(&[
            "projects",
            "get-iam-policy",
            "demo-project",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        policy["version"], 3,
        "the demo policy has a conditional binding"
    );
    assert!(policy["bindings"].to_string().contains(NODE_SA));

    let role = gcloud
        .run(&[
            "iam",
            "roles",
            "describe",
            "roles/container.defaultNodeServiceAccount",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(role["etag"], "AA==");
    assert!(
        role["includedPermissions"]
            .to_string()
            .contains("autoscaling.sites.writeMetrics")
    );

    let sa = gcloud
        .run(&[
            "iam",
            "service-accounts",
            "describe",
            NODE_SA,
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(sa["uniqueId"], "104619873021358217463");
    assert!(sa.get("disabled").is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_add_and_remove_iam_policy_binding_really_change_the_policy() {
    let sim = start_sim(&world_file("demo.yaml")).await;
    let gcloud = Gcloud::new(&sim.base_url(), "demo-project");
    let role = "roles/container.defaultNodeServiceAccount";
    let member = format!("serviceAccount:{NODE_SA}");
    let has = |sim: &gcp_sim::SimHandle| {
        sim.policy("projects/demo-project")
            .expect("policy")
            .bindings
            .iter()
            .any(|b| {
                b.role.as_str() == role
                    && b.condition.is_none()
                    && b.members.iter().any(|m| m.as_str() == member)
            })
    };
    assert!(!has(&sim));
    let add = gcloud
        .run(&[
            "projects",
            "add-iam-policy-binding",
            "demo-project",
            &format!("--member={member}"),
            &format!("--role={role}"),
            "--condition=None",
            "--format=json",
        ])
        .await
        .ok();
    assert!(
        add.stderr
            .contains("Updated IAM policy for project [demo-project]."),
        "{}",
        add.stderr
    );
    assert!(has(&sim));
    gcloud
        .run(&[
            "projects",
            "remove-iam-policy-binding",
            "demo-project",
            &format!("--member={member}"),
            &format!("--role={role}"),
            "--condition=None",
            "--format=json",
        ])
        .await
        .ok();
    assert!(!has(&sim));
    let stats = sim.stats();
    assert_eq!(
        stats
            .by_endpoint
            .get("cloudresourcemanager.projects.setIamPolicy"),
        Some(&2)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_lists_and_describes_clusters_and_node_pools() {
    let sim = start_sim(&world_file("demo.yaml")).await;
    let gcloud = Gcloud::new(&sim.base_url(), "demo-project");

    let list = gcloud
        .run(&[
            "container",
            "clusters",
            "list",
            "--project",
            "demo-project",
            "--format=value(name,location)",
        ])
        .await
        .ok();
    assert_eq!(
        list.stdout, "ap1\teurope-west1\nc1\tus-central1\n",
        "gcloud sorts by name"
    );
    let ap = gcloud.run(&["container", "clusters", "describe", "ap1", "--location", "europe-west1", "--format=value(autopilot.enabled,autoscaling.autoprovisioningNodePoolDefaults.serviceAccount)"]).await.ok();
    assert_eq!(ap.stdout, "True\tdefault\n");
    let pools = gcloud
        .run(&[
            "container",
            "node-pools",
            "list",
            "--cluster",
            "c1",
            "--zone",
            "us-central1",
            "--format=table[no-heading](name)",
        ])
        .await
        .ok();
    assert_eq!(
        pools.stdout,
        "pool-1\npool-2\npool-3\npool-4\npool-5\npool-6\n"
    );
    let pool = gcloud
        .run(&[
            "container",
            "node-pools",
            "describe",
            "pool-1",
            "--cluster",
            "c1",
            "--location",
            "us-central1",
            "--format=value(config.serviceAccount)",
        ])
        .await
        .ok();
    assert_eq!(pool.stdout.trim(), NODE_SA);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_lists_recommendations_and_enables_services() {
    let sim = start_sim(&world_file("api-disabled.yaml")).await;
    let gcloud = Gcloud::new(&sim.base_url(), "demo-project");
    let denied = gcloud
        .run(&["container", "clusters", "list", "--project", "demo-project"])
        .await;
    assert_ne!(denied.code, 0);
    assert!(
        denied
            .stderr
            .contains("Kubernetes Engine API has not been used"),
        "{}",
        denied.stderr
    );
    gcloud
        .run(&[
            "services",
            "enable",
            "container.googleapis.com",
            "--project",
            "demo-project",
        ])
        .await
        .ok();
    gcloud
        .run(&["container", "clusters", "list", "--project", "demo-project"])
        .await
        .ok();

    let sim2 = start_sim(&world_file("demo.yaml")).await;
    let gcloud2 = Gcloud::new(&sim2.base_url(), "demo-project");
    let recs = gcloud2
        .run(&[
            "recommender",
            "recommendations",
            "list",
            "--recommender=google.container.DiagnosisRecommender",
            "--location",
            "us-central1",
            "--project",
            "demo-project",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(recs[0]["recommenderSubtype"], "NODE_SA_MISSING_PERMISSIONS");
    assert_eq!(recs[0]["etag"], "\"4f2c0e5e1d3b7a90\"");
    assert_eq!(
        recs[0]["targetResources"][0],
        "//container.googleapis.com/projects/100000000001/locations/us-central1/clusters/c1"
    );
    sim.shutdown().await;
    sim2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_does_not_retry_a_conflict_made_by_the_concurrent_writer() {
    let sim = start_sim(&world_file("healthy.yaml")).await;
    sim.set_concurrent_writer(Some(gcp_sim::ConcurrentWriter {
        project: "demo-project".into(),
        probability: 1.0,
        max_writes: 1,
        role: "roles/viewer".into(),
    }));
    let gcloud = Gcloud::new(&sim.base_url(), "demo-project");
    let out = gcloud
        .run(&[
            "projects",
            "add-iam-policy-binding",
            "demo-project",
            "--member=user:bob@example.com",
            "--role=roles/viewer",
            "--condition=None",
        ])
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is the subject of a conflict"),
        "{}",
        out.stderr
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcloud_remove_iam_policy_binding_arrives_as_an_audit_log_entry_on_the_emulator() {
    let emulator = PubsubEmulator::start().await;
    emulator
        .topic_with_subscription("demo-project", "audit", "audit-pull")
        .await;
    let options = SimOptions {
        audit_log_topic: Some("projects/demo-project/topics/audit".into()),
        pubsub_emulator_host: Some(emulator.host.clone()),
        default_principal: "user:alice@example.com".into(),
    };
    let sim = start_sim_with(&world_file("healthy.yaml"), options).await;
    let gcloud = Gcloud::new(&sim.base_url(), "demo-project");
    gcloud
        .run(&[
            "projects",
            "remove-iam-policy-binding",
            "demo-project",
            &format!("--member=serviceAccount:{NODE_SA}"),
            "--role=roles/container.defaultNodeServiceAccount",
            "--condition=None",
        ])
        .await
        .ok();
    sim.flush_audit_logs().await;

    let messages = emulator
        .pull("demo-project", "audit-pull", Duration::from_secs(20))
        .await;
    assert_eq!(messages.len(), 1, "one entry per message");
    let (entry, attributes) = &messages[0];
    assert_eq!(
        attributes["logging.googleapis.com/timestamp"],
        entry["timestamp"]
    );
    assert_eq!(
        entry["logName"],
        "projects/demo-project/logs/cloudaudit.googleapis.com%2Factivity"
    );
    let proto = &entry["protoPayload"];
    assert_eq!(proto["methodName"], "SetIamPolicy");
    assert_eq!(proto["serviceName"], "cloudresourcemanager.googleapis.com");
    assert_eq!(proto["resourceName"], "projects/demo-project");
    assert_eq!(
        proto["authenticationInfo"]["principalEmail"],
        "alice@example.com"
    );
    assert_eq!(proto["request"]["resource"], "demo-project");
    let deltas = &proto["serviceData"]["policyDelta"]["bindingDeltas"];
    assert_eq!(deltas.as_array().map(Vec::len), Some(1), "{deltas}");
    assert_eq!(deltas[0]["action"], "REMOVE");
    assert_eq!(
        deltas[0]["role"],
        "roles/container.defaultNodeServiceAccount"
    );
    assert_eq!(deltas[0]["member"], format!("serviceAccount:{NODE_SA}"));
    assert_eq!(entry["resource"]["type"], "project");

    // Service account and service changes made through the API are logged too, with the caller.
    let api = Api::new(&sim).as_caller("bob@example.com");
    let (status, _) = api
        .call(
            "DELETE",
            &format!("v1/projects/-/serviceAccounts/{NODE_SA}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .post(
            "v1/projects/demo-project/services/container.googleapis.com:disable",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    sim.flush_audit_logs().await;
    let messages = emulator
        .pull_n("demo-project", "audit-pull", 2, Duration::from_secs(20))
        .await;
    let methods: Vec<&str> = messages
        .iter()
        .filter_map(|(e, _)| e["protoPayload"]["methodName"].as_str())
        .collect();
    assert_eq!(
        methods,
        [
            "google.iam.admin.v1.DeleteServiceAccount",
            "google.api.serviceusage.v1.ServiceUsage.DisableService"
        ]
    );
    let delete = &messages[0].0;
    assert_eq!(
        delete["protoPayload"]["authenticationInfo"]["principalEmail"],
        "bob@example.com"
    );
    assert_eq!(
        delete["protoPayload"]["resourceName"],
        "projects/-/serviceAccounts/104619873021358217463"
    );
    assert_eq!(delete["resource"]["labels"]["email_id"], NODE_SA);
    sim.shutdown().await;
}

/// The conformance world (strict defaults, a deleted account, NAP on a Standard cluster).
fn conformance_world() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/world.yaml"
    ))
    .expect("tests/conformance/world.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_lists_organizations_folders_and_roles_and_strict_grants_fail_like_google() {
    let sim = start_sim(&conformance_world()).await;
    let gcloud = Gcloud::new(&sim.base_url(), "conf-project");

    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("a JSON list")
            .iter()
            .map(|x| x["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let orgs = gcloud
        .run(&["organizations", "list", "--format=json"])
        .await
        .ok()
        .json();
    assert_eq!(names(orgs), ["organizations/123456789012"]);
    let folders = gcloud
        .run(&[
            "resource-manager",
            "folders",
            "list",
            "--organization=123456789012",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(names(folders), ["folders/111", "folders/333"]);
    let roles = gcloud
        .run(&[
            "iam",
            "roles",
            "list",
            "--filter=name:roles/compute.viewer",
            "--format=value(name)",
        ])
        .await
        .ok();
    assert_eq!(roles.stdout.trim(), "roles/compute.viewer");

    gcloud
        .run(&[
            "projects",
            "add-iam-policy-binding",
            "conf-project",
            "--member=user:dev@example.com",
            "--role=roles/compute.viewer",
            "--format=none",
        ])
        .await
        .ok();
    for (member, role, message) in [
        (
            "serviceAccount:gone@conf-project.iam.gserviceaccount.com",
            "roles/compute.viewer",
            "INVALID_ARGUMENT: Service account gone@conf-project.iam.gserviceaccount.com does not exist.",
        ),
        (
            "user:dev@example.com",
            "roles/made.up",
            "INVALID_ARGUMENT: Role roles/made.up is not supported for this resource.",
        ),
    ] {
        let out = gcloud
            .run(&[
                "projects",
                "add-iam-policy-binding",
                "conf-project",
                &format!("--member={member}"),
                &format!("--role={role}"),
                "--format=none",
            ])
            .await;
        assert_eq!(out.code, 1, "{member} {role}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{}", out.stderr);
    }

    // The write above is in the audit log; an OR filter finds it (and nothing else matches `nothing`).
    let read = gcloud
        .run(&[
            "logging",
            "read",
            "resource.type=nothing OR protoPayload.methodName=\"SetIamPolicy\"",
            "--project=conf-project",
            "--format=value(protoPayload.methodName)",
        ])
        .await
        .ok();
    assert_eq!(read.stdout.trim(), "SetIamPolicy", "{}", read.stderr);
    sim.shutdown().await;
}
