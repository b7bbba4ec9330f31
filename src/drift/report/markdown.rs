//! The Markdown rendering, for a pull-request comment or a step summary.

use std::fmt::Write as _;

use super::{DriftReport, first_seen, skipped, tally};
use crate::check::Verdict;

/// Renders the report as Markdown.
pub fn render(report: &DriftReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write(&mut out, report);
    out
}

/// Escapes what would break a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn write(out: &mut String, report: &DriftReport) -> std::fmt::Result {
    let badge = match report.verdict {
        Verdict::Pass => "✅ no drift",
        Verdict::Warn => "⚠️ additive drift",
        Verdict::Blocked => "⛔ breaking drift",
    };
    writeln!(out, "## stagegate drift: {badge}")?;
    writeln!(out)?;
    write!(
        out,
        "{} payloads from {} · {}",
        report.counts.inferred,
        report
            .inputs
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", "),
        tally(report)
    )?;
    let skipped = skipped(&report.counts);
    if !skipped.is_empty() {
        write!(out, " · skipped: {skipped}")?;
    }
    writeln!(out)?;
    if report.findings.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "| severity | id | event | change | first seen |")?;
    writeln!(out, "| --- | --- | --- | --- | --- |")?;
    // Breaking first: a PR comment is read from the top.
    let mut rows: Vec<_> = report.findings.iter().collect();
    rows.sort_by_key(|f| f.severity);
    for f in rows {
        writeln!(
            out,
            "| {} | `{}` | `{}` | {} | {} |",
            f.severity.as_str(),
            f.id.as_str(),
            cell(&f.event),
            cell(&f.message),
            cell(&first_seen(f))
        )?;
    }
    if report.baseline_updated {
        writeln!(out)?;
        writeln!(
            out,
            "The baseline was rewritten from this input: review its diff in this pull request."
        )?;
    }
    Ok(())
}
