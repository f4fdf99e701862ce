//! The HTTP client shared by every Google REST adapter: endpoints, credentials, client-side rate
//! limits, retries of transient failures with jittered exponential backoff, and call counters.
//!
//! Two kinds of pacing. Every API but one has a steady limiter ([`RateLimiter`], GCRA with a burst)
//! that makes a call wait for its turn: their quotas are thousands per minute, so a wait is short.
//! IAM v2 reads (deny policies) have Google's tightest quota, **5 per consumer project per
//! minute**, and their own [`SlidingWindow`] (at most N in any 60 s, default
//! [`IAM_V2_READS_PER_MINUTE`], `--rate-limit iam-v2=N`). In `serve` and `job`, whose runs are on a
//! message's critical path, a read takes a turn free now (or within the wait span from the start, if
//! one is given); `scan`, `explain` and `job --sweep` alone have a budget instead ([`iam_v2_budget`]: what the window
//! allows in `--iam-v2-wait`, 20 reads by default), each read waiting for its turn until the budget
//! is spent. A read with no turn answers at once [`ApiError::ReadQuotaSpent`], and the engine treats
//! those deny policies as not read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::ports::{Api, ApiError, RetryPolicy};

/// How requests are authenticated.
pub enum Credentials {
    /// No `Authorization` header (the simulator, emulators).
    Anonymous,
    /// A fixed bearer token (e.g. `sim:remediator@p.iam.gserviceaccount.com` for the simulator).
    Static(String),
    /// Application Default Credentials through `google-cloud-auth`.
    Adc(google_cloud_auth::credentials::AccessTokenCredentials),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.write_str(match self {
            Self::Anonymous => "Credentials::Anonymous",
            Self::Static(_) => "Credentials::Static(<redacted>)",
            Self::Adc(_) => "Credentials::Adc",
        })
    }
}

impl Credentials {
    /// Application Default Credentials (metadata server, key file, gcloud user credentials).
    pub fn application_default() -> Result<Self, ApiError> {
        google_cloud_auth::credentials::Builder::default()
            .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
            .build_access_token_credentials()
            .map(Self::Adc)
            .map_err(|e| ApiError::Auth(no_credentials(&e.to_string())))
    }

    /// The headers a request carries: `Authorization`, and for Application Default Credentials
    /// with a quota project (what `gcloud auth application-default login` sets up)
    /// `x-goog-user-project`, as Google's own clients send them.
    async fn headers(&self) -> Result<http::HeaderMap, ApiError> {
        let mut headers = http::HeaderMap::new();
        match self {
            Self::Anonymous => {}
            Self::Static(token) => {
                let value =
                    http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        ApiError::Auth("the access token is not a valid header value".to_owned())
                    })?;
                headers.insert(http::header::AUTHORIZATION, value);
            }
            Self::Adc(creds) => {
                use google_cloud_auth::credentials::{CacheableResource, CredentialsProvider};
                match creds.headers(http::Extensions::new()).await {
                    Ok(CacheableResource::New { data, .. }) => headers = data,
                    Ok(CacheableResource::NotModified) => {
                        return Err(ApiError::Auth(no_credentials("no token was returned")));
                    }
                    Err(e) => return Err(ApiError::Auth(no_credentials(&e.to_string()))),
                }
            }
        }
        Ok(headers)
    }
}

/// One line for credentials that cannot give a token, and what to do about it.
fn no_credentials(cause: &str) -> String {
    let first = cause.lines().next().unwrap_or(cause);
    format!(
        "no usable Google credentials ({first}): run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a key file), or give --api-endpoint to use the simulator"
    )
}

