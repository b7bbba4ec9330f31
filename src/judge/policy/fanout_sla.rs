//! `policy.fanout_sla`: each gated stage change opened its verification session
//! within the policy's `triggerFanoutSeconds` (on the run's clock) of its first
//! acknowledged delivery.
//!
//! Per candidate the acknowledged gated changes (first delivery of each key) and the
//! integration's sessions are paired in order; a change with no session after it, or
//! whose session came later than the SLA, is a finding. A session may be logged
//! before the acknowledgement it follows (the integration opens it while the
//! answer travels back), so a change counts from when its delivery was sent.
//!
//! A change acknowledged inside a fault window is not held to the SLA: whether its
//! session may wait for the kill switch (`pause_candidate_gates`) is
//! `kill_switch.gates_not_paused`'s to judge.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Cited, Cx, PolicyCheck, Verdict, is_integration_session, is_stage_attempt, ok};
use crate::observe::Record;

/// A timed record: when (ms since the run started) and its seq.
type Mark = (f64, u64);

/// A gated change: when it was sent, its seq, and whether it came inside a fault window.
type Change = (f64, u64, bool);

/// The fold.
#[derive(Debug, Default)]
pub(crate) struct FanoutSla {
    /// Gated, genuine stage changes of the plan, by event id.
    gated: HashSet<String>,
    /// Per candidate: keys seen, gated changes (sent at, seq), sessions.
    keys: HashSet<String>,
    changes: BTreeMap<String, Vec<Change>>,
    sessions: HashMap<String, Vec<Mark>>,
    /// Whether a fault window is open.
    in_fault: bool,
}

impl PolicyCheck for FanoutSla {
    fn new(cx: &Cx<'_>) -> Self {
        FanoutSla {
            gated: cx
                .plan
                .candidates
                .iter()
                .flat_map(|c| &c.moves)
                .filter(|m| !m.forged && cx.plan.is_gated(&m.to))
                .map(|m| m.event_id.clone())
                .collect(),
            ..FanoutSla::default()
        }
    }

    fn record(&mut self, _cx: &Cx<'_>, record: &Record) {
        match record.kind.as_str() {
            crate::run::plan::marks::FAULT_START => self.in_fault = true,
            crate::run::plan::marks::FAULT_END => self.in_fault = false,
            _ => {}
        }
        let Some(candidate) = record.candidate.as_deref() else {
            return;
        };
        if is_stage_attempt(record) && ok(record.status) {
            let Some(event) = record
                .event_id
                .as_deref()
                .filter(|e| self.gated.contains(*e))
            else {
                return;
            };
            let key = record.idempotency_key.as_deref().unwrap_or(event);
            if self.keys.insert(format!("{candidate}\u{0}{key}")) {
                let sent = record.elapsed_ms - record.latency_ms.unwrap_or(0.0);
                self.changes.entry(candidate.to_owned()).or_default().push((
                    sent,
                    record.seq,
                    self.in_fault,
                ));
            }
        } else if is_integration_session(record) {
            self.sessions
                .entry(candidate.to_owned())
                .or_default()
                .push((record.elapsed_ms, record.seq));
        }
    }

    fn finish(self, cx: &Cx<'_>, out: &mut Verdict) {
        let sla_s = cx.plan.policy.slas.trigger_fanout_seconds;
        let sla_ms = sla_s * 1000.0 / cx.time_scale.max(1.0);
        for (candidate, changes) in &self.changes {
            if let Some(planned) = cx.plan.candidate(candidate) {
                out.judged.insert(planned.scenario);
            }
            let sessions = self.sessions.get(candidate).map_or(&[][..], Vec::as_slice);
            let mut next = 0;
            for &(sent, seq, exempt) in changes {
                // The first session not yet paired that did not open before the change was sent.
                while next < sessions.len() && sessions[next].0 < sent {
                    next += 1;
                }
                match sessions.get(next) {
                    Some(&(at, session)) => {
                        next += 1;
                        if !exempt && at - sent > sla_ms {
                            out.add(|| Cited {
                                candidate: Some(candidate.clone()),
                                expected: format!(
                                    "a verification session within triggerFanoutSeconds ({sla_s} s, {sla_ms:.0} ms on the run's clock) of the gated stage change"
                                ),
                                seen: format!("the session opened {:.0} ms after it", at - sent),
                                cites: vec![seq, session],
                            });
                        }
                    }
                    None if exempt => {}
                    None => out.add(|| Cited {
                        candidate: Some(candidate.clone()),
                        expected: "a verification session for the gated stage change".to_owned(),
                        seen: "no session was opened after it".to_owned(),
                        cites: vec![seq],
                    }),
                }
            }
        }
        if out.judged.is_empty() {
            out.skip = Some("no gated stage change was acknowledged".to_owned());
        }
    }
}
