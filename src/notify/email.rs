//! The email channel: SMTP submission with `lettre` (STARTTLS required by default, port 587, AUTH
//! PLAIN/LOGIN), one multipart/alternative message (text + HTML) per delivery.
//!
//! The subject carries the outcome and the project (a digest: the counts). Recipients come from the
//! route (or the channel's default `to`). `tls: none` exists for a relay on the same network and for
//! loopback tests; with `starttls` a server that does not offer STARTTLS is refused before AUTH. The
//! password is a secret: it never appears in errors, logs or `Debug`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::deliver::{Channel, Delivery, SendError};
use super::routing::{ChannelKind, EmailConfig, SmtpTls};
use super::{Notification, outcome_label};

/// Subject prefix.
pub const PREFIX: &str = "[gke-iam-remediator]";

/// Subject, plain text and HTML of a delivery (one notification or a digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// text/plain part.
    pub text: String,
    /// text/html part.
    pub html: String,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What was done, one plain line per action.
pub fn actions_lines(n: &Notification) -> Vec<String> {
    if n.actions.is_empty() {
        return vec![
            match n.outcome.as_str() {
                "not-allowed" => "nothing: the remediation policy does not allow restoring it",
                "unknown" => "nothing: a person must review it",
                "escalated" => "nothing: restored too often, not restored again",
                "healthy" => "nothing needed",
                _ => "nothing",
            }
            .to_owned(),
        ];
    }
    n.actions
        .iter()
        .map(|a| {
            let what = [a.role.as_deref(), a.member.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" to ");
            let mut line = format!("{} {} ({})", a.kind, what, a.outcome);
            if let (Some(b), Some(after)) = (&a.etag_before, &a.etag_after) {
                line.push_str(&format!(", policy etag {b} -> {after}"));
            } else if let Some(b) = &a.etag_before {
                line.push_str(&format!(", policy etag {b}"));
            }
            if let Some(e) = &a.error {
                line.push_str(&format!(": {e}"));
            }
            line
        })
        .collect()
}

fn rows(n: &Notification) -> Vec<(&'static str, String)> {
    let mut evidence = n.evidence.source.clone();
    for (k, v) in [
        ("insertId", &n.evidence.insert_id),
        ("recommendation", &n.evidence.recommendation),
        ("message", &n.evidence.message_id),
    ] {
        if let Some(v) = v {
            evidence.push_str(&format!(", {k} {v}"));
        }
    }
    let project = if n.project_number.is_empty() {
        n.project_id.clone()
    } else {
        format!("{} ({})", n.project_id, n.project_number)
    };
    let mut rows = vec![
        ("Project", project),
        (
            "Principal",
            n.principal.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("Role", n.role.clone().unwrap_or_else(|| "-".to_owned())),
        ("Requirement", n.requirement.clone()),
        (
            "Outcome",
            format!("{} (severity {}, mode {})", n.outcome, n.severity, n.mode),
        ),
        ("Who caused it", n.evidence.who()),
        ("What was done", actions_lines(n).join("; ")),
    ];
    if !n.missing_permissions.is_empty() {
        rows.push(("Missing permissions", n.missing_permissions.join(", ")));
    }
    rows.push(("Evidence", evidence));
    rows.push(("Time", n.time.clone()));
    rows.push(("Notification", n.id.clone()));
    if let Some(t) = &n.trace_id {
        rows.push(("Trace", t.clone()));
    }
    rows
}

fn links(n: &Notification) -> Vec<(String, String)> {
    let mut out = vec![("IAM page".to_owned(), n.links.iam.clone())];
    for (url, name) in n.links.clusters.iter().zip(&n.clusters) {
        out.push((format!("Cluster {name}"), url.clone()));
    }
    out
}

const STYLE_TD: &str = "padding:4px 12px 4px 0;vertical-align:top;color:#5f6368;white-space:nowrap";

/// Renders one notification.
pub fn single(n: &Notification) -> Rendered {
    let title = format!(
        "{}: {} in {}",
        outcome_label(n.outcome),
        n.requirement,
        n.project_id
    );
    let subject = format!("{PREFIX} {title}");
    let rows = rows(n);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut text = format!("{title}\n\n{}\n\n", n.detail);
    for (k, v) in &rows {
        text.push_str(&format!("{:width$}{v}\n", format!("{k}:")));
    }
    text.push('\n');
    for (label, url) in links(n) {
        text.push_str(&format!("{label}: {url}\n"));
    }
    let color = severity_color(n.severity.as_str());
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:Arial,sans-serif;font-size:14px;color:#202124\">\
         <h2 style=\"margin:0 0 8px;border-left:6px solid {color};padding-left:8px\">{}</h2>\
         <p>{}</p><table style=\"border-collapse:collapse\">",
        html_escape(&title),
        html_escape(&n.detail)
    );
    for (k, v) in &rows {
        html.push_str(&format!(
            "<tr><td style=\"{STYLE_TD}\">{}</td><td><code>{}</code></td></tr>",
            html_escape(k),
            html_escape(v)
        ));
    }
    html.push_str("</table><p>");
    for (label, url) in links(n) {
        html.push_str(&format!(
            "<a href=\"{}\" style=\"display:inline-block;margin:4px 8px 4px 0;padding:6px 12px;background:#1a73e8;color:#fff;border-radius:4px;text-decoration:none\">{}</a>",
            html_escape(&url),
            html_escape(&label)
        ));
    }
    html.push_str("</p></body></html>\n");
    Rendered {
        subject,
        text,
        html,
    }
}

