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

use super::fold::{Cite, Context, Fold, records};
use super::run::{Outcome, body, body_at, body_event_id, detail_text};
use crate::contract::assertion::render_value;
use crate::contract::path::FieldPath;
use crate::observe::Record;
use crate::run::plan::PlannedEvent;

/// The first copy seen of a tuple, as much as a finding needs of it.
#[derive(Clone)]
enum Earlier<'a> {
    /// The vendor's copy, from the plan (the event and its place in it).
    Vendor(&'a PlannedEvent, usize),
    /// A body the ATS received: rare (the vendor's copies come first), so boxed, and
    /// each of a large run's hundreds of thousands of tuples costs a pointer's room.
    Ats(Box<AtsCopy>),
}

/// A body the ATS received, first of its tuple.
#[derive(Clone)]
struct AtsCopy {
    seq: u64,
    event: Option<Box<str>>,
    rejected: bool,
    /// The rule's key as that body carried it.
    key: String,
}

/// A copy of an event: the vendor's (planned: the event, its place in the plan and
/// its payload as far as the plan holds it) or one the ATS received.
#[derive(Clone, Copy)]
enum Copy<'a, 'r> {
    Vendor(&'a PlannedEvent, usize, &'r Value),
    Ats(&'r Record),
}

impl<'a: 'r, 'r> Copy<'a, 'r> {
    fn payload(self) -> Option<&'r Value> {
        match self {
            Copy::Vendor(_, _, payload) => Some(payload),
            Copy::Ats(record) => body(record),
        }
    }

    fn candidate(self) -> Option<&'r str> {
        match self {
            Copy::Vendor(event, ..) => Some(&event.candidate),
            Copy::Ats(record) => record.candidate.as_deref(),
        }
    }

    fn correlation_id(self) -> Option<&'r str> {
        match self {
            Copy::Vendor(event, ..) => Some(&event.correlation_id),
            Copy::Ats(record) => record.correlation_id.as_deref(),
        }
    }

    fn event(self) -> Option<&'r str> {
        match self {
            Copy::Vendor(event, ..) => Some(&event.event_id),
            Copy::Ats(record) => body_event_id(record),
        }
    }

    fn rejected(self) -> bool {
        matches!(self, Copy::Ats(r) if r.kind == "ats.event_rejected")
    }

    fn seq(self) -> Option<u64> {
        match self {
            Copy::Vendor(..) => None,
            Copy::Ats(record) => Some(record.seq),
        }
    }
}

/// How a finding names a copy.
fn describe(vendor: bool, event: Option<&str>, rejected: bool) -> String {
    let event = event.unwrap_or("an event");
    if vendor {
        format!("the vendor's copy of {event}")
    } else if rejected {
        format!("the body of {event} refused by the ATS")
    } else {
        format!("the body of {event} applied at the ATS")
    }
}

/// The records behind a copy: its event's deliveries, and the ATS's record of it.
fn cites(event: Option<&str>, seq: Option<u64>) -> impl Iterator<Item = Cite> {
    event
        .map(|e| Cite::Attempts(e.to_owned()))
        .into_iter()
        .chain(records(seq))
}

fn shown(path: &FieldPath, payload: &Value) -> String {
    path.lookup(payload)
        .map_or_else(|| "absent".to_owned(), render_value)
}

/// `idempotency.key_stable`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    let contracts = &cx.manifest.contracts;
    let rules: Vec<usize> = contracts
        .iter()
        .map(|c| c.stability_rules().count())
        .collect();
    let mut fold = KeyStable {
        first: rules.iter().map(|n| vec![HashMap::new(); *n]).collect(),
        any_rule: rules.iter().any(|n| *n > 0),
        headers: false,
        copies: 0,
        outcome: Outcome::default(),
    };
    let plan = cx.plan.plan;
    for (place, event) in plan.events.iter().enumerate() {
        // A run's plan holds of each payload the fields the stability rules read.
        let payload = plan.payload_of(place, contracts);
        fold.copy(cx, Copy::Vendor(event, place, &payload));
    }
    Box::new(fold)
}

struct KeyStable<'a> {
    /// Per (contract, rule): tuple fingerprint → (key fingerprint, first copy).
    first: Vec<Vec<HashMap<u64, (u64, Earlier<'a>)>>>,
    any_rule: bool,
    headers: bool,
    copies: usize,
    outcome: Outcome,
}

