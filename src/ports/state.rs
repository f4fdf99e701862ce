//! The state port: one small document store shared by every instance and run (Firestore in
//! Cloud Run, a local directory for the command line, memory for the scenario tests).
//!
//! The engine keeps one document per project (the finding ledger, the restorations, the write
//! intents and the notification outbox), one per deny-policy attachment point (the deny-policy
//! cache) and one per delivered notification and channel (the channels' de-duplication). A document
//! body is opaque JSON to the store; every write is a compare-and-swap on the version it was read
//! at, which is the only transaction the engine needs (one project's document at a time).
//!
//! The store is a cache and a ledger: nothing read from it is ever the reason for a grant.
//!
//! [`MemoryStore`] is the reference implementation: what an engine given no store keeps (one
//! process's memory), and what scenario tests share between engines.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

/// Which set of documents a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// One document per project (key: the project id).
    Projects,
    /// One document per deny-policy attachment point (key: `organizations/N`, `folders/N`,
    /// `projects/N`).
    DenyPolicies,
    /// One document per notification delivered to a channel (key: `CHANNEL:NOTIFICATION_ID`).
    Deliveries,
}

impl Collection {
    /// Every collection.
    pub const ALL: [Self; 3] = [Self::Projects, Self::DenyPolicies, Self::Deliveries];

    /// The collection's name (a Firestore collection id, a directory name).
    pub fn name(self) -> &'static str {
        match self {
            Self::Projects => "remediator-projects",
            Self::DenyPolicies => "remediator-deny-policies",
            Self::Deliveries => "remediator-deliveries",
        }
    }
}

/// The version a document was read at: opaque to the engine (Firestore's `updateTime`, a counter
/// in the local store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(pub String);

/// A document as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The JSON body, as written.
    pub body: String,
    /// Its version (what a write must name to replace it).
    pub version: Version,
}

/// What a write says besides its body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteFlags {
    /// The document holds work for whoever runs its project next (unpublished notifications, write
    /// intents): [`StateStore::pending`] lists it.
    pub pending: bool,
}

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The document changed (or appeared) since it was read: read it again and retry.
    #[error("the stored document changed since it was read")]
    Conflict,
    /// The store cannot be reached or refused the operation (after the adapter's own retries).
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// A stored document cannot be understood (written by a newer release, or damaged).
    #[error("a stored document cannot be read: {0}")]
    Invalid(String),
}

/// Where the store keeps its documents and whether every instance sees the same ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// `firestore://projects/P/databases/D`, `file:/path`, `memory`.
    pub location: String,
    /// Shared by every instance of a deployment (Firestore); false for a local file or memory.
    pub shared: bool,
}

/// The document store.
pub trait StateStore: Send + Sync {
    /// Where it keeps its documents.
    fn info(&self) -> StoreInfo;

    /// One document, or `None` when it does not exist.
    fn get<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Stored>, StateError>>;

    /// Writes a document if it is still at `expected` (`None`: only if it does not exist yet);
    /// otherwise [`StateError::Conflict`] and nothing is written. Returns the new version.
    fn put<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
        body: &'a str,
        flags: WriteFlags,
        expected: Option<&'a Version>,
    ) -> BoxFuture<'a, Result<Version, StateError>>;

    /// Keys of the documents of a collection last written with [`WriteFlags::pending`].
    fn pending<'a>(
        &'a self,
        collection: Collection,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>>;
}

/// The state store in memory: one process's, gone with it.
#[derive(Debug)]
struct Doc {
    version: u64,
    pending: bool,
    body: String,
}

/// Documents in a map; versions count up from 1.
#[derive(Debug, Default)]
pub struct MemoryStore {
    docs: Mutex<HashMap<(Collection, String), Doc>>,
    writes: Mutex<u64>,
    shared: bool,
}

impl MemoryStore {
    /// An empty store for one engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store several engines of one process share (as instances share Firestore): it
    /// says it is shared.
    pub fn shared() -> Self {
        Self {
            shared: true,
            ..Self::default()
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<(Collection, String), Doc>) -> T) -> T {
        f(&mut self.docs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl StateStore for MemoryStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            location: "memory".to_owned(),
            shared: self.shared,
        }
    }

    fn get<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Stored>, StateError>> {
        let found = self.with(|docs| {
            docs.get(&(collection, key.to_owned())).map(|d| Stored {
                body: d.body.clone(),
                version: Version(d.version.to_string()),
            })
        });
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
        body: &'a str,
        flags: WriteFlags,
        expected: Option<&'a Version>,
    ) -> BoxFuture<'a, Result<Version, StateError>> {
        let result = {
            let mut counter = self.writes.lock().unwrap_or_else(|e| e.into_inner());
            self.with(|docs| {
                let k = (collection, key.to_owned());
                let current = docs.get(&k).map(|d| d.version.to_string());
                if current.as_deref() != expected.map(|v| v.0.as_str()) {
                    return Err(StateError::Conflict);
                }
                *counter += 1;
                let version = *counter;
                docs.insert(
                    k,
                    Doc {
                        version,
                        pending: flags.pending,
                        body: body.to_owned(),
                    },
                );
                Ok(Version(version.to_string()))
            })
        };
        Box::pin(async move { result })
    }

    fn pending<'a>(
        &'a self,
        collection: Collection,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        let mut keys: Vec<String> = self.with(|docs| {
            docs.iter()
                .filter(|((c, _), d)| *c == collection && d.pending)
                .map(|((_, k), _)| k.clone())
                .collect()
        });
        keys.sort();
        Box::pin(async move { Ok(keys) })
    }
}
