//! Intake: Pub/Sub messages -> hints.
//!
//! Owns the pure parsing of every message the service understands (push envelopes wrapped and unwrapped,
//! Cloud Audit Log entries routed by a log sink, Recommender recommendations, Cloud Asset feed messages and
//! sweep requests) into [`Hint`]s. A hint only says *where to look* (a scope and the requirements that may be
//! broken); it never decides what is granted. The core re-derives principals and roles from live state and
//! the requirement list, so a message that names `roles/owner` or a stranger's account can at most trigger a
//! verification.
//!
//! Each message's data takes one path: [`shape`] tells its shape from its top-level keys, and that
//! shape's module decodes it once, typed, straight from the bytes (`serde_path_to_error`, so an error
//! names the failing field, `protoPayload.serviceName`).
//!
//! This module performs no I/O and never panics on untrusted input: bodies and decoded data are size
//! limited, JSON nesting depth is bounded before serde sees it, and every decode error names what was wrong.
//!
//! Wire formats: <https://cloud.google.com/pubsub/docs/push>,
//! <https://cloud.google.com/pubsub/docs/payload-unwrapping>,
//! <https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog>,
//! <https://cloud.google.com/asset-inventory/docs/monitoring-asset-changes>.

mod asset_feed;
mod audit_log;
mod envelope;
mod loose;
mod recommendation;
mod shape;
mod sweep;
pub mod tool;

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::iam::{Member, Role, ServiceAccountEmail};
use crate::domain::requirements::{
    ROLE_DEFAULT_NODE_SA, ROLE_EDITOR, ROLE_GKE_NODE_SERVICE_AGENT, ROLE_GKE_SERVICE_AGENT,
    RequirementId,
};

pub use audit_log::HANDLED_METHODS;
pub use envelope::parse_push;
use shape::Shape;

/// What to answer Pub/Sub for one message, push or pull: the one contract between the handlers
/// of a message (the engine, notification delivery) and the transports (`server`, the job's pull loop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledge (2xx / ack): done, healthy, not allowed, malformed or unknown.
    Ack,
    /// Redeliver (503 / nack): a transient fault, with why.
    Retry(String),
}

/// Largest push request body accepted (a wrapped envelope carries base64, a third larger than the data).
pub const MAX_PUSH_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Largest message data accepted after base64 decoding.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// Deepest JSON nesting accepted (objects and arrays); real payloads stay well below 20.
pub const MAX_JSON_DEPTH: usize = 64;
/// Longest message id accepted (Pub/Sub's are decimal numbers of about 16 digits). Message ids are kept
/// in de-duplication sets and logged, so a longer one is refused as malformed.
pub const MAX_MESSAGE_ID_BYTES: usize = 128;
/// Most attributes a message may carry (Pub/Sub's own limit).
pub const MAX_ATTRIBUTES: usize = 100;
/// Longest attribute key (Pub/Sub's own limit).
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 256;
/// Longest attribute value (Pub/Sub's own limit).
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Longest subscription name accepted (`projects/P/subscriptions/S`: 30 + 255 characters and the rest).
pub const MAX_SUBSCRIPTION_BYTES: usize = 512;
/// Longest timestamp accepted (RFC 3339 with nanoseconds is 30 characters).
pub const MAX_TIMESTAMP_BYTES: usize = 64;
/// Longest free-text evidence field kept (`methodName`, `insertId`, an etag); longer ones are cut.
pub const MAX_EVIDENCE_BYTES: usize = 256;
/// Longest actor email kept (RFC 5321 caps an address at 254 octets); a longer one is dropped, never cut,
/// since the actor is compared with the remediator's own identity.
pub const MAX_ACTOR_BYTES: usize = 320;
/// Longest client-derived detail (a serde message, a field path) kept in an [`IntakeError`].
pub const MAX_ERROR_DETAIL_BYTES: usize = 256;
/// Most removed (role, member) pairs kept as evidence of one hint.
pub const MAX_REMOVED_PAIRS: usize = 100;

