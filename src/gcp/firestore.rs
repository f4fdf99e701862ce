//! The Firestore adapter of the state port ([`StateStore`]): one Firestore document per state
//! document, read and written over the Firestore v1 REST API through its own [`Client`] (retries,
//! rate limit and counters as for every Google API, `firestore` in `--rate-limit`). It owns the
//! wire format and the key escaping; what the documents mean is the engine's.
//!
//! Wire (Firestore v1 discovery document, `firestore.projects.databases.documents.*`):
//! - a state document is `projects/P/databases/D/documents/{collection}/{id}` with two fields,
//!   `body` (`stringValue`, the opaque JSON) and `pending` (`booleanValue`); its [`Version`] is the
//!   document's `updateTime`;
//! - `get`: `GET v1/{name}` (one request; 404 is a missing document);
//! - `put`: `POST v1/projects/P/databases/D/documents:commit` with one `update` write, an
//!   `updateMask` of `body` and `pending`, and the precondition `currentDocument.updateTime` (the
//!   version read) or `currentDocument.exists: false` (create only); one request, the new version
//!   is `writeResults[0].updateTime`. The precondition travels in the JSON body rather than in
//!   `PATCH v1/{name}?currentDocument.updateTime=`: the Firestore emulator (Cloud SDK 528) reads
//!   that query parameter as "version 0" (absent), so it refuses every update of an existing
//!   document and creates a missing one, while a commit's precondition means the same on both;
//! - `pending`: `POST v1/projects/P/databases/D/documents:runQuery` (the answer is a JSON array),
//!   `pending == true`, only `__name__` selected, ordered by name, [`PAGE_SIZE`] at a time with a
//!   `startAt` cursor after the last name (runQuery has no page token). The pages are not one
//!   snapshot: a document that turns pending while they are read may be missed, and the next
//!   listing finds it.
//!
//! Conflicts: a write whose precondition fails (400 `FAILED_PRECONDITION`, 409 `ALREADY_EXISTS` or
//! `ABORTED`, or 404 for a replaced document that is gone) is [`StateError::Conflict`], and nothing
//! was written. A write retried by the client after a lost answer may answer `Conflict` although
//! its first attempt was applied: the caller re-reads, as for any conflict, and finds it. A write
//! that changes nothing keeps the document's `updateTime` (Firestore's rule), so its version is
//! the one it was read at.
//!
//! Keys (`my-project`, `folders/123`, `slack:abc`) become document ids reversibly: ASCII letters,
//! digits and `-` stay, every other byte of the key's UTF-8 is `~XX` (two upper-case hex digits).
//! An id is then never `.` or `..`, never `__x__`, has no `/`, and needs no URL encoding (`~` is
//! unreserved, and the client refuses `%` in paths).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Call, Client, ClientConfig, Credentials};
use super::pages::{MAX_PAGES, Page, PageCap, pages};
use crate::ports::{
    Api, ApiError, Collection, StateError, StateStore, StoreInfo, Stored, Version, WriteFlags,
};

/// The documents one `runQuery` asks for when listing pending documents.
pub const PAGE_SIZE: u32 = 1000;

/// Firestore's limit on a document id, in bytes.
const MAX_ID_BYTES: usize = 1500;

/// The state store in a Firestore database (Native mode), shared by every instance.
#[derive(Debug)]
pub struct FirestoreStore {
    client: Arc<Client>,
    project: String,
    database: String,
    /// Documents per `runQuery` page ([`PAGE_SIZE`] unless a test asks for fewer).
    page_size: u32,
}

