//! Deny policies, the org policy cause and groups through Cloud Identity, in-process over the fake.

use std::sync::Arc;
use std::time::Duration;

use gke_iam_remediator::gcp::client::{IAM_V2_WINDOW, SlidingWindow};

use gke_iam_remediator::domain::deny::{DenyPolicy, DenyRule};
use gke_iam_remediator::domain::report::Outcome;
use gke_iam_remediator::domain::state::Troubleshot;
use gke_iam_remediator::engine::{Options, Remediator};
use gke_iam_remediator::intake::Verdict;
use gke_iam_remediator::policy::PolicyFile;
use gke_iam_remediator::ports::{Cloud, Projects};

use super::fake::{self, FakeCloud, Fault, NODE_ROLE};
use super::{DRY_RUN, ENFORCE, P, P_NUMBER, Scenario, node_sa};

const ORG: &str = "organizations/777";
const NO_LOGS: &str =
    "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F777/denypolicies/no-logs";

fn deny_logs_to(email: &str) -> DenyPolicy {
    DenyPolicy {
        name: NO_LOGS.to_owned(),
        attached_to: ORG.to_owned(),
        display_name: "no logs".to_owned(),
        rules: vec![DenyRule {
            denied_principals: vec![format!(
                "principal://iam.googleapis.com/projects/-/serviceAccounts/{email}"
            )],
            denied_permissions: vec!["logging.googleapis.com/logEntries.create".to_owned()],
            ..DenyRule::default()
        }],
    }
}

fn node_email() -> String {
    node_sa(P).trim_start_matches("serviceAccount:").to_owned()
}

fn remediator(cloud: &FakeCloud, policy: &str, troubleshooter: bool) -> Remediator {
    let mut options = Options::new(
        PolicyFile::from_yaml(policy, "p.yaml")
            .expect("policy")
            .remediation,
    );
    options.settings.apply = true;
    options.settings.troubleshooter = troubleshooter;
    let ports: Arc<dyn Cloud> = Arc::new(cloud.clone());
    Remediator::new(ports, options)
}

#[tokio::test(start_paused = true)]
async fn a_node_account_denied_by_an_organization_deny_rule_is_not_allowed_and_the_notification_names_the_policy()
 {
    let s = Scenario::new(ENFORCE);
    s.cloud.with(|w| {
        w.deny_policies
            .insert(ORG.to_owned(), vec![deny_logs_to(&node_email())]);
    });
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert_eq!(s.writes(), 0, "a grant cannot lift a deny rule");
    let published = s.sink.published();
    let n = published
        .iter()
        .find(|n| n.principal.as_deref() == Some(node_sa(P).as_str()))
        .expect("the denied account is notified");
    assert_eq!(n.outcome, Outcome::NotAllowed);
    assert_eq!(n.status.as_str(), "denied");
    assert!(n.detail.contains(NO_LOGS), "{}", n.detail);
    assert_eq!(n.denied_by, vec![NO_LOGS.to_owned()]);
    assert_eq!(n.denied_permissions, vec!["logging.logEntries.create"]);
}

#[tokio::test(start_paused = true)]
async fn a_denied_account_that_also_lost_its_role_is_never_granted() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    s.cloud.with(|w| {
        w.deny_policies
            .insert(ORG.to_owned(), vec![deny_logs_to(&node_email())]);
    });
    s.deliver(s.break_node_role()).await;
    assert_eq!(s.writes(), 0);
    assert!(!s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
}

#[tokio::test(start_paused = true)]
async fn an_exception_principal_or_a_lapsed_denial_condition_leaves_the_account_ok() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    let mut excepted = deny_logs_to("x@y.iam.gserviceaccount.com");
    excepted.rules[0].denied_principals = vec!["principalSet://goog/public:all".to_owned()];
    excepted.rules[0].exception_principals = vec![format!(
        "principal://iam.googleapis.com/projects/-/serviceAccounts/{}",
        node_email()
    )];
    let mut lapsed = deny_logs_to(&node_email());
    lapsed.rules[0].denial_condition =
        Some("request.time < timestamp('2026-01-01T00:00:00Z')".to_owned());
    cloud.with(|w| {
        w.deny_policies.insert(ORG.to_owned(), vec![excepted]);
        w.deny_policies
            .insert(format!("projects/{P_NUMBER}"), vec![lapsed]);
    });
    let r = remediator(&cloud, DRY_RUN, false);
    let info = cloud.get_project(P).await.unwrap();
    let report = r.remediate(&info).await;
    let node = report
        .findings
        .iter()
        .find(|f| {
            f.finding.principal.as_ref().map(|p| p.as_str()) == Some(node_sa(P).as_str())
                && f.finding.requirement.as_str() == "node-sa-permissions"
        })
        .unwrap();
    assert_eq!(
        node.finding.status.as_str(),
        "ok",
        "{}",
        node.finding.detail
    );
}

