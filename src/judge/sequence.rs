//! `sequence.expected`: in the clean scenario, each in-scope candidate's events
//! reached the ATS as its `expected_sequence` says.
//!
//! Applied events are read in application order as `contract` or `contract:value`.
//! The value comes from the body, not from the plan: the planned outcome (or the
//! expected entry at that position) only says which enum field to read, so an
//! integration that maps `review_required` to `passed` shows up here even though
//! `passed` is a valid enum value.

use std::collections::HashMap;

use serde_json::Value;
use smallvec::SmallVec;

use super::fold::{Cite, Context, Fold, records, skipped};
use super::run::{Outcome, body, body_event_id, body_text, detail_text};
use crate::observe::Record;
use crate::run::plan::{PlannedCandidate, Scenario, Text};

/// How an applied event reads in a sequence.
fn read(cx: &Context<'_>, record: &Record, expected_here: Option<&str>) -> String {
    let Some(contract) = detail_text(record, "contract").or_else(|| body_text(record, "type"))
    else {
        return "(an event naming no contract)".to_owned();
    };
    let planned_outcome = body_event_id(record)
        .and_then(|id| cx.plan.event(id))
        .and_then(|e| e.outcome.as_deref());
    let hinted = expected_here
        .and_then(|entry| entry.split_once(':'))
        .filter(|(c, _)| c.trim() == contract)
        .map(|(_, v)| v.trim());
    let Some(value) = planned_outcome.or(hinted) else {
        return contract.to_owned();
    };
    let field = cx.manifest.contracts.get(contract).and_then(|c| {
        c.enums()
            .iter()
            .find(|(_, values)| values.iter().any(|v| v == value))
            .map(|(path, _)| path)
    });
    match (field, body(record)) {
        (Some(path), Some(payload)) => match path.lookup(payload) {
            Some(Value::String(read)) => format!("{contract}:{read}"),
            Some(other) => format!("{contract}:{other}"),
            None => format!("{contract}:(no {path})"),
        },
        _ => format!("{contract}:{value}"),
    }
}

fn arrows<T: AsRef<str>>(items: &[T]) -> String {
    if items.is_empty() {
        "nothing".to_owned()
    } else {
        let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        items.join(" → ")
    }
}

/// `sequence.expected`.
pub(crate) fn check<'a>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    let plan = cx.plan.plan;
    let clean = plan
        .candidates
        .iter()
        .filter(|c| c.scenario == Scenario::Clean);
    if clean.clone().next().is_none() {
        return skipped("no clean scenario in this run");
    }
    if !clean.clone().any(|c| c.in_scope) {
        return skipped("no candidate of the clean scenario is inside the canary scope");
    }
    // One story per planned candidate, by its place in the plan: no key, no hashing.
    let stories = plan
        .candidates
        .iter()
        .map(|c| Story {
            judged: c.scenario == Scenario::Clean && c.in_scope,
            seen: SmallVec::new(),
            applied: SmallVec::new(),
        })
        .collect();
    Box::new(Sequence { stories })
}

/// What the ATS applied for one planned candidate (kept for the judged ones only).
struct Story {
    /// Whether the candidate is judged: in the clean scenario and in scope.
    judged: bool,
    /// Each application read as `contract:value`: the plan's entry when it reads as
    /// expected (nearly always), so a large run's stories allocate nothing per event.
    seen: SmallVec<[Text; 2]>,
    applied: SmallVec<[u64; 2]>,
}

struct Sequence {
    stories: Vec<Story>,
}

