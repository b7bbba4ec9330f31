//! Small hand-made plans and logs for the checks' unit tests.

use std::path::Path;

use serde_json::{Value, json};

use crate::manifest::Manifest;
use crate::observe::{Actor, GENESIS, Record};
use crate::run::plan::{Plan, PlannedCandidate, PlannedEvent, Scenario, Text};

/// The kinds of the records a finding cites, in its order.
pub(crate) fn kinds(exchanges: &[super::Exchange]) -> Vec<&str> {
    exchanges.iter().map(|e| e.kind.as_str()).collect()
}

/// The repository's release-gate manifest.
pub(crate) fn manifest() -> Manifest {
    manifest_from(include_str!("../../manifests/release-gate.yaml"))
}

/// The seed manifest with `from` replaced by `to` (the change must apply).
pub(crate) fn manifest_edited(from: &str, to: &str) -> Manifest {
    let seed = include_str!("../../manifests/release-gate.yaml");
    assert!(seed.contains(from), "the seed has {from:?}");
    manifest_from(&seed.replace(from, to))
}

fn manifest_from(text: &str) -> Manifest {
    Manifest::from_text(Path::new("manifests/release-gate.yaml"), text)
        .expect("the test manifest loads")
        .value
}

/// An observation log under construction: seq, times and hashes filled in.
#[derive(Debug, Default)]
pub(crate) struct Log {
    records: Vec<Record>,
}

