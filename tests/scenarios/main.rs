//! The engine and the remediator, tested in-process: a recording fake behind every port
//! (`fake.rs`), tokio's paused clock (no wall-clock sleeps), and named scenarios that read as
//! sentences. Each drives the real `Engine` (or `Remediator`) exactly as `serve` and `job` do, with
//! Pub/Sub messages shaped as the log sink, the Recommender and Cloud Scheduler send them.

mod access;
mod asset_sweep;
mod fake;
mod memory;

use std::sync::Arc;
use std::time::Duration;

use gke_iam_remediator::domain::deny::{DenyPolicy, DenyRule};
use gke_iam_remediator::domain::report::{Outcome, ProjectReport};
use gke_iam_remediator::engine::{Engine, EngineConfig, Options, Remediator, recommendation};
use gke_iam_remediator::intake::{Message, Verdict};
use gke_iam_remediator::policy::PolicyFile;
use gke_iam_remediator::ports::{Cloud, NotificationSink, Projects};
use serde_json::json;

use fake::{AGENT_ROLE, FakeCloud, Fault, NODE_AGENT_ROLE, NODE_ROLE, RecordingSink};

const SELF: &str = "remediator@ops-project.iam.gserviceaccount.com";
const P: &str = "shop-prod";
const P_NUMBER: &str = "123456789012";

fn node_sa(project: &str) -> String {
    format!("serviceAccount:nodes@{project}.iam.gserviceaccount.com")
}

fn agent(number: &str) -> String {
    format!("serviceAccount:service-{number}@container-engine-robot.iam.gserviceaccount.com")
}

/// One engine over the fake, with a recording sink.
struct Scenario {
    cloud: FakeCloud,
    sink: RecordingSink,
    engine: Arc<Engine>,
    /// The wall clock of the scenario's engines (the ledger's times, IAM conditions).
    engine_clock: gke_iam_remediator::clock::Clock,
    seq: std::sync::atomic::AtomicU32,
}

const ENFORCE: &str = "mode: enforce\n";
const DRY_RUN: &str = "mode: dry-run\n";

impl Scenario {
    /// A world with one healthy GKE project and an engine under `policy` (YAML).
    fn new(policy: &str) -> Self {
        Self::with(policy, |_| {})
    }

    fn with(policy: &str, configure: impl FnOnce(&mut EngineConfig)) -> Self {
        let cloud = FakeCloud::default();
        cloud.add_healthy_project(P, P_NUMBER, Some("organizations/777"));
        let policy = PolicyFile::from_yaml(policy, "scenario.yaml")
            .expect("policy")
            .remediation;
        let mut config = EngineConfig::new(policy);
        config.self_email = Some(SELF.to_owned());
        let engine_clock = config.clock.clone();
        configure(&mut config);
        let sink = RecordingSink::default();
        let ports: Arc<dyn Cloud> = Arc::new(cloud.clone());
        let publisher: Arc<dyn NotificationSink> = Arc::new(sink.clone());
        let engine = Engine::new(ports, config, Some(publisher));
        Self {
            cloud,
            sink,
            engine,
            engine_clock,
            seq: Default::default(),
        }
    }

    fn next_id(&self) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("msg-{n}")
    }

    /// Handles one message as a push would.
    async fn deliver(&self, message: Message) -> Verdict {
        self.engine.handle(&message, None).await
    }

    /// An audit-log entry (as the log sink publishes it) of `actor` removing `member` from `role`.
    fn removal(&self, project: &str, role: &str, member: &str, actor: &str) -> Message {
        let entry = json!({
            "insertId": format!("ins-{}", self.next_id()),
            "logName": format!("projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"),
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "authenticationInfo": {"principalEmail": actor},
                "methodName": "SetIamPolicy",
                "resourceName": format!("projects/{project}"),
                "serviceName": "cloudresourcemanager.googleapis.com",
                "serviceData": {
                    "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                    "policyDelta": {"bindingDeltas": [
                        {"action": "REMOVE", "member": member, "role": role}
                    ]}
                },
                "status": {}
            },
            "resource": {"labels": {"project_id": project}, "type": "project"},
            "severity": "NOTICE",
            "timestamp": gke_iam_remediator::clock::rfc3339(
                std::time::SystemTime::now(),
                gke_iam_remediator::clock::Precision::Millis,
            )
        });
        self.message(entry)
    }

    /// A sweep request (as Cloud Scheduler publishes it).
    fn sweep(&self, projects: &[&str]) -> Message {
        self.message(json!({"sweep": {"projects": projects}}))
    }

    /// A sweep request for a folder.
    fn sweep_folder(&self, folder: &str) -> Message {
        self.message(json!({"sweep": {"folder": folder}}))
    }

    /// A message carrying a recommendation name.
    fn recommendation(&self, name: &str) -> Message {
        self.message(json!({"recommendation": name}))
    }

    fn message(&self, body: serde_json::Value) -> Message {
        Message {
            message_id: self.next_id(),
            data: serde_json::to_vec(&body).expect("json"),
            ..Message::default()
        }
    }

    /// Removes the node role from the node account (someone else's change) and returns the event.
    fn break_node_role(&self) -> Message {
        self.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
        self.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com")
    }

    fn reads(&self, project: &str) -> usize {
        self.cloud
            .journal()
            .iter()
            .filter(|c| **c == format!("getIamPolicy projects/{project}"))
            .count()
    }

    fn writes(&self) -> usize {
        self.cloud.calls("setIamPolicy")
    }
}

fn runs(engine: &Engine) -> u64 {
    engine
        .stats
        .project_runs
        .load(std::sync::atomic::Ordering::Relaxed)
}

// ---- coalescing -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn many_hints_for_one_project_share_one_policy_read_and_at_most_one_write() {
    let s = Scenario::new(ENFORCE);
    let first = s.break_node_role();
    let mut messages = vec![first];
    for _ in 0..9 {
        messages.push(s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com"));
    }
    let verdicts = futures::future::join_all(messages.into_iter().map(|m| s.deliver(m))).await;
    assert!(verdicts.iter().all(|v| *v == Verdict::Ack), "{verdicts:?}");
    assert_eq!(runs(&s.engine), 1, "one run for ten hints");
    // One read for the decision, one read back to confirm the write.
    assert_eq!(s.reads(P), 2, "{:?}", s.cloud.journal());
    assert_eq!(s.writes(), 1);
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
}

#[tokio::test(start_paused = true)]
async fn a_hint_arriving_mid_run_joins_the_next_run_which_reads_state_again() {
    let s = Scenario::new(DRY_RUN);
    s.cloud.set_latency(Duration::from_millis(100));
    let early = s.deliver(s.sweep(&[P]));
    let late = async {
        // The first run starts after the 200 ms window and is now reading (100 ms per call).
        tokio::time::sleep(Duration::from_millis(350)).await;
        let a = s.deliver(s.sweep(&[P]));
        let b = s.deliver(s.sweep(&[P]));
        futures::future::join(a, b).await
    };
    let (v1, (v2, v3)) = futures::future::join(early, late).await;
    assert_eq!((v1, v2, v3), (Verdict::Ack, Verdict::Ack, Verdict::Ack));
    assert_eq!(runs(&s.engine), 2, "the late hints share the second run");
    assert_eq!(s.reads(P), 2);
}

