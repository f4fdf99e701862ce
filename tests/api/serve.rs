//! `serve` end to end, here: the official Pub/Sub emulator, the simulator publishing audit-log entries
//! to it, the real `serve` binary behind a push subscription, and the real `gcloud` breaking IAM.

use std::time::{Duration, Instant};

use base64::Engine as _;
use gcp_sim::{Faults, Latency};
use serde_json::{Value, json};

use crate::support::binary::Serve;
use crate::support::oidc::{KID, fixture, key_server, token};
use crate::support::service::{
    AGENT, Loop, WORLD, has, removal_entry, remove_agent_binding, self_env,
};
use crate::support::{Api, Gcloud, project_policy_writes, start_sim, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_removed_with_gcloud_is_restored_and_a_restored_notification_is_published() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");

    remove_agent_binding(&gcloud).await;
    let removed_at = Instant::now();

    let restored = wait_until(Duration::from_secs(30), || {
        has(&lp.sim, "roles/container.serviceAgent", AGENT)
    })
    .await;
    assert!(
        restored.is_some(),
        "not restored; serve logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    eprintln!("removal -> restored policy: {:?}", removed_at.elapsed());
    let notes = lp.notifications(Duration::from_secs(3)).await;
    let restored: Vec<&Value> = notes
        .iter()
        .filter(|n| n["outcome"] == "restored")
        .collect();
    assert_eq!(restored.len(), 1, "{notes:#?}");
    let n = restored[0];
    assert_eq!(n["schema"], "gke-iam-remediator.notification/v1");
    assert_eq!(n["requirement"], "gke-service-agent");
    assert_eq!(n["principal"], AGENT);
    assert_eq!(n["evidence"]["actor"], "admin@example.com");
    assert_eq!(n["_attributes"]["outcome"], "restored");
    assert_eq!(n["_attributes"]["project_id"], "acme-prod");
    assert!(n["actions"][0]["etag_before"] != n["actions"][0]["etag_after"]);
    assert_eq!(
        lp.writes(),
        2,
        "gcloud's removal and exactly one restore (our own audit-log entry triggers nothing)"
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_publishes_would_restore_and_writes_nothing() {
    let lp = Loop::start(WORLD, "mode: dry-run\n").await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");
    lp.sim.reset_stats();

    remove_agent_binding(&gcloud).await;

    let notes = lp.notifications(Duration::from_secs(8)).await;
    assert!(
        notes
            .iter()
            .any(|n| n["outcome"] == "would-restore" && n["principal"] == AGENT),
        "{notes:#?}"
    );
    assert_eq!(lp.writes(), 1, "only gcloud's own write");
    assert!(!has(&lp.sim, "roles/container.serviceAgent", AGENT));
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_events_asking_for_owner_grant_nothing_and_a_duplicate_burst_writes_once() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let owner_before = lp.sim.policy("projects/acme-prod").unwrap();
    let acked_before = lp.serve.acked_pushes(0, Duration::ZERO).await;

    // Forged: "roles/owner was removed from mallory" -- the remediator re-verifies and finds nothing to do.
    lp.publish_event(&removal_entry(
        "forged-1",
        "roles/owner",
        "user:mallory@example.com",
        "acme-prod",
    ))
    .await;
    lp.publish_event(&removal_entry(
        "forged-2",
        "roles/owner",
        "user:mallory@example.com",
        "victim-project",
    ))
    .await;
    // Both handled to their verdict (acknowledged: nothing to restore) before writes are counted.
    let acked = lp
        .serve
        .acked_pushes(acked_before + 2, Duration::from_secs(30))
        .await;
    assert!(
        acked >= acked_before + 2,
        "the forged events were not both handled; logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    assert_eq!(lp.writes(), 0, "a forged event caused a write");
    assert_eq!(
        lp.sim.policy("projects/acme-prod").unwrap().bindings,
        owner_before.bindings
    );

    // A real removal, then the same event delivered 20 times: one restore.
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");
    remove_agent_binding(&gcloud).await;
    for i in 0..20 {
        lp.publish_event(&removal_entry(
            &format!("dup-{i}"),
            "roles/container.serviceAgent",
            AGENT,
            "acme-prod",
        ))
        .await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || has(
            &lp.sim,
            "roles/container.serviceAgent",
            AGENT
        ))
        .await
        .is_some()
    );
    // Every delivery handled before writes are counted: the 2 forged, gcloud's removal, the 20
    // duplicates and the entry of our own restore (ignored).
    let acked = lp
        .serve
        .acked_pushes(acked_before + 24, Duration::from_secs(30))
        .await;
    assert!(
        acked >= acked_before + 24,
        "not every delivery was handled: {}",
        lp.serve.health().await
    );
    assert_eq!(lp.writes(), 2, "gcloud's removal plus exactly one restore");
    let notes = lp.notifications(Duration::from_secs(1)).await;
    assert_eq!(
        notes.iter().filter(|n| n["outcome"] == "restored").count(),
        1,
        "{notes:#?}"
    );
    let owners: Vec<_> = lp
        .sim
        .policy("projects/acme-prod")
        .unwrap()
        .bindings
        .into_iter()
        .filter(|b| b.role.as_str() == "roles/owner")
        .flat_map(|b| b.members)
        .collect();
    assert_eq!(owners, vec!["user:owner@example.com".to_owned()]);
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_still_handled_at_the_push_deadline_is_answered_503_and_its_redelivery_gets_the_verdict()
 {
    let sim = start_sim(WORLD).await;
    // Someone removed the agent's binding; then Google slows down to 700 ms a call, so one run of the
    // project takes several seconds.
    Api::new(&sim)
        .edit_project_policy("acme-prod", |policy| {
            policy["bindings"]
                .as_array_mut()
                .unwrap()
                .retain(|b| b["role"] != "roles/container.serviceAgent");
        })
        .await;
    sim.set_faults(Faults {
        latency: Latency {
            fixed_ms: 700,
            jitter_ms: 0,
        },
        ..Faults::default()
    });
    let mut env = self_env(&sim);
    env.push(("REMEDIATOR_PUSH_DEADLINE_SECS", "1".to_owned()));
    let serve = Serve::with_policy("mode: enforce\n", &env).await;
    let entry = removal_entry("slow-1", "roles/container.serviceAgent", AGENT, "acme-prod");
    let delivery = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(entry.to_string()),
            "messageId": "slow-1",
        },
        "subscription": "projects/ops-project/subscriptions/iam-events-push",
    });
    let http = reqwest::Client::new();
    let deliver = || async {
        let started = Instant::now();
        let status = http
            .post(format!("{}/pubsub/push", serve.url))
            .json(&delivery)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (status, started.elapsed())
    };

    // Held no longer than the deadline: 503, so Pub/Sub redelivers.
    let (status, took) = deliver().await;
    assert_eq!(
        status,
        503,
        "answered after {took:?}; logs:\n{}",
        serve.logs.lock().unwrap()
    );
    assert!(
        took < Duration::from_secs(3),
        "held {took:?} past a 1 s deadline"
    );
    assert_eq!(serve.health().await["pushes"]["past_deadline"], 1);

    // The handling went on: redelivered as Pub/Sub would, the message is acknowledged once it is done,
    // restored by the one run the first delivery started.
    let redelivered = Instant::now();
    let mut answers = Vec::new();
    loop {
        let (status, _) = deliver().await;
        answers.push(status);
        if status == 204 {
            break;
        }
        assert_eq!(status, 503, "{answers:?}");
        assert!(
            redelivered.elapsed() < Duration::from_secs(60),
            "never acknowledged: {answers:?}; logs:\n{}",
            serve.logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(has(&sim, "roles/container.serviceAgent", AGENT));
    assert_eq!(
        project_policy_writes(&sim),
        2,
        "the removal and exactly one restore"
    );
    let health = serve.health().await;
    assert_eq!(health["project_runs"], 1, "{health}");
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_pool_created_with_a_bare_service_account_is_fixed_proactively() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let bare = "serviceAccount:bare@acme-prod.iam.gserviceaccount.com";

    let (status, body) = Api::new(&lp.sim)
        .post(
            "v1/projects/acme-prod/locations/us-central1/clusters/c1/nodePools",
            json!({"nodePool": {"name": "pool-2", "config": {"serviceAccount": "bare@acme-prod.iam.gserviceaccount.com"}, "initialNodeCount": 1}}),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");

    let fixed = wait_until(Duration::from_secs(30), || {
        has(&lp.sim, "roles/container.defaultNodeServiceAccount", bare)
    })
    .await;
    assert!(
        fixed.is_some(),
        "not fixed; serve logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_push_requests_get_a_clear_answer_and_the_service_keeps_serving() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let url = format!("{}/pubsub/push", lp.serve.url);
    // Malformed data is acknowledged with a log line (redelivery cannot fix it) or refused with 400;
    // never a 5xx, never a crash.
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("application/json", b"{not json".to_vec(), &[204, 400]),
        (
            "application/json",
            br#"{"message":{"data":"!!!not base64","messageId":"1"}}"#.to_vec(),
            &[204, 400],
        ),
        (
            "application/json",
            br#"{"message":{"data":"eyJ0cnVuY2F0ZWQ","messageId":"2"}}"#.to_vec(),
            &[204],
        ),
        (
            "application/json",
            br#"{"message":{"data":"eyJ1bmtub3duIjogdHJ1ZX0=","messageId":"3"}}"#.to_vec(),
            &[204],
        ),
        ("text/html", b"<html>".to_vec(), &[415]),
        ("application/json", vec![b'['; 10_000], &[204, 400]),
        ("application/json", vec![0xff, 0xfe, 0x00], &[204, 400]),
    ];
    for (ct, body, want) in cases {
        let r = lp
            .http
            .post(&url)
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        assert!(
            want.contains(&got),
            "{ct} {:?}: {got}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    let huge = vec![b' '; 3 * 1024 * 1024];
    // A client of its own: serve closes this connection after its 413, and a pooled client could
    // otherwise hand the closed connection to the next request.
    let sent = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    match sent {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        // serve answers 413 from the Content-Length alone and closes the connection; a client still
        // writing the body may see the close (EPIPE / reset) before it reads the answer.
        Err(e) => {
            let text = format!("{e:?}");
            assert!(
                text.contains("BrokenPipe") || text.contains("ConnectionReset"),
                "the oversized push failed some other way: {text}"
            );
        }
    }
    let r = lp.http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = lp
        .http
        .get(format!("{}/healthz", lp.serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(lp.writes(), 0);
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_push_authentication_on_only_a_valid_google_token_of_an_allowed_pusher_gets_through() {
    let keys_url = key_server(fixture("jwks.json")).await;
    let sim = start_sim(WORLD).await;
    let audience = "https://remediator.example.run.app/pubsub/push";
    let pusher = "pubsub-pusher@ops-project.iam.gserviceaccount.com";
    let serve = Serve::start(&[
        ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
        ("REMEDIATOR_PUSH_AUDIENCE", audience.to_owned()),
        ("REMEDIATOR_PUSH_ALLOWED_EMAILS", pusher.to_owned()),
        ("REMEDIATOR_OIDC_KEYS_URL", keys_url),
    ])
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |aud: &str, email: &str, exp: u64| {
        json!({"iss": "https://accounts.google.com", "aud": aud, "email": email, "email_verified": true,
               "sub": "1234567890", "iat": now - 10, "exp": exp})
    };
    let good = token(
        &fixture("signing-private.pem"),
        KID,
        claims(audience, pusher, now + 600),
    );
    let cases = [
        (None, 401),
        (Some("Bearer not-a-jwt".to_owned()), 401),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &fixture("other-private.pem"),
                    KID,
                    claims(audience, pusher, now + 600)
                )
            )),
            401,
        ),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &fixture("signing-private.pem"),
                    KID,
                    claims("https://other", pusher, now + 600)
                )
            )),
            403,
        ),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &fixture("signing-private.pem"),
                    KID,
                    claims(audience, pusher, now - 600)
                )
            )),
            401,
        ),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &fixture("signing-private.pem"),
                    KID,
                    claims(audience, "evil@example.com", now + 600)
                )
            )),
            403,
        ),
        (Some(format!("Bearer {good}")), 204),
    ];
    let http = reqwest::Client::new();
    let body = json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode(b"{\"sweep\": {\"projects\": [\"acme-prod\"]}}"), "messageId": "m-1"}, "subscription": "projects/ops-project/subscriptions/s"});
    for (auth, want) in cases {
        let mut req = http.post(format!("{}/pubsub/push", serve.url)).json(&body);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let got = req.send().await.unwrap().status().as_u16();
        assert_eq!(
            got,
            want,
            "authorization {:?}",
            auth.as_deref().map(|a| &a[..a.len().min(30)])
        );
    }
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_that_keeps_being_removed_is_escalated_after_the_limit_not_restored_forever() {
    let lp = Loop::start(
        WORLD,
        "mode: enforce\nlimits:\n  max_restorations_per_binding: 2\n  window_minutes: 60\n",
    )
    .await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");
    let remove = || async {
        remove_agent_binding(&gcloud).await;
    };

    for round in 1..=2 {
        remove().await;
        let back = wait_until(Duration::from_secs(30), || {
            has(&lp.sim, "roles/container.serviceAgent", AGENT)
        })
        .await;
        assert!(
            back.is_some(),
            "round {round} not restored; logs:\n{}",
            lp.serve.logs.lock().unwrap()
        );
    }
    remove().await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    assert!(
        !has(&lp.sim, "roles/container.serviceAgent", AGENT),
        "restored a third time despite the limit"
    );
    let notes = lp.notifications(Duration::from_secs(2)).await;
    let escalated: Vec<&Value> = notes
        .iter()
        .filter(|n| n["outcome"] == "escalated")
        .collect();
    assert_eq!(escalated.len(), 1, "{notes:#?}");
    assert_eq!(escalated[0]["severity"], "critical");
    assert_eq!(
        notes.iter().filter(|n| n["outcome"] == "restored").count(),
        2
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grace_delay_lets_an_infrastructure_as_code_apply_finish_before_restoring() {
    let lp = Loop::start(WORLD, "mode: enforce\ngrace_seconds: 4\n").await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");

    remove_agent_binding(&gcloud).await;
    let removed = Instant::now();
    // The lower bound is safe to check: nothing may be restored before the grace has passed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early = has(&lp.sim, "roles/container.serviceAgent", AGENT);

    let back = wait_until(Duration::from_secs(40), || {
        has(&lp.sim, "roles/container.serviceAgent", AGENT)
    })
    .await;
    assert!(
        !early,
        "restored during the grace period ({:?} after the removal)",
        removed.elapsed()
    );
    assert!(
        back.is_some(),
        "not restored after the grace; logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_serve_cleanly_within_the_grace() {
    let sim = start_sim(WORLD).await;
    let mut serve = Serve::start(&[
        ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
        ("REMEDIATOR_SHUTDOWN_GRACE_SECS", "3".to_owned()),
    ])
    .await;
    let (exit, took) = serve.terminate(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(10), "stopped after {took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        serve.logs.lock().unwrap().contains("\"stopped\""),
        "{}",
        serve.logs.lock().unwrap()
    );
    sim.shutdown().await;
}
