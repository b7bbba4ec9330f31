//! Event synthesis: contract-valid payloads for a candidate's expected sequence.
//!
//! A [`Synthesizer`] compiles, once per contract, a plan of every field the contract
//! mentions (required fields, enums, assertion subjects, stability keys and tuples)
//! with the constraints on each. A [`Flow`] then walks one candidate's sequence and
//! builds each payload: a JSON object whose `"type"` is the contract's name and whose
//! dotted paths are nested objects. Every payload is judged by its own contract before
//! it is returned, so a constraint the synthesizer cannot meet is an error naming the
//! field, never a payload that would fail the gate for the wrong reason.
//!
//! A field's value is the first of these that its enum and every clause accept:
//!
//! 1. the entry's `:value`, when the entry sets this field (anything else is an error);
//! 2. for an enum whose values include the candidate's risk tier, that tier;
//! 3. a value from the field's name (table below);
//! 4. a seeded choice among the enum's values, then among an `in` list's;
//! 5. a sample of its `matches` regex (see `regex_gen`);
//! 6. a value built for its `is` formats, numeric bounds (`between`, comparisons,
//!    integers preferred) or time bounds (`<= now() - 1d`: near the event's own time
//!    when the bounds allow it, else as late as they allow, so `>= now() - …` keeps
//!    the most slack);
//! 7. a plain `name-hex` string.
//!
//! | name (last segment, first match) | value |
//! | --- | --- |
//! | `ats_candidate_id`, `candidate_id` | the candidate's id |
//! | `correlation_id` | one `cor_…` per candidate flow |
//! | `event_id` | a fresh `evt_…` per event |
//! | `occurred_at` | the event's slot: strictly increasing per flow, never after the anchor |
//! | `…idempotency…` | derived from the stability rule's tuple, else from `event_id` |
//! | `evidence_pack.url` / `.id` / `.digest` | the event's evidence pack |
//! | `requisition.id`, `requisition_id`, `location`, `country` | the candidate's requisition |
//! | `…risk_tier`, `tier` | the candidate's tier |
//! | `email`, `phone`, `full_name`, `candidate_name` | the candidate's person |
//! | `…_id`, `id` | a fresh id with a prefix from the name (`session_id` → `ses_…`) |
//! | `…_at`, `…_time`, `timestamp` | RFC 3339, up to five minutes before `occurred_at` |
//! | `…url…`, `…uri…`, `…link…` | `{vendor}/v1/{name}/{id}` |
//! | `…_flags`, `flags` | an array of flag words, empty more often than not |
//! | `score`, `…_score` | an integer 40–100 |
//! | `count`, `…_count`, `…_seconds`, `…_ms`, `…_minutes`, `attempts`, `retries` | a small integer |
//! | `is_…`, `has_…` | a boolean |
//! | other plurals (`…s`, not `…ss`, `…us`, `…is`, `status`) | an array of words |
//!
//! Ids are fresh per entry, so a retake gets a new session id and so a new
//! idempotency key; the key itself is `idk_` + the first 24 hex digits of SHA-256 over
//! the contract, the key's path and the tuple's values, so equal tuples give equal
//! keys. A key named by several rules is derived from the fields their tuples share.
//!
//! Times: a flow's events end up to half an hour before the anchor (earlier still when
//! a contract bounds `occurred_at` by `now() - …`), spaced one to fifteen minutes
//! apart, whole seconds, UTC. Judge them with a `now()` at or after the anchor.

use chrono::{DateTime, TimeDelta, Utc};
use rand::seq::IndexedRandom;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::model::{EvidenceCheck, EvidencePack, SandboxCandidate};
use crate::contract::regex_gen::RegexSampler;
use super::{derive_rng_bytes, hex};
use crate::contract::assertion::{
    AssertionKind, CmpOp, EvalContext, Format, Operand, Predicate, render_value,
};
use crate::contract::path::FieldPath;
use crate::contract::{Contract, ContractName, ContractSet};
use crate::manifest::{CandidateId, Envelope, ExpectedEvent};

/// What every flow of a run shares.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// The run's seed.
    pub seed: u64,
    /// No event is later than this; the run's start minus an hour is a good choice.
    pub anchor: DateTime<Utc>,
    /// Base URL of the mock vendor, which serves the evidence packs.
    pub vendor_base_url: Url,
    /// Where the fields the checks track stand: always synthesized, whatever the
    /// contracts mention, and read back into [`SynthesizedEvent`].
    pub envelope: Envelope,
}

/// One synthesized event and what came with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthesizedEvent {
    /// The event's contract.
    pub contract: ContractName,
    /// The candidate it is about.
    pub candidate: CandidateId,
    /// The payload, ready to sign and send.
    pub payload: Value,
    /// The evidence pack `evidence_pack.url` points to, when the contract has one.
    pub evidence_pack: Option<EvidencePack>,
    /// When the event happened (its `occurred_at` slot).
    pub occurred_at: DateTime<Utc>,
    /// The flow's correlation id.
    pub correlation_id: String,
    /// The payload's `event_id`, when it has one.
    pub event_id: Option<String>,
    /// The payload's `idempotency_key`, when it has one.
    pub idempotency_key: Option<String>,
}

