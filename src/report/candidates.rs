//! What the HTML report needs beyond the run report: per candidate, an integrity
//! timeline (received, acknowledged, processed, written, granted, notified) with its
//! perturbed deliveries marked; time-to-event per stage and risk tier; the SLA
//! breaches and other exceptions, one by one; and the outage timelines.
//!
//! It is a summary, never the log: each candidate keeps its milestones as small
//! arrays (`[ms, stage, event, seq, status, note]`), so a 10,000-candidate report
//! stays a few megabytes. It is built from the plan and the records the run already
//! holds, with the same fold as `stagegate trace` ([`crate::trace::Fold`]).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Value, json};

use crate::observe::Record;
use crate::run::plan::{Plan, Scenario};
use crate::trace::Fold;
use crate::trace::classify::{self, Perturbations, Stage};

/// The stages a timeline shows, by code (the script has the same list).
const MILESTONES: &[Stage] = &[
    Stage::Acknowledged,
    Stage::Rejected,
    Stage::Unanswered,
    Stage::Processed,
    Stage::Written,
    Stage::Refused,
    Stage::StageChange,
    Stage::Session,
    Stage::Granted,
    Stage::Notified,
    Stage::Exception,
];

/// The per-candidate data of the HTML report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditData {
    /// Stage names, indexed by the timelines' stage codes.
    pub stages: Vec<&'static str>,
    /// Contract names, indexed by the events' contract codes.
    pub contracts: Vec<String>,
    /// The ack SLA the run judged with, in milliseconds.
    pub ack_sla_ms: u64,
    /// One summary per candidate, in plan order.
    pub candidates: Vec<Value>,
    /// Time to event per stage, contract and risk tier.
    pub latency: Vec<Value>,
    /// SLA breaches and other exceptions, one row each.
    pub exceptions: Vec<Value>,
    /// How many exceptions there were in all (only the first few thousand are kept).
    pub exceptions_total: usize,
    /// The outage timelines of the kill-switch scenarios.
    pub outages: Vec<super::timeline::Timeline>,
}

/// A candidate the report lists: the plan's, or one only the log names.
struct Listed {
    id: String,
    scenario: Option<Scenario>,
    in_scope: Option<bool>,
    correlation: Option<String>,
}

/// Exceptions kept in the file; the rest are counted.
const EXCEPTIONS_KEPT: usize = 5_000;

fn stage_code(stage: Stage) -> Option<usize> {
    MILESTONES.iter().position(|s| *s == stage)
}

/// The candidate a record concerns: its own field, or the one its output line names
/// (directly, or through a planned event it names).
fn candidate_of(record: &Record, by_event: &HashMap<&str, &str>) -> Option<String> {
    if let Some(c) = &record.candidate {
        return Some(c.clone());
    }
    let ids = classify::line_ids(record)?;
    ids.candidate.or_else(|| {
        ids.event_id
            .as_deref()
            .and_then(|e| by_event.get(e))
            .map(|c| (*c).to_owned())
    })
}

