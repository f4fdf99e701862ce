//! The `scan --format json` document (`scan/v1`), written one project at a time.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::domain::report::{ProjectReport, Summary};
use crate::engine::snapshot::Discovery;
use crate::gcp::CallCounts;

/// The schema id of the `scan --format json` document.
pub const SCAN_SCHEMA: &str = "gke-iam-remediator.scan/v1";

/// The `scan --format json` document. Field names are a stable contract: fields may be added, never
/// renamed.
#[derive(Serialize)]
pub struct ScanDocument<'a> {
    /// Schema id.
    pub schema: &'static str,
    /// `dry-run` or `enforce` (enforce only with `--apply`).
    pub mode: &'static str,
    /// Per-project results.
    pub projects: &'a [ProjectReport],
    /// Totals.
    pub summary: &'a Summary,
    /// Google API calls made.
    pub api_calls: &'a CallCounts,
    /// Wall time.
    pub elapsed_ms: u128,
    /// How projects were discovered and checked (`cloud-asset-inventory` or `per-project`).
    pub discovery: &'a Discovery,
}

/// The `scan/v1` JSON document written incrementally: the same document [`ScanDocument`] describes,
/// with each project serialised as it completes.
pub struct JsonStream<W: Write> {
    out: W,
    first: bool,
}

impl<W: Write> JsonStream<W> {
    /// Writes the opening of the document.
    pub fn start(mut out: W, mode: &str) -> std::io::Result<Self> {
        write!(
            out,
            "{{\n  \"schema\": {},\n  \"mode\": {},\n  \"projects\": [",
            serde_json::to_string(SCAN_SCHEMA)?,
            serde_json::to_string(mode)?
        )?;
        Ok(Self { out, first: true })
    }

    /// Writes one project.
    pub fn project(&mut self, report: &ProjectReport) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        self.out.write_all(b"\n")?;
        serde_json::to_writer_pretty(&mut self.out, report)?;
        Ok(())
    }

    /// Writes the totals and closes the document.
    pub fn finish(
        mut self,
        summary: &Summary,
        api_calls: &CallCounts,
        elapsed: Duration,
        discovery: &Discovery,
    ) -> std::io::Result<()> {
        let close = if self.first { "]" } else { "\n  ]" };
        write!(self.out, "{close},\n  \"summary\": ")?;
        serde_json::to_writer_pretty(&mut self.out, summary)?;
        write!(self.out, ",\n  \"api_calls\": ")?;
        serde_json::to_writer_pretty(&mut self.out, api_calls)?;
        write!(self.out, ",\n  \"elapsed_ms\": {}", elapsed.as_millis())?;
        write!(self.out, ",\n  \"discovery\": ")?;
        serde_json::to_writer_pretty(&mut self.out, discovery)?;
        writeln!(self.out, "\n}}")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report;
    use crate::render::fixtures::sample;

    #[test]
    fn the_streamed_json_is_the_scan_document() {
        let reports = sample();
        let summary = report::summarize(&reports);
        let counts = CallCounts::default();
        let discovery = Discovery::CloudAssetInventory {
            read_time: Some("2026-12-01T10:00:00Z".to_owned()),
            asset_calls: 2,
            from_snapshot: 2,
            reverified: 1,
        };
        let mut buf = Vec::new();
        {
            let mut stream = JsonStream::start(&mut buf, "dry-run").unwrap();
            for r in &reports {
                stream.project(r).unwrap();
            }
            stream
                .finish(&summary, &counts, Duration::from_millis(12), &discovery)
                .unwrap();
        }
        let streamed: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let whole = serde_json::to_value(ScanDocument {
            schema: SCAN_SCHEMA,
            mode: "dry-run",
            projects: &reports,
            summary: &summary,
            api_calls: &counts,
            elapsed_ms: 12,
            discovery: &discovery,
        })
        .unwrap();
        assert_eq!(streamed, whole);
        // No project at all is still a valid document.
        let mut empty = Vec::new();
        JsonStream::start(&mut empty, "enforce")
            .unwrap()
            .finish(
                &Summary::default(),
                &counts,
                Duration::ZERO,
                &Discovery::PerProject { reason: None },
            )
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(doc["projects"], serde_json::json!([]));
    }
}
