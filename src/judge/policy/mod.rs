//! The hiring-policy checks (`policy.*`): what the integration did with the stage
//! changes, sessions, results and exception items of the policy scenarios, judged
//! against the policy written into the plan (`plan.policy`).
//!
//! Each check is a fold: it sees the log once, in order, keeps small per-candidate
//! state, and cites the records of a finding by `seq`; [`judge`] runs one over a run
//! and turns its findings into the judge's. Without a policy in the plan every check
//! skips with [`NO_POLICY`], which says how to turn them on.

mod fanout_sla;
mod idempotency;
mod identity_gate;
mod log_fields;
mod reconciliation;
mod signature;
mod step_up;

use std::collections::BTreeSet;

use super::fold::{self, Context, Fold};
use super::run::Outcome;
use crate::intern::Text;
use crate::judge::FINDINGS_KEPT;
use crate::observe::Record;
use crate::run::plan::Scenario;
use crate::run::policy::PolicyPlan;

pub(crate) use fanout_sla::FanoutSla;
pub(crate) use idempotency::StageEventIdempotency;
pub(crate) use identity_gate::IdentityGate;
pub(crate) use log_fields::LogFields;
pub(crate) use reconciliation::Reconciliation;
pub(crate) use signature::Signature;
pub(crate) use step_up::StepUp;

/// Why a policy check has nothing to judge in a run without a hiring policy.
pub(crate) const NO_POLICY: &str = "no hiring policy in this run: `stagegate run MANIFEST --policy POLICY` (or `policy:` in the manifest) drives the policy flow these checks judge";

/// What a policy check reads besides the record at hand.
pub(crate) struct Cx<'a> {
    /// The policy part of the plan.
    pub(crate) plan: &'a PolicyPlan,
    /// How much faster than real time the run's windows passed.
    pub(crate) time_scale: f64,
    /// Personal data of the policy scenarios' candidates (never to be logged).
    pub(crate) pii: Vec<&'a str>,
}

/// A finding before the judge fills in its exchanges.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cited {
    /// The candidate concerned.
    pub(crate) candidate: Option<String>,
    /// What a correct integration does.
    pub(crate) expected: String,
    /// What was seen.
    pub(crate) seen: String,
    /// The records that tell it, by `seq`.
    pub(crate) cites: Vec<u64>,
}

/// What a policy check concluded.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// The scenarios whose records were judged; none means nothing was.
    pub(crate) judged: BTreeSet<Scenario>,
    /// Why nothing was judged, when the check has a more precise reason.
    pub(crate) skip: Option<String>,
    /// Every finding counted, the first [`FINDINGS_KEPT`] kept.
    pub(crate) total: usize,
    /// The kept findings.
    pub(crate) kept: Vec<Cited>,
}

impl Verdict {
    /// Counts a finding and builds it only if it is kept.
    pub(crate) fn add(&mut self, make: impl FnOnce() -> Cited) {
        self.total += 1;
        if self.kept.len() < FINDINGS_KEPT {
            self.kept.push(make());
        }
    }
}

/// A policy check as a fold over the log.
pub(crate) trait PolicyCheck: Sized {
    /// The fold's empty state for a plan.
    fn new(cx: &Cx<'_>) -> Self;
    /// Sees the next record.
    fn record(&mut self, cx: &Cx<'_>, record: &Record);
    /// Judges once the log has ended.
    fn finish(self, cx: &Cx<'_>, out: &mut Verdict);
}

/// A policy check as the judge runs it: the check's fold and what it reads.
struct Judged<'a, C> {
    check: C,
    cx: Cx<'a>,
}

impl<C: PolicyCheck> Fold for Judged<'_, C> {
    fn record(&mut self, _: &Context<'_>, record: &Record) {
        self.check.record(&self.cx, record);
    }

    fn finish(self: Box<Self>, cx: &Context<'_>) -> Outcome {
        let Judged { check, cx: policy } = *self;
        let mut verdict = Verdict::default();
        check.finish(&policy, &mut verdict);
        if verdict.judged.is_empty() && verdict.total == 0 {
            return Outcome::skip(verdict.skip.unwrap_or_else(|| {
                "the policy scenarios did not run (`--scenario policy` or `--scenario policy-reconcile`)".to_owned()
            }));
        }
        let mut outcome = Outcome::default();
        for scenario in &verdict.judged {
            outcome.judged(Some(*scenario));
        }
        let mut kept = verdict.kept.into_iter();
        for _ in 0..verdict.total {
            match kept.next() {
                Some(cited) => outcome.findings.add(|| {
                    cx.finding(
                        cited.candidate.as_deref(),
                        None,
                        cited.expected,
                        cited.seen,
                        fold::records(cited.cites),
                    )
                }),
                None => outcome.findings.count(),
            }
        }
        outcome
    }
}

/// Makes the fold of policy check `C`, or a skip saying how to enable it.
pub(crate) fn make<'a, C: PolicyCheck + 'static>(cx: &Context<'a>) -> Box<dyn Fold + 'a> {
    let Some(plan) = &cx.plan.plan.policy else {
        return fold::skipped(NO_POLICY);
    };
    let policy = Cx {
        plan,
        time_scale: cx.plan.plan.time_scale,
        pii: cx
            .plan
            .plan
            .candidates
            .iter()
            .filter(|c| c.scenario.is_policy())
            .flat_map(|c| c.pii.iter().map(Text::as_str))
            .collect(),
    };
    Box::new(Judged {
        check: C::new(&policy),
        cx: policy,
    })
}

/// Whether an HTTP status is a 2xx.
pub(crate) fn ok(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

/// A text field of a record's detail, at a JSON pointer.
pub(crate) fn text_at<'r>(record: &'r Record, pointer: &str) -> Option<&'r str> {
    record
        .detail
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
}

/// A stage-change delivery attempt (`webhook.attempt` to `/webhooks/ats`).
pub(crate) fn is_stage_attempt(record: &Record) -> bool {
    record.kind == "webhook.attempt" && text_at(record, "/url_path") == Some("/webhooks/ats")
}

/// A session the integration opened at the vendor (not the candidate or the vendor).
pub(crate) fn is_integration_session(record: &Record) -> bool {
    record.kind == "vendor.session_opened" && text_at(record, "/opened_by") != Some("candidate")
}

#[cfg(test)]
pub(crate) mod fixture;

#[cfg(test)]
mod tests {
    use super::fixture::{Defect, policy_run};
    use crate::judge::{Status, judge};

