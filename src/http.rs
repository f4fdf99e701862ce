//! The process's one HTTP client: a single connection pool and TLS configuration shared by the
//! Google API client, the notification channels, the push-token key fetcher and the metadata-server
//! lookup. Callers set their own deadline on each request (`RequestBuilder::timeout`); the shared
//! client only bounds connecting.

use std::sync::OnceLock;
use std::time::Duration;

/// How long establishing a connection may take, for every caller.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

static SHARED: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();

/// The shared client (cheap to clone: clones share the pool). Fails only if the TLS stack cannot be
/// initialised, and then fails the same way for every caller.
pub fn client() -> Result<reqwest::Client, String> {
    SHARED
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(64)
                .user_agent(concat!("gke-iam-remediator/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        })
        .clone()
}
