//! The module graph, drawn from the code's own imports: imports run one way (`main -> app ->
//! {server, commands} -> engine -> {ports, intake, policy, notify} -> domain`, adapters implement the
//! ports), with no cycles. Every `crate::MODULE` path outside comments counts, test code included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import. Anything not listed is a violation.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &["clock"]),
    ("clock", &[]),
    ("telemetry", &[]),
    ("http", &[]),
    ("bounded", &[]),
    ("intake", &["domain"]),
    ("notify", &["domain", "intake", "clock", "http", "bounded"]),
    ("policy", &["domain", "notify"]),
    ("ports", &["domain", "notify"]),
    ("gcp", &["domain", "ports", "clock", "http", "bounded"]),
    ("state", &["ports"]),
    ("pubsub", &["ports", "notify"]),
    (
        "engine",
        &[
            "domain", "intake", "policy", "notify", "ports", "clock", "bounded",
        ],
    ),
    ("server", &["engine", "intake", "notify", "ports", "domain"]),
    // Connection settings and rendering: shared by the commands, so no command imports another.
    ("connect", &["gcp", "policy", "ports", "state"]),
    ("render", &["domain", "engine", "gcp", "telemetry"]),
    (
        "scan",
        &["connect", "domain", "engine", "policy", "ports", "render"],
    ),
    (
        "explain",
        &["connect", "domain", "engine", "policy", "render"],
    ),
    (
        "plan_guard",
        &[
            "connect", "domain", "engine", "gcp", "policy", "ports", "render",
        ],
    ),
    (
        "job",
        &["domain", "engine", "intake", "ports", "pubsub", "notify"],
    ),
    (
        "demo",
        &["domain", "engine", "gcp", "ports", "render", "clock"],
    ),
    (
        "app",
        &[
            "connect",
            "domain",
            "engine",
            "intake",
            "job",
            "notify",
            "policy",
            "ports",
            "pubsub",
            "server",
            "state",
            "telemetry",
            "gcp",
            "http",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module -> the top-level modules its files name through `crate::`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("utf-8 path");
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        let targets = graph.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module && src_has_module(&src, &name) {
                    targets.insert(name);
                }
            }
        }
    }
    graph
}

fn src_has_module(src: &Path, name: &str) -> bool {
    src.join(format!("{name}.rs")).exists() || src.join(name).join("mod.rs").exists()
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    for (module, targets) in import_graph() {
        let Some(ok) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "module `{module}` has no place in the layer table (tests/api/architecture.rs)"
            ));
            continue;
        };
        for t in targets.iter().filter(|t| !ok.contains(t.as_str())) {
            violations.push(format!("`{module}` imports `{t}`"));
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = import_graph();
    // Depth-first search with colours: a grey node reached again closes a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(1) => {
                let start = path.iter().position(|p| p == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, &graph, &mut state, &mut path) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// The rooms of the engine (`src/engine/`) and which of the others each may use: the pure rooms use
/// none; discovering and verifying never reach the apply stage (reading never writes); the
/// coalescing scheduler knows nothing of a run but its write budget; `mod.rs` (the engine itself)
/// composes them all.
const ENGINE_ROOMS: &[(&str, &[&str])] = &[
    ("deny_plan", &[]),
    ("ledger", &[]),
    ("flap", &[]),
    ("error", &[]),
    ("recommendation", &[]),
    ("deny_cache", &["deny_plan"]),
    ("shared", &["ledger"]),
    ("conclude", &["ledger", "shared"]),
    ("coalesce", &["apply"]),
    ("discover", &["remediate", "verify", "error"]),
    ("verify", &["remediate", "deny_cache", "deny_plan", "error"]),
    (
        "apply",
        &["remediate", "verify", "flap", "ledger", "shared", "error"],
    ),
    (
        "remediate",
        &[
            "apply",
            "deny_cache",
            "deny_plan",
            "discover",
            "error",
            "flap",
            "shared",
            "verify",
        ],
    ),
    ("snapshot", &["deny_plan", "remediate", "verify", "error"]),
    ("sweep", &["deny_plan", "recommendation", "remediate"]),
];

/// Engine room -> the engine rooms its files name (`super::X` from a room's own file,
/// `super::super::X` from a file inside it, `crate::engine::X` anywhere).
fn engine_graph() -> BTreeMap<String, BTreeSet<String>> {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut files = Vec::new();
    rust_files(&engine, &mut files);
    let rooms: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&engine).ok()?;
            (rel.components().count() == 1).then(|| rel.file_stem()?.to_str().map(str::to_owned))?
        })
        .filter(|r| r != "mod")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&engine).expect("under src/engine");
        let nested = rel.components().count() > 1;
        let first = rel.components().next().and_then(|c| c.as_os_str().to_str());
        let room = first.expect("utf-8").trim_end_matches(".rs").to_owned();
        if room == "mod" {
            continue;
        }
        let prefixes: &[&str] = if nested {
            &["super::super::", "crate::engine::"]
        } else {
            &["super::", "crate::engine::"]
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        let targets = graph.entry(room.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for prefix in prefixes {
                let mut rest = line;
                while let Some(i) = rest.find(prefix) {
                    // `super::super::x` also contains `super::x`: only the longest prefix counts.
                    if !nested && *prefix == "super::" && rest[..i].ends_with("super::") {
                        rest = &rest[i + prefix.len()..];
                        continue;
                    }
                    rest = &rest[i + prefix.len()..];
                    let names: Vec<String> = match rest.strip_prefix('{') {
                        Some(group) => group
                            .split('}')
                            .next()
                            .unwrap_or("")
                            .split(',')
                            .map(|n| n.trim().split("::").next().unwrap_or("").to_owned())
                            .collect(),
                        None => vec![
                            rest.chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect(),
                        ],
                    };
                    for name in names {
                        if rooms.contains(&name) && name != room {
                            targets.insert(name);
                        }
                    }
                }
            }
        }
    }
    graph
}

#[test]
fn every_engine_room_uses_only_the_rooms_it_may_and_verifying_never_reaches_the_apply_stage() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ENGINE_ROOMS
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    for (room, targets) in engine_graph() {
        let Some(ok) = allowed.get(room.as_str()) else {
            violations.push(format!(
                "engine room `{room}` has no place in ENGINE_ROOMS (tests/api/architecture.rs)"
            ));
            continue;
        };
        for t in targets.iter().filter(|t| !ok.contains(t.as_str())) {
            violations.push(format!("engine room `{room}` uses `{t}`"));
        }
    }
    assert!(
        violations.is_empty(),
        "engine rooms used against the plan:\n{}",
        violations.join("\n")
    );
    for stage in ["discover", "verify"] {
        assert!(
            !allowed[stage].contains("apply"),
            "{stage} must never reach the apply stage"
        );
    }
}
