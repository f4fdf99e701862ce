//! IAM deny policies (IAM v2) as IAM applies them to one service account and one permission. Pure.
//!
//! A deny rule blocks a permission for a principal whatever the allow policies grant, on its
//! attachment point and every descendant. This module decides, for the node service accounts the
//! requirement list names, whether a rule denies one of their permissions: principals in the v2 form
//! (`principal://iam.googleapis.com/projects/-/serviceAccounts/EMAIL`, `principalSet://goog/public:all`,
//! tolerated v1 `serviceAccount:EMAIL`), exceptions, permissions in the v2 form
//! (`logging.googleapis.com/logEntries.create`, with Google's wildcards `SERVICE/RESOURCE.*`,
//! `SERVICE/*.VERB` and `SERVICE/*.*`) mapped from the v1 names of the requirement list, and the
//! `denialCondition`, evaluated by [`super::condition`]. Whatever it cannot decide (a group principal
//! set whose membership is unknown, an undecidable condition, a principal form it does not know) is
//! [`DenyVerdict::Unknown`]: never a guess either way.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::condition;
use super::iam::ServiceAccountEmail;

/// One deny policy as read from IAM v2 (`policies.get`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyPolicy {
    /// Full name, `policies/{encoded attachment point}/denypolicies/{id}`.
    pub name: String,
    /// Where it is attached: `projects/N`, `folders/N` or `organizations/N`.
    pub attached_to: String,
    /// Display name (may be empty).
    pub display_name: String,
    /// The rules, in order.
    pub rules: Vec<DenyRule>,
}

/// One `denyRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyRule {
    /// `deniedPrincipals`.
    pub denied_principals: Vec<String>,
    /// `exceptionPrincipals`.
    pub exception_principals: Vec<String>,
    /// `deniedPermissions` (v2 form).
    pub denied_permissions: Vec<String>,
    /// `exceptionPermissions` (v2 form).
    pub exception_permissions: Vec<String>,
    /// `denialCondition.expression`, if any.
    pub denial_condition: Option<String>,
}

/// The deny rule that blocks (or may block) a permission: data for reports and `explain`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DeniedBy {
    /// The deny policy's full name.
    pub policy: String,
    /// Where the policy is attached (`organizations/N`, `folders/N`, `projects/N`).
    pub attached_to: String,
    /// 0-based index of the rule in the policy.
    pub rule: usize,
    /// The v1 permission it denies.
    pub permission: String,
    /// Why it may apply, when it is not certain (a group, an undecidable condition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<String>,
}

/// Whether deny policies block a permission for a principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyVerdict {
    /// No rule applies.
    NotDenied,
    /// A rule certainly applies.
    Denied(DeniedBy),
    /// A rule may apply; IAM's answer cannot be known from what was read.
    Unknown(DeniedBy),
}

/// Known Cloud Identity answers: (group email, member email), both lower case -> member or not.
pub type Memberships = BTreeMap<(String, String), bool>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

impl Tri {
    fn or(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
            (Tri::Maybe, _) | (_, Tri::Maybe) => Tri::Maybe,
            _ => Tri::No,
        }
    }

    fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Maybe, _) | (_, Tri::Maybe) => Tri::Maybe,
            _ => Tri::Yes,
        }
    }

    fn not(self) -> Tri {
        match self {
            Tri::Yes => Tri::No,
            Tri::No => Tri::Yes,
            Tri::Maybe => Tri::Maybe,
        }
    }
}

/// The v2 form of a v1 permission name (`logging.logEntries.create` ->
/// `logging.googleapis.com/logEntries.create`), with the service names Google spells differently.
pub fn v2_permission(v1: &str) -> String {
    let Some((service, rest)) = v1.split_once('.') else {
        return v1.to_owned();
    };
    let fqdn = match service {
        // Google's deny examples: resourcemanager.projects.delete ->
        // cloudresourcemanager.googleapis.com/projects.delete.
        "resourcemanager" => "cloudresourcemanager.googleapis.com".to_owned(),
        other => format!("{other}.googleapis.com"),
    };
    format!("{fqdn}/{rest}")
}

/// True if a permission pattern of a deny rule names the v1 permission.
pub fn permission_matches(pattern: &str, v1: &str) -> bool {
    let pattern = pattern.trim();
    if !pattern.contains('/') {
        // The v1 form, tolerated.
        return pattern.eq_ignore_ascii_case(v1);
    }
    let wanted = v2_permission(v1);
    let (Some((p_service, p_rest)), Some((w_service, w_rest))) =
        (pattern.split_once('/'), wanted.split_once('/'))
    else {
        return false;
    };
    if !p_service.eq_ignore_ascii_case(w_service) {
        return false;
    }
    let (Some((p_res, p_verb)), Some((w_res, w_verb))) =
        (p_rest.rsplit_once('.'), w_rest.rsplit_once('.'))
    else {
        return false;
    };
    (p_res == "*" || p_res == w_res) && (p_verb == "*" || p_verb == w_verb)
}