/// Client-side pacing for one API (GCRA: a steady rate with a burst of one second's worth).
#[derive(Debug)]
struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    tat: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_second` steadily; `burst` requests at once when idle (default: one second's worth).
    fn new(per_second: f64, burst: Option<u32>) -> Self {
        let interval = Duration::from_secs_f64(1.0 / per_second.max(0.001));
        let tolerance = match burst {
            Some(n) => interval * n.saturating_sub(1),
            None => Duration::from_secs(1),
        };
        Self {
            interval,
            tolerance,
            tat: Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self) {
        let allow_at = {
            let mut tat = self.tat.lock().await;
            let now = Instant::now();
            let current = (*tat).max(now);
            *tat = current + self.interval;
            current.checked_sub(self.tolerance).unwrap_or(now)
        };
        tokio::time::sleep_until(allow_at).await;
    }
}

/// At most `limit` requests in any `window` (a log of the admission times of the last window), and
/// never a wait: a request either fits now or is refused now.
///
/// Unlike [`RateLimiter`] there is no steady rate and no burst on top of it: with Google's quota of
/// 5 per minute, a one-project scan (project, folders, organization: 2-4 reads) goes at once, and no
/// 60 s span ever holds more than `limit` requests, whatever the pattern of calls.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    admitted: std::sync::Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    /// `limit` (at least 1) requests in any `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            admitted: std::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// The most requests admitted in any window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Admits one request now if, counting it, the last window holds at most `limit - reserve`
    /// requests (the reserve is kept for requests that take precedence; it never exceeds
    /// `limit - 1`, so every request can be admitted into an empty window). Never waits.
    pub fn try_acquire(&self, reserve: u32) -> bool {
        self.reserve_slot(reserve, Duration::ZERO).is_some()
    }

    /// Admits one request as soon as the window has room for it (counting `reserve` as above), if
    /// that is within `max_wait`: waits for its turn and returns true, or returns false at once.
    /// Turns are taken in the order asked, so a waiting request is never overtaken.
    pub async fn acquire_within(&self, reserve: u32, max_wait: Duration) -> bool {
        match self.reserve_slot(reserve, max_wait) {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                true
            }
            None => false,
        }
    }

    /// How long until the last turn given out begins, if it is still to come: a request is waiting
    /// for its turn that long (what a progress line shows).
    pub fn waiting_for(&self) -> Option<Duration> {
        let admitted = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        admitted.back().filter(|t| **t > now).map(|t| *t - now)
    }

    /// The turn of one more request, no earlier than every turn already given, at which the window
    /// ending there holds at most `limit - reserve` requests counting it; `None` (nothing taken) when
    /// that is later than `max_wait` from now.
    fn reserve_slot(&self, reserve: u32, max_wait: Duration) -> Option<Instant> {
        let now = Instant::now();
        let mut admitted = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        // A request admitted at `t` counts in the windows [t, t + window): it is forgotten at
        // `t + window`.
        while admitted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            admitted.pop_front();
        }
        let room = (self.limit - reserve.min(self.limit - 1)) as usize;
        let mut at = admitted.back().map_or(now, |last| (*last).max(now));
        loop {
            // Turns are in order, so every earlier turn still counting at `at` is among the last.
            let counting: Vec<&Instant> = admitted
                .iter()
                .filter(|t| at.saturating_duration_since(**t) < self.window)
                .collect();
            if counting.len() < room {
                break;
            }
            // Wait until enough of them age out: the oldest that must go, plus the window, plus a
            // margin so that a read woken (or received) a little late still never makes a window
            // hold more than the limit.
            at = *counting[counting.len() - room] + self.window + TURN_MARGIN;
        }
        if at.saturating_duration_since(now) > max_wait {
            return None;
        }
        admitted.push_back(at);
        Some(at)
    }
}

/// How much later than the window strictly allows a waited-for turn starts.
const TURN_MARGIN: Duration = Duration::from_secs(1);

/// Google's IAM v2 read quota (deny policies): 5 requests per consumer project per minute, and the
/// default of `--rate-limit iam-v2=N`.
pub const IAM_V2_READS_PER_MINUTE: u32 = 5;

/// The window of the IAM v2 read quota.
pub const IAM_V2_WINDOW: Duration = Duration::from_secs(60);

/// The `--rate-limit` key of the IAM v2 read quota (deny-policy reads per minute).
pub const IAM_V2_KEY: &str = "iam-v2";

/// Default client-side rate limits (requests per second), under Google's default quotas.
pub fn default_rate_limits() -> BTreeMap<Api, f64> {
    BTreeMap::from([
        (Api::ResourceManager, 10.0),
        // IAM v1's read quota is 6,000 per minute per consumer project: 80/s leaves a fifth of it to
        // other tools. IAM v2 (deny policies) is not paced here: see [`IAM_V2_READS_PER_MINUTE`].
        (Api::Iam, 80.0),
        (Api::Container, 10.0),
        (Api::Recommender, 5.0),
        (Api::ServiceUsage, 5.0),
        (Api::PolicyTroubleshooter, 5.0),
        (Api::Logging, LOGGING_RATE),
        (Api::OrgPolicy, 10.0),
        (Api::CloudIdentity, 5.0),
        (Api::CloudAsset, CLOUD_ASSET_RATE),
        // Firestore's limits are per database and far above what the state store asks (a get and a
        // put per project a message touches): 50/s only keeps a runaway loop from spending money.
        (Api::Firestore, 50.0),
    ])
}

