//! Progress on stderr while `scan` checks projects, on a TTY only.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Progress on stderr, on a TTY only, for more than one project.
pub struct Progress {
    done: Arc<std::sync::atomic::AtomicUsize>,
    reporter: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting `total` projects (on a TTY, for more than one).
    pub fn start(total: usize) -> Self {
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reporter = (std::io::stderr().is_terminal() && total > 1).then(|| {
            let done = done.clone();
            tokio::spawn(async move {
                loop {
                    let n = done.load(std::sync::atomic::Ordering::Relaxed);
                    eprint!("\r\x1b[2Kchecking projects: {n}/{total}");
                    if n >= total {
                        eprintln!();
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
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits for the last line.
    pub async fn finish(self) {
        if let Some(r) = self.reporter {
            let _ = r.await;
        }
    }
}
