//! `policy.log_fields`: every stage change the integration processed and every
//! verification result it was sent has a JSON log line that names it (`eventId`, or
//! any top-level string equal to its event id) and carries every one of the
//! policy's `logging.mustLogFields`, present and not null, and no sandbox
//! candidate's name or e-mail address.
//!
//! Per event the most complete line counts, so an `accepted` line followed by a
//! complete `processed` one passes.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{Cited, Cx, PolicyCheck, Verdict, is_stage_attempt, ok};
use crate::observe::Record;

/// The best line seen for one event: missing fields, seq, and whether it leaked PII.
#[derive(Debug, Clone)]
struct Best {
    missing: Vec<String>,
    seq: u64,
    pii: bool,
}

/// The fold.
#[derive(Debug, Default)]
pub(crate) struct LogFields {
    /// Genuine stage changes of the plan: event id → candidate.
    moves: HashMap<String, String>,
    /// Events that must be logged: event id → (candidate, seq of what made it due).
    due: BTreeMap<String, (String, u64)>,
    /// The best line per event id.
    best: HashMap<String, Best>,
    /// Personal data of the policy candidates, lower-cased.
    pii: Vec<String>,
    visible: bool,
}

impl PolicyCheck for LogFields {
    fn new(cx: &Cx<'_>) -> Self {
        LogFields {
            moves: cx
                .plan
                .candidates
                .iter()
                .flat_map(|c| c.moves.iter().map(move |m| (c, m)))
                .filter(|(_, m)| !m.forged)
                .map(|(c, m)| (m.event_id.clone(), c.candidate.clone()))
                .collect(),
            pii: cx.pii.iter().map(|p| p.to_lowercase()).collect(),
            ..LogFields::default()
        }
    }

    fn record(&mut self, cx: &Cx<'_>, record: &Record) {
        match record.kind.as_str() {
            "integration.ready" => self.visible = true,
            "integration.stdout" | "integration.stderr" => self.line(cx, record),
            crate::run::policy::marks::RESULT => {
                let delivered =
                    record.detail.get("delivered").and_then(Value::as_bool) == Some(true);
                if let (true, Some(id), Some(candidate)) = (
                    delivered,
                    record.event_id.as_deref(),
                    record.candidate.as_deref(),
                ) {
                    self.due
                        .entry(id.to_owned())
                        .or_insert_with(|| (candidate.to_owned(), record.seq));
                }
            }
            _ if is_stage_attempt(record) && ok(record.status) => {
                if let Some(id) = record.event_id.as_deref()
                    && let Some(candidate) = self.moves.get(id)
                {
                    self.due
                        .entry(id.to_owned())
                        .or_insert_with(|| (candidate.clone(), record.seq));
                }
            }
            _ => {}
        }
    }

    fn finish(self, cx: &Cx<'_>, out: &mut Verdict) {
        if !self.visible {
            out.skip = Some(
                "the integration's output is not in the log (it was not started by the harness)"
                    .to_owned(),
            );
            return;
        }
        let fields = &cx.plan.policy.logging.must_log_fields;
        for (id, (candidate, seq)) in &self.due {
            if let Some(planned) = cx.plan.candidate(candidate) {
                out.judged.insert(planned.scenario);
            }
            let finding = |expected: String, seen: String, cites: Vec<u64>| Cited {
                candidate: Some(candidate.clone()),
                expected,
                seen,
                cites,
            };
            match self.best.get(id) {
                None => out.add(|| {
                    finding(
                        format!("a JSON log line naming {id} with {}", fields.join(", ")),
                        "no log line names it".to_owned(),
                        vec![*seq],
                    )
                }),
                Some(best) => {
                    if !best.missing.is_empty() {
                        out.add(|| {
                            finding(
                                format!("the log line of {id} carries every mustLogFields field"),
                                format!("missing or null: {}", best.missing.join(", ")),
                                vec![*seq, best.seq],
                            )
                        });
                    }
                    if best.pii {
                        out.add(|| {
                            finding(
                                "no personal data in the log line".to_owned(),
                                format!("the line of {id} holds a candidate's name or e-mail"),
                                vec![best.seq],
                            )
                        });
                    }
                }
            }
        }
        if out.judged.is_empty() {
            out.skip = Some("no stage change was processed and no result delivered".to_owned());
        }
    }
}

impl LogFields {
    fn line(&mut self, cx: &Cx<'_>, record: &Record) {
        let Some(text) = record.detail.get("line").and_then(Value::as_str) else {
            return;
        };
        let Ok(Value::Object(line)) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let named: Vec<&str> = line
            .values()
            .filter_map(Value::as_str)
            .filter(|v| self.due.contains_key(*v) || self.moves.contains_key(*v))
            .collect();
        if named.is_empty() {
            return;
        }
        let missing: Vec<String> = cx
            .plan
            .policy
            .logging
            .must_log_fields
            .iter()
            .filter(|f| line.get(f.as_str()).is_none_or(Value::is_null))
            .cloned()
            .collect();
        let lower = text.to_lowercase();
        let pii = self
            .pii
            .iter()
            .any(|p| p.len() >= 3 && lower.contains(p.as_str()));
        for id in named {
            let better = self.best.get(id).is_none_or(|b| {
                missing.len() < b.missing.len()
                    || (!pii && b.pii && missing.len() == b.missing.len())
            });
            if better {
                self.best.insert(
                    id.to_owned(),
                    Best {
                        missing: missing.clone(),
                        seq: record.seq,
                        pii,
                    },
                );
            }
        }
    }
}
