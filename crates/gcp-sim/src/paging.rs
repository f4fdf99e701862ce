//! List paging shared by every list method: `pageSize` (the API's default when absent or 0, clamped to
//! its maximum, 400 when negative or not a number) and opaque `pageToken` / `nextPageToken` values
//! (a token the simulator did not issue is 400 INVALID_ARGUMENT). No `nextPageToken` on the last page.

use base64::Engine;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};

/// Page limits of one list method.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Page size when the request gives none.
    pub default: usize,
    /// Largest page.
    pub max: usize,
}

fn token(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("simpage:{offset}"))
}

fn offset(token: &str) -> ApiResult<usize> {
    let invalid = || ApiError::invalid("The page token is invalid.");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|t| t.strip_prefix("simpage:").and_then(|n| n.parse().ok()))
        .ok_or_else(invalid)
}

/// The range of a list of `total` items the query (`pageSize`, `pageToken`) selects, and the token of
/// the next page (`None` on the last): for lists too large to render whole on every page.
pub fn window(
    query_size: Option<&str>,
    query_token: Option<&str>,
    total: usize,
    limits: Limits,
) -> ApiResult<(std::ops::Range<usize>, Option<String>)> {
    let (start, size) = bounds(query_size, query_token, limits)?;
    let end = start.saturating_add(size).min(total);
    let next = (start.saturating_add(size) < total).then(|| token(start + size));
    Ok((start.min(total)..end, next))
}

fn bounds(
    query_size: Option<&str>,
    query_token: Option<&str>,
    limits: Limits,
) -> ApiResult<(usize, usize)> {
    let size = match query_size {
        None | Some("") => 0,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| ApiError::invalid(format!("Invalid value for pageSize: \"{s}\"")))?,
    };
    if size < 0 {
        return Err(ApiError::invalid(
            "Request contains an invalid argument: page_size must not be negative.",
        ));
    }
    let size = if size == 0 {
        limits.default
    } else {
        (size as usize).min(limits.max)
    };
    let start = match query_token {
        None | Some("") => 0,
        Some(t) => offset(t)?,
    };
    Ok((start, size))
}

/// The page of `items` the query (`pageSize`, `pageToken`) selects, as `{key: [...], nextPageToken}`.
pub fn page(
    query_size: Option<&str>,
    query_token: Option<&str>,
    items: Vec<Value>,
    key: &str,
    limits: Limits,
) -> ApiResult<Value> {
    let (start, size) = bounds(query_size, query_token, limits)?;
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let mut v = json!({});
    if !slice.is_empty() {
        v[key] = Value::Array(slice);
    }
    if start + size < total {
        v["nextPageToken"] = json!(token(start + size));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_list_and_the_last_has_no_token() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let lim = Limits { default: 2, max: 3 };
        let p1 = page(None, None, items.clone(), "x", lim).unwrap();
        assert_eq!(p1["x"], json!([0, 1]));
        let t = p1["nextPageToken"].as_str().unwrap().to_owned();
        let p2 = page(Some("9"), Some(&t), items.clone(), "x", lim).unwrap();
        assert_eq!(p2["x"], json!([2, 3, 4]));
        assert!(p2.get("nextPageToken").is_none());
        assert!(page(Some("-1"), None, items.clone(), "x", lim).is_err());
        assert!(page(None, Some("2"), items, "x", lim).is_err());
    }
}
