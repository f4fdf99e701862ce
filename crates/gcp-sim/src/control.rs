//! The `/_sim/` control endpoints (cannot collide with Google paths): reset and load worlds, dump the
//! current world, faults, the concurrent writer, the journal and stats. Answers plain JSON; errors use
//! Google's error JSON shape.
//!
//! | method + path | body / answer |
//! |---|---|
//! | `POST /_sim/reset` | back to the last loaded world → `{"ok":true}` |
//! | `PUT /_sim/world` | YAML or JSON world → `{"ok":true,"projects":N}`; bad world → 400 with file/line/field |
//! | `GET /_sim/world` | current state as a world (JSON) |
//! | `PUT /_sim/faults` / `GET /_sim/faults` | [`Faults`] JSON |
//! | `PUT /_sim/concurrent-writer` | [`ConcurrentWriter`] JSON; `DELETE` clears it |
//! | `GET /_sim/concurrent-writer` | `{"writer":{..}|null,"added":["user:writer-1@example.com",..]}` |
//! | `GET /_sim/journal` / `DELETE /_sim/journal` | `{"entries":[JournalEntry..]}` |
//! | `GET /_sim/stats` / `DELETE /_sim/stats` | `{"total":N,"by_endpoint":{..}}` |
//! | `POST /_sim/flush-audit-logs` | waits until queued audit-log entries are published |
//! | `PUT /_sim/operations` / `GET /_sim/operations` | `{"polls_until_done":N}`: new long-running operations are done after N `operations.get` calls (0: at once) |

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::error::ApiError;
use super::faults::{ConcurrentWriter, Faults};
use super::server::{Shared, lock, set_faults, set_writer};
use super::state::State;
use super::world::World;

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(body: Value) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, &body)
}

fn err(e: ApiError) -> Response<Full<Bytes>> {
    respond(e.http_status(), &e.to_json())
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ApiError::invalid(format!("invalid body at `{}`: {}", e.path(), e.inner())))
}

/// Body of `PUT /_sim/operations`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationsConfig {
    polls_until_done: u32,
}

/// Replaces the world (and the live state) with a new one.
pub fn load_world(shared: &Shared, world: World) {
    let state = State::from_world(&world);
    *lock(&shared.state) = state;
    *lock(&shared.world) = world;
}

/// Serves one control request (`path` is what follows `/_sim/`).
pub async fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    _query: &str,
    body: &Bytes,
) -> Response<Full<Bytes>> {
    match (method.as_str(), path) {
        ("POST", "reset") => {
            let world = lock(&shared.world).clone();
            load_world(shared, world);
            ok(json!({"ok": true}))
        }
        ("PUT", "world") => {
            let text = String::from_utf8_lossy(body);
            match World::from_yaml(&text, "request body") {
                Ok(world) => {
                    let n = world.projects.len();
                    load_world(shared, world);
                    ok(json!({"ok": true, "projects": n}))
                }
                Err(e) => err(ApiError::invalid(e.to_string())),
            }
        }
        ("GET", "world") => {
            let world = lock(&shared.state).to_world();
            ok(serde_json::to_value(world).unwrap_or(Value::Null))
        }
        ("PUT", "faults") => match parse::<Faults>(body) {
            Ok(f) => {
                set_faults(shared, f);
                ok(json!({"ok": true}))
            }
            Err(e) => err(e),
        },
        ("GET", "faults") => {
            ok(serde_json::to_value(&lock(&shared.faults).faults).unwrap_or(Value::Null))
        }
        ("PUT", "concurrent-writer") => match parse::<ConcurrentWriter>(body) {
            Ok(w) => {
                set_writer(shared, Some(w));
                ok(json!({"ok": true}))
            }
            Err(e) => err(e),
        },
        ("DELETE", "concurrent-writer") => {
            set_writer(shared, None);
            ok(json!({"ok": true}))
        }
        ("GET", "concurrent-writer") => {
            let f = lock(&shared.faults);
            ok(json!({"writer": f.writer, "added": f.writer_added}))
        }
        ("GET", "journal") => ok(json!({"entries": lock(&shared.journal).entries()})),
        ("DELETE", "journal") => {
            lock(&shared.journal).clear();
            ok(json!({"ok": true}))
        }
        ("GET", "stats") => {
            ok(serde_json::to_value(lock(&shared.journal).stats()).unwrap_or(Value::Null))
        }
        ("DELETE", "stats") => {
            lock(&shared.journal).reset_stats();
            ok(json!({"ok": true}))
        }
        ("PUT", "operations") => match parse::<OperationsConfig>(body) {
            Ok(o) => {
                lock(&shared.state).operation_polls = o.polls_until_done;
                ok(json!({"ok": true}))
            }
            Err(e) => err(e),
        },
        ("GET", "operations") => {
            ok(json!({"polls_until_done": lock(&shared.state).operation_polls}))
        }
        ("POST", "flush-audit-logs") => {
            shared.audit.flush().await;
            ok(json!({"ok": true}))
        }
        _ => err(ApiError::not_found(format!(
            "No simulator control endpoint {method} /_sim/{path}."
        ))),
    }
}
