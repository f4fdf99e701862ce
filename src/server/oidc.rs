//! Verification of the Google-signed OIDC token Pub/Sub attaches to push requests.
//!
//! Owns the whole check of `Authorization: Bearer <JWT>`: RS256 only, signature against Google's published
//! keys (a JWK set fetched from a configurable URL, cached by `kid`, refreshed when it expires or when an
//! unknown `kid` shows up, at most once per [`MIN_REFRESH_INTERVAL`]), issuer, audience, expiry,
//! not-before, issued-at, `email_verified`, and an allow-list of push service-account emails. It does not
//! read the request body: callers authenticate first, then decode (reject early).
//!
//! Two trust modes ([`Trust`]): `Signed` verifies every signature itself and refuses a token whose
//! signature is the literal [`SIGNATURE_REMOVED`]; `CloudRun` is for a service behind Cloud Run's IAM
//! invoker check, which verifies the token and forwards it with the signature replaced by that marker:
//! such a token's claims are checked here (everything but the signature), any other signature is still
//! verified against the keys. The claim checks are the same code in both modes.
//!
//! Token format: <https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions>; keys:
//! <https://www.googleapis.com/oauth2/v3/certs> (the `jwks_uri` of Google's OpenID configuration).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// Google's JWK set for ID tokens.
pub const GOOGLE_KEYS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers Google uses in ID tokens (the same two the official google-auth library accepts).
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Least time between two key fetches triggered by unknown `kid`s (a flood of forged tokens must not
/// turn into a flood of requests to Google).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How long keys are trusted when the response has no usable `Cache-Control: max-age`.
const DEFAULT_KEYS_TTL: Duration = Duration::from_secs(3600);
/// Upper bound on a `max-age` we honour (the lower bound is [`MIN_REFRESH_INTERVAL`]).
const MAX_KEYS_TTL: Duration = Duration::from_secs(24 * 3600);
/// Timeout of one key fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWK set accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Largest token accepted (Google's are about 1 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// What Cloud Run puts in place of the signature of a token it has verified (its troubleshooting page,
/// anchor `signature-removed`). Only this exact third part counts as "verified by the front end".
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";
/// Longest lifetime (`exp - iat`) accepted; Google's ID tokens live one hour.
const MAX_TOKEN_LIFETIME_SECS: f64 = 2.0 * 3600.0;

/// Who verified the token's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// This service verifies the signature against Google's keys (`REMEDIATOR_PUSH_AUTH=signed`); a
    /// token whose signature was removed is refused.
    Signed,
    /// Cloud Run's IAM invoker check verified the token and replaced its signature with
    /// [`SIGNATURE_REMOVED`] (`REMEDIATOR_PUSH_AUTH=cloud-run`); such a token's claims are checked here.
    /// A token that still carries a signature is verified against the keys as in `Signed`.
    CloudRun,
}

/// What a push token must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The exact `aud` the push subscription was configured with (defaults to the push endpoint URL).
    pub audience: String,
    /// Push service-account emails allowed to call us (compared case-insensitively). Empty allows nobody:
    /// any Google account can mint a token for any audience, so the email is what authenticates.
    pub allowed_emails: Vec<String>,
    /// Where the JWK set is fetched from ([`GOOGLE_KEYS_URL`] in production, a local server in tests).
    pub keys_url: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Whether a front end (Cloud Run) verified the signature.
    pub trust: Trust,
}

impl OidcConfig {
    /// A configuration with Google's keys URL and a 60 s leeway.
    pub fn new(audience: impl Into<String>, allowed_emails: Vec<String>) -> Self {
        Self {
            audience: audience.into(),
            allowed_emails,
            keys_url: GOOGLE_KEYS_URL.to_owned(),
            leeway_secs: 60,
            trust: Trust::Signed,
        }
    }
}

/// The authenticated caller of a push request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPusher {
    /// The push service account's email (lower-cased).
    pub email: String,
    /// The token's `sub`: the account's numeric unique id.
    pub subject: String,
}

