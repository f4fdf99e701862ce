//! Deny policies, Org Policy and Cloud Identity: the simulator's surfaces over HTTP, then `scan` (the
//! real binary) against the shipped worlds, checked against the truth each world's header derives
//! by hand.

use std::collections::BTreeMap;

use gcp_sim::{Faults, SimHandle};
use serde_json::Value;

use crate::support::binary::remediator;
use crate::support::{Api, Gcloud, TempFile, findings, start_sim, world_file};

const PROD_PARENT: &str =
    "v2/policies/cloudresourcemanager.googleapis.com%252Fprojects%252Fdeny-prod/denypolicies";

#[tokio::test]
async fn deny_policies_are_listed_without_rules_and_read_with_them_under_either_encoding() {
    let sim = start_sim(&world_file("deny-policies.yaml")).await;
    let api = Api::new(&sim);
    let (status, list) = api.get(PROD_PARENT).await;
    assert_eq!(status, 200, "{list}");
    let policies = list["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 2);
    assert_eq!(
        policies[0]["name"],
        "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F300000000001/denypolicies/lapsed-freeze"
    );
    assert_eq!(policies[0]["kind"], "DenyPolicy");
    assert!(policies[0].get("rules").is_none(), "list omits rules");
    // One page of one, then the last page.
    let (_, page) = api.get(&format!("{PROD_PARENT}?pageSize=1")).await;
    let token = page["nextPageToken"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, last) = api
        .get(&format!("{PROD_PARENT}?pageSize=1&pageToken={token}"))
        .await;
    assert_eq!(last["policies"][0]["name"], policies[1]["name"]);
    assert!(last.get("nextPageToken").is_none());
    // Single %2F (Google's docs) and the organization by number.
    let (status, org) = api
        .get("v2/policies/cloudresourcemanager.googleapis.com%2Forganizations%2F123456789012/denypolicies/no-logging-for-legacy")
        .await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(
        org["rules"][0]["denyRule"]["deniedPermissions"][0],
        "logging.googleapis.com/logEntries.create"
    );
    assert!(org["etag"].is_string() && org["uid"].is_string());
    let (status, folder) = api
        .get("v2/policies/cloudresourcemanager.googleapis.com%252Ffolders%252F111/denypolicies/fence-metrics")
        .await;
    assert_eq!(status, 200, "{folder}");
    assert_eq!(
        folder["rules"][0]["denyRule"]["exceptionPermissions"][0],
        "monitoring.googleapis.com/metricDescriptors.create"
    );
    // No deny policies: `{}`. Unknown policy: 404.
    let (status, none) = api
        .get("v2/policies/cloudresourcemanager.googleapis.com%252Fprojects%252F300000000002/denypolicies")
        .await;
    assert_eq!((status, none), (200, serde_json::json!({})));
    let (status, _) = api.get(&format!("{PROD_PARENT}/nope")).await;
    assert_eq!(status, 404);
    // Without iam.denypolicies.list: Google's 403 naming the permission.
    sim.set_faults(Faults {
        deny: ["iam.denypolicies.list".to_owned()].into(),
        ..Default::default()
    });
    let (status, e) = api.get(PROD_PARENT).await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        e["error"]["details"][0]["metadata"]["permission"],
        "iam.denypolicies.list"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn effective_org_policy_follows_the_hierarchy_and_policies_get_is_404_where_none_is_set() {
    let sim = start_sim(&world_file("org-policy.yaml")).await;
    let api = Api::new(&sim);
    const C: &str = "iam.automaticIamGrantsForDefaultServiceAccounts";
    let (status, eff) = api
        .get(&format!(
            "v2/projects/op-prod/policies/{C}:getEffectivePolicy"
        ))
        .await;
    assert_eq!(status, 200, "{eff}");
    assert_eq!(eff["name"], format!("projects/500000000001/policies/{C}"));
    assert_eq!(eff["spec"]["rules"][0]["enforce"], true);
    let (_, reset) = api
        .get(&format!(
            "v2/projects/op-legacy/policies/{C}:getEffectivePolicy"
        ))
        .await;
    assert_eq!(reset["spec"]["rules"][0]["enforce"], false, "{reset}");
    let (status, _) = api.get(&format!("v2/projects/op-prod/policies/{C}")).await;
    assert_eq!(status, 404, "nothing is set on the project itself");
    let (status, org) = api
        .get(&format!("v2/organizations/123456789012/policies/{C}"))
        .await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(org["spec"]["rules"][0]["enforce"], true);
    let (_, folder) = api.get(&format!("v2/folders/222/policies/{C}")).await;
    assert_eq!(folder["spec"]["reset"], true, "{folder}");
    sim.shutdown().await;
}

#[tokio::test]
async fn cloud_identity_checks_transitive_membership_through_nested_groups() {
    let sim = start_sim(&world_file("nested-groups.yaml")).await;
    let api = Api::new(&sim);
    let (status, g) = api
        .get("v1/groups:lookup?groupKey.id=gke-all%40example.com")
        .await;
    assert_eq!(status, 200, "{g}");
    let name = g["name"].as_str().unwrap().to_owned();
    let check = |member: &str| {
        format!(
            "v1/{name}/memberships:checkTransitiveMembership?query=member_key_id%20%3D%3D%20%27{member}%27"
        )
    };
    let (status, yes) = api
        .get(&check("nested%40ng-project.iam.gserviceaccount.com"))
        .await;
    assert_eq!(
        (status, &yes["hasMembership"]),
        (200, &Value::Bool(true)),
        "{yes}"
    );
    let (_, no) = api
        .get(&check("outsider%40ng-project.iam.gserviceaccount.com"))
        .await;
    assert_eq!(no, serde_json::json!({}), "proto3 omits false");
    let (status, hidden) = api
        .get("v1/groups:lookup?groupKey.id=nobody%40example.com")
        .await;
    assert_eq!(status, 403);
    assert!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Error(2028)"),
        "{hidden}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_troubleshooter_evaluates_time_bound_grants_and_deny_policies() {
    let sim = start_sim(&world_file("time-bound.yaml")).await;
    let api = Api::new(&sim);
    let ask = |who: &str| serde_json::json!({"accessTuple": {"principal": who, "fullResourceName": "//cloudresourcemanager.googleapis.com/projects/tb-project", "permission": "logging.logEntries.create"}});
    let (_, expired) = api
        .post(
            "v3/iam:troubleshoot",
            ask("expired@tb-project.iam.gserviceaccount.com"),
        )
        .await;
    assert_eq!(expired["overallAccessState"], "CANNOT_ACCESS", "{expired}");
    let (_, live) = api
        .post(
            "v3/iam:troubleshoot",
            ask("live@tb-project.iam.gserviceaccount.com"),
        )
        .await;
    assert_eq!(live["overallAccessState"], "CAN_ACCESS");
    let (_, review) = api
        .post(
            "v3/iam:troubleshoot",
            ask("review@tb-project.iam.gserviceaccount.com"),
        )
        .await;
    assert_eq!(review["overallAccessState"], "UNKNOWN_CONDITIONAL");
    sim.shutdown().await;
    let sim = start_sim(&world_file("deny-policies.yaml")).await;
    let api = Api::new(&sim);
    let ask = serde_json::json!({"accessTuple": {"principal": "legacy@deny-prod.iam.gserviceaccount.com", "fullResourceName": "//cloudresourcemanager.googleapis.com/projects/deny-prod", "permission": "logging.logEntries.create"}});
    let (_, denied) = Api::new(&sim).post("v3/iam:troubleshoot", ask).await;
    assert_eq!(denied["overallAccessState"], "CANNOT_ACCESS", "{denied}");
    assert_eq!(
        denied["denyPolicyExplanation"]["denyAccessState"],
        "DENY_ACCESS_STATE_DENIED"
    );
    let _ = api;
    sim.shutdown().await;
}

fn statuses(doc: &Value) -> BTreeMap<String, (String, String)> {
    findings(doc)
        .into_iter()
        .filter(|f| f["requirement"] == "node-sa-permissions" && f["principal"].is_string())
        .map(|f| {
            let p = f["principal"].as_str().unwrap();
            let short = p
                .trim_start_matches("serviceAccount:")
                .split('.')
                .next()
                .unwrap()
                .to_owned();
            // `ok*`: ok on the allow side with deny policies not read (`deny_check` names them).
            let star = if f.get("deny_check").is_some() {
                "*"
            } else {
                ""
            };
            (
                short,
                (
                    format!("{}{star}", f["status"].as_str().unwrap()),
                    f["outcome"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

fn grants(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = doc["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["actions"].as_array().unwrap())
        .filter(|a| a["outcome"] == "restored")
        .map(|a| a["action"]["member"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

fn parse(stdout: &str, stderr: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"))
}

fn expect(truth: &[(&str, &str, &str)]) -> BTreeMap<String, (String, String)> {
    truth
        .iter()
        .map(|(a, s, o)| ((*a).to_owned(), ((*s).to_owned(), (*o).to_owned())))
        .collect()
}

/// Whether [`scan_json`] only reports or also restores.
#[derive(Clone, Copy, PartialEq)]
enum Scan {
    Report,
    /// `--apply` under a policy file that enforces.
    Apply,
}

/// `scan --format json` of `projects` by the real binary against `sim`, then `extra`: the report
/// and what the run printed to stderr.
async fn scan_json(
    sim: &SimHandle,
    projects: &[&str],
    scan: Scan,
    extra: &[&str],
) -> (Value, String) {
    let policy = TempFile::new("mode: enforce\n");
    let mut args = vec!["scan", "--format", "json"];
    for project in projects {
        args.extend(["--project", project]);
    }
    if scan == Scan::Apply {
        args.extend(["--apply", "--policy", policy.arg()]);
    }
    args.extend_from_slice(extra);
    let run = remediator(&args, sim).await;
    (parse(&run.stdout, &run.stderr), run.stderr)
}

/// The node-permissions finding of `account` (its full email) in any project of the report.
fn node_finding<'a>(doc: &'a Value, account: &str) -> &'a Value {
    let principal = format!("serviceAccount:{account}");
    findings(doc)
        .into_iter()
        .find(|f| f["principal"] == principal.as_str() && f["requirement"] == "node-sa-permissions")
        .unwrap_or_else(|| panic!("no node-permissions finding for {account}: {doc}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_apply_restores_exactly_what_no_deny_rule_blocks_and_names_the_blocking_policy() {
    let sim = start_sim(&world_file("deny-policies.yaml")).await;
    // Two projects with deny policies at every level: 8 IAM v2 reads, more than Google's 5 per
    // minute.
    let (doc, stderr) = scan_json(
        &sim,
        &["deny-prod", "deny-dev"],
        Scan::Apply,
        &["--rate-limit", "iam-v2=100"],
    )
    .await;
    assert_eq!(
        statuses(&doc),
        expect(&[
            ("legacy@deny-prod", "denied", "not-allowed"),
            ("blocked@deny-prod", "denied", "not-allowed"),
            ("fenced@deny-prod", "denied", "not-allowed"),
            ("excepted@deny-prod", "ok", "healthy"),
            ("lapsed@deny-prod", "ok", "healthy"),
            ("tagged@deny-prod", "unknown", "unknown"),
            ("bare@deny-prod", "missing", "restored"),
            ("dev-nodes@deny-dev", "ok", "healthy"),
            ("dev-bare@deny-dev", "missing", "restored"),
        ]),
        "{stderr}"
    );
    assert_eq!(
        grants(&doc),
        vec![
            "serviceAccount:bare@deny-prod.iam.gserviceaccount.com",
            "serviceAccount:dev-bare@deny-dev.iam.gserviceaccount.com",
        ]
    );
    let legacy = node_finding(&doc, "legacy@deny-prod.iam.gserviceaccount.com");
    assert_eq!(
        legacy["denied_permissions"],
        serde_json::json!(["logging.logEntries.create"])
    );
    let by = "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F123456789012/denypolicies/no-logging-for-legacy";
    assert_eq!(legacy["denied_by"][0]["policy"], by);
    assert!(legacy["detail"].as_str().unwrap().contains(by), "{legacy}");
    let tagged = node_finding(&doc, "tagged@deny-prod.iam.gserviceaccount.com");
    assert!(
        tagged["detail"]
            .as_str()
            .unwrap()
            .contains("prod-tag-only may block it"),
        "{tagged}"
    );
    assert!(tagged["denied_by"][0]["uncertain"].is_string(), "{tagged}");
    // Nothing was written for the denied accounts.
    let prod = sim.policy("projects/deny-prod").unwrap();
    let members: Vec<String> = prod
        .bindings
        .iter()
        .filter(|b| b.role == "roles/container.defaultNodeServiceAccount")
        .flat_map(|b| b.members.iter().map(|m| m.to_string()))
        .collect();
    assert!(
        !members.iter().any(|m| m.contains("blocked@")),
        "{members:?}"
    );
    // A second scan: the restored accounts are ok, the denied ones still denied (7 IAM v2 reads:
    // deny-prod's list and 2 gets, the folder's and the organization's list and get).
    let (doc, _) = scan_json(
        &sim,
        &["deny-prod"],
        Scan::Report,
        &["--rate-limit", "iam-v2=100"],
    )
    .await;
    let s = statuses(&doc);
    assert_eq!(s["bare@deny-prod"].0, "ok");
    assert_eq!(s["legacy@deny-prod"].0, "denied");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_permission_to_read_deny_policies_verdicts_are_ok_star_and_said_once() {
    let sim = start_sim(&world_file("deny-policies.yaml")).await;
    sim.set_faults(Faults {
        deny: ["iam.denypolicies.list".to_owned()].into(),
        ..Default::default()
    });
    let (doc, stderr) = scan_json(&sim, &["deny-prod", "deny-dev"], Scan::Report, &[]).await;
    let s = statuses(&doc);
    assert_eq!(s["dev-nodes@deny-dev"].0, "ok*", "{s:?}");
    assert_eq!(
        s["legacy@deny-prod"].0, "ok*",
        "never a plain ok on a guess: the deny check names what it could not read"
    );
    assert_eq!(
        s["bare@deny-prod"].0, "missing",
        "a missing grant is still missing"
    );
    assert!(!s.values().any(|(status, _)| status == "ok"), "{s:?}");
    assert_eq!(
        stderr.matches("cannot read IAM deny policies").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in logs that go to a pipe: {stderr:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_apply_grants_expired_time_bound_accounts_and_leaves_live_and_undecidable_ones() {
    let sim = start_sim(&world_file("time-bound.yaml")).await;
    let (doc, _) = scan_json(&sim, &["tb-project"], Scan::Apply, &[]).await;
    assert_eq!(
        statuses(&doc),
        expect(&[
            ("expired@tb-project", "missing", "restored"),
            ("live@tb-project", "ok", "healthy"),
            ("window@tb-project", "missing", "restored"),
            ("review@tb-project", "conditional", "unknown"),
        ])
    );
    assert_eq!(
        grants(&doc),
        vec![
            "serviceAccount:expired@tb-project.iam.gserviceaccount.com",
            "serviceAccount:window@tb-project.iam.gserviceaccount.com",
        ]
    );
    let expired = node_finding(&doc, "expired@tb-project.iam.gserviceaccount.com");
    assert!(
        expired["detail"]
            .as_str()
            .unwrap()
            .contains("time-bound grant"),
        "{expired}"
    );
    // The expired conditional binding is still there, untouched.
    let p = sim.policy("projects/tb-project").unwrap();
    assert!(p.bindings.iter().any(|b| {
        b.condition
            .as_ref()
            .is_some_and(|c| c.title.as_deref() == Some("until-2026-06-30"))
    }));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_enforced_org_policy_is_named_for_a_role_less_default_account_and_only_there() {
    let sim = start_sim(&world_file("org-policy.yaml")).await;
    let (doc, _) = scan_json(&sim, &["op-prod", "op-legacy"], Scan::Report, &[]).await;
    let node = |project: &str| {
        doc["projects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["project_id"] == project)
            .unwrap()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["requirement"] == "node-sa-permissions" && f["principal"].is_string())
            .unwrap()
            .clone()
    };
    let prod = node("op-prod");
    assert_eq!(prod["status"], "missing");
    assert_eq!(
        prod["org_policy"],
        "constraints/iam.automaticIamGrantsForDefaultServiceAccounts"
    );
    assert!(
        prod["detail"]
            .as_str()
            .unwrap()
            .contains("iam.automaticIamGrantsForDefaultServiceAccounts is enforced")
    );
    let legacy = node("op-legacy");
    assert_eq!(legacy["status"], "missing");
    assert!(legacy.get("org_policy").is_none(), "{legacy}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_groups_are_resolved_through_cloud_identity_for_grants_and_deny_rules() {
    let sim = start_sim(&world_file("nested-groups.yaml")).await;
    let (doc, stderr) = scan_json(&sim, &["ng-project"], Scan::Apply, &[]).await;
    assert_eq!(
        statuses(&doc),
        expect(&[
            ("nested@ng-project", "ok", "healthy"),
            ("outsider@ng-project", "missing", "restored"),
            ("muted@ng-project", "denied", "not-allowed"),
        ]),
        "{stderr}"
    );
    assert_eq!(
        grants(&doc),
        vec!["serviceAccount:outsider@ng-project.iam.gserviceaccount.com"]
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_policies_and_org_policy_add_at_most_two_calls_per_project() {
    let sim = start_sim(&world_file("deny-policies.yaml")).await;
    // 8 IAM v2 reads (lists and gets), more than Google's 5 per minute.
    let (doc, _) = scan_json(
        &sim,
        &["deny-prod", "deny-dev"],
        Scan::Report,
        &["--rate-limit", "iam-v2=100"],
    )
    .await;
    let journal = sim.journal();
    let count = |endpoint: &str| journal.iter().filter(|e| e.endpoint == endpoint).count();
    // Per project: one list of its own deny policies (+ one get per policy attached to the
    // project itself); the folder's and organization's lists and gets are read once per run.
    assert_eq!(
        count("iam.policies.listPolicies"),
        2 + 2,
        "2 projects + folder + org"
    );
    assert_eq!(
        count("iam.policies.get"),
        2 + 1 + 1,
        "deny-prod's 2, the folder's, the org's"
    );
    assert_eq!(
        count("orgpolicy.policies.getEffectivePolicy"),
        0,
        "no default account in use"
    );
    assert!(doc["api_calls"]["total"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gcloud_lists_deny_policies_and_describes_the_effective_org_policy() {
    let sim = start_sim(&world_file("deny-policies.yaml")).await;
    let gcloud = Gcloud::new(&sim.base_url(), "deny-prod");
    let list = gcloud
        .run(&[
            "iam",
            "policies",
            "list",
            "--attachment-point=cloudresourcemanager.googleapis.com/projects/deny-prod",
            "--kind=denypolicies",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    let names: Vec<&str> = list["policies"]
        .as_array()
        .expect("gcloud prints the raw ListPoliciesResponse")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F300000000001/denypolicies/lapsed-freeze",
            "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F300000000001/denypolicies/prod-tag-only",
        ]
    );
    let got = gcloud
        .run(&[
            "iam",
            "policies",
            "get",
            "fence-metrics",
            "--attachment-point=cloudresourcemanager.googleapis.com/folders/111",
            "--kind=denypolicies",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(got["rules"].as_array().map(Vec::len), Some(2), "{got}");
    sim.shutdown().await;

    let sim = start_sim(&world_file("org-policy.yaml")).await;
    let gcloud = Gcloud::new(&sim.base_url(), "op-prod");
    let effective = gcloud
        .run(&[
            "org-policies",
            "describe",
            "iam.automaticIamGrantsForDefaultServiceAccounts",
            "--effective",
            "--project=op-prod",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        effective["spec"]["rules"][0]["enforce"], true,
        "{effective}"
    );
    let missing = gcloud
        .run(&[
            "org-policies",
            "describe",
            "constraints/iam.automaticIamGrantsForDefaultServiceAccounts",
            "--project=op-prod",
            "--format=json",
        ])
        .await;
    assert_ne!(
        missing.code, 0,
        "nothing is set on the project itself: {}",
        missing.stderr
    );
    sim.shutdown().await;

    let sim = start_sim(&world_file("nested-groups.yaml")).await;
    let gcloud = Gcloud::new(&sim.base_url(), "ng-project");
    let check = gcloud
        .run(&[
            "identity",
            "groups",
            "memberships",
            "check-transitive-membership",
            "--group-email=gke-all@example.com",
            "--member-email=nested@ng-project.iam.gserviceaccount.com",
            "--format=json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(check["hasMembership"], true, "{check}");
    sim.shutdown().await;
}
