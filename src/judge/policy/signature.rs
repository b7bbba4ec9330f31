//! `policy.signature`: forged stage changes (unsigned, signed with another secret,
//! or with a timestamp 10 minutes old) got a 4xx and changed nothing: no session,
//! no grant, no exception item for their candidate, who gets nothing but forgeries.

use std::collections::{BTreeMap, HashMap};

use super::{Cited, Cx, PolicyCheck, Verdict, is_integration_session, is_stage_attempt, text_at};
use crate::observe::Record;

/// The fold.
#[derive(Debug, Default)]
pub(crate) struct Signature {
    /// Forged stage changes of the plan: event id → candidate.
    forged: HashMap<String, String>,
    /// Per forged-only candidate: attempts and what they caused.
    attempts: BTreeMap<String, Vec<(u64, Option<u16>, String)>>,
    effects: BTreeMap<String, Vec<(u64, String)>>,
}

impl PolicyCheck for Signature {
    fn new(cx: &Cx<'_>) -> Self {
        Signature {
            forged: cx
                .plan
                .candidates
                .iter()
                .flat_map(|c| c.moves.iter().map(move |m| (c, m)))
                .filter(|(_, m)| m.forged)
                .map(|(c, m)| (m.event_id.clone(), c.candidate.clone()))
                .collect(),
            ..Signature::default()
        }
    }

    fn record(&mut self, _cx: &Cx<'_>, record: &Record) {
        let Some(candidate) = record.candidate.as_deref() else {
            return;
        };
        if is_stage_attempt(record) {
            if record
                .event_id
                .as_deref()
                .is_some_and(|e| self.forged.contains_key(e))
            {
                let how = text_at(record, "/perturbation")
                    .unwrap_or("forged")
                    .to_owned();
                self.attempts
                    .entry(candidate.to_owned())
                    .or_default()
                    .push((record.seq, record.status, how));
            }
            return;
        }
        if !self.forged.values().any(|c| c == candidate) {
            return;
        }
        let effect = if is_integration_session(record) {
            "a verification session opened"
        } else {
            match record.kind.as_str() {
                "ats.access_granted" => "access granted",
                "ats.exception_created" => "an exception item filed",
                _ => return,
            }
        };
        self.effects
            .entry(candidate.to_owned())
            .or_default()
            .push((record.seq, effect.to_owned()));
    }

    fn finish(self, cx: &Cx<'_>, out: &mut Verdict) {
        for (candidate, attempts) in &self.attempts {
            if let Some(planned) = cx.plan.candidate(candidate) {
                out.judged.insert(planned.scenario);
            }
            for (seq, status, how) in attempts {
                if !status.is_some_and(|s| (400..500).contains(&s)) {
                    out.add(|| Cited {
                        candidate: Some(candidate.clone()),
                        expected: format!("a 4xx (401) to a {how} stage change"),
                        seen: status
                            .map_or_else(|| "no answer".to_owned(), |s| format!("answered {s}")),
                        cites: vec![*seq],
                    });
                }
            }
            for (seq, effect) in self.effects.get(candidate).into_iter().flatten() {
                out.add(|| Cited {
                    candidate: Some(candidate.clone()),
                    expected: "nothing changed by forged stage changes".to_owned(),
                    seen: effect.clone(),
                    cites: attempts.iter().map(|a| a.0).chain([*seq]).collect(),
                });
            }
        }
        if out.judged.is_empty() {
            out.skip = Some("no forged stage change was sent".to_owned());
        }
    }
}
