//! The terminal summary of a run: scenarios, every check on one line, then each failed
//! check's findings grouped under it with the exchanges that led there, and the seed
//! to replay it. Plain text: colour is the CLI's business.

use std::fmt::Write as _;

use super::RunReport;
use crate::judge::{CheckResult, Finding, Status};

/// Exchanges shown per finding; the JSON report has them all.
const EXCHANGES_SHOWN: usize = 6;

/// Renders the summary, showing at most `max_findings` findings per failed check.
pub fn render(report: &RunReport, max_findings: usize) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, report, max_findings);
    out
}

fn write_report(out: &mut String, report: &RunReport, max_findings: usize) -> std::fmt::Result {
    writeln!(
        out,
        "stagegate run: change {}, seed {}, integration {}",
        report.change_id, report.seed, report.integration.target
    )?;
    writeln!(out)?;
    writeln!(out, "scenarios")?;
    let names = report.scenarios.iter().map(|s| s.scenario);
    let names = names.chain(report.skipped_scenarios.iter().map(|s| s.scenario));
    let name_width = names.map(|s| s.as_str().len()).max().unwrap_or(0).max(13);
    let outcomes: Vec<String> = report.scenarios.iter().map(|s| s.outcome()).collect();
    let outcome_width = outcomes.iter().map(String::len).max().unwrap_or(0).max(13);
    for (s, outcome) in report.scenarios.iter().zip(&outcomes) {
        writeln!(
            out,
            "  {:<name_width$} {:>6} deliveries {:>6} acked {outcome:>outcome_width$} {:>8.2} s{}",
            s.scenario.as_str(),
            s.deliveries,
            s.acked,
            s.total_ms as f64 / 1000.0,
            if s.timed_out {
                "  drain deadline passed"
            } else {
                ""
            }
        )?;
    }
    for skipped in &report.skipped_scenarios {
        writeln!(
            out,
            "  {:<name_width$} not driven: {}",
            skipped.scenario.as_str(),
            skipped.reason
        )?;
    }
    writeln!(out)?;
    writeln!(out, "checks")?;
    let width = report.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for check in &report.checks {
        let status = match check.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Skip if check.required => "SKIP",
            Status::Skip => "skip",
        };
        write!(out, "  {status}  {:<width$}  {}", check.id, check.severity)?;
        if check.overridden {
            write!(out, " (set by the manifest)")?;
        }
        if check.status == Status::Fail {
            write!(
                out,
                "  {} finding{}",
                check.findings_total,
                plural(check.findings_total)
            )?;
        }
        if let Some(reason) = check
            .reason
            .as_deref()
            .filter(|_| check.status == Status::Skip)
        {
            if check.required {
                write!(out, "  required, not judged: {reason}")?;
            } else {
                write!(out, "  not judged: {reason}")?;
            }
        }
        writeln!(out)?;
    }
    for check in report.failed() {
        write_failure(out, check, max_findings)?;
    }
    writeln!(out)?;
    let t = &report.timings;
    writeln!(
        out,
        "{} events landed in {:.2} s of driving ({:.0}/s); whole run {:.2} s",
        t.events_landed,
        t.drive_ms as f64 / 1000.0,
        t.landed_per_second,
        t.total_ms as f64 / 1000.0
    )?;
    let parts = &report.merged_from;
    // A merged report's evidence stays with its parts (shards, or a run's waves).
    let kept: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.artifacts.as_ref().map(|a| a.dir.as_str()))
        .collect();
    match (&report.artifacts, kept.as_slice()) {
        (Some(a), _) => writeln!(
            out,
            "artifacts: {} (observation log, plan, integration output, reports)",
            a.dir
        )?,
        (None, []) if parts.is_empty() => writeln!(
            out,
            "artifacts: not kept (add --out DIR to keep the observation log)"
        )?,
        (None, []) => writeln!(
            out,
            "artifacts: not kept by the {} merged parts (run them with --out DIR to keep their observation logs)",
            parts.len()
        )?,
        (None, [only]) if parts.len() == 1 => {
            writeln!(out, "artifacts: {only} (the one merged part's)")?
        }
        (None, [only]) => writeln!(
            out,
            "artifacts: 1 of the {} merged parts keeps its own, {only}",
            parts.len()
        )?,
        (None, [first, .., last]) if kept.len() == parts.len() => writeln!(
            out,
            "artifacts: each of the {} merged parts keeps its own, {first} to {last}",
            kept.len()
        )?,
        (None, [first, .., last]) => writeln!(
            out,
            "artifacts: {} of the {} merged parts keep their own, {first} to {last}",
            kept.len(),
            parts.len()
        )?,
    }
    writeln!(out, "replay: {}", report.replay)?;
    let required = report.checks.iter().filter(|c| c.blocks_as_skip()).count();
    writeln!(
        out,
        "verdict: {} ({} passed, {} failed, {} skipped{})",
        report.verdict.as_str().to_uppercase(),
        report.count(Status::Pass),
        report.count(Status::Fail),
        report.count(Status::Skip),
        if required > 0 {
            format!(", {required} of them required")
        } else {
            String::new()
        }
    )
}

