//! Cloud Logging v2 `entries.list` over the audit-log entries the simulator itself wrote: enough of the
//! API for a caller to count its own past changes (the remediator's flapping limit), shared by every
//! client of one simulator just as Cloud Audit Logs are shared by every instance of a service.
//!
//! The filter language is in `logfilter`. Paging: `pageSize` (default 50, at most 1000, negative is
//! 400), an opaque `nextPageToken` while more entries match, `orderBy` `timestamp asc` (default) or
//! `timestamp desc`. `resourceNames` (at most 100) select `projects/P` (id or number),
//! `folders/F`, `organizations/O`; the deprecated `projectIds` are accepted too.

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::logfilter;
use super::server::{Route, endpoint};
use super::state::State;

const API: &str = "logging";
const MAX_KEPT: usize = 100_000;

/// Keeps entries for later listing (oldest dropped beyond the bound).
pub fn record(st: &mut State, entries: &[Value]) {
    for e in entries {
        st.log_seq += 1;
        st.log_entries.push_back((st.log_seq, e.clone()));
    }
    while st.log_entries.len() > MAX_KEPT {
        st.log_entries.pop_front();
    }
}

/// Routes `POST /v2/entries:list`.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method, segs, verb) {
        (&Method::POST, ["v2", "entries"], Some("list")) => {
            endpoint(API, "logging.entries.list", |c, body| {
                c.require("logging.logEntries.list")?;
                list(c.st, body)
            })
        }
        _ => None,
    }
}

fn int_field(body: &Value, key: &str) -> ApiResult<Option<i64>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!("Invalid value at '{key}' (TYPE_INT32), {n}"))
        }),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            ApiError::invalid(format!("Invalid value at '{key}' (TYPE_INT32), \"{s}\""))
        }),
        Some(other) => Err(ApiError::invalid(format!(
            "Invalid value at '{key}' (TYPE_INT32), {other}"
        ))),
    }
}

fn token(seq: u64, descending: bool) -> String {
    let text = format!("simlog:{seq}:{}", if descending { "d" } else { "a" });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn parse_token(t: &str, descending: bool) -> ApiResult<u64> {
    let invalid = || ApiError::invalid("The page token is invalid or does not match the request.");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("simlog"), Some(seq), Some(dir), None)
            if dir == if descending { "d" } else { "a" } =>
        {
            seq.parse().map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

/// The log-name prefixes (`projects/ID/logs/`) a resource name selects.
fn prefixes(st: &State, name: &str) -> ApiResult<Vec<String>> {
    let bad = || {
        ApiError::invalid(format!(
            "Invalid resource name \"{name}\": expected projects/P, folders/F, organizations/O or billingAccounts/B."
        ))
    };
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", p, rest @ ..] if !p.is_empty() && (rest.is_empty() || rest.len() == 6) => {
            let mut out = vec![format!("projects/{p}/logs/")];
            if let Some(i) = st.project_idx(p) {
                out.push(format!("projects/{}/logs/", st.projects[i].id));
            }
            Ok(out)
        }
        [
            kind @ ("folders" | "organizations" | "billingAccounts"),
            id,
            rest @ ..,
        ] if !id.is_empty() && (rest.is_empty() || rest.len() == 6) => {
            Ok(vec![format!("{kind}/{id}/logs/")])
        }
        _ => Err(bad()),
    }
}

