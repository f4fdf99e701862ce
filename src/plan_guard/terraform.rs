//! The JSON of `terraform show -json PLANFILE` (format 1.x), read into what the plan guard needs:
//! each resource change with its actions, `before`, `after` and `after_unknown`, and the
//! configuration's references (to name what an unknown value will be) and provider projects.
//!
//! Pure: the caller reads the file. Only the parts of the format the guard uses are interpreted;
//! everything else is ignored, so later 1.x minor versions read the same.
//! Format: <https://developer.hashicorp.com/terraform/internals/json-format>.

use std::collections::BTreeMap;

use serde_json::Value;

/// Why a file is not a plan the guard can read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not JSON at all.
    #[error("{path}: not JSON: {source}")]
    Json {
        /// The file.
        path: String,
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
    /// JSON, but not the JSON of a plan.
    #[error("{path}: not a Terraform plan: {reason}")]
    NotAPlan {
        /// The file.
        path: String,
        /// What is wrong, and what to run instead.
        reason: String,
    },
}

/// What a resource change does, from its `actions` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `["create"]`.
    Create,
    /// `["update"]`.
    Update,
    /// `["delete"]`.
    Delete,
    /// `["delete","create"]` or `["create","delete"]`.
    Replace,
    /// `["no-op"]`, `["read"]`, `["forget"]` (a `removed` block with `destroy = false`): nothing
    /// changes in Google Cloud.
    None,
}

impl Action {
    fn parse(actions: &[Value]) -> Option<Self> {
        let names: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
        if names.len() != actions.len() {
            return None;
        }
        Some(match names.as_slice() {
            ["create"] => Self::Create,
            ["update"] => Self::Update,
            ["delete"] => Self::Delete,
            ["delete", "create"] | ["create", "delete"] => Self::Replace,
            ["no-op"] | ["read"] | ["forget"] | [] => Self::None,
            _ => return None,
        })
    }

    /// The resource exists before the plan (and is changed or removed).
    pub fn has_before(self) -> bool {
        matches!(self, Self::Update | Self::Delete | Self::Replace)
    }

    /// The resource exists after the plan.
    pub fn has_after(self) -> bool {
        matches!(self, Self::Create | Self::Update | Self::Replace)
    }
}

/// One entry of `resource_changes`.
#[derive(Clone, Debug)]
pub struct ResourceChange {
    /// Full address, modules and index included (`module.a["x"].google_project_iam_binding.b[0]`).
    pub address: String,
    /// The module instance (`module.a["x"]`), empty for the root module.
    pub module_address: String,
    /// Resource type (`google_project_iam_binding`).
    pub kind: String,
    /// Resource name (`b`).
    pub name: String,
    /// What the change does.
    pub action: Action,
    /// Values before (`null` when created).
    pub before: Value,
    /// Values after (`null` when deleted); values unknown until apply are absent here.
    pub after: Value,
    /// `true` (or nested `true`s) where a value is unknown until apply.
    pub after_unknown: Value,
}

/// A read plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `format_version`.
    pub format_version: String,
    /// `terraform_version`, when given.
    pub terraform_version: Option<String>,
    /// Managed resource changes, in the plan's order (data sources left out).
    pub changes: Vec<ResourceChange>,
    /// `prior_state` values of data sources and resources (`google_project` numbers), by address.
    pub prior: BTreeMap<String, (String, Value)>,
    /// The configuration: expressions and references, provider defaults.
    pub config: Config,
}

