//! The judge: every check of docs/integration-protocol.md §5 as a fold over the
//! observation log, given the manifest and the run's plan.
//!
//! Judging is separate from driving so a recorded run (its `plan.json` and
//! `observation.jsonl`) can be judged again offline, and so each check can be
//! unit-tested on a handful of hand-made records.
//!
//! [`judge_log`] streams the log once ([`fold`]): each check is a fold with compact
//! state (per event, a few numbers and strings) that cites records by `seq`, and the
//! cited records of the kept findings are read back in one more pass, so the log is
//! never held whole and the judge's memory follows the number of events. A check is a
//! fold in a module of its own; only the four contract checks share one pass over the
//! bodies. The manifest's `checks:` section is applied last, here, so no check needs
//! to know about overrides.

mod ack_sla;
mod canary;
mod contracts;
mod exactly_once;
mod exchange;
pub(crate) mod fold;
mod key_stable;
mod kill_switch;
mod log_fields;
mod no_loss;
mod ordering;
mod pii;
pub(crate) mod policy;
mod run;
mod sequence;
mod signature;
#[cfg(test)]
pub(crate) mod test_support;

use std::fmt;
use std::path::Path;

pub use crate::catalog::{CHECKS, CheckInfo, check_info};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::manifest::model::Severity;
use crate::observe::{Actor, Record};
use crate::run::plan::{Plan, Scenario};
use crate::verdict::Verdict;

pub use fold::JudgeError;

/// The fold that judges each check of [`CHECKS`], in the same order.
const JUDGES: &[(&str, fold::MakeFold)] = &[
    ("contract.required_fields", contracts::required_fields),
    ("contract.enums", contracts::enums),
    ("contract.assertions", contracts::assertions),
    ("contract.schema", contracts::schema),
    ("delivery.ack_sla", ack_sla::check),
    ("idempotency.exactly_once", exactly_once::check),
    ("idempotency.key_stable", key_stable::check),
    ("delivery.no_loss", no_loss::check),
    ("ordering.no_regression", ordering::check),
    ("sequence.expected", sequence::check),
    ("signature.enforced", signature::check),
    ("canary.scope", canary::check),
    ("observability.log_fields", log_fields::check),
    ("privacy.no_pii_in_logs", pii::check),
    ("kill_switch.trips", kill_switch::trips),
    ("kill_switch.queue_replay", kill_switch::queue_replay),
    (
        "kill_switch.gates_not_paused",
        kill_switch::gates_not_paused,
    ),
    (
        "policy.stage_event_idempotency",
        policy::make::<policy::StageEventIdempotency>,
    ),
    ("policy.fanout_sla", policy::make::<policy::FanoutSla>),
    ("policy.identity_gate", policy::make::<policy::IdentityGate>),
    ("policy.step_up", policy::make::<policy::StepUp>),
    ("policy.log_fields", policy::make::<policy::LogFields>),
    ("policy.signature", policy::make::<policy::Signature>),
    (
        "policy.reconciliation",
        policy::make::<policy::Reconciliation>,
    ),
];

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing wrong was seen.
    Pass,
    /// At least one finding.
    Fail,
    /// Not judged: turned off by the manifest, or nothing in the run to judge.
    Skip,
}

impl Status {
    /// The status's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of the observation log that led to a finding, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Exchange {
    /// The record's `seq` in `observation.jsonl`.
    pub seq: u64,
    /// Milliseconds since the run started.
    pub elapsed_ms: f64,
    /// Who produced it.
    pub actor: Actor,
    /// The record's kind (`webhook.attempt`, `ats.event_applied`, …).
    pub kind: String,
    /// The HTTP status, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// One line for people (`POST /v1/candidates/…/events → 201`, `copy 2 of evt_…`).
    pub summary: String,
}

/// One thing a check found wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// The scenario it was seen in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
    /// The candidate concerned (the scenario copy's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The sandbox candidate that copy was made from (the manifest's or dataset's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_candidate: Option<String>,
    /// The flow's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// What a correct integration does.
    pub expected: String,
    /// What was seen instead.
    pub seen: String,
    /// The records that led there, oldest first.
    pub exchanges: Vec<Exchange>,
}

