//! Recommender recommendations carried by a message -> hints.
//!
//! Recommender has no push of its own (reference 1.4); a message may still carry a recommendation body,
//! `{"recommendation": NAME}` or a plain-text NAME (e.g. from a scheduler or another tool). Only
//! `google.container.DiagnosisRecommender` / `NODE_SA_MISSING_PERMISSIONS` counts. The recommendation's
//! content is not parsed for principals or roles: the core re-derives both from the Container API and the
//! policy. Recommendation: <https://cloud.google.com/recommender/docs/reference/rest/v1/projects.locations.recommenders.recommendations>.

use serde::Deserialize;
use serde_json::Value;

use super::{
    Classification, Evidence, Hint, IntakeError, Message, RecommendationRef, Scope, Source, decode,
    project_scope, sanitize,
};
use crate::domain::requirements::RequirementId;

/// The recommender whose findings we act on.
pub const DIAGNOSIS_RECOMMENDER: &str = "google.container.DiagnosisRecommender";
/// The only subtype of [`DIAGNOSIS_RECOMMENDER`] we act on.
pub const NODE_SA_MISSING_PERMISSIONS: &str = "NODE_SA_MISSING_PERMISSIONS";

/// A parsed recommendation name `{projects|folders|organizations|billingAccounts}/X/locations/L/recommenders/R/recommendations/ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RecommendationName {
    full: String,
    parent_kind: String,
    parent: String,
    recommender: String,
}

