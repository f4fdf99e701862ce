//! The state store in a local directory: one JSON file per document, for `scan`, `explain`,
//! `demo` and local runs. Every operation holds an exclusive lock on the directory's lock file, so
//! several processes on one machine share it safely; a write goes to a temporary file that is then
//! renamed over the document, so a crash never leaves half a document.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::ports::{Collection, StateError, StateStore, StoreInfo, Stored, Version, WriteFlags};

/// What one document's file holds.
#[derive(Debug, Serialize, Deserialize)]
struct DocFile {
    version: u64,
    pending: bool,
    body: String,
}

/// Documents as files under a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: Arc<PathBuf>,
}

impl FileStore {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Self, String> {
        for c in Collection::ALL {
            fs::create_dir_all(dir.join(c.name()))
                .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        }
        Ok(Self {
            dir: Arc::new(dir.to_path_buf()),
        })
    }

    fn path(&self, collection: Collection, key: &str) -> PathBuf {
        self.dir
            .join(collection.name())
            .join(format!("{}.json", escape(key)))
    }

    /// Runs `f` holding the directory's lock, off the async threads.
    async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FileStore) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let lock = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(store.dir.join(".lock"))
                .map_err(unavailable)?;
            lock.lock().map_err(unavailable)?;
            let out = f(&store);
            let _ = lock.unlock();
            out
        })
        .await
        .map_err(|e| StateError::Unavailable(format!("the state store's task failed: {e}")))?
    }

    fn read(&self, collection: Collection, key: &str) -> Result<Option<DocFile>, StateError> {
        match fs::read(self.path(collection, key)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Invalid(format!("{collection:?}/{key}: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unavailable(e: std::io::Error) -> StateError {
    StateError::Unavailable(e.to_string())
}

/// A key as a file name: letters, digits, `-`, `_` and `.` kept, everything else `%XX`.
fn escape(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl StateStore for FileStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            location: format!("file:{}", self.dir.display()),
            shared: false,
        }
    }

    fn get<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Stored>, StateError>> {
        let key = key.to_owned();
        Box::pin(self.locked(move |s| {
            Ok(s.read(collection, &key)?.map(|d| Stored {
                body: d.body,
                version: Version(d.version.to_string()),
            }))
        }))
    }

    fn put<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
        body: &'a str,
        flags: WriteFlags,
        expected: Option<&'a Version>,
    ) -> BoxFuture<'a, Result<Version, StateError>> {
        let (key, body, expected) = (key.to_owned(), body.to_owned(), expected.cloned());
        Box::pin(self.locked(move |s| {
            let current = s.read(collection, &key)?;
            if current.as_ref().map(|d| d.version.to_string()) != expected.map(|v| v.0) {
                return Err(StateError::Conflict);
            }
            let version = current.map_or(1, |d| d.version + 1);
            let doc = DocFile {
                version,
                pending: flags.pending,
                body,
            };
            let path = s.path(collection, &key);
            let tmp = path.with_extension("json.tmp");
            let mut f = fs::File::create(&tmp).map_err(unavailable)?;
            f.write_all(&serde_json::to_vec(&doc).map_err(|e| StateError::Invalid(e.to_string()))?)
                .map_err(unavailable)?;
            f.sync_all().map_err(unavailable)?;
            fs::rename(&tmp, &path).map_err(unavailable)?;
            Ok(Version(version.to_string()))
        }))
    }

    fn pending<'a>(
        &'a self,
        collection: Collection,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(self.locked(move |s| {
            let mut keys = Vec::new();
            for entry in fs::read_dir(s.dir.join(collection.name())).map_err(unavailable)? {
                let entry = entry.map_err(unavailable)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".json") else {
                    continue;
                };
                let Some(key) = unescape(stem) else { continue };
                if s.read(collection, &key)?.is_some_and(|d| d.pending) {
                    keys.push(key);
                }
            }
            keys.sort();
            Ok(keys)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{escape, unescape};

    #[test]
    fn a_key_becomes_a_file_name_and_back() {
        for key in ["my-project", "folders/123", "slack:ab12", "..", "a%b", "é"] {
            let name = escape(key);
            assert!(
                !name.contains('/') && name != ".." && !name.starts_with('.'),
                "{name}"
            );
            assert_eq!(unescape(&name).as_deref(), Some(key));
        }
    }
}
