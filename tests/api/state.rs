//! The state port's contract, written once ([`the_state_contract`]) and kept by every adapter:
//! Firestore (against the official emulator), the local directory and memory. Then what only
//! Firestore has: its wire (one request per read and per write, pending listed in pages, the ids
//! its keys become) and its failures.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gke_iam_remediator::gcp::{Client, ClientConfig, Credentials, FirestoreStore};
use gke_iam_remediator::ports::{
    Collection, RetryPolicy, StateError, StateStore, Stored, Version, WriteFlags,
};
use gke_iam_remediator::state::{FileStore, MemoryStore};
use serde_json::{Value, json};

use crate::support::firestore::{self, FirestoreEmulator};
use crate::support::{RefusedPort, TempDir};

const PENDING: WriteFlags = WriteFlags { pending: true };
const DONE: WriteFlags = WriteFlags { pending: false };

/// Every test here ends within two minutes, emulator start included.
async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("the test finished within 120 s")
}

/// Runs contract cases one after another on one store, each named on stderr first (shown with a
/// failure: which store and which case).
macro_rules! cases {
    ($store:expr, $($case:ident),+ $(,)?) => {
        $(
            eprintln!("state contract on {}: {}", $store.info().location, stringify!($case));
            $case($store.clone()).await;
        )+
    };
}

/// The contract every [`StateStore`] keeps, run on one store that starts empty (each case uses
/// keys of its own; only the pending case writes pending documents).
async fn the_state_contract(store: Arc<dyn StateStore>) {
    cases!(
        store,
        a_missing_document_reads_as_none,
        a_create_succeeds_once_and_a_second_create_conflicts,
        an_update_at_the_version_read_succeeds_with_a_new_version,
        an_update_at_a_stale_version_conflicts_and_changes_nothing,
        two_concurrent_increment_loops_lose_no_increment,
        pending_lists_exactly_the_documents_last_written_pending,
        bodies_keep_unicode_quotes_and_escapes_byte_for_byte,
    );
}

