//! `policy.reconciliation`: after `POST /jobs/reconcile`, every candidate whose ATS
//! stage and vendor verification disagree (a gated stage with no passed
//! verification, a verification with no gated stage) has exactly one exception item
//! with the policy's owner, and no candidate whose states agree got one.
//!
//! The disagreements are read from the log as it stood when the job was called:
//! the ATS's stage of each candidate (`ats.stage_changed`) against the vendor's
//! sessions and results. In `policy-reconcile` some stage changes and results are
//! never delivered on purpose so that there are some. The owner is `highRisk` when
//! the vendor assessed the candidate as high risk, `default` otherwise (and when
//! the vendor never saw the candidate).

use std::collections::BTreeMap;

use super::{Cited, Cx, PolicyCheck, Verdict, ok, text_at};
use crate::observe::Record;
use crate::run::plan::Scenario;

/// One candidate's two states: the ATS's stage and the vendor's verifications.
#[derive(Debug, Default)]
struct States {
    stage: Option<String>,
    sessions: usize,
    passed: bool,
    high_risk: bool,
}

/// A mismatch the job must find: why, and whether the owner is `highRisk`.
#[derive(Debug)]
struct Mismatch {
    what: &'static str,
    high_risk: bool,
}

/// The fold.
#[derive(Debug, Default)]
pub(crate) struct Reconciliation {
    /// Per candidate, the states so far (until the mark).
    states: BTreeMap<String, States>,
    /// The mismatches when the job was called.
    mismatches: BTreeMap<String, Mismatch>,
    /// The `policy.reconcile` mark's seq and the `policy.reconciled` answer's status.
    mark: Option<(u64, Option<u16>)>,
    /// Items filed after the mark, per candidate: (seq, owner).
    items: BTreeMap<String, Vec<(u64, String)>>,
}

impl PolicyCheck for Reconciliation {
    fn new(_cx: &Cx<'_>) -> Self {
        Reconciliation::default()
    }

    fn record(&mut self, cx: &Cx<'_>, record: &Record) {
        if record.kind == crate::run::policy::marks::RECONCILE {
            self.mark = Some((record.seq, None));
            for (candidate, states) in std::mem::take(&mut self.states) {
                let past_gate = states
                    .stage
                    .as_deref()
                    .is_some_and(|s| cx.plan.at_or_past_gate(s));
                let what = if past_gate && !states.passed {
                    "a gated stage with no passed verification"
                } else if !past_gate && states.sessions > 0 {
                    "a verification with no gated stage"
                } else {
                    continue;
                };
                self.mismatches.insert(
                    candidate,
                    Mismatch {
                        what,
                        high_risk: states.high_risk,
                    },
                );
            }
            return;
        }
        if self.mark.is_none()
            && let Some(candidate) = record.candidate.as_deref()
        {
            match record.kind.as_str() {
                "ats.stage_changed" => {
                    let to = text_at(record, "/to").map(str::to_owned);
                    self.states.entry(candidate.to_owned()).or_default().stage = to;
                }
                "vendor.session_opened" => {
                    self.states
                        .entry(candidate.to_owned())
                        .or_default()
                        .sessions += 1;
                }
                crate::run::policy::marks::RESULT => {
                    let states = self.states.entry(candidate.to_owned()).or_default();
                    states.passed |= text_at(record, "/result") == Some("passed");
                    states.high_risk |= text_at(record, "/risk_tier") == Some("high");
                }
                _ => {}
            }
        }
        if record.kind == crate::run::policy::marks::RECONCILED {
            let status = record
                .detail
                .get("status")
                .and_then(serde_json::Value::as_u64)
                .and_then(|s| u16::try_from(s).ok());
            if let Some(mark) = &mut self.mark {
                mark.1 = status;
            }
            return;
        }
        if self.mark.is_some()
            && record.kind == "ats.exception_created"
            && let Some(candidate) = record.candidate.as_deref()
        {
            self.items.entry(candidate.to_owned()).or_default().push((
                record.seq,
                text_at(record, "/item/owner")
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }

    fn finish(self, cx: &Cx<'_>, out: &mut Verdict) {
        let Some((mark, status)) = self.mark else {
            out.skip = Some("the policy-reconcile scenario did not run, so the reconciliation job was never called".to_owned());
            return;
        };
        out.judged.insert(Scenario::PolicyReconcile);
        if !ok(status) {
            out.add(|| Cited {
                candidate: None,
                expected: "POST /jobs/reconcile answered 2xx once the job ran".to_owned(),
                seen: status.map_or_else(|| "no answer".to_owned(), |s| format!("answered {s}")),
                cites: vec![mark],
            });
        }
        for (candidate, mismatch) in &self.mismatches {
            let owner = cx.plan.owner(mismatch.high_risk);
            let what = mismatch.what;
            let items = self.items.get(candidate).map_or(&[][..], Vec::as_slice);
            match items {
                [(_, got)] if got == owner => {}
                [(seq, got)] => out.add(|| Cited {
                    candidate: Some(candidate.clone()),
                    expected: format!("the mismatch ({what}) owned by `{owner}`"),
                    seen: format!("owned by `{got}`"),
                    cites: vec![mark, *seq],
                }),
                _ => out.add(|| Cited {
                    candidate: Some(candidate.clone()),
                    expected: format!("exactly one exception item for the mismatch: {what}"),
                    seen: format!("{} items after the job ran", items.len()),
                    cites: std::iter::once(mark)
                        .chain(items.iter().map(|i| i.0))
                        .collect(),
                }),
            }
        }
        for (candidate, items) in &self.items {
            if !self.mismatches.contains_key(candidate) {
                out.add(|| Cited {
                    candidate: Some(candidate.clone()),
                    expected:
                        "no exception item for a candidate whose ATS stage and verification agree"
                            .to_owned(),
                    seen: format!("{} items after the job ran", items.len()),
                    cites: std::iter::once(mark)
                        .chain(items.iter().map(|i| i.0))
                        .collect(),
                });
            }
        }
    }
}