/// Why an event could not be synthesized.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The entry names a contract the set does not have.
    #[error("no contract is called `{0}`")]
    UnknownContract(String),
    /// No value meets a field's constraints.
    #[error("cannot synthesize `{field}` of `{contract}`: {reason}")]
    Unsatisfiable {
        /// The contract.
        contract: String,
        /// The field.
        field: String,
        /// Which constraints could not be met together.
        reason: String,
    },
    /// More events were asked of a flow than its candidate's sequence plans.
    #[error("candidate `{candidate}` plans {planned} events, so there is no slot for another")]
    BeyondPlan {
        /// The candidate.
        candidate: String,
        /// How many events its sequence has.
        planned: usize,
    },
    /// The stability rules' keys sit in each other's tuples.
    #[error("the stability rules of `{contract}` depend on each other in a cycle")]
    StabilityCycle {
        /// The contract.
        contract: String,
    },
    /// The payload broke its own contract (a constraint the plan does not model).
    #[error(
        "the synthesized `{contract}` event for `{candidate}` breaks its contract: {violations}"
    )]
    SelfCheck {
        /// The contract.
        contract: String,
        /// The candidate.
        candidate: String,
        /// The violations, joined.
        violations: String,
    },
}

/// What a field's name says about its value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hint {
    CandidateId,
    Correlation,
    EventId,
    IdempotencyFromEvent,
    OccurredAt,
    EvidenceUrl,
    EvidenceId,
    EvidenceDigest,
    RequisitionId,
    RiskTier,
    Location,
    Email,
    Phone,
    PersonName,
    Id(String),
    Timestamp,
    Url,
    Flags,
    List,
    Score,
    Count { low: i64, high: i64 },
    Bool,
    Text,
}

/// The hint of an envelope field, which wins over its name's.
fn envelope_hint(envelope: &Envelope, path: &FieldPath) -> Option<Hint> {
    if *path == envelope.event_id {
        Some(Hint::EventId)
    } else if *path == envelope.idempotency_key {
        Some(Hint::IdempotencyFromEvent)
    } else if *path == envelope.occurred_at {
        Some(Hint::OccurredAt)
    } else if *path == envelope.candidate_id {
        Some(Hint::CandidateId)
    } else {
        None
    }
}

fn hint(path: &FieldPath) -> Hint {
    let segments: Vec<&str> = path.segments().collect();
    let last = segments.last().copied().unwrap_or_default();
    let parent = segments.len().checked_sub(2).map(|i| segments[i]);
    let in_pack = parent == Some("evidence_pack");
    match last {
        "ats_candidate_id" | "candidate_id" => Hint::CandidateId,
        "correlation_id" => Hint::Correlation,
        "event_id" => Hint::EventId,
        l if l.contains("idempotency") => Hint::IdempotencyFromEvent,
        "occurred_at" => Hint::OccurredAt,
        "url" | "uri" | "href" if in_pack => Hint::EvidenceUrl,
        "evidence_pack_url" => Hint::EvidenceUrl,
        "id" if in_pack => Hint::EvidenceId,
        "evidence_pack_id" => Hint::EvidenceId,
        "digest" if in_pack => Hint::EvidenceDigest,
        "id" if parent == Some("requisition") => Hint::RequisitionId,
        "requisition_id" => Hint::RequisitionId,
        l if l.contains("risk_tier") || l == "tier" => Hint::RiskTier,
        "location" | "country" => Hint::Location,
        l if l.ends_with("_country") => Hint::Location,
        "email" => Hint::Email,
        l if l.ends_with("_email") => Hint::Email,
        "phone" => Hint::Phone,
        l if l.ends_with("_phone") => Hint::Phone,
        "full_name" | "candidate_name" => Hint::PersonName,
        "name" if parent == Some("candidate") => Hint::PersonName,
        "id" => Hint::Id(id_prefix(parent.unwrap_or("id"))),
        l if l.ends_with("_id") => Hint::Id(id_prefix(&l[..l.len() - 3])),
        l if l.ends_with("_at") || l.ends_with("_time") || l == "timestamp" => Hint::Timestamp,
        l if l.contains("url") || l.contains("uri") || l.contains("link") => Hint::Url,
        l if l.ends_with("_flags") || l == "flags" => Hint::Flags,
        l if l == "score" || l.ends_with("_score") => Hint::Score,
        l if l.ends_with("_seconds") || l == "duration" => Hint::Count {
            low: 30,
            high: 3600,
        },
        l if l.ends_with("_ms") => Hint::Count {
            low: 50,
            high: 5000,
        },
        l if l.ends_with("_minutes") => Hint::Count { low: 1, high: 90 },
        l if l == "count" || l.ends_with("_count") || l == "attempts" || l == "retries" => {
            Hint::Count { low: 1, high: 5 }
        }
        l if l.starts_with("is_") || l.starts_with("has_") => Hint::Bool,
        l if l.ends_with('s')
            && !l.ends_with("ss")
            && !l.ends_with("us")
            && !l.ends_with("is")
            && l != "status" =>
        {
            Hint::List
        }
        _ => Hint::Text,
    }
}

/// `session` → `ses`, `attempt` → `att`: short prefixes like real vendors use.
fn id_prefix(word: &str) -> String {
    let prefix: String = word
        .rsplit('_')
        .next()
        .unwrap_or(word)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(3)
        .collect::<String>()
        .to_ascii_lowercase();
    if prefix.is_empty() {
        "id".to_owned()
    } else {
        prefix
    }
}

/// The kind of evidence an event documents, which decides the pack's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackKind {
    Identity,
    Assessment,
    Other,
}

