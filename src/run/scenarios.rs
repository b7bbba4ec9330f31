//! Turning the sandbox into a plan: per scenario, copies of the candidates (ids
//! suffixed so scenarios never share state), their synthesized events, how each is
//! perturbed and in what order it is sent, and what should become of it.
//!
//! Pure and deterministic from the seed, so a plan can be rebuilt to replay a run.

use std::collections::HashMap;

use super::plan::{Plan, PlannedCandidate, PlannedEvent, Scenario};
use crate::contract::assertion::{AssertionKind, EvalContext, Predicate};
use crate::delivery::{Delivery, Perturbation};
use crate::manifest::model::RolloutMode;
use crate::manifest::{CandidateId, Manifest};
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

/// What one scenario sends.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The scenario.
    pub scenario: Scenario,
    /// Per candidate, its deliveries (candidates run concurrently).
    pub groups: Vec<Group>,
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
    /// No suffix keeps a copy's id valid for the contracts.
    #[error(
        "candidate id `{id}` cannot take a scenario suffix and still match the contracts' `ats_candidate_id` rules"
    )]
    Suffix {
        /// The original id.
        id: String,
    },
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
    }
}

/// Whether `id` satisfies every `ats_candidate_id matches …` clause of the contracts.
fn id_is_valid(manifest: &Manifest, id: &str) -> bool {
    let payload = serde_json::json!({ "ats_candidate_id": id });
    let ctx = EvalContext::at_now();
    manifest
        .contracts
        .iter()
        .flat_map(|c| c.assertions())
        .all(|assertion| match assertion.kind() {
            AssertionKind::Each(clauses) => clauses
                .iter()
                .filter(|c| {
                    c.subject.as_str() == "ats_candidate_id"
                        && matches!(c.predicate, Predicate::Matches(_))
                })
                .all(|c| c.evaluate(&payload, &ctx).is_none()),
            AssertionKind::StableFor(_) => true,
        })
}

fn suffixed(manifest: &Manifest, id: &str, suffix: &str) -> Result<String, PrepareError> {
    [
        format!("{id}_{suffix}"),
        format!("{id}-{suffix}"),
        format!("{id}{suffix}"),
    ]
    .into_iter()
    .find(|candidate| id_is_valid(manifest, candidate))
    .ok_or_else(|| PrepareError::Suffix { id: id.to_owned() })
}

fn copy(
    manifest: &Manifest,
    candidate: &SandboxCandidate,
    suffix: &str,
) -> Result<SandboxCandidate, PrepareError> {
    let mut copy = candidate.clone();
    copy.id = CandidateId(suffixed(manifest, &candidate.id.0, suffix)?);
    Ok(copy)
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
) -> Result<Prepared, PrepareError> {
    let synthesizer = Synthesizer::new(&manifest.contracts, synth);
    let seed = sandbox.seed;
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
        },
        candidates: Vec::new(),
        packs: Vec::new(),
        batches: Vec::new(),
    };
    for &scenario in scenarios {
        // (candidate copy, forged?)
        let mut members: Vec<(SandboxCandidate, bool)> = Vec::new();
        match scenario {
            Scenario::Canary => {
                for control in &controls {
                    members.push((copy(manifest, control, tag(scenario))?, false));
                }
            }
            Scenario::Signatures => {
                for candidate in &seeded {
                    members.push((copy(manifest, candidate, tag(scenario))?, false));
                    members.push((copy(manifest, candidate, "sgf")?, true));
                }
            }
            Scenario::OutOfOrder => {
                for candidate in seeded.iter().filter(|c| c.expected_sequence.len() > 1) {
                    members.push((copy(manifest, candidate, tag(scenario))?, false));
                }
            }
            Scenario::Clean | Scenario::Duplicates => {
                for candidate in &seeded {
                    members.push((copy(manifest, candidate, tag(scenario))?, false));
                }
            }
        }
        let mut batch = Batch {
            scenario,
            groups: Vec::new(),
        };
        for (member, forged) in members {
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
                    perturbation: perturbation.name().to_owned(),
                    forged,
                    in_scope,
                    should_land: in_scope
                        && !forged
                        && (!superseded || scenario == Scenario::Clean),
                    payload: event.payload.clone(),
                });
                if let Some(pack) = &event.evidence_pack {
                    prepared.packs.push(pack.clone());
                }
                let mut delivery = Delivery::json(
                    webhook_id(seed, &event_id),
                    event.contract.as_str(),
                    &event.payload,
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
            batch.groups.push(Group {
                candidate: member.id.0.clone(),
                deliveries,
            });
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