#[tokio::test(start_paused = true)]
async fn without_permission_to_read_deny_policies_a_healthy_account_is_ok_naming_what_was_not_read()
{
    let s = Scenario::with(ENFORCE, |c| c.notify_healthy = true);
    s.cloud.break_method("denypolicies.list", Fault::DENIED);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    let node = s
        .sink
        .published()
        .into_iter()
        .find(|n| {
            n.principal.as_deref() == Some(node_sa(P).as_str())
                && n.requirement == "node-sa-permissions"
        })
        .expect("notified");
    assert_eq!(node.status.as_str(), "ok");
    assert_eq!(node.outcome, Outcome::Healthy);
    assert!(node.detail.contains("deny policies"), "{}", node.detail);
    assert!(
        node.deny_unread.iter().any(|u| u.contains(ORG)),
        "{:?}",
        node.deny_unread
    );
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_transient_deny_policy_failure_asks_for_redelivery() {
    let s = Scenario::new(ENFORCE);
    s.cloud
        .break_method("denypolicies.list", Fault::UNAVAILABLE);
    let v = s.deliver(s.sweep(&[P])).await;
    assert!(matches!(v, Verdict::Retry(_)), "{v:?}");
}

#[tokio::test(start_paused = true)]
async fn ancestor_deny_policies_are_read_once_per_run_and_each_projects_own_once() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    cloud.add_healthy_project("shop-dev", "222222222222", Some(ORG));
    let r = remediator(&cloud, DRY_RUN, false);
    let (infos, _) = r
        .resolve(&[P.to_owned(), "shop-dev".to_owned()], &[])
        .await
        .unwrap();
    gke_iam_remediator::engine::sweep::check_all(&r, &infos).await;
    let lists: Vec<String> = cloud
        .journal()
        .into_iter()
        .filter(|c| c.starts_with("denypolicies.list"))
        .collect();
    assert_eq!(
        lists.len(),
        3,
        "two projects and the organization once: {lists:?}"
    );
    assert_eq!(
        cloud.calls("orgpolicy.getEffectivePolicy"),
        0,
        "no default account in use"
    );
}

#[tokio::test(start_paused = true)]
async fn the_enforced_org_policy_is_named_when_the_default_compute_account_lacks_its_role() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    let compute = format!("{P_NUMBER}-compute@developer.gserviceaccount.com");
    cloud.with(|w| {
        for c in w.clusters.get_mut(P).unwrap() {
            for pool in &mut c.node_pools {
                pool.service_account = "default".to_owned();
            }
        }
        w.accounts
            .get_mut(P)
            .unwrap()
            .push(gke_iam_remediator::ports::ServiceAccount {
                email: compute.clone(),
                unique_id: Some("1".to_owned()),
                disabled: false,
            });
        w.enforced_constraints.insert((
            format!("projects/{P}"),
            "iam.automaticIamGrantsForDefaultServiceAccounts".to_owned(),
        ));
    });
    let r = remediator(&cloud, DRY_RUN, false);
    let info = cloud.get_project(P).await.unwrap();
    let report = r.remediate(&info).await;
    let f = report
        .findings
        .iter()
        .find(|f| {
            f.finding
                .principal
                .as_ref()
                .is_some_and(|p| p.as_str().contains(&compute))
                && f.finding.requirement.as_str() == "node-sa-permissions"
        })
        .expect("the default account is checked");
    assert_eq!(f.finding.status.as_str(), "missing");
    assert_eq!(f.outcome, Outcome::WouldRestore);
    assert!(
        f.finding
            .detail
            .contains("iam.automaticIamGrantsForDefaultServiceAccounts is enforced"),
        "{}",
        f.finding.detail
    );
    assert_eq!(cloud.calls("orgpolicy.getEffectivePolicy"), 1);
}

