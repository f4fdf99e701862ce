//! The generic webhook channel: a JSON POST of the notification (a JSON array for a digest), signed
//! with HMAC-SHA256 over the exact body bytes.
//!
//! Headers: `Content-Type: application/json`, `X-Signature: sha256=<hex>`, `X-Notification-Id` (the
//! notification id, or `d-<hex>` for a digest), `X-Notification-Count`. Receivers verify by computing
//! HMAC-SHA256 of the raw body with the shared key and comparing in constant time. Retries (connection
//! errors, 408, 429, 5xx) are the delivery engine's; this module makes one attempt. The URL may be a
//! secret and the key is: neither appears in errors, logs or `Debug`.

use std::time::Duration;

use futures::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::deliver::{Channel, Delivery, SendError};
use super::{Notification, fnv1a};
use crate::notify::routing::ChannelKind;

/// `sha256=<lower-case hex>` of HMAC-SHA256(key, body).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Checks an `X-Signature` header value against the body in constant time.
pub fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(given) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(bytes) = unhex(given) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The body: the notification itself, or an array for a digest.
pub fn body(notifications: &[Notification]) -> Vec<u8> {
    let result = match notifications {
        [one] => serde_json::to_vec(one),
        many => serde_json::to_vec(many),
    };
    result.unwrap_or_default()
}

/// The `X-Notification-Id` of a delivery: the notification id, or `d-<hash of the ids>` for a digest.
pub fn delivery_id(notifications: &[Notification]) -> String {
    match notifications {
        [one] => one.id.clone(),
        many => {
            let ids: Vec<&str> = many.iter().map(|n| n.id.as_str()).collect();
            format!("d-{:016x}", fnv1a(ids.join(",").as_bytes()))
        }
    }
}

/// A webhook channel.
pub struct WebhookChannel {
    name: String,
    url: SecretString,
    key: SecretString,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("name", &self.name)
            .field("url", &"[redacted]")
            .field("key", &"[redacted]")
            .finish()
    }
}

impl WebhookChannel {
    /// A channel posting to `url`, signing with `key`, each attempt bounded by `timeout`.
    pub fn new(
        name: &str,
        url: SecretString,
        key: SecretString,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Self {
        Self {
            name: name.to_owned(),
            url,
            key,
            http,
            timeout,
        }
    }

    async fn post(&self, delivery: &Delivery) -> Result<(), SendError> {
        let body = body(&delivery.notifications);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sig = signature(self.key.expose_secret().as_bytes(), &body);
        headers.insert("x-signature", header_value(&sig));
        headers.insert(
            "x-notification-id",
            header_value(&delivery_id(&delivery.notifications)),
        );
        headers.insert(
            "x-notification-count",
            header_value(&delivery.notifications.len().to_string()),
        );
        post_json(
            &self.http,
            self.url.expose_secret(),
            headers,
            body,
            self.timeout,
        )
        .await
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn send<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.post(delivery))
    }
}

/// One POST with Pub/Sub-like classification: 2xx ok; connection errors, timeouts, 408, 429 and 5xx
/// retryable (honouring `Retry-After` seconds); other statuses permanent. Errors never carry the URL.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), SendError> {
    let response = http
        .post(url)
        .timeout(timeout)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::retryable(describe(&e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let snippet: String = text.chars().take(200).collect();
    let message = format!("HTTP {}: {}", status.as_u16(), snippet.trim());
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Err(SendError {
            retryable: true,
            retry_after,
            message,
        })
    } else {
        Err(SendError::permanent(message))
    }
}

/// An error and its causes in one line (reqwest hides the interesting part in `source`).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = signature(b"k", b"{}");
        assert!(verify(b"k", b"{}", &sig));
        assert!(!verify(b"k", b"{ }", &sig));
        assert!(!verify(b"other", b"{}", &sig));
        assert!(!verify(b"k", b"{}", "sha256=zz"));
    }
}
