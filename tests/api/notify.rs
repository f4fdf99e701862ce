//! Notifications delivered to people, against real parts on loopback: a Slack-compatible HTTP
//! receiver that checks the Block Kit payload, an SMTP server written here that speaks the protocol,
//! a webhook receiver that verifies the HMAC; the JSON Schema of Notification v1; and `serve` / `job`
//! end to end with the Pub/Sub emulator.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use gke_iam_remediator::domain::evaluate::{Finding, Status};
use gke_iam_remediator::domain::iam::{Member, Role};
use gke_iam_remediator::domain::plan::{Action, Decision};
use gke_iam_remediator::domain::report::{
    ActionReport, Failure, FindingReport, Outcome, ProjectReport,
};
use gke_iam_remediator::domain::requirements::RequirementId;
use gke_iam_remediator::domain::rules::Mode;
use gke_iam_remediator::intake::Verdict;
use gke_iam_remediator::notify::{self, Deliverer, Evidence, Notification};
use gke_iam_remediator::policy::PolicyFile;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::binary::{Serve, job};
use crate::support::frontend::{FrontEnd, FrontEndConfig, Injection};
use crate::support::oidc::{self, key_server};
use crate::support::service::{
    AGENT, EVENTS_TOPIC, NOTIFY_TOPIC, OPS, WORLD, audit_log_sim, notifying_env,
    remove_agent_binding,
};
use crate::support::{Gcloud, PubsubEmulator, RefusedPort, TempFile, wait_until};

// ---------------------------------------------------------------------------------------------
// Notifications through the real builder.

/// A project report with one finding of `outcome` (principal number `i`), as the remediator makes it.
fn report(outcome: Outcome, project: &str, i: usize) -> (ProjectReport, FindingReport) {
    let node = i > 0;
    let principal = if node {
        format!("serviceAccount:nodes-{i}@{project}.iam.gserviceaccount.com")
    } else {
        AGENT.to_owned()
    };
    let role = if node {
        "roles/container.defaultNodeServiceAccount"
    } else {
        "roles/container.serviceAgent"
    };
    let member = Member::parse(&principal).unwrap();
    let role_ = Role::parse(role).unwrap();
    let grant = Action::Grant {
        role: role_.clone(),
        member: member.clone(),
    };
    let status = match outcome {
        Outcome::Healthy | Outcome::Expiring => Status::Ok,
        Outcome::Unknown => Status::Conditional,
        _ => Status::Missing,
    };
    let finding = Finding {
        requirement: if node {
            RequirementId::NodeSaPermissions
        } else {
            RequirementId::GkeServiceAgent
        },
        principal: Some(member),
        status,
        missing_permissions: if node && status == Status::Missing {
            vec![
                "logging.logEntries.create".to_owned(),
                "monitoring.timeSeries.create".to_owned(),
            ]
        } else {
            Vec::new()
        },
        conditional_permissions: Vec::new(),
        unknown_permissions: Vec::new(),
        role: Some(role_),
        clusters: vec!["us-central1/c1".to_owned()],
        node_pools: vec!["us-central1/c1/pool-1".to_owned()],
        granted_via: if outcome == Outcome::Expiring {
            vec![format!(
                "{role} on projects/{project} until 2026-12-10T00:00:00.000Z"
            )]
        } else {
            Vec::new()
        },
        detail: format!("{principal} lacks {role} on projects/{project}"),
        expires_at: (outcome == Outcome::Expiring).then(|| "2026-12-10T00:00:00.000Z".to_owned()),
        denied_permissions: Vec::new(),
        denied_by: Vec::new(),
        org_policy: None,
        deny_check: None,
        account: None,
    };
    let action = |o: Outcome, after: Option<&str>, error: Option<&str>| ActionReport {
        action: grant.clone(),
        outcome: o,
        etag_before: Some("BwYV1xJ0a1c=".to_owned()),
        etag_after: after.map(str::to_owned),
        attempts: 1,
        error: error.map(|e| Failure::Permanent(e.to_owned())),
    };
    let (decision, actions) = match outcome {
        Outcome::Healthy | Outcome::Expiring | Outcome::Resolved => (Decision::Healthy, vec![]),
        Outcome::Restored => (
            Decision::Restore {
                action: grant.clone(),
            },
            vec![action(Outcome::Restored, Some("BwYV1xK2b3d="), None)],
        ),
        Outcome::WouldRestore => (
            Decision::Restore {
                action: grant.clone(),
            },
            vec![action(Outcome::WouldRestore, None, None)],
        ),
        Outcome::Failed => (
            Decision::Restore {
                action: grant.clone(),
            },
            vec![action(
                Outcome::Failed,
                None,
                Some("setIamPolicy: 403 PERMISSION_DENIED"),
            )],
        ),
        Outcome::NotAllowed => (
            Decision::NotAllowed {
                reason: "gke-service-agent is not in restore".to_owned(),
            },
            vec![],
        ),
        Outcome::Unknown => (
            Decision::NeedsReview {
                reason: "granted only under a condition".to_owned(),
            },
            vec![],
        ),
        Outcome::Escalated => (
            Decision::Escalate {
                reason: "restored 3 times in 60 minutes".to_owned(),
            },
            vec![],
        ),
    };
    let fr = FindingReport {
        finding,
        decision,
        outcome,
    };
    let pr = ProjectReport {
        project_id: project.to_owned(),
        project_number: "200000000001".to_owned(),
        gke: true,
        folders: vec![],
        policy_etag: Some("BwYV1xJ0a1c=".to_owned()),
        flap_guard: None,
        findings: vec![fr.clone()],
        actions,
        error: None,
    };
    (pr, fr)
}

