//! IAM v2 deny policies, Org Policy v2 and Cloud Identity over the shared [`Client`] (so they get
//! the retry policy, the rate limits and the call counters of every other API), implementing the
//! ports of `ports::access`.
//!
//! Deny-policy reads are IAM v2 reads: Google allows 5 per consumer project per minute. Each request
//! (a list page, a `get` of a policy the list gave without rules) must fit in the client's IAM v2
//! window *now*; no read ever waits for the budget, it fails at once with
//! [`ApiError::ReadQuotaSpent`]. Folders and organizations take precedence: they are few, shared by
//! every project beneath them and cached, so a read of a project's own deny policies leaves the last
//! slot of each window to them ([`PROJECT_RESERVE`]).
//!
//! Hand-written rather than the generated `google-cloud-iam-v2` / `google-cloud-orgpolicy-v2` crates:
//! we read three fields of an effective policy, five lists of a deny rule and one boolean of a
//! membership check, so a few serde structs keep every request and error in the one client (one
//! HTTP stack, one `--api-endpoint`) at no dependency cost.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::Gcp;
use super::apis::get;
use super::pages::{MAX_PAGES, Page, PageCap, pages};
use crate::domain::deny::{DenyPolicy, DenyRule};
use crate::ports::{Api, ApiError, DenyPolicies, GroupMembership, OrgPolicies};

