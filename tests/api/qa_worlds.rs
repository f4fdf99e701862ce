//! The QA worlds of `infra/worlds/qa/`: each file's header holds a hand-derived truth (`# truth ACCOUNT
//! L T D A => STATUS OUTCOME [org_policy]` per node account and `# grant PROJECT ROLE MEMBER` per binding
//! `scan --apply` must add). `scan` (dry-run, then `--apply` with an enforce policy) must agree with it on
//! every account, and the policies read back from the simulator must differ by exactly those bindings.

use std::collections::{BTreeMap, BTreeSet};

use gcp_sim::World;
use serde_json::Value;

use crate::support::binary::{Run, remediator};
use crate::support::start_sim;

/// The four permissions a node account needs, in the order of a truth line.
const PERMISSIONS: [&str; 4] = [
    "logging.logEntries.create",
    "monitoring.timeSeries.create",
    "monitoring.metricDescriptors.create",
    "autoscaling.sites.writeMetrics",
];

/// What the header says one node account's finding must be.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    permissions: Vec<String>,
    status: String,
    outcome: String,
    org_policy: bool,
}

struct Truth {
    verdicts: BTreeMap<String, Verdict>,
    grants: BTreeSet<(String, String, String)>,
}

fn truth_of(text: &str) -> Truth {
    let mut verdicts = BTreeMap::new();
    let mut grants = BTreeSet::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.get(1) {
            Some(&"truth") => {
                assert_eq!(words.get(7), Some(&"=>"), "bad truth line: {line}");
                let verdict = Verdict {
                    permissions: words[3..7].iter().map(|w| (*w).to_owned()).collect(),
                    status: words[8].to_owned(),
                    outcome: words[9].to_owned(),
                    org_policy: words.get(10) == Some(&"org_policy"),
                };
                verdicts.insert(words[2].to_owned(), verdict);
            }
            Some(&"grant") => {
                grants.insert((
                    words[2].to_owned(),
                    words[3].to_owned(),
                    words[4].to_owned(),
                ));
            }
            _ => {}
        }
    }
    assert!(!verdicts.is_empty(), "a QA world without truth lines");
    Truth { verdicts, grants }
}

/// Each required permission's status, from the finding's permission lists.
fn verdict_of(finding: &Value) -> Verdict {
    let status_of = |permission: &str| {
        for kind in ["denied", "missing", "unknown", "conditional"] {
            let listed = finding[format!("{kind}_permissions")]
                .as_array()
                .is_some_and(|l| l.iter().any(|p| p == permission));
            if listed {
                return kind.to_owned();
            }
        }
        "ok".to_owned()
    };
    Verdict {
        permissions: PERMISSIONS.iter().map(|p| status_of(p)).collect(),
        status: finding["status"].as_str().unwrap_or_default().to_owned(),
        outcome: finding["outcome"].as_str().unwrap_or_default().to_owned(),
        org_policy: finding["org_policy"].is_string(),
    }
}

fn node_verdicts(run: &Run) -> BTreeMap<String, Verdict> {
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    let mut out = BTreeMap::new();
    for project in doc["projects"].as_array().expect("projects") {
        assert!(project["error"].is_null(), "{project:#}");
        for finding in project["findings"].as_array().expect("findings") {
            if finding["requirement"] == "node-sa-permissions" {
                let principal = finding["principal"].as_str().expect("principal").to_owned();
                out.insert(principal, verdict_of(finding));
            }
        }
    }
    out
}

/// Every (role, member, condition) of a resource's stored policy.
fn bindings(sim: &gcp_sim::SimHandle, resource: &str) -> BTreeSet<(String, String, String)> {
    let policy = serde_json::to_value(sim.policy(resource)).expect("policy serializes");
    let mut out = BTreeSet::new();
    for binding in policy["bindings"].as_array().into_iter().flatten() {
        for member in binding["members"].as_array().into_iter().flatten() {
            out.insert((
                binding["role"].as_str().unwrap_or_default().to_owned(),
                member.as_str().unwrap_or_default().to_owned(),
                binding["condition"].to_string(),
            ));
        }
    }
    out
}

/// Every policy of the world (organization, folders, projects), keyed by resource.
fn all_bindings(
    sim: &gcp_sim::SimHandle,
    world: &World,
) -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    let mut resources: Vec<String> = world
        .organization
        .iter()
        .map(|o| format!("organizations/{}", o.id))
        .collect();
    resources.extend(world.folders.iter().map(|f| format!("folders/{}", f.id)));
    resources.extend(world.projects.iter().map(|p| format!("projects/{}", p.id)));
    resources
        .into_iter()
        .map(|r| {
            let b = bindings(sim, &r);
            (r, b)
        })
        .collect()
}

