//! The Markdown summary: short enough for a GitHub step summary or a PR comment,
//! with each failure's story folded under `<details>`.

use std::fmt::Write as _;

use super::RunReport;
use crate::judge::Status;
use crate::verdict::Verdict;

/// Findings shown per failed check.
const FINDINGS_SHOWN: usize = 5;

/// Renders the report as Markdown.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, report);
    out
}

/// Escapes the characters that would break a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn write_report(out: &mut String, report: &RunReport) -> std::fmt::Result {
    let badge = match report.verdict {
        Verdict::Pass => "✅ pass",
        Verdict::Warn => "⚠️ pass with warnings",
        Verdict::Blocked => "⛔ release blocked",
    };
    writeln!(out, "## stagegate: {badge}")?;
    writeln!(out)?;
    writeln!(
        out,
        "Change `{}` · seed `{}` · integration `{}` · {} passed, {} failed, {} skipped · {:.2} s",
        report.change_id,
        report.seed,
        report.integration.target,
        report.count(Status::Pass),
        report.count(Status::Fail),
        report.count(Status::Skip),
        report.timings.total_ms as f64 / 1000.0
    )?;
    writeln!(out)?;
    writeln!(out, "| check | status | severity | findings |")?;
    writeln!(out, "| --- | --- | --- | --- |")?;
    for c in &report.checks {
        let status = match c.status {
            Status::Pass => "✅ pass".to_owned(),
            Status::Fail => "❌ fail".to_owned(),
            Status::Skip if c.required => format!(
                "⛔ required, not judged: {}",
                cell(c.reason.as_deref().unwrap_or(""))
            ),
            Status::Skip => format!("⏭️ not judged: {}", cell(c.reason.as_deref().unwrap_or(""))),
        };
        let severity = if c.overridden {
            format!(
                "{} (manifest: {})",
                c.severity,
                cell(c.reason.as_deref().unwrap_or("override"))
            )
        } else {
            c.severity.to_string()
        };
        writeln!(
            out,
            "| `{}` | {status} | {severity} | {} |",
            c.id, c.findings_total
        )?;
    }
    for c in report.failed() {
        writeln!(out)?;
        writeln!(
            out,
            "<details><summary><code>{}</code>: {} finding{}</summary>",
            c.id,
            c.findings_total,
            if c.findings_total == 1 { "" } else { "s" }
        )?;
        writeln!(out)?;
        writeln!(out, "Passes when {}.", c.passes_when)?;
        writeln!(out)?;
        for f in c.findings.iter().take(FINDINGS_SHOWN) {
            let scenario = f.scenario.map(|s| format!("[{s}] ")).unwrap_or_default();
            writeln!(
                out,
                "- {scenario}candidate `{}`{}, correlation `{}`\n  - expected: {}\n  - seen: {}",
                f.candidate.as_deref().unwrap_or("-"),
                f.source_candidate
                    .as_deref()
                    .map(|s| format!(" (copy of `{s}`)"))
                    .unwrap_or_default(),
                f.correlation_id.as_deref().unwrap_or("-"),
                f.expected,
                f.seen
            )?;
            if let Some(first) = f.exchanges.first() {
                let last = f.exchanges.last().unwrap_or(first);
                writeln!(
                    out,
                    "  - exchanges: #{}…#{} ({} record{})",
                    first.seq,
                    last.seq,
                    f.exchanges.len(),
                    if f.exchanges.len() == 1 { "" } else { "s" }
                )?;
            }
        }
        if c.findings_total > FINDINGS_SHOWN.min(c.findings.len()) {
            writeln!(
                out,
                "- … {} more in the JSON report",
                c.findings_total - FINDINGS_SHOWN.min(c.findings.len())
            )?;
        }
        writeln!(out)?;
        writeln!(out, "</details>")?;
    }
    writeln!(out)?;
    writeln!(out, "| scenario | deliveries | acked | outcome | time |")?;
    writeln!(out, "| --- | --- | --- | --- | --- |")?;
    for s in &report.scenarios {
        writeln!(
            out,
            "| {} | {} | {} | {}{} | {:.2} s |",
            s.scenario,
            s.deliveries,
            s.acked,
            s.outcome(),
            if s.timed_out {
                " (deadline passed)"
            } else {
                ""
            },
            s.total_ms as f64 / 1000.0
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Replay: `{}`", report.replay)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn blocked_summary() {
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!("report_markdown_blocked", render(&fixture::blocked()));
        });
    }

    #[test]
    fn table_cells_survive_pipes() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
