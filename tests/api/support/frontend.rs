//! A local stand-in for Cloud Run's front end in front of the `serve` container, so end-to-end tests see
//! requests exactly as the container receives them on Cloud Run.
//!
//! What it does, per request (as Cloud Run does with the IAM invoker check on, reference
//! gcp-wire-formats-2 §7.1):
//! - reads the ID token from `X-Serverless-Authorization`, else `Authorization`;
//! - verifies it: RS256, signature against the JWK set it was given (the test keys stand in for
//!   Google's), audience (the service URL or a custom audience), expiry; answers **401** itself when it
//!   is missing or invalid, and **403** when it is valid but its email is not an invoker
//!   (`roles/run.invoker`), without calling the container;
//! - forwards the request with that header's signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`, and
//!   with the headers Cloud Run adds: `X-Cloud-Trace-Context` (`TRACE/SPAN;o=1`), `traceparent`,
//!   `X-Forwarded-For` (client address appended), `X-Forwarded-Proto: https`, `Forwarded`; hop-by-hop
//!   headers are not forwarded;
//! - answers 503 once the instance is scaled down ([`FrontEnd::scale_down`] sends SIGTERM and waits up
//!   to Cloud Run's 10 s before SIGKILL).
//!
//! With the invoker check off (`invoker_iam_disabled`) it forwards the request unchanged apart from the
//! added headers: the container must verify the token itself.
//!
//! **Token-injecting mode** ([`Injection`]). The official Pub/Sub emulator cannot attach OIDC tokens to
//! its pushes. In this mode a request that arrives with no token gets the token Pub/Sub would have
//! attached for the push subscription's service account (`iss`, `aud`, `email`, `email_verified`, `sub`,
//! `azp`, `iat`, `exp`), signed with the test key; it is then checked exactly like a token a client sent
//! (a wrong audience is still 401, a non-invoker still 403). Requests that carry a token are never
//! altered before the check. The direct tests (an HTTP client with its own tokens) need no injection.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::binary::Serve;
use super::oidc::token;

/// What Cloud Run puts in place of a verified token's signature.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";
/// Cloud Run's request size limit (HTTP/1).
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// The token Pub/Sub would attach, minted for requests that arrive without one.
#[derive(Clone, Debug)]
pub struct Injection {
    /// PEM of the signing key (its public half is in the front end's JWK set).
    pub key_pem: String,
    /// `kid` of that key.
    pub kid: String,
    /// The push subscription's service account.
    pub email: String,
    /// The push subscription's configured audience.
    pub audience: String,
}

/// How the front end behaves.
#[derive(Clone, Debug)]
pub struct FrontEndConfig {
    /// The audiences Cloud Run accepts (the service URL and custom audiences).
    pub audiences: Vec<String>,
    /// Emails holding `roles/run.invoker` on the service.
    pub invokers: Vec<String>,
    /// The JWK set tokens are verified against (JSON).
    pub jwks: String,
    /// The IAM invoker check; off models `invoker_iam_disabled`.
    pub invoker_check: bool,
    /// Token-injecting mode, for the emulator's pushes.
    pub inject: Option<Injection>,
}

/// Counters and what was forwarded.
#[derive(Debug, Default)]
pub struct FrontEndStats {
    /// Requests received.
    pub received: AtomicU64,
    /// Answered 401 by the front end.
    pub unauthenticated: AtomicU64,
    /// Answered 403 by the front end.
    pub forbidden: AtomicU64,
    /// Forwarded to the container.
    pub forwarded: AtomicU64,
    /// Tokens minted in token-injecting mode.
    pub injected: AtomicU64,
    /// Headers of the forwarded requests, in order, with the container's status.
    pub seen: Mutex<Vec<(HeaderMap, u16)>>,
}

struct Shared {
    config: FrontEndConfig,
    keys: HashMap<String, DecodingKey>,
    backend: Mutex<Option<String>>,
    http: reqwest::Client,
    stats: Arc<FrontEndStats>,
}

