//! What the checks share: their [`Outcome`], its [`Findings`], the readers of a
//! record's fields, and [`Run`], a part of the log held in memory and indexed.
//!
//! The judge streams the log ([`super::fold`]); only the kill-switch checks hold
//! records, those of the kill-switch scenarios (a fixed amount of traffic per fault
//! window, whatever the number of candidates), and judge them as a [`Run`]: sorted once
//! into the few lists and hash maps they need, so each is one linear sweep of its own.
//! Findings are built lazily by [`Findings::add`]: past [`FINDINGS_KEPT`] they are
//! only counted, so a badly broken integration costs no more to judge than a good one.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fold::{Cite, Cited};
use super::{CheckInfo, CheckResult, Exchange, FINDINGS_KEPT, Finding, Status};
use crate::contract::path::FieldPath;
use crate::manifest::Manifest;
use crate::manifest::model::Severity;
use crate::observe::Record;
use crate::run::plan::{Plan, PlannedCandidate, PlannedEvent, Scenario};

/// The most exchanges a finding carries: the first and the last few when there are more.
pub(crate) const EXCHANGES_KEPT: usize = 8;

/// The plan and the log, indexed for the checks.
pub(crate) struct Run<'a> {
    /// The manifest the run was made from.
    pub(crate) manifest: &'a Manifest,
    /// The run's plan.
    pub(crate) plan: &'a Plan,
    /// Every record, in log order.
    pub(crate) records: &'a [Record],
    candidates: HashMap<&'a str, &'a PlannedCandidate>,
    events: HashMap<&'a str, &'a PlannedEvent>,
    /// `ats.event_applied` records, in application order.
    pub(crate) applied: Vec<&'a Record>,
    /// `webhook.attempt` records, in log order.
    pub(crate) attempts: Vec<&'a Record>,
    applied_by_event: HashMap<&'a str, Vec<&'a Record>>,
    attempts_by_event: HashMap<&'a str, Vec<&'a Record>>,
    scenario_ends: HashMap<Scenario, &'a Record>,
    /// What the integration printed (`integration.stdout` / `integration.stderr`).
    pub(crate) output: Vec<&'a Record>,
    /// Whether the harness started the integration, so its output is in the log.
    pub(crate) output_visible: bool,
}

impl<'a> Run<'a> {
    /// Indexes a plan and its log.
    pub(crate) fn new(manifest: &'a Manifest, plan: &'a Plan, records: &'a [Record]) -> Self {
        let mut run = Run {
            manifest,
            plan,
            records,
            candidates: plan
                .candidates
                .iter()
                .map(|c| (c.candidate.as_str(), c))
                .collect(),
            events: plan
                .events
                .iter()
                .map(|e| (e.event_id.as_str(), e))
                .collect(),
            applied: Vec::new(),
            attempts: Vec::new(),
            applied_by_event: HashMap::new(),
            attempts_by_event: HashMap::new(),
            scenario_ends: HashMap::new(),
            output: Vec::new(),
            output_visible: false,
        };
        for record in records {
            match record.kind.as_str() {
                "ats.event_applied" => {
                    run.applied.push(record);
                    if let Some(id) = body_event_id(record) {
                        run.applied_by_event.entry(id).or_default().push(record);
                    }
                }
                "webhook.attempt" => {
                    run.attempts.push(record);
                    if let Some(id) = record.event_id.as_deref() {
                        run.attempts_by_event.entry(id).or_default().push(record);
                    }
                }
                "scenario.end" => {
                    if let Some(scenario) = scenario_in(record) {
                        run.scenario_ends.entry(scenario).or_insert(record);
                    }
                }
                "integration.stdout" | "integration.stderr" => run.output.push(record),
                "integration.ready" => run.output_visible = true,
                _ => {}
            }
        }
        run
    }

