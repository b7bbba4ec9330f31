//! `delivery.no_loss`: every planned event that should land was applied at the ATS
//! before its scenario's `scenario.end` record, which the driver writes once every
//! such event landed or the drain deadline passed.
//!
//! An event applied after that record still landed, only late: it is a finding that
//! says so, as a release gate cannot tell "slow" from "lost" at the deadline. A
//! scenario without an end record (a log cut short) has no deadline to miss. An event
//! the harness never delivered (no `webhook.attempt`: a wave a scenario did not send)
//! is not the integration's to lose, and is not judged.

use std::collections::BTreeMap;

use super::fold::{Cite, Context, Fold, records};
use super::run::{Outcome, times};
use crate::observe::Record;

/// "200 ×2, no answer ×1": the answers a list of attempts got.
pub(crate) fn statuses(answers: impl IntoIterator<Item = Option<u16>>) -> String {
    let mut counts: BTreeMap<Option<u16>, usize> = BTreeMap::new();
    for status in answers {
        *counts.entry(status).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(status, n)| {
            let status = status.map_or_else(|| "no answer".to_owned(), |s| s.to_string());
            format!("{status} ×{n}")
        })
        .collect();
    parts.join(", ")
}

/// `delivery.no_loss`: judged from the ledger once the log has ended.
pub(crate) fn check<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(NoLoss)
}

struct NoLoss;

impl Fold for NoLoss {
    fn record(&mut self, _: &Context<'_>, _: &Record) {}

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut any = false;
        for event in cx.plan.plan.events.iter().filter(|e| e.should_land) {
            let ledger = cx.ledger(&event.event_id);
            if ledger.attempts.is_empty() && ledger.applied.is_empty() {
                continue;
            }
            any = true;
            outcome.judged(Some(event.scenario));
            let end = cx.seen.scenario_end(event.scenario);
            let expected = format!(
                "{} ({}) is applied at the ATS before the {} scenario ends (its drain deadline)",
                event.event_id, event.contract, event.scenario
            );
            let attempts = || Cite::Attempts(event.event_id.to_string());
            match (ledger.applied.first(), end) {
                (Some(first), Some(end)) if first.seq > end.seq => outcome.findings.add(|| {
                    cx.finding(
                        Some(&event.candidate),
                        Some(&event.correlation_id),
                        expected,
                        format!(
                            "{} landed late: first applied {} ms after the {} scenario ended",
                            event.event_id,
                            (first.elapsed_ms - end.elapsed_ms).round(),
                            event.scenario
                        ),
                        [attempts()]
                            .into_iter()
                            .chain(records([end.seq, first.seq])),
                    )
                }),
                (Some(_), _) => {}
                (None, _) => outcome.findings.add(|| {
                    let delivered = format!(
                        "it was delivered {} (answers {})",
                        times(ledger.attempts.len()),
                        statuses(ledger.attempts.iter().map(|(_, status)| *status))
                    );
                    let refused = if ledger.rejected.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " and the ATS refused it {} as a mapping error (422)",
                            times(ledger.rejected.len())
                        )
                    };
                    cx.finding(
                        Some(&event.candidate),
                        Some(&event.correlation_id),
                        expected,
                        format!(
                            "{} was never applied at the ATS: {delivered}{refused}",
                            event.event_id
                        ),
                        [attempts()].into_iter().chain(records(
                            ledger.rejected.iter().copied().chain(end.map(|e| e.seq)),
                        )),
                    )
                }),
            }
        }
        if !any {
            return Outcome::skip(
                "no event that should land (in scope, not forged, not superseded) was delivered",
            );
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use crate::judge::fold::run_one;
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{CANDIDATE, PlanBuilder, clean, manifest};
    use crate::run::plan::Scenario;

    #[test]
    fn every_event_landed_in_time_passes() {
        let manifest = manifest();
        let clean = clean();
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 0);
        assert_eq!(outcome.scenarios.len(), 1);
    }

    #[test]
    fn a_lost_event_says_what_became_of_it() {
        let manifest = manifest();
        let mut clean = clean();
        // The second write is refused instead of applied.
        let seq = clean.applied[1];
        let record = clean.log.record_mut(seq);
        record.kind = "ats.event_rejected".into();
        record.detail["violations"] = json!([]);
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 1);
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.seen,
            "evt_CAND_003_cl_2 was never applied at the ATS: it was delivered 1 time (answers 200 ×1) \
             and the ATS refused it 1 time as a mapping error (422)"
        );
        assert_eq!(
            finding.expected,
            "evt_CAND_003_cl_2 (identity.verification.completed) is applied at the ATS before the clean scenario ends (its drain deadline)"
        );
        assert_eq!(finding.candidate.as_deref(), Some(CANDIDATE));
        let kinds = crate::judge::test_support::kinds(&finding.exchanges);
        assert_eq!(
            kinds,
            ["webhook.attempt", "ats.event_rejected", "scenario.end"]
        );
    }

    #[test]
    fn an_event_applied_after_the_scenario_ended_landed_late() {
        let manifest = manifest();
        let mut clean = clean();
        let event = clean.events[1].clone();
        clean.log.record_mut(clean.applied[1]).kind = "ats.event_rejected".into();
        clean.log.applied(CANDIDATE, &event.payload);
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 1);
        let seen = &outcome.findings.kept()[0].seen;
        assert_eq!(
            seen,
            "evt_CAND_003_cl_2 landed late: first applied 20 ms after the clean scenario ended"
        );
    }

    #[test]
    fn an_event_the_harness_never_sent_is_not_judged() {
        let manifest = manifest();
        let mut clean = clean();
        let mut plan = PlanBuilder {
            plan: clean.plan.clone(),
        };
        plan.event(CANDIDATE, 3, "passed");
        clean.plan = plan.plan;
        let run = (&manifest, &clean.plan, clean.log.records());
        assert_eq!(run_one(check, run.0, run.1, run.2).findings.total(), 0);
    }

    #[test]
    fn nothing_that_should_land_is_a_skip() {
        let manifest = manifest();
        let mut plan = PlanBuilder::default();
        plan.candidate(Scenario::Canary, "CAND_900_cn", false, &[]);
        plan.event("CAND_900_cn", 1, "passed");
        let run = (&manifest, &plan.plan, &[]);
        assert!(run_one(check, run.0, run.1, run.2).skipped.is_some());
    }
}
