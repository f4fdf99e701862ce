//! Cloud Identity Groups v1, read-only, from the world's `groups`: `GET /v1/groups:lookup?
//! groupKey.id=EMAIL`, `GET /v1/groups/{id}` and `GET /v1/groups/{id}/memberships:
//! checkTransitiveMembership?query=member_key_id == 'EMAIL'` (nested groups followed). Access is not
//! IAM's: a hidden or unknown group is Google's 403 `Error(2028) ... (or it may not exist)`. In the
//! fault model, denying `cloudidentity.groups.get` refuses lookups and `groups.get`, and denying
//! `cloudidentity.memberships.checkTransitiveMembership` refuses the check (as for an edition without
//! transitive membership APIs).

use http::Method;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::server::{Ctx, Route, endpoint};
use super::state::stable_hash;

const API: &str = "cloudidentity";

/// Routes the Cloud Identity paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        ("GET", ["v1", "groups"], Some("lookup")) => {
            endpoint(API, "cloudidentity.groups.lookup", |c, _| lookup(c))
        }
        ("GET", ["v1", "groups", id], None) => {
            let id = (*id).to_owned();
            endpoint(API, "cloudidentity.groups.get", move |c, _| get(c, &id))
        }
        ("GET", ["v1", "groups", id, "memberships"], Some("checkTransitiveMembership")) => {
            let id = (*id).to_owned();
            endpoint(
                API,
                "cloudidentity.groups.memberships.checkTransitiveMembership",
                move |c, _| check(c, &id),
            )
        }
        _ => None,
    }
}

/// The stable id of a group (`01` and 13 base-36 characters, like Google's).
pub fn group_id(email: &str) -> String {
    let mut h = stable_hash(&email.to_ascii_lowercase());
    let mut out = String::from("01");
    for _ in 0..13 {
        let d = (h % 36) as u32;
        out.push(char::from_digit(d, 36).unwrap_or('0'));
        h /= 36;
        if h == 0 {
            h = stable_hash(&out);
        }
    }
    out
}

fn hidden(resource: &str) -> ApiError {
    let mut e = ApiError::new(
        403,
        "PERMISSION_DENIED",
        format!("Error(2028): Permission denied for resource {resource} (or it may not exist)."),
    );
    e.details.push(json!({
        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
        "resourceName": resource,
        "resourceType": "cloudidentity.googleapis.com/Group",
        "owner": "domain:cloudidentity.googleapis.com",
    }));
    e
}

fn email_of(c: &Ctx<'_>, id: &str) -> Option<String> {
    c.st.groups.keys().find(|e| group_id(e) == id).cloned()
}

fn lookup(c: &mut Ctx<'_>) -> ApiResult<Value> {
    let email = c
        .q("groupKey.id")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("Request contains an invalid argument: groupKey.id is required.")
        })?
        .to_ascii_lowercase();
    if c.deny.contains("cloudidentity.groups.get") || !c.st.groups.contains_key(&email) {
        return Err(hidden(&format!("groups/{email}")));
    }
    Ok(json!({"name": format!("groups/{}", group_id(&email))}))
}

fn get(c: &mut Ctx<'_>, id: &str) -> ApiResult<Value> {
    let resource = format!("groups/{id}");
    let email = email_of(c, id)
        .filter(|_| !c.deny.contains("cloudidentity.groups.get"))
        .ok_or_else(|| hidden(&resource))?;
    Ok(json!({
        "name": resource,
        "groupKey": {"id": email},
        "displayName": email,
        "labels": {"cloudidentity.googleapis.com/groups.discussion_forum": ""},
    }))
}

/// The member email of `member_key_id == 'EMAIL'` (any spacing, either quote, `&&` clauses after).
fn query_member(query: &str) -> Option<String> {
    let re = regex::Regex::new(r#"member_key_id\s*==\s*['"]([^'"]+)['"]"#).ok()?;
    re.captures(query).map(|c| c[1].to_ascii_lowercase())
}

fn reaches(c: &Ctx<'_>, group: &str, member: &str, depth: u32) -> bool {
    if depth > 16 {
        return false;
    }
    c.st.groups.get(group).is_some_and(|ms| {
        ms.iter().any(|m| {
            let (kind, email) = m.split_once(':').unwrap_or(("", m));
            let email = email.to_ascii_lowercase();
            email == member || (kind == "group" && reaches(c, &email, member, depth + 1))
        })
    })
}

fn check(c: &mut Ctx<'_>, id: &str) -> ApiResult<Value> {
    let resource = format!("groups/{id}");
    let group = email_of(c, id)
        .filter(|_| {
            !c.deny
                .contains("cloudidentity.memberships.checkTransitiveMembership")
        })
        .ok_or_else(|| hidden(&resource))?;
    let member = c.q("query").and_then(query_member).ok_or_else(|| {
        ApiError::invalid(
            "Request contains an invalid argument: query must name member_key_id == 'EMAIL'.",
        )
    })?;
    // Proto3 JSON omits `false`.
    Ok(if reaches(c, &group, &member, 0) {
        json!({"hasMembership": true})
    } else {
        json!({})
    })
}