/// One field of a contract and everything that constrains it.
#[derive(Debug)]
struct FieldPlan {
    path: FieldPath,
    hint: Hint,
    values: Option<Vec<String>>,
    clauses: Vec<(Predicate, String)>,
    sampler: Option<RegexSampler>,
}

/// A stability key and the fields it is derived from.
#[derive(Debug)]
struct StableKey {
    field: usize,
    tuple: Vec<usize>,
}

#[derive(Debug)]
struct ContractPlan {
    fields: Vec<FieldPlan>,
    stable: Vec<StableKey>,
    pack: Option<PackKind>,
}

impl ContractPlan {
    fn new(contract: &Contract, envelope: &Envelope) -> ContractPlan {
        let mut paths: Vec<FieldPath> = Vec::new();
        let mut add = |path: &FieldPath| {
            // `type` is the contract's name, whatever a contract says about it.
            if path.as_str() != "type" && !paths.contains(path) {
                paths.push(path.clone());
            }
        };
        // The envelope first: the checks track every event by these fields, so they
        // are there even when a contract does not mention them.
        for path in [
            &envelope.event_id,
            &envelope.idempotency_key,
            &envelope.occurred_at,
            &envelope.candidate_id,
        ] {
            add(path);
        }
        contract.required().iter().for_each(&mut add);
        contract.enums().iter().for_each(|(p, _)| add(p));
        for assertion in contract.assertions() {
            assertion.paths().into_iter().for_each(&mut add);
        }
        let fields: Vec<FieldPlan> = paths
            .into_iter()
            .map(|path| {
                let values = contract
                    .enums()
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, v)| v.clone());
                let clauses: Vec<(Predicate, String)> = contract
                    .assertions()
                    .iter()
                    .filter_map(|a| match a.kind() {
                        AssertionKind::Each(clauses) => Some((a.source(), clauses)),
                        AssertionKind::StableFor(_) => None,
                    })
                    .flat_map(|(source, clauses)| {
                        clauses
                            .iter()
                            .filter(|c| c.subject == path)
                            .map(move |c| (c.predicate.clone(), source.to_owned()))
                    })
                    .collect();
                let sampler = clauses.iter().find_map(|(p, _)| match p {
                    Predicate::Matches(pattern) => RegexSampler::new(&pattern.source).ok(),
                    _ => None,
                });
                FieldPlan {
                    hint: envelope_hint(envelope, &path).unwrap_or_else(|| hint(&path)),
                    path,
                    values,
                    clauses,
                    sampler,
                }
            })
            .collect();
        let index_of = |p: &FieldPath| fields.iter().position(|f| &f.path == p);
        let mut stable: Vec<StableKey> = Vec::new();
        for (_, rule) in contract.stability_rules() {
            let (Some(field), Some(tuple)) = (
                index_of(&rule.key),
                rule.tuple.iter().map(index_of).collect::<Option<Vec<_>>>(),
            ) else {
                continue;
            };
            match stable.iter_mut().find(|s| s.field == field) {
                // A key under several rules must be a function of what their tuples share.
                Some(existing) => existing.tuple.retain(|i| tuple.contains(i)),
                None => stable.push(StableKey { field, tuple }),
            }
        }
        let has_pack = fields.iter().any(|f| {
            matches!(
                f.hint,
                Hint::EvidenceUrl | Hint::EvidenceId | Hint::EvidenceDigest
            )
        });
        let pack = has_pack.then(|| pack_kind(contract, &fields));
        ContractPlan {
            fields,
            stable,
            pack,
        }
    }

    fn index_of_hint(&self, wanted: &Hint) -> Option<usize> {
        self.fields.iter().position(|f| &f.hint == wanted)
    }
}

fn pack_kind(contract: &Contract, fields: &[FieldPlan]) -> PackKind {
    let name = contract.name().as_str();
    let last = |f: &FieldPlan| f.path.segments().last().unwrap_or_default().to_owned();
    if name.contains("assessment")
        || fields
            .iter()
            .any(|f| matches!(f.hint, Hint::Score) || last(f) == "attempt_id")
    {
        PackKind::Assessment
    } else if name.contains("identity")
        || name.contains("verification")
        || fields.iter().any(|f| last(f) == "session_id")
    {
        PackKind::Identity
    } else {
        PackKind::Other
    }
}

/// Compiled synthesis plans for every contract of a manifest.
#[derive(Debug)]
pub struct Synthesizer<'m> {
    contracts: &'m ContractSet,
    plans: Vec<ContractPlan>,
    config: SynthConfig,
    /// How far before the anchor `occurred_at` must stay, from `<= now() - …` rules.
    end_offset: TimeDelta,
}

