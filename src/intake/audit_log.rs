//! Cloud Audit Log entries (delivered by a log sink, one LogEntry per message) -> hints.
//!
//! Owns the events of DESIGN section 3: resource-manager `SetIamPolicy` with a `REMOVE` delta (read under
//! both `serviceData.policyDelta` and `metadata.policyDelta`), IAM `DeleteServiceAccount` /
//! `DisableServiceAccount`, Service Usage `DisableService` of `container.googleapis.com`, Container
//! `CreateCluster` / `CreateNodePool` / `UpdateNodePool`, and IAM v2 `CreatePolicy` / `UpdatePolicy` /
//! `DeletePolicy` of a deny policy (the attachment point's cached deny policies are stale, and a
//! deny rule bears on node accounts' permissions). Everything else is ignored with a reason.
//! It does not filter the remediator's own changes: the caller compares [`super::Evidence::actor`].
//!
//! LogEntry: <https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry>;
//! AuditLog: <https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog>;
//! PolicyDelta: <https://cloud.google.com/iam/docs/reference/rest/v1/PolicyDelta>.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::loose::{LooseList, LooseObj, LooseStr};
use super::{
    Classification, Evidence, Hint, IntakeError, Message, Scope, Source, decode, is_agent_role,
    member_service_account, project_scope, requirements_for_removed_roles, resource_scope,
    sanitize,
};
use crate::domain::iam::{Member, Role, ServiceAccountEmail};
use crate::domain::requirements::{CONTAINER_API, RequirementId};

const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";
const TIMESTAMP_ATTRIBUTE: &str = "logging.googleapis.com/timestamp";

/// A LogEntry whose `protoPayload` is an AuditLog.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEntry {
    #[serde(default)]
    insert_id: Option<String>,
    #[serde(default)]
    log_name: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    resource: Option<MonitoredResource>,
    #[serde(default)]
    operation: Option<Operation>,
    proto_payload: AuditLog,
}

#[derive(Deserialize, Default)]
struct MonitoredResource {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct Operation {
    #[serde(default)]
    first: Option<bool>,
    #[serde(default)]
    last: Option<bool>,
}

/// The AuditLog payload (its `@type` was read by the dispatcher). `request` differs with every method,
/// and `serviceData` / `metadata` with every service: they are read by name only where they are
/// objects (a value of another kind reads as absent, never as an error).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditLog {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    method_name: Option<String>,
    #[serde(default)]
    resource_name: Option<String>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    authentication_info: Option<AuthenticationInfo>,
    #[serde(default)]
    authorization_info: Vec<AuthorizationInfo>,
    #[serde(default)]
    request_metadata: Option<RequestMetadata>,
    #[serde(default)]
    request: Option<LooseObj<Request>>,
    #[serde(default)]
    service_data: Option<LooseObj<DeltaHolder>>,
    #[serde(default)]
    metadata: Option<LooseObj<DeltaHolder>>,
}

/// What the classification reads from `request`.
struct RequestView<'a> {
    name: Option<&'a str>,
    parent: Option<&'a str>,
    service_accounts: Vec<ServiceAccountEmail>,
}

impl AuditLog {
    /// `request`'s name, parent and requested node service accounts, when a request is present (of
    /// any kind: only an object has them).
    fn request_view(&self) -> Option<RequestView<'_>> {
        let LooseObj(request) = self.request.as_ref()?;
        let Some(request) = request else {
            return Some(RequestView {
                name: None,
                parent: None,
                service_accounts: Vec::new(),
            });
        };
        fn config(c: &Option<LooseObj<NodeConfig>>) -> Option<&str> {
            c.as_ref()?.0.as_ref()?.service_account.0.as_deref()
        }
        fn object<T>(o: &Option<LooseObj<T>>) -> Option<&T> {
            o.as_ref()?.0.as_ref()
        }
        let cluster = object(&request.cluster);
        let direct = [
            object(&request.node_pool).and_then(|p| config(&p.config)),
            cluster.and_then(|c| config(&c.node_config)),
            cluster
                .and_then(|c| object(&c.autoscaling))
                .and_then(|a| config(&a.autoprovisioning_node_pool_defaults)),
        ];
        let pools = cluster
            .into_iter()
            .flat_map(|c| c.node_pools.0.iter())
            .take(1000)
            .filter_map(|LooseObj(p)| config(&p.as_ref()?.config));
        Some(RequestView {
            name: request.name.0.as_deref(),
            parent: request.parent.0.as_deref(),
            service_accounts: unique_accounts(direct.into_iter().flatten().chain(pools)),
        })
    }

    /// `policyDelta.bindingDeltas` of `serviceData` then `metadata`, a delta in both counted once.
    fn deltas(&self) -> Vec<BindingDelta> {
        fn at(holder: &Option<LooseObj<DeltaHolder>>) -> &[BindingDelta] {
            holder
                .as_ref()
                .and_then(|LooseObj(h)| h.as_ref()?.policy_delta.as_ref())
                .map(|d| d.binding_deltas.as_slice())
                .unwrap_or_default()
        }
        let mut deltas = at(&self.service_data).to_vec();
        for delta in at(&self.metadata) {
            if !deltas.contains(delta) {
                deltas.push(delta.clone());
            }
        }
        deltas
    }
}