impl FirestoreStore {
    /// Reads `firestore://projects/P/databases/D` into `(P, D)`. D is `(default)` or a database id
    /// (lowercase letters, digits, hyphens).
    pub fn parse_location(location: &str) -> Result<(String, String), String> {
        let bad = || {
            format!(
                "`{location}` is not a Firestore state location: use firestore://projects/PROJECT/databases/DATABASE (DATABASE is `(default)` or lowercase letters, digits and hyphens)"
            )
        };
        let rest = location
            .trim()
            .strip_prefix("firestore://")
            .ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let ["projects", project, "databases", database] = parts.as_slice() else {
            return Err(bad());
        };
        // Project ids are lowercase letters, digits and hyphens; older domain-scoped ones
        // (`example.com:my-project`) add `.` and `:`.
        let project_ok = !project.is_empty()
            && project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
        let database_ok = *database == "(default)"
            || (!database.is_empty()
                && database
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        if !project_ok || !database_ok {
            return Err(bad());
        }
        Ok(((*project).to_owned(), (*database).to_owned()))
    }

    /// Connects to the database a location names: the emulator at `$FIRESTORE_EMULATOR_HOST` when
    /// that is set, else Google's endpoint with Application Default Credentials.
    pub fn connect(location: &str) -> Result<Arc<Self>, StateError> {
        let emulator = std::env::var("FIRESTORE_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty());
        Self::connect_to(location, emulator.as_deref()).map(Arc::new)
    }

    /// As [`Self::connect`], with the emulator's `HOST:PORT` given (`None`: Google).
    pub fn connect_to(location: &str, emulator_host: Option<&str>) -> Result<Self, StateError> {
        let (project, database) =
            Self::parse_location(location).map_err(StateError::Unavailable)?;
        let config = match emulator_host {
            // The emulator takes `Bearer owner` as a caller that security rules do not apply to.
            Some(host) => ClientConfig {
                api_endpoint: Some(format!("http://{}/", host.trim().trim_end_matches('/'))),
                credentials: Credentials::Static("owner".to_owned()),
                ..ClientConfig::default()
            },
            None => ClientConfig {
                credentials: Credentials::application_default()
                    .map_err(|e| StateError::Unavailable(format!("Firestore: {e}")))?,
                ..ClientConfig::default()
            },
        };
        let client =
            Client::new(config).map_err(|e| StateError::Unavailable(format!("Firestore: {e}")))?;
        Ok(Self::with_client(project, database, client))
    }

    /// A store on a client built elsewhere (tests; a client whose one endpoint is Firestore's).
    pub fn with_client(
        project: impl Into<String>,
        database: impl Into<String>,
        client: Arc<Client>,
    ) -> Self {
        Self {
            client,
            project: project.into(),
            database: database.into(),
            page_size: PAGE_SIZE,
        }
    }

    /// Lists pending documents `n` at a time (at least 1) instead of [`PAGE_SIZE`].
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// The client (its counters say how many requests the store made).
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    fn database_name(&self) -> String {
        format!("projects/{}/databases/{}", self.project, self.database)
    }

    /// `projects/P/databases/D/documents/{collection}/`: every document name of a collection
    /// starts with it.
    fn collection_prefix(&self, collection: Collection) -> String {
        format!("{}/documents/{}/", self.database_name(), collection.name())
    }

    fn document_name(&self, collection: Collection, key: &str) -> Result<String, StateError> {
        Ok(format!(
            "{}{}",
            self.collection_prefix(collection),
            document_id(key)?
        ))
    }

    async fn get_document(
        &self,
        collection: Collection,
        key: &str,
    ) -> Result<Option<Stored>, StateError> {
        let name = self.document_name(collection, key)?;
        let call: Call<'_, ()> = Call {
            api: Api::Firestore,
            method: "documents.get",
            permission: "datastore.entities.get",
            http_method: Method::GET,
            path: format!("v1/{name}"),
            query: Vec::new(),
            body: None,
        };
        match self.client.send::<(), RawDocument>(call).await {
            Ok(doc) => stored(doc).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(StateError::Unavailable(e.to_string())),
        }
    }

    async fn put_document(
        &self,
        collection: Collection,
        key: &str,
        body: &str,
        flags: WriteFlags,
        expected: Option<&Version>,
    ) -> Result<Version, StateError> {
        let name = self.document_name(collection, key)?;
        let (precondition, permission) = match expected {
            Some(v) => (json!({ "updateTime": v.0 }), "datastore.entities.update"),
            None => (json!({ "exists": false }), "datastore.entities.create"),
        };
        let request = json!({
            "writes": [{
                "update": {
                    "name": name,
                    "fields": {
                        "body": { "stringValue": body },
                        "pending": { "booleanValue": flags.pending },
                    },
                },
                "updateMask": { "fieldPaths": ["body", "pending"] },
                "currentDocument": precondition,
            }],
        });
        let call = Call {
            api: Api::Firestore,
            method: "documents.commit",
            permission,
            http_method: Method::POST,
            path: format!("v1/{}/documents:commit", self.database_name()),
            query: Vec::new(),
            body: Some(&request),
        };
        let answer: RawCommit = self
            .client
            .send(call)
            .await
            .map_err(|e| write_error(e, expected.is_some()))?;
        answer
            .write_results
            .into_iter()
            .next()
            .and_then(|w| w.update_time)
            .map(Version)
            .ok_or_else(|| {
                StateError::Unavailable(format!(
                    "Firestore documents.commit of {name}: the answer has no updateTime"
                ))
            })
    }

    async fn pending_keys(&self, collection: Collection) -> Result<Vec<String>, StateError> {
        let prefix = &self.collection_prefix(collection);
        let page_size = self.page_size;
        const METHOD: &str = "documents.runQuery";
        let listed = pages(Api::Firestore, METHOD, PageCap::Fail(MAX_PAGES), |after| {
            let mut query = json!({
                "from": [{ "collectionId": collection.name() }],
                "where": { "fieldFilter": {
                    "field": { "fieldPath": "pending" },
                    "op": "EQUAL",
                    "value": { "booleanValue": true },
                } },
                "select": { "fields": [{ "fieldPath": "__name__" }] },
                "orderBy": [{ "field": { "fieldPath": "__name__" }, "direction": "ASCENDING" }],
                "limit": page_size,
            });
            if let Some(last) = after {
                // `before: false`: the page starts just after the last name of the previous one.
                query["startAt"] =
                    json!({ "values": [{ "referenceValue": last }], "before": false });
            }
            async move {
                let request = json!({ "structuredQuery": query });
                let call = Call {
                    api: Api::Firestore,
                    method: METHOD,
                    permission: "datastore.entities.list",
                    http_method: Method::POST,
                    path: format!("v1/{}/documents:runQuery", self.database_name()),
                    query: Vec::new(),
                    body: Some(&request),
                };
                let answers: Vec<RawQueryAnswer> = self.client.send(call).await?;
                // An answer without a document only reports progress (or an empty result).
                let names: Vec<String> = answers
                    .into_iter()
                    .filter_map(|a| a.document.map(|d| d.name))
                    .collect();
                // runQuery has no page token: a full page may have more after its last name.
                let next = match names.len() < page_size as usize {
                    true => None,
                    false => names.last().cloned(),
                };
                let keys = names
                    .iter()
                    .filter_map(|name| match name.strip_prefix(prefix.as_str()).and_then(key_of) {
                        Some(key) => Some(key),
                        // Not a document this adapter wrote (someone else's id in our
                        // collection): not a key the engine could ask for.
                        None => {
                            tracing::warn!(
                                document = %name,
                                "a pending state document whose id this store did not write is left out"
                            );
                            None
                        }
                    })
                    .collect();
                Ok(Page { items: keys, next })
            }
        })
        .await;
        listed.map_err(|e| StateError::Unavailable(e.to_string()))
    }
}

impl StateStore for FirestoreStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            location: format!("firestore://{}", self.database_name()),
            shared: true,
        }
    }

    fn get<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Stored>, StateError>> {
        self.get_document(collection, key).boxed()
    }

    fn put<'a>(
        &'a self,
        collection: Collection,
        key: &'a str,
        body: &'a str,
        flags: WriteFlags,
        expected: Option<&'a Version>,
    ) -> BoxFuture<'a, Result<Version, StateError>> {
        self.put_document(collection, key, body, flags, expected)
            .boxed()
    }

    fn pending<'a>(
        &'a self,
        collection: Collection,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        self.pending_keys(collection).boxed()
    }
}

