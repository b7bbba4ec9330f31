//! `idempotency.exactly_once`: no idempotency key was applied at the ATS twice.
//!
//! The mock ATS does not deduplicate, so every redelivery the integration lets
//! through is one more `ats.event_applied`. Applications are grouped by the key the
//! ATS received; an event applied twice under *different* keys (an integration that
//! mints its own key per attempt) is reported as well, since grouping by key alone
//! would let it through.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::fold::{Cite, Context, Fold, PlanIndex, Text, records};
use super::run::{Outcome, body_event_id, key_of, times};
use crate::observe::Record;
use crate::run::plan::PlannedEvent;

/// `idempotency.exactly_once`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(ExactlyOnce {
        plan: cx.plan,
        by_key: HashMap::new(),
        keys_of_event: HashMap::new(),
        outcome: Outcome::default(),
    })
}

/// One application at the ATS, as much as a finding needs of it.
struct Applied<'a> {
    seq: u64,
    revision: Option<u64>,
    event: Option<Text<'a>>,
    candidate: Option<Text<'a>>,
    correlation_id: Option<Text<'a>>,
}

/// Applications per idempotency key, and the keys each event was applied under (the
/// strings borrowed from the plan where it has them).
struct ExactlyOnce<'a> {
    plan: &'a PlanIndex<'a>,
    by_key: HashMap<Text<'a>, Vec<Applied<'a>>>,
    keys_of_event: HashMap<Text<'a>, Vec<Text<'a>>>,
    outcome: Outcome,
}

fn revisions(applied: &[Applied<'_>]) -> String {
    let list: Vec<String> = applied
        .iter()
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
        let event = body_event_id(record);
        let plan = self.plan;
        let keep = |text: &str, field: fn(&PlannedEvent) -> &str| plan.keep(event, text, field);
        if let Some(key) = key_of(record) {
            // What a finding names of the first application; later ones only count.
            let first = !self.by_key.contains_key(key);
            let applied = Applied {
                seq: record.seq,
                revision: record.detail.get("revision").and_then(Value::as_u64),
                event: event.map(|e| keep(e, |p| &p.event_id)),
                candidate: first
                    .then(|| {
                        record
                            .candidate
                            .as_deref()
                            .map(|c| keep(c, |p| &p.candidate))
                    })
                    .flatten(),
                correlation_id: first
                    .then(|| {
                        let correlation = record.correlation_id.as_deref();
                        correlation.map(|c| keep(c, |p| &p.correlation_id))
                    })
                    .flatten(),
            };
            // Nearly every key is applied once: room for one, not the usual four.
            self.by_key
                .entry(keep(key, |p| &p.idempotency_key))
                .or_insert_with(|| Vec::with_capacity(1))
                .push(applied);
            if let Some(event) = event {
                let keys = self
                    .keys_of_event
                    .entry(keep(event, |p| &p.event_id))
                    .or_insert_with(|| Vec::with_capacity(1));
                if !keys.iter().any(|k| **k == *key) {
                    keys.push(keep(key, |p| &p.idempotency_key));
                }
            }
        }
    }

    fn finish(mut self: Box<Self>, cx: &Context<'_>) -> Outcome {
        if cx.seen.applied == 0 {
            return Outcome::skip("no event was applied at the ATS");
        }
        let mut repeated: Vec<(&str, &[Applied<'_>])> = self
            .by_key
            .iter()
            .filter(|(_, applied)| applied.len() > 1)
            .map(|(key, applied)| (&**key, applied.as_slice()))
            .collect();
        repeated.sort_by_key(|(_, applied)| applied[0].seq);
        for (key, applied) in repeated {
            self.outcome.findings.add(|| {
                let events: BTreeSet<&str> =
                    applied.iter().filter_map(|a| a.event.as_deref()).collect();
                let first = &applied[0];
                let cites: Vec<Cite> = events
                    .iter()
                    .map(|e| Cite::Attempts((*e).to_owned()))
                    .chain(records(applied.iter().map(|a| a.seq)))
                    .collect();
                let events: Vec<&str> = events.into_iter().collect();
                cx.finding(
                    first.candidate.as_deref(),
                    first.correlation_id.as_deref(),
                    EXPECTED,
                    format!(
                        "idempotency key {key} was applied {} (revisions {}), event {}",
                        times(applied.len()),
                        revisions(applied),
                        events.join(", ")
                    ),
                    cites,
                )
            });
        }
        let mut minted: Vec<(&str, &[Text<'_>])> = self
            .keys_of_event
            .iter()
            .filter(|(_, keys)| keys.len() > 1)
            .map(|(event, keys)| (&**event, keys.as_slice()))
            .collect();
        let ledger = |event: &str| cx.ledger(event);
        minted.sort_by_key(|(event, _)| ledger(event).applied.first().map(|m| m.seq));
        for (event, keys) in minted {
            let applied = ledger(event);
            self.outcome.findings.add(|| {
                let planned = cx.plan.event(event);
                let mut keys: Vec<&str> = keys.iter().map(|k| &**k).collect();
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
        let mut body = clean.events[0].payload.clone();
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