/// `request` of a CreateCluster / CreateNodePool / UpdateNodePool, or of a deny policy or service
/// account method (only `name` and `parent` are read there). The Container API's request types:
/// <https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters/create>.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    name: LooseStr,
    #[serde(default)]
    parent: LooseStr,
    #[serde(default)]
    node_pool: Option<LooseObj<NodePool>>,
    #[serde(default)]
    cluster: Option<LooseObj<Cluster>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Cluster {
    #[serde(default)]
    node_config: Option<LooseObj<NodeConfig>>,
    #[serde(default)]
    autoscaling: Option<LooseObj<Autoscaling>>,
    #[serde(default)]
    node_pools: LooseList<LooseObj<NodePool>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Autoscaling {
    #[serde(default)]
    autoprovisioning_node_pool_defaults: Option<LooseObj<NodeConfig>>,
}

#[derive(Deserialize, Default)]
struct NodePool {
    #[serde(default)]
    config: Option<LooseObj<NodeConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NodeConfig {
    #[serde(default)]
    service_account: LooseStr,
}

#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthenticationInfo {
    #[serde(default)]
    principal_email: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RequestMetadata {
    #[serde(default)]
    caller_supplied_user_agent: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthorizationInfo {
    #[serde(default)]
    resource: Option<String>,
}

/// Every (service, last segment of `methodName`) this module acts on: the log sink's filter must match
/// exactly these (the Terraform consistency test checks it), and `classify` dispatches on them.
pub const HANDLED_METHODS: &[(&str, &str)] = &[
    ("cloudresourcemanager.googleapis.com", "SetIamPolicy"),
    ("iam.googleapis.com", "DeleteServiceAccount"),
    ("iam.googleapis.com", "DisableServiceAccount"),
    ("iam.googleapis.com", "CreatePolicy"),
    ("iam.googleapis.com", "UpdatePolicy"),
    ("iam.googleapis.com", "DeletePolicy"),
    ("serviceusage.googleapis.com", "DisableService"),
    ("container.googleapis.com", "CreateCluster"),
    ("container.googleapis.com", "CreateNodePool"),
    ("container.googleapis.com", "UpdateNodePool"),
];

/// `AuditData` / the `metadata` struct: only `policyDelta` matters.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeltaHolder {
    #[serde(default)]
    policy_delta: Option<PolicyDelta>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PolicyDelta {
    #[serde(default)]
    binding_deltas: Vec<BindingDelta>,
}

#[derive(Deserialize, Clone, PartialEq)]
struct BindingDelta {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    member: Option<String>,
}

/// Classifies a LogEntry (JSON data with `protoPayload`, whose `@type` the dispatcher read): an AuditLog
/// is decoded once, typed; a payload of another type is ignored, undecoded.
pub(super) fn classify(
    message: &Message,
    data: &[u8],
    payload_type: Option<&str>,
) -> Result<Classification, IntakeError> {
    if payload_type != Some(AUDIT_LOG_TYPE) {
        return Ok(not_an_audit_log(payload_type));
    }
    let entry: LogEntry = decode(data, "message data", "audit log entry")?;
    classify_entry(message, &entry)
}

fn not_an_audit_log(payload_type: Option<&str>) -> Classification {
    Classification::ignored(format!(
        "log entry protoPayload is `{}`, not an AuditLog",
        sanitize(payload_type.unwrap_or("(no @type)"), 100)
    ))
}

fn classify_entry(message: &Message, entry: &LogEntry) -> Result<Classification, IntakeError> {
    let payload = &entry.proto_payload;
    let service = payload.service_name.as_deref().unwrap_or_default();
    let method = payload.method_name.as_deref().unwrap_or_default();

    if let Some(code) = payload
        .status
        .as_ref()
        .and_then(|s| s.code)
        .filter(|&c| c != 0)
    {
        let detail = payload
            .status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .unwrap_or_default();
        return Ok(Classification::ignored(format!(
            "{} failed (status.code={code}{}{})",
            sanitize(method, 100),
            if detail.is_empty() { "" } else { ": " },
            sanitize(detail, 120)
        )));
    }

    let mut evidence = Evidence::new(Source::AuditLog, message);
    evidence.actor = payload
        .authentication_info
        .as_ref()
        .and_then(|a| a.principal_email.clone());
    evidence.tool = payload
        .request_metadata
        .as_ref()
        .and_then(|m| m.caller_supplied_user_agent.as_deref())
        .and_then(super::tool::identify);
    evidence.method = payload.method_name.clone();
    evidence.insert_id = entry.insert_id.clone();
    evidence.log_timestamp = entry
        .timestamp
        .clone()
        .or_else(|| message.attributes.get(TIMESTAMP_ATTRIBUTE).cloned());

    let short_method = method.rsplit('.').next().unwrap_or(method);
    match (service, short_method) {
        ("cloudresourcemanager.googleapis.com", "SetIamPolicy") => set_iam_policy(entry, evidence),
        ("iam.googleapis.com", "DeleteServiceAccount" | "DisableServiceAccount") => {
            service_account_removed(entry, evidence)
        }
        ("iam.googleapis.com", "CreatePolicy" | "UpdatePolicy" | "DeletePolicy") => {
            deny_policy_change(entry, evidence)
        }
        ("serviceusage.googleapis.com", "DisableService") => disable_service(entry, evidence),
        ("container.googleapis.com", "CreateCluster" | "CreateNodePool" | "UpdateNodePool") => {
            node_pool_change(entry, evidence)
        }
        _ => Ok(Classification::ignored(format!(
            "audit log method `{}` of `{}` is not an event we act on",
            sanitize(method, 100),
            sanitize(service, 60)
        ))),
    }
}

fn set_iam_policy(entry: &LogEntry, mut evidence: Evidence) -> Result<Classification, IntakeError> {
    let payload = &entry.proto_payload;
    let scope = payload
        .resource_name
        .as_deref()
        .and_then(resource_scope)
        .or_else(|| scope_from_resource_labels(entry.resource.as_ref()));
    let Some(scope) = scope else {
        return Ok(Classification::ignored(format!(
            "SetIamPolicy on `{}` is not a project, folder or organization",
            sanitize(
                payload
                    .resource_name
                    .as_deref()
                    .unwrap_or("(no resourceName)"),
                120
            )
        )));
    };

    let deltas = payload.deltas();
    let removes: Vec<&BindingDelta> = deltas
        .iter()
        .filter(|d| {
            d.action
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("REMOVE"))
        })
        .collect();
    if removes.is_empty() {
        return Ok(Classification::ignored(format!(
            "SetIamPolicy on {} removed no binding ({} delta(s), none REMOVE)",
            scope_label(&scope),
            deltas.len()
        )));
    }

    let mut node_service_accounts = Vec::new();
    for delta in &removes {
        let role = delta.role.as_deref().and_then(|r| Role::parse(r).ok());
        let member = delta.member.as_deref().and_then(|m| Member::parse(m).ok());
        if let (Some(role), Some(member)) = (role, member) {
            if !is_agent_role(role.as_str())
                && let Some(email) = member_service_account(&member)
                && !node_service_accounts.contains(&email)
            {
                node_service_accounts.push(email);
            }
            evidence.removed.push((role, member));
        }
    }
    // An unreadable role counts as "any role": re-verify everything.
    let requirements =
        requirements_for_removed_roles(removes.iter().map(|d| d.role.as_deref().unwrap_or("")));
    Ok(Classification::Hints(vec![Hint {
        scope,
        requirements,
        node_service_accounts,
        is_removal: true,
        deny_policies_changed: false,
        evidence,
    }]))
}

/// An IAM v2 deny policy created, updated or deleted: its attachment point (project, folder or
/// organization) is re-verified with its deny policies read again. The attachment point is read from
/// `resourceName`, else the request's `name` (update, delete) or `parent` (create).
fn deny_policy_change(entry: &LogEntry, evidence: Evidence) -> Result<Classification, IntakeError> {
    let payload = &entry.proto_payload;
    let request = payload.request_view();
    let names = [
        payload.resource_name.as_deref(),
        request.as_ref().and_then(|r| r.name),
        request.as_ref().and_then(|r| r.parent),
    ];
    let Some(scope) = names.into_iter().flatten().find_map(deny_attachment_scope) else {
        return Ok(Classification::ignored(format!(
            "{} names no deny policy of a project, folder or organization (resourceName `{}`)",
            sanitize(payload.method_name.as_deref().unwrap_or_default(), 100),
            sanitize(
                payload
                    .resource_name
                    .as_deref()
                    .unwrap_or("(no resourceName)"),
                160
            )
        )));
    };
    Ok(Classification::Hints(vec![Hint {
        scope,
        // A deny rule can only take access away, and only node accounts' permissions are checked
        // against deny rules.
        requirements: vec![RequirementId::NodeSaPermissions],
        node_service_accounts: Vec::new(),
        is_removal: false,
        deny_policies_changed: true,
        evidence,
    }]))
}

/// The scope of a deny policy's attachment point, from its name or its parent:
/// `policies/cloudresourcemanager.googleapis.com%2Fprojects%2F123/denypolicies[/ID]`, the point's
/// `/` written as `%2F`, `%252F` (as clients send it) or `/`.
fn deny_attachment_scope(name: &str) -> Option<Scope> {
    let rest = name.strip_prefix("policies/")?;
    let decoded = ["%252F", "%252f", "%2F", "%2f"]
        .iter()
        .fold(rest.to_owned(), |s, encoded| s.replace(encoded, "/"));
    let (point, after) = decoded.rsplit_once("/denypolicies")?;
    if !(after.is_empty() || after.starts_with('/')) {
        return None;
    }
    let point = point
        .trim_start_matches('/')
        .strip_prefix("cloudresourcemanager.googleapis.com/")?;
    if point.split('/').count() != 2 {
        return None;
    }
    resource_scope(point)
}

fn service_account_removed(
    entry: &LogEntry,
    evidence: Evidence,
) -> Result<Classification, IntakeError> {
    let payload = &entry.proto_payload;
    let labels = entry.resource.as_ref().map(|r| &r.labels);
    let request = payload.request_view();
    let request_name = request.as_ref().and_then(|r| r.name);

    // The email: `resource.labels.email_id`, else whichever name holds an email (names may hold the
    // numeric unique id instead).
    let email = labels
        .and_then(|l| l.get("email_id"))
        .map(String::as_str)
        .into_iter()
        .chain(request_name.and_then(|n| n.rsplit('/').next()))
        .chain(
            payload
                .resource_name
                .as_deref()
                .and_then(|n| n.rsplit('/').next()),
        )
        .find_map(|candidate| {
            candidate
                .contains('@')
                .then(|| ServiceAccountEmail::parse(candidate).ok())?
        });

    let project = labels
        .and_then(|l| l.get("project_id"))
        .map(String::as_str)
        .into_iter()
        .chain(request_name.and_then(project_of_name))
        .chain(payload.resource_name.as_deref().and_then(project_of_name))
        .chain(email.as_ref().and_then(|e| project_of_sa_email(e.as_str())))
        .chain(entry.log_name.as_deref().and_then(project_of_name))
        .find_map(project_scope);
    let Some(scope) = project else {
        return Ok(Classification::ignored(
            "service account event names no project",
        ));
    };
    Ok(Classification::Hints(vec![Hint {
        scope,
        requirements: vec![
            RequirementId::NodeSaExists,
            RequirementId::NodeSaPermissions,
        ],
        node_service_accounts: email.into_iter().collect(),
        is_removal: true,
        deny_policies_changed: false,
        evidence,
    }]))
}

fn disable_service(entry: &LogEntry, evidence: Evidence) -> Result<Classification, IntakeError> {
    let payload = &entry.proto_payload;
    let request = payload.request_view();
    let request_name = request.as_ref().and_then(|r| r.name);
    let service = request_name
        .into_iter()
        .chain(payload.resource_name.as_deref())
        .find_map(|n| n.split_once("/services/").map(|(_, s)| s))
        .or_else(|| {
            payload
                .authorization_info
                .iter()
                .find_map(|a| a.resource.as_deref()?.strip_prefix("services/"))
        });
    let Some(service) = service else {
        return Ok(Classification::ignored("DisableService names no service"));
    };
    if service != CONTAINER_API {
        return Ok(Classification::ignored(format!(
            "DisableService of `{}` (only {CONTAINER_API} matters)",
            sanitize(service, 100)
        )));
    }
    let project = entry
        .resource
        .as_ref()
        .and_then(|r| r.labels.get("project_id"))
        .map(String::as_str)
        .into_iter()
        .chain(request_name.and_then(project_of_name))
        .chain(payload.resource_name.as_deref().and_then(project_of_name))
        .chain(entry.log_name.as_deref().and_then(project_of_name))
        .find_map(project_scope);
    let Some(scope) = project else {
        return Ok(Classification::ignored("DisableService names no project"));
    };
    Ok(Classification::Hints(vec![Hint {
        scope,
        requirements: vec![RequirementId::ContainerApiEnabled],
        node_service_accounts: Vec::new(),
        is_removal: true,
        deny_policies_changed: false,
        evidence,
    }]))
}

fn node_pool_change(entry: &LogEntry, evidence: Evidence) -> Result<Classification, IntakeError> {
    let payload = &entry.proto_payload;
    let operation = entry.operation.as_ref();
    let is_first = operation.and_then(|o| o.first).unwrap_or(false);
    let is_last_only = operation.and_then(|o| o.last).unwrap_or(false) && !is_first;
    let Some(request) = payload.request_view() else {
        // Only the `operation.first` entry carries the request; the last one merely confirms success.
        return Ok(Classification::ignored(format!(
            "{} entry without a request ({})",
            sanitize(payload.method_name.as_deref().unwrap_or_default(), 100),
            if is_last_only {
                "operation.last; the first entry carries the request"
            } else {
                "nothing to check"
            }
        )));
    };
    let project = payload
        .resource_name
        .as_deref()
        .and_then(project_of_name)
        .into_iter()
        .chain(request.parent.and_then(project_of_name))
        .chain(
            entry
                .resource
                .as_ref()
                .and_then(|r| r.labels.get("project_id"))
                .map(String::as_str),
        )
        .chain(entry.log_name.as_deref().and_then(project_of_name))
        .find_map(project_scope);
    let Some(scope) = project else {
        return Ok(Classification::ignored("node pool event names no project"));
    };
    Ok(Classification::Hints(vec![Hint {
        scope,
        requirements: vec![
            RequirementId::NodeSaPermissions,
            RequirementId::NodeSaExists,
        ],
        node_service_accounts: request.service_accounts,
        is_removal: false,
        deny_policies_changed: false,
        evidence,
    }]))
}

/// The valid service account emails among `candidates`, each once, in order.
fn unique_accounts<'a>(candidates: impl Iterator<Item = &'a str>) -> Vec<ServiceAccountEmail> {
    let mut emails: Vec<ServiceAccountEmail> = Vec::new();
    for candidate in candidates {
        if let Ok(email) = ServiceAccountEmail::parse(candidate)
            && !emails.contains(&email)
        {
            emails.push(email);
        }
    }
    emails
}

/// `P` from `projects/P/...` (not the wildcard `-`).
fn project_of_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("projects/")?;
    let project = rest.split('/').next()?;
    (project != "-" && !project.is_empty()).then_some(project)
}

