//! A small hand-made run for the audit readers' unit tests: a hash-chained log with
//! fixed times (so renderings snapshot), and the plan that goes with it.
//!
//! Candidate `CAND_a_du` gets an exactly duplicated verification (applied once) and a
//! superseded event; `CAND_b_du` a forged, unsigned delivery the integration refused,
//! and an output line that leaks the candidate's name (for redaction tests).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::observe::{Actor, GENESIS, Record, record_hash};
use crate::run::plan::{Plan, PlannedCandidate, PlannedEvent, Scenario, Text};

/// The fixture's run id.
pub(crate) const RUN: &str = "run-fixture";
/// The duplicated candidate.
pub(crate) const A: &str = "CAND_a_du";
/// The forged-delivery candidate.
pub(crate) const B: &str = "CAND_b_du";
/// `B`'s name, which one output line leaks.
pub(crate) const B_NAME: &str = "Esther Wiegand";

struct Spec {
    actor: Actor,
    kind: &'static str,
    ids: [Option<&'static str>; 4],
    status: Option<u16>,
    latency_ms: Option<f64>,
    detail: Value,
}

fn spec(actor: Actor, kind: &'static str, ids: [Option<&'static str>; 4], detail: Value) -> Spec {
    Spec {
        actor,
        kind,
        ids,
        status: None,
        latency_ms: None,
        detail,
    }
}

fn answered(mut spec: Spec, status: u16, latency_ms: f64) -> Spec {
    spec.status = Some(status);
    spec.latency_ms = Some(latency_ms);
    spec
}

const A1: [Option<&str>; 4] = [Some(A), Some("cor_a"), Some("evt_a1"), Some("idk_a1")];
const A2: [Option<&str>; 4] = [Some(A), Some("cor_a"), Some("evt_a2"), Some("idk_a2")];
const B1: [Option<&str>; 4] = [Some(B), Some("cor_b"), Some("evt_b1"), Some("idk_b1")];
const NONE: [Option<&str>; 4] = [None; 4];

fn attempt(copy: u64, perturbation: &str, signed: bool) -> Value {
    json!({"attempt": 1, "contract": "identity.verification.completed", "copy": copy,
           "perturbation": perturbation, "signed": signed, "url_path": "/webhooks/vendor"})
}

fn line(value: Value) -> Value {
    json!({"line": value.to_string()})
}

/// The fixture's records, chained.
pub(crate) fn records() -> Vec<Record> {
    use Actor::*;
    let body = json!({"ats_candidate_id": A, "event_id": "evt_a1", "type": "identity.verification.completed",
                      "verification": {"result": "passed", "risk_tier": "high", "session_id": "ses_1"}});
    let specs = vec![
        spec(
            Harness,
            "run.start",
            NONE,
            json!({"seed": 1, "manifest": "manifests/release-gate.yaml"}),
        ),
        spec(
            Harness,
            "scenario.start",
            NONE,
            json!({"scenario": "duplicates"}),
        ),
        answered(
            spec(
                Sender,
                "webhook.attempt",
                A1,
                attempt(0, "exact_duplicate", true),
            ),
            200,
            6.0,
        ),
        answered(
            spec(
                Sender,
                "webhook.attempt",
                A1,
                attempt(1, "exact_duplicate", true),
            ),
            200,
            3.5,
        ),
        spec(
            Integration,
            "integration.stdout",
            NONE,
            line(
                json!({"ats_candidate_id": A, "correlation_id": "cor_a", "event_id": "evt_a1", "msg": "event", "outcome": "queued"}),
            ),
        ),
        answered(
            spec(
                Ats,
                "ats.request",
                [Some(A), None, None, None],
                json!({"method": "GET", "path": "/v1/candidates/CAND_a_du"}),
            ),
            200,
            0.4,
        ),
        answered(
            spec(
                Ats,
                "ats.request",
                [Some(A), None, None, Some("idk_a1")],
                json!({"method": "POST", "path": "/v1/candidates/CAND_a_du/events"}),
            ),
            201,
            1.2,
        ),
        spec(
            Ats,
            "ats.event_applied",
            A1,
            json!({"body": body, "contract": "identity.verification.completed", "revision": 2}),
        ),
        answered(
            spec(Sender, "webhook.attempt", B1, attempt(0, "unsigned", false)),
            401,
            2.0,
        ),
        spec(
            Integration,
            "integration.stdout",
            NONE,
            line(json!({"ats_candidate_id": B, "msg": "rejected", "name": B_NAME})),
        ),
        answered(
            spec(Sender, "webhook.attempt", A2, attempt(0, "none", true)),
            200,
            4.0,
        ),
        spec(
            Harness,
            "scenario.end",
            NONE,
            json!({"scenario": "duplicates"}),
        ),
        spec(Harness, "run.end", NONE, json!({"elapsed_ms": 900})),
    ];
    let mut prev = GENESIS.to_owned();
    specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let own = |k: usize| s.ids[k].map(str::to_owned);
            let mut record = Record {
                run_id: RUN.to_owned(),
                seq: i as u64,
                at: format!("2026-05-18T09:00:00.{:06}Z", i * 25_000),
                elapsed_ms: i as f64 * 25.0,
                actor: s.actor,
                kind: s.kind.to_owned(),
                candidate: own(0),
                correlation_id: own(1),
                event_id: own(2),
                idempotency_key: own(3),
                status: s.status,
                latency_ms: s.latency_ms,
                detail: s.detail,
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            record.hash = record_hash(&record);
            prev.clone_from(&record.hash);
            record
        })
        .collect()
}

