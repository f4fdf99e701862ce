//! Cloud Asset Inventory v1 `assets.list` over [`Client`](super::client::Client): every page of a
//! listing, one call each through the one page driver ([`for_each_page`]), decoded into
//! [`AssetBody`] facts and handed out page by page. Asset data Google changes shape of (or strips as sensitive) must
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
use super::pages::{Page, PageCap, for_each_page};
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

/// The method, as errors and call counts name it.
const METHOD: &str = "assets.list";

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
                            // The asset's ancestors: the project itself, then its folders and
                            // organization, nearest first.
                            ancestors: raw
                                .ancestors
                                .iter()
                                .skip(1)
                                .filter_map(|a| ResourceRef::parse(a).ok())
                                .collect(),
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

/// The most pages one `assets.list` listing reads. A sweep lists in pages of 1,000: an organization
/// of 10,000 projects is some 11 pages of IAM policies (one per project, folder and the
/// organization) and, at a few dozen resources per project (the project, its enabled services,
/// service accounts, clusters and custom roles), a few hundred pages of resources. 5,000 pages is
/// 5,000,000 assets, 500 a project at that size, so no real organization reaches it; at the
/// default `ListAssets` quota (100 calls a minute), a listing that never ends is stopped within an
/// hour. The drivers' default of 1,000 pages would leave 100 assets a project.
const MAX_ASSET_PAGES: u32 = 5_000;

impl Gcp {
    /// `assets.list`: every page of a scope's assets of the given types, read through
    /// [`for_each_page`] (failing closed on a page token that comes back and past
    /// [`MAX_ASSET_PAGES`]) and handed to `on_page` as it arrives; the pages read.
    pub async fn list_asset_pages(
        &self,
        scope: &ResourceRef,
        content: AssetContent,
        types: &[&str],
        page_size: u32,
        on_page: &mut (dyn FnMut(AssetPage) + Send),
    ) -> Result<u32, ApiError> {
        for_each_page(
            Api::CloudAsset,
            METHOD,
            PageCap::Fail(MAX_ASSET_PAGES),
            |token| self.asset_page(scope, content, types, page_size, token),
            |pages| pages.into_iter().for_each(&mut *on_page),
        )
        .await
    }

    /// One page of `assets.list`, as the one item of a [`Page`] (its `readTime` stays with its
    /// assets).
    async fn asset_page(
        &self,
        scope: &ResourceRef,
        content: AssetContent,
        types: &[&str],
        page_size: u32,
        page_token: Option<String>,
    ) -> Result<Page<AssetPage>, ApiError> {
        let (name, permission) = match content {
            AssetContent::Resource => ("RESOURCE", "cloudasset.assets.listResource"),
            AssetContent::IamPolicy => ("IAM_POLICY", "cloudasset.assets.listIamPolicy"),
        };
        let mut query = vec![
            ("contentType", name.to_owned()),
            ("pageSize", page_size.clamp(1, 1000).to_string()),
        ];
        query.extend(types.iter().map(|t| ("assetTypes", (*t).to_owned())));
        if let Some(t) = page_token {
            query.push(("pageToken", t));
        }
        let call: Call<'_, ()> = Call {
            api: Api::CloudAsset,
            method: METHOD,
            permission,
            http_method: Method::GET,
            path: format!("v1/{scope}/assets"),
            query,
            body: None,
        };
        let page: RawPage = self.client().send(call).await?;
        let assets = page
            .assets
            .into_iter()
            .map(|raw| Asset {
                name: raw.name.clone(),
                asset_type: raw.asset_type.clone(),
                ancestors: raw.ancestors.clone(),
                body: body_of(raw, content),
            })
            .collect();
        Ok(Page {
            items: vec![AssetPage {
                read_time: page.read_time,
                assets,
            }],
            next: page.next_page_token,
        })
    }
}