/// One Pub/Sub message, from a push (wrapped or unwrapped) or a pull.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The Pub/Sub message id; empty when an unwrapped push did not write metadata.
    pub message_id: String,
    /// When Pub/Sub received the message (RFC 3339), if known.
    pub publish_time: Option<String>,
    /// Message attributes (for log sinks: only `logging.googleapis.com/timestamp`).
    pub attributes: BTreeMap<String, String>,
    /// The decoded message data.
    #[serde(skip)]
    pub data: Vec<u8>,
    /// The subscription that delivered the message, if known.
    pub subscription: Option<String>,
    /// Delivery attempt (only with a dead-letter policy; Pub/Sub omits 0).
    pub delivery_attempt: Option<u32>,
}

/// Where a hint points. The value is kept as found (project id or number); the core resolves it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "id")]
pub enum Scope {
    /// A project, by id (`demo-project`) or number (`123456789012`), whichever the message carried.
    Project(String),
    /// A folder, by number.
    Folder(String),
    /// An organization, by number.
    Organization(String),
    /// The service's configured sweep scope (a sweep request that named no scope).
    Configured,
}

/// The kind of message a hint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A Cloud Audit Log entry delivered by a log sink.
    AuditLog,
    /// A Recommender recommendation (name or body).
    Recommendation,
    /// A Cloud Asset Inventory feed message.
    AssetFeed,
    /// A sweep request.
    Sweep,
}

/// A recommendation named by a message, for marking it claimed / succeeded later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecommendationRef {
    /// Full resource name `projects/P/locations/L/recommenders/R/recommendations/ID`.
    pub name: String,
    /// The etag, when the message carried the body (it contains literal double quotes).
    pub etag: Option<String>,
}

/// What the message said, for logs and notifications. Nothing here is trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The kind of message.
    pub source: Source,
    /// Who made the change (audit log `authenticationInfo.principalEmail`). The caller drops entries made
    /// by the remediator's own identity.
    pub actor: Option<String>,
    /// The tool the actor used (from the audit log's `callerSuppliedUserAgent`), if known.
    pub tool: Option<tool::Tool>,
    /// The audit log `methodName` (or the feed / recommender kind).
    pub method: Option<String>,
    /// The audit log `insertId`.
    pub insert_id: Option<String>,
    /// When the event happened (LogEntry `timestamp`, feed window start).
    pub log_timestamp: Option<String>,
    /// The recommendation, for recommendation messages.
    pub recommendation: Option<RecommendationRef>,
    /// The Pub/Sub message id.
    pub message_id: Option<String>,
    /// `REMOVE` deltas seen (role, member), for reporting only; never used to decide a grant.
    pub removed: Vec<(Role, Member)>,
    /// Pub/Sub's delivery attempt of the message (only with a dead-letter policy): `1` means no
    /// earlier delivery of it was ever handed to any instance.
    #[serde(skip)]
    pub delivery_attempt: Option<u32>,
}

impl Evidence {
    fn new(source: Source, message: &Message) -> Self {
        Self {
            source,
            actor: None,
            tool: None,
            method: None,
            insert_id: None,
            log_timestamp: None,
            recommendation: None,
            message_id: (!message.message_id.is_empty()).then(|| message.message_id.clone()),
            removed: Vec::new(),
            delivery_attempt: message.delivery_attempt,
        }
    }
}

/// A hint that something in `scope` may be broken: re-verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hint {
    /// Where to look.
    pub scope: Scope,
    /// The requirements that may be broken; empty means "re-verify everything".
    pub requirements: Vec<RequirementId>,
    /// Node service accounts the message mentioned (a hint only; the core derives the real list).
    pub node_service_accounts: Vec<ServiceAccountEmail>,
    /// The event removed or disabled something, so the grace delay for infrastructure-as-code applies.
    pub is_removal: bool,
    /// The deny policies attached to the scope itself were created, changed or deleted: any read of
    /// them made before is stale (deny policies are otherwise cached for a while; see the engine's
    /// deny cache).
    pub deny_policies_changed: bool,
    /// What the message said.
    pub evidence: Evidence,
}