/// How many findings a check keeps in full; the rest are only counted, so a badly
/// broken integration still gives a readable report.
pub const FINDINGS_KEPT: usize = 25;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// The stable id.
    pub id: String,
    /// When it passes, in one line.
    pub passes_when: String,
    /// The outcome.
    pub status: Status,
    /// What a failure does to the verdict.
    pub severity: Severity,
    /// Whether the manifest set the severity or turned the check off.
    pub overridden: bool,
    /// Whether a skip blocks the release (`checks: {ID: {required: true}}` or
    /// `--require-all`): a required check that could not be judged is not a pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Why the check was skipped, or the manifest's reason for an override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The scenarios whose records it judged.
    pub scenarios: Vec<Scenario>,
    /// How many findings there were in all.
    pub findings_total: usize,
    /// The first [`FINDINGS_KEPT`] findings.
    pub findings: Vec<Finding>,
}

impl CheckResult {
    /// Whether this check was not judged although the release requires it.
    pub fn blocks_as_skip(&self) -> bool {
        self.required && self.status == Status::Skip
    }
}

/// The verdict that follows from check results: a failed check blocks or warns by its
/// severity, and a required check that was skipped blocks.
pub fn verdict_of(checks: &[CheckResult]) -> Verdict {
    checks
        .iter()
        .filter_map(|c| match c.status {
            Status::Fail => Some(match c.severity {
                Severity::Warn => Verdict::Warn,
                Severity::BlockRelease => Verdict::Blocked,
            }),
            Status::Skip if c.required => Some(Verdict::Blocked),
            Status::Skip | Status::Pass => None,
        })
        .max()
        .unwrap_or(Verdict::Pass)
}

/// The judgement of a whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// Pass, warn (only `warn` checks failed) or blocked.
    pub verdict: Verdict,
    /// Every check of [`CHECKS`], in that order.
    pub checks: Vec<CheckResult>,
}

impl Judgement {
    /// The verdict that follows from a list of check results.
    pub fn from_checks(checks: Vec<CheckResult>) -> Self {
        Judgement {
            verdict: verdict_of(&checks),
            checks,
        }
    }

    /// Makes every check required (`--require-all`): a skip then blocks the release.
    pub fn require_all(&mut self) {
        for check in &mut self.checks {
            check.required = true;
        }
        self.verdict = verdict_of(&self.checks);
    }