impl Fold for Sequence {
    fn record(&mut self, cx: &Context<'_>, record: &Record) {
        if record.kind != "ats.event_applied" {
            return;
        }
        let Some(place) = record
            .candidate
            .as_deref()
            .and_then(|c| cx.plan.candidate_index(c))
        else {
            return;
        };
        let story = &mut self.stories[place as usize];
        if !story.judged {
            return;
        }
        let expected = &cx.plan.plan.candidates[place as usize].expected_sequence;
        let here = expected.get(story.seen.len());
        let seen = read(cx, record, here.map(Text::as_str));
        story.seen.push(match here {
            Some(entry) if *entry == seen => entry.clone(),
            _ => seen.into(),
        });
        story.applied.push(record.seq);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let mut outcome = Outcome::default();
        outcome.judged(Some(Scenario::Clean));
        let candidates = &cx.plan.plan.candidates;
        // In the plan's order, as a reader of the report expects.
        let differ: Vec<(&PlannedCandidate, &Story)> = candidates
            .iter()
            .zip(&self.stories)
            .filter(|(candidate, story)| {
                story.judged && story.seen.as_slice() != &candidate.expected_sequence[..]
            })
            .collect();
        if differ.is_empty() {
            return outcome;
        }
        // The deliveries of each differing candidate's planned events, for the stories.
        let mut planned: HashMap<&str, Vec<&str>> = differ
            .iter()
            .map(|(c, _)| (c.candidate.as_str(), Vec::new()))
            .collect();
        for event in &cx.plan.plan.events {
            if let Some(ids) = planned.get_mut(event.candidate.as_str()) {
                ids.push(event.event_id.as_str());
            }
        }
        for (candidate, story) in differ {
            let seen = &story.seen;
            outcome.findings.add(|| {
                let expected = &candidate.expected_sequence;
                let at = expected
                    .iter()
                    .zip(seen)
                    .position(|(e, s)| e != s)
                    .unwrap_or(expected.len().min(seen.len()));
                let difference = match (expected.get(at), seen.get(at)) {
                    (Some(e), Some(s)) => format!("event {} is {s}, not {e}", at + 1),
                    (Some(e), None) => format!("{e} (event {}) never came", at + 1),
                    (None, Some(s)) => format!("{s} (event {}) is one too many", at + 1),
                    (None, None) => "the sequences differ".to_owned(),
                };
                cx.finding(
                    Some(&candidate.candidate),
                    Some(&candidate.correlation_id),
                    format!(
                        "the ATS receives {}'s events as its expected_sequence says: {}",
                        candidate.candidate,
                        arrows(expected)
                    ),
                    format!("the ATS applied {}: {difference}", arrows(seen)),
                    planned
                        .get(candidate.candidate.as_str())
                        .into_iter()
                        .flatten()
                        .map(|id| Cite::Attempts((*id).to_owned()))
                        .chain(records(story.applied.iter().copied())),
                )
            });
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use crate::judge::fold::run_one;
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest, passes_on_clean};

    #[test]
    fn the_expected_sequence_applied_passes() {
        passes_on_clean(check);
    }

    #[test]
    fn a_remapped_outcome_is_read_from_the_body() {
        let manifest = manifest();
        let mut clean = clean();
        clean.log.record_mut(clean.applied[0]).detail["body"]["verification"]["result"] =
            json!("passed");
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert_eq!(outcome.findings.total(), 1);
        let finding = &outcome.findings.kept()[0];
        assert_eq!(
            finding.expected,
            "the ATS receives CAND_003_cl's events as its expected_sequence says: \
             identity.verification.completed:failed → identity.verification.completed:passed"
        );
        assert_eq!(
            finding.seen,
            "the ATS applied identity.verification.completed:passed → identity.verification.completed:passed: \
             event 1 is identity.verification.completed:passed, not identity.verification.completed:failed"
        );
        assert_eq!(finding.candidate.as_deref(), Some(CANDIDATE));
        let kinds = crate::judge::test_support::kinds(&finding.exchanges);
        assert_eq!(
            kinds,
            [
                "webhook.attempt",
                "ats.event_applied",
                "webhook.attempt",
                "ats.event_applied"
            ],
            "the deliveries and what the ATS applied"
        );
    }

    #[test]
    fn a_missing_event_is_named() {
        let manifest = manifest();
        let mut clean = clean();
        clean.log.record_mut(clean.applied[1]).kind = "ats.event_rejected".into();
        let run = (&manifest, &clean.plan, clean.log.records());
        let outcome = run_one(check, run.0, run.1, run.2);
        assert!(
            outcome.findings.kept()[0]
                .seen
                .ends_with("identity.verification.completed:passed (event 2) never came"),
            "{}",
            outcome.findings.kept()[0].seen
        );
    }

    #[test]
    fn without_a_clean_scenario_there_is_nothing_to_judge() {
        let manifest = manifest();
        let mut clean = clean();
        clean.plan.candidates[0].scenario = Scenario::Duplicates;
        let run = (&manifest, &clean.plan, clean.log.records());
        assert_eq!(
            run_one(check, run.0, run.1, run.2).skipped.as_deref(),
            Some("no clean scenario in this run")
        );
    }
}
