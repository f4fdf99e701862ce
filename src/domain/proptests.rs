//! Property tests of evaluate + decide over random policies, clusters and remediation policies:
//! a plan never removes or edits a binding, never grants a role outside the requirement list, only
//! grants to principals derived from live state, is idempotent, and is empty on a healthy project.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::Map;

use super::evaluate::{self, Status};
use super::iam::{
    Binding, Condition, Member, Policy, ProjectId, ProjectNumber, ResourceRef, Role,
    ServiceAccountEmail,
};
use super::plan::{self, Action, DecideContext, Decision};
use super::requirements::{self as req, RequirementId, restorable_roles};
use super::state::{
    AccountState, ApiState, Cluster, NodePool, ProjectState, RoleCatalog, RoleLookup,
};
use crate::domain::rules::{Mode, RemediationPolicy};

const NUMBER: &str = "100000000001";

fn sa_pool() -> Vec<String> {
    vec![
        "default".to_owned(),
        "gke-a@demo-project.iam.gserviceaccount.com".to_owned(),
        "gke-b@demo-project.iam.gserviceaccount.com".to_owned(),
        "nodes@other-project.iam.gserviceaccount.com".to_owned(),
    ]
}

fn member_pool() -> Vec<String> {
    let mut m: Vec<String> = sa_pool()
        .into_iter()
        .map(|s| {
            if s == "default" {
                format!("serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com")
            } else {
                format!("serviceAccount:{s}")
            }
        })
        .collect();
    m.push(format!(
        "serviceAccount:service-{NUMBER}@container-engine-robot.iam.gserviceaccount.com"
    ));
    m.push(format!(
        "serviceAccount:service-{NUMBER}@gcp-sa-gkenode.iam.gserviceaccount.com"
    ));
    m.push("user:alice@example.com".to_owned());
    m.push("group:gke-admins@example.com".to_owned());
    m.push("deleted:serviceAccount:gke-b@demo-project.iam.gserviceaccount.com?uid=42".to_owned());
    m
}

fn role_pool() -> Vec<&'static str> {
    vec![
        req::ROLE_DEFAULT_NODE_SA,
        req::ROLE_GKE_SERVICE_AGENT,
        req::ROLE_GKE_NODE_SERVICE_AGENT,
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
        "roles/viewer",
        "roles/owner",
        "projects/demo-project/roles/nodeLogger",
        "roles/deleted.role",
    ]
}

fn catalog() -> RoleCatalog {
    let node: BTreeSet<String> = req::NODE_SA_PERMISSIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut c = RoleCatalog::default();
    let set = |v: &[&str]| RoleLookup::Found(v.iter().map(|s| s.to_string()).collect());
    c.insert(
        Role::parse(req::ROLE_DEFAULT_NODE_SA).unwrap(),
        RoleLookup::Found(node.clone()),
    );
    c.insert(
        Role::parse(req::ROLE_GKE_NODE_SERVICE_AGENT).unwrap(),
        RoleLookup::Found(node.clone()),
    );
    c.insert(
        Role::parse(req::ROLE_GKE_SERVICE_AGENT).unwrap(),
        RoleLookup::Found(node.clone()),
    );
    c.insert(
        Role::parse("roles/logging.logWriter").unwrap(),
        set(&["logging.logEntries.create"]),
    );
    c.insert(
        Role::parse("roles/monitoring.metricWriter").unwrap(),
        set(&[
            "monitoring.timeSeries.create",
            "monitoring.metricDescriptors.create",
        ]),
    );
    c.insert(
        Role::parse("roles/viewer").unwrap(),
        set(&["resourcemanager.projects.get"]),
    );
    c.insert(Role::parse("roles/owner").unwrap(), RoleLookup::Found(node));
    c.insert(
        Role::parse("projects/demo-project/roles/nodeLogger").unwrap(),
        set(&["logging.logEntries.create"]),
    );
    c.insert(
        Role::parse("roles/deleted.role").unwrap(),
        RoleLookup::NotFound,
    );
    c
}

