//! Turning the sandbox into a plan: per scenario, copies of the candidates (ids
//! suffixed so scenarios never share state), their synthesized events, how each is
//! perturbed and in what order it is sent, and what should become of it.
//!
//! Pure and deterministic from the seed, so a plan can be rebuilt to replay a run.

use std::collections::HashMap;
use std::time::Duration;

use super::plan::{Plan, PlannedCandidate, PlannedEvent, Scenario};
use crate::contract::assertion::EvalContext;
use crate::contract::ids::{IdMint, MintError};
use crate::contract::path::FieldPath;
use crate::delivery::{Delivery, Perturbation};
use crate::manifest::model::RolloutMode;
use crate::manifest::{CandidateId, Manifest};
use crate::protocol::KillSwitchTolerances;
use crate::sandbox::model::{EvidencePack, Role, SandboxCandidate};
use crate::sandbox::synth::{SynthConfig, SynthError, Synthesizer};
use crate::sandbox::{Sandbox, in_canary_scope};

/// One candidate's deliveries, sent in this order.
#[derive(Debug, Clone)]
pub struct Group {
    /// The candidate.
    pub candidate: String,
    /// What to send, in order.
    pub deliveries: Vec<(Delivery, Perturbation)>,
}

/// What a scenario does to the world while it sends (the kill-switch scenarios).
#[derive(Debug, Clone, PartialEq)]
pub enum Stress {
    /// Nothing: the ATS answers normally.
    None,
    /// The ATS fails every request for `hold` (503, then resets, then hangs, or one
    /// kind only); with `restart`, the integration is SIGKILLed and started again halfway.
    Outage {
        /// How long the ATS stays down.
        hold: Duration,
        /// How it fails.
        kind: OutageKind,
        /// Whether the integration is killed and restarted during the outage.
        restart: bool,
    },
    /// Every `above`-th ATS request fails while `groups` are sent; once the switch
    /// has tripped and reset, every `below`-th while `later` is sent.
    Brownout {
        /// One failure every this many requests: just above the threshold.
        above: u32,
        /// One failure every this many requests: just below it.
        below: u32,
    },
    /// `groups` carry drifted payloads the ATS refuses; `later` the good events the
    /// integration must still deliver once its switch resets.
    MappingErrors,
}

/// What one scenario sends.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The scenario.
    pub scenario: Scenario,
    /// Per candidate, its deliveries (candidates run concurrently).
    pub groups: Vec<Group>,
    /// A second wave, sent once the first has done its work (see [`Stress`]).
    pub later: Vec<Group>,
    /// What happens to the world meanwhile.
    pub stress: Stress,
}

/// How the ATS fails during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutageKind {
    /// 503s, then connection resets, then requests that hang until the window ends.
    #[default]
    Mixed,
    /// Every request answered 503.
    Unavailable,
    /// Every request held unanswered until the window ends (then 504).
    Timeout,
    /// Every connection closed at once.
    Reset,
}

impl OutageKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OutageKind::Mixed => "mixed",
            OutageKind::Unavailable => "unavailable",
            OutageKind::Timeout => "timeout",
            OutageKind::Reset => "reset",
        }
    }
}

/// The shape of the kill-switch scenarios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutageSettings {
    /// How long the `outage` and `restart` scenarios keep the ATS down.
    pub hold: Duration,
    /// How the ATS fails meanwhile.
    pub kind: OutageKind,
    /// Copies of the seeded candidates sent into the outage (traffic volume).
    pub sets: usize,
}

/// How long `run`'s outage lasts on the manifest's clock: half the 5-minute rate
/// window, long enough for the switch to trip, probe and see the ATS still down.
pub const OUTAGE_HOLD: Duration = Duration::from_secs(150);

impl OutageSettings {
    /// `run`'s outage on a clock `time_scale` times faster: [`OUTAGE_HOLD`] scaled
    /// like every window of the manifest, so a faster clock proves the same thing
    /// relative to those windows in less time.
    pub fn on_clock(time_scale: f64) -> Self {
        OutageSettings {
            hold: crate::protocol::scaled(OUTAGE_HOLD, time_scale),
            ..OutageSettings::default()
        }
    }
}

impl Default for OutageSettings {
    /// `run`'s outage at the default time scale (60: 2.5 s).
    fn default() -> Self {
        OutageSettings {
            hold: Duration::from_millis(2500),
            kind: OutageKind::Mixed,
            sets: 2,
        }
    }
}
/// Seeded candidates the kill-switch scenarios copy their traffic from.
const KILL_SWITCH_CANDIDATES: usize = 3;
/// Drifted candidates in `mapping-errors`, beyond the manifest's count.
const EXTRA_DRIFTED: u32 = 2;