impl<'m> Synthesizer<'m> {
    /// Plans synthesis for every contract of the set.
    pub fn new(contracts: &'m ContractSet, config: SynthConfig) -> Synthesizer<'m> {
        let plans: Vec<ContractPlan> = contracts
            .iter()
            .map(|c| ContractPlan::new(c, &config.envelope))
            .collect();
        let end_offset = plans
            .iter()
            .flat_map(|p| &p.fields)
            .filter(|f| f.hint == Hint::OccurredAt)
            .flat_map(|f| &f.clauses)
            .filter_map(|(predicate, _)| match predicate {
                Predicate::Compare(CmpOp::Le, Operand::Now(offset)) => Some(*offset),
                Predicate::Compare(CmpOp::Lt, Operand::Now(offset)) => {
                    Some(*offset - TimeDelta::seconds(1))
                }
                _ => None,
            })
            .fold(TimeDelta::zero(), TimeDelta::min);
        Synthesizer {
            contracts,
            plans,
            config,
            end_offset,
        }
    }

    /// The configuration every flow shares.
    pub fn config(&self) -> &SynthConfig {
        &self.config
    }

    /// Starts a candidate's flow: its correlation id and the slots of its sequence.
    pub fn flow<'a>(&'a self, candidate: &'a SandboxCandidate) -> Flow<'a> {
        let mut rng = derive_rng_bytes(self.config.seed, "synth/flow", candidate.id.0.as_bytes());
        let planned = candidate.expected_sequence.len();
        let anchor = floor_seconds(self.config.anchor);
        let end = anchor + self.end_offset - TimeDelta::seconds(rng.random_range(0..=1800));
        let mut slots = vec![end; planned];
        for k in (0..planned.saturating_sub(1)).rev() {
            slots[k] = slots[k + 1] - TimeDelta::seconds(rng.random_range(60..900));
        }
        let correlation_id = fresh_id("cor", &mut rng);
        Flow {
            synth: self,
            candidate,
            rng,
            correlation_id,
            slots,
            next: 0,
        }
    }

    /// Synthesizes every event of a candidate's expected sequence, in order.
    pub fn synthesize_flow(
        &self,
        candidate: &SandboxCandidate,
    ) -> Result<Vec<SynthesizedEvent>, SynthError> {
        let mut flow = self.flow(candidate);
        candidate
            .expected_sequence
            .iter()
            .map(|entry| flow.event(entry))
            .collect()
    }
}

/// Synthesizes a candidate's whole flow against a contract set.
pub fn synthesize_flow(
    contracts: &ContractSet,
    candidate: &SandboxCandidate,
    config: SynthConfig,
) -> Result<Vec<SynthesizedEvent>, SynthError> {
    Synthesizer::new(contracts, config).synthesize_flow(candidate)
}

/// One candidate's flow in progress.
#[derive(Debug)]
pub struct Flow<'a> {
    synth: &'a Synthesizer<'a>,
    candidate: &'a SandboxCandidate,
    rng: ChaCha8Rng,
    correlation_id: String,
    slots: Vec<DateTime<Utc>>,
    next: usize,
}

/// What one event's fields are generated from.
struct EventContext<'a> {
    candidate: &'a SandboxCandidate,
    correlation_id: &'a str,
    occurred_at: DateTime<Utc>,
    pack_id: Option<String>,
    base_url: &'a str,
    eval: EvalContext,
}