/// A failed commit: [`StateError::Conflict`] when its precondition did not hold.
fn write_error(e: ApiError, replacing: bool) -> StateError {
    let conflict = match &e {
        // ALREADY_EXISTS (a create whose document appeared) or ABORTED (contention).
        ApiError::Status { code: 409, .. } => true,
        // The document is no longer at the version read (or, on Firestore, is gone).
        ApiError::Status {
            code: 400, status, ..
        } => replacing && status == "FAILED_PRECONDITION",
        ApiError::Status { code: 404, .. } => replacing,
        _ => false,
    };
    if conflict {
        StateError::Conflict
    } else {
        StateError::Unavailable(e.to_string())
    }
}

/// The document id of a key (see the module docs).
pub fn document_id(key: &str) -> Result<String, StateError> {
    if key.is_empty() {
        return Err(StateError::Invalid("an empty state key".to_owned()));
    }
    let mut id = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("~{b:02X}"));
        }
    }
    if id.len() > MAX_ID_BYTES {
        return Err(StateError::Invalid(format!(
            "the state key `{}...` is too long for a Firestore document id ({} bytes escaped, at most {MAX_ID_BYTES})",
            key.chars().take(40).collect::<String>(),
            id.len()
        )));
    }
    Ok(id)
}

/// The key a document id was made from, if [`document_id`] made it.
pub fn key_of(id: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(id.len());
    let mut rest = id.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'~' => {
                let hex = tail.get(..2)?;
                if !hex
                    .iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
                {
                    return None;
                }
                let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                // Only bytes the escaping escapes: one id per key.
                if byte.is_ascii_alphanumeric() || byte == b'-' {
                    return None;
                }
                bytes.push(byte);
                rest = &tail[2..];
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                bytes.push(b);
                rest = tail;
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok().filter(|k| !k.is_empty())
}

fn stored(doc: RawDocument) -> Result<Stored, StateError> {
    let body = doc
        .fields
        .get("body")
        .and_then(|v| v.get("stringValue"))
        .and_then(Value::as_str)
        .ok_or_else(|| StateError::Invalid(format!("{}: no string field `body`", doc.name)))?;
    let version = doc
        .update_time
        .ok_or_else(|| StateError::Invalid(format!("{}: no updateTime", doc.name)))?;
    Ok(Stored {
        body: body.to_owned(),
        version: Version(version),
    })
}

/// A Firestore `Document` (only what the store reads).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    #[serde(default)]
    name: String,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
    #[serde(default)]
    update_time: Option<String>,
}

