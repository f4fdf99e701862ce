//! Ports for what decides access beyond allow policies: IAM v2 deny policies, Org Policy v2 and
//! Cloud Identity group membership. Small traits, part of [`super::Cloud`]; `gcp/access.rs`
//! implements them over REST and the scenario tests with the recording fake.

use futures::future::BoxFuture;

use super::ApiError;
use crate::domain::deny::DenyPolicy;

/// IAM v2 deny policies.
pub trait DenyPolicies: Send + Sync {
    /// Every deny policy attached to `attachment` (`projects/NUMBER` or `projects/ID`, as Google
    /// accepts either; `folders/N`, `organizations/N`), with its rules (list, then get each).
    fn list_deny_policies<'a>(
        &'a self,
        attachment: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DenyPolicy>, ApiError>>;

    /// Like [`Self::list_deny_policies`] for a read made ahead of need: `None` at once, nothing
    /// read, when the list would first have to wait for a turn in the IAM v2 quota (a guess must
    /// never hold up the reads that are needed). Without a quota to wait for, the same as the list.
    fn list_deny_policies_now<'a>(
        &'a self,
        attachment: &'a str,
    ) -> BoxFuture<'a, Option<Result<Vec<DenyPolicy>, ApiError>>> {
        Box::pin(async move { Some(self.list_deny_policies(attachment).await) })
    }
}

/// Organization Policy v2.
pub trait OrgPolicies: Send + Sync {
    /// Whether the boolean `constraint` (without `constraints/`) is enforced on `resource`
    /// (`projects/ID`, `folders/N`, `organizations/N`), as `getEffectivePolicy` evaluates it.
    fn boolean_constraint_enforced<'a>(
        &'a self,
        resource: &'a str,
        constraint: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;
}

/// Cloud Identity groups.
pub trait GroupMembership: Send + Sync {
    /// Whether `member_email` is a member of the group `group_email`, directly or through nested
    /// groups (`groups:lookup`, then `memberships:checkTransitiveMembership`).
    fn is_transitive_member<'a>(
        &'a self,
        group_email: &'a str,
        member_email: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;
}