impl Flow<'_> {
    /// The flow's correlation id.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Synthesizes the next event of the flow from one expected-sequence entry.
    pub fn event(&mut self, entry: &ExpectedEvent) -> Result<SynthesizedEvent, SynthError> {
        let name = entry.contract.as_str();
        let index = self
            .synth
            .contracts
            .index_of(name)
            .ok_or_else(|| SynthError::UnknownContract(name.to_owned()))?;
        let contract = self.synth.contracts.at(index);
        let plan = &self.synth.plans[index];
        let occurred_at = *self
            .slots
            .get(self.next)
            .ok_or_else(|| SynthError::BeyondPlan {
                candidate: self.candidate.id.0.clone(),
                planned: self.slots.len(),
            })?;
        self.next += 1;
        let base_url = self
            .synth
            .config
            .vendor_base_url
            .as_str()
            .trim_end_matches('/');
        let ctx = EventContext {
            candidate: self.candidate,
            correlation_id: &self.correlation_id,
            occurred_at,
            pack_id: plan.pack.map(|_| fresh_id("ep", &mut self.rng)),
            base_url,
            // The anchor stands in for `now()`: the payloads are judged later, never earlier.
            eval: EvalContext {
                now: self.synth.config.anchor,
            },
        };
        let builder = EventBuilder {
            contract,
            plan,
            ctx: &ctx,
        };
        let (values, pack) = builder.fields(entry, &mut self.rng)?;

        let mut payload = Map::new();
        payload.insert("type".into(), Value::String(contract.name().0.clone()));
        for (field, value) in plan.fields.iter().zip(values) {
            set_path(&mut payload, &field.path, value);
        }
        let payload = Value::Object(payload);
        let mut violations = Vec::new();
        contract.check(&payload, &ctx.eval, &mut violations);
        if !violations.is_empty() {
            return Err(SynthError::SelfCheck {
                contract: name.to_owned(),
                candidate: self.candidate.id.0.clone(),
                violations: violations
                    .iter()
                    .map(|v| v.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        let envelope = &self.synth.config.envelope;
        Ok(SynthesizedEvent {
            contract: contract.name().clone(),
            candidate: self.candidate.id.clone(),
            event_id: envelope.event_id_of(&payload).map(str::to_owned),
            idempotency_key: envelope.idempotency_key_of(&payload).map(str::to_owned),
            evidence_pack: pack,
            occurred_at,
            correlation_id: self.correlation_id.clone(),
            payload,
        })
    }
}

/// Builds the field values of one event.
struct EventBuilder<'a> {
    contract: &'a Contract,
    plan: &'a ContractPlan,
    ctx: &'a EventContext<'a>,
}

impl EventBuilder<'_> {
    /// Every field's value, in plan order, and the evidence pack.
    fn fields(
        &self,
        entry: &ExpectedEvent,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<Value>, Option<EvidencePack>), SynthError> {
        let plan = self.plan;
        let mut values: Vec<Option<Value>> = vec![None; plan.fields.len()];
        let is_key = |i: usize| plan.stable.iter().any(|s| s.field == i);
        let fixed = |i: usize| {
            entry
                .outcome
                .as_ref()
                .filter(|(path, _)| *path == plan.fields[i].path)
                .map(|(_, value)| value.as_str())
        };

        // Pass 1: everything not derived from other fields.
        for (i, field) in plan.fields.iter().enumerate() {
            if is_key(i)
                || matches!(
                    field.hint,
                    Hint::IdempotencyFromEvent | Hint::EvidenceDigest
                )
            {
                continue;
            }
            values[i] = Some(match fixed(i) {
                Some(value) => self.fixed(field, value)?,
                None => {
                    let proposals = self.proposals(field, rng);
                    self.generate(field, proposals, rng, self.ctx.occurred_at)?
                }
            });
        }

        // Pass 2: idempotency keys without a stability rule follow the event id.
        let event_id = plan
            .index_of_hint(&Hint::EventId)
            .and_then(|i| values[i].as_ref())
            .map(value_text)
            .unwrap_or_else(|| fresh_id("evt", rng));
        for (i, field) in plan.fields.iter().enumerate() {
            if field.hint == Hint::IdempotencyFromEvent && !is_key(i) {
                let digest = Sha256::digest(event_id.as_bytes());
                let mut derived = ChaCha8Rng::from_seed(digest.into());
                let proposal = Value::String(format!("idk_{}", hex(&digest[..12])));
                values[i] = Some(self.generate(
                    field,
                    vec![proposal],
                    &mut derived,
                    self.ctx.occurred_at,
                )?);
            }
        }

        // Pass 3: the evidence pack, which documents the fields above.
        let pack = match (plan.pack, &self.ctx.pack_id) {
            (Some(kind), Some(id)) => Some(self.pack(kind, id, entry, &values, rng)),
            _ => None,
        };
        for (i, field) in plan.fields.iter().enumerate() {
            if field.hint == Hint::EvidenceDigest && !is_key(i) {
                let proposal = pack.as_ref().map(|p| Value::String(p.digest.clone()));
                values[i] = Some(self.generate(
                    field,
                    proposal.into_iter().collect(),
                    rng,
                    self.ctx.occurred_at,
                )?);
            }
        }

        // Pass 4: stability keys, from their tuples, in dependency order.
        let mut pending: Vec<&StableKey> = plan.stable.iter().collect();
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|s| s.tuple.iter().all(|&t| values[t].is_some()))
                .ok_or_else(|| SynthError::StabilityCycle {
                    contract: self.contract.name().0.clone(),
                })?;
            let key = pending.remove(ready);
            let field = &plan.fields[key.field];
            let mut hasher = Sha256::new();
            hasher.update(self.contract.name().as_str().as_bytes());
            hasher.update([0]);
            hasher.update(field.path.as_str().as_bytes());
            for &t in &key.tuple {
                hasher.update([0x1f]);
                hasher.update(values[t].as_ref().map(value_text).unwrap_or_default());
            }
            let digest = hasher.finalize();
            // Seeded by the tuple alone, so a fallback value is just as stable.
            let mut derived = ChaCha8Rng::from_seed(digest.into());
            let proposal = Value::String(format!("idk_{}", hex(&digest[..12])));
            values[key.field] = Some(match fixed(key.field) {
                Some(value) => self.fixed(field, value)?,
                None => self.generate(field, vec![proposal], &mut derived, self.synth_anchor())?,
            });
        }

        let values = values
            .into_iter()
            .map(|v| v.unwrap_or(Value::Null))
            .collect();
        Ok((values, pack))
    }

    /// The time stability-key fallbacks use: the same for every event of the run.
    fn synth_anchor(&self) -> DateTime<Utc> {
        floor_seconds(self.ctx.eval.now)
    }

    fn fixed(&self, field: &FieldPlan, value: &str) -> Result<Value, SynthError> {
        let value = Value::String(value.to_owned());
        if self.accepts(field, &value) {
            Ok(value)
        } else {
            Err(self.unsatisfiable(
                field,
                format!(
                    "the expected value {} breaks {}",
                    render_value(&value),
                    self.constraint_list(field)
                ),
            ))
        }
    }

    /// What the field's name suggests, best first.
    fn proposals(&self, field: &FieldPlan, rng: &mut ChaCha8Rng) -> Vec<Value> {
        let ctx = self.ctx;
        let candidate = ctx.candidate;
        let tier = candidate.risk_tier.as_str();
        let mut out = Vec::new();
        // An enum of risk tiers carries the candidate's own.
        if field
            .values
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x == tier))
        {
            out.push(json!(tier));
        }
        let text = |s: &str| Value::String(s.to_owned());
        match &field.hint {
            Hint::CandidateId => out.push(text(&candidate.id.0)),
            Hint::Correlation => out.push(text(ctx.correlation_id)),
            Hint::EventId => out.push(Value::String(fresh_id("evt", rng))),
            Hint::OccurredAt => out.push(timestamp(ctx.occurred_at)),
            Hint::EvidenceUrl => {
                if let Some(id) = &ctx.pack_id {
                    out.push(Value::String(format!(
                        "{}/v1/evidence-packs/{id}",
                        ctx.base_url
                    )));
                }
            }
            Hint::EvidenceId => out.extend(ctx.pack_id.as_deref().map(text)),
            Hint::RequisitionId => out.push(text(&candidate.requisition.id)),
            Hint::RiskTier => out.push(text(tier)),
            Hint::Location => out.push(text(&candidate.requisition.location)),
            Hint::Email => out.push(text(&candidate.person.email)),
            Hint::Phone => out.push(text(&candidate.person.phone)),
            Hint::PersonName => out.push(text(&candidate.person.name)),
            Hint::Id(prefix) => out.push(Value::String(fresh_id(prefix, rng))),
            Hint::Timestamp => out.push(timestamp(
                ctx.occurred_at - TimeDelta::seconds(rng.random_range(0..=300)),
            )),
            Hint::Url => out.push(Value::String(format!(
                "{}/v1/{}/{}",
                ctx.base_url,
                last_segment(&field.path).replace('_', "-"),
                fresh_id("res", rng)
            ))),
            Hint::Flags => {
                let vocabulary = if last_segment(&field.path).contains("proctor") {
                    PROCTORING_FLAGS
                } else {
                    GENERIC_FLAGS
                };
                // Most attempts are clean; the integration must cope with both.
                let count = if rng.random_bool(0.6) {
                    0
                } else {
                    rng.random_range(1..=2)
                };
                out.push(words(vocabulary, count, rng));
                out.push(words(vocabulary, 1, rng));
            }
            Hint::List => {
                let count = rng.random_range(0..=2);
                out.push(words(GENERIC_WORDS, count, rng));
                out.push(words(GENERIC_WORDS, 1, rng));
            }
            // Scores cluster where real ones do; bounds that exclude these fall back below.
            Hint::Score => out.push(json!(rng.random_range(40..=100))),
            Hint::Count { low, high } => out.push(json!(rng.random_range(*low..=*high))),
            Hint::Bool => out.push(json!(rng.random_bool(0.5))),
            Hint::IdempotencyFromEvent | Hint::EvidenceDigest | Hint::Text => {}
        }
        out
    }

    /// The first value the constraints accept: proposals, then constraint-driven ones.
    fn generate(
        &self,
        field: &FieldPlan,
        proposals: Vec<Value>,
        rng: &mut ChaCha8Rng,
        around: DateTime<Utc>,
    ) -> Result<Value, SynthError> {
        if let Some(value) = proposals.into_iter().find(|v| self.accepts(field, v)) {
            return Ok(value);
        }
        if field.hint == Hint::CandidateId {
            // The candidate's id is not ours to change.
            return Err(self.unsatisfiable(
                field,
                format!(
                    "the candidate's id `{}` breaks {}",
                    self.ctx.candidate.id,
                    self.constraint_list(field)
                ),
            ));
        }
        let mut choose = |options: &[String]| -> Option<Value> {
            let accepted: Vec<&String> = options
                .iter()
                .filter(|o| self.accepts(field, &Value::String((*o).clone())))
                .collect();
            accepted.choose(rng).map(|v| Value::String((*v).clone()))
        };
        if let Some(values) = &field.values {
            return choose(values).ok_or_else(|| {
                self.unsatisfiable(
                    field,
                    format!(
                        "no value of its enum ({}) satisfies {}",
                        values.join(", "),
                        self.constraint_list(field)
                    ),
                )
            });
        }
        for (predicate, _) in &field.clauses {
            if let Predicate::In(list) = predicate
                && let Some(value) = choose(list.values())
            {
                return Ok(value);
            }
        }
        if let Some(sampler) = &field.sampler {
            for _ in 0..16 {
                if let Some(text) = sampler.sample(rng) {
                    let value = Value::String(text);
                    if self.accepts(field, &value) {
                        return Ok(value);
                    }
                }
            }
        }
        let mut built = Vec::new();
        for (predicate, _) in &field.clauses {
            if let Predicate::Is(format) = predicate {
                built.extend(self.for_format(*format, field, rng, around));
            }
        }
        built.extend(numbers(field, rng));
        built.extend(times(field, &self.ctx.eval, around, rng));
        built.push(Value::String(format!(
            "{}-{}",
            last_segment(&field.path).replace('_', "-"),
            hex(&rng.random::<[u8; 3]>())
        )));
        built
            .into_iter()
            .find(|v| self.accepts(field, v))
            .ok_or_else(|| {
                self.unsatisfiable(
                    field,
                    format!("no value satisfies {}", self.constraint_list(field)),
                )
            })
    }

    fn for_format(
        &self,
        format: Format,
        field: &FieldPlan,
        rng: &mut ChaCha8Rng,
        around: DateTime<Utc>,
    ) -> Vec<Value> {
        match format {
            Format::Rfc3339 => vec![timestamp(around)],
            Format::Url => vec![Value::String(format!(
                "{}/v1/{}/{}",
                self.ctx.base_url,
                last_segment(&field.path).replace('_', "-"),
                fresh_id("res", rng)
            ))],
            Format::Uuid => vec![Value::String(uuid_v4(rng))],
            Format::Boolean => vec![json!(rng.random_bool(0.5))],
            Format::String | Format::NonEmpty => vec![
                Value::String(format!(
                    "{}-{}",
                    last_segment(&field.path).replace('_', "-"),
                    hex(&rng.random::<[u8; 3]>())
                )),
                words(GENERIC_WORDS, 1, rng),
            ],
            // Numbers come from the numeric bounds, which know the range.
            Format::Integer | Format::Number => Vec::new(),
        }
    }

    fn accepts(&self, field: &FieldPlan, value: &Value) -> bool {
        if let Some(values) = &field.values
            && !value
                .as_str()
                .is_some_and(|s| values.iter().any(|v| v == s))
        {
            return false;
        }
        let name = field.path.as_str();
        field
            .clauses
            .iter()
            .all(|(p, _)| p.evaluate(name, value, &self.ctx.eval).is_none())
    }

    fn constraint_list(&self, field: &FieldPlan) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(values) = &field.values {
            parts.push(format!("its enum ({})", values.join(", ")));
        }
        for (_, source) in &field.clauses {
            let quoted = format!("`{source}`");
            if !parts.contains(&quoted) {
                parts.push(quoted);
            }
        }
        if parts.is_empty() {
            "no constraint".to_owned()
        } else {
            parts.join(" and ")
        }
    }

    fn unsatisfiable(&self, field: &FieldPlan, reason: String) -> SynthError {
        SynthError::Unsatisfiable {
            contract: self.contract.name().0.clone(),
            field: field.path.as_str().to_owned(),
            reason,
        }
    }

    /// The evidence pack of this event, consistent with its outcome and flags.
    fn pack(
        &self,
        kind: PackKind,
        id: &str,
        entry: &ExpectedEvent,
        values: &[Option<Value>],
        rng: &mut ChaCha8Rng,
    ) -> EvidencePack {
        let plan = self.plan;
        let field_value = |wanted: &[&str]| {
            plan.fields
                .iter()
                .zip(values)
                .find(|(f, v)| wanted.contains(&last_segment(&f.path)) && v.is_some())
                .and_then(|(_, v)| v.as_ref())
        };
        let result = match (&entry.outcome, kind) {
            (Some((_, value)), _) => value.clone(),
            (None, _) if field_value(&["result", "status", "outcome", "decision"]).is_some() => {
                field_value(&["result", "status", "outcome", "decision"])
                    .map(value_text)
                    .unwrap_or_default()
            }
            (None, PackKind::Assessment) => "scored".to_owned(),
            (None, _) => "completed".to_owned(),
        };
        let session_id = field_value(&["session_id", "attempt_id"])
            .or_else(|| field_value(&["event_id"]))
            .map(value_text)
            .unwrap_or_else(|| id.to_owned());
        let checks = match kind {
            PackKind::Identity => identity_checks(&result, rng),
            PackKind::Assessment => {
                let flagged = plan.fields.iter().zip(values).any(|(f, v)| {
                    f.hint == Hint::Flags
                        && v.as_ref()
                            .and_then(Value::as_array)
                            .is_some_and(|a| !a.is_empty())
                });
                vec![
                    check("plagiarism", "clear"),
                    check("proctoring", if flagged { "flagged" } else { "clear" }),
                ]
            }
            PackKind::Other => vec![check(
                "integrity",
                if is_negative(&result) {
                    "failed"
                } else {
                    "passed"
                },
            )],
        };
        let mut pack = EvidencePack {
            id: id.to_owned(),
            ats_candidate_id: self.ctx.candidate.id.0.clone(),
            session_id,
            result,
            checks,
            digest: String::new(),
        };
        pack.digest = pack.compute_digest();
        pack
    }
}

