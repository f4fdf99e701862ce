//! The `serve` HTTP service (hyper, HTTP/1.1, no framework): `POST /pubsub/push`, `POST /pubsub/notify`,
//! `GET /healthz`.
//!
//! Owns request hygiene (method, content type, size limit, body deadline), connection hygiene (limit and
//! load shedding, hyper's header deadline: [`conn`]), push authentication ([`auth`] picks the model, [`oidc`] checks
//! tokens), trace extraction, status codes with Pub/Sub semantics (2xx acks; 429/503 ask for redelivery)
//! and graceful shutdown (stop accepting, drain within the grace, flush the publisher). Everything else
//! is the engine's job (and notification delivery is the [`crate::notify::Deliverer`]'s).

pub mod auth;
pub mod conn;
mod notify;
pub mod oidc;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::engine::Engine;
use crate::intake;
use crate::intake::Verdict;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Google Cloud project for trace correlation (`projects/P/traces/T`).
    pub trace_project: Option<String>,
    /// A request body must be read completely within this time (408 otherwise).
    pub body_timeout: Duration,
    /// A push is answered within this time of its arrival: 503 when its handling is not done (it
    /// goes on; Pub/Sub redelivers and the redelivery shares its verdict). Below the subscription's
    /// ack deadline, so Pub/Sub never gives up on a delivery we still hold.
    pub push_deadline: Duration,
    /// Connection limit and header deadline.
    pub connections: conn::ConnLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: intake::MAX_PUSH_BODY_BYTES,
            shutdown_grace: Duration::from_secs(8),
            trace_project: None,
            body_timeout: Duration::from_secs(30),
            push_deadline: Duration::from_secs(100),
            connections: conn::ConnLimits::default(),
        }
    }
}

/// A rejected push: the HTTP status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 401, 403 or 503.
    pub status: u16,
    /// Why (logged and returned; never contains the token).
    pub message: String,
}

/// Authenticates push requests from their headers (`Authorization`, and behind Cloud Run
/// `X-Serverless-Authorization`).
pub trait PushAuth: Send + Sync {
    /// Accepts (returning the pusher's identity) or rejects a request.
    fn verify<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, Rejection>> + Send + 'a>>;
}

/// Shared state of the service.
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Push authentication; `None` only with `REMEDIATOR_PUSH_AUTH=none`, which also refuses
    /// `/pubsub/notify` (relaying unauthenticated text to Slack and webhooks is never allowed).
    pub oidc: Option<Box<dyn PushAuth>>,
    /// Notification delivery (`POST /pubsub/notify`), when the policy configures channels.
    pub deliverer: Option<Arc<crate::notify::Deliverer>>,
    /// Settings.
    pub config: ServerConfig,
    /// Push counters the engine does not keep.
    pub pushes: PushStats,
}

/// Counters of the pushes that reached the engine, by answer, reported by `/healthz` (a push answered
/// 204 or 503 here has been handled to its end, or reached the push deadline).
#[derive(Debug, Default)]
pub struct PushStats {
    /// Answered 204: handled, the verdict was to acknowledge.
    pub acked: AtomicU64,
    /// Answered 503: handled, the verdict was to redeliver (or the handling failed).
    pub retried: AtomicU64,
    /// Answered 503 at the push deadline while their handling went on.
    pub past_deadline: AtomicU64,
}

type Body = Full<Bytes>;

/// Largest part of a client-supplied string written to a log line.
pub const LOG_EXCERPT_BYTES: usize = 256;

fn respond(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn no_content() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    respond(
        status,
        &serde_json::json!({"error": {"code": status.as_u16(), "message": message}}).to_string(),
    )
}

/// The trace id from `traceparent` (W3C) or `X-Cloud-Trace-Context`.
pub fn trace_id(headers: &http::HeaderMap) -> Option<String> {
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() >= 3
            && parts[1].len() == 32
            && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Some(parts[1].to_ascii_lowercase());
        }
    }
    let cloud = headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())?;
    let id = cloud.split('/').next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

