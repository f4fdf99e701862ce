//! `check-plan` end to end: the real binary on real `terraform show -json` output (made offline by
//! `infra/tfcheck/plans.sh` from `tests/fixtures/plans/tf/`) and on hand-written plans
//! (`tests/fixtures/plans/hand/`: module nesting, unknown values, conditions), against the simulator
//! world those plans were written for (`tests/fixtures/plans/world.yaml`), and with `--no-live`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gcp_sim::SimHandle;
use serde_json::{Value, json};

use crate::support::binary::{BIN, Run, remediator};
use crate::support::start_sim;

const PROD_ROBOT: &str =
    "serviceAccount:service-200000000001@container-engine-robot.iam.gserviceaccount.com";
const PROD_NODE_AGENT: &str =
    "serviceAccount:service-200000000001@gcp-sa-gkenode.iam.gserviceaccount.com";
const DEV_ROBOT: &str =
    "serviceAccount:service-200000000002@container-engine-robot.iam.gserviceaccount.com";
const GKE_NODES: &str = "serviceAccount:gke-nodes@shop-prod.iam.gserviceaccount.com";
const BATCH_NODES: &str = "serviceAccount:batch-nodes@shop-prod.iam.gserviceaccount.com";
const COMPUTE_DEFAULT: &str = "serviceAccount:200000000001-compute@developer.gserviceaccount.com";

fn plans_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plans")
}

fn fixture(name: &str) -> String {
    let path = plans_dir().join(name);
    assert!(path.exists(), "no fixture {}", path.display());
    path.display().to_string()
}

async fn world() -> SimHandle {
    let yaml = std::fs::read_to_string(plans_dir().join("world.yaml")).expect("world readable");
    start_sim(&yaml).await
}

/// The document validates against `schema/check-plan-v1.json` (what docs/check-plan.md documents).
fn assert_schema(doc: &Value) {
    static SCHEMA: std::sync::LazyLock<(boon::Schemas, boon::SchemaIndex)> =
        std::sync::LazyLock::new(|| {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/check-plan-v1.json");
            let text = std::fs::read_to_string(path).expect("schema/check-plan-v1.json exists");
            let mut schemas = boon::Schemas::new();
            let mut compiler = boon::Compiler::new();
            compiler
                .add_resource(
                    "https://example.com/check-plan-v1.json",
                    serde_json::from_str::<Value>(&text).expect("the schema is JSON"),
                )
                .unwrap();
            let index = compiler
                .compile("https://example.com/check-plan-v1.json", &mut schemas)
                .unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
            (schemas, index)
        });
    if let Err(e) = SCHEMA.0.validate(doc, SCHEMA.1) {
        panic!("{e:#}\n{doc:#}");
    }
}

/// `check-plan PLAN --format json` against the simulator; the document matches the schema.
async fn check(plan: &str, extra: &[&str], sim: &SimHandle) -> (Run, Value) {
    let mut args = vec!["check-plan", plan, "--format", "json"];
    args.extend_from_slice(extra);
    let run = remediator(&args, sim).await;
    let doc = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    assert_schema(&doc);
    (run, doc)
}

