//! One-line summaries of observation records, for the exchanges behind a finding.
//!
//! A finding shows the story that led to it (habit 9 of STYLE.md), so every record
//! kind the log holds reads as one line a person can follow: the HTTP call and its
//! answer, the webhook copy and how long the integration took, what the ATS did.

use serde_json::Value;

use super::Exchange;
use super::run::{body_event_id, detail_text, scenario_in};
use crate::observe::Record;

/// The longest line of integration output a summary quotes.
const QUOTED_CHARS: usize = 120;

impl Exchange {
    /// The record summed up in one line.
    pub fn from_record(record: &Record) -> Exchange {
        Exchange {
            seq: record.seq,
            elapsed_ms: record.elapsed_ms,
            actor: record.actor,
            kind: record.kind.clone(),
            status: record.status,
            summary: summary(record),
        }
    }
}

/// `→ 201 in 12 ms`, `→ no answer`.
fn answer(record: &Record) -> String {
    let status = record
        .status
        .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
    match record.latency_ms {
        Some(ms) => format!("→ {status} in {} ms", ms.round()),
        None => format!("→ {status}"),
    }
}

fn text<'r>(value: &'r Value, key: &str) -> Option<&'r str> {
    value.get(key).and_then(Value::as_str)
}

fn summary(record: &Record) -> String {
    let candidate = record.candidate.as_deref().unwrap_or("?");
    let event = body_event_id(record).unwrap_or("an event");
    let contract = detail_text(record, "contract").unwrap_or("event");
    let detail = &record.detail;
    match record.kind.as_str() {
        "ats.request" | "vendor.request" | "notify.request" => format!(
            "{} {} {}",
            detail_text(record, "method").unwrap_or("?"),
            detail_text(record, "path").unwrap_or("?"),
            answer(record)
        ),
        "ats.event_applied" => format!(
            "ATS applied {contract} {event} to {candidate} (revision {})",
            detail.get("revision").and_then(Value::as_u64).unwrap_or(0)
        ),
        "ats.event_rejected" => {
            let violations = detail.get("violations").and_then(Value::as_array);
            let first = violations
                .and_then(|v| v.first())
                .and_then(|v| text(v, "message"))
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!(
                "ATS rejected {contract} {event} for {candidate} → 422, {} violation(s){first}",
                violations.map_or(0, Vec::len)
            )
        }
        "ats.event_conflict" => format!(
            "ATS refused {contract} {event} for {candidate}: If-Match {} but revision {} → 409",
            detail.get("if_match").map_or(Value::Null, Clone::clone),
            detail.get("revision").map_or(Value::Null, Clone::clone)
        ),
        "ats.access_granted" => format!(
            "ATS granted {} to {candidate}",
            detail
                .get("grant")
                .and_then(|g| text(g, "resource"))
                .unwrap_or("access")
        ),
        "ats.exception_created" => format!(
            "ATS exception for {candidate}: {}",
            detail
                .get("item")
                .and_then(|i| text(i, "reason"))
                .unwrap_or("?")
        ),
        "webhook.attempt" => {
            let copy = detail.get("copy").and_then(Value::as_u64).unwrap_or(0);
            let attempt = detail.get("attempt").and_then(Value::as_u64).unwrap_or(1);
            let id = record
                .event_id
                .as_deref()
                .or_else(|| detail_text(record, "webhook_id"))
                .unwrap_or("?");
            let perturbation = detail_text(record, "perturbation")
                .filter(|p| *p != "none")
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            let error = detail_text(record, "error")
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!(
                "webhook {id}{perturbation} copy {copy} attempt {attempt} {}{error}",
                answer(record)
            )
        }
        "webhook.delivery" => format!(
            "delivery of {}: {} attempt(s), {}",
            record.event_id.as_deref().unwrap_or("?"),
            detail.get("attempts").and_then(Value::as_u64).unwrap_or(0),
            if detail.get("acked").and_then(Value::as_bool) == Some(true) {
                "acknowledged"
            } else {
                "not acknowledged"
            }
        ),
        "integration.stdout" | "integration.stderr" => {
            let stream = record.kind.trim_start_matches("integration.");
            format!(
                "{stream}: {}",
                quote(detail_text(record, "line").unwrap_or(""))
            )
        }
        "notify.message" => format!(
            "notify {}: {}",
            detail_text(record, "channel").unwrap_or("?"),
            detail_text(record, "state").unwrap_or("?")
        ),
        "scenario.start" | "scenario.end" => format!(
            "scenario {} {}",
            scenario_in(record).map_or("?", |s| s.as_str()),
            if record.kind == "scenario.start" {
                "started".to_owned()
            } else {
                format!(
                    "ended ({} of {} landed)",
                    detail.get("landed").and_then(Value::as_u64).unwrap_or(0),
                    detail
                        .get("should_land")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                )
            }
        ),
        "integration.ready" => format!(
            "integration ready at {}",
            detail_text(record, "url").unwrap_or("?")
        ),
        "ats.fault" | "vendor.fault" => format!(
            "injected {} on {}",
            detail_text(record, "fault").unwrap_or("fault"),
            detail_text(record, "path").unwrap_or("?")
        ),
        "fault.start" | "fault.end" => format!(
            "{} {} window {}",
            scenario_in(record).map_or("?", |s| s.as_str()),
            detail_text(record, "phase").unwrap_or("fault"),
            if record.kind == "fault.start" {
                "opens"
            } else {
                "closes (the ATS recovers)"
            }
        ),
        "integration.killed" => "the harness SIGKILLs the integration".to_owned(),
        other => other.to_owned(),
    }
}

