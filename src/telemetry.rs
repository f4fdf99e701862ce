//! Logging: JSON lines for Cloud Logging through `tracing-stackdriver` (severity, message, fields,
//! spans), with the request's trace correlated as `logging.googleapis.com/trace`; or plain text for
//! people at a terminal.
//!
//! tracing-stackdriver can only emit the trace key through an OpenTelemetry layer of an old version;
//! instead the handler records a plain `trace_id` span field and [`CorrelatingWriter`] lifts it into
//! `logging.googleapis.com/trace` (`projects/P/traces/T`) on each line before it is written.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Cloud Logging JSON (one object per line).
    Json,
    /// Human-readable text.
    Text,
}

/// Where finished lines go.
pub type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A stderr sink: logs never share standard output with a command's own output (`job`'s summary,
/// `scan`'s document), so `job ... | jq` reads the summary alone. Cloud Run collects both streams.
pub fn stderr_sink() -> Sink {
    Arc::new(|line: &[u8]| {
        let mut out = std::io::stderr().lock();
        let _ = out.write_all(line);
    })
}

/// Whether text logs may carry ANSI colour: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
pub fn colour(no_color: Option<&std::ffi::OsStr>, terminal: bool) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// A sink that collects lines in memory (tests).
pub fn memory_sink() -> (Sink, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    (
        Arc::new(move |line: &[u8]| {
            if let Ok(mut v) = b.lock() {
                v.extend_from_slice(line);
            }
        }),
        buf,
    )
}

/// A `MakeWriter` that adds `logging.googleapis.com/trace` from a `trace_id` span field.
#[derive(Clone)]
pub struct CorrelatingWriter {
    project: Option<String>,
    sink: Sink,
}

impl CorrelatingWriter {
    /// Writes to `sink`, correlating traces in `project`.
    pub fn new(project: Option<String>, sink: Sink) -> Self {
        Self { project, sink }
    }
}

/// One event's buffer; processed and flushed on drop.
pub struct LineBuffer {
    project: Option<String>,
    sink: Sink,
    buf: Vec<u8>,
}

impl Write for LineBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.buf.len() + 80);
        for line in self.buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.extend_from_slice(&correlate(line, self.project.as_deref()));
            out.push(b'\n');
        }
        (self.sink)(&out);
    }
}

impl<'a> MakeWriter<'a> for CorrelatingWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            project: self.project.clone(),
            sink: self.sink.clone(),
            buf: Vec::new(),
        }
    }
}

fn find_trace(v: &Value) -> Option<String> {
    let from = |s: &Value| {
        s.get("trace_id")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    v.get("span")
        .and_then(from)
        .or_else(|| v.get("spans")?.as_array()?.iter().rev().find_map(from))
}

/// Adds the Cloud Logging trace key to one JSON line when a span carries `trace_id`.
pub fn correlate(line: &[u8], project: Option<&str>) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
        return line.to_vec();
    };
    let Some(trace) = find_trace(&v) else {
        return line.to_vec();
    };
    if let Some(map) = v.as_object_mut() {
        let value = match project {
            Some(p) => format!("projects/{p}/traces/{trace}"),
            None => trace,
        };
        map.insert(
            "logging.googleapis.com/trace".to_owned(),
            Value::String(value),
        );
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| line.to_vec())
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Installs the global subscriber. Both formats go to stderr (Cloud Run collects it); text carries
/// colour only on a terminal without `NO_COLOR`.
pub fn init(format: LogFormat, project: Option<String>) {
    match format {
        LogFormat::Json => {
            let layer = tracing_stackdriver::layer()
                .with_writer(CorrelatingWriter::new(project, stderr_sink()));
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(layer)
                .try_init();
        }
        LogFormat::Text => {
            use std::io::IsTerminal;
            let ansi = colour(
                std::env::var_os("NO_COLOR").as_deref(),
                std::io::stderr().is_terminal(),
            );
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .try_init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(None, true));
        assert!(!colour(None, false), "a file or a pipe gets plain text");
        assert!(!colour(Some(std::ffi::OsStr::new("1")), true));
        assert!(
            colour(Some(std::ffi::OsStr::new("")), true),
            "an empty NO_COLOR is unset"
        );
    }

    #[test]
    fn a_log_line_in_a_request_span_carries_severity_message_fields_and_the_trace() {
        let (sink, buf) = memory_sink();
        let layer = tracing_stackdriver::layer()
            .with_writer(CorrelatingWriter::new(Some("ops-project".to_owned()), sink));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "pubsub_push",
                message_id = "42",
                trace_id = "0af7651916cd43dd8448eb211c80319c"
            );
            let _g = span.enter();
            tracing::warn!(
                project = "demo-project",
                outcome = "restored",
                "finding outcome"
            );
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "finding outcome");
        assert_eq!(line["project"], "demo-project");
        assert_eq!(line["outcome"], "restored");
        assert_eq!(
            line["logging.googleapis.com/trace"],
            "projects/ops-project/traces/0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(line["span"]["message_id"], "42");
    }

    #[test]
    fn lines_without_a_trace_are_left_alone() {
        assert_eq!(
            correlate(b"{\"message\":\"x\"}", Some("p")),
            b"{\"message\":\"x\"}".to_vec()
        );
        assert_eq!(correlate(b"not json", Some("p")), b"not json".to_vec());
    }
}