/// A member of a scenario: a candidate copy and what kind of traffic it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traffic {
    /// Genuine events, delivered in the first wave.
    Normal,
    /// Genuine events, in the second wave.
    Later,
    /// Forged deliveries (bad, missing or stale signatures).
    Forged,
    /// Payloads drifted from the contract, which the ATS must refuse.
    Drifted,
}

/// Everything a run needs before the world starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What the checks judge against.
    pub plan: Plan,
    /// Every scenario's candidate copies, for the mock ATS.
    pub candidates: Vec<SandboxCandidate>,
    /// Evidence packs for the mock vendor.
    pub packs: Vec<EvidencePack>,
    /// What to send, per scenario, in run order.
    pub batches: Vec<Batch>,
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// No id for a scenario copy satisfies the contracts' id rules.
    #[error("cannot make ids for the scenario copies of the candidates")]
    Id(#[from] MintError),
    /// Synthesis failed.
    #[error("cannot synthesize the events of `{candidate}`")]
    Synth {
        /// The candidate copy.
        candidate: String,
        /// Why.
        #[source]
        source: SynthError,
    },
}

fn tag(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Clean => "cl",
        Scenario::Duplicates => "du",
        Scenario::OutOfOrder => "oo",
        Scenario::Signatures => "sg",
        Scenario::Canary => "cn",
        Scenario::Outage => "ou",
        Scenario::Brownout => "bo",
        Scenario::MappingErrors => "mp",
        Scenario::Restart => "rs",
        Scenario::Policy => "py",
        Scenario::PolicyReconcile => "pr",
        Scenario::PolicyOutage => "po",
    }
}

/// How the `mapping-errors` scenario drifts a payload so that the ATS refuses it, the
/// way vendors' payloads drift: whatever the manifest's contracts offer, tried in this
/// order on each contract, the first one the contract rejects is used:
///
/// 1. a nested required field renamed (`verification.risk_tier` →
///    `verification.risk_tier_v2`);
/// 2. a flat required field renamed (`status` → `status_v2`);
/// 3. an enum field given a value outside the contract (`clear` → `clear_v2`);
/// 4. a constrained field given another JSON type (a number as a string, a string
///    as a number).
///
/// The envelope's fields and `type` are never drifted: the harness and the checks
/// track events by them. A contract none of these breaks has nothing to drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriftKind {
    RenameNested,
    RenameFlat,
    EnumOutside,
    TypeChange,
}

/// The drift chosen for each contract of a manifest, found once per run.
#[derive(Debug)]
struct Drift<'m> {
    manifest: &'m Manifest,
    protected: Vec<&'m FieldPath>,
}

impl<'m> Drift<'m> {
    fn for_manifest(manifest: &'m Manifest) -> Self {
        let envelope = &manifest.envelope;
        Drift {
            manifest,
            protected: vec![
                &envelope.event_id,
                &envelope.idempotency_key,
                &envelope.occurred_at,
                &envelope.candidate_id,
            ],
        }
    }

    /// Drifts `payload` of `contract` so that the contract rejects it; `false` when
    /// no drift of this contract's fields is refused.
    fn apply(&self, contract: &str, payload: &mut serde_json::Value) -> bool {
        let Some(contract) = self.manifest.contracts.get(contract) else {
            return false;
        };
        let ctx = EvalContext::at_now();
        for kind in [
            DriftKind::RenameNested,
            DriftKind::RenameFlat,
            DriftKind::EnumOutside,
            DriftKind::TypeChange,
        ] {
            for field in self.candidates(contract, kind) {
                let mut drifted = payload.clone();
                if !drift_field(&mut drifted, field, kind) {
                    continue;
                }
                let mut violations = Vec::new();
                contract.check(&drifted, &ctx, &mut violations);
                if !violations.is_empty() {
                    *payload = drifted;
                    return true;
                }
            }
        }
        false
    }