fn evidence() -> Evidence {
    Evidence {
        source: "audit-log".to_owned(),
        actor: Some("admin@example.com".to_owned()),
        tool: gke_iam_remediator::intake::tool::identify(
            "google-api-go-client/0.5 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-google/5.22.0",
        ),
        method: Some("SetIamPolicy".to_owned()),
        insert_id: Some("1x2y3z4a5b".to_owned()),
        log_timestamp: Some("2026-11-29T00:31:00Z".to_owned()),
        recommendation: None,
        message_id: Some("17000000000001".to_owned()),
    }
}

fn notification(outcome: Outcome, project: &str, i: usize) -> Notification {
    let (pr, fr) = report(outcome, project, i);
    let mode = if outcome == Outcome::WouldRestore {
        Mode::DryRun
    } else {
        Mode::Enforce
    };
    notify::build(
        &pr,
        &fr,
        mode,
        &evidence(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_918_260_123),
    )
}

const ALL_OUTCOMES: [Outcome; 8] = [
    Outcome::Restored,
    Outcome::WouldRestore,
    Outcome::NotAllowed,
    Outcome::Unknown,
    Outcome::Failed,
    Outcome::Escalated,
    Outcome::Expiring,
    Outcome::Healthy,
];

// ---------------------------------------------------------------------------------------------
// The JSON Schema.

fn schema() -> (boon::Schemas, boon::SchemaIndex) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/notification-v1.json");
    let text = std::fs::read_to_string(path).expect("schema/notification-v1.json exists");
    let doc: Value = serde_json::from_str(&text).expect("the schema is JSON");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("https://example.com/notification-v1.json", doc)
        .unwrap();
    let index = compiler
        .compile("https://example.com/notification-v1.json", &mut schemas)
        .unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
    (schemas, index)
}

fn assert_valid(schemas: &boon::Schemas, index: boon::SchemaIndex, doc: &Value) {
    if let Err(e) = schemas.validate(doc, index) {
        panic!("{e:#}\n{doc:#}");
    }
}

#[test]
fn every_outcome_builds_a_notification_that_validates_against_the_schema() {
    let (schemas, index) = schema();
    for outcome in ALL_OUTCOMES {
        for i in [0, 7] {
            let n = notification(outcome, "acme-prod", i);
            assert_eq!(n.outcome, outcome);
            let doc = serde_json::to_value(&n).unwrap();
            assert_valid(&schemas, index, &doc);
            if i == 0 {
                eprintln!(
                    "example {}:\n{}",
                    n.outcome,
                    serde_json::to_string_pretty(&doc).unwrap()
                );
            }
            // The attributes for subscription filters.
            let attrs = n.attributes();
            for key in ["outcome", "severity", "project_id", "requirement"] {
                assert!(attrs.contains_key(key), "{key}");
            }
            // Consumers parse it back (the delivery handler does).
            let back = notify::deliver::parse(&serde_json::to_vec(&n).unwrap()).unwrap();
            assert_eq!(back, n);
        }
    }
    // Added fields are allowed; a wrong enum value or a missing field is not.
    let mut doc = serde_json::to_value(notification(Outcome::Restored, "acme-prod", 0)).unwrap();
    doc["added_in_a_later_release"] = json!({"x": 1});
    assert_valid(&schemas, index, &doc);
    for (field, bad) in [
        ("outcome", json!("fixed")),
        ("severity", json!("high")),
        ("mode", json!("yolo")),
        ("status", json!("broken")),
        ("id", json!(42)),
    ] {
        let mut d = doc.clone();
        d[field] = bad;
        assert!(schemas.validate(&d, index).is_err(), "{field} accepted");
    }
    let mut d = doc.clone();
    d.as_object_mut().unwrap().remove("project_id");
    assert!(schemas.validate(&d, index).is_err());
}

#[test]
fn the_same_finding_and_outcome_keeps_its_notification_id_and_a_new_restoration_gets_a_new_one() {
    let a = notification(Outcome::Restored, "acme-prod", 0);
    let b = notification(Outcome::Restored, "acme-prod", 0);
    assert_eq!(a.id, b.id);
    let (mut pr, fr) = report(Outcome::Restored, "acme-prod", 0);
    pr.actions[0].etag_after = Some("BwYV1xZZZZZ=".to_owned());
    let c = notify::build(
        &pr,
        &fr,
        Mode::Enforce,
        &evidence(),
        None,
        SystemTime::UNIX_EPOCH,
    );
    assert_ne!(a.id, c.id);
    assert_ne!(
        a.id,
        notification(Outcome::Failed, "acme-prod", 0).id,
        "outcome is part of the id"
    );
}

// ---------------------------------------------------------------------------------------------
// A real HTTP receiver (Slack-compatible or generic webhook).

#[derive(Clone, Debug)]
enum Behaviour {
    Ok,
    Status(u16),
    Hang(Duration),
}