/// Cloud Asset `ListAssets` is the tightest Google quota we use: 100 requests per minute per consumer
/// project. A sweep lists a few dozen pages at once and then nothing until the next sweep, so its
/// limiter allows a burst of [`CLOUD_ASSET_BURST`] and then [`CLOUD_ASSET_RATE`] per second: at most
/// 70 + 24 = 94 requests in any minute (a limiter with burst b and rate r admits at most b + 60r in
/// any 60 s), leaving a little room for people running `gcloud asset` meanwhile.
pub const CLOUD_ASSET_RATE: f64 = 0.4;
/// See [`CLOUD_ASSET_RATE`].
pub const CLOUD_ASSET_BURST: u32 = 70;

/// Cloud Logging allows 60 `entries.list` per minute per consumer project. Its reads come in bursts
/// (a cold instance's first restorations, each read naming up to 100 projects), so its limiter lets
/// [`LOGGING_BURST`] through at once and then [`LOGGING_RATE`] per second: at most 25 + 30 = 55 in
/// any minute.
pub const LOGGING_RATE: f64 = 0.5;
/// See [`LOGGING_RATE`].
pub const LOGGING_BURST: u32 = 25;

/// The burst a limiter allows when idle, where it is not one second's worth.
fn burst_of(api: Api) -> Option<u32> {
    match api {
        Api::CloudAsset => Some(CLOUD_ASSET_BURST),
        Api::Logging => Some(LOGGING_BURST),
        _ => None,
    }
}

/// Settings for [`Client`].
#[derive(Debug)]
pub struct ClientConfig {
    /// One base URL for every API (the simulator), or `None` for Google's endpoints.
    pub api_endpoint: Option<String>,
    /// Credentials.
    pub credentials: Credentials,
    /// Retry policy for transient errors.
    pub retry: RetryPolicy,
    /// Requests per second per API.
    pub rate_limits: BTreeMap<Api, f64>,
    /// IAM v2 reads (deny policies) in any minute ([`IAM_V2_READS_PER_MINUTE`] by default).
    pub iam_v2_reads_per_minute: u32,
    /// For how long from the client's creation an IAM v2 read may wait for its turn in the window
    /// (zero: never; the default). A span from the start, not a wait per read: reads that come one
    /// after another would otherwise each wait their turn, at 5 a minute, without end.
    pub iam_v2_wait_span: Duration,
    /// The IAM v2 reads a one-shot run (`scan`, `explain`, `job --sweep` alone) makes in all
    /// ([`iam_v2_budget`]), in place of the wait span: every read waits for its turn until the
    /// budget is spent, then every read is refused, so which reads are made depends on the order
    /// they are asked in and on nothing else. `None` (`serve`, `job --subscription`): the window
    /// alone, read after read, for as long as the process runs.
    pub iam_v2_budget: Option<u32>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The project billed for quota (`x-goog-user-project`), overriding the credentials' own
    /// quota project (`--billing-project`).
    pub billing_project: Option<String>,
}

/// The IAM v2 reads a one-shot run allows itself: what `per_minute` reads a minute allow within
/// `span` (turns at 0, 61, 122, ... s: 5 x 4 = 20 in the default 240 s), at least one minute's.
pub fn iam_v2_budget(per_minute: u32, span: Duration) -> u32 {
    let period = (IAM_V2_WINDOW + TURN_MARGIN).as_secs();
    let periods = 1 + span.as_secs() / period;
    per_minute
        .max(1)
        .saturating_mul(u32::try_from(periods).unwrap_or(u32::MAX))
}

/// A count of reads left (see [`ClientConfig::iam_v2_budget`]).
#[derive(Debug)]
struct ReadBudget {
    total: u32,
    left: std::sync::atomic::AtomicU32,
}

impl ReadBudget {
    fn new(total: u32) -> Self {
        Self {
            total,
            left: std::sync::atomic::AtomicU32::new(total),
        }
    }

    /// Takes one read, unless none is left.
    fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn give_back(&self) {
        self.left.fetch_add(1, Ordering::SeqCst);
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            api_endpoint: None,
            credentials: Credentials::Anonymous,
            retry: RetryPolicy::default(),
            rate_limits: default_rate_limits(),
            iam_v2_reads_per_minute: IAM_V2_READS_PER_MINUTE,
            iam_v2_wait_span: Duration::ZERO,
            iam_v2_budget: None,
            timeout: Duration::from_secs(30),
            billing_project: None,
        }
    }
}

/// Calls made and retries, per API.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls per API name (each HTTP request counts, including retries).
    pub by_api: BTreeMap<String, u64>,
    /// Total HTTP requests.
    pub total: u64,
    /// Requests that were retries of a transient failure.
    pub retries: u64,
}

