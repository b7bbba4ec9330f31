//! `contract.required_fields`, `contract.enums`, `contract.assertions` and
//! `contract.schema`: every body that reached the ATS satisfies its contract, and, as
//! a self-check, so does every payload the mock vendor sent.
//!
//! The four checks are one judgement split by rule, so they share this module and a
//! single pass over the bodies ([`ContractPass`], folded by the judge's [`Seen`] as
//! the log streams by); each check then only reads its own part. A body is judged at the time it
//! reached the ATS (its record's `at` is `now()`), so judging a recorded run again
//! later gives the same answer. For a body the ATS refused, the violations the ATS
//! recorded at the time are kept too (a body written to another candidate, a
//! contract the ATS does not consume). Events the plan drifted on purpose
//! ([`DRIFTED`], the `mapping-errors` scenario) are left out, in both copies: the ATS
//! must refuse them, and the kill-switch checks judge what the integration does next.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::FINDINGS_KEPT;
use super::fold::{Cite, Context, Fold, PlanIndex, records};
use super::run::{Outcome, body, body_event_id, highest_contract_severity, record_time};
use crate::contract::assertion::EvalContext;
use crate::contract::{Rule, Violation};
use crate::manifest::Manifest;
use crate::manifest::model::Severity;
use crate::observe::Record;
use crate::run::plan::{DRIFTED, PlannedEvent, Scenario};

/// Which of the four checks a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// `contract.required_fields`.
    RequiredFields = 0,
    /// `contract.enums`.
    Enums = 1,
    /// `contract.assertions`.
    Assertions = 2,
    /// `contract.schema` (also bodies no contract can judge).
    Schema = 3,
}

impl Part {
    fn of(rule: Rule) -> Part {
        match rule {
            Rule::RequiredField => Part::RequiredFields,
            Rule::Enum => Part::Enums,
            Rule::Assertion => Part::Assertions,
            Rule::Schema | Rule::UnknownType | Rule::Malformed => Part::Schema,
        }
    }

    fn expected(self, contract: &str) -> String {
        match self {
            Part::RequiredFields => {
                format!("every `{contract}` event carries every required field of its contract")
            }
            Part::Enums => {
                format!("every enum field of a `{contract}` event holds one of its allowed values")
            }
            Part::Assertions => {
                format!("every `{contract}` event satisfies its contract's assertions")
            }
            Part::Schema => format!(
                "every `{contract}` event names a contract the ATS consumes and validates against its JSON Schema"
            ),
        }
    }
}

/// A body that broke one part of its contract, as its finding will tell it.
#[derive(Debug)]
struct Broken {
    candidate: Option<String>,
    correlation_id: Option<String>,
    contract: String,
    seen: String,
    cites: Vec<Cite>,
}

/// What one part of the contracts found: the first [`FINDINGS_KEPT`] bodies in full,
/// the rest counted, and the highest severity among them.
#[derive(Debug, Default)]
struct PartFindings {
    kept: Vec<Broken>,
    total: usize,
    severity: Option<Severity>,
}

/// The one pass over every body the four contract checks share.
#[derive(Debug, Default)]
pub(crate) struct ContractPass {
    parts: [PartFindings; 4],
    judged: usize,
    scenarios: BTreeSet<Scenario>,
}

impl ContractPass {
    /// Judges the body of an `ats.event_applied` / `ats.event_rejected` record at the
    /// time it reached the ATS.
    pub(crate) fn record(&mut self, manifest: &Manifest, plan: &PlanIndex<'_>, record: &Record) {
        let rejected = match record.kind.as_str() {
            "ats.event_applied" => false,
            "ats.event_rejected" => true,
            _ => return,
        };
        let Some(payload) = body(record) else {
            return;
        };
        // A payload the harness drifted on purpose (`mapping-errors`) is the ATS's
        // to refuse and the kill switch's to count, not a contract defect.
        let event = body_event_id(record);
        if event
            .and_then(|id| plan.event(id))
            .is_some_and(|e| e.perturbation == DRIFTED)
        {
            return;
        }
        let now = record_time(record).unwrap_or_else(Utc::now);
        let mut violations = Vec::new();
        let (contract, severity) =
            judge_payload(manifest, payload, &EvalContext { now }, &mut violations);
        if rejected {
            merge_recorded(record, &mut violations);
        }
        self.judged += 1;
        if let Some(scenario) = plan.scenario_of(record.candidate.as_deref()) {
            self.scenarios.insert(scenario);
        }
        let what = if rejected {
            "was refused by the ATS (422)"
        } else {
            "was applied at the ATS"
        };
        let name = event.unwrap_or("an event without an event_id");
        self.file(contract, severity, violations, |messages| Broken {
            candidate: record.candidate.clone(),
            correlation_id: record.correlation_id.clone(),
            contract: String::new(),
            seen: format!("{name} {what}: {messages}"),
            cites: event
                .map(|e| Cite::Attempts(e.to_owned()))
                .into_iter()
                .chain(records([record.seq]))
                .collect(),
        });
    }

