//! Cloud Asset Inventory v1 `assets.list` over [`Client`](super::client::Client): one page per call,
//! decoded into [`AssetBody`] facts. Asset data Google changes shape of (or strips as sensitive) must
//! not sink a sweep: an asset that does not decode becomes [`AssetBody::Undecodable`] and only its
//! project falls back to the live path.
//!
//! Wire: `GET v1/{scope}/assets?contentType=IAM_POLICY|RESOURCE&assetTypes=..&pageSize=..&pageToken=..`,
//! `{"readTime", "assets": [{"name", "assetType", "ancestors", "iamPolicy" | "resource": {"data"}}],
//! "nextPageToken"}` (`reference/gcp-wire-formats-2.md` §3).

use std::collections::BTreeSet;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;

use super::Gcp;
use super::apis::RawCluster;
use super::client::Call;
use crate::domain::iam::{Policy, ProjectId, ProjectNumber, ResourceRef, Role};
use crate::ports::assets::asset_types;
use crate::ports::{
    Api, ApiError, Asset, AssetBody, AssetContent, AssetInventory, AssetPage, ProjectInfo,
    ServiceAccount,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPage {
    #[serde(default)]
    read_time: Option<String>,
    #[serde(default)]
    assets: Vec<RawAsset>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAsset {
    name: String,
    #[serde(default)]
    asset_type: String,
    #[serde(default)]
    ancestors: Vec<String>,
    #[serde(default)]
    iam_policy: Option<serde_json::Value>,
    #[serde(default)]
    resource: Option<RawResource>,
}

#[derive(Deserialize)]
struct RawResource {
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProject {
    project_id: String,
    project_number: String,
    #[serde(default)]
    lifecycle_state: String,
    #[serde(default)]
    parent: Option<RawParent>,
}

#[derive(Deserialize)]
struct RawParent {
    r#type: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRole {
    name: String,
    #[serde(default)]
    included_permissions: Vec<String>,
    #[serde(default)]
    deleted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAccount {
    email: String,
    #[serde(default)]
    project_id: String,
    #[serde(default)]
    unique_id: Option<String>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
struct RawService {
    name: String,
    #[serde(default)]
    state: String,
}

fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| format!("at `{}`: {}", e.path(), e.inner()))
}

/// The project id in `//container.googleapis.com/projects/ID/locations/...`.
fn project_of_name(name: &str) -> Result<ProjectId, String> {
    let id = name
        .split("/projects/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("no project in the asset name {name}"))?;
    ProjectId::parse(id).map_err(|e| e.to_string())
}

fn body_of(raw: RawAsset, content: AssetContent) -> AssetBody {
    let result: Result<AssetBody, String> = match content {
        AssetContent::IamPolicy => match raw.iam_policy {
            Some(p) => decode::<Policy>(p).map(AssetBody::IamPolicy),
            None => Err("no iamPolicy".to_owned()),
        },
        AssetContent::Resource => {
            let data = raw.resource.map(|r| r.data).unwrap_or_default();
            match raw.asset_type.as_str() {
                asset_types::PROJECT => decode::<RawProject>(data).and_then(|p| {
                    Ok(AssetBody::Project {
                        active: p.lifecycle_state.is_empty() || p.lifecycle_state == "ACTIVE",
                        info: ProjectInfo {
                            project_id: ProjectId::parse(&p.project_id)
                                .map_err(|e| e.to_string())?,
                            project_number: ProjectNumber::parse(&p.project_number)
                                .map_err(|e| e.to_string())?,
                            parent: p.parent.and_then(|p| {
                                let kind = match p.r#type.as_str() {
                                    "folder" => "folders",
                                    "organization" => "organizations",
                                    _ => return None,
                                };
                                ResourceRef::parse(&format!("{kind}/{}", p.id)).ok()
                            }),
                        },
                    })
                }),
                asset_types::CLUSTER => decode::<RawCluster>(data).and_then(|c| {
                    Ok(AssetBody::Cluster {
                        project_id: project_of_name(&raw.name)?,
                        cluster: c.into_cluster(),
                    })
                }),
                asset_types::SERVICE_ACCOUNT => decode::<RawAccount>(data).and_then(|a| {
                    let project = if a.project_id.is_empty() {
                        project_of_name(&raw.name)?
                    } else {
                        ProjectId::parse(&a.project_id).map_err(|e| e.to_string())?
                    };
                    Ok(AssetBody::ServiceAccount {
                        project_id: project,
                        account: ServiceAccount {
                            email: a.email,
                            unique_id: a.unique_id,
                            disabled: a.disabled,
                        },
                    })
                }),
                asset_types::SERVICE => decode::<RawService>(data).and_then(|s| {
                    // `projects/NUMBER/services/NAME`.
                    let mut parts = s.name.split('/');
                    match (parts.next(), parts.next(), parts.next(), parts.next()) {
                        (Some("projects"), Some(number), Some("services"), Some(service)) => {
                            Ok(AssetBody::Service {
                                project_number: number.to_owned(),
                                service: service.to_owned(),
                                enabled: s.state == "ENABLED",
                            })
                        }
                        _ => Err(format!("unexpected service name {}", s.name)),
                    }
                }),
                asset_types::ROLE => decode::<RawRole>(data).and_then(|r| {
                    Ok(AssetBody::Role {
                        role: Role::parse(&r.name).map_err(|e| e.to_string())?,
                        permissions: r.included_permissions.into_iter().collect::<BTreeSet<_>>(),
                        deleted: r.deleted,
                    })
                }),
                _ => Ok(AssetBody::Other),
            }
        }
    };
    result.unwrap_or_else(|reason| AssetBody::Undecodable { reason })
}

impl Gcp {
    /// `assets.list`: one page of a scope's assets of the given types.
    pub async fn list_assets(
        &self,
        scope: &ResourceRef,
        content: AssetContent,
        types: &[&str],
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<AssetPage, ApiError> {
        let (name, permission) = match content {
            AssetContent::Resource => ("RESOURCE", "cloudasset.assets.listResource"),
            AssetContent::IamPolicy => ("IAM_POLICY", "cloudasset.assets.listIamPolicy"),
        };
        let mut query = vec![
            ("contentType", name.to_owned()),
            ("pageSize", page_size.clamp(1, 1000).to_string()),
        ];
        query.extend(types.iter().map(|t| ("assetTypes", (*t).to_owned())));
        if let Some(t) = page_token.filter(|t| !t.is_empty()) {
            query.push(("pageToken", t.to_owned()));
        }
        let call: Call<'_, ()> = Call {
            api: Api::CloudAsset,
            method: "assets.list",
            permission,
            http_method: Method::GET,
            path: format!("v1/{scope}/assets"),
            query,
            body: None,
        };
        let page: RawPage = self.client().send(call).await?;
        Ok(AssetPage {
            read_time: page.read_time,
            assets: page
                .assets
                .into_iter()
                .map(|raw| Asset {
                    name: raw.name.clone(),
                    asset_type: raw.asset_type.clone(),
                    ancestors: raw.ancestors.clone(),
                    body: body_of(raw, content),
                })
                .collect(),
            next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}

impl AssetInventory for Gcp {
    fn list_assets<'a>(
        &'a self,
        scope: &'a ResourceRef,
        content: AssetContent,
        asset_types: &'a [&'a str],
        page_size: u32,
        page_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<AssetPage, ApiError>> {
        Gcp::list_assets(self, scope, content, asset_types, page_size, page_token).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: serde_json::Value) -> RawAsset {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cluster_assets_decode_into_node_pools_and_autopilot() {
        let a = raw(json!({
            "name": "//container.googleapis.com/projects/shop/locations/us-central1/clusters/c1",
            "assetType": asset_types::CLUSTER,
            "ancestors": ["projects/300", "organizations/1"],
            "resource": {"data": {"name": "c1", "location": "us-central1", "autopilot": {"enabled": true},
                "autoscaling": {"enableNodeAutoprovisioning": true, "autoprovisioningNodePoolDefaults": {"serviceAccount": "default"}},
                "nodePools": [{"name": "p", "config": {"serviceAccount": "n@shop.iam.gserviceaccount.com"}}]}}
        }));
        let AssetBody::Cluster {
            project_id,
            cluster,
        } = body_of(raw_clone(&a), AssetContent::Resource)
        else {
            panic!("not a cluster")
        };
        assert_eq!(project_id.as_str(), "shop");
        assert!(cluster.autopilot);
        assert_eq!(
            cluster.autoprovisioning_service_account.as_deref(),
            Some("default")
        );
        assert_eq!(
            cluster.node_pools[0].service_account,
            "n@shop.iam.gserviceaccount.com"
        );
    }

    fn raw_clone(a: &RawAsset) -> RawAsset {
        RawAsset {
            name: a.name.clone(),
            asset_type: a.asset_type.clone(),
            ancestors: a.ancestors.clone(),
            iam_policy: a.iam_policy.clone(),
            resource: a.resource.as_ref().map(|r| RawResource {
                data: r.data.clone(),
            }),
        }
    }

    #[test]
    fn an_asset_whose_data_does_not_decode_is_undecodable_not_an_error() {
        let a = raw(json!({
            "name": "//cloudresourcemanager.googleapis.com/projects/300",
            "assetType": asset_types::PROJECT,
            "resource": {"data": {"projectId": 7}}
        }));
        assert!(matches!(
            body_of(a, AssetContent::Resource),
            AssetBody::Undecodable { .. }
        ));
        let p = raw(json!({
            "name": "//cloudresourcemanager.googleapis.com/projects/300",
            "assetType": asset_types::PROJECT,
            "iamPolicy": {"etag": "e", "bindings": [{"role": "roles/owner", "members": ["user:a@example.com"]}]}
        }));
        assert!(matches!(
            body_of(p, AssetContent::IamPolicy),
            AssetBody::IamPolicy(_)
        ));
    }

    #[test]
    fn services_and_projects_decode_from_their_resource_names() {
        let s = raw(json!({
            "name": "//serviceusage.googleapis.com/projects/300/services/container.googleapis.com",
            "assetType": asset_types::SERVICE,
            "resource": {"data": {"name": "projects/300/services/container.googleapis.com", "state": "ENABLED"}}
        }));
        assert!(matches!(
            body_of(s, AssetContent::Resource),
            AssetBody::Service { ref project_number, ref service, enabled: true }
                if project_number == "300" && service == "container.googleapis.com"
        ));
        let p = raw(json!({
            "name": "//cloudresourcemanager.googleapis.com/projects/300",
            "assetType": asset_types::PROJECT,
            "resource": {"data": {"projectId": "shop", "projectNumber": "300", "lifecycleState": "DELETE_REQUESTED",
                "parent": {"type": "folder", "id": "7"}}}
        }));
        let AssetBody::Project { info, active } = body_of(p, AssetContent::Resource) else {
            panic!()
        };
        assert!(!active);
        assert_eq!(info.parent.unwrap().to_string(), "folders/7");
    }
}