/// The binary with no Google endpoint at all (as in CI without credentials).
async fn offline(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("REMEDIATOR_API_ENDPOINT")
        .env_remove("REMEDIATOR_ACCESS_TOKEN")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", std::env::temp_dir())
        .output()
        .await
        .expect("binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// (address, project, requirement, principal, after) of every break.
fn breaks(doc: &Value) -> BTreeSet<(String, String, String, String, String)> {
    doc["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap().to_owned(),
                b["project"].as_str().unwrap().to_owned(),
                b["requirement"].as_str().unwrap().to_owned(),
                b["principal"].as_str().unwrap_or("-").to_owned(),
                b["after"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn set(
    items: &[(&str, &str, &str, &str, &str)],
) -> BTreeSet<(String, String, String, String, String)> {
    items
        .iter()
        .map(|(a, p, r, m, s)| {
            (
                (*a).to_owned(),
                (*p).to_owned(),
                (*r).to_owned(),
                (*m).to_owned(),
                (*s).to_owned(),
            )
        })
        .collect()
}

fn the_break<'a>(doc: &'a Value, address: &str, principal: &str) -> &'a Value {
    doc["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == address && b["principal"].as_str().unwrap_or("-") == principal)
        .unwrap_or_else(|| panic!("no break of {address} for {principal} in {doc:#}"))
}

/// Runs a real plan against the world and checks exactly these breaks come out, with exit 1.
async fn expect_breaks(plan: &str, expected: &[(&str, &str, &str, &str, &str)]) -> Value {
    let sim = world().await;
    let (run, doc) = check(&fixture(plan), &[], &sim).await;
    assert_eq!(run.code, 1, "{plan}: {}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["result"], "breaks");
    assert_eq!(breaks(&doc), set(expected), "{plan}: {doc:#}");
    for b in doc["breaks"].as_array().unwrap() {
        assert!(
            b["fix"]
                .as_str()
                .unwrap()
                .contains(b["address"].as_str().unwrap()),
            "the fix names the resource: {b:#}"
        );
        assert!(!b["change"].as_str().unwrap().is_empty());
    }
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authoritative_project_binding_that_drops_the_gke_service_agent_breaks_it() {
    let doc = expect_breaks(
        "project-binding-drops-agent.json",
        &[(
            "google_project_iam_binding.gke_agent",
            "shop-prod",
            "gke-service-agent",
            PROD_ROBOT,
            "missing",
        )],
    )
    .await;
    let b = the_break(&doc, "google_project_iam_binding.gke_agent", PROD_ROBOT);
    assert_eq!(b["before"], "ok");
    assert!(
        b["fix"].as_str().unwrap().starts_with(&format!(
            "add \"{PROD_ROBOT}\" to members of google_project_iam_binding.gke_agent"
        )),
        "{b:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_put_under_a_condition_leaves_the_node_account_only_conditional() {
    let doc = expect_breaks(
        "project-binding-conditional.json",
        &[(
            "google_project_iam_binding.nodes",
            "shop-prod",
            "node-sa-permissions",
            GKE_NODES,
            "conditional",
        )],
    )
    .await;
    let fix = the_break(&doc, "google_project_iam_binding.nodes", GKE_NODES)["fix"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(fix.contains("without a condition"), "{fix}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_policy_that_forgets_grants_breaks_each_one_gke_needed() {
    let doc = expect_breaks(
        "project-policy-data.json",
        &[
            (
                "google_project_iam_policy.all",
                "shop-prod",
                "gke-node-service-agent",
                PROD_NODE_AGENT,
                "missing",
            ),
            // pool-3 runs as the default account, which had its node permissions from roles/editor.
            (
                "google_project_iam_policy.all",
                "shop-prod",
                "node-sa-permissions",
                COMPUTE_DEFAULT,
                "missing",
            ),
        ],
    )
    .await;
    let b = the_break(&doc, "google_project_iam_policy.all", COMPUTE_DEFAULT);
    assert!(
        b["change"].as_str().unwrap().contains("roles/editor"),
        "{b:#}"
    );
    assert!(b["fix"].as_str().unwrap().contains("policy_data"), "{b:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_project_member_and_a_member_remove_take_what_gke_needs() {
    expect_breaks(
        "project-member-deleted.json",
        &[(
            "google_project_iam_member.nodes",
            "shop-prod",
            "node-sa-permissions",
            GKE_NODES,
            "missing",
        )],
    )
    .await;
    expect_breaks(
        "project-member-remove.json",
        &[(
            "google_project_iam_member_remove.agent",
            "shop-prod",
            "gke-service-agent",
            PROD_ROBOT,
            "missing",
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_authoritative_binding_takes_the_role_from_everyone_it_listed() {
    let doc = expect_breaks(
        "project-binding-deleted.json",
        &[(
            "google_project_iam_binding.node_agent",
            "shop-prod",
            "gke-node-service-agent",
            PROD_NODE_AGENT,
            "missing",
        )],
    )
    .await;
    let b = the_break(
        &doc,
        "google_project_iam_binding.node_agent",
        PROD_NODE_AGENT,
    );
    assert!(
        b["fix"]
            .as_str()
            .unwrap()
            .contains("google_project_iam_member"),
        "{b:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn folder_and_organization_changes_break_the_projects_that_inherit_from_them() {
    // The folder binding is read for both projects under the folder; only shop-prod relied on it.
    let doc = expect_breaks(
        "folder-binding.json",
        &[(
            "google_folder_iam_binding.nodes",
            "shop-prod",
            "node-sa-permissions",
            BATCH_NODES,
            "missing",
        )],
    )
    .await;
    let checked: BTreeSet<&str> = doc["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project_id"].as_str().unwrap())
        .collect();
    assert_eq!(checked, BTreeSet::from(["shop-dev", "shop-prod"]));
    let b = the_break(&doc, "google_folder_iam_binding.nodes", BATCH_NODES);
    assert!(
        b["change"].as_str().unwrap().ends_with("on folders/111"),
        "{b:#}"
    );
    assert!(
        b["fix"]
            .as_str()
            .unwrap()
            .contains("google_folder_iam_member"),
        "{b:#}"
    );

    expect_breaks(
        "org-member-deleted.json",
        &[(
            "google_organization_iam_member.dev_agent",
            "shop-dev",
            "gke-service-agent",
            DEV_ROBOT,
            "missing",
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_account_deleted_or_disabled_breaks_the_pools_that_run_as_it() {
    let doc = expect_breaks(
        "service-account-deleted.json",
        &[
            (
                "google_service_account.gke_nodes",
                "shop-prod",
                "node-sa-exists",
                GKE_NODES,
                "missing",
            ),
            // IAM keeps a deleted account's grants as deleted:serviceAccount:...: they grant nothing.
            (
                "google_service_account.gke_nodes",
                "shop-prod",
                "node-sa-permissions",
                GKE_NODES,
                "missing",
            ),
        ],
    )
    .await;
    let b = the_break(&doc, "google_service_account.gke_nodes", GKE_NODES);
    assert!(
        b["fix"].as_str().unwrap().contains("us-central1/c1/pool-1"),
        "{b:#}"
    );
    // Deprivileged: the default account's roles/editor, its node permissions, goes.
    expect_breaks(
        "default-accounts-deprivilege.json",
        &[(
            "google_project_default_service_accounts.hardening",
            "shop-prod",
            "node-sa-permissions",
            COMPUTE_DEFAULT,
            "missing",
        )],
    )
    .await;
    expect_breaks(
        "service-account-disabled.json",
        &[(
            "google_service_account.batch_nodes",
            "shop-prod",
            "node-sa-exists",
            BATCH_NODES,
            "missing",
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_container_api_breaks_only_when_it_disables_it() {
    expect_breaks(
        "container-api-disabled.json",
        &[(
            "google_project_service.container",
            "shop-dev",
            "container-api-enabled",
            "-",
            "missing",
        )],
    )
    .await;
    // disable_on_destroy = false: the API stays; nothing can break, so nothing is read.
    let sim = world().await;
    let (run, doc) = check(&fixture("container-api-kept.json"), &[], &sim).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["breaks"], json!([]));
    assert_eq!(sim.stats().total, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_policy_breaks_every_node_account_it_does_not_exempt() {
    let doc = expect_breaks(
        "deny-policy.json",
        &[
            (
                "google_iam_deny_policy.no_logs",
                "shop-prod",
                "node-sa-permissions",
                BATCH_NODES,
                "denied",
            ),
            (
                "google_iam_deny_policy.no_logs",
                "shop-prod",
                "node-sa-permissions",
                COMPUTE_DEFAULT,
                "denied",
            ),
        ],
    )
    .await;
    let fix = the_break(&doc, "google_iam_deny_policy.no_logs", BATCH_NODES)["fix"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        fix.contains("principal://iam.googleapis.com/projects/-/serviceAccounts/batch-nodes@shop-prod.iam.gserviceaccount.com")
            && fix.contains("exception_principals of rules[0]"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn enforcing_the_default_account_constraint_where_it_runs_nodes_without_its_role_breaks() {
    for (plan, address) in [
        (
            "org-policy.json",
            "google_org_policy_policy.no_default_grants",
        ),
        (
            "org-policy-legacy.json",
            "google_project_organization_policy.no_default_grants",
        ),
    ] {
        let doc = expect_breaks(
            plan,
            &[(
                address,
                "shop-prod",
                "node-sa-permissions",
                COMPUTE_DEFAULT,
                "ok",
            )],
        )
        .await;
        let b = the_break(&doc, address, COMPUTE_DEFAULT);
        assert!(
            b["fix"]
                .as_str()
                .unwrap()
                .contains("grant roles/container.defaultNodeServiceAccount"),
            "{b:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn new_pools_and_clusters_running_as_accounts_without_the_node_role_break() {
    expect_breaks(
        "node-pool-new-account.json",
        &[(
            "google_container_node_pool.web",
            "shop-prod",
            "node-sa-permissions",
            "serviceAccount:web-nodes@shop-prod.iam.gserviceaccount.com",
            "missing",
        )],
    )
    .await;
    let doc = expect_breaks(
        "cluster-created.json",
        &[(
            "google_container_cluster.api",
            "shop-prod",
            "node-sa-permissions",
            "serviceAccount:spare@shop-prod.iam.gserviceaccount.com",
            "missing",
        )],
    )
    .await;
    let b = the_break(
        &doc,
        "google_container_cluster.api",
        "serviceAccount:spare@shop-prod.iam.gserviceaccount.com",
    );
    assert_eq!(
        b["before"],
        Value::Null,
        "not a node account before the plan"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_the_plan_creates_is_checked_from_the_plan_with_what_google_grants_in_it() {
    // Its first cluster runs as the default account, and the constraint that keeps roles from
    // default accounts is enforced on it: the account will hold nothing.
    let sim = world().await;
    let (run, doc) = check(&fixture("new-project.json"), &[], &sim).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let default = "serviceAccount:NUMBER-compute@developer.gserviceaccount.com";
    assert_eq!(
        breaks(&doc),
        set(&[
            (
                "google_container_cluster.first",
                "shop-new",
                "node-sa-permissions",
                default,
                "missing"
            ),
            (
                "google_org_policy_policy.no_default_grants",
                "shop-new",
                "node-sa-permissions",
                default,
                "missing"
            ),
        ])
    );
    assert_eq!(doc["projects"][0]["source"], "plan");
    assert_eq!(
        sim.stats().total,
        0,
        "a project that does not exist yet is not read"
    );
    // Without the constraint, Google grants the default account roles/editor: nothing breaks.
    let mut plan: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("new-project.json")).unwrap())
            .unwrap();
    plan["resource_changes"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["type"] != "google_org_policy_policy");
    let dir = crate::support::TempDir::new("check-plan");
    let path = dir.path().join("plan.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    let (run, doc) = check(&path.display().to_string(), &[], &sim).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["breaks"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_that_only_add_or_keep_what_gke_needs_pass_and_need_no_api_call_unless_they_can_break()
 {
    for (plan, reads) in [
        ("unrelated.json", false),
        ("additive.json", false),
        ("container-api-kept.json", false),
        // A new pool needs the live state to know its account holds the role: it does.
        ("node-pool-granted.json", true),
        ("module-account.json", true),
        ("cluster-with-pool.json", true),
    ] {
        let sim = world().await;
        let (run, doc) = check(&fixture(plan), &[], &sim).await;
        assert_eq!(run.code, 0, "{plan}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(doc["result"], "ok", "{plan}");
        assert_eq!(doc["breaks"], json!([]), "{plan}");
        assert_eq!(
            doc["unknown_values"],
            json!([]),
            "{plan}: every value was worked out"
        );
        assert_eq!(sim.stats().total > 0, reads, "{plan}: {:?}", sim.stats());
        assert_eq!(doc["live"], json!(reads), "{plan}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_change_reads_only_that_project() {
    let sim = world().await;
    let (run, doc) = check(&fixture("project-member-deleted.json"), &[], &sim).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let journal = sim.journal();
    assert!(!journal.is_empty());
    let other: Vec<String> = journal
        .iter()
        .map(|e| format!("{} {}?{}", e.method, e.path, e.query))
        .filter(|p| p.contains("shop-dev") || p.contains("200000000002"))
        .collect();
    assert!(other.is_empty(), "shop-dev was read: {other:?}");
    let writes: Vec<&str> = journal
        .iter()
        .map(|e| e.endpoint.as_str())
        .filter(|e| {
            ["setIamPolicy", "enable", "undelete", "create", "patch"]
                .iter()
                .any(|w| e.contains(w))
        })
        .collect();
    assert!(writes.is_empty(), "check-plan never writes: {writes:?}");
    assert_eq!(
        doc["api_calls"]["total"].as_u64().unwrap(),
        journal.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn module_nesting_is_attributed_to_full_addresses() {
    // Real: a for_each two modules down.
    expect_breaks(
        "module-nested.json",
        &[(
            "module.platform.module.iam.google_project_iam_binding.this[\"roles/container.defaultNodeServiceAgent\"]",
            "shop-prod",
            "gke-node-service-agent",
            PROD_NODE_AGENT,
            "missing",
        )],
    )
    .await;
    // Hand-written: instance keys on both modules; the dev instance's no-op changes nothing.
    expect_breaks(
        "hand/module-nesting.json",
        &[
            (
                "module.platform[\"prod\"].module.iam[0].google_project_iam_binding.agents[\"roles/container.serviceAgent\"]",
                "shop-prod",
                "gke-service-agent",
                PROD_ROBOT,
                "missing",
            ),
            (
                "module.platform[\"prod\"].module.iam[0].google_project_iam_member.nodes",
                "shop-prod",
                "node-sa-permissions",
                GKE_NODES,
                "missing",
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn values_known_only_after_apply_are_assumed_the_worst_and_named() {
    let doc = expect_breaks(
        "hand/unknown-values.json",
        &[
            (
                "google_project_iam_binding.agents",
                "shop-prod",
                "gke-service-agent",
                PROD_ROBOT,
                "missing",
            ),
            (
                "google_container_node_pool.batch",
                "shop-prod",
                "node-sa-permissions",
                "serviceAccount:known-after-apply@unknown.invalid",
                "missing",
            ),
            (
                "google_container_node_pool.spare",
                "shop-prod",
                "node-sa-permissions",
                "serviceAccount:spare@shop-prod.iam.gserviceaccount.com",
                "missing",
            ),
        ],
    )
    .await;
    let named: BTreeSet<(String, String)> = doc["unknown_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["address"].as_str().unwrap().to_owned(),
                u["attribute"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named,
        BTreeSet::from([
            (
                "google_project_iam_binding.agents".to_owned(),
                "members".to_owned()
            ),
            (
                "google_container_node_pool.batch".to_owned(),
                "node_config[0].service_account".to_owned()
            ),
            (
                "google_project_iam_member.spare".to_owned(),
                "member".to_owned()
            ),
        ])
    );
    let b = the_break(&doc, "google_project_iam_binding.agents", PROD_ROBOT);
    assert!(
        b["unknown_values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["attribute"] == "members"),
        "{b:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conditions_count_as_iam_decides_them_now() {
    // Expired: missing. Until 2099 beside it, and a conditional binding of the agent role beside its
    // unconditional one: nothing breaks.
    let doc = expect_breaks(
        "hand/conditions.json",
        &[(
            "google_project_iam_binding.nodes",
            "shop-prod",
            "node-sa-permissions",
            GKE_NODES,
            "missing",
        )],
    )
    .await;
    let b = the_break(&doc, "google_project_iam_binding.nodes", GKE_NODES);
    assert!(
        b["fix"].as_str().unwrap().contains("without a condition"),
        "{b:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_live_decides_from_the_plan_alone_and_says_what_it_could_not_know() {
    for (plan, address, requirement) in [
        (
            "project-binding-drops-agent.json",
            "google_project_iam_binding.gke_agent",
            "gke-service-agent",
        ),
        (
            "project-binding-conditional.json",
            "google_project_iam_binding.nodes",
            "node-sa-permissions",
        ),
        (
            "project-policy-data.json",
            "google_project_iam_policy.all",
            "gke-node-service-agent",
        ),
        (
            "project-member-deleted.json",
            "google_project_iam_member.nodes",
            "node-sa-permissions",
        ),
        (
            "project-member-remove.json",
            "google_project_iam_member_remove.agent",
            "gke-service-agent",
        ),
        (
            "org-member-deleted.json",
            "google_organization_iam_member.dev_agent",
            "gke-service-agent",
        ),
        (
            "container-api-disabled.json",
            "google_project_service.container",
            "container-api-enabled",
        ),
        (
            "deny-policy.json",
            "google_iam_deny_policy.no_logs",
            "node-sa-permissions",
        ),
        (
            "node-pool-new-account.json",
            "google_container_node_pool.web",
            "node-sa-permissions",
        ),
        (
            "cluster-created.json",
            "google_container_cluster.api",
            "node-sa-permissions",
        ),
        (
            "hand/unknown-values.json",
            "google_project_iam_binding.agents",
            "gke-service-agent",
        ),
    ] {
        let run = offline(&[
            "check-plan",
            &fixture(plan),
            "--no-live",
            "--format",
            "json",
        ])
        .await;
        assert_eq!(run.code, 1, "{plan}: {}\n{}", run.stdout, run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_schema(&doc);
        assert_eq!(doc["live"], false);
        assert_eq!(doc["api_calls"]["total"], 0);
        assert!(
            doc["breaks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["address"] == address && b["requirement"] == requirement),
            "{plan}: {doc:#}"
        );
        assert!(
            doc["projects"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["source"] == "plan")
        );
    }
    // What the plan cannot show is said, not guessed.
    for (plan, said) in [
        (
            "service-account-deleted.json",
            "whether node pools run as gke-nodes@shop-prod.iam.gserviceaccount.com is not known",
        ),
        (
            "folder-binding.json",
            "authoritative for roles/container.defaultNodeServiceAccount on folders/111",
        ),
        (
            "org-policy.json",
            "Compute Engine default account of shop-prod",
        ),
    ] {
        let run = offline(&[
            "check-plan",
            &fixture(plan),
            "--no-live",
            "--format",
            "json",
        ])
        .await;
        assert_eq!(run.code, 0, "{plan}: {}\n{}", run.stdout, run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(
            doc["not_known"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_str().unwrap().contains(said)),
            "{plan}: {doc:#}"
        );
    }
    let table = offline(&[
        "check-plan",
        &fixture("service-account-deleted.json"),
        "--no-live",
    ])
    .await;
    assert!(
        table.stdout.contains("not known from the plan alone:"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("as far as the plan alone shows"),
        "{}",
        table.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_table_names_the_address_the_requirement_the_principal_and_the_fix() {
    let sim = world().await;
    let run = remediator(
        &["check-plan", &fixture("project-member-remove.json")],
        &sim,
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = &run.stdout;
    assert!(
        !out.contains('\x1b'),
        "no colour when not a terminal: {out}"
    );
    assert!(
        out.contains("BREAKS google_project_iam_member_remove.agent"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "gke-service-agent for {PROD_ROBOT} in project shop-prod: ok -> missing"
        )),
        "{out}"
    );
    assert!(
        out.contains("fix:    remove google_project_iam_member_remove.agent: it takes roles/container.serviceAgent from"),
        "{out}"
    );
    assert!(out.contains("1 break(s) in 1 project(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_is_not_a_readable_plan_exits_2_with_one_line() {
    let dir = crate::support::TempDir::new("check-plan");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases = [
        (
            dir.path().join("absent.json").display().to_string(),
            "cannot read",
        ),
        (
            write("bad.json", "{\"format_version\": \"1.2\", "),
            "not JSON",
        ),
        (
            write(
                "state.json",
                r#"{"format_version": "1.0", "terraform_version": "1.11.4", "values": {}}"#,
            ),
            "it is the JSON of a state",
        ),
        (write("list.json", "[]"), "not a JSON object"),
        (
            write(
                "old.json",
                r#"{"format_version": "0.2", "resource_changes": []}"#,
            ),
            "not supported",
        ),
    ];
    for (path, said) in cases {
        let run = offline(&["check-plan", &path]).await;
        assert_eq!(run.code, 2, "{path}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", run.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(said),
            "{}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_that_cannot_be_read_is_an_error_not_a_pass() {
    let sim = world().await;
    let dir = crate::support::TempDir::new("check-plan");
    let plan = dir.path().join("plan.json");
    let doc = json!({
        "format_version": "1.2",
        "resource_changes": [{
            "address": "google_project_iam_member.m", "mode": "managed",
            "type": "google_project_iam_member", "name": "m",
            "change": {"actions": ["delete"],
                       "before": {"project": "no-such-project", "role": "roles/container.serviceAgent",
                                  "member": "serviceAccount:service-9@container-engine-robot.iam.gserviceaccount.com",
                                  "condition": []},
                       "after": null, "after_unknown": {}}
        }]
    });
    std::fs::write(&plan, doc.to_string()).unwrap();
    let (run, doc) = check(&plan.display().to_string(), &[], &sim).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["result"], "error");
    assert!(
        doc["errors"][0]
            .as_str()
            .unwrap()
            .contains("no-such-project"),
        "{doc:#}"
    );
}

/// A world of `n` GKE projects `shop-0`.. under one folder, each healthy.
fn big_world(n: usize) -> String {
    let mut y = String::from(
        "organization: {id: \"123456789012\"}\nfolders: [{id: \"111\", parent: organizations/123456789012}]\nprojects:\n",
    );
    for i in 0..n {
        let num = 300_000_000_000u64 + i as u64;
        y.push_str(&format!(
            r#"  - id: shop-{i}
    number: "{num}"
    parent: folders/111
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - {{role: roles/owner, members: [user:admin@example.com]}}
        - {{role: roles/container.serviceAgent, members: [serviceAccount:service-{num}@container-engine-robot.iam.gserviceaccount.com]}}
        - {{role: roles/container.defaultNodeServiceAgent, members: [serviceAccount:service-{num}@gcp-sa-gkenode.iam.gserviceaccount.com]}}
        - {{role: roles/container.defaultNodeServiceAccount, members: [serviceAccount:nodes@shop-{i}.iam.gserviceaccount.com]}}
    service_accounts: [{{email: nodes@shop-{i}.iam.gserviceaccount.com}}, {{email: spare@shop-{i}.iam.gserviceaccount.com}}]
    clusters: [{{name: c, location: us-central1, node_pools: [{{name: p, service_account: nodes@shop-{i}.iam.gserviceaccount.com}}]}}]
"#
        ));
    }
    y
}

/// A 1,000-resource plan over `projects` projects: buckets, topics and instances (nothing GKE
/// needs), grants kept or added everywhere, and three changes that break something in shop-0 and
/// shop-1 only.
fn big_plan(projects: usize) -> Value {
    let rc = |address: String, kind: &str, actions: &[&str], before: Value, after: Value| {
        json!({"address": address, "mode": "managed", "type": kind,
               "name": address.rsplit('.').next().unwrap().split('[').next().unwrap(),
               "provider_name": "registry.terraform.io/hashicorp/google",
               "change": {"actions": actions, "before": before, "after": after, "after_unknown": {}}})
    };
    let mut changes = Vec::new();
    for i in 0..700 {
        let p = format!("shop-{}", i % projects);
        let kind = [
            "google_storage_bucket",
            "google_pubsub_topic",
            "google_compute_instance",
        ][i % 3];
        let values = json!({"name": format!("r-{i}"), "project": p, "location": "US",
                            "labels": {"team": "shop", "env": "prod", "cost-center": "42"},
                            "description": "a resource check-plan has nothing to say about"});
        changes.push(rc(
            format!("module.app[{i}].{kind}.r"),
            kind,
            &["create"],
            Value::Null,
            values,
        ));
    }
    for i in 0..200 {
        let p = format!("shop-{}", i % projects);
        let grant = json!({"project": p, "role": "roles/viewer", "condition": [],
                           "member": format!("user:dev{i}@example.com")});
        changes.push(rc(
            format!("google_project_iam_member.kept[{i}]"),
            "google_project_iam_member",
            &["no-op"],
            grant.clone(),
            grant,
        ));
    }
    for i in 0..90 {
        let p = format!("shop-{}", i % projects);
        let grant = json!({"project": p, "role": "roles/logging.viewer", "condition": [],
                           "member": format!("user:ops{i}@example.com")});
        changes.push(rc(
            format!("google_project_iam_member.added[{i}]"),
            "google_project_iam_member",
            &["create"],
            Value::Null,
            grant,
        ));
    }
    for i in 0..7 {
        let p = format!("shop-{}", 2 + i);
        let svc = json!({"project": p, "service": "container.googleapis.com", "disable_on_destroy": false});
        changes.push(rc(
            format!("google_project_service.container[{i}]"),
            "google_project_service",
            &["create"],
            Value::Null,
            svc,
        ));
    }
    // The three that break: shop-0 loses its agent and its node grant, shop-1 gets a pool on spare@.
    let robot =
        "serviceAccount:service-300000000000@container-engine-robot.iam.gserviceaccount.com";
    let before = json!({"project": "shop-0", "role": "roles/container.serviceAgent", "condition": [], "members": [robot]});
    let after = json!({"project": "shop-0", "role": "roles/container.serviceAgent", "condition": [], "members": ["user:ops@example.com"]});
    changes.push(rc(
        "google_project_iam_binding.agent".into(),
        "google_project_iam_binding",
        &["update"],
        before,
        after,
    ));
    let grant = json!({"project": "shop-0", "role": "roles/container.defaultNodeServiceAccount", "condition": [],
                       "member": "serviceAccount:nodes@shop-0.iam.gserviceaccount.com"});
    changes.push(rc(
        "google_project_iam_member.nodes".into(),
        "google_project_iam_member",
        &["delete"],
        grant,
        Value::Null,
    ));
    let pool = json!({"project": "shop-1", "cluster": "c", "location": "us-central1", "name": "extra",
                      "node_config": [{"service_account": "spare@shop-1.iam.gserviceaccount.com"}]});
    changes.push(rc(
        "google_container_node_pool.extra".into(),
        "google_container_node_pool",
        &["create"],
        Value::Null,
        pool,
    ));
    assert_eq!(changes.len(), 1000);
    json!({"format_version": "1.2", "terraform_version": "1.11.4", "resource_changes": changes})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_resource_plan_reads_only_the_projects_it_can_break() {
    let sim = start_sim(&big_world(20)).await;
    let dir = crate::support::TempDir::new("check-plan");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, big_plan(20).to_string()).unwrap();
    let started = std::time::Instant::now();
    let (run, doc) = check(&plan.display().to_string(), &[], &sim).await;
    let wall = started.elapsed();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["plan"]["resource_changes"], 1000);
    assert_eq!(
        breaks(&doc),
        set(&[
            (
                "google_container_node_pool.extra",
                "shop-1",
                "node-sa-permissions",
                "serviceAccount:spare@shop-1.iam.gserviceaccount.com",
                "missing"
            ),
            (
                "google_project_iam_binding.agent",
                "shop-0",
                "gke-service-agent",
                "serviceAccount:service-300000000000@container-engine-robot.iam.gserviceaccount.com",
                "missing"
            ),
            (
                "google_project_iam_member.nodes",
                "shop-0",
                "node-sa-permissions",
                "serviceAccount:nodes@shop-0.iam.gserviceaccount.com",
                "missing"
            ),
        ])
    );
    // Only shop-0 and shop-1 (and their ancestors) were read.
    let read: BTreeSet<String> = sim
        .journal()
        .iter()
        .flat_map(|e| {
            let text = format!("{}?{}", e.path, e.query);
            (0..20)
                .filter(|i| {
                    text.contains(&format!("shop-{i}/"))
                        || text.ends_with(&format!("shop-{i}"))
                        || text.contains(&format!("shop-{i}:"))
                        || text.contains(&format!("{}", 300_000_000_000u64 + i))
                        || text.contains(&format!("@shop-{i}.iam"))
                })
                .map(|i| format!("shop-{i}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        read,
        BTreeSet::from(["shop-0".to_owned(), "shop-1".to_owned()])
    );
    println!(
        "1,000-resource plan: {} ms in check-plan ({} ms wall with process start), {} API calls",
        doc["elapsed_ms"],
        wall.as_millis(),
        doc["api_calls"]["total"]
    );
}
