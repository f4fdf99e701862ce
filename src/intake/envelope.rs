//! Pub/Sub push request bodies -> [`Message`].
//!
//! Owns the two push forms: the wrapped envelope (default; <https://cloud.google.com/pubsub/docs/push>) and
//! the unwrapped body (`pushConfig.noWrapper`; <https://cloud.google.com/pubsub/docs/payload-unwrapping>),
//! whose metadata arrives in `x-goog-pubsub-*` headers and whose attributes arrive as plain headers when
//! `writeMetadata` is set. It does not look inside the message data (that is [`super::classify`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use serde::Deserialize;

use super::{
    IntakeError, MAX_DATA_BYTES, MAX_JSON_DEPTH, MAX_PUSH_BODY_BYTES, Message, check_depth, decode,
    sanitize,
};

/// Standard-alphabet base64 that accepts data with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const HEADER_MESSAGE_ID: &str = "x-goog-pubsub-message-id";
const HEADER_PUBLISH_TIME: &str = "x-goog-pubsub-publish-time";
const HEADER_SUBSCRIPTION: &str = "x-goog-pubsub-subscription-name";
/// Not observed on the emulator; read if present (the real service's full header set is unconfirmed).
const HEADER_DELIVERY_ATTEMPT: &str = "x-goog-pubsub-delivery-attempt";

/// The wrapped push envelope. Unknown fields (`orderingKey`, future ones) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message: EnvelopeMessage,
    #[serde(default)]
    subscription: Option<String>,
    #[serde(default)]
    delivery_attempt: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default, rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(default)]
    publish_time: Option<String>,
    #[serde(default, rename = "publish_time")]
    publish_time_snake: Option<String>,
}

/// How the body should be read, from its content type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// JSON: a wrapped envelope, or unwrapped data that happens to be JSON.
    Json,
    /// Anything an unwrapped push may carry (the emulator labels it `application/x-www-form-urlencoded`).
    Raw,
}

fn body_kind(content_type: Option<&str>) -> Result<BodyKind, IntakeError> {
    let Some(content_type) = content_type else {
        return Ok(BodyKind::Json);
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" => Ok(BodyKind::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyKind::Json),
        "application/x-www-form-urlencoded" | "application/octet-stream" | "text/plain" => {
            Ok(BodyKind::Raw)
        }
        _ => Err(IntakeError::UnsupportedContentType(sanitize(
            content_type,
            100,
        ))),
    }
}

/// Parses a push request body into a [`Message`].
///
/// - A JSON body whose top level has a `message` key is a wrapped envelope (unless `x-goog-pubsub-message-id`
///   says the push is unwrapped): `message.data` is base64, `messageId`/`message_id` and
///   `publishTime`/`publish_time` are both accepted.
/// - Otherwise the body is the raw message data of an unwrapped push; metadata comes from the
///   `x-goog-pubsub-*` headers and attributes from the remaining non-HTTP headers (lower-cased by HTTP).
///   Without `writeMetadata` the message id is empty.
pub fn parse_push(
    body: &[u8],
    content_type: Option<&str>,
    headers: &HeaderMap,
) -> Result<Message, IntakeError> {
    if body.len() > MAX_PUSH_BODY_BYTES {
        return Err(IntakeError::BodyTooLarge {
            size: body.len(),
            limit: MAX_PUSH_BODY_BYTES,
        });
    }
    let kind = body_kind(content_type)?;
    let unwrapped_by_header = headers.contains_key(HEADER_MESSAGE_ID);
    let message = if kind == BodyKind::Json && !unwrapped_by_header && looks_wrapped(body) {
        parse_wrapped(body)?
    } else {
        parse_unwrapped(body, headers)?
    };
    super::check_message_bounds(&message)?;
    Ok(message)
}

/// True if the body is a JSON object with a top-level `message` key (checked cheaply, without parsing).
fn looks_wrapped(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if !text.starts_with('{') {
        return false;
    }
    // Only a top-level key counts: parse shallowly with serde's IgnoredAny for the values.
    #[derive(Deserialize)]
    struct Keys {
        #[serde(default)]
        message: Option<serde::de::IgnoredAny>,
    }
    if check_depth(text.as_bytes(), MAX_JSON_DEPTH).is_err() {
        // Let parse_wrapped report the depth error if it has a message key; decide by a plain search.
        return text.contains("\"message\"");
    }
    match serde_json::from_str::<Keys>(text) {
        Ok(keys) => keys.message.is_some(),
        // Malformed JSON that mentions `message` is most likely a broken envelope: report it as such.
        Err(_) => text.contains("\"message\""),
    }
}