fn list(st: &State, body: &Value) -> ApiResult<Value> {
    let strings = |key: &str| -> Vec<String> {
        body.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut names = strings("resourceNames");
    names.extend(
        strings("projectIds")
            .into_iter()
            .map(|p| format!("projects/{p}")),
    );
    if names.is_empty() {
        return Err(ApiError::invalid(
            "Request contains an invalid argument: resourceNames is required.",
        ));
    }
    if names.len() > 100 {
        return Err(ApiError::invalid(
            "Request contains an invalid argument: at most 100 resourceNames are allowed.",
        ));
    }
    let mut allowed = Vec::new();
    for n in &names {
        allowed.extend(prefixes(st, n)?);
    }
    let filter = match body.get("filter") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ApiError::invalid("Invalid value at 'filter' (TYPE_STRING)")),
    };
    let expr = logfilter::parse(filter)?;
    let page_size = match int_field(body, "pageSize")? {
        None | Some(0) => 50,
        Some(n) if n < 0 => {
            return Err(ApiError::invalid(
                "Request contains an invalid argument: page_size must not be negative.",
            ));
        }
        Some(n) => n.min(1000) as usize,
    };
    let descending = match body.get("orderBy").and_then(Value::as_str).map(str::trim) {
        None | Some("") => false,
        Some(o) if o.eq_ignore_ascii_case("timestamp asc") => false,
        Some(o) if o.eq_ignore_ascii_case("timestamp desc") => true,
        Some(o) => {
            return Err(ApiError::invalid(format!(
                "Invalid orderBy \"{o}\": only \"timestamp asc\" and \"timestamp desc\" are supported."
            )));
        }
    };
    let cursor = match body.get("pageToken").and_then(Value::as_str) {
        None | Some("") => None,
        Some(t) => Some(parse_token(t, descending)?),
    };
    let selected = |(seq, e): &&(u64, Value)| {
        let after_cursor = match cursor {
            None => true,
            Some(c) if descending => *seq < c,
            Some(c) => *seq > c,
        };
        let log = e.get("logName").and_then(|l| l.as_str()).unwrap_or("");
        after_cursor
            && allowed.iter().any(|p| log.starts_with(p.as_str()))
            && logfilter::matches(&expr, e)
    };
    let mut iter: Box<dyn Iterator<Item = &(u64, Value)>> = if descending {
        Box::new(st.log_entries.iter().rev().filter(selected))
    } else {
        Box::new(st.log_entries.iter().filter(selected))
    };
    let page: Vec<&(u64, Value)> = iter.by_ref().take(page_size).collect();
    let more = iter.next().is_some();
    let mut out = json!({});
    if !page.is_empty() {
        out["entries"] = Value::Array(page.iter().map(|(_, e)| e.clone()).collect());
    }
    if more && let Some((last, _)) = page.last() {
        out["nextPageToken"] = json!(token(*last, descending));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::World;

    fn state_with(n: usize) -> State {
        let world =
            World::from_yaml("projects:\n  - {id: p-one, number: \"1\"}\n", "t.yaml").unwrap();
        let mut st = State::from_world(&world);
        let entries: Vec<Value> = (0..n)
            .map(|i| {
                json!({"logName": "projects/p-one/logs/cloudaudit.googleapis.com%2Factivity",
                       "timestamp": format!("2026-11-29T01:00:{:02}.000000Z", i % 60),
                       "insertId": format!("e{i}"),
                       "protoPayload": {"methodName": if i % 2 == 0 { "SetIamPolicy" } else { "GetIamPolicy" }}})
            })
            .collect();
        record(&mut st, &entries);
        st
    }

    fn ids(v: &Value) -> Vec<String> {
        v["entries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["insertId"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn pages_reach_every_entry_once_in_both_orders() {
        let st = state_with(7);
        for (order, first) in [("timestamp asc", "e0"), ("timestamp desc", "e6")] {
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let v = list(&st, &json!({"resourceNames": ["projects/p-one"], "pageSize": 3, "orderBy": order, "pageToken": token})).unwrap();
                seen.extend(ids(&v));
                match v["nextPageToken"].as_str() {
                    Some(t) => token = t.to_owned(),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 7, "{order}: {seen:?}");
            assert_eq!(seen[0], first);
        }
        let v = list(&st, &json!({"resourceNames": ["projects/1"], "filter": "protoPayload.methodName=SetIamPolicy"})).unwrap();
        assert_eq!(ids(&v), ["e0", "e2", "e4", "e6"]);
        assert!(v.get("nextPageToken").is_none());
    }

    #[test]
    fn bad_requests_are_invalid_argument() {
        let st = state_with(1);
        for body in [
            json!({}),
            json!({"resourceNames": ["projects/p-one"], "pageSize": -1}),
            json!({"resourceNames": ["projects/p-one"], "orderBy": "insertId"}),
            json!({"resourceNames": ["projects/p-one"], "pageToken": "garbage"}),
            json!({"resourceNames": ["nonsense"]}),
            json!({"resourceNames": ["projects/p-one"], "filter": "thud=1"}),
        ] {
            assert_eq!(list(&st, &body).unwrap_err().code, 400, "{body}");
        }
    }
}
