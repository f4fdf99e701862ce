//! The shared state: several engines (instances) over one in-memory store behind the state port,
//! killed at chosen points of a run, on tokio's paused clock. What a person hears: every change
//! once, nothing unchanged again, nothing lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use gke_iam_remediator::engine::Engine;
use gke_iam_remediator::engine::EngineConfig;
use gke_iam_remediator::engine::shared::SharedState;
use gke_iam_remediator::intake::Verdict;
use gke_iam_remediator::policy::PolicyFile;
use gke_iam_remediator::ports::{
    Cloud, Collection, NotificationSink, StateError, StateStore, StoreInfo, Stored, Version,
    WriteFlags,
};
use gke_iam_remediator::state::MemoryStore;

use super::fake::{AGENT_ROLE, NODE_ROLE};
use super::{ENFORCE, P, P_NUMBER, SELF, Scenario, agent, node_sa};

/// Where a store makes its process "die": the put numbered `at` (from 1) never returns, after
/// being applied (`applied`) or before.
struct KillPoint {
    at: AtomicI64,
    applied: AtomicBool,
    hit: AtomicBool,
}

/// A shared memory store that can freeze its caller at a kill point.
struct KillableStore {
    inner: MemoryStore,
    kill: KillPoint,
}

impl KillableStore {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::shared(),
            kill: KillPoint {
                at: AtomicI64::new(0),
                applied: AtomicBool::new(false),
                hit: AtomicBool::new(false),
            },
        })
    }

    /// The `nth` put from now freezes its caller forever, `applied` or not.
    fn kill_at(&self, nth: i64, applied: bool) {
        self.kill.applied.store(applied, Ordering::SeqCst);
        self.kill.hit.store(false, Ordering::SeqCst);
        self.kill.at.store(nth, Ordering::SeqCst);
    }

    fn hit(&self) -> bool {
        self.kill.hit.load(Ordering::SeqCst)
    }
}

impl StateStore for KillableStore {
    fn info(&self) -> StoreInfo {
        self.inner.info()
    }

    fn get<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Stored>, StateError>> {
        self.inner.get(collection, key)
    }

    fn put<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
        body: &'a str,
        flags: WriteFlags,
        expected: Option<&'a Version>,
    ) -> BoxFuture<'a, Result<Version, StateError>> {
        async move {
            let left = self.kill.at.fetch_sub(1, Ordering::SeqCst);
            if left == 1 {
                if self.kill.applied.load(Ordering::SeqCst) {
                    let _ = self.inner.put(collection, key, body, flags, expected).await;
                }
                self.kill.hit.store(true, Ordering::SeqCst);
                futures::future::pending::<()>().await;
            }
            self.inner.put(collection, key, body, flags, expected).await
        }
        .boxed()
    }

    fn pending<'a>(
        &'a self,
        collection: Collection,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        self.inner.pending(collection)
    }
}

/// `n` more instances of the scenario's service over one store (the scenario's own engine keeps
/// a store of its own and is not used).
fn instances(s: &Scenario, policy: &str, store: Arc<dyn StateStore>, n: usize) -> Vec<Arc<Engine>> {
    let state = SharedState::new(store);
    (0..n)
        .map(|_| {
            let mut config =
                EngineConfig::new(PolicyFile::from_yaml(policy, "p.yaml").unwrap().remediation);
            config.self_email = Some(SELF.to_owned());
            config.clock = s.engine_clock.clone();
            let ports: Arc<dyn Cloud> = Arc::new(s.cloud.clone());
            let publisher: Arc<dyn NotificationSink> = Arc::new(s.sink.clone());
            Engine::with_state(ports, config, Some(publisher), state.clone())
        })
        .collect()
}