const PROCTORING_FLAGS: &[&str] = &[
    "tab_switch",
    "face_not_visible",
    "multiple_faces",
    "copy_paste",
    "window_resize",
];
const GENERIC_FLAGS: &[&str] = &["manual_override", "late_submission", "device_changed"];
const GENERIC_WORDS: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];

fn check(name: &str, outcome: &str) -> EvidenceCheck {
    EvidenceCheck {
        name: name.to_owned(),
        outcome: outcome.to_owned(),
    }
}

fn is_negative(result: &str) -> bool {
    ["fail", "reject", "denied", "declin"]
        .iter()
        .any(|w| result.contains(w))
}

fn identity_checks(result: &str, rng: &mut ChaCha8Rng) -> Vec<EvidenceCheck> {
    let names = ["document", "liveness", "face_match"];
    let positive = matches!(result, "passed" | "approved" | "clear" | "completed");
    // A failed or reviewed outcome has one check to blame; which one is seeded.
    let culprit = rng.random_range(0..names.len());
    let bad = if is_negative(result) {
        "failed"
    } else {
        "inconclusive"
    };
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            check(
                name,
                if positive || i != culprit {
                    "passed"
                } else {
                    bad
                },
            )
        })
        .collect()
}

fn last_segment(path: &FieldPath) -> &str {
    path.segments().last().unwrap_or_default()
}

