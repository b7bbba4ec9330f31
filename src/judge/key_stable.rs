//! `idempotency.key_stable`: the contracts' `KEY is stable for same (…)` assertions
//! hold across every copy of every event the harness saw, and the `Idempotency-Key`
//! header the ATS received, when there is one, is the body's key.
//!
//! The copies are the vendor's (the plan's payloads, which are right by
//! construction) and every body the ATS received, applied or refused. The vendor's
//! copies are seen first, so an integration that rewrites or mints keys is caught
//! against the key the vendor sent: remembering one fingerprint per tuple keeps the
//! memory to a few bytes per event.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::Value;

use super::run::{Outcome, Run, body, body_at, body_event_id, detail_text};
use crate::contract::assertion::render_value;
use crate::contract::path::FieldPath;
use crate::observe::Record;
use crate::run::plan::PlannedEvent;

/// One copy of an event.
#[derive(Clone, Copy)]
enum Sighting<'a> {
    Vendor(&'a PlannedEvent),
    Ats(&'a Record),
}

impl<'a> Sighting<'a> {
    fn payload(self) -> Option<&'a Value> {
        match self {
            Sighting::Vendor(event) => Some(&event.payload),
            Sighting::Ats(record) => body(record),
        }
    }

    fn describe(self) -> String {
        match self {
            Sighting::Vendor(event) => format!("the vendor's copy of {}", event.event_id),
            Sighting::Ats(record) => {
                let event = body_event_id(record).unwrap_or("an event");
                if record.kind == "ats.event_rejected" {
                    format!("the body of {event} refused by the ATS")
                } else {
                    format!("the body of {event} applied at the ATS")
                }
            }
        }
    }

    fn candidate(self) -> Option<&'a str> {
        match self {
            Sighting::Vendor(event) => Some(&event.candidate),
            Sighting::Ats(record) => record.candidate.as_deref(),
        }
    }

    fn correlation_id(self) -> Option<&'a str> {
        match self {
            Sighting::Vendor(event) => Some(&event.correlation_id),
            Sighting::Ats(record) => record.correlation_id.as_deref(),
        }
    }

    fn records(self, run: &Run<'a>) -> Vec<&'a Record> {
        match self {
            Sighting::Vendor(event) => run.attempts_of(&event.event_id).to_vec(),
            Sighting::Ats(record) => {
                let mut records: Vec<&Record> = body_event_id(record)
                    .map(|e| run.attempts_of(e).to_vec())
                    .unwrap_or_default();
                records.push(record);
                records
            }
        }
    }
}

fn shown(path: &FieldPath, payload: &Value) -> String {
    path.lookup(payload)
        .map_or_else(|| "absent".to_owned(), render_value)
}

