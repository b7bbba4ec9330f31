//! The hiring-policy flow (`stagegate run --policy POLICY`): sandbox candidates move
//! through the hiring stages, the mock ATS announces each move to the integration's
//! `POST /webhooks/ats` as a signed `candidate.stage_changed`, and the mock vendor
//! answers the verification sessions the integration opens as each candidate's risk
//! profile says (docs/integration-protocol.md §10).
//!
//! Like the rest of the plan, everything here is decided up front from the seed and
//! written to `plan.json` (the policy included), so the policy checks can judge a
//! recorded run offline. What the integration does in between (sessions, grants,
//! exception items) is only in the observation log.

pub mod drive;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::plan::{PlannedCandidate, Scenario};
use crate::contract::ContractName;
use crate::contract::ids::IdMint;
use crate::contract::path::FieldPath;
use crate::manifest::policy::HiringPolicy;
use crate::manifest::{CandidateId, ExpectedEvent, Manifest};
use crate::sandbox::model::{RiskTier, Role, SandboxCandidate};
use crate::sandbox::synth::{SynthConfig, Synthesizer};

/// The stages candidates move through when `--policy-stages` does not say.
pub const DEFAULT_STAGES: [&str; 5] = [
    "application-review",
    "screen",
    "technical-interview",
    "assessment",
    "offer",
];

/// The `schemaVersion` every stage change carries.
pub const STAGE_SCHEMA_VERSION: &str = "1.0";

/// A run's hiring policy, as `--policy` (or the manifest's `policy:`) gave it.
#[derive(Debug, Clone)]
pub struct PolicySetup {
    /// The policy, loaded and validated.
    pub policy: HiringPolicy,
    /// Where it was read from.
    pub path: std::path::PathBuf,
    /// The stages candidates move through, in order.
    pub stages: Vec<String>,
}

/// Kinds of the harness records of the policy flow.
pub mod marks {
    /// The mock vendor sent (or, for a lost result, only recorded) a session's
    /// result. Detail: `{"session_id", "result", "risk_tier", "signals": [..],
    /// "event_id", "delivered": bool}`.
    pub const RESULT: &str = "policy.result";
    /// The harness is about to ask the integration to reconcile (`POST
    /// /jobs/reconcile`): what the job files comes after this record.
    pub const RECONCILE: &str = "policy.reconcile";
    /// The integration answered the reconcile call. Detail: `{"status"}` (absent,
    /// with `"error"`, on no answer).
    pub const RECONCILED: &str = "policy.reconciled";
    /// A stage change was deliberately never delivered. Detail: `{"event_id", "to"}`.
    pub const LOST_STAGE_CHANGE: &str = "policy.stage_change_lost";
}

/// What the vendor's sessions do for a candidate: its risk profile in the policy flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RiskProfile {
    /// Every session passes quickly.
    Passed,
    /// The first session fails; the candidate retakes it (a session of their own) and passes.
    Retake,
    /// The first session is `review_required` with a step-up signal; once a reviewer
    /// resolves the exception item, a step-up session passes.
    StepUp,
    /// The first session passes, but only after `identityVerificationTargetMinutes`.
    Slow,
    /// Only forged stage changes arrive for it: the integration must do nothing.
    Forged,
}

/// How a candidate of the `policy-reconcile` scenario loses an event on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconcileCase {
    /// The move into the gated stage happened at the ATS but was never delivered:
    /// a gated stage with no passed verification (a mismatch).
    LostStageChange,
    /// The session failed and its result was never delivered (a mismatch).
    LostFailedResult,
    /// The session passed and its result was never delivered: the states agree.
    LostPassedResult,
    /// The candidate opened a session of their own while still before the gated
    /// stages, and its result was never delivered: a verification with no matching
    /// stage (a mismatch).
    OrphanSession,
    /// Everything was delivered and passed: the states agree.
    Matched,
}

impl ReconcileCase {
    /// Whether the reconciliation must find a mismatch for this candidate.
    pub fn is_mismatch(self) -> bool {
        matches!(
            self,
            ReconcileCase::LostStageChange
                | ReconcileCase::LostFailedResult
                | ReconcileCase::OrphanSession
        )
    }
}

