//! Logging: JSON lines for Cloud Logging through `tracing-stackdriver` (severity, message, fields,
//! spans), with the request's trace correlated as `logging.googleapis.com/trace`; or plain text for
//! people at a terminal.
//!
//! tracing-stackdriver can only emit the trace key through an OpenTelemetry layer of an old version;
//! instead the handler records a plain `trace_id` span field, [`TraceLayer`] keeps it on the span and
//! tells the writer the trace of each event, and [`CorrelatingWriter`] appends the key to the line
//! tracing-stackdriver wrote, which is never parsed again.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::{LookupSpan, SpanRef};
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

/// [`colour`] for this process's stderr (the logs).
fn stderr_colour() -> bool {
    use std::io::IsTerminal;
    colour(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stderr().is_terminal(),
    )
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

/// The name of the span field that carries a request's trace id.
const TRACE_FIELD: &str = "trace_id";
/// Cloud Logging's key for the trace of a line.
const TRACE_KEY: &str = "logging.googleapis.com/trace";

thread_local! {
    /// The trace member (`,"logging.googleapis.com/trace":"..."`) of the event this thread is writing:
    /// set by [`TraceLayer`] for every event just before tracing-stackdriver formats it on the same
    /// thread, taken by the [`CorrelatingWriter`] it writes through.
    static EVENT_TRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A span's trace id, as its `trace_id` field was last recorded (never empty).
struct SpanTrace(String);

/// Reads the `trace_id` field of a span's values.
#[derive(Default)]
struct TraceVisitor(Option<String>);

impl Visit for TraceVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACE_FIELD {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == TRACE_FIELD {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Keeps each span's `trace_id` field in the span's extensions and, for each event, hands the trace
/// of the nearest span that has one (the event's own span first, then its parents) to the writer.
pub struct TraceLayer {
    project: Option<String>,
}

impl TraceLayer {
    /// Traces are named `projects/{project}/traces/{id}`, or by their bare id without a project.
    pub fn new(project: Option<String>) -> Self {
        Self { project }
    }

    /// Keeps the trace a span's values recorded (an empty one removes the span's trace).
    fn keep<S>(span: Option<SpanRef<'_, S>>, visitor: TraceVisitor)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let (Some(span), Some(trace)) = (span, visitor.0) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        extensions.remove::<SpanTrace>();
        if !trace.is_empty() {
            extensions.insert(SpanTrace(trace));
        }
    }
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = TraceVisitor::default();
        attrs.record(&mut visitor);
        Self::keep(ctx.span(id), visitor);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut visitor = TraceVisitor::default();
        values.record(&mut visitor);
        Self::keep(ctx.span(id), visitor);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let trace = ctx.event_scope(event).and_then(|mut scope| {
            scope.find_map(|span| span.extensions().get::<SpanTrace>().map(|t| t.0.clone()))
        });
        let member = trace.map(|trace| {
            let value = match &self.project {
                Some(p) => format!("projects/{p}/traces/{trace}"),
                None => trace,
            };
            format!(",{}:{}", Value::from(TRACE_KEY), Value::from(value))
        });
        EVENT_TRACE.with(|t| *t.borrow_mut() = member);
    }
}

/// A `MakeWriter` that writes each line to a sink, with the trace [`TraceLayer`] found for its event
/// appended as the line's last member.
#[derive(Clone)]
pub struct CorrelatingWriter {
    sink: Sink,
}

impl CorrelatingWriter {
    /// Writes to `sink`.
    pub fn new(sink: Sink) -> Self {
        Self { sink }
    }
}

/// One event's buffer; flushed on drop.
pub struct LineBuffer {
    trace: Option<String>,
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
        let Some(trace) = &self.trace else {
            (self.sink)(&self.buf);
            return;
        };
        let mut out = Vec::with_capacity(self.buf.len() + trace.len());
        for line in self.buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.extend_from_slice(&with_member(line, trace));
            out.push(b'\n');
        }
        (self.sink)(&out);
    }
}

impl<'a> MakeWriter<'a> for CorrelatingWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            trace: EVENT_TRACE.with(|t| t.borrow_mut().take()),
            sink: self.sink.clone(),
            buf: Vec::new(),
        }
    }
}

/// One JSON object `line` with `member` (`,"key":value`) added before its closing brace; a line that
/// is not an object is left alone.
fn with_member(line: &[u8], member: &str) -> Vec<u8> {
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace());
    let (Some(end), Some(b'{')) = (end, line.first()) else {
        return line.to_vec();
    };
    if line[end] != b'}' {
        return line.to_vec();
    }
    let member = match line[..end].iter().rposition(|b| !b.is_ascii_whitespace()) {
        Some(last) if line[last] == b'{' => &member[1..],
        _ => member,
    };
    let mut out = Vec::with_capacity(line.len() + member.len());
    out.extend_from_slice(&line[..end]);
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(&line[end..]);
    out
}

