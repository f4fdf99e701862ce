//! The remediation policy file (YAML): parsed once into the core's [`RemediationPolicy`] and the
//! notification routing, with errors that name the file, line and field. Unknown keys are errors. A
//! built-in default applies when no file is given: dry-run, restoring only the requirements the
//! design marks as restored by default.
//!
//! Forms people write are accepted and normalised (`projects/ID` for a project glob, `folders/N` for a
//! folder id, any letter case in the email part of a member glob); entries that could never match are
//! errors, never silently loaded.

pub mod yaml;

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::domain::iam::Member;
use crate::domain::requirements::RequirementId;
use crate::domain::rules::{Limits, Mode, RemediationPolicy, Scope};
use crate::notify::routing::{NotificationsConfig, NotificationsFile};

/// Everything a policy file says: the core's rules and who hears about outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// What may be restored, where, and how.
    pub remediation: RemediationPolicy,
    /// Channels, routes and the digest window.
    pub notifications: NotificationsConfig,
}

/// The file's shape (every key of both halves; unknown keys are errors).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_restore")]
    restore: BTreeSet<RequirementId>,
    #[serde(default)]
    scope: Scope,
    #[serde(default)]
    exempt_principals: Vec<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    grace_seconds: u64,
    #[serde(default)]
    notifications: NotificationsFile,
}

