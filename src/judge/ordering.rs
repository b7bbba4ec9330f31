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
use indexmap::IndexSet;

use super::fold::{Context, Field, Fold, Keeper, Kept, PlanIndex, records};
use super::run::{Outcome, body_at, body_event_id, body_text, detail_text};
use crate::contract::assertion::parse_rfc3339;
use crate::observe::Record;

/// The event's time, where the manifest's envelope puts it.
fn occurred_text<'r>(cx: &Context<'_>, record: &'r Record) -> Option<&'r str> {
    body_at(record, &cx.manifest.envelope.occurred_at)
}

/// The contract an ATS write is for.
fn contract_of(record: &Record) -> Option<&str> {
    detail_text(record, "contract").or_else(|| body_text(record, "type"))
}

/// One application, as much as a finding needs of it.
#[derive(Clone, Copy)]
struct Seen {
    seq: u64,
    at: Option<DateTime<Utc>>,
    event: Option<Kept>,
    occurred: Option<Kept>,
}

/// A candidate: its place in the plan, or one the plan lacks, numbered in the order met.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Planned(u32),
    Other(u32),
}

/// A candidate and a contract (numbered in the order met).
type Pair = (Who, u32);

/// What one candidate's one contract went through at the ATS.
struct Group {
    /// The newest application so far (by `occurred_at`).
    newest: Option<Seen>,
    /// The last application.
    last: Seen,
    /// The first application's seq: groups are judged in that order.
    first_seq: u64,
}

/// `ordering.no_regression`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(Ordering {
        plan: cx.plan,
        keeper: Keeper::default(),
        others: IndexSet::new(),
        contracts: IndexSet::new(),
        groups: HashMap::new(),
        outcome: Outcome::default(),
    })
}

/// The groups, keyed by numbers, so that a large run's state holds no copy of an id.
struct Ordering<'a> {
    plan: &'a PlanIndex<'a>,
    keeper: Keeper,
    /// Candidates applied at the ATS that the plan lacks.
    others: IndexSet<Box<str>>,
    contracts: IndexSet<Box<str>>,
    groups: HashMap<Pair, Group>,
    outcome: Outcome,
}

impl Ordering<'_> {
    fn seen(&mut self, cx: &Context<'_>, record: &Record) -> Seen {
        let occurred = occurred_text(cx, record);
        let event = body_event_id(record);
        let (plan, keeper) = (self.plan, &mut self.keeper);
        Seen {
            seq: record.seq,
            at: occurred.and_then(parse_rfc3339),
            event: keeper.keep(plan, event, event, Field::EventId),
            occurred: keeper.keep(plan, event, occurred, Field::OccurredAt),
        }
    }

    fn text(&self, kept: Option<Kept>, absent: &'static str) -> &str {
        self.keeper.text(self.plan, kept).unwrap_or(absent)
    }

    fn who(&self, candidate: &str) -> Option<Who> {
        self.plan
            .candidate_index(candidate)
            .map(Who::Planned)
            .or_else(|| {
                self.others
                    .get_index_of(candidate)
                    .map(|i| Who::Other(i as u32))
            })
    }

    fn candidate(&self, who: Who) -> &str {
        match who {
            Who::Planned(i) => &self.plan.plan.candidates[i as usize].candidate,
            Who::Other(i) => self.others.get_index(i as usize).map_or("?", |c| c),
        }
    }
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
        let seen = self.seen(cx, record);
        let who = self.who(candidate).unwrap_or_else(|| {
            let (i, _) = self.others.insert_full(candidate.into());
            Who::Other(i as u32)
        });
        let contract_number = match self.contracts.get_index_of(contract) {
            Some(i) => i,
            None => self.contracts.insert_full(contract.into()).0,
        } as u32;
        let Some(group) = self.groups.get_mut(&(who, contract_number)) else {
            self.groups.insert(
                (who, contract_number),
                Group {
                    newest: seen.at.is_some().then_some(seen),
                    first_seq: seen.seq,
                    last: seen,
                },
            );
            return;
        };
        group.last = seen;
        let Some(at) = seen.at else {
            return;
        };
        match group.newest {
            Some(before) if before.at.is_some_and(|max| at < max) => {
                let (keeper, plan) = (&self.keeper, self.plan);
                let text = |kept, absent| keeper.text(plan, kept).unwrap_or(absent);
                let event = |s: &Seen| text(s.event, "an event");
                let occurred = |s: &Seen| text(s.occurred, "?");
                self.outcome.findings.add(|| {
                    cx.finding(
                        Some(candidate),
                        record.correlation_id.as_deref(),
                        format!("{candidate}'s {contract} events are applied in occurred_at order: one older than an event already applied is dropped, never applied after it"),
                        format!(
                            "{} (occurred_at {}) was applied after {} (occurred_at {}): the ATS went back in time",
                            event(&seen), occurred(&seen), event(&before), occurred(&before),
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
        // The latest planned event that should land, per group that was applied.
        let mut latest: HashMap<Pair, (DateTime<Utc>, u32)> = HashMap::new();
        for (i, event) in cx.plan.plan.events.iter().enumerate() {
            if !event.should_land {
                continue;
            }
            let (Some(who), Some(contract)) = (
                self.who(&event.candidate),
                self.contracts.get_index_of(event.contract.as_str()),
            ) else {
                continue;
            };
            let pair = (who, contract as u32);
            let Some(at) = self
                .groups
                .contains_key(&pair)
                .then(|| parse_rfc3339(&event.occurred_at))
                .flatten()
            else {
                continue;
            };
            let slot = latest.entry(pair).or_insert((at, i as u32));
            if at > slot.0 {
                *slot = (at, i as u32);
            }
        }
        let mut groups: Vec<(&Pair, &Group)> = self.groups.iter().collect();
        groups.sort_by_key(|(_, g)| g.first_seq);
        let mut outcome = std::mem::take(&mut self.outcome);
        for (pair, group) in groups {
            let Some(&(want_at, want)) = latest.get(pair) else {
                continue;
            };
            let want = &cx.plan.plan.events[want as usize];
            let overwritten = &cx.ledger(&want.event_id).applied;
            let last = &group.last;
            if overwritten.is_empty() || last.at.is_some_and(|at| at >= want_at) {
                continue;
            }
            let candidate = self.candidate(pair.0);
            let contract = self.contracts.get_index(pair.1 as usize).map_or("?", |c| c);
            outcome.findings.add(|| {
                cx.finding(
                    Some(candidate),
                    Some(&want.correlation_id),
                    format!(
                        "the ATS's final {contract} state of {candidate} is its latest event, {}",
                        want.event_id
                    ),
                    format!(
                        "the last {contract} applied for {candidate} is {} (occurred_at {}), not {} (occurred_at {}), which was applied earlier and then overwritten",
                        self.text(last.event, "an event"),
                        self.text(last.occurred, "?"),
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
        outcome
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