/// A `CommitResponse`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCommit {
    #[serde(default)]
    write_results: Vec<RawWriteResult>,
}

/// A `WriteResult`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWriteResult {
    #[serde(default)]
    update_time: Option<String>,
}

/// One element of a `runQuery` answer (a `RunQueryResponse`).
#[derive(Deserialize)]
struct RawQueryAnswer {
    #[serde(default)]
    document: Option<RawName>,
}

/// A document of a query that selected only `__name__`.
#[derive(Deserialize)]
struct RawName {
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_names_a_project_and_a_database() {
        assert_eq!(
            FirestoreStore::parse_location("firestore://projects/p-1/databases/(default)"),
            Ok(("p-1".to_owned(), "(default)".to_owned()))
        );
        assert_eq!(
            FirestoreStore::parse_location("firestore://projects/example.com:p/databases/state-1"),
            Ok(("example.com:p".to_owned(), "state-1".to_owned()))
        );
        for bad in [
            "",
            "firestore://projects/p",
            "firestore://projects/p/databases/",
            "firestore://projects//databases/d",
            "firestore://projects/p/databases/d/documents",
            "firestore://projects/p/databases/(other)",
            "firestore://projects/P/databases/d",
            "firestore://projects/p/databases/d?x=1",
            "file:/tmp/x",
            "projects/p/databases/d",
        ] {
            let err = FirestoreStore::parse_location(bad).unwrap_err();
            assert!(err.contains("firestore://projects/PROJECT"), "{bad}: {err}");
        }
    }

    #[test]
    fn keys_with_slashes_colons_and_any_text_become_valid_ids_and_come_back() {
        for key in [
            "shop-prod",
            "folders/123",
            "organizations/1",
            "slack:abc",
            "email:ops@example.com",
            ".",
            "..",
            "__x__",
            "~7E",
            "a b/c?d#e%f",
            "é✓",
        ] {
            let id = document_id(key).unwrap();
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-~".contains(c)),
                "{key} -> {id}"
            );
            assert!(id != "." && id != ".." && !id.starts_with("__"), "{id}");
            assert_eq!(key_of(&id).as_deref(), Some(key), "{id}");
        }
        assert_eq!(document_id("folders/123").unwrap(), "folders~2F123");
        assert_eq!(document_id("slack:abc").unwrap(), "slack~3Aabc");
    }

    #[test]
    fn ids_the_store_did_not_make_are_not_keys() {
        for id in ["a_b", "a.b", "~2f", "~41", "~", "~2", "", "~FF"] {
            assert_eq!(key_of(id), None, "{id}");
        }
    }

    #[test]
    fn empty_and_overlong_keys_are_refused() {
        assert!(matches!(document_id(""), Err(StateError::Invalid(_))));
        assert!(document_id(&"a".repeat(1500)).is_ok());
        assert!(matches!(
            document_id(&"/".repeat(501)),
            Err(StateError::Invalid(_))
        ));
    }

    #[test]
    fn a_failed_precondition_is_a_conflict_and_anything_else_is_unavailable() {
        let status = |code: u16, status: &str| ApiError::Status {
            api: Api::Firestore,
            method: "documents.commit",
            code,
            status: status.to_owned(),
            message: "m".to_owned(),
            permission: None,
            reason: None,
        };
        let conflict = |e, replacing| write_error(e, replacing) == StateError::Conflict;
        assert!(conflict(status(400, "FAILED_PRECONDITION"), true));
        assert!(conflict(status(404, "NOT_FOUND"), true));
        assert!(conflict(status(409, "ABORTED"), true));
        assert!(conflict(status(409, "ALREADY_EXISTS"), false));
        // A create that finds no database, or a refused request, is not something to re-read for.
        assert!(!conflict(status(404, "NOT_FOUND"), false));
        assert!(!conflict(status(400, "FAILED_PRECONDITION"), false));
        assert!(!conflict(status(400, "INVALID_ARGUMENT"), true));
        assert!(!conflict(status(403, "PERMISSION_DENIED"), true));
        assert!(!conflict(status(503, "UNAVAILABLE"), true));
    }
}