fn default_restore() -> BTreeSet<RequirementId> {
    RemediationPolicy::default().restore
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

impl PolicyFile {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // `REMEDIATOR_POLICY=` (set, empty) means no file: the built-in policy.
        if path.as_os_str().is_empty() {
            return Ok(Self::default());
        }
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_yaml(&text, &file)
    }

    /// Parses and validates a policy from YAML text; `origin` names the source in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let meaningful = text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if !meaningful {
            return Ok(Self::default());
        }
        let invalid =
            |position: yaml::Position, field: String, message: String| ConfigError::Invalid {
                file: origin.to_owned(),
                line: position.line,
                column: position.column,
                field,
                message,
            };
        let (doc, positions) = yaml::from_str::<Document>(text)
            .map_err(|e| invalid(e.position, e.field, e.message))?;
        let located =
            |(field, message): (String, String)| invalid(positions.of(&field), field, message);
        let notifications = doc
            .notifications
            .validate()
            .map_err(|e| located((e.field, e.message)))?;
        let mut policy = Self {
            remediation: RemediationPolicy {
                mode: doc.mode,
                restore: doc.restore,
                scope: doc.scope,
                exempt_principals: doc.exempt_principals,
                limits: doc.limits,
                grace_seconds: doc.grace_seconds,
            },
            notifications,
        };
        policy.normalise_and_validate().map_err(located)?;
        Ok(policy)
    }

    /// Normalises the forms people write and rejects what could never match; errors name the field.
    fn normalise_and_validate(&mut self) -> Result<(), (String, String)> {
        let r = &mut self.remediation;
        for (i, pattern) in r.exempt_principals.iter_mut().enumerate() {
            let probe = pattern.replace(['*', '?'], "x");
            if Member::parse(&probe).is_err() {
                return Err((
                    format!("exempt_principals[{i}]"),
                    format!("`{pattern}` is not a member pattern such as serviceAccount:name-*@*"),
                ));
            }
            // IAM compares emails without regard to case: so does the exemption.
            if let Some((kind, email)) = pattern.split_once(':') {
                *pattern = format!("{kind}:{}", email.to_ascii_lowercase());
            }
        }
        if r.limits.max_write_attempts == 0 || r.limits.max_write_attempts > 20 {
            return Err((
                "limits.max_write_attempts".to_owned(),
                "must be between 1 and 20".to_owned(),
            ));
        }
        if r.limits.window_minutes == 0 {
            return Err((
                "limits.window_minutes".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if r.limits.expiry_warning_days > 366 {
            return Err((
                "limits.expiry_warning_days".to_owned(),
                "must be at most 366 (0 turns the warning off)".to_owned(),
            ));
        }
        if r.limits.deny_policy_max_age_minutes == 0 || r.limits.deny_policy_max_age_minutes > 1440
        {
            return Err((
                "limits.deny_policy_max_age_minutes".to_owned(),
                "must be between 1 and 1440 (IAM v2 allows 5 deny-policy reads per minute: every read is cached at least a minute)".to_owned(),
            ));
        }
        if r.grace_seconds > 3600 {
            return Err((
                "grace_seconds".to_owned(),
                "must be at most 3600".to_owned(),
            ));
        }
        for (key, globs) in [
            ("scope.include_projects", &mut r.scope.include_projects),
            ("scope.exclude_projects", &mut r.scope.exclude_projects),
        ] {
            for (i, glob) in globs.iter_mut().enumerate() {
                let bare = glob.trim().strip_prefix("projects/").unwrap_or(glob.trim());
                if bare.is_empty() {
                    return Err((format!("{key}[{i}]"), "empty pattern".to_owned()));
                }
                let ok = bare
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-*?".contains(c));
                if !ok {
                    return Err((
                        format!("{key}[{i}]"),
                        format!(
                            "`{glob}` can never match a project id (lower-case letters, digits, `-`; globs `*` and `?`)"
                        ),
                    ));
                }
                *glob = bare.to_owned();
            }
        }
        for (key, ids) in [
            ("scope.include_folders", &mut r.scope.include_folders),
            ("scope.exclude_folders", &mut r.scope.exclude_folders),
        ] {
            for (i, id) in ids.iter_mut().enumerate() {
                let bare = id.trim().strip_prefix("folders/").unwrap_or(id.trim());
                if bare.is_empty() || !bare.chars().all(|c| c.is_ascii_digit()) {
                    return Err((
                        format!("{key}[{i}]"),
                        format!("`{id}` is not a folder id (digits, or folders/DIGITS)"),
                    ));
                }
                *id = bare.to_owned();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_dry_run_with_the_default_requirements() {
        let p = PolicyFile::from_yaml("", "none").unwrap().remediation;
        assert_eq!(p.mode, Mode::DryRun);
        assert!(p.restore.contains(&RequirementId::NodeSaPermissions));
        assert!(!p.restore.contains(&RequirementId::GoogleApisServiceAgent));
    }

    #[test]
    fn a_full_policy_file_parses() {
        assert_eq!(
            PolicyFile::load(Path::new("")).unwrap(),
            PolicyFile::default(),
            "an empty REMEDIATOR_POLICY is the built-in policy"
        );
        let negative = PolicyFile::from_yaml("grace_seconds: -3\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            negative.contains("grace_seconds") && negative.contains("whole number of 0 or more"),
            "{negative}"
        );
        let text = "mode: enforce\nrestore: [gke-service-agent]\nscope:\n  include_projects: ['prod-*']\n  exclude_folders: ['42']\nexempt_principals: ['serviceAccount:legacy-*@*']\nlimits:\n  max_writes_per_run: 5\ngrace_seconds: 30\n";
        let p = PolicyFile::from_yaml(text, "p.yaml").unwrap().remediation;
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
        let err = PolicyFile::from_yaml(
            "mode: enforce\nscope:\n  include_project: ['x']\n",
            "policy.yaml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("policy.yaml:3:"), "{text}");
        assert!(text.contains("include_project"), "{text}");
    }

    #[test]
    fn the_forms_people_write_for_scope_and_exemptions_all_match() {
        let text = "mode: enforce\nscope:\n  exclude_projects: ['projects/shop-*']\n  exclude_folders: ['folders/42', 43]\nexempt_principals: ['serviceAccount:Legacy-*@*']\n";
        let p = PolicyFile::from_yaml(text, "p.yaml").unwrap().remediation;
        assert!(!p.scope.contains("shop-prod", &[]));
        assert!(!p.scope.contains("other", &["42".to_owned()]));
        assert!(!p.scope.contains("other", &["43".to_owned()]));
        assert!(p.scope.contains("other", &["44".to_owned()]));
        assert!(p.is_exempt(
            &Member::parse("serviceAccount:legacy-1@p.iam.gserviceaccount.com").unwrap()
        ));
        assert!(p.is_exempt(
            &Member::parse("serviceAccount:LEGACY-2@p.iam.gserviceaccount.com").unwrap()
        ));
    }

    #[test]
    fn scope_entries_that_can_never_match_are_errors_at_their_value() {
        let err = PolicyFile::from_yaml(
            "mode: enforce\nscope:\n  include_projects: ['ok-*', 'Prod-*']\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("p.yaml:3:") && err.contains("scope.include_projects[1]"),
            "{err}"
        );
        let err =
            PolicyFile::from_yaml("scope:\n  exclude_folders:\n    - engineering\n", "p.yaml")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("p.yaml:3:7:"), "{err}");
        assert!(err.contains("not a folder id"), "{err}");
    }

    #[test]
    fn a_bad_value_names_the_field() {
        let err =
            PolicyFile::from_yaml("restore: [node-sa-permissions, owner]\n", "p.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("restore"), "{text}");
        assert!(text.starts_with("p.yaml:1:"), "{text}");
        let err = PolicyFile::from_yaml("mode: enfroce\n", "p.yaml").unwrap_err();
        assert!(err.to_string().contains("field `mode`"), "{err}");
    }

    #[test]
    fn the_expiry_warning_defaults_to_fourteen_days_and_bad_values_are_positioned() {
        let p = PolicyFile::from_yaml("", "p.yaml").unwrap().remediation;
        assert_eq!(p.limits.expiry_warning_days, 14);
        let p = PolicyFile::from_yaml("limits:\n  expiry_warning_days: 30\n", "p.yaml")
            .unwrap()
            .remediation;
        assert_eq!(p.limits.expiry_warning_days, 30);
        let err = PolicyFile::from_yaml("limits:\n  expiry_warning_days: 400\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.yaml:2:"), "{err}");
        assert!(err.contains("limits.expiry_warning_days"), "{err}");
        let err = PolicyFile::from_yaml("limits:\n  expiry_warning_days: -1\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.yaml:2:"), "{err}");
        assert!(err.contains("expiry_warning_days"), "{err}");
    }

    #[test]
    fn the_deny_policy_max_age_defaults_to_an_hour_and_bad_values_are_positioned() {
        let p = PolicyFile::from_yaml("", "p.yaml").unwrap().remediation;
        assert_eq!(p.limits.deny_policy_max_age_minutes, 60);
        let p = PolicyFile::from_yaml("limits:\n  deny_policy_max_age_minutes: 15\n", "p.yaml")
            .unwrap()
            .remediation;
        assert_eq!(p.limits.deny_policy_max_age_minutes, 15);
        for bad in ["0", "1441"] {
            let text = format!("mode: dry-run\nlimits:\n  deny_policy_max_age_minutes: {bad}\n");
            let err = PolicyFile::from_yaml(&text, "p.yaml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("p.yaml:3:"), "{err}");
            assert!(err.contains("limits.deny_policy_max_age_minutes"), "{err}");
        }
    }
}

#[cfg(test)]
mod notifications_section {
    use super::*;
    use crate::notify::{ChannelSpec, Notification, WebhookUrl};

    const POLICY: &str = "mode: enforce
notifications:
  digest_window_seconds: 5
  channels:
    - name: platform-slack
      type: slack
      url_env: REMEDIATOR_SLACK_WEBHOOK_URL
    - name: oncall
      type: email
      host: smtp.example.com
      username: remediator@example.com
      password_env: REMEDIATOR_SMTP_PASSWORD
      from: GKE IAM remediator <remediator@example.com>
      to: [platform@example.com]
    - name: siem
      type: webhook
      url: https://siem.example.com/hooks/gke
      key_env: REMEDIATOR_WEBHOOK_KEY
  routes:
    - channels: [platform-slack, siem]
    - outcomes: [failed, escalated]
      projects: ['prod-*']
      channels: [oncall]
      to: [oncall@example.com]
    - outcomes: [restored]
      requirements: [node-sa-permissions]
      channels: [oncall]
";

    fn n(outcome: &str, project: &str, requirement: &str) -> Notification {
        let severity = match outcome {
            "failed" => "error",
            "escalated" => "critical",
            "restored" | "healthy" => "info",
            _ => "warning",
        };
        serde_json::from_value(serde_json::json!({
            "schema": crate::notify::SCHEMA_V1, "id": "n-1", "time": "2026-11-29T00:00:00.000Z",
            "project_id": project, "project_number": "1", "requirement": requirement,
            "outcome": outcome, "mode": "enforce", "severity": severity, "status": "missing",
            "detail": "d",
        }))
        .unwrap()
    }

    #[test]
    fn routes_pick_channels_by_outcome_project_and_requirement() {
        let p = PolicyFile::from_yaml(POLICY, "p.yaml").unwrap();
        let c = &p.notifications;
        assert_eq!(c.digest_window_seconds, 5);
        let names = |n: &Notification| -> Vec<String> {
            c.targets(n).into_iter().map(|t| t.key()).collect()
        };
        assert_eq!(
            names(&n("healthy", "prod-a", "gke-service-agent")),
            Vec::<String>::new()
        );
        assert_eq!(
            names(&n("would-restore", "dev-a", "gke-service-agent")),
            ["platform-slack", "siem"]
        );
        assert_eq!(
            names(&n("failed", "prod-a", "gke-service-agent")),
            ["oncall\u{1f}oncall@example.com", "platform-slack", "siem"]
        );
        assert_eq!(
            names(&n("failed", "dev-a", "gke-service-agent")),
            ["platform-slack", "siem"]
        );
        assert_eq!(
            names(&n("restored", "dev-a", "node-sa-permissions")),
            ["oncall\u{1f}platform@example.com", "platform-slack", "siem"]
        );
    }

    #[test]
    fn healthy_alerts_only_when_a_route_names_it_and_severity_is_a_floor() {
        let text = "notifications:\n  channels:\n    - {name: s, type: slack, url_env: S}\n  routes:\n    - {outcomes: [healthy, failed], channels: [s]}\n    - {min_severity: critical, channels: [s]}\n";
        let p = PolicyFile::from_yaml(text, "p.yaml").unwrap();
        assert_eq!(
            p.notifications
                .targets(&n("healthy", "x", "gke-service-agent"))
                .len(),
            1
        );
        assert_eq!(
            p.notifications
                .targets(&n("unknown", "x", "gke-service-agent"))
                .len(),
            0
        );
        assert_eq!(
            p.notifications
                .targets(&n("escalated", "x", "gke-service-agent"))
                .len(),
            1
        );
    }

    #[test]
    fn each_channel_kind_carries_exactly_its_own_settings() {
        let p = PolicyFile::from_yaml(POLICY, "p.yaml").unwrap();
        let kinds: Vec<&ChannelSpec> = p.notifications.channels.iter().map(|c| &c.spec).collect();
        assert!(
            matches!(kinds[0], ChannelSpec::Slack { url_env } if url_env == "REMEDIATOR_SLACK_WEBHOOK_URL")
        );
        let ChannelSpec::Email(email) = kinds[1] else {
            panic!("{kinds:?}")
        };
        assert_eq!(email.port, 587, "the submission port unless given");
        assert_eq!(
            email.credentials,
            Some((
                "remediator@example.com".to_owned(),
                "REMEDIATOR_SMTP_PASSWORD".to_owned()
            ))
        );
        assert!(matches!(
            kinds[2],
            ChannelSpec::Webhook { url: WebhookUrl::Plain(u), key_env } if u.starts_with("https://") && key_env == "REMEDIATOR_WEBHOOK_KEY"
        ));
    }

    #[test]
    fn no_notifications_section_means_nothing_is_delivered() {
        let p = PolicyFile::from_yaml("mode: enforce\n", "p.yaml").unwrap();
        assert!(p.notifications.is_empty());
        assert_eq!(p.notifications.digest_window_seconds, 30);
    }

    fn error_of(text: &str) -> String {
        PolicyFile::from_yaml(text, "policy.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_unknown_channel_key_names_file_line_and_field() {
        let e = error_of(
            "notifications:\n  channels:\n    - name: s\n      type: slack\n      url_env: S\n      urlenv: T\n",
        );
        assert!(e.starts_with("policy.yaml:6:"), "{e}");
        assert!(e.contains("urlenv"), "{e}");
    }

    #[test]
    fn a_route_naming_a_missing_channel_names_the_route_line_and_field() {
        let e = error_of(
            POLICY
                .replace(
                    "channels: [oncall]\n      to:",
                    "channels: [on-call]\n      to:",
                )
                .as_str(),
        );
        assert!(e.starts_with("policy.yaml:23:"), "{e}");
        assert!(e.contains("notifications.routes[1].channels[0]"), "{e}");
        assert!(e.contains("on-call"), "{e}");
    }

    #[test]
    fn a_channel_without_its_secret_variable_is_rejected_at_its_line() {
        let e = error_of(&POLICY.replace("      password_env: REMEDIATOR_SMTP_PASSWORD\n", ""));
        assert!(e.contains("notifications.channels[1].password_env"), "{e}");
        assert!(e.starts_with("policy.yaml:8:"), "{e}");
        let e = error_of(&POLICY.replace("      key_env: REMEDIATOR_WEBHOOK_KEY\n", ""));
        assert!(e.contains("notifications.channels[2].key_env"), "{e}");
        let e = error_of(&POLICY.replace(
            "url_env: REMEDIATOR_SLACK_WEBHOOK_URL",
            "url_env: https://hooks.slack.com/x",
        ));
        assert!(e.contains("not an environment variable name"), "{e}");
        assert!(e.starts_with("policy.yaml:7:"), "{e}");
    }

    #[test]
    fn bad_outcomes_tls_and_unused_channels_are_errors() {
        let e = error_of(&POLICY.replace("[failed, escalated]", "[failed, broken]"));
        assert!(
            e.contains("routes[1].outcomes[1]") && e.contains("broken"),
            "{e}"
        );
        assert!(e.starts_with("policy.yaml:21:"), "{e}");
        let e = error_of(&POLICY.replace(
            "      to: [platform@example.com]\n",
            "      to: [platform@example.com]\n      tls: maybe\n",
        ));
        assert!(e.contains("tls"), "{e}");
        let e = error_of(&POLICY.replace(
            "    - channels: [platform-slack, siem]\n",
            "    - channels: [siem]\n",
        ));
        assert!(
            e.contains("platform-slack") && e.contains("not used by any route"),
            "{e}"
        );
    }
}
