//! Recommender recommendations carried by a message -> hints.
//!
//! Recommender has no push of its own (reference 1.4); a message may still carry a recommendation body,
//! `{"recommendation": NAME}` or a plain-text NAME (e.g. from a scheduler or another tool). Only
//! `google.container.DiagnosisRecommender` / `NODE_SA_MISSING_PERMISSIONS` counts. The recommendation's
//! content is not parsed for principals or roles: the core re-derives both from the Container API and the
//! policy. Recommendation: <https://cloud.google.com/recommender/docs/reference/rest/v1/projects.locations.recommenders.recommendations>.

use std::fmt;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::{
    Classification, Evidence, Hint, IntakeError, Message, RecommendationRef, Scope, Source, decode,
    project_scope, sanitize,
};
use crate::domain::iam::{ProjectId, ProjectNumber};
use crate::domain::requirements::RequirementId;

/// The recommender whose findings we act on.
pub const DIAGNOSIS_RECOMMENDER: &str = "google.container.DiagnosisRecommender";
/// The only subtype of [`DIAGNOSIS_RECOMMENDER`] we act on.
pub const NODE_SA_MISSING_PERMISSIONS: &str = "NODE_SA_MISSING_PERMISSIONS";

/// Longest recommendation name accepted.
const MAX_NAME_BYTES: usize = 1024;
/// Longest recommender id or recommendation id accepted.
const MAX_ID_BYTES: usize = 128;

/// A recommendation name of the documented shape
/// `{projects|folders|organizations|billingAccounts}/X/locations/L/recommenders/R/recommendations/ID`
/// (<https://cloud.google.com/recommender/docs/reference/rest/v1/projects.locations.recommenders.recommendations/get>),
/// every part checked: the engine puts the name into request URLs as it is, so no part may carry a
/// character that would change the request (`?`, `#`, `%`, `:`, `/`) or be a `.` / `..` segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RecommendationName {
    full: String,
    parent_kind: String,
    parent: String,
    recommender: String,
}

impl RecommendationName {
    /// Parses a name taken from a message, refusing any other text with what was wrong.
    pub(super) fn parse(text: &str) -> Result<Self, IntakeError> {
        let refuse = |what: &str| IntakeError::Invalid {
            what: "recommendation name",
            reason: format!(
                "`{}` is not projects/P/locations/L/recommenders/R/recommendations/ID ({what})",
                sanitize(text, 200)
            ),
        };
        if text.len() > MAX_NAME_BYTES {
            return Err(refuse("too long"));
        }
        let parts: Vec<&str> = text.split('/').collect();
        let [
            kind,
            parent,
            "locations",
            location,
            "recommenders",
            recommender,
            "recommendations",
            id,
        ] = parts.as_slice()
        else {
            return Err(refuse("not the documented shape"));
        };
        let numeric =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        let parent_ok = match *kind {
            "projects" => ProjectId::parse(parent).is_ok() || ProjectNumber::parse(parent).is_ok(),
            "folders" | "organizations" => numeric(parent),
            "billingAccounts" => {
                !parent.is_empty()
                    && parent.len() <= 64
                    && parent
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }
            _ => {
                return Err(refuse(
                    "not under projects, folders, organizations or billingAccounts",
                ));
            }
        };
        if !parent_ok {
            return Err(refuse("the parent is not a valid id"));
        }
        let location_ok = !location.is_empty()
            && location.len() <= 63
            && location
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !location_ok {
            return Err(refuse("the location is not a location id"));
        }
        if !is_id(recommender) {
            return Err(refuse("the recommender is not an id"));
        }
        if !is_id(id) {
            return Err(refuse("the recommendation is not an id"));
        }
        Ok(Self {
            full: text.to_owned(),
            parent_kind: (*kind).to_owned(),
            parent: (*parent).to_owned(),
            recommender: (*recommender).to_owned(),
        })
    }

    fn scope(&self) -> Option<Scope> {
        match self.parent_kind.as_str() {
            "projects" => project_scope(&self.parent),
            "folders" => Some(Scope::Folder(self.parent.clone())),
            "organizations" => Some(Scope::Organization(self.parent.clone())),
            _ => None,
        }
    }
}

/// A recommender or recommendation id: letters, digits, `-`, `_` and `.`, starting with a letter or a
/// digit (`google.container.DiagnosisRecommender`, `0a1b2c3d-0000-4e5f-8a9b-123456789abc`).
fn is_id(s: &str) -> bool {
    s.len() <= MAX_ID_BYTES
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// True if `text` is meant as a recommendation name (it names a recommender or a recommendation), valid
/// or not.
fn looks_like_a_name(text: &str) -> bool {
    text.contains("/recommenders/") || text.contains("/recommendations/")
}

/// A recommendation body. Only what marking needs and the subtype are read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recommendation {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    recommender_subtype: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    state_info: Option<StateInfo>,
    #[serde(default)]
    target_resources: Vec<String>,
}

#[derive(Deserialize)]
struct StateInfo {
    #[serde(default)]
    state: Option<String>,
}

/// `{"recommendation": NAME, "etag"?: ETAG}` or `{"recommendation": {BODY}}`.
#[derive(Deserialize)]
struct Reference {
    recommendation: Target,
    #[serde(default)]
    etag: Option<String>,
}

/// What a reference's `recommendation` holds.
enum Target {
    Name(String),
    Body(Recommendation),
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = Target;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a recommendation name or a recommendation object")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Target, E> {
                Ok(Target::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Target, A::Error> {
                Recommendation::deserialize(MapAccessDeserializer::new(map)).map(Target::Body)
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}

/// Text that names a recommendation (plain message data, or a JSON string): `None` if the text is not
/// meant as a recommendation name, an error if it is one of the wrong form.
pub(super) fn classify_name_text(
    message: &Message,
    text: &str,
) -> Option<Result<Classification, IntakeError>> {
    looks_like_a_name(text)
        .then(|| RecommendationName::parse(text).map(|name| classify_name(message, name, None)))
}

/// A recommendation known only by name. Its subtype cannot be checked here; the core reads the
/// recommendation before marking it.
fn classify_name(
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

/// Classifies a recommendation body (JSON data with `recommenderSubtype`), decoded once.
pub(super) fn classify_body(message: &Message, data: &[u8]) -> Result<Classification, IntakeError> {
    classify_recommendation(message, decode(data, "message data", "recommendation")?)
}

/// Classifies a reference (JSON data with `recommendation`), decoded once.
pub(super) fn classify_reference(
    message: &Message,
    data: &[u8],
) -> Result<Classification, IntakeError> {
    let reference: Reference = decode(data, "message data", "recommendation reference")?;
    match reference.recommendation {
        Target::Name(raw) => {
            let name = RecommendationName::parse(raw.trim())?;
            Ok(classify_name(message, name, reference.etag))
        }
        Target::Body(body) => classify_recommendation(message, body),
    }
}

fn classify_recommendation(
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
        Some(raw) => Ok(classify_name(
            message,
            RecommendationName::parse(raw)?,
            body.etag,
        )),
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
