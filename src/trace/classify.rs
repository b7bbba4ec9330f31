//! What a record means for a candidate's story: its stage (received, acknowledged,
//! processed, written, granted, notified…), the ids an integration's output line
//! names, and how each delivery was perturbed.
//!
//! Stages come from one table of record-kind prefixes, so the kinds the hiring-policy
//! flow will add (`stage.*`, `session.*`, `grant.*`, `exception.*`) slot in with a row
//! each; a kind nobody listed is `other`, still shown, never dropped.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::observe::Record;
use crate::run::plan::Plan;

/// Where a record sits in a candidate's flow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A webhook attempt the integration answered 2xx: received and acknowledged.
    Acknowledged,
    /// A webhook attempt the integration refused (4xx).
    Rejected,
    /// A webhook attempt with no answer or a 5xx: sent, not acknowledged.
    Unanswered,
    /// The sender's summary of one delivery (all its attempts).
    Delivery,
    /// A line the integration printed about the event (queued, applied, dropped…).
    Processed,
    /// A call the integration made to the ATS.
    AtsCall,
    /// The ATS applied the event.
    Written,
    /// The ATS refused the write (422 contract violation, 409 stale revision).
    Refused,
    /// A hiring-stage change (hiring-policy flow).
    StageChange,
    /// A verification session at the vendor.
    Session,
    /// Access granted to the candidate.
    Granted,
    /// A message to a notification channel.
    Notified,
    /// An exception item filed for people.
    Exception,
    /// A harness marker (run, scenario, fault window).
    Harness,
    /// A kind no row of the table names.
    Other,
}

impl Stage {
    /// The stage's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Acknowledged => "acknowledged",
            Stage::Rejected => "rejected",
            Stage::Unanswered => "unanswered",
            Stage::Delivery => "delivery",
            Stage::Processed => "processed",
            Stage::AtsCall => "ats_call",
            Stage::Written => "written",
            Stage::Refused => "refused",
            Stage::StageChange => "stage_change",
            Stage::Session => "session",
            Stage::Granted => "granted",
            Stage::Notified => "notified",
            Stage::Exception => "exception",
            Stage::Harness => "harness",
            Stage::Other => "other",
        }
    }
}

/// Record kinds (exact, or a prefix ending in `.`) and their stage; first match wins.
const KINDS: &[(&str, Stage)] = &[
    ("webhook.delivery", Stage::Delivery),
    ("integration.", Stage::Processed),
    ("ats.request", Stage::AtsCall),
    ("ats.event_applied", Stage::Written),
    ("ats.event_rejected", Stage::Refused),
    ("ats.event_conflict", Stage::Refused),
    ("ats.access_granted", Stage::Granted),
    ("ats.exception_created", Stage::Exception),
    ("ats.stage_", Stage::StageChange),
    ("stage.", Stage::StageChange),
    ("vendor.", Stage::Session),
    ("session.", Stage::Session),
    ("grant.", Stage::Granted),
    ("access.", Stage::Granted),
    ("notify.", Stage::Notified),
    ("exception.", Stage::Exception),
    ("run.", Stage::Harness),
    ("scenario.", Stage::Harness),
    ("fault.", Stage::Harness),
];

/// The stage of a record of `kind` that got `status`.
pub fn stage(kind: &str, status: Option<u16>) -> Stage {
    if kind == "webhook.attempt" {
        return match status {
            Some(200..=299) => Stage::Acknowledged,
            Some(400..=499) => Stage::Rejected,
            _ => Stage::Unanswered,
        };
    }
    KINDS
        .iter()
        .find(|(name, _)| {
            if name.ends_with('.') || name.ends_with('_') {
                kind.starts_with(name)
            } else {
                kind == *name
            }
        })
        .map_or(Stage::Other, |(_, stage)| *stage)
}

/// The ids an integration's JSON output line names (INTEGRATION-PROTOCOL.md §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineIds {
    /// `ats_candidate_id`.
    pub candidate: Option<String>,
    /// `correlation_id`.
    pub correlation_id: Option<String>,
    /// `event_id`.
    pub event_id: Option<String>,
    /// `outcome` (queued, applied, dropped…).
    pub outcome: Option<String>,
}

/// The ids of an `integration.*` record's output line, if it is a JSON object.
pub fn line_ids(record: &Record) -> Option<LineIds> {
    if !record.kind.starts_with("integration.") {
        return None;
    }
    let line = record.detail.get("line")?.as_str()?;
    let value: Value = serde_json::from_str(line).ok()?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(LineIds {
        candidate: text("ats_candidate_id").or_else(|| text("candidate_id")),
        correlation_id: text("correlation_id"),
        event_id: text("event_id"),
        outcome: text("outcome"),
    })
}

