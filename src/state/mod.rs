//! The local adapter of the state port ([`crate::ports::state`]): a directory of JSON files for
//! the command line and local runs (memory is the port's own [`MemoryStore`]).
//! Firestore, the store every Cloud Run instance shares, is in [`crate::gcp::firestore`].
//!
//! [`open`] turns the one setting (`REMEDIATOR_STATE`) into a store.

mod file;

use std::sync::Arc;

pub use crate::ports::state::MemoryStore;
pub use file::FileStore;

use crate::ports::StateStore;

/// Where the state lives, as one setting says it: `firestore://projects/P/databases/D`,
/// `file:PATH` or `memory`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateLocation {
    /// Firestore in Native mode: `projects/P/databases/D`.
    Firestore(String),
    /// A directory of the local file system.
    File(std::path::PathBuf),
    /// This process's memory (nothing survives it).
    Memory,
}

impl std::str::FromStr for StateLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("firestore://") {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                ["projects", p, "databases", d] if !p.is_empty() && !d.is_empty() => {
                    Ok(Self::Firestore(rest.to_owned()))
                }
                _ => Err(format!(
                    "`{s}`: a Firestore state is firestore://projects/PROJECT/databases/DATABASE"
                )),
            };
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a directory, e.g. file:/var/lib/remediator".to_owned());
            }
            return Ok(Self::File(path.into()));
        }
        if s == "memory" {
            return Ok(Self::Memory);
        }
        Err(format!(
            "`{s}` is not a state location: use firestore://projects/P/databases/D, file:PATH or memory"
        ))
    }
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Firestore(db) => write!(f, "firestore://{db}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Memory => f.write_str("memory"),
        }
    }
}

/// The default local state directory: `$XDG_STATE_HOME/gke-iam-remediator`, else
/// `$HOME/.local/state/gke-iam-remediator`, else `.gke-iam-remediator` in the working directory.
pub fn default_local_dir() -> std::path::PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".local/state"))
        });
    match base {
        Some(b) => b.join("gke-iam-remediator"),
        None => std::path::PathBuf::from(".gke-iam-remediator"),
    }
}

/// Opens the local stores (a file store, or memory); a Firestore location is opened by
/// [`crate::gcp::firestore`] and answered here with an error naming it.
pub fn open_local(location: &StateLocation) -> Result<Arc<dyn StateStore>, String> {
    match location {
        StateLocation::File(dir) => Ok(Arc::new(FileStore::open(dir)?)),
        StateLocation::Memory => Ok(Arc::new(MemoryStore::new())),
        StateLocation::Firestore(db) => Err(format!("firestore://{db} is not a local store")),
    }
}

#[cfg(test)]
mod tests {
    use super::StateLocation;

    #[test]
    fn a_state_location_is_read_from_its_one_setting() {
        assert_eq!(
            "firestore://projects/p/databases/remediator".parse(),
            Ok(StateLocation::Firestore(
                "projects/p/databases/remediator".to_owned()
            ))
        );
        assert_eq!(
            "file:/tmp/x".parse(),
            Ok(StateLocation::File("/tmp/x".into()))
        );
        assert_eq!("memory".parse(), Ok(StateLocation::Memory));
        for bad in ["firestore://projects/p", "file:", "redis://x", ""] {
            assert!(bad.parse::<StateLocation>().is_err(), "{bad}");
        }
    }
}
