//! `serve` behind a Cloud Run front end (`support::frontend`), both push authentication models end to end:
//!
//! - `cloud-run`: the invoker check is on; the front end verifies the token, answers 401/403 itself, and
//!   forwards it with `SIGNATURE_REMOVED_BY_GOOGLE`; `serve` checks the claims.
//! - `signed`: the invoker check is off; the token reaches `serve` as Pub/Sub attached it and `serve`
//!   verifies the signature.
//!
//! The emulator tests run the real loop (gcloud -> simulator -> audit log on the emulator -> push
//! subscription -> front end -> `serve` -> simulator); the emulator cannot attach OIDC tokens, so there the
//! front end runs in token-injecting mode (it mints the token Pub/Sub would attach, then checks it like any
//! other). The direct tests push tokens of every shape with an HTTP client, with no injection.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use gcp_sim::SimHandle;
use serde_json::{Value, json};

use crate::support::binary::{BIN, Serve};
use crate::support::frontend::{FrontEnd, FrontEndConfig, Injection, SIGNATURE_REMOVED};
use crate::support::oidc::{KID, fixture, key_server, token};
use crate::support::service::{
    AGENT, EVENTS_TOPIC, OPS, WORLD, audit_log_sim, has, remove_agent_binding, self_env,
};
use crate::support::{Gcloud, PubsubEmulator, start_sim, wait_until};

/// The service URL, which is the audience Cloud Run accepts and the push subscriptions use.
const SERVICE_URL: &str = "https://gke-iam-remediator-abc123-uc.a.run.app";
/// The push subscription's service account.
const PUSHER: &str = "pubsub-push@ops-project.iam.gserviceaccount.com";
/// Another account holding `roles/run.invoker` (not allowed to push by `serve`).
const OTHER_INVOKER: &str = "ci-smoke@ops-project.iam.gserviceaccount.com";
/// An account without `roles/run.invoker`.
const STRANGER: &str = "stranger@elsewhere.iam.gserviceaccount.com";

fn audience() -> String {
    format!("{SERVICE_URL}/pubsub/push")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims of a Google ID token as Pub/Sub attaches it.
fn claims(aud: &str, email: &str) -> Value {
    json!({"iss": "https://accounts.google.com", "aud": aud, "azp": "1007", "sub": "1007",
           "email": email, "email_verified": true, "iat": now() - 5, "exp": now() + 3595})
}

fn signed(claims: Value) -> String {
    format!(
        "Bearer {}",
        token(&fixture("signing-private.pem"), KID, claims)
    )
}

fn forged_stripped(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "Bearer {}.{}.{SIGNATURE_REMOVED}",
        b64(&json!({"alg": "RS256", "kid": KID, "typ": "JWT"})),
        b64(claims)
    )
}

fn front_end_config(invoker_check: bool, inject: Option<Injection>) -> FrontEndConfig {
    FrontEndConfig {
        audiences: vec![SERVICE_URL.to_owned(), audience()],
        invokers: vec![PUSHER.to_owned(), OTHER_INVOKER.to_owned()],
        jwks: fixture("jwks.json"),
        invoker_check,
        inject,
    }
}

fn injection(email: &str, aud: &str) -> Option<Injection> {
    Some(Injection {
        key_pem: fixture("signing-private.pem"),
        kid: KID.to_owned(),
        email: email.to_owned(),
        audience: aud.to_owned(),
    })
}

/// `serve` with push authentication `mode` (`cloud-run` or `signed`), allowing only [`PUSHER`], with
/// `policy` (else the built-in one).
async fn serve_with_auth(
    mode: &str,
    sim: &SimHandle,
    policy: Option<&str>,
    extra: &[(&str, String)],
) -> Serve {
    let mut env = self_env(sim);
    env.extend([
        ("REMEDIATOR_PUSH_AUTH", mode.to_owned()),
        ("REMEDIATOR_PUSH_AUDIENCE", audience()),
        ("REMEDIATOR_PUSH_ALLOWED_EMAILS", PUSHER.to_owned()),
        (
            "REMEDIATOR_OIDC_KEYS_URL",
            key_server(fixture("jwks.json")).await,
        ),
        ("REMEDIATOR_COALESCE_MS", "300".to_owned()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    match policy {
        Some(policy) => Serve::with_policy(policy, &env).await,
        None => Serve::start(&env).await,
    }
}

fn sweep_push() -> Value {
    json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(b"{\"sweep\": {\"projects\": [\"acme-prod\"]}}"),
            "messageId": "4242",
        },
        "subscription": "projects/ops-project/subscriptions/iam-events-push",
    })
}

