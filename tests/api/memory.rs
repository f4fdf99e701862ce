//! The shared state end to end: real `serve` and `job` processes (several at once, killed with
//! SIGKILL) on one store in the official Firestore emulator, the simulator's audit-log entries
//! pushed to them through the official Pub/Sub emulator, notifications read back from the
//! notifications topic. What a person hears: every change once, nothing unchanged again, nothing
//! lost when an instance dies. (The same semantics in-process: tests/scenarios/memory.rs.)
//!
//! Each test fails without the shared state: `MEMORY_TESTS_UNSHARED=N` gives instance (or job run)
//! `N` the unshared default (see support/fleet.rs).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use gcp_sim::{Faults, Latency};
use serde_json::{Value, json};

use crate::support::firestore;
use crate::support::fleet::{Fleet, outcomes, push_to};
use crate::support::service::{AGENT, WORLD, removal_entry};
use crate::support::wait_until;

const P: &str = "acme-prod";
const NODE_ROLE: &str = "roles/container.defaultNodeServiceAccount";
const NODE_SA: &str = "serviceAccount:gke-nodes@acme-prod.iam.gserviceaccount.com";

/// Runs a test on the runtime the Firestore tests share, bounded.
fn bounded<F: Future>(limit: Duration, test: F) -> F::Output {
    firestore::run(async {
        tokio::time::timeout(limit, test)
            .await
            .unwrap_or_else(|_| panic!("the test finished within {limit:?}"))
    })
}

/// Two projects, each missing both GKE service agents' bindings (four restorable findings).
const BROKEN: &str = r#"
projects:
  - id: mem-one
    number: "500000000001"
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:gke-nodes@mem-one.iam.gserviceaccount.com]
    service_accounts:
      - {email: gke-nodes@mem-one.iam.gserviceaccount.com, unique_id: "150000000000000000001"}
    clusters:
      - {name: c1, location: us-central1, node_pools: [{name: pool-1, service_account: gke-nodes@mem-one.iam.gserviceaccount.com}]}
  - id: mem-two
    number: "500000000002"
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:gke-nodes@mem-two.iam.gserviceaccount.com]
    service_accounts:
      - {email: gke-nodes@mem-two.iam.gserviceaccount.com, unique_id: "150000000000000000002"}
    clusters:
      - {name: c1, location: us-east1, node_pools: [{name: pool-1, service_account: gke-nodes@mem-two.iam.gserviceaccount.com}]}
"#;

const SWEEP: [&str; 5] = ["--sweep", "--project", "mem-one", "--project", "mem-two"];