fn percentiles(values: &mut [f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    json!({"n": values.len(), "p50": at(0.5), "p95": at(0.95), "max": values[values.len() - 1]})
}

/// Builds the report's candidate data from the plan and the run's records.
pub fn build(plan: &Plan, records: &[Record]) -> AuditData {
    let marks = Perturbations::from_plan(plan);
    let mut folds: HashMap<String, Fold> = HashMap::new();
    for event in &plan.events {
        folds
            .entry(event.candidate.to_string())
            .or_default()
            .plan_event(event, &marks);
    }
    let by_event: HashMap<&str, &str> = plan
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), e.candidate.as_str()))
        .collect();
    for record in records {
        if let Some(candidate) = candidate_of(record, &by_event) {
            folds.entry(candidate).or_default().observe(record, &marks);
        }
    }
    let planned_events: HashMap<&str, &crate::run::plan::PlannedEvent> = plan
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), e))
        .collect();
    let mut contracts: Vec<String> = Vec::new();
    let mut contract_code = |name: Option<&str>| -> Value {
        let Some(name) = name else { return Value::Null };
        let code = contracts.iter().position(|c| c == name).unwrap_or_else(|| {
            contracts.push(name.to_owned());
            contracts.len() - 1
        });
        json!(code)
    };

    let mut order: Vec<Listed> = plan
        .candidates
        .iter()
        .map(|c| Listed {
            id: c.candidate.to_string(),
            scenario: Some(c.scenario),
            in_scope: Some(c.in_scope),
            correlation: Some(c.correlation_id.to_string()),
        })
        .collect();
    let mut unplanned: Vec<&String> = folds
        .keys()
        .filter(|id| plan.candidate(id).is_none())
        .collect();
    unplanned.sort();
    order.extend(unplanned.into_iter().map(|id| Listed {
        id: id.clone(),
        scenario: None,
        in_scope: None,
        correlation: None,
    }));

    let mut candidates = Vec::with_capacity(order.len());
    let mut exceptions = Vec::new();
    let mut exceptions_total = 0usize;
    let mut samples: BTreeMap<(&'static str, String, String), Vec<f64>> = BTreeMap::new();
    for Listed {
        id,
        scenario,
        in_scope,
        correlation,
    } in order
    {
        let fold = folds.remove(&id).unwrap_or_default();
        let tier = fold
            .events
            .values()
            .find_map(|e| e.risk_tier.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        let event_index: HashMap<&str, usize> = fold
            .events
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let mut events = Vec::with_capacity(fold.events.len());
        for e in fold.events.values() {
            let p = e.perturbation.as_ref();
            let planned = planned_events.get(e.event_id.as_str());
            let should_land = planned.map(|p| p.should_land);
            let contract = e.contract.clone().unwrap_or_else(|| "?".to_owned());
            let mut exception = |kind: &str, text: String, ms: Option<f64>| {
                exceptions_total += 1;
                if exceptions.len() < EXCEPTIONS_KEPT {
                    exceptions.push(
                        json!({"candidate": id, "event": e.event_id, "contract": contract,
                                           "tier": tier, "kind": kind, "text": text, "ms": ms}),
                    );
                }
            };
            if let Some(ack) = e.ack_latency_ms() {
                samples
                    .entry(("sent → acknowledged", contract.clone(), tier.clone()))
                    .or_default()
                    .push(ack);
                if ack > plan.ack_sla_ms as f64 && plan.ack_sla_ms > 0 {
                    exception(
                        "ack SLA breached",
                        format!(
                            "acknowledged after {ack:.1} ms; the SLA is {} ms",
                            plan.ack_sla_ms
                        ),
                        Some(ack),
                    );
                }
            }
            if let Some(applied) = e.apply_latency_ms() {
                samples
                    .entry(("sent → applied at the ATS", contract.clone(), tier.clone()))
                    .or_default()
                    .push(applied);
            }
            if should_land == Some(true) && e.applied == 0 {
                exception(
                    "never applied",
                    "should have landed at the ATS and did not".into(),
                    None,
                );
            }
            if e.applied > 1 {
                exception(
                    "applied twice",
                    format!("applied {} times at the ATS", e.applied),
                    None,
                );
            }
            if p.is_some_and(|p| p.forged) && (e.acknowledged > 0 || e.applied > 0) {
                exception(
                    "forgery accepted",
                    format!(
                        "a forged delivery was acknowledged {}× and applied {}×",
                        e.acknowledged, e.applied
                    ),
                    None,
                );
            }
            if should_land == Some(false)
                && !p.is_some_and(|p| p.forged)
                && e.applied > 0
                && in_scope == Some(false)
            {
                exception(
                    "out of scope written",
                    "written for a candidate outside the canary scope".into(),
                    None,
                );
            }
            let flags = [
                p.is_some_and(|p| p.duplicate),
                p.is_some_and(|p| p.forged),
                p.is_some_and(|p| p.superseded),
            ];
            events.push(json!([
                e.event_id,
                contract_code(e.contract.as_deref()),
                p.map(|p| p.name.as_str()).unwrap_or("none"),
                flags
                    .iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, f)| acc | (u8::from(*f) << i)),
                e.sent_ms,
                e.acknowledged_ms,
                e.processed_ms,
                e.applied_ms,
                [e.attempts, e.acknowledged, e.rejected, e.applied, e.refused],
                e.outcome,
                e.processed,
            ]));
        }
        let mut writes: HashMap<&str, u32> = HashMap::new();
        let timeline: Vec<Value> = fold
            .rows
            .iter()
            .filter_map(|row| {
                let code = stage_code(row.stage)?;
                let nth_write = match (row.stage, row.event_id.as_deref()) {
                    (Stage::Written, Some(e)) => {
                        let n = writes.entry(e).or_default();
                        *n += 1;
                        *n
                    }
                    _ => 0,
                };
                let event = row
                    .event_id
                    .as_deref()
                    .and_then(|e| event_index.get(e))
                    .map_or(Value::Null, |i| json!(i));
                let note = match row.stage {
                    Stage::Processed => row.outcome.clone().unwrap_or_default(),
                    _ if nth_write > 1 => {
                        format!("applied again (write {nth_write} of the same event)")
                    }
                    _ => row.mark.clone().unwrap_or_default(),
                };
                Some(json!([
                    (row.elapsed_ms * 10.0).round() / 10.0,
                    code,
                    event,
                    row.seq,
                    row.status.unwrap_or(0),
                    note
                ]))
            })
            .collect();
        candidates.push(json!({
            "id": id,
            "scenario": scenario,
            "tier": tier,
            "in_scope": in_scope,
            "correlation_id": correlation,
            "events": events,
            "timeline": timeline,
        }));
    }
    let latency = samples
        .into_iter()
        .map(|((stage, contract, tier), mut values)| {
            json!({"stage": stage, "contract": contract, "tier": tier, "ms": percentiles(&mut values)})
        })
        .collect();
    let outages = Scenario::KILL_SWITCH
        .iter()
        .filter_map(|s| super::timeline::outage(plan, records, *s))
        .collect();
    AuditData {
        stages: MILESTONES.iter().map(|s| s.as_str()).collect(),
        contracts,
        ack_sla_ms: plan.ack_sla_ms,
        candidates,
        latency,
        exceptions,
        exceptions_total,
        outages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::fixture;

    #[test]
    fn candidates_get_timelines_latencies_and_exceptions() {
        let data = build(&fixture::plan(), &fixture::records());
        let ids: Vec<&str> = data
            .candidates
            .iter()
            .map(|c| c["id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, [fixture::A, fixture::B]);
        let a = &data.candidates[0];
        assert_eq!(a["tier"], "high");
        // Received twice (a duplicate), processed, written, then the superseded event.
        let stages: Vec<&str> = a["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .map(|m| data.stages[m[1].as_u64().expect("code") as usize])
            .collect();
        assert_eq!(
            stages,
            [
                "acknowledged",
                "acknowledged",
                "processed",
                "written",
                "acknowledged"
            ]
        );
        assert_eq!(a["timeline"][1][5], "duplicate (exact_duplicate), copy 2");
        assert_eq!(a["timeline"][2][5], "queued");
        // evt_a1: a duplicate (bit 0); evt_a2: superseded (bit 2).
        assert_eq!(a["events"][0][3], 1);
        assert_eq!(a["events"][1][3], 4);
        let b = &data.candidates[1];
        assert_eq!(b["events"][0][3], 2, "forged");
        // The fixture's SLA is 5 ms: the first copy's 6 ms ack breaches it.
        let kinds: Vec<(&str, &str)> = data
            .exceptions
            .iter()
            .map(|e| {
                (
                    e["candidate"].as_str().expect("c"),
                    e["kind"].as_str().expect("k"),
                )
            })
            .collect();
        assert_eq!(kinds, [(fixture::A, "ack SLA breached")]);
        assert!(
            data.latency
                .iter()
                .any(|l| l["tier"] == "high" && l["stage"] == "sent → applied at the ATS")
        );
    }
}