async fn push(url: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/pubsub/push"))
        .json(&sweep_push());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// The messages `serve` handled so far (from `/healthz`).
async fn serve_messages(serve: &Serve) -> u64 {
    serve.health().await["messages"].as_u64().unwrap()
}

/// The emulator with the events topic, and the simulator publishing audit-log entries to it.
async fn emulator_and_sim() -> (PubsubEmulator, SimHandle) {
    let emulator = PubsubEmulator::start().await;
    emulator.topic(OPS, EVENTS_TOPIC).await;
    let sim = audit_log_sim(WORLD, &emulator).await;
    (emulator, sim)
}

/// A push subscription `name` on the events topic delivering to `endpoint`'s `/pubsub/push`.
async fn push_subscription(emulator: &PubsubEmulator, name: &str, endpoint: &str) {
    emulator
        .push_subscription(
            OPS,
            name,
            EVENTS_TOPIC,
            &format!("{endpoint}/pubsub/push"),
            10,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_run_model_a_removal_pushed_by_the_emulator_through_the_front_end_is_restored() {
    let (emulator, sim) = emulator_and_sim().await;
    let serve = serve_with_auth(
        "cloud-run",
        &sim,
        Some("mode: enforce\n"),
        &[("GOOGLE_CLOUD_PROJECT", OPS.to_owned())],
    )
    .await;
    let fe = FrontEnd::start(
        front_end_config(true, injection(PUSHER, &audience())),
        &serve.url,
    )
    .await;
    push_subscription(&emulator, "iam-events-push", &fe.url).await;

    remove_agent_binding(&Gcloud::new(&sim.base_url(), "acme-prod")).await;
    let back = wait_until(Duration::from_secs(45), || {
        has(&sim, "roles/container.serviceAgent", AGENT)
    })
    .await;
    assert!(
        back.is_some(),
        "not restored; front end {:?}; serve logs:\n{}",
        fe.stats,
        serve.logs.lock().unwrap()
    );
    eprintln!("removal -> restored through the Cloud Run front end: {back:?}");

    // The front end records a forwarded push when serve's answer comes back, which can be just after
    // the restoration is visible.
    wait_until(Duration::from_secs(10), || !fe.seen().is_empty()).await;
    let seen = fe.seen();
    assert!(fe.stats.injected.load(Ordering::SeqCst) >= 1);
    assert!(!seen.is_empty());
    for (headers, status) in &seen {
        let auth = headers["authorization"].to_str().unwrap();
        assert!(
            auth.ends_with(&format!(".{SIGNATURE_REMOVED}")),
            "forwarded as Cloud Run does: {auth}"
        );
        assert!(headers.contains_key("x-cloud-trace-context"));
        assert!(headers.contains_key("traceparent"));
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert!(headers.contains_key("x-forwarded-for"));
        assert_eq!(*status, 204, "serve accepted the forwarded token");
    }
    // Serve's log lines for a forwarded push carry the trace Cloud Run assigned.
    let logs = serve.logs.lock().unwrap().clone();
    let correlated = seen.iter().any(|(headers, _)| {
        let traceparent = headers["traceparent"].to_str().unwrap();
        let trace = traceparent.split('-').nth(1).unwrap();
        logs.contains(&format!(
            "\"logging.googleapis.com/trace\":\"projects/{OPS}/traces/{trace}\""
        ))
    });
    assert!(correlated, "no log line carries a forwarded trace:\n{logs}");
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_model_with_the_invoker_check_off_serve_verifies_the_full_token_and_restores() {
    let (emulator, sim) = emulator_and_sim().await;
    let serve = serve_with_auth("signed", &sim, Some("mode: enforce\n"), &[]).await;
    let fe = FrontEnd::start(
        front_end_config(false, injection(PUSHER, &audience())),
        &serve.url,
    )
    .await;
    push_subscription(&emulator, "iam-events-push", &fe.url).await;

    remove_agent_binding(&Gcloud::new(&sim.base_url(), "acme-prod")).await;
    let back = wait_until(Duration::from_secs(45), || {
        has(&sim, "roles/container.serviceAgent", AGENT)
    })
    .await;
    assert!(
        back.is_some(),
        "not restored; front end {:?}; serve logs:\n{}",
        fe.stats,
        serve.logs.lock().unwrap()
    );
    for (headers, status) in fe.seen() {
        let auth = headers["authorization"].to_str().unwrap().to_owned();
        assert!(!auth.ends_with(SIGNATURE_REMOVED), "passed through signed");
        assert_eq!(status, 204);
    }
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_emulator_a_token_for_another_audience_or_from_a_non_invoker_stops_at_the_front_end()
 {
    let (emulator, sim) = emulator_and_sim().await;
    let serve = serve_with_auth("cloud-run", &sim, Some("mode: enforce\n"), &[]).await;
    // Two push subscriptions on the events topic, each through its own front end: one whose token
    // names another service, one whose service account is not an invoker.
    let wrong_audience = FrontEnd::start(
        front_end_config(
            true,
            injection(PUSHER, "https://other-service-xyz-uc.a.run.app"),
        ),
        &serve.url,
    )
    .await;
    let non_invoker = FrontEnd::start(
        front_end_config(true, injection(STRANGER, &audience())),
        &serve.url,
    )
    .await;
    push_subscription(&emulator, "push-wrong-audience", &wrong_audience.url).await;
    push_subscription(&emulator, "push-non-invoker", &non_invoker.url).await;

    remove_agent_binding(&Gcloud::new(&sim.base_url(), "acme-prod")).await;
    let rejected = wait_until(Duration::from_secs(30), || {
        wrong_audience.stats.unauthenticated.load(Ordering::SeqCst) >= 2
            && non_invoker.stats.forbidden.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(
        rejected.is_some(),
        "wrong audience {:?}; non-invoker {:?}",
        wrong_audience.stats,
        non_invoker.stats
    );
    // Redelivered, refused again, never forwarded: serve saw nothing and restored nothing.
    assert_eq!(wrong_audience.stats.forwarded.load(Ordering::SeqCst), 0);
    assert_eq!(non_invoker.stats.forwarded.load(Ordering::SeqCst), 0);
    assert_eq!(serve_messages(&serve).await, 0);
    assert!(!has(&sim, "roles/container.serviceAgent", AGENT));
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_shaped_as_cloud_run_forwards_them_and_forged_variants_get_the_right_answers() {
    let sim = start_sim(WORLD).await;
    let serve = serve_with_auth("cloud-run", &sim, None, &[]).await;
    let fe = FrontEnd::start(front_end_config(true, None), &serve.url).await;

    let other_key = format!(
        "Bearer {}",
        token(
            &fixture("other-private.pem"),
            KID,
            claims(&audience(), PUSHER)
        )
    );
    let mut unverified = claims(&audience(), PUSHER);
    unverified["email_verified"] = json!(false);
    let good = signed(claims(&audience(), PUSHER));
    let other_invoker = signed(claims(&audience(), OTHER_INVOKER));
    // (what, headers, the answer, whether the front end forwards it)
    type Case = (&'static str, Vec<(&'static str, String)>, u16, bool);
    let cases: Vec<Case> = vec![
        ("no token", vec![], 401, false),
        (
            "another key",
            vec![("authorization", other_key)],
            401,
            false,
        ),
        (
            "another audience",
            vec![(
                "authorization",
                signed(claims("https://other-service-xyz-uc.a.run.app", PUSHER)),
            )],
            401,
            false,
        ),
        (
            "not an invoker",
            vec![("authorization", signed(claims(&audience(), STRANGER)))],
            403,
            false,
        ),
        // Cloud Run lets an invoker through; serve's own allow-list still refuses it.
        (
            "an invoker serve does not allow",
            vec![("authorization", other_invoker.clone())],
            403,
            true,
        ),
        (
            "email not verified",
            vec![("authorization", signed(unverified))],
            403,
            true,
        ),
        // Cloud Run checks X-Serverless-Authorization and passes Authorization through unchecked: a
        // forged stripped token there must not stand in for the caller.
        (
            "forged Authorization beside a checked X-Serverless-Authorization",
            vec![
                ("x-serverless-authorization", other_invoker.clone()),
                (
                    "authorization",
                    forged_stripped(&claims(&audience(), PUSHER)),
                ),
            ],
            403,
            true,
        ),
        (
            "the push service account",
            vec![("authorization", good)],
            204,
            true,
        ),
    ];
    let mut forwarded = 0;
    for (what, headers, want, reaches_serve) in cases {
        let before = fe.stats.forwarded.load(Ordering::SeqCst);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(push(&fe.url, &pairs).await, want, "{what}");
        let after = fe.stats.forwarded.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            u64::from(reaches_serve),
            "{what}: forwarded?"
        );
        forwarded += u64::from(reaches_serve);
    }
    assert_eq!(fe.stats.forwarded.load(Ordering::SeqCst), forwarded);
    // Only the accepted push reached the engine.
    assert_eq!(serve_messages(&serve).await, 1);
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_service_refuses_stripped_tokens_whether_cloud_run_or_an_attacker_stripped_them() {
    let sim = start_sim(WORLD).await;
    let serve = serve_with_auth("signed", &sim, None, &[]).await;

    // Deployed behind the invoker check by mistake: every forwarded push is refused (401), loudly.
    let checked = FrontEnd::start(front_end_config(true, None), &serve.url).await;
    let good = signed(claims(&audience(), PUSHER));
    assert_eq!(push(&checked.url, &[("authorization", &good)]).await, 401);
    assert_eq!(checked.stats.forwarded.load(Ordering::SeqCst), 1);
    // A forged stripped token straight at the service.
    let forged = forged_stripped(&claims(&audience(), PUSHER));
    assert_eq!(push(&serve.url, &[("authorization", &forged)]).await, 401);

    // With the invoker check off the full token reaches serve, which verifies it.
    let open = FrontEnd::start(front_end_config(false, None), &serve.url).await;
    assert_eq!(push(&open.url, &[("authorization", &good)]).await, 204);
    let wrong_audience = signed(claims("https://other-service-xyz-uc.a.run.app", PUSHER));
    assert_eq!(
        push(&open.url, &[("authorization", &wrong_audience)]).await,
        403
    );
    let stranger = signed(claims(&audience(), STRANGER));
    assert_eq!(push(&open.url, &[("authorization", &stranger)]).await, 403);
    assert_eq!(push(&open.url, &[]).await, 401);
    assert_eq!(serve_messages(&serve).await, 1);
    let logs = serve.logs.lock().unwrap().clone();
    assert!(
        logs.contains("not configured to trust one"),
        "the refusal says why: {logs}"
    );
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_down_sends_sigterm_serve_stops_within_the_grace_and_the_front_end_answers_503() {
    let sim = start_sim(WORLD).await;
    let mut serve = serve_with_auth(
        "cloud-run",
        &sim,
        None,
        &[("REMEDIATOR_SHUTDOWN_GRACE_SECS", "3".to_owned())],
    )
    .await;
    let fe = FrontEnd::start(front_end_config(true, None), &serve.url).await;
    let good = signed(claims(&audience(), PUSHER));
    assert_eq!(push(&fe.url, &[("authorization", &good)]).await, 204);

    let (exit, took) = fe.scale_down(&mut serve).await;
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(serve.logs.lock().unwrap().contains("\"stopped\""));
    assert_eq!(push(&fe.url, &[("authorization", &good)]).await, 503);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_push_auth_pubsub_notify_is_refused_and_nothing_is_relayed() {
    let sim = start_sim(WORLD).await;
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", receiver.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = receiver.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let policy = "mode: dry-run
notifications:
  channels:
    - {name: siem, type: webhook, url_env: REMEDIATOR_WEBHOOK_URL, key_env: REMEDIATOR_WEBHOOK_KEY}
  routes:
    - channels: [siem]
";
    let serve = Serve::with_policy(
        policy,
        &[
            ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
            ("REMEDIATOR_WEBHOOK_URL", hook),
            ("REMEDIATOR_WEBHOOK_KEY", "k-123".to_owned()),
        ],
    )
    .await;
    let note = json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode(b"{\"schema\":\"x\"}"), "messageId": "1"}});
    let r = reqwest::Client::new()
        .post(format!("{}/pubsub/notify", serve.url))
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("deliver-notifications"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing relayed");
    assert!(
        serve
            .logs
            .lock()
            .unwrap()
            .contains("POST /pubsub/notify is refused"),
        "logged at start"
    );
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_configured_push_auth_refuses_to_start_and_names_what_is_missing() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("REMEDIATOR_PUSH_ALLOWED_EMAILS", PUSHER)],
            "REMEDIATOR_PUSH_AUDIENCE is not",
        ),
        (
            &[("REMEDIATOR_PUSH_AUDIENCE", SERVICE_URL)],
            "REMEDIATOR_PUSH_ALLOWED_EMAILS is empty",
        ),
        (
            &[
                ("REMEDIATOR_PUSH_AUTH", "cloud-run"),
                ("REMEDIATOR_PUSH_ALLOWED_EMAILS", PUSHER),
            ],
            "cloud-run needs REMEDIATOR_PUSH_AUDIENCE",
        ),
        (
            &[("REMEDIATOR_PUSH_AUTH", "signed")],
            "signed needs REMEDIATOR_PUSH_AUDIENCE",
        ),
        (
            &[
                ("REMEDIATOR_PUSH_AUTH", "none"),
                ("REMEDIATOR_PUSH_AUDIENCE", SERVICE_URL),
            ],
            "REMEDIATOR_PUSH_AUTH=none but REMEDIATOR_PUSH_AUDIENCE is set",
        ),
    ];
    for (env, says) in cases {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("REMEDIATOR_API_ENDPOINT", "http://127.0.0.1:1/")
            .env("REMEDIATOR_LOG_FORMAT", "text")
            .env_remove("REMEDIATOR_PUSH_AUTH")
            .env_remove("REMEDIATOR_PUSH_AUDIENCE")
            .env_remove("REMEDIATOR_PUSH_ALLOWED_EMAILS")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("serve exits by itself")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} started: {stdout}");
        assert!(
            !stdout.contains("listening on"),
            "{env:?} listened: {stdout}"
        );
        assert!(stderr.contains(says), "{env:?}: {stderr}");
    }
}