fn invalid(api: Api, method: &'static str, message: String) -> ApiError {
    ApiError::Invalid {
        api,
        method,
        message,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePolicy {
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    rules: Option<Vec<WireRule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRule {
    #[serde(default)]
    deny_rule: Option<WireDenyRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireDenyRule {
    #[serde(default)]
    denied_principals: Vec<String>,
    #[serde(default)]
    exception_principals: Vec<String>,
    #[serde(default)]
    denied_permissions: Vec<String>,
    #[serde(default)]
    exception_permissions: Vec<String>,
    #[serde(default)]
    denial_condition: Option<WireExpr>,
}

#[derive(Deserialize, Default)]
struct WireExpr {
    #[serde(default)]
    expression: String,
}

fn to_policy(p: WirePolicy, attached_to: &str) -> DenyPolicy {
    DenyPolicy {
        name: p.name,
        attached_to: attached_to.to_owned(),
        display_name: p.display_name,
        rules: p
            .rules
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.deny_rule)
            .map(|r| DenyRule {
                denied_principals: r.denied_principals,
                exception_principals: r.exception_principals,
                denied_permissions: r.denied_permissions,
                exception_permissions: r.exception_permissions,
                denial_condition: r
                    .denial_condition
                    .map(|c| c.expression)
                    .filter(|e| !e.trim().is_empty()),
            })
            .collect(),
    }
}

/// A Google id or email safe in a path or a CEL string literal.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._+-".contains(c))
}

impl Gcp {
    /// IAM v2 `policies.listPolicies` of kind `denypolicies` on an attachment point, then
    /// `policies.get` of each policy whose rules the list omits (Google's list returns metadata only).
    pub async fn list_deny_policies(&self, attachment: &str) -> Result<Vec<DenyPolicy>, ApiError> {
        self.read_deny_policies(attachment, false).await
    }

    /// [`Self::list_deny_policies`]; with `list_now`, the list takes a turn in the IAM v2 window only
    /// if one is free at once (the gets of its policies then wait as usual: the read is under way).
    async fn read_deny_policies(
        &self,
        attachment: &str,
        list_now: bool,
    ) -> Result<Vec<DenyPolicy>, ApiError> {
        const LIST: &str = "policies.listPolicies";
        const GET: &str = "policies.get";
        let valid = match attachment.split_once('/') {
            Some(("projects" | "folders" | "organizations", id)) => plain(id),
            _ => false,
        };
        if !valid {
            return Err(invalid(
                Api::Iam,
                LIST,
                format!("`{attachment}` is not an attachment point"),
            ));
        }
        let reserve = if attachment.starts_with("projects/") {
            PROJECT_RESERVE
        } else {
            0
        };
        // The attachment point is one path segment: its `/` are `%2F`, sent as `%252F`.
        let parent = format!(
            "v2/policies/cloudresourcemanager.googleapis.com%252F{}/denypolicies",
            attachment.replace('/', "%252F")
        );
        let parent = &parent;
        let listed: Vec<WirePolicy> = pages(Api::Iam, LIST, PageCap::Fail(MAX_PAGES), |token| {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct WirePage {
                #[serde(default)]
                policies: Vec<WirePolicy>,
                #[serde(default)]
                next_page_token: String,
            }
            // Only the first page of a read ahead is taken without waiting.
            let wait = !(list_now && token.is_none());
            let mut call = get(Api::Iam, LIST, "iam.denypolicies.list", parent.clone());
            call.query.push(("pageSize", "1000".to_owned()));
            if let Some(token) = token {
                call.query.push(("pageToken", token));
            }
            async move {
                let page: WirePage = self.client().send_iam_v2(call, reserve, wait).await?;
                Ok(Page {
                    items: page.policies,
                    next: Some(page.next_page_token),
                })
            }
        })
        .await?;
        let mut out = Vec::with_capacity(listed.len());
        for p in listed {
            if p.rules.is_some() {
                out.push(to_policy(p, attachment));
                continue;
            }
            let Some(id) = p
                .name
                .rsplit_once("/denypolicies/")
                .map(|(_, id)| id)
                .filter(|id| plain(id))
            else {
                return Err(ApiError::Decode {
                    api: Api::Iam,
                    method: LIST,
                    message: format!("unexpected deny policy name `{}`", p.name),
                });
            };
            let full: WirePolicy = self
                .client()
                .send_iam_v2(
                    get(
                        Api::Iam,
                        GET,
                        "iam.denypolicies.get",
                        format!("{parent}/{id}"),
                    ),
                    reserve,
                    true,
                )
                .await?;
            out.push(to_policy(full, attachment));
        }
        Ok(out)
    }

    /// Org Policy v2 `policies.getEffectivePolicy` of a boolean constraint.
    pub async fn boolean_constraint_enforced(
        &self,
        resource: &str,
        constraint: &str,
    ) -> Result<bool, ApiError> {
        const M: &str = "policies.getEffectivePolicy";
        #[derive(Deserialize, Default)]
        struct Rule {
            #[serde(default)]
            enforce: Option<bool>,
        }
        #[derive(Deserialize, Default)]
        struct Spec {
            #[serde(default)]
            rules: Vec<Rule>,
        }
        #[derive(Deserialize)]
        struct Effective {
            #[serde(default)]
            spec: Option<Spec>,
        }
        let constraint = constraint.trim_start_matches("constraints/");
        let valid = match resource.split_once('/') {
            Some(("projects" | "folders" | "organizations", id)) => plain(id),
            _ => false,
        };
        if !valid || !plain(constraint) {
            return Err(invalid(
                Api::OrgPolicy,
                M,
                format!("`{resource}` / `{constraint}` is not a resource and constraint"),
            ));
        }
        let effective: Effective = self
            .client()
            .send(get(
                Api::OrgPolicy,
                M,
                "orgpolicy.policy.get",
                format!("v2/{resource}/policies/{constraint}:getEffectivePolicy"),
            ))
            .await?;
        // A missing spec, rule or `enforce` is "not enforced" (the constraint's default for the
        // boolean constraints this program reads).
        Ok(effective
            .spec
            .unwrap_or_default()
            .rules
            .iter()
            .any(|r| r.enforce == Some(true)))
    }

    /// Cloud Identity `groups.lookup` then `groups.memberships.checkTransitiveMembership`:
    /// whether `member_email` is in the group `group_email`, directly or through nested groups. The
    /// group's id (`groups:lookup`) is remembered per process, so each group is looked up once.
    pub async fn is_transitive_member(
        &self,
        group_email: &str,
        member_email: &str,
    ) -> Result<bool, ApiError> {
        const LOOKUP: &str = "groups.lookup";
        const CHECK: &str = "groups.memberships.checkTransitiveMembership";
        if !plain(group_email) || !plain(member_email) {
            return Err(invalid(
                Api::CloudIdentity,
                LOOKUP,
                format!("`{group_email}` / `{member_email}` is not an email"),
            ));
        }
        #[derive(Deserialize)]
        struct Name {
            name: String,
        }
        let key = group_email.to_ascii_lowercase();
        let known = self
            .group_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let id = match known {
            Some(id) => id,
            None => {
                let mut lookup = get(
                    Api::CloudIdentity,
                    LOOKUP,
                    "cloudidentity.groups.get",
                    "v1/groups:lookup".to_owned(),
                );
                lookup.query.push(("groupKey.id", group_email.to_owned()));
                let group: Name = self.client().send(lookup).await?;
                let Some(id) = group.name.strip_prefix("groups/").filter(|id| plain(id)) else {
                    return Err(ApiError::Decode {
                        api: Api::CloudIdentity,
                        method: LOOKUP,
                        message: format!("unexpected group name `{}`", group.name),
                    });
                };
                self.group_ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), id.to_owned());
                id.to_owned()
            }
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            // Proto3 JSON omits `false`.
            #[serde(default)]
            has_membership: bool,
        }
        let mut check = get(
            Api::CloudIdentity,
            CHECK,
            "cloudidentity.groups.get",
            format!("v1/groups/{id}/memberships:checkTransitiveMembership"),
        );
        check
            .query
            .push(("query", format!("member_key_id == '{member_email}'")));
        let answer: Result<Answer, ApiError> = self.client().send(check).await;
        if answer.as_ref().is_err_and(ApiError::is_not_found) {
            // The group was deleted (or re-created under a new id): look it up again next time.
            self.group_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        Ok(answer?.has_membership)
    }
}

impl DenyPolicies for Gcp {
    fn list_deny_policies<'a>(
        &'a self,
        attachment: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DenyPolicy>, ApiError>> {
        Gcp::list_deny_policies(self, attachment).boxed()
    }

    fn list_deny_policies_now<'a>(
        &'a self,
        attachment: &'a str,
    ) -> BoxFuture<'a, Option<Result<Vec<DenyPolicy>, ApiError>>> {
        async move {
            match self.read_deny_policies(attachment, true).await {
                // No turn in this client's window (Google's own 429 is an answer like any other).
                Err(ApiError::ReadQuotaSpent {
                    at_google: false, ..
                }) => None,
                result => Some(result),
            }
        }
        .boxed()
    }
}

impl OrgPolicies for Gcp {
    fn boolean_constraint_enforced<'a>(
        &'a self,
        resource: &'a str,
        constraint: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Gcp::boolean_constraint_enforced(self, resource, constraint).boxed()
    }
}

impl GroupMembership for Gcp {
    fn is_transitive_member<'a>(
        &'a self,
        group_email: &'a str,
        member_email: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Gcp::is_transitive_member(self, group_email, member_email).boxed()
    }
}

/// The slots of each IAM v2 window a project's deny-policy read leaves to folders and organizations.
const PROJECT_RESERVE: u32 = 1;

/// Group ids remembered at most (then the oldest looked up is forgotten first).
pub(super) const GROUP_ID_CACHE: usize = 10_000;
