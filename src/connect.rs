//! How commands reach Google and the state store: the connection settings every command that calls
//! Google shares (`--api-endpoint`, `--access-token`, `--rate-limit`, `--iam-v2-wait`, `--state`,
//! `--billing-project`), how a mode spends the IAM v2 read quota, and the errors of setting a command
//! up before any project is examined.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::gcp::{Client, ClientConfig, Credentials, Gcp};
use crate::policy::ConfigError;
use crate::ports::{Api, ApiError, RetryPolicy};

/// Connection settings shared by every command that calls Google.
#[derive(clap::Args, Debug, Clone)]
pub struct GcpArgs {
    /// Send every Google REST call to this base URL (the simulator), with anonymous credentials
    /// unless `--access-token` is given.
    #[arg(long, env = "REMEDIATOR_API_ENDPOINT")]
    pub api_endpoint: Option<String>,
    /// A fixed bearer token instead of Application Default Credentials (for the simulator:
    /// `sim:EMAIL` names the caller).
    #[arg(long, env = "REMEDIATOR_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,
    /// Client-side rate limit per API, requests per second: `cloudresourcemanager=10`; and
    /// `iam-v2=N`, IAM v2 (deny-policy) reads in any minute (default 5, Google's quota). Repeatable, or
    /// comma-separated in the environment.
    #[arg(
        long = "rate-limit",
        value_name = "API=N",
        env = "REMEDIATOR_RATE_LIMITS",
        value_delimiter = ','
    )]
    pub rate_limits: Vec<String>,
    /// Attempts per call on 429/5xx (including the first).
    #[arg(long, default_value_t = 6)]
    pub max_attempts: u32,
    /// How long deny-policy reads may take in the IAM v2 quota. `scan` and `explain` (default 0)
    /// and `job --sweep` without `--subscription` (default 0) make as many reads as the quota
    /// allows in that many seconds (5 a minute: turns at 0, 61, 122 and 183 s, 20 reads in 240),
    /// each waiting for its turn, in a fixed order, and no more: which deny policies are read does
    /// not depend on timing. `serve` and a `job` with a subscription (default 0) let a read wait
    /// for its turn only within that many seconds from the start; after that a read with no turn
    /// free is not made. Deny policies not read are reported as such.
    #[arg(long, value_name = "SECONDS", env = "REMEDIATOR_IAM_V2_WAIT_SECONDS")]
    pub iam_v2_wait: Option<u64>,
    /// Where state is kept (the finding ledger, restorations, the deny-policy cache):
    /// `firestore://projects/P/databases/D`, `file:DIR` or `memory`. Default: `serve` and `job`
    /// memory (guarantees per instance only, said at start-up); `scan` and `explain` a file store
    /// under `$XDG_STATE_HOME/gke-iam-remediator` (deny-policy reads reused across runs), or memory
    /// with `--api-endpoint`.
    #[arg(long, value_name = "LOCATION", env = "REMEDIATOR_STATE")]
    pub state: Option<String>,
    /// The project billed for API quota (`x-goog-user-project`), as `gcloud --billing-project`:
    /// overrides the quota project of the credentials (`gcloud auth application-default
    /// set-quota-project`).
    #[arg(long, value_name = "PROJECT_ID", env = "REMEDIATOR_BILLING_PROJECT")]
    pub billing_project: Option<String>,
}

/// The span of the quota `scan` and `explain` spend on deny-policy reads by default: none, so they
/// never wait for Google's 5 IAM v2 reads a minute unless asked (`--iam-v2-wait SECONDS`). They make
/// the reads the quota has free now (5), cache them in the state store (`--state`) so the next run
/// reads others, and report accounts whose deny policies were not all read as `ok*`.
pub const CLI_IAM_V2_WAIT: Duration = Duration::ZERO;

/// Errors before any project is examined.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The policy file is bad.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Credentials or the HTTP client.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// Standard output could not be written.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Opens the store a `--state` setting names; unset: `default` (memory when `None`).
pub fn open_store(
    setting: Option<&str>,
    default: Option<crate::state::StateLocation>,
) -> Result<Arc<dyn crate::ports::StateStore>, String> {
    use crate::state::StateLocation;
    let location = match setting.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s
            .parse::<StateLocation>()
            .map_err(|e| format!("REMEDIATOR_STATE: {e}"))?,
        None => default.unwrap_or(StateLocation::Memory),
    };
    match &location {
        StateLocation::Firestore(_) => {
            let store = crate::gcp::firestore::FirestoreStore::connect(&location.to_string())
                .map_err(|e| format!("REMEDIATOR_STATE: {e}"))?;
            Ok(store)
        }
        local => crate::state::open_local(local).map_err(|e| format!("REMEDIATOR_STATE: {e}")),
    }
}

