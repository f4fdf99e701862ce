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
use serde_json::Value;

use super::{
    Classification, Evidence, Hint, IntakeError, Message, Obj, Scope, Source, decode,
    is_agent_role, member_service_account, project_scope, requirements_for_removed_roles,
    resource_scope, sanitize,
};
use crate::domain::iam::{Member, Role, ServiceAccountEmail};
use crate::domain::requirements::{CONTAINER_API, RequirementId};

const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";
const TIMESTAMP_ATTRIBUTE: &str = "logging.googleapis.com/timestamp";

/// A LogEntry. `P` is the audit log payload: [`RawAuditLog`] when decoded from a parsed JSON value (the
/// fallback path), [`TypedAuditLog`] when decoded straight from the message bytes in one pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogEntry<P> {
    #[serde(default)]
    pub(super) insert_id: Option<String>,
    #[serde(default)]
    pub(super) log_name: Option<String>,
    #[serde(default)]
    pub(super) timestamp: Option<String>,
    #[serde(default)]
    pub(super) resource: Option<MonitoredResource>,
    #[serde(default)]
    pub(super) operation: Option<Operation>,
    pub(super) proto_payload: P,
}

#[derive(Deserialize, Default)]
pub(super) struct MonitoredResource {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
pub(super) struct Operation {
    #[serde(default)]
    first: Option<bool>,
    #[serde(default)]
    last: Option<bool>,
}

/// The AuditLog payload. `R` is the shape of `request` and `D` that of `serviceData` / `metadata`: JSON
/// values in [`RawAuditLog`], typed structs in [`TypedAuditLog`].
#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "R: Deserialize<'de>, D: Deserialize<'de>")
)]
pub(super) struct AuditLog<R, D> {
    #[serde(default, rename = "@type")]
    payload_type: Option<String>,
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
    request: Option<R>,
    #[serde(default)]
    service_data: Option<D>,
    #[serde(default)]
    metadata: Option<D>,
}

/// The payload decoded from a `serde_json::Value` (the fallback path, whose errors name the failing
/// field): `request` and the delta holders are kept as JSON and read only where needed.
type RawAuditLog = AuditLog<Value, Value>;

/// The payload decoded from bytes in the same pass as the rest of the message: every part read is typed.
/// Objects are required where the raw path looks fields up by name (a non-object there fails this
/// decode, and the message is classified by the raw path instead).
pub(super) type TypedAuditLog = AuditLog<Obj<TypedRequest>, Obj<DeltaHolder>>;

/// What the classification reads from `request`.
struct RequestView<'a> {
    name: Option<&'a str>,
    parent: Option<&'a str>,
    service_accounts: Vec<ServiceAccountEmail>,
}

/// The parts of an [`AuditLog`] whose shape differs between the raw and the typed decode.
trait Parts {
    /// `request`'s name, parent and requested node service accounts, when a request is present.
    fn request_view(&self) -> Option<RequestView<'_>>;
    /// `policyDelta.bindingDeltas` of `serviceData` then `metadata` (duplicates once).
    fn deltas(&self) -> Result<Vec<BindingDelta>, IntakeError>;
}

impl Parts for RawAuditLog {
    fn request_view(&self) -> Option<RequestView<'_>> {
        let request = self.request.as_ref()?;
        Some(RequestView {
            name: request.get("name").and_then(Value::as_str),
            parent: request.get("parent").and_then(Value::as_str),
            service_accounts: requested_service_accounts(request),
        })
    }

    fn deltas(&self) -> Result<Vec<BindingDelta>, IntakeError> {
        let mut deltas = deltas_at(
            self.service_data.clone(),
            "audit log protoPayload.serviceData",
        )?;
        for delta in deltas_at(self.metadata.clone(), "audit log protoPayload.metadata")? {
            if !deltas.contains(&delta) {
                deltas.push(delta);
            }
        }
        Ok(deltas)
    }
}

impl Parts for TypedAuditLog {
    fn request_view(&self) -> Option<RequestView<'_>> {
        let Obj(request) = self.request.as_ref()?;
        fn config(c: &Option<Obj<TypedNodeConfig>>) -> Option<&str> {
            c.as_ref().and_then(|Obj(c)| c.service_account.as_deref())
        }
        let cluster = request.cluster.as_ref().map(|Obj(c)| c);
        let direct = [
            request
                .node_pool
                .as_ref()
                .and_then(|Obj(p)| config(&p.config)),
            cluster.and_then(|c| config(&c.node_config)),
            cluster
                .and_then(|c| c.autoscaling.as_ref())
                .and_then(|Obj(a)| config(&a.autoprovisioning_node_pool_defaults)),
        ];
        let pools = cluster
            .and_then(|c| c.node_pools.as_ref())
            .into_iter()
            .flatten()
            .take(1000)
            .map(|Obj(p)| config(&p.config));
        Some(RequestView {
            name: request.name.as_deref(),
            parent: request.parent.as_deref(),
            service_accounts: unique_accounts(direct.into_iter().chain(pools).flatten()),
        })
    }

    fn deltas(&self) -> Result<Vec<BindingDelta>, IntakeError> {
        fn at(holder: &Option<Obj<DeltaHolder>>) -> &[BindingDelta] {
            holder
                .as_ref()
                .and_then(|Obj(h)| h.policy_delta.as_ref())
                .map(|d| d.binding_deltas.as_slice())
                .unwrap_or_default()
        }
        let mut deltas = at(&self.service_data).to_vec();
        for delta in at(&self.metadata) {
            if !deltas.contains(delta) {
                deltas.push(delta.clone());
            }
        }
        Ok(deltas)
    }
}