fn acceptable_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/json"
            | "application/x-www-form-urlencoded"
            | "application/octet-stream"
            | "text/plain"
            | ""
    )
}

/// Routes one request.
pub async fn route(state: Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    route_on(state, None, request).await
}

async fn route_on(
    state: Arc<AppState>,
    connections: Option<&conn::Connections>,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => healthz(&state, connections),
        (&Method::POST, "/pubsub/push") => push(state, request).await,
        (&Method::POST, "/pubsub/notify") => notify::push(state, request).await,
        (_, "/healthz" | "/pubsub/push" | "/pubsub/notify") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn healthz(state: &AppState, connections: Option<&conn::Connections>) -> Response<Body> {
    let s = &state.engine.stats;
    let mut body = serde_json::json!({
        "status": "ok",
        "mode": state.engine.mode().as_str(),
        "messages": s.messages.load(Ordering::Relaxed),
        "duplicates": s.duplicates.load(Ordering::Relaxed),
        "project_runs": s.project_runs.load(Ordering::Relaxed),
        "notifications": s.notifications.load(Ordering::Relaxed),
        "unpublished": s.unpublished.load(Ordering::Relaxed),
        "pushes": {
            "acked": state.pushes.acked.load(Ordering::Relaxed),
            "retried": state.pushes.retried.load(Ordering::Relaxed),
            "past_deadline": state.pushes.past_deadline.load(Ordering::Relaxed),
        },
    });
    let store = state.engine.state_info();
    let ops = &state.engine.state().ops;
    body["state"] = serde_json::json!({
        "location": store.location,
        "shared": store.shared,
        "guarantees": if store.shared { "every instance sharing the store" } else { "this instance only" },
        "reads": ops.reads.load(Ordering::Relaxed),
        "writes": ops.writes.load(Ordering::Relaxed),
        "conflicts": ops.conflicts.load(Ordering::Relaxed),
    });
    if let Some(c) = connections {
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        body["connections"] = serde_json::json!({
            "open": c.open(),
            "accepted": n(&c.stats.accepted),
            "evicted": n(&c.stats.evicted),
            "header_timeouts": n(&c.stats.header_timeouts),
        });
    }
    respond(StatusCode::OK, &body.to_string())
}

/// The checks both push endpoints make before reading a body: content type and declared length, then
/// authentication. `Err` is the answer to send.
pub(crate) async fn admit_push(
    state: &AppState,
    headers: &http::HeaderMap,
    accept_content_type: fn(Option<&str>) -> bool,
    what: &'static str,
) -> Result<(), Response<Body>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !accept_content_type(content_type) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.config.max_body_bytes) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    // Authenticate before reading the body.
    if let Some(verifier) = &state.oidc
        && let Err(e) = verifier.verify(headers).await
    {
        tracing::warn!(error = %intake::excerpt(&e.message, LOG_EXCERPT_BYTES), status = e.status, endpoint = what, "push rejected");
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED);
        return Err(error(status, &e.message));
    }
    Ok(())
}

/// Reads a request body within the size limit and the body deadline.
pub(crate) async fn read_body(state: &AppState, body: Incoming) -> Result<Bytes, Response<Body>> {
    let reading = Limited::new(body, state.config.max_body_bytes).collect();
    match tokio::time::timeout(state.config.body_timeout, reading).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or unreadable",
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received within the body timeout",
        )),
    }
}