fn grant_through_group(cloud: &FakeCloud) {
    cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    cloud.add_binding(P, NODE_ROLE, "group:gke-all@example.com");
    cloud.with(|w| {
        w.groups.insert(
            "gke-all@example.com".to_owned(),
            ["gke-prod@example.com".to_owned()].into(),
        );
        w.groups
            .insert("gke-prod@example.com".to_owned(), [node_email()].into());
    });
}

#[tokio::test(start_paused = true)]
async fn a_grant_through_nested_groups_is_settled_by_cloud_identity_without_the_troubleshooter() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    grant_through_group(&cloud);
    let r = remediator(&cloud, ENFORCE, true);
    let info = cloud.get_project(P).await.unwrap();
    let report = r.remediate(&info).await;
    let f = report
        .findings
        .iter()
        .find(|f| {
            f.finding.principal.as_ref().map(|p| p.as_str()) == Some(node_sa(P).as_str())
                && f.finding.requirement.as_str() == "node-sa-permissions"
        })
        .unwrap();
    assert_eq!(f.finding.status.as_str(), "ok", "{}", f.finding.detail);
    assert!(
        f.finding
            .granted_via
            .iter()
            .any(|v| v.contains("through group:gke-all@example.com"))
    );
    assert_eq!(cloud.calls("troubleshoot"), 0);
    assert_eq!(cloud.calls("cloudidentity.checkTransitiveMembership"), 1);
    assert!(report.actions.is_empty());
}

#[tokio::test(start_paused = true)]
async fn when_cloud_identity_refuses_the_troubleshooter_settles_the_group_grant_else_it_stays_unknown()
 {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    grant_through_group(&cloud);
    cloud.break_method("cloudidentity.checkTransitiveMembership", Fault::DENIED);
    cloud.with(|w| {
        for perm in fake::NODE_PERMISSIONS {
            w.troubleshooter
                .insert((node_email(), perm.to_owned()), Troubleshot::Granted);
        }
    });
    let info = cloud.get_project(P).await.unwrap();
    let node = |report| node_finding(report).finding.status.as_str();
    let with = remediator(&cloud, ENFORCE, true).remediate(&info).await;
    assert_eq!(node(&with), "ok");
    assert_eq!(
        cloud.calls("cloudidentity.checkTransitiveMembership"),
        1,
        "refused once, not asked again"
    );
    let without = remediator(&cloud, ENFORCE, false).remediate(&info).await;
    assert_eq!(node(&without), "unknown");
    assert!(without.actions.is_empty(), "unknown is never granted");
}

#[tokio::test(start_paused = true)]
async fn a_node_sa_recommendation_is_not_marked_succeeded_while_its_account_is_denied() {
    let s = Scenario::new(ENFORCE);
    s.cloud.with(|w| {
        w.deny_policies
            .insert(ORG.to_owned(), vec![deny_logs_to(&node_email())]);
    });
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    s.deliver(s.recommendation(&name)).await;
    assert_eq!(s.writes(), 0);
    assert_ne!(s.cloud.recommendation_state(&name), "SUCCEEDED");
    assert_eq!(s.cloud.calls("recommendations.markSucceeded"), 0);
}

/// The node account's `node-sa-permissions` finding of a report.
fn node_finding(
    report: &gke_iam_remediator::domain::report::ProjectReport,
) -> &gke_iam_remediator::domain::report::FindingReport {
    report
        .findings
        .iter()
        .find(|f| {
            f.finding.principal.as_ref().map(|p| p.as_str()) == Some(node_sa(P).as_str())
                && f.finding.requirement.as_str() == "node-sa-permissions"
        })
        .expect("node account finding")
}

#[tokio::test(start_paused = true)]
async fn a_second_run_of_the_same_project_within_the_max_age_reads_no_deny_policies() {
    let s = Scenario::new(ENFORCE);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    let first = s.cloud.calls("denypolicies.list");
    assert_eq!(first, 2, "the project and the organization");
    // Long after the engine's short-lived run caches are gone, within the hour.
    tokio::time::advance(Duration::from_secs(30 * 60)).await;
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert_eq!(s.cloud.calls("clusters.list"), 2, "the second run did run");
    assert_eq!(s.cloud.calls("denypolicies.list"), first);
}