/// One stage change the ATS announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageMove {
    /// The event's id (`eventId`).
    pub event_id: String,
    /// The stage left.
    pub from: String,
    /// The stage entered.
    pub to: String,
    /// When the move happened (RFC 3339).
    pub occurred_at: String,
    /// The key the policy's `keyTemplate` gives it.
    pub idempotency_key: String,
    /// How its delivery is perturbed (`none`, `exact_duplicate`, `re_emit`, …).
    pub perturbation: String,
    /// A forged delivery: the move never happened, the integration must refuse it.
    pub forged: bool,
    /// Never delivered on purpose (the reconciliation must find it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    /// The body as the ATS sends it.
    pub payload: Value,
}

/// One verification result the mock vendor sends for a candidate, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedResult {
    /// `passed`, `failed` or `review_required`.
    pub result: String,
    /// The step-up signal it carries, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Never delivered on purpose (the vendor's state has it; the webhook is lost).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    /// The event's id.
    pub event_id: String,
    /// The payload before the session id is known (patched when sent).
    pub payload: Value,
}

/// A candidate of the policy flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyCandidate {
    /// `policy` or `policy-reconcile`.
    pub scenario: Scenario,
    /// The candidate (a copy made for the scenario).
    pub candidate: String,
    /// The flow's correlation id.
    pub correlation_id: String,
    /// What its sessions do.
    pub profile: RiskProfile,
    /// Its risk tier as the vendor reports it (`low`, `medium`, `high`).
    pub risk_tier: String,
    /// The stage changes, in the order they happen at the ATS.
    pub moves: Vec<StageMove>,
    /// The order the deliveries are sent in (indices into `moves`).
    pub send_order: Vec<usize>,
    /// The results its sessions get, in session order.
    pub results: Vec<PlannedResult>,
    /// In `policy-reconcile`, what is lost on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileCase>,
}

impl PolicyCandidate {
    /// Whether the policy's `highRisk` owner gets this candidate's exception items.
    pub fn is_high_risk(&self) -> bool {
        self.risk_tier == RiskTier::High.as_str()
    }
}

/// The policy part of a run's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyPlan {
    /// The hiring policy, as loaded.
    pub policy: HiringPolicy,
    /// Where it was read from.
    pub path: String,
    /// The stages, in order.
    pub stages: Vec<String>,
    /// The manifest contract the vendor's results are events of.
    pub result_contract: String,
    /// The result field's path in that contract (`verification.result`).
    pub result_field: String,
    /// The session id field's path (`verification.session_id`).
    pub session_field: String,
    /// The policy flow's candidates.
    pub candidates: Vec<PolicyCandidate>,
}

impl PolicyPlan {
    /// The stage-change event of the policy (the first of `atsEvents`).
    pub fn event(&self) -> Option<&crate::manifest::policy::AtsEvent> {
        self.policy.ats_events.first()
    }

    /// Whether moving into `stage` needs a verified identity first.
    pub fn is_gated(&self, stage: &str) -> bool {
        is_gated(&self.policy, stage)
    }

    /// The owner role of a candidate's exception items.
    pub fn owner(&self, high_risk: bool) -> &str {
        let owners = &self.policy.reconciliation.on_mismatch.assign_owner;
        if high_risk {
            &owners.high_risk
        } else {
            &owners.default
        }
    }

    /// The longest a review may take, in real-world hours, by risk.
    pub fn review_hours(&self, high_risk: bool) -> f64 {
        let review = &self.policy.slas.exception_review;
        if high_risk {
            review.high_risk_hours
        } else {
            review.standard_business_days * 24.0
        }
    }

    /// The candidate with this id.
    pub fn candidate(&self, id: &str) -> Option<&PolicyCandidate> {
        self.candidates.iter().find(|c| c.candidate == id)
    }

    /// The index of a stage in the stage list.
    pub fn stage_index(&self, stage: &str) -> Option<usize> {
        self.stages.iter().position(|s| s == stage)
    }

