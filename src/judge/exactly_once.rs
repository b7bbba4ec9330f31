//! `idempotency.exactly_once`: no idempotency key was applied at the ATS twice.
//!
//! The mock ATS does not deduplicate, so every redelivery the integration lets
//! through is one more `ats.event_applied`. Applications are grouped by the key the
//! ATS received; an event applied twice under *different* keys (an integration that
//! mints its own key per attempt) is reported as well, since grouping by key alone
//! would let it through.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::fold::{ByNumber, Cite, Context, Fold, Ids, Keeper, Kept, PlanIndex, records};
use super::run::{Outcome, body_event_id, key_of, times};
use crate::observe::Record;

/// `idempotency.exactly_once`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(ExactlyOnce {
        plan: cx.plan,
        ids: Ids::default(),
        keeper: Keeper::default(),
        by_key: ByNumber::keys(cx.plan),
        later: HashMap::new(),
        key_of_event: ByNumber::ids(cx.plan),
        more_keys: HashMap::new(),
        outcome: Outcome::default(),
    })
}

/// One application at the ATS, as much as a finding needs of it.
struct Applied {
    seq: u64,
    revision: Option<u64>,
    /// The event it applied, numbered ([`Ids`]).
    event: Option<u32>,
}

/// The first application of an idempotency key, and whom it was about: nearly
/// every key is applied once, so later applications are kept apart.
struct FirstApplied {
    first: Applied,
    candidate: Option<Kept>,
    correlation_id: Option<Kept>,
}

/// Applications per idempotency key, and the keys each event was applied under, all
/// keyed by number ([`Ids`]) so that a large run's state holds no copy of an id.
struct ExactlyOnce<'a> {
    plan: &'a PlanIndex<'a>,
    ids: Ids,
    keeper: Keeper,
    by_key: ByNumber<FirstApplied>,
    /// The applications after the first, of the keys applied more than once.
    later: HashMap<u32, Vec<Applied>>,
    /// The first key each event was applied under.
    key_of_event: ByNumber<u32>,
    /// The other keys of an event applied under more than one, in the order met.
    more_keys: HashMap<u32, Vec<u32>>,
    outcome: Outcome,
}

fn revisions<'x>(applied: impl Iterator<Item = &'x Applied>) -> String {
    let list: Vec<String> = applied
        .map(|a| a.revision.map_or_else(|| "?".to_owned(), |n| n.to_string()))
        .collect();
    list.join(", ")
}

const EXPECTED: &str = "each idempotency key is applied at the ATS once, however often and however concurrently its event is delivered";