fn binding_strategy() -> impl Strategy<Value = Binding> {
    (
        0..role_pool().len(),
        proptest::collection::vec(0..member_pool().len(), 1..4),
        proptest::option::weighted(0.2, "[a-z]{1,8}"),
    )
        .prop_map(|(r, ms, cond)| {
            let pool = member_pool();
            let mut members: Vec<Member> = Vec::new();
            for i in ms {
                let m = Member::parse(&pool[i]).unwrap();
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            Binding {
                role: Role::parse(role_pool()[r]).unwrap(),
                members,
                condition: cond.map(|t| Condition {
                    title: Some(t),
                    // Undecidable now: the grant stays conditional (needs review).
                    expression: "resource.name.startsWith('projects/_/buckets/logs')".to_owned(),
                    ..Default::default()
                }),
                other: Map::new(),
            }
        })
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (
        proptest::collection::vec(binding_strategy(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(bindings, audit)| Policy {
            version: 3,
            etag: Some("BwYAAAAAAAA=".to_owned()),
            bindings,
            audit_configs: if audit {
                vec![serde_json::json!({"service": "allServices"})]
            } else {
                Vec::new()
            },
            other: Map::new(),
        })
}

fn state_strategy() -> impl Strategy<Value = ProjectState> {
    (
        policy_strategy(),
        policy_strategy(),
        proptest::collection::vec((0..sa_pool().len(), any::<bool>()), 0..4),
        any::<bool>(),
    )
        .prop_map(|(policy, folder_policy, pools, enabled)| {
            let clusters = pools
                .iter()
                .enumerate()
                .map(|(i, (sa, autopilot))| Cluster {
                    name: format!("c{i}"),
                    location: "us-central1".to_owned(),
                    autopilot: *autopilot,
                    node_pools: if *autopilot {
                        Vec::new()
                    } else {
                        vec![NodePool {
                            name: "pool-1".to_owned(),
                            service_account: sa_pool()[*sa].clone(),
                        }]
                    },
                    autoprovisioning_service_account: autopilot.then(|| sa_pool()[*sa].clone()),
                })
                .collect();
            let mut state = ProjectState {
                project_id: ProjectId::parse("demo-project").unwrap(),
                project_number: ProjectNumber::parse(NUMBER).unwrap(),
                folders: vec!["111".to_owned()],
                container_api: if enabled {
                    ApiState::Enabled
                } else {
                    ApiState::Disabled
                },
                clusters,
                missing_zones: Vec::new(),
                policy,
                ancestors: vec![(ResourceRef::parse("folders/111").unwrap(), folder_policy)],
                accounts: BTreeMap::new(),
                troubleshooter: BTreeMap::new(),
                restorations: BTreeMap::new(),
                unreadable: Vec::new(),
                read_at: std::time::SystemTime::now(),
                access: Default::default(),
            };
            for sa in evaluate::node_service_accounts(&state) {
                state.accounts.insert(
                    sa.email,
                    AccountState::Active {
                        unique_id: Some("1".to_owned()),
                    },
                );
            }
            state
        })
}

fn remediation_policy_strategy() -> impl Strategy<Value = RemediationPolicy> {
    (
        proptest::collection::btree_set(0..RequirementId::ALL.len(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(ids, exempt)| RemediationPolicy {
            mode: Mode::Enforce,
            restore: ids.into_iter().map(|i| RequirementId::ALL[i]).collect(),
            exempt_principals: if exempt {
                vec!["serviceAccount:gke-a@*".to_owned()]
            } else {
                Vec::new()
            },
            ..RemediationPolicy::default()
        })
}

fn all_checks() -> BTreeSet<RequirementId> {
    RequirementId::ALL.into_iter().collect()
}

fn derived_principals(state: &ProjectState) -> BTreeSet<Member> {
    let mut out: BTreeSet<Member> = evaluate::node_service_accounts(state)
        .iter()
        .map(|s| Member::service_account(&s.email))
        .collect();
    for email in [
        req::gke_service_agent(&state.project_number),
        req::gke_node_service_agent(&state.project_number),
        req::google_apis_service_agent(&state.project_number),
    ] {
        out.insert(Member::service_account(&email));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn a_plan_only_adds_list_roles_to_derived_principals_and_preserves_everything_else(
        state in state_strategy(),
        policy in remediation_policy_strategy(),
    ) {
        let findings = evaluate::evaluate(&state, &catalog(), &all_checks());
        let ctx = DecideContext { policy: &policy, state: &state, writes_remaining: 10, restorations: &BTreeMap::new() };
        let plan = plan::decide(&findings, &ctx);
        let allowed = restorable_roles();
        let principals = derived_principals(&state);
        for (role, member) in plan.grants() {
            prop_assert!(allowed.contains(role), "granted {role} outside the list");
            prop_assert!(principals.contains(member), "granted to {member}, not derived from state");
            prop_assert!(!policy.is_exempt(member));
        }
        let before = state.policy.clone();
        let mut after = before.clone();
        plan::apply_grants(&mut after, &plan);
        // Every original binding is still there, same role, same condition, members as a prefix.
        prop_assert!(after.bindings.len() >= before.bindings.len());
        for (old, new) in before.bindings.iter().zip(&after.bindings) {
            prop_assert_eq!(&old.role, &new.role);
            prop_assert_eq!(&old.condition, &new.condition);
            prop_assert_eq!(&new.members[..old.members.len()], &old.members[..]);
            if old.condition.is_some() {
                prop_assert_eq!(&old.members, &new.members);
            }
        }
        for extra in &after.bindings[before.bindings.len()..] {
            prop_assert!(extra.condition.is_none());
            prop_assert!(allowed.contains(&extra.role));
        }
        prop_assert_eq!(&before.audit_configs, &after.audit_configs);
        prop_assert_eq!(&before.etag, &after.etag);
    }

    #[test]
    fn planning_again_on_the_result_is_empty(
        state in state_strategy(),
        policy in remediation_policy_strategy(),
    ) {
        let findings = evaluate::evaluate(&state, &catalog(), &all_checks());
        let ctx = DecideContext { policy: &policy, state: &state, writes_remaining: 10, restorations: &BTreeMap::new() };
        let plan = plan::decide(&findings, &ctx);
        let mut next = state.clone();
        plan::apply_grants(&mut next.policy, &plan);
        let findings2 = evaluate::evaluate(&next, &catalog(), &all_checks());
        let ctx2 = DecideContext { policy: &policy, state: &next, writes_remaining: 10, restorations: &BTreeMap::new() };
        let plan2 = plan::decide(&findings2, &ctx2);
        prop_assert_eq!(plan2.grants().count(), 0, "second plan: {:?}", plan2.actions);
    }

    #[test]
    fn a_healthy_project_gets_an_empty_plan(
        state in state_strategy(),
        policy in remediation_policy_strategy(),
    ) {
        let findings = evaluate::evaluate(&state, &catalog(), &all_checks());
        let ctx = DecideContext { policy: &policy, state: &state, writes_remaining: 10, restorations: &BTreeMap::new() };
        let plan = plan::decide(&findings, &ctx);
        if findings.iter().all(|f| f.status == Status::Ok) {
            prop_assert!(plan.is_empty());
        }
        for (f, d) in findings.iter().zip(&plan.decisions) {
            if f.status != Status::Missing {
                let is_restore = matches!(d, Decision::Restore { .. });
                prop_assert!(!is_restore);
            }
        }
    }
}

fn simple_state(bindings: Vec<Binding>, folder: Vec<Binding>) -> ProjectState {
    let mut state = ProjectState {
        project_id: ProjectId::parse("demo-project").unwrap(),
        project_number: ProjectNumber::parse(NUMBER).unwrap(),
        folders: vec!["111".to_owned()],
        container_api: ApiState::Enabled,
        clusters: vec![Cluster {
            name: "c1".to_owned(),
            location: "us-central1".to_owned(),
            autopilot: false,
            node_pools: vec![NodePool {
                name: "pool-1".to_owned(),
                service_account: "gke-a@demo-project.iam.gserviceaccount.com".to_owned(),
            }],
            autoprovisioning_service_account: None,
        }],
        missing_zones: Vec::new(),
        policy: Policy {
            bindings,
            ..Default::default()
        },
        ancestors: vec![(
            ResourceRef::parse("folders/111").unwrap(),
            Policy {
                bindings: folder,
                ..Default::default()
            },
        )],
        accounts: BTreeMap::new(),
        troubleshooter: BTreeMap::new(),
        restorations: BTreeMap::new(),
        unreadable: Vec::new(),
        read_at: std::time::SystemTime::now(),
        access: Default::default(),
    };
    state.accounts.insert(
        ServiceAccountEmail::parse("gke-a@demo-project.iam.gserviceaccount.com").unwrap(),
        AccountState::Active { unique_id: None },
    );
    state
}

fn bind(role: &str, member: &str, condition: bool) -> Binding {
    Binding {
        role: Role::parse(role).unwrap(),
        members: vec![Member::parse(member).unwrap()],
        condition: condition.then(|| Condition {
            expression: "resource.type == 'storage.googleapis.com/Bucket'".to_owned(),
            ..Default::default()
        }),
        other: Map::new(),
    }
}

const NODE: &str = "serviceAccount:gke-a@demo-project.iam.gserviceaccount.com";

/// The plan under the default policy in enforce mode, with room for writes and no past restorations.
fn enforce_plan(findings: &[evaluate::Finding], state: &ProjectState) -> plan::Plan {
    let policy = RemediationPolicy {
        mode: Mode::Enforce,
        ..Default::default()
    };
    let ctx = DecideContext {
        policy: &policy,
        state,
        writes_remaining: 5,
        restorations: &BTreeMap::new(),
    };
    plan::decide(findings, &ctx)
}

fn node_finding(state: &ProjectState) -> evaluate::Finding {
    evaluate::evaluate(state, &catalog(), &all_checks())
        .into_iter()
        .find(|f| f.requirement == RequirementId::NodeSaPermissions)
        .unwrap()
}

#[test]
fn an_inherited_grant_from_a_folder_counts_as_granted() {
    let state = simple_state(vec![], vec![bind(req::ROLE_DEFAULT_NODE_SA, NODE, false)]);
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Ok);
    assert!(
        f.granted_via[0].contains("folders/111"),
        "{:?}",
        f.granted_via
    );
}

#[test]
fn a_conditional_grant_is_conditional_and_never_restored() {
    let state = simple_state(vec![bind(req::ROLE_DEFAULT_NODE_SA, NODE, true)], vec![]);
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Conditional);
    let plan = enforce_plan(&[f], &state);
    assert!(plan.is_empty());
}

fn timed(role: &str, member: &str, expression: &str) -> Binding {
    let mut b = bind(role, member, true);
    if let Some(c) = b.condition.as_mut() {
        c.expression = expression.to_owned();
    }
    b
}

#[test]
fn an_expired_time_bound_grant_is_missing_and_restored_beside_it_untouched() {
    let expired = timed(
        req::ROLE_DEFAULT_NODE_SA,
        NODE,
        "request.time < timestamp('2020-06-30T00:00:00Z')",
    );
    let state = simple_state(vec![expired.clone()], vec![]);
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Missing, "{}", f.detail);
    let plan = enforce_plan(std::slice::from_ref(&f), &state);
    assert_eq!(plan.grants().count(), 1, "{plan:?}");
    let mut after = state.policy.clone();
    plan::apply_grants(&mut after, &plan);
    assert!(
        after.bindings.contains(&expired),
        "the conditional binding is kept as it was"
    );
    assert!(after.grants_unconditionally(
        &Role::parse(req::ROLE_DEFAULT_NODE_SA).unwrap(),
        &Member::parse(NODE).unwrap()
    ));
}

#[test]
fn a_live_time_bound_grant_is_ok_with_its_end_and_nothing_is_planned() {
    let live = timed(
        req::ROLE_DEFAULT_NODE_SA,
        NODE,
        "request.time < timestamp('2999-03-31T00:00:00Z')",
    );
    let state = simple_state(vec![live], vec![]);
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Ok, "{}", f.detail);
    assert_eq!(f.expires_at.as_deref(), Some("2999-03-31T00:00:00.000Z"));
    assert!(enforce_plan(&[f], &state).is_empty());
}

#[test]
fn a_permanent_grant_beside_a_time_bound_one_never_expires() {
    let state = simple_state(
        vec![
            timed(
                req::ROLE_DEFAULT_NODE_SA,
                NODE,
                "request.time < timestamp('2999-03-31T00:00:00Z')",
            ),
            bind(req::ROLE_DEFAULT_NODE_SA, NODE, false),
        ],
        vec![],
    );
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Ok);
    assert_eq!(f.expires_at, None);
}

#[test]
fn a_grant_through_a_group_is_unknown_not_missing() {
    let state = simple_state(
        vec![bind(
            req::ROLE_DEFAULT_NODE_SA,
            "group:nodes@example.com",
            false,
        )],
        vec![],
    );
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Unknown);
    assert_eq!(f.unknown_permissions.len(), 4);
}

