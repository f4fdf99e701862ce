//! Org Policy v2 for boolean constraints, read-only: `GET /v2/{projects|folders|organizations}/X/
//! policies/CONSTRAINT` (`policies.get`: the policy set on that node, 404 when none) and
//! `GET .../policies/CONSTRAINT:getEffectivePolicy` (the closest policy up the hierarchy wins;
//! `reset` means the default; `inheritFromParent` defers to the parent; no policy anywhere is the
//! default, not enforced). Projects may be named by id; answers name them by number.
//!
//! A constraint that does not exist is refused on both: 404 `NOT_FOUND` "Requested entity was not
//! found.". Google documents NOT_FOUND for a constraint that does not exist on the v2 methods that say
//! (create, update, delete: "if the constraint does not exist"), and answers a v2 create on a misspelt
//! constraint (`cloudfunctions.allowedIngressSetting`) with `Error 404: Requested entity was not
//! found.`; getEffectivePolicy documents no error, so it answers as its siblings do. The constraints
//! that exist: Google's built-in ones below (the part a platform team meets), and any constraint a
//! world sets a policy on (custom `custom.*` constraints exist only that way).

use http::Method;
use serde_json::{Value, json};

use super::access;
use super::error::{ApiError, ApiResult};
use super::server::{Ctx, Route, endpoint};

const API: &str = "orgpolicy";
const UPDATED: &str = "2026-01-05T09:30:00.000000Z";

/// Routes the Org Policy v2 paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        (
            "GET",
            [
                "v2",
                kind @ ("projects" | "folders" | "organizations"),
                id,
                "policies",
                constraint,
            ],
            v @ (None | Some("getEffectivePolicy")),
        ) => {
            let (kind, id) = ((*kind).to_owned(), (*id).to_owned());
            let constraint = constraint.trim_start_matches("constraints/").to_owned();
            if v.is_some() {
                endpoint(API, "orgpolicy.policies.getEffectivePolicy", move |c, _| {
                    effective(c, &kind, &id, &constraint)
                })
            } else {
                endpoint(API, "orgpolicy.policies.get", move |c, _| {
                    get(c, &kind, &id, &constraint)
                })
            }
        }
        _ => None,
    }
}

/// Built-in constraints (legacy, list and managed) Google publishes, without `constraints/`.
const BUILT_IN: &[&str] = &[
    "ainotebooks.disableFileDownloads",
    "ainotebooks.disableRootAccess",
    "ainotebooks.disableTerminal",
    "ainotebooks.requireAutoUpgradeSchedule",
    "ainotebooks.restrictPublicIp",
    "appengine.disableCodeDownload",
    "cloudbuild.disableCreateDefaultServiceAccount",
    "cloudbuild.useBuildServiceAccount",
    "cloudbuild.useComputeServiceAccount",
    "cloudfunctions.allowedIngressSettings",
    "cloudfunctions.allowedVpcConnectorEgressSettings",
    "cloudfunctions.requireVPCConnector",
    "commerceorggovernance.disablePublicMarketplace",
    "compute.disableGlobalLoadBalancing",
    "compute.disableGuestAttributesAccess",
    "compute.disableInternetNetworkEndpointGroup",
    "compute.disableNestedVirtualization",
    "compute.disableSerialPortAccess",
    "compute.disableSerialPortLogging",
    "compute.disableSshInBrowser",
    "compute.disableVpcExternalIpv6",
    "compute.disableVpcInternalIpv6",
    "compute.managed.disableNestedVirtualization",
    "compute.managed.disableSerialPortAccess",
    "compute.managed.requireOsLogin",
    "compute.managed.vmExternalIpAccess",
    "compute.requireOsLogin",
    "compute.requireShieldedVm",
    "compute.restrictCloudNATUsage",
    "compute.restrictDedicatedInterconnectUsage",
    "compute.restrictLoadBalancerCreationForTypes",
    "compute.restrictNonConfidentialComputing",
    "compute.restrictPartnerInterconnectUsage",
    "compute.restrictProtocolForwardingCreationForTypes",
    "compute.restrictSharedVpcHostProjects",
    "compute.restrictSharedVpcSubnetworks",
    "compute.restrictVpcPeering",
    "compute.restrictVpnPeerIPs",
    "compute.restrictXpnProjectLienRemoval",
    "compute.setNewProjectDefaultToZonalDNSOnly",
    "compute.sharedReservationsOwnerProjects",
    "compute.skipDefaultNetworkCreation",
    "compute.storageResourceUseRestrictions",
    "compute.trustedImageProjects",
    "compute.vmCanIpForward",
    "compute.vmExternalIpAccess",
    "essentialcontacts.allowedContactDomains",
    "essentialcontacts.disableProjectSecurityContacts",
    "gcp.detailedAuditLoggingMode",
    "gcp.disableCloudLogging",
    "gcp.resourceLocations",
    "gcp.restrictCmekCryptoKeyProjects",
    "gcp.restrictNonCmekServices",
    "gcp.restrictServiceUsage",
    "gcp.restrictTLSVersion",
    "iam.allowServiceAccountCredentialLifetimeExtension",
    "iam.allowedPolicyMemberDomains",
    "iam.automaticIamGrantsForDefaultServiceAccounts",
    "iam.disableAuditLoggingExemption",
    "iam.disableCrossProjectServiceAccountUsage",
    "iam.disableServiceAccountCreation",
    "iam.disableServiceAccountKeyCreation",
    "iam.disableServiceAccountKeyUpload",
    "iam.disableWorkloadIdentityClusterCreation",
    "iam.managed.allowedPolicyMembers",
    "iam.managed.disableServiceAccountKeyCreation",
    "iam.managed.disableServiceAccountKeyUpload",
    "iam.managed.preventPrivilegedBasicRolesForDefaultServiceAccounts",
    "iam.restrictCrossProjectServiceAccountLienRemoval",
    "iam.serviceAccountKeyExpiryHours",
    "iam.serviceAccountKeyExposureResponse",
    "iam.workloadIdentityPoolAwsAccounts",
    "iam.workloadIdentityPoolProviders",
    "resourcemanager.accessBoundaries",
    "resourcemanager.allowEnabledServicesForExport",
    "resourcemanager.allowedExportDestinations",
    "resourcemanager.allowedImportSources",
    "run.allowedBinaryAuthorizationPolicies",
    "run.allowedIngress",
    "run.allowedVPCEgress",
    "serviceuser.services",
    "sql.restrictAuthorizedNetworks",
    "sql.restrictPublicIp",
    "storage.publicAccessPrevention",
    "storage.restrictAuthTypes",
    "storage.retentionPolicySeconds",
    "storage.secureHttpTransport",
    "storage.uniformBucketLevelAccess",
];

