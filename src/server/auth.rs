//! The push authentication model of `serve`, chosen at start-up from `REMEDIATOR_PUSH_AUTH`,
//! `REMEDIATOR_PUSH_AUDIENCE` and `REMEDIATOR_PUSH_ALLOWED_EMAILS`, and refused when half configured.
//!
//! - `cloud-run`: the service runs with Cloud Run's IAM invoker check on. Cloud Run verifies the push
//!   token and forwards it with its signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`; the service
//!   checks everything else (issuer, audience, expiry, not-before, issued-at, `email_verified`, allowed
//!   emails). Any other signature is verified against Google's keys.
//! - `signed`: the invoker check is off (`invoker_iam_disabled`, internal ingress); the service verifies
//!   the full signature against Google's keys and refuses a token whose signature was removed.
//! - `none`: no authentication (local runs); `/pubsub/notify` is then refused.
//!
//! Unset `REMEDIATOR_PUSH_AUTH` means `signed` when both the audience and the emails are set (the
//! behaviour before the setting existed) and `none` when neither is. Every other combination refuses to
//! start: a partial setting must never turn authentication off.

use crate::server::oidc::{OidcConfig, Trust};

/// How pushes are authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushAuthMode {
    /// Behind Cloud Run's IAM invoker check (stripped signatures trusted, claims checked).
    CloudRun,
    /// Full signature verification.
    Signed,
    /// No authentication.
    None,
}

impl PushAuthMode {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudRun => "cloud-run",
            Self::Signed => "signed",
            Self::None => "none",
        }
    }
}

/// The resolved settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushAuthSettings {
    /// The model.
    pub mode: PushAuthMode,
    /// What tokens must satisfy; `None` exactly when `mode` is `None`.
    pub oidc: Option<OidcConfig>,
}

/// A push authentication setting that refuses to start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushAuthConfigError {
    /// `REMEDIATOR_PUSH_AUTH` is not one of the three values.
    #[error("REMEDIATOR_PUSH_AUTH=`{0}` is not one of cloud-run, signed, none")]
    UnknownMode(String),
    /// Audience or emails missing for a mode that needs both, or only one of them given.
    #[error(
        "push authentication is half configured: {0} (set REMEDIATOR_PUSH_AUDIENCE and REMEDIATOR_PUSH_ALLOWED_EMAILS together, with REMEDIATOR_PUSH_AUTH=cloud-run or signed)"
    )]
    Partial(String),
    /// `none` together with an audience or emails: contradictory.
    #[error("REMEDIATOR_PUSH_AUTH=none but {0} is set: remove it, or choose cloud-run or signed")]
    NoneWithSettings(&'static str),
    /// An allowed email that is not an email.
    #[error("REMEDIATOR_PUSH_ALLOWED_EMAILS: `{0}` is not an email address")]
    BadEmail(String),
}