    /// The planned candidate with this id.
    pub(crate) fn candidate(&self, id: &str) -> Option<&'a PlannedCandidate> {
        self.candidates.get(id).copied()
    }

    /// The planned event with this id.
    pub(crate) fn event(&self, event_id: &str) -> Option<&'a PlannedEvent> {
        self.events.get(event_id).copied()
    }

    /// The `ats.event_applied` records of an event, in application order.
    pub(crate) fn applied_of(&self, event_id: &str) -> &[&'a Record] {
        self.applied_by_event
            .get(event_id)
            .map_or(&[], Vec::as_slice)
    }

    /// The `webhook.attempt` records of an event.
    pub(crate) fn attempts_of(&self, event_id: &str) -> &[&'a Record] {
        self.attempts_by_event
            .get(event_id)
            .map_or(&[], Vec::as_slice)
    }

    /// The `scenario.end` record of a scenario, if the run got that far.
    pub(crate) fn scenario_end(&self, scenario: Scenario) -> Option<&'a Record> {
        self.scenario_ends.get(&scenario).copied()
    }

    /// A finding about `candidate` (its scenario and correlation id looked up in the
    /// plan when the records do not say), with `exchanges` summed up oldest first.
    pub(crate) fn finding<'r>(
        &self,
        candidate: Option<&str>,
        correlation_id: Option<&str>,
        expected: impl Into<String>,
        seen: impl Into<String>,
        exchanges: impl IntoIterator<Item = &'r Record>,
    ) -> Finding {
        Finding {
            exchanges: summarize(exchanges),
            ..finding_about(
                candidate.and_then(|c| self.candidate(c)),
                candidate,
                correlation_id,
                expected,
                seen,
            )
        }
    }
}

/// A finding about `candidate` (its scenario, and its correlation id unless the records
/// say, from its place in the plan), with no exchanges yet.
pub(crate) fn finding_about(
    planned: Option<&PlannedCandidate>,
    candidate: Option<&str>,
    correlation_id: Option<&str>,
    expected: impl Into<String>,
    seen: impl Into<String>,
) -> Finding {
    Finding {
        scenario: planned.map(|c| c.scenario),
        candidate: candidate.map(str::to_owned),
        source_candidate: None,
        correlation_id: correlation_id
            .map(str::to_owned)
            .or_else(|| planned.map(|c| c.correlation_id.to_string())),
        expected: expected.into(),
        seen: seen.into(),
        exchanges: Vec::new(),
    }
}

/// The idempotency key an ATS write carries: the record's, else its body's.
pub(crate) fn key_of(record: &Record) -> Option<&str> {
    record
        .idempotency_key
        .as_deref()
        .or_else(|| body_text(record, "idempotency_key"))
}

/// The highest `on_failure.severity` of the manifest's contracts: the contract checks'
/// severity when none of their findings says otherwise.
pub(crate) fn highest_contract_severity(manifest: &Manifest) -> Severity {
    manifest
        .contracts
        .iter()
        .map(|c| c.severity())
        .max()
        .unwrap_or(Severity::BlockRelease)
}

/// The exchanges of a finding: oldest first, each record once, at most
/// [`EXCHANGES_KEPT`] (the first and the last ones of a longer story).
pub(crate) fn summarize<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<Exchange> {
    let records: HashMap<u64, &Record> = records.into_iter().map(|r| (r.seq, r)).collect();
    summarize_exchanges(records.keys().copied())
        .into_iter()
        .filter_map(|seq| records.get(&seq).map(|r| Exchange::from_record(r)))
        .collect()
}

/// Which of these records a finding shows: sorted, each once, the first and the last
/// ones when there are more than [`EXCHANGES_KEPT`].
pub(crate) fn summarize_exchanges(seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut seqs: Vec<u64> = seqs.into_iter().collect();
    seqs.sort_unstable();
    seqs.dedup();
    if seqs.len() > EXCHANGES_KEPT {
        let tail = EXCHANGES_KEPT / 2;
        seqs.drain(EXCHANGES_KEPT - tail..seqs.len() - tail);
    }
    seqs
}

/// The body an `ats.event_applied` / `ats.event_rejected` record carries.
pub(crate) fn body(record: &Record) -> Option<&Value> {
    record.detail.get("body").filter(|b| !b.is_null())
}

/// A text field of a record's body.
pub(crate) fn body_text<'r>(record: &'r Record, key: &str) -> Option<&'r str> {
    body(record)
        .and_then(|b| b.get(key))
        .and_then(Value::as_str)
}

/// The text at a dotted path of a record's body (an envelope field).
pub(crate) fn body_at<'r>(record: &'r Record, path: &FieldPath) -> Option<&'r str> {
    body(record)
        .and_then(|b| path.lookup(b))
        .and_then(Value::as_str)
}