/// Reads the JSON text of `terraform show -json PLANFILE`. `path` names the file in errors.
pub fn parse(text: &[u8], path: &str) -> Result<Plan, PlanError> {
    let mut doc: Value = serde_json::from_slice(text).map_err(|source| PlanError::Json {
        path: path.to_owned(),
        source,
    })?;
    let not_a_plan = |reason: String| PlanError::NotAPlan {
        path: path.to_owned(),
        reason,
    };
    let Some(obj) = doc.as_object() else {
        return Err(not_a_plan(
            "the document is not a JSON object; give the output of `terraform show -json PLANFILE`"
                .to_owned(),
        ));
    };
    let Some(format_version) = obj.get("format_version").and_then(Value::as_str) else {
        return Err(not_a_plan(
            "no `format_version`; give the output of `terraform show -json PLANFILE`".to_owned(),
        ));
    };
    if !format_version.starts_with("1.") {
        return Err(not_a_plan(format!(
            "format_version {format_version} is not supported (1.x is)"
        )));
    }
    if !obj.contains_key("resource_changes") && !obj.contains_key("planned_values") {
        let what = if obj.contains_key("values") {
            "it is the JSON of a state (`terraform show -json` without a plan file)"
        } else {
            "it has neither `resource_changes` nor `planned_values`"
        };
        return Err(not_a_plan(format!(
            "{what}; run `terraform plan -out=PLANFILE` and give `terraform show -json PLANFILE`"
        )));
    }
    let format_version = format_version.to_owned();
    let terraform_version = obj
        .get("terraform_version")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut prior = BTreeMap::new();
    if let Some(root) = obj
        .get("prior_state")
        .and_then(|s| s.get("values"))
        .and_then(|v| v.get("root_module"))
    {
        collect_prior(root, &mut prior);
    }
    // The values are moved out of the document, not copied: a plan can be megabytes.
    let obj = doc.as_object_mut().expect("checked to be an object");
    let config = Config::new(obj.remove("configuration").unwrap_or(Value::Null));
    let mut listed = match obj.remove("resource_changes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(not_a_plan("`resource_changes` is not a list".to_owned())),
    };
    let mut changes = Vec::with_capacity(listed.len());
    for (i, rc) in listed.iter_mut().enumerate() {
        let field = |k: &str| rc.get(k).and_then(Value::as_str).unwrap_or_default();
        if field("mode") == "data" {
            continue;
        }
        let address = field("address").to_owned();
        let kind = field("type").to_owned();
        if address.is_empty() || kind.is_empty() {
            return Err(not_a_plan(format!(
                "resource_changes[{i}] has no `address` or `type`"
            )));
        }
        let module_address = field("module_address").to_owned();
        let name = field("name").to_owned();
        let mut change = rc.get_mut("change").map(Value::take).unwrap_or_default();
        let actions = change
            .get("actions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let action = Action::parse(actions).ok_or_else(|| {
            not_a_plan(format!(
                "resource_changes[{i}] ({address}): unknown actions {}",
                Value::Array(actions.to_vec())
            ))
        })?;
        let mut take = |k: &str| change.get_mut(k).map(Value::take).unwrap_or_default();
        changes.push(ResourceChange {
            module_address,
            name,
            address,
            kind,
            action,
            before: take("before"),
            after: take("after"),
            after_unknown: take("after_unknown"),
        });
    }
    Ok(Plan {
        format_version,
        terraform_version,
        changes,
        prior,
        config,
    })
}

fn collect_prior(module: &Value, out: &mut BTreeMap<String, (String, Value)>) {
    for r in module
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(address), Some(kind)) = (
            r.get("address").and_then(Value::as_str),
            r.get("type").and_then(Value::as_str),
        ) {
            let values = r.get("values").cloned().unwrap_or(Value::Null);
            out.insert(address.to_owned(), (kind.to_owned(), values));
        }
    }
    for child in module
        .get("child_modules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_prior(child, out);
    }
}

/// A value of the plan with its unknown marks: `after` beside `after_unknown` (or `before` with
/// nothing unknown), walked together.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    value: &'a Value,
    unknown: &'a Value,
}

/// A field read through a [`View`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field<T> {
    /// Known, with this value.
    Known(T),
    /// Known to be null (unset).
    Null,
    /// Known only after apply.
    Unknown,
}

impl<T> Field<T> {
    /// The value when known.
    pub fn known(self) -> Option<T> {
        match self {
            Self::Known(v) => Some(v),
            _ => None,
        }
    }

    /// True when known only after apply.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown)
    }
}

const NULL: Value = Value::Null;

impl<'a> View<'a> {
    /// A view of `value`, with `unknown` its `after_unknown` counterpart (`Value::Null` if none).
    pub fn new(value: &'a Value, unknown: &'a Value) -> Self {
        Self { value, unknown }
    }

    /// True when this whole value is unknown until apply.
    pub fn is_unknown(&self) -> bool {
        self.unknown == &Value::Bool(true)
    }

    /// True when null (unset) and not unknown.
    pub fn is_null(&self) -> bool {
        !self.is_unknown() && self.value.is_null()
    }

