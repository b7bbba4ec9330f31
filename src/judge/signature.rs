//! `signature.enforced`: unsigned, wrongly signed and stale deliveries of forged
//! events got a 4xx, and changed nothing in the ATS.
//!
//! Forged events belong to candidate copies that only ever receive forged
//! deliveries, so besides the forged event ids themselves, any state change the ATS
//! records for such a candidate (an event applied, an access grant, an exception) is
//! a forged delivery that got through.

use std::collections::HashMap;

use super::run::{Outcome, Run, body_event_id, times};
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

/// `signature.enforced`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    // Per candidate: whether every one of its planned events is forged.
    let mut forged_only: HashMap<&str, bool> = HashMap::new();
    for event in &run.plan.events {
        let all = forged_only.entry(event.candidate.as_str()).or_insert(true);
        *all &= event.forged;
    }
    let forged: Vec<&PlannedEvent> = run.plan.events.iter().filter(|e| e.forged).collect();
    if forged.is_empty() {
        return Outcome::skip(
            "no forged delivery in this run (the signatures scenario did not run)",
        );
    }
    let mut outcome = Outcome::default();
    for event in forged {
        outcome.judged(Some(event.scenario));
        let expected = format!(
            "{} delivery of {} is refused with a 4xx and changes nothing in the ATS",
            forgery(event),
            event.event_id
        );
        for &attempt in run.attempts_of(&event.event_id) {
            if attempt.status.is_some_and(|s| (400..500).contains(&s)) {
                continue;
            }
            outcome.findings.add(|| {
                let answer = attempt.status.map_or_else(
                    || "got no answer".to_owned(),
                    |s| format!("was answered {s}"),
                );
                run.finding(
                    Some(&event.candidate),
                    Some(&event.correlation_id),
                    expected.clone(),
                    format!("{} delivery of {} {answer}", forgery(event), event.event_id),
                    [attempt],
                )
            });
        }
        let applied = run.applied_of(&event.event_id);
        if !applied.is_empty() {
            outcome.findings.add(|| {
                run.finding(
                    Some(&event.candidate),
                    Some(&event.correlation_id),
                    expected.clone(),
                    format!(
                        "{}, delivered forged, was applied at the ATS {}",
                        event.event_id,
                        times(applied.len())
                    ),
                    run.attempts_of(&event.event_id)
                        .iter()
                        .chain(applied)
                        .copied(),
                )
            });
        }
    }
    // Other state changes for candidates that only ever got forged deliveries.
    for record in run.records {
        let changed = match record.kind.as_str() {
            "ats.event_applied" => body_event_id(record)
                .and_then(|id| run.event(id))
                .is_none_or(|e| !e.forged),
            "ats.access_granted" | "ats.exception_created" => true,
            _ => false,
        };
        let Some(candidate) = record.candidate.as_deref() else {
            continue;
        };
        if !changed || forged_only.get(candidate) != Some(&true) {
            continue;
        }
        outcome.findings.add(|| {
            run.finding(
                Some(candidate),
                record.correlation_id.as_deref(),
                format!("{candidate} received only forged deliveries, so nothing changes for it in the ATS"),
                format!("the ATS recorded {} for {candidate}", what(record)),
                [record],
            )
        });
    }
    outcome
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
        let run = Run::new(&manifest, &plan, log.records());
        let outcome = check(&run);
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
        let run = Run::new(&manifest, &plan, log.records());
        let outcome = check(&run);
        let seen = outcome.findings.seen();
        assert_eq!(
            seen,
            [
                "an unsigned delivery of evt_CAND_003_sgf_1 was answered 202",
                "evt_CAND_003_sgf_1, delivered forged, was applied at the ATS 1 time",
                "the ATS recorded an access grant for CAND_003_sgf",
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
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        assert!(
            check(&run)
                .skipped
                .is_some_and(|r| r.contains("signatures scenario did not run"))
        );
    }
}