impl AssetInventory for Gcp {
    fn list_asset_pages<'a>(
        &'a self,
        scope: &'a ResourceRef,
        content: AssetContent,
        asset_types: &'a [&'a str],
        page_size: u32,
        on_page: &'a mut (dyn FnMut(AssetPage) + Send),
    ) -> BoxFuture<'a, Result<u32, ApiError>> {
        Gcp::list_asset_pages(self, scope, content, asset_types, page_size, on_page).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::gcp::{Client, ClientConfig, Credentials};

    /// An adapter whose endpoint answers every request with `reply(request line)`, and the request
    /// lines it was sent.
    async fn serving(reply: fn(&str) -> serde_json::Value) -> (Gcp, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]);
                let line = request.lines().next().unwrap_or_default().to_owned();
                let body = reply(&line).to_string();
                log.lock().unwrap().push(line);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(body.as_bytes()).await.unwrap();
            }
        });
        // No quota pacing: a listing that never ends reaches the page cap in seconds, not hours.
        let client = Client::new(ClientConfig {
            api_endpoint: Some(base),
            credentials: Credentials::Static("t0k3n".to_owned()),
            rate_limits: [(Api::CloudAsset, 1e6)].into(),
            ..ClientConfig::default()
        })
        .unwrap();
        (Gcp::new(client), asked)
    }

    fn policy_asset(project: &str) -> serde_json::Value {
        json!({
            "name": format!("//cloudresourcemanager.googleapis.com/projects/{project}"),
            "assetType": asset_types::PROJECT,
            "ancestors": [format!("projects/{project}"), "organizations/1"],
            "iamPolicy": {"etag": "e", "bindings": []}
        })
    }

    /// Lists the organization's project policies in pages of 1,000; the pages handed out and the
    /// listing's result.
    async fn list(gcp: &Gcp) -> (Vec<AssetPage>, Result<u32, ApiError>) {
        let org = ResourceRef::parse("organizations/1").unwrap();
        let mut handed = Vec::new();
        let mut hand = |page| handed.push(page);
        let listing = gcp.list_asset_pages(
            &org,
            AssetContent::IamPolicy,
            &[asset_types::PROJECT],
            1000,
            &mut hand,
        );
        let read = tokio::time::timeout(std::time::Duration::from_secs(60), listing)
            .await
            .expect("a listing ends within a minute");
        (handed, read)
    }

    #[tokio::test]
    async fn every_page_is_read_once_and_handed_out_with_its_own_read_time() {
        let (gcp, asked) = serving(|line| {
            if line.contains("pageToken=p2") {
                json!({"readTime": "2024-05-01T10:00:01Z", "assets": [policy_asset("301")]})
            } else {
                json!({"readTime": "2024-05-01T10:00:00Z", "assets": [policy_asset("300")],
                    "nextPageToken": "p2"})
            }
        })
        .await;
        let (handed, read) = list(&gcp).await;
        assert_eq!(read.unwrap(), 2);
        let seen: Vec<(Option<&str>, &str)> = handed
            .iter()
            .map(|p| (p.read_time.as_deref(), p.assets[0].ancestors[0].as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some("2024-05-01T10:00:00Z"), "projects/300"),
                (Some("2024-05-01T10:00:01Z"), "projects/301"),
            ]
        );
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 2, "{asked:#?}");
        assert!(!asked[0].contains("pageToken"), "{}", asked[0]);
        assert!(
            asked[1]
                .starts_with("GET /v1/organizations/1/assets?contentType=IAM_POLICY&pageSize=1000")
                && asked[1].contains("pageToken=p2"),
            "{}",
            asked[1]
        );
    }

    #[tokio::test]
    async fn a_page_token_that_comes_back_fails_the_listing_instead_of_looping() {
        let (gcp, asked) = serving(|_| {
            json!({"readTime": "2024-05-01T10:00:00Z", "assets": [policy_asset("300")],
                "nextPageToken": "again"})
        })
        .await;
        let (handed, read) = list(&gcp).await;
        let err = read.unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Decode {
                    api: Api::CloudAsset,
                    method: "assets.list",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("came back"), "{err}");
        assert_eq!(
            asked.lock().unwrap().len(),
            2,
            "the first page, then `again` once"
        );
        assert_eq!(handed.len(), 2);
    }

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