impl Log {
    /// Appends a record that `fill` completes; returns its seq.
    pub(crate) fn push(&mut self, actor: Actor, kind: &str, fill: impl FnOnce(&mut Record)) -> u64 {
        let seq = self.records.len() as u64;
        let at = chrono::DateTime::parse_from_rfc3339("2026-05-18T10:00:00Z")
            .expect("valid time")
            .to_utc()
            + chrono::TimeDelta::milliseconds(seq as i64 * 10);
        let mut record = Record {
            run_id: "run-test".into(),
            seq,
            at: crate::observe::format_time(at),
            elapsed_ms: seq as f64 * 10.0,
            actor,
            kind: kind.to_owned(),
            candidate: None,
            correlation_id: None,
            event_id: None,
            idempotency_key: None,
            status: None,
            latency_ms: None,
            detail: Value::Null,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        fill(&mut record);
        self.records.push(record);
        seq
    }

    /// The records so far.
    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    /// A record to edit in place.
    pub(crate) fn record_mut(&mut self, seq: u64) -> &mut Record {
        &mut self.records[seq as usize]
    }

    /// `scenario.start` or `scenario.end`.
    pub(crate) fn scenario(&mut self, kind: &str, scenario: Scenario) -> u64 {
        self.push(Actor::Harness, kind, |r| {
            r.detail = json!({"scenario": scenario});
        })
    }

    /// The harness started the integration.
    pub(crate) fn ready(&mut self) -> u64 {
        self.push(Actor::Harness, "integration.ready", |r| {
            r.detail = json!({"url": "http://127.0.0.1:9", "command": "relay"});
        })
    }

    /// A `webhook.attempt` of a planned event.
    pub(crate) fn attempt(
        &mut self,
        event: &PlannedEvent,
        copy: u32,
        status: Option<u16>,
        latency_ms: f64,
    ) -> u64 {
        self.push(Actor::Sender, "webhook.attempt", |r| {
            r.candidate = Some(event.candidate.to_string());
            r.correlation_id = Some(event.correlation_id.to_string());
            r.event_id = Some(event.event_id.to_string());
            r.idempotency_key = Some(event.idempotency_key.to_string());
            r.status = status;
            r.latency_ms = Some(latency_ms);
            let mut detail = json!({
                "webhook_id": format!("msg_{}", event.event_id),
                "copy": copy,
                "attempt": 1,
                "url_path": "/webhooks/vendor",
                "perturbation": event.perturbation,
                "signed": event.perturbation != "unsigned",
                "timestamp": 1_779_098_400,
                "contract": event.contract,
            });
            if status.is_none() {
                detail["error"] = json!("no answer within the 2000 ms ack timeout");
            }
            r.detail = detail;
        })
    }

    /// An ATS request record.
    pub(crate) fn request(&mut self, method: &str, path: &str, status: u16) -> u64 {
        let candidate = path
            .strip_prefix("/v1/candidates/")
            .and_then(|rest| rest.split('/').next())
            .map(str::to_owned);
        self.push(Actor::Ats, "ats.request", |r| {
            r.candidate = candidate;
            r.status = Some(status);
            r.latency_ms = Some(1.0);
            r.detail =
                json!({"method": method, "path": path, "if_match": null, "authorized": true});
        })
    }

    /// An event written to `candidate` and applied, with its key as the header.
    pub(crate) fn applied(&mut self, candidate: &str, body: &Value) -> u64 {
        let header = body.get("idempotency_key").cloned().unwrap_or(Value::Null);
        self.request("POST", &format!("/v1/candidates/{candidate}/events"), 201);
        let revision = self.records.len();
        self.push(Actor::Ats, "ats.event_applied", |r| {
            fill_write(r, candidate, body);
            r.detail = json!({
                "contract": body.get("type"),
                "revision": revision,
                "idempotency_header": header,
                "body": body,
            });
        })
    }

    /// An event written to `candidate` and refused as a mapping error.
    pub(crate) fn rejected(&mut self, candidate: &str, body: &Value, violations: Value) -> u64 {
        self.request("POST", &format!("/v1/candidates/{candidate}/events"), 422);
        self.push(Actor::Ats, "ats.event_rejected", |r| {
            fill_write(r, candidate, body);
            r.detail =
                json!({"contract": body.get("type"), "violations": violations, "body": body});
        })
    }

    /// A line the integration printed.
    pub(crate) fn line(&mut self, stream: &str, line: &str) -> u64 {
        self.push(Actor::Integration, &format!("integration.{stream}"), |r| {
            r.detail = json!({ "line": line });
        })
    }

    /// A `fault.start` mark of a kill-switch scenario.
    pub(crate) fn fault_start(
        &mut self,
        scenario: Scenario,
        phase: &str,
        expect_trip: bool,
    ) -> u64 {
        self.push(Actor::Harness, crate::run::plan::marks::FAULT_START, |r| {
            r.detail = json!({
                "scenario": scenario,
                "phase": phase,
                "expect_trip": expect_trip,
                "faults": [{"fault": {"kind": "outage"}, "from_ms": 0}],
            });
        })
    }

    /// A `fault.end` mark.
    pub(crate) fn fault_end(&mut self, scenario: Scenario, phase: &str) -> u64 {
        self.push(Actor::Harness, crate::run::plan::marks::FAULT_END, |r| {
            r.detail = json!({"scenario": scenario, "phase": phase});
        })
    }

    /// The harness SIGKILLed the integration.
    pub(crate) fn killed(&mut self, scenario: Scenario) -> u64 {
        self.push(
            Actor::Harness,
            crate::run::plan::marks::INTEGRATION_KILLED,
            |r| {
                r.detail = json!({"scenario": scenario});
            },
        )
    }

    /// A kill-switch notification the sink accepted (`state`: `tripped` or `reset`).
    pub(crate) fn notify(&mut self, channel: &str, state: &str) -> u64 {
        self.push(Actor::Notify, "notify.message", |r| {
            r.detail = json!({
                "channel": channel,
                "text": format!("ATS writes {state}"),
                "kill_switch": "disable-ats-writeback",
                "state": state,
                "received_at": "2026-05-18T10:00:00Z",
            });
        })
    }

    /// The mock ATS's note of a fault it injected on a request (`reset`, `timeout`, …).
    pub(crate) fn ats_fault(&mut self, fault: &str, path: &str) -> u64 {
        self.push(Actor::Ats, "ats.fault", |r| {
            r.detail = json!({"fault": fault, "path": path, "detail": {}});
        })
    }

    /// The relay's JSON log line for an applied event.
    pub(crate) fn event_line(&mut self, body: &Value) -> u64 {
        let line = json!({
            "ts": "2026-05-18T10:00:00Z",
            "msg": "event",
            "event_id": body["event_id"],
            "correlation_id": body["correlation_id"],
            "ats_candidate_id": body["ats_candidate_id"],
            "received_at": "2026-05-18T10:00:00Z",
            "processed_at": "2026-05-18T10:00:01Z",
            "outcome": "applied",
        });
        self.line("stdout", &line.to_string())
    }
}

fn fill_write(r: &mut Record, candidate: &str, body: &Value) {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    r.candidate = Some(candidate.to_owned());
    r.correlation_id = text("correlation_id");
    r.event_id = text("event_id");
    r.idempotency_key = text("idempotency_key");
}

/// A plan under construction.
#[derive(Debug)]
pub(crate) struct PlanBuilder {
    pub(crate) plan: Plan,
}

impl Default for PlanBuilder {
    fn default() -> Self {
        PlanBuilder {
            plan: Plan {
                seed: 7,
                candidates: Vec::new(),
                events: Vec::new(),
                ack_sla_ms: 1000,
                time_scale: 60.0,
                skipped: Vec::new(),
                policy: None,
                stable_fields: Default::default(),
            },
        }
    }
}

impl PlanBuilder {
    /// Adds a candidate (`Zoë Ğürsoy`, `zoe.gursoy@example.test` unless changed).
    pub(crate) fn candidate(
        &mut self,
        scenario: Scenario,
        id: &str,
        in_scope: bool,
        expected: &[&str],
    ) -> &mut PlannedCandidate {
        self.plan.candidates.push(PlannedCandidate {
            scenario,
            candidate: id.into(),
            source: Default::default(),
            correlation_id: format!("cor_{id}").into(),
            in_scope,
            expected_sequence: expected.iter().map(|s| Text::from(*s)).collect(),
            pii: vec!["Zoë Ğürsoy".into(), "zoe.gursoy@example.test".into()],
        });
        self.plan.candidates.last_mut().expect("just pushed")
    }