    fn candidates<'c>(
        &'c self,
        contract: &'c crate::contract::Contract,
        kind: DriftKind,
    ) -> Box<dyn Iterator<Item = &'c FieldPath> + 'c> {
        let free = move |path: &&FieldPath| !self.protected.contains(path);
        match kind {
            DriftKind::RenameNested => Box::new(
                contract
                    .required()
                    .iter()
                    .filter(free)
                    .filter(|p| p.segments().count() > 1),
            ),
            DriftKind::RenameFlat => Box::new(
                contract
                    .required()
                    .iter()
                    .filter(free)
                    .filter(|p| p.segments().count() == 1),
            ),
            DriftKind::EnumOutside => {
                Box::new(contract.enums().iter().map(|(path, _)| path).filter(free))
            }
            DriftKind::TypeChange => Box::new(
                contract
                    .assertions()
                    .iter()
                    .flat_map(|a| a.paths())
                    .chain(contract.required().iter())
                    .filter(free),
            ),
        }
    }

    /// Why nothing can be drifted, when no contract the candidates send offers a drift
    /// the contract refuses; `None` when the scenario can run.
    fn nothing_to_drift(&self, sample: &[(String, serde_json::Value)]) -> Option<String> {
        if sample.iter().any(|(contract, payload)| {
            let mut copy = payload.clone();
            self.apply(contract, &mut copy)
        }) {
            return None;
        }
        let names: Vec<&str> = sample.iter().map(|(c, _)| c.as_str()).collect();
        Some(format!(
            "nothing to drift: no field of {} outside the envelope can be renamed, given a value outside its enum or another type in a way its contract refuses, so no payload would be a mapping error",
            if names.is_empty() {
                "the contracts".to_owned()
            } else {
                names.join(", ")
            }
        ))
    }
}

/// Applies one drift to the field at `path`; `false` if the payload has no such field.
fn drift_field(payload: &mut serde_json::Value, path: &FieldPath, kind: DriftKind) -> bool {
    let Some((map, leaf)) = path.parent_mut(payload) else {
        return false;
    };
    match kind {
        DriftKind::RenameNested | DriftKind::RenameFlat => match map.remove(leaf) {
            Some(value) => {
                map.insert(format!("{leaf}_v2"), value);
                true
            }
            None => false,
        },
        DriftKind::EnumOutside => match map.get_mut(leaf) {
            Some(value @ serde_json::Value::String(_)) => {
                let text = value.as_str().unwrap_or_default();
                *value = serde_json::Value::String(format!("{text}_v2"));
                true
            }
            _ => false,
        },
        DriftKind::TypeChange => match map.get_mut(leaf) {
            Some(value @ serde_json::Value::String(_)) => {
                *value = serde_json::json!(12345);
                true
            }
            Some(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                *value = serde_json::Value::String(value.to_string());
                true
            }
            _ => false,
        },
    }
}

/// A deterministic webhook id for an event (retries and exact duplicates keep it).
fn webhook_id(seed: u64, event_id: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut hasher);
    event_id.hash(&mut hasher);
    format!("msg_{:016x}", hasher.finish())
}

