//! `contract.required_fields`, `contract.enums`, `contract.assertions` and
//! `contract.schema`: every body that reached the ATS satisfies its contract, and, as
//! a self-check, so does every payload the mock vendor sent.
//!
//! The four checks are one judgement split by rule, so they share this module and a
//! single pass over the bodies ([`ContractPass`], computed once per run and kept by
//! [`Run`]); each check then only reads its own part. A body is judged at the time it
//! reached the ATS (its record's `at` is `now()`), so judging a recorded run again
//! later gives the same answer. For a body the ATS refused, the violations the ATS
//! recorded at the time are kept too (a body written to another candidate, a
//! contract the ATS does not consume). Events the plan drifted on purpose
//! ([`DRIFTED`], the `mapping-errors` scenario) are left out, in both copies: the ATS
//! must refuse them, and the kill-switch checks judge what the integration does next.

use std::collections::BTreeSet;

use chrono::Utc;
use serde_json::Value;

use super::run::{Outcome, Run, body, body_event_id, record_time};
use crate::contract::assertion::EvalContext;
use crate::contract::{Rule, Violation};
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

/// Where a judged body came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// A body the ATS received (`ats.event_applied` or `ats.event_rejected`).
    Ats(&'a Record),
    /// The mock vendor's copy, as planned.
    Vendor(&'a PlannedEvent),
}

/// One body's violations of one part.
#[derive(Debug)]
pub(crate) struct Broken<'a> {
    source: Source<'a>,
    /// The contract's name (or the body's `"type"` when it names none).
    contract: String,
    /// The contract's severity (`block-release` when no contract judges the body).
    severity: Severity,
    violations: Vec<Violation>,
}

/// Every body judged once, its violations sorted into the four parts.
#[derive(Debug, Default)]
pub(crate) struct ContractPass<'a> {
    broken: [Vec<Broken<'a>>; 4],
    judged: usize,
    scenarios: BTreeSet<Scenario>,
}

impl<'a> ContractPass<'a> {
    /// Judges every ATS body of the log, then every planned payload.
    pub(crate) fn new(run: &Run<'a>) -> Self {
        let mut pass = ContractPass::default();
        let end = EvalContext {
            now: run.last_at.unwrap_or_else(Utc::now),
        };
        for record in run.records {
            let rejected = match record.kind.as_str() {
                "ats.event_applied" => false,
                "ats.event_rejected" => true,
                _ => continue,
            };
            let Some(payload) = body(record) else {
                continue;
            };
            // A payload the harness drifted on purpose (`mapping-errors`) is the ATS's
            // to refuse and the kill switch's to count, not a contract defect.
            if body_event_id(record)
                .and_then(|id| run.event(id))
                .is_some_and(|e| e.perturbation == DRIFTED)
            {
                continue;
            }
            let ctx = record_time(record).map_or(end, |now| EvalContext { now });
            let mut violations = Vec::new();
            let (contract, severity) = judge_payload(run, payload, &ctx, &mut violations);
            if rejected {
                merge_recorded(record, &mut violations);
            }
            pass.judged += 1;
            if let Some(scenario) = run.scenario_of(record.candidate.as_deref()) {
                pass.scenarios.insert(scenario);
            }
            pass.file(Source::Ats(record), contract, severity, violations);
        }
        for event in run.plan.events.iter().filter(|e| e.perturbation != DRIFTED) {
            let mut violations = Vec::new();
            let (contract, severity) = judge_payload(run, &event.payload, &end, &mut violations);
            pass.judged += 1;
            pass.scenarios.insert(event.scenario);
            pass.file(Source::Vendor(event), contract, severity, violations);
        }
        pass
    }

    fn file(
        &mut self,
        source: Source<'a>,
        contract: String,
        severity: Severity,
        violations: Vec<Violation>,
    ) {
        let mut parts: [Vec<Violation>; 4] = Default::default();
        for violation in violations {
            parts[Part::of(violation.rule) as usize].push(violation);
        }
        for (i, violations) in parts.into_iter().enumerate() {
            if !violations.is_empty() {
                self.broken[i].push(Broken {
                    source,
                    contract: contract.clone(),
                    severity,
                    violations,
                });
            }
        }
    }
}