    /// Whether `stage` is a gated stage or lies beyond the first one.
    pub fn at_or_past_gate(&self, stage: &str) -> bool {
        let first = self.stages.iter().position(|s| self.is_gated(s));
        match (first, self.stage_index(stage)) {
            (Some(first), Some(at)) => at >= first,
            _ => self.is_gated(stage),
        }
    }
}

/// When an exception item filed at `created` must have been reviewed: the policy's
/// `exceptionReview.highRiskHours` for a high-risk candidate, else
/// `standardBusinessDays` business days (Saturdays and Sundays skipped). Real-world
/// time: a person reviews it, whatever the run's time scale.
pub fn review_due(
    policy: &HiringPolicy,
    created: chrono::DateTime<chrono::Utc>,
    high_risk: bool,
) -> chrono::DateTime<chrono::Utc> {
    use chrono::Datelike;
    let review = &policy.slas.exception_review;
    if high_risk {
        return created
            + chrono::TimeDelta::seconds((review.high_risk_hours.max(0.0) * 3600.0) as i64);
    }
    let days = review.standard_business_days.max(0.0);
    let mut due = created;
    let mut whole = days.floor() as u32;
    while whole > 0 {
        due += chrono::TimeDelta::days(1);
        if !matches!(due.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) {
            whole -= 1;
        }
    }
    due + chrono::TimeDelta::seconds((days.fract() * 86_400.0) as i64)
}

/// Whether `stage` is one of the policy's `identityGate.appliesToStages`.
pub fn is_gated(policy: &HiringPolicy, stage: &str) -> bool {
    policy
        .controls
        .identity_gate
        .applies_to_stages
        .iter()
        .any(|s| s == stage)
}

/// The privileged resource a gated stage grants (`POST …/access-grants`): the
/// assessment for a stage named after it, the interview link otherwise.
pub fn resource_of(stage: &str) -> &'static str {
    if stage.contains("assessment") {
        "assessment"
    } else {
        "interview_link"
    }
}

/// Fills a `keyTemplate` (`${candidateId}:${name}:${occurredAt}`) from an event.
pub fn render_key(template: &str, name: &str, payload: &Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let field = &after[..end];
        let value = if field == "name" {
            name.to_owned()
        } else {
            match payload.get(field) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Why the policy flow cannot be planned for this manifest and policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyPlanError {
    /// No contract carries verification results the flow can send.
    #[error(
        "the hiring-policy flow needs a contract with an enum holding `passed`, `failed` and `review_required` and a `session_id` field (like identity.verification.completed); the manifest has none"
    )]
    NoResultContract,
    /// The policy has no ATS event to announce stage changes with.
    #[error(
        "the hiring policy lists no `atsEvents`; the flow announces stage changes with the first one"
    )]
    NoAtsEvent,
    /// The stage list does not reach a gated stage.
    #[error(
        "none of the stages {stages:?} is in the policy's identityGate.appliesToStages {gated:?}; give --policy-stages a list that reaches one"
    )]
    NoGatedStage {
        /// The stages.
        stages: Vec<String>,
        /// The gated stages.
        gated: Vec<String>,
    },
    /// The stage list has a stage twice or fewer than two stages.
    #[error("the stage list {0:?} needs at least two distinct stages")]
    Stages(Vec<String>),
    /// No sandbox candidate to copy.
    #[error("the sandbox has no seeded candidate to copy into the policy flow")]
    NoCandidates,
    /// A candidate copy could not get an id.
    #[error(transparent)]
    Id(#[from] crate::contract::ids::MintError),
    /// A result could not be synthesized.
    #[error("cannot synthesize a verification result for `{candidate}`")]
    Synth {
        /// The candidate copy.
        candidate: String,
        /// Why.
        #[source]
        source: crate::sandbox::synth::SynthError,
    },
}

/// What the policy flow adds to a run.
#[derive(Debug, Clone)]
pub struct PreparedPolicy {
    /// The plan's policy part.
    pub plan: PolicyPlan,
    /// The candidates for the plan's candidate list (scenario, scope, personal data).
    pub planned: Vec<PlannedCandidate>,
    /// The candidate copies for the mock ATS.
    pub candidates: Vec<SandboxCandidate>,
}