/// `request` of a CreateCluster / CreateNodePool / UpdateNodePool (or any method: only `name` and
/// `parent` are read elsewhere), typed.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct TypedRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    node_pool: Option<Obj<TypedNodePool>>,
    #[serde(default)]
    cluster: Option<Obj<TypedCluster>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct TypedCluster {
    #[serde(default)]
    node_config: Option<Obj<TypedNodeConfig>>,
    #[serde(default)]
    autoscaling: Option<Obj<TypedAutoscaling>>,
    #[serde(default)]
    node_pools: Option<Vec<Obj<TypedNodePool>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct TypedAutoscaling {
    #[serde(default)]
    autoprovisioning_node_pool_defaults: Option<Obj<TypedNodeConfig>>,
}

#[derive(Deserialize, Default)]
pub(super) struct TypedNodePool {
    #[serde(default)]
    config: Option<Obj<TypedNodeConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct TypedNodeConfig {
    #[serde(default)]
    service_account: Option<String>,
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
pub(super) struct DeltaHolder {
    #[serde(default)]
    policy_delta: Option<PolicyDelta>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct PolicyDelta {
    #[serde(default)]
    pub(super) binding_deltas: Vec<BindingDelta>,
}

#[derive(Deserialize, Clone, PartialEq)]
pub(super) struct BindingDelta {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    member: Option<String>,
}

/// Classifies a LogEntry (a JSON object with `protoPayload`) from a parsed JSON value: the fallback
/// path, whose errors name the failing field.
pub(super) fn classify(message: &Message, value: Value) -> Result<Classification, IntakeError> {
    let payload_type = value
        .get("protoPayload")
        .and_then(|p| p.get("@type"))
        .and_then(Value::as_str);
    if payload_type != Some(AUDIT_LOG_TYPE) {
        return Ok(not_an_audit_log(payload_type));
    }
    let entry: LogEntry<RawAuditLog> = decode(value, "audit log entry")?;
    classify_entry(message, &entry)
}

/// Classifies a LogEntry decoded in one pass from the message bytes.
pub(super) fn classify_typed(
    message: &Message,
    entry: &LogEntry<TypedAuditLog>,
) -> Result<Classification, IntakeError> {
    let payload_type = entry.proto_payload.payload_type.as_deref();
    if payload_type != Some(AUDIT_LOG_TYPE) {
        return Ok(not_an_audit_log(payload_type));
    }
    classify_entry(message, entry)
}

fn not_an_audit_log(payload_type: Option<&str>) -> Classification {
    Classification::ignored(format!(
        "log entry protoPayload is `{}`, not an AuditLog",
        sanitize(payload_type.unwrap_or("(no @type)"), 100)
    ))
}

fn classify_entry<R, D>(
    message: &Message,
    entry: &LogEntry<AuditLog<R, D>>,
) -> Result<Classification, IntakeError>
where
    AuditLog<R, D>: Parts,
{
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

fn set_iam_policy<R, D>(
    entry: &LogEntry<AuditLog<R, D>>,
    mut evidence: Evidence,
) -> Result<Classification, IntakeError>
where
    AuditLog<R, D>: Parts,
{
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

    let deltas = payload.deltas()?;
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
fn deny_policy_change<R, D>(
    entry: &LogEntry<AuditLog<R, D>>,
    evidence: Evidence,
) -> Result<Classification, IntakeError>
where
    AuditLog<R, D>: Parts,
{
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

/// Reads `policyDelta.bindingDeltas` from `serviceData` or `metadata`, if that object has one.
fn deltas_at(holder: Option<Value>, what: &'static str) -> Result<Vec<BindingDelta>, IntakeError> {
    let Some(holder @ Value::Object(_)) = holder else {
        return Ok(Vec::new());
    };
    let holder: DeltaHolder = decode(holder, what)?;
    Ok(holder.policy_delta.unwrap_or_default().binding_deltas)
}

fn service_account_removed<R, D>(
    entry: &LogEntry<AuditLog<R, D>>,
    evidence: Evidence,
) -> Result<Classification, IntakeError>
where
    AuditLog<R, D>: Parts,
{
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

fn disable_service<R, D>(
    entry: &LogEntry<AuditLog<R, D>>,
    evidence: Evidence,
) -> Result<Classification, IntakeError>
where
    AuditLog<R, D>: Parts,
{
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

fn node_pool_change<R, D>(
    entry: &LogEntry<AuditLog<R, D>>,
    evidence: Evidence,
) -> Result<Classification, IntakeError>
where
    AuditLog<R, D>: Parts,
{
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

/// Node service accounts named by a CreateCluster / CreateNodePool / UpdateNodePool request. The literal
/// `"default"` (the Compute default account) needs the project number, which the core resolves; it is not
/// listed here.
fn requested_service_accounts(request: &Value) -> Vec<ServiceAccountEmail> {
    const DIRECT: [&str; 3] = [
        "/nodePool/config/serviceAccount",
        "/cluster/nodeConfig/serviceAccount",
        "/cluster/autoscaling/autoprovisioningNodePoolDefaults/serviceAccount",
    ];
    let pools = request
        .pointer("/cluster/nodePools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let candidates = DIRECT
        .iter()
        .filter_map(|p| request.pointer(p))
        .chain(
            pools
                .take(1000)
                .filter_map(|pool| pool.pointer("/config/serviceAccount")),
        )
        .filter_map(Value::as_str);
    unique_accounts(candidates)
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
