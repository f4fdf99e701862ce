//! Routing rules: the `notifications:` section of the remediation policy file. Named channels (Slack,
//! email, webhook) and routes (outcome, minimum severity, project glob, requirement -> channels).
//!
//! Owns parsing and validation (errors name file, line and field, like the rest of the policy file)
//! and the pure routing decision. It never reads a secret: channels name the environment variables
//! that hold them (`url_env`, `password_env`, `key_env`); `deliver` reads them at start-up.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Notification, Severity};
use crate::domain::report::Outcome;
use crate::domain::requirements::RequirementId;
use crate::domain::rules::glob_match;

/// Default digest window.
pub const DEFAULT_DIGEST_WINDOW_SECONDS: u64 = 30;

/// The `notifications:` section as written in the policy file (validated into a
/// [`NotificationsConfig`] by [`NotificationsFile::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsFile {
    /// See [`NotificationsConfig::digest_window_seconds`].
    pub digest_window_seconds: u64,
    /// See [`NotificationsConfig::retry_attempts`].
    pub retry_attempts: u32,
    /// See [`NotificationsConfig::timeout_seconds`].
    pub timeout_seconds: u64,
    /// Named channels, as written.
    pub channels: Vec<ChannelFile>,
    /// Routes.
    pub routes: Vec<Route>,
}

impl Default for NotificationsFile {
    fn default() -> Self {
        let d = NotificationsConfig::default();
        Self {
            digest_window_seconds: d.digest_window_seconds,
            retry_attempts: d.retry_attempts,
            timeout_seconds: d.timeout_seconds,
            channels: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// The `notifications:` section, validated: who hears about outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationsConfig {
    /// Notifications for the same channel arriving within this many seconds of the first one are sent
    /// as one digest message. 0 sends each notification on its own.
    pub digest_window_seconds: u64,
    /// Attempts per channel send (1 = no retry) before the delivery is answered with a retry.
    pub retry_attempts: u32,
    /// Seconds one send attempt may take (HTTP request or SMTP session).
    pub timeout_seconds: u64,
    /// Named channels.
    pub channels: Vec<ChannelConfig>,
    /// Routes; a notification goes to the channels of every route it matches.
    pub routes: Vec<Route>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            digest_window_seconds: DEFAULT_DIGEST_WINDOW_SECONDS,
            retry_attempts: 4,
            timeout_seconds: 10,
            channels: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// The kind of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// SMTP submission (STARTTLS, AUTH), multipart text + HTML.
    Email,
    /// A generic JSON webhook signed with HMAC-SHA256.
    Webhook,
}

impl ChannelKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }
}

/// How the SMTP session is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS is required before AUTH and the message (the default; submission on port 587).
    #[default]
    Starttls,
    /// Plain SMTP. Only for a relay on the same host or network, and for tests.
    None,
}

/// One named channel, validated: its kind decides exactly which settings it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Name used by routes.
    pub name: String,
    /// The kind and its settings.
    pub spec: ChannelSpec,
}

impl ChannelConfig {
    /// The kind of the channel.
    pub fn kind(&self) -> ChannelKind {
        match self.spec {
            ChannelSpec::Slack { .. } => ChannelKind::Slack,
            ChannelSpec::Webhook { .. } => ChannelKind::Webhook,
            ChannelSpec::Email(_) => ChannelKind::Email,
        }
    }

    /// An email channel's default recipients (empty for other kinds).
    pub fn default_recipients(&self) -> &[String] {
        match &self.spec {
            ChannelSpec::Email(e) => &e.to,
            _ => &[],
        }
    }
}

/// A channel's kind with the settings that kind has, and only those.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelSpec {
    /// A Slack incoming webhook; the URL is a secret read from `url_env`.
    Slack {
        /// Environment variable holding the webhook URL.
        url_env: String,
    },
    /// A JSON webhook signed with HMAC-SHA256.
    Webhook {
        /// Where the URL comes from.
        url: WebhookUrl,
        /// Environment variable holding the HMAC key.
        key_env: String,
    },
    /// SMTP submission.
    Email(EmailConfig),
}