/// 404 unless the constraint is built in or the world sets a policy on it.
fn known_constraint(c: &Ctx<'_>, constraint: &str) -> ApiResult<()> {
    let in_world = || {
        c.st.access
            .org
            .values()
            .flatten()
            .any(|p| p.constraint.0 == constraint)
    };
    if BUILT_IN.contains(&constraint) || in_world() {
        Ok(())
    } else {
        Err(ApiError::not_found("Requested entity was not found."))
    }
}

fn resolve(c: &Ctx<'_>, kind: &str, id: &str) -> ApiResult<(String, Vec<super::state::PolicyRef>)> {
    let chain = access::chain(c.st, kind, id).ok_or_else(|| {
        ApiError::denied_or_missing(format!(
            "Permission 'orgpolicy.policy.get' denied on resource '{kind}/{id}' (or it may not exist)."
        ))
    })?;
    let key = access::node_key(c.st, &chain[0]);
    Ok((key, chain))
}

fn effective(c: &mut Ctx<'_>, kind: &str, id: &str, constraint: &str) -> ApiResult<Value> {
    c.require("orgpolicy.policy.get")?;
    let (key, chain) = resolve(c, kind, id)?;
    known_constraint(c, constraint)?;
    let enforce = access::enforced(c.st, &chain, constraint);
    Ok(json!({
        "name": format!("{key}/policies/{constraint}"),
        "spec": {"rules": [{"enforce": enforce}]},
    }))
}

fn get(c: &mut Ctx<'_>, kind: &str, id: &str, constraint: &str) -> ApiResult<Value> {
    c.require("orgpolicy.policy.get")?;
    let (key, _) = resolve(c, kind, id)?;
    known_constraint(c, constraint)?;
    let p =
        c.st.access
            .org
            .get(&key)
            .and_then(|ps| ps.iter().find(|p| p.constraint.0 == constraint))
            .ok_or_else(|| ApiError::not_found("Requested entity was not found."))?;
    let etag = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{key}/{constraint}"),
    );
    let mut spec = json!({"etag": etag, "updateTime": UPDATED});
    if p.reset {
        spec["reset"] = json!(true);
    } else if p.inherit_from_parent {
        spec["inheritFromParent"] = json!(true);
    } else {
        spec["rules"] = json!([{"enforce": p.enforce.unwrap_or(false)}]);
    }
    Ok(json!({"name": format!("{key}/policies/{constraint}"), "spec": spec}))
}