/// Why a push request was not authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// Not a bearer JWT, not RS256, no `kid`, or a required claim is missing or malformed.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token names a key Google does not publish (after a refresh).
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// The signature was replaced by [`SIGNATURE_REMOVED`] and this service does not trust a front end.
    #[error(
        "token signature was removed by a front end and this service is not configured to trust one (REMEDIATOR_PUSH_AUTH=cloud-run)"
    )]
    SignatureRemoved,
    /// `iss` is not Google.
    #[error("token issuer is not Google")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("token audience is not ours")]
    WrongAudience,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// `email_verified` is not true.
    #[error("token email is not verified")]
    EmailNotVerified,
    /// A valid token of an email that is not allowed to push.
    #[error("push identity `{0}` is not allowed")]
    EmailNotAllowed(String),
    /// Google's keys could not be fetched (network, HTTP status, bad JSON).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// The HTTP status to answer with: 401 for a missing or unverifiable token, 403 for a valid token that
    /// is not for us or not allowed, 503 when the keys cannot be fetched (Pub/Sub then redelivers).
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing
            | Self::Malformed(_)
            | Self::UnknownKey
            | Self::BadSignature
            | Self::SignatureRemoved
            | Self::WrongIssuer => 401,
            Self::Expired | Self::NotYetValid => 401,
            Self::WrongAudience | Self::EmailNotVerified | Self::EmailNotAllowed(_) => 403,
            Self::KeysUnavailable(_) => 503,
        }
    }
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// Keys are used without refetching until then.
    fresh_until: Option<Instant>,
    /// Last fetch attempt (successful or not), for rate limiting.
    last_attempt: Option<Instant>,
}

/// Verifies push tokens; create once and share (it holds the key cache).
pub struct OidcVerifier {
    config: OidcConfig,
    allowed: Vec<String>,
    http: reqwest::Client,
    validation: Validation,
    cache: RwLock<KeyCache>,
    /// Serialises fetches so concurrent requests with a new `kid` cause one fetch.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct JwkSetLoose {
    #[serde(default)]
    keys: Vec<Value>,
}