/// A line cut to [`QUOTED_CHARS`] characters.
pub(crate) fn quote(line: &str) -> String {
    match line.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::Log;
    use crate::observe::Actor;

    #[test]
    fn records_read_as_one_line() {
        let mut log = Log::default();
        let request = log.push(Actor::Ats, "ats.request", |r| {
            r.candidate = Some("CAND_001_cl".into());
            r.status = Some(201);
            r.latency_ms = Some(3.4);
            r.detail = json!({"method": "POST", "path": "/v1/candidates/CAND_001_cl/events"});
        });
        let attempt = log.push(Actor::Sender, "webhook.attempt", |r| {
            r.event_id = Some("evt_1".into());
            r.status = Some(200);
            r.latency_ms = Some(12.2);
            r.detail = json!({"copy": 2, "attempt": 1, "perturbation": "exact_duplicate"});
        });
        let timeout = log.push(Actor::Sender, "webhook.attempt", |r| {
            r.event_id = Some("evt_1".into());
            r.latency_ms = Some(2000.0);
            r.detail = json!({"copy": 0, "attempt": 3, "perturbation": "none", "error": "no answer within the 2000 ms ack timeout"});
        });
        let line = log.push(Actor::Integration, "integration.stdout", |r| {
            r.detail = json!({"line": "x".repeat(200)});
        });
        // (record, summary, why)
        let rows = [
            (
                request,
                "POST /v1/candidates/CAND_001_cl/events → 201 in 3 ms",
                "an HTTP exchange",
            ),
            (
                attempt,
                "webhook evt_1 (exact_duplicate) copy 2 attempt 1 → 200 in 12 ms",
                "a webhook copy",
            ),
            (
                timeout,
                "webhook evt_1 copy 0 attempt 3 → no answer in 2000 ms: no answer within the 2000 ms ack timeout",
                "a timed-out attempt",
            ),
        ];
        let records = log.records();
        for (seq, expected, why) in rows {
            let exchange = Exchange::from_record(&records[seq as usize]);
            assert_eq!(exchange.summary, expected, "{why}");
            assert_eq!(exchange.seq, seq, "{why}");
        }
        let quoted = Exchange::from_record(&records[line as usize]).summary;
        assert!(quoted.starts_with("stdout: xxx"), "{quoted}");
        assert_eq!(
            quoted.chars().count(),
            "stdout: ".len() + 120 + 1,
            "cut with an ellipsis"
        );
    }
}
