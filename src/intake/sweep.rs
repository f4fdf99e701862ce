//! Sweep requests (`{"sweep": {...}}`, e.g. from Cloud Scheduler) -> one hint per scope.
//!
//! Shape: `{"sweep": {"projects": ["p1", "projects/p2"], "folder": "123", "organization": "456"}}`; every key
//! is optional, and an empty (or `null`) sweep means the service's configured scope. Unknown keys are an
//! error, not silently ignored: a typo must not turn into a sweep of the whole configured scope.

use serde::Deserialize;

use super::{
    Classification, Evidence, Hint, IntakeError, Message, Scope, Source, decode, resource_scope,
    sanitize,
};

/// Most projects one sweep request may list.
pub const MAX_SWEEP_PROJECTS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepMessage {
    sweep: Option<SweepRequest>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SweepRequest {
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    folder: Option<String>,
    #[serde(default)]
    organization: Option<String>,
}

/// Classifies a sweep request (JSON data with `sweep`), decoded once.
pub(super) fn classify(message: &Message, data: &[u8]) -> Result<Classification, IntakeError> {
    let request = decode::<SweepMessage>(data, "message data", "sweep request")?
        .sweep
        .unwrap_or_default();
    classify_request(message, request)
}

fn classify_request(
    message: &Message,
    request: SweepRequest,
) -> Result<Classification, IntakeError> {
    if request.projects.len() > MAX_SWEEP_PROJECTS {
        return Err(IntakeError::Invalid {
            what: "sweep request",
            reason: format!(
                "{} projects listed, at most {MAX_SWEEP_PROJECTS} allowed",
                request.projects.len()
            ),
        });
    }
    let mut scopes = Vec::new();
    for project in &request.projects {
        let name = if project.starts_with("projects/") {
            project.clone()
        } else {
            format!("projects/{project}")
        };
        scopes.push(parse_scope(&name, "sweep project")?);
    }
    if let Some(folder) = &request.folder {
        let name = if folder.starts_with("folders/") {
            folder.clone()
        } else {
            format!("folders/{folder}")
        };
        scopes.push(parse_scope(&name, "sweep folder")?);
    }
    if let Some(org) = &request.organization {
        let name = if org.starts_with("organizations/") {
            org.clone()
        } else {
            format!("organizations/{org}")
        };
        scopes.push(parse_scope(&name, "sweep organization")?);
    }
    if scopes.is_empty() {
        scopes.push(Scope::Configured);
    }
    scopes.sort();
    scopes.dedup();
    let hints = scopes
        .into_iter()
        .map(|scope| {
            let mut evidence = Evidence::new(Source::Sweep, message);
            evidence.method = Some("sweep".into());
            Hint {
                scope,
                requirements: Vec::new(),
                node_service_accounts: Vec::new(),
                is_removal: false,
                deny_policies_changed: false,
                evidence,
            }
        })
        .collect();
    Ok(Classification::Hints(hints))
}

fn parse_scope(name: &str, what: &'static str) -> Result<Scope, IntakeError> {
    // A longer name such as `projects/p/zones/z` would silently shrink to its prefix: require exactly two parts.
    match resource_scope(name) {
        Some(scope) if name.split('/').count() == 2 => Ok(scope),
        _ => Err(IntakeError::Invalid {
            what,
            reason: format!("`{}` is not a valid name", sanitize(name, 120)),
        }),
    }
}