#[derive(Clone, Debug)]
struct Received {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

/// Checks a payload the way Slack does for incoming webhooks (Block Kit limits); `Err` is what Slack
/// would answer with HTTP 400.
fn check_block_kit(v: &Value) -> Result<(), String> {
    let blocks = v["blocks"].as_array().ok_or("no_blocks")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err("invalid_blocks: count".into());
    }
    if !v["text"].is_string() {
        return Err("missing_text (fallback for notifications)".into());
    }
    let text_ok = |t: &Value, max: usize| -> Result<(), String> {
        let kind = t["type"]
            .as_str()
            .ok_or("invalid_blocks: text without type")?;
        if kind != "plain_text" && kind != "mrkdwn" {
            return Err(format!("invalid_blocks: text type {kind}"));
        }
        let s = t["text"].as_str().ok_or("invalid_blocks: text")?;
        if s.is_empty() || s.chars().count() > max {
            return Err(format!("invalid_blocks: text length {}", s.chars().count()));
        }
        Ok(())
    };
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" {
                    return Err("invalid_blocks: header must be plain_text".into());
                }
                text_ok(&b["text"], 150)?;
            }
            Some("section") => {
                if let Some(fields) = b["fields"].as_array() {
                    if fields.is_empty() || fields.len() > 10 {
                        return Err("invalid_blocks: fields".into());
                    }
                    for f in fields {
                        text_ok(f, 2000)?;
                    }
                } else {
                    text_ok(&b["text"], 3000)?;
                }
            }
            Some("context") => {
                let e = b["elements"].as_array().ok_or("invalid_blocks: context")?;
                if e.is_empty() || e.len() > 10 {
                    return Err("invalid_blocks: context elements".into());
                }
                for t in e {
                    text_ok(t, 3000)?;
                }
            }
            Some("actions") => {
                let e = b["elements"].as_array().ok_or("invalid_blocks: actions")?;
                if e.is_empty() || e.len() > 25 {
                    return Err("invalid_blocks: actions elements".into());
                }
                let mut ids = std::collections::HashSet::new();
                for button in e {
                    if button["type"] != "button" || button["text"]["type"] != "plain_text" {
                        return Err("invalid_blocks: button".into());
                    }
                    text_ok(&button["text"], 75)?;
                    let url = button["url"].as_str().unwrap_or("");
                    if !url.starts_with("https://") || url.len() > 3000 {
                        return Err("invalid_blocks: button url".into());
                    }
                    if !ids.insert(button["action_id"].as_str().unwrap_or("").to_owned()) {
                        return Err("invalid_blocks: duplicate action_id".into());
                    }
                }
            }
            Some("divider") => {}
            other => return Err(format!("invalid_blocks: block type {other:?}")),
        }
    }
    Ok(())
}

impl Receiver {
    async fn start(slack: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        Receiver::start_on(listener, slack)
    }

    /// A receiver answering on `listener`.
    fn start_on(listener: tokio::net::TcpListener, slack: bool) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour::Ok));
        let (rec, beh) = (received.clone(), behaviour.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (rec, beh) = (rec.clone(), beh.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (rec, beh) = (rec.clone(), beh.clone());
                            async move {
                                let headers = req.headers().clone();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let behaviour = beh.lock().unwrap().clone();
                                let (status, answer) = match behaviour {
                                    Behaviour::Hang(d) => {
                                        // Recorded on arrival (status 0: never answered in time).
                                        rec.lock().unwrap().push(Received {
                                            status: 0,
                                            headers,
                                            body,
                                        });
                                        tokio::time::sleep(d).await;
                                        let r = http::Response::new(Full::new(Bytes::from("late")));
                                        return Ok::<_, std::convert::Infallible>(r);
                                    }
                                    Behaviour::Status(s) => (s, "server_error".to_owned()),
                                    Behaviour::Ok if slack => {
                                        match serde_json::from_slice::<Value>(&body)
                                            .map_err(|e| format!("invalid_payload: {e}"))
                                            .and_then(|v| check_block_kit(&v))
                                        {
                                            Ok(()) => (200, "ok".to_owned()),
                                            Err(e) => (400, e),
                                        }
                                    }
                                    Behaviour::Ok => (200, "{}".to_owned()),
                                };
                                rec.lock().unwrap().push(Received {
                                    status,
                                    headers,
                                    body,
                                });
                                let mut r = http::Response::new(Full::new(Bytes::from(answer)));
                                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            received,
            behaviour,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn ok(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.status == 200).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// A real SMTP server on loopback (RFC 5321 subset: EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, QUIT).

#[derive(Clone, Debug, Default)]
struct Mail {
    auth: Option<(String, String)>,
    from: String,
    to: Vec<String>,
    data: String,
}

struct SmtpServer {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    sessions: Arc<Mutex<Vec<Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn b64(s: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let (m, s) = (mails.clone(), sessions.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (m, s) = (m.clone(), s.clone());
                tokio::spawn(async move {
                    let log = smtp_session(stream, m).await;
                    s.lock().unwrap().push(log);
                });
            }
        });
        SmtpServer {
            addr,
            mails,
            sessions,
            task,
        }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) -> Vec<String> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut log = Vec::new();
    let mut mail = Mail::default();
    let mut auth = None;
    let _ = w.write_all(b"220 localhost ESMTP test server\r\n").await;
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = line[10..].trim().to_owned();
            let arg = if arg.is_empty() {
                let _ = w.write_all(b"334 \r\n").await;
                lines.next_line().await.ok().flatten().unwrap_or_default()
            } else {
                arg
            };
            let decoded = b64(&arg);
            let parts: Vec<&str> = decoded.split('\0').collect();
            auth = Some((
                parts.get(1).unwrap_or(&"").to_string(),
                parts.get(2).unwrap_or(&"").to_string(),
            ));
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("AUTH LOGIN") {
            let _ = w.write_all(b"334 VXNlcm5hbWU6\r\n").await;
            let user = b64(&lines.next_line().await.ok().flatten().unwrap_or_default());
            let _ = w.write_all(b"334 UGFzc3dvcmQ6\r\n").await;
            let pass = b64(&lines.next_line().await.ok().flatten().unwrap_or_default());
            auth = Some((user, pass));
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                auth: auth.clone(),
                from: line[10..]
                    .trim()
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                ..Mail::default()
            };
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(
                line[8..]
                    .trim()
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            );
            "250 2.1.5 Ok\r\n".into()
        } else if upper == "DATA" {
            let _ = w
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await;
            let mut data = String::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push_str("\r\n");
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            "250 2.0.0 Ok: queued\r\n".into()
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
            break;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 Ok\r\n".into()
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    log
}

/// Decodes quoted-printable (soft breaks and =XX).
fn unqp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The header block of a message with folded lines unfolded.
fn headers_of(data: &str) -> String {
    data.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ")
}

// ---------------------------------------------------------------------------------------------
// Deliverers from a real policy file.

const SLACK_URL_ENV: &str = "T_SLACK_URL";

struct Setup {
    policy: String,
    env: HashMap<String, String>,
}

impl Setup {
    fn deliverer(&self) -> Arc<Deliverer> {
        let policy = PolicyFile::from_yaml(&self.policy, "test-policy.yaml")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.policy));
        let env = self.env.clone();
        Deliverer::from_config(&policy.notifications, &move |k| env.get(k).cloned())
            .expect("channels build")
    }
}