/// Resolves the settings (`keys_url`: where Google's signing keys are fetched).
pub fn resolve(
    mode: Option<&str>,
    audience: Option<&str>,
    emails: &[String],
    keys_url: &str,
) -> Result<PushAuthSettings, PushAuthConfigError> {
    let mode = mode.map(str::trim).filter(|m| !m.is_empty());
    let audience = audience.map(str::trim).filter(|a| !a.is_empty());
    let emails: Vec<String> = emails
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    for e in &emails {
        let plausible = e.len() <= 320
            && e.matches('@').count() == 1
            && !e.starts_with('@')
            && !e.ends_with('@')
            && !e.contains(|c: char| c.is_whitespace() || c.is_control());
        if !plausible {
            return Err(PushAuthConfigError::BadEmail(crate::intake::excerpt(e, 80)));
        }
    }
    let mode = match mode.map(str::to_ascii_lowercase).as_deref() {
        Some("cloud-run") => PushAuthMode::CloudRun,
        Some("signed") => PushAuthMode::Signed,
        Some("none") => PushAuthMode::None,
        Some(other) => return Err(PushAuthConfigError::UnknownMode(other.to_owned())),
        None => match (audience.is_some(), emails.is_empty()) {
            (true, false) => PushAuthMode::Signed,
            (false, true) => PushAuthMode::None,
            (true, true) => {
                return Err(PushAuthConfigError::Partial(
                    "REMEDIATOR_PUSH_AUDIENCE is set but REMEDIATOR_PUSH_ALLOWED_EMAILS is empty"
                        .into(),
                ));
            }
            (false, false) => {
                return Err(PushAuthConfigError::Partial(
                    "REMEDIATOR_PUSH_ALLOWED_EMAILS is set but REMEDIATOR_PUSH_AUDIENCE is not"
                        .into(),
                ));
            }
        },
    };
    let trust = match mode {
        PushAuthMode::None => {
            if audience.is_some() {
                return Err(PushAuthConfigError::NoneWithSettings(
                    "REMEDIATOR_PUSH_AUDIENCE",
                ));
            }
            if !emails.is_empty() {
                return Err(PushAuthConfigError::NoneWithSettings(
                    "REMEDIATOR_PUSH_ALLOWED_EMAILS",
                ));
            }
            return Ok(PushAuthSettings { mode, oidc: None });
        }
        PushAuthMode::CloudRun => Trust::CloudRun,
        PushAuthMode::Signed => Trust::Signed,
    };
    let audience = audience.ok_or_else(|| {
        PushAuthConfigError::Partial(format!(
            "REMEDIATOR_PUSH_AUTH={} needs REMEDIATOR_PUSH_AUDIENCE",
            mode.as_str()
        ))
    })?;
    if emails.is_empty() {
        return Err(PushAuthConfigError::Partial(format!(
            "REMEDIATOR_PUSH_AUTH={} needs REMEDIATOR_PUSH_ALLOWED_EMAILS",
            mode.as_str()
        )));
    }
    Ok(PushAuthSettings {
        mode,
        oidc: Some(OidcConfig {
            keys_url: keys_url.to_owned(),
            trust,
            ..OidcConfig::new(audience, emails)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUD: &str = "https://remediator-abc-uc.a.run.app/pubsub/push";
    const KEYS: &str = "http://127.0.0.1:9/certs";

    fn emails(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn cloud_run_with_audience_and_emails_trusts_the_front_end() {
        let s = resolve(
            Some("cloud-run"),
            Some(AUD),
            &emails(&["push@ops.iam.gserviceaccount.com"]),
            KEYS,
        )
        .unwrap();
        assert_eq!(s.mode, PushAuthMode::CloudRun);
        let oidc = s.oidc.unwrap();
        assert_eq!(oidc.trust, Trust::CloudRun);
        assert_eq!(oidc.audience, AUD);
        assert_eq!(oidc.keys_url, KEYS);
        assert_eq!(oidc.allowed_emails, ["push@ops.iam.gserviceaccount.com"]);
    }

    #[test]
    fn signed_with_audience_and_emails_verifies_signatures() {
        let s = resolve(
            Some("SIGNED"),
            Some(AUD),
            &emails(&["push@ops.iam.gserviceaccount.com"]),
            KEYS,
        )
        .unwrap();
        assert_eq!(s.mode, PushAuthMode::Signed);
        assert_eq!(s.oidc.unwrap().trust, Trust::Signed);
    }

    #[test]
    fn unset_mode_with_audience_and_emails_is_signed_as_before() {
        let s = resolve(None, Some(AUD), &emails(&["a@b.c"]), KEYS).unwrap();
        assert_eq!(s.mode, PushAuthMode::Signed);
        assert_eq!(s.oidc.unwrap().trust, Trust::Signed);
    }

    #[test]
    fn unset_mode_with_nothing_is_none_and_explicit_none_is_none() {
        for mode in [None, Some("none"), Some("")] {
            let s = resolve(mode, None, &[], KEYS).unwrap();
            assert_eq!(
                s,
                PushAuthSettings {
                    mode: PushAuthMode::None,
                    oidc: None
                }
            );
        }
        // Blank values (an empty environment variable) count as unset.
        let s = resolve(None, Some("  "), &emails(&["", " "]), KEYS).unwrap();
        assert_eq!(s.mode, PushAuthMode::None);
    }

    #[test]
    fn every_partial_configuration_refuses_to_start() {
        let one = emails(&["push@ops.iam.gserviceaccount.com"]);
        let cases: [(Option<&str>, Option<&str>, &[String]); 6] = [
            (None, Some(AUD), &[]),
            (None, None, &one),
            (Some("cloud-run"), None, &one),
            (Some("cloud-run"), Some(AUD), &[]),
            (Some("signed"), None, &one),
            (Some("signed"), Some(AUD), &[]),
        ];
        for (mode, audience, list) in cases {
            let err = resolve(mode, audience, list, KEYS).unwrap_err();
            assert!(
                matches!(err, PushAuthConfigError::Partial(_)),
                "{mode:?} {audience:?} {list:?}: {err}"
            );
            assert!(err.to_string().contains("half configured"), "{err}");
        }
    }

    #[test]
    fn none_with_an_audience_or_emails_refuses_to_start() {
        assert_eq!(
            resolve(Some("none"), Some(AUD), &[], KEYS).unwrap_err(),
            PushAuthConfigError::NoneWithSettings("REMEDIATOR_PUSH_AUDIENCE")
        );
        assert_eq!(
            resolve(Some("none"), None, &emails(&["a@b.c"]), KEYS).unwrap_err(),
            PushAuthConfigError::NoneWithSettings("REMEDIATOR_PUSH_ALLOWED_EMAILS")
        );
    }

    #[test]
    fn an_unknown_mode_or_a_non_email_refuses_to_start() {
        assert_eq!(
            resolve(Some("iap"), Some(AUD), &emails(&["a@b.c"]), KEYS).unwrap_err(),
            PushAuthConfigError::UnknownMode("iap".into())
        );
        for bad in ["no-at-sign", "two@@signs", "@x", "sp ace@x"] {
            assert!(
                matches!(
                    resolve(Some("signed"), Some(AUD), &emails(&[bad]), KEYS),
                    Err(PushAuthConfigError::BadEmail(_))
                ),
                "{bad}"
            );
        }
    }
}
