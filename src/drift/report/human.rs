//! The terminal rendering: findings grouped by event type, breaking first.

use std::fmt::Write as _;

use super::{DriftReport, first_seen, skipped, tally};
use crate::check::Verdict;
use crate::drift::severity::Level;

/// Renders the report for a terminal (no colour: the CLI layer owns colour).
pub fn render(report: &DriftReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write(&mut out, report);
    out
}

fn write(out: &mut String, report: &DriftReport) -> std::fmt::Result {
    writeln!(
        out,
        "stagegate drift: {} payloads inferred from {} input{}",
        report.counts.inferred,
        report.inputs.len(),
        if report.inputs.len() == 1 { "" } else { "s" }
    )?;
    let skipped = skipped(&report.counts);
    if !skipped.is_empty() {
        writeln!(out, "  skipped: {skipped}")?;
    }
    let against: Vec<String> = [
        report
            .manifest
            .as_ref()
            .map(|m| format!("contracts of {m}")),
        report.baseline.as_ref().map(|b| format!("baseline {b}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if against.is_empty() {
        writeln!(
            out,
            "  against: nothing (no --manifest, no --baseline): every event type is new"
        )?;
    } else {
        writeln!(out, "  against: {}", against.join(" and "))?;
    }
    if report.since.is_some() || report.until.is_some() {
        writeln!(
            out,
            "  window: {} → {}",
            report.since.as_deref().unwrap_or("start"),
            report.until.as_deref().unwrap_or("end")
        )?;
    }
    let mut event = None;
    for finding in &report.findings {
        if event != Some(&finding.event) {
            let payloads = report
                .shape
                .get(&finding.event)
                .and_then(|s| s.payloads)
                .unwrap_or(0);
            writeln!(out, "\n{} ({payloads} payloads)", finding.event)?;
            event = Some(&finding.event);
        }
        let level = match finding.severity {
            Level::Breaking => "BREAKING",
            Level::Additive => "additive",
            Level::Ignore => "ignored",
        };
        writeln!(
            out,
            "  {level:<8}  {:<28}  {}",
            finding.id.as_str(),
            finding.message
        )?;
        if finding.first_seen.is_some() {
            writeln!(
                out,
                "  {:<8}  {:<28}  first seen {}",
                "",
                "",
                first_seen(finding)
            )?;
        }
    }
    if report.findings.is_empty() {
        writeln!(
            out,
            "\nno drift: {} event types as expected",
            report.shape.len()
        )?;
    }
    if report.baseline_updated {
        writeln!(
            out,
            "\nbaseline {} rewritten from this input; review its diff",
            report.baseline.as_deref().unwrap_or("")
        )?;
    }
    let verdict = match report.verdict {
        Verdict::Pass => "pass",
        Verdict::Warn => "pass (additive drift only)",
        Verdict::Blocked => "blocked (breaking drift)",
    };
    writeln!(out, "\nverdict: {verdict} — {}", tally(report))
}