    /// The attribute `key`.
    pub fn get(&self, key: &str) -> View<'a> {
        View {
            value: self.value.get(key).unwrap_or(&NULL),
            unknown: self.unknown.get(key).unwrap_or(&NULL),
        }
    }

    /// Element `i` of a list (a nested block's first element: `.at(0)`).
    pub fn at(&self, i: usize) -> View<'a> {
        View {
            value: self.value.get(i).unwrap_or(&NULL),
            unknown: self.unknown.get(i).unwrap_or(&NULL),
        }
    }

    /// The elements of a list or set (empty when null or unknown).
    pub fn items(&self) -> Vec<View<'a>> {
        let n = self.value.as_array().map_or(0, Vec::len);
        (0..n).map(|i| self.at(i)).collect()
    }

    /// The raw JSON value (unknown parts absent).
    pub fn raw(&self) -> &'a Value {
        self.value
    }

    /// A string attribute.
    pub fn str(&self, key: &str) -> Field<String> {
        let v = self.get(key);
        if v.is_unknown() {
            Field::Unknown
        } else {
            match v.value {
                Value::String(s) => Field::Known(s.clone()),
                Value::Null => Field::Null,
                other => Field::Known(other.to_string()),
            }
        }
    }

    /// A boolean attribute.
    pub fn bool(&self, key: &str) -> Field<bool> {
        let v = self.get(key);
        if v.is_unknown() {
            Field::Unknown
        } else {
            match v.value {
                Value::Bool(b) => Field::Known(*b),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Field::Known(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Field::Known(false),
                _ => Field::Null,
            }
        }
    }

    /// A list or set of strings: the known elements, and the indexes of unknown ones (the whole
    /// collection unknown: `Unknown`).
    pub fn strs(&self, key: &str) -> Field<(Vec<String>, Vec<usize>)> {
        let v = self.get(key);
        if v.is_unknown() {
            return Field::Unknown;
        }
        match v.value {
            Value::Array(items) => {
                let mut known = Vec::new();
                let mut unknown = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let marked = v.unknown.get(i) == Some(&Value::Bool(true));
                    match item {
                        Value::String(s) if !marked => known.push(s.clone()),
                        _ => unknown.push(i),
                    }
                }
                // An element unknown in a set may be absent from `after` altogether.
                if let Some(marks) = v.unknown.as_array() {
                    for (i, mark) in marks.iter().enumerate().skip(items.len()) {
                        if *mark == Value::Bool(true) {
                            unknown.push(i);
                        }
                    }
                }
                Field::Known((known, unknown))
            }
            _ => Field::Null,
        }
    }
}

/// The plan's `configuration`: each resource's expressions (for the references of a value that is
/// unknown until apply), module calls and outputs (to follow a reference through modules), and the
/// provider configurations' `project`.
#[derive(Clone, Debug, Default)]
pub struct Config {
    root: Value,
}