/// Context for principal matching: the account and where it lives.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The service account.
    pub email: &'a ServiceAccountEmail,
    /// Resources the account lives under when known (`projects/NUMBER`, its folders and organization):
    /// set for accounts of the project being checked, empty otherwise.
    pub under: &'a [String],
    /// Known group memberships.
    pub memberships: &'a Memberships,
    /// The account's numeric unique id, when known (deny rules may name accounts by it).
    pub unique_id: Option<&'a str>,
}

fn group_member(subject: &Subject<'_>, group: &str) -> Tri {
    let key = (
        group.to_ascii_lowercase(),
        subject.email.as_str().to_ascii_lowercase(),
    );
    match subject.memberships.get(&key) {
        Some(true) => Tri::Yes,
        Some(false) => Tri::No,
        None => Tri::Maybe,
    }
}

/// Whether a v2 principal identifier (or a tolerated v1 member) includes the service account.
fn principal_matches(principal: &str, subject: &Subject<'_>) -> Tri {
    let email = subject.email.as_str();
    let p = principal.trim();
    if let Some(sa) = p
        .strip_prefix("principal://iam.googleapis.com/projects/-/serviceAccounts/")
        .or_else(|| p.strip_prefix("serviceAccount:"))
    {
        if sa.eq_ignore_ascii_case(email) {
            return Tri::Yes;
        }
        // A numeric unique id may name this very account.
        return match (sa.bytes().all(|b| b.is_ascii_digit()), subject.unique_id) {
            (true, Some(id)) if id == sa => Tri::Yes,
            (true, Some(_)) => Tri::No,
            (true, None) => Tri::Maybe,
            (false, _) => Tri::No,
        };
    }
    if p == "principalSet://goog/public:all" || p == "allUsers" || p == "allAuthenticatedUsers" {
        return Tri::Yes;
    }
    if let Some(group) = p
        .strip_prefix("principalSet://goog/group/")
        .or_else(|| p.strip_prefix("group:"))
    {
        return group_member(subject, group);
    }
    if let Some(rest) = p.strip_prefix("principalSet://cloudresourcemanager.googleapis.com/") {
        let (resource, kind) = match rest.rsplit_once("/type/") {
            Some(x) => x,
            None => return Tri::Maybe,
        };
        return match kind {
            // Node accounts are user-managed service accounts, never service agents.
            "ServiceAgent" => Tri::No,
            "ServiceAccount" if subject.under.is_empty() => Tri::Maybe,
            "ServiceAccount" => {
                if subject.under.iter().any(|u| u == resource) {
                    Tri::Yes
                } else {
                    Tri::No
                }
            }
            _ => Tri::Maybe,
        };
    }
    if p.starts_with("principal://goog/subject/")
        || p.starts_with("user:")
        || p.starts_with("deleted:")
        || p.starts_with("domain:")
        || p.contains("/workforcePools/")
        || p.contains("/workloadIdentityPools/")
    {
        return Tri::No;
    }
    // A form this evaluator does not know (customer sets, future forms): undecidable.
    Tri::Maybe
}

fn any_principal(list: &[String], subject: &Subject<'_>) -> Tri {
    list.iter()
        .fold(Tri::No, |acc, p| acc.or(principal_matches(p, subject)))
}

/// Whether one rule denies the permission, and why it is uncertain when it is.
fn rule_applies(
    rule: &DenyRule,
    subject: &Subject<'_>,
    permission: &str,
    now: SystemTime,
) -> (Tri, Option<String>) {
    let listed = rule
        .denied_permissions
        .iter()
        .any(|p| permission_matches(p, permission));
    let excepted = rule
        .exception_permissions
        .iter()
        .any(|p| permission_matches(p, permission));
    if !listed || excepted {
        return (Tri::No, None);
    }
    let denied = any_principal(&rule.denied_principals, subject);
    let exception = any_principal(&rule.exception_principals, subject);
    let who = denied.and(exception.not());
    let when = match &rule.denial_condition {
        None => Tri::Yes,
        Some(expr) => match condition::evaluate(expr, now) {
            condition::Verdict::True { .. } => Tri::Yes,
            condition::Verdict::False => Tri::No,
            condition::Verdict::Unknown => Tri::Maybe,
        },
    };
    let verdict = who.and(when);
    let why = (verdict == Tri::Maybe).then(|| {
        if who == Tri::Maybe {
            "its principals include a group or principal set whose membership is unknown".to_owned()
        } else {
            "its denial condition cannot be evaluated here".to_owned()
        }
    });
    (verdict, why)
}

