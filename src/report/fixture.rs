//! A hand-made report the renderers are snapshot-tested on: every status, an
//! override, findings with and without a scenario, and more findings than are kept.

use super::*;
use crate::judge::{Exchange, Finding};
use crate::manifest::model::Severity;
use crate::observe::Actor;
use crate::run::drive::Sessions;

fn check(id: &str, status: Status, scenarios: &[Scenario]) -> CheckResult {
    CheckResult {
        id: id.to_owned(),
        passes_when: crate::catalog::check_info(id)
            .map_or("", |c| c.passes_when)
            .to_owned(),
        status,
        severity: Severity::BlockRelease,
        overridden: false,
        required: false,
        reason: None,
        scenarios: scenarios.to_vec(),
        findings_total: 0,
        findings: Vec::new(),
    }
}

fn exchange(
    seq: u64,
    elapsed_ms: f64,
    actor: Actor,
    kind: &str,
    status: Option<u16>,
    summary: &str,
) -> Exchange {
    Exchange {
        seq,
        elapsed_ms,
        actor,
        kind: kind.to_owned(),
        status,
        summary: summary.to_owned(),
    }
}

/// A blocked run: a duplicate write, an overridden warning and a skipped check.
pub(crate) fn blocked() -> RunReport {
    let all = Scenario::ALL;
    let mut exactly_once = check("idempotency.exactly_once", Status::Fail, &all);
    exactly_once.findings = vec![Finding {
        scenario: Some(Scenario::Duplicates),
        candidate: Some("CAND_canary_001-dup".into()),
        source_candidate: None,
        correlation_id: Some("corr_5f1c0e2a".into()),
        expected: "idempotency key `idv:CAND_canary_001-dup:ses_81aa` applied at the ATS once"
            .into(),
        seen: "applied 2 times (revisions 1 and 2)".into(),
        exchanges: vec![
            exchange(
                41,
                120.5,
                Actor::Sender,
                "webhook.attempt",
                Some(200),
                "webhook evt_0007 copy 0 → 200 in 3 ms",
            ),
            exchange(
                44,
                124.0,
                Actor::Ats,
                "ats.event_applied",
                Some(201),
                "applied identity.verification.completed (revision 1)",
            ),
            exchange(
                47,
                131.2,
                Actor::Sender,
                "webhook.attempt",
                Some(200),
                "webhook evt_0007 copy 1 → 200 in 2 ms",
            ),
            exchange(
                52,
                140.9,
                Actor::Ats,
                "ats.event_applied",
                Some(201),
                "applied identity.verification.completed (revision 2)",
            ),
        ],
    }];
    exactly_once.findings_total = 3;
    let mut ack = check("delivery.ack_sla", Status::Fail, &all);
    ack.severity = Severity::Warn;
    ack.overridden = true;
    ack.reason = Some("the staging relay acks slowly; tracked in OPS-112".into());
    ack.findings = vec![Finding {
        scenario: None,
        candidate: Some("CAND_risk_high_007".into()),
        source_candidate: None,
        correlation_id: None,
        expected: "an answer within 1000 ms".into(),
        seen: "answered 200 after 1412 ms".into(),
        exchanges: vec![exchange(
            12,
            30.0,
            Actor::Sender,
            "webhook.attempt",
            Some(200),
            "webhook evt_0002 copy 0 → 200 in 1412 ms",
        )],
    }];
    ack.findings_total = 1;
    let mut logs = check("observability.log_fields", Status::Skip, &[]);
    logs.reason =
        Some("the integration's output is not visible: it was reached with --sut-url".into());
    RunReport {
        format: REPORT_FORMAT.into(),
        verdict: Verdict::Blocked,
        seed: 42,
        run_id: "run-000000000000002a-20261130T101500".into(),
        change_id: "ats-writeback-idv-v1.3".into(),
        manifest: "manifests/release-gate.yaml".into(),
        integration: IntegrationInfo {
            kind: IntegrationKind::Command,
            target: "python3 examples/python-integration/integration.py".into(),
        },
        skipped_scenarios: Vec::new(),
        scenarios: vec![
            ScenarioReport {
                scenario: Scenario::Clean,
                deliveries: 8,
                acked: 8,
                should_land: 8,
                landed: 8,
                send_ms: 35,
                total_ms: 212,
                timed_out: false,
                sessions: None,
            },
            ScenarioReport {
                scenario: Scenario::Duplicates,
                deliveries: 8,
                acked: 8,
                should_land: 8,
                landed: 8,
                send_ms: 61,
                total_ms: 240,
                timed_out: false,
                sessions: None,
            },
            ScenarioReport {
                scenario: Scenario::PolicyReconcile,
                deliveries: 8,
                acked: 8,
                should_land: 0,
                landed: 0,
                send_ms: 12,
                total_ms: 670,
                timed_out: false,
                sessions: Some(Sessions {
                    should_open: 3,
                    opened: 3,
                }),
            },
        ],
        checks: vec![
            check("contract.required_fields", Status::Pass, &all),
            ack,
            exactly_once,
            logs,
        ],
        timings: Timings {
            total_ms: 1310,
            start_ms: 402,
            drive_ms: 452,
            judge_ms: 6,
            events_landed: 16,
            landed_per_second: 35.4,
        },
        replay: "stagegate run manifests/release-gate.yaml --seed 42 --sut-cmd 'python3 examples/python-integration/integration.py'".into(),
        artifacts: Some(Artifacts {
            dir: "gate-out".into(),
            observation_log: "gate-out/observation.jsonl".into(),
            plan: "gate-out/plan.json".into(),
            integration_output: Some("gate-out/integration.log".into()),
        }),
        timeline: None,
        shard: None,
        merged_from: Vec::new(),
    }
}

/// A run where everything passed.
pub(crate) fn passed() -> RunReport {
    let mut report = blocked();
    report.verdict = Verdict::Pass;
    report.integration = IntegrationInfo {
        kind: IntegrationKind::ReferenceRelay,
        target: "stagegate relay".into(),
    };
    report.replay = "stagegate run manifests/release-gate.yaml --seed 42".into();
    report.artifacts = None;
    for check in &mut report.checks {
        if check.status == Status::Fail {
            check.status = Status::Pass;
            check.findings.clear();
            check.findings_total = 0;
        }
    }
    report
}