#[tokio::test(start_paused = true)]
async fn hints_for_different_projects_run_independently() {
    let s = Scenario::new(DRY_RUN);
    s.cloud
        .add_healthy_project("shop-dev", "222222222222", Some("organizations/777"));
    let (a, b) =
        futures::future::join(s.deliver(s.sweep(&[P])), s.deliver(s.sweep(&["shop-dev"]))).await;
    assert_eq!((a, b), (Verdict::Ack, Verdict::Ack));
    assert_eq!(runs(&s.engine), 2);
    assert_eq!(s.reads(P), 1);
    assert_eq!(s.reads("shop-dev"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_coalescing_window_bounds_how_long_a_hint_waits() {
    let s = Scenario::with(DRY_RUN, |c| c.coalesce_window = Duration::from_millis(500));
    let started = tokio::time::Instant::now();
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(600),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hint_for_an_idle_project_starts_a_run_at_once() {
    let s = Scenario::new(DRY_RUN);
    let started = tokio::time::Instant::now();
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no fixed coalescing delay"
    );
    assert_eq!(s.reads(P), 1);
}

#[tokio::test(start_paused = true)]
async fn the_same_message_delivered_twice_is_handled_once() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    assert_eq!(s.deliver(m.clone()).await, Verdict::Ack);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(runs(&s.engine), 1);
    assert_eq!(
        s.engine
            .stats
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

// ---- grace delay ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_removal_waits_for_the_grace_delay_before_the_policy_is_read() {
    let s = Scenario::new("mode: enforce\ngrace_seconds: 30\n");
    let m = s.break_node_role();
    let handled = s.deliver(m);
    let probe = async {
        tokio::time::sleep(Duration::from_secs(29)).await;
        s.reads(P)
    };
    let (verdict, reads_before) = futures::future::join(handled, probe).await;
    assert_eq!(reads_before, 0, "nothing is read inside the grace delay");
    assert_eq!(verdict, Verdict::Ack);
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
}

#[tokio::test(start_paused = true)]
async fn an_infrastructure_as_code_apply_that_restores_within_the_grace_is_left_alone() {
    let s = Scenario::new("mode: enforce\ngrace_seconds: 30\n");
    let m = s.break_node_role();
    let handled = s.deliver(m);
    let apply = async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        s.cloud.add_binding(P, NODE_ROLE, &node_sa(P));
    };
    let (verdict, ()) = futures::future::join(handled, apply).await;
    assert_eq!(verdict, Verdict::Ack);
    assert_eq!(s.writes(), 0, "the apply put it back; nothing to write");
}

#[tokio::test(start_paused = true)]
async fn a_stream_of_removals_cannot_postpone_the_restoration_past_the_grace_of_the_first() {
    let s = Scenario::new("mode: enforce\ngrace_seconds: 30\n");
    let first = s.break_node_role();
    let started = tokio::time::Instant::now();
    let restored_at = std::sync::Mutex::new(None);
    let stream = async {
        // One unrelated removal event per second for a minute.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let m = s.removal(
                P,
                "roles/viewer",
                "user:someone@example.com",
                "bob@example.com",
            );
            let engine = s.engine.clone();
            tokio::spawn(async move { engine.handle(&m, None).await });
            if restored_at.lock().unwrap().is_none() && s.cloud.holds(P, NODE_ROLE, &node_sa(P)) {
                *restored_at.lock().unwrap() = Some(started.elapsed());
            }
        }
    };
    let (verdict, ()) = futures::future::join(s.deliver(first), stream).await;
    assert_eq!(verdict, Verdict::Ack);
    let at = restored_at
        .lock()
        .unwrap()
        .expect("restored within the minute");
    assert!(
        at >= Duration::from_secs(30) && at <= Duration::from_secs(32),
        "restored after {at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sweep_is_not_held_by_the_grace_delay() {
    let s = Scenario::new("mode: dry-run\ngrace_seconds: 600\n");
    let started = tokio::time::Instant::now();
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert!(started.elapsed() < Duration::from_secs(1));
}

// ---- restore ----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_removed_node_role_is_restored_with_one_etag_guarded_write() {
    let s = Scenario::new(ENFORCE);
    let before = s.cloud.policy(P);
    let m = s.break_node_role();
    let broken = s.cloud.policy(P);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.writes(), 1);
    let after = s.cloud.policy(P);
    assert_ne!(after.etag, broken.etag, "the write produced a new etag");
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
    let n = &s.sink.published()[0];
    assert_eq!(n.actions.len(), 1);
    assert_eq!(n.actions[0].etag_before, broken.etag);
    assert_eq!(n.actions[0].etag_after, after.etag);
    // Every other binding is exactly as before the removal.
    assert_eq!(
        before.bindings.len(),
        after.bindings.len(),
        "{:?}",
        after.bindings
    );
}

#[tokio::test(start_paused = true)]
async fn the_restoration_touches_no_other_binding() {
    let s = Scenario::new(ENFORCE);
    s.cloud
        .add_binding(P, "roles/viewer", "group:auditors@example.com");
    let m = s.break_node_role();
    let broken = s.cloud.policy(P);
    s.deliver(m).await;
    let after = s.cloud.policy(P);
    for b in &broken.bindings {
        assert!(
            after.bindings.contains(b),
            "binding changed or removed: {b:?}"
        );
    }
    assert_eq!(after.bindings.len(), broken.bindings.len() + 1);
}

#[tokio::test(start_paused = true)]
async fn dry_run_reports_would_restore_and_never_writes() {
    let s = Scenario::new(DRY_RUN);
    let m = s.break_node_role();
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.writes(), 0);
    assert_eq!(s.sink.outcomes(), vec!["would-restore"]);
    assert!(!s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
}

#[tokio::test(start_paused = true)]
async fn a_removed_gke_service_agent_binding_is_restored() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, AGENT_ROLE, &agent(P_NUMBER));
    let m = s.removal(P, AGENT_ROLE, &agent(P_NUMBER), "alice@example.com");
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert!(s.cloud.holds(P, AGENT_ROLE, &agent(P_NUMBER)));
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
    assert_eq!(
        s.sink.published()[0].requirement.to_string(),
        "gke-service-agent"
    );
}

#[tokio::test(start_paused = true)]
async fn two_broken_requirements_are_restored_in_one_write() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(
        P,
        NODE_AGENT_ROLE,
        &format!("serviceAccount:service-{P_NUMBER}@gcp-sa-gkenode.iam.gserviceaccount.com"),
    );
    let m = s.break_node_role();
    s.deliver(m).await;
    assert_eq!(s.writes(), 1, "one read-modify-write for both grants");
    let mut outcomes = s.sink.outcomes();
    outcomes.sort();
    assert_eq!(outcomes, vec!["restored", "restored"]);
}

// ---- 409: re-read, re-plan --------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_concurrent_write_makes_the_remediator_re_read_and_re_plan() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.with(|w| w.racing_writes = 1);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.writes(), 2, "the stale write and the retry");
    // Read for the decision, re-read after the conflict, read back to confirm.
    assert_eq!(s.reads(P), 3, "{:?}", s.cloud.journal());
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_policy_that_keeps_changing_gives_up_after_max_write_attempts_and_asks_for_redelivery() {
    let s = Scenario::new("mode: enforce\nlimits:\n  max_write_attempts: 3\n");
    let mut m = s.break_node_role();
    s.cloud.with(|w| w.racing_writes = 100);
    let verdict = s.deliver(m.clone()).await;
    assert!(matches!(verdict, Verdict::Retry(_)), "{verdict:?}");
    assert_eq!(s.writes(), 3);
    assert!(
        s.sink.outcomes().is_empty(),
        "a give-up that is retried is not announced"
    );
    // The subscription's last attempt (dead-letter next): now it is announced.
    m.delivery_attempt = Some(5);
    assert!(matches!(s.deliver(m).await, Verdict::Retry(_)));
    assert_eq!(s.sink.outcomes(), vec!["failed"]);
}

#[tokio::test(start_paused = true)]
async fn someone_else_restoring_during_the_conflict_means_nothing_more_is_written() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud
        .with(|w| w.racing_adds = vec![(NODE_ROLE.to_owned(), node_sa(P))]);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.writes(), 1, "only the write that lost the race");
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    let counts = s.cloud.with(|w| w.restorations.clone());
    assert!(
        counts.values().all(|c| c.is_empty()),
        "no restoration of ours: {counts:?}"
    );
}