#[tokio::test(start_paused = true)]
async fn after_the_max_age_a_run_reads_deny_policies_again() {
    let s = Scenario::new("mode: enforce\nlimits:\n  deny_policy_max_age_minutes: 10\n");
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(s.cloud.calls("denypolicies.list"), 2);
    tokio::time::advance(Duration::from_secs(9 * 60)).await;
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(s.cloud.calls("denypolicies.list"), 2, "still fresh");
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(
        s.cloud.calls("denypolicies.list"),
        4,
        "older than 10 minutes"
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_deny_read_budget_leaves_a_would_be_ok_verdict_ok_naming_the_quota_without_waiting_or_failing()
 {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    let window = Arc::new(SlidingWindow::new(5, IAM_V2_WINDOW));
    for _ in 0..5 {
        assert!(window.try_acquire(0), "spent by other runs");
    }
    cloud.with(|w| w.iam_v2_window = Some(window));
    let r = remediator(&cloud, ENFORCE, false);
    let info = cloud.get_project(P).await.unwrap();
    let start = tokio::time::Instant::now();
    let report = r.remediate(&info).await;
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "nothing waited for the budget"
    );
    assert!(report.error.is_none(), "{:?}", report.error);
    let node = node_finding(&report);
    assert_eq!(node.finding.status.as_str(), "ok");
    assert_eq!(node.outcome, Outcome::Healthy, "not a problem to announce");
    let unread = &node.finding.deny_check.as_ref().expect("deny_check").unread;
    assert_eq!(unread.len(), 2, "{unread:?}");
    let detail = &node.finding.detail;
    let project = format!("projects/{P_NUMBER}");
    for named in [
        project.as_str(),
        ORG,
        "IAM v2 read quota",
        "5 deny-policy reads per minute",
        "--rate-limit iam-v2",
    ] {
        assert!(detail.contains(named), "{named} in: {detail}");
    }
    assert_eq!(cloud.calls("denypolicies.list"), 0, "nothing was sent");
    assert_eq!(cloud.calls("setIamPolicy"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spent_deny_read_budget_does_not_stop_a_missing_binding_from_being_granted() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    let window = Arc::new(SlidingWindow::new(1, IAM_V2_WINDOW));
    assert!(window.try_acquire(0));
    cloud.with(|w| w.iam_v2_window = Some(window));
    let r = remediator(
        &cloud,
        "mode: enforce\nrestore: [node-sa-permissions]\n",
        false,
    );
    let info = cloud.get_project(P).await.unwrap();
    let report = r.remediate(&info).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(node_finding(&report).outcome, Outcome::Restored);
    assert!(cloud.holds(P, NODE_ROLE, &node_sa(P)));
}

#[tokio::test(start_paused = true)]
async fn deny_policies_are_read_again_once_the_budget_has_room() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some(ORG));
    let window = Arc::new(SlidingWindow::new(2, IAM_V2_WINDOW));
    assert!(window.try_acquire(0) && window.try_acquire(0));
    cloud.with(|w| w.iam_v2_window = Some(window));
    let r = remediator(&cloud, DRY_RUN, false);
    let info = cloud.get_project(P).await.unwrap();
    let first = r.remediate(&info).await;
    assert_eq!(node_finding(&first).finding.status.as_str(), "ok");
    assert!(node_finding(&first).finding.deny_check.is_some());
    // A refusal is not cached: a minute later the same run's next look reads them.
    tokio::time::advance(IAM_V2_WINDOW).await;
    let second = r.remediate(&info).await;
    assert_eq!(node_finding(&second).finding.status.as_str(), "ok");
    assert!(
        node_finding(&second).finding.deny_check.is_none(),
        "read now"
    );
    assert_eq!(cloud.calls("denypolicies.list"), 2);
}

/// The audit-log entry of `method` (`CreatePolicy`, `UpdatePolicy`, `DeletePolicy`) on the deny policy
/// `name`, as the log sink publishes it.
fn deny_policy_event(
    s: &Scenario,
    method: &str,
    name: &str,
) -> gke_iam_remediator::intake::Message {
    s.message(serde_json::json!({
        "insertId": "deny-change-1",
        "logName": "organizations/777/logs/cloudaudit.googleapis.com%2Factivity",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "serviceName": "iam.googleapis.com",
            "methodName": format!("google.iam.v2.Policies.{method}"),
            "resourceName": name,
            "status": {}
        },
        "resource": {"type": "audited_resource", "labels": {"service": "iam.googleapis.com"}},
        "severity": "NOTICE"
    }))
}