/// How one planned event was delivered, and what should have become of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Perturbation {
    /// The perturbation's name (`none`, `exact_duplicate`, `unsigned`, …).
    pub name: String,
    /// Sent more than once (redelivered, re-emitted, raced).
    pub duplicate: bool,
    /// Forged: unsigned, wrongly signed or stale; the integration must refuse it.
    pub forged: bool,
    /// A newer event of the same candidate and contract supersedes it.
    pub superseded: bool,
    /// Where this came from: `plan` (the run's plan.json) or `log` (the sender's records).
    pub source: String,
}

/// Perturbation names that send an event more than once.
const DUPLICATING: &[&str] = &["exact_duplicate", "re_emit", "concurrent_duplicates"];
/// Perturbation names of forged deliveries.
const FORGING: &[&str] = &["unsigned", "wrong_signature", "stale_timestamp"];

impl Perturbation {
    fn named(name: &str, source: &str) -> Self {
        Perturbation {
            name: name.to_owned(),
            duplicate: DUPLICATING.contains(&name),
            forged: FORGING.contains(&name),
            superseded: false,
            source: source.to_owned(),
        }
    }

    /// A short mark for people: `duplicate (exact_duplicate)`, `forged (unsigned)`,
    /// `superseded`; `None` for an unperturbed event.
    pub fn mark(&self) -> Option<String> {
        let mut marks = Vec::new();
        if self.duplicate {
            marks.push(format!("duplicate ({})", self.name));
        }
        if self.forged {
            marks.push(format!("forged ({})", self.name));
        }
        if self.superseded {
            marks.push("superseded".to_owned());
        }
        if marks.is_empty() && self.name != "none" {
            marks.push(self.name.clone());
        }
        (!marks.is_empty()).then(|| marks.join(", "))
    }
}

/// Every event's perturbation, by event id: from the plan when there is one, else
/// learned from the sender's records as the log is read.
#[derive(Debug, Clone, Default)]
pub struct Perturbations {
    by_event: HashMap<String, Perturbation>,
    from_plan: bool,
}

impl Perturbations {
    /// The plan's perturbations (which also knows what was superseded).
    pub fn from_plan(plan: &Plan) -> Self {
        let by_event = plan
            .events
            .iter()
            .map(|e| {
                let mut p = Perturbation::named(&e.perturbation, "plan");
                p.forged |= e.forged;
                p.superseded = e.in_scope && !e.forged && !e.should_land;
                (e.event_id.to_string(), p)
            })
            .collect();
        Perturbations {
            by_event,
            from_plan: true,
        }
    }

    /// Learns an event's perturbation from a sender record, unless the plan said it.
    pub fn learn(&mut self, record: &Record) {
        if self.from_plan || !record.kind.starts_with("webhook.") {
            return;
        }
        let (Some(event), Some(name)) = (
            record.event_id.as_deref(),
            record.detail.get("perturbation").and_then(Value::as_str),
        ) else {
            return;
        };
        self.by_event
            .entry(event.to_owned())
            .or_insert_with(|| Perturbation::named(name, "log"));
    }

    /// The perturbation of this event, if known.
    pub fn of(&self, event_id: &str) -> Option<&Perturbation> {
        self.by_event.get(event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_stages_and_new_kinds_slot_in() {
        // (kind, status, stage, why)
        let rows = [
            (
                "webhook.attempt",
                Some(204),
                Stage::Acknowledged,
                "2xx acknowledges",
            ),
            (
                "webhook.attempt",
                Some(401),
                Stage::Rejected,
                "a refused forgery",
            ),
            ("webhook.attempt", None, Stage::Unanswered, "a timeout"),
            (
                "webhook.attempt",
                Some(503),
                Stage::Unanswered,
                "a 5xx is no ack",
            ),
            ("integration.stdout", None, Stage::Processed, "output lines"),
            ("ats.event_applied", None, Stage::Written, "the write"),
            (
                "ats.event_conflict",
                Some(409),
                Stage::Refused,
                "a stale revision",
            ),
            (
                "stage.changed",
                None,
                Stage::StageChange,
                "policy flow, later",
            ),
            ("grant.issued", None, Stage::Granted, "policy flow, later"),
            (
                "exception.opened",
                None,
                Stage::Exception,
                "policy flow, later",
            ),
            ("notify.message", None, Stage::Notified, "channels"),
            (
                "ats.requestx",
                None,
                Stage::Other,
                "exact names match exactly",
            ),
            (
                "something.new",
                None,
                Stage::Other,
                "unknown kinds are kept as other",
            ),
        ];
        for (kind, status, expected, why) in rows {
            assert_eq!(stage(kind, status), expected, "{kind}: {why}");
        }
    }

    #[test]
    fn marks_name_duplicates_forgeries_and_superseded_events() {
        let mut p = Perturbation::named("exact_duplicate", "log");
        assert_eq!(p.mark().as_deref(), Some("duplicate (exact_duplicate)"));
        p = Perturbation::named("wrong_signature", "log");
        assert_eq!(p.mark().as_deref(), Some("forged (wrong_signature)"));
        p = Perturbation::named("none", "plan");
        assert_eq!(p.mark(), None);
        p.superseded = true;
        assert_eq!(p.mark().as_deref(), Some("superseded"));
    }
}