fn distinct_ids(s: &Scenario, outcome: &str) -> BTreeSet<String> {
    s.sink
        .published()
        .iter()
        .filter(|n| n.outcome.to_string() == outcome)
        .map(|n| n.id.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn three_instances_sharing_the_state_restore_a_binding_removed_twelve_times_three_times_then_escalate()
 {
    let policy = "mode: enforce\nlimits:\n  max_restorations_per_binding: 3\n";
    let s = Scenario::new(policy);
    let fleet = instances(&s, policy, Arc::new(MemoryStore::shared()), 3);
    for round in 0..12 {
        let m = s.break_node_role();
        fleet[round % 3].handle(&m, None).await;
    }
    assert_eq!(s.writes(), 3, "{:?}", s.cloud.journal());
    assert_eq!(
        s.sink.outcomes(),
        vec!["restored", "restored", "restored", "escalated"]
    );
    let flap = s.sink.published()[3].flap_guard.clone();
    assert_eq!(
        serde_json::to_value(flap).unwrap()["source"],
        "ledger",
        "the count came from the shared ledger"
    );
}

#[tokio::test(start_paused = true)]
async fn instances_racing_on_one_removal_write_it_once_and_announce_it_once() {
    let s = Scenario::new(ENFORCE);
    let fleet = instances(&s, ENFORCE, Arc::new(MemoryStore::shared()), 3);
    let m = s.break_node_role();
    // Pub/Sub redelivers a late ack to other instances while the first still handles it.
    let verdicts = futures::future::join_all(fleet.iter().map(|e| e.handle(&m, None))).await;
    assert!(verdicts.contains(&Verdict::Ack), "{verdicts:?}");
    for e in &fleet {
        e.handle(&m, None).await;
    }
    assert_eq!(distinct_ids(&s, "restored").len(), 1);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn the_same_world_swept_twice_publishes_nothing_the_second_time() {
    let s = Scenario::new("mode: dry-run\n");
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    let fleet = instances(&s, "mode: dry-run\n", Arc::new(MemoryStore::shared()), 2);
    fleet[0].handle(&s.sweep(&[P]), None).await;
    assert_eq!(s.sink.outcomes(), vec!["would-restore"]);
    fleet[1].handle(&s.sweep(&[P]), None).await;
    fleet[0].sweep(&[P.to_owned()], &[]).await.unwrap();
    assert_eq!(s.sink.outcomes(), vec!["would-restore"], "nothing new");
}

#[tokio::test(start_paused = true)]
async fn a_removal_event_publishes_only_the_findings_it_changed_naming_its_actor_only_there() {
    // The GKE service agent is missing and not ours to restore: one not-allowed, announced once.
    let policy = "mode: enforce\nrestore: [node-sa-permissions]\n";
    let s = Scenario::new(policy);
    s.cloud.remove_binding(P, AGENT_ROLE, &agent(P_NUMBER));
    let fleet = instances(&s, policy, Arc::new(MemoryStore::shared()), 1);
    fleet[0].handle(&s.sweep(&[P]), None).await;
    assert_eq!(s.sink.outcomes(), vec!["not-allowed"]);
    for _ in 0..3 {
        let m = s.break_node_role();
        fleet[0].handle(&m, None).await;
    }
    assert_eq!(
        s.sink.outcomes(),
        vec!["not-allowed", "restored", "restored", "restored"]
    );
    for n in s.sink.published().iter().skip(1) {
        assert_eq!(n.evidence.actor.as_deref(), Some("alice@example.com"));
    }
    // The agent comes back by someone else's hand: resolved, once.
    s.cloud.add_binding(P, AGENT_ROLE, &agent(P_NUMBER));
    fleet[0].handle(&s.sweep(&[P]), None).await;
    fleet[0].handle(&s.sweep(&[P]), None).await;
    assert_eq!(
        s.sink.outcomes().last().map(String::as_str),
        Some("resolved")
    );
    assert_eq!(s.sink.outcomes().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn an_unrelated_removal_never_names_its_actor_on_another_finding() {
    let policy = "mode: enforce\nrestore: [node-sa-permissions]\n";
    let s = Scenario::new(policy);
    let fleet = instances(&s, policy, Arc::new(MemoryStore::shared()), 1);
    // Bob removes the agent (not ours to restore); the first announcement of it names Bob.
    s.cloud.remove_binding(P, AGENT_ROLE, &agent(P_NUMBER));
    let m = s.removal(P, AGENT_ROLE, &agent(P_NUMBER), "bob@example.com");
    fleet[0].handle(&m, None).await;
    // Alice's removal of the node role is announced with Alice, and the agent is not re-sent.
    let m = s.break_node_role();
    fleet[0].handle(&m, None).await;
    let published = s.sink.published();
    assert_eq!(s.sink.outcomes(), vec!["not-allowed", "restored"]);
    assert_eq!(
        published[0].evidence.actor.as_deref(),
        Some("bob@example.com")
    );
    assert_eq!(
        published[1].evidence.actor.as_deref(),
        Some("alice@example.com")
    );
}

/// Kills the instance handling `m` at the store's kill point, then lets the other instances
/// receive the redeliveries Pub/Sub would make (the lease and the claim end meanwhile).
async fn kill_then_redeliver(s: &Scenario, store: &KillableStore, fleet: &[Arc<Engine>]) {
    let m = s.break_node_role();
    let first = fleet[0].clone();
    let message = m.clone();
    let task = tokio::spawn(async move { first.handle(&message, None).await });
    while !store.hit() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    for attempt in 0..4 {
        let verdict = fleet[1].handle(&m, None).await;
        if verdict == Verdict::Ack {
            return;
        }
        // Pub/Sub backs off before redelivering; the dead run's lease and claim run out.
        s.engine_clock.advance(Duration::from_secs(121));
        tokio::time::sleep(Duration::from_secs(121)).await;
        assert!(attempt < 3, "never acknowledged: {verdict:?}");
    }
}

async fn killed_at(nth: i64, applied: bool) -> Scenario {
    let s = Scenario::new(ENFORCE);
    let store = KillableStore::new();
    let fleet = instances(&s, ENFORCE, store.clone(), 2);
    store.kill_at(nth, applied);
    kill_then_redeliver(&s, &store, &fleet).await;
    assert!(s.cloud.holds(P, NODE_ROLE, &node_sa(P)));
    s
}

#[tokio::test(start_paused = true)]
async fn a_kill_after_the_intent_and_before_the_write_still_restores_and_announces_once() {
    // Put 1 records the intent; the process dies before writing.
    let s = killed_at(1, true).await;
    assert_eq!(s.writes(), 1, "the next instance wrote it");
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_kill_after_the_write_before_its_record_announces_the_restoration_once() {
    // Put 2 would turn the intent into a restoration: the process dies after the write.
    let s = killed_at(2, false).await;
    assert_eq!(s.writes(), 1, "no second write");
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_kill_after_the_record_before_the_outbox_announces_the_restoration_once() {
    // Put 3 would record the outcome and claim the notification.
    let s = killed_at(3, false).await;
    assert_eq!(s.writes(), 1);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_kill_after_the_publish_before_its_mark_repeats_only_the_same_id() {
    // Put 4 would take the published notification out of the outbox: it was published, and the
    // next publisher cannot know. Consumers (and our channels) de-duplicate on the id.
    let s = killed_at(4, false).await;
    assert_eq!(s.writes(), 1);
    assert_eq!(
        distinct_ids(&s, "restored").len(),
        1,
        "{:?}",
        s.sink.published()
    );
    assert!(s.sink.outcomes().iter().all(|o| o == "restored"));
}

#[tokio::test(start_paused = true)]
async fn a_sweep_whose_publishes_fail_names_them_and_the_next_run_publishes_every_one() {
    let s = Scenario::new(ENFORCE);
    let fleet = instances(&s, ENFORCE, Arc::new(MemoryStore::shared()), 2);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    s.sink.set_failing(true);
    fleet[0].sweep(&[P.to_owned()], &[]).await.unwrap();
    let unpublished = fleet[0].unpublished();
    assert_eq!(unpublished.len(), 1, "{unpublished:?}");
    s.sink.set_failing(false);
    // Another instance starting up drains the outbox.
    s.engine_clock.advance(Duration::from_secs(61));
    assert_eq!(fleet[1].drain().await.unwrap(), 1);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
    fleet[0].sweep(&[P.to_owned()], &[]).await.unwrap();
    assert_eq!(s.sink.outcomes(), vec!["restored"], "nothing twice");
    assert_eq!(s.writes(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_problem_is_reminded_once_a_day_never_per_sweep() {
    let s = Scenario::with("mode: dry-run\n", |c| {
        c.reminder = Some(Duration::from_secs(24 * 3600));
    });
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    for _ in 0..3 {
        s.deliver(s.sweep(&[P])).await;
    }
    assert_eq!(s.sink.outcomes(), vec!["would-restore"]);
    s.engine_clock.advance(Duration::from_secs(25 * 3600));
    for _ in 0..3 {
        s.deliver(s.sweep(&[P])).await;
    }
    let published = s.sink.published();
    assert_eq!(s.sink.outcomes(), vec!["would-restore", "would-restore"]);
    assert_eq!(published[1].evidence.source, "reminder");
    assert_ne!(published[0].id, published[1].id);
    // Fixed by someone: resolved, and no more reminders.
    s.cloud.add_binding(P, NODE_ROLE, &node_sa(P));
    s.deliver(s.sweep(&[P])).await;
    s.engine_clock.advance(Duration::from_secs(25 * 3600));
    s.deliver(s.sweep(&[P])).await;
    assert_eq!(
        s.sink.outcomes(),
        vec!["would-restore", "would-restore", "resolved"]
    );
}

/// A channel that counts what it is asked to send.
#[derive(Debug, Default)]
struct CountingChannel {
    sent: std::sync::Mutex<Vec<String>>,
}

impl gke_iam_remediator::notify::Channel for CountingChannel {
    fn name(&self) -> &str {
        "s"
    }

    fn kind(&self) -> gke_iam_remediator::notify::ChannelKind {
        gke_iam_remediator::notify::ChannelKind::Slack
    }

    fn send<'a>(
        &'a self,
        delivery: &'a gke_iam_remediator::notify::Delivery,
    ) -> BoxFuture<'a, Result<(), gke_iam_remediator::notify::SendError>> {
        let ids = delivery.notifications.iter().map(|n| n.id.clone());
        self.sent.lock().unwrap().extend(ids);
        async { Ok(()) }.boxed()
    }
}

#[tokio::test(start_paused = true)]
async fn instances_sharing_the_state_send_a_notification_to_a_channel_once() {
    let s = Scenario::new(ENFORCE);
    let m = s.break_node_role();
    s.deliver(m).await;
    let n = s.sink.published().remove(0);
    let policy = PolicyFile::from_yaml(
        "notifications:\n  digest_window_seconds: 0\n  channels:\n    - {name: s, type: slack, url_env: UNUSED}\n  routes:\n    - {channels: [s]}\n",
        "p.yaml",
    )
    .unwrap();
    let state = SharedState::new(Arc::new(MemoryStore::shared()));
    let channel = Arc::new(CountingChannel::default());
    let instances: Vec<_> = (0..3)
        .map(|_| {
            let d = gke_iam_remediator::notify::Deliverer::new(
                policy.notifications.clone(),
                vec![channel.clone()],
                gke_iam_remediator::notify::DeliverOptions::from_config(&policy.notifications),
            );
            d.share_record(state.clone());
            d
        })
        .collect();
    for d in &instances {
        assert_eq!(d.deliver(n.clone()).await, Verdict::Ack);
    }
    assert_eq!(*channel.sent.lock().unwrap(), vec![n.id.clone()]);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_the_same_removal_in_one_instance_is_restored_and_announced_once() {
    let s = Scenario::new(ENFORCE);
    s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
    let messages: Vec<_> = (0..20)
        .map(|_| s.removal(P, NODE_ROLE, &node_sa(P), "alice@example.com"))
        .collect();
    futures::future::join_all(messages.iter().map(|m| s.deliver(m.clone()))).await;
    assert_eq!(s.writes(), 1);
    assert_eq!(s.sink.outcomes(), vec!["restored"]);
}

/// `actor` removing the node role with a tool whose user agent is `agent`, as the log sink sends it.
fn removal_with(s: &Scenario, actor: &str, agent: &str) -> gke_iam_remediator::intake::Message {
    let mut m = s.removal(P, NODE_ROLE, &node_sa(P), actor);
    let mut entry: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
    entry["protoPayload"]["requestMetadata"] =
        serde_json::json!({"callerIp": "203.0.113.7", "callerSuppliedUserAgent": agent});
    m.data = serde_json::to_vec(&entry).unwrap();
    m
}

const TERRAFORM: &str = "google-api-go-client/0.5 Terraform/1.7.5 (+https://www.terraform.io) Terraform-Plugin-SDK/2.31.0 terraform-provider-google/5.22.0,gzip(gfe)";

#[tokio::test(start_paused = true)]
async fn an_escalation_caused_by_terraform_again_and_again_says_so_and_names_the_fix() {
    let policy = "mode: enforce\nlimits:\n  max_restorations_per_binding: 2\n";
    let s = Scenario::new(policy);
    let fleet = instances(&s, policy, Arc::new(MemoryStore::shared()), 2);
    for round in 0..3 {
        s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
        let m = removal_with(&s, "ci@infra.iam.gserviceaccount.com", TERRAFORM);
        fleet[round % 2].handle(&m, None).await;
    }
    let published = s.sink.published();
    assert_eq!(s.sink.outcomes(), vec!["restored", "restored", "escalated"]);
    let tool = published[0]
        .evidence
        .tool
        .as_ref()
        .expect("the tool is named");
    assert_eq!(
        tool.name,
        "Terraform 1.7.5 with terraform-provider-google 5.22.0"
    );
    let escalation = &published[2].detail;
    assert!(
        escalation.contains("Removed 3 times within the window, every time by ci@infra.iam.gserviceaccount.com with Terraform 1.7.5"),
        "{escalation}"
    );
    assert!(escalation.contains("check-plan"), "{escalation}");
}

#[tokio::test(start_paused = true)]
async fn an_escalation_by_different_people_does_not_blame_one_of_them() {
    let policy = "mode: enforce\nlimits:\n  max_restorations_per_binding: 2\n";
    let s = Scenario::new(policy);
    let fleet = instances(&s, policy, Arc::new(MemoryStore::shared()), 1);
    for actor in [
        "ci@infra.iam.gserviceaccount.com",
        "bob@example.com",
        "ci@infra.iam.gserviceaccount.com",
    ] {
        s.cloud.remove_binding(P, NODE_ROLE, &node_sa(P));
        fleet[0]
            .handle(&removal_with(&s, actor, TERRAFORM), None)
            .await;
    }
    let published = s.sink.published();
    assert_eq!(s.sink.outcomes(), vec!["restored", "restored", "escalated"]);
    assert!(
        !published[2].detail.contains("every time by"),
        "{}",
        published[2].detail
    );
}