    /// Judges the vendor's own payloads, once the log has ended (its last record's time
    /// is `now()`).
    pub(crate) fn vendor_payloads(
        &mut self,
        manifest: &Manifest,
        plan: &PlanIndex<'_>,
        last_at: Option<DateTime<Utc>>,
    ) {
        let end = EvalContext {
            now: last_at.unwrap_or_else(Utc::now),
        };
        for event in plan
            .plan
            .events
            .iter()
            .filter(|e| e.perturbation != DRIFTED)
        {
            self.judged += 1;
            self.scenarios.insert(event.scenario);
            // A run's plan in memory leaves out the payloads that kept their contract
            // when they were synthesized (plan.json holds them, and a plan read back
            // is judged whole).
            if event.payload.is_null() {
                continue;
            }
            let mut violations = Vec::new();
            let (contract, severity) =
                judge_payload(manifest, &event.payload, &end, &mut violations);
            self.file(contract, severity, violations, |messages| {
                vendor_broken(event, messages)
            });
        }
    }

    /// Files each violation under its part; builds a finding only while it is kept.
    fn file(
        &mut self,
        contract: String,
        severity: Severity,
        violations: Vec<Violation>,
        broken: impl Fn(&str) -> Broken,
    ) {
        let mut parts: [Vec<Violation>; 4] = Default::default();
        for violation in violations {
            parts[Part::of(violation.rule) as usize].push(violation);
        }
        for (i, violations) in parts.into_iter().enumerate() {
            if violations.is_empty() {
                continue;
            }
            let part = &mut self.parts[i];
            part.total += 1;
            part.severity = part.severity.max(Some(severity));
            if part.kept.len() < FINDINGS_KEPT {
                let messages: Vec<String> = violations
                    .iter()
                    .map(|v| match &v.assertion {
                        Some(source) => format!("{} (assertion `{source}`)", v.message),
                        None => v.message.clone(),
                    })
                    .collect();
                part.kept.push(Broken {
                    contract: contract.clone(),
                    ..broken(&messages.join("; "))
                });
            }
        }
    }
}

fn vendor_broken(event: &PlannedEvent, messages: &str) -> Broken {
    Broken {
        candidate: Some(event.candidate.to_string()),
        correlation_id: Some(event.correlation_id.to_string()),
        contract: String::new(),
        seen: format!(
            "the harness's own event {} (as the mock vendor sends it, before the integration sees it) breaks its contract: {messages} — a defect of stagegate's sandbox, not of the integration",
            event.event_id
        ),
        cites: vec![Cite::Attempts(event.event_id.to_string())],
    }
}

/// Checks one payload; returns its contract's name and severity.
fn judge_payload(
    manifest: &Manifest,
    payload: &Value,
    ctx: &EvalContext,
    violations: &mut Vec<Violation>,
) -> (String, Severity) {
    let contracts = &manifest.contracts;
    match contracts.resolve(payload) {
        Ok(index) => {
            let contract = contracts.at(index);
            contract.check(payload, ctx, violations);
            (contract.name().as_str().to_owned(), contract.severity())
        }
        Err(violation) => {
            violations.push(violation);
            let named = payload.get("type").and_then(Value::as_str).unwrap_or("?");
            (named.to_owned(), Severity::BlockRelease)
        }
    }
}

/// Adds the violations the ATS recorded that judging the body again did not find.
fn merge_recorded(record: &Record, violations: &mut Vec<Violation>) {
    let Some(recorded) = record.detail.get("violations").and_then(Value::as_array) else {
        return;
    };
    for item in recorded {
        let text = |key: &str| item.get(key).and_then(Value::as_str);
        let Some(rule) = text("rule").and_then(rule_named) else {
            continue;
        };
        let path = text("path").unwrap_or_default();
        if violations.iter().any(|v| v.rule == rule && v.path == path) {
            continue;
        }
        violations.push(Violation {
            rule,
            path: path.to_owned(),
            message: text("message").unwrap_or("refused by the ATS").to_owned(),
            assertion: text("assertion").map(str::to_owned),
        });
    }
}