/// The result of classifying a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "classification", content = "detail")]
pub enum Classification {
    /// The message points at one or more scopes to re-verify.
    Hints(Vec<Hint>),
    /// The message is understood (or at least valid) but calls for no work; acknowledge and log once.
    Ignored {
        /// Why, precisely enough to grep for in logs.
        reason: String,
    },
}

impl Classification {
    fn ignored(reason: impl Into<String>) -> Self {
        Self::Ignored {
            reason: reason.into(),
        }
    }
}

/// Why a push request or message could not be parsed. Intake does no I/O, so no variant is transient:
/// redelivering the same bytes gives the same error. The push handler answers 415 / 413 for
/// [`IntakeError::UnsupportedContentType`] / [`IntakeError::BodyTooLarge`] and acknowledges every other
/// error once, logged; the engine acknowledges every classification error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// The push request body is larger than [`MAX_PUSH_BODY_BYTES`].
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The decoded message data is larger than [`MAX_DATA_BYTES`].
    #[error("message data of {size} bytes exceeds the limit of {limit} bytes")]
    DataTooLarge {
        /// Size (decoded, or estimated from the base64 length).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The request's content type is not one a push can carry.
    #[error("unsupported content type `{0}`")]
    UnsupportedContentType(String),
    /// A metadata header is not valid UTF-8 or not a number where one is expected.
    #[error("bad header `{name}`: {reason}")]
    BadHeader {
        /// Header name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// `message.data` is not valid base64.
    #[error("message.data is not valid base64: {0}")]
    BadBase64(String),
    /// The data is not UTF-8 where JSON or text is required.
    #[error("message data is not valid UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// JSON nesting deeper than [`MAX_JSON_DEPTH`].
    #[error("JSON nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The body or data is not JSON (nor a recommendation name, for message data).
    #[error("{what} is not JSON: {message}")]
    NotJson {
        /// `push body` or `message data`.
        what: &'static str,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// JSON of a recognised shape has a field of the wrong type or is missing a required field.
    #[error("invalid {what} at `{path}`: {message}")]
    Json {
        /// Which shape was being decoded (`push envelope`, `audit log entry`, ...).
        what: &'static str,
        /// The path of the failing field (from `serde_path_to_error`).
        path: String,
        /// serde's message.
        message: String,
    },
    /// A value of a recognised shape is not acceptable (e.g. a sweep naming an invalid project).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which value.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// Classifies a message into hints, or says why it calls for no work.
///
/// Errors are returned only for data that is not what a Pub/Sub producer we know could have sent (not
/// UTF-8, not JSON, too deep, or a recognised shape with fields of the wrong type). Valid JSON of an unknown
/// shape is `Ignored` with a reason.
pub fn classify(message: &Message) -> Result<Classification, IntakeError> {
    let mut classification = classify_unbounded(message)?;
    if let Classification::Hints(hints) = &mut classification {
        for hint in hints {
            bound_evidence(&mut hint.evidence);
        }
    }
    Ok(classification)
}

fn classify_unbounded(message: &Message) -> Result<Classification, IntakeError> {
    if message.data.len() > MAX_DATA_BYTES {
        return Err(IntakeError::DataTooLarge {
            size: message.data.len(),
            limit: MAX_DATA_BYTES,
        });
    }
    let text = std::str::from_utf8(&message.data).map_err(|e| IntakeError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if text.is_empty() {
        return Ok(Classification::ignored("message data is empty"));
    }
    if !text.starts_with(['{', '[', '"'])
        && let Some(classification) = recommendation::classify_name_text(message, text)
    {
        // A plain-text recommendation name is the only non-JSON data we understand.
        return classification;
    }
    let data = text.as_bytes();
    check_depth(data, MAX_JSON_DEPTH)?;
    match Shape::of(data)? {
        Shape::LogEntry { payload_type } => {
            audit_log::classify(message, data, payload_type.as_deref())
        }
        Shape::Sweep => sweep::classify(message, data),
        Shape::RecommendationBody => recommendation::classify_body(message, data),
        Shape::RecommendationReference => recommendation::classify_reference(message, data),
        Shape::AssetFeed => asset_feed::classify(message, data),
        Shape::OtherLogEntry => Ok(Classification::ignored(
            "log entry without an audit-log protoPayload",
        )),
        Shape::Unknown { keys } => Ok(Classification::ignored(format!(
            "unknown JSON message shape (keys: {})",
            keys.join(", ")
        ))),
        Shape::Text(s) => {
            recommendation::classify_name_text(message, s.trim()).unwrap_or_else(|| {
                Ok(Classification::ignored(
                    "message data is a JSON string that is not a recommendation name",
                ))
            })
        }
        Shape::Other(kind) => Ok(Classification::ignored(format!(
            "message data is a JSON {kind}, not an object we understand"
        ))),
    }
}

/// Rejects JSON whose object/array nesting exceeds `limit`, scanning bytes (strings and escapes aware).
/// Malformed JSON is left for serde to report.
fn check_depth(bytes: &[u8], limit: usize) -> Result<(), IntakeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err(IntakeError::TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Decodes JSON text (whose depth [`check_depth`] has bounded) straight into `T`, in one pass.
///
/// Malformed JSON (or trailing text) is [`IntakeError::NotJson`] about `text` (`push body`, `message
/// data`); JSON of the wrong shape is [`IntakeError::Json`] about `what`, with the path of the failing
/// field from `serde_path_to_error` (`protoPayload.serviceName`).
fn decode<T: DeserializeOwned>(
    json: &[u8],
    text: &'static str,
    what: &'static str,
) -> Result<T, IntakeError> {
    let not_json = |e: &serde_json::Error| IntakeError::NotJson {
        what: text,
        message: excerpt(&e.to_string(), MAX_ERROR_DETAIL_BYTES),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let decoded = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        // serde quotes offending values (a string of any length) and paths name client keys: both
        // are cut, since the error goes into log lines.
        let path = excerpt(&e.path().to_string(), MAX_ERROR_DETAIL_BYTES);
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => IntakeError::Json {
                what,
                path,
                message: excerpt(&inner.to_string(), MAX_ERROR_DETAIL_BYTES),
            },
            _ => not_json(&inner),
        }
    })?;
    deserializer.end().map_err(|e| not_json(&e))?;
    Ok(decoded)
}

/// Shortens and de-controls an untrusted string before it goes into a reason or log line.
fn sanitize(value: &str, max_chars: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// A client-supplied string cut to at most `max_bytes` bytes (on a character boundary, `…` appended when
/// cut) with control characters replaced: what may go into a log line or an error message.
pub fn excerpt(value: &str, max_bytes: usize) -> String {
    let mut end = value.len().min(max_bytes);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = value[..end]
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if end < value.len() {
        out.push('…');
    }
    out
}

/// Checks the size of every client-supplied string of a pushed message against Pub/Sub's own limits.
pub(crate) fn check_message_bounds(message: &Message) -> Result<(), IntakeError> {
    let too_long = |what: &'static str, len: usize, limit: usize| IntakeError::Invalid {
        what,
        reason: format!("{len} bytes, more than the limit of {limit}"),
    };
    if message.message_id.len() > MAX_MESSAGE_ID_BYTES {
        return Err(too_long(
            "message id",
            message.message_id.len(),
            MAX_MESSAGE_ID_BYTES,
        ));
    }
    if let Some(s) = &message.subscription
        && s.len() > MAX_SUBSCRIPTION_BYTES
    {
        return Err(too_long("subscription", s.len(), MAX_SUBSCRIPTION_BYTES));
    }
    if let Some(t) = &message.publish_time
        && t.len() > MAX_TIMESTAMP_BYTES
    {
        return Err(too_long("publish time", t.len(), MAX_TIMESTAMP_BYTES));
    }
    if message.attributes.len() > MAX_ATTRIBUTES {
        return Err(IntakeError::Invalid {
            what: "attributes",
            reason: format!(
                "{} attributes, more than the limit of {MAX_ATTRIBUTES}",
                message.attributes.len()
            ),
        });
    }
    for (key, value) in &message.attributes {
        if key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            return Err(too_long(
                "attribute key",
                key.len(),
                MAX_ATTRIBUTE_KEY_BYTES,
            ));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(too_long(
                "attribute value",
                value.len(),
                MAX_ATTRIBUTE_VALUE_BYTES,
            ));
        }
    }
    Ok(())
}

/// Caps the free-text evidence a message carried: cut for reports, dropped where it is compared.
fn bound_evidence(evidence: &mut Evidence) {
    let cut = |field: &mut Option<String>, limit: usize| {
        if let Some(v) = field.as_mut()
            && v.len() > limit
        {
            *v = excerpt(v, limit);
        }
    };
    cut(&mut evidence.method, MAX_EVIDENCE_BYTES);
    cut(&mut evidence.insert_id, MAX_EVIDENCE_BYTES);
    cut(&mut evidence.log_timestamp, MAX_TIMESTAMP_BYTES);
    if let Some(r) = evidence.recommendation.as_mut() {
        cut(&mut r.etag, MAX_EVIDENCE_BYTES);
    }
    if evidence
        .actor
        .as_ref()
        .is_some_and(|a| a.len() > MAX_ACTOR_BYTES)
    {
        evidence.actor = None;
    }
    evidence.removed.truncate(MAX_REMOVED_PAIRS);
}

/// A `projects/X` value as a scope, if X is a valid project id or number.
fn project_scope(id_or_number: &str) -> Option<Scope> {
    use crate::domain::iam::{ProjectId, ProjectNumber};
    (ProjectId::parse(id_or_number).is_ok() || ProjectNumber::parse(id_or_number).is_ok())
        .then(|| Scope::Project(id_or_number.to_owned()))
}

/// Parses `projects/X`, `folders/N` or `organizations/N` (a prefix of a longer name is ignored).
fn resource_scope(name: &str) -> Option<Scope> {
    let mut parts = name
        .trim_start_matches("//cloudresourcemanager.googleapis.com/")
        .split('/');
    let (kind, id) = (parts.next()?, parts.next()?);
    let numeric = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    match kind {
        "projects" => project_scope(id),
        "folders" if numeric => Some(Scope::Folder(id.to_owned())),
        "organizations" if numeric => Some(Scope::Organization(id.to_owned())),
        _ => None,
    }
}

/// The requirements a removed role may have broken. `None` means "any requirement" (re-verify all):
/// any role other than the requirement list's restore roles may have carried the node permissions.
fn requirements_for_removed_role(role: &str) -> Option<Vec<RequirementId>> {
    match role {
        ROLE_DEFAULT_NODE_SA => Some(vec![RequirementId::NodeSaPermissions]),
        ROLE_GKE_SERVICE_AGENT => Some(vec![RequirementId::GkeServiceAgent]),
        ROLE_GKE_NODE_SERVICE_AGENT => Some(vec![RequirementId::GkeNodeServiceAgent]),
        // Editor is the Google APIs service agent's role, and also the usual source of the node
        // permissions for the Compute default service account.
        ROLE_EDITOR => Some(vec![
            RequirementId::GoogleApisServiceAgent,
            RequirementId::NodeSaPermissions,
        ]),
        _ => None,
    }
}

/// Combines the requirement guesses of several removed roles (any "all" wins).
fn requirements_for_removed_roles<'a>(
    roles: impl IntoIterator<Item = &'a str>,
) -> Vec<RequirementId> {
    let mut out: Vec<RequirementId> = Vec::new();
    for role in roles {
        match requirements_for_removed_role(role) {
            Some(ids) => out.extend(ids),
            None => return Vec::new(),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// True for roles held by GKE's service agents (their members are never node service accounts).
fn is_agent_role(role: &str) -> bool {
    role == ROLE_GKE_SERVICE_AGENT || role == ROLE_GKE_NODE_SERVICE_AGENT
}

/// The service account email of a `serviceAccount:EMAIL` member, if it is one.
fn member_service_account(member: &Member) -> Option<ServiceAccountEmail> {
    ServiceAccountEmail::parse(member.as_str().strip_prefix("serviceAccount:")?).ok()
}

#[cfg(test)]
mod tests;
