//! `POST /pubsub/notify`: the HTTP side of notification delivery (a push subscription on the
//! notifications topic). The same hygiene as `/pubsub/push` (content type, size limit, body deadline,
//! authentication, malformed deliveries acknowledged); the delivery itself is
//! [`crate::notify::Deliverer::handle`]'s. Answers 204 when every target got the notification, 503
//! (redeliver) when one still fails.
//!
//! Refused (403) when pushes are not authenticated (`REMEDIATOR_PUSH_AUTH=none`): anyone who can reach
//! the port could otherwise have their text relayed to Slack and to the webhook with a valid signature.
//! Without push authentication, deliver notifications with `job --deliver-notifications` (a pull).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{AppState, LOG_EXCERPT_BYTES, admit_push, error, no_content, read_body};
use crate::intake;
use crate::intake::Verdict;

/// What `/pubsub/notify` answers when pushes are not authenticated.
pub const UNAUTHENTICATED_REFUSAL: &str = "notification delivery needs authenticated pushes (REMEDIATOR_PUSH_AUTH=cloud-run or signed); without them deliver with `job --deliver-notifications`";

fn acceptable_content_type(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .unwrap_or("application/json")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/json" | "application/octet-stream" | "text/plain" | ""
    )
}

/// Handles one notification push.
pub(super) async fn push(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(deliverer) = state.deliverer.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "notification delivery is not configured (no notifications: channels in the policy)",
        );
    };
    if state.oidc.is_none() {
        return error(StatusCode::FORBIDDEN, UNAUTHENTICATED_REFUSAL);
    }
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if let Err(answer) =
        admit_push(&state, &headers, acceptable_content_type, "/pubsub/notify").await
    {
        return answer;
    }
    let body = match read_body(&state, body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let message = match intake::parse_push(&body, content_type, &headers) {
        Ok(m) => m,
        Err(e) => {
            deliverer.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %intake::excerpt(&e.to_string(), LOG_EXCERPT_BYTES), "malformed notification push acknowledged");
            return no_content();
        }
    };
    match deliverer.handle(&message).await {
        Verdict::Ack => no_content(),
        Verdict::Retry(reason) => error(StatusCode::SERVICE_UNAVAILABLE, &reason),
    }
}
