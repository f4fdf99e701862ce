//! Cloud Asset Inventory feed messages (`TemporalAsset` JSON of an `IAM_POLICY` feed) -> hints.
//!
//! Owns the comparison of `priorAsset.iamPolicy` with `asset.iamPolicy` for projects (and folders and
//! organizations): any (role, member) grant present before and absent now is a removal. Additions and
//! other asset types are ignored. TemporalAsset:
//! <https://cloud.google.com/asset-inventory/docs/reference/rest/v1/TemporalAsset>.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use super::{
    Classification, Evidence, Hint, IntakeError, Message, Source, decode, is_agent_role,
    member_service_account, requirements_for_removed_roles, resource_scope, sanitize,
};
use crate::domain::iam::{Member, Role};

const RESOURCE_MANAGER_TYPES: [&str; 3] = [
    "cloudresourcemanager.googleapis.com/Project",
    "cloudresourcemanager.googleapis.com/Folder",
    "cloudresourcemanager.googleapis.com/Organization",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemporalAsset {
    #[serde(default)]
    asset: Option<Asset>,
    #[serde(default)]
    prior_asset: Option<Asset>,
    #[serde(default)]
    prior_asset_state: Option<String>,
    #[serde(default)]
    deleted: Option<bool>,
    #[serde(default)]
    window: Option<Window>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Asset {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    asset_type: Option<String>,
    #[serde(default)]
    iam_policy: Option<FeedPolicy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Window {
    #[serde(default)]
    start_time: Option<String>,
}

/// Only bindings matter here; roles and members are kept as strings until a removal is found.
#[derive(Deserialize, Default)]
struct FeedPolicy {
    #[serde(default)]
    bindings: Vec<FeedBinding>,
}

#[derive(Deserialize)]
struct FeedBinding {
    #[serde(default)]
    role: String,
    #[serde(default)]
    members: Vec<String>,
    /// Kept whole: two grants differ when any part of their condition does.
    #[serde(default)]
    condition: Option<Value>,
}

/// (role, member, condition expression) grants of a policy.
fn grants(policy: &FeedPolicy) -> BTreeSet<(&str, &str, Option<String>)> {
    policy
        .bindings
        .iter()
        .flat_map(|b| {
            let condition = b.condition.as_ref().map(|c| c.to_string());
            b.members
                .iter()
                .map(move |m| (b.role.as_str(), m.as_str(), condition.clone()))
        })
        .collect()
}

/// Classifies a TemporalAsset (JSON data with `asset` or `priorAsset`), decoded once.
pub(super) fn classify(message: &Message, data: &[u8]) -> Result<Classification, IntakeError> {
    let temporal: TemporalAsset = decode(data, "message data", "asset feed message")?;
    Ok(classify_temporal(message, temporal))
}

fn classify_temporal(message: &Message, temporal: TemporalAsset) -> Classification {
    let Some(asset) = temporal.asset.as_ref().or(temporal.prior_asset.as_ref()) else {
        return Classification::ignored("asset feed message without an asset");
    };
    let asset_type = asset.asset_type.as_deref().unwrap_or_default();
    let name = asset.name.as_deref().unwrap_or_default();
    if temporal.deleted == Some(true) {
        return Classification::ignored(format!("asset `{}` was deleted", sanitize(name, 120)));
    }
    if !RESOURCE_MANAGER_TYPES.contains(&asset_type) {
        return Classification::ignored(format!(
            "asset type `{}` is not a project, folder or organization",
            sanitize(asset_type, 100)
        ));
    }
    let Some(scope) = name
        .strip_prefix("//cloudresourcemanager.googleapis.com/")
        .and_then(resource_scope)
    else {
        return Classification::ignored(format!(
            "asset name `{}` is not a resource-manager name",
            sanitize(name, 120)
        ));
    };
    let Some(current) = temporal.asset.as_ref().and_then(|a| a.iam_policy.as_ref()) else {
        return Classification::ignored(
            "asset feed message carries no iamPolicy (not an IAM_POLICY feed)",
        );
    };
    let prior_state = temporal.prior_asset_state.as_deref().unwrap_or("PRESENT");
    let prior = match (
        prior_state,
        temporal
            .prior_asset
            .as_ref()
            .and_then(|a| a.iam_policy.as_ref()),
    ) {
        ("PRESENT", Some(prior)) => prior,
        _ => {
            return Classification::ignored(format!(
                "asset feed message has no prior policy to compare (priorAssetState {})",
                sanitize(prior_state, 40)
            ));
        }
    };

    let now = grants(current);
    let removed: Vec<(&str, &str)> = {
        let mut pairs: Vec<(&str, &str)> = grants(prior)
            .difference(&now)
            .map(|(role, member, _)| (*role, *member))
            .collect();
        pairs.dedup();
        pairs
    };
    if removed.is_empty() {
        return Classification::ignored("asset feed policy change removed no grant");
    }

    let mut evidence = Evidence::new(Source::AssetFeed, message);
    evidence.method = Some("cloudasset.feeds/IAM_POLICY".into());
    evidence.log_timestamp = temporal.window.and_then(|w| w.start_time);
    let mut node_service_accounts = Vec::new();
    for (role, member) in &removed {
        if let (Ok(role), Ok(member)) = (Role::parse(role), Member::parse(member)) {
            if !is_agent_role(role.as_str())
                && let Some(email) = member_service_account(&member)
                && !node_service_accounts.contains(&email)
            {
                node_service_accounts.push(email);
            }
            evidence.removed.push((role, member));
        }
    }
    Classification::Hints(vec![Hint {
        scope,
        requirements: requirements_for_removed_roles(removed.iter().map(|(role, _)| *role)),
        node_service_accounts,
        is_removal: true,
        deny_policies_changed: false,
        evidence,
    }])
}
