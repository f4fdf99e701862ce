//! The Slack channel: an incoming webhook (<https://api.slack.com/messaging/webhooks>) posting a
//! Block Kit message (<https://api.slack.com/reference/block-kit/blocks>).
//!
//! One notification: a header (outcome and project), the detail, section fields (project, principal,
//! role, requirement, who caused it, what was done with the policy etags), a context line (time, mode,
//! notification id) and buttons to the console IAM page and cluster pages. Several notifications
//! within the digest window: one digest (header "N findings in M projects", a capped bullet list,
//! "and K more", buttons to the projects' IAM pages). Block Kit limits (header 150 characters, field
//! 2000, section text 3000, 10 fields, 25 buttons) are respected by truncation. The webhook URL is a
//! secret: it never appears in errors, logs or `Debug`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::deliver::{Channel, Delivery, SendError};
use super::routing::ChannelKind;
use super::{Notification, outcome_emoji, outcome_label};
use crate::domain::report::Outcome;

/// Lines in a digest before "and K more".
pub const DIGEST_LINES: usize = 20;

/// Escapes `&`, `<` and `>` for mrkdwn and plain text (Slack's only required escapes).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Truncates to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('\u{2026}');
    out
}

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": truncate(text, max), "emoji": true})
}

fn mrkdwn(text: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": truncate(text, max)})
}

fn field(label: &str, value: &str) -> Value {
    mrkdwn(&format!("*{label}*\n{value}"), 2000)
}

fn code(s: &str) -> String {
    format!("`{}`", escape(s))
}

