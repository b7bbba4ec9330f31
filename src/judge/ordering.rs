//! `ordering.no_regression`: per candidate and contract, the `occurred_at` of what
//! the ATS applied never goes backwards, and the last event applied is the latest of
//! the planned events that should land.
//!
//! The mock ATS applies every write (last write wins), so an integration that lets a
//! stale event through after a newer one leaves the candidate in an older state;
//! both the step back and the wrong final state are findings. A latest event that
//! never reached the ATS at all is a loss, not a regression: `delivery.no_loss` owns
//! it, so one defect fails one check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::run::{Outcome, Run, body_at, body_event_id, body_text, detail_text};
use crate::contract::assertion::parse_rfc3339;
use crate::observe::Record;
use crate::run::plan::PlannedEvent;

fn occurred(run: &Run<'_>, record: &Record) -> Option<DateTime<Utc>> {
    occurred_text(run, record).and_then(parse_rfc3339)
}

/// The event's time, where the manifest's envelope puts it.
fn occurred_text<'r>(run: &Run<'_>, record: &'r Record) -> Option<&'r str> {
    body_at(record, &run.manifest.envelope.occurred_at)
}

fn contract_of(record: &Record) -> Option<&str> {
    detail_text(record, "contract").or_else(|| body_text(record, "type"))
}

/// `ordering.no_regression`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    if run.applied.is_empty() {
        return Outcome::skip("no event was applied at the ATS");
    }
    // The latest planned event that should land, per (candidate, contract).
    let mut latest: HashMap<(&str, &str), (DateTime<Utc>, &PlannedEvent)> = HashMap::new();
    for event in run.plan.events.iter().filter(|e| e.should_land) {
        let Some(at) = parse_rfc3339(&event.occurred_at) else {
            continue;
        };
        let slot = latest
            .entry((event.candidate.as_str(), event.contract.as_str()))
            .or_insert((at, event));
        if at > slot.0 {
            *slot = (at, event);
        }
    }
    let mut order: Vec<(&str, &str)> = Vec::new();
    let mut groups: HashMap<(&str, &str), Vec<&Record>> = HashMap::new();
    for &record in &run.applied {
        let (Some(candidate), Some(contract)) = (record.candidate.as_deref(), contract_of(record))
        else {
            continue;
        };
        let group = groups.entry((candidate, contract)).or_default();
        if group.is_empty() {
            order.push((candidate, contract));
        }
        group.push(record);
    }
    let mut outcome = Outcome::default();
    for pair @ (candidate, contract) in order {
        outcome.judged(run.scenario_of(Some(candidate)));
        let Some(applied) = groups.get(&pair) else {
            continue;
        };
        let mut newest: Option<(DateTime<Utc>, &Record)> = None;
        for &record in applied {
            let Some(at) = occurred(run, record) else {
                continue;
            };
            match newest {
                Some((max, before)) if at < max => outcome.findings.add(|| {
                    run.finding(
                        Some(candidate),
                        record.correlation_id.as_deref(),
                        format!("{candidate}'s {contract} events are applied in occurred_at order: one older than an event already applied is dropped, never applied after it"),
                        format!(
                            "{} (occurred_at {}) was applied after {} (occurred_at {}): the ATS went back in time",
                            body_event_id(record).unwrap_or("an event"),
                            occurred_text(run, record).unwrap_or("?"),
                            body_event_id(before).unwrap_or("an event"),
                            occurred_text(run, before).unwrap_or("?"),
                        ),
                        [before, record],
                    )
                }),
                Some((max, _)) if at == max => {}
                _ => newest = Some((at, record)),
            }
        }
        let (Some(&last), Some(&(want_at, want))) = (applied.last(), latest.get(&pair)) else {
            continue;
        };
        let overwritten = run.applied_of(&want.event_id);
        if overwritten.is_empty() || occurred(run, last).is_some_and(|at| at >= want_at) {
            continue;
        }
        outcome.findings.add(|| {
            let mut records: Vec<&Record> = overwritten.to_vec();
            records.push(last);
            run.finding(
                Some(candidate),
                Some(&want.correlation_id),
                format!(
                    "the ATS's final {contract} state of {candidate} is its latest event, {}",
                    want.event_id
                ),
                format!(
                    "the last {contract} applied for {candidate} is {} (occurred_at {}), not {} (occurred_at {}), which was applied earlier and then overwritten",
                    body_event_id(last).unwrap_or("an event"),
                    occurred_text(run, last).unwrap_or("?"),
                    want.event_id,
                    // As the event wrote it, like the applied one beside it.
                    run.manifest
                        .envelope
                        .occurred_at_of(&want.payload)
                        .unwrap_or(&want.occurred_at)
                ),
                records,
            )
        });
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest, passes_on_clean};

    #[test]
    fn events_applied_in_order_pass() {
        passes_on_clean(check);
    }

    #[test]
    fn a_stale_event_applied_last_is_a_step_back_and_a_wrong_final_state() {
        let manifest = manifest();
        let mut clean = clean();
        let stale = clean.events[0].clone();
        let again = clean.log.applied(CANDIDATE, &stale.payload);
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
        assert_eq!(outcome.findings.total(), 2);
        let [back, last] = outcome.findings.kept() else {
            panic!("two findings")
        };
        assert_eq!(
            back.seen,
            "evt_CAND_003_cl_1 (occurred_at 2026-05-18T09:01:00Z) was applied after \
             evt_CAND_003_cl_2 (occurred_at 2026-05-18T09:02:00Z): the ATS went back in time"
        );
        let seqs: Vec<u64> = back.exchanges.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [clean.applied[1], again]);
        assert_eq!(
            last.seen,
            "the last identity.verification.completed applied for CAND_003_cl is evt_CAND_003_cl_1 \
             (occurred_at 2026-05-18T09:01:00Z), not evt_CAND_003_cl_2 (occurred_at 2026-05-18T09:02:00Z), \
             which was applied earlier and then overwritten"
        );
        assert_eq!(last.candidate.as_deref(), Some(CANDIDATE));
    }

    #[test]
    fn a_latest_event_that_never_landed_is_left_to_no_loss() {
        let manifest = manifest();
        let mut clean = clean();
        clean.log.record_mut(clean.applied[1]).kind = "ats.event_rejected".into();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        assert_eq!(check(&run).findings.total(), 0);
    }
}