/// One step of a module path: `module.NAME` with its instance key, if any.
fn module_names(module_address: &str) -> Vec<String> {
    // `module.a["x"].module.b[0]` -> [a, b]
    let mut out = Vec::new();
    let mut rest = module_address;
    while let Some(i) = rest.find("module.") {
        rest = &rest[i + "module.".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        rest = &rest[name.len()..];
        out.push(name);
    }
    out
}

/// The parent instance of a module instance (`module.a.module.b[0]` -> `module.a`).
pub fn parent_module(module_address: &str) -> Option<String> {
    if module_address.is_empty() {
        return None;
    }
    match module_address.rfind(".module.") {
        Some(i) => Some(module_address[..i].to_owned()),
        None => Some(String::new()),
    }
}

impl Config {
    fn new(root: Value) -> Self {
        Self { root }
    }

    /// The configuration of the module at `module_address` (instance keys ignored).
    fn module(&self, module_address: &str) -> Option<&Value> {
        let mut m = self.root.get("root_module")?;
        for name in module_names(module_address) {
            m = m.get("module_calls")?.get(&name)?.get("module")?;
        }
        Some(m)
    }

    /// The configuration block of a resource (`TYPE.NAME` in the module).
    fn resource(&self, module_address: &str, kind: &str, name: &str) -> Option<&Value> {
        self.module(module_address)?
            .get("resources")?
            .as_array()?
            .iter()
            .find(|r| {
                r.get("type").and_then(Value::as_str) == Some(kind)
                    && r.get("name").and_then(Value::as_str) == Some(name)
                    && r.get("mode").and_then(Value::as_str) != Some("data")
            })
    }

    /// The references of the expression that sets `path` of a resource (`["member"]`,
    /// `["node_config", "0", "service_account"]`).
    pub fn references(
        &self,
        module_address: &str,
        kind: &str,
        name: &str,
        path: &[&str],
    ) -> Vec<String> {
        let Some(mut e) = self
            .resource(module_address, kind, name)
            .and_then(|r| r.get("expressions"))
        else {
            return Vec::new();
        };
        for step in path {
            e = match step.parse::<usize>() {
                Ok(i) => match e.get(i) {
                    Some(v) => v,
                    None => return Vec::new(),
                },
                Err(_) => match e.get(*step) {
                    Some(v) => v,
                    None => return Vec::new(),
                },
            };
        }
        strings(e.get("references"))
    }

    /// True if the configuration of a resource sets `attr` (a constant or an expression).
    pub fn has_expression(&self, module_address: &str, kind: &str, name: &str, attr: &str) -> bool {
        self.resource(module_address, kind, name)
            .and_then(|r| r.get("expressions"))
            .and_then(|e| e.get(attr))
            .is_some()
    }

    /// The references of the argument `var` of the call of the module instance `module_address`
    /// (its parent's `module_calls.NAME.expressions.VAR`).
    pub fn variable_references(&self, module_address: &str, var: &str) -> Vec<String> {
        let names = module_names(module_address);
        let Some((last, _)) = names.split_last() else {
            return Vec::new();
        };
        let parent = parent_module(module_address).unwrap_or_default();
        self.module(&parent)
            .and_then(|m| m.get("module_calls"))
            .and_then(|c| c.get(last))
            .and_then(|c| c.get("expressions"))
            .and_then(|e| e.get(var))
            .map(|e| strings(e.get("references")))
            .unwrap_or_default()
    }

    /// The references of output `output` of the module at `module_address`.
    pub fn output_references(&self, module_address: &str, output: &str) -> Vec<String> {
        self.module(module_address)
            .and_then(|m| m.get("outputs"))
            .and_then(|o| o.get(output))
            .and_then(|o| o.get("expression"))
            .map(|e| strings(e.get("references")))
            .unwrap_or_default()
    }

    /// The `project` a resource's provider configuration sets (the provider's default project),
    /// when it is a constant.
    pub fn provider_project(&self, module_address: &str, kind: &str, name: &str) -> Option<String> {
        let key = self
            .resource(module_address, kind, name)
            .and_then(|r| r.get("provider_config_key"))
            .and_then(Value::as_str)
            .unwrap_or("google");
        let providers = self.root.get("provider_config")?;
        let config = providers.get(key).or_else(|| {
            // A module's key is `MODULE:google`, or plain `google` when passed down implicitly.
            let plain = key.rsplit(':').next().unwrap_or(key);
            providers.get(plain)
        })?;
        config
            .get("expressions")?
            .get("project")?
            .get("constant_value")?
            .as_str()
            .map(str::to_owned)
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plan_is_read_and_other_json_is_refused_with_the_reason() {
        let plan = json!({
            "format_version": "1.2",
            "terraform_version": "1.11.4",
            "resource_changes": [
                {"address": "module.a.google_project_iam_member.m", "module_address": "module.a",
                 "mode": "managed", "type": "google_project_iam_member", "name": "m",
                 "change": {"actions": ["delete", "create"], "before": {"member": "user:a@x.com"},
                            "after": {"project": "p"}, "after_unknown": {"member": true}}},
                {"address": "data.google_project.p", "mode": "data", "type": "google_project",
                 "name": "p", "change": {"actions": ["read"]}}
            ]
        });
        let p = parse(plan.to_string().as_bytes(), "plan.json").unwrap();
        assert_eq!(p.changes.len(), 1);
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Replace);
        assert_eq!(c.module_address, "module.a");
        let after = View::new(&c.after, &c.after_unknown);
        assert_eq!(after.str("member"), Field::Unknown);
        assert_eq!(after.str("project"), Field::Known("p".to_owned()));
        assert_eq!(after.str("role"), Field::Null);

        let state = json!({"format_version": "1.0", "values": {}});
        let e = parse(state.to_string().as_bytes(), "s.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a Terraform plan") && e.contains("state"),
            "{e}"
        );
        let e = parse(b"{\"a\": ", "x.json").unwrap_err().to_string();
        assert!(e.starts_with("x.json: not JSON"), "{e}");
        let e = parse(b"[1]", "x.json").unwrap_err().to_string();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = parse(
            b"{\"format_version\": \"0.1\", \"resource_changes\": []}",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("0.1 is not supported"), "{e}");
    }

    #[test]
    fn unknown_elements_of_a_set_are_counted_not_guessed() {
        let after = json!({"members": ["user:a@x.com", null]});
        let unknown = json!({"members": [false, true]});
        let v = View::new(&after, &unknown);
        assert_eq!(
            v.strs("members"),
            Field::Known((vec!["user:a@x.com".to_owned()], vec![1]))
        );
        let unknown = json!({"members": true});
        let after = json!({});
        assert_eq!(View::new(&after, &unknown).strs("members"), Field::Unknown);
    }

    #[test]
    fn module_paths_ignore_instance_keys() {
        assert_eq!(module_names("module.a[\"x\"].module.b[0]"), ["a", "b"]);
        assert_eq!(
            parent_module("module.a[\"x\"].module.b[0]").as_deref(),
            Some("module.a[\"x\"]")
        );
        assert_eq!(parent_module("module.a").as_deref(), Some(""));
        assert_eq!(parent_module(""), None);
    }
}