/// The result contract's fields the flow reads and patches.
#[derive(Debug, Clone)]
pub struct ResultFields {
    /// The contract whose events carry verification results.
    pub contract: ContractName,
    /// Its result enum (`verification.result`).
    pub result: FieldPath,
    /// Its session id (`verification.session_id`).
    pub session: FieldPath,
    /// Its risk tier, if it has one (`verification.risk_tier`).
    pub risk_tier: Option<FieldPath>,
}

/// The manifest contract that carries verification results: the first with an
/// enum holding `passed`, `failed` and `review_required` and a required `session_id`.
pub fn result_fields(manifest: &Manifest) -> Option<ResultFields> {
    manifest.contracts.iter().find_map(|contract| {
        let (result, _) = contract.enums().iter().find(|(_, values)| {
            ["passed", "failed", "review_required"]
                .iter()
                .all(|wanted| values.iter().any(|v| v == wanted))
        })?;
        let session = contract
            .required()
            .iter()
            .find(|p| p.segments().last() == Some("session_id"))?;
        let risk_tier = contract
            .required()
            .iter()
            .find(|p| p.segments().last() == Some("risk_tier"))
            .cloned();
        Some(ResultFields {
            contract: contract.name().clone(),
            result: result.clone(),
            session: session.clone(),
            risk_tier,
        })
    })
}

/// Inputs of [`prepare`].
pub struct PolicyInputs<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// The policy.
    pub policy: &'a HiringPolicy,
    /// Where the policy was read from.
    pub path: String,
    /// The stages, in order.
    pub stages: &'a [String],
    /// The sandbox's candidates (seeded ones are copied).
    pub sandbox: &'a [SandboxCandidate],
    /// Ids already taken by the rest of the plan.
    pub taken: &'a [String],
    /// The policy scenarios to plan.
    pub scenarios: &'a [Scenario],
    /// Synthesis settings (seed, anchor, vendor URL, envelope).
    pub synth: SynthConfig,
}

/// One member of a policy scenario, before synthesis.
struct Member {
    scenario: Scenario,
    source: SandboxCandidate,
    tag: String,
    profile: RiskProfile,
    risk: RiskTier,
    reconcile: Option<ReconcileCase>,
}

