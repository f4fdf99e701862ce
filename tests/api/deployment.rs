//! Deployment assets stay consistent with the code: the Terraform under `terraform/` (parsed with
//! `hcl-rs`, never matched with regular expressions) and the `Dockerfile`.
//!
//! - the audit-log sink's method names are exactly the ones intake acts on;
//! - the conditional `setIamPolicy` grant allows exactly the roles the requirement list restores;
//! - push subscriptions carry an OIDC token and a dead-letter policy;
//! - the runtime account holds no primitive role, the service is internal and never public;
//! - the image's runtime stage is distroless, non-root, with an exec-form entrypoint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gke_iam_remediator::domain::requirements::{RequirementId, restorable_roles};
use hcl::{Block, Body, Expression, ObjectKey};

const PRIMITIVE_ROLES: [&str; 3] = ["roles/owner", "roles/editor", "roles/viewer"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn module_dir() -> PathBuf {
    repo().join("terraform/modules/gke-iam-remediator")
}

fn tf_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') {
                tf_files_under(&path, out);
            }
        } else if name.ends_with(".tf") {
            out.push(path);
        }
    }
}

/// Every `.tf` file under `dir`, parsed.
fn parse_dir(dir: &Path) -> Vec<(PathBuf, Body)> {
    let mut files = Vec::new();
    tf_files_under(dir, &mut files);
    assert!(!files.is_empty(), "no .tf files under {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, body)
        })
        .collect()
}

/// All top-level blocks of the module, from every file.
fn module_blocks() -> Vec<Block> {
    parse_dir(&module_dir())
        .into_iter()
        .flat_map(|(_, body)| body.into_blocks())
        .collect()
}

fn label(block: &Block, i: usize) -> &str {
    match &block.labels[i] {
        hcl::BlockLabel::String(s) => s,
        hcl::BlockLabel::Identifier(id) => id.as_str(),
    }
}

/// `resource "TYPE" "NAME"` blocks as `(type, name, body)`.
fn resources(blocks: &[Block]) -> Vec<(String, String, &Body)> {
    blocks
        .iter()
        .filter(|b| b.identifier() == "resource")
        .map(|b| (label(b, 0).to_owned(), label(b, 1).to_owned(), b.body()))
        .collect()
}

fn resources_of<'a>(blocks: &'a [Block], kind: &str) -> Vec<(String, &'a Body)> {
    resources(blocks)
        .into_iter()
        .filter(|(t, _, _)| t == kind)
        .map(|(_, n, b)| (n, b))
        .collect()
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn nested<'a>(body: &'a Body, ident: &str) -> Vec<&'a Body> {
    body.blocks()
        .filter(|b| b.identifier() == ident)
        .map(|b| b.body())
        .collect()
}

/// Every `locals` entry of the module.
fn locals(blocks: &[Block]) -> BTreeMap<String, Expression> {
    let mut out = BTreeMap::new();
    for block in blocks.iter().filter(|b| b.identifier() == "locals") {
        for a in block.body().attributes() {
            let previous = out.insert(a.key().to_owned(), a.expr().clone());
            assert!(previous.is_none(), "local.{} is defined twice", a.key());
        }
    }
    out
}

fn variable<'a>(blocks: &'a [Block], name: &str) -> &'a Body {
    blocks
        .iter()
        .find(|b| b.identifier() == "variable" && label(b, 0) == name)
        .unwrap_or_else(|| panic!("variable {name} is not declared"))
        .body()
}

/// An expression printed back as HCL (to see what it references).
fn render(expr: &Expression) -> String {
    hcl::format::to_string(expr).unwrap()
}