async fn check_world(name: &str) {
    let text = crate::support::world_file(&format!("qa/{name}"));
    let truth = truth_of(&text);
    let world = World::from_yaml(&text, name).expect("QA world loads");
    let org = world
        .organization
        .as_ref()
        .expect("QA worlds have an organization")
        .id
        .clone();
    let sim = start_sim(&text).await;
    let before = all_bindings(&sim, &world);

    // Cloud Identity's client-side limit (5/s) would make this a 15 s test; the calls are the same.
    // Deny policies at every level of an organization take more IAM v2 reads than Google's 5 per
    // minute: the truth is the one with every deny policy read.
    let fast = [
        "--rate-limit",
        "cloudidentity=100",
        "--rate-limit",
        "iam-v2=1000",
    ];
    let dry = remediator(
        &[
            &["scan", "--organization", &org, "--format", "json"][..],
            &fast,
        ]
        .concat(),
        &sim,
    )
    .await;
    assert_eq!(
        node_verdicts(&dry),
        truth.verdicts,
        "{name}: dry-run verdicts"
    );
    assert_eq!(
        all_bindings(&sim, &world),
        before,
        "{name}: a dry run wrote"
    );

    let policy = crate::support::TempFile::new("mode: enforce\n");
    let applied = remediator(
        &[
            "scan",
            "--organization",
            &org,
            "--format",
            "json",
            "--apply",
            "--policy",
            policy.arg(),
            fast[0],
            fast[1],
            fast[2],
            fast[3],
        ],
        &sim,
    )
    .await;
    node_verdicts(&applied);
    let after = all_bindings(&sim, &world);
    let mut added = BTreeSet::new();
    for (resource, now) in &after {
        let was = &before[resource];
        assert!(
            was.is_subset(now),
            "{name}: {resource} lost {:?}",
            was.difference(now).collect::<Vec<_>>()
        );
        for (role, member, condition) in now.difference(was) {
            assert_eq!(
                condition, "null",
                "{name}: a conditional binding was written"
            );
            let project = resource.strip_prefix("projects/").unwrap_or(resource);
            added.insert((project.to_owned(), role.clone(), member.clone()));
        }
    }
    assert_eq!(added, truth.grants, "{name}: bindings added by --apply");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_bound_grants_the_default_account_org_policy_and_nested_groups_match_the_hand_derived_truth()
 {
    check_world("time-org-groups.yaml").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_rules_at_every_level_match_the_hand_derived_truth_and_only_restorable_grants_are_added()
 {
    check_world("deny-rules.yaml").await;
}

#[test]
fn every_qa_world_has_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/worlds/qa");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("infra/worlds/qa")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["deny-rules.yaml", "time-org-groups.yaml"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cloud_identity_the_troubleshooter_settles_deny_rules_that_name_groups() {
    let text = crate::support::world_file("qa/deny-rules.yaml");
    let truth = truth_of(&text);
    let sim = start_sim(&text).await;
    sim.set_faults(gcp_sim::Faults {
        deny: ["cloudidentity.memberships.checkTransitiveMembership".to_owned()].into(),
        ..Default::default()
    });
    let scan = |extra: &'static [&'static str]| {
        let sim = &sim;
        async move {
            let mut args = vec![
                "scan",
                "--organization",
                "535353535353",
                "--format",
                "json",
                "--rate-limit",
                "policytroubleshooter=100",
                // Every deny policy of the organization read (more than Google's 5 per minute).
                "--rate-limit",
                "iam-v2=1000",
            ];
            args.extend(extra);
            node_verdicts(&remediator(&args, sim).await)
        }
    };
    let without = scan(&[]).await;
    let with = scan(&["--troubleshooter"]).await;

    // Each names a group in a deny rule: as denied principals (grouped@), or as the exception of
    // public:all (nodes-b@ outside it, vip@ inside).
    for account in ["grouped@qa-deny-a", "nodes-b@qa-deny-b", "vip@qa-deny-b"] {
        let key = format!("serviceAccount:{account}.iam.gserviceaccount.com");
        assert_eq!(
            without[&key].status, "unknown",
            "{account} without Cloud Identity"
        );
        assert_eq!(
            with[&key], truth.verdicts[&key],
            "{account} through the troubleshooter"
        );
    }
    sim.shutdown().await;
}