/// The shared Google REST client.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    timeout: Duration,
    endpoint: Option<String>,
    credentials: Credentials,
    retry: RetryPolicy,
    limiters: BTreeMap<Api, RateLimiter>,
    /// IAM v2 reads: their own window, in place of the `iam` limiter.
    iam_v2: SlidingWindow,
    /// Until when an IAM v2 read may wait for its turn (without a budget).
    iam_v2_wait_until: Instant,
    /// The IAM v2 reads a one-shot run allows itself in all, if it has such a budget.
    iam_v2_budget: Option<ReadBudget>,
    calls: BTreeMap<Api, AtomicU64>,
    retries: AtomicU64,
    billing_project: Option<String>,
}

/// A request description: everything but the transport.
pub struct Call<'a, B: Serialize> {
    /// API.
    pub api: Api,
    /// Method name for messages (`projects.getIamPolicy`).
    pub method: &'static str,
    /// The permission this method needs (named in 403 errors when Google does not say).
    pub permission: &'static str,
    /// HTTP method.
    pub http_method: Method,
    /// Path after the host, starting with `v1/...` (no leading slash).
    pub path: String,
    /// Query pairs.
    pub query: Vec<(&'a str, String)>,
    /// JSON body.
    pub body: Option<&'a B>,
}

impl Client {
    /// Builds a client. Fails only if the TLS stack cannot be initialised.
    pub fn new(config: ClientConfig) -> Result<Arc<Self>, ApiError> {
        let http = crate::http::client().map_err(ApiError::Auth)?;
        let limiters = Api::ALL
            .into_iter()
            .map(|api| {
                (
                    api,
                    RateLimiter::new(
                        config.rate_limits.get(&api).copied().unwrap_or(10.0),
                        burst_of(api),
                    ),
                )
            })
            .collect();
        let calls = Api::ALL
            .into_iter()
            .map(|api| (api, AtomicU64::new(0)))
            .collect();
        let endpoint = config
            .api_endpoint
            .map(|e| if e.ends_with('/') { e } else { format!("{e}/") });
        Ok(Arc::new(Self {
            http,
            timeout: config.timeout,
            endpoint,
            credentials: config.credentials,
            retry: config.retry,
            limiters,
            iam_v2: SlidingWindow::new(config.iam_v2_reads_per_minute, IAM_V2_WINDOW),
            iam_v2_wait_until: Instant::now() + config.iam_v2_wait_span,
            iam_v2_budget: config.iam_v2_budget.map(ReadBudget::new),
            calls,
            retries: AtomicU64::new(0),
            billing_project: config.billing_project,
        }))
    }

    /// The IAM v2 reads this client makes in all, if it has a budget ([`ClientConfig::iam_v2_budget`]).
    pub fn iam_v2_budget(&self) -> Option<u32> {
        self.iam_v2_budget.as_ref().map(|b| b.total)
    }

    /// How long a deny-policy read is still waiting for its turn in the IAM v2 read quota, if one is.
    pub fn iam_v2_waiting_for(&self) -> Option<Duration> {
        self.iam_v2.waiting_for()
    }

