//! Recommender v1 for `google.container.DiagnosisRecommender`: recommendations list/get per location
//! and markClaimed / markSucceeded / markFailed / markDismissed with etag checks and the state rules
//! of the API reference. Names use the project NUMBER; etags carry literal quotes (`"\"4f2c…\""`).
//!
//! Etag mismatch (not documented by Google) answers 409 `ABORTED` as AIP-154 prescribes; a missing
//! etag on claimed/succeeded/failed answers 400 `INVALID_ARGUMENT`; a transition the method does not
//! allow answers 400 `FAILED_PRECONDITION`. Other known recommenders list as empty; an unknown one is
//! 400 INVALID_ARGUMENT. `locations/-` lists every location. A `filter` over 500 characters is 400
//! INVALID_ARGUMENT (the documented limit), on any recommender.

use http::Method;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::paging;
use super::server::{Ctx, Route, endpoint};
use super::state::{ProjectState, RecState};

const API: &str = "recommender";
const DIAGNOSIS: &str = "google.container.DiagnosisRecommender";

/// Routes Recommender paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    let owned = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match (method.as_str(), segs, verb) {
        (
            "GET",
            [
                "v1",
                "projects",
                _,
                "locations",
                _,
                "recommenders",
                _,
                "recommendations",
            ],
            None,
        ) => {
            let a = owned(segs);
            endpoint(API, "recommender.recommendations.list", move |c, _| {
                list(c, &a[2], &a[4], &a[6])
            })
        }
        (
            "GET",
            [
                "v1",
                "projects",
                _,
                "locations",
                _,
                "recommenders",
                _,
                "recommendations",
                _,
            ],
            None,
        ) => {
            let a = owned(segs);
            endpoint(API, "recommender.recommendations.get", move |c, _| {
                get(c, &a[2], &a[4], &a[6], &a[8])
            })
        }
        (
            "POST",
            [
                "v1",
                "projects",
                _,
                "locations",
                _,
                "recommenders",
                _,
                "recommendations",
                _,
            ],
            Some(v),
        ) => {
            let a = owned(segs);
            let (key, target, allowed): (&'static str, &'static str, &'static [&'static str]) =
                match v {
                    "markClaimed" => (
                        "recommender.recommendations.markClaimed",
                        "CLAIMED",
                        &["ACTIVE", "CLAIMED", "SUCCEEDED", "FAILED"],
                    ),
                    "markSucceeded" => (
                        "recommender.recommendations.markSucceeded",
                        "SUCCEEDED",
                        &["ACTIVE", "CLAIMED", "SUCCEEDED", "FAILED"],
                    ),
                    "markFailed" => (
                        "recommender.recommendations.markFailed",
                        "FAILED",
                        &["ACTIVE", "CLAIMED", "SUCCEEDED", "FAILED"],
                    ),
                    "markDismissed" => (
                        "recommender.recommendations.markDismissed",
                        "DISMISSED",
                        &["ACTIVE"],
                    ),
                    _ => return None,
                };
            let verb = v.to_owned();
            endpoint(API, key, move |c, b| mark(c, &a, &verb, target, allowed, b))
        }
        _ => None,
    }
}

