//! Cloud Logging v2 `entries.list` over the audit-log entries the simulator itself wrote: enough of the
//! API for a caller to count its own past changes (the remediator's flapping limit), shared by every
//! client of one simulator just as Cloud Audit Logs are shared by every instance of a service.
//!
//! Supported filter: clauses joined by `AND`, each `FIELD OP "VALUE"` with `OP` one of `=`, `!=`, `:`
//! (substring), `>=`, `<=`, `>`, `<` (string comparison, which orders RFC 3339 timestamps) and `FIELD` a
//! dotted path into the LogEntry (`logName`, `timestamp`, `protoPayload.methodName`, ...). Anything
//! else answers 400 INVALID_ARGUMENT, as Logging does for a filter it cannot parse.

use http::Method;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::server::{Route, endpoint};
use super::state::State;

const API: &str = "logging";
const MAX_KEPT: usize = 100_000;

/// Keeps entries for later listing (oldest dropped beyond the bound).
pub fn record(st: &mut State, entries: &[Value]) {
    for e in entries {
        st.log_entries.push_back(e.clone());
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

#[derive(Debug, PartialEq)]
struct Clause {
    path: Vec<String>,
    op: String,
    value: String,
}

fn parse_filter(filter: &str) -> ApiResult<Vec<Clause>> {
    let mut out = Vec::new();
    for raw in filter
        .split(" AND ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let op_at = raw.find(['=', '!', ':', '<', '>']).ok_or_else(|| {
            ApiError::invalid(format!(
                "Unparseable filter: expected FIELD OP \"VALUE\" in `{raw}`"
            ))
        })?;
        let (field, rest) = raw.split_at(op_at);
        let op_len = if rest.starts_with(">=") || rest.starts_with("<=") || rest.starts_with("!=") {
            2
        } else {
            1
        };
        let (op, value) = rest.split_at(op_len);
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "Unparseable filter: the value in `{raw}` must be quoted"
                ))
            })?;
        let field = field.trim();
        if field.is_empty()
            || !field
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_')
        {
            return Err(ApiError::invalid(format!(
                "Unparseable filter: bad field in `{raw}`"
            )));
        }
        out.push(Clause {
            path: field.split('.').map(str::to_owned).collect(),
            op: op.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(out)
}

fn field<'a>(entry: &'a Value, path: &[String]) -> Option<&'a str> {
    path.iter()
        .try_fold(entry, |v, key| v.get(key.as_str()))?
        .as_str()
}

fn matches(entry: &Value, clause: &Clause) -> bool {
    let got = field(entry, &clause.path);
    let want = clause.value.as_str();
    match (clause.op.as_str(), got) {
        ("=", Some(g)) => g == want,
        ("!=", g) => g != Some(want),
        (":", Some(g)) => g.contains(want),
        (">=", Some(g)) => g >= want,
        ("<=", Some(g)) => g <= want,
        (">", Some(g)) => g > want,
        ("<", Some(g)) => g < want,
        _ => false,
    }
}

fn list(st: &State, body: &Value) -> ApiResult<Value> {
    let names: Vec<String> = body
        .get("resourceNames")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(ApiError::invalid("resourceNames is required."));
    }
    let clauses = parse_filter(body.get("filter").and_then(|f| f.as_str()).unwrap_or(""))?;
    let page_size = body
        .get("pageSize")
        .and_then(|p| p.as_u64())
        .unwrap_or(50)
        .clamp(1, 1000) as usize;
    let descending = body
        .get("orderBy")
        .and_then(|o| o.as_str())
        .is_some_and(|o| o.trim().ends_with("desc"));
    let selected = |e: &&Value| {
        let log = e.get("logName").and_then(|l| l.as_str()).unwrap_or("");
        names.iter().any(|n| log.starts_with(&format!("{n}/logs/")))
            && clauses.iter().all(|c| matches(e, c))
    };
    let entries: Vec<Value> = if descending {
        st.log_entries
            .iter()
            .rev()
            .filter(selected)
            .take(page_size)
            .cloned()
            .collect()
    } else {
        st.log_entries
            .iter()
            .filter(selected)
            .take(page_size)
            .cloned()
            .collect()
    };
    Ok(if entries.is_empty() {
        json!({})
    } else {
        json!({ "entries": entries })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_with_equality_and_timestamp_ranges_parse() {
        let c = parse_filter(
            "logName=\"projects/p/logs/cloudaudit.googleapis.com%2Factivity\" AND timestamp>=\"2026-01-01T00:00:00Z\"",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].op, ">=");
        assert!(parse_filter("timestamp >= unquoted").is_err());
    }

    #[test]
    fn entries_are_selected_by_field_and_time() {
        let e = json!({"logName": "projects/p/logs/x", "timestamp": "2026-11-29T01:00:00Z", "protoPayload": {"methodName": "SetIamPolicy"}});
        let c = parse_filter(
            "protoPayload.methodName=\"SetIamPolicy\" AND timestamp>=\"2026-11-29T00:00:00Z\"",
        )
        .unwrap();
        assert!(c.iter().all(|c| matches(&e, c)));
        let late = parse_filter("timestamp>=\"2026-11-30T00:00:00Z\"").unwrap();
        assert!(!matches(&e, &late[0]));
    }
}
