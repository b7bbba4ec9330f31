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

use super::fold::{Context, Fold, PlanIndex, Text, records};
use super::run::{Outcome, body_at, body_event_id, body_text, detail_text};
use crate::contract::assertion::parse_rfc3339;
use crate::observe::Record;
use crate::run::plan::PlannedEvent;

/// The event's time, where the manifest's envelope puts it.
fn occurred_text<'r>(cx: &Context<'_>, record: &'r Record) -> Option<&'r str> {
    body_at(record, &cx.manifest.envelope.occurred_at)
}

/// The contract an ATS write is for.
fn contract_of(record: &Record) -> Option<&str> {
    detail_text(record, "contract").or_else(|| body_text(record, "type"))
}

/// One application, as much as a finding needs of it.
#[derive(Clone)]
struct Seen<'a> {
    seq: u64,
    at: Option<DateTime<Utc>>,
    event: Text<'a>,
    occurred: Box<str>,
}

impl<'a> Seen<'a> {
    fn of(cx: &Context<'_>, plan: &PlanIndex<'a>, record: &Record) -> Self {
        let occurred = occurred_text(cx, record);
        let event = body_event_id(record);
        Seen {
            seq: record.seq,
            at: occurred.and_then(parse_rfc3339),
            event: plan.keep(event, event.unwrap_or("an event"), |p| &p.event_id),
            occurred: occurred.unwrap_or("?").into(),
        }
    }
}

/// What one candidate's one contract went through at the ATS.
struct Group<'a> {
    /// The newest application so far (by `occurred_at`).
    newest: Option<Seen<'a>>,
    /// The last application.
    last: Seen<'a>,
    /// The first application's seq: groups are judged in that order.
    first_seq: u64,
}

/// `ordering.no_regression`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(Ordering {
        plan: cx.plan,
        groups: HashMap::new(),
        outcome: Outcome::default(),
    })
}

/// A candidate and a contract.
type Pair<'a> = (Text<'a>, Text<'a>);

struct Ordering<'a> {
    plan: &'a PlanIndex<'a>,
    groups: HashMap<Pair<'a>, Group<'a>>,
    outcome: Outcome,
}

impl Fold for Ordering<'_> {
    fn record(&mut self, cx: &Context<'_>, record: &Record) {
        if record.kind != "ats.event_applied" {
            return;
        }
        let (Some(candidate), Some(contract)) = (record.candidate.as_deref(), contract_of(record))
        else {
            return;
        };
        self.outcome.judged(cx.plan.scenario_of(Some(candidate)));
        let seen = Seen::of(cx, self.plan, record);
        let event = body_event_id(record);
        let key = (
            self.plan.keep(event, candidate, |p| &p.candidate),
            self.plan.keep(event, contract, |p| &p.contract),
        );
        let Some(group) = self.groups.get_mut(&key) else {
            self.groups.insert(
                key,
                Group {
                    newest: seen.at.is_some().then(|| seen.clone()),
                    first_seq: seen.seq,
                    last: seen,
                },
            );
            return;
        };
        group.last = seen.clone();
        let Some(at) = seen.at else {
            return;
        };
        match &group.newest {
            Some(before) if before.at.is_some_and(|max| at < max) => {
                self.outcome.findings.add(|| {
                    cx.finding(
                        Some(candidate),
                        record.correlation_id.as_deref(),
                        format!("{candidate}'s {contract} events are applied in occurred_at order: one older than an event already applied is dropped, never applied after it"),
                        format!(
                            "{} (occurred_at {}) was applied after {} (occurred_at {}): the ATS went back in time",
                            seen.event, seen.occurred, before.event, before.occurred,
                        ),
                        records([before.seq, seen.seq]),
                    )
                });
            }
            Some(before) if before.at == Some(at) => {}
            _ => group.newest = Some(seen),
        }
    }

    fn finish(mut self: Box<Self>, cx: &Context<'_>) -> Outcome {
        if cx.seen.applied == 0 {
            return Outcome::skip("no event was applied at the ATS");
        }
        // The latest planned event that should land, per (candidate, contract).
        let mut latest: HashMap<(&str, &str), (DateTime<Utc>, &PlannedEvent)> = HashMap::new();
        for event in cx.plan.plan.events.iter().filter(|e| e.should_land) {
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
        let mut groups: Vec<(&Pair, &Group)> = self.groups.iter().collect();
        groups.sort_by_key(|(_, g)| g.first_seq);
        for ((candidate, contract), group) in groups {
            let Some(&(want_at, want)) = latest.get(&(&**candidate, &**contract)) else {
                continue;
            };
            let overwritten = &cx.ledger(&want.event_id).applied;
            let last = &group.last;
            if overwritten.is_empty() || last.at.is_some_and(|at| at >= want_at) {
                continue;
            }
            self.outcome.findings.add(|| {
                cx.finding(
                    Some(candidate),
                    Some(&want.correlation_id),
                    format!(
                        "the ATS's final {contract} state of {candidate} is its latest event, {}",
                        want.event_id
                    ),
                    format!(
                        "the last {contract} applied for {candidate} is {} (occurred_at {}), not {} (occurred_at {}), which was applied earlier and then overwritten",
                        last.event,
                        last.occurred,
                        want.event_id,
                        // As the event wrote it, like the applied one beside it.
                        cx.manifest
                            .envelope
                            .occurred_at_of(&want.payload)
                            .unwrap_or(&want.occurred_at)
                    ),
                    records(overwritten.iter().map(|m| m.seq).chain([last.seq])),
                )
            });
        }
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fold::run_one;
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
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
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
        let run = (&manifest, &clean.plan, clean.log.records());
        assert_eq!(run_one(check, run.0, run.1, run.2).findings.total(), 0);
    }
}
