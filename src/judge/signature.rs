//! `signature.enforced`: unsigned, wrongly signed and stale deliveries of forged
//! events got a 4xx, and changed nothing in the ATS.
//!
//! Forged events belong to candidate copies that only ever receive forged
//! deliveries, so besides the forged event ids themselves, any state change the ATS
//! records for such a candidate (an event applied, an access grant, an exception) is
//! a forged delivery that got through.

use std::collections::HashSet;

use super::fold::{Cite, Context, Fold, records, skipped};
use super::run::{Outcome, body_event_id, times};
use crate::observe::Record;
use crate::run::plan::PlannedEvent;

fn forgery(event: &PlannedEvent) -> &str {
    match event.perturbation.as_str() {
        "unsigned" => "an unsigned",
        "wrong_signature" => "a wrongly signed",
        "stale_timestamp" => "a stale (10-minute-old timestamp)",
        _ => "a forged",
    }
}

fn expected(event: &PlannedEvent) -> String {
    format!(
        "{} delivery of {} is refused with a 4xx and changes nothing in the ATS",
        forgery(event),
        event.event_id
    )
}

/// `signature.enforced`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    let plan = cx.plan.plan;
    if !plan.events.iter().any(|e| e.forged) {
        return skipped("no forged delivery in this run (the signatures scenario did not run)");
    }
    // The candidates every one of whose planned events is forged.
    let mut mixed: HashSet<&str> = HashSet::new();
    let mut forged_only: HashSet<&str> = HashSet::new();
    for event in &plan.events {
        if event.forged && !mixed.contains(event.candidate.as_str()) {
            forged_only.insert(&event.candidate);
        } else if !event.forged {
            mixed.insert(&event.candidate);
            forged_only.remove(event.candidate.as_str());
        }
    }
    Box::new(Signature {
        forged_only,
        outcome: Outcome::default(),
    })
}

struct Signature<'a> {
    forged_only: HashSet<&'a str>,
    outcome: Outcome,
}

impl Fold for Signature<'_> {
    fn record(&mut self, cx: &Context<'_>, record: &Record) {
        if record.kind == "webhook.attempt"
            && let Some(event) = record
                .event_id
                .as_deref()
                .and_then(|id| cx.plan.event(id))
                .filter(|e| e.forged)
            && !record.status.is_some_and(|s| (400..500).contains(&s))
        {
            self.outcome.findings.add(|| {
                let answer = record.status.map_or_else(
                    || "got no answer".to_owned(),
                    |s| format!("was answered {s}"),
                );
                cx.finding(
                    Some(&event.candidate),
                    Some(&event.correlation_id),
                    expected(event),
                    format!("{} delivery of {} {answer}", forgery(event), event.event_id),
                    records([record.seq]),
                )
            });
        }
        // Other state changes for candidates that only ever got forged deliveries.
        let changed = match record.kind.as_str() {
            "ats.event_applied" => body_event_id(record)
                .and_then(|id| cx.plan.event(id))
                .is_none_or(|e| !e.forged),
            "ats.access_granted" | "ats.exception_created" => true,
            _ => false,
        };
        let Some(candidate) = record.candidate.as_deref() else {
            return;
        };
        if !changed || !self.forged_only.contains(candidate) {
            return;
        }
        self.outcome.findings.add(|| {
            cx.finding(
                Some(candidate),
                record.correlation_id.as_deref(),
                format!("{candidate} received only forged deliveries, so nothing changes for it in the ATS"),
                format!("the ATS recorded {} for {candidate}", what(record)),
                records([record.seq]),
            )
        });
    }

    fn finish(mut self: Box<Self>, cx: &Context<'_>) -> Outcome {
        for event in cx.plan.plan.events.iter().filter(|e| e.forged) {
            self.outcome.judged(Some(event.scenario));
            let ledger = cx.ledger(&event.event_id);
            if ledger.applied.is_empty() {
                continue;
            }
            self.outcome.findings.add(|| {
                cx.finding(
                    Some(&event.candidate),
                    Some(&event.correlation_id),
                    expected(event),
                    format!(
                        "{}, delivered forged, was applied at the ATS {}",
                        event.event_id,
                        times(ledger.applied.len())
                    ),
                    [Cite::Attempts(event.event_id.to_string())]
                        .into_iter()
                        .chain(records(ledger.applied_seqs())),
                )
            });
        }
        self.outcome
    }
}

fn what(record: &Record) -> String {
    match record.kind.as_str() {
        "ats.event_applied" => format!(
            "an applied event ({})",
            body_event_id(record).unwrap_or("no event_id")
        ),
        "ats.access_granted" => "an access grant".to_owned(),
        _ => "an exception item".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fold::run_one;
    use crate::judge::test_support::{Log, PlanBuilder, manifest};
    use crate::observe::Actor;
    use crate::run::plan::{Plan, Scenario};

    const FORGED: &str = "CAND_003_sgf";

    fn forged_plan() -> (Plan, PlannedEvent) {
        let mut plan = PlanBuilder::default();
        plan.candidate(Scenario::Signatures, FORGED, true, &[]);
        plan.event(FORGED, 1, "passed");
        let event = &mut plan.plan.events[0];
        event.forged = true;
        event.should_land = false;
        event.perturbation = "unsigned".into();
        let event = event.clone();
        (plan.plan, event)
    }

    #[test]
    fn refused_forgeries_pass() {
        let manifest = manifest();
        let (plan, event) = forged_plan();
        let mut log = Log::default();
        log.attempt(&event, 0, Some(401), 2.0);
        let run = (&manifest, &plan, log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert!(outcome.skipped.is_none());
        assert_eq!(outcome.findings.total(), 0);
        assert_eq!(outcome.scenarios.len(), 1);
    }

    #[test]
    fn an_accepted_forgery_and_its_write_are_findings() {
        let manifest = manifest();
        let (plan, event) = forged_plan();
        let mut log = Log::default();
        log.attempt(&event, 0, Some(202), 2.0);
        log.applied(FORGED, &event.payload);
        log.push(Actor::Ats, "ats.access_granted", |r| {
            r.candidate = Some(FORGED.into());
        });
        let run = (&manifest, &plan, log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        let seen = outcome.findings.seen();
        // What each record shows as it streams by, then what the whole log adds up to.
        assert_eq!(
            seen,
            [
                "an unsigned delivery of evt_CAND_003_sgf_1 was answered 202",
                "the ATS recorded an access grant for CAND_003_sgf",
                "evt_CAND_003_sgf_1, delivered forged, was applied at the ATS 1 time",
            ]
        );
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.expected,
            "an unsigned delivery of evt_CAND_003_sgf_1 is refused with a 4xx and changes nothing in the ATS"
        );
        assert_eq!(finding.scenario, Some(Scenario::Signatures));
    }

    #[test]
    fn a_run_without_forgeries_is_skipped() {
        let manifest = manifest();
        let clean = crate::judge::test_support::clean();
        let run = (&manifest, &clean.plan, clean.log.records());
        assert!(
            run_one(check, run.0, run.1, run.2)
                .skipped
                .is_some_and(|r| r.contains("signatures scenario did not run"))
        );
    }
}