#[test]
fn split_roles_that_together_cover_every_permission_are_ok() {
    let state = simple_state(
        vec![
            bind("roles/logging.logWriter", NODE, false),
            bind("roles/monitoring.metricWriter", NODE, false),
            bind("roles/owner", "user:alice@example.com", false),
        ],
        vec![],
    );
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Missing);
    assert_eq!(
        f.missing_permissions,
        vec!["autoscaling.sites.writeMetrics".to_owned()]
    );
}

#[test]
fn a_missing_node_sa_permission_plans_exactly_the_default_node_role() {
    let state = simple_state(vec![], vec![]);
    let f = node_finding(&state);
    let plan = enforce_plan(&[f], &state);
    assert_eq!(
        plan.actions,
        vec![Action::Grant {
            role: Role::parse(req::ROLE_DEFAULT_NODE_SA).unwrap(),
            member: Member::parse(NODE).unwrap()
        }]
    );
}

#[test]
fn a_deleted_node_sa_is_not_granted_anything() {
    let mut state = simple_state(vec![], vec![]);
    let email = ServiceAccountEmail::parse("gke-a@demo-project.iam.gserviceaccount.com").unwrap();
    state.accounts.insert(
        email,
        AccountState::Deleted {
            unique_id: Some("42".to_owned()),
        },
    );
    let findings = evaluate::evaluate(&state, &catalog(), &all_checks());
    let plan = enforce_plan(&findings, &state);
    assert!(
        plan.grants().all(|(_, m)| m.as_str() != NODE),
        "{:?}",
        plan.actions
    );
}

