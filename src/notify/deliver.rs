//! The delivery engine: Notification v1 messages in (from `POST /pubsub/notify` push deliveries or
//! `job --subscription … --deliver-notifications` pulls, both transports outside this module), Slack /
//! email / webhook messages out.
//!
//! Owns routing (per the policy's `notifications:` section), digesting (notifications for the same
//! target within the digest window go out as one message: a burst never floods a channel), sending
//! each target independently with retries and backoff (a broken channel never blocks the others),
//! and the answer to Pub/Sub: ack when every target got it, retry (503 / nack) when a target still
//! fails after its budget, so Pub/Sub redelivers and dead-letters past the subscription's limit. On
//! redelivery, targets that already succeeded for that notification id are not sent again: a
//! bounded in-memory record per (target, notification id), and, when one is given, a
//! [`DeliveryRecord`] every instance shares (the state store), so another instance never sends a
//! notification a channel already got.
//!
//! Secrets (Slack URL, SMTP password, webhook URL and key) are read once from the environment
//! variables the policy names, held as `secrecy::SecretString`, and never logged or printed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::email::EmailChannel;
use super::routing::{ChannelKind, ChannelSpec, NotificationsConfig, Target, WebhookUrl};
use super::slack::SlackChannel;
use super::webhook::WebhookChannel;
use super::{Notification, SCHEMA_V1};
use crate::bounded::BoundedMap;
use crate::intake;
use crate::intake::Verdict;

/// What one channel send carries: one notification, or several (a digest) for the same target.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The notifications, in arrival order.
    pub notifications: Vec<Notification>,
    /// Email recipients (empty for Slack and webhooks).
    pub to: Vec<String>,
}

/// A failed send. The message never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    /// Worth another attempt (connection error, timeout, 408, 429, 5xx, SMTP 4xx).
    pub retryable: bool,
    /// The receiver asked to wait this long.
    pub retry_after: Option<Duration>,
    /// What happened.
    pub message: String,
}

impl SendError {
    /// A retryable failure.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            retry_after: None,
            message: message.into(),
        }
    }

    /// A failure that another attempt will not fix (it still fails the delivery).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// A channel: makes one attempt to send a delivery. Retries are the engine's.
pub trait Channel: Send + Sync + std::fmt::Debug {
    /// The channel's name in the policy file.
    fn name(&self) -> &str;
    /// Its type.
    fn kind(&self) -> ChannelKind;
    /// One attempt.
    fn send<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>>;
}

/// Delivery could not be set up (start-up errors). Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// An environment variable the policy names is unset or empty.
    #[error("notification channel `{channel}`: environment variable {variable} is not set")]
    MissingSecret {
        /// Channel name.
        channel: String,
        /// The variable.
        variable: String,
    },
    /// A channel could not be built.
    #[error("notification channel `{channel}`: {message}")]
    Channel {
        /// Channel name.
        channel: String,
        /// Why.
        message: String,
    },
}

/// Timing of digests and retries.
#[derive(Clone, Debug)]
pub struct DeliverOptions {
    /// Digest window (from the first notification of a batch to the send).
    pub window: Duration,
    /// Attempts per send.
    pub attempts: u32,
    /// First backoff; doubles per attempt up to `max_backoff`.
    pub backoff: Duration,
    /// Longest backoff (also caps `Retry-After`).
    pub max_backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// A batch reaching this size is sent at once.
    pub max_batch: usize,
    /// (target, notification id) pairs remembered as delivered.
    pub dedupe_capacity: usize,
}

impl DeliverOptions {
    /// Options from the policy's `notifications:` section.
    pub fn from_config(config: &NotificationsConfig) -> Self {
        Self {
            window: Duration::from_secs(config.digest_window_seconds),
            attempts: config.retry_attempts.max(1),
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            timeout: Duration::from_secs(config.timeout_seconds.max(1)),
            max_batch: 1000,
            dedupe_capacity: 100_000,
        }
    }
}

/// Counters.
#[derive(Debug, Default, Serialize)]
pub struct DeliveryStats {
    /// Notifications received.
    pub received: AtomicU64,
    /// Messages that were not Notification v1 (acknowledged).
    pub malformed: AtomicU64,
    /// Notifications no route took (acknowledged).
    pub unrouted: AtomicU64,
    /// Channel messages sent (a digest counts once).
    pub sent: AtomicU64,
    /// (target, notification) pairs delivered.
    pub delivered: AtomicU64,
    /// (target, notification) pairs skipped because they were already delivered.
    pub already_delivered: AtomicU64,
    /// Failed send attempts.
    pub failed_attempts: AtomicU64,
    /// Deliveries answered with a retry.
    pub retries: AtomicU64,
}