impl GcpArgs {
    /// The store of a one-shot command (`scan`, `explain`): the setting, else a file store under
    /// the user's state directory against Google, memory against the simulator (its worlds reuse
    /// project numbers).
    pub fn command_store(&self) -> Result<Arc<dyn crate::ports::StateStore>, SetupError> {
        let default = self
            .api_endpoint
            .is_none()
            .then(|| crate::state::StateLocation::File(crate::state::default_local_dir()));
        open_store(self.state.as_deref(), default).map_err(SetupError::Usage)
    }
}

/// How a mode holds its deny-policy reads to the IAM v2 quota.
#[derive(Clone, Copy, Debug)]
pub enum IamV2Reads {
    /// A one-shot run (`scan`, `explain`, `job --sweep` alone): a budget of what the window allows
    /// within `--iam-v2-wait` (else this many seconds), each read waiting for its turn until spent.
    Budget(Duration),
    /// A process that handles messages (`serve`, `job --subscription`): the window alone; a read may
    /// wait for its turn only within `--iam-v2-wait` seconds from the start (none by default).
    Window,
}

impl GcpArgs {
    /// Builds the Google adapters from the arguments.
    pub fn connect(&self, reads: IamV2Reads) -> Result<Gcp, SetupError> {
        let credentials = match (&self.access_token, &self.api_endpoint) {
            (Some(token), _) => Credentials::Static(token.clone()),
            (None, Some(_)) => Credentials::Anonymous,
            (None, None) => Credentials::application_default()?,
        };
        let (rate_limits, iam_v2_reads_per_minute) = self.rate_limits()?;
        let wait = self.iam_v2_wait.map(Duration::from_secs);
        let (iam_v2_wait_span, iam_v2_budget) = match reads {
            IamV2Reads::Budget(default) => (
                Duration::ZERO,
                Some(crate::gcp::client::iam_v2_budget(
                    iam_v2_reads_per_minute,
                    wait.unwrap_or(default),
                )),
            ),
            IamV2Reads::Window => (wait.unwrap_or_default(), None),
        };
        let client = Client::new(ClientConfig {
            api_endpoint: self.api_endpoint.clone(),
            credentials,
            retry: RetryPolicy {
                max_attempts: self.max_attempts.max(1),
                ..RetryPolicy::default()
            },
            rate_limits,
            iam_v2_reads_per_minute,
            iam_v2_wait_span,
            iam_v2_budget,
            timeout: Duration::from_secs(30),
            billing_project: self.billing_project.clone(),
        })?;
        Ok(Gcp::new(client))
    }

    /// The steady limits per API and the IAM v2 reads per minute, from `--rate-limit`.
    fn rate_limits(&self) -> Result<(BTreeMap<Api, f64>, u32), SetupError> {
        let mut rate_limits = crate::gcp::client::default_rate_limits();
        let mut iam_v2_reads_per_minute = crate::gcp::client::IAM_V2_READS_PER_MINUTE;
        for spec in &self.rate_limits {
            let (name, value) = spec.split_once('=').ok_or_else(|| {
                SetupError::Usage(format!("--rate-limit `{spec}`: expected API=N"))
            })?;
            if name == crate::gcp::client::IAM_V2_KEY {
                // Google's IAM v2 read quota is per minute, and so is this limit.
                iam_v2_reads_per_minute = value
                    .parse()
                    .ok()
                    .filter(|n: &u32| *n > 0)
                    .ok_or_else(|| {
                        SetupError::Usage(format!(
                            "--rate-limit `{spec}`: N must be a whole number of deny-policy reads per minute, at least 1"
                        ))
                    })?;
                continue;
            }
            let api = Api::from_name(name).ok_or_else(|| {
                let mut names: Vec<_> = Api::ALL.iter().map(|a| a.name()).collect();
                names.push(crate::gcp::client::IAM_V2_KEY);
                SetupError::Usage(format!(
                    "--rate-limit: unknown API `{name}`, expected one of {}",
                    names.join(", ")
                ))
            })?;
            let n: f64 = value
                .parse()
                .ok()
                .filter(|n: &f64| *n > 0.0)
                .ok_or_else(|| {
                    SetupError::Usage(format!(
                        "--rate-limit `{spec}`: N must be a positive number"
                    ))
                })?;
            rate_limits.insert(api, n);
        }
        Ok((rate_limits, iam_v2_reads_per_minute))
    }
}
