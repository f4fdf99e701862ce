//! The error type of every Google API call, decoded from Google's error JSON.

use std::fmt;

/// Which Google API a call went to (for rate limits, retries, counters and messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// cloudresourcemanager.googleapis.com
    ResourceManager,
    /// iam.googleapis.com
    Iam,
    /// container.googleapis.com
    Container,
    /// recommender.googleapis.com
    Recommender,
    /// serviceusage.googleapis.com
    ServiceUsage,
    /// policytroubleshooter.googleapis.com
    PolicyTroubleshooter,
    /// logging.googleapis.com
    Logging,
    /// orgpolicy.googleapis.com
    OrgPolicy,
    /// cloudidentity.googleapis.com
    CloudIdentity,
    /// cloudasset.googleapis.com
    CloudAsset,
    /// firestore.googleapis.com (the state store's documents)
    Firestore,
}

impl Api {
    /// Every API.
    pub const ALL: [Api; 11] = [
        Self::ResourceManager,
        Self::Iam,
        Self::Container,
        Self::Recommender,
        Self::ServiceUsage,
        Self::PolicyTroubleshooter,
        Self::Logging,
        Self::OrgPolicy,
        Self::CloudIdentity,
        Self::CloudAsset,
        Self::Firestore,
    ];

    /// The API's short name, as in its host name and in `--rate-limit NAME=N`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ResourceManager => "cloudresourcemanager",
            Self::Iam => "iam",
            Self::Container => "container",
            Self::Recommender => "recommender",
            Self::ServiceUsage => "serviceusage",
            Self::PolicyTroubleshooter => "policytroubleshooter",
            Self::Logging => "logging",
            Self::OrgPolicy => "orgpolicy",
            Self::CloudIdentity => "cloudidentity",
            Self::CloudAsset => "cloudasset",
            Self::Firestore => "firestore",
        }
    }

    /// Parses a short name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed Google API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Google answered with an error status.
    #[error("{api} {method}: HTTP {code} {status}: {message}{}", permission_hint(.code, .permission))]
    Status {
        /// API called.
        api: Api,
        /// Method called (e.g. `projects.setIamPolicy`).
        method: &'static str,
        /// HTTP status code.
        code: u16,
        /// google.rpc status (`ABORTED`, `PERMISSION_DENIED`, ...).
        status: String,
        /// Google's message.
        message: String,
        /// The permission the caller lacks (from `ErrorInfo`, else the one the method needs).
        permission: Option<String>,
        /// `ErrorInfo.reason` (`SERVICE_DISABLED`, `IAM_PERMISSION_DENIED`, ...).
        reason: Option<String>,
    },
    /// The request could not be sent or the response not received.
    #[error("{api} {method}: {message}")]
    Transport {
        /// API called.
        api: Api,
        /// Method called.
        method: &'static str,
        /// What happened.
        message: String,
    },
    /// The response was not the JSON we expected.
    #[error("{api} {method}: unexpected response: {message}")]
    Decode {
        /// API called.
        api: Api,
        /// Method called.
        method: &'static str,
        /// The decoding error with the field path.
        message: String,
    },
    /// The request was refused before sending (an id or name that is not safe in a URL path).
    #[error("{api} {method}: {message}")]
    Invalid {
        /// API called.
        api: Api,
        /// Method called.
        method: &'static str,
        /// Why.
        message: String,
    },
    /// Credentials could not produce a token.
    #[error("credentials: {0}")]
    Auth(String),
    /// The IAM v2 read quota has no room now: the client-side window is spent (nothing was sent) or
    /// Google answered 429 (other callers share the consumer project's quota). Neither waited for
    /// nor retried (not transient). Raise Google's quota and the limit together.
    #[error("{api} {method}: {}", quota_message(*.limit, *.at_google, *.budget))]
    ReadQuotaSpent {
        /// API called.
        api: Api,
        /// Method called.
        method: &'static str,
        /// Reads the client admits in any minute.
        limit: u32,
        /// Google answered 429 `RESOURCE_EXHAUSTED` (the client's window had room).
        at_google: bool,
        /// The reads a one-shot run allows itself in all, when that budget is what is spent.
        budget: Option<u32>,
    },
}

fn quota_message(limit: u32, at_google: bool, budget: Option<u32>) -> String {
    let raise = "raise Google's quota (per consumer project per minute) and --rate-limit iam-v2 together to read more";
    if let Some(budget) = budget {
        format!(
            "IAM v2 read quota: this run's {budget} deny-policy reads (what {limit} a minute, --rate-limit iam-v2={limit}, allow within --iam-v2-wait) are spent; not read: {raise}, or give a longer --iam-v2-wait"
        )
    } else if at_google {
        format!(
            "IAM v2 read quota spent at Google (429 RESOURCE_EXHAUSTED; other callers share the consumer project's quota; this process allows itself {limit} deny-policy reads per minute, --rate-limit iam-v2={limit}); not read now: {raise}"
        )
    } else {
        format!(
            "IAM v2 read quota: {limit} deny-policy reads per minute (--rate-limit iam-v2={limit}) spent; not read now: {raise}"
        )
    }
}

fn permission_hint(code: &u16, permission: &Option<String>) -> String {
    match (code, permission) {
        (403, Some(p)) => format!(" (the caller lacks the permission `{p}`)"),
        _ => String::new(),
    }
}

impl ApiError {
    /// HTTP status, if Google answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A concurrent-modification conflict (409 `ABORTED`): re-read and retry the whole read-modify-write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Status { code: 409, .. })
            || matches!(self, Self::Status { status, .. } if status == "ABORTED")
    }

    /// A transient failure worth retrying (429, 5xx, transport).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { code, .. } => *code == 429 || (500..=599).contains(code),
            Self::Transport { .. } => true,
            _ => false,
        }
    }

    /// The client-side IAM v2 read quota was spent: nothing was sent.
    pub fn is_read_quota_spent(&self) -> bool {
        matches!(self, Self::ReadQuotaSpent { .. })
    }

    /// 404 NOT_FOUND.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 403 PERMISSION_DENIED that is not an API-disabled answer.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Status { code: 403, reason, .. } if reason.as_deref() != Some("SERVICE_DISABLED"))
    }

    /// 403 with `reason: SERVICE_DISABLED`.
    pub fn is_service_disabled(&self) -> bool {
        matches!(self, Self::Status { code: 403, reason: Some(r), .. } if r == "SERVICE_DISABLED")
    }
}