/// The Cloud Logging JSON layer: tracing-stackdriver's lines, written to `sink`, with the trace of
/// [`TraceLayer`] correlated in `project`.
pub fn json_layer<S>(project: Option<String>, sink: Sink) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    TraceLayer::new(project)
        .and_then(tracing_stackdriver::layer().with_writer(CorrelatingWriter::new(sink)))
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Installs the global subscriber of a one-shot command (`scan`, `explain`, `check-plan`, `demo`,
/// `sim`): text on stderr, warnings and errors unless `RUST_LOG` says otherwise, colour only on a
/// terminal without `NO_COLOR` (stdout carries the command's output).
pub fn init_command() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_colour())
        .try_init();
}

/// Installs the global subscriber. Both formats go to stderr (Cloud Run collects it); text carries
/// colour only on a terminal without `NO_COLOR`.
pub fn init(format: LogFormat, project: Option<String>) {
    match format {
        LogFormat::Json => {
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(json_layer(project, stderr_sink()))
                .try_init();
        }
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .with_ansi(stderr_colour())
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

    /// The JSON lines `emit` logs through the JSON layer (trace project `ops-project`).
    fn json_lines(emit: impl FnOnce()) -> Vec<Value> {
        let (sink, buf) = memory_sink();
        let subscriber =
            tracing_subscriber::registry().with(json_layer(Some("ops-project".to_owned()), sink));
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_log_line_in_a_request_span_carries_severity_message_fields_and_the_trace() {
        let lines = json_lines(|| {
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
        let line = &lines[0];
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
    fn the_nearest_span_with_a_trace_names_it_and_a_line_outside_every_span_has_none() {
        let lines = json_lines(|| {
            let outer = tracing::info_span!("outer", trace_id = "aaaa");
            let o = outer.enter();
            let inner = tracing::info_span!("inner", trace_id = tracing::field::Empty);
            let i = inner.enter();
            tracing::info!("only the outer span has one");
            inner.record("trace_id", "bbbb");
            tracing::info!("the inner one was recorded later");
            inner.record("trace_id", "");
            tracing::info!("an empty one does not count");
            drop(i);
            drop(o);
            tracing::info!("outside");
        });
        let traces: Vec<Value> = lines
            .iter()
            .map(|l| l["logging.googleapis.com/trace"].clone())
            .collect();
        let expected: Vec<Value> = vec![
            "projects/ops-project/traces/aaaa".into(),
            "projects/ops-project/traces/bbbb".into(),
            "projects/ops-project/traces/aaaa".into(),
            Value::Null,
        ];
        assert_eq!(traces, expected);
    }

    #[test]
    fn a_correlated_line_is_tracing_stackdrivers_own_line_with_the_trace_added_last() {
        let emit = || {
            let span = tracing::info_span!("pubsub_push", trace_id = "cafe", n = 3);
            let _g = span.enter();
            tracing::error!(http_request.status = 503, labels.kind = "x", "failed");
        };
        let (sink, buf) = memory_sink();
        let plain = tracing_subscriber::registry()
            .with(tracing_stackdriver::layer().with_writer(CorrelatingWriter::new(sink)));
        tracing::subscriber::with_default(plain, emit);
        let own = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let (sink, buf) = memory_sink();
        let correlated = tracing_subscriber::registry().with(json_layer(None, sink));
        tracing::subscriber::with_default(correlated, emit);
        let ours = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        // Everything but the time, in the same order, then the trace.
        let time = |line: &str| line.split('"').nth(3).unwrap().to_owned();
        let expected = own
            .trim_end()
            .strip_suffix('}')
            .unwrap()
            .replace(&time(&own), &time(&ours));
        assert_eq!(
            ours,
            format!("{expected},\"logging.googleapis.com/trace\":\"cafe\"}}\n")
        );
    }

    #[test]
    fn a_member_is_added_to_json_objects_only() {
        let member = ",\"k\":\"v\"";
        assert_eq!(with_member(b"{\"a\":1}", member), b"{\"a\":1,\"k\":\"v\"}");
        assert_eq!(with_member(b"{ }", member), b"{ \"k\":\"v\"}");
        assert_eq!(with_member(b"not json", member), b"not json");
        assert_eq!(with_member(b"[1]", member), b"[1]");
    }
}