fn rule_named(name: &str) -> Option<Rule> {
    [
        Rule::RequiredField,
        Rule::Enum,
        Rule::Assertion,
        Rule::Schema,
        Rule::UnknownType,
        Rule::Malformed,
    ]
    .into_iter()
    .find(|r| r.as_str() == name)
}

/// `contract.required_fields`.
pub(crate) fn required_fields<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(PartCheck(Part::RequiredFields))
}

/// `contract.enums`.
pub(crate) fn enums<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(PartCheck(Part::Enums))
}

/// `contract.assertions`.
pub(crate) fn assertions<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(PartCheck(Part::Assertions))
}

/// `contract.schema`.
pub(crate) fn schema<'a>(_: &Context<'a>) -> Box<dyn Fold + 'a> {
    Box::new(PartCheck(Part::Schema))
}

/// One part of the shared contract pass, read once the log has ended.
struct PartCheck(Part);

impl Fold for PartCheck {
    fn record(&mut self, _: &Context<'_>, _: &Record) {}

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let part = self.0;
        let pass = &cx.seen.contracts;
        if pass.judged == 0 {
            return Outcome::skip("no event reached the ATS and the plan holds no payloads");
        }
        let mut outcome = Outcome {
            scenarios: pass.scenarios.clone(),
            ..Outcome::default()
        };
        let found = &pass.parts[part as usize];
        for broken in &found.kept {
            outcome.findings.add(|| {
                cx.finding(
                    broken.candidate.as_deref(),
                    broken.correlation_id.as_deref(),
                    part.expected(&broken.contract),
                    broken.seen.clone(),
                    broken.cites.iter().cloned(),
                )
            });
        }
        for _ in found.kept.len()..found.total {
            outcome.findings.count();
        }
        outcome.severity = Some(
            found
                .severity
                .unwrap_or_else(|| highest_contract_severity(cx.manifest)),
        );
        outcome
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::fold::run_one;
    use crate::judge::test_support::{CANDIDATE, clean, manifest};
    use crate::judge::{CHECKS, Status};
    use crate::run::plan::Plan;

    type Probe<'a> = (&'a Manifest, &'a Plan, &'a [Record]);

    fn result(run: &Probe<'_>, part: Part) -> crate::judge::CheckResult {
        let info = &CHECKS[part as usize];
        let make = match part {
            Part::RequiredFields => required_fields,
            Part::Enums => enums,
            Part::Assertions => assertions,
            Part::Schema => schema,
        };
        run_one(make, run.0, run.1, run.2).into_result(info, Severity::BlockRelease)
    }

    #[test]
    fn correct_bodies_pass_every_part_at_the_highest_severity() {
        let manifest = manifest();
        let clean = clean();
        let run = (&manifest, &clean.plan, clean.log.records());
        for part in [
            Part::RequiredFields,
            Part::Enums,
            Part::Assertions,
            Part::Schema,
        ] {
            let result = result(&run, part);
            assert_eq!(result.status, Status::Pass, "{part:?}: {result:#?}");
            assert_eq!(result.severity, Severity::BlockRelease, "{part:?}");
            assert_eq!(result.scenarios, [Scenario::Clean]);
        }
    }

    #[test]
    fn broken_bodies_fail_their_own_part_with_the_contracts_severity() {
        let manifest = manifest();
        // (mutation of the applied body, part that fails, text of the finding, why)
        type Mutation = fn(&mut Value);
        let rows: [(Mutation, Part, &str, &str); 4] = [
            (
                |b| {
                    b["verification"]
                        .as_object_mut()
                        .map(|v| v.remove("session_id"));
                },
                Part::RequiredFields,
                "missing required field `verification.session_id`",
                "a field dropped by the mapping",
            ),
            (
                |b| b["verification"]["result"] = json!("pass"),
                Part::Enums,
                "expected one of passed, failed, review_required",
                "an enum value mapped wrongly",
            ),
            (
                |b| b["occurred_at"] = json!("yesterday"),
                Part::Assertions,
                "assertion `occurred_at is RFC3339 and <= now()`",
                "a timestamp rewritten",
            ),
            (
                |b| b["type"] = json!("identity.verified"),
                Part::Schema,
                "no contract is called \"identity.verified\"",
                "a body naming no contract",
            ),
        ];
        for (mutate, part, needle, why) in rows {
            let mut clean = clean();
            let mut body = serde_json::Value::clone(&clean.events[1].payload);
            mutate(&mut body);
            clean.log.record_mut(clean.applied[1]).detail["body"] = body;
            let run = (&manifest, &clean.plan, clean.log.records());
            let result = result(&run, part);
            assert_eq!(result.status, Status::Fail, "{why}");
            assert_eq!(result.findings_total, 1, "{why}");
            let finding = &result.findings[0];
            assert!(finding.seen.contains(needle), "{why}: {}", finding.seen);
            assert!(
                finding.seen.starts_with(&format!(
                    "{} was applied at the ATS",
                    clean.events[1].event_id
                )),
                "{why}: {}",
                finding.seen
            );
            assert_eq!(finding.candidate.as_deref(), Some(CANDIDATE), "{why}");
            assert_eq!(finding.scenario, Some(Scenario::Clean), "{why}");
            assert_eq!(
                finding.correlation_id.as_deref(),
                Some("cor_CAND_003_cl"),
                "{why}"
            );
            let kinds = crate::judge::test_support::kinds(&finding.exchanges);
            assert_eq!(kinds, ["webhook.attempt", "ats.event_applied"], "{why}");
            for other in [
                Part::RequiredFields,
                Part::Enums,
                Part::Assertions,
                Part::Schema,
            ] {
                if other != part {
                    assert_eq!(
                        result_status(&run, other),
                        Status::Pass,
                        "{why}: {other:?} untouched"
                    );
                }
            }
        }
    }

