//! `observability.log_fields`: for every event applied at the ATS, the integration
//! printed a JSON-object line that mentions it (a string value equal to its
//! `event_id` or `idempotency_key`, at any depth) and carries every field of
//! `observability.log_fields_required` (dotted = nested; present and not null).
//!
//! Each output line is parsed once; per mentioned event only the line closest to
//! complete is remembered, so memory follows the events, not the output's length.
//! The output is only in the log when the harness started the integration; a run
//! against `--sut-url` skips the check rather than failing it.

use bit_set::BitSet;
use serde_json::Value;

use super::fold::{ByNumber, Context, Fold, Ids, Keeper, Kept, PlanIndex, records, skipped};
use super::run::{Outcome, body_event_id, detail_text, key_of};
use crate::observe::Record;

/// How deep a log line is searched for the event's id.
const MAX_DEPTH: usize = 8;

/// Whether `field` (dotted) is present and not null in `line`: under that very key
/// (`"data.object.id": …`), or nested (`{"data": {"object": {"id": …}}}`).
fn carries(line: &Value, field: &str) -> bool {
    if line.get(field).is_some_and(|v| !v.is_null()) {
        return true;
    }
    let mut node = line;
    for segment in field.split('.') {
        match node.get(segment) {
            Some(next) => node = next,
            None => return false,
        }
    }
    !node.is_null()
}