/// slack + webhook + email channels, every non-healthy outcome to all three.
fn setup(window: u64, attempts: u32, slack: &str, hook: &str, smtp: SocketAddr) -> Setup {
    let policy = format!(
        "mode: enforce
notifications:
  digest_window_seconds: {window}
  retry_attempts: {attempts}
  timeout_seconds: 1
  channels:
    - name: platform-slack
      type: slack
      url_env: {SLACK_URL_ENV}
    - name: siem
      type: webhook
      url_env: T_HOOK_URL
      key_env: T_HOOK_KEY
    - name: oncall-email
      type: email
      host: 127.0.0.1
      port: {}
      username: remediator
      password_env: T_SMTP_PASSWORD
      from: GKE IAM remediator <remediator@example.com>
      to: [platform@example.com]
      tls: none
  routes:
    - channels: [platform-slack, siem, oncall-email]
",
        smtp.port()
    );
    let env = HashMap::from([
        (SLACK_URL_ENV.to_owned(), slack.to_owned()),
        ("T_HOOK_URL".to_owned(), hook.to_owned()),
        ("T_HOOK_KEY".to_owned(), "hook-key-9b2e7d".to_owned()),
        ("T_SMTP_PASSWORD".to_owned(), "smtp-pass-1a8c3e".to_owned()),
    ]);
    Setup { policy, env }
}

