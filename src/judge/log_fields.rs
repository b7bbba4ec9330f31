//! `observability.log_fields`: for every event applied at the ATS, the integration
//! printed a JSON-object line that mentions it (a string value equal to its
//! `event_id` or `idempotency_key`, at any depth) and carries every field of
//! `observability.log_fields_required` (dotted = nested; present and not null).
//!
//! Each output line is parsed once; per mentioned event only the line closest to
//! complete is remembered, so memory follows the events, not the output's length.
//! The output is only in the log when the harness started the integration; a run
//! against `--sut-url` skips the check rather than failing it.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::run::{Outcome, Run, body_event_id, body_text, detail_text};
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
fn mentions<'w>(value: &Value, wanted: &HashSet<&'w str>, depth: usize, out: &mut Vec<&'w str>) {
    match value {
        Value::String(s) => {
            if let Some(w) = wanted.get(s.as_str()) {
                out.push(w);
            }
        }
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

/// The line that mentions an id and lacks the fewest required fields.
struct Best<'a> {
    line: &'a Record,
    missing: Vec<String>,
}

/// `observability.log_fields`.
pub(crate) fn check(run: &Run<'_>) -> Outcome {
    let required: &[String] = run
        .manifest
        .raw
        .observability
        .as_ref()
        .map_or(&[], |o| o.log_fields_required.as_slice());
    if required.is_empty() {
        return Outcome::skip(
            "the manifest requires no log fields (observability.log_fields_required)",
        );
    }
    if !run.output_visible {
        return Outcome::skip(
            "the harness did not start the integration, so what it printed is not in the log",
        );
    }
    if run.applied.is_empty() {
        return Outcome::skip("no event was applied at the ATS, so none had to be logged");
    }
    let wanted: HashSet<&str> = run
        .applied
        .iter()
        .flat_map(|r| [body_event_id(r), key_of(r)])
        .flatten()
        .collect();
    let mut best: HashMap<&str, Best<'_>> = HashMap::new();
    let mut json_lines = 0usize;
    let mut found = Vec::new();
    for &line in &run.output {
        let Some(Value::Object(object)) =
            detail_text(line, "line").and_then(|text| serde_json::from_str(text).ok())
        else {
            continue;
        };
        json_lines += 1;
        let object = Value::Object(object);
        found.clear();
        mentions(&object, &wanted, 0, &mut found);
        if found.is_empty() {
            continue;
        }
        let missing: Vec<String> = required
            .iter()
            .filter(|f| !carries(&object, f))
            .cloned()
            .collect();
        for id in found.drain(..) {
            let better = best.get(id).is_none_or(|b| missing.len() < b.missing.len());
            if better {
                best.insert(
                    id,
                    Best {
                        line,
                        missing: missing.clone(),
                    },
                );
            }
        }
    }
    let mut outcome = Outcome::default();
    let mut done: HashSet<&str> = HashSet::new();
    for &record in &run.applied {
        outcome.judged(run.scenario_of(record.candidate.as_deref()));
        let event = body_event_id(record);
        let key = key_of(record);
        if let Some(id) = event.or(key)
            && !done.insert(id)
        {
            continue;
        }
        let closest = [event, key]
            .into_iter()
            .flatten()
            .filter_map(|id| best.get(id))
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
                    "no JSON log line mentions {name} or its idempotency key (the integration printed {} line(s), {json_lines} of them JSON objects)",
                    run.output.len()
                ),
            };
            run.finding(
                record.candidate.as_deref(),
                record.correlation_id.as_deref(),
                format!(
                    "a JSON log line mentions {name} and carries {}",
                    required
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                seen,
                [record].into_iter().chain(closest.map(|b| b.line)),
            )
        });
    }
    outcome
}

/// The idempotency key of an ATS write.
fn key_of(record: &Record) -> Option<&str> {
    record
        .idempotency_key
        .as_deref()
        .or_else(|| body_text(record, "idempotency_key"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest, manifest_edited};

    #[test]
    fn a_complete_line_per_event_passes() {
        let manifest = manifest();
        let clean = clean();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
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
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        let outcome = check(&run);
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
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        assert_eq!(check(&run).findings.total(), 0);
    }

    #[test]
    fn invisible_output_and_no_required_fields_are_skips() {
        let manifest = manifest();
        let mut clean = clean();
        clean.log.record_mut(0).kind = "run.start".into();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        assert!(
            check(&run)
                .skipped
                .is_some_and(|r| r.contains("did not start the integration"))
        );
        let manifest = manifest_edited(
            "[\"event_id\", \"correlation_id\", \"ats_candidate_id\", \"received_at\", \"processed_at\", \"outcome\"]",
            "[]",
        );
        let clean = crate::judge::test_support::clean();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        assert!(
            check(&run)
                .skipped
                .is_some_and(|r| r.contains("requires no log fields"))
        );
    }
}
