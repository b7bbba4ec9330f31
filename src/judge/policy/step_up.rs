//! `policy.step_up`: every `review_required` result and every result carrying one
//! of the policy's step-up signals produced exactly one exception item, owned by
//! the role the policy assigns (`highRisk` for a high-risk candidate, `default`
//! otherwise), due when `exceptionReview` says, and no grant until a reviewer
//! resolved it.
//!
//! An item belongs to a trigger when it names the trigger's session, or, naming
//! none, when it was filed for the candidate after the trigger and before the next
//! one. Items filed by the reconciliation job (after `POST /jobs/reconcile`) are the
//! `policy.reconciliation` check's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Cited, Cx, PolicyCheck, Verdict, text_at};
use crate::observe::Record;

/// How far an item's `due_at` may stray from the policy's (clocks and queues).
const DUE_TOLERANCE_S: i64 = 120;

#[derive(Debug)]
struct Trigger {
    seq: u64,
    /// The resource of the gated stage the candidate was in.
    resource: Option<&'static str>,
    session: String,
    high_risk: bool,
    what: String,
}

#[derive(Debug)]
struct Item {
    seq: u64,
    id: String,
    owner: String,
    due_at: Option<String>,
    created: Option<DateTime<Utc>>,
    session: Option<String>,
    resolved: Option<u64>,
}

/// One candidate's triggers, items and grants.
#[derive(Debug, Default)]
struct Story {
    triggers: Vec<Trigger>,
    items: Vec<Item>,
    /// Grants: seq and resource.
    grants: Vec<(u64, String)>,
    /// The resource of the latest gated stage entered.
    gate: Option<&'static str>,
    /// Per session, the resource of the gated stage it was opened for.
    sessions: BTreeMap<String, &'static str>,
}

/// The fold.
#[derive(Debug, Default)]
pub(crate) struct StepUp {
    stories: BTreeMap<String, Story>,
    reconciling: bool,
}

impl PolicyCheck for StepUp {
    fn new(_cx: &Cx<'_>) -> Self {
        StepUp::default()
    }