impl OidcVerifier {
    /// Builds a verifier. `http` is the service's shared client; fetches add their own timeout.
    pub fn new(config: OidcConfig, http: reqwest::Client) -> Self {
        // The library checks the signature only; every claim is checked by `check_claims`, the same code
        // for signed and front-end-verified tokens (the library would accept an array `iss` and ignore
        // `nbf`).
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let allowed = config
            .allowed_emails
            .iter()
            .map(|e| e.trim().to_ascii_lowercase())
            .collect();
        Self {
            config,
            allowed,
            http,
            validation,
            cache: RwLock::new(KeyCache::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Verifies the `Authorization` header of a push request.
    pub async fn verify(
        &self,
        authorization_header: Option<&str>,
    ) -> Result<VerifiedPusher, AuthError> {
        let header = authorization_header.ok_or(AuthError::Missing)?;
        let token = bearer_token(header)?;
        let parts: Vec<&str> = token.split('.').collect();
        let [_, payload, signature] = parts[..] else {
            return Err(AuthError::Malformed(
                "token is not three dot-separated parts".into(),
            ));
        };
        let jwt_header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("token header: {e}")))?;
        if jwt_header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed(format!(
                "algorithm {:?} is not RS256",
                jwt_header.alg
            )));
        }
        let claims = if signature == SIGNATURE_REMOVED {
            match self.config.trust {
                Trust::Signed => return Err(AuthError::SignatureRemoved),
                Trust::CloudRun => decode_payload(payload)?,
            }
        } else {
            let kid = jwt_header
                .kid
                .ok_or_else(|| AuthError::Malformed("token header has no kid".into()))?;
            let key = self.key(&kid).await?;
            jsonwebtoken::decode::<Value>(token, &key, &self.validation)
                .map_err(map_jwt_error)?
                .claims
        };
        self.check_claims(&claims, jsonwebtoken::get_current_timestamp() as f64)
    }

    /// Every check but the signature: issuer (a string, one of Google's), audience, `exp`, `nbf`, `iat`,
    /// `email_verified` and the allow-list. `now` is in seconds since the epoch.
    fn check_claims(&self, claims: &Value, now: f64) -> Result<VerifiedPusher, AuthError> {
        if !claims.is_object() {
            return Err(AuthError::Malformed(
                "token claims are not an object".into(),
            ));
        }
        let leeway = self.config.leeway_secs as f64;
        match &claims["iss"] {
            Value::String(iss) if GOOGLE_ISSUERS.contains(&iss.as_str()) => {}
            Value::String(_) => return Err(AuthError::WrongIssuer),
            Value::Null => return Err(AuthError::Malformed("missing claim `iss`".into())),
            _ => return Err(AuthError::Malformed("claim `iss` is not a string".into())),
        }
        match &claims["aud"] {
            Value::String(aud) if *aud == self.config.audience => {}
            Value::String(_) => return Err(AuthError::WrongAudience),
            Value::Null => return Err(AuthError::Malformed("missing claim `aud`".into())),
            _ => return Err(AuthError::Malformed("claim `aud` is not a string".into())),
        }
        let time = |name: &str| -> Result<Option<f64>, AuthError> {
            match &claims[name] {
                Value::Null => Ok(None),
                v => v
                    .as_f64()
                    .filter(|t| t.is_finite())
                    .map(Some)
                    .ok_or_else(|| AuthError::Malformed(format!("claim `{name}` is not a number"))),
            }
        };
        let exp = time("exp")?.ok_or_else(|| AuthError::Malformed("missing claim `exp`".into()))?;
        if exp + leeway < now {
            return Err(AuthError::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now + leeway) {
            return Err(AuthError::NotYetValid);
        }
        let iat = time("iat")?.ok_or_else(|| AuthError::Malformed("missing claim `iat`".into()))?;
        if iat > now + leeway {
            return Err(AuthError::Malformed("token issued in the future".into()));
        }
        if exp < iat || exp - iat > MAX_TOKEN_LIFETIME_SECS {
            return Err(AuthError::Malformed(
                "token lifetime (exp - iat) is negative or longer than two hours".into(),
            ));
        }
        let verified = matches!(&claims["email_verified"], Value::Bool(true))
            || matches!(&claims["email_verified"], Value::String(s) if s == "true");
        let email = claims["email"]
            .as_str()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                AuthError::Malformed(
                    "token has no email claim (push tokens always carry one)".into(),
                )
            })?;
        if !verified {
            return Err(AuthError::EmailNotVerified);
        }
        let email = email.to_ascii_lowercase();
        if !self.allowed.contains(&email) {
            return Err(AuthError::EmailNotAllowed(crate::intake::excerpt(
                &email, 320,
            )));
        }
        Ok(VerifiedPusher {
            email,
            subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// The key for `kid`: from the cache while fresh, otherwise fetched (serving stale keys if a refresh
    /// fails and the key is known).
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        let _refreshing = self.refresh.lock().await;
        // Another request may have refreshed while we waited.
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if cache
                .last_attempt
                .is_some_and(|t| now.duration_since(t) < MIN_REFRESH_INTERVAL)
            {
                // A fetch happened moments ago: either the set is current and the kid is simply not Google's,
                // or the fetch failed. Do not hit the keys URL again.
                let fresh = cache.fresh_until.is_some_and(|t| now < t);
                return match cache.keys.get(kid) {
                    Some(stale) => Ok(stale.clone()),
                    None if fresh => Err(AuthError::UnknownKey),
                    None => Err(AuthError::KeysUnavailable(
                        "the last key fetch failed moments ago".into(),
                    )),
                };
            }
        }
        match self.fetch_keys().await {
            Ok((keys, ttl)) => {
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                cache.keys = keys;
                cache.fresh_until = Some(now + ttl);
                cache.last_attempt = Some(now);
                cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            Err(error) => {
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                cache.last_attempt = Some(Instant::now());
                match cache.keys.get(kid) {
                    Some(stale) => {
                        tracing::warn!(error.message = %error, "refreshing Google's signing keys failed; using cached keys");
                        Ok(stale.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    fn fresh_key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        if cache.fresh_until.is_none_or(|t| Instant::now() >= t) {
            return None;
        }
        cache.keys.get(kid).cloned()
    }

    async fn fetch_keys(&self) -> Result<(HashMap<String, Arc<DecodingKey>>, Duration), AuthError> {
        let unavailable = |what: String| AuthError::KeysUnavailable(what);
        let response = self
            .http
            .get(&self.config.keys_url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {}: {e}", self.config.keys_url)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!(
                "GET {} answered HTTP {status}",
                self.config.keys_url
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(unavailable("key set too large".into()));
        }
        let ttl = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map_or(DEFAULT_KEYS_TTL, |ttl| {
                ttl.clamp(MIN_REFRESH_INTERVAL, MAX_KEYS_TTL)
            });
        // Read chunk by chunk and stop at the cap: a chunked response without a length (or one that lies)
        // never costs more than the cap in memory.
        let mut response = response;
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(format!("reading key set: {e}")))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(unavailable(format!(
                    "key set larger than {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSetLoose = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("key set is not a JWK set: {e}")))?;
        // Keys of other types or algorithms (or of a shape this library does not know) are skipped, so a
        // new key type published by Google does not break verification with the RSA keys.
        let keys: HashMap<_, _> = set
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
            .filter(|jwk| matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256)))
            .filter(|jwk| {
                matches!(
                    jwk.common.public_key_use,
                    None | Some(PublicKeyUse::Signature)
                )
            })
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        if keys.is_empty() {
            return Err(unavailable("key set holds no RS256 key".into()));
        }
        Ok((keys, ttl))
    }
}

/// Plugs the verifier into the server: the pusher's email on success, the status and reason otherwise
/// (reasons never contain the token).
///
/// Behind Cloud Run ([`Trust::CloudRun`]) the token read is `X-Serverless-Authorization` when the request
/// has one: Cloud Run's invoker check uses that header in preference to `Authorization`, so in that case
/// it is the one Cloud Run verified, and `Authorization` reached us unchecked.
impl super::PushAuth for OidcVerifier {
    fn verify<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> Pin<Box<dyn Future<Output = Result<String, super::Rejection>> + Send + 'a>> {
        Box::pin(async move {
            // A header given twice is refused: a front end that checks one copy and a service that
            // reads the other would let a forged copy through.
            for name in [
                SERVERLESS_AUTHORIZATION,
                http::header::AUTHORIZATION.as_str(),
            ] {
                if headers.get_all(name).iter().count() > 1 {
                    return Err(super::Rejection {
                        status: 400,
                        message: format!("the {name} header is given more than once"),
                    });
                }
            }
            let value = match self.config.trust {
                Trust::CloudRun => headers
                    .get(SERVERLESS_AUTHORIZATION)
                    .or_else(|| headers.get(http::header::AUTHORIZATION)),
                Trust::Signed => headers.get(http::header::AUTHORIZATION),
            };
            let result = match value.map(|v| v.to_str()) {
                None => Err(AuthError::Missing),
                Some(Err(_)) => Err(AuthError::Malformed(
                    "authorization header is not visible ASCII".into(),
                )),
                Some(Ok(v)) => OidcVerifier::verify(self, Some(v)).await,
            };
            result
                .map(|pusher| pusher.email)
                .map_err(|e| super::Rejection {
                    status: e.status(),
                    message: e.to_string(),
                })
        })
    }
}

/// The header Cloud Run's invoker check reads before `Authorization`.
pub const SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or_else(|| AuthError::Malformed("Authorization is not `Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(
            "Authorization scheme is not Bearer".into(),
        ));
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed(
            "bearer token is empty or too long".into(),
        ));
    }
    Ok(token)
}

/// The claims of a token whose signature a front end removed (base64url JSON, padding tolerated).
fn decode_payload(payload: &str) -> Result<Value, AuthError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| AuthError::Malformed(format!("token payload is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AuthError::Malformed(format!("token payload is not JSON: {e}")))
}

/// `max-age` of a `Cache-Control` value, unless `no-store` / `no-cache` forbid reuse.
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Malformed(format!("missing claim `{claim}`"))
        }
        _ => AuthError::Malformed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const SIGNING_KEY: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/oidc/signing-private.pem"
    ));
    const OTHER_KEY: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/oidc/other-private.pem"
    ));
    const JWKS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/oidc/jwks.json"
    ));
    const KID: &str = "test-signing-key-1";
    const AUDIENCE: &str = "https://remediator.example.run.app/pubsub/push";
    const PUSHER: &str = "pubsub-push@demo-project.iam.gserviceaccount.com";

    /// A one-route HTTP/1.1 server on 127.0.0.1 serving a JWK set (or an error status), counting requests.
    struct KeyServer {
        url: String,
        hits: Arc<AtomicUsize>,
    }

    async fn key_server(status: u16, body: &'static str, cache_control: &'static str) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/v3/certs", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nCache-Control: {cache_control}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        KeyServer { url, hits }
    }

    fn verifier(server: &KeyServer) -> OidcVerifier {
        let config = OidcConfig {
            keys_url: server.url.clone(),
            ..OidcConfig::new(
                AUDIENCE,
                vec!["PubSub-Push@demo-project.iam.gserviceaccount.com".into()],
            )
        };
        OidcVerifier::new(config, reqwest::Client::new())
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims() -> Value {
        json!({
            "aud": AUDIENCE,
            "azp": "113774264463038321964",
            "email": PUSHER,
            "sub": "113774264463038321964",
            "email_verified": true,
            "iat": now() - 60,
            "exp": now() + 3540,
            "iss": "https://accounts.google.com"
        })
    }

    fn sign_with(key: &[u8], kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn token_with(edit: impl FnOnce(&mut Value)) -> String {
        let mut c = claims();
        edit(&mut c);
        bearer(&sign_with(SIGNING_KEY, KID, &c))
    }

    #[tokio::test]
    async fn a_valid_google_style_token_of_an_allowed_account_is_accepted() {
        let server = key_server(200, JWKS, "public, max-age=19800, must-revalidate").await;
        let v = verifier(&server);
        let pusher = v.verify(Some(&token_with(|_| {}))).await.unwrap();
        assert_eq!(
            pusher,
            VerifiedPusher {
                email: PUSHER.into(),
                subject: "113774264463038321964".into()
            }
        );
        // The bare issuer form is accepted too, and the keys are cached.
        v.verify(Some(&token_with(|c| {
            c["iss"] = json!("accounts.google.com")
        })))
        .await
        .unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_missing_header_is_401() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let err = verifier(&server).verify(None).await.unwrap_err();
        assert_eq!((err.clone(), err.status()), (AuthError::Missing, 401));
        assert_eq!(
            server.hits.load(Ordering::SeqCst),
            0,
            "no key fetch without a token"
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_401() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let token = token_with(|c| {
            c["iat"] = json!(now() - 7200);
            c["exp"] = json!(now() - 3600);
        });
        let err = verifier(&server).verify(Some(&token)).await.unwrap_err();
        assert_eq!((err.clone(), err.status()), (AuthError::Expired, 401));
    }

    #[tokio::test]
    async fn a_token_expired_within_the_leeway_is_accepted() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let token = token_with(|c| c["exp"] = json!(now() - 10));
        verifier(&server).verify(Some(&token)).await.unwrap();
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_403() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let token = token_with(|c| c["aud"] = json!("https://someone-else.example"));
        let err = verifier(&server).verify(Some(&token)).await.unwrap_err();
        assert_eq!((err.clone(), err.status()), (AuthError::WrongAudience, 403));
    }

    #[tokio::test]
    async fn a_token_from_another_issuer_is_401() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let token = token_with(|c| c["iss"] = json!("https://evil.example"));
        let err = verifier(&server).verify(Some(&token)).await.unwrap_err();
        assert_eq!((err.clone(), err.status()), (AuthError::WrongIssuer, 401));
    }

    #[tokio::test]
    async fn a_token_signed_by_the_wrong_key_under_a_published_kid_is_401() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let token = bearer(&sign_with(OTHER_KEY, KID, &claims()));
        let err = verifier(&server).verify(Some(&token)).await.unwrap_err();
        assert_eq!((err.clone(), err.status()), (AuthError::BadSignature, 401));
    }

    #[tokio::test]
    async fn an_unknown_kid_is_401_and_refetches_at_most_once_per_interval() {
        let server = key_server(200, JWKS, "max-age=3600").await;
        let v = verifier(&server);
        v.verify(Some(&token_with(|_| {}))).await.unwrap();
        let forged = bearer(&sign_with(OTHER_KEY, "rotated-or-forged", &claims()));
        for _ in 0..5 {
            let err = v.verify(Some(&forged)).await.unwrap_err();
            assert_eq!((err.clone(), err.status()), (AuthError::UnknownKey, 401));
        }
        assert_eq!(
            server.hits.load(Ordering::SeqCst),
            1,
            "the first fetch is recent: no refetch"
        );
    }

    #[tokio::test]
    async fn an_unknown_kid_triggers_a_refetch_once_the_interval_has_passed() {
        let server = key_server(200, JWKS, "max-age=3600").await;
        let v = verifier(&server);
        v.verify(Some(&token_with(|_| {}))).await.unwrap();
        v.cache.write().unwrap().last_attempt =
            Some(Instant::now() - MIN_REFRESH_INTERVAL - Duration::from_secs(1));
        let forged = bearer(&sign_with(OTHER_KEY, "rotated-or-forged", &claims()));
        assert_eq!(
            v.verify(Some(&forged)).await.unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn alg_none_and_hs256_tokens_are_rejected_before_any_key_lookup() {
        use base64::Engine as _;
        let server = key_server(200, JWKS, "max-age=60").await;
        let v = verifier(&server);
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": KID, "typ": "JWT"})),
            b64(&claims())
        );
        let err = v.verify(Some(&bearer(&none))).await.unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{err}");
        assert_eq!(err.status(), 401);

        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.into());
        // The classic confusion attack: HMAC keyed with the public JWK set.
        let hs = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(JWKS.as_bytes()),
        )
        .unwrap();
        let err = v.verify(Some(&bearer(&hs))).await.unwrap_err();
        assert!(
            matches!(err, AuthError::Malformed(ref m) if m.contains("HS256")),
            "{err}"
        );
        assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_valid_token_of_an_account_not_allowed_is_403() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let token =
            token_with(|c| c["email"] = json!("someone@other-project.iam.gserviceaccount.com"));
        let err = verifier(&server).verify(Some(&token)).await.unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(
            err,
            AuthError::EmailNotAllowed("someone@other-project.iam.gserviceaccount.com".into())
        );
    }

    #[tokio::test]
    async fn an_unverified_email_is_403() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let token = token_with(|c| c["email_verified"] = json!(false));
        let err = verifier(&server).verify(Some(&token)).await.unwrap_err();
        assert_eq!(
            (err.clone(), err.status()),
            (AuthError::EmailNotVerified, 403)
        );
    }

    #[tokio::test]
    async fn an_empty_allow_list_allows_nobody() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let config = OidcConfig {
            keys_url: server.url.clone(),
            ..OidcConfig::new(AUDIENCE, Vec::new())
        };
        let v = OidcVerifier::new(config, reqwest::Client::new());
        assert!(matches!(
            v.verify(Some(&token_with(|_| {}))).await,
            Err(AuthError::EmailNotAllowed(_))
        ));
    }

    #[tokio::test]
    async fn garbage_authorization_headers_are_401() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let v = verifier(&server);
        for header in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer not.a.jwt",
            "Bearer a.b",
            "token",
        ] {
            let err = v.verify(Some(header)).await.unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{header}: {err}");
            assert_eq!(err.status(), 401);
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(
            v.verify(Some(&long)).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_or_failing_key_servers_are_503() {
        let server = key_server(500, "oops", "no-store").await;
        let err = verifier(&server)
            .verify(Some(&token_with(|_| {})))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err}");
        assert_eq!(err.status(), 503);

        let server = key_server(200, r#"{"keys":[{"kty":"EC","kid":"x"}]}"#, "max-age=60").await;
        let err = verifier(&server)
            .verify(Some(&token_with(|_| {})))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err}");

        // A closed port: bind, note the address, drop the listener.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        drop(listener);
        let config = OidcConfig {
            keys_url: url,
            ..OidcConfig::new(AUDIENCE, vec![PUSHER.into()])
        };
        let err = OidcVerifier::new(config, reqwest::Client::new())
            .verify(Some(&token_with(|_| {})))
            .await;
        assert_eq!(err.unwrap_err().status(), 503);
    }

    #[tokio::test]
    async fn stale_keys_are_used_when_a_refresh_fails() {
        let good = key_server(200, JWKS, "max-age=60").await;
        let failing = key_server(500, "oops", "no-store").await;
        let loaded = verifier(&good);
        loaded.verify(Some(&token_with(|_| {}))).await.unwrap();
        let v = verifier(&failing);
        {
            let keys = loaded.cache.read().unwrap().keys.clone();
            let mut cache = v.cache.write().unwrap();
            cache.keys = keys;
            cache.fresh_until = Instant::now().checked_sub(Duration::from_secs(1));
        }
        v.verify(Some(&token_with(|_| {}))).await.unwrap();
        v.verify(Some(&token_with(|_| {}))).await.unwrap();
        assert_eq!(
            failing.hits.load(Ordering::SeqCst),
            1,
            "a failed refresh is not retried at once"
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_retried_for_every_request() {
        let failing = key_server(500, "oops", "no-store").await;
        let v = verifier(&failing);
        for _ in 0..3 {
            assert_eq!(
                v.verify(Some(&token_with(|_| {})))
                    .await
                    .unwrap_err()
                    .status(),
                503
            );
        }
        assert_eq!(failing.hits.load(Ordering::SeqCst), 1);
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[tokio::test]
    async fn the_server_sees_the_pusher_email_or_a_rejection_with_its_status() {
        use crate::server::PushAuth;
        let server = key_server(200, JWKS, "max-age=60").await;
        let auth: Box<dyn PushAuth> = Box::new(verifier(&server));
        assert_eq!(
            auth.verify(&headers(&[("authorization", &token_with(|_| {}))]))
                .await
                .unwrap(),
            PUSHER
        );
        let rejection = auth.verify(&headers(&[])).await.unwrap_err();
        assert_eq!(rejection.status, 401);
        let token = token_with(|c| c["aud"] = json!("https://elsewhere.example"));
        let rejection = auth
            .verify(&headers(&[("authorization", &token)]))
            .await
            .unwrap_err();
        assert_eq!(rejection.status, 403);
        assert!(
            !rejection
                .message
                .contains(token.trim_start_matches("Bearer "))
        );
    }

    /// `Bearer <header>.<payload>.SIGNATURE_REMOVED_BY_GOOGLE`, as Cloud Run forwards a verified token.
    fn stripped(bearer_token: &str) -> String {
        let (rest, _signature) = bearer_token.rsplit_once('.').unwrap();
        format!("{rest}.{SIGNATURE_REMOVED}")
    }

    fn cloud_run_verifier(server: &KeyServer) -> OidcVerifier {
        let config = OidcConfig {
            keys_url: server.url.clone(),
            trust: Trust::CloudRun,
            ..OidcConfig::new(AUDIENCE, vec![PUSHER.into()])
        };
        OidcVerifier::new(config, reqwest::Client::new())
    }

    #[tokio::test]
    async fn a_stripped_token_is_401_when_the_service_does_not_trust_a_front_end() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let err = verifier(&server)
            .verify(Some(&stripped(&token_with(|_| {}))))
            .await
            .unwrap_err();
        assert_eq!(
            (err.clone(), err.status()),
            (AuthError::SignatureRemoved, 401)
        );
        assert_eq!(server.hits.load(Ordering::SeqCst), 0, "no key fetch");
    }

    #[tokio::test]
    async fn behind_cloud_run_a_stripped_token_of_an_allowed_account_is_accepted_without_keys() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let v = cloud_run_verifier(&server);
        let pusher = v
            .verify(Some(&stripped(&token_with(|_| {}))))
            .await
            .unwrap();
        assert_eq!(pusher.email, PUSHER);
        assert_eq!(server.hits.load(Ordering::SeqCst), 0, "no key fetch");
    }

    #[tokio::test]
    async fn behind_cloud_run_every_claim_of_a_stripped_token_is_still_checked() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let v = cloud_run_verifier(&server);
        type Edit = fn(&mut Value);
        let cases: [(&str, Edit, u16); 10] = [
            (
                "wrong audience",
                |c| c["aud"] = json!("https://someone-else.example"),
                403,
            ),
            (
                "email not allowed",
                |c| c["email"] = json!("evil@attacker.iam.gserviceaccount.com"),
                403,
            ),
            (
                "expired",
                |c| {
                    c["iat"] = json!(now() - 7200);
                    c["exp"] = json!(now() - 3600);
                },
                401,
            ),
            ("not valid yet", |c| c["nbf"] = json!(now() + 600), 401),
            (
                "array issuer",
                |c| c["iss"] = json!(["https://accounts.google.com", "https://evil.example"]),
                401,
            ),
            (
                "other issuer",
                |c| c["iss"] = json!("https://evil.example"),
                401,
            ),
            (
                "email not verified",
                |c| c["email_verified"] = json!(false),
                403,
            ),
            (
                "issued in the future",
                |c| c["iat"] = json!(now() + 600),
                401,
            ),
            (
                "lifetime of a day",
                |c| c["exp"] = json!(now() + 24 * 3600),
                401,
            ),
            (
                "no exp",
                |c| {
                    c.as_object_mut().unwrap().remove("exp");
                },
                401,
            ),
        ];
        for (what, edit, status) in cases {
            let err = v
                .verify(Some(&stripped(&token_with(edit))))
                .await
                .unwrap_err();
            assert_eq!(err.status(), status, "{what}: {err}");
        }
        // The same checks for a fully signed token (one code path for both).
        for (what, edit, status) in cases {
            let err = verifier(&server)
                .verify(Some(&token_with(edit)))
                .await
                .unwrap_err();
            assert_eq!(err.status(), status, "signed, {what}: {err}");
        }
    }

    #[tokio::test]
    async fn behind_cloud_run_only_the_exact_marker_skips_the_signature() {
        let server = key_server(200, JWKS, "max-age=60").await;
        let v = cloud_run_verifier(&server);
        let good = token_with(|_| {});
        let (rest, _) = good.rsplit_once('.').unwrap();
        for forged in [
            format!("{rest}.signature_removed_by_google"),
            format!("{rest}.SIGNATURE_REMOVED_BY_GOOGLE_"),
            format!("{rest}.SIGNATURE_REMOVED"),
            format!("{rest}."),
            format!("{rest}.{SIGNATURE_REMOVED}.x"),
        ] {
            let err = v.verify(Some(&forged)).await.unwrap_err();
            assert_eq!(err.status(), 401, "{}: {err}", &forged[forged.len() - 30..]);
        }
        // A token signed by another key under Google's kid: verified, and refused.
        let err = v
            .verify(Some(&bearer(&sign_with(OTHER_KEY, KID, &claims()))))
            .await
            .unwrap_err();
        assert_eq!(err, AuthError::BadSignature);
        // A genuinely signed token is verified against the keys and accepted.
        assert_eq!(v.verify(Some(&good)).await.unwrap().email, PUSHER);
    }

    #[tokio::test]
    async fn an_authorization_header_given_twice_is_refused_whichever_copy_is_genuine() {
        use crate::server::PushAuth;
        let server = key_server(200, JWKS, "max-age=60").await;
        let forged = stripped(&token_with(|c| c["email"] = json!(PUSHER)));
        let genuine = stripped(&token_with(|c| c["email"] = json!(PUSHER)));
        for name in ["authorization", SERVERLESS_AUTHORIZATION] {
            let mut h = http::HeaderMap::new();
            let header = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            h.append(
                header.clone(),
                http::HeaderValue::from_str(&forged).unwrap(),
            );
            h.append(header, http::HeaderValue::from_str(&genuine).unwrap());
            let v: Box<dyn PushAuth> = Box::new(cloud_run_verifier(&server));
            let rejection = v.verify(&h).await.unwrap_err();
            assert_eq!(rejection.status, 400, "{name}: {}", rejection.message);
        }
    }

    #[tokio::test]
    async fn behind_cloud_run_x_serverless_authorization_is_the_token_read() {
        use crate::server::PushAuth;
        let server = key_server(200, JWKS, "max-age=60").await;
        let v: Box<dyn PushAuth> = Box::new(cloud_run_verifier(&server));
        // Cloud Run checked the caller's own token in X-Serverless-Authorization and passed the
        // `Authorization` header through unchecked: a forged stripped token there must not count.
        let forged = stripped(&token_with(|c| c["email"] = json!(PUSHER)));
        let caller = stripped(&token_with(|c| {
            c["email"] = json!("someone@other.iam.gserviceaccount.com")
        }));
        let rejection = v
            .verify(&headers(&[
                ("authorization", &forged),
                (SERVERLESS_AUTHORIZATION, &caller),
            ]))
            .await
            .unwrap_err();
        assert_eq!(rejection.status, 403, "{}", rejection.message);
        assert_eq!(
            v.verify(&headers(&[(SERVERLESS_AUTHORIZATION, &forged)]))
                .await
                .unwrap(),
            PUSHER
        );
        // Without the trust setting the header is ignored.
        let signed: Box<dyn PushAuth> = Box::new(verifier(&server));
        assert_eq!(
            signed
                .verify(&headers(&[(SERVERLESS_AUTHORIZATION, &token_with(|_| {}))]))
                .await
                .unwrap_err()
                .status,
            401
        );
    }

    #[tokio::test]
    async fn a_chunked_key_set_past_the_cap_is_refused_while_streaming() {
        // 64 MiB in 64 KiB chunks, no Content-Length. The verifier must stop reading at the cap: the
        // server then cannot write much more than the cap plus the socket buffers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..1024 {
                let framed = [
                    format!("{:x}\r\n", chunk.len()).into_bytes(),
                    chunk.clone(),
                    b"\r\n".to_vec(),
                ]
                .concat();
                if socket.write_all(&framed).await.is_err() {
                    return;
                }
                counter.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        });
        let config = OidcConfig {
            keys_url: url,
            ..OidcConfig::new(AUDIENCE, vec![PUSHER.into()])
        };
        let err = OidcVerifier::new(config, reqwest::Client::new())
            .verify(Some(&token_with(|_| {})))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::KeysUnavailable(m) if m.contains("larger than")),
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = written.load(Ordering::SeqCst);
        assert!(
            sent < 16 * 1024 * 1024,
            "the server wrote {sent} bytes: the body was read past the cap"
        );
    }

    #[test]
    fn cache_control_max_age_is_parsed() {
        assert_eq!(
            max_age("public, max-age=19800, must-revalidate"),
            Some(Duration::from_secs(19800))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
