//! The drift report: one document, four renderings (terminal, JSON, JUnit, Markdown).
//!
//! [`DriftReport`] is built once from the fold and the findings; every format reads
//! only it. Its JSON Schema comes from the type (schemars) and is committed as
//! `schemas/drift-report.schema.json`.

pub mod human;
pub mod junit;
pub mod markdown;

use std::collections::BTreeMap;

use serde::Serialize;

use super::compare::{Against, Finding};
use super::severity::Level;
use super::shape::{Counts, EventShape};
use crate::check::Verdict;

/// The version of the report's JSON shape.
pub const REPORT_VERSION: u32 = 1;

/// The result of one `stagegate drift`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DriftReport {
    /// The format's version (1).
    pub stagegate_drift_report: u32,
    /// `pass` (no finding), `warn` (additive only) or `blocked` (breaking).
    pub verdict: Verdict,
    /// The inputs, in the order given.
    pub inputs: Vec<String>,
    /// The manifest whose contracts were compared, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The baseline compared with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Whether the baseline was rewritten from this input (its findings then do not block).
    pub baseline_updated: bool,
    /// Where the event type was read, in order of preference.
    pub type_fields: Vec<String>,
    /// Only captures that arrived at or after this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only captures that arrived before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// What was read and skipped.
    pub counts: Counts,
    /// Breaking findings.
    pub breaking: usize,
    /// Additive findings.
    pub additive: usize,
    /// Every finding, by event type, then breaking first, then by id and path.
    pub findings: Vec<Finding>,
    /// The inferred shape, per event type, with payload counts and presence ratios.
    pub shape: BTreeMap<String, EventShape>,
}

impl DriftReport {
    /// Whether a finding counts toward the verdict (baseline findings are accepted
    /// when the baseline is being updated).
    pub fn blocks(&self, finding: &Finding) -> bool {
        finding.severity == Level::Breaking
            && !(self.baseline_updated && finding.against == Against::Baseline)
    }

    /// Fills the counts and the verdict from the findings.
    pub fn settle(&mut self) {
        self.breaking = self
            .findings
            .iter()
            .filter(|f| f.severity == Level::Breaking)
            .count();
        self.additive = self
            .findings
            .iter()
            .filter(|f| f.severity == Level::Additive)
            .count();
        let blocking = self.findings.iter().any(|f| self.blocks(f));
        self.verdict = if blocking {
            Verdict::Blocked
        } else if self.findings.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Warn
        };
    }
}

/// The JSON Schema of [`DriftReport`], committed as `schemas/drift-report.schema.json`.
pub fn drift_report_schema() -> serde_json::Value {
    schemars::schema_for!(DriftReport).to_value()
}

/// Renders a finding's first sighting: `file:line (time)`.
pub(crate) fn first_seen(finding: &Finding) -> String {
    match &finding.first_seen {
        None => "—".to_owned(),
        Some(seen) => match &seen.at {
            Some(at) => format!("{}:{} ({at})", seen.source, seen.line),
            None => format!("{}:{}", seen.source, seen.line),
        },
    }
}

/// `3 breaking, 2 additive`.
pub(crate) fn tally(report: &DriftReport) -> String {
    format!("{} breaking, {} additive", report.breaking, report.additive)
}

/// What was skipped, as `2 forged, 1 untyped` (empty when nothing was).
pub(crate) fn skipped(counts: &Counts) -> String {
    let parts: Vec<String> = [
        (counts.malformed, "malformed"),
        (counts.forged, "forged (signature did not verify)"),
        (counts.untyped, "without an event type"),
        (counts.outside_window, "outside the time window"),
        (counts.dropped, "beyond the path/type caps"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    parts.join(", ")
}