#[test]
fn a_policy_at_the_principal_limit_blocks_the_grant() {
    let members: Vec<Member> = (0..1500)
        .map(|i| Member::parse(&format!("user:u{i}@example.com")).unwrap())
        .collect();
    let mut state = simple_state(vec![], vec![]);
    state.policy.bindings.push(Binding {
        role: Role::parse("roles/viewer").unwrap(),
        members,
        condition: None,
        other: Map::new(),
    });
    let f = node_finding(&state);
    let plan = enforce_plan(&[f], &state);
    assert!(plan.is_empty());
    assert!(matches!(&plan.decisions[0], Decision::Blocked { reason } if reason.contains("1500")));
}

#[test]
fn missing_zones_make_the_result_incomplete_not_healthy() {
    let mut state = simple_state(vec![bind(req::ROLE_DEFAULT_NODE_SA, NODE, false)], vec![]);
    state.missing_zones = vec!["us-east1-b".to_owned()];
    let findings = evaluate::evaluate(&state, &catalog(), &all_checks());
    assert!(findings.iter().any(|f| f.status == Status::Incomplete));
}

#[test]
fn a_binding_restored_too_often_is_escalated_not_restored_again() {
    let state = simple_state(vec![], vec![]);
    let f = node_finding(&state);
    let policy = RemediationPolicy {
        mode: Mode::Enforce,
        ..Default::default()
    };
    let key = (
        Role::parse(req::ROLE_DEFAULT_NODE_SA).unwrap(),
        Member::parse(NODE).unwrap(),
    );
    let counts = BTreeMap::from([(key, policy.limits.max_restorations_per_binding)]);
    let plan = plan::decide(
        &[f],
        &DecideContext {
            policy: &policy,
            state: &state,
            writes_remaining: 5,
            restorations: &counts,
        },
    );
    assert!(plan.is_empty());
    assert!(
        matches!(&plan.decisions[0], Decision::Escalate { .. }),
        "{:?}",
        plan.decisions
    );
}