impl Fold for ExactlyOnce<'_> {
    fn record(&mut self, cx: &Context<'_>, record: &Record) {
        if record.kind != "ats.event_applied" {
            return;
        }
        self.outcome
            .judged(cx.plan.scenario_of(record.candidate.as_deref()));
        let Some(key) = key_of(record) else {
            return;
        };
        let plan = self.plan;
        let event = body_event_id(record);
        let key = self.ids.number_or_new(plan, key);
        let event_number = event.map(|e| self.ids.number_or_new(plan, e));
        let applied = Applied {
            seq: record.seq,
            revision: record.detail.get("revision").and_then(Value::as_u64),
            event: event_number,
        };
        match self.by_key.get(key) {
            Some(_) => self.later.entry(key).or_default().push(applied),
            None => {
                // What a finding names of the first application; later ones only count.
                let (candidate, correlation_id) = self.keeper.whom(plan, event, record);
                let first = FirstApplied {
                    first: applied,
                    candidate,
                    correlation_id,
                };
                self.by_key.insert(key, first);
            }
        }
        if let Some(event) = event_number {
            match self.key_of_event.get(event) {
                None => self.key_of_event.insert(event, key),
                Some(&first) if first != key => {
                    let more = self.more_keys.entry(event).or_default();
                    if !more.contains(&key) {
                        more.push(key);
                    }
                }
                Some(_) => {}
            }
        }
    }

    fn finish(mut self: Box<Self>, cx: &Context<'_>) -> Outcome {
        if cx.seen.applied == 0 {
            return Outcome::skip("no event was applied at the ATS");
        }
        let (plan, ids, keeper) = (self.plan, &self.ids, &self.keeper);
        let mut repeated: Vec<(u32, &FirstApplied, &[Applied])> = self
            .later
            .iter()
            .filter_map(|(key, later)| Some((*key, self.by_key.get(*key)?, later.as_slice())))
            .collect();
        repeated.sort_by_key(|(_, applied, _)| applied.first.seq);
        for (key, applied, later) in repeated {
            let all = || std::iter::once(&applied.first).chain(later);
            self.outcome.findings.add(|| {
                let events: BTreeSet<&str> = all()
                    .filter_map(|a| a.event.map(|e| ids.text(plan, e)))
                    .collect();
                let cites: Vec<Cite> = events
                    .iter()
                    .map(|e| Cite::Attempts((*e).to_owned()))
                    .chain(records(all().map(|a| a.seq)))
                    .collect();
                let events: Vec<&str> = events.into_iter().collect();
                cx.finding(
                    keeper.text(plan, applied.candidate),
                    keeper.text(plan, applied.correlation_id),
                    EXPECTED,
                    format!(
                        "idempotency key {} was applied {} (revisions {}), event {}",
                        ids.text(plan, key),
                        times(1 + later.len()),
                        revisions(all()),
                        events.join(", ")
                    ),
                    cites,
                )
            });
        }
        let ledger = |event: &str| cx.ledger(event);
        let mut minted: Vec<(&str, Vec<&str>)> = self
            .more_keys
            .iter()
            .map(|(event, more)| {
                let first = self.key_of_event.get(*event).into_iter();
                let keys = first.chain(more).map(|k| ids.text(plan, *k)).collect();
                (ids.text(plan, *event), keys)
            })
            .collect();
        minted.sort_by_key(|(event, _)| ledger(event).applied.first().map(|m| m.seq));
        for (event, mut keys) in minted {
            let applied = ledger(event);
            self.outcome.findings.add(|| {
                let planned = cx.plan.event(event);
                keys.sort_unstable();
                cx.finding(
                    planned.map(|e| e.candidate.as_str()),
                    planned.map(|e| e.correlation_id.as_str()),
                    EXPECTED,
                    format!(
                        "event {event} was applied {} under {} different idempotency keys ({}): the integration mints its own keys",
                        times(applied.applied.len()),
                        keys.len(),
                        keys.join(", ")
                    ),
                    [Cite::Attempts(event.to_owned())]
                        .into_iter()
                        .chain(records(applied.applied_seqs())),
                )
            });
        }
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use crate::judge::fold::run_one;
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest};
    use crate::run::plan::Scenario;

    #[test]
    fn one_application_per_key_passes() {
        let manifest = manifest();
        let clean = clean();
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 0);
        assert_eq!(
            outcome.scenarios.iter().collect::<Vec<_>>(),
            [&Scenario::Clean]
        );
    }

    #[test]
    fn a_redelivery_applied_again_is_a_finding() {
        let manifest = manifest();
        let mut clean = clean();
        let event = clean.events[0].clone();
        clean.log.attempt(&event, 1, Some(200), 5.0);
        let again = clean.log.applied(CANDIDATE, &event.payload);
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 1);
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.seen,
            format!(
                "idempotency key idk_CAND_003_cl_1 was applied 2 times (revisions {}, {again}), event evt_CAND_003_cl_1",
                clean.applied[0]
            )
        );
        assert_eq!(finding.candidate.as_deref(), Some(CANDIDATE));
        let kinds = crate::judge::test_support::kinds(&finding.exchanges);
        assert_eq!(
            kinds,
            [
                "webhook.attempt",
                "ats.event_applied",
                "webhook.attempt",
                "ats.event_applied"
            ]
        );
    }

    #[test]
    fn an_event_applied_under_minted_keys_is_a_finding() {
        let manifest = manifest();
        let mut clean = clean();
        let mut body = serde_json::Value::clone(&clean.events[0].payload);
        body["idempotency_key"] = json!("minted_2");
        clean.log.applied(CANDIDATE, &body);
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 1);
        assert!(
            outcome.findings.kept()[0]
                .seen
                .contains("under 2 different idempotency keys (idk_CAND_003_cl_1, minted_2)"),
            "{}",
            outcome.findings.kept()[0].seen
        );
    }
}