async fn read(store: &Arc<dyn StateStore>, collection: Collection, key: &str) -> Option<Stored> {
    store
        .get(collection, key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
}

async fn a_missing_document_reads_as_none(store: Arc<dyn StateStore>) {
    for collection in Collection::ALL {
        assert_eq!(read(&store, collection, "never-written").await, None);
    }
    assert_eq!(
        read(&store, Collection::DenyPolicies, "folders/404").await,
        None
    );
}

async fn a_create_succeeds_once_and_a_second_create_conflicts(store: Arc<dyn StateStore>) {
    let key = "create-once";
    let v1 = store
        .put(Collection::Projects, key, r#"{"n":1}"#, DONE, None)
        .await
        .expect("the first create succeeds");
    let second = store
        .put(Collection::Projects, key, r#"{"n":2}"#, DONE, None)
        .await;
    assert_eq!(second, Err(StateError::Conflict));
    assert_eq!(
        read(&store, Collection::Projects, key).await,
        Some(Stored {
            body: r#"{"n":1}"#.to_owned(),
            version: v1
        }),
        "the second create wrote nothing"
    );
    // The same key in another collection is another document.
    store
        .put(Collection::Deliveries, key, r#"{"n":3}"#, DONE, None)
        .await
        .expect("a create in another collection");
}

async fn an_update_at_the_version_read_succeeds_with_a_new_version(store: Arc<dyn StateStore>) {
    let key = "update-at-read";
    store
        .put(Collection::Projects, key, r#"{"n":1}"#, DONE, None)
        .await
        .expect("create");
    let read1 = read(&store, Collection::Projects, key).await.expect("read");
    let v2 = store
        .put(
            Collection::Projects,
            key,
            r#"{"n":2}"#,
            DONE,
            Some(&read1.version),
        )
        .await
        .expect("an update at the version read succeeds");
    assert_ne!(v2, read1.version, "a changed document has a new version");
    let read2 = read(&store, Collection::Projects, key).await.expect("read");
    assert_eq!(read2.body, r#"{"n":2}"#);
    assert_eq!(read2.version, v2, "put returns the version a read sees");
    // And the new version is the one to write at next.
    store
        .put(Collection::Projects, key, r#"{"n":3}"#, DONE, Some(&v2))
        .await
        .expect("an update at the returned version succeeds");
}

async fn an_update_at_a_stale_version_conflicts_and_changes_nothing(store: Arc<dyn StateStore>) {
    let key = "stale-update";
    let v1 = store
        .put(Collection::Projects, key, r#"{"n":1}"#, DONE, None)
        .await
        .expect("create");
    let v2 = store
        .put(Collection::Projects, key, r#"{"n":2}"#, DONE, Some(&v1))
        .await
        .expect("update");
    let stale = store
        .put(Collection::Projects, key, r#"{"n":99}"#, PENDING, Some(&v1))
        .await;
    assert_eq!(stale, Err(StateError::Conflict));
    assert_eq!(
        read(&store, Collection::Projects, key).await,
        Some(Stored {
            body: r#"{"n":2}"#.to_owned(),
            version: v2
        }),
        "a conflicting write leaves body and version as they were"
    );
    assert!(
        !store
            .pending(Collection::Projects)
            .await
            .expect("pending")
            .contains(&key.to_owned()),
        "nor its pending flag"
    );
}

/// Reads, adds one and writes at the version read, again after every conflict; how many
/// conflicts it met.
async fn increment(store: &Arc<dyn StateStore>, key: &str) -> u32 {
    let mut conflicts = 0;
    loop {
        let current = read(store, Collection::Projects, key).await;
        let n = current.as_ref().map_or(0, |s| {
            serde_json::from_str::<Value>(&s.body).expect("a counter")["n"]
                .as_u64()
                .expect("n")
        });
        let body = json!({ "n": n + 1 }).to_string();
        let version = current.as_ref().map(|s| &s.version);
        match store
            .put(Collection::Projects, key, &body, DONE, version)
            .await
        {
            Ok(_) => return conflicts,
            Err(StateError::Conflict) => {
                conflicts += 1;
                assert!(conflicts < 1000, "an increment that never gets through");
            }
            Err(e) => panic!("increment: {e}"),
        }
    }
}

async fn two_concurrent_increment_loops_lose_no_increment(store: Arc<dyn StateStore>) {
    let key = "counter";
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..20 {
                    conflicts += increment(&store, key).await;
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for l in loops {
        conflicts += l.await.expect("an increment loop");
    }
    let last = read(&store, Collection::Projects, key)
        .await
        .expect("the counter");
    let n: Value = serde_json::from_str(&last.body).expect("a counter");
    assert_eq!(
        n["n"], 40,
        "40 increments, none lost ({conflicts} conflicts retried)"
    );
}

async fn pending_lists_exactly_the_documents_last_written_pending(store: Arc<dyn StateStore>) {
    let put = |collection, key: &'static str, flags, expected: Option<Version>| {
        let store = store.clone();
        async move {
            store
                .put(collection, key, "{}", flags, expected.as_ref())
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e}"))
        }
    };
    let deny = Collection::DenyPolicies;
    put(deny, "folders/123", PENDING, None).await;
    put(deny, "organizations/1", DONE, None).await;
    let v = put(deny, "projects/9", PENDING, None).await;
    put(deny, "projects/9", DONE, Some(v)).await;
    let v = put(deny, "folders/7", DONE, None).await;
    put(deny, "folders/7", PENDING, Some(v)).await;
    let deliveries = Collection::Deliveries;
    put(deliveries, "slack:abc", PENDING, None).await;
    put(deliveries, "email:ops@example.com", DONE, None).await;
    put(deliveries, "webhook:a/b:c", PENDING, None).await;

    let pending = |collection| {
        let store = store.clone();
        async move {
            store
                .pending(collection)
                .await
                .expect("pending")
                .into_iter()
                .collect::<BTreeSet<String>>()
        }
    };
    let set = |keys: &[&str]| {
        keys.iter()
            .map(|k| (*k).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(pending(deny).await, set(&["folders/123", "folders/7"]));
    assert_eq!(
        pending(deliveries).await,
        set(&["slack:abc", "webhook:a/b:c"])
    );
    // The other cases only ever wrote their documents not pending.
    assert_eq!(pending(Collection::Projects).await, set(&[]));
}

async fn bodies_keep_unicode_quotes_and_escapes_byte_for_byte(store: Arc<dyn StateStore>) {
    let body = "{\"note\":\"h\u{e9}llo \\\"w\u{f6}rld\\\" \u{2713} \u{1f980} \\\\ \\n \\u0000 '\",\"n\":[1,2.5,-3e7],\"empty\":\"\"}";
    serde_json::from_str::<Value>(body).expect("the body is JSON");
    store
        .put(Collection::Projects, "unicode", body, DONE, None)
        .await
        .expect("create");
    let back = read(&store, Collection::Projects, "unicode")
        .await
        .expect("read");
    assert_eq!(back.body, body);
}

#[test]
fn the_firestore_store_keeps_the_state_contract_against_the_emulator() {
    firestore::run(bounded(async {
        let emulator = FirestoreEmulator::shared().await;
        let store = emulator.store(1000);
        let info = store.info();
        assert!(info.shared, "every instance sees the same Firestore");
        assert!(
            info.location
                .starts_with("firestore://projects/demo-state-")
                && info.location.ends_with("/databases/(default)"),
            "{}",
            info.location
        );
        the_state_contract(store).await;
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keeps_the_state_contract() {
    bounded(the_state_contract(Arc::new(MemoryStore::new()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_keeps_the_state_contract() {
    let dir = TempDir::new("state-contract");
    let store = FileStore::open(dir.path()).expect("a file store in a fresh directory");
    bounded(the_state_contract(Arc::new(store))).await;
}

/// Firestore requests the store's client sent so far, not counting its retries of transient
/// failures (a round trip is a request's first attempt).
fn requests(store: &FirestoreStore) -> u64 {
    let counts = store.client().counts();
    counts.by_api.get("firestore").copied().unwrap_or(0) - counts.retries
}

#[test]
fn a_firestore_read_and_a_write_are_one_request_each_and_pending_is_listed_in_pages() {
    firestore::run(bounded(async {
        let emulator = FirestoreEmulator::shared().await;
        let store = emulator.store(2);
        let c = Collection::Deliveries;

        let before = requests(&store);
        assert_eq!(store.get(c, "slack:0").await, Ok(None));
        assert_eq!(requests(&store) - before, 1, "a missing read");
        let before = requests(&store);
        let v = store.put(c, "slack:0", "{}", DONE, None).await.unwrap();
        assert_eq!(requests(&store) - before, 1, "a create");
        let before = requests(&store);
        let read = store.get(c, "slack:0").await.unwrap().unwrap();
        assert_eq!(read.version, v);
        assert_eq!(requests(&store) - before, 1, "a read");
        let before = requests(&store);
        store
            .put(c, "slack:0", r#"{"a":1}"#, PENDING, Some(&v))
            .await
            .unwrap();
        assert_eq!(requests(&store) - before, 1, "an update");
        let before = requests(&store);
        assert_eq!(
            store.put(c, "slack:0", "{}", DONE, Some(&v)).await,
            Err(StateError::Conflict)
        );
        assert_eq!(requests(&store) - before, 1, "a conflict is not retried");

        // Five pending (one written above) and two not, listed two at a time: three pages, the
        // last one short.
        for i in 1..5 {
            store
                .put(c, &format!("slack:{i}"), "{}", PENDING, None)
                .await
                .unwrap();
        }
        for i in 5..7 {
            store
                .put(c, &format!("slack:{i}"), "{}", DONE, None)
                .await
                .unwrap();
        }
        let before = requests(&store);
        let mut pending = store.pending(c).await.unwrap();
        pending.sort();
        assert_eq!(
            pending,
            ["slack:0", "slack:1", "slack:2", "slack:3", "slack:4"]
        );
        assert_eq!(requests(&store) - before, 3, "pages of 2, 2 and 1");
        // A full last page costs one more, empty, query.
        store.put(c, "slack:9", "{}", PENDING, None).await.unwrap();
        let before = requests(&store);
        assert_eq!(store.pending(c).await.unwrap().len(), 6);
        assert_eq!(requests(&store) - before, 4, "pages of 2, 2, 2 and 0");
    }));
}

#[test]
fn keys_firestore_could_not_take_as_ids_are_stored_under_escaped_ids_and_come_back() {
    firestore::run(bounded(async {
        let emulator = FirestoreEmulator::shared().await;
        let store = emulator.store(1000);
        let keys = [
            "folders/123",
            "slack:abc",
            ".",
            "..",
            "__name__",
            "~2F",
            "a b?c#d%e&f",
            "\u{e9}t\u{e9}/\u{2713}",
        ];
        for key in keys {
            store
                .put(Collection::DenyPolicies, key, key, PENDING, None)
                .await
                .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
        }
        for key in keys {
            let back = store
                .get(Collection::DenyPolicies, key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{key:?} reads back"));
            assert_eq!(back.body, key);
        }
        let mut pending = store.pending(Collection::DenyPolicies).await.unwrap();
        pending.sort();
        let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        expected.sort();
        assert_eq!(pending, expected);

        // On the wire: the document Google would show, under its escaped id.
        let project = store
            .info()
            .location
            .trim_start_matches("firestore://projects/")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let url = format!(
            "http://{}/v1/projects/{project}/databases/(default)/documents/remediator-deny-policies/folders~2F123",
            emulator.host
        );
        let doc: Value = reqwest::Client::new()
            .get(url)
            .bearer_auth("owner")
            .send()
            .await
            .expect("the emulator answers")
            .json()
            .await
            .expect("a document");
        assert_eq!(doc["fields"]["body"]["stringValue"], "folders/123");
        assert_eq!(doc["fields"]["pending"]["booleanValue"], true);
    }));
}

#[tokio::test]
async fn a_firestore_that_cannot_be_reached_is_unavailable_never_empty_or_a_conflict() {
    bounded(async {
        // A port nothing listens on, and no retries: the answer is the first failure's.
        let refused = RefusedPort::new();
        let client = Client::new(ClientConfig {
            api_endpoint: Some(format!("{}/", refused.url())),
            credentials: Credentials::Static("owner".to_owned()),
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..ClientConfig::default()
        })
        .expect("client");
        let store = FirestoreStore::with_client("demo-state-down", "(default)", client);
        let started = Instant::now();
        let c = Collection::Projects;
        assert!(matches!(
            store.get(c, "p").await,
            Err(StateError::Unavailable(_))
        ));
        assert!(matches!(
            store.put(c, "p", "{}", DONE, None).await,
            Err(StateError::Unavailable(_))
        ));
        assert!(matches!(
            store
                .put(c, "p", "{}", DONE, Some(&Version("x".to_owned())))
                .await,
            Err(StateError::Unavailable(_))
        ));
        assert!(matches!(
            store.pending(c).await,
            Err(StateError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    })
    .await;
}

#[test]
fn a_key_firestore_cannot_hold_is_refused_before_anything_is_sent() {
    firestore::run(bounded(async {
        let emulator = FirestoreEmulator::shared().await;
        let store = emulator.store(1000);
        let c = Collection::Projects;
        assert!(matches!(
            store.get(c, "").await,
            Err(StateError::Invalid(_))
        ));
        let long = "/".repeat(600);
        assert!(matches!(
            store.put(c, &long, "{}", DONE, None).await,
            Err(StateError::Invalid(_))
        ));
        assert_eq!(requests(&store), 0);
    }));
}

#[test]
fn connecting_reads_the_location_and_refuses_anything_else() {
    let store = FirestoreStore::connect_to(
        "firestore://projects/p/databases/remediator-state",
        Some("127.0.0.1:1"),
    )
    .expect("an emulator location");
    assert_eq!(
        store.info().location,
        "firestore://projects/p/databases/remediator-state"
    );
    match FirestoreStore::connect_to("firestore://p/remediator", Some("127.0.0.1:1")) {
        Err(StateError::Unavailable(e)) => {
            assert!(
                e.contains("firestore://projects/PROJECT/databases/DATABASE"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
}