fn rec_json(p: &ProjectState, r: &RecState) -> Value {
    let cluster_loc = p
        .clusters
        .iter()
        .find(|cl| cl.name == r.cluster)
        .map(|cl| cl.location.clone())
        .unwrap_or_else(|| r.location.clone());
    let description = if r.subtype == "NODE_SA_MISSING_PERMISSIONS" {
        "Grant roles/container.defaultNodeServiceAccount role to Node service account to allow for non-degraded operations.".to_owned()
    } else {
        format!("GKE diagnosis: {} on cluster {}.", r.subtype, r.cluster)
    };
    let mut state_info = json!({"state": r.state});
    if !r.state_metadata.is_empty() {
        state_info["stateMetadata"] = json!(r.state_metadata);
    }
    json!({
        "name": format!("projects/{}/locations/{}/recommenders/{DIAGNOSIS}/recommendations/{}", p.number, r.location, r.id),
        "description": description,
        "recommenderSubtype": r.subtype,
        "lastRefreshTime": "2025-06-01T06:00:00Z",
        "primaryImpact": {"category": "RELIABILITY"},
        "content": {"overview": {}},
        "stateInfo": state_info,
        "etag": format!("\"{}\"", r.etag),
        "priority": "P2",
        "associatedInsights": [{"insight": format!("projects/{}/locations/{}/insightTypes/google.container.DiagnosisInsight/insights/{}", p.number, r.location, r.id)}],
        "targetResources": [format!("//container.googleapis.com/projects/{}/locations/{cluster_loc}/clusters/{}", p.number, r.cluster)],
    })
}

fn project(c: &Ctx<'_>, p: &str, permission: &str) -> ApiResult<usize> {
    c.require(permission)?;
    c.st.project_idx(p)
        .ok_or_else(|| ApiError::permission_denied(permission))
}

fn filter_matches(r: &RecState, filter: &str) -> ApiResult<bool> {
    let mut ok = true;
    for term in filter
        .split(" AND ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let (k, v) = term
            .split_once('=')
            .or_else(|| term.split_once(':'))
            .ok_or_else(|| ApiError::invalid(format!("Invalid filter: {term}")))?;
        let v = v.trim().trim_matches('"');
        ok &= match k.trim() {
            "stateInfo.state" | "state_info.state" => r.state == v,
            "recommenderSubtype" | "recommender_subtype" => r.subtype == v,
            "priority" => v == "P2",
            "targetResources" | "target_resources" => {
                v.ends_with(&format!("/clusters/{}", r.cluster))
            }
            other => return Err(ApiError::invalid(format!("Invalid filter field: {other}"))),
        };
    }
    Ok(ok)
}

/// "The max allowed filter length is 500 characters" (`ListRecommendationsRequest.filter`). Google's
/// wording of the refusal is not published: the message names the limit and the length given.
const MAX_FILTER_CHARS: usize = 500;

fn check_filter_length(filter: &str) -> ApiResult<()> {
    let n = filter.chars().count();
    if n <= MAX_FILTER_CHARS {
        return Ok(());
    }
    let message = format!(
        "Invalid filter: the filter is {n} characters long; the max allowed filter length is {MAX_FILTER_CHARS} characters."
    );
    let mut e = ApiError::invalid(message.clone());
    e.details.push(json!({
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "filter", "description": message}],
    }));
    Err(e)
}

fn list(c: &mut Ctx<'_>, p: &str, loc: &str, recommender: &str) -> ApiResult<Value> {
    let i = project(c, p, "recommender.containerDiagnosisRecommendations.list")?;
    known_recommender(recommender)?;
    let filter = c.q("filter").unwrap_or("").to_owned();
    check_filter_length(&filter)?;
    if recommender != DIAGNOSIS {
        return Ok(json!({}));
    }
    let proj = &c.st.projects[i];
    let mut out = Vec::new();
    for r in proj
        .recommendations
        .iter()
        .filter(|r| loc == "-" || r.location == loc)
    {
        if filter_matches(r, &filter)? {
            out.push(rec_json(proj, r));
        }
    }
    paging::page(
        c.q("pageSize"),
        c.q("pageToken"),
        out,
        "recommendations",
        paging::Limits {
            default: 100,
            max: 1000,
        },
    )
}