/// A webhook URL: written in the file, or a secret in the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookUrl {
    /// The URL itself (not a secret).
    Plain(String),
    /// The environment variable holding it.
    Env(String),
}

/// An email channel's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailConfig {
    /// SMTP server host.
    pub host: String,
    /// SMTP port (587 unless given).
    pub port: u16,
    /// User name and the environment variable holding the password (AUTH), when given.
    pub credentials: Option<(String, String)>,
    /// Sender mailbox.
    pub from: String,
    /// Default recipients.
    pub to: Vec<String>,
    /// Session protection.
    pub tls: SmtpTls,
}

/// One named channel as written in the policy file. Which keys apply depends on `type`; keys that do
/// not apply to the type are errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// Name used by routes.
    pub name: String,
    /// `slack`, `email` or `webhook`.
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    /// slack, webhook: environment variable holding the URL (a Slack webhook URL is a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// webhook: the URL, when it is not a secret (else `url_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// webhook: environment variable holding the HMAC-SHA256 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// email: SMTP server host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// email: SMTP port (default 587).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// email: SMTP user name (AUTH PLAIN or LOGIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// email: environment variable holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// email: sender (`Name <addr@example.com>` or `addr@example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// email: default recipients (a route's `to` replaces them for that route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// email: `starttls` (default) or `none`.
    #[serde(default)]
    pub tls: SmtpTls,
}

/// One routing rule. Every condition given must hold; absent conditions match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// Outcomes this route takes. Empty: every outcome except `healthy` (healthy only when named).
    pub outcomes: Vec<Outcome>,
    /// Minimum severity (`info`, `warning`, `error`, `critical`). Default `info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Project-id globs (`*`, `?`). Empty: every project.
    pub projects: Vec<String>,
    /// Requirement ids. Empty: every requirement.
    pub requirements: Vec<RequirementId>,
    /// Channel names.
    pub channels: Vec<String>,
    /// Email recipients for the email channels of this route (replacing the channel's `to`).
    pub to: Vec<String>,
}

impl Route {
    /// Whether a notification matches this route.
    pub fn matches(&self, n: &Notification) -> bool {
        let outcome_ok = if self.outcomes.is_empty() {
            n.outcome != Outcome::Healthy
        } else {
            self.outcomes.contains(&n.outcome)
        };
        let severity_ok = self.min_severity.is_none_or(|min| n.severity >= min);
        let project_ok =
            self.projects.is_empty() || self.projects.iter().any(|g| glob_match(g, &n.project_id));
        let requirement_ok = self.requirements.is_empty()
            || self
                .requirements
                .iter()
                .any(|r| r.as_str() == n.requirement);
        outcome_ok && severity_ok && project_ok && requirement_ok
    }
}

/// Where one notification goes: a channel and, for email, the recipients. Notifications for the same
/// target within the digest window are sent together.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Channel name.
    pub channel: String,
    /// Email recipients (empty for Slack and webhooks).
    pub to: Vec<String>,
}

impl Target {
    /// A stable key (channel and recipients).
    pub fn key(&self) -> String {
        if self.to.is_empty() {
            self.channel.clone()
        } else {
            format!("{}\u{1f}{}", self.channel, self.to.join(","))
        }
    }
}

/// A problem in the `notifications` section: the field's path in the policy file and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the offending field (`notifications.channels[0].url_env`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl NotificationsConfig {
    /// True if nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Every target a notification goes to: one per channel; an email channel named by several
    /// matching routes gets the union of their recipients.
    pub fn targets(&self, n: &Notification) -> Vec<Target> {
        let mut per_channel: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for route in self.routes.iter().filter(|r| r.matches(n)) {
            for name in &route.channels {
                let Some(channel) = self.channel(name) else {
                    continue;
                };
                let entry = per_channel.entry(name.as_str()).or_default();
                if channel.kind() == ChannelKind::Email {
                    let to = if route.to.is_empty() {
                        channel.default_recipients()
                    } else {
                        &route.to
                    };
                    entry.extend(to.iter().cloned());
                }
            }
        }
        per_channel
            .into_iter()
            .map(|(channel, to)| Target {
                channel: channel.to_owned(),
                to: to.into_iter().collect(),
            })
            .collect()
    }
}