    fn record(&mut self, cx: &Cx<'_>, record: &Record) {
        if record.kind == crate::run::policy::marks::RECONCILE {
            self.reconciling = true;
            return;
        }
        let Some(candidate) = record.candidate.as_deref() else {
            return;
        };
        match record.kind.as_str() {
            crate::run::policy::marks::RESULT => {
                if record
                    .detail
                    .get("delivered")
                    .and_then(serde_json::Value::as_bool)
                    != Some(true)
                {
                    return;
                }
                let result = text_at(record, "/result").unwrap_or_default();
                let step_up = &cx.plan.policy.controls.step_up_verification;
                let signal = record
                    .detail
                    .get("signals")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_str)
                    .find(|s| step_up.enabled && step_up.triggers.iter().any(|t| t == s));
                if result != "review_required" && signal.is_none() {
                    return;
                }
                let what = match signal {
                    Some(signal) => format!("the step-up signal `{signal}` (result `{result}`)"),
                    None => format!("the result `{result}`"),
                };
                let story = self.stories.entry(candidate.to_owned()).or_default();
                let session = text_at(record, "/session_id").unwrap_or_default();
                let resource = story.sessions.get(session).copied().or(story.gate);
                story.triggers.push(Trigger {
                    seq: record.seq,
                    resource,
                    session: text_at(record, "/session_id")
                        .unwrap_or_default()
                        .to_owned(),
                    high_risk: text_at(record, "/risk_tier") == Some("high"),
                    what,
                });
            }
            "ats.exception_created" if !self.reconciling => {
                let story = self.stories.entry(candidate.to_owned()).or_default();
                story.items.push(Item {
                    seq: record.seq,
                    id: text_at(record, "/item/id").unwrap_or_default().to_owned(),
                    owner: text_at(record, "/item/owner")
                        .unwrap_or_default()
                        .to_owned(),
                    due_at: text_at(record, "/item/due_at").map(str::to_owned),
                    created: crate::judge::run::record_time(record),
                    session: text_at(record, "/item/session_id").map(str::to_owned),
                    resolved: None,
                });
            }
            "ats.exception_resolved" => {
                let id = text_at(record, "/item/id").unwrap_or_default();
                if let Some(item) = self
                    .stories
                    .get_mut(candidate)
                    .and_then(|s| s.items.iter_mut().find(|i| i.id == id))
                {
                    item.resolved = Some(record.seq);
                }
            }
            "ats.access_granted" => {
                if let Some(story) = self.stories.get_mut(candidate) {
                    let resource = text_at(record, "/grant/resource").unwrap_or_default();
                    story.grants.push((record.seq, resource.to_owned()));
                }
            }
            "vendor.session_opened" => {
                let story = self.stories.entry(candidate.to_owned()).or_default();
                if let (Some(gate), Some(session)) = (story.gate, text_at(record, "/session_id")) {
                    story.sessions.insert(session.to_owned(), gate);
                }
            }
            "ats.stage_changed" => {
                let to = text_at(record, "/to").unwrap_or_default();
                if cx.plan.is_gated(to) {
                    self.stories.entry(candidate.to_owned()).or_default().gate =
                        Some(crate::run::policy::resource_of(to));
                }
            }
            _ => {}
        }
    }

    fn finish(self, cx: &Cx<'_>, out: &mut Verdict) {
        for (candidate, story) in &self.stories {
            for (k, trigger) in story.triggers.iter().enumerate() {
                if let Some(planned) = cx.plan.candidate(candidate) {
                    out.judged.insert(planned.scenario);
                }
                let until = story.triggers.get(k + 1).map_or(u64::MAX, |t| t.seq);
                let items: Vec<&Item> = story
                    .items
                    .iter()
                    .filter(|i| match &i.session {
                        Some(session) => *session == trigger.session,
                        None => i.seq > trigger.seq && i.seq < until,
                    })
                    .collect();
                let finding = |expected: String, seen: String, cites: Vec<u64>| Cited {
                    candidate: Some(candidate.clone()),
                    expected,
                    seen,
                    cites,
                };
                let [item] = items[..] else {
                    let cites = std::iter::once(trigger.seq)
                        .chain(items.iter().map(|i| i.seq))
                        .collect();
                    out.add(|| {
                        finding(
                            format!("exactly one exception item for {}", trigger.what),
                            format!("{} items", items.len()),
                            cites,
                        )
                    });
                    continue;
                };
                let owner = cx.plan.owner(trigger.high_risk);
                if item.owner != owner {
                    out.add(|| {
                        finding(
                            format!(
                                "the item owned by `{owner}` (the policy's {} owner)",
                                if trigger.high_risk {
                                    "highRisk"
                                } else {
                                    "default"
                                }
                            ),
                            format!("owned by `{}`", item.owner),
                            vec![trigger.seq, item.seq],
                        )
                    });
                }
                if let Some(created) = item.created {
                    let due =
                        crate::run::policy::review_due(&cx.plan.policy, created, trigger.high_risk);
                    let stated = item
                        .due_at
                        .as_deref()
                        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                        .map(|d| d.with_timezone(&Utc));
                    if stated.is_none_or(|s| (s - due).num_seconds().abs() > DUE_TOLERANCE_S) {
                        out.add(|| {
                            finding(
                                format!(
                                    "due at {} (exceptionReview)",
                                    crate::observe::format_time(due)
                                ),
                                format!("due_at {}", item.due_at.as_deref().unwrap_or("absent")),
                                vec![trigger.seq, item.seq],
                            )
                        });
                    }
                }
                // The stage under review stays shut until the item is resolved (other
                // grants are the identity gate's to judge).
                let open_until = item.resolved.unwrap_or(u64::MAX);
                if let Some(grant) = story
                    .grants
                    .iter()
                    .find(|(g, r)| {
                        *g > trigger.seq
                            && *g < open_until
                            && trigger.resource.is_none_or(|t| t == r)
                    })
                    .map(|(g, _)| *g)
                {
                    out.add(|| {
                        finding(
                            format!("no grant until {} is resolved", item.id),
                            "a grant while it was open".to_owned(),
                            vec![trigger.seq, item.seq, grant],
                        )
                    });
                }
            }
        }
        if out.judged.is_empty() {
            out.skip = Some(
                "no delivered result was review_required or carried a step-up signal".to_owned(),
            );
        }
    }
}