#[test]
fn an_unreadable_ancestor_turns_missing_into_unknown() {
    let mut state = simple_state(vec![], vec![]);
    state.unreadable = vec!["the policy of folders/111 (HTTP 403)".to_owned()];
    let f = node_finding(&state);
    assert_eq!(f.status, Status::Unknown, "{}", f.detail);
    assert!(f.detail.contains("folders/111"));
}

// ---- deny policies ------------------------------------------------------------------------------

fn deny_principal_pool() -> Vec<String> {
    let mut out = vec![
        "principalSet://goog/public:all".to_owned(),
        "principalSet://goog/group/gke-admins@example.com".to_owned(),
        format!(
            "principalSet://cloudresourcemanager.googleapis.com/projects/{NUMBER}/type/ServiceAccount"
        ),
        "principalSet://cloudresourcemanager.googleapis.com/folders/999/type/ServiceAccount"
            .to_owned(),
        "principal://goog/subject/alice@example.com".to_owned(),
    ];
    for sa in sa_pool() {
        let email = if sa == "default" {
            format!("{NUMBER}-compute@developer.gserviceaccount.com")
        } else {
            sa
        };
        out.push(format!(
            "principal://iam.googleapis.com/projects/-/serviceAccounts/{email}"
        ));
    }
    out
}