    /// Adds the `n`th `identity.verification.completed` event of a candidate (a new
    /// session each), occurring `n` minutes after 09:00.
    pub(crate) fn event(&mut self, candidate: &str, n: usize, outcome: &str) -> PlannedEvent {
        let planned = self
            .plan
            .candidates
            .iter()
            .find(|c| c.candidate == candidate)
            .expect("add the candidate first");
        let event_id = format!("evt_{candidate}_{n}");
        let key = format!("idk_{candidate}_{n}");
        let payload = json!({
            "type": "identity.verification.completed",
            "event_id": event_id,
            "idempotency_key": key,
            "occurred_at": format!("2026-05-18T09:{n:02}:00Z"),
            "correlation_id": planned.correlation_id,
            "ats_candidate_id": candidate,
            "verification": {"session_id": format!("ses_{candidate}_{n}"), "result": outcome, "risk_tier": "low"},
            "evidence_pack": {"url": "https://vendor.example/v1/evidence-packs/ep_1"}
        });
        let event = PlannedEvent {
            scenario: planned.scenario,
            candidate: candidate.into(),
            contract: "identity.verification.completed".into(),
            event_id: event_id.into(),
            idempotency_key: key.into(),
            correlation_id: planned.correlation_id.clone(),
            occurred_at: format!("2026-05-18T09:{n:02}:00.000000Z").into(),
            sequence_index: n as u32,
            outcome: Some(outcome.into()),
            perturbation: "none".into(),
            forged: false,
            in_scope: planned.in_scope,
            should_land: planned.in_scope,
            payload: payload.into(),
        };
        self.plan.events.push(event.clone());
        event
    }
}

/// A clean run judged correct by every check: one in-scope candidate whose retake
/// (failed, then passed) is delivered, applied once each, in order, and logged.
pub(crate) struct Clean {
    /// The plan.
    pub(crate) plan: Plan,
    /// The log.
    pub(crate) log: Log,
    /// The two events, in order.
    pub(crate) events: [PlannedEvent; 2],
    /// The seq of each event's `ats.event_applied`.
    pub(crate) applied: [u64; 2],
}

/// The candidate of [`clean`].
pub(crate) const CANDIDATE: &str = "CAND_003_cl";

/// See [`Clean`].
pub(crate) fn clean() -> Clean {
    let mut plan = PlanBuilder::default();
    plan.candidate(
        Scenario::Clean,
        CANDIDATE,
        true,
        &[
            "identity.verification.completed:failed",
            "identity.verification.completed:passed",
        ],
    );
    let first = plan.event(CANDIDATE, 1, "failed");
    let second = plan.event(CANDIDATE, 2, "passed");
    let mut log = Log::default();
    log.ready();
    log.scenario("scenario.start", Scenario::Clean);
    let mut applied = [0; 2];
    for (i, event) in [&first, &second].into_iter().enumerate() {
        log.attempt(event, 0, Some(200), 12.0);
        applied[i] = log.applied(CANDIDATE, &event.payload);
        log.event_line(&event.payload);
    }
    log.scenario("scenario.end", Scenario::Clean);
    Clean {
        plan: plan.plan,
        log,
        events: [first, second],
        applied,
    }
}

/// Runs `check` over the correct hand-made run of [`clean`]: it must judge something
/// and find nothing.
pub(crate) fn passes_on_clean(check: super::fold::MakeFold) {
    let manifest = manifest();
    let clean = clean();
    let outcome = super::fold::run_one(check, &manifest, &clean.plan, clean.log.records());
    assert!(outcome.skipped.is_none(), "skipped: {:?}", outcome.skipped);
    assert_eq!(
        outcome.findings.total(),
        0,
        "{:#?}",
        outcome.findings.kept()
    );
}