/// Plans the policy scenarios.
pub fn prepare(inputs: &PolicyInputs<'_>) -> Result<PreparedPolicy, PolicyPlanError> {
    let policy = inputs.policy;
    let fields = result_fields(inputs.manifest).ok_or(PolicyPlanError::NoResultContract)?;
    let event = policy
        .ats_events
        .first()
        .ok_or(PolicyPlanError::NoAtsEvent)?;
    let stages = inputs.stages.to_vec();
    let mut distinct = stages.clone();
    distinct.sort();
    distinct.dedup();
    if stages.len() < 2 || distinct.len() != stages.len() {
        return Err(PolicyPlanError::Stages(stages));
    }
    let Some(first_gate) = stages.iter().position(|s| is_gated(policy, s)) else {
        return Err(PolicyPlanError::NoGatedStage {
            stages,
            gated: policy.controls.identity_gate.applies_to_stages.clone(),
        });
    };
    let seeded: Vec<&SandboxCandidate> = inputs
        .sandbox
        .iter()
        .filter(|c| c.role == Role::Seeded)
        .collect();
    if seeded.is_empty() {
        return Err(PolicyPlanError::NoCandidates);
    }
    let rules = inputs.manifest.id_rules();
    let mut mint = IdMint::new(&rules, inputs.synth.seed ^ 0x9011c7);
    for id in inputs.sandbox.iter().map(|c| c.id.0.as_str()) {
        mint.reserve(id);
    }
    for id in inputs.taken {
        mint.reserve(id);
    }
    let members = members(inputs.scenarios, &seeded);
    let synthesizer = Synthesizer::new(&inputs.manifest.contracts, inputs.synth.clone());
    let mut out = PreparedPolicy {
        plan: PolicyPlan {
            policy: policy.clone(),
            path: inputs.path.clone(),
            stages: stages.clone(),
            result_contract: fields.contract.as_str().to_owned(),
            result_field: fields.result.as_str().to_owned(),
            session_field: fields.session.as_str().to_owned(),
            candidates: Vec::new(),
        },
        planned: Vec::new(),
        candidates: Vec::new(),
    };
    for member in members {
        let mut copy = member.source.clone();
        copy.id = CandidateId(mint.mint(&member.source.id.0, &member.tag)?);
        copy.risk_tier = member.risk;
        // Policy candidates sit inside any canary scope: the flow is about gating, not scope.
        Arc::make_mut(&mut copy.requisition).tags = inputs
            .manifest
            .raw
            .release_gate
            .canary_scope
            .include_tags
            .clone();
        if inputs
            .manifest
            .raw
            .release_gate
            .canary_scope
            .exclude_locations
            .contains(&copy.requisition.location)
        {
            Arc::make_mut(&mut copy.requisition).location = "IE".to_owned();
        }
        let outcomes = outcomes(member.profile, member.reconcile);
        copy.expected_sequence = outcomes
            .iter()
            .map(|(result, _, _)| ExpectedEvent {
                contract: fields.contract.clone(),
                outcome: Some((fields.result.clone(), (*result).to_owned())),
            })
            .collect::<Vec<_>>()
            .into();
        let synthesized =
            synthesizer
                .synthesize_flow(&copy)
                .map_err(|source| PolicyPlanError::Synth {
                    candidate: copy.id.0.clone(),
                    source,
                })?;
        let correlation_id = synthesized
            .first()
            .map(|e| e.correlation_id.clone())
            .unwrap_or_else(|| format!("cor_{}", copy.id.0));
        let results = synthesized
            .iter()
            .zip(&outcomes)
            .map(|(event, (result, signal, lost))| {
                let mut payload = event.payload.clone();
                if let Some(signal) = signal {
                    set_sibling(&mut payload, &fields.result, "signals", json!([signal]));
                }
                PlannedResult {
                    result: (*result).to_owned(),
                    signal: signal.map(str::to_owned),
                    lost: *lost,
                    event_id: event.event_id.clone().unwrap_or_default(),
                    payload,
                }
            })
            .collect();
        let target = match member.reconcile {
            None if member.scenario == Scenario::PolicyOutage => first_gate,
            None => stages.len() - 1,
            Some(ReconcileCase::OrphanSession) => first_gate.saturating_sub(1).max(1),
            Some(_) => first_gate,
        };
        let moves = moves(
            &inputs.synth,
            policy,
            event,
            &copy,
            &correlation_id,
            &stages,
            target,
            &member,
        );
        let send_order = send_order(&moves, member.profile);
        out.planned.push(PlannedCandidate {
            scenario: member.scenario,
            candidate: copy.id.0.as_str().into(),
            source: member.source.id.0.as_str().into(),
            correlation_id: correlation_id.as_str().into(),
            in_scope: true,
            expected_sequence: Arc::from([]),
            pii: vec![copy.person.name.clone(), copy.person.email.clone()],
        });
        out.plan.candidates.push(PolicyCandidate {
            scenario: member.scenario,
            candidate: copy.id.0.clone(),
            correlation_id,
            profile: member.profile,
            risk_tier: member.risk.as_str().to_owned(),
            moves,
            send_order,
            results,
            reconcile: member.reconcile,
        });
        // The ATS holds the copy with no events planned for it: the results are
        // sent in answer to the integration's sessions.
        copy.expected_sequence = Vec::new().into();
        out.candidates.push(copy);
    }
    Ok(out)
}