    /// Counters of the calls made so far.
    pub fn counts(&self) -> CallCounts {
        let by_api: BTreeMap<String, u64> = self
            .calls
            .iter()
            .map(|(api, n)| (api.name().to_owned(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        CallCounts {
            total: by_api.values().sum(),
            by_api,
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    fn url(&self, api: Api, path: &str) -> String {
        match &self.endpoint {
            Some(base) => format!("{base}{path}"),
            None => format!("https://{}.googleapis.com/{path}", api.name()),
        }
    }

    /// Sends a call, retrying transient failures, and decodes the JSON answer.
    pub async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        call: Call<'_, B>,
    ) -> Result<T, ApiError> {
        self.send_paced(call, Pacing::Steady).await
    }

    /// Sends an IAM v2 read within the IAM v2 read quota: each attempt (retries too, as Google counts
    /// them) must get a turn in the window, leaving `reserve` of it to reads that take precedence:
    /// with `wait`, before the client's wait span ends, else at once (for reads made ahead of need);
    /// otherwise the answer is [`ApiError::ReadQuotaSpent`] at once, nothing sent.
    /// Google's own 429 is answered the same way, without retrying (its quota is shared by every
    /// caller of the consumer project); other transient failures are retried as usual.
    pub async fn send_iam_v2<B: Serialize, T: DeserializeOwned>(
        &self,
        call: Call<'_, B>,
        reserve: u32,
        wait: bool,
    ) -> Result<T, ApiError> {
        self.send_paced(call, Pacing::Window { reserve, wait })
            .await
    }

    /// Takes a turn in the IAM v2 window for one read (see [`Self::send_iam_v2`]), or says there
    /// is none. With a budget, a read is refused only once the budget is spent (and then every later
    /// one is too); until then it waits for its turn in the window, so which reads are made depends
    /// only on the order they are asked in, and precedence is that order (a reserve would only spread
    /// the budget over more minutes). A read ahead still leaves the reserve to reads that need it.
    async fn iam_v2_turn(&self, reserve: u32, wait: bool) -> bool {
        let Some(budget) = &self.iam_v2_budget else {
            let max_wait = match wait {
                true => self
                    .iam_v2_wait_until
                    .saturating_duration_since(Instant::now()),
                false => Duration::ZERO,
            };
            return self.iam_v2.acquire_within(reserve, max_wait).await;
        };
        if !budget.take() {
            return false;
        }
        if wait {
            return self.iam_v2.acquire_within(0, Duration::MAX).await;
        }
        // A read made ahead of need takes a turn only if one is free now, and gives the budget
        // back if not.
        let now = self.iam_v2.try_acquire(reserve);
        if !now {
            budget.give_back();
        }
        now
    }

    async fn send_paced<B: Serialize, T: DeserializeOwned>(
        &self,
        call: Call<'_, B>,
        pacing: Pacing,
    ) -> Result<T, ApiError> {
        if let Some(bad) = unsafe_path_char(&call.path) {
            // Ids and names from messages end up in paths: one that could reach another resource
            // (`?`, `#`, `%`, `..`, spaces) is refused before anything is sent.
            return Err(ApiError::Invalid {
                api: call.api,
                method: call.method,
                message: format!("refusing a request path with {bad}"),
            });
        }
        let url = self.url(call.api, &call.path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if attempt > 1 {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            let result = match pacing {
                Pacing::Window { reserve, wait } if !self.iam_v2_turn(reserve, wait).await => {
                    return Err(ApiError::ReadQuotaSpent {
                        api: call.api,
                        method: call.method,
                        limit: self.iam_v2.limit(),
                        at_google: false,
                        budget: self.iam_v2_budget(),
                    });
                }
                Pacing::Window { .. } => match self.send_once(&call, &url, false).await {
                    // Google's quota is the consumer project's, shared with every other caller: a
                    // 429 means it is spent for up to a minute, and a retry would only spend more.
                    Err(e) if e.code() == Some(429) => {
                        tracing::debug!(api = %call.api, method = call.method, error = %e, "IAM v2 read quota spent at Google");
                        return Err(ApiError::ReadQuotaSpent {
                            api: call.api,
                            method: call.method,
                            limit: self.iam_v2.limit(),
                            at_google: true,
                            budget: None,
                        });
                    }
                    other => other,
                },
                Pacing::Steady => self.send_once(&call, &url, true).await,
            };
            match result {
                Err(e) if e.is_transient() && attempt < self.retry.max_attempts => {
                    tracing::debug!(api = %call.api, method = call.method, attempt, error = %e, "retrying");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once<B: Serialize, T: DeserializeOwned>(
        &self,
        call: &Call<'_, B>,
        url: &str,
        steady: bool,
    ) -> Result<T, ApiError> {
        if let Some(limiter) = self.limiters.get(&call.api).filter(|_| steady) {
            limiter.acquire().await;
        }
        // Credentials first: a call that cannot be authenticated is not made, nor counted.
        let mut headers = self.credentials.headers().await?;
        if let Some(project) = &self.billing_project
            && let Ok(value) = http::HeaderValue::from_str(project)
        {
            headers.insert("x-goog-user-project", value);
        }
        if let Some(counter) = self.calls.get(&call.api) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut request = self
            .http
            .request(call.http_method.clone(), url)
            .timeout(self.timeout)
            .headers(headers);
        if !call.query.is_empty() {
            let pairs: Vec<(&str, &str)> =
                call.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request = request.query(&pairs);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let transport = |e: reqwest::Error| ApiError::Transport {
            api: call.api,
            method: call.method,
            message: e.without_url().to_string(),
        };
        let response = request.send().await.map_err(transport)?;
        let code = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        if !(200..300).contains(&code) {
            return Err(decode_error(call, code, &bytes));
        }
        let text: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de).map_err(|e| ApiError::Decode {
            api: call.api,
            method: call.method,
            message: format!("at `{}`: {}", e.path(), e.inner()),
        })
    }
}

/// How a call is paced.
#[derive(Clone, Copy)]
enum Pacing {
    /// The API's steady limiter (waits for a turn).
    Steady,
    /// The IAM v2 read window, keeping `reserve` of it for reads that take precedence; with `wait`,
    /// waits for a turn until the client's `iam_v2_wait_until`, else takes one only if free now.
    Window {
        /// Turns left to reads that take precedence.
        reserve: u32,
        /// Whether the call may wait for a turn.
        wait: bool,
    },
}

#[derive(serde::Deserialize, Default)]
struct GoogleErrorBody {
    #[serde(default)]
    error: GoogleError,
}

#[derive(serde::Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

fn decode_error<B: Serialize>(call: &Call<'_, B>, code: u16, body: &[u8]) -> ApiError {
    let parsed: GoogleErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let info = parsed.error.details.iter().find(|d| {
        d.get("@type").and_then(|t| t.as_str()) == Some("type.googleapis.com/google.rpc.ErrorInfo")
    });
    let reason = info
        .and_then(|i| i.get("reason"))
        .and_then(|r| r.as_str())
        .map(str::to_owned);
    let named = info
        .and_then(|i| i.pointer("/metadata/permission"))
        .and_then(|p| p.as_str())
        .map(str::to_owned);
    let permission = match code {
        403 if reason.as_deref() != Some("SERVICE_DISABLED") => {
            named.or_else(|| Some(call.permission.to_owned()))
        }
        _ => named,
    };
    let message = if parsed.error.message.is_empty() {
        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
    } else {
        parsed.error.message
    };
    let status = if parsed.error.status.is_empty() {
        http_status_name(code).to_owned()
    } else {
        parsed.error.status
    };
    ApiError::Status {
        api: call.api,
        method: call.method,
        code,
        status,
        message,
        permission,
        reason,
    }
}

fn http_status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "UNKNOWN",
    }
}
/// What makes a request path unsafe, if anything: every path is built from Google ids, emails and
/// resource names, which use only letters, digits and `-._@~:/`.
fn unsafe_path_char(path: &str) -> Option<String> {
    // IAM v2 names carry their attachment point percent-encoded inside one segment, and that
    // encoding is encoded again on the wire (`%252F`, as gcloud and Google's clients send it): an
    // escaped slash stays inside its segment, so that one sequence is allowed.
    let path = &path.replace("%252F", "~");
    // Firestore's default database is named `(default)`, in parentheses, and Google's paths carry
    // it literally (`v1/projects/P/databases/(default)/documents/...`): that one segment is allowed.
    let path = &path.replace("/databases/(default)/", "/databases/default/");
    if path
        .split('/')
        .any(|seg| seg == ".." || seg == "." || seg.is_empty())
    {
        return Some("an empty, `.` or `..` segment".to_owned());
    }
    path.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._@~:/".contains(*c)))
        .map(|c| format!("the character {c:?}"))
}

#[cfg(test)]
mod limiter_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cloud_asset_calls_stay_inside_googles_quota_of_100_per_minute() {
        let limiter = RateLimiter::new(CLOUD_ASSET_RATE, burst_of(Api::CloudAsset));
        let start = Instant::now();
        let mut within_a_minute = 0;
        for _ in 0..200 {
            limiter.acquire().await;
            if start.elapsed() < Duration::from_secs(60) {
                within_a_minute += 1;
            }
        }
        // The burst goes at once, then 0.4/s: 70 + 24 in the first minute (inside 100).
        assert!((90..=95).contains(&within_a_minute), "{within_a_minute}");
    }

    #[tokio::test(start_paused = true)]
    async fn audit_log_reads_go_at_once_in_a_burst_and_stay_inside_60_per_minute() {
        let limiter = RateLimiter::new(LOGGING_RATE, burst_of(Api::Logging));
        let start = Instant::now();
        for _ in 0..LOGGING_BURST {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst waits for nothing");
        let mut within_a_minute = LOGGING_BURST;
        for _ in 0..100 {
            limiter.acquire().await;
            if start.elapsed() < Duration::from_secs(60) {
                within_a_minute += 1;
            }
        }
        assert!((50..=56).contains(&within_a_minute), "{within_a_minute}");
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    /// No 60 s window of the (sorted) admission times holds more than `limit`.
    fn assert_at_most_per_window(admitted: &[Duration], limit: usize) {
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|u| **u < *t + IAM_V2_WINDOW)
                .count();
            assert!(
                in_window <= limit,
                "{in_window} admitted in the minute from {t:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_project_scan_of_four_deny_reads_never_waits() {
        let window = SlidingWindow::new(IAM_V2_READS_PER_MINUTE, IAM_V2_WINDOW);
        let start = Instant::now();
        for _ in 0..4 {
            assert!(window.try_acquire(0));
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_never_admits_more_than_its_limit_in_any_sixty_seconds() {
        let window = SlidingWindow::new(5, IAM_V2_WINDOW);
        let start = Instant::now();
        let mut admitted: Vec<Duration> = Vec::new();
        // Tries every 700 ms for ten minutes, with an irregular pattern of reserves.
        for i in 0..860u32 {
            if window.try_acquire(i % 3) {
                admitted.push(start.elapsed());
            }
            tokio::time::advance(Duration::from_millis(700)).await;
        }
        assert_at_most_per_window(&admitted, 5);
        // And it is not starved: about 5 a minute over ten minutes.
        assert!((45..=50).contains(&admitted.len()), "{}", admitted.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_budgeted_client_makes_exactly_its_budget_of_reads_each_in_its_turn_and_then_none() {
        let client = Client::new(ClientConfig {
            iam_v2_budget: Some(iam_v2_budget(5, Duration::from_secs(240))),
            ..ClientConfig::default()
        })
        .unwrap();
        let start = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..20 {
            // Projects' own reads (reserve 1): in a budget, the order is the precedence.
            assert!(client.iam_v2_turn(1, true).await, "within the budget");
            turns.push(start.elapsed());
        }
        assert_at_most_per_window(&turns, 5);
        assert!(
            turns[19] < Duration::from_secs(240),
            "the budget fits the span: {:?}",
            turns[19]
        );
        // Spent: refused at once, even a minute later when the window has room again.
        let refused_at = Instant::now();
        assert!(!client.iam_v2_turn(0, true).await);
        assert_eq!(refused_at.elapsed(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(!client.iam_v2_turn(0, false).await);
        assert!(!client.iam_v2_turn(0, true).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_ahead_with_no_turn_free_now_gives_its_share_of_the_budget_back() {
        let client = Client::new(ClientConfig {
            iam_v2_budget: Some(6),
            ..ClientConfig::default()
        })
        .unwrap();
        for _ in 0..5 {
            assert!(client.iam_v2_turn(0, false).await);
        }
        // The window is full: a read ahead is refused now, and the budget's sixth read is kept.
        assert!(!client.iam_v2_turn(0, false).await);
        let start = Instant::now();
        assert!(
            client.iam_v2_turn(0, true).await,
            "the sixth read, in its turn"
        );
        assert!(start.elapsed() >= IAM_V2_WINDOW);
        assert!(!client.iam_v2_turn(0, true).await, "then none");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_waiting_for_its_turn_says_how_long_it_still_waits() {
        let window = std::sync::Arc::new(SlidingWindow::new(1, IAM_V2_WINDOW));
        assert!(window.try_acquire(0));
        assert_eq!(window.waiting_for(), None, "a turn taken now is no wait");
        let waiting = tokio::spawn({
            let window = window.clone();
            async move { window.acquire_within(0, Duration::MAX).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(window.waiting_for(), Some(IAM_V2_WINDOW + TURN_MARGIN));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            window.waiting_for(),
            Some(IAM_V2_WINDOW + TURN_MARGIN - Duration::from_secs(20))
        );
        assert!(waiting.await.unwrap());
        assert_eq!(window.waiting_for(), None, "the turn came");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_window_refuses_at_once_and_admits_again_when_the_oldest_read_ages_out() {
        let window = SlidingWindow::new(5, IAM_V2_WINDOW);
        assert!(window.try_acquire(0));
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..4 {
            assert!(window.try_acquire(0));
        }
        let start = Instant::now();
        assert!(!window.try_acquire(0));
        assert_eq!(start.elapsed(), Duration::ZERO, "a refusal never waits");
        tokio::time::advance(Duration::from_secs(49)).await;
        assert!(!window.try_acquire(0));
        // The first read is a minute old: one slot, and only one, is free again.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(window.try_acquire(0));
        assert!(!window.try_acquire(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_allowed_to_wait_takes_the_next_turn_in_order_and_one_past_its_wait_is_refused_at_once()
     {
        let window = std::sync::Arc::new(SlidingWindow::new(2, IAM_V2_WINDOW));
        let start = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..7 {
            let w = window.clone();
            turns.push(tokio::spawn(async move {
                w.acquire_within(0, Duration::from_secs(150))
                    .await
                    .then(|| start.elapsed())
            }));
            tokio::task::yield_now().await;
        }
        let mut got = Vec::new();
        for t in turns {
            got.push(t.await.unwrap());
        }
        let s = |n| Some(Duration::from_secs(n));
        // Two a minute (each waited-for turn a second past the window), and the seventh's turn
        // (183 s) is past its wait.
        assert_eq!(got, vec![s(0), s(0), s(61), s(61), s(122), s(122), None]);
        let before = Instant::now();
        assert!(!window.acquire_within(0, Duration::from_secs(10)).await);
        assert_eq!(before.elapsed(), Duration::ZERO, "refused without waiting");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_and_refused_reads_together_never_exceed_the_limit_in_any_sixty_seconds() {
        let window = std::sync::Arc::new(SlidingWindow::new(5, IAM_V2_WINDOW));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let w = window.clone();
            let wait = Duration::from_secs(u64::from(i % 4) * 40);
            tasks.push(tokio::spawn(async move {
                w.acquire_within(i % 2, wait).await.then(|| start.elapsed())
            }));
            tokio::time::advance(Duration::from_millis(900)).await;
        }
        let mut admitted: Vec<Duration> = Vec::new();
        for t in tasks {
            admitted.extend(t.await.unwrap());
        }
        admitted.sort();
        assert_at_most_per_window(&admitted, 5);
        // Six minutes of asking, and waits of up to two minutes past that: about five a minute for
        // those eight minutes were admitted.
        assert!((35..=40).contains(&admitted.len()), "{}", admitted.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_keeps_the_last_slots_for_reads_that_take_precedence() {
        let window = SlidingWindow::new(5, IAM_V2_WINDOW);
        for _ in 0..4 {
            assert!(window.try_acquire(1));
        }
        assert!(!window.try_acquire(1), "the fifth slot is kept");
        assert!(
            window.try_acquire(0),
            "and taken by a read without a reserve"
        );
        // A reserve never shuts a request out of an empty window, even with a limit of 1.
        let one = SlidingWindow::new(1, IAM_V2_WINDOW);
        assert!(one.try_acquire(1));
    }
}

#[cfg(test)]
mod path_tests {
    use super::unsafe_path_char;

    #[test]
    fn paths_built_from_google_names_are_safe() {
        for p in [
            "v1/projects/shop-prod:getIamPolicy",
            "v1/projects/-/serviceAccounts/n@p.iam.gserviceaccount.com",
            "v1/projects/1/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations/0a1b-2c:markClaimed",
            "v1/organizations/123/roles/custom_role",
            "v1/projects/p/databases/(default)/documents/remediator-projects/folders~2F12",
            "v1/projects/p/databases/(default)/documents:commit",
        ] {
            assert_eq!(unsafe_path_char(p), None, "{p}");
        }
    }

    #[test]
    fn a_name_that_could_reach_another_resource_is_refused() {
        for p in [
            "v1/projects/excluded-b?x=:prod-a",
            "v1/projects/a#b",
            "v1/projects/a%2Fb",
            "v1/projects/../organizations/1",
            "v1/projects/a b",
            "v1/projects//x",
            "v1/projects/p/databases/(other)/documents",
            "v1/projects/(default)/databases/d/documents",
            "v1/projects/p/databases/(default)x/documents",
        ] {
            assert!(unsafe_path_char(p).is_some(), "{p}");
        }
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering one request `{}` and returning what it was sent.
    async fn one_request() -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
        });
        (base, task)
    }

    fn call() -> Call<'static, ()> {
        Call {
            api: Api::ResourceManager,
            method: "projects.get",
            permission: "resourcemanager.projects.get",
            http_method: Method::GET,
            path: "v3/projects/p".to_owned(),
            query: Vec::new(),
            body: None,
        }
    }

    #[tokio::test]
    async fn the_billing_project_is_sent_as_x_goog_user_project_beside_the_token() {
        let (base, asked) = one_request().await;
        let client = Client::new(ClientConfig {
            api_endpoint: Some(base),
            credentials: Credentials::Static("t0k3n".to_owned()),
            billing_project: Some("billed-project".to_owned()),
            ..ClientConfig::default()
        })
        .unwrap();
        let _: serde_json::Value = client.send(call()).await.unwrap();
        let request = asked.await.unwrap();
        assert!(request.contains("authorization: bearer t0k3n"), "{request}");
        assert!(
            request.contains("x-goog-user-project: billed-project"),
            "{request}"
        );
        assert_eq!(client.counts().total, 1);
    }

    #[tokio::test]
    async fn a_call_whose_credentials_fail_is_not_made_nor_counted() {
        let client = Client::new(ClientConfig {
            api_endpoint: Some("http://127.0.0.1:9/".to_owned()),
            credentials: Credentials::Static("bad\ntoken".to_owned()),
            ..ClientConfig::default()
        })
        .unwrap();
        let err = client
            .send::<(), serde_json::Value>(call())
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Auth(_)), "{err}");
        assert_eq!(client.counts().total, 0);
    }

    #[test]
    fn missing_credentials_are_one_line_naming_the_fix() {
        let line = no_credentials("Fetching the token resulted in transient errors\nmore");
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("gcloud auth application-default login"),
            "{line}"
        );
        assert!(line.contains("--api-endpoint"), "{line}");
    }
}
