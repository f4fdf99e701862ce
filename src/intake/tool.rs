//! Which tool made a change, from the audit log's `requestMetadata.callerSuppliedUserAgent`: Terraform
//! (with its Google provider), gcloud, the Cloud console, Config Connector, Pulumi, a client library.
//! Pure; for people (notifications, escalations), never for a decision. The user agent is the
//! caller's own claim, so what is shown is bounded and stripped of anything but printable text.

use serde::{Deserialize, Serialize};

/// Kinds of tools, as notifications name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolKind {
    /// Terraform (`Terraform/…`, `terraform-provider-google/…`).
    Terraform,
    /// Config Connector (`kcc/…`, `cnrm…`).
    ConfigConnector,
    /// Pulumi (`pulumi…`).
    Pulumi,
    /// The Google Cloud CLI (`google-cloud-sdk gcloud/…`).
    Gcloud,
    /// The Cloud console (a browser).
    Console,
    /// A client library or another program.
    ClientLibrary,
}

impl ToolKind {
    /// Infrastructure as code: the next apply removes the binding again.
    pub fn is_infrastructure_as_code(self) -> bool {
        matches!(self, Self::Terraform | Self::ConfigConnector | Self::Pulumi)
    }
}

/// A tool and a short name for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// Its kind.
    pub kind: ToolKind,
    /// `Terraform 1.7.5 with terraform-provider-google 5.22.0`, `gcloud 528.0.0 (projects
    /// remove-iam-policy-binding)`, `the Cloud console`, ...
    pub name: String,
}

/// Longest user agent read, and longest name shown.
const MAX_AGENT: usize = 1024;
const MAX_NAME: usize = 120;

/// The version after `prefix` (up to a space, `,` or `(`), if the agent has it.
fn version_after<'a>(agent: &'a str, prefix: &str) -> Option<&'a str> {
    let lower = agent.to_ascii_lowercase();
    let at = lower.find(&prefix.to_ascii_lowercase())? + prefix.len();
    let rest = agent.get(at..)?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|v| !v.is_empty())
}

fn printable(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The tool a user agent names; `None` for an empty agent.
pub fn identify(user_agent: &str) -> Option<Tool> {
    let agent = user_agent.get(..MAX_AGENT).unwrap_or(user_agent);
    let agent = agent.trim_end_matches(",gzip(gfe)").trim();
    if agent.is_empty() {
        return None;
    }
    let lower = agent.to_ascii_lowercase();
    let provider = version_after(agent, "terraform-provider-google-beta/")
        .map(|v| format!("terraform-provider-google-beta {v}"))
        .or_else(|| {
            version_after(agent, "terraform-provider-google/")
                .map(|v| format!("terraform-provider-google {v}"))
        });
    let (kind, name) = if lower.contains("kcc/") || lower.contains("cnrm") {
        let v = version_after(agent, "kcc/").unwrap_or("");
        (
            ToolKind::ConfigConnector,
            format!("Config Connector {v}").trim().to_owned(),
        )
    } else if lower.contains("pulumi") {
        (ToolKind::Pulumi, "Pulumi".to_owned())
    } else if lower.contains("terraform") {
        let mut name = match version_after(agent, "Terraform/") {
            Some(v) => format!("Terraform {v}"),
            None => "Terraform".to_owned(),
        };
        if let Some(p) = provider {
            name.push_str(&format!(" with {p}"));
        }
        (ToolKind::Terraform, name)
    } else if lower.contains("gcloud/") {
        let mut name = match version_after(agent, "gcloud/") {
            Some(v) => format!("gcloud {v}"),
            None => "gcloud".to_owned(),
        };
        if let Some(command) = version_after(agent, "command/") {
            let command = command.trim_start_matches("gcloud.").replace('.', " ");
            name.push_str(&format!(" ({command})"));
        }
        (ToolKind::Gcloud, name)
    } else if lower.starts_with("mozilla/") {
        (ToolKind::Console, "the Cloud console".to_owned())
    } else {
        let first = agent.split_whitespace().next().unwrap_or(agent);
        (ToolKind::ClientLibrary, format!("a client ({first})"))
    };
    Some(Tool {
        kind,
        name: printable(&name, MAX_NAME),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_is_named_with_its_google_provider() {
        let t = identify("google-api-go-client/0.5 Terraform/1.7.5 (+https://www.terraform.io) Terraform-Plugin-SDK/2.31.0 terraform-provider-google/5.22.0,gzip(gfe)").unwrap();
        assert_eq!(t.kind, ToolKind::Terraform);
        assert_eq!(
            t.name,
            "Terraform 1.7.5 with terraform-provider-google 5.22.0"
        );
        assert!(t.kind.is_infrastructure_as_code());
    }

    #[test]
    fn gcloud_the_console_config_connector_and_libraries_are_told_apart() {
        let g = identify("google-cloud-sdk gcloud/528.0.0 command/gcloud.projects.remove-iam-policy-binding invocation-id/0f1e environment/None,gzip(gfe)").unwrap();
        assert_eq!(g.kind, ToolKind::Gcloud);
        assert_eq!(
            g.name,
            "gcloud 528.0.0 (projects remove-iam-policy-binding)"
        );
        let c = identify(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36,gzip(gfe)",
        )
        .unwrap();
        assert_eq!(c.kind, ToolKind::Console);
        let k = identify("kcc/1.112.0 (+https://github.com/GoogleCloudPlatform/k8s-config-connector) kcc/controller-manager terraform-provider-google/kcc").unwrap();
        assert_eq!(k.kind, ToolKind::ConfigConnector, "not Terraform");
        let l = identify("google-api-python-client/2.100.0 (gzip)").unwrap();
        assert_eq!(l.kind, ToolKind::ClientLibrary);
        assert_eq!(l.name, "a client (google-api-python-client/2.100.0)");
        assert_eq!(identify("  "), None);
    }

    #[test]
    fn a_hostile_user_agent_is_bounded_and_printable() {
        let t = identify(&format!("evil\u{1b}[31m{}", "x".repeat(10_000))).unwrap();
        assert!(t.name.chars().count() <= MAX_NAME);
        assert!(!t.name.contains('\u{1b}'));
    }
}