const SLACK_PATH: &str = "/services/T0SECRET/B0SECRET/slack-secret-4f1c9a";

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_message_carries_header_fields_context_and_console_buttons() {
    let slack = Receiver::start(true).await;
    let hook = Receiver::start(false).await;
    let smtp = SmtpServer::start().await;
    let d = setup(0, 2, &slack.url(SLACK_PATH), &hook.url("/h"), smtp.addr).deliverer();

    let n = notification(Outcome::Restored, "acme-prod", 0);
    assert_eq!(d.deliver(n.clone()).await, Verdict::Ack);

    let got = slack.all();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].status,
        200,
        "{}",
        String::from_utf8_lossy(&got[0].body)
    );
    let v = got[0].json();
    let blocks = v["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["header", "section", "section", "context", "actions"]
    );
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(
        header.contains("Restored") && header.contains("acme-prod"),
        "{header}"
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    let all = fields.join("\n");
    for want in [
        "*Project*",
        "acme-prod",
        "*Principal*",
        AGENT,
        "roles/container.serviceAgent",
        "gke-service-agent",
        "*Who caused it*\nadmin@example.com with Terraform 1.7.5 with terraform-provider-google 5.22.0",
        "BwYV1xJ0a1c=",
        "BwYV1xK2b3d=",
    ] {
        assert!(all.contains(want), "{want} missing in {all}");
    }
    let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.contains(&n.id) && context.contains(&n.time),
        "{context}"
    );
    let buttons = blocks[4]["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["url"], n.links.iam);
    assert_eq!(buttons[1]["url"], n.links.clusters[0]);
    assert!(
        buttons[1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("us-central1/c1")
    );
    eprintln!(
        "slack payload:\n{}",
        serde_json::to_string_pretty(&v).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_renders_a_slack_message_slack_accepts() {
    let slack = Receiver::start(true).await;
    let hook = Receiver::start(false).await;
    let smtp = SmtpServer::start().await;
    let d = setup(0, 1, &slack.url(SLACK_PATH), &hook.url("/h"), smtp.addr).deliverer();
    for outcome in ALL_OUTCOMES.into_iter().filter(|o| *o != Outcome::Healthy) {
        for i in [0, 3] {
            assert_eq!(
                d.deliver(notification(outcome, "acme-prod", i)).await,
                Verdict::Ack
            );
        }
    }
    // healthy goes nowhere unless a route names it.
    assert_eq!(
        d.deliver(notification(Outcome::Healthy, "acme-prod", 0))
            .await,
        Verdict::Ack
    );
    let got = slack.all();
    assert_eq!(got.len(), 14);
    assert!(
        got.iter().all(|r| r.status == 200),
        "{:?}",
        got.iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(hook.ok().len(), 14);
    assert_eq!(smtp.mails().len(), 14);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_arrives_over_smtp_as_multipart_text_and_html_with_outcome_and_project_in_the_subject()
 {
    let smtp = SmtpServer::start().await;
    let slack = Receiver::start(true).await;
    let policy = format!(
        "notifications:
  digest_window_seconds: 0
  channels:
    - name: oncall-email
      type: email
      host: 127.0.0.1
      port: {}
      username: remediator
      password_env: T_SMTP_PASSWORD
      from: GKE IAM remediator <remediator@example.com>
      to: [platform@example.com]
      tls: none
    - {{name: s, type: slack, url_env: {SLACK_URL_ENV}}}
  routes:
    - outcomes: [failed, escalated]
      channels: [oncall-email]
      to: [oncall@example.com, sre@example.com]
    - outcomes: [restored]
      channels: [oncall-email, s]
",
        smtp.addr.port()
    );
    let d = Setup {
        policy,
        env: HashMap::from([
            ("T_SMTP_PASSWORD".to_owned(), "smtp-pass-1a8c3e".to_owned()),
            (SLACK_URL_ENV.to_owned(), slack.url(SLACK_PATH)),
        ]),
    }
    .deliverer();

    let failed = notification(Outcome::Failed, "acme-prod", 0);
    assert_eq!(d.deliver(failed.clone()).await, Verdict::Ack);
    assert_eq!(
        d.deliver(notification(Outcome::Restored, "acme-prod", 0))
            .await,
        Verdict::Ack
    );
    assert_eq!(
        d.deliver(notification(Outcome::Unknown, "acme-prod", 0))
            .await,
        Verdict::Ack,
        "unrouted"
    );

    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(
        m.auth,
        Some(("remediator".to_owned(), "smtp-pass-1a8c3e".to_owned()))
    );
    assert_eq!(m.from, "remediator@example.com");
    assert_eq!(
        m.to,
        ["oncall@example.com", "sre@example.com"],
        "recipients by route"
    );
    let headers = headers_of(&m.data);
    assert!(
        headers.contains(
            "Subject: [gke-iam-remediator] Restore failed: gke-service-agent in acme-prod"
        ),
        "{headers}"
    );
    assert!(
        headers.contains(&format!(
            "Message-ID: <{}.gke-iam-remediator@example.com>",
            failed.id
        )),
        "a Message-ID derived from the notification: {headers}"
    );
    assert!(
        headers.contains("From: \"GKE IAM remediator\" <remediator@example.com>")
            || headers.contains("From: GKE IAM remediator <remediator@example.com>"),
        "{headers}"
    );
    assert!(headers.contains("multipart/alternative"), "{headers}");
    let body = unqp(&m.data);
    assert!(body.contains("Content-Type: text/plain"), "{body}");
    assert!(body.contains("Content-Type: text/html"), "{body}");
    for want in [
        "Who caused it:",
        "admin@example.com with Terraform 1.7.5",
        "setIamPolicy: 403 PERMISSION_DENIED",
        &failed.id,
        &failed.links.iam,
        "<table",
    ] {
        assert!(body.contains(want), "{want} missing in\n{body}");
    }
    assert_eq!(
        mails[1].to,
        ["platform@example.com"],
        "the channel's default recipients"
    );
    assert!(
        headers_of(&mails[1].data)
            .contains("Subject: [gke-iam-remediator] Restored: gke-service-agent in acme-prod")
    );
    eprintln!("email source:\n{}", m.data);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_channel_requiring_starttls_refuses_a_server_that_does_not_offer_it() {
    let smtp = SmtpServer::start().await;
    let policy = format!(
        "notifications:
  digest_window_seconds: 0
  retry_attempts: 1
  channels:
    - {{name: mail, type: email, host: 127.0.0.1, port: {}, username: u, password_env: T_SMTP_PASSWORD, from: a@example.com, to: [b@example.com]}}
  routes:
    - channels: [mail]
",
        smtp.addr.port()
    );
    let d = Setup {
        policy,
        env: HashMap::from([("T_SMTP_PASSWORD".to_owned(), "smtp-pass-1a8c3e".to_owned())]),
    }
    .deliverer();
    let verdict = d
        .deliver(notification(Outcome::Failed, "acme-prod", 0))
        .await;
    assert!(matches!(verdict, Verdict::Retry(_)), "{verdict:?}");
    assert!(smtp.mails().is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sessions = smtp.sessions.lock().unwrap().clone();
    assert!(
        sessions
            .iter()
            .flatten()
            .all(|l| !l.to_ascii_uppercase().starts_with("AUTH")),
        "credentials were never sent in clear: {sessions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_post_is_signed_with_hmac_sha256_over_the_exact_body() {
    let slack = Receiver::start(true).await;
    let hook = Receiver::start(false).await;
    let smtp = SmtpServer::start().await;
    let d = setup(
        0,
        1,
        &slack.url(SLACK_PATH),
        &hook.url("/hooks/gke"),
        smtp.addr,
    )
    .deliverer();
    let n = notification(Outcome::Escalated, "acme-prod", 0);
    assert_eq!(d.deliver(n.clone()).await, Verdict::Ack);

    let got = hook.ok();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    let sig = r.headers["x-signature"].to_str().unwrap();
    // Verified independently of the crate's own helper.
    use hmac::{KeyInit, Mac};
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"hook-key-9b2e7d").unwrap();
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, format!("sha256={expected}"));
    assert!(notify::webhook::verify(b"hook-key-9b2e7d", &r.body, sig));
    assert!(!notify::webhook::verify(b"wrong-key", &r.body, sig));
    assert_eq!(r.headers["x-notification-id"], n.id.as_str());
    assert_eq!(r.headers["content-type"], "application/json");
    let (schemas, index) = schema();
    assert_valid(&schemas, index, &r.json());
    assert_eq!(r.json()["outcome"], "escalated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_500_findings_for_one_project_becomes_one_digest_per_channel() {
    let slack = Receiver::start(true).await;
    let hook = Receiver::start(false).await;
    let smtp = SmtpServer::start().await;
    let d = setup(2, 2, &slack.url(SLACK_PATH), &hook.url("/h"), smtp.addr).deliverer();
    let burst: Vec<Notification> = (1..=500)
        .map(|i| {
            notification(
                if i % 10 == 0 {
                    Outcome::Failed
                } else {
                    Outcome::Restored
                },
                "acme-prod",
                i,
            )
        })
        .collect();
    let started = Instant::now();
    let verdicts = futures::future::join_all(burst.iter().cloned().map(|n| {
        let d = d.clone();
        async move { d.deliver(n).await }
    }))
    .await;
    eprintln!("500 deliveries answered in {:?}", started.elapsed());
    assert!(verdicts.iter().all(|v| *v == Verdict::Ack));

    let s = slack.all();
    assert_eq!(s.len(), 1, "one Slack message for the burst");
    assert_eq!(s[0].status, 200, "{}", String::from_utf8_lossy(&s[0].body));
    let v = s[0].json();
    let header = v["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(header.contains("500 findings in 1 project"), "{header}");
    let list = v["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(list.contains("and 480 more"), "{list}");
    assert!(
        v["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("50 failed")
    );

    let h = hook.ok();
    assert_eq!(h.len(), 1, "one webhook POST for the burst");
    let arr = h[0].json();
    assert_eq!(arr.as_array().unwrap().len(), 500);
    assert!(notify::webhook::verify(
        b"hook-key-9b2e7d",
        &h[0].body,
        h[0].headers["x-signature"].to_str().unwrap()
    ));
    assert_eq!(h[0].headers["x-notification-count"], "500");
    let (schemas, index) = schema();
    for n in arr.as_array().unwrap() {
        assert_valid(&schemas, index, n);
    }

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one email for the burst");
    let headers = headers_of(&mails[0].data);
    assert!(headers.contains("500 findings in acme-prod"), "{headers}");
    assert!(
        headers.contains("450 restored") || headers.contains("50 failed"),
        "{headers}"
    );

    // The same burst again (a redelivery) sends nothing.
    let again = futures::future::join_all(burst.into_iter().take(20).map(|n| {
        let d = d.clone();
        async move { d.deliver(n).await }
    }))
    .await;
    assert!(again.iter().all(|v| *v == Verdict::Ack));
    assert_eq!(
        (slack.all().len(), hook.all().len(), smtp.mails().len()),
        (1, 1, 1)
    );
}

#[derive(Clone, Copy, Debug)]
enum Down {
    Refused,
    Http500,
    Timeout,
}

/// One channel down: the others deliver once, the broken one gets a retry verdict, and a
/// redelivery after it recovers sends to it alone.
async fn one_channel_down(kind: Down) {
    let healthy_slack = Receiver::start(true).await;
    let smtp = SmtpServer::start().await;
    let refused = RefusedPort::new();
    let broken = match kind {
        Down::Refused => None,
        Down::Http500 => {
            let r = Receiver::start(false).await;
            r.set(Behaviour::Status(500));
            Some(r)
        }
        Down::Timeout => {
            let r = Receiver::start(false).await;
            r.set(Behaviour::Hang(Duration::from_secs(5)));
            Some(r)
        }
    };
    let hook_url = match &broken {
        Some(r) => r.url("/h"),
        None => format!("{}/h", refused.url()),
    };
    let d = setup(0, 2, &healthy_slack.url(SLACK_PATH), &hook_url, smtp.addr).deliverer();
    let n = notification(Outcome::Failed, "acme-prod", 0);

    let started = Instant::now();
    let verdict = d.deliver(n.clone()).await;
    eprintln!("{kind:?}: retry verdict after {:?}", started.elapsed());
    let Verdict::Retry(reason) = verdict else {
        panic!("{kind:?}: expected a retry verdict")
    };
    assert!(reason.contains("channel siem"), "{reason}");
    assert!(
        !reason.contains("platform-slack") && !reason.contains("oncall-email"),
        "{reason}"
    );
    assert_eq!(
        healthy_slack.ok().len(),
        1,
        "Slack delivered despite the broken webhook"
    );
    assert_eq!(
        smtp.mails().len(),
        1,
        "email delivered despite the broken webhook"
    );
    if let Some(r) = &broken {
        assert_eq!(
            r.all().len(),
            2,
            "{kind:?}: two attempts (the retry budget)"
        );
    }

    // The receiver comes back; Pub/Sub redelivers.
    let back = match broken {
        Some(r) => {
            r.set(Behaviour::Ok);
            r
        }
        None => Receiver::start_on(refused.listen(), false),
    };
    assert_eq!(d.deliver(n.clone()).await, Verdict::Ack);
    assert_eq!(back.ok().len(), 1);
    assert_eq!(back.ok()[0].headers["x-notification-id"], n.id.as_str());
    assert_eq!(healthy_slack.all().len(), 1, "no duplicate on Slack");
    assert_eq!(smtp.mails().len(), 1, "no duplicate email");
    // A third delivery (a duplicate) sends nothing anywhere.
    assert_eq!(d.deliver(n).await, Verdict::Ack);
    assert_eq!(
        (
            healthy_slack.all().len(),
            smtp.mails().len(),
            back.ok().len()
        ),
        (1, 1, 1)
    );
    assert!(
        d.stats
            .already_delivered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_refusing_connections_gets_a_retry_while_slack_and_email_deliver_once() {
    one_channel_down(Down::Refused).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_answering_500_gets_a_retry_while_slack_and_email_deliver_once() {
    one_channel_down(Down::Http500).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_times_out_gets_a_retry_while_slack_and_email_deliver_once() {
    one_channel_down(Down::Timeout).await;
}

/// A `tracing` writer into a buffer.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const SECRETS: [&str; 4] = [
    "slack-secret-4f1c9a",
    "hook-key-9b2e7d",
    "smtp-pass-1a8c3e",
    "url-secret-7c3d",
];

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_appear_in_logs_errors_or_debug_output() {
    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let smtp = SmtpServer::start().await;
    let hook = Receiver::start(false).await;
    hook.set(Behaviour::Status(500));
    // Slack refuses connections (its URL, a secret, is what a careless error would print).
    let refused = RefusedPort::new();
    let slack_url = format!("{}{SLACK_PATH}", refused.url());
    let s = setup(0, 2, &slack_url, &hook.url("/h/url-secret-7c3d"), smtp.addr);
    let d = s.deliverer();
    let verdict = d
        .deliver(notification(Outcome::Failed, "acme-prod", 0))
        .await;
    let Verdict::Retry(reason) = &verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(smtp.mails().len(), 1);
    assert_eq!(
        smtp.mails()[0].auth.as_ref().unwrap().1,
        "smtp-pass-1a8c3e",
        "the secret was used"
    );

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("notification send failed"),
        "the failures were logged:\n{text}"
    );
    let policy = PolicyFile::from_yaml(&s.policy, "p.yaml").unwrap();
    let missing = Deliverer::from_config(&policy.notifications, &|k| {
        (k != "T_HOOK_KEY").then(|| s.env.get(k).cloned()).flatten()
    })
    .unwrap_err()
    .to_string();
    assert!(missing.contains("T_HOOK_KEY"), "{missing}");
    let outputs = [
        ("logs", text),
        ("verdict", reason.clone()),
        ("deliverer Debug", format!("{d:?}")),
        ("policy Debug", format!("{policy:?}")),
        ("missing-secret error", missing),
    ];
    for (what, out) in &outputs {
        for secret in SECRETS {
            assert!(!out.contains(secret), "{what} contains {secret}:\n{out}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: serve and job with the Pub/Sub emulator.

/// The audience of the push subscriptions in front of `serve` (Cloud Run's service URL).
const PUSH_AUDIENCE: &str = "https://gke-iam-remediator-abc123-uc.a.run.app";
/// The push subscriptions' service account.
const PUSHER: &str = "pubsub-push@ops-project.iam.gserviceaccount.com";

fn e2e_policy(mode: &str) -> String {
    format!(
        "mode: {mode}
notifications:
  digest_window_seconds: 1
  retry_attempts: 2
  timeout_seconds: 2
  channels:
    - {{name: platform-slack, type: slack, url_env: REMEDIATOR_SLACK_WEBHOOK_URL}}
    - {{name: siem, type: webhook, url_env: REMEDIATOR_WEBHOOK_URL, key_env: REMEDIATOR_WEBHOOK_KEY}}
  routes:
    - channels: [platform-slack, siem]
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_restores_a_removed_binding_and_delivers_the_notification_pushed_back_to_pubsub_notify()
 {
    let emulator = PubsubEmulator::start().await;
    let http = reqwest::Client::new();
    emulator.topic(OPS, EVENTS_TOPIC).await;
    emulator.topic(OPS, NOTIFY_TOPIC).await;
    let sim = audit_log_sim(WORLD, &emulator).await;
    let slack = Receiver::start(true).await;
    let hook = Receiver::start(false).await;
    let policy = TempFile::new(&e2e_policy("enforce"));
    let mut env = notifying_env(&sim, &emulator);
    env.extend([
        ("REMEDIATOR_POLICY", policy.arg().to_owned()),
        ("REMEDIATOR_COALESCE_MS", "300".to_owned()),
        ("REMEDIATOR_SLACK_WEBHOOK_URL", slack.url(SLACK_PATH)),
        ("REMEDIATOR_WEBHOOK_URL", hook.url("/h/url-secret-7c3d")),
        ("REMEDIATOR_WEBHOOK_KEY", "hook-key-9b2e7d".to_owned()),
        // Notification delivery needs authenticated pushes: serve sits behind a Cloud Run front end.
        ("REMEDIATOR_PUSH_AUTH", "cloud-run".to_owned()),
        ("REMEDIATOR_PUSH_AUDIENCE", PUSH_AUDIENCE.to_owned()),
        ("REMEDIATOR_PUSH_ALLOWED_EMAILS", PUSHER.to_owned()),
        (
            "REMEDIATOR_OIDC_KEYS_URL",
            key_server(oidc::fixture("jwks.json")).await,
        ),
    ]);
    let serve = Serve::start(&env).await;
    // The emulator cannot attach push tokens: the front end injects the one Pub/Sub would, then
    // checks and strips it as Cloud Run does.
    let front = FrontEnd::start(
        FrontEndConfig {
            audiences: vec![PUSH_AUDIENCE.to_owned()],
            invokers: vec![PUSHER.to_owned()],
            jwks: oidc::fixture("jwks.json"),
            invoker_check: true,
            inject: Some(Injection {
                key_pem: oidc::fixture("signing-private.pem"),
                kid: oidc::KID.to_owned(),
                email: PUSHER.to_owned(),
                audience: PUSH_AUDIENCE.to_owned(),
            }),
        },
        &serve.url,
    )
    .await;
    for (sub, topic, endpoint) in [
        ("iam-events-push", EVENTS_TOPIC, "/pubsub/push"),
        ("notifications-push", NOTIFY_TOPIC, "/pubsub/notify"),
    ] {
        emulator
            .push_subscription(OPS, sub, topic, &format!("{}{endpoint}", front.url), 60)
            .await;
    }

    remove_agent_binding(&Gcloud::new(&sim.base_url(), "acme-prod")).await;
    let started = Instant::now();
    let delivered = wait_until(Duration::from_secs(45), || {
        !slack.ok().is_empty() && !hook.ok().is_empty()
    })
    .await;
    assert!(
        delivered.is_some(),
        "not delivered; serve logs:\n{}",
        serve.logs.lock().unwrap()
    );
    eprintln!("removal -> Slack and webhook: {:?}", started.elapsed());

    let s = slack.ok();
    let v = s[0].json();
    let header = v["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        header.contains("Restored") && header.contains("acme-prod"),
        "{v:#}"
    );
    assert!(
        v.to_string().contains("admin@example.com"),
        "who caused it: {v:#}"
    );
    let n = hook.ok()[0].json();
    let (schemas, index) = schema();
    assert_valid(&schemas, index, &n);
    assert_eq!(n["outcome"], "restored");
    assert_eq!(n["evidence"]["actor"], "admin@example.com");
    assert!(
        n["actions"][0]["etag_before"].is_string() && n["actions"][0]["etag_after"].is_string()
    );

    // A channel down answers 503 (Pub/Sub redelivers); once it is back the redelivery is 204 and
    // the healthy channel is not sent again.
    hook.set(Behaviour::Status(500));
    let other = notification(Outcome::Escalated, "acme-prod", 0);
    let envelope = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&other).unwrap()),
            "messageId": "900000001",
            "attributes": other.attributes(),
        },
        "subscription": format!("projects/{OPS}/subscriptions/notifications-push"),
    });
    let post = || {
        http.post(format!("{}/pubsub/notify", front.url))
            .json(&envelope)
            .send()
    };
    let slack_before = slack.ok().len();
    let r = post().await.unwrap();
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    assert_eq!(slack.ok().len(), slack_before + 1);
    hook.set(Behaviour::Ok);
    let r = post().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(slack.ok().len(), slack_before + 1, "no duplicate on Slack");
    assert!(
        hook.ok()
            .iter()
            .any(|r| r.headers["x-notification-id"] == other.id.as_str())
    );
    // Not a notification: acknowledged, nothing sent.
    let junk = json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode("{\"hello\":1}"), "messageId": "9"}});
    let r = http
        .post(format!("{}/pubsub/notify", front.url))
        .json(&junk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let logs = serve.logs.lock().unwrap().clone();
    for secret in SECRETS {
        assert!(!logs.contains(secret), "serve logs contain {secret}");
    }
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_pulls_notifications_from_a_subscription_and_delivers_one_digest_per_channel() {
    let emulator = PubsubEmulator::start().await;
    emulator
        .topic_with_subscription(OPS, NOTIFY_TOPIC, "notifications-deliver")
        .await;
    let slack = Receiver::start(true).await;
    let hook = Receiver::start(false).await;
    let messages: Vec<Value> = (1..=30)
        .map(|i| {
            let n = notification(Outcome::WouldRestore, "acme-dev", i);
            json!({"data": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&n).unwrap()), "attributes": n.attributes()})
        })
        .collect();
    emulator.publish(OPS, NOTIFY_TOPIC, messages).await;

    let policy = TempFile::new(&e2e_policy("dry-run"));
    let started = Instant::now();
    let subscription = format!("projects/{OPS}/subscriptions/notifications-deliver");
    let run = job(
        &[
            "--subscription",
            &subscription,
            "--deliver-notifications",
            "--idle-timeout",
            "3",
        ],
        &[
            ("PUBSUB_EMULATOR_HOST", emulator.host.clone()),
            ("REMEDIATOR_POLICY", policy.arg().to_owned()),
            ("REMEDIATOR_SLACK_WEBHOOK_URL", slack.url(SLACK_PATH)),
            ("REMEDIATOR_WEBHOOK_URL", hook.url("/h/url-secret-7c3d")),
            ("REMEDIATOR_WEBHOOK_KEY", "hook-key-9b2e7d".to_owned()),
        ],
    )
    .await;
    eprintln!("job took {:?}", started.elapsed());
    let run = run.ok();
    let summary = run.summary();
    assert_eq!(summary["messages"], 30, "{summary}");
    assert_eq!(summary["acked"], 30, "{summary}");
    let s = slack.ok();
    let h = hook.ok();
    assert_eq!(s.len(), 1, "one digest on Slack: {}", run.stderr);
    assert_eq!(h.len(), 1, "one digest on the webhook");
    assert_eq!(h[0].json().as_array().unwrap().len(), 30);
    assert!(
        s[0].json()["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("30 findings in 1 project")
    );
    for secret in SECRETS {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "job output contains {secret}"
        );
    }
}
