//! Terminal text: whether to colour, what a piece of text says (its tone) and its ANSI colour, and
//! how an outcome reads (its label, urgency and tone).

use crate::domain::report::Outcome;

/// How the table is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colour (a TTY without `NO_COLOR`).
    pub color: bool,
    /// Show healthy rows too (`--all`).
    pub all: bool,
    /// Show every project as a block, not only those with something to act on (their healthy rows
    /// collapsed unless `all`).
    pub every_project: bool,
}

/// What a piece of terminal text says, for its colour.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Broken, failed.
    Bad,
    /// Needs a look.
    Warn,
    /// Fine.
    Good,
    /// No colour.
    Plain,
    /// A heading (bold).
    Head,
}

/// `text` in the tone's ANSI colour when the style has colour, else as it is.
pub fn paint(style: Style, tone: Tone, text: &str) -> String {
    let code = match tone {
        _ if !style.color => return text.to_owned(),
        Tone::Bad => "31;1",
        Tone::Warn => "33",
        Tone::Good => "32",
        Tone::Head => "1",
        Tone::Plain => return text.to_owned(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Problems first: the lower, the more urgent.
pub fn urgency(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Failed | Outcome::Escalated => 0,
        Outcome::NotAllowed | Outcome::WouldRestore | Outcome::Unknown => 1,
        Outcome::Expiring => 2,
        Outcome::Restored => 3,
        Outcome::Healthy | Outcome::Resolved => 4,
    }
}

/// The tone of an outcome: bad, needs a look, or fine.
pub fn outcome_tone(outcome: Outcome) -> Tone {
    match urgency(outcome) {
        0 => Tone::Bad,
        1 | 2 => Tone::Warn,
        _ => Tone::Good,
    }
}

/// An outcome as the table writes it (`unknown` reads `needs review`).
pub fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Unknown => "needs review",
        other => other.as_str(),
    }
}

/// Whether a command's output on stdout may carry colour: the logs' rule
/// ([`crate::telemetry::colour`]), for stdout.
pub fn stdout_colour() -> bool {
    use std::io::IsTerminal;
    crate::telemetry::colour(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stdout().is_terminal(),
    )
}
