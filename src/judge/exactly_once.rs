//! `idempotency.exactly_once`: no idempotency key was applied at the ATS twice.
//!
//! The mock ATS does not deduplicate, so every redelivery the integration lets
//! through is one more `ats.event_applied`. Applications are grouped by the key the
//! ATS received; an event applied twice under *different* keys (an integration that
//! mints its own key per attempt) is reported as well, since grouping by key alone
//! would let it through.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::run::{Outcome, Run, body_event_id, body_text, times};
use crate::observe::Record;

/// Records grouped by a key, groups in the order their key was first seen.
#[derive(Default)]
struct Groups<'a> {
    order: Vec<&'a str>,
    members: HashMap<&'a str, Vec<&'a Record>>,
}

impl<'a> Groups<'a> {
    fn add(&mut self, key: &'a str, record: &'a Record) {
        let members = self.members.entry(key).or_default();
        if members.is_empty() {
            self.order.push(key);
        }
        members.push(record);
    }

    fn repeated(&self) -> impl Iterator<Item = (&'a str, &[&'a Record])> + '_ {
        self.order
            .iter()
            .filter_map(|k| Some((*k, self.members.get(k)?.as_slice())))
            .filter(|(_, records)| records.len() > 1)
    }
}

fn key_of(record: &Record) -> Option<&str> {
    record
        .idempotency_key
        .as_deref()
        .or_else(|| body_text(record, "idempotency_key"))
}

fn revisions(records: &[&Record]) -> String {
    let list: Vec<String> = records
        .iter()
        .map(|r| {
            r.detail
                .get("revision")
                .and_then(Value::as_u64)
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        })
        .collect();
    list.join(", ")
}

/// `idempotency.exactly_once`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    if run.applied.is_empty() {
        return Outcome::skip("no event was applied at the ATS");
    }
    let mut outcome = Outcome::default();
    let mut by_key = Groups::default();
    let mut by_event = Groups::default();
    for &record in &run.applied {
        outcome.judged(run.scenario_of(record.candidate.as_deref()));
        if let Some(key) = key_of(record) {
            by_key.add(key, record);
        }
        if let Some(event) = body_event_id(record) {
            by_event.add(event, record);
        }
    }
    let expected = "each idempotency key is applied at the ATS once, however often and however concurrently its event is delivered";
    for (key, records) in by_key.repeated() {
        outcome.findings.add(|| {
            let events: BTreeSet<&str> = records.iter().filter_map(|r| body_event_id(r)).collect();
            let events: Vec<&str> = events.into_iter().collect();
            let first = records[0];
            let attempts = events.iter().flat_map(|e| run.attempts_of(e)).copied();
            run.finding(
                first.candidate.as_deref(),
                first.correlation_id.as_deref(),
                expected,
                format!(
                    "idempotency key {key} was applied {} (revisions {}), event {}",
                    times(records.len()),
                    revisions(records),
                    events.join(", ")
                ),
                attempts.chain(records.iter().copied()),
            )
        });
    }
    for (event, records) in by_event.repeated() {
        let keys: BTreeSet<&str> = records.iter().filter_map(|r| key_of(r)).collect();
        if keys.len() < 2 {
            continue; // already reported under its one key
        }
        outcome.findings.add(|| {
            let first = records[0];
            let keys: Vec<&str> = keys.into_iter().collect();
            run.finding(
                first.candidate.as_deref(),
                first.correlation_id.as_deref(),
                expected,
                format!(
                    "event {event} was applied {} under {} different idempotency keys ({}): the integration mints its own keys",
                    times(records.len()),
                    keys.len(),
                    keys.join(", ")
                ),
                run.attempts_of(event).iter().copied().chain(records.iter().copied()),
            )
        });
    }
    outcome
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest};
    use crate::run::plan::Scenario;

    #[test]
    fn one_application_per_key_passes() {
        let manifest = manifest();
        let clean = clean();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
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
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
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
        let kinds: Vec<&str> = finding.exchanges.iter().map(|e| e.kind.as_str()).collect();
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
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
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