/// Every string value of `value` that is one of `wanted`, up to [`MAX_DEPTH`].
fn mentions(value: &Value, wanted: &dyn Fn(&str) -> bool, depth: usize, out: &mut Vec<String>) {
    match value {
        Value::String(s) if wanted(s) => out.push(s.clone()),
        Value::Array(items) if depth < MAX_DEPTH => {
            for item in items {
                mentions(item, wanted, depth + 1, out);
            }
        }
        Value::Object(map) if depth < MAX_DEPTH => {
            for item in map.values() {
                mentions(item, wanted, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// The line that mentions an id and lacks the fewest required fields (borrowed from
/// the manifest's list).
struct Best<'a> {
    seq: u64,
    missing: Box<[&'a str]>,
}

/// The first application of an event (or key), which must be logged: its id and key
/// numbered ([`Ids`]), whom it is about kept ([`Keeper`]).
struct Applied {
    seq: u64,
    event: Option<u32>,
    key: Option<u32>,
    candidate: Option<Kept>,
    correlation_id: Option<Kept>,
}

/// `observability.log_fields`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    let required: &'a [String] = cx
        .manifest
        .raw
        .observability
        .as_ref()
        .map_or(&[], |o| o.log_fields_required.as_slice());
    if required.is_empty() {
        return skipped("the manifest requires no log fields (observability.log_fields_required)");
    }
    Box::new(LogFields {
        plan: cx.plan,
        required,
        ids: Ids::default(),
        keeper: Keeper::default(),
        applied_ids: BitSet::new(),
        best: ByNumber::ids_and_keys(cx.plan),
        applied: Vec::new(),
        json_lines: 0,
    })
}

struct LogFields<'a> {
    plan: &'a PlanIndex<'a>,
    required: &'a [String],
    /// The ids and keys a line may mention, numbered: the planned events' and those
    /// applied at the ATS that the plan does not hold. The fold keys its state by
    /// these numbers rather than by the texts, a 100,000-candidate run's 400,000 of them.
    ids: Ids,
    keeper: Keeper,
    /// Which numbered ids and keys were applied at the ATS, one bit each.
    applied_ids: BitSet,
    /// Per numbered id or key, the line closest to complete that mentions it.
    best: ByNumber<Best<'a>>,
    applied: Vec<Applied>,
    json_lines: usize,
}

impl Fold for LogFields<'_> {
    fn record(&mut self, _: &Context<'_>, record: &Record) {
        match record.kind.as_str() {
            "ats.event_applied" => {
                let (event, key) = (body_event_id(record), key_of(record));
                // Each event is judged once, at its first application.
                let first = event.or(key).is_none_or(|id| {
                    !self
                        .number(id)
                        .is_some_and(|n| self.applied_ids.contains(n as usize))
                });
                let plan = self.plan;
                let event_number = event.map(|id| self.ids.number_or_new(plan, id));
                let key_number = key.map(|id| self.ids.number_or_new(plan, id));
                for n in [event_number, key_number].into_iter().flatten() {
                    self.applied_ids.insert(n as usize);
                }
                if first {
                    let (candidate, correlation_id) = self.keeper.whom(plan, event, record);
                    self.applied.push(Applied {
                        seq: record.seq,
                        event: event_number,
                        key: key_number,
                        candidate,
                        correlation_id,
                    });
                }
            }
            "integration.stdout" | "integration.stderr" => self.line(record),
            _ => {}
        }
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        if !cx.seen.output_visible {
            return Outcome::skip(
                "the harness did not start the integration, so what it printed is not in the log",
            );
        }
        if cx.seen.applied == 0 {
            return Outcome::skip("no event was applied at the ATS, so none had to be logged");
        }
        let mut outcome = Outcome::default();
        let required = self.required;
        let (plan, keeper) = (self.plan, &self.keeper);
        for applied in &self.applied {
            let candidate = keeper.text(plan, applied.candidate);
            outcome.judged(cx.plan.scenario_of(candidate));
            let event = applied.event.map(|n| self.ids.text(plan, n));
            let closest = [applied.event, applied.key]
                .into_iter()
                .flatten()
                .filter_map(|n| self.best.get(n))
                .min_by_key(|b| b.missing.len());
            if closest.is_some_and(|b| b.missing.is_empty()) {
                continue;
            }
            outcome.findings.add(|| {
                let name = event.unwrap_or("an event without an event_id");
                let seen = match closest {
                    Some(b) => format!(
                        "the log line that mentions {name} lacks {}",
                        b.missing
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => format!(
                        "no JSON log line mentions {name} or its idempotency key (the integration printed {} line(s), {} of them JSON objects)",
                        cx.seen.output_lines, self.json_lines
                    ),
                };
                cx.finding(
                    candidate,
                    keeper.text(plan, applied.correlation_id),
                    format!(
                        "a JSON log line mentions {name} and carries {}",
                        required
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    seen,
                    records([applied.seq].into_iter().chain(closest.map(|b| b.seq))),
                )
            });
        }
        outcome
    }
}

impl<'a> LogFields<'a> {
    /// The number of a planned id or key, or of an applied one the plan lacks.
    fn number(&self, id: &str) -> Option<u32> {
        self.ids.number(self.plan, id)
    }

    /// Notes, for every id a JSON line mentions, the line that lacks the fewest fields.
    fn line(&mut self, line: &Record) {
        let Some(Value::Object(object)) =
            detail_text(line, "line").and_then(|text| serde_json::from_str(text).ok())
        else {
            return;
        };
        self.json_lines += 1;
        let object = Value::Object(object);
        let mut found = Vec::new();
        let wanted = |s: &str| self.number(s).is_some();
        mentions(&object, &wanted, 0, &mut found);
        if found.is_empty() {
            return;
        }
        let required = self.required;
        let missing: Vec<&str> = required
            .iter()
            .filter(|f| !carries(&object, f))
            .map(String::as_str)
            .collect();
        for id in found {
            let Some(n) = self.number(&id) else { continue };
            let better = self
                .best
                .get(n)
                .is_none_or(|b| missing.len() < b.missing.len());
            if better {
                self.best.insert(
                    n,
                    Best {
                        seq: line.seq,
                        missing: missing.as_slice().into(),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::judge::fold::run_one;
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest, manifest_edited};

    #[test]
    fn a_complete_line_per_event_passes() {
        let manifest = manifest();
        let clean = clean();
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert!(outcome.skipped.is_none(), "{:?}", outcome.skipped);
        assert_eq!(outcome.findings.total(), 0, "{:#?}", outcome.findings);
    }

    #[test]
    fn incomplete_and_missing_lines_are_findings() {
        let manifest = manifest();
        let mut clean = clean();
        // The first event's line loses two fields; the second's becomes plain text.
        let first = clean.applied[0] + 1;
        let mut line: Value = serde_json::from_str(
            clean.log.records()[first as usize].detail["line"]
                .as_str()
                .expect("a line"),
        )
        .expect("JSON");
        line["outcome"] = Value::Null;
        line.as_object_mut().map(|o| o.remove("received_at"));
        clean.log.record_mut(first).detail["line"] = json!(line.to_string());
        clean.log.record_mut(clean.applied[1] + 1).detail["line"] =
            json!("applied evt_CAND_003_cl_2 for CAND_003_cl");
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 2);
        let [partial, none] = outcome.findings.kept() else {
            panic!("two findings")
        };
        assert_eq!(
            partial.seen,
            "the log line that mentions evt_CAND_003_cl_1 lacks `received_at`, `outcome`"
        );
        assert!(partial.expected.contains("`event_id`, `correlation_id`"));
        assert_eq!(partial.candidate.as_deref(), Some(CANDIDATE));
        assert_eq!(
            partial.exchanges.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [clean.applied[0], first]
        );
        assert_eq!(
            none.seen,
            "no JSON log line mentions evt_CAND_003_cl_2 or its idempotency key \
             (the integration printed 2 line(s), 1 of them JSON objects)"
        );
    }

    #[test]
    fn nested_fields_and_mentions_by_key_count() {
        let manifest = manifest_edited(
            "[\"event_id\", \"correlation_id\", \"ats_candidate_id\", \"received_at\", \"processed_at\", \"outcome\"]",
            "[\"trace.correlation_id\"]",
        );
        let mut clean = clean();
        for (i, seq) in clean.applied.into_iter().enumerate() {
            let line = json!({"event": {"key": clean.events[i].idempotency_key}, "trace": {"correlation_id": "c"}});
            clean.log.record_mut(seq + 1).detail["line"] = json!(line.to_string());
        }
        let run = (&manifest, &clean.plan, clean.log.records());
        assert_eq!(run_one(check, run.0, run.1, run.2).findings.total(), 0);
    }

    #[test]
    fn invisible_output_and_no_required_fields_are_skips() {
        let manifest = manifest();
        let mut clean = clean();
        clean.log.record_mut(0).kind = "run.start".into();
        let run = (&manifest, &clean.plan, clean.log.records());
        assert!(
            run_one(check, run.0, run.1, run.2)
                .skipped
                .is_some_and(|r| r.contains("did not start the integration"))
        );
        let manifest = manifest_edited(
            "[\"event_id\", \"correlation_id\", \"ats_candidate_id\", \"received_at\", \"processed_at\", \"outcome\"]",
            "[]",
        );
        let clean = crate::judge::test_support::clean();
        let run = (&manifest, &clean.plan, clean.log.records());
        assert!(
            run_one(check, run.0, run.1, run.2)
                .skipped
                .is_some_and(|r| r.contains("requires no log fields"))
        );
    }
}