// ---- transient and permanent failures ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_rate_limited_policy_read_asks_pubsub_to_redeliver_and_notifies_nothing() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.fail_next("getIamPolicy", Fault::RATE_LIMITED, 1);
    let verdict = s.deliver(m).await;
    assert!(matches!(verdict, Verdict::Retry(_)), "{verdict:?}");
    assert_eq!(s.writes(), 0);
    assert!(s.sink.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_after_a_transient_read_failure_restores() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.fail_next("getIamPolicy", Fault::UNAVAILABLE, 1);
    assert!(matches!(s.deliver(m.clone()).await, Verdict::Retry(_)));
    assert_eq!(s.deliver(m).await, Verdict::Ack, "the same message again");
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_denied_policy_read_is_acknowledged_not_retried() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.break_method("getIamPolicy", Fault::DENIED);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_transient_write_failure_is_redelivered_and_only_its_restoration_is_announced() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.fail_next("setIamPolicy", Fault::UNAVAILABLE, 1);
    let verdict = s.deliver(m.clone()).await;
    assert!(matches!(verdict, Verdict::Retry(_)), "{verdict:?}");
    assert!(
        s.sink.outcomes().is_empty(),
        "no `failed` for a retried give-up"
    );
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_denied_write_is_reported_failed_and_acknowledged() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.break_method("setIamPolicy", Fault::DENIED);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.sink.outcomes(), vec!["failed"]);
    assert!(!s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
}

#[tokio::test(start_paused = true)]
async fn once_the_write_permission_is_back_the_next_event_restores() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.break_method("setIamPolicy", Fault::DENIED);
    s.deliver(m).await;
    s.cloud.repair("setIamPolicy");
    s.deliver(s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com"))
        .await;
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    assert_eq!(s.sink.outcomes(), vec!["failed", "restored"]);
}

// ---- own identity, flapping -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_change_made_by_our_own_identity_is_ignored_without_reading_anything() {
    let s = Scenario::new(ENFORCE);
    let m = s.removal(P, NODE_ROLE, &node_sa(P), SELF);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert!(s.cloud.journal().is_empty(), "{:?}", s.cloud.journal());
    assert_eq!(
        s.engine
            .stats
            .own_changes
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn our_identity_is_matched_case_insensitively() {
    let s = Scenario::new(ENFORCE);
    let m = s.removal(P, NODE_ROLE, &node_sa(P), &SELF.to_ascii_uppercase());
    s.deliver(m).await;
    assert!(s.cloud.journal().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_binding_restored_up_to_the_limit_is_escalated_instead_of_restored_again() {
    let s = Scenario::new("mode: enforce\nlimits:\n  max_restorations_per_binding: 3\n");
    for round in 1..=3 {
        let m = s.break_node_role();
        assert_eq!(s.deliver(m).await, Verdict::Ack, "round {round}");
        assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)), "round {round}");
    }
    let m = s.break_node_role();
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert!(
        !s.cloud.holds(P, NODE_ROLE, &node_sa(P)),
        "the fourth removal is not restored"
    );
    assert_eq!(s.writes(), 3);
    assert_eq!(
        s.sink.outcomes(),
        vec!["restored", "restored", "restored", "escalated"]
    );
}

#[tokio::test(start_paused = true)]
async fn restorations_by_other_instances_count_towards_the_limit() {
    let policy = "mode: enforce\nlimits:\n  max_restorations_per_binding: 2\n";
    let a = Scenario::new(policy);
    // A second instance of the service over the same Google (and so the same audit log).
    let b = {
        let ports: Arc<dyn Cloud> = Arc::new(a.cloud.clone());
        let publisher: Arc<dyn NotificationSink> = Arc::new(a.sink.clone());
        let mut config =
            EngineConfig::new(PolicyFile::from_yaml(policy, "p.yaml").unwrap().remediation);
        config.self_email = Some(SELF.to_owned());
        Engine::new(ports, config, Some(publisher))
    };
    let m = a.break_node_role();
    a.deliver(m).await;
    let m = a.break_node_role();
    b.handle(&m, None).await;
    let m = a.break_node_role();
    a.deliver(m).await;
    assert_eq!(a.sink.outcomes(), vec!["restored", "restored", "escalated"]);
}