fn deny_permission_pool() -> Vec<&'static str> {
    vec![
        "logging.googleapis.com/logEntries.create",
        "monitoring.googleapis.com/timeSeries.create",
        "monitoring.googleapis.com/*.create",
        "monitoring.googleapis.com/metricDescriptors.*",
        "autoscaling.googleapis.com/*.*",
        "iam.googleapis.com/roles.delete",
    ]
}

fn denial_condition_pool() -> Vec<Option<&'static str>> {
    vec![
        None,
        Some("request.time < timestamp('2020-01-01T00:00:00Z')"),
        Some("request.time < timestamp('2099-01-01T00:00:00Z')"),
        Some("resource.matchTag('1/env', 'prod')"),
    ]
}

fn deny_policies_strategy() -> impl Strategy<Value = Vec<super::deny::DenyPolicy>> {
    let rule = (
        proptest::collection::btree_set(0..deny_principal_pool().len(), 1..3),
        proptest::collection::btree_set(0..deny_principal_pool().len(), 0..2),
        proptest::collection::btree_set(0..deny_permission_pool().len(), 1..3),
        proptest::collection::btree_set(0..deny_permission_pool().len(), 0..2),
        0..denial_condition_pool().len(),
    )
        .prop_map(|(dp, ep, dperm, eperm, cond)| super::deny::DenyRule {
            denied_principals: dp
                .into_iter()
                .map(|i| deny_principal_pool()[i].clone())
                .collect(),
            exception_principals: ep
                .into_iter()
                .map(|i| deny_principal_pool()[i].clone())
                .filter(|p| p != "principalSet://goog/public:all")
                .collect(),
            denied_permissions: dperm
                .into_iter()
                .map(|i| deny_permission_pool()[i].to_owned())
                .collect(),
            exception_permissions: eperm
                .into_iter()
                .map(|i| deny_permission_pool()[i].to_owned())
                .collect(),
            denial_condition: denial_condition_pool()[cond].map(str::to_owned),
        });
    proptest::collection::vec(proptest::collection::vec(rule, 1..3), 0..3).prop_map(|policies| {
        policies
            .into_iter()
            .enumerate()
            .map(|(i, rules)| super::deny::DenyPolicy {
                name: format!("policies/cloudresourcemanager.googleapis.com%2Forganizations%2F1/denypolicies/p{i}"),
                attached_to: "organizations/1".to_owned(),
                display_name: String::new(),
                rules,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_denied_permission_is_never_ok_never_restored_and_deny_rules_never_add_a_grant(
        state in state_strategy(),
        deny in deny_policies_strategy(),
        policy in remediation_policy_strategy(),
    ) {
        let plan_of = |s: &ProjectState| {
            let findings = evaluate::evaluate(s, &catalog(), &all_checks());
            let ctx = DecideContext { policy: &policy, state: s, writes_remaining: 10, restorations: &BTreeMap::new() };
            (plan::decide(&findings, &ctx), findings)
        };
        let (open_plan, open_findings) = plan_of(&state);
        let mut denied_state = state.clone();
        denied_state.access.deny_policies = deny.clone();
        let (plan, findings) = plan_of(&denied_state);
        let open_grants: BTreeSet<_> = open_plan.grants().collect();
        for g in plan.grants() {
            prop_assert!(open_grants.contains(&g), "deny rules added a grant {g:?}");
        }
        for (f, d) in findings.iter().zip(&plan.decisions) {
            if f.requirement != RequirementId::NodeSaPermissions {
                continue;
            }
            let Some(email) = f.principal.as_ref().and_then(|m| m.as_str().strip_prefix("serviceAccount:")) else {
                continue;
            };
            let email = ServiceAccountEmail::parse(email).unwrap();
            let open = open_findings.iter().find(|o| o.requirement == f.requirement && o.principal == f.principal).unwrap();
            // Deny rules only take away: what is not ok without them is not ok with them.
            if open.status != Status::Ok {
                prop_assert_ne!(f.status, Status::Ok);
            }
            // Where the account lives is known only for the project's own accounts.
            let local = email.as_str().ends_with("@demo-project.iam.gserviceaccount.com")
                || email.as_str().starts_with(&format!("{NUMBER}-compute@"));
            let under = if local {
                vec![format!("projects/{NUMBER}"), "folders/111".to_owned()]
            } else {
                Vec::new()
            };
            let memberships = super::deny::Memberships::new();
            let subject = super::deny::Subject { email: &email, under: &under, memberships: &memberships, unique_id: Some("1") };
            let any_denied = req::NODE_SA_PERMISSIONS.iter().any(|p| {
                matches!(super::deny::evaluate(&deny, &subject, p, state.read_at), super::deny::DenyVerdict::Denied(_))
            });
            if any_denied {
                prop_assert_eq!(f.status, Status::Denied, "{}", f.detail);
                let restores = matches!(d, Decision::Restore { .. });
                prop_assert!(!restores, "a denied finding is never restored");
                prop_assert!(!f.denied_permissions.is_empty() && !f.denied_by.is_empty());
            } else {
                prop_assert_ne!(f.status, Status::Denied);
            }
        }
    }

    #[test]
    fn an_account_excepted_from_every_rule_is_never_denied(
        deny in deny_policies_strategy(),
        perm in 0..req::NODE_SA_PERMISSIONS.len(),
    ) {
        let email = ServiceAccountEmail::parse("gke-a@demo-project.iam.gserviceaccount.com").unwrap();
        let mut deny = deny;
        for p in &mut deny {
            for r in &mut p.rules {
                r.exception_principals.push(format!("principal://iam.googleapis.com/projects/-/serviceAccounts/{email}"));
            }
        }
        let memberships = super::deny::Memberships::new();
        let subject = super::deny::Subject { email: &email, under: &[], memberships: &memberships, unique_id: None };
        let v = super::deny::evaluate(&deny, &subject, req::NODE_SA_PERMISSIONS[perm], std::time::SystemTime::now());
        prop_assert_eq!(v, super::deny::DenyVerdict::NotDenied);
    }
}
