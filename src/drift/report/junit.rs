//! The JUnit rendering: a test suite per event type, a test case per finding
//! (failed when it blocks), and one passing case for an event type without drift.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{DriftReport, first_seen};

/// Renders the report as JUnit XML.
pub fn render(report: &DriftReport) -> Result<String, quick_junit::SerializeError> {
    let mut junit = Report::new("stagegate drift");
    let mut events: Vec<&String> = report.shape.keys().collect();
    for f in &report.findings {
        if !events.contains(&&f.event) {
            events.push(&f.event);
        }
    }
    events.sort();
    for event in events {
        let mut suite = TestSuite::new(format!("drift {event}"));
        let findings: Vec<_> = report
            .findings
            .iter()
            .filter(|f| &f.event == event)
            .collect();
        if findings.is_empty() {
            suite.add_test_case(TestCase::new(
                "shape as expected",
                TestCaseStatus::success(),
            ));
        }
        for finding in findings {
            let name = match (&finding.path, &finding.value) {
                (Some(path), Some(value)) => format!("{} {path} {value}", finding.id),
                (Some(path), None) => format!("{} {path}", finding.id),
                (None, _) => finding.id.to_string(),
            };
            let text = format!("{}\nfirst seen {}", finding.message, first_seen(finding));
            let status = if report.blocks(finding) {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(finding.message.as_str());
                status.set_type(finding.id.as_str());
                status.set_description(text.clone());
                status
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(format!("drift.{}", finding.severity.as_str()));
            if !report.blocks(finding) {
                case.set_system_out(text);
            }
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    junit.to_string()
}
