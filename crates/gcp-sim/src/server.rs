//! The HTTP front: hyper server, path routing to the per-API modules, callers, fault injection, the
//! journal, and the `/_sim/` control endpoints. Handlers stay thin; semantics live in the API modules.
//!
//! Every answer is JSON: Google API results, Google error JSON for every failure (including unknown
//! paths), and plain JSON for control endpoints. No request can make the server panic: bodies are
//! parsed leniently into `serde_json::Value`, and handlers never index untrusted data.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::audit::{AuditRecord, AuditSink};
use super::error::{ApiError, ApiResult};
use super::faults::{ConcurrentWriter, FaultState, Faults};
use super::journal::{Journal, JournalEntry};
use super::state::{State, now_rfc3339};
use super::world::World;
use super::{
    SimOptions, cloudasset, container, crm, iam, logging, recommender, serviceusage, troubleshooter,
};
use super::{cloudidentity, iam_v2, orgpolicy};

/// Largest request body accepted (bytes).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Everything a request handler can touch.
pub struct Ctx<'a> {
    /// Live state (locked for the duration of the call).
    pub st: &'a mut State,
    /// Caller in member form.
    pub caller: String,
    /// Caller's user agent (for audit logs).
    pub user_agent: String,
    /// Denied permissions.
    pub deny: &'a BTreeSet<String>,
    /// Query parameters (decoded).
    pub query: Vec<(String, String)>,
    /// Audit records to publish after the call.
    pub audit: Vec<AuditRecord>,
    /// Set by project getIamPolicy: the project index read (drives the concurrent writer).
    pub policy_read: Option<usize>,
}

impl Ctx<'_> {
    /// Fails with Google's 403 when the permission is denied by the faults.
    pub fn require(&self, permission: &str) -> ApiResult<()> {
        if self.deny.contains(permission) {
            Err(ApiError::permission_denied(permission))
        } else {
            Ok(())
        }
    }

    /// First query parameter of that name.
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Runner = Box<dyn FnOnce(&mut Ctx<'_>, &Value) -> ApiResult<Value> + Send>;

/// A matched Google API endpoint.
pub struct Route {
    /// API name used for fault targeting.
    pub api: &'static str,
    /// Endpoint key, e.g. `cloudresourcemanager.projects.getIamPolicy`.
    pub endpoint: &'static str,
    /// The query parameters the method declares (set by [`find_route`] from the path).
    pub query: &'static [&'static str],
    /// The handler.
    pub run: Runner,
}