fn write_failure(out: &mut String, check: &CheckResult, max_findings: usize) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "FAIL {} [{}]", check.id, check.severity)?;
    writeln!(out, "  passes when {}", check.passes_when)?;
    if let Some(reason) = &check.reason {
        writeln!(out, "  manifest: {reason}")?;
    }
    for finding in check.findings.iter().take(max_findings) {
        write_finding(out, finding)?;
    }
    let shown = check.findings.len().min(max_findings);
    if check.findings_total > shown {
        let more = check.findings_total - shown;
        writeln!(
            out,
            "  … and {more} more finding{} (the JSON report and the observation log have them)",
            plural(more)
        )?;
    }
    // Which scenarios the failures came from, so a reader knows what to replay.
    let failing: Vec<&str> = check
        .scenarios
        .iter()
        .filter(|s| check.findings.iter().any(|f| f.scenario == Some(**s)))
        .map(|s| s.as_str())
        .collect();
    if !failing.is_empty() {
        writeln!(out, "  seen in: {}", failing.join(", "))?;
    }
    Ok(())
}

fn write_finding(out: &mut String, finding: &Finding) -> std::fmt::Result {
    let mut place = Vec::new();
    if let Some(s) = finding.scenario {
        place.push(format!("[{s}]"));
    }
    if let Some(c) = &finding.candidate {
        match &finding.source_candidate {
            Some(source) if source != c => place.push(format!("candidate {c} (copy of {source})")),
            _ => place.push(format!("candidate {c}")),
        }
    }
    if let Some(c) = &finding.correlation_id {
        place.push(format!("correlation {c}"));
    }
    writeln!(out, "  - {}", place.join("  "))?;
    writeln!(out, "      expected: {}", finding.expected)?;
    writeln!(out, "      seen:     {}", finding.seen)?;
    for e in finding.exchanges.iter().take(EXCHANGES_SHOWN) {
        writeln!(
            out,
            "      #{:<6} +{:>8.1} ms  {:<11} {}",
            e.seq,
            e.elapsed_ms,
            format!("{:?}", e.actor).to_lowercase(),
            e.summary
        )?;
    }
    if finding.exchanges.len() > EXCHANGES_SHOWN {
        writeln!(
            out,
            "      … {} more exchanges",
            finding.exchanges.len() - EXCHANGES_SHOWN
        )?;
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn a_blocked_run_tells_the_whole_story() {
        let text = render(&fixture::blocked(), 20);
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!("report_human_blocked", text);
        });
    }

    #[test]
    fn findings_beyond_the_limit_are_counted_not_shown() {
        let text = render(&fixture::blocked(), 0);
        assert!(
            text.contains("… and 3 more findings (the JSON report"),
            "{text}"
        );
        assert!(!text.contains("expected:"), "{text}");
    }

    #[test]
    fn a_merged_report_points_at_its_parts_evidence() {
        use crate::report::merge::ShardRun;
        use crate::run::shard::Shard;
        let part = |index: u32, dir: Option<&str>| ShardRun {
            shard: Shard { index, count: 3 },
            run_id: format!("run-{index}"),
            verdict: crate::verdict::Verdict::Pass,
            report: format!("wave {index}/3"),
            artifacts: dir.map(|dir| crate::report::Artifacts {
                dir: dir.to_owned(),
                observation_log: format!("{dir}/observation.jsonl"),
                plan: format!("{dir}/plan.json"),
                integration_output: None,
            }),
        };
        let line = |parts: Vec<ShardRun>| {
            let mut report = fixture::passed();
            report.artifacts = None;
            report.merged_from = parts;
            let text = render(&report, 5);
            text.lines()
                .find(|l| l.starts_with("artifacts:"))
                .map(str::to_owned)
                .unwrap_or_default()
        };
        assert_eq!(
            line(Vec::new()),
            "artifacts: not kept (add --out DIR to keep the observation log)"
        );
        assert_eq!(
            line(vec![part(1, None), part(2, None)]),
            "artifacts: not kept by the 2 merged parts (run them with --out DIR to keep their observation logs)"
        );
        assert_eq!(
            line(vec![part(1, Some("out/wave-1"))]),
            "artifacts: out/wave-1 (the one merged part's)"
        );
        assert_eq!(
            line(vec![part(1, Some("out/wave-1")), part(2, None)]),
            "artifacts: 1 of the 2 merged parts keeps its own, out/wave-1"
        );
        assert_eq!(
            line(vec![
                part(1, Some("out/wave-1")),
                part(2, None),
                part(3, Some("out/wave-3"))
            ]),
            "artifacts: 2 of the 3 merged parts keep their own, out/wave-1 to out/wave-3"
        );
        assert_eq!(
            line(vec![
                part(1, Some("out/wave-1")),
                part(2, Some("out/wave-2")),
                part(3, Some("out/wave-3"))
            ]),
            "artifacts: each of the 3 merged parts keeps its own, out/wave-1 to out/wave-3"
        );
    }

    #[test]
    fn a_passing_run_is_short() {
        let text = render(&fixture::passed(), 20);
        assert!(!text.contains("FAIL"), "{text}");
        assert!(
            text.contains("verdict: PASS (3 passed, 0 failed, 1 skipped)"),
            "{text}"
        );
    }
}