impl<'a> KeyStable<'a> {
    /// Compares a copy's key with the first copy of the same tuple under every rule.
    fn copy(&mut self, cx: &Context<'_>, copy: Copy<'a, '_>) {
        self.copies += 1;
        self.outcome.judged(cx.plan.scenario_of(copy.candidate()));
        let Some(payload) = copy.payload() else {
            return;
        };
        let contracts = &cx.manifest.contracts;
        let name = match copy {
            Copy::Vendor(event, ..) => Some(event.contract.as_str()),
            Copy::Ats(_) => payload.get("type").and_then(Value::as_str),
        };
        let Some(ci) = name.and_then(|n| contracts.index_of(n)) else {
            return;
        };
        let contract = contracts.at(ci);
        for (ri, (assertion, rule)) in contract.stability_rules().enumerate() {
            let Some(fingerprint) = rule.fingerprint(payload) else {
                continue;
            };
            let Some(seen) = self.first.get_mut(ci).and_then(|r| r.get_mut(ri)) else {
                continue;
            };
            let earlier = match seen.entry(fingerprint.tuple) {
                Entry::Vacant(slot) => {
                    let earlier = match copy {
                        Copy::Vendor(event, place, _) => Earlier::Vendor(event, place),
                        Copy::Ats(record) => Earlier::Ats(Box::new(AtsCopy {
                            seq: record.seq,
                            event: copy.event().map(Into::into),
                            rejected: copy.rejected(),
                            key: shown(&rule.key, payload),
                        })),
                    };
                    slot.insert((fingerprint.key, earlier));
                    continue;
                }
                Entry::Occupied(slot) if slot.get().0 == fingerprint.key => continue,
                Entry::Occupied(slot) => &slot.into_mut().1,
            };
            let (before, before_described, before_cites): (String, String, Vec<Cite>) =
                match earlier {
                    Earlier::Vendor(event, place) => (
                        shown(&rule.key, &cx.plan.plan.payload_of(*place, contracts)),
                        describe(true, Some(&event.event_id), false),
                        cites(Some(&event.event_id), None).collect(),
                    ),
                    Earlier::Ats(ats) => (
                        ats.key.clone(),
                        describe(false, ats.event.as_deref(), ats.rejected),
                        cites(ats.event.as_deref(), Some(ats.seq)).collect(),
                    ),
                };
            self.outcome.findings.add(|| {
                let tuple: Vec<&str> = rule.tuple.iter().map(FieldPath::as_str).collect();
                cx.finding(
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
                        "{} carries {} {} for {}, but {before_described} carries {before}",
                        describe(matches!(copy, Copy::Vendor(..)), copy.event(), copy.rejected()),
                        rule.key,
                        shown(&rule.key, payload),
                        rule.describe_tuple(payload),
                    ),
                    before_cites
                        .into_iter()
                        .chain(cites(copy.event(), copy.seq())),
                )
            });
        }
    }
}

impl<'a> Fold for KeyStable<'a> {
    fn record(&mut self, cx: &Context<'_>, record: &Record) {
        if record.kind != "ats.event_applied" && record.kind != "ats.event_rejected" {
            return;
        }
        self.copy(cx, Copy::Ats(record));
        if record.kind != "ats.event_applied" {
            return;
        }
        let Some(header) = detail_text(record, "idempotency_header") else {
            return;
        };
        self.headers = true;
        let key = body_at(record, &cx.manifest.envelope.idempotency_key);
        if key == Some(header) {
            return;
        }
        self.outcome.findings.add(|| {
            let event = body_event_id(record);
            cx.finding(
                record.candidate.as_deref(),
                record.correlation_id.as_deref(),
                "the Idempotency-Key header of an ATS write, when sent, is the body's idempotency_key",
                format!(
                    "{} was written with Idempotency-Key {header:?} but its body's idempotency_key is {}",
                    event.unwrap_or("an event"),
                    key.map_or_else(|| "absent".to_owned(), |k| format!("{k:?}"))
                ),
                cites(event, Some(record.seq)),
            )
        });
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        if !self.any_rule && !self.headers {
            return Outcome::skip(
                "no contract has an `is stable for same (…)` assertion and no Idempotency-Key header reached the ATS",
            );
        }
        if self.copies == 0 {
            return Outcome::skip("no event was planned and none reached the ATS");
        }
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use crate::judge::fold::run_one;
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
        let mut body = serde_json::Value::clone(&clean.events[1].payload);
        body["idempotency_key"] = json!("relay-7f3a");
        let record = clean.applied[1];
        clean.log.record_mut(record).detail["body"] = body;
        clean.log.record_mut(record).detail["idempotency_header"] = json!("relay-7f3a");
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
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
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
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
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
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