/// `P` from `NAME@P.iam.gserviceaccount.com`.
fn project_of_sa_email(email: &str) -> Option<&str> {
    email
        .split_once('@')?
        .1
        .strip_suffix(".iam.gserviceaccount.com")
}

fn scope_from_resource_labels(resource: Option<&MonitoredResource>) -> Option<Scope> {
    let resource = resource?;
    let labels = &resource.labels;
    match resource.kind.as_deref() {
        Some("folder") => labels
            .get("folder_id")
            .and_then(|f| resource_scope(&format!("folders/{f}"))),
        Some("organization") => labels
            .get("organization_id")
            .and_then(|o| resource_scope(&format!("organizations/{o}"))),
        _ => labels.get("project_id").and_then(|p| project_scope(p)),
    }
}

fn scope_label(scope: &Scope) -> String {
    match scope {
        Scope::Project(p) => format!("projects/{p}"),
        Scope::Folder(f) => format!("folders/{f}"),
        Scope::Organization(o) => format!("organizations/{o}"),
        Scope::Configured => "the configured scope".into(),
    }
}

#[cfg(test)]
mod handled_methods_tests {
    use super::*;

    #[test]
    fn every_handled_method_is_dispatched_and_nothing_else_is() {
        for (service, method) in HANDLED_METHODS
            .iter()
            .copied()
            .chain([("iam.googleapis.com", "CreateServiceAccount")])
        {
            let entry = serde_json::json!({
                "protoPayload": {
                    "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                    "serviceName": service,
                    "methodName": format!("google.x.v1.Api.{method}"),
                    "resourceName": "projects/demo-project",
                },
                "resource": {"type": "project", "labels": {"project_id": "demo-project"}},
            });
            let message = crate::intake::Message {
                data: entry.to_string().into_bytes(),
                ..Default::default()
            };
            let result = crate::intake::classify(&message);
            let unhandled = matches!(&result, Ok(crate::intake::Classification::Ignored { reason }) if reason.contains("is not an event we act on"));
            let listed = HANDLED_METHODS.contains(&(service, method));
            assert_eq!(!unhandled, listed, "{service} {method}: {result:?}");
        }
    }
}
