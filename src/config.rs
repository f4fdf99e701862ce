//! Configuration: the remediation policy file (YAML) and its validation.
//!
//! Owns parsing of `--policy FILE` into a typed [`RemediationPolicy`], with errors that name the file,
//! line and field. Unknown keys are errors. A built-in default applies when no file is given: dry-run,
//! restoring only the requirements the design marks as restored by default.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::iam::Member;
use crate::domain::requirements::RequirementId;

/// Whether the remediator writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Report what would be restored; never write. The default.
    #[default]
    DryRun,
    /// Restore what the policy allows.
    Enforce,
}

impl Mode {
    /// `dry-run` or `enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DryRun => "dry-run",
            Self::Enforce => "enforce",
        }
    }
}

/// Which projects the remediator may touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    /// Project-id globs in scope (`*` and `?`). Default: every project.
    pub include_projects: Vec<String>,
    /// Project-id globs never touched, even if included.
    pub exclude_projects: Vec<String>,
    /// If non-empty, only projects under one of these folder ids (directly or through sub-folders).
    pub include_folders: Vec<String>,
    /// Projects under these folder ids are never touched.
    pub exclude_folders: Vec<String>,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            include_projects: vec!["*".to_owned()],
            exclude_projects: Vec::new(),
            include_folders: Vec::new(),
            exclude_folders: Vec::new(),
        }
    }
}

impl Scope {
    /// Whether a project, with the folder ids above it (nearest first), is in scope.
    pub fn contains(&self, project_id: &str, folders: &[String]) -> bool {
        let included = self
            .include_projects
            .iter()
            .any(|g| glob_match(g, project_id));
        let excluded = self
            .exclude_projects
            .iter()
            .any(|g| glob_match(g, project_id));
        let folder_ok = self.include_folders.is_empty()
            || folders.iter().any(|f| self.include_folders.contains(f));
        let folder_excluded = folders.iter().any(|f| self.exclude_folders.contains(f));
        included && !excluded && folder_ok && !folder_excluded
    }
}

/// Safety limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Maximum `setIamPolicy` writes in one run (scan, sweep or job). Further restores are skipped.
    pub max_writes_per_run: u32,
    /// Attempts of one read-modify-write when the etag keeps changing (409 ABORTED).
    pub max_write_attempts: u32,
    /// How many times the same binding may be restored within `window_minutes` before escalating.
    pub max_restorations_per_binding: u32,
    /// The flapping window.
    pub window_minutes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_writes_per_run: 100,
            max_write_attempts: 5,
            max_restorations_per_binding: 3,
            window_minutes: 60,
        }
    }
}

/// The remediation policy: what may be restored, where, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationPolicy {
    /// `dry-run` (default) or `enforce`.
    pub mode: Mode,
    /// Requirement ids that may be restored automatically.
    pub restore: BTreeSet<RequirementId>,
    /// Projects in scope.
    pub scope: Scope,
    /// Member globs (e.g. `serviceAccount:legacy-*@*`) that are never granted anything.
    pub exempt_principals: Vec<String>,
    /// Safety limits.
    pub limits: Limits,
    /// Seconds to wait after a removal event before restoring (lets an IaC apply finish).
    pub grace_seconds: u64,
    /// Who hears about outcomes: channels, routes and the digest window (`crate::notify::routing`).
    pub notifications: crate::notify::routing::NotificationsConfig,
}

impl Default for RemediationPolicy {
    fn default() -> Self {
        Self {
            mode: Mode::DryRun,
            restore: RequirementId::ALL
                .into_iter()
                .filter(|r| r.restored_by_default())
                .collect(),
            scope: Scope::default(),
            exempt_principals: Vec::new(),
            limits: Limits::default(),
            grace_seconds: 0,
            notifications: crate::notify::routing::NotificationsConfig::default(),
        }
    }
}

