//! Writes a valid hash-chained observation log of N records shaped like a run's
//! (`benches/trace/run.sh` traces one candidate through it): per candidate, a signed
//! webhook attempt, the delivery summary, the integration's output lines, an ATS read,
//! an ATS write and the applied event. Deterministic from the candidate count.
//!
//! Usage: cargo run --release --example synth_log -- RECORDS OUT.jsonl

use std::path::PathBuf;

use serde_json::json;
use stagegate::observe::{Actor, Entry, ObservationLog};

/// Records written per candidate.
const PER_CANDIDATE: u64 = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .ok_or("usage: synth_log RECORDS OUT.jsonl")?
        .parse()?;
    let out = PathBuf::from(args.next().ok_or("usage: synth_log RECORDS OUT.jsonl")?);
    let log = ObservationLog::create(&out, "run-synthetic")?;
    let candidates = records.div_ceil(PER_CANDIDATE);
    let mut written = 0u64;
    let mut append = |actor: Actor, kind: &str, entry: Entry| {
        if written < records {
            log.append(actor, kind, entry);
            written += 1;
        }
    };
    for i in 0..candidates {
        let candidate = format!("CAND_{i:07}");
        let correlation = format!("cor_{:020x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let event = format!("evt_{:020x}", i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
        let key = format!("idk_{:024x}", i.wrapping_mul(0x1656_67b1_9e37_79f9));
        let ids = |status: Option<u16>, latency: Option<f64>, detail| Entry {
            candidate: Some(candidate.clone()),
            correlation_id: Some(correlation.clone()),
            event_id: Some(event.clone()),
            idempotency_key: Some(key.clone()),
            status,
            latency_ms: latency,
            detail,
        };
        let body = json!({"ats_candidate_id": candidate, "correlation_id": correlation, "event_id": event,
            "idempotency_key": key, "occurred_at": "2026-05-18T09:00:00Z", "type": "identity.verification.completed",
            "evidence_pack": {"url": format!("http://127.0.0.1:9002/v1/evidence-packs/ep_{i:020}")},
            "verification": {"result": "passed", "risk_tier": "low", "session_id": format!("ses_{i:020}")}});
        let line = json!({"ats_candidate_id": candidate, "contract": "identity.verification.completed",
            "correlation_id": correlation, "event_id": event, "idempotency_key": key, "msg": "event",
            "outcome": "queued", "received_at": "2026-05-18T09:00:00.000000Z", "ts": "2026-05-18T09:00:00.000000Z"});
        append(
            Actor::Sender,
            "webhook.attempt",
            ids(
                Some(200),
                Some(3.2),
                json!({"attempt": 1,
            "contract": "identity.verification.completed", "copy": 0, "perturbation": "none", "signed": true,
            "timestamp": 1_779_094_800, "url_path": "/webhooks/vendor", "webhook_id": format!("msg_{i:016x}")}),
            ),
        );
        append(
            Actor::Sender,
            "webhook.delivery",
            ids(
                Some(200),
                Some(3.4),
                json!({"acked": true, "attempts": 1,
            "contract": "identity.verification.completed", "perturbation": "none", "url_path": "/webhooks/vendor",
            "webhook_id": format!("msg_{i:016x}"), "webhook_ids": [format!("msg_{i:016x}")]}),
            ),
        );
        append(
            Actor::Integration,
            "integration.stdout",
            Entry::detail(json!({"line": line.to_string()})),
        );
        append(
            Actor::Ats,
            "ats.request",
            Entry {
                candidate: Some(candidate.clone()),
                status: Some(200),
                latency_ms: Some(0.2),
                ..Entry::detail(
                    json!({"authorized": true, "if_match": null, "method": "GET",
                "path": format!("/v1/candidates/{candidate}")}),
                )
            },
        );
        append(
            Actor::Ats,
            "ats.event_applied",
            ids(
                None,
                None,
                json!({"body": body,
            "contract": "identity.verification.completed", "idempotency_header": key, "revision": 2}),
            ),
        );
        append(
            Actor::Ats,
            "ats.request",
            Entry {
                candidate: Some(candidate.clone()),
                idempotency_key: Some(key.clone()),
                status: Some(201),
                latency_ms: Some(0.9),
                ..Entry::detail(
                    json!({"authorized": true, "if_match": "\"1\"", "method": "POST",
                "path": format!("/v1/candidates/{candidate}/events")}),
                )
            },
        );
        let done = json!({"ats_candidate_id": candidate, "event_id": event, "msg": "event", "outcome": "applied"});
        append(
            Actor::Integration,
            "integration.stdout",
            Entry::detail(json!({"line": done.to_string()})),
        );
        append(
            Actor::Harness,
            "scenario.progress",
            Entry::detail(json!({"candidates_done": i + 1})),
        );
    }
    log.flush()?;
    eprintln!(
        "wrote {written} records for {candidates} candidates to {}",
        out.display()
    );
    Ok(())
}