#[tokio::test(start_paused = true)]
async fn when_the_audit_log_cannot_be_read_this_instances_own_restorations_still_enforce_the_limit()
{
    let s = Scenario::new("mode: enforce\nlimits:\n  max_restorations_per_binding: 2\n");
    s.cloud.break_method("entries.list", Fault::DENIED);
    for _ in 0..3 {
        let m = s.break_node_role();
        s.deliver(m).await;
    }
    assert_eq!(s.sink.outcomes(), vec!["restored", "restored", "escalated"]);
    assert_eq!(s.writes(), 2);
    let n = &s.sink.published()[2];
    let guard = serde_json::to_value(&n.flap_guard).unwrap();
    assert_eq!(guard["source"], "instance-only", "{guard}");
    assert!(
        guard["reason"]
            .as_str()
            .unwrap()
            .contains("Cloud Audit Logs could not be read"),
        "{guard}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_our_identity_the_limit_holds_on_this_instances_count_and_says_so() {
    let s = Scenario::with(
        "mode: enforce\nlimits:\n  max_restorations_per_binding: 1\n",
        |c| c.self_email = None,
    );
    for _ in 0..2 {
        let m = s.break_node_role();
        s.deliver(m).await;
    }
    assert_eq!(s.sink.outcomes(), vec!["restored", "escalated"]);
    assert_eq!(s.cloud.calls("entries.list"), 0);
    let guard = serde_json::to_value(&s.sink.published()[0].flap_guard).unwrap();
    assert_eq!(guard["source"], "instance-only", "{guard}");
}

#[tokio::test(start_paused = true)]
async fn the_audit_log_is_read_at_most_once_per_project_per_window() {
    let s = Scenario::new("mode: enforce\nlimits:\n  max_restorations_per_binding: 10\n");
    for _ in 0..4 {
        let m = s.break_node_role();
        s.deliver(m).await;
    }
    assert_eq!(s.sink.outcomes(), vec!["restored"; 4]);
    assert_eq!(s.cloud.calls("entries.list"), 1);
    let guard = serde_json::to_value(&s.sink.published()[3].flap_guard).unwrap();
    assert_eq!(guard["source"], "audit-log");
}

#[tokio::test(start_paused = true)]
async fn the_flapping_count_is_read_only_when_a_write_is_planned() {
    let s = Scenario::new(ENFORCE);
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(
        s.cloud.calls("entries.list"),
        0,
        "healthy: no write planned"
    );
    let m = s.break_node_role();
    s.deliver(m).await;
    assert_eq!(s.cloud.calls("entries.list"), 1);
}

/// `n` GKE projects besides P, each with its node role removed.
fn broken_projects(s: &Scenario, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = format!("fleet-{i:03}");
            s.cloud.add_healthy_project(
                &id,
                &format!("{}", 400_000_000_000u64 + i as u64),
                Some("organizations/777"),
            );
            s.cloud.remove_binding(&id, NODE_ROLE, &node_sa(&id));
            id
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_cold_instance_restoring_many_projects_at_once_reads_the_audit_log_once_for_all_of_them()
{
    let s = Scenario::new(ENFORCE);
    s.cloud.set_latency(Duration::from_millis(20));
    let projects = broken_projects(&s, 150);
    let verdicts =
        futures::future::join_all(projects.iter().map(|p| s.deliver(s.sweep(&[p.as_str()])))).await;
    assert!(verdicts.iter().all(|v| *v == Verdict::Ack), "{verdicts:?}");
    assert_eq!(s.writes(), 150, "one write per broken project");
    assert_eq!(s.sink.outcomes(), vec!["restored"; 150]);
    // 150 projects need at least two reads of at most 100 names each; the first run may read alone.
    let reads: Vec<String> = s
        .cloud
        .journal()
        .into_iter()
        .filter(|c| c.starts_with("entries.list "))
        .collect();
    assert!((2..=3).contains(&reads.len()), "{reads:?}");
    let named: usize = reads.iter().map(|r| r.split(',').count()).sum();
    assert_eq!(
        named, 150,
        "every project is named in exactly one read: {reads:?}"
    );
    assert!(
        reads.iter().all(|r| r.split(',').count() <= 100),
        "{reads:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_shared_audit_log_read_counts_each_project_on_its_own() {
    let policy = "mode: enforce\nlimits:\n  max_restorations_per_binding: 1\n";
    let a = Scenario::new(policy);
    let projects = broken_projects(&a, 2);
    // Another instance (same Google, same audit log) already restored the first project once.
    let other = {
        let ports: Arc<dyn Cloud> = Arc::new(a.cloud.clone());
        let mut config =
            EngineConfig::new(PolicyFile::from_yaml(policy, "p.yaml").unwrap().remediation);
        config.self_email = Some(SELF.to_owned());
        Engine::new(ports, config, None)
    };
    other.handle(&a.sweep(&[projects[0].as_str()]), None).await;
    a.cloud
        .remove_binding(&projects[0], NODE_ROLE, &node_sa(&projects[0]));
    let before = a.cloud.calls("entries.list");
    futures::future::join_all(projects.iter().map(|p| a.deliver(a.sweep(&[p.as_str()])))).await;
    let mut outcomes = a.sink.outcomes();
    outcomes.sort();
    assert_eq!(outcomes, vec!["escalated", "restored"]);
    assert!(
        a.cloud
            .holds(&projects[1], NODE_ROLE, &node_sa(&projects[1]))
    );
    assert!(
        !a.cloud
            .holds(&projects[0], NODE_ROLE, &node_sa(&projects[0]))
    );
    assert!(a.cloud.calls("entries.list") - before <= 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_shared_read_leaves_every_waiting_project_on_this_instances_count() {
    let s = Scenario::new("mode: enforce\nlimits:\n  max_restorations_per_binding: 3\n");
    s.cloud.set_latency(Duration::from_millis(20));
    let projects = broken_projects(&s, 5);
    s.cloud.break_method("entries.list", Fault::DENIED);
    futures::future::join_all(projects.iter().map(|p| s.deliver(s.sweep(&[p.as_str()])))).await;
    assert_eq!(s.sink.outcomes(), vec!["restored"; 5]);
    for n in s.sink.published() {
        let guard = serde_json::to_value(&n.flap_guard).unwrap();
        assert_eq!(guard["source"], "instance-only", "{guard}");
    }
    // Once Logging answers again, the next restoration reads it (nothing stays stuck).
    s.cloud.repair("entries.list");
    s.cloud
        .remove_binding(&projects[0], NODE_ROLE, &node_sa(&projects[0]));
    s.deliver(s.sweep(&[projects[0].as_str()])).await;
    let last = s.sink.published().pop().unwrap();
    let guard = serde_json::to_value(&last.flap_guard).unwrap();
    assert_eq!(guard["source"], "audit-log", "{guard}");
}

// ---- policy: scope, exemptions, budget --------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_project_outside_the_scope_is_reported_not_allowed_and_not_written() {
    let s = Scenario::new("mode: enforce\nscope:\n  exclude_projects: ['shop-*']\n");
    let m = s.break_node_role();
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.writes(), 0);
    assert_eq!(s.sink.outcomes(), vec!["not-allowed"]);
}

#[tokio::test(start_paused = true)]
async fn an_exempt_principal_is_never_granted() {
    let s = Scenario::new("mode: enforce\nexempt_principals: ['serviceAccount:nodes@*']\n");
    let m = s.break_node_role();
    s.deliver(m).await;
    assert_eq!(s.writes(), 0);
    assert_eq!(s.sink.outcomes(), vec!["not-allowed"]);
}

#[tokio::test(start_paused = true)]
async fn a_requirement_the_policy_does_not_restore_is_reported_not_allowed() {
    let s = Scenario::new("mode: enforce\nrestore: [gke-service-agent]\n");
    let m = s.break_node_role();
    s.deliver(m).await;
    assert_eq!(s.writes(), 0);
    assert_eq!(s.sink.outcomes(), vec!["not-allowed"]);
}

fn three_broken_projects(cloud: &FakeCloud) -> Vec<String> {
    cloud.add_folder("42", "organizations/777");
    let ids: Vec<String> = (1..=3).map(|i| format!("team-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        cloud.add_healthy_project(id, &format!("90000000000{i}"), Some("folders/42"));
        cloud.remove_binding(id, NODE_ROLE, &node_sa(id));
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn the_write_budget_of_a_scan_stops_writes_past_max_writes_per_run() {
    let cloud = FakeCloud::default();
    let ids = three_broken_projects(&cloud);
    let policy = PolicyFile::from_yaml(
        "mode: enforce\nlimits:\n  max_writes_per_run: 2\n",
        "p.yaml",
    )
    .unwrap()
    .remediation;
    let mut options = Options::new(policy);
    options.settings.apply = true;
    let remediator = Remediator::new(Arc::new(cloud.clone()), options);
    let mut projects = Vec::new();
    for id in &ids {
        projects.push(cloud.get_project(id).await.unwrap());
    }
    let reports = gke_iam_remediator::engine::sweep::check_all(&remediator, &projects).await;
    let outcomes: Vec<Outcome> = reports
        .iter()
        .flat_map(|r| r.findings.iter().map(|f| f.outcome))
        .filter(|o| *o != Outcome::Healthy)
        .collect();
    assert_eq!(cloud.calls("setIamPolicy"), 2);
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Restored).count(),
        2
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::NotAllowed)
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_sweep_message_is_one_run_for_the_write_budget() {
    let s = Scenario::new("mode: enforce\nlimits:\n  max_writes_per_run: 2\n");
    three_broken_projects(&s.cloud);
    assert_eq!(s.deliver(s.sweep_folder("42")).await, Verdict::Ack);
    assert_eq!(s.writes(), 2, "three broken projects, a budget of two");
    let mut outcomes = s.sink.outcomes();
    outcomes.sort();
    assert_eq!(outcomes, vec!["not-allowed", "restored", "restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_job_sweep_publishes_every_outcome_and_keeps_one_budget() {
    let s = Scenario::new("mode: enforce\nlimits:\n  max_writes_per_run: 2\n");
    three_broken_projects(&s.cloud);
    let root = gke_iam_remediator::domain::iam::ResourceRef::parse("folders/42").unwrap();
    let (reports, _, _) = s.engine.sweep(&[], &[root]).await.unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(s.writes(), 2);
    let mut outcomes = s.sink.outcomes();
    outcomes.sort();
    assert_eq!(outcomes, vec!["not-allowed", "restored", "restored"]);
    assert!(
        s.sink
            .published()
            .iter()
            .all(|n| n.evidence.source == "sweep"),
        "{:?}",
        s.sink.published()
    );
}

/// What a sweep of folder 42 left: its outcomes other than healthy (sorted), the writes, each
/// recommendation's state.
type SweepResult = (Vec<String>, usize, Vec<String>);

/// Three broken projects under folder 42 with a recommendation each, swept one way.
async fn swept(how: &str) -> SweepResult {
    let policy = "mode: enforce\nlimits:\n  max_writes_per_run: 2\n";
    let s = Scenario::new(policy);
    let ids = three_broken_projects(&s.cloud);
    let names: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            s.cloud
                .add_recommendation(id, &format!("90000000000{i}"), &format!("r{i}"))
        })
        .collect();
    let root = gke_iam_remediator::domain::iam::ResourceRef::parse("folders/42").unwrap();
    let reports: Vec<ProjectReport> = match how {
        "message" => {
            assert_eq!(s.deliver(s.sweep_folder("42")).await, Verdict::Ack);
            Vec::new()
        }
        "job" => {
            let (reports, _, _) = s.engine.sweep(&[], &[root]).await.unwrap();
            reports.iter().map(|r| (**r).clone()).collect()
        }
        _ => {
            let mut options =
                Options::new(PolicyFile::from_yaml(policy, "p.yaml").unwrap().remediation);
            options.settings.apply = true;
            let remediator = Remediator::new(Arc::new(s.cloud.clone()), options);
            let found = gke_iam_remediator::engine::snapshot::discover(
                &remediator,
                &[],
                std::slice::from_ref(&root),
                true,
            )
            .await
            .unwrap();
            gke_iam_remediator::engine::sweep::check_all(&remediator, &found.live).await
        }
    };
    let mut outcomes: Vec<String> = match how {
        "message" => s.sink.outcomes(),
        _ => reports
            .iter()
            .flat_map(|r| r.findings.iter())
            .filter(|f| f.outcome != Outcome::Healthy)
            .map(|f| f.outcome.to_string())
            .collect(),
    };
    outcomes.sort();
    let states = names
        .iter()
        .map(|n| s.cloud.recommendation_state(n))
        .collect();
    (outcomes, s.writes(), states)
}

#[tokio::test(start_paused = true)]
async fn a_sweep_message_job_sweep_and_scan_of_one_scope_give_the_same_outcomes_writes_and_recommendation_marks()
 {
    let message = swept("message").await;
    let job = swept("job").await;
    let scan = swept("scan").await;
    assert_eq!(message.1, 2, "one budget of two writes for the sweep");
    assert_eq!(
        message.0,
        ["not-allowed", "restored", "restored"],
        "{message:?}"
    );
    assert_eq!(
        message.2.iter().filter(|s| *s == "SUCCEEDED").count(),
        2,
        "the restored projects' recommendations are marked: {message:?}"
    );
    assert_eq!(job, message, "job --sweep as a sweep message");
    assert_eq!(scan, message, "scan --apply as a sweep message");
}

#[tokio::test(start_paused = true)]
async fn a_folder_sweep_checks_every_project_under_the_folder() {
    let s = Scenario::new(DRY_RUN);
    let ids = three_broken_projects(&s.cloud);
    assert_eq!(s.deliver(s.sweep_folder("42")).await, Verdict::Ack);
    for id in &ids {
        assert_eq!(s.reads(id), 1, "{id}");
    }
    assert_eq!(s.reads(P), 0, "{P} is not under the folder");
    assert_eq!(s.sink.outcomes().len(), 3);
}

// ---- recommendations --------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_recommendation_is_claimed_then_marked_succeeded_after_a_restore() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    assert_eq!(s.deliver(s.recommendation(&name)).await, Verdict::Ack);
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    assert_eq!(s.cloud.recommendation_state(&name), "SUCCEEDED");
    let marks: Vec<String> = s
        .cloud
        .journal()
        .into_iter()
        .filter(|c| c.starts_with("recommendations.mark"))
        .collect();
    assert_eq!(marks.len(), 2, "claimed, then succeeded: {marks:?}");
    assert!(marks[0].starts_with("recommendations.markClaimed"));
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_marks_no_recommendation() {
    let s = Scenario::new(DRY_RUN);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    s.deliver(s.recommendation(&name)).await;
    assert_eq!(s.cloud.recommendation_state(&name), "ACTIVE");
    assert_eq!(s.cloud.calls("recommendations.markClaimed"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_recommendation_stays_active_when_the_node_account_holds_its_role_only_under_a_condition()
{
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    s.cloud.with(|w| {
        let policy = w.policies.get_mut(&fake::project_ref(P)).unwrap();
        policy.bindings.push(fake::conditional_binding(
            NODE_ROLE,
            &[&node_sa(P)],
            "resource.name.startsWith('projects/_/buckets/logs')",
        ));
    });
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    s.deliver(s.recommendation(&name)).await;
    assert_eq!(s.writes(), 0, "a conditional grant needs a person");
    assert_eq!(s.cloud.recommendation_state(&name), "ACTIVE");
}

#[tokio::test(start_paused = true)]
async fn an_expired_time_bound_grant_is_restored_with_an_unconditional_one_and_kept() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    let expired = fake::conditional_binding(
        NODE_ROLE,
        &[&node_sa(P)],
        "request.time < timestamp('2026-06-30T00:00:00Z')",
    );
    s.cloud.with(|w| {
        let policy = w.policies.get_mut(&fake::project_ref(P)).unwrap();
        policy.bindings.push(expired.clone());
    });
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    assert!(
        s.cloud.policy(P).bindings.contains(&expired),
        "the expired binding is untouched"
    );
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_restore_marks_the_recommendation_failed() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    s.cloud.break_method("setIamPolicy", Fault::DENIED);
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    s.deliver(s.recommendation(&name)).await;
    assert_eq!(s.cloud.recommendation_state(&name), "FAILED");
}

#[tokio::test(start_paused = true)]
async fn settling_a_swept_project_marks_every_open_recommendation_of_its_clusters() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some("organizations/777"));
    cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    let a = cloud.add_recommendation(P, P_NUMBER, "r1");
    let b = cloud.add_recommendation(P, P_NUMBER, "r2");
    let mut options = Options::new(
        PolicyFile::from_yaml(ENFORCE, "p.yaml")
            .unwrap()
            .remediation,
    );
    options.settings.apply = true;
    let ports: Arc<dyn Cloud> = Arc::new(cloud.clone());
    let remediator = Remediator::new(ports.clone(), options);
    let info = cloud.get_project(P).await.unwrap();
    let report: ProjectReport = remediator.remediate(&info).await;
    let marked = recommendation::settle_project(ports.as_ref(), &report).await;
    assert_eq!(marked, 2);
    assert_eq!(cloud.recommendation_state(&a), "SUCCEEDED");
    assert_eq!(cloud.recommendation_state(&b), "SUCCEEDED");
}

#[tokio::test(start_paused = true)]
async fn a_recommendation_of_an_account_healthy_without_us_is_left_active() {
    let s = Scenario::new(ENFORCE);
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(
        s.cloud.recommendation_state(&name),
        "ACTIVE",
        "nothing was done here: not ours to call succeeded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recommendation_marked_failed_is_marked_succeeded_once_a_later_sweep_restores() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    s.cloud.break_method("setIamPolicy", Fault::DENIED);
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    s.deliver(s.recommendation(&name)).await;
    assert_eq!(s.cloud.recommendation_state(&name), "FAILED");
    s.cloud.repair("setIamPolicy");
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(s.cloud.recommendation_state(&name), "SUCCEEDED");
}

#[tokio::test(start_paused = true)]
async fn a_recommendation_whose_etag_moved_is_not_marked() {
    let s = Scenario::new(ENFORCE);
    let name = s.cloud.add_recommendation(P, P_NUMBER, "r1");
    s.cloud
        .fail_next("recommendations.markClaimed", Fault::ABORTED, 1);
    assert_eq!(s.deliver(s.recommendation(&name)).await, Verdict::Ack);
    assert_eq!(s.cloud.recommendation_state(&name), "ACTIVE");
    assert_eq!(s.cloud.calls("recommendations.markSucceeded"), 0);
}

#[tokio::test(start_paused = true)]
async fn after_an_undelete_the_project_is_verified_again_and_no_stale_verdict_is_published() {
    let s = Scenario::new("mode: enforce\nrestore: [node-sa-permissions, node-sa-exists]\n");
    let email = format!("nodes@{P}.iam.gserviceaccount.com");
    s.cloud.delete_account(P, &email);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert_eq!(s.cloud.calls("serviceAccounts.undelete"), 1);
    assert!(
        s.cloud.holds(P, NODE_ROLE, &node_sa(P)),
        "its binding is back"
    );
    let published: Vec<(String, String)> = s
        .sink
        .published()
        .iter()
        .map(|n| (n.requirement.clone(), n.outcome.to_string()))
        .collect();
    assert_eq!(
        published,
        vec![("node-sa-exists".to_owned(), "restored".to_owned())],
        "nothing stale about the account's permissions"
    );
}

// ---- notifications and verdicts ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn healthy_outcomes_are_not_published_by_default() {
    let s = Scenario::new(ENFORCE);
    s.deliver(s.sweep(&[P])).await;
    assert!(s.sink.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn healthy_outcomes_are_published_when_asked() {
    let s = Scenario::with(ENFORCE, |c| c.notify_healthy = true);
    s.deliver(s.sweep(&[P])).await;
    let outcomes = s.sink.outcomes();
    assert!(!outcomes.is_empty());
    assert!(outcomes.iter().all(|o| o == "healthy"), "{outcomes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_publish_asks_pubsub_to_redeliver() {
    let s = Scenario::new(DRY_RUN);
    let m = s.break_node_role();
    s.sink.set_failing(true);
    let verdict = s.deliver(m).await;
    assert!(matches!(verdict, Verdict::Retry(_)), "{verdict:?}");
}

#[tokio::test(start_paused = true)]
async fn a_restoration_whose_notification_could_not_be_published_is_notified_when_the_message_returns()
 {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.sink.set_failing(true);
    assert!(matches!(s.deliver(m.clone()).await, Verdict::Retry(_)));
    assert!(
        s.cloud.holds(P, NODE_ROLE, &node_sa(P)),
        "the write happened"
    );
    s.sink.set_failing(false);
    // Pub/Sub redelivers the same message: the project is healthy now, yet the restoration is notified.
    assert_eq!(s.deliver(m.clone()).await, Verdict::Ack);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
    let n = &s.sink.published()[0];
    assert_eq!(n.actions.len(), 1);
    assert_eq!(n.actions[0].etag_after, s.cloud.policy(P).etag);
    // Once notified, a further redelivery publishes nothing more.
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_restoration_by_an_instance_that_died_before_notifying_is_notified_by_the_next_one() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.sink.set_failing(true);
    s.deliver(m.clone()).await;
    let lost_id = {
        // What the dead instance would have published: rebuild it from its own run for comparison.
        s.cloud.with(|w| w.restorations[P].len())
    };
    assert_eq!(lost_id, 1);
    // A fresh instance over the same Google gets the redelivery.
    let sink = RecordingSink::default();
    let ports: Arc<dyn Cloud> = Arc::new(s.cloud.clone());
    let publisher: Arc<dyn NotificationSink> = Arc::new(sink.clone());
    let mut config = EngineConfig::new(
        PolicyFile::from_yaml(ENFORCE, "p.yaml")
            .unwrap()
            .remediation,
    );
    config.self_email = Some(SELF.to_owned());
    let next = Engine::new(ports, config, Some(publisher));
    assert_eq!(next.handle(&m, None).await, Verdict::Ack);
    assert_eq!(sink.outcomes(), vec!["restored"]);
    assert_eq!(s.writes(), 1, "no second write");
}

#[tokio::test(start_paused = true)]
async fn a_second_delivery_of_a_message_in_flight_shares_its_verdict_instead_of_running_again() {
    let s = Scenario::new(ENFORCE);
    let mut m = s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com");
    m.delivery_attempt = Some(2);
    s.cloud.set_latency(Duration::from_millis(20));
    let second = async {
        // Pub/Sub redelivers while the first delivery is still reading the project.
        tokio::time::sleep(Duration::from_millis(30)).await;
        s.deliver(m.clone()).await
    };
    let (a, b) = tokio::join!(s.deliver(m.clone()), second);
    assert_eq!((a, b), (Verdict::Ack, Verdict::Ack));
    assert_eq!(s.reads(P), 1, "one run for both deliveries");
    assert_eq!(
        s.cloud.calls("entries.list"),
        1,
        "one audit-log read: {:?}",
        s.cloud.journal()
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_delivery_of_a_removal_found_healthy_is_acknowledged_without_reading_the_audit_log()
{
    let s = Scenario::new(ENFORCE);
    // Someone removed the binding and put it back; Pub/Sub delivers the removal for the first time.
    let mut m = s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com");
    m.delivery_attempt = Some(1);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.cloud.calls("entries.list"), 0, "{:?}", s.cloud.journal());
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_numbered_by_pubsub_still_recovers_the_notification_a_dead_instance_lost() {
    let s = Scenario::new(ENFORCE);
    let mut m = s.break_node_role();
    m.delivery_attempt = Some(1);
    s.sink.set_failing(true);
    s.deliver(m.clone()).await;
    s.sink.set_failing(false);
    assert!(
        s.cloud.holds(P, NODE_ROLE, &node_sa(P)),
        "the write happened"
    );
    // Pub/Sub redelivers it as attempt 2: the audit log is read and the restoration notified.
    m.delivery_attempt = Some(2);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
    assert_eq!(s.writes(), 1, "no second write");
}

#[tokio::test(start_paused = true)]
async fn a_restoration_whose_publication_failed_is_published_from_the_outbox_on_redelivery() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.sink.set_failing(true);
    assert!(matches!(s.deliver(m.clone()).await, Verdict::Retry(_)));
    s.sink.set_failing(false);
    // The outbox holds it: no audit-log read is needed to know it was not published.
    s.cloud.fail_next("entries.list", Fault::UNAVAILABLE, 1);
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
    assert_eq!(s.writes(), 1, "no second write");
}

#[tokio::test(start_paused = true)]
async fn the_same_outcome_reached_twice_is_published_once() {
    let s = Scenario::new(DRY_RUN);
    let m = s.break_node_role();
    s.deliver(m).await;
    s.deliver(s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com"))
        .await;
    assert_eq!(s.sink.outcomes(), vec!["would-restore"]);
}

#[tokio::test(start_paused = true)]
async fn an_escalation_reached_again_after_the_policy_changed_is_not_published_again() {
    let s = Scenario::new("mode: enforce\nlimits:\n  max_restorations_per_binding: 1\n");
    let m = s.break_node_role();
    s.deliver(m).await;
    let m = s.break_node_role();
    s.deliver(m).await;
    // Someone removes it once more (the policy changes again): still escalated, nothing new to say
    // (the reminder digest re-announces open problems).
    s.cloud
        .add_binding(P, "roles/viewer", "user:someone@example.com");
    s.deliver(s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com"))
        .await;
    assert_eq!(s.sink.outcomes(), vec!["restored", "escalated"]);
}

#[tokio::test(start_paused = true)]
async fn a_notification_carries_the_evidence_of_the_event() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.deliver(m).await;
    let n = &s.sink.published()[0];
    assert_eq!(n.evidence.actor.as_deref(), Some("alice@example.com"));
    assert_eq!(n.evidence.method.as_deref(), Some("SetIamPolicy"));
    assert_eq!(n.project_id, P);
    assert_eq!(n.project_number, P_NUMBER);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_message_is_acknowledged_without_any_call() {
    let s = Scenario::new(ENFORCE);
    let m = Message {
        message_id: "bad".to_owned(),
        data: b"{not json".to_vec(),
        ..Message::default()
    };
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert!(s.cloud.journal().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_irrelevant_audit_entry_is_acknowledged_without_any_call() {
    let s = Scenario::new(ENFORCE);
    let m = s.message(json!({
        "insertId": "x",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "storage.buckets.create",
            "serviceName": "storage.googleapis.com",
            "resourceName": "projects/_/buckets/b"
        },
        "resource": {"type": "gcs_bucket", "labels": {"project_id": P}}
    }));
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert!(s.cloud.journal().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hint_for_a_project_that_does_not_exist_is_acknowledged() {
    let s = Scenario::new(ENFORCE);
    let m = s.removal(
        "ghost-project",
        NODE_ROLE,
        &node_sa("ghost-project"),
        "a@b.c",
    );
    assert_eq!(s.deliver(m).await, Verdict::Ack);
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_project_lookup_that_is_rate_limited_asks_for_redelivery() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.cloud.fail_next("projects.get", Fault::RATE_LIMITED, 1);
    assert!(matches!(s.deliver(m).await, Verdict::Retry(_)));
}

// ---- caches -----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn ancestor_policies_are_reused_across_runs_within_the_cache_lifetime() {
    let s = Scenario::new(DRY_RUN);
    s.deliver(s.sweep(&[P])).await;
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(s.reads(P), 2, "the project's own policy is never cached");
    assert_eq!(
        s.cloud.calls("getIamPolicy") - s.reads(P),
        1,
        "the organization's policy is read once: {:?}",
        s.cloud.journal()
    );
}

#[tokio::test(start_paused = true)]
async fn cached_ancestor_policies_expire() {
    let s = Scenario::new(DRY_RUN);
    s.cloud.with(|w| {
        w.policies.insert(
            gke_iam_remediator::domain::iam::ResourceRef::parse("organizations/777").unwrap(),
            Default::default(),
        );
    });
    s.deliver(s.sweep(&[P])).await;
    tokio::time::sleep(gke_iam_remediator::engine::CACHE_TTL + Duration::from_secs(1)).await;
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(s.cloud.calls("getIamPolicy") - s.reads(P), 2);
}

// ---- scope resolution -------------------------------------------------------------------------

fn remediator(cloud: &FakeCloud) -> Remediator {
    remediator_with(cloud, |_| {})
}

/// A remediator with the default policy and `configure`d options, over the fake.
fn remediator_with(cloud: &FakeCloud, configure: impl FnOnce(&mut Options)) -> Remediator {
    let mut options = Options::new(PolicyFile::default().remediation);
    configure(&mut options);
    Remediator::new(Arc::new(cloud.clone()), options)
}

#[tokio::test(start_paused = true)]
async fn a_folder_that_does_not_exist_is_an_error_not_an_empty_scope() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some("organizations/777"));
    let root = gke_iam_remediator::domain::iam::ResourceRef::parse("folders/999").unwrap();
    let err = remediator(&cloud).resolve(&[], &[root]).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_organization_that_cannot_be_read_is_an_error() {
    let cloud = FakeCloud::default();
    let root = gke_iam_remediator::domain::iam::ResourceRef::parse("organizations/999").unwrap();
    assert!(remediator(&cloud).resolve(&[], &[root]).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_project_that_cannot_be_found_is_reported_on_its_own_and_the_rest_are_checked() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some("organizations/777"));
    let (found, failed) = remediator(&cloud)
        .resolve(&[P.to_owned(), "missing-project".to_owned()], &[])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].project_id.as_str(), P);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].project_id, "missing-project");
    assert!(failed[0].error.is_some());
}

// --- Concurrent reads: rounds of API latency ----------------------------------------------------

/// The fake's per-call latency in these scenarios.
const LATENCY: Duration = Duration::from_millis(20);

/// Resolves `--project`s and checks them, as `scan` does; returns the reports and the tokio time taken.
async fn scan_projects(cloud: &FakeCloud, projects: &[&str]) -> (Vec<ProjectReport>, Duration) {
    scan_with(&remediator(cloud), projects).await
}

/// The remediator of `scan` and `explain`: named projects read ahead.
fn reading_ahead(cloud: &FakeCloud) -> Remediator {
    remediator_with(cloud, |o| o.settings.read_ahead = true)
}

async fn scan_with(remediator: &Remediator, projects: &[&str]) -> (Vec<ProjectReport>, Duration) {
    let started = tokio::time::Instant::now();
    let names: Vec<String> = projects.iter().map(|p| (*p).to_owned()).collect();
    let (infos, failures) = remediator.resolve(&names, &[]).await.expect("resolve");
    assert!(failures.is_empty(), "{failures:?}");
    let reports = gke_iam_remediator::engine::sweep::check_all(remediator, &infos).await;
    (reports, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_project_not_read_ahead_takes_two_rounds_of_api_latency() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, None);
    cloud.set_latency(LATENCY);
    let (reports, took) = scan_projects(&cloud, &[P]).await;
    // Round 1: the lookup, the policy, the clusters and the deny policies; round 2: the accounts and
    // the role definitions.
    assert_eq!(took, 2 * LATENCY, "{:?}", cloud.journal());
    assert!(reports[0].error.is_none(), "{:?}", reports[0].error);
    for method in [
        "projects.get",
        "getIamPolicy",
        "clusters.list",
        "serviceAccounts.list",
        "roles.get",
    ] {
        assert_eq!(cloud.calls(method), 1, "{method}: {:?}", cloud.journal());
    }
}

#[tokio::test(start_paused = true)]
async fn a_named_project_read_ahead_takes_one_round_and_gets_the_same_report() {
    let ahead = FakeCloud::default();
    let plain = FakeCloud::default();
    for cloud in [&ahead, &plain] {
        cloud.add_healthy_project(P, P_NUMBER, None);
        cloud.add_healthy_project("shop-dev", "222222222222", None);
        cloud.with(|w| {
            let project = fake::project_ref("shop-dev");
            w.policies.get_mut(&project).unwrap().bindings.remove(1);
        });
        cloud.set_latency(LATENCY);
    }
    let (ahead_reports, took) = scan_with(&reading_ahead(&ahead), &[P, "shop-dev"]).await;
    let (plain_reports, plain_took) = scan_projects(&plain, &[P, "shop-dev"]).await;
    // The lookup, the policy, the clusters, the service accounts, the project's own deny policies
    // and the usual roles of node accounts, all at once.
    assert_eq!(took, LATENCY, "{:?}", ahead.journal());
    assert_eq!(plain_took, 2 * LATENCY);
    let json = |r: &[ProjectReport]| serde_json::to_string(r).unwrap();
    assert_eq!(json(&ahead_reports), json(&plain_reports));
    assert!(
        ahead_reports[0]
            .findings
            .iter()
            .any(|f| f.outcome == Outcome::WouldRestore),
        "the broken project is reported: {ahead_reports:?}"
    );
    // One read of each project's deny policies (by id, before the number is known).
    assert_eq!(ahead.calls("denypolicies.list"), 2, "{:?}", ahead.journal());
    assert!(
        ahead
            .journal()
            .iter()
            .any(|c| c == &format!("denypolicies.list projects/{P}")),
        "{:?}",
        ahead.journal()
    );
}

#[tokio::test(start_paused = true)]
async fn a_deny_rule_on_a_project_is_found_by_the_read_ahead_made_with_the_projects_id() {
    let ahead = FakeCloud::default();
    let plain = FakeCloud::default();
    for cloud in [&ahead, &plain] {
        cloud.add_healthy_project(P, P_NUMBER, None);
        cloud.with(|w| {
            let point = format!("projects/{P_NUMBER}");
            w.deny_policies.insert(
                point.clone(),
                vec![DenyPolicy {
                    name: format!(
                        "policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{P_NUMBER}/denypolicies/no-logs"
                    ),
                    attached_to: point,
                    display_name: String::new(),
                    rules: vec![DenyRule {
                        denied_principals: vec![format!(
                            "principal://iam.googleapis.com/projects/-/serviceAccounts/nodes@{P}.iam.gserviceaccount.com"
                        )],
                        denied_permissions: vec![
                            "logging.googleapis.com/logEntries.create".to_owned(),
                        ],
                        ..DenyRule::default()
                    }],
                }],
            );
        });
    }
    let (ahead_reports, _) = scan_with(&reading_ahead(&ahead), &[P]).await;
    let (plain_reports, _) = scan_projects(&plain, &[P]).await;
    let statuses = |r: &[ProjectReport]| {
        r[0].findings
            .iter()
            .map(|f| f.finding.status.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        statuses(&ahead_reports).contains(&"denied".to_owned()),
        "{:?}",
        statuses(&ahead_reports)
    );
    assert_eq!(statuses(&ahead_reports), statuses(&plain_reports));
}

#[tokio::test(start_paused = true)]
async fn a_project_seen_with_node_accounts_of_its_own_lists_them_in_its_next_runs_first_round() {
    let s = Scenario::new(DRY_RUN);
    s.cloud.set_latency(LATENCY);
    s.deliver(s.sweep(&[P])).await;
    let first = s.cloud.journal();
    let round_two_starts = |calls: &[String]| {
        calls
            .iter()
            .position(|c| c.starts_with("denypolicies.list") || c.starts_with("roles.get"))
            // Nothing left for a second round: everything was read in the first.
            .unwrap_or(calls.len())
    };
    let listed_at = |calls: &[String]| {
        calls
            .iter()
            .position(|c| c.starts_with("serviceAccounts.list"))
            .expect("the accounts are listed")
    };
    assert!(
        listed_at(&first)
            > first
                .iter()
                .position(|c| c.starts_with("clusters.list"))
                .unwrap(),
        "the first run learns of its node accounts from the clusters: {first:?}"
    );
    s.deliver(s.sweep(&[P])).await;
    let second = s.cloud.journal()[first.len()..].to_vec();
    assert!(
        listed_at(&second) < round_two_starts(&second),
        "listed beside the policy and clusters: {second:?}"
    );
    assert_eq!(
        second
            .iter()
            .filter(|c| c.starts_with("serviceAccounts.list"))
            .count(),
        1,
        "{second:?}"
    );
    assert_eq!(
        s.sink.outcomes(),
        Vec::<String>::new(),
        "healthy both times"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_reads_give_the_same_reports_as_instant_ones() {
    let slow = FakeCloud::default();
    let instant = FakeCloud::default();
    for cloud in [&slow, &instant] {
        cloud.add_folder("100", "organizations/777");
        cloud.add_folder("200", "folders/100");
        cloud.add_healthy_project(P, P_NUMBER, Some("folders/200"));
        cloud.add_healthy_project("shop-dev", "222222222222", Some("organizations/777"));
        cloud.add_healthy_project("shop-test", "333333333333", None);
        cloud.with(|w| {
            let project = fake::project_ref("shop-dev");
            w.policies.get_mut(&project).unwrap().bindings.remove(1);
        });
    }
    slow.set_latency(LATENCY);
    let projects = ["shop-test", P, "shop-dev"];
    let (slow_reports, took) = scan_projects(&slow, &projects).await;
    let (instant_reports, _) = scan_projects(&instant, &projects).await;
    let json = |r: &[ProjectReport]| serde_json::to_string(r).unwrap();
    assert_eq!(json(&slow_reports), json(&instant_reports));
    // Sorted by project id, whatever answered first.
    let ids: Vec<&str> = slow_reports.iter().map(|r| r.project_id.as_str()).collect();
    assert_eq!(ids, ["shop-dev", "shop-prod", "shop-test"]);
    assert!(
        slow_reports.iter().any(|r| r
            .findings
            .iter()
            .any(|f| f.outcome == Outcome::WouldRestore)),
        "the broken project is reported"
    );
    // Three projects at once; the deepest (two folders, then the organization) needs three rounds
    // for its ancestors, each level's policy read beside its parent, then one for the deny policies
    // of every level at once.
    assert_eq!(took, 4 * LATENCY, "{:?}", slow.journal());
}

#[tokio::test(start_paused = true)]
async fn a_projects_policy_and_clusters_are_read_at_once_and_its_accounts_and_roles_next() {
    let cloud = FakeCloud::default();
    cloud.add_healthy_project(P, P_NUMBER, Some("organizations/777"));
    let info = cloud.get_project(P).await.unwrap();
    cloud.set_latency(LATENCY);
    let remediator = remediator(&cloud);
    let started = tokio::time::Instant::now();
    let reports =
        gke_iam_remediator::engine::sweep::check_all(&remediator, std::slice::from_ref(&info))
            .await;
    assert!(reports[0].error.is_none());
    // Round 1: project policy, clusters and the organization's policy; round 2: accounts, roles and
    // the deny policies of the project and the organization.
    assert_eq!(started.elapsed(), 2 * LATENCY, "{:?}", cloud.journal());
}

// ---------------------------------------------------------------------------------------------
// Time-bound grants that end soon: `expiring` (a warning, never a write).

const DAY: Duration = Duration::from_secs(86_400);

/// An enforcing scenario whose only node grant is time-bound, ending `ends_in` from now on the
/// returned clock (which conditions are evaluated against).
fn expiring_scenario(ends_in: Duration) -> (Scenario, gke_iam_remediator::clock::Clock) {
    let clock = gke_iam_remediator::clock::Clock::default();
    let c = clock.clone();
    let s = Scenario::with(ENFORCE, move |config| config.clock = c);
    set_time_bound_node_grant(&s, clock.now() + ends_in);
    (s, clock)
}

/// Replaces the node account's grant with one under `request.time < timestamp(ends)`.
fn set_time_bound_node_grant(s: &Scenario, ends: std::time::SystemTime) {
    let stamp =
        gke_iam_remediator::clock::rfc3339(ends, gke_iam_remediator::clock::Precision::Millis);
    let member = node_sa(P);
    s.cloud.with(|w| {
        let policy = w.policies.get_mut(&fake::project_ref(P)).unwrap();
        policy
            .bindings
            .retain(|b| !b.members.iter().any(|m| m.as_str() == member));
        policy.bindings.push(fake::conditional_binding(
            NODE_ROLE,
            &[&member],
            &format!("request.time < timestamp('{stamp}')"),
        ));
    });
}

#[tokio::test(start_paused = true)]
async fn a_grant_ending_inside_the_warning_window_is_expiring_and_nothing_is_written() {
    let (s, _) = expiring_scenario(3 * DAY);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    let published = s.sink.published();
    assert_eq!(s.sink.outcomes(), vec!["expiring"]);
    let n = &published[0];
    assert_eq!(n.severity.as_str(), "warning");
    assert_eq!(n.status.as_str(), "ok");
    assert_eq!(n.principal.as_deref(), Some(node_sa(P).as_str()));
    assert!(n.expires_at.is_some(), "{n:?}");
    assert!(n.actions.is_empty());
    assert_eq!(s.writes(), 0, "it is healthy until it ends");
}

#[tokio::test(start_paused = true)]
async fn a_grant_ending_after_the_warning_window_is_healthy_and_silent() {
    let (s, _) = expiring_scenario(30 * DAY);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert!(s.sink.outcomes().is_empty(), "{:?}", s.sink.outcomes());
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_warning_window_is_the_policy_limit() {
    let clock = gke_iam_remediator::clock::Clock::default();
    let c = clock.clone();
    let s = Scenario::with(
        "mode: enforce\nlimits:\n  expiry_warning_days: 45\n",
        move |config| config.clock = c,
    );
    set_time_bound_node_grant(&s, clock.now() + 30 * DAY);
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(s.sink.outcomes(), vec!["expiring"]);
}

#[tokio::test(start_paused = true)]
async fn the_same_expiring_grant_notifies_once_across_two_runs() {
    let (s, clock) = expiring_scenario(3 * DAY);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    // An unrelated change moves the policy etag; a day passes: still the same grant and end.
    s.cloud
        .add_binding(P, "roles/viewer", "user:someone@example.com");
    clock.advance(DAY);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert_eq!(runs(&s.engine), 2, "both sweeps ran");
    assert_eq!(s.sink.outcomes(), vec!["expiring"], "one notification");
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_two_runs_of_one_expiring_grant_build_the_same_notification_id() {
    // Two engines (two instances, or a restart): consumers de-duplicate on the id.
    let clock = gke_iam_remediator::clock::Clock::default();
    let ends = clock.now() + 3 * DAY;
    let mut ids = Vec::new();
    for etag_moves in [false, true] {
        let c = clock.clone();
        let s = Scenario::with(ENFORCE, move |config| config.clock = c);
        set_time_bound_node_grant(&s, ends);
        if etag_moves {
            s.cloud
                .add_binding(P, "roles/viewer", "user:someone@example.com");
        }
        s.deliver(s.sweep(&[P])).await;
        ids.push(s.sink.published()[0].id.clone());
    }
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test(start_paused = true)]
async fn a_renewed_grant_with_a_new_expiry_notifies_again() {
    let (s, clock) = expiring_scenario(3 * DAY);
    s.deliver(s.sweep(&[P])).await;
    set_time_bound_node_grant(&s, clock.now() + 10 * DAY);
    s.deliver(s.sweep(&[P])).await;
    let published = s.sink.published();
    assert_eq!(s.sink.outcomes(), vec!["expiring", "expiring"]);
    assert_ne!(published[0].id, published[1].id);
    assert_ne!(published[0].expires_at, published[1].expires_at);
    assert_eq!(s.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_expiring_grant_becomes_missing_when_it_ends_and_is_restored_unconditionally() {
    let (s, clock) = expiring_scenario(3 * DAY);
    s.deliver(s.sweep(&[P])).await;
    assert!(!s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    clock.advance(4 * DAY);
    assert_eq!(s.deliver(s.sweep(&[P])).await, Verdict::Ack);
    assert_eq!(s.sink.outcomes(), vec!["expiring", "restored"]);
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    assert!(
        s.cloud
            .policy(P)
            .bindings
            .iter()
            .any(|b| b.condition.is_some()),
        "the expired conditional binding is untouched"
    );
}

#[tokio::test(start_paused = true)]
async fn removals_a_past_audit_log_read_covers_are_answered_without_reading_it_again() {
    let s = Scenario::new(ENFORCE);
    // Five removals of a binding that is healthy again, all made before the first arrives.
    let removals: Vec<Message> = (0..5)
        .map(|_| s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com"))
        .collect();
    // Entry timestamps and arrivals are wall-clock (milliseconds): let one pass between them.
    std::thread::sleep(Duration::from_millis(5));
    for m in removals {
        assert_eq!(s.deliver(m).await, Verdict::Ack);
    }
    assert_eq!(s.cloud.calls("entries.list"), 1, "{:?}", s.cloud.journal());
    // A removal made after that read is not covered: whether it was ours to notify is read again.
    std::thread::sleep(Duration::from_millis(5));
    let later = s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com");
    assert_eq!(s.deliver(later).await, Verdict::Ack);
    assert_eq!(s.cloud.calls("entries.list"), 2, "{:?}", s.cloud.journal());
}