/// Decodes a wrapped envelope once, typed, its errors naming the failing field.
fn parse_wrapped(body: &[u8]) -> Result<Message, IntakeError> {
    check_depth(body, MAX_JSON_DEPTH)?;
    message_of(decode(body, "push body", "push envelope")?)
}

/// The message of a decoded envelope, its data decoded from base64 once.
fn message_of(envelope: Envelope) -> Result<Message, IntakeError> {
    let m = envelope.message;
    let message_id = m
        .message_id
        .or(m.message_id_snake)
        .ok_or_else(|| IntakeError::Json {
            what: "push envelope",
            path: "message.messageId".into(),
            message: "missing field `messageId`".into(),
        })?;
    let data = match m.data.as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some(encoded) => {
            let estimate = encoded.len() / 4 * 3;
            if estimate > MAX_DATA_BYTES + 3 {
                return Err(IntakeError::DataTooLarge {
                    size: estimate,
                    limit: MAX_DATA_BYTES,
                });
            }
            let data = BASE64
                .decode(encoded)
                .map_err(|e| IntakeError::BadBase64(e.to_string()))?;
            if data.len() > MAX_DATA_BYTES {
                return Err(IntakeError::DataTooLarge {
                    size: data.len(),
                    limit: MAX_DATA_BYTES,
                });
            }
            data
        }
    };
    Ok(Message {
        message_id,
        publish_time: m.publish_time.or(m.publish_time_snake),
        attributes: m.attributes.unwrap_or_default(),
        data,
        subscription: envelope.subscription,
        delivery_attempt: envelope.delivery_attempt.filter(|&n| n > 0),
    })
}

fn parse_unwrapped(body: &[u8], headers: &HeaderMap) -> Result<Message, IntakeError> {
    if body.len() > MAX_DATA_BYTES {
        return Err(IntakeError::DataTooLarge {
            size: body.len(),
            limit: MAX_DATA_BYTES,
        });
    }
    let delivery_attempt = match header_str(headers, HEADER_DELIVERY_ATTEMPT)? {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .map_err(|e| IntakeError::BadHeader {
                    name: HEADER_DELIVERY_ATTEMPT.into(),
                    reason: e.to_string(),
                })?,
        )
        .filter(|&n| n > 0),
    };
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if is_transport_header(name) {
            continue;
        }
        // Attributes are best effort: a value that is not UTF-8, or a header longer than an attribute can
        // be (some proxy's), is skipped rather than failing the message; so is anything past the count.
        if let Ok(value) = value.to_str()
            && name.len() <= super::MAX_ATTRIBUTE_KEY_BYTES
            && value.len() <= super::MAX_ATTRIBUTE_VALUE_BYTES
            && attributes.len() < super::MAX_ATTRIBUTES
        {
            attributes.insert(name.to_owned(), value.to_owned());
        }
    }
    Ok(Message {
        message_id: header_str(headers, HEADER_MESSAGE_ID)?.unwrap_or_default(),
        publish_time: header_str(headers, HEADER_PUBLISH_TIME)?,
        attributes,
        data: body.to_vec(),
        subscription: header_str(headers, HEADER_SUBSCRIPTION)?,
        delivery_attempt,
    })
}

fn header_str(headers: &HeaderMap, name: &str) -> Result<Option<String>, IntakeError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| IntakeError::BadHeader {
                    name: name.to_owned(),
                    reason: "not visible ASCII".into(),
                })
        })
        .transpose()
}

/// Headers added by HTTP, Cloud Run, Google's front end or Pub/Sub itself, which are not message
/// attributes. (Pub/Sub forbids attribute keys starting with `goog`.)
fn is_transport_header(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "authorization",
        "proxy-authorization",
        "cookie",
        "forwarded",
        "via",
        "from",
        "expect",
        "traceparent",
        "tracestate",
        "x-cloud-trace-context",
        "x-request-id",
    ];
    const PREFIXES: &[&str] = &[
        "x-goog-",
        "x-forwarded-",
        "x-envoy-",
        "x-cloud-",
        "x-serverless-",
        "x-appengine-",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}