/// The members of each policy scenario: one candidate per risk profile (and a
/// forged-only one), one per reconciliation case; sources cycle over the seeded
/// candidates, risk tiers are fixed so both owner roles are exercised.
fn members(scenarios: &[Scenario], seeded: &[&SandboxCandidate]) -> Vec<Member> {
    let mut members = Vec::new();
    let mut next = 0usize;
    let mut source = || {
        let candidate = seeded[next % seeded.len()].clone();
        next += 1;
        candidate
    };
    for &scenario in scenarios {
        match scenario {
            Scenario::Policy => {
                for (tag, profile, risk) in [
                    ("pyp", RiskProfile::Passed, RiskTier::Low),
                    ("pyr", RiskProfile::Retake, RiskTier::Medium),
                    ("pys", RiskProfile::StepUp, RiskTier::High),
                    ("pyu", RiskProfile::StepUp, RiskTier::Medium),
                    ("pyw", RiskProfile::Slow, RiskTier::Low),
                    ("pyf", RiskProfile::Forged, RiskTier::Low),
                ] {
                    members.push(Member {
                        scenario,
                        source: source(),
                        tag: tag.to_owned(),
                        profile,
                        risk,
                        reconcile: None,
                    });
                }
            }
            Scenario::PolicyReconcile => {
                for (tag, case, risk) in [
                    ("prs", ReconcileCase::LostStageChange, RiskTier::Low),
                    ("prf", ReconcileCase::LostFailedResult, RiskTier::High),
                    ("prp", ReconcileCase::LostPassedResult, RiskTier::Low),
                    ("pro", ReconcileCase::OrphanSession, RiskTier::Low),
                    ("prm", ReconcileCase::Matched, RiskTier::Medium),
                ] {
                    members.push(Member {
                        scenario,
                        source: source(),
                        tag: tag.to_owned(),
                        profile: RiskProfile::Passed,
                        risk,
                        reconcile: Some(case),
                    });
                }
            }
            Scenario::PolicyOutage => {
                // Enough candidates that their results' failed writes trip any
                // breaker with a run rule, and half of them to arrive once it has.
                for n in 0..OUTAGE_CANDIDATES {
                    members.push(Member {
                        scenario,
                        source: source(),
                        tag: format!("po{n}"),
                        profile: RiskProfile::Passed,
                        risk: RiskTier::Low,
                        reconcile: None,
                    });
                }
            }
            _ => {}
        }
    }
    members
}

/// Candidates of `policy-outage`: the first half arrive as the outage starts, the
/// second once the switch has tripped.
pub const OUTAGE_CANDIDATES: usize = 8;

/// The results a candidate's sessions get, in session order: (result, step-up
/// signal, lost). Sessions past these pass.
fn outcomes(
    profile: RiskProfile,
    reconcile: Option<ReconcileCase>,
) -> Vec<(&'static str, Option<&'static str>, bool)> {
    match (profile, reconcile) {
        (_, Some(ReconcileCase::LostStageChange)) => Vec::new(),
        (_, Some(ReconcileCase::LostFailedResult)) => vec![("failed", None, true)],
        (_, Some(ReconcileCase::LostPassedResult | ReconcileCase::OrphanSession)) => {
            vec![("passed", None, true)]
        }
        (_, Some(ReconcileCase::Matched)) => vec![("passed", None, false)],
        (RiskProfile::Forged, None) => Vec::new(),
        (RiskProfile::Passed | RiskProfile::Slow, None) => {
            vec![("passed", None, false), ("passed", None, false)]
        }
        (RiskProfile::Retake, None) => vec![
            ("failed", None, false),
            ("passed", None, false),
            ("passed", None, false),
        ],
        (RiskProfile::StepUp, None) => vec![
            ("review_required", Some("name_mismatch"), false),
            ("passed", None, false),
            ("passed", None, false),
        ],
    }
}

