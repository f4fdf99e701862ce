//! The `serve` HTTP service (hyper, HTTP/1.1, no framework): `POST /pubsub/push`, `GET /healthz`.
//!
//! Owns request hygiene (method, content type, size limit), push authentication (Google-signed OIDC
//! tokens, when configured), trace extraction, status codes with Pub/Sub semantics (2xx acks; 429/503
//! ask for redelivery) and graceful shutdown (stop accepting, drain within the grace, flush the
//! publisher). Everything else is the engine's job.

pub mod oidc;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: intake::MAX_PUSH_BODY_BYTES,
            shutdown_grace: Duration::from_secs(8),
            trace_project: None,
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

/// Authenticates push requests from their `Authorization` header.
pub trait PushAuth: Send + Sync {
    /// Accepts (returning the pusher's identity) or rejects a request.
    fn verify<'a>(
        &'a self,
        authorization: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, Rejection>> + Send + 'a>>;
}

/// Shared state of the service.
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Push authentication, when configured.
    pub oidc: Option<Box<dyn PushAuth>>,
    /// Notification delivery (`POST /pubsub/notify`), when the policy configures channels.
    pub deliverer: Option<Arc<crate::notify::Deliverer>>,
    /// Settings.
    pub config: ServerConfig,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
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
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => healthz(&state),
        (&Method::POST, "/pubsub/push") => push(state, request).await,
        (&Method::POST, "/pubsub/notify") => notify_push(state, request).await,
        (_, "/healthz" | "/pubsub/push") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn healthz(state: &AppState) -> Response<Body> {
    let s = &state.engine.stats;
    let body = serde_json::json!({
        "status": "ok",
        "mode": state.engine.mode().as_str(),
        "messages": s.messages.load(Ordering::Relaxed),
        "duplicates": s.duplicates.load(Ordering::Relaxed),
        "project_runs": s.project_runs.load(Ordering::Relaxed),
        "notifications": s.notifications.load(Ordering::Relaxed),
    });
    respond(StatusCode::OK, &body.to_string())
}

async fn push(state: Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !acceptable_content_type(content_type.as_deref()) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json",
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.config.max_body_bytes) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    // Authenticate before reading the body.
    if let Some(verifier) = &state.oidc {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = verifier.verify(auth).await {
            tracing::warn!(error = %e.message, status = e.status, "push rejected");
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED);
            return error(status, &e.message);
        }
    }
    let body = match Limited::new(request.into_body(), state.config.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            );
        }
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
            tracing::warn!(error = %e, "malformed push delivery acknowledged");
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
    let verdict = state
        .engine
        .handle(&message, trace.as_deref())
        .instrument(span)
        .await;
    match verdict {
        Verdict::Ack => no_content(),
        Verdict::Retry(reason) => error(StatusCode::SERVICE_UNAVAILABLE, &reason),
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests within the grace and flushes the
/// publisher.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(state, req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
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

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
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

/// `POST /pubsub/notify`: a push subscription on the notifications topic. Same hygiene as
/// `/pubsub/push` (content type, size limit, OIDC when configured, malformed deliveries acked);
/// 204 when every target got the notification, 503 (redeliver) when one still fails.
pub async fn notify_push(state: Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let Some(deliverer) = state.deliverer.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "notification delivery is not configured (no notifications: channels in the policy)",
        );
    };
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let essence = content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .unwrap_or("application/json")
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        essence.as_str(),
        "application/json" | "application/octet-stream" | "text/plain" | ""
    ) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json",
        );
    }
    let limit = state.config.max_body_bytes;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    if let Some(verifier) = &state.oidc {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = verifier.verify(auth).await {
            tracing::warn!(error = %e.message, status = e.status, "notification push rejected");
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED);
            return error(status, &e.message);
        }
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            );
        }
    };
    let message = match intake::parse_push(&body, content_type.as_deref(), &headers) {
        Ok(m) => m,
        Err(e) => {
            deliverer.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "malformed notification push acknowledged");
            return no_content();
        }
    };
    match deliverer.handle(&message).await {
        Verdict::Ack => no_content(),
        Verdict::Retry(reason) => error(StatusCode::SERVICE_UNAVAILABLE, &reason),
    }
}