/// A policy file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read policy file: {source}")]
    Read {
        /// The path given.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key or a bad value.
    #[error("{file}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        /// The path given.
        file: String,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// Dotted path of the offending field (`.` for the document).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl RemediationPolicy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_yaml(&text, &file)
    }

    /// Parses and validates a policy from YAML text; `origin` names the source in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let policy: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = inner
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let message = strip_location(&inner.to_string());
            ConfigError::Invalid {
                file: origin.to_owned(),
                line,
                column,
                field,
                message,
            }
        })?;
        policy.validate(text, origin)?;
        Ok(policy)
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: origin.to_owned(),
            line: line_of(text, field.rsplit('.').next().unwrap_or(field)),
            column: 1,
            field: field.to_owned(),
            message,
        };
        for (i, pattern) in self.exempt_principals.iter().enumerate() {
            let probe = pattern.replace(['*', '?'], "x");
            if Member::parse(&probe).is_err() {
                return Err(invalid(
                    &format!("exempt_principals[{i}]"),
                    format!("`{pattern}` is not a member pattern such as serviceAccount:name-*@*"),
                ));
            }
        }
        if self.limits.max_write_attempts == 0 || self.limits.max_write_attempts > 20 {
            return Err(invalid(
                "limits.max_write_attempts",
                "must be between 1 and 20".to_owned(),
            ));
        }
        if self.limits.window_minutes == 0 {
            return Err(invalid(
                "limits.window_minutes",
                "must be at least 1".to_owned(),
            ));
        }
        if self.grace_seconds > 3600 {
            return Err(invalid("grace_seconds", "must be at most 3600".to_owned()));
        }
        for (key, globs) in [
            ("scope.include_projects", &self.scope.include_projects),
            ("scope.exclude_projects", &self.scope.exclude_projects),
        ] {
            if let Some(bad) = globs.iter().position(|g| g.is_empty()) {
                return Err(invalid(
                    &format!("{key}[{bad}]"),
                    "empty pattern".to_owned(),
                ));
            }
        }
        self.notifications.validate(text, origin)?;
        Ok(())
    }

    /// Whether a member is exempt from every grant.
    pub fn is_exempt(&self, member: &Member) -> bool {
        self.exempt_principals
            .iter()
            .any(|g| glob_match(g, member.as_str()))
    }
}

/// serde_yaml appends " at line L column C"; we report the location separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn line_of(text: &str, key: &str) -> usize {
    let key = key.split('[').next().unwrap_or(key);
    text.lines()
        .position(|l| l.trim_start().starts_with(&format!("{key}:")))
        .map_or(0, |i| i + 1)
}

/// Shell-style glob with `*` (any run) and `?` (one character), matched on the whole string.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_dry_run_with_the_default_requirements() {
        let p = RemediationPolicy::from_yaml("", "none").unwrap();
        assert_eq!(p.mode, Mode::DryRun);
        assert!(p.restore.contains(&RequirementId::NodeSaPermissions));
        assert!(!p.restore.contains(&RequirementId::GoogleApisServiceAgent));
    }

    #[test]
    fn a_full_policy_file_parses() {
        let text = "mode: enforce\nrestore: [gke-service-agent]\nscope:\n  include_projects: ['prod-*']\n  exclude_folders: ['42']\nexempt_principals: ['serviceAccount:legacy-*@*']\nlimits:\n  max_writes_per_run: 5\ngrace_seconds: 30\n";
        let p = RemediationPolicy::from_yaml(text, "p.yaml").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.restore.len(), 1);
        assert!(p.scope.contains("prod-a", &[]));
        assert!(!p.scope.contains("prod-a", &["42".to_owned()]));
        assert!(!p.scope.contains("dev-a", &[]));
        assert!(p.is_exempt(
            &Member::parse("serviceAccount:legacy-1@p.iam.gserviceaccount.com").unwrap()
        ));
    }

    #[test]
    fn an_unknown_key_names_file_line_and_field() {
        let err = RemediationPolicy::from_yaml(
            "mode: enforce\nscope:\n  include_project: ['x']\n",
            "policy.yaml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("policy.yaml:3:"), "{text}");
        assert!(text.contains("include_project"), "{text}");
    }

    #[test]
    fn a_bad_value_names_the_field() {
        let err = RemediationPolicy::from_yaml("restore: [node-sa-permissions, owner]\n", "p.yaml")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("restore"), "{text}");
        assert!(text.starts_with("p.yaml:1:"), "{text}");
        let err = RemediationPolicy::from_yaml("mode: enfroce\n", "p.yaml").unwrap_err();
        assert!(err.to_string().contains("field `mode`"), "{err}");
    }

    #[test]
    fn globs_match_whole_strings() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a*c", "abcd"));
        assert!(glob_match(
            "serviceAccount:*@*.iam.gserviceaccount.com",
            "serviceAccount:x@p.iam.gserviceaccount.com"
        ));
    }
}