    /// The policy checks that failed.
    fn failed(defect: Defect) -> Vec<String> {
        let run = policy_run(defect);
        let judgement = judge(&run.manifest, &run.plan, run.log.records());
        judgement
            .checks
            .iter()
            .filter(|c| c.id.starts_with("policy.") && c.status == Status::Fail)
            .map(|c| c.id.clone())
            .collect()
    }

    #[test]
    fn a_correct_flow_passes_every_policy_check() {
        let run = policy_run(Defect::None);
        let judgement = judge(&run.manifest, &run.plan, run.log.records());
        for check in judgement
            .checks
            .iter()
            .filter(|c| c.id.starts_with("policy."))
        {
            assert_eq!(check.status, Status::Pass, "{check:#?}");
            assert!(
                !check.scenarios.is_empty(),
                "{} judged a scenario",
                check.id
            );
        }
    }

    #[test]
    fn each_planted_defect_fails_exactly_its_check() {
        for (defect, check) in [
            (Defect::GrantBeforeResult, "policy.identity_gate"),
            (Defect::GrantOnFailed, "policy.identity_gate"),
            (Defect::SecondSession, "policy.stage_event_idempotency"),
            (Defect::WrongOwner, "policy.step_up"),
            (Defect::NoStepUpException, "policy.step_up"),
            (Defect::SlowFanout, "policy.fanout_sla"),
            (Defect::ForgedAccepted, "policy.signature"),
            (Defect::ReconcileMisses, "policy.reconciliation"),
            (Defect::LogFieldMissing, "policy.log_fields"),
        ] {
            assert_eq!(failed(defect), [check], "{defect:?}");
        }
    }

    #[test]
    fn findings_say_what_was_expected_and_seen() {
        let run = policy_run(Defect::SlowFanout);
        let judgement = judge(&run.manifest, &run.plan, run.log.records());
        let fanout = judgement.check("policy.fanout_sla").expect("the check");
        let finding = &fanout.findings[0];
        assert!(
            finding
                .expected
                .contains("triggerFanoutSeconds (60 s, 1000 ms"),
            "{finding:#?}"
        );
        assert!(
            finding.seen.starts_with("the session opened 50"),
            "{finding:#?}"
        );
        assert_eq!(finding.exchanges.len(), 2);
        let run = policy_run(Defect::WrongOwner);
        let judgement = judge(&run.manifest, &run.plan, run.log.records());
        let step_up = judgement.check("policy.step_up").expect("the check");
        assert!(
            step_up
                .findings
                .iter()
                .any(|f| f.seen == "owned by `recruitingOps`"),
            "{step_up:#?}"
        );
    }

    #[test]
    fn without_a_policy_every_policy_check_skips_saying_how_to_enable_it() {
        let mut run = policy_run(Defect::None);
        run.plan.policy = None;
        let judgement = judge(&run.manifest, &run.plan, run.log.records());
        for check in judgement
            .checks
            .iter()
            .filter(|c| c.id.starts_with("policy."))
        {
            assert_eq!(check.status, Status::Skip);
            assert_eq!(check.reason.as_deref(), Some(super::NO_POLICY));
        }
    }
}