/// A string value as itself, anything else as JSON (what idempotency keys hash).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fresh_id<R: Rng + ?Sized>(prefix: &str, rng: &mut R) -> String {
    format!("{prefix}_{}", hex(&rng.random::<[u8; 10]>()))
}

fn uuid_v4(rng: &mut ChaCha8Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn words(vocabulary: &[&str], count: usize, rng: &mut ChaCha8Rng) -> Value {
    Value::Array(
        vocabulary
            .sample(rng, count)
            .map(|w| Value::String((*w).to_owned()))
            .collect(),
    )
}

fn floor_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn timestamp(t: DateTime<Utc>) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Numbers inside the field's numeric bounds: integers first, then decimals.
fn numbers(field: &FieldPlan, rng: &mut ChaCha8Rng) -> Vec<Value> {
    let (mut lo, mut lo_strict, mut hi, mut hi_strict) =
        (f64::NEG_INFINITY, false, f64::INFINITY, false);
    let mut exact = None;
    let mut numeric = false;
    let mut integer = false;
    fn raise(bound: f64, strict: bool, lo: &mut f64, lo_strict: &mut bool) {
        if bound > *lo || (bound == *lo && strict) {
            *lo = bound;
            *lo_strict = strict;
        }
    }
    fn lower(bound: f64, strict: bool, hi: &mut f64, hi_strict: &mut bool) {
        if bound < *hi || (bound == *hi && strict) {
            *hi = bound;
            *hi_strict = strict;
        }
    }
    for (predicate, _) in &field.clauses {
        match predicate {
            Predicate::Between(a, b) => {
                numeric = true;
                raise(*a, false, &mut lo, &mut lo_strict);
                lower(*b, false, &mut hi, &mut hi_strict);
            }
            Predicate::Compare(op, Operand::Number(n)) => {
                numeric = true;
                match op {
                    CmpOp::Ge => raise(*n, false, &mut lo, &mut lo_strict),
                    CmpOp::Gt => raise(*n, true, &mut lo, &mut lo_strict),
                    CmpOp::Le => lower(*n, false, &mut hi, &mut hi_strict),
                    CmpOp::Lt => lower(*n, true, &mut hi, &mut hi_strict),
                    CmpOp::Eq => exact = Some(*n),
                    // Exclusions are left to the final acceptance check.
                    CmpOp::Ne => {}
                }
            }
            Predicate::Is(Format::Integer) => {
                numeric = true;
                integer = true;
            }
            Predicate::Is(Format::Number) => numeric = true,
            _ => {}
        }
    }
    if !numeric && !matches!(field.hint, Hint::Score | Hint::Count { .. }) {
        return Vec::new();
    }
    if let Some(n) = exact {
        return vec![number(n)];
    }
    let (span_lo, span_hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (lo, hi),
        (true, false) => (lo, lo + 100.0),
        (false, true) => (hi - 100.0, hi),
        (false, false) => (0.0, 100.0),
    };
    let mut out = Vec::new();
    let first = if lo_strict && span_lo.fract() == 0.0 {
        span_lo + 1.0
    } else {
        span_lo.ceil()
    };
    let last = if hi_strict && span_hi.fract() == 0.0 {
        span_hi - 1.0
    } else {
        span_hi.floor()
    };
    if first <= last && first.abs() < 9e15 && last.abs() < 9e15 {
        let (first, last) = (first as i64, last as i64);
        for _ in 0..6 {
            out.push(json!(rng.random_range(first..=last)));
        }
        out.push(json!(first));
        out.push(json!(last));
    }
    if !integer && span_lo < span_hi {
        for _ in 0..4 {
            let x = span_lo + (span_hi - span_lo) * rng.random_range(0.05..0.95);
            out.push(number((x * 100.0).round() / 100.0));
        }
        out.push(number(span_lo + (span_hi - span_lo) / 2.0));
    }
    out
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        json!(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Timestamps inside the field's `now()` bounds, as late as they allow.
fn times(
    field: &FieldPlan,
    eval: &EvalContext,
    around: DateTime<Utc>,
    rng: &mut ChaCha8Rng,
) -> Vec<Value> {
    let mut upper: Option<DateTime<Utc>> = None;
    let mut lower: Option<DateTime<Utc>> = None;
    let mut exact = None;
    let mut timed = false;
    for (predicate, _) in &field.clauses {
        match predicate {
            Predicate::Compare(op, Operand::Now(offset)) => {
                timed = true;
                let at = eval.now + *offset;
                let second = TimeDelta::seconds(1);
                match op {
                    CmpOp::Le => upper = Some(upper.map_or(at, |u| u.min(at))),
                    CmpOp::Lt => upper = Some(upper.map_or(at - second, |u| u.min(at - second))),
                    CmpOp::Ge => lower = Some(lower.map_or(at, |l| l.max(at))),
                    CmpOp::Gt => lower = Some(lower.map_or(at + second, |l| l.max(at + second))),
                    CmpOp::Eq => exact = Some(at),
                    CmpOp::Ne => {}
                }
            }
            Predicate::Is(Format::Rfc3339) => timed = true,
            _ => {}
        }
    }
    if !timed {
        return Vec::new();
    }
    if let Some(at) = exact {
        return vec![timestamp(at)];
    }
    // Near the event's own time when the bounds allow it, else as late as they allow.
    let mut hi = floor_seconds(upper.map_or(around, |u| u.min(around)));
    if let Some(l) = lower
        && hi < l
    {
        hi = floor_seconds(upper.unwrap_or(l + TimeDelta::minutes(1)));
    }
    let lo = lower.unwrap_or(hi - TimeDelta::hours(1));
    let room = (hi - lo).num_seconds().clamp(0, 3600);
    vec![
        timestamp(hi - TimeDelta::seconds(rng.random_range(0..=room))),
        timestamp(hi),
    ]
}

fn set_path(root: &mut Map<String, Value>, path: &FieldPath, value: Value) {
    let segments: Vec<&str> = path.segments().collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut node = root;
    for segment in parents {
        let entry = node
            .entry((*segment).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(map) = entry else {
            return;
        };
        node = map;
    }
    node.insert((*last).to_owned(), value);
}

#[cfg(test)]
mod tests;