impl RecommendationName {
    /// Parses a recommendation name; `None` if it is not one.
    pub(super) fn parse(text: &str) -> Option<Self> {
        if text.len() > 1024 || text.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [
                kind @ ("projects" | "folders" | "organizations" | "billingAccounts"),
                parent,
                "locations",
                location,
                "recommenders",
                recommender,
                "recommendations",
                id,
            ] if [parent, location, recommender, id]
                .iter()
                .all(|s| !s.is_empty()) =>
            {
                Some(Self {
                    full: text.to_owned(),
                    parent_kind: (*kind).to_owned(),
                    parent: (*parent).to_owned(),
                    recommender: (*recommender).to_owned(),
                })
            }
            _ => None,
        }
    }

    fn scope(&self) -> Option<Scope> {
        let numeric = self.parent.len() <= 20 && self.parent.bytes().all(|b| b.is_ascii_digit());
        match self.parent_kind.as_str() {
            "projects" => project_scope(&self.parent),
            "folders" if numeric => Some(Scope::Folder(self.parent.clone())),
            "organizations" if numeric => Some(Scope::Organization(self.parent.clone())),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Recommendation {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) recommender_subtype: Option<String>,
    #[serde(default)]
    pub(super) etag: Option<String>,
    #[serde(default)]
    pub(super) state_info: Option<StateInfo>,
    #[serde(default)]
    pub(super) target_resources: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct StateInfo {
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    recommendation: Value,
    #[serde(default)]
    etag: Option<String>,
}

/// A recommendation known only by name. Its subtype cannot be checked here; the core reads the
/// recommendation before marking it.
pub(super) fn classify_name(
    message: &Message,
    name: RecommendationName,
    etag: Option<String>,
) -> Classification {
    if name.recommender != DIAGNOSIS_RECOMMENDER {
        return Classification::ignored(format!(
            "recommendation of recommender `{}` (only {DIAGNOSIS_RECOMMENDER} matters)",
            sanitize(&name.recommender, 100)
        ));
    }
    let Some(scope) = name.scope() else {
        return Classification::ignored(format!(
            "recommendation parent `{}/{}` is not a project, folder or organization",
            name.parent_kind,
            sanitize(&name.parent, 60)
        ));
    };
    Classification::Hints(vec![hint(
        message,
        scope,
        RecommendationRef {
            name: name.full,
            etag,
        },
    )])
}

/// A recommendation body (a JSON object with `recommenderSubtype`).
pub(super) fn classify_body(
    message: &Message,
    value: Value,
) -> Result<Classification, IntakeError> {
    classify_recommendation(message, decode(value, "recommendation")?)
}

/// Classifies a decoded recommendation body.
pub(super) fn classify_recommendation(
    message: &Message,
    body: Recommendation,
) -> Result<Classification, IntakeError> {
    let subtype = body.recommender_subtype.as_deref().unwrap_or_default();
    if subtype != NODE_SA_MISSING_PERMISSIONS {
        return Ok(Classification::ignored(format!(
            "recommendation subtype `{}` (only {NODE_SA_MISSING_PERMISSIONS} matters)",
            sanitize(subtype, 60)
        )));
    }
    if let Some(state) = body.state_info.as_ref().and_then(|s| s.state.as_deref())
        && matches!(state, "SUCCEEDED" | "DISMISSED")
    {
        return Ok(Classification::ignored(format!(
            "recommendation is already {state}"
        )));
    }
    match body.name.as_deref() {
        Some(raw) => {
            let Some(name) = RecommendationName::parse(raw) else {
                return Err(IntakeError::Invalid {
                    what: "recommendation name",
                    reason: format!(
                        "`{}` is not projects/P/locations/L/recommenders/R/recommendations/ID",
                        sanitize(raw, 200)
                    ),
                });
            };
            Ok(classify_name(message, name, body.etag))
        }
        None => {
            // No name (nothing to mark later): the scope still comes from the target cluster.
            let scope = body.target_resources.iter().find_map(|t| {
                let rest = t.strip_prefix("//container.googleapis.com/projects/")?;
                project_scope(rest.split('/').next()?)
            });
            Ok(match scope {
                Some(scope) => Classification::Hints(vec![hint_without_ref(message, scope)]),
                None => Classification::ignored(
                    "recommendation without a name or a container targetResource",
                ),
            })
        }
    }
}

/// `{"recommendation": NAME, "etag"?: ETAG}` or `{"recommendation": {BODY}}`.
pub(super) fn classify_reference(
    message: &Message,
    value: Value,
) -> Result<Classification, IntakeError> {
    let reference: Reference = decode(value, "recommendation reference")?;
    match reference.recommendation {
        Value::String(raw) => classify_reference_name(message, &raw, reference.etag),
        body @ Value::Object(_) => classify_body(message, body),
        other => Err(IntakeError::Json {
            what: "recommendation reference",
            path: "recommendation".into(),
            message: format!(
                "expected a name or a recommendation object, found {}",
                super::json_kind(&other)
            ),
        }),
    }
}

/// Classifies `{"recommendation": NAME, "etag"?: ETAG}`.
pub(super) fn classify_reference_name(
    message: &Message,
    raw: &str,
    etag: Option<String>,
) -> Result<Classification, IntakeError> {
    match RecommendationName::parse(raw.trim()) {
        Some(name) => Ok(classify_name(message, name, etag)),
        None => Err(IntakeError::Invalid {
            what: "recommendation name",
            reason: format!(
                "`{}` is not projects/P/locations/L/recommenders/R/recommendations/ID",
                sanitize(raw, 200)
            ),
        }),
    }
}

fn hint(message: &Message, scope: Scope, recommendation: RecommendationRef) -> Hint {
    let mut hint = hint_without_ref(message, scope);
    hint.evidence.recommendation = Some(recommendation);
    hint
}

fn hint_without_ref(message: &Message, scope: Scope) -> Hint {
    let mut evidence = Evidence::new(Source::Recommendation, message);
    evidence.method = Some(format!(
        "{DIAGNOSIS_RECOMMENDER}/{NODE_SA_MISSING_PERMISSIONS}"
    ));
    Hint {
        scope,
        requirements: vec![RequirementId::NodeSaPermissions],
        node_service_accounts: Vec::new(),
        is_removal: false,
        deny_policies_changed: false,
        evidence,
    }
}