    fn result_status(run: &Probe<'_>, part: Part) -> Status {
        result(run, part).status
    }

    #[test]
    fn a_warn_contract_fails_at_warn_and_refusals_keep_the_ats_reasons() {
        let manifest = manifest();
        let mut clean = clean();
        let assessment = json!({
            "type": "assessment.score.posted",
            "event_id": "evt_a", "idempotency_key": "idk_a",
            "occurred_at": "2026-05-18T09:30:00Z", "correlation_id": "cor_CAND_003_cl",
            "ats_candidate_id": "CAND_OTHER_cl",
            "assessment": {"attempt_id": "att_1", "language": "rust", "score": 140, "proctoring_flags": []},
            "evidence_pack": {"url": "https://vendor.example/v1/evidence-packs/ep_2"}
        });
        clean.log.rejected(
            CANDIDATE,
            &assessment,
            json!([{"rule": "assertion", "path": "/ats_candidate_id", "message": "the event is for `CAND_OTHER_cl` but was written to candidate `CAND_003_cl`"}]),
        );
        let run = (&manifest, &clean.plan, clean.log.records());
        let result = result(&run, Part::Assertions);
        assert_eq!(result.status, Status::Fail);
        assert_eq!(
            result.severity,
            Severity::Warn,
            "only the warn contract broke"
        );
        let seen = &result.findings[0].seen;
        assert!(
            seen.starts_with("evt_a was refused by the ATS (422)"),
            "{seen}"
        );
        assert!(
            seen.contains("which is not between 0 and 100"),
            "re-judged: {seen}"
        );
        assert!(
            seen.contains("was written to candidate `CAND_003_cl`"),
            "the ATS's own reason: {seen}"
        );
    }

    #[test]
    fn a_broken_planned_payload_is_the_harnesss_own_defect() {
        let manifest = manifest();
        let mut clean = clean();
        clean.plan.events[0].payload["verification"]["risk_tier"] = json!("extreme");
        let run = (&manifest, &clean.plan, clean.log.records());
        let result = result(&run, Part::Enums);
        assert_eq!(result.status, Status::Fail);
        let seen = &result.findings[0].seen;
        assert!(seen.contains("the harness's own event"), "{seen}");
        assert!(seen.contains("not of the integration"), "{seen}");
    }

    #[test]
    fn events_drifted_on_purpose_are_not_held_against_anyone() {
        let manifest = manifest();
        let mut clean = clean();
        clean.plan.events[1].perturbation = DRIFTED.into();
        let mut drifted = serde_json::Value::clone(&clean.events[1].payload);
        drifted["verification"]
            .as_object_mut()
            .map(|v| v.remove("risk_tier"));
        clean.plan.events[1].payload = drifted.clone().into();
        let seq = clean.applied[1];
        clean.log.record_mut(seq).kind = "ats.event_rejected".into();
        clean.log.record_mut(seq).detail["body"] = drifted;
        let run = (&manifest, &clean.plan, clean.log.records());
        assert_eq!(result(&run, Part::RequiredFields).status, Status::Pass);
    }

    #[test]
    fn nothing_to_judge_is_a_skip() {
        let manifest = manifest();
        let plan = crate::run::plan::Plan::default();
        let run = (&manifest, &plan, &[][..]);
        let result = result(&run, Part::Schema);
        assert_eq!(result.status, Status::Skip);
        assert!(
            result
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("no event reached the ATS"))
        );
    }
}