/// Whether any of `policies` denies the v1 `permission` to the subject now.
pub fn evaluate(
    policies: &[DenyPolicy],
    subject: &Subject<'_>,
    permission: &str,
    now: SystemTime,
) -> DenyVerdict {
    let mut maybe = None;
    for policy in policies {
        for (i, rule) in policy.rules.iter().enumerate() {
            let by = |uncertain| DeniedBy {
                policy: policy.name.clone(),
                attached_to: policy.attached_to.clone(),
                rule: i,
                permission: permission.to_owned(),
                uncertain,
            };
            match rule_applies(rule, subject, permission, now) {
                (Tri::Yes, _) => return DenyVerdict::Denied(by(None)),
                (Tri::Maybe, why) if maybe.is_none() => maybe = Some(by(why)),
                _ => {}
            }
        }
    }
    maybe.map_or(DenyVerdict::NotDenied, DenyVerdict::Unknown)
}

/// The group emails the deny rules name (in denied or exception principals), lower case.
pub fn groups_named(policies: &[DenyPolicy]) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .flat_map(|p| p.rules.iter())
        .flat_map(|r| r.denied_principals.iter().chain(&r.exception_principals))
        .filter_map(|p| {
            p.strip_prefix("principalSet://goog/group/")
                .or_else(|| p.strip_prefix("group:"))
        })
        .map(str::to_ascii_lowercase)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SA: &str = "nodes@shop.iam.gserviceaccount.com";

    fn sa() -> ServiceAccountEmail {
        ServiceAccountEmail::parse(SA).unwrap()
    }

    fn policy(rule: DenyRule) -> Vec<DenyPolicy> {
        vec![DenyPolicy {
            name: "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F1/denypolicies/no-logs".into(),
            attached_to: "organizations/1".into(),
            display_name: String::new(),
            rules: vec![rule],
        }]
    }

    fn rule(principals: &[&str], permissions: &[&str]) -> DenyRule {
        DenyRule {
            denied_principals: principals.iter().map(|s| s.to_string()).collect(),
            denied_permissions: permissions.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn verdict(policies: &[DenyPolicy], permission: &str) -> DenyVerdict {
        let email = sa();
        let under = vec!["projects/42".to_owned(), "organizations/1".to_owned()];
        let memberships =
            Memberships::from([(("ops@example.com".to_owned(), SA.to_owned()), true)]);
        let subject = Subject {
            email: &email,
            under: &under,
            memberships: &memberships,
            unique_id: Some("104"),
        };
        evaluate(policies, &subject, permission, SystemTime::now())
    }

    #[test]
    fn a_rule_naming_the_account_and_the_v2_permission_denies_it() {
        let p = policy(rule(
            &[&format!(
                "principal://iam.googleapis.com/projects/-/serviceAccounts/{SA}"
            )],
            &["logging.googleapis.com/logEntries.create"],
        ));
        assert!(
            matches!(verdict(&p, "logging.logEntries.create"), DenyVerdict::Denied(by) if by.rule == 0)
        );
        assert_eq!(
            verdict(&p, "monitoring.timeSeries.create"),
            DenyVerdict::NotDenied
        );
    }

    #[test]
    fn public_all_denies_everyone_unless_excepted() {
        let mut r = rule(
            &["principalSet://goog/public:all"],
            &["monitoring.googleapis.com/*.create"],
        );
        assert!(matches!(
            verdict(&policy(r.clone()), "monitoring.timeSeries.create"),
            DenyVerdict::Denied(_)
        ));
        r.exception_principals = vec![format!(
            "principal://iam.googleapis.com/projects/-/serviceAccounts/{SA}"
        )];
        assert_eq!(
            verdict(&policy(r.clone()), "monitoring.timeSeries.create"),
            DenyVerdict::NotDenied
        );
        r.exception_principals = vec!["principalSet://goog/group/unknown@example.com".into()];
        assert!(matches!(
            verdict(&policy(r.clone()), "monitoring.timeSeries.create"),
            DenyVerdict::Unknown(_)
        ));
        r.exception_principals = vec!["principalSet://goog/group/ops@example.com".into()];
        assert_eq!(
            verdict(&policy(r), "monitoring.timeSeries.create"),
            DenyVerdict::NotDenied
        );
    }

    #[test]
    fn an_exception_permission_lifts_the_denial() {
        let mut r = rule(
            &["principalSet://goog/public:all"],
            &["logging.googleapis.com/*.*"],
        );
        r.exception_permissions = vec!["logging.googleapis.com/logEntries.create".into()];
        assert_eq!(
            verdict(&policy(r), "logging.logEntries.create"),
            DenyVerdict::NotDenied
        );
    }

    #[test]
    fn a_group_principal_set_is_unknown_until_membership_is_known() {
        let p = policy(rule(
            &["principalSet://goog/group/other@example.com"],
            &["logging.googleapis.com/logEntries.create"],
        ));
        assert!(
            matches!(verdict(&p, "logging.logEntries.create"), DenyVerdict::Unknown(by) if by.uncertain.is_some())
        );
        let p = policy(rule(
            &["principalSet://goog/group/ops@example.com"],
            &["logging.googleapis.com/logEntries.create"],
        ));
        assert!(matches!(
            verdict(&p, "logging.logEntries.create"),
            DenyVerdict::Denied(_)
        ));
    }

    #[test]
    fn the_denial_condition_is_evaluated_and_undecidable_is_unknown() {
        let now = SystemTime::now();
        let past = crate::clock::rfc3339(
            now - Duration::from_secs(86_400),
            crate::clock::Precision::Millis,
        );
        let mut r = rule(
            &["principalSet://goog/public:all"],
            &["logging.googleapis.com/logEntries.create"],
        );
        r.denial_condition = Some(format!("request.time < timestamp('{past}')"));
        assert_eq!(
            verdict(&policy(r.clone()), "logging.logEntries.create"),
            DenyVerdict::NotDenied
        );
        r.denial_condition = Some(format!("request.time > timestamp('{past}')"));
        assert!(matches!(
            verdict(&policy(r.clone()), "logging.logEntries.create"),
            DenyVerdict::Denied(_)
        ));
        r.denial_condition = Some("resource.matchTag('1/env', 'prod')".into());
        assert!(matches!(
            verdict(&policy(r), "logging.logEntries.create"),
            DenyVerdict::Unknown(_)
        ));
    }

    #[test]
    fn resource_principal_sets_match_accounts_under_that_resource() {
        let r = |set: &str| {
            policy(rule(
                &[set],
                &["autoscaling.googleapis.com/sites.writeMetrics"],
            ))
        };
        let perm = "autoscaling.sites.writeMetrics";
        assert!(matches!(
            verdict(
                &r(
                    "principalSet://cloudresourcemanager.googleapis.com/organizations/1/type/ServiceAccount"
                ),
                perm
            ),
            DenyVerdict::Denied(_)
        ));
        assert_eq!(
            verdict(
                &r(
                    "principalSet://cloudresourcemanager.googleapis.com/folders/9/type/ServiceAccount"
                ),
                perm
            ),
            DenyVerdict::NotDenied
        );
        assert_eq!(
            verdict(
                &r(
                    "principalSet://cloudresourcemanager.googleapis.com/projects/42/type/ServiceAgent"
                ),
                perm
            ),
            DenyVerdict::NotDenied
        );
        assert_eq!(
            verdict(&r("principal://goog/subject/alice@example.com"), perm),
            DenyVerdict::NotDenied
        );
        assert!(matches!(
            verdict(&r("principalSet://goog/cloudIdentityCustomerId/C01"), perm),
            DenyVerdict::Unknown(_)
        ));
    }

    #[test]
    fn an_account_named_by_its_unique_id_is_matched_when_the_id_is_known() {
        let by_id = |id: &str| {
            policy(rule(
                &[&format!(
                    "principal://iam.googleapis.com/projects/-/serviceAccounts/{id}"
                )],
                &["logging.googleapis.com/logEntries.create"],
            ))
        };
        assert!(matches!(
            verdict(&by_id("104"), "logging.logEntries.create"),
            DenyVerdict::Denied(_)
        ));
        assert_eq!(
            verdict(&by_id("105"), "logging.logEntries.create"),
            DenyVerdict::NotDenied
        );
    }

    #[test]
    fn v1_names_map_to_the_v2_form_with_google_exceptions() {
        assert_eq!(
            v2_permission("logging.logEntries.create"),
            "logging.googleapis.com/logEntries.create"
        );
        assert_eq!(
            v2_permission("resourcemanager.projects.delete"),
            "cloudresourcemanager.googleapis.com/projects.delete"
        );
        assert!(permission_matches(
            "monitoring.googleapis.com/timeSeries.*",
            "monitoring.timeSeries.create"
        ));
        assert!(permission_matches(
            "monitoring.googleapis.com/*.create",
            "monitoring.metricDescriptors.create"
        ));
        assert!(!permission_matches(
            "monitoring.googleapis.com/*.list",
            "monitoring.timeSeries.create"
        ));
        assert!(!permission_matches(
            "logging.googleapis.com/logEntries.create",
            "monitoring.timeSeries.create"
        ));
        assert!(permission_matches(
            "logging.logEntries.create",
            "logging.logEntries.create"
        ));
    }
}