fn literal(expr: &Expression) -> Option<&str> {
    match expr {
        Expression::String(s) => Some(s),
        Expression::TemplateExpr(t) => match t.as_ref() {
            hcl::TemplateExpr::QuotedString(s) if !s.contains("${") && !s.contains("%{") => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn string_list(expr: &Expression) -> Vec<String> {
    let Expression::Array(items) = expr else {
        panic!("not a list: {}", render(expr));
    };
    items
        .iter()
        .map(|e| {
            literal(e)
                .unwrap_or_else(|| panic!("not a string: {}", render(e)))
                .to_owned()
        })
        .collect()
}

fn object_key(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Identifier(id) => id.as_str().to_owned(),
        ObjectKey::Expression(e) => literal(e)
            .unwrap_or_else(|| panic!("not a literal key: {}", render(e)))
            .to_owned(),
        other => panic!("unexpected object key {other:?}"),
    }
}

fn object(expr: &Expression) -> Vec<(String, &Expression)> {
    let Expression::Object(map) = expr else {
        panic!("not an object: {}", render(expr));
    };
    map.iter().map(|(k, v)| (object_key(k), v)).collect()
}

fn is_traversal_to(expr: &Expression, wanted: &str) -> bool {
    matches!(expr, Expression::Traversal(_)) && render(expr) == wanted
}

#[test]
fn the_sink_filter_names_exactly_the_audit_log_methods_intake_handles() {
    let blocks = module_blocks();
    let locals = locals(&blocks);

    let mut in_filter = BTreeSet::new();
    for (service, methods) in object(&locals["audit_log_methods"]) {
        for method in string_list(methods) {
            assert!(
                !method.contains('.'),
                "{method}: list the last segment of methodName, as intake compares it"
            );
            in_filter.insert((service.clone(), method));
        }
    }
    let handled: BTreeSet<(String, String)> = gke_iam_remediator::intake::HANDLED_METHODS
        .iter()
        .map(|(s, m)| (s.to_string(), m.to_string()))
        .collect();
    assert_eq!(in_filter, handled);

    // Every service has its extra condition entry (possibly empty), and the filter is built from both.
    let services: BTreeSet<String> = object(&locals["audit_log_methods"])
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let conditions: BTreeSet<String> = object(&locals["audit_log_conditions"])
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(services, conditions);
    let filter = render(&locals["sink_filter"]);
    for wanted in [
        "local.audit_log_methods",
        "local.audit_log_conditions",
        "cloudaudit.googleapis.com%2Factivity",
        "protoPayload.methodName=~",
    ] {
        assert!(
            filter.contains(wanted),
            "sink_filter lacks {wanted}: {filter}"
        );
    }

    // One sink per level, each with that filter; folder and organization sinks include children.
    for kind in [
        "google_logging_project_sink",
        "google_logging_folder_sink",
        "google_logging_organization_sink",
    ] {
        let sinks = resources_of(&blocks, kind);
        assert_eq!(sinks.len(), 1, "{kind}");
        let (_, body) = &sinks[0];
        assert!(
            is_traversal_to(attr(body, "filter").unwrap(), "local.sink_filter"),
            "{kind} filter"
        );
        assert!(attr(body, "count").is_some(), "{kind} is selected by count");
        if kind == "google_logging_project_sink" {
            assert_eq!(
                attr(body, "unique_writer_identity"),
                Some(&Expression::Bool(true))
            );
        } else {
            assert_eq!(
                attr(body, "include_children"),
                Some(&Expression::Bool(true))
            );
        }
    }
}

#[test]
fn the_conditional_set_iam_policy_grant_allows_exactly_the_roles_the_requirements_restore() {
    let blocks = module_blocks();
    let locals = locals(&blocks);

    // The module's requirement -> role map is the requirement list's.
    let in_module: BTreeMap<String, String> = object(&locals["requirement_restore_roles"])
        .into_iter()
        .map(|(id, role)| (id, literal(role).unwrap().to_owned()))
        .collect();
    let in_code: BTreeMap<String, String> = RequirementId::ALL
        .iter()
        .filter_map(|r| Some((r.as_str().to_owned(), r.restore_role()?.as_str().to_owned())))
        .collect();
    assert_eq!(in_module, in_code);
    let roles_in_module: BTreeSet<&String> = in_module.values().collect();
    let roles_in_code: Vec<String> = restorable_roles()
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(roles_in_module, roles_in_code.iter().collect());

    // By default the module enables exactly the requirements restored by default (roles/editor for the
    // Google APIs service agent is opt-in), and the variable accepts exactly the binding requirements.
    let restore = variable(&blocks, "restore_requirements");
    let default: BTreeSet<String> = string_list(attr(restore, "default").unwrap())
        .into_iter()
        .collect();
    let by_default: BTreeSet<String> = RequirementId::ALL
        .iter()
        .filter(|r| r.restored_by_default() && r.restore_role().is_some())
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(default, by_default);
    let validation = render(attr(nested(restore, "validation")[0], "condition").unwrap());
    for id in in_code.keys() {
        assert!(
            validation.contains(&format!("\"{id}\"")),
            "{id} not accepted"
        );
    }
    for r in RequirementId::ALL
        .iter()
        .filter(|r| r.restore_role().is_none())
    {
        assert!(
            !validation.contains(&format!("\"{}\"", r.as_str())),
            "{} is opt-in by its own flag",
            r.as_str()
        );
    }

    // The condition is built from the enabled requirements' roles only.
    let restorable = render(&locals["restorable_roles"]);
    assert!(
        restorable.contains("var.restore_requirements"),
        "{restorable}"
    );
    assert!(
        restorable.contains("local.requirement_restore_roles"),
        "{restorable}"
    );
    let condition = render(&locals["set_iam_policy_condition"]);
    assert!(
        condition
            .contains("api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(["),
        "{condition}"
    );
    assert!(condition.contains("local.restorable_roles"), "{condition}");

    // The conditional grant's role is a custom role with exactly the two calls a restoration makes (no
    // predefined role: roles/resourcemanager.projectIamAdmin also carries policy-binding permissions
    // that the condition does not restrict).
    assert_eq!(
        string_list(&locals["set_iam_policy_permissions"]),
        [
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.setIamPolicy"
        ]
    );
    let setter_roles: Vec<_> = resources(&blocks)
        .into_iter()
        .filter(|(kind, name, _)| kind.ends_with("_iam_custom_role") && name == "set_iam_policy")
        .collect();
    assert_eq!(
        setter_roles.len(),
        2,
        "project and organization custom roles"
    );
    for (kind, name, body) in &setter_roles {
        assert!(
            is_traversal_to(
                attr(body, "permissions").unwrap(),
                "local.set_iam_policy_permissions"
            ),
            "{kind}.{name}"
        );
    }
    let role_local = render(&locals["set_iam_policy_role"]);
    assert!(
        role_local.contains("google_project_iam_custom_role.set_iam_policy")
            && role_local.contains("google_organization_iam_custom_role.set_iam_policy"),
        "{role_local}"
    );

    // One conditional grant per level, each with that condition.
    let mut grants = 0;
    for (kind, name, body) in resources(&blocks) {
        let Some(c) = nested(body, "condition").first().copied() else {
            continue;
        };
        assert!(kind.ends_with("_iam_member"), "{kind}.{name}");
        // The state database grant (state.tf): roles/datastore.user on that one database only.
        if kind == "google_project_iam_member" && name == "runtime_state" {
            assert_eq!(
                attr(body, "role").and_then(literal),
                Some("roles/datastore.user")
            );
            let expression = render(attr(c, "expression").unwrap());
            assert!(
                expression.contains("resource.name == ")
                    && expression.contains("local.state_database"),
                "{expression}"
            );
            continue;
        }
        assert!(
            is_traversal_to(attr(body, "role").unwrap(), "local.set_iam_policy_role"),
            "{kind}.{name}"
        );
        assert!(
            is_traversal_to(
                attr(c, "expression").unwrap(),
                "local.set_iam_policy_condition"
            ),
            "{kind}.{name}"
        );
        grants += 1;
    }
    assert_eq!(grants, 3, "project, folder and organization grants");
}

#[test]
fn every_push_subscription_has_an_oidc_token_and_a_dead_letter_policy() {
    let mut push = 0;
    for (path, body) in parse_dir(&repo().join("terraform")) {
        let blocks: Vec<Block> = body.into_blocks().collect();
        for (name, sub) in resources_of(&blocks, "google_pubsub_subscription") {
            let Some(config) = nested(sub, "push_config").first().copied() else {
                continue;
            };
            let at = format!("{}: {name}", path.display());
            let oidc = nested(config, "oidc_token");
            assert_eq!(oidc.len(), 1, "{at}: oidc_token");
            assert!(
                render(attr(oidc[0], "service_account_email").unwrap())
                    .contains("google_service_account.invoker"),
                "{at}: pushes as the invoker account"
            );
            assert!(attr(oidc[0], "audience").is_some(), "{at}: audience");
            let endpoint = render(attr(config, "push_endpoint").unwrap());
            assert!(
                endpoint.ends_with("/pubsub/push\"") || endpoint.ends_with("/pubsub/notify\""),
                "{at}: endpoint {endpoint} is one of the service's push routes"
            );
            assert_eq!(
                nested(sub, "dead_letter_policy").len(),
                1,
                "{at}: dead_letter_policy"
            );
            assert_eq!(nested(sub, "retry_policy").len(), 1, "{at}: retry_policy");
            assert!(
                attr(sub, "ack_deadline_seconds").is_some(),
                "{at}: ack deadline"
            );
            push += 1;
        }
    }
    assert_eq!(
        push, 2,
        "events to /pubsub/push and notifications to /pubsub/notify"
    );
}

#[test]
fn the_runtime_account_is_granted_no_primitive_role() {
    let blocks = module_blocks();
    let locals = locals(&blocks);
    let mut runtime_grants = 0;
    for (kind, name, body) in resources(&blocks) {
        if !(kind.starts_with("google_")
            && (kind.contains("_iam_member") || kind.contains("_iam_binding")))
        {
            continue;
        }
        let role = attr(body, "role").unwrap_or_else(|| panic!("{kind}.{name} has no role"));
        if let Some(role) = literal(role) {
            assert!(
                !PRIMITIVE_ROLES.contains(&role),
                "{kind}.{name} grants {role}"
            );
        }
        let members = attr(body, "member")
            .or_else(|| attr(body, "members"))
            .map(render)
            .unwrap_or_default();
        if !(members.contains("local.runtime_member")
            || members.contains("google_service_account.runtime"))
        {
            continue;
        }
        runtime_grants += 1;
        // A runtime grant is a named predefined role or one of the module's custom roles.
        if literal(role).is_none() {
            let via = render(role);
            let local_name = via.strip_prefix("local.").unwrap_or_else(|| {
                panic!("{kind}.{name}: role {via} is neither a literal nor a local")
            });
            let definition = render(&locals[local_name]);
            assert!(
                definition.contains("_iam_custom_role."),
                "{kind}.{name}: {via} = {definition}"
            );
        }
    }
    assert!(runtime_grants >= 5, "{runtime_grants} runtime grants found");

    // The read-only role really is read-only: writes come only through the conditional grant.
    for key in ["reader_permissions_project", "reader_permissions_hierarchy"] {
        for p in string_list(&locals[key]) {
            assert!(
                !p.ends_with(".setIamPolicy")
                    && !p.ends_with(".enable")
                    && !p.ends_with(".undelete"),
                "{key}: {p}"
            );
        }
    }
}

#[test]
fn the_service_is_internal_only_and_nothing_is_public() {
    let blocks = module_blocks();
    let services = resources_of(&blocks, "google_cloud_run_v2_service");
    assert_eq!(services.len(), 1);
    let (_, service) = &services[0];
    assert_eq!(
        attr(service, "ingress").and_then(literal),
        Some("INGRESS_TRAFFIC_INTERNAL_ONLY")
    );
    let template = nested(service, "template")[0];
    assert!(attr(template, "max_instance_request_concurrency").is_some());
    assert!(attr(nested(template, "scaling")[0], "max_instance_count").is_some());

    // The only invoker of the service is the push account.
    let invokers = resources_of(&blocks, "google_cloud_run_v2_service_iam_member");
    assert_eq!(invokers.len(), 1);
    assert_eq!(
        attr(invokers[0].1, "role").and_then(literal),
        Some("roles/run.invoker")
    );
    assert!(is_traversal_to(
        attr(invokers[0].1, "member").unwrap(),
        "local.invoker_member"
    ));

    for (path, body) in parse_dir(&repo().join("terraform")) {
        let text = hcl::format::to_string(&body).unwrap();
        for public in ["allUsers", "allAuthenticatedUsers"] {
            assert!(!text.contains(public), "{}: {public}", path.display());
        }
    }
}

#[test]
fn push_authentication_is_one_of_the_two_cloud_run_models() {
    let blocks = module_blocks();
    let locals = locals(&blocks);
    let (_, service) = &resources_of(&blocks, "google_cloud_run_v2_service")[0];

    // The service is told which model it runs under, and what to check in the token's claims.
    let serve_env = render(&locals["serve_env"]);
    for key in [
        "REMEDIATOR_PUSH_AUTH = var.push_auth",
        "REMEDIATOR_PUSH_AUDIENCE = local.push_audience",
        "REMEDIATOR_PUSH_ALLOWED_EMAILS = google_service_account.invoker.email",
    ] {
        assert!(
            serve_env
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(key),
            "serve_env lacks {key}: {serve_env}"
        );
    }
    // `signed` switches Cloud Run's invoker check off (the service verifies the signature); `cloud-run`
    // keeps it on, with the push account as the only invoker. Never `none` in a deployment.
    assert_eq!(
        attr(service, "invoker_iam_disabled").map(render).as_deref(),
        Some("var.push_auth == \"signed\"")
    );
    let (_, invoker) = &resources_of(&blocks, "google_cloud_run_v2_service_iam_member")[0];
    assert_eq!(
        attr(invoker, "count").map(render).as_deref(),
        Some("var.push_auth == \"cloud-run\" ? 1 : 0")
    );
    let push_auth = hcl::format::to_string(variable(&blocks, "push_auth")).unwrap();
    assert!(
        push_auth.contains("contains([\"cloud-run\", \"signed\"], var.push_auth)"),
        "{push_auth}"
    );
}

#[test]
fn outcome_alerts_cover_service_and_job_and_wait_for_their_metric() {
    let blocks = module_blocks();
    let metrics = resources_of(&blocks, "google_logging_metric");
    let (_, metric) = metrics.iter().find(|(n, _)| n == "outcomes").unwrap();
    let filter = render(attr(metric, "filter").unwrap());
    assert!(
        filter.contains("cloud_run_revision") && filter.contains("cloud_run_job"),
        "{filter}"
    );
    // Cloud Monitoring knows a new log-based metric only minutes after Logging created it, and refuses an
    // alert policy naming it before then ("Cannot find metric(s)"): depends_on on the metric is not
    // enough, so the alerts and the dashboard wait for a time_sleep started by the metrics.
    let sleeps = resources_of(&blocks, "time_sleep");
    let (sleep_name, sleep) = sleeps
        .iter()
        .find(|(_, body)| {
            let text = hcl::format::to_string(*body).unwrap();
            text.contains("google_logging_metric.outcomes")
                && text.contains("google_logging_metric.ledger")
        })
        .expect("a time_sleep that starts when the outcome and ledger metrics exist");
    assert!(
        attr(sleep, "create_duration").is_some(),
        "time_sleep.{sleep_name} waits"
    );
    let wait = format!("time_sleep.{sleep_name}");
    let dashboards = resources_of(&blocks, "google_monitoring_dashboard");
    let dashboard_depends = attr(dashboards[0].1, "depends_on")
        .map(render)
        .unwrap_or_default();
    assert!(
        dashboard_depends.contains(&wait),
        "the dashboard must wait for {wait}: {dashboard_depends}"
    );
    let mut outcome_alerts = 0;
    for (name, policy) in resources_of(&blocks, "google_monitoring_alert_policy") {
        let text = hcl::format::to_string(policy).unwrap();
        if !text.contains("local.outcome_metric") {
            continue;
        }
        outcome_alerts += 1;
        assert!(text.contains("local.outcome_resources"), "{name}");
        let depends = attr(policy, "depends_on").map(render).unwrap_or_default();
        assert!(
            depends.contains("google_logging_metric.outcomes") && depends.contains(&wait),
            "alert policy {name} must depend on the log-based metric and wait for {wait}: {depends}"
        );
    }
    assert_eq!(outcome_alerts, 2, "failed and escalated");
}

#[test]
fn the_examples_pass_only_inputs_the_module_declares() {
    let blocks = module_blocks();
    let declared: BTreeSet<&str> = blocks
        .iter()
        .filter(|b| b.identifier() == "variable")
        .map(|b| label(b, 0))
        .collect();
    for example in ["single-project", "organization"] {
        let dir = repo().join("terraform/examples").join(example);
        let mut calls = 0;
        for (path, body) in parse_dir(&dir) {
            for module in body.blocks().filter(|b| b.identifier() == "module") {
                assert_eq!(
                    attr(module.body(), "source").and_then(literal),
                    Some("../../modules/gke-iam-remediator")
                );
                for a in module.body().attributes() {
                    assert!(
                        a.key() == "source" || declared.contains(a.key()),
                        "{}: {} is not a module input",
                        path.display(),
                        a.key()
                    );
                }
                calls += 1;
            }
        }
        assert_eq!(calls, 1, "{example}");
        assert!(dir.join("README.md").is_file(), "{example}/README.md");
    }
}

#[test]
fn the_image_runs_distroless_as_nonroot_with_an_exec_form_entrypoint() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    // Join continuation lines, drop comments and blanks.
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
        } else {
            current.push_str(line);
            lines.push(std::mem::take(&mut current));
        }
    }
    let instruction = |l: &str| {
        l.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    };

    assert!(
        lines.iter().any(|l| instruction(l) == "RUN"
            && l.contains("cargo build --release --locked --no-default-features")),
        "the builder runs the release build without the simulator"
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.contains("cargo clippy --locked --no-default-features"),
        "CI checks the image's configuration"
    );
    let last_from = lines
        .iter()
        .rposition(|l| instruction(l) == "FROM")
        .unwrap();
    let runtime = &lines[last_from..];
    let image = runtime[0].split_whitespace().nth(1).unwrap();
    assert!(
        image.starts_with("gcr.io/distroless/") && image.ends_with(":nonroot"),
        "runtime image {image}"
    );
    assert!(
        runtime.iter().all(|l| instruction(l) != "RUN"),
        "no shell in the runtime stage"
    );
    assert!(runtime.iter().any(|l| l == "USER nonroot"));
    let entrypoint = runtime
        .iter()
        .find(|l| instruction(l) == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let exec: Vec<String> = serde_json::from_str(entrypoint["ENTRYPOINT".len()..].trim())
        .unwrap_or_else(|e| panic!("ENTRYPOINT is not exec form ({e}): {entrypoint}"));
    assert_eq!(exec, ["/gke-iam-remediator"]);
    let cmd = runtime
        .iter()
        .find(|l| instruction(l) == "CMD")
        .expect("CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd["CMD".len()..].trim()).unwrap();
    assert_eq!(cmd, ["serve"]);
}
