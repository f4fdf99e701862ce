//! Tests for intake: every fixture under `tests/fixtures/intake/`, malformed input, and a property test that
//! arbitrary input never panics.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::Value;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/intake/",
            $name
        ))
    };
}

fn message(data: &str) -> Message {
    Message {
        message_id: "42".into(),
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn hints(data: &str) -> Vec<Hint> {
    match classify(&message(data)) {
        Ok(Classification::Hints(hints)) => hints,
        other => panic!("expected hints, got {other:?}"),
    }
}

fn one_hint(data: &str) -> Hint {
    let mut all = hints(data);
    assert_eq!(all.len(), 1, "expected exactly one hint: {all:?}");
    all.remove(0)
}

fn ignored_reason(data: &str) -> String {
    match classify(&message(data)) {
        Ok(Classification::Ignored { reason }) => reason,
        other => panic!("expected ignored, got {other:?}"),
    }
}

fn sa(email: &str) -> ServiceAccountEmail {
    ServiceAccountEmail::parse(email).unwrap()
}

fn project(p: &str) -> Scope {
    Scope::Project(p.into())
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

// ---- push envelopes ----

#[test]
fn wrapped_envelope_from_a_log_sink_yields_the_decoded_entry_and_metadata() {
    let msg = parse_push(
        fixture!("push-wrapped-audit-log.json").as_bytes(),
        Some("application/json"),
        &HeaderMap::new(),
    )
    .unwrap();
    assert_eq!(msg.message_id, "5187581549398349");
    assert_eq!(msg.publish_time.as_deref(), Some("2025-06-02T09:15:05.56Z"));
    assert_eq!(
        msg.subscription.as_deref(),
        Some("projects/demo-project/subscriptions/remediator-push")
    );
    assert_eq!(
        msg.attributes["logging.googleapis.com/timestamp"],
        "2025-06-02T09:15:03.118273Z"
    );
    assert_eq!(msg.delivery_attempt, None);
    assert!(
        msg.data.ends_with(b"}\n"),
        "the sink's trailing newline is kept in data"
    );
    let hint = match classify(&msg).unwrap() {
        Classification::Hints(mut h) => h.remove(0),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        hint.evidence.message_id.as_deref(),
        Some("5187581549398349")
    );
    assert_eq!(hint.scope, project("demo-project"));
}

#[test]
fn wrapped_envelope_with_every_optional_field_is_read() {
    let msg = parse_push(
        fixture!("push-wrapped-maximal.json").as_bytes(),
        None,
        &HeaderMap::new(),
    )
    .unwrap();
    assert_eq!(msg.delivery_attempt, Some(5));
    assert_eq!(msg.attributes["key"], "value");
    assert_eq!(msg.data, b"Hello Cloud Pub/Sub! Here is my message!");
    // Not JSON and not a recommendation name: an error.
    let err = classify(&msg).unwrap_err();
    assert!(matches!(err, IntakeError::NotJson { .. }), "{err}");
}

#[test]
fn emulator_envelope_with_escaped_slashes_and_snake_case_keys_is_read() {
    let msg = parse_push(
        fixture!("push-emulator-wrapped.json").as_bytes(),
        Some("application/json"),
        &HeaderMap::new(),
    )
    .unwrap();
    assert_eq!(msg.message_id, "1");
    assert_eq!(
        msg.publish_time.as_deref(),
        Some("2026-11-29T00:30:23.618Z")
    );
    assert_eq!(
        msg.subscription.as_deref(),
        Some("projects/demo-project/subscriptions/push-ok")
    );
    assert_eq!(
        one_hint(std::str::from_utf8(&msg.data).unwrap()).scope,
        project("demo-project")
    );
}

#[test]
fn unwrapped_push_from_the_emulator_takes_metadata_and_attributes_from_headers() {
    let h = headers(&[
        ("x-goog-pubsub-message-id", "7"),
        ("x-goog-pubsub-publish-time", "2026-11-29T00:30:23.618Z"),
        (
            "x-goog-pubsub-subscription-name",
            "projects/demo-project/subscriptions/push-nowrap",
        ),
        ("origin", "sink"),
        ("user-agent", "Java/17.0.15"),
        ("authorization", "Bearer secret"),
        (
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1",
        ),
    ]);
    let body = fixture!("push-unwrapped-body.json");
    let msg = parse_push(
        body.as_bytes(),
        Some("application/x-www-form-urlencoded"),
        &h,
    )
    .unwrap();
    assert_eq!(msg.message_id, "7");
    assert_eq!(
        msg.publish_time.as_deref(),
        Some("2026-11-29T00:30:23.618Z")
    );
    assert_eq!(
        msg.subscription.as_deref(),
        Some("projects/demo-project/subscriptions/push-nowrap")
    );
    assert_eq!(msg.attributes.len(), 1, "{:?}", msg.attributes);
    assert_eq!(msg.attributes["origin"], "sink");
    assert_eq!(msg.data, body.as_bytes());
    assert_eq!(
        one_hint(body).requirements,
        vec![
            RequirementId::NodeSaExists,
            RequirementId::NodeSaPermissions
        ]
    );
}

#[test]
fn unwrapped_json_push_without_metadata_is_raw_data_with_an_empty_message_id() {
    let body = fixture!("sweep-empty.json");
    let msg = parse_push(body.as_bytes(), Some("application/json"), &HeaderMap::new()).unwrap();
    assert_eq!(msg.message_id, "");
    assert_eq!(msg.data, body.as_bytes());
    assert_eq!(
        classify(&msg).unwrap(),
        classify(&message(body)).unwrap().without_message_id()
    );
}

impl Classification {
    fn without_message_id(mut self) -> Self {
        if let Classification::Hints(h) = &mut self {
            h.iter_mut().for_each(|h| h.evidence.message_id = None);
        }
        self
    }
}

#[test]
fn envelope_errors_name_the_failing_field() {
    let err = parse_push(
        br#"{"message":{"data":"e30=","messageId":7}}"#,
        None,
        &HeaderMap::new(),
    )
    .unwrap_err();
    match err {
        IntakeError::Json { path, .. } => assert_eq!(path, "message.messageId"),
        other => panic!("{other:?}"),
    }
    let err = parse_push(br#"{"message":{"data":"e30="}}"#, None, &HeaderMap::new()).unwrap_err();
    assert!(err.to_string().contains("messageId"), "{err}");
}

#[test]
fn wrong_base64_is_an_error() {
    let err = parse_push(
        br#"{"message":{"data":"not base64!!","messageId":"1"}}"#,
        None,
        &HeaderMap::new(),
    )
    .unwrap_err();
    assert!(matches!(err, IntakeError::BadBase64(_)), "{err}");
}

#[test]
fn base64_without_padding_is_accepted() {
    let msg = parse_push(
        br#"{"message":{"data":"e30","messageId":"1"}}"#,
        None,
        &HeaderMap::new(),
    )
    .unwrap();
    assert_eq!(msg.data, b"{}");
}

#[test]
fn truncated_envelope_json_is_reported_as_not_json() {
    let body = fixture!("push-wrapped-audit-log.json");
    let err = parse_push(&body.as_bytes()[..body.len() / 2], None, &HeaderMap::new()).unwrap_err();
    assert!(
        matches!(
            err,
            IntakeError::NotJson {
                what: "push body",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn oversized_bodies_and_data_are_rejected_before_decoding() {
    let huge = vec![b'a'; MAX_PUSH_BODY_BYTES + 1];
    assert!(matches!(
        parse_push(&huge, None, &HeaderMap::new()),
        Err(IntakeError::BodyTooLarge { .. })
    ));
    let data = base64::engine::general_purpose::STANDARD.encode(vec![b' '; MAX_DATA_BYTES + 10]);
    let body = format!(r#"{{"message":{{"data":"{data}","messageId":"1"}}}}"#);
    assert!(matches!(
        parse_push(body.as_bytes(), None, &HeaderMap::new()),
        Err(IntakeError::DataTooLarge { .. })
    ));
    let raw = vec![b'x'; MAX_DATA_BYTES + 1];
    assert!(matches!(
        parse_push(
            &raw,
            Some("application/octet-stream"),
            &headers(&[("x-goog-pubsub-message-id", "1")])
        ),
        Err(IntakeError::DataTooLarge { .. })
    ));
}

#[test]
fn unsupported_content_types_are_rejected() {
    let err = parse_push(
        b"{}",
        Some("multipart/form-data; boundary=x"),
        &HeaderMap::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, IntakeError::UnsupportedContentType(_)),
        "{err}"
    );
    assert!(
        parse_push(
            b"{}",
            Some("Application/JSON; charset=utf-8"),
            &HeaderMap::new()
        )
        .is_ok()
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        classify(&message(&deep)),
        Err(IntakeError::TooDeep { .. })
    ));
    let body = format!(r#"{{"message":{}}}"#, "{\"a\":".repeat(10_000));
    assert!(matches!(
        parse_push(body.as_bytes(), None, &HeaderMap::new()),
        Err(IntakeError::TooDeep { .. })
    ));
    // Brackets inside strings do not count.
    let quoted = format!(r#"{{"sweep":{{}},"note":"{}"}}"#, "[".repeat(1000));
    assert!(
        classify(&message(&quoted)).is_err(),
        "unknown sweep keys are rejected, but not for depth"
    );
    assert!(!matches!(
        classify(&message(&quoted)),
        Err(IntakeError::TooDeep { .. })
    ));
}

#[test]
fn data_that_is_not_utf8_is_an_error() {
    let msg = Message {
        message_id: "1".into(),
        data: vec![b'{', 0xff, b'}'],
        ..Default::default()
    };
    assert_eq!(classify(&msg), Err(IntakeError::NotUtf8 { valid_up_to: 1 }));
}

// ---- audit logs ----

#[test]
fn removing_the_node_role_yields_a_node_permissions_hint_for_the_project() {
    let hint = one_hint(fixture!("audit-set-iam-policy-remove-service-data.json"));
    assert_eq!(hint.scope, project("demo-project"));
    assert_eq!(hint.requirements, vec![RequirementId::NodeSaPermissions]);
    assert_eq!(
        hint.node_service_accounts,
        vec![sa("gke-nodes@demo-project.iam.gserviceaccount.com")]
    );
    assert!(hint.is_removal);
    let e = &hint.evidence;
    assert_eq!(e.source, Source::AuditLog);
    assert_eq!(e.actor.as_deref(), Some("alice@example.com"));
    assert_eq!(e.method.as_deref(), Some("SetIamPolicy"));
    assert_eq!(e.insert_id.as_deref(), Some("-8kq2fme1x3c4"));
    assert_eq!(
        e.log_timestamp.as_deref(),
        Some("2025-06-02T09:15:03.118273Z")
    );
    assert_eq!(e.removed.len(), 1);
    assert_eq!(
        e.removed[0].0.as_str(),
        "roles/container.defaultNodeServiceAccount"
    );
}

#[test]
fn deltas_under_metadata_are_read_and_folder_scope_is_kept() {
    let hint = one_hint(fixture!("audit-set-iam-policy-remove-metadata-folder.json"));
    assert_eq!(hint.scope, Scope::Folder("987654321098".into()));
    assert_eq!(hint.requirements, vec![RequirementId::GkeServiceAgent]);
    assert!(
        hint.node_service_accounts.is_empty(),
        "a service agent is not a node service account"
    );
    assert_eq!(
        hint.evidence.removed.len(),
        1,
        "the ADD delta is not reported as removed"
    );
}

#[test]
fn removing_any_other_role_asks_to_reverify_everything_in_the_organization() {
    let hint = one_hint(fixture!("audit-set-iam-policy-remove-custom-role-org.json"));
    assert_eq!(hint.scope, Scope::Organization("112233445566".into()));
    assert!(hint.requirements.is_empty());
    assert_eq!(
        hint.node_service_accounts,
        vec![sa("123456789012-compute@developer.gserviceaccount.com")]
    );
}

#[test]
fn removing_editor_points_at_the_apis_agent_and_node_permissions() {
    let text = fixture!("audit-set-iam-policy-remove-service-data.json")
        .replace("roles/container.defaultNodeServiceAccount", "roles/editor");
    assert_eq!(
        one_hint(&text).requirements,
        vec![
            RequirementId::NodeSaPermissions,
            RequirementId::GoogleApisServiceAgent
        ]
    );
}

#[test]
fn the_same_delta_in_both_locations_is_counted_once() {
    let mut entry: Value =
        serde_json::from_str(fixture!("audit-set-iam-policy-remove-service-data.json")).unwrap();
    let delta = entry["protoPayload"]["serviceData"].clone();
    entry["protoPayload"]["metadata"] = delta;
    assert_eq!(one_hint(&entry.to_string()).evidence.removed.len(), 1);
}

#[test]
fn only_added_bindings_are_ignored() {
    let reason = ignored_reason(fixture!("audit-set-iam-policy-add-only.json"));
    assert!(reason.contains("removed no binding"), "{reason}");
}

#[test]
fn failed_calls_are_ignored() {
    let reason = ignored_reason(fixture!("audit-set-iam-policy-failed.json"));
    assert!(reason.contains("status.code=7"), "{reason}");
}

#[test]
fn set_iam_policy_of_other_services_is_ignored() {
    let reason = ignored_reason(fixture!("audit-set-iam-policy-other-service.json"));
    assert!(reason.contains("pubsub.googleapis.com"), "{reason}");
}

#[test]
fn a_forged_entry_naming_roles_owner_yields_at_most_a_reverify_hint() {
    let hint = one_hint(fixture!("audit-forged-owner.json"));
    // The hint carries no role to grant and no member: only a scope and requirement ids from the fixed list.
    assert!(
        hint.requirements.is_empty(),
        "re-verify everything, grant nothing named by the message"
    );
    assert!(hint.requirements.iter().all(|r| {
        r.restore_role()
            .is_none_or(|role| role.as_str() != "roles/owner")
    }));
    assert_eq!(
        hint.evidence.actor.as_deref(),
        Some("mallory@attacker.example")
    );
    // The removal is reported as evidence only.
    assert_eq!(hint.evidence.removed[0].0.as_str(), "roles/owner");
    // And with the REMOVE taken out, the message asks for nothing at all.
    let add_only = fixture!("audit-forged-owner.json").replace("\"REMOVE\"", "\"ADD\"");
    ignored_reason(&add_only);
}

#[test]
fn creating_a_deny_policy_on_a_project_marks_its_deny_policies_changed_and_rechecks_node_permissions()
 {
    let hint = one_hint(fixture!("audit-create-deny-policy-project.json"));
    // resourceName names the project by number (as Google returns names).
    assert_eq!(hint.scope, project("123456789012"));
    assert!(hint.deny_policies_changed);
    assert_eq!(hint.requirements, vec![RequirementId::NodeSaPermissions]);
    assert!(
        !hint.is_removal,
        "nothing to wait for: a deny rule is not ours to undo"
    );
    assert_eq!(
        hint.evidence.method.as_deref(),
        Some("google.iam.v2.Policies.CreatePolicy")
    );
    // Without resourceName, the request's parent (here by project id) names the attachment point.
    let mut entry: Value =
        serde_json::from_str(fixture!("audit-create-deny-policy-project.json")).unwrap();
    entry["protoPayload"]
        .as_object_mut()
        .unwrap()
        .remove("resourceName");
    let hint = one_hint(&entry.to_string());
    assert_eq!(hint.scope, project("demo-project"));
    assert!(hint.deny_policies_changed);
}

#[test]
fn deleting_a_deny_policy_of_a_folder_is_read_from_the_request_name_under_either_encoding() {
    let hint = one_hint(fixture!("audit-delete-deny-policy-folder.json"));
    assert_eq!(hint.scope, Scope::Folder("334444035081".into()));
    assert!(hint.deny_policies_changed);
    for name in [
        "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F123/denypolicies/x",
        "policies/cloudresourcemanager.googleapis.com/organizations/123/denypolicies/x",
        "policies/%2F%2Fcloudresourcemanager.googleapis.com%2Forganizations%2F123/denypolicies/x",
    ] {
        let data = fixture!("audit-delete-deny-policy-folder.json").replace(
            "policies/cloudresourcemanager.googleapis.com%252Ffolders%252F334444035081/denypolicies/fence-metrics",
            name,
        );
        assert_eq!(
            one_hint(&data).scope,
            Scope::Organization("123".into()),
            "{name}"
        );
    }
    // Not a deny policy of a project, folder or organization: ignored, with the name in the reason.
    for name in [
        "policies/cloudresourcemanager.googleapis.com%2Ffolders%2Fnot-a-number/denypolicies/x",
        "policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fp/otherpolicies/x",
        "policies/storage.googleapis.com%2Fbuckets%2Fb/denypolicies/x",
        "projects/p/locations/global/policies/x",
    ] {
        let data = fixture!("audit-delete-deny-policy-folder.json").replace(
            "policies/cloudresourcemanager.googleapis.com%252Ffolders%252F334444035081/denypolicies/fence-metrics",
            name,
        );
        let reason = ignored_reason(&data);
        assert!(reason.contains("names no deny policy"), "{name}: {reason}");
    }
}

#[test]
fn deleting_a_service_account_hints_at_existence_and_permissions_with_its_email() {
    let hint = one_hint(fixture!("audit-delete-service-account.json"));
    assert_eq!(hint.scope, project("demo-project"));
    assert_eq!(
        hint.requirements,
        vec![
            RequirementId::NodeSaExists,
            RequirementId::NodeSaPermissions
        ]
    );
    assert_eq!(
        hint.node_service_accounts,
        vec![sa("gke-nodes@demo-project.iam.gserviceaccount.com")]
    );
    assert!(hint.is_removal);
    assert_eq!(
        hint.evidence.method.as_deref(),
        Some("google.iam.admin.v1.DeleteServiceAccount")
    );
}

#[test]
fn disabling_a_service_account_named_by_unique_id_takes_the_email_from_labels() {
    let hint = one_hint(fixture!("audit-disable-service-account.json"));
    assert_eq!(
        hint.node_service_accounts,
        vec![sa("gke-nodes@demo-project.iam.gserviceaccount.com")]
    );
    assert_eq!(hint.scope, project("demo-project"));
    // Without labels the project still comes from the request name.
    let mut entry: Value =
        serde_json::from_str(fixture!("audit-disable-service-account.json")).unwrap();
    entry["resource"] = serde_json::json!({"type": "service_account", "labels": {}});
    let hint = one_hint(&entry.to_string());
    assert_eq!(hint.scope, project("demo-project"));
    assert!(hint.node_service_accounts.is_empty());
}

#[test]
fn disabling_the_container_api_hints_at_the_api_requirement() {
    let hint = one_hint(fixture!("audit-disable-service-container.json"));
    assert_eq!(hint.scope, project("demo-project"));
    assert_eq!(hint.requirements, vec![RequirementId::ContainerApiEnabled]);
    assert!(hint.is_removal);
}

#[test]
fn disabling_another_api_is_ignored() {
    let reason = ignored_reason(fixture!("audit-disable-service-other.json"));
    assert!(reason.contains("bigquery.googleapis.com"), "{reason}");
}

#[test]
fn creating_a_node_pool_hints_at_its_service_account_from_the_first_entry() {
    let hint = one_hint(fixture!("audit-create-node-pool-first.json"));
    assert_eq!(hint.scope, project("demo-project"));
    assert_eq!(
        hint.requirements,
        vec![
            RequirementId::NodeSaPermissions,
            RequirementId::NodeSaExists
        ]
    );
    assert_eq!(
        hint.node_service_accounts,
        vec![sa("gke-nodes@demo-project.iam.gserviceaccount.com")]
    );
    assert!(!hint.is_removal);
    assert_eq!(
        hint.evidence.actor.as_deref(),
        Some("terraform@demo-project.iam.gserviceaccount.com")
    );
}

#[test]
fn the_last_entry_of_a_node_pool_operation_is_ignored() {
    let reason = ignored_reason(fixture!("audit-create-node-pool-last.json"));
    assert!(reason.contains("operation.last"), "{reason}");
}

#[test]
fn creating_a_cluster_collects_every_named_node_service_account_but_not_default() {
    let hint = one_hint(fixture!("audit-create-cluster-autopilot.json"));
    assert_eq!(
        hint.node_service_accounts,
        vec![
            sa("autopilot-nodes@demo-project.iam.gserviceaccount.com"),
            sa("gke-nodes@demo-project.iam.gserviceaccount.com"),
        ]
    );
}

#[test]
fn a_node_pool_created_without_a_service_account_still_hints_at_the_project() {
    let text = fixture!("audit-create-node-pool-first.json").replace(
        r#""serviceAccount": "gke-nodes@demo-project.iam.gserviceaccount.com""#,
        r#""diskSizeGb": 100"#,
    );
    let hint = one_hint(&text);
    assert!(hint.node_service_accounts.is_empty());
    assert_eq!(hint.scope, project("demo-project"));
}

#[test]
fn unknown_audit_methods_are_ignored_with_the_method_named() {
    let reason = ignored_reason(fixture!("audit-unknown-method.json"));
    assert!(reason.contains("v1.compute.instances.insert"), "{reason}");
}

#[test]
fn log_entries_that_are_not_audit_logs_are_ignored() {
    let reason = ignored_reason(
        r#"{"logName":"projects/p/logs/x","protoPayload":{"@type":"type.googleapis.com/google.appengine.logging.v1.RequestLog"}}"#,
    );
    assert!(reason.contains("not an AuditLog"), "{reason}");
    ignored_reason(r#"{"logName":"projects/p/logs/x","textPayload":"hello"}"#);
}

#[test]
fn audit_entries_with_wrongly_typed_fields_name_the_path() {
    let err = classify(&message(
        r#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"cloudresourcemanager.googleapis.com","methodName":"SetIamPolicy","resourceName":"projects/demo-project","serviceData":{"policyDelta":{"bindingDeltas":"REMOVE"}}}}"#,
    ))
    .unwrap_err();
    match err {
        IntakeError::Json { path, .. } => {
            assert_eq!(path, "protoPayload.serviceData.policyDelta.bindingDeltas")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_project_names_in_an_entry_yield_no_hint() {
    let text = fixture!("audit-set-iam-policy-remove-service-data.json")
        .replace("\"projects/demo-project\"", "\"projects/Not A Project\"")
        .replace(
            "\"project_id\": \"demo-project\"",
            "\"project_id\": \"../../etc\"",
        );
    ignored_reason(&text);
}

// ---- recommendations ----

const REC_NAME: &str = "projects/123456789012/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations/0a1b2c3d-0000-4e5f-8a9b-123456789abc";

#[test]
fn a_node_sa_recommendation_body_yields_a_node_permissions_hint_with_its_etag() {
    let hint = one_hint(fixture!("recommendation-body.json"));
    assert_eq!(hint.scope, project("123456789012"));
    assert_eq!(hint.requirements, vec![RequirementId::NodeSaPermissions]);
    assert!(!hint.is_removal);
    assert_eq!(
        hint.evidence.recommendation,
        Some(RecommendationRef {
            name: REC_NAME.into(),
            etag: Some("\"4f2c0e5e1d3b7a90\"".into())
        })
    );
}

#[test]
fn other_recommendation_subtypes_are_ignored() {
    let reason = ignored_reason(fixture!("recommendation-other-subtype.json"));
    assert!(reason.contains("CLUSTER_IDLE"), "{reason}");
}

#[test]
fn a_recommendation_already_succeeded_is_ignored() {
    ignored_reason(&fixture!("recommendation-body.json").replace("ACTIVE", "SUCCEEDED"));
}

#[test]
fn a_recommendation_named_in_plain_text_or_json_yields_the_same_scope() {
    let plain = one_hint(fixture!("recommendation-name.txt"));
    let reference = one_hint(fixture!("recommendation-reference.json"));
    let quoted = one_hint(&format!("\"{REC_NAME}\""));
    for hint in [&plain, &reference, &quoted] {
        assert_eq!(hint.scope, project("123456789012"));
        assert_eq!(
            hint.evidence.recommendation.as_ref().unwrap().name,
            REC_NAME
        );
    }
    assert_eq!(
        reference.evidence.recommendation.unwrap().etag.as_deref(),
        Some("\"4f2c0e5e1d3b7a90\"")
    );
    assert_eq!(plain.evidence.recommendation.unwrap().etag, None);
}

#[test]
fn recommendations_of_other_recommenders_are_ignored() {
    let name = REC_NAME.replace(
        "google.container.DiagnosisRecommender",
        "google.iam.policy.Recommender",
    );
    let reason = ignored_reason(&name);
    assert!(reason.contains("google.iam.policy.Recommender"), "{reason}");
}

#[test]
fn a_bad_recommendation_reference_is_an_error() {
    let err = classify(&message(
        r#"{"recommendation":"projects/p/recommendations"}"#,
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            IntakeError::Invalid {
                what: "recommendation name",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_recommendation_name_that_could_change_the_request_url_is_refused_in_every_form() {
    let base = "projects/123456789012/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations";
    let bad = [
        format!("{base}/0a1b?alt=media"),
        format!("{base}/0a1b#x"),
        format!("{base}/0a1b:markSucceeded"),
        format!("{base}/.."),
        format!("{base}/%2e%2e"),
        format!("{base}/0a1b%2F..%2F"),
        format!("{base}/"),
        REC_NAME.replace("us-central1", ".."),
        REC_NAME.replace("us-central1", "US_CENTRAL1"),
        REC_NAME.replace("123456789012", "Not_A_Project"),
        REC_NAME.replace("projects/123456789012", "folders/abc"),
        REC_NAME.replace("google.container.DiagnosisRecommender", ".hidden"),
        format!("{REC_NAME}/extra"),
    ];
    for name in &bad {
        let forms = [
            name.clone(),
            serde_json::json!(name).to_string(),
            serde_json::json!({ "recommendation": name }).to_string(),
            with_value_at(
                fixture!("recommendation-body.json"),
                "/name",
                serde_json::json!(name),
            ),
        ];
        for data in forms {
            assert!(
                matches!(
                    classify(&message(&data)),
                    Err(IntakeError::Invalid {
                        what: "recommendation name",
                        ..
                    })
                ),
                "{data}: {:?}",
                classify(&message(&data))
            );
        }
    }
    // The documented shapes are taken: a folder's finding points at the folder, a billing account's
    // is valid but not ours.
    let folder = REC_NAME.replace("projects/123456789012", "folders/987654321098");
    assert_eq!(
        one_hint(&folder).scope,
        Scope::Folder("987654321098".into())
    );
    let billing = REC_NAME.replace(
        "projects/123456789012",
        "billingAccounts/01AB23-45CD67-89EF01",
    );
    assert!(ignored_reason(&billing).contains("billingAccounts"));
}

// ---- asset feed ----

#[test]
fn an_asset_feed_policy_losing_a_grant_yields_a_removal_hint_for_the_project_number() {
    let hint = one_hint(fixture!("asset-feed-project-removal.json"));
    assert_eq!(hint.scope, project("123456789012"));
    assert_eq!(hint.requirements, vec![RequirementId::NodeSaPermissions]);
    assert!(hint.is_removal);
    assert_eq!(
        hint.node_service_accounts,
        vec![sa("gke-nodes@demo-project.iam.gserviceaccount.com")]
    );
    assert_eq!(hint.evidence.source, Source::AssetFeed);
    assert_eq!(
        hint.evidence.log_timestamp.as_deref(),
        Some("2025-06-02T09:15:03.118273Z")
    );
}

#[test]
fn an_asset_feed_change_that_only_adds_is_ignored() {
    ignored_reason(fixture!("asset-feed-project-add-only.json"));
}

#[test]
fn a_deleted_asset_is_ignored_with_a_reason() {
    assert!(ignored_reason(fixture!("asset-feed-deleted.json")).contains("deleted"));
}

#[test]
fn a_grant_made_conditional_counts_as_removed() {
    let mut feed: Value =
        serde_json::from_str(fixture!("asset-feed-project-removal.json")).unwrap();
    feed["asset"]["iamPolicy"]["bindings"][0]["condition"] =
        serde_json::json!({"expression": "false"});
    feed["asset"]["iamPolicy"]["bindings"][1]["condition"] =
        serde_json::json!({"expression": "false"});
    let hint = one_hint(&feed.to_string());
    assert_eq!(hint.evidence.removed.len(), 3);
    assert!(
        hint.requirements.is_empty(),
        "roles/owner was among them: re-verify everything"
    );
}

// ---- sweep and unknown ----

#[test]
fn a_sweep_request_yields_one_hint_per_scope() {
    let all = hints(fixture!("sweep-scopes.json"));
    let scopes: Vec<_> = all.iter().map(|h| h.scope.clone()).collect();
    assert_eq!(
        scopes,
        vec![
            project("123456789012"),
            project("demo-project"),
            Scope::Folder("987654321098".into())
        ]
    );
    assert!(
        all.iter().all(|h| h.requirements.is_empty()
            && !h.is_removal
            && h.evidence.source == Source::Sweep)
    );
}

#[test]
fn an_empty_sweep_means_the_configured_scope() {
    assert_eq!(
        one_hint(fixture!("sweep-empty.json")).scope,
        Scope::Configured
    );
    assert_eq!(one_hint(r#"{"sweep":null}"#).scope, Scope::Configured);
}

#[test]
fn a_sweep_with_a_typo_or_a_bad_name_is_an_error() {
    assert!(matches!(
        classify(&message(r#"{"sweep":{"project":["p"]}}"#)),
        Err(IntakeError::Json { .. })
    ));
    assert!(matches!(
        classify(&message(r#"{"sweep":{"projects":["projects/x/zones/y"]}}"#)),
        Err(IntakeError::Invalid { .. })
    ));
    assert!(matches!(
        classify(&message(r#"{"sweep":{"folder":"abc"}}"#)),
        Err(IntakeError::Invalid { .. })
    ));
}

#[test]
fn unknown_json_shapes_are_ignored_with_their_keys() {
    let reason = ignored_reason(fixture!("unknown-shape.json"));
    assert_eq!(
        reason,
        "unknown JSON message shape (keys: bucket, kind, name)"
    );
    ignored_reason("[1,2,3]");
    ignored_reason("\"hello\"");
    assert_eq!(ignored_reason(" \n"), "message data is empty");
}

#[test]
fn classifications_serialize_for_logs() {
    let hints = classify(&message(fixture!("sweep-empty.json"))).unwrap();
    let json = serde_json::to_value(&hints).unwrap();
    assert_eq!(json["classification"], "hints");
    assert_eq!(
        json["detail"][0]["scope"],
        serde_json::json!({"kind": "configured"})
    );
    let ignored = serde_json::to_value(Classification::ignored("x")).unwrap();
    assert_eq!(
        ignored,
        serde_json::json!({"classification": "ignored", "detail": {"reason": "x"}})
    );
}

#[test]
fn source_serializes_in_kebab_case() {
    assert_eq!(serde_json::to_value(Source::AuditLog).unwrap(), "audit-log");
    assert_eq!(
        serde_json::to_value(Source::AssetFeed).unwrap(),
        "asset-feed"
    );
}

// ---- robustness ----

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_parse_push_or_classify(body in proptest::collection::vec(any::<u8>(), 0..512),
                                                          wrapped in any::<bool>()) {
        let content_type = if wrapped { Some("application/json") } else { Some("application/octet-stream") };
        if let Ok(msg) = parse_push(&body, content_type, &HeaderMap::new()) {
            let _ = classify(&msg);
        }
        let _ = classify(&Message { data: body, ..Default::default() });
    }

    #[test]
    fn arbitrary_json_like_text_never_panics(text in r#"[{}\[\]":,a-z0-9@/. \\-]{0,300}"#) {
        let _ = parse_push(text.as_bytes(), Some("application/json"), &HeaderMap::new());
        let _ = classify(&message(&text));
    }

    #[test]
    fn mutated_fixtures_never_panic(index in 0usize..FIXTURES.len(), cut in 0usize..4000, byte in any::<u8>()) {
        let mut data = FIXTURES[index].as_bytes().to_vec();
        if !data.is_empty() {
            let at = cut % data.len();
            data[at] = byte;
            let _ = classify(&Message { data: data.clone(), ..Default::default() });
            data.truncate(at);
            let _ = classify(&Message { data, ..Default::default() });
        }
    }
}

const FIXTURES: [&str; 14] = [
    fixture!("audit-create-deny-policy-project.json"),
    fixture!("audit-delete-deny-policy-folder.json"),
    fixture!("audit-set-iam-policy-remove-service-data.json"),
    fixture!("audit-set-iam-policy-remove-metadata-folder.json"),
    fixture!("audit-delete-service-account.json"),
    fixture!("audit-disable-service-container.json"),
    fixture!("audit-create-node-pool-first.json"),
    fixture!("audit-create-cluster-autopilot.json"),
    fixture!("recommendation-body.json"),
    fixture!("recommendation-reference.json"),
    fixture!("asset-feed-project-removal.json"),
    fixture!("sweep-scopes.json"),
    fixture!("push-wrapped-audit-log.json"),
    fixture!("audit-forged-owner.json"),
];

fn wrapped(message_id: &str, attributes: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(b"{\"sweep\": {}}"),
            "messageId": message_id,
            "attributes": attributes,
        },
        "subscription": "projects/ops/subscriptions/s",
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_message_id_longer_than_pub_sub_ever_sends_is_refused_before_it_is_stored() {
    let body = wrapped(&"9".repeat(MAX_MESSAGE_ID_BYTES), serde_json::json!({}));
    assert_eq!(
        parse_push(&body, Some("application/json"), &HeaderMap::new())
            .unwrap()
            .message_id
            .len(),
        MAX_MESSAGE_ID_BYTES
    );
    let huge = wrapped(&"9".repeat(1_500_000), serde_json::json!({}));
    let err = parse_push(&huge, Some("application/json"), &HeaderMap::new()).unwrap_err();
    assert!(
        matches!(
            err,
            IntakeError::Invalid {
                what: "message id",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().len() < 200,
        "the error does not quote the id"
    );
    // The unwrapped form: the id from the header.
    let long = "7".repeat(MAX_MESSAGE_ID_BYTES + 1);
    let err = parse_push(
        b"{}",
        Some("application/json"),
        &headers(&[("x-goog-pubsub-message-id", &long)]),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            IntakeError::Invalid {
                what: "message id",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attributes_beyond_pub_sub_limits_are_refused_in_an_envelope() {
    let too_many: serde_json::Map<String, serde_json::Value> = (0..=MAX_ATTRIBUTES)
        .map(|i| (format!("k{i}"), serde_json::json!("v")))
        .collect();
    let long_key = serde_json::json!({ "k".repeat(MAX_ATTRIBUTE_KEY_BYTES + 1): "v" });
    let long_value = serde_json::json!({ "k": "v".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1) });
    for (what, attributes) in [
        ("attributes", serde_json::Value::Object(too_many)),
        ("attribute key", long_key),
        ("attribute value", long_value),
    ] {
        let err = parse_push(
            &wrapped("1", attributes),
            Some("application/json"),
            &HeaderMap::new(),
        )
        .unwrap_err();
        assert!(
            matches!(err, IntakeError::Invalid { what: w, .. } if w == what),
            "{what}: {err}"
        );
    }
    let long_subscription = serde_json::json!({
        "message": {"data": "", "messageId": "1"},
        "subscription": "s".repeat(MAX_SUBSCRIPTION_BYTES + 1),
    })
    .to_string();
    assert!(matches!(
        parse_push(
            long_subscription.as_bytes(),
            Some("application/json"),
            &HeaderMap::new()
        ),
        Err(IntakeError::Invalid {
            what: "subscription",
            ..
        })
    ));
}

#[test]
fn oversized_headers_of_an_unwrapped_push_are_not_taken_as_attributes() {
    let value = "v".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1);
    let m = parse_push(
        b"{}",
        Some("application/json"),
        &headers(&[
            ("x-goog-pubsub-message-id", "5"),
            ("color", "blue"),
            ("huge", &value),
        ]),
    )
    .unwrap();
    assert_eq!(m.attributes.get("color").map(String::as_str), Some("blue"));
    assert!(!m.attributes.contains_key("huge"));
}

#[test]
fn evidence_strings_are_cut_and_an_oversized_actor_is_dropped() {
    let mut entry: serde_json::Value =
        serde_json::from_str(fixture!("audit-set-iam-policy-remove-service-data.json")).unwrap();
    entry["insertId"] = serde_json::json!("i".repeat(10_000));
    entry["protoPayload"]["authenticationInfo"]["principalEmail"] =
        serde_json::json!(format!("{}@example.com", "a".repeat(10_000)));
    let hint = one_hint(&entry.to_string());
    let e = &hint.evidence;
    assert!(e.insert_id.as_ref().unwrap().len() <= MAX_EVIDENCE_BYTES + '…'.len_utf8());
    assert_eq!(e.actor, None, "an actor past any email's length is dropped");
}

#[test]
fn excerpt_cuts_on_a_character_boundary_and_replaces_control_characters() {
    assert_eq!(excerpt("short", 10), "short");
    assert_eq!(excerpt("a\nb", 10), "a?b");
    // 'é' is two bytes: cutting at 2 must not split it.
    assert_eq!(excerpt("aéb", 2), "a…");
    assert_eq!(excerpt(&"x".repeat(1000), 4), "xxxx…");
}

#[test]
fn a_decode_error_quoting_a_huge_client_string_is_cut_before_it_can_reach_a_log() {
    let mut entry: serde_json::Value =
        serde_json::from_str(fixture!("audit-set-iam-policy-remove-service-data.json")).unwrap();
    // A string where the entry has a list: serde's message quotes the whole string.
    entry["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"] =
        serde_json::json!("x".repeat(1_000_000));
    let err = classify(&message(&entry.to_string())).unwrap_err();
    assert!(matches!(err, IntakeError::Json { .. }), "{err}");
    assert!(
        err.to_string().len() < 1000,
        "{} bytes",
        err.to_string().len()
    );
}

// --- Every shape is decoded by one typed path whose errors name the field ---------------------------

/// `data` with the value at JSON `pointer` replaced by `with`.
fn with_value_at(data: &str, pointer: &str, with: Value) -> String {
    let mut value: Value = serde_json::from_str(data).unwrap();
    *value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = with;
    value.to_string()
}

#[test]
fn a_wrongly_typed_field_of_every_shape_is_refused_with_its_path() {
    let cases = [
        (
            fixture!("audit-set-iam-policy-remove-service-data.json"),
            "/protoPayload/serviceName",
            serde_json::json!(5),
            "audit log entry",
            "protoPayload.serviceName",
        ),
        (
            fixture!("audit-create-node-pool-first.json"),
            "/protoPayload/authenticationInfo/principalEmail",
            serde_json::json!(["x"]),
            "audit log entry",
            "protoPayload.authenticationInfo.principalEmail",
        ),
        (
            fixture!("audit-set-iam-policy-remove-metadata-folder.json"),
            "/protoPayload/metadata/policyDelta/bindingDeltas/0/role",
            serde_json::json!({}),
            "audit log entry",
            "protoPayload.metadata.policyDelta.bindingDeltas[0].role",
        ),
        (
            fixture!("recommendation-body.json"),
            "/stateInfo/state",
            serde_json::json!(1),
            "recommendation",
            "stateInfo.state",
        ),
        (
            fixture!("recommendation-reference.json"),
            "/recommendation",
            serde_json::json!(7),
            "recommendation reference",
            "recommendation",
        ),
        (
            fixture!("asset-feed-project-removal.json"),
            "/asset/iamPolicy/bindings",
            serde_json::json!("none"),
            "asset feed message",
            "asset.iamPolicy.bindings",
        ),
        (
            fixture!("sweep-scopes.json"),
            "/sweep/projects",
            serde_json::json!("p"),
            "sweep request",
            "sweep.projects",
        ),
    ];
    for (fixture, pointer, with, shape, field) in cases {
        let data = with_value_at(fixture, pointer, with);
        match classify(&message(&data)) {
            Err(IntakeError::Json { what, path, .. }) => {
                assert_eq!((what, path.as_str()), (shape, field), "{data}")
            }
            other => panic!("{pointer}: {other:?}"),
        }
    }
    let envelope = with_value_at(
        fixture!("push-wrapped-audit-log.json"),
        "/message/attributes",
        serde_json::json!(["k", "v"]),
    );
    match parse_push(envelope.as_bytes(), None, &HeaderMap::new()) {
        Err(IntakeError::Json { what, path, .. }) => {
            assert_eq!(
                (what, path.as_str()),
                ("push envelope", "message.attributes")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_method_specific_request_or_delta_holder_of_another_kind_reads_as_absent_not_as_an_error() {
    // `request` and `serviceData` change shape with every method and service: intake reads them by
    // name where they are objects, as the entry's own fields are strict.
    let pool = fixture!("audit-create-node-pool-first.json");
    let hint = one_hint(&with_value_at(
        pool,
        "/protoPayload/request/nodePool",
        serde_json::json!(["config"]),
    ));
    assert!(hint.node_service_accounts.is_empty());
    assert_eq!(hint.scope, project("demo-project"));
    let hint = one_hint(&with_value_at(
        pool,
        "/protoPayload/request",
        serde_json::json!(5),
    ));
    assert!(
        hint.node_service_accounts.is_empty(),
        "a request, but no object"
    );
    let set = fixture!("audit-set-iam-policy-remove-metadata-folder.json");
    let reason = ignored_reason(&with_value_at(
        set,
        "/protoPayload/metadata",
        serde_json::json!("policyDelta"),
    ));
    assert!(reason.contains("removed no binding"), "{reason}");
}

#[test]
fn a_duplicated_key_is_refused_rather_than_one_copy_chosen() {
    let data = r#"{"sweep":{"projects":["a-project"],"projects":["b-project"]}}"#;
    assert!(
        matches!(classify(&message(data)), Err(IntakeError::Json { .. })),
        "{:?}",
        classify(&message(data))
    );
}