type SendOutcome = Option<Result<(), String>>;

/// What a shared record says of one (target, notification) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryClaim {
    /// This instance may send it (the claim holds for a lease; settle it after the send).
    Mine,
    /// It was delivered before (by any instance).
    Delivered,
    /// Another instance is sending it now: ask for a redelivery, which finds it settled.
    Busy,
}

/// The record of deliveries every instance shares (implemented over the state store).
pub trait DeliveryRecord: Send + Sync {
    /// Claims the delivery of notification `id` to `target` (a digest of the target's key).
    fn claim<'a>(
        &'a self,
        target: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<DeliveryClaim, String>>;
    /// Settles a claim: delivered, or given back for a later attempt.
    fn settle<'a>(&'a self, target: &'a str, id: &'a str, delivered: bool) -> BoxFuture<'a, ()>;
}

/// The first 128 bits of SHA-256 over a (target, notification id) pair: what the de-duplication set keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DeliveredKey([u8; 16]);

impl DeliveredKey {
    fn of(pair: &str) -> Self {
        let digest = Sha256::digest(pair.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }
}

struct Batch {
    seq: u64,
    target: Target,
    notifications: Vec<Notification>,
    ids: HashSet<String>,
    done: watch::Sender<SendOutcome>,
}

struct State {
    seq: u64,
    /// Delivered (target, notification id) pairs, as fixed-size digests: the memory this set holds is
    /// `dedupe_capacity` times a few dozen bytes, however long the ids or recipient lists are; the
    /// oldest delivered is forgotten first.
    delivered: BoundedMap<DeliveredKey, ()>,
    pending: HashMap<String, Batch>,
    inflight: HashMap<String, watch::Receiver<SendOutcome>>,
}

/// The delivery engine. Create once, share as `Arc`.
pub struct Deliverer {
    config: NotificationsConfig,
    channels: BTreeMap<String, Arc<dyn Channel>>,
    options: DeliverOptions,
    state: std::sync::Mutex<State>,
    /// The record every instance shares, if any.
    record: std::sync::OnceLock<Arc<dyn DeliveryRecord>>,
    /// Counters.
    pub stats: DeliveryStats,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("channels", &self.channels)
            .field("routes", &self.config.routes)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// An engine over ready-made channels (tests use fakes and loopback receivers).
    pub fn new(
        config: NotificationsConfig,
        channels: Vec<Arc<dyn Channel>>,
        options: DeliverOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            channels: channels
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect(),
            state: std::sync::Mutex::new(State {
                seq: 0,
                delivered: BoundedMap::new(options.dedupe_capacity),
                pending: HashMap::new(),
                inflight: HashMap::new(),
            }),
            options,
            record: std::sync::OnceLock::new(),
            stats: DeliveryStats::default(),
        })
    }

    /// De-duplicates through a record every instance shares (once, at start-up).
    pub fn share_record(&self, record: Arc<dyn DeliveryRecord>) {
        let _ = self.record.set(record);
    }

    /// Builds every channel of the policy's `notifications:` section, reading secrets through `env`
    /// (the process environment in production). Fails fast on a missing variable.
    pub fn from_config(
        config: &NotificationsConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<Self>, DeliverError> {
        let options = DeliverOptions::from_config(config);
        let http = crate::http::client().map_err(|message| DeliverError::Channel {
            channel: "*".to_owned(),
            message,
        })?;
        let secret = |channel: &str, variable: &str| -> Result<SecretString, DeliverError> {
            match env(variable) {
                Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
                _ => Err(DeliverError::MissingSecret {
                    channel: channel.to_owned(),
                    variable: variable.to_owned(),
                }),
            }
        };
        let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
        for c in &config.channels {
            let channel: Arc<dyn Channel> = match &c.spec {
                ChannelSpec::Slack { url_env } => Arc::new(SlackChannel::new(
                    &c.name,
                    secret(&c.name, url_env)?,
                    http.clone(),
                    options.timeout,
                )),
                ChannelSpec::Webhook { url, key_env } => {
                    let url = match url {
                        WebhookUrl::Plain(u) => SecretString::from(u.clone()),
                        WebhookUrl::Env(variable) => secret(&c.name, variable)?,
                    };
                    Arc::new(WebhookChannel::new(
                        &c.name,
                        url,
                        secret(&c.name, key_env)?,
                        http.clone(),
                        options.timeout,
                    ))
                }
                ChannelSpec::Email(email) => {
                    let password = match &email.credentials {
                        Some((_, variable)) => Some(secret(&c.name, variable)?),
                        None => None,
                    };
                    Arc::new(
                        EmailChannel::new(&c.name, email, password, options.timeout).map_err(
                            |message| DeliverError::Channel {
                                channel: c.name.clone(),
                                message,
                            },
                        )?,
                    )
                }
            };
            channels.push(channel);
        }
        Ok(Self::new(config.clone(), channels, options))
    }

    /// The routing configuration.
    pub fn config(&self) -> &NotificationsConfig {
        &self.config
    }

    /// Handles one Pub/Sub message carrying a Notification v1.
    pub async fn handle(self: &Arc<Self>, message: &intake::Message) -> Verdict {
        match parse(&message.data) {
            Ok(n) => self.deliver(n).await,
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message_id = %message.message_id, error = %e, "not a Notification v1: acknowledged");
                Verdict::Ack
            }
        }
    }

    /// Routes one notification and delivers it to every target; a retry verdict if any target still
    /// fails after its budget (targets that succeeded are remembered and skipped on redelivery).
    pub async fn deliver(self: &Arc<Self>, n: Notification) -> Verdict {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let targets = self.config.targets(&n);
        if targets.is_empty() {
            self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(notification_id = %n.id, outcome = %n.outcome, "no route takes this notification");
            return Verdict::Ack;
        }
        let id = n.id.clone();
        let results = futures::future::join_all(targets.into_iter().map(|t| {
            let name = t.channel.clone();
            let me = self.clone();
            let n = n.clone();
            async move { (name, me.deliver_to(t, n).await) }
        }))
        .await;
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|e| format!("channel {name}: {e}")))
            .collect();
        if failed.is_empty() {
            Verdict::Ack
        } else {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let reason = failed.join("; ");
            tracing::warn!(notification_id = %id, %reason, "delivery failed: asking Pub/Sub to redeliver");
            Verdict::Retry(reason)
        }
    }

    async fn deliver_to(self: Arc<Self>, target: Target, n: Notification) -> Result<(), String> {
        let Some(record) = self.record.get().cloned() else {
            return self.deliver_to_once(target, n).await;
        };
        let key = target.key();
        let target_digest = hex(&DeliveredKey::of(&key).0);
        match record.claim(&target_digest, &n.id).await {
            Ok(DeliveryClaim::Mine) => {}
            Ok(DeliveryClaim::Delivered) => {
                self.stats.already_delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(channel = %target.channel, notification_id = %n.id, "delivered before (shared record): not sent again");
                return Ok(());
            }
            Ok(DeliveryClaim::Busy) => {
                return Err("another instance is sending it now".to_owned());
            }
            Err(e) => return Err(format!("the shared delivery record cannot be read: {e}")),
        }
        let id = n.id.clone();
        let result = self.deliver_to_once(target, n).await;
        record.settle(&target_digest, &id, result.is_ok()).await;
        result
    }

    async fn deliver_to_once(
        self: Arc<Self>,
        target: Target,
        n: Notification,
    ) -> Result<(), String> {
        let key = target.key();
        let dk = format!("{key}\u{1f}{}", n.id);
        let mut start_timer = None;
        let mut flush_now = None;
        let rx = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.delivered.contains_key(&DeliveredKey::of(&dk)) {
                self.stats.already_delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(channel = %target.channel, notification_id = %n.id, "already delivered: not sent again");
                return Ok(());
            }
            if let Some(rx) = st.inflight.get(&dk) {
                rx.clone()
            } else {
                if !st.pending.contains_key(&key) {
                    st.seq += 1;
                    let seq = st.seq;
                    let (done, _) = watch::channel(None);
                    st.pending.insert(
                        key.clone(),
                        Batch {
                            seq,
                            target: target.clone(),
                            notifications: Vec::new(),
                            ids: HashSet::new(),
                            done,
                        },
                    );
                    start_timer = Some(seq);
                }
                let batch = st.pending.get_mut(&key).expect("inserted above");
                if batch.ids.insert(n.id.clone()) {
                    batch.notifications.push(n);
                }
                if batch.notifications.len() >= self.options.max_batch {
                    flush_now = Some(batch.seq);
                }
                batch.done.subscribe()
            }
        };
        if let Some(seq) = start_timer {
            let me = self.clone();
            let key = key.clone();
            let window = self.options.window;
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                me.flush(&key, seq).await;
            });
        }
        if let Some(seq) = flush_now {
            let me = self.clone();
            let key = key.clone();
            tokio::spawn(async move { me.flush(&key, seq).await });
        }
        wait(rx).await
    }

    /// Sends the pending batch `seq` of a target (if still pending) and publishes the result.
    async fn flush(self: &Arc<Self>, key: &str, seq: u64) {
        let batch = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match st.pending.get(key) {
                Some(b) if b.seq == seq => {}
                _ => return,
            }
            let batch = st.pending.remove(key).expect("checked above");
            for id in &batch.ids {
                st.inflight
                    .insert(format!("{key}\u{1f}{id}"), batch.done.subscribe());
            }
            batch
        };
        let delivery = Delivery {
            notifications: batch.notifications,
            to: batch.target.to.clone(),
        };
        let result = match self.channels.get(&batch.target.channel) {
            Some(channel) => self.send_with_retry(channel.as_ref(), &delivery).await,
            None => Err(format!("no channel named {}", batch.target.channel)),
        };
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for id in &batch.ids {
                let dk = format!("{key}\u{1f}{id}");
                st.inflight.remove(&dk);
                if result.is_ok() {
                    st.delivered.insert(DeliveredKey::of(&dk), ());
                }
            }
        }
        if result.is_ok() {
            self.stats
                .delivered
                .fetch_add(batch.ids.len() as u64, Ordering::Relaxed);
        }
        batch.done.send_replace(Some(result));
    }

    async fn send_with_retry(
        &self,
        channel: &dyn Channel,
        delivery: &Delivery,
    ) -> Result<(), String> {
        let count = delivery.notifications.len();
        let mut backoff = self.options.backoff;
        let mut last = String::new();
        for attempt in 1..=self.options.attempts {
            let outcome = tokio::time::timeout(self.options.timeout, channel.send(delivery))
                .await
                .unwrap_or_else(|_| {
                    Err(SendError::retryable(format!(
                        "timed out after {} ms",
                        self.options.timeout.as_millis()
                    )))
                });
            match outcome {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        channel = channel.name(),
                        kind = channel.kind().as_str(),
                        notifications = count,
                        attempt,
                        "notification sent"
                    );
                    return Ok(());
                }
                Err(e) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(channel = channel.name(), kind = channel.kind().as_str(), notifications = count, attempt,
                        retryable = e.retryable, error = %e.message, "notification send failed");
                    last = e.message;
                    if !e.retryable {
                        break;
                    }
                    if attempt < self.options.attempts {
                        let wait = e
                            .retry_after
                            .unwrap_or(backoff)
                            .min(self.options.max_backoff);
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(self.options.max_backoff);
                    }
                }
            }
        }
        Err(last)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn wait(mut rx: watch::Receiver<SendOutcome>) -> Result<(), String> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or_else(|| Err("no result".to_owned())),
        Err(_) => Err("the send was abandoned".to_owned()),
    }
}

/// Decodes a Notification v1 (field errors name the field). Other schemas are refused.
pub fn parse(data: &[u8]) -> Result<Notification, String> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let n: Notification = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| format!("field `{}`: {}", e.path(), e.inner()))?;
    if n.schema != SCHEMA_V1 {
        return Err(format!("schema `{}` is not {SCHEMA_V1}", n.schema));
    }
    Ok(n)
}

/// Builds the deliverer for a policy when it configures channels (reads secrets from the process
/// environment).
pub fn from_policy(
    notifications: &NotificationsConfig,
) -> Result<Option<Arc<Deliverer>>, DeliverError> {
    if notifications.is_empty() {
        return Ok(None);
    }
    Deliverer::from_config(notifications, &|name| std::env::var(name).ok()).map(Some)
}