/// What was done, for people: one line per action with its etags.
pub fn what_was_done(n: &Notification) -> String {
    if n.actions.is_empty() {
        return match n.outcome.as_str() {
            "not-allowed" => {
                "Nothing: the remediation policy does not allow restoring it".to_owned()
            }
            "unknown" => "Nothing: a person must review it".to_owned(),
            "escalated" => "Nothing: restored too often, not restored again".to_owned(),
            "healthy" => "Nothing needed".to_owned(),
            _ => "Nothing".to_owned(),
        };
    }
    n.actions
        .iter()
        .map(|a| {
            let verb = match (a.kind.as_str(), a.outcome.as_str()) {
                ("grant", "restored") => "Granted",
                ("grant", "would-restore") => "Would grant",
                ("grant", _) => "Grant failed:",
                ("enable-service", "restored") => "Enabled",
                ("enable-service", "would-restore") => "Would enable",
                ("enable-service-account", "restored") => "Enabled",
                ("enable-service-account", "would-restore") => "Would enable",
                ("undelete-service-account", "restored") => "Undeleted",
                ("undelete-service-account", "would-restore") => "Would undelete",
                _ => "Failed:",
            };
            let what = match (&a.role, &a.member) {
                (Some(role), Some(member)) => format!("{} to {}", code(role), code(member)),
                (None, Some(member)) => code(member),
                (Some(role), None) => code(role),
                (None, None) => a.kind.clone(),
            };
            let etags = match (&a.etag_before, &a.etag_after) {
                (Some(b), Some(after)) => format!(" (etag {} \u{2192} {})", code(b), code(after)),
                (Some(b), None) => format!(" (etag {})", code(b)),
                _ => String::new(),
            };
            let error = a
                .error
                .as_deref()
                .map(|e| format!(": {}", escape(e)))
                .unwrap_or_default();
            format!("{verb} {what}{etags}{error}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Block Kit message for one notification.
pub fn single(n: &Notification) -> Value {
    let title = format!(
        "{} {} \u{00b7} {}",
        outcome_emoji(n.outcome),
        outcome_label(n.outcome),
        n.project_id
    );
    let project = if n.project_number.is_empty() {
        code(&n.project_id)
    } else {
        format!("{} ({})", code(&n.project_id), escape(&n.project_number))
    };
    let actor = escape(&n.evidence.who());
    let fields = vec![
        field("Project", &project),
        field(
            "Principal",
            &n.principal
                .as_deref()
                .map(code)
                .unwrap_or_else(|| "\u{2014}".to_owned()),
        ),
        field(
            "Role",
            &n.role
                .as_deref()
                .map(code)
                .unwrap_or_else(|| "\u{2014}".to_owned()),
        ),
        field("Requirement", &code(&n.requirement)),
        field("Who caused it", &actor),
        field("What was done", &what_was_done(n)),
    ];
    let mut context = format!(
        "{} \u{00b7} mode {} \u{00b7} severity {} \u{00b7} {}",
        escape(&n.time),
        escape(n.mode.as_str()),
        escape(n.severity.as_str()),
        code(&n.id)
    );
    if !n.evidence.source.is_empty() {
        context.push_str(&format!(" \u{00b7} via {}", escape(&n.evidence.source)));
    }
    let mut buttons = vec![json!({
        "type": "button",
        "text": plain("Open IAM page", 75),
        "url": n.links.iam,
        "action_id": "open-iam",
        "style": "primary",
    })];
    for (i, (url, name)) in n
        .links
        .clusters
        .iter()
        .zip(&n.clusters)
        .take(24)
        .enumerate()
    {
        buttons.push(json!({
            "type": "button",
            "text": plain(&format!("Cluster {name}"), 75),
            "url": url,
            "action_id": format!("open-cluster-{i}"),
        }));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": plain(&title, 150)}),
        json!({"type": "section", "text": mrkdwn(&escape(&n.detail), 3000)}),
        json!({"type": "section", "fields": fields}),
    ];
    if !n.missing_permissions.is_empty() {
        let list = n
            .missing_permissions
            .iter()
            .map(|p| code(p))
            .collect::<Vec<_>>()
            .join(", ");
        blocks.push(json!({"type": "section", "text": mrkdwn(&format!("*Missing permissions*\n{list}"), 3000)}));
    }
    blocks.push(json!({"type": "context", "elements": [mrkdwn(&context, 3000)]}));
    blocks.push(json!({"type": "actions", "elements": buttons}));
    json!({
        "text": truncate(&format!("{}: {} {} in {}", outcome_label(n.outcome), n.requirement,
            n.principal.as_deref().unwrap_or(""), n.project_id), 3000),
        "blocks": blocks,
    })
}

/// The digest message for several notifications.
pub fn digest(ns: &[Notification]) -> Value {
    let projects: BTreeSet<&str> = ns.iter().map(|n| n.project_id.as_str()).collect();
    let mut by_outcome: BTreeMap<&str, (Outcome, usize)> = BTreeMap::new();
    for n in ns {
        by_outcome
            .entry(n.outcome.as_str())
            .or_insert((n.outcome, 0))
            .1 += 1;
    }
    let title = format!(
        "{} findings in {} project{}",
        ns.len(),
        projects.len(),
        if projects.len() == 1 { "" } else { "s" }
    );
    let counts = by_outcome
        .iter()
        .map(|(o, (outcome, c))| format!("{} {c} {o}", outcome_emoji(*outcome)))
        .collect::<Vec<_>>()
        .join(" \u{00b7} ");
    let mut lines = Vec::new();
    let mut len = 0;
    for n in ns.iter().take(DIGEST_LINES) {
        let line = format!(
            "\u{2022} {} *{}* {} {} in {}",
            outcome_emoji(n.outcome),
            escape(n.outcome.as_str()),
            code(&n.requirement),
            n.principal.as_deref().map(code).unwrap_or_default(),
            code(&n.project_id),
        );
        let line = truncate(&line, 280);
        if len + line.len() > 2800 {
            break;
        }
        len += line.len() + 1;
        lines.push(line);
    }
    let more = ns.len() - lines.len();
    if more > 0 {
        lines.push(format!("_and {more} more_"));
    }
    let buttons: Vec<Value> = projects
        .iter()
        .take(5)
        .enumerate()
        .filter_map(|(i, p)| {
            let n = ns.iter().find(|n| n.project_id == *p)?;
            Some(json!({
                "type": "button",
                "text": plain(&format!("IAM: {p}"), 75),
                "url": n.links.iam,
                "action_id": format!("open-iam-{i}"),
            }))
        })
        .collect();
    let first = ns.first().map(|n| n.time.as_str()).unwrap_or("");
    let last = ns.last().map(|n| n.time.as_str()).unwrap_or("");
    json!({
        "text": title,
        "blocks": [
            {"type": "header", "text": plain(&format!("\u{1f4cb} {title}"), 150)},
            {"type": "section", "text": mrkdwn(&counts, 3000)},
            {"type": "section", "text": mrkdwn(&lines.join("\n"), 3000)},
            {"type": "context", "elements": [mrkdwn(&format!("{} \u{2013} {} \u{00b7} one message per burst; every finding is also on the notifications topic", escape(first), escape(last)), 3000)]},
            {"type": "actions", "elements": buttons},
        ],
    })
}

/// The payload for a delivery: single or digest.
pub fn payload(ns: &[Notification]) -> Value {
    match ns {
        [one] => single(one),
        many => digest(many),
    }
}

/// A Slack incoming-webhook channel.
pub struct SlackChannel {
    name: String,
    url: SecretString,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("name", &self.name)
            .field("url", &"[redacted]")
            .finish()
    }
}

impl SlackChannel {
    /// A channel posting to the incoming-webhook `url`, each attempt bounded by `timeout`.
    pub fn new(name: &str, url: SecretString, http: reqwest::Client, timeout: Duration) -> Self {
        Self {
            name: name.to_owned(),
            url,
            http,
            timeout,
        }
    }
}

impl Channel for SlackChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Slack
    }

    fn send<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&payload(&delivery.notifications)).unwrap_or_default();
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            super::webhook::post_json(
                &self.http,
                self.url.expose_secret(),
                headers,
                body,
                self.timeout,
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_truncated_to_block_kit_limits() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(truncate("abcdef", 4), "abc\u{2026}");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