impl NotificationsFile {
    /// Validates the section; errors name the offending field by its path.
    pub fn validate(self) -> Result<NotificationsConfig, FieldError> {
        let section = "notifications";
        let find = |name: &str| self.channels.iter().find(|c| c.name == name);
        let err = |field: String, message: String| FieldError { field, message };
        if self.digest_window_seconds > 3600 {
            return Err(err(
                format!("{section}.digest_window_seconds"),
                "must be at most 3600".to_owned(),
            ));
        }
        if self.retry_attempts == 0 || self.retry_attempts > 20 {
            return Err(err(
                format!("{section}.retry_attempts"),
                "must be between 1 and 20".to_owned(),
            ));
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > 300 {
            return Err(err(
                format!("{section}.timeout_seconds"),
                "must be between 1 and 300".to_owned(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let field = |key: &str| format!("{section}.channels[{i}].{key}");
            if c.name.trim().is_empty() {
                return Err(err(field("name"), "empty name".to_owned()));
            }
            if !names.insert(c.name.as_str()) {
                return Err(err(
                    field("name"),
                    format!("channel `{}` is defined twice", c.name),
                ));
            }
            if let Some((key, message)) = channel_problem(c) {
                return Err(err(field(key), message));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let field = |key: &str| format!("{section}.routes[{i}].{key}");
            if r.channels.is_empty() {
                return Err(err(
                    field("channels"),
                    "a route needs at least one channel".to_owned(),
                ));
            }
            for (j, name) in r.channels.iter().enumerate() {
                let Some(channel) = find(name) else {
                    return Err(err(
                        format!("{section}.routes[{i}].channels[{j}]"),
                        format!(
                            "no channel named `{name}` (defined: {})",
                            self.channels
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                };
                if channel.kind == ChannelKind::Email && channel.to.is_empty() && r.to.is_empty() {
                    return Err(err(
                        field("to"),
                        format!("email channel `{name}` has no `to` and this route gives none"),
                    ));
                }
            }
            if let Some(j) = r.projects.iter().position(|g| g.is_empty()) {
                return Err(err(
                    format!("{section}.routes[{i}].projects[{j}]"),
                    "empty pattern".to_owned(),
                ));
            }
            if let Some(j) = r.to.iter().position(|a| !looks_like_address(a)) {
                return Err(err(
                    format!("{section}.routes[{i}].to[{j}]"),
                    format!("`{}` is not an email address", r.to[j]),
                ));
            }
            if !r.to.is_empty()
                && !r
                    .channels
                    .iter()
                    .any(|n| find(n).is_some_and(|c| c.kind == ChannelKind::Email))
            {
                return Err(err(
                    field("to"),
                    "`to` applies to email channels and this route has none".to_owned(),
                ));
            }
        }
        for (i, c) in self.channels.iter().enumerate() {
            if !self.routes.iter().any(|r| r.channels.contains(&c.name)) {
                return Err(err(
                    format!("{section}.channels[{i}].name"),
                    format!("channel `{}` is not used by any route", c.name),
                ));
            }
        }
        let channels = self
            .channels
            .iter()
            .map(ChannelFile::typed)
            .collect::<Vec<_>>();
        Ok(NotificationsConfig {
            digest_window_seconds: self.digest_window_seconds,
            retry_attempts: self.retry_attempts,
            timeout_seconds: self.timeout_seconds,
            channels,
            routes: self.routes,
        })
    }
}

/// The first problem of a channel's keys for its type: (key, message).
impl ChannelFile {
    /// The typed channel; call only after [`channel_problem`] found nothing wrong.
    fn typed(&self) -> ChannelConfig {
        let spec = match self.kind {
            ChannelKind::Slack => ChannelSpec::Slack {
                url_env: self.url_env.clone().unwrap_or_default(),
            },
            ChannelKind::Webhook => ChannelSpec::Webhook {
                url: match (&self.url, &self.url_env) {
                    (Some(u), _) => WebhookUrl::Plain(u.clone()),
                    (None, e) => WebhookUrl::Env(e.clone().unwrap_or_default()),
                },
                key_env: self.key_env.clone().unwrap_or_default(),
            },
            ChannelKind::Email => ChannelSpec::Email(EmailConfig {
                host: self.host.clone().unwrap_or_default(),
                port: self.port.unwrap_or(587),
                credentials: self.username.clone().zip(self.password_env.clone()),
                from: self.from.clone().unwrap_or_default(),
                to: self.to.clone(),
                tls: self.tls,
            }),
        };
        ChannelConfig {
            name: self.name.clone(),
            spec,
        }
    }
}

fn channel_problem(c: &ChannelFile) -> Option<(&'static str, String)> {
    let kind = c.kind.as_str();
    let unused = |present: bool, key: &'static str| {
        present.then(|| (key, format!("`{key}` does not apply to a {kind} channel")))
    };
    let email_keys = [
        (c.host.is_some(), "host"),
        (c.port.is_some(), "port"),
        (c.username.is_some(), "username"),
        (c.password_env.is_some(), "password_env"),
        (c.from.is_some(), "from"),
        (!c.to.is_empty(), "to"),
        (c.tls != SmtpTls::Starttls, "tls"),
    ];
    let check_env = |key: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .filter(|v| !is_env_name(v))
            .map(|v| (key, format!("`{v}` is not an environment variable name")))
    };
    match c.kind {
        ChannelKind::Slack => {
            if c.url_env.is_none() {
                return Some((
                    "url_env",
                    "a slack channel needs `url_env` (the webhook URL is a secret)".to_owned(),
                ));
            }
            if let Some(p) = check_env("url_env", &c.url_env) {
                return Some(p);
            }
            email_keys
                .into_iter()
                .chain([(c.url.is_some(), "url"), (c.key_env.is_some(), "key_env")])
                .find_map(|(present, key)| unused(present, key))
        }
        ChannelKind::Webhook => {
            match (&c.url, &c.url_env) {
                (None, None) => {
                    return Some((
                        "url",
                        "a webhook channel needs `url` or `url_env`".to_owned(),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Some(("url_env", "give `url` or `url_env`, not both".to_owned()));
                }
                (Some(u), None) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                    return Some(("url", format!("`{u}` is not an http(s) URL")));
                }
                _ => {}
            }
            if c.key_env.is_none() {
                return Some((
                    "key_env",
                    "a webhook channel needs `key_env` (the HMAC key)".to_owned(),
                ));
            }
            check_env("url_env", &c.url_env)
                .or_else(|| check_env("key_env", &c.key_env))
                .or_else(|| {
                    email_keys
                        .into_iter()
                        .find_map(|(present, key)| unused(present, key))
                })
        }
        ChannelKind::Email => {
            match c.host.as_deref() {
                None | Some("") => {
                    return Some(("host", "an email channel needs `host`".to_owned()));
                }
                _ => {}
            }
            match c.from.as_deref() {
                None => return Some(("from", "an email channel needs `from`".to_owned())),
                Some(f) if f.parse::<lettre::message::Mailbox>().is_err() => {
                    return Some((
                        "from",
                        format!("`{f}` is not a mailbox such as Name <a@example.com>"),
                    ));
                }
                _ => {}
            }
            if let Some(a) = c.to.iter().find(|a| !looks_like_address(a)) {
                return Some(("to", format!("`{a}` is not an email address")));
            }
            if c.port == Some(0) {
                return Some(("port", "must be a port number".to_owned()));
            }
            if c.username.is_some() != c.password_env.is_some() {
                return Some((
                    "password_env",
                    "`username` and `password_env` go together".to_owned(),
                ));
            }
            check_env("password_env", &c.password_env).or_else(|| {
                [
                    (c.url.is_some(), "url"),
                    (c.url_env.is_some(), "url_env"),
                    (c.key_env.is_some(), "key_env"),
                ]
                .into_iter()
                .find_map(|(present, key)| unused(present, key))
            })
        }
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn looks_like_address(a: &str) -> bool {
    a.parse::<lettre::Address>().is_ok()
}