    /// The checks that were not judged although they are required.
    pub fn required_skips(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.blocks_as_skip())
    }

    /// The result of the check with this id.
    pub fn check(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

/// Judges a run held in memory: every check of [`CHECKS`] over the plan and the
/// records, with the severities and switches of the manifest's `checks:` section.
pub fn judge(manifest: &Manifest, plan: &Plan, records: &[Record]) -> Judgement {
    judge_source(manifest, plan, records).expect("records in memory are always readable")
}

/// Judges a run from its observation log file, streamed: the log is read once for the
/// checks and once more for the records the kept findings cite, and never held whole.
/// The log's hash chain is verified on the way; a broken chain is an error.
pub fn judge_log(manifest: &Manifest, plan: &Plan, log: &Path) -> Result<Judgement, JudgeError> {
    judge_source(manifest, plan, log)
}

fn judge_source<L: fold::LogSource + ?Sized>(
    manifest: &Manifest,
    plan: &Plan,
    log: &L,
) -> Result<Judgement, JudgeError> {
    // A check turned off by the manifest is not folded at all.
    let makes: Vec<Option<fold::MakeFold>> = CHECKS
        .iter()
        .map(|info| {
            let off = manifest
                .raw
                .checks
                .get(info.id)
                .is_some_and(|s| s.disabled());
            JUDGES
                .iter()
                .find(|(id, _)| *id == info.id)
                .map(|(_, make)| *make)
                .filter(|_| !off)
        })
        .collect();
    let outcomes = fold::fold_all(manifest, plan, log, &makes)?;
    let highest = run::highest_contract_severity(manifest);
    let mut checks: Vec<CheckResult> = CHECKS
        .iter()
        .zip(outcomes)
        .map(|(info, outcome)| judge_one(manifest, info, outcome, highest))
        .collect();
    // Findings name the scenario copy; readers look for the candidate they wrote.
    let sources: std::collections::HashMap<&str, &str> = plan
        .candidates
        .iter()
        .filter(|c| !c.source.is_empty())
        .map(|c| (c.candidate.as_str(), c.source.as_str()))
        .collect();
    for finding in checks.iter_mut().flat_map(|c| c.findings.iter_mut()) {
        finding.source_candidate = finding
            .candidate
            .as_deref()
            .and_then(|c| sources.get(c))
            .map(|s| (*s).to_owned());
    }
    Ok(Judgement::from_checks(checks))
}

/// One check's result, with the manifest's setting for it applied.
fn judge_one(
    manifest: &Manifest,
    info: &CheckInfo,
    outcome: Option<run::Outcome>,
    highest_contract_severity: Severity,
) -> CheckResult {
    let setting = manifest.raw.checks.get(info.id);
    let default_severity = if info.id.starts_with("contract.") {
        highest_contract_severity
    } else {
        Severity::BlockRelease
    };
    let mut result = match (setting.filter(|s| s.disabled()), outcome) {
        (Some(off), _) => CheckResult {
            id: info.id.to_owned(),
            passes_when: info.passes_when.to_owned(),
            status: Status::Skip,
            severity: default_severity,
            overridden: true,
            required: false,
            reason: Some(
                off.reason
                    .clone()
                    .unwrap_or_else(|| "turned off by the manifest".to_owned()),
            ),
            scenarios: Vec::new(),
            findings_total: 0,
            findings: Vec::new(),
        },
        (None, Some(outcome)) => outcome.into_result(info, default_severity),
        (None, None) => run::Outcome::skip(format!("`{}` has no judge in this build", info.id))
            .into_result(info, default_severity),
    };
    result.required = setting.is_some_and(|s| s.required == Some(true));
    if let Some((severity, setting)) =
        setting.and_then(|s| s.severity.filter(|_| !s.disabled()).map(|v| (v, s)))
    {
        result.severity = severity;
        result.overridden = true;
        result.reason = match (result.reason.take(), &setting.reason) {
            (Some(skipped), Some(why)) => Some(format!(
                "{skipped} (the manifest sets severity {severity}: {why})"
            )),
            (Some(skipped), None) => Some(skipped),
            (None, why) => why.clone(),
        };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::test_support::{clean, manifest, manifest_edited};

    #[test]
    fn every_check_has_a_judge_in_report_order() {
        let ids: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
        let judged: Vec<&str> = JUDGES.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, judged);
    }

    #[test]
    fn a_correct_run_passes_and_skips_what_it_cannot_judge() {
        let manifest = manifest();
        let clean = clean();
        let judgement = judge(&manifest, &clean.plan, clean.log.records());
        assert_eq!(judgement.verdict, Verdict::Pass, "{judgement:#?}");
        let statuses: Vec<(&str, Status)> = judgement
            .checks
            .iter()
            .map(|c| (c.id.as_str(), c.status))
            .collect();
        let skipped: Vec<&str> = statuses
            .iter()
            .filter(|(_, s)| *s == Status::Skip)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            skipped,
            [
                "signature.enforced",
                "canary.scope",
                "kill_switch.trips",
                "kill_switch.queue_replay",
                "kill_switch.gates_not_paused",
                // No policy in the plan: the policy checks say how to enable them.
                "policy.stage_event_idempotency",
                "policy.fanout_sla",
                "policy.identity_gate",
                "policy.step_up",
                "policy.log_fields",
                "policy.signature",
                "policy.reconciliation",
            ],
            "{statuses:?}"
        );
        assert!(judgement.checks.iter().all(|c| c.findings_total == 0));
        assert!(
            judgement
                .checks
                .iter()
                .filter(|c| c.status == Status::Skip)
                .all(|c| c.reason.is_some()),
            "every skip says why"
        );
    }

    #[test]
    fn the_manifest_overrides_severities_and_turns_checks_off() {
        let manifest = manifest_edited(
            "observability:",
            "checks:\n  delivery.ack_sla: {severity: warn, reason: \"shared CI runners are slow\"}\n  \
             privacy.no_pii_in_logs: {enabled: false, reason: \"the fixture prints names on purpose\"}\n  \
             canary.scope: {severity: warn}\nobservability:",
        );
        let mut clean = clean();
        let event = clean.events[0].clone();
        clean.log.attempt(&event, 1, Some(200), 4000.0);
        clean.log.line("stdout", "hello Zoë Ğürsoy");
        let judgement = judge(&manifest, &clean.plan, clean.log.records());
        let ack = judgement.check("delivery.ack_sla").expect("judged");
        assert_eq!(ack.status, Status::Fail);
        assert_eq!(ack.severity, Severity::Warn);
        assert!(ack.overridden);
        assert_eq!(ack.reason.as_deref(), Some("shared CI runners are slow"));
        let pii = judgement.check("privacy.no_pii_in_logs").expect("judged");
        assert_eq!(pii.status, Status::Skip);
        assert!(pii.overridden);
        assert_eq!(
            pii.reason.as_deref(),
            Some("the fixture prints names on purpose")
        );
        let canary = judgement.check("canary.scope").expect("judged");
        assert_eq!(canary.status, Status::Skip);
        assert_eq!(canary.severity, Severity::Warn);
        assert!(
            canary
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("no candidate of this run is outside")),
            "the check's own reason to skip is kept: {:?}",
            canary.reason
        );
        assert_eq!(judgement.verdict, Verdict::Warn, "only a warn check failed");
    }

    #[test]
    fn a_required_check_that_skips_blocks_and_says_so() {
        // The clean run has no out-of-scope candidate, so canary.scope cannot be judged.
        let manifest = manifest_edited(
            "observability:",
            "checks:\n  canary.scope: {required: true}\nobservability:",
        );
        let clean = clean();
        let judgement = judge(&manifest, &clean.plan, clean.log.records());
        let canary = judgement.check("canary.scope").expect("judged");
        assert_eq!(canary.status, Status::Skip);
        assert!(canary.required && canary.blocks_as_skip());
        assert_eq!(
            judgement.verdict,
            Verdict::Blocked,
            "a required skip blocks"
        );
        assert_eq!(
            judgement
                .required_skips()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["canary.scope"]
        );

        // Without the setting the same run passes; --require-all blocks it again.
        let mut judgement = judge(
            &super::test_support::manifest(),
            &clean.plan,
            clean.log.records(),
        );
        assert_eq!(judgement.verdict, Verdict::Pass);
        judgement.require_all();
        assert_eq!(judgement.verdict, Verdict::Blocked);
        assert!(judgement.required_skips().count() >= 1);
    }

    #[test]
    fn findings_name_the_candidate_a_copy_was_made_from() {
        let manifest = manifest();
        let mut clean = clean();
        for candidate in &mut clean.plan.candidates {
            candidate.source = format!("SRC_{}", candidate.candidate).into();
        }
        let event = clean.events[0].clone();
        clean.log.attempt(&event, 1, Some(200), 4000.0);
        let judgement = judge(&manifest, &clean.plan, clean.log.records());
        let finding = &judgement
            .check("delivery.ack_sla")
            .expect("judged")
            .findings[0];
        let copy = finding.candidate.as_deref().expect("a candidate");
        assert_eq!(
            finding.source_candidate.as_deref(),
            Some(format!("SRC_{copy}").as_str())
        );
    }

    #[test]
    fn contract_checks_take_their_contracts_severity() {
        let manifest = manifest();
        let clean = clean();
        let judgement = judge(&manifest, &clean.plan, clean.log.records());
        for id in ["contract.required_fields", "contract.schema"] {
            let check = judgement.check(id).expect("judged");
            assert_eq!(check.severity, Severity::BlockRelease, "{id}: the highest");
            assert!(!check.overridden);
        }
    }

    /// A correct clean run of `n` candidates, two events each.
    fn many(n: usize) -> (crate::run::plan::Plan, crate::judge::test_support::Log) {
        use crate::judge::test_support::{Log, PlanBuilder};
        let mut plan = PlanBuilder::default();
        let mut log = Log::default();
        log.ready();
        log.scenario("scenario.start", crate::run::plan::Scenario::Clean);
        for i in 0..n {
            let id = format!("CAND_{i:06}_cl");
            plan.candidate(
                crate::run::plan::Scenario::Clean,
                &id,
                true,
                &[
                    "identity.verification.completed:failed",
                    "identity.verification.completed:passed",
                ],
            );
            for (k, outcome) in [(1, "failed"), (2, "passed")] {
                let event = plan.event(&id, k, outcome);
                log.attempt(&event, 0, Some(200), 3.0);
                log.applied(&id, &event.payload);
                log.event_line(&event.payload);
            }
        }
        log.scenario("scenario.end", crate::run::plan::Scenario::Clean);
        (plan.plan, log)
    }

    #[test]
    fn many_candidates_are_judged_correct() {
        let manifest = manifest();
        let (plan, log) = many(300);
        let judgement = judge(&manifest, &plan, log.records());
        assert_eq!(
            judgement.verdict,
            Verdict::Pass,
            "{:#?}",
            judgement.failed().next()
        );
    }

    #[test]
    fn findings_past_the_kept_ones_are_only_counted() {
        let manifest = manifest();
        let mut clean = clean();
        let event = clean.events[0].clone();
        for copy in 0..40 {
            clean.log.attempt(&event, copy, None, 2000.0);
        }
        let judgement = judge(&manifest, &clean.plan, clean.log.records());
        let ack = judgement.check("delivery.ack_sla").expect("judged");
        assert_eq!(ack.findings_total, 40);
        assert_eq!(ack.findings.len(), FINDINGS_KEPT);
        assert_eq!(judgement.verdict, Verdict::Blocked);
    }
}