/// Checks one payload; returns its contract's name and severity.
fn judge_payload(
    run: &Run<'_>,
    payload: &Value,
    ctx: &EvalContext,
    violations: &mut Vec<Violation>,
) -> (String, Severity) {
    let contracts = &run.manifest.contracts;
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
pub(crate) fn required_fields(run: &Run<'_>) -> Outcome {
    judge_part(run, Part::RequiredFields)
}

/// `contract.enums`.
pub(crate) fn enums(run: &Run<'_>) -> Outcome {
    judge_part(run, Part::Enums)
}

/// `contract.assertions`.
pub(crate) fn assertions(run: &Run<'_>) -> Outcome {
    judge_part(run, Part::Assertions)
}

/// `contract.schema`.
pub(crate) fn schema(run: &Run<'_>) -> Outcome {
    judge_part(run, Part::Schema)
}

fn judge_part(run: &Run<'_>, part: Part) -> Outcome {
    let pass = run.contract_pass();
    if pass.judged == 0 {
        return Outcome::skip("no event reached the ATS and the plan holds no payloads");
    }
    let mut outcome = Outcome {
        scenarios: pass.scenarios.clone(),
        ..Outcome::default()
    };
    let mut severity: Option<Severity> = None;
    for broken in &pass.broken[part as usize] {
        severity = severity.max(Some(broken.severity));
        outcome.findings.add(|| finding(run, part, broken));
    }
    outcome.severity = Some(severity.unwrap_or_else(|| run.highest_contract_severity()));
    outcome
}

fn finding(run: &Run<'_>, part: Part, broken: &Broken<'_>) -> super::Finding {
    let messages: Vec<String> = broken
        .violations
        .iter()
        .map(|v| match &v.assertion {
            Some(source) => format!("{} (assertion `{source}`)", v.message),
            None => v.message.clone(),
        })
        .collect();
    let expected = part.expected(&broken.contract);
    match broken.source {
        Source::Ats(record) => {
            let event = body_event_id(record).unwrap_or("an event without an event_id");
            let what = if record.kind == "ats.event_rejected" {
                "was refused by the ATS (422)"
            } else {
                "was applied at the ATS"
            };
            let attempts = body_event_id(record).map_or(&[][..], |id| run.attempts_of(id));
            run.finding(
                record.candidate.as_deref(),
                record.correlation_id.as_deref(),
                expected,
                format!("{event} {what}: {}", messages.join("; ")),
                attempts.iter().copied().chain([record]),
            )
        }
        Source::Vendor(event) => run.finding(
            Some(&event.candidate),
            Some(&event.correlation_id),
            expected,
            format!(
                "the harness's own event {} (as the mock vendor sends it, before the integration sees it) breaks its contract: {} — a defect of stagegate's sandbox, not of the integration",
                event.event_id,
                messages.join("; ")
            ),
            run.attempts_of(&event.event_id).iter().copied(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::judge::test_support::{CANDIDATE, clean, manifest};
    use crate::judge::{CHECKS, Status};

    fn result(run: &Run<'_>, part: Part) -> crate::judge::CheckResult {
        let info = &CHECKS[part as usize];
        judge_part(run, part).into_result(info, Severity::BlockRelease)
    }

    #[test]
    fn correct_bodies_pass_every_part_at_the_highest_severity() {
        let manifest = manifest();
        let clean = clean();
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
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
            let mut body = clean.events[1].payload.clone();
            mutate(&mut body);
            clean.log.record_mut(clean.applied[1]).detail["body"] = body;
            let run = Run::new(&manifest, &clean.plan, clean.log.records());
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
            let kinds: Vec<&str> = finding.exchanges.iter().map(|e| e.kind.as_str()).collect();
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

    fn result_status(run: &Run<'_>, part: Part) -> Status {
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
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
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
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
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
        let mut drifted = clean.events[1].payload.clone();
        drifted["verification"]
            .as_object_mut()
            .map(|v| v.remove("risk_tier"));
        clean.plan.events[1].payload = drifted.clone();
        let seq = clean.applied[1];
        clean.log.record_mut(seq).kind = "ats.event_rejected".into();
        clean.log.record_mut(seq).detail["body"] = drifted;
        let run = Run::new(&manifest, &clean.plan, clean.log.records());
        assert_eq!(result(&run, Part::RequiredFields).status, Status::Pass);
    }

    #[test]
    fn nothing_to_judge_is_a_skip() {
        let manifest = manifest();
        let plan = crate::run::plan::Plan::default();
        let run = Run::new(&manifest, &plan, &[]);
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
