//! What the commands print for people and machines: the `scan` table (a block per project that needs
//! a look, one line per category of the rest, the summary), the `scan/v1` JSON document, the lines
//! under a finding (its fix), terminal colour, progress, and the exit code a run adds up to.
//!
//! Pure text from report values: nothing here calls Google or reads state.

pub mod fix;
#[cfg(test)]
mod fixtures;
pub mod json;
pub mod progress;
pub mod rest;
pub mod style;
pub mod summary;
pub mod table;

pub use fix::{describe_action, gcloud_fix};
pub use json::{JsonStream, SCAN_SCHEMA, ScanDocument};
pub use style::{Style, Tone, paint, stdout_colour};
pub use summary::exit_code;
pub use table::{Block, TableStream, render_project, render_table};

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table for people.
    Table,
    /// The stable JSON document.
    Json,
}