/// A running front end on 127.0.0.1, stopped on drop.
pub struct FrontEnd {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Counters.
    pub stats: Arc<FrontEndStats>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FrontEnd {
    /// Starts a front end routing to `backend` (the container's base URL).
    pub async fn start(config: FrontEndConfig, backend: &str) -> FrontEnd {
        let set: JwkSet = serde_json::from_str(&config.jwks).expect("the front end's JWK set");
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        let stats = Arc::new(FrontEndStats::default());
        let shared = Arc::new(Shared {
            config,
            keys,
            backend: Mutex::new(Some(backend.trim_end_matches('/').to_owned())),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            stats: stats.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(&s, peer, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FrontEnd {
            url,
            stats,
            shared,
            task,
        }
    }

    /// Scale-down as Cloud Run does it: stop routing to the instance, SIGTERM it, SIGKILL after 10 s.
    /// Returns the exit status and how long the instance took to stop.
    pub async fn scale_down(&self, serve: &mut Serve) -> (std::process::ExitStatus, Duration) {
        *self.shared.backend.lock().unwrap() = None;
        serve.terminate(Duration::from_secs(10)).await
    }

    /// The headers the container received, with its answers.
    pub fn seen(&self) -> Vec<(HeaderMap, u16)> {
        self.stats.seen.lock().unwrap().clone()
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    r
}

fn unauthenticated(s: &Shared, why: &str) -> Response<Full<Bytes>> {
    s.stats.unauthenticated.fetch_add(1, Ordering::SeqCst);
    text(
        StatusCode::UNAUTHORIZED,
        &format!(
            "<h1>Error: Unauthorized</h1><h2>Your client does not have permission to the requested URL.</h2><!-- {why} -->"
        ),
    )
}

fn forbidden(s: &Shared) -> Response<Full<Bytes>> {
    s.stats.forbidden.fetch_add(1, Ordering::SeqCst);
    text(
        StatusCode::FORBIDDEN,
        "<h1>Error: Forbidden</h1><h2>Your client does not have permission to get URL from this server.</h2>",
    )
}

/// The token Pub/Sub would attach for `inject`.
pub fn mint(inject: &Injection) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": "https://accounts.google.com",
        "aud": inject.audience,
        "azp": "100000000000000000777",
        "sub": "100000000000000000777",
        "email": inject.email,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    });
    token(&inject.key_pem, &inject.kid, claims)
}

/// Why Cloud Run refused a request.
enum Refusal {
    /// 401, with the reason (in an HTML comment, as a debugging aid).
    Unauthenticated(String),
    /// 403.
    Forbidden,
}

/// Cloud Run's check of a bearer token: `Ok(email)`, or why it refuses.
fn check(s: &Shared, value: &str) -> Result<String, Refusal> {
    let unauthenticated = |why: &str| Refusal::Unauthenticated(why.to_owned());
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(unauthenticated("not a bearer token"));
    };
    let header =
        jsonwebtoken::decode_header(token.trim()).map_err(|_| unauthenticated("not a JWT"))?;
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| s.keys.get(kid))
        .ok_or_else(|| unauthenticated("unknown key"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&s.config.audiences);
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Value>(token.trim(), key, &validation)
        .map_err(|e| unauthenticated(&e.to_string()))?;
    let email = data.claims["email"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !s
        .config
        .invokers
        .iter()
        .any(|i| i.eq_ignore_ascii_case(&email))
    {
        return Err(Refusal::Forbidden);
    }
    Ok(email)
}

fn strip_signature(value: &str) -> String {
    let token = value
        .trim_start_matches("Bearer ")
        .trim_start_matches("bearer ");
    let (rest, _) = token.rsplit_once('.').unwrap_or((token, ""));
    format!("Bearer {rest}.{SIGNATURE_REMOVED}")
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

async fn handle(s: &Shared, peer: SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
    s.stats.received.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let mut headers = parts.headers;
    let serverless = headers.contains_key("x-serverless-authorization");
    if s.config.invoker_check {
        let name = if serverless {
            "x-serverless-authorization"
        } else {
            "authorization"
        };
        if !headers.contains_key(name)
            && let Some(inject) = &s.config.inject
        {
            s.stats.injected.fetch_add(1, Ordering::SeqCst);
            let value = format!("Bearer {}", mint(inject));
            headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
        }
        let Some(value) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return unauthenticated(s, "no token");
        };
        match check(s, &value) {
            Ok(_) => {}
            Err(Refusal::Unauthenticated(why)) => return unauthenticated(s, &why),
            Err(Refusal::Forbidden) => return forbidden(s),
        }
        headers.insert(
            http::HeaderName::from_static(name),
            HeaderValue::from_str(&strip_signature(&value)).unwrap(),
        );
    } else if !headers.contains_key("authorization")
        && let Some(inject) = &s.config.inject
    {
        // The invoker check is off: Cloud Run passes the token through as Pub/Sub attached it.
        s.stats.injected.fetch_add(1, Ordering::SeqCst);
        let value = format!("Bearer {}", mint(inject));
        headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
    }
    let Some(backend) = s.backend.lock().unwrap().clone() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "<h1>Service Unavailable</h1><!-- no instance -->",
        );
    };
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "<h1>413</h1>"),
    };
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    let trace: u128 = rand::random();
    let span: u64 = rand::random::<u64>() | 1;
    headers.insert(
        "x-cloud-trace-context",
        HeaderValue::from_str(&format!("{trace:032x}/{span};o=1")).unwrap(),
    );
    headers.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{trace:032x}-{span:016x}-01")).unwrap(),
    );
    let client = peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client}"),
        None => client.clone(),
    };
    headers.insert(
        "x-forwarded-for",
        HeaderValue::from_str(&forwarded_for).unwrap(),
    );
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    headers.insert(
        "forwarded",
        HeaderValue::from_str(&format!("for=\"{client}\";proto=https")).unwrap(),
    );
    let url = format!(
        "{backend}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let sent = s
        .http
        .request(parts.method, url)
        .headers(headers.clone())
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("<h1>Service Unavailable</h1><!-- {e} -->"),
            );
        }
    };
    s.stats.forwarded.fetch_add(1, Ordering::SeqCst);
    let status = response.status();
    s.stats
        .seen
        .lock()
        .unwrap()
        .push((headers, status.as_u16()));
    let content_type = response.headers().get("content-type").cloned();
    let bytes = response.bytes().await.unwrap_or_default();
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut().insert("content-type", ct);
    }
    r
}