/// Builds a [`Route`].
pub fn endpoint<F>(api: &'static str, endpoint: &'static str, f: F) -> Option<Route>
where
    F: FnOnce(&mut Ctx<'_>, &Value) -> ApiResult<Value> + Send + 'static,
{
    Some(Route {
        api,
        endpoint,
        query: &[],
        run: Box::new(f),
    })
}

/// Shared server state.
pub struct Shared {
    /// Live state.
    pub state: Mutex<State>,
    /// The world last loaded (for `reset`).
    pub world: Mutex<World>,
    /// Faults and the concurrent writer.
    pub faults: Mutex<FaultState>,
    /// Journal and stats.
    pub journal: Mutex<Journal>,
    /// Audit-log publisher.
    pub audit: AuditSink,
    /// Options given at start.
    pub options: SimOptions,
}

/// Locks a mutex, recovering from poisoning (a panicking handler must not take the server down).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into decoded pairs (`+` is a space).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Finds the Google API endpoint for a method and path.
pub fn find_route(method: &Method, path: &str) -> Option<Route> {
    let mut segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let mut verb = None;
    if let Some(last) = segs.last_mut()
        && let Some((name, v)) = last.rsplit_once(':')
        && !v.is_empty()
        && v.chars().all(|c| c.is_ascii_alphanumeric())
    {
        verb = Some(v.to_owned());
        *last = name.to_owned();
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let v = verb.as_deref();
    crm::route(method, &s, v)
        .or_else(|| iam::route(method, &s, v))
        .or_else(|| container::route(method, &s, v))
        .or_else(|| recommender::route(method, &s, v))
        .or_else(|| serviceusage::route(method, &s, v))
        .or_else(|| troubleshooter::route(method, &s, v))
        .or_else(|| logging::route(method, &s, v))
        .or_else(|| cloudasset::route(method, &s, v))
        .or_else(|| iam_v2::route(method, &s, v))
        .or_else(|| orgpolicy::route(method, &s, v))
        .or_else(|| cloudidentity::route(method, &s, v))
        .map(|mut r| {
            r.query = super::schema::query_of(r.endpoint, &s);
            r
        })
}

/// The caller named by the `Authorization` header (`Bearer sim:EMAIL`), else the default principal.
pub fn caller_of(auth: Option<&str>, default_principal: &str) -> String {
    let email = auth
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| t.trim().strip_prefix("sim:"));
    match email {
        Some(e) if e.contains('@') && !e.contains(char::is_whitespace) => {
            if e.ends_with("gserviceaccount.com") {
                format!("serviceAccount:{e}")
            } else {
                format!("user:{e}")
            }
        }
        _ => default_principal.to_owned(),
    }
}

/// Runs one Google API call against the state (no faults, no journal): used by the server and tests.
pub fn dispatch(
    shared: &Shared,
    route: Route,
    body: &Value,
    caller: String,
    user_agent: String,
    mut query: Vec<(String, String)>,
) -> ApiResult<Value> {
    super::schema::check_query(&mut query, route.query)?;
    if let Some(fields) = super::schema::body_of(route.endpoint) {
        super::schema::check(body, fields)?;
    }
    let deny = lock(&shared.faults).faults.deny.clone();
    let mut st = lock(&shared.state);
    let mut ctx = Ctx {
        st: &mut st,
        caller,
        user_agent,
        deny: &deny,
        query,
        audit: Vec::new(),
        policy_read: None,
    };
    let result = (route.run)(&mut ctx, body);
    if result.is_ok()
        && let Some(idx) = ctx.policy_read
    {
        concurrent_write(shared, &mut ctx, idx);
    }
    let entries: Vec<Value> = std::mem::take(&mut ctx.audit)
        .iter()
        .map(AuditRecord::to_log_entry)
        .collect();
    super::logging::record(&mut st, &entries);
    drop(st);
    for entry in entries {
        shared.audit.emit(entry);
    }
    result
}

fn concurrent_write(shared: &Shared, ctx: &mut Ctx<'_>, idx: usize) {
    let mut faults = lock(&shared.faults);
    let Some(w) = faults.writer.clone() else {
        return;
    };
    let Some(project) = ctx.st.projects.get(idx) else {
        return;
    };
    if project.id != w.project
        || faults.writer_added.len() >= w.max_writes as usize
        || !faults.chance(w.probability)
    {
        return;
    }
    let member = format!("user:writer-{}@example.com", faults.writer_added.len() + 1);
    let saved = std::mem::replace(&mut ctx.caller, "user:concurrent-writer@example.com".into());
    let ok = crm::concurrent_add(ctx, idx, &w.role, &member);
    ctx.caller = saved;
    if ok {
        faults.writer_added.push(member);
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    json_response(e.http_status(), &e.to_json())
}

/// Serves one HTTP request.
pub async fn handle<B>(
    shared: Arc<Shared>,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Ok(error_response(&ApiError::invalid(
                "Request body too large or unreadable.",
            )));
        }
    };
    if let Some(control) = path.strip_prefix("/_sim/") {
        return Ok(super::control::handle(&shared, &parts.method, control, &query, &bytes).await);
    }
    let caller = caller_of(
        parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        &shared.options.default_principal,
    );
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let route = find_route(&parts.method, &path);
    let (api, endpoint) = route
        .as_ref()
        .map(|r| (r.api, r.endpoint))
        .unwrap_or(("unknown", "unknown"));
    let result = match route {
        None => Err(ApiError::not_found(format!(
            "The requested URL {path} was not found on this server."
        ))),
        Some(route) => {
            let (delay, injected, quota) = {
                let mut f = lock(&shared.faults);
                let quota = if route.endpoint.starts_with("iam.policies.") {
                    f.take_iam_v2_read(&caller).err()
                } else {
                    None
                };
                (f.delay_ms(), f.roll_error(route.api), quota)
            };
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            match (quota, injected) {
                (Some(limit), _) => Err(ApiError::iam_v2_read_quota(
                    limit,
                    &format!(
                        "caller:{}",
                        caller.split_once(':').map_or(caller.as_str(), |(_, e)| e)
                    ),
                )),
                (None, Some(code)) => Err(ApiError::injected(code)),
                (None, None) => match parse_body(&parts.method, &bytes) {
                    // A bug in a handler must not take the connection down: answer 500 instead.
                    Ok(body) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        dispatch(
                            &shared,
                            route,
                            &body,
                            caller.clone(),
                            user_agent,
                            parse_query(&query),
                        )
                    }))
                    .unwrap_or_else(|_| {
                        Err(ApiError::new(
                            500,
                            "INTERNAL",
                            "Internal error encountered.",
                        ))
                    }),
                    Err(e) => Err(e),
                },
            }
        }
    };
    let response = match &result {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(e) => error_response(e),
    };
    lock(&shared.journal).record(JournalEntry {
        time: now_rfc3339(),
        method: parts.method.to_string(),
        path,
        query,
        api: api.to_owned(),
        endpoint: endpoint.to_owned(),
        status: response.status().as_u16(),
        caller,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    Ok(response)
}

/// Parses a request body: empty means `{}`; anything else must be JSON.
pub fn parse_body(method: &Method, bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace)
        || *method == Method::GET
        || *method == Method::DELETE
    {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// Applies new faults.
pub fn set_faults(shared: &Shared, faults: Faults) {
    lock(&shared.faults).set(faults);
}

/// Sets or clears the concurrent writer.
pub fn set_writer(shared: &Shared, writer: Option<ConcurrentWriter>) {
    let mut f = lock(&shared.faults);
    f.writer = writer;
    f.writer_added.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shared() -> Shared {
        let world =
            World::from_yaml(include_str!("../../../infra/worlds/demo.yaml"), "demo.yaml").unwrap();
        Shared {
            state: Mutex::new(State::from_world(&world)),
            world: Mutex::new(world),
            faults: Mutex::new(FaultState::default()),
            journal: Mutex::new(Journal::default()),
            audit: AuditSink::start(None, None),
            options: SimOptions::default(),
        }
    }

    fn seg() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("v1".to_owned()),
            Just("v3".to_owned()),
            Just("projects".to_owned()),
            Just("demo-project".to_owned()),
            Just("-".to_owned()),
            Just("locations".to_owned()),
            Just("zones".to_owned()),
            Just("clusters".to_owned()),
            Just("nodePools".to_owned()),
            Just("serviceAccounts".to_owned()),
            Just("roles".to_owned()),
            Just("folders".to_owned()),
            Just("organizations".to_owned()),
            Just("recommenders".to_owned()),
            Just("recommendations".to_owned()),
            Just("services".to_owned()),
            Just("operations".to_owned()),
            Just("demo-project:getIamPolicy".to_owned()),
            Just("demo-project:setIamPolicy".to_owned()),
            Just("iam:troubleshoot".to_owned()),
            "[a-z0-9%:@._-]{0,12}",
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"{}".to_vec()),
            Just(br#"{"policy":{"bindings":[{"role":"roles/viewer","members":["user:a@b.c"]}]}}"#.to_vec()),
            Just(br#"{"policy":{"bindings":[{"role":7}]},"updateMask":3}"#.to_vec()),
            Just(br#"{"nodePool":{"name":"x","config":{"serviceAccount":5}}}"#.to_vec()),
            Just(br#"{"accessTuple":{"principal":"a@b.c","fullResourceName":"//x/projects/demo-project","permission":"a.b.c"}}"#.to_vec()),
            Just(br#"{"etag":"\"x\"","options":{"requestedPolicyVersion":"abc"}}"#.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn random_requests_always_get_well_formed_answers(
            m in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE), Just(Method::PATCH)],
            segs in proptest::collection::vec(seg(), 0..10),
            b in body(),
        ) {
            let shared = shared();
            let path = format!("/{}", segs.join("/"));
            let result = match find_route(&m, &path) {
                None => Err(ApiError::not_found("x")),
                Some(r) => parse_body(&m, &b).and_then(|body| dispatch(&shared, r, &body, "user:a@example.com".into(), "t".into(), vec![])),
            };
            match result {
                Ok(v) => prop_assert!(v.is_object()),
                Err(e) => {
                    prop_assert!((400..600).contains(&e.code));
                    prop_assert!(e.to_json()["error"]["status"].is_string());
                }
            }
        }
    }
}