fn severity_color(severity: &str) -> &'static str {
    match severity {
        "critical" => "#a50e0e",
        "error" => "#d93025",
        "warning" => "#f9ab00",
        _ => "#1e8e3e",
    }
}

/// Lines in a digest email before "and K more".
pub const DIGEST_LINES: usize = 200;

/// Renders a digest of several notifications.
pub fn digest(ns: &[Notification]) -> Rendered {
    let projects: BTreeSet<&str> = ns.iter().map(|n| n.project_id.as_str()).collect();
    let mut by_outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for n in ns {
        *by_outcome.entry(n.outcome.as_str()).or_default() += 1;
    }
    let counts = by_outcome
        .iter()
        .map(|(o, c)| format!("{c} {o}"))
        .collect::<Vec<_>>()
        .join(", ");
    let where_ = if projects.len() == 1 {
        projects
            .iter()
            .next()
            .copied()
            .unwrap_or_default()
            .to_owned()
    } else {
        format!("{} projects", projects.len())
    };
    let title = format!("{} findings in {where_}", ns.len());
    let subject = format!("{PREFIX} {title} ({counts})");
    let mut text = format!("{title}: {counts}\n\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:Arial,sans-serif;font-size:14px;color:#202124\">\
         <h2 style=\"margin:0 0 8px\">{}</h2><p>{}</p><ul>",
        html_escape(&title),
        html_escape(&counts)
    );
    for n in ns.iter().take(DIGEST_LINES) {
        let line = format!(
            "{} {} {} in {} ({})",
            n.outcome,
            n.requirement,
            n.principal.as_deref().unwrap_or(""),
            n.project_id,
            n.id
        );
        text.push_str(&format!("- {line}\n"));
        html.push_str(&format!(
            "<li><b>{}</b> {} <code>{}</code> in <a href=\"{}\">{}</a> <small>{}</small></li>",
            html_escape(n.outcome.as_str()),
            html_escape(&n.requirement),
            html_escape(n.principal.as_deref().unwrap_or("")),
            html_escape(&n.links.iam),
            html_escape(&n.project_id),
            html_escape(&n.id)
        ));
    }
    if ns.len() > DIGEST_LINES {
        let more = ns.len() - DIGEST_LINES;
        text.push_str(&format!("... and {more} more\n"));
        html.push_str(&format!("<li><i>and {more} more</i></li>"));
    }
    text.push_str("\nEvery finding is also published to the notifications topic (schema v1).\n");
    html.push_str("</ul></body></html>\n");
    Rendered {
        subject,
        text,
        html,
    }
}

/// Renders a delivery: one notification or a digest.
pub fn render(ns: &[Notification]) -> Rendered {
    match ns {
        [one] => single(one),
        many => digest(many),
    }
}

/// Builds the message.
pub fn message(from: &Mailbox, to: &[Mailbox], ns: &[Notification]) -> Result<Message, String> {
    let r = render(ns);
    // The same notifications always make the same Message-ID: a message sent again (a redelivery
    // after a lost answer) is one message to mail clients that de-duplicate on it.
    let ids: Vec<&str> = ns.iter().map(|n| n.id.as_str()).collect();
    let key = match ids.as_slice() {
        [one] => (*one).to_owned(),
        many => format!("digest-{:016x}", super::fnv1a(many.join(",").as_bytes())),
    };
    let message_id = format!("<{key}.gke-iam-remediator@{}>", from.email.domain());
    let mut b = Message::builder()
        .from(from.clone())
        .subject(r.subject)
        .message_id(Some(message_id));
    for t in to {
        b = b.to(t.clone());
    }
    b.multipart(MultiPart::alternative_plain_html(r.text, r.html))
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// An SMTP channel.
pub struct EmailChannel {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("name", &self.name)
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// A channel from its configuration; `password` from the variable named by `password_env`.
    pub fn new(
        name: &str,
        config: &EmailConfig,
        password: Option<SecretString>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let host = config.host.as_str();
        let from: Mailbox = config.from.parse().map_err(|e| format!("from: {e}"))?;
        let to = config
            .to
            .iter()
            .map(|a| a.parse::<Mailbox>().map_err(|e| format!("to `{a}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match config.tls {
            SmtpTls::Starttls => Tls::Required(
                TlsParameters::new(host.to_owned()).map_err(|e| format!("TLS settings: {e}"))?,
            ),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(config.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some((user, _)), Some(password)) = (&config.credentials, password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            from,
            to,
            transport: builder.build(),
        })
    }
}

impl Channel for EmailChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn send<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let to = if delivery.to.is_empty() {
                self.to.clone()
            } else {
                delivery
                    .to
                    .iter()
                    .map(|a| a.parse::<Mailbox>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| SendError::permanent(format!("recipient: {e}")))?
            };
            let message =
                message(&self.from, &to, &delivery.notifications).map_err(SendError::permanent)?;
            match self.transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::permanent(format!("SMTP: {e}"))),
                Err(e) => Err(SendError::retryable(format!("SMTP: {e}"))),
            }
        })
    }
}
