//! Google's error JSON (`google.rpc.Status` over HTTP) for every answer the simulator gives.
//!
//! Owns the mapping from an error to its HTTP code, canonical status string and optional `details`;
//! handlers build [`ApiError`]s and never write error bodies themselves.

use http::StatusCode;
use serde_json::{Value, json};

/// An error answered to a client as `{"error":{"code","message","status","details"?}}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {status}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Canonical `google.rpc.Code` name, e.g. `PERMISSION_DENIED`.
    pub status: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` entries (ErrorInfo etc.), omitted when empty.
    pub details: Vec<Value>,
    /// Legacy apiary `errors` array (only some front-ends send it).
    pub legacy_errors: Vec<Value>,
}

/// Result of a simulated API call.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with the given code, status and message.
    pub fn new(code: u16, status: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
            details: Vec::new(),
            legacy_errors: Vec::new(),
        }
    }

    /// 400 INVALID_ARGUMENT.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", message)
    }

    /// 400 FAILED_PRECONDITION.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(400, "FAILED_PRECONDITION", message)
    }

    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    /// 409 ALREADY_EXISTS.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", message)
    }

    /// 403 PERMISSION_DENIED with the `IAM_PERMISSION_DENIED` ErrorInfo Google attaches.
    pub fn permission_denied(permission: &str) -> Self {
        let mut e = Self::new(
            403,
            "PERMISSION_DENIED",
            format!("Permission '{permission}' denied on resource (or it may not exist)."),
        );
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "iam.googleapis.com",
            "metadata": {"permission": permission}
        }));
        e
    }

    /// 403 for a resource that does not exist where Google hides existence (projects, `projects/-` SAs).
    pub fn denied_or_missing(message: impl Into<String>) -> Self {
        Self::new(403, "PERMISSION_DENIED", message)
    }

    /// 409 ABORTED for a stale IAM policy etag, with the text captured from the live API.
    pub fn concurrent_policy_change() -> Self {
        let message = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.";
        let mut e = Self::new(409, "ABORTED", message);
        e.legacy_errors
            .push(json!({"message": message, "domain": "global", "reason": "aborted"}));
        e
    }

    /// 403 SERVICE_DISABLED for an API that is not enabled on the project.
    pub fn service_disabled(service: &str, title: &str, project: &str) -> Self {
        let message = format!(
            "{title} has not been used in project {project} before or it is disabled. Enable it by visiting \
             https://console.developers.google.com/apis/api/{service}/overview?project={project} then retry. \
             If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
        );
        let mut e = Self::new(403, "PERMISSION_DENIED", message.clone());
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "SERVICE_DISABLED",
            "domain": "googleapis.com",
            "metadata": {
                "service": service,
                "consumer": format!("projects/{project}"),
                "activationUrl": format!("https://console.developers.google.com/apis/api/{service}/overview?project={project}")
            }
        }));
        e.details.push(json!({"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}));
        e
    }

    /// Google's answer when a consumer's per-minute quota of IAM v2 read requests is spent.
    pub fn iam_v2_read_quota(limit: u32, consumer: &str) -> Self {
        let mut e = Self::new(
            429,
            "RESOURCE_EXHAUSTED",
            format!(
                "Quota exceeded for quota metric 'Read requests (IAM v2)' and limit 'Read requests per minute' of service 'iam.googleapis.com' for consumer '{consumer}'."
            ),
        );
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "service": "iam.googleapis.com",
                "consumer": consumer,
                "quota_metric": "iam.googleapis.com/v2_read_requests",
                "quota_limit": "ReadRequestsPerMinutePerProject",
                "quota_limit_value": limit.to_string(),
            },
        }));
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{
                "description": "Request a higher quota limit.",
                "url": "https://cloud.google.com/docs/quotas/help/request_increase",
            }],
        }));
        e
    }

    /// An injected fault: 429, 500 or 503 (any other code maps to a generic status).
    pub fn injected(code: u16) -> Self {
        match code {
            429 => Self::new(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Requests' (injected by the simulator).",
            ),
            500 => Self::new(500, "INTERNAL", "Internal error encountered."),
            503 => Self::new(503, "UNAVAILABLE", "The service is currently unavailable."),
            502 => Self::new(502, "UNAVAILABLE", "Bad gateway."),
            504 => Self::new(
                504,
                "DEADLINE_EXCEEDED",
                "The request deadline was exceeded.",
            ),
            409 => Self::concurrent_policy_change(),
            403 => Self::new(
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
            ),
            c => Self::new(c, status_for(c), "Injected error."),
        }
    }

    /// The JSON body Google sends.
    pub fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message, "status": self.status});
        if !self.legacy_errors.is_empty() {
            error["errors"] = Value::Array(self.legacy_errors.clone());
        }
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }

    /// The HTTP status (500 if the code is not a valid HTTP status).
    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

fn status_for(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}
