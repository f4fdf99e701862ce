//! The official Firestore emulator for the state-store tests: one per test process, started by the
//! first test that asks (about 2 s), each test in a project of its own (`demo-state-N`) so tests
//! never see each other's documents. A missing emulator fails loudly (tests are never skipped).
//!
//! Tests of the shared emulator run on one shared runtime ([`run`]): the service's HTTP client pools
//! connections process-wide, and a connection to the emulator opened on one test's runtime would
//! be dead ("runtime dropped the dispatch task") for the next test once the first one's runtime is
//! gone.
//!
//! The emulator is started by [`Emulator::start`] (a port of its own, a watchdog that ends it with
//! the test process).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use gke_iam_remediator::gcp::FirestoreStore;

use super::emulator::{Emulator, EmulatorKind};

/// The Firestore emulator: `start --host --port`.
const FIRESTORE: EmulatorKind = EmulatorKind {
    name: "Firestore",
    bin: "platform/cloud-firestore-emulator/cloud_firestore_emulator",
    component: "google-cloud-cli-firestore-emulator",
    scratch: false,
    args: |port, _| {
        vec![
            "start".to_owned(),
            "--host=127.0.0.1".to_owned(),
            format!("--port={port}"),
        ]
    },
};

/// Runs a test of the shared emulator on the runtime all of them share (two workers, never
/// dropped), blocking the test's thread until it ends.
pub fn run<F: Future>(test: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the Firestore tests")
        })
        .block_on(test)
}

/// The official Firestore emulator, ended on drop (or with the test process).
pub struct FirestoreEmulator {
    emulator: Emulator,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl FirestoreEmulator {
    /// The emulator this test process shares, started on first use (from inside [`run`] only).
    pub async fn shared() -> &'static FirestoreEmulator {
        static SHARED: tokio::sync::OnceCell<FirestoreEmulator> =
            tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// Starts an emulator of its own and waits (at most 60 s) until it answers.
    pub async fn start() -> FirestoreEmulator {
        let emulator = Emulator::start(&FIRESTORE).await;
        FirestoreEmulator {
            host: emulator.host.clone(),
            emulator,
        }
    }

    /// A store on this emulator in a project no other test uses, connected as the service connects
    /// (`FIRESTORE_EMULATOR_HOST`), listing pending documents `page_size` at a time.
    pub fn store(&self, page_size: u32) -> Arc<FirestoreStore> {
        static N: AtomicU64 = AtomicU64::new(0);
        let project = format!("demo-state-{}", N.fetch_add(1, Ordering::SeqCst));
        let location = format!("firestore://projects/{project}/databases/(default)");
        let store = FirestoreStore::connect_to(&location, Some(&self.host))
            .unwrap_or_else(|e| panic!("a store on the emulator: {e}"));
        Arc::new(store.with_page_size(page_size))
    }
}