async fn push(state: Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let arrived = tokio::time::Instant::now();
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if let Err(answer) = admit_push(&state, &headers, acceptable_content_type, "/pubsub/push").await
    {
        return answer;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match read_body(&state, body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let message = match intake::parse_push(&body, content_type.as_deref(), &headers) {
        Ok(m) => m,
        Err(e @ intake::IntakeError::UnsupportedContentType(_)) => {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e.to_string());
        }
        Err(e @ intake::IntakeError::BodyTooLarge { .. }) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string());
        }
        Err(e) => {
            // A malformed delivery cannot be fixed by redelivering it: acknowledge and log it once.
            state.engine.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %intake::excerpt(&e.to_string(), LOG_EXCERPT_BYTES), "malformed push delivery acknowledged");
            return no_content();
        }
    };
    let trace = trace_id(&headers);
    let span = tracing::info_span!(
        "pubsub_push",
        message_id = %message.message_id,
        subscription = message.subscription.as_deref().unwrap_or(""),
        trace_id = trace.as_deref().unwrap_or(""),
    );
    // The moment a delivery is in hand: where the loop's latency splits between Pub/Sub and us.
    tracing::debug!(parent: &span, bytes = body.len(), "push received");
    // The handling runs in a task of its own and is never cancelled: past the deadline the push is
    // answered 503 and the handling goes on. Its project runs already do (the engine spawns them),
    // but cancelling the rest at an await point could stop a run's conclusion between its ledger
    // commits, leaving notifications claimed in the outbox for a claim's length; and the redelivery
    // follows the handling still in flight (`Engine::handle` shares its verdict) instead of
    // starting a second one.
    let engine = state.engine.clone();
    let message_id = message.message_id.clone();
    let handling = tokio::spawn(
        async move { engine.handle(&message, trace.as_deref()).await }.instrument(span),
    );
    let left = state.config.push_deadline.saturating_sub(arrived.elapsed());
    let (counter, answer) = match tokio::time::timeout(left, handling).await {
        Ok(Ok(Verdict::Ack)) => (&state.pushes.acked, no_content()),
        Ok(Ok(Verdict::Retry(reason))) => (
            &state.pushes.retried,
            error(StatusCode::SERVICE_UNAVAILABLE, &reason),
        ),
        Ok(Err(e)) => {
            tracing::error!(message_id = %intake::excerpt(&message_id, LOG_EXCERPT_BYTES), error = %e, "the handling of a push failed");
            (
                &state.pushes.retried,
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the handling of this message failed",
                ),
            )
        }
        Err(_) => {
            tracing::warn!(
                message_id = %intake::excerpt(&message_id, LOG_EXCERPT_BYTES),
                deadline_secs = state.config.push_deadline.as_secs(),
                "push not handled within the push deadline: answered 503, the handling goes on and Pub/Sub's redelivery gets its verdict"
            );
            (
                &state.pushes.past_deadline,
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "still being handled at the push deadline; a redelivery gets its verdict",
                ),
            )
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
    answer
}

/// Serves until `shutdown` resolves, then drains in-flight requests within the grace and flushes the
/// publisher. Connections are admitted (one at a time, within the limit) by [`conn::Connections`].
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let connections = conn::Connections::new(state.config.connections);
    let builder = connections.http1();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Admission in the accept loop: past the limit, connections wait in the kernel's backlog.
        let conn = tokio::select! {
            conn = connections.admit() => Arc::new(conn),
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let connections = connections.clone();
        let service = {
            let conn = conn.clone();
            let connections = connections.clone();
            service_fn(move |req| {
                let state = state.clone();
                let connections = connections.clone();
                let in_flight = conn.request();
                async move {
                    let Some(in_flight) = in_flight else {
                        return Ok::<_, Infallible>(error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "connection closed to make room for another",
                        ));
                    };
                    let response = route_on(state, Some(&connections), req).await;
                    drop(in_flight);
                    Ok(response)
                }
            })
        };
        let served = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                result = served => connections.ended(&result),
                () = conn.evicted() => tracing::debug!("connection closed to make room for another"),
            }
        });
    }
    drop(listener);
    let grace = state.config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "in-flight requests did not finish within the grace"
        );
    }
    if let Some(p) = state.engine.publisher() {
        p.flush().await;
    }
    Ok(())
}

/// What `/pubsub/notify` answers (403) when pushes are not authenticated.
pub fn notify_refusal() -> &'static str {
    notify::UNAUTHENTICATED_REFUSAL
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: call it before announcing the listen address, so a SIGTERM sent right after start-up
/// (Cloud Run scaling down a fresh instance) is a graceful stop, not the default kill.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The listen address from `$PORT` (Cloud Run), default 8080, on all interfaces.
pub fn listen_addr_from_env() -> SocketAddr {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8080);
    SocketAddr::from(([0, 0, 0, 0], port))
}