/// Puts `value` under `name` beside the field at `path` (at the top for a flat path).
fn set_sibling(payload: &mut Value, path: &FieldPath, name: &str, value: Value) {
    let segments: Vec<&str> = path.segments().collect();
    let mut node = payload;
    for segment in &segments[..segments.len().saturating_sub(1)] {
        match node.get_mut(*segment) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(object) = node.as_object_mut() {
        object.insert(name.to_owned(), value);
    }
}

/// The candidate's stage changes up to stage `target`, one minute apart after the
/// synthesis anchor's hour-old start, each with the delivery perturbation its
/// profile exercises.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the parts of a candidate's flow"
)]
fn moves(
    synth: &SynthConfig,
    policy: &HiringPolicy,
    event: &crate::manifest::policy::AtsEvent,
    candidate: &SandboxCandidate,
    correlation_id: &str,
    stages: &[String],
    target: usize,
    member: &Member,
) -> Vec<StageMove> {
    let base = synth.anchor - chrono::TimeDelta::minutes(30);
    let mut moves = Vec::new();
    let mut gate_seen = 0usize;
    for k in 1..=target.min(stages.len() - 1) {
        let occurred_at = crate::observe::format_time(base + chrono::TimeDelta::minutes(k as i64));
        let (from, to) = (&stages[k - 1], &stages[k]);
        let into_gate = member.reconcile.is_none() && is_gated(policy, to);
        if into_gate {
            gate_seen += 1;
        }
        let perturbation = match (member.profile, into_gate, gate_seen) {
            (RiskProfile::Forged, _, _) => "none",
            (RiskProfile::Passed, true, 1) => "exact_duplicate",
            (RiskProfile::Passed, true, _) => "re_emit",
            (RiskProfile::Retake, true, 1) => "concurrent_duplicates",
            (RiskProfile::StepUp, true, 1) => "re_emit",
            (RiskProfile::Slow, true, 1) => "exact_duplicate",
            _ => "none",
        };
        let lost = member.reconcile == Some(ReconcileCase::LostStageChange) && k == target;
        moves.push(stage_move(
            event,
            candidate,
            correlation_id,
            from,
            to,
            &occurred_at,
            perturbation,
            false,
            lost,
            k,
        ));
    }
    if member.profile == RiskProfile::Forged {
        // Moves that never happened, into the first gated stage, each forged one way.
        let to = stages
            .iter()
            .position(|s| is_gated(policy, s))
            .unwrap_or(1)
            .max(1);
        moves.clear();
        for (n, perturbation) in ["unsigned", "wrong_signature", "stale_timestamp"]
            .into_iter()
            .enumerate()
        {
            let occurred_at =
                crate::observe::format_time(base + chrono::TimeDelta::minutes(10 + n as i64));
            moves.push(stage_move(
                event,
                candidate,
                correlation_id,
                &stages[to - 1],
                &stages[to],
                &occurred_at,
                perturbation,
                true,
                false,
                10 + n,
            ));
        }
    }
    moves
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, every field of a move"
)]
fn stage_move(
    event: &crate::manifest::policy::AtsEvent,
    candidate: &SandboxCandidate,
    correlation_id: &str,
    from: &str,
    to: &str,
    occurred_at: &str,
    perturbation: &str,
    forged: bool,
    lost: bool,
    k: usize,
) -> StageMove {
    let event_id = format!("stg_{}_{k:02}", candidate.id.0);
    let mut body = Map::new();
    body.insert("name".into(), json!(event.name));
    body.insert("eventId".into(), json!(event_id));
    body.insert("correlationId".into(), json!(correlation_id));
    for field in &event.required_fields {
        let value = match field.as_str() {
            "candidateId" => json!(candidate.id.0),
            "fromStage" => json!(from),
            "toStage" => json!(to),
            "occurredAt" => json!(occurred_at),
            "actorId" => json!(format!("usr_recruiter_{:02}", k % 7)),
            "schemaVersion" => json!(STAGE_SCHEMA_VERSION),
            "eventId" => json!(event_id),
            other => json!(format!("{other}-{k}")),
        };
        body.insert(field.clone(), value);
    }
    let payload = Value::Object(body);
    let idempotency_key = render_key(&event.idempotency.key_template, &event.name, &payload);
    StageMove {
        event_id,
        from: from.to_owned(),
        to: to.to_owned(),
        occurred_at: occurred_at.to_owned(),
        idempotency_key,
        perturbation: perturbation.to_owned(),
        forged,
        lost,
        payload,
    }
}

/// The order a candidate's moves are sent in: as they happened, except that the
/// retake profile's first two moves are swapped (a reordered delivery).
fn send_order(moves: &[StageMove], profile: RiskProfile) -> Vec<usize> {
    let mut order: Vec<usize> = (0..moves.len()).collect();
    if profile == RiskProfile::Retake && order.len() >= 2 {
        order.swap(0, 1);
    }
    order
}
