//! JUnit XML (quick-junit, the writer cargo-nextest uses): one test suite per
//! scenario and one test case per check in it, so CI dashboards show which check
//! failed in which scenario; checks not tied to a scenario get a suite of their own.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{RunReport, finding_in};
use crate::judge::{CheckResult, Finding, Status};
use crate::manifest::model::Severity;
use crate::run::plan::Scenario;

/// Renders the report as JUnit XML.
pub fn render(report: &RunReport) -> Result<String, quick_junit::SerializeError> {
    let mut junit = Report::new(format!("stagegate {}", report.change_id));
    junit.set_time(std::time::Duration::from_millis(report.timings.total_ms));
    for scenario in &report.scenarios {
        let mut suite = TestSuite::new(format!("scenario {}", scenario.scenario));
        suite.set_time(std::time::Duration::from_millis(scenario.total_ms));
        suite.add_property(("seed", report.seed.to_string().as_str()));
        for check in report
            .checks
            .iter()
            .filter(|c| c.scenarios.contains(&scenario.scenario))
        {
            suite.add_test_case(case(check, Some(scenario.scenario)));
        }
        junit.add_test_suite(suite);
    }
    let unscoped: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|c| {
            c.scenarios
                .iter()
                .all(|s| !report.scenarios.iter().any(|r| r.scenario == *s))
        })
        .collect();
    if !unscoped.is_empty() {
        let mut suite = TestSuite::new("run");
        suite.add_property(("seed", report.seed.to_string().as_str()));
        suite.add_test_cases(unscoped.into_iter().map(|c| case(c, None)));
        junit.add_test_suite(suite);
    }
    junit.to_string()
}

fn case(check: &CheckResult, scenario: Option<Scenario>) -> TestCase {
    let findings: Vec<&Finding> = check
        .findings
        .iter()
        .filter(|f| scenario.is_none_or(|s| finding_in(f, s)))
        .collect();
    let status = match check.status {
        // A required check that was not judged fails the gate, so it fails here too.
        Status::Skip if check.required => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(format!(
                "required but not judged: {}",
                check.reason.as_deref().unwrap_or("no reason given")
            ));
            status.set_type("required-skip");
            status
        }
        Status::Skip => {
            let mut status = TestCaseStatus::skipped();
            if let Some(reason) = &check.reason {
                status.set_message(reason.as_str());
            }
            status
        }
        Status::Fail if !findings.is_empty() || scenario.is_none() => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let count = if scenario.is_none() {
                check.findings_total
            } else {
                findings.len()
            };
            status.set_message(format!(
                "{} finding{} [{}{}]",
                count,
                if count == 1 { "" } else { "s" },
                check.severity,
                if check.severity == Severity::Warn {
                    ": does not block the release"
                } else {
                    ""
                }
            ));
            status.set_type(check.id.as_str());
            status.set_description(description(check, &findings));
            status
        }
        _ => TestCaseStatus::success(),
    };
    let mut case = TestCase::new(check.id.as_str(), status);
    case.set_classname(match scenario {
        Some(s) => format!("stagegate.{s}"),
        None => "stagegate.run".to_owned(),
    });
    case
}

fn description(check: &CheckResult, findings: &[&Finding]) -> String {
    let mut text = format!("passes when {}\n", check.passes_when);
    for f in findings {
        text.push_str(&format!(
            "\ncandidate {}{} correlation {}\n  expected: {}\n  seen:     {}\n",
            f.candidate.as_deref().unwrap_or("-"),
            f.source_candidate
                .as_deref()
                .map(|s| format!(" (copy of {s})"))
                .unwrap_or_default(),
            f.correlation_id.as_deref().unwrap_or("-"),
            f.expected,
            f.seen
        ));
        for e in &f.exchanges {
            text.push_str(&format!(
                "  #{} +{:.1} ms {}\n",
                e.seq, e.elapsed_ms, e.summary
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn one_case_per_check_and_scenario() {
        let xml = render(&fixture::blocked()).expect("renders");
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!("report_junit_blocked", xml);
        });
        let parsed = Report::deserialize_from_str(&xml).expect("valid JUnit");
        // Two scenarios ran; three checks judged every scenario; one check is unscoped.
        let cases: usize = parsed.test_suites.iter().map(|s| s.test_cases.len()).sum();
        assert_eq!(cases, 2 * 3 + 1);
        let failures: usize = parsed.test_suites.iter().map(|s| s.failures).sum();
        // The duplicate write fails in `duplicates` only; the unscoped ack finding in both.
        assert_eq!(failures, 3);
    }
}