/// Builds the plan of a run.
pub fn prepare(
    manifest: &Manifest,
    sandbox: &Sandbox,
    scenarios: &[Scenario],
    synth: SynthConfig,
    ack_sla_ms: u64,
    outage: &OutageSettings,
) -> Result<Prepared, PrepareError> {
    let synthesizer = Synthesizer::new(&manifest.contracts, synth);
    let seed = sandbox.seed;
    let rules = manifest.id_rules();
    let mint = std::cell::RefCell::new(IdMint::new(&rules, seed));
    for candidate in &sandbox.candidates {
        mint.borrow_mut().reserve(&candidate.id.0);
    }
    // Which sandbox candidate each copy comes from, for the plan and the reports.
    let sources: std::cell::RefCell<HashMap<String, String>> = Default::default();
    let copy =
        |candidate: &SandboxCandidate, tag: &str| -> Result<SandboxCandidate, PrepareError> {
            let mut copy = candidate.clone();
            copy.id = CandidateId(mint.borrow_mut().mint(&candidate.id.0, tag)?);
            sources
                .borrow_mut()
                .insert(copy.id.0.clone(), candidate.id.0.clone());
            Ok(copy)
        };
    let drift = Drift::for_manifest(manifest);
    let tolerances =
        KillSwitchTolerances::new(&manifest.raw.release_gate.kill_switch.trigger_conditions);
    let scope = &manifest.raw.release_gate.canary_scope;
    let full_rollout = manifest.raw.release_gate.mode == RolloutMode::Full;
    let seeded: Vec<&SandboxCandidate> = sandbox
        .candidates
        .iter()
        .filter(|c| c.role == Role::Seeded)
        .collect();
    let controls: Vec<&SandboxCandidate> = sandbox
        .candidates
        .iter()
        .filter(|c| c.role != Role::Seeded)
        .collect();

    let mut prepared = Prepared {
        plan: Plan {
            seed,
            candidates: Vec::new(),
            events: Vec::new(),
            ack_sla_ms,
            time_scale: 1.0,
            skipped: Vec::new(),
            policy: None,
        },
        candidates: Vec::new(),
        packs: Vec::new(),
        batches: Vec::new(),
    };
    // The policy scenarios are planned by `super::policy`, from the hiring policy.
    for &scenario in scenarios.iter().filter(|s| !s.is_policy()) {
        let mut members: Vec<(SandboxCandidate, Traffic)> = Vec::new();
        let mut stress = Stress::None;
        // The kill-switch scenarios shape traffic from a few candidates, whatever the
        // size of the dataset: it is the switch under test, not the volume.
        let stressed = &seeded[..seeded.len().min(KILL_SWITCH_CANDIDATES)];
        // Enough events in each fault window that any breaker within the protocol's
        // tolerances gets the calls it may wait for (one ATS call per event at least).
        let per_set: usize = stressed.iter().map(|c| c.expected_sequence.len()).sum();
        let window_sets = tolerances.events_per_window().div_ceil(per_set.max(1));
        let sets = |count: usize, traffic: Traffic, prefix: &str, members: &mut Vec<_>| {
            for set in 0..count {
                for candidate in stressed {
                    let suffix = format!("{prefix}{set:02}");
                    members.push((copy(candidate, &suffix)?, traffic));
                }
            }
            Ok::<(), PrepareError>(())
        };
        match scenario {
            // Filtered out above; planned from the hiring policy.
            Scenario::Policy | Scenario::PolicyReconcile | Scenario::PolicyOutage => continue,
            Scenario::Canary => {
                for control in &controls {
                    members.push((copy(control, tag(scenario))?, Traffic::Normal));
                }
            }
            Scenario::Signatures => {
                for candidate in &seeded {
                    members.push((copy(candidate, tag(scenario))?, Traffic::Normal));
                    members.push((copy(candidate, "sgf")?, Traffic::Forged));
                }
            }
            Scenario::OutOfOrder => {
                for candidate in seeded.iter().filter(|c| c.expected_sequence.len() > 1) {
                    members.push((copy(candidate, tag(scenario))?, Traffic::Normal));
                }
            }
            Scenario::Clean | Scenario::Duplicates => {
                for candidate in &seeded {
                    members.push((copy(candidate, tag(scenario))?, Traffic::Normal));
                }
            }
            Scenario::Outage | Scenario::Restart => {
                sets(
                    outage.sets.max(window_sets),
                    Traffic::Normal,
                    tag(scenario),
                    &mut members,
                )?;
                stress = Stress::Outage {
                    hold: outage.hold,
                    kind: outage.kind,
                    restart: scenario == Scenario::Restart,
                };
            }
            Scenario::Brownout => {
                sets(window_sets, Traffic::Normal, "boa", &mut members)?;
                sets(window_sets, Traffic::Later, "bob", &mut members)?;
                let (above, below) = tolerances.brownout_periods();
                stress = Stress::Brownout { above, below };
            }
            Scenario::MappingErrors => {
                let count = manifest
                    .raw
                    .release_gate
                    .kill_switch
                    .trigger_conditions
                    .mapping_error_count_over_10m
                    .max(0.0) as usize
                    + EXTRA_DRIFTED as usize;
                // How many payloads of each stressed candidate's flow drift into a
                // mapping error: the scenario needs more refusals than the count.
                let mut driftable = Vec::with_capacity(stressed.len());
                let mut sample = Vec::new();
                for candidate in stressed {
                    let events = synthesizer.synthesize_flow(candidate).map_err(|source| {
                        PrepareError::Synth {
                            candidate: candidate.id.0.clone(),
                            source,
                        }
                    })?;
                    let n = events
                        .iter()
                        .filter(|e| drift.apply(e.contract.as_str(), &mut e.payload.clone()))
                        .count();
                    sample.extend(
                        events
                            .into_iter()
                            .map(|e| (e.contract.as_str().to_owned(), e.payload)),
                    );
                    driftable.push(n);
                }
                if driftable.iter().all(|n| *n == 0) {
                    let reason = drift.nothing_to_drift(&sample).unwrap_or_else(|| {
                        "no sandbox candidate sends a payload that can drift".to_owned()
                    });
                    prepared
                        .plan
                        .skipped
                        .push(super::plan::SkippedScenario { scenario, reason });
                    continue;
                }
                let (mut refusals, mut set) = (0, 0);
                while refusals < count {
                    for (candidate, n) in stressed.iter().zip(&driftable) {
                        if refusals < count && *n > 0 {
                            let suffix = format!("mpd{set:02}");
                            members.push((copy(candidate, &suffix)?, Traffic::Drifted));
                            refusals += n;
                        }
                    }
                    set += 1;
                }
                sets(1, Traffic::Later, "mpg", &mut members)?;
                stress = Stress::MappingErrors;
            }
        }
        let mut batch = Batch {
            scenario,
            groups: Vec::new(),
            later: Vec::new(),
            stress,
        };
        for (member, traffic) in members {
            let forged = traffic == Traffic::Forged;
            let in_scope = full_rollout || in_canary_scope(scope, &member.requisition);
            let events =
                synthesizer
                    .synthesize_flow(&member)
                    .map_err(|source| PrepareError::Synth {
                        candidate: member.id.0.clone(),
                        source,
                    })?;
            let correlation_id = events
                .first()
                .map(|e| e.correlation_id.clone())
                .unwrap_or_default();
            prepared.plan.candidates.push(PlannedCandidate {
                scenario,
                candidate: member.id.0.clone(),
                source: sources
                    .borrow()
                    .get(&member.id.0)
                    .cloned()
                    .unwrap_or_default(),
                correlation_id,
                in_scope,
                expected_sequence: member
                    .expected_sequence
                    .iter()
                    .map(describe_entry)
                    .collect(),
                pii: vec![member.person.name.clone(), member.person.email.clone()],
            });
            // The latest occurred_at per contract: older events may be superseded.
            let mut latest: HashMap<&str, chrono::DateTime<chrono::Utc>> = HashMap::new();
            for event in &events {
                let slot = latest
                    .entry(event.contract.as_str())
                    .or_insert(event.occurred_at);
                *slot = (*slot).max(event.occurred_at);
            }
            let mut deliveries = Vec::new();
            for (index, event) in events.iter().enumerate() {
                let perturbation = perturbation(scenario, forged, index);
                let mut payload = event.payload.clone();
                // A payload of a contract with nothing to drift goes out as it is.
                let drifted = traffic == Traffic::Drifted
                    && drift.apply(event.contract.as_str(), &mut payload);
                let event_id = event.event_id.clone().unwrap_or_default();
                let superseded = latest
                    .get(event.contract.as_str())
                    .is_some_and(|l| *l > event.occurred_at);
                prepared.plan.events.push(PlannedEvent {
                    scenario,
                    candidate: member.id.0.clone(),
                    contract: event.contract.as_str().to_owned(),
                    event_id: event_id.clone(),
                    idempotency_key: event.idempotency_key.clone().unwrap_or_default(),
                    correlation_id: event.correlation_id.clone(),
                    occurred_at: crate::observe::format_time(event.occurred_at),
                    sequence_index: index,
                    outcome: member
                        .expected_sequence
                        .get(index)
                        .and_then(|e| e.outcome.as_ref())
                        .map(|(_, v)| v.clone()),
                    perturbation: if drifted {
                        super::plan::DRIFTED.to_owned()
                    } else {
                        perturbation.name().to_owned()
                    },
                    forged,
                    in_scope,
                    should_land: in_scope
                        && !forged
                        && !drifted
                        && (!superseded || scenario == Scenario::Clean),
                    payload,
                });
                if let Some(pack) = &event.evidence_pack {
                    prepared.packs.push(pack.clone());
                }
                let payload = &prepared.plan.events[prepared.plan.events.len() - 1].payload;
                let mut delivery = Delivery::json(
                    webhook_id(seed, &event_id),
                    event.contract.as_str(),
                    payload,
                );
                delivery.candidate = Some(member.id.0.clone());
                delivery.correlation_id = Some(event.correlation_id.clone());
                delivery.event_id = event.event_id.clone();
                delivery.idempotency_key = event.idempotency_key.clone();
                deliveries.push((delivery, perturbation));
            }
            if scenario == Scenario::OutOfOrder {
                deliveries.reverse();
            }
            let group = Group {
                candidate: member.id.0.clone(),
                deliveries,
            };
            if traffic == Traffic::Later {
                batch.later.push(group);
            } else {
                batch.groups.push(group);
            }
            prepared.candidates.push(member);
        }
        prepared.batches.push(batch);
    }
    Ok(prepared)
}