/// `idempotency.key_stable`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    let contracts = &run.manifest.contracts;
    let rules: Vec<usize> = contracts
        .iter()
        .map(|c| c.stability_rules().count())
        .collect();
    let headers = run
        .applied
        .iter()
        .any(|r| detail_text(r, "idempotency_header").is_some());
    if rules.iter().all(|n| *n == 0) && !headers {
        return Outcome::skip(
            "no contract has an `is stable for same (…)` assertion and no Idempotency-Key header reached the ATS",
        );
    }
    let copies: Vec<Sighting<'_>> = run
        .plan
        .events
        .iter()
        .map(Sighting::Vendor)
        .chain(
            run.records
                .iter()
                .filter(|r| r.kind == "ats.event_applied" || r.kind == "ats.event_rejected")
                .map(Sighting::Ats),
        )
        .collect();
    if copies.is_empty() {
        return Outcome::skip("no event was planned and none reached the ATS");
    }
    let mut outcome = Outcome::default();
    // Per (contract, rule): tuple fingerprint → (key fingerprint, first copy).
    let mut first: Vec<Vec<HashMap<u64, (u64, Sighting<'_>)>>> =
        rules.iter().map(|n| vec![HashMap::new(); *n]).collect();
    for &copy in &copies {
        outcome.judged(run.scenario_of(copy.candidate()));
        let Some(payload) = copy.payload() else {
            continue;
        };
        let name = match copy {
            Sighting::Vendor(event) => Some(event.contract.as_str()),
            Sighting::Ats(_) => payload.get("type").and_then(Value::as_str),
        };
        let Some(ci) = name.and_then(|n| contracts.index_of(n)) else {
            continue;
        };
        let contract = contracts.at(ci);
        for (ri, (assertion, rule)) in contract.stability_rules().enumerate() {
            let Some(fingerprint) = rule.fingerprint(payload) else {
                continue;
            };
            let Some(seen) = first.get_mut(ci).and_then(|r| r.get_mut(ri)) else {
                continue;
            };
            let earlier = match seen.entry(fingerprint.tuple) {
                Entry::Vacant(slot) => {
                    slot.insert((fingerprint.key, copy));
                    continue;
                }
                Entry::Occupied(slot) if slot.get().0 == fingerprint.key => continue,
                Entry::Occupied(slot) => slot.get().1,
            };
            outcome.findings.add(|| {
                let tuple: Vec<&str> = rule.tuple.iter().map(FieldPath::as_str).collect();
                let before = earlier.payload().map_or_else(
                    || "absent".to_owned(),
                    |p| shown(&rule.key, p),
                );
                let mut records = earlier.records(run);
                records.extend(copy.records(run));
                run.finding(
                    copy.candidate(),
                    copy.correlation_id(),
                    format!(
                        "`{}` is stable for same ({}) across every copy of every `{}` event (assertion `{}`)",
                        rule.key,
                        tuple.join(", "),
                        contract.name(),
                        assertion.source()
                    ),
                    format!(
                        "{} carries {} {} for {}, but {} carries {before}",
                        copy.describe(),
                        rule.key,
                        shown(&rule.key, payload),
                        rule.describe_tuple(payload),
                        earlier.describe()
                    ),
                    records,
                )
            });
        }
    }
    for &record in &run.applied {
        let Some(header) = detail_text(record, "idempotency_header") else {
            continue;
        };
        let key = body_at(record, &run.manifest.envelope.idempotency_key);
        if key == Some(header) {
            continue;
        }
        outcome.findings.add(|| {
            let event = body_event_id(record).unwrap_or("an event");
            run.finding(
                record.candidate.as_deref(),
                record.correlation_id.as_deref(),
                "the Idempotency-Key header of an ATS write, when sent, is the body's idempotency_key",
                format!(
                    "{event} was written with Idempotency-Key {header:?} but its body's idempotency_key is {}",
                    key.map_or_else(|| "absent".to_owned(), |k| format!("{k:?}"))
                ),
                run.attempts_of(event).iter().copied().chain([record]),
            )
        });
    }
    outcome
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{
        CANDIDATE, clean, manifest, manifest_edited, passes_on_clean,
    };

    #[test]
    fn the_vendors_keys_kept_pass() {
        passes_on_clean(check);
    }

    #[test]
    fn a_rewritten_key_is_caught_against_the_vendors_copy() {
        let manifest = manifest();
        let mut clean = clean();
        let mut body = clean.events[1].payload.clone();
        body["idempotency_key"] = json!("relay-7f3a");
        let record = clean.applied[1];
        clean.log.record_mut(record).detail["body"] = body;
        clean.log.record_mut(record).detail["idempotency_header"] = json!("relay-7f3a");
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
        assert_eq!(outcome.findings.total(), 1, "{:#?}", outcome.findings);
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.seen,
            "the body of evt_CAND_003_cl_2 applied at the ATS carries idempotency_key \"relay-7f3a\" \
             for (ats_candidate_id, verification.session_id) = (\"CAND_003_cl\", \"ses_CAND_003_cl_2\"), \
             but the vendor's copy of evt_CAND_003_cl_2 carries \"idk_CAND_003_cl_2\""
        );
        assert!(
            finding
                .expected
                .contains("assertion `idempotency_key is stable for same")
        );
        assert_eq!(finding.candidate.as_deref(), Some(CANDIDATE));
        assert_eq!(finding.exchanges.last().map(|e| e.seq), Some(record));
    }

    #[test]
    fn a_header_that_is_not_the_bodys_key_is_caught() {
        let manifest = manifest();
        let mut clean = clean();
        clean.log.record_mut(clean.applied[0]).detail["idempotency_header"] = json!("other");
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
        assert_eq!(outcome.findings.total(), 1);
        assert_eq!(
            outcome.findings.kept()[0].seen,
            "evt_CAND_003_cl_1 was written with Idempotency-Key \"other\" but its body's idempotency_key is \"idk_CAND_003_cl_1\""
        );
    }

    #[test]
    fn without_rules_or_headers_there_is_nothing_to_judge() {
        let manifest = manifest_edited(
            "      - \"idempotency_key is stable for same (ats_candidate_id, verification.session_id)\"\n",
            "",
        );
        let mut clean = clean();
        for seq in clean.applied {
            clean.log.record_mut(seq).detail["idempotency_header"] = Value::Null;
        }
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
        assert!(
            outcome
                .skipped
                .as_deref()
                .is_some_and(|r| r.starts_with("no contract has an `is stable for same")),
            "{:?}",
            outcome.skipped
        );
    }
}
