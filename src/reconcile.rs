//! `stagegate reconcile --log FILE`: the hiring policy's daily reconciliation report
//! for a run's observation log: per candidate, the ATS stage, the verification
//! status, the interview and assessment grants, whether the two sides disagree, and
//! the exception item that says so, with its owner.
//!
//! One streaming pass over the log (the chain verified on the way) into a small row
//! per candidate; the disagreement rule is the protocol's (§10) and needs the policy,
//! which the run's `plan.json` carries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::observe::Record;
use crate::run::policy::PolicyPlan;

/// One candidate's line of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// The candidate.
    pub candidate: String,
    /// The ATS's stage (the latest `ats.stage_changed`), if it ever moved.
    pub ats_stage: Option<String>,
    /// `passed`, `failed`, `review_required` (the latest result), `pending` (sessions
    /// without a result) or `none`.
    pub verification: String,
    /// Sessions at the vendor.
    pub sessions: usize,
    /// `granted` when the interview link was granted.
    pub interview: Option<String>,
    /// `granted` when the assessment was granted.
    pub assessment: Option<String>,
    /// Why the two sides disagree, if they do (needs the policy).
    pub mismatch: Option<String>,
    /// The latest exception item of the candidate, and its state.
    pub exception: Option<String>,
    /// Its owner.
    pub owner: Option<String>,
}

/// The report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Whether the disagreement rule could be applied (the run had a policy).
    pub policy: bool,
    /// One row per candidate the flow touched, in id order.
    pub rows: Vec<Row>,
    /// How many rows disagree.
    pub mismatches: usize,
    /// Of those, how many have an exception item.
    pub with_exception: usize,
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The log is unreadable or its chain is broken.
    #[error("cannot read the observation log")]
    Log(#[from] crate::observe::stream::StreamError<std::convert::Infallible>),
}

#[derive(Debug, Default)]
struct State {
    stage: Option<String>,
    sessions: usize,
    last_result: Option<String>,
    passed: bool,
    interview: bool,
    assessment: bool,
    exception: Option<(String, String, bool)>,
}

/// Folds records into the report.
#[derive(Debug, Default)]
pub struct Builder {
    states: BTreeMap<String, State>,
}