fn describe_entry(entry: &crate::manifest::ExpectedEvent) -> String {
    match &entry.outcome {
        Some((_, value)) => format!("{}:{value}", entry.contract),
        None => entry.contract.to_string(),
    }
}

fn perturbation(scenario: Scenario, forged: bool, index: usize) -> Perturbation {
    if forged {
        return [
            Perturbation::Unsigned,
            Perturbation::WrongSignature,
            Perturbation::StaleTimestamp,
        ][index % 3];
    }
    match scenario {
        Scenario::Duplicates => [
            Perturbation::ExactDuplicate { copies: 1 },
            Perturbation::ReEmit,
            Perturbation::ConcurrentDuplicates { copies: 2 },
        ][index % 3],
        _ => Perturbation::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::test_support::{manifest, manifest_edited};

    fn identity_event() -> serde_json::Value {
        serde_json::json!({
            "type": "identity.verification.completed",
            "event_id": "evt_1", "idempotency_key": "idk_1",
            "occurred_at": "2026-05-18T09:00:00Z", "correlation_id": "cor_1",
            "ats_candidate_id": "CAND_canary_001",
            "verification": {"session_id": "ses_1", "result": "passed", "risk_tier": "low"},
            "evidence_pack": {"url": "https://vendor.example/ep/1"}
        })
    }

    #[test]
    fn drift_prefers_a_nested_rename_and_never_touches_the_envelope() {
        let manifest = manifest();
        let drift = Drift::for_manifest(&manifest);
        let mut payload = identity_event();
        assert!(drift.apply("identity.verification.completed", &mut payload));
        assert!(payload.pointer("/verification/session_id").is_none());
        assert!(payload.pointer("/verification/session_id_v2").is_some());
        for kept in [
            "event_id",
            "idempotency_key",
            "occurred_at",
            "ats_candidate_id",
            "type",
        ] {
            assert_eq!(payload[kept], identity_event()[kept], "{kept}");
        }
    }

    #[test]
    fn drift_falls_back_to_flat_renames_enums_and_types_then_gives_up() {
        // (what the contract requires beyond the envelope, what drifts, why)
        let envelope = "      - event_id\n      - idempotency_key\n      - occurred_at\n      - ats_candidate_id\n";
        let manifest = manifest_edited(
            "      - event_id\n      - idempotency_key\n      - occurred_at\n      - correlation_id\n      - ats_candidate_id\n      - verification.session_id\n      - verification.result\n      - verification.risk_tier\n      - evidence_pack.url\n",
            &format!("{envelope}      - correlation_id\n"),
        );
        let drift = Drift::for_manifest(&manifest);
        let mut payload = identity_event();
        assert!(drift.apply("identity.verification.completed", &mut payload));
        assert!(
            payload.get("correlation_id").is_none(),
            "a flat rename: {payload}"
        );
        assert!(payload.get("correlation_id_v2").is_some());

        // Nothing but the envelope and an optional field: enums still drift.
        let only_envelope = manifest_edited(
            "      - event_id\n      - idempotency_key\n      - occurred_at\n      - correlation_id\n      - ats_candidate_id\n      - verification.session_id\n      - verification.result\n      - verification.risk_tier\n      - evidence_pack.url\n",
            envelope,
        );
        let drift = Drift::for_manifest(&only_envelope);
        let mut payload = identity_event();
        assert!(drift.apply("identity.verification.completed", &mut payload));
        assert_eq!(
            payload.pointer("/verification/result"),
            Some(&serde_json::json!("passed_v2"))
        );

        // A type change turns numbers into strings and strings into numbers.
        let mut score = serde_json::json!({"assessment": {"score": 80, "language": "rust"}});
        let path = |p: &str| FieldPath::parse(p).expect("path");
        assert!(drift_field(
            &mut score,
            &path("assessment.score"),
            DriftKind::TypeChange
        ));
        assert!(drift_field(
            &mut score,
            &path("assessment.language"),
            DriftKind::TypeChange
        ));
        assert_eq!(
            score,
            serde_json::json!({"assessment": {"score": "80", "language": 12345}})
        );
        assert!(!drift_field(
            &mut score,
            &path("assessment.absent"),
            DriftKind::TypeChange
        ));

        // An envelope-only payload of an unknown contract drifts nothing, and says why.
        let sample = vec![("no.such.contract".to_owned(), serde_json::json!({}))];
        let reason = drift.nothing_to_drift(&sample).expect("nothing to drift");
        assert!(reason.starts_with("nothing to drift"), "{reason}");
    }
}