/// The node account's notification of the last run, if any.
fn node_notice(s: &Scenario) -> Option<gke_iam_remediator::notify::Notification> {
    s.sink
        .published()
        .into_iter()
        .rev()
        .find(|n| n.principal.as_deref() == Some(node_sa(P).as_str()))
}

#[tokio::test(start_paused = true)]
async fn a_deny_policy_created_on_a_project_is_read_at_once_not_when_the_cached_read_ages() {
    let s = Scenario::new(ENFORCE);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    let reads = s.cloud.calls("denypolicies.list");
    assert!(reads >= 1);
    let point = format!("projects/{P_NUMBER}");
    let name = format!(
        "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{P_NUMBER}/denypolicies/no-logs"
    );
    s.cloud.with(|w| {
        let mut policy = deny_logs_to(&node_email());
        policy.name = name.clone();
        policy.attached_to = point.clone();
        w.deny_policies.insert(point.clone(), vec![policy]);
    });
    // Within the cache's age a run uses the earlier read: the new rule is not seen yet.
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(s.cloud.calls("denypolicies.list"), reads);
    assert!(node_notice(&s).is_none(), "{:?}", s.sink.published());
    // The creation's audit log entry makes the next run read them again.
    let event = deny_policy_event(&s, "CreatePolicy", &name);
    assert_eq!(s.deliver(event).await, Verdict::Ack);
    assert_eq!(s.cloud.calls("denypolicies.list"), reads + 1);
    let n = node_notice(&s).expect("the denied account is notified");
    assert_eq!(n.status.as_str(), "denied");
    assert_eq!(n.denied_by, vec![name]);
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_deny_policy_deleted_from_the_organization_is_forgotten_at_once() {
    let s = Scenario::new(ENFORCE);
    s.cloud.with(|w| {
        w.deny_policies
            .insert(ORG.to_owned(), vec![deny_logs_to(&node_email())]);
    });
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(node_notice(&s).expect("denied").status.as_str(), "denied");
    let before = s.sink.published().len();
    s.cloud.with(|w| {
        w.deny_policies.remove(ORG);
    });
    let event = deny_policy_event(&s, "DeletePolicy", NO_LOGS);
    assert_eq!(s.deliver(event).await, Verdict::Ack);
    // Read again: the account is no longer denied (healthy accounts are not notified by default).
    let after: Vec<_> = s.sink.published()[before..]
        .iter()
        .filter(|n| n.principal.as_deref() == Some(node_sa(P).as_str()))
        .map(|n| n.status.as_str().to_owned())
        .collect();
    assert!(!after.contains(&"denied".to_owned()), "{after:?}");
    // Only the organization's deny policies are read again; the project's read is still young.
    let reads = |point: &str| {
        let call = format!("denypolicies.list {point}");
        s.cloud.journal().iter().filter(|c| **c == call).count()
    };
    assert_eq!(reads(ORG), 2, "{:?}", s.cloud.journal());
    assert_eq!(reads(&format!("projects/{P_NUMBER}")), 1);
}

#[tokio::test(start_paused = true)]
async fn a_deny_policy_event_while_the_quota_is_spent_keeps_the_last_known_rules() {
    let s = Scenario::new(ENFORCE);
    s.cloud.with(|w| {
        w.deny_policies
            .insert(ORG.to_owned(), vec![deny_logs_to(&node_email())]);
    });
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(node_notice(&s).expect("denied").status.as_str(), "denied");
    // Every IAM v2 read of the minute is spent; then a change event (forged: the rule is still
    // there) and the node role removed.
    let window = Arc::new(SlidingWindow::new(5, IAM_V2_WINDOW));
    for _ in 0..5 {
        assert!(window.try_acquire(0));
    }
    s.cloud.with(|w| w.iam_v2_window = Some(window));
    assert_eq!(
        s.deliver(deny_policy_event(&s, "DeletePolicy", NO_LOGS))
            .await,
        Verdict::Ack
    );
    s.deliver(s.break_node_role()).await;
    assert_eq!(s.writes(), 0, "a stale read is never 'no deny policy'");
    assert!(!s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
}