impl Builder {
    /// Sees one record.
    pub fn record(&mut self, record: &Record) {
        let Some(candidate) = record.candidate.as_deref() else {
            return;
        };
        let text = |pointer: &str| {
            record
                .detail
                .pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let state = || State::default();
        match record.kind.as_str() {
            "ats.stage_changed" => {
                self.states
                    .entry(candidate.to_owned())
                    .or_insert_with(state)
                    .stage = text("/to");
            }
            "vendor.session_opened" => {
                self.states
                    .entry(candidate.to_owned())
                    .or_insert_with(state)
                    .sessions += 1;
            }
            crate::run::policy::marks::RESULT => {
                let entry = self
                    .states
                    .entry(candidate.to_owned())
                    .or_insert_with(state);
                let result = text("/result");
                entry.passed |= result.as_deref() == Some("passed");
                entry.last_result = result;
            }
            "ats.access_granted" => {
                let entry = self
                    .states
                    .entry(candidate.to_owned())
                    .or_insert_with(state);
                match text("/grant/resource").as_deref() {
                    Some("interview_link") => entry.interview = true,
                    Some("assessment") => entry.assessment = true,
                    _ => {}
                }
            }
            "ats.exception_created" => {
                let entry = self
                    .states
                    .entry(candidate.to_owned())
                    .or_insert_with(state);
                entry.exception = Some((
                    text("/item/id").unwrap_or_default(),
                    text("/item/owner").unwrap_or_default(),
                    false,
                ));
            }
            "ats.exception_resolved" => {
                if let Some(entry) = self.states.get_mut(candidate)
                    && let Some(item) = &mut entry.exception
                    && text("/item/id").as_deref() == Some(item.0.as_str())
                {
                    item.2 = true;
                }
            }
            _ => {}
        }
    }

    /// The report, judged with `policy` when the run had one.
    pub fn finish(self, policy: Option<&PolicyPlan>) -> Report {
        let mut report = Report {
            policy: policy.is_some(),
            ..Report::default()
        };
        for (candidate, state) in self.states {
            let verification = match (&state.last_result, state.sessions) {
                (Some(result), _) => result.clone(),
                (None, 0) => "none".to_owned(),
                (None, _) => "pending".to_owned(),
            };
            let mismatch = policy.and_then(|p| {
                let past_gate = state.stage.as_deref().is_some_and(|s| p.at_or_past_gate(s));
                if past_gate && !state.passed {
                    Some("gated stage, no passed verification".to_owned())
                } else if !past_gate && state.sessions > 0 {
                    Some("verification, no gated stage".to_owned())
                } else {
                    None
                }
            });
            if mismatch.is_some() {
                report.mismatches += 1;
                if state.exception.is_some() {
                    report.with_exception += 1;
                }
            }
            let granted = |yes: bool| yes.then(|| "granted".to_owned());
            report.rows.push(Row {
                candidate,
                ats_stage: state.stage,
                verification,
                sessions: state.sessions,
                interview: granted(state.interview),
                assessment: granted(state.assessment),
                mismatch,
                exception: state.exception.as_ref().map(|(id, _, resolved)| {
                    format!("{id} ({})", if *resolved { "resolved" } else { "open" })
                }),
                owner: state.exception.map(|(_, owner, _)| owner),
            });
        }
        report
    }
}

/// The report of a log file, streamed, with the policy of the run's plan.
pub fn from_log(log: &Path, policy: Option<&PolicyPlan>) -> Result<Report, ReconcileError> {
    let mut builder = Builder::default();
    crate::observe::stream::stream(log, |line| {
        if let Ok(record) = line.record() {
            builder.record(&record);
        }
        Ok::<(), std::convert::Infallible>(())
    })?;
    Ok(builder.finish(policy))
}

const HEADERS: [&str; 8] = [
    "candidate",
    "ATS stage",
    "verification",
    "interview",
    "assessment",
    "mismatch",
    "exception item",
    "owner",
];

fn cells(row: &Row) -> [String; 8] {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    [
        row.candidate.clone(),
        or_dash(&row.ats_stage),
        format!("{} ({} sessions)", row.verification, row.sessions),
        or_dash(&row.interview),
        or_dash(&row.assessment),
        or_dash(&row.mismatch),
        or_dash(&row.exception),
        or_dash(&row.owner),
    ]
}

fn summary(report: &Report) -> String {
    if report.policy {
        format!(
            "{} candidates, {} mismatches, {} with an exception item",
            report.rows.len(),
            report.mismatches,
            report.with_exception
        )
    } else {
        format!(
            "{} candidates; no hiring policy in the run's plan, so mismatches are not judged (run with --policy)",
            report.rows.len()
        )
    }
}

/// The report as an aligned table for the terminal.
pub fn render_terminal(report: &Report) -> String {
    let rows: Vec<[String; 8]> = report.rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(&mut out, &HEADERS.map(str::to_owned));
    for row in &rows {
        line(&mut out, row);
    }
    let _ = writeln!(out, "\n{}", summary(report));
    out
}

/// The report as a Markdown table.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::from("## Reconciliation\n\n");
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(HEADERS.len()));
    for row in &report.rows {
        let escaped: Vec<String> = cells(row).iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", escaped.join(" | "));
    }
    let _ = writeln!(out, "\n{}", summary(report));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::policy::fixture::{Defect, policy_run};

    fn report(defect: Defect) -> Report {
        let run = policy_run(defect);
        let mut builder = Builder::default();
        for record in run.log.records() {
            builder.record(record);
        }
        builder.finish(run.plan.policy.as_ref())
    }

    #[test]
    fn every_mismatch_of_a_correct_run_has_its_exception_item() {
        let report = report(Defect::None);
        assert_eq!(report.mismatches, 3, "{report:#?}");
        assert_eq!(report.with_exception, 3);
        let lost = report
            .rows
            .iter()
            .find(|r| r.candidate.ends_with("_prs"))
            .expect("the lost stage change's candidate");
        assert_eq!(lost.ats_stage.as_deref(), Some("technical-interview"));
        assert_eq!(lost.verification, "none");
        assert_eq!(lost.owner.as_deref(), Some("recruitingOps"));
        let text = render_terminal(&report);
        assert!(
            text.contains("gated stage, no passed verification"),
            "{text}"
        );
        assert!(render_markdown(&report).starts_with("## Reconciliation\n\n| candidate |"));
    }

    #[test]
    fn a_missed_mismatch_shows_without_an_item() {
        let report = report(Defect::ReconcileMisses);
        assert_eq!((report.mismatches, report.with_exception), (3, 2));
        let without = Builder::default().finish(None);
        assert!(render_terminal(&without).contains("mismatches are not judged"));
    }
}
