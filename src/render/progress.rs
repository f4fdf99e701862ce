//! Progress on stderr while `scan` checks projects, on a TTY only: how many projects are done and,
//! when a deny-policy read waits for Google's IAM v2 read quota, for how long.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a read still waits for a quota, if one does (the client's
/// [`crate::gcp::Client::iam_v2_waiting_for`]).
pub type QuotaWait = Box<dyn Fn() -> Option<Duration> + Send + Sync>;

/// Progress on stderr, on a TTY only: the count for more than one project, and any wait for the
/// IAM v2 read quota (a one-project scan too).
pub struct Progress {
    done: Arc<AtomicUsize>,
    reporter: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting `total` projects, asking `waiting` for quota waits.
    pub fn start(total: usize, waiting: QuotaWait) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let reporter = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut shown = false;
                loop {
                    let n = done.load(Ordering::Relaxed);
                    match progress_line(n, total, waiting()) {
                        Some(line) => {
                            eprint!("\r\x1b[2K{line}");
                            shown = true;
                        }
                        None if shown => eprint!("\r\x1b[2K"),
                        None => {}
                    }
                    if n >= total {
                        if shown {
                            eprintln!();
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Self { done, reporter }
    }

    /// One more project done.
    pub fn tick(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits for the last line.
    pub async fn finish(self) {
        if let Some(r) = self.reporter {
            let _ = r.await;
        }
    }
}

/// The progress line: `checking projects: 3/10` for more than one project, and what the run waits
/// for and how long; `None` when there is nothing to say (one project, no wait).
pub fn progress_line(done: usize, total: usize, waiting: Option<Duration>) -> Option<String> {
    let count = (total > 1).then(|| format!("checking projects: {done}/{total}"));
    let wait = waiting.map(|w| {
        format!(
            "waiting {}s for the IAM v2 read quota (deny-policy reads a minute)",
            w.as_secs_f64().ceil()
        )
    });
    match (count, wait) {
        (Some(c), Some(w)) => Some(format!("{c}; {w}")),
        (c, w) => c.or(w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_when_the_run_waits_for_the_quota_and_for_how_long() {
        assert_eq!(
            progress_line(3, 10, None).as_deref(),
            Some("checking projects: 3/10")
        );
        assert_eq!(
            progress_line(3, 10, Some(Duration::from_millis(42_300))).as_deref(),
            Some(
                "checking projects: 3/10; waiting 43s for the IAM v2 read quota (deny-policy reads a minute)"
            )
        );
        let one = progress_line(0, 1, Some(Duration::from_secs(61))).unwrap();
        assert!(one.starts_with("waiting 61s for"), "{one}");
        assert_eq!(
            progress_line(0, 1, None),
            None,
            "one project, no wait: quiet"
        );
    }
}
