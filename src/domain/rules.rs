//! The remediation rules the core applies: mode, scope, exemptions, limits and the grace delay.
//!
//! Pure data with the matching rules (globs, scope membership). The policy *file* that produces these
//! values, with positioned errors, is the policy module one layer up (this module never names it).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::iam::Member;
use super::requirements::RequirementId;

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

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// A finding `ok` only through a time-bound grant that ends within this many days is `expiring`
    /// (a warning, never a write). 0 turns the warning off.
    pub expiry_warning_days: u32,
    /// How old a deny-policy read may be and still be used (every attachment point, the project's
    /// own too): IAM v2 allows 5 reads per minute, so deny policies are read at most once per this
    /// many minutes per attachment point per process.
    pub deny_policy_max_age_minutes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_writes_per_run: 100,
            max_write_attempts: 5,
            max_restorations_per_binding: 3,
            window_minutes: 60,
            expiry_warning_days: 14,
            deny_policy_max_age_minutes: 60,
        }
    }
}

/// The remediation policy: what may be restored, where, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
}

impl RemediationPolicy {
    /// Whether a member is exempt from every grant.
    pub fn is_exempt(&self, member: &Member) -> bool {
        let member = lower_email(member.as_str());
        self.exempt_principals
            .iter()
            .any(|g| glob_match(&lower_email(g), &member))
    }
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
        }
    }
}

/// `kind:email` with the email part lower-cased (IAM compares emails without regard to case).
fn lower_email(member: &str) -> String {
    match member.split_once(':') {
        Some((kind, email)) => format!("{kind}:{}", email.to_ascii_lowercase()),
        None => member.to_ascii_lowercase(),
    }
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
