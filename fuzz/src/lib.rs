//! The fuzzed entry points, shared by the libFuzzer targets and the stable fallback runner. Each must
//! never panic, whatever the bytes.

use gke_iam_remediator::intake;

/// A push request body: parse the envelope (wrapped or unwrapped; the first byte picks the content type
/// and whether the unwrapped-push metadata header is present), then classify the message.
pub fn push_envelope(data: &[u8]) {
    let (sel, body) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, data),
    };
    let content_type = match sel % 6 {
        0 => Some("application/json"),
        1 => None,
        2 => Some("text/plain; charset=utf-8"),
        3 => Some("application/octet-stream"),
        4 => Some("application/json; charset=utf-16"),
        _ => Some("text/html"),
    };
    let mut headers = http::HeaderMap::new();
    if sel & 0x40 != 0 {
        headers.insert(
            "x-goog-pubsub-message-id",
            http::HeaderValue::from_static("42"),
        );
        headers.insert(
            "x-goog-pubsub-subscription-name",
            http::HeaderValue::from_static("projects/p/subscriptions/s"),
        );
        headers.insert("x-custom-attribute", http::HeaderValue::from_static("x"));
    }
    if let Ok(message) = intake::parse_push(body, content_type, &headers) {
        let _ = intake::classify(&message);
    }
}

/// Raw message data (a log entry, recommendation, asset-feed message or sweep request) to hints.
pub fn classify_data(data: &[u8]) {
    let message = intake::Message {
        message_id: "fuzz".to_owned(),
        data: data.to_vec(),
        ..intake::Message::default()
    };
    let _ = intake::classify(&message);
}

/// A simulator world file (YAML or JSON).
pub fn world_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gcp_sim::World::from_yaml(text, "fuzz.yaml");
    }
}

/// A remediation policy file.
pub fn policy_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gke_iam_remediator::policy::PolicyFile::from_yaml(text, "fuzz.yaml");
    }
}

/// An IAM condition expression, evaluated now (never panics, whatever the text).
pub fn condition(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gke_iam_remediator::domain::condition::evaluate(text, std::time::SystemTime::now());
    }
}

/// Target by name.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "push_envelope" => push_envelope,
        "classify_data" => classify_data,
        "world_file" => world_file,
        "policy_file" => policy_file,
        "condition" => condition,
        _ => return None,
    })
}

/// Every target name.
pub const TARGETS: [&str; 4] = [
    "push_envelope",
    "classify_data",
    "world_file",
    "policy_file",
];
