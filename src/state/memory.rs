//! The state store in memory: one process's, gone with it (scenario tests, one-shot runs).

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::ports::{Collection, StateError, StateStore, StoreInfo, Stored, Version, WriteFlags};

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
