//! `policy.stage_event_idempotency`: a stage change redelivered (the same request
//! again, concurrent copies) or re-emitted (the same event under a new
//! `webhook-id`) never opens a second verification session nor a second grant.
//!
//! Per candidate it counts the distinct gated stage changes acknowledged (by the
//! policy's idempotency key) and the sessions the integration opened: more sessions
//! than gated changes, or a resource granted twice, is a finding.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{
    Cited, Cx, PolicyCheck, Verdict, is_integration_session, is_stage_attempt, ok, text_at,
};
use crate::observe::Record;

/// One candidate's stage changes, sessions and grants.
#[derive(Debug, Default)]
struct Seen {
    /// Gated keys acknowledged, with the first acknowledgement's seq.
    keys: BTreeMap<String, u64>,
    /// Whether any gated change of this candidate was delivered more than once.
    repeated: bool,
    /// Sessions the integration opened, by seq.
    sessions: Vec<u64>,
    /// Grants per resource, by seq.
    grants: BTreeMap<String, Vec<u64>>,
}

/// The fold.
#[derive(Debug, Default)]
pub(crate) struct StageEventIdempotency {
    /// Gated, genuine stage changes of the plan: event id → candidate.
    gated: HashMap<String, String>,
    seen: HashMap<String, Seen>,
}

impl PolicyCheck for StageEventIdempotency {
    fn new(cx: &Cx<'_>) -> Self {
        // Candidates that only get forgeries are the signature check's.
        let gated = cx
            .plan
            .candidates
            .iter()
            .filter(|c| c.profile != crate::run::policy::RiskProfile::Forged)
            .flat_map(|c| c.moves.iter().map(move |m| (c, m)))
            .filter(|(_, m)| !m.forged && cx.plan.is_gated(&m.to))
            .map(|(c, m)| (m.event_id.clone(), c.candidate.clone()))
            .collect();
        StageEventIdempotency {
            gated,
            seen: HashMap::new(),
        }
    }

    fn record(&mut self, _cx: &Cx<'_>, record: &Record) {
        let Some(candidate) = record.candidate.as_deref() else {
            return;
        };
        if is_stage_attempt(record) {
            let Some(event) = record.event_id.as_deref() else {
                return;
            };
            if !self.gated.contains_key(event) || !ok(record.status) {
                return;
            }
            let seen = self.seen.entry(candidate.to_owned()).or_default();
            let key = record
                .idempotency_key
                .clone()
                .unwrap_or_else(|| event.to_owned());
            match seen.keys.entry(key) {
                std::collections::btree_map::Entry::Occupied(_) => seen.repeated = true,
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(record.seq);
                }
            }
            if text_at(record, "/perturbation").is_some_and(|p| p != "none") {
                seen.repeated = true;
            }
        } else if is_integration_session(record) {
            self.seen
                .entry(candidate.to_owned())
                .or_default()
                .sessions
                .push(record.seq);
        } else if record.kind == "ats.access_granted" {
            let resource = text_at(record, "/grant/resource").unwrap_or("?").to_owned();
            self.seen
                .entry(candidate.to_owned())
                .or_default()
                .grants
                .entry(resource)
                .or_default()
                .push(record.seq);
        }
    }

    fn finish(self, cx: &Cx<'_>, out: &mut Verdict) {
        let genuine: BTreeSet<&String> = self.gated.values().collect();
        let mut order: BTreeSet<&String> = self.seen.keys().collect();
        order.retain(|c| genuine.contains(c));
        for candidate in order {
            let seen = &self.seen[candidate];
            let Some(planned) = cx.plan.candidate(candidate) else {
                continue;
            };
            if seen.repeated {
                out.judged.insert(planned.scenario);
            }
            if seen.sessions.len() > seen.keys.len() {
                out.add(|| Cited {
                    candidate: Some(candidate.clone()),
                    expected: format!(
                        "one verification session per gated stage change ({} distinct by the policy's keyTemplate), however often each was delivered",
                        seen.keys.len()
                    ),
                    seen: format!("{} sessions opened", seen.sessions.len()),
                    cites: seen.keys.values().chain(&seen.sessions).copied().collect(),
                });
            }
            for (resource, grants) in &seen.grants {
                if grants.len() > 1 {
                    out.add(|| Cited {
                        candidate: Some(candidate.clone()),
                        expected: format!("`{resource}` granted once"),
                        seen: format!("granted {} times", grants.len()),
                        cites: seen.keys.values().chain(grants).copied().collect(),
                    });
                }
            }
        }
        if out.judged.is_empty() {
            out.skip = Some("no gated stage change was delivered more than once".to_owned());
        }
    }
}