fn ids(notes: &[Value]) -> Vec<String> {
    notes
        .iter()
        .map(|n| n["id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn three_instances_on_one_store_restore_a_binding_removed_twelve_times_three_times_then_escalate_once()
 {
    bounded(Duration::from_secs(240), async {
        let policy =
            "mode: enforce\nlimits:\n  max_restorations_per_binding: 3\n  window_minutes: 60\n";
        let fleet = Fleet::start(WORLD, policy, true).await;
        let mut instances = Vec::new();
        for n in 0..3 {
            instances.push(fleet.serve(n).await);
        }
        let started = Instant::now();
        for round in 0..12 {
            let target = &instances[round % 3];
            let removed = fleet
                .remove_binding("alice@example.com", P, NODE_ROLE, NODE_SA)
                .await;
            // What the simulator published since the last round (our restoration's entry too: its
            // own-change filter ignores it), all to this round's instance.
            let mut messages = fleet.audit_messages().await;
            if !removed {
                // Escalated: the binding stays removed; another removal event still comes (a log
                // sink exporting again), with an entry of its own.
                messages.push(fleet.message_of(&removal_entry(
                    &format!("again-{round}"),
                    NODE_ROLE,
                    NODE_SA,
                    P,
                )));
            }
            assert!(!messages.is_empty(), "round {round}: no audit-log entry");
            for m in &messages {
                let status = fleet.push(&target.url, m).await;
                assert!(
                    status.is_some_and(|s| (200..300).contains(&s)),
                    "round {round}: push to instance {} answered {status:?}; logs:\n{}",
                    round % 3,
                    target.logs.lock().unwrap()
                );
            }
        }
        eprintln!("12 removals handled in {:?}", started.elapsed());
        let notes = fleet.notifications(Duration::from_secs(3)).await;

        assert_eq!(
            fleet.our_writes(),
            3,
            "setIamPolicy calls of ours in the simulator's journal"
        );
        assert!(
            !fleet.holds(P, NODE_ROLE, NODE_SA),
            "restored a fourth time"
        );
        assert_eq!(
            outcomes(&notes),
            ["restored", "restored", "restored", "escalated"],
            "{notes:#?}"
        );
        assert_eq!(
            ids(&notes).into_iter().collect::<BTreeSet<_>>().len(),
            4,
            "{notes:#?}"
        );
        for i in instances {
            i.stop().await;
        }
    });
}

#[test]
fn a_sweep_that_cannot_publish_exits_1_naming_them_and_the_next_run_publishes_each_once_writing_nothing_again()
 {
    bounded(Duration::from_secs(300), async {
        // The notifications topic does not exist yet: every publish fails.
        let fleet = Fleet::start(BROKEN, "mode: enforce\n", false).await;

        let run = fleet.job(0, &SWEEP).await;
        let first = run.summary();
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        let unpublished: BTreeSet<String> = first["unpublished"]
            .as_object()
            .unwrap_or_else(|| panic!("no unpublished in the summary: {first}"))
            .keys()
            .cloned()
            .collect();
        assert_eq!(unpublished.len(), 4, "{first}");
        assert_eq!(
            fleet.our_writes(),
            2,
            "one write per project (both bindings in it)"
        );

        fleet.create_notify_topic().await;
        let run = fleet.job(1, &SWEEP).await;
        let second = run.summary();
        let notes = fleet.notifications(Duration::from_secs(3)).await;

        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        assert_eq!(second["drained"], 4, "{second}");
        assert_eq!(second.get("unpublished"), None, "{second}");
        assert_eq!(outcomes(&notes), ["restored"; 4], "{notes:#?}");
        let published: Vec<String> = ids(&notes);
        assert_eq!(
            published.iter().cloned().collect::<BTreeSet<_>>(),
            unpublished,
            "each notification the first run named, exactly once: {notes:#?}"
        );
        assert_eq!(published.len(), 4, "{notes:#?}");
        assert_eq!(fleet.our_writes(), 2, "nothing written twice");
    });
}

#[test]
fn the_same_world_swept_twice_in_dry_run_publishes_nothing_the_second_time() {
    bounded(Duration::from_secs(240), async {
        let fleet = Fleet::start(BROKEN, "mode: dry-run\n", true).await;

        let run = fleet.job(0, &SWEEP).await;
        assert!(
            run.code == 0 || run.code == 1,
            "{}\n{}",
            run.stdout,
            run.stderr
        );
        let first = fleet.notifications(Duration::from_secs(2)).await;
        let run = fleet.job(1, &SWEEP).await;
        assert!(
            run.code == 0 || run.code == 1,
            "{}\n{}",
            run.stdout,
            run.stderr
        );
        let second = fleet.notifications(Duration::from_secs(2)).await;

        assert_eq!(outcomes(&first), ["would-restore"; 4], "{first:#?}");
        assert_eq!(second, Vec::<Value>::new(), "nothing changed, nothing said");
        assert_eq!(fleet.our_writes(), 0);
    });
}

#[test]
fn a_removal_on_a_project_with_an_open_problem_publishes_only_the_restoration_naming_the_remover() {
    bounded(Duration::from_secs(240), async {
        // The GKE service agent's binding is missing and not ours to restore: an open problem.
        let world = WORLD.replace(
            "        - role: roles/container.serviceAgent\n          members: [serviceAccount:service-200000000001@container-engine-robot.iam.gserviceaccount.com]\n",
            "",
        );
        assert_ne!(world, WORLD);
        let fleet = Fleet::start(
            &world,
            "mode: enforce\nrestore: [node-sa-permissions]\n",
            true,
        )
        .await;
        let a = fleet.serve(0).await;
        let b = fleet.serve(1).await;

        // A sweep on one instance announces the open problem once.
        let sweep = fleet.message_of(&json!({"sweep": {"projects": [P]}}));
        assert_eq!(fleet.push(&a.url, &sweep).await, Some(204));
        let before = fleet.notifications(Duration::from_secs(2)).await;
        assert_eq!(outcomes(&before), ["not-allowed"], "{before:#?}");
        assert_eq!(before[0]["principal"], AGENT);

        // Alice removes the node binding; her audit-log entry reaches the other instance.
        assert!(
            fleet
                .remove_binding("alice@example.com", P, NODE_ROLE, NODE_SA)
                .await
        );
        for m in fleet.audit_messages().await {
            let status = fleet.push(&b.url, &m).await;
            assert_eq!(status, Some(204), "{}", b.logs.lock().unwrap());
        }
        let notes = fleet.notifications(Duration::from_secs(3)).await;

        assert!(fleet.holds(P, NODE_ROLE, NODE_SA));
        assert_eq!(outcomes(&notes), ["restored"], "{notes:#?}");
        assert_eq!(notes[0]["principal"], NODE_SA);
        assert_eq!(notes[0]["evidence"]["actor"], "alice@example.com");
        a.stop().await;
        b.stop().await;
    });
}

/// Faults of the kill test: the remediator cannot read Cloud Audit Logs (without a shared store
/// it would find its dead run's restoration there and announce it: the ledger alone must do it),
/// and every call takes `latency_ms`.
fn no_audit_log_reads(latency_ms: u64) -> Faults {
    Faults {
        latency: Latency {
            fixed_ms: latency_ms,
            jitter_ms: 0,
        },
        deny: ["logging.logEntries.list".to_owned()].into(),
        ..Faults::default()
    }
}

#[test]
fn a_serve_killed_after_its_write_leaves_one_restored_notification_once_another_instance_takes_the_redelivery()
 {
    bounded(Duration::from_secs(420), async {
        let fleet = Fleet::start(WORLD, "mode: enforce\n", true).await;
        fleet.sim.set_faults(no_audit_log_reads(0));
        let first = fleet.serve(0).await;
        let second = fleet.serve(1).await;
        let started = Instant::now();

        assert!(
            fleet
                .remove_binding("alice@example.com", P, NODE_ROLE, NODE_SA)
                .await
        );
        let messages = fleet.audit_messages().await;
        assert_eq!(messages.len(), 1, "{messages:?}");
        let removal = messages[0].clone();
        // Every call now takes a second: the read-back after the write is still under way when the
        // write shows in the simulator, and the process is killed there.
        fleet.sim.set_faults(no_audit_log_reads(1000));
        let http = reqwest::Client::new();
        let url = first.url.clone();
        let message = removal.clone();
        let in_flight = tokio::spawn(async move { push_to(&http, &url, &message).await });
        let written = wait_until(Duration::from_secs(90), || {
            fleet.holds(P, NODE_ROLE, NODE_SA)
        })
        .await;
        assert!(
            written.is_some(),
            "never written: {}",
            first.logs.lock().unwrap()
        );
        first.stop().await; // SIGKILL
        assert_eq!(in_flight.await.unwrap(), None, "the push died with serve");
        fleet.sim.set_faults(no_audit_log_reads(0));
        assert_eq!(fleet.our_writes(), 1);
        let killed_at = started.elapsed();

        // Pub/Sub redelivers to the other instance; while the dead run's write intent is within its
        // lease (120 s) the answer is 503, then the redelivery is acknowledged.
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut answers = Vec::new();
        let mut notes = Vec::new();
        loop {
            let status = fleet.push(&second.url, &removal).await;
            let got = fleet.notifications(Duration::from_millis(500)).await;
            answers.push((started.elapsed().as_secs(), status, outcomes(&got)));
            notes.extend(got);
            if status.is_some_and(|s| (200..300).contains(&s)) {
                break;
            }
            assert_eq!(status, Some(503), "{}", second.logs.lock().unwrap());
            assert!(
                Instant::now() < deadline,
                "never acknowledged: {answers:?}\n{}",
                second.logs.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        eprintln!(
            "killed {killed_at:?} after the start; redeliveries (seconds since the start, answer, notifications): {answers:?}"
        );
        notes.extend(fleet.notifications(Duration::from_secs(3)).await);

        let restored: BTreeSet<String> = notes
            .iter()
            .filter(|n| n["outcome"] == "restored")
            .map(|n| n["id"].as_str().unwrap_or("?").to_owned())
            .collect();
        assert_eq!(restored.len(), 1, "{notes:#?}");
        assert_eq!(outcomes(&notes), ["restored"], "{notes:#?}");
        assert_eq!(fleet.our_writes(), 1, "written once");
        assert!(fleet.holds(P, NODE_ROLE, NODE_SA));
        second.stop().await;
    });
}