/// The `event_id` of an ATS write: the record's, else its body's.
pub(crate) fn body_event_id(record: &Record) -> Option<&str> {
    record
        .event_id
        .as_deref()
        .or_else(|| body_text(record, "event_id"))
}

/// A text field of a record's detail.
pub(crate) fn detail_text<'r>(record: &'r Record, key: &str) -> Option<&'r str> {
    record.detail.get(key).and_then(Value::as_str)
}

/// The scenario a `scenario.start` / `scenario.end` record names.
pub(crate) fn scenario_in(record: &Record) -> Option<Scenario> {
    record
        .detail
        .get("scenario")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

/// When a record was logged.
pub(crate) fn record_time(record: &Record) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&record.at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// "1 time", "3 times".
pub(crate) fn times(n: usize) -> String {
    if n == 1 {
        "1 time".to_owned()
    } else {
        format!("{n} times")
    }
}

/// Findings of one check: every one counted, the first [`FINDINGS_KEPT`] kept with the
/// records they cite (read back from the log once the pass is over).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    total: usize,
    kept: Vec<Finding>,
    cites: Vec<Vec<Cite>>,
}

impl Findings {
    /// Counts a finding, and builds it only if it is among the kept ones.
    pub(crate) fn add<C: Into<Cited>>(&mut self, make: impl FnOnce() -> C) {
        self.total += 1;
        if self.kept.len() < FINDINGS_KEPT {
            let cited = make().into();
            self.kept.push(cited.finding);
            self.cites.push(cited.cites);
        }
    }

    /// Counts a finding that is not kept (the check already kept enough).
    pub(crate) fn count(&mut self) {
        self.total += 1;
    }

    /// Each kept finding with the records it cites, which are handed over.
    pub(crate) fn cited_mut(&mut self) -> impl Iterator<Item = (&mut Finding, Vec<Cite>)> {
        self.kept
            .iter_mut()
            .zip(self.cites.iter_mut().map(std::mem::take))
    }

    /// How many findings there were.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The kept findings.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> &[Finding] {
        &self.kept
    }

    /// What each kept finding saw.
    #[cfg(test)]
    pub(crate) fn seen(&self) -> Vec<&str> {
        self.kept.iter().map(|f| f.seen.as_str()).collect()
    }
}

/// What one check concluded, before the manifest's setting is applied.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Why nothing was judged, if nothing was.
    pub(crate) skipped: Option<String>,
    /// What was wrong.
    pub(crate) findings: Findings,
    /// The scenarios whose records were judged.
    pub(crate) scenarios: BTreeSet<Scenario>,
    /// The check's own severity, when it is not the default (the contract checks).
    pub(crate) severity: Option<Severity>,
}

impl Outcome {
    /// Nothing to judge, and why.
    pub(crate) fn skip(reason: impl Into<String>) -> Self {
        Outcome {
            skipped: Some(reason.into()),
            ..Outcome::default()
        }
    }

    /// Notes that records of `scenario` were judged.
    pub(crate) fn judged(&mut self, scenario: Option<Scenario>) {
        if let Some(scenario) = scenario {
            self.scenarios.insert(scenario);
        }
    }

    /// The check's result with `default_severity` unless the check set its own.
    pub(crate) fn into_result(self, info: &CheckInfo, default_severity: Severity) -> CheckResult {
        let status = match (&self.skipped, self.findings.total) {
            (Some(_), _) => Status::Skip,
            (None, 0) => Status::Pass,
            (None, _) => Status::Fail,
        };
        CheckResult {
            id: info.id.to_owned(),
            passes_when: info.passes_when.to_owned(),
            status,
            severity: self.severity.unwrap_or(default_severity),
            overridden: false,
            required: false,
            reason: self.skipped,
            scenarios: self.scenarios.into_iter().collect(),
            findings_total: self.findings.total,
            findings: self.findings.kept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::test_support::Log;
    use crate::observe::Actor;

    #[test]
    fn long_stories_keep_their_beginning_and_end() {
        let mut log = Log::default();
        for _ in 0..20 {
            log.push(Actor::Harness, "tick", |_| {});
        }
        let records = log.records();
        // Given out of order and twice: sorted and deduplicated first.
        let exchanges = summarize(records.iter().rev().chain(records.iter().take(3)));
        let seqs: Vec<u64> = exchanges.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 16, 17, 18, 19]);
        assert_eq!(summarize(records.iter().take(3)).len(), 3);
    }
}