/// Writes the fixture's log as `observation.jsonl` in `dir`.
pub(crate) fn write_log(dir: &Path) -> PathBuf {
    let path = dir.join("observation.jsonl");
    let text: String = records()
        .iter()
        .map(|r| serde_json::to_string(r).expect("a record serialises") + "\n")
        .collect();
    std::fs::write(&path, text).expect("fixture log written");
    path
}

fn event(
    candidate: &str,
    id: &str,
    perturbation: &str,
    forged: bool,
    should_land: bool,
) -> PlannedEvent {
    PlannedEvent {
        scenario: Scenario::Duplicates,
        candidate: candidate.into(),
        contract: "identity.verification.completed".into(),
        event_id: id.into(),
        idempotency_key: id.replace("evt", "idk").into(),
        correlation_id: if candidate == A { "cor_a" } else { "cor_b" }.into(),
        occurred_at: "2026-05-18T08:00:00Z".into(),
        sequence_index: 0,
        outcome: Some("passed".into()),
        perturbation: perturbation.into(),
        forged,
        in_scope: true,
        should_land,
        payload: json!({"verification": {"result": "passed", "risk_tier": "high"}}).into(),
    }
}

/// The fixture's plan.
pub(crate) fn plan() -> Plan {
    let candidate = |id: &str, cor: &str, pii: [&str; 2]| PlannedCandidate {
        scenario: Scenario::Duplicates,
        candidate: id.into(),
        source: Default::default(),
        correlation_id: cor.into(),
        in_scope: true,
        expected_sequence: std::sync::Arc::from(["identity.verification.completed:passed".into()]),
        pii: pii.iter().map(|s| Text::from(*s)).collect(),
    };
    Plan {
        seed: 1,
        candidates: vec![
            candidate(A, "cor_a", ["Ada Lovelace", "ada.lovelace@example.net"]),
            candidate(B, "cor_b", [B_NAME, "esther.wiegand@example.net"]),
        ],
        events: vec![
            event(A, "evt_a1", "exact_duplicate", false, true),
            event(A, "evt_a2", "none", false, false),
            event(B, "evt_b1", "unsigned", true, false),
        ],
        ack_sla_ms: 5,
        time_scale: 60.0,
        skipped: Vec::new(),
        policy: None,
        stable_fields: Default::default(),
    }
}

/// Writes the fixture's plan as `plan.json` in `dir`.
pub(crate) fn write_plan(dir: &Path) -> PathBuf {
    let path = dir.join("plan.json");
    std::fs::write(&path, serde_json::to_vec(&plan()).expect("plan serialises"))
        .expect("fixture plan written");
    path
}