/// Recommenders Google serves that a GKE platform team meets; any other id is an error. Google does not
/// document the answer for an unknown recommender: the simulator chooses 400 INVALID_ARGUMENT.
const RECOMMENDERS: [&str; 11] = [
    DIAGNOSIS,
    "google.iam.policy.Recommender",
    "google.iam.serviceAccount.ChangeRiskRecommender",
    "google.resourcemanager.projectUtilization.Recommender",
    "google.compute.instance.MachineTypeRecommender",
    "google.compute.instance.IdleResourceRecommender",
    "google.compute.disk.IdleResourceRecommender",
    "google.compute.address.IdleResourceRecommender",
    "google.cloudsql.instance.IdleRecommender",
    "google.logging.productSuggestion.ContainerRecommender",
    "google.monitoring.productSuggestion.ComputeRecommender",
];

fn known_recommender(recommender: &str) -> ApiResult<()> {
    if RECOMMENDERS.contains(&recommender) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Recommender {recommender} is not a valid recommender id."
        )))
    }
}

fn find(c: &Ctx<'_>, i: usize, loc: &str, recommender: &str, id: &str) -> ApiResult<usize> {
    known_recommender(recommender)?;
    let proj = &c.st.projects[i];
    proj.recommendations
        .iter()
        .position(|r| recommender == DIAGNOSIS && r.location == loc && r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("Recommendation projects/{}/locations/{loc}/recommenders/{recommender}/recommendations/{id} not found.", proj.number)))
}

fn get(c: &mut Ctx<'_>, p: &str, loc: &str, recommender: &str, id: &str) -> ApiResult<Value> {
    let i = project(c, p, "recommender.containerDiagnosisRecommendations.get")?;
    let ri = find(c, i, loc, recommender, id)?;
    let proj = &c.st.projects[i];
    Ok(rec_json(proj, &proj.recommendations[ri]))
}

fn valid_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && k.len() <= 63
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 255
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}

fn mark(
    c: &mut Ctx<'_>,
    a: &[String],
    verb: &str,
    target: &str,
    allowed: &[&str],
    body: &Value,
) -> ApiResult<Value> {
    let (p, loc, recommender, id) = (&a[2], &a[4], &a[6], &a[8]);
    let i = project(c, p, "recommender.containerDiagnosisRecommendations.update")?;
    let ri = find(c, i, loc, recommender, id)?;
    let etag = match body.get("etag") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(ApiError::invalid("Invalid value at 'etag' (TYPE_STRING)")),
    };
    let mut metadata = None;
    if verb != "markDismissed" {
        let Some(_) = etag else {
            return Err(ApiError::invalid(
                "Request contains an invalid argument: etag is required.",
            ));
        };
        if let Some(m) = body.get("stateMetadata").filter(|m| !m.is_null()) {
            let obj = m
                .as_object()
                .ok_or_else(|| ApiError::invalid("Invalid value at 'state_metadata'"))?;
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in obj {
                let v = v.as_str().ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Invalid value at 'state_metadata[{k}]' (TYPE_STRING)"
                    ))
                })?;
                if !valid_key(k) || !valid_value(v) {
                    return Err(ApiError::invalid(format!(
                        "Invalid state metadata entry {k}={v}."
                    )));
                }
                out.insert(k.clone(), v.to_owned());
            }
            metadata = Some(out);
        }
    }
    let new_etag = c.st.next_rec_etag();
    let r = &mut c.st.projects[i].recommendations[ri];
    if let Some(e) = &etag
        && e.trim_matches('"') != r.etag
    {
        return Err(ApiError::new(
            409,
            "ABORTED",
            format!(
                "Etag {e} does not match the current etag of the recommendation; get it again and retry."
            ),
        ));
    }
    if !allowed.contains(&r.state.as_str()) {
        return Err(ApiError::precondition(format!(
            "Recommendation is in state {}; {verb} is only allowed from {}.",
            r.state,
            allowed.join(", ")
        )));
    }
    r.state = target.to_owned();
    if let Some(m) = metadata {
        r.state_metadata = m;
    }
    r.etag = new_etag;
    let proj = &c.st.projects[i];
    Ok(rec_json(proj, &proj.recommendations[ri]))
}
