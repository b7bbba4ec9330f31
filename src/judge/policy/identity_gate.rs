//! `policy.identity_gate`: no privileged access before identity is verified. A
//! grant (`POST …/access-grants`) must follow a `passed` result for the candidate
//! that came after the move into the gated stage whose resource it grants; never
//! when the candidate's latest result is `failed` or `review_required`; never while
//! an exception item of the candidate is open.
//!
//! The vendor's results are the harness's `policy.result` records (lost ones
//! included: the vendor's state is what the integration may read).

use std::collections::{BTreeMap, BTreeSet};

use super::{Cited, Cx, PolicyCheck, Verdict, text_at};
use crate::observe::Record;
use crate::run::policy::resource_of;

/// One candidate's gate as the log tells it.
#[derive(Debug, Default)]
struct Gate {
    /// Per resource, the seq of the latest move into a gated stage granting it.
    moved: BTreeMap<&'static str, u64>,
    /// The latest `passed` result's seq.
    passed: Option<u64>,
    /// The latest result and its seq.
    last: Option<(String, u64)>,
    /// Open exception items: id → seq.
    open: BTreeMap<String, u64>,
}

/// The fold.
#[derive(Debug, Default)]
pub(crate) struct IdentityGate {
    gates: BTreeMap<String, Gate>,
    judged: BTreeSet<crate::run::plan::Scenario>,
    findings: Vec<super::Cited>,
    total: usize,
}

impl IdentityGate {
    fn grant(&mut self, cx: &Cx<'_>, candidate: &str, record: &Record) {
        let Some(planned) = cx.plan.candidate(candidate) else {
            return;
        };
        self.judged.insert(planned.scenario);
        let resource = text_at(record, "/grant/resource").unwrap_or("?");
        let gate = self.gates.entry(candidate.to_owned()).or_default();
        let moved = gate
            .moved
            .iter()
            .find(|(r, _)| **r == resource)
            .map(|(_, seq)| *seq);
        let problem = match (moved, gate.passed, &gate.last) {
            (None, _, _) => Some((
                format!("`{resource}` granted only after a move into a gated stage that grants it"),
                "granted with no such move".to_owned(),
                vec![record.seq],
            )),
            (Some(moved), passed, _) if passed.is_none_or(|p| p < moved) => Some((
                format!(
                    "`{resource}` granted only after a `passed` result that followed the move into the gated stage"
                ),
                "granted before any passed result for that stage".to_owned(),
                vec![moved, record.seq],
            )),
            (_, _, Some((result, seq))) if result != "passed" => Some((
                format!("no grant while the latest result is `{result}`"),
                format!("`{resource}` granted after a `{result}` result"),
                vec![*seq, record.seq],
            )),
            _ => gate.open.iter().next().map(|(item, seq)| {
                (
                    "no grant while an exception item of the candidate is open".to_owned(),
                    format!("`{resource}` granted while {item} was open"),
                    vec![*seq, record.seq],
                )
            }),
        };
        if let Some((expected, seen, cites)) = problem {
            self.total += 1;
            if self.findings.len() < crate::judge::FINDINGS_KEPT {
                self.findings.push(Cited {
                    candidate: Some(candidate.to_owned()),
                    expected,
                    seen,
                    cites,
                });
            }
        }
    }
}

impl PolicyCheck for IdentityGate {
    fn new(_cx: &Cx<'_>) -> Self {
        IdentityGate::default()
    }

    fn record(&mut self, cx: &Cx<'_>, record: &Record) {
        let Some(candidate) = record.candidate.as_deref() else {
            return;
        };
        match record.kind.as_str() {
            "ats.stage_changed" => {
                let to = text_at(record, "/to").unwrap_or_default();
                if cx.plan.is_gated(to) {
                    let gate = self.gates.entry(candidate.to_owned()).or_default();
                    gate.moved.insert(resource_of(to), record.seq);
                }
            }
            crate::run::policy::marks::RESULT => {
                let result = text_at(record, "/result").unwrap_or_default().to_owned();
                let gate = self.gates.entry(candidate.to_owned()).or_default();
                if result == "passed" {
                    gate.passed = Some(record.seq);
                }
                gate.last = Some((result, record.seq));
            }
            "ats.exception_created" => {
                if let Some(id) = text_at(record, "/item/id") {
                    let gate = self.gates.entry(candidate.to_owned()).or_default();
                    gate.open.insert(id.to_owned(), record.seq);
                }
            }
            "ats.exception_resolved" => {
                if let (Some(id), Some(gate)) =
                    (text_at(record, "/item/id"), self.gates.get_mut(candidate))
                {
                    gate.open.remove(id);
                }
            }
            "ats.access_granted" => self.grant(cx, candidate, record),
            _ => {}
        }
    }

    fn finish(self, cx: &Cx<'_>, out: &mut Verdict) {
        // Gated moves that were never granted are judged too: holding is passing.
        for (candidate, gate) in &self.gates {
            if !gate.moved.is_empty()
                && let Some(planned) = cx.plan.candidate(candidate)
            {
                out.judged.insert(planned.scenario);
            }
        }
        out.judged.extend(self.judged);
        out.total += self.total;
        out.kept.extend(self.findings);
        if out.judged.is_empty() {
            out.skip = Some("no candidate moved into a gated stage".to_owned());
        }
    }
}
