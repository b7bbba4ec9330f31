//! The sandbox: risk-tiered candidates enriched with fake but realistic people,
//! deterministic from the run's seed, and the events they produce.
//!
//! The flow, one module a step:
//!
//! - [`build`] turns a manifest's `sandbox_dataset` into [`SandboxCandidate`]s: a
//!   [`Person`] from [`people`], a [`Requisition`] (the manifest's, completed, or one
//!   inside the canary scope from [`scope`]), a [`RiskTier`] and a default
//!   `expected_sequence` from [`profiles`]. It adds the out-of-scope control
//!   candidates the `canary.scope` check needs.
//! - [`synth`] turns a candidate's expected sequence into contract-valid payloads and
//!   the evidence packs their `evidence_pack.url`s point to.
//! - [`dataset`] writes and reads the large generated datasets of
//!   `stagegate sandbox generate`.
//!
//! Everything random comes from the one `u64` seed. Each candidate draws from its own
//! ChaCha8 generators, keyed through SHA-256 by (seed, stream, candidate index) for its
//! person and requisition and by (seed, candidate id) for its events, so appending a
//! candidate changes no other candidate's data, and no generator's output depends on
//! how many values another one drew. The one deliberate exception is e-mail
//! uniqueness: a later candidate whose address would repeat an earlier one gets a
//! numbered address instead.

pub mod dataset;
pub mod model;
pub mod people;
pub mod profiles;
pub mod scope;
pub mod synth;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::contract::ids::{IdMint, MintError};
use crate::manifest::{CandidateId, ExpectedEvent, Manifest};
use dataset::{Dataset, DatasetCandidate, DatasetError};
pub use model::{
    EvidenceCheck, EvidencePack, Person, Requisition, RiskTier, Role, SandboxCandidate,
};
use people::PersonGenerator;
use profiles::{ProfileCatalog, ProfileError};
pub use scope::in_canary_scope;

/// Every sandbox candidate of a run: the manifest's, enriched, then the controls.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The seed everything was generated from.
    pub seed: u64,
    /// Seeded candidates in manifest order, then the out-of-scope controls (of a part
    /// loaded by [`load_dataset_part`], those it kept, in the same order).
    pub candidates: Vec<SandboxCandidate>,
    /// Where each candidate stands in the whole sandbox when only part of it was
    /// loaded, ascending, one per candidate; empty when each stands at its index.
    positions: Vec<u32>,
}

impl Sandbox {
    /// Each candidate with its position in the whole sandbox.
    pub fn positioned(&self) -> impl Iterator<Item = (u32, &SandboxCandidate)> {
        self.candidates
            .iter()
            .enumerate()
            .map(|(index, candidate)| {
                let position = self.positions.get(index).copied();
                (position.unwrap_or(index as u32), candidate)
            })
    }

    /// The candidate with this id.
    pub fn candidate(&self, id: &str) -> Option<&SandboxCandidate> {
        self.candidates.iter().find(|c| c.id.0 == id)
    }
}

/// Why a sandbox could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// One or more manifest candidates have no usable profile or requisition.
    #[error("{0}")]
    Candidates(CandidateErrors),
    /// No id for a control candidate satisfies the contracts' id rules.
    #[error("no id for an out-of-scope control candidate")]
    ControlId(#[source] MintError),
    /// The manifest has no contract and no candidate, so controls have no flow.
    #[error(
        "the out-of-scope control candidates cannot be given a flow: the manifest has no contract to send"
    )]
    NoControlFlow,
    /// Every location the sandbox knows is excluded from the canary scope.
    #[error(
        "every location the sandbox knows is in `exclude_locations`, so no requisition can be inside the canary scope"
    )]
    NoLocation,
    /// The canary scope names no tag, so no requisition can be inside it.
    #[error("the canary scope has no `include_tags`, so no requisition can be inside it")]
    NoIncludedTag,
}

/// Every per-candidate problem found while building, in manifest order.
#[derive(Debug)]
pub struct CandidateErrors(pub Vec<CandidateError>);

impl fmt::Display for CandidateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                // A generated dataset can have thousands; the first few tell the story.
                const SHOWN: usize = 5;
                write!(f, "{} sandbox candidates cannot be built", many.len())?;
                for problem in many.iter().take(SHOWN) {
                    write!(f, "; {problem}")?;
                }
                if many.len() > SHOWN {
                    write!(f, "; and {} more", many.len() - SHOWN)?;
                }
                Ok(())
            }
        }
    }
}

/// One candidate's problem.
#[derive(Debug, thiserror::Error)]
#[error("candidate `{candidate}`: {problem}")]
pub struct CandidateError {
    /// The candidate.
    pub candidate: CandidateId,
    /// What is wrong (shown in the message, as the list of problems has no chain).
    pub problem: ProfileError,
}

/// Builds every sandbox candidate of a manifest, deterministically from `seed`.
///
/// A manifest candidate keeps its id, profile, expected sequence and (completed)
/// requisition; one without an `expected_sequence` takes its profile's default. Two
/// control candidates outside the canary scope follow, when the scope allows them.
pub fn build(manifest: &Manifest, seed: u64) -> Result<Sandbox, SandboxError> {
    let scope = &manifest.raw.release_gate.canary_scope;
    let catalog = ProfileCatalog::for_manifest(manifest);
    let mut people = PersonGenerator::new(seed);
    let mut candidates = Vec::with_capacity(manifest.candidates.len() + 2);
    let mut problems = Vec::new();
    for (index, candidate) in manifest.candidates.iter().enumerate() {
        let index = index as u64;
        let profile = catalog.get(&candidate.profile);
        let expected_sequence = match (&candidate.expected_sequence, &profile) {
            (Some(sequence), _) => Arc::from(sequence.as_slice()),
            (None, Ok(profile)) => Arc::clone(&profile.sequence),
            (None, Err(problem)) => {
                problems.push(CandidateError {
                    candidate: candidate.id.clone(),
                    problem: problem.clone(),
                });
                continue;
            }
        };
        let mut rng = derive_rng(seed, "requisition/seeded", index);
        let requisition = match &candidate.requisition {
            Some(def) => scope::complete(def, scope, &mut rng)?,
            None => scope::inside(scope, &mut rng)?,
        };
        candidates.push(SandboxCandidate {
            id: candidate.id.clone(),
            profile: candidate.profile.clone(),
            // A profile the sandbox does not know still needs a tier; medium claims least.
            risk_tier: profile.map_or(RiskTier::Medium, |p| p.risk_tier),
            person: people.person(people::Stream::Seeded, index),
            requisition: Arc::new(requisition),
            expected_sequence,
            role: Role::Seeded,
        });
    }
    if !problems.is_empty() {
        return Err(SandboxError::Candidates(CandidateErrors(problems)));
    }
    let ids = candidates.iter().map(|c| c.id.0.as_str());
    let controls = controls(
        manifest,
        &catalog,
        seed,
        &mut people,
        ids,
        candidates.first(),
    )?;
    candidates.extend(controls);
    Ok(Sandbox {
        seed,
        candidates,
        positions: Vec::new(),
    })
}

/// The sandbox of a generated dataset: its candidates with their profiles' default
/// sequences, then the same controls [`build`] adds.
pub fn from_dataset(manifest: &Manifest, dataset: &Dataset) -> Result<Sandbox, SandboxError> {
    let catalog = ProfileCatalog::for_manifest(manifest);
    let mut people = PersonGenerator::new(dataset.seed);
    let mut candidates = Vec::with_capacity(dataset.candidates.len() + 2);
    let mut problems = Vec::new();
    for row in &dataset.candidates {
        // The controls' addresses must not repeat a dataset's.
        people.reserve(&row.email);
        match catalog.get(&row.profile) {
            Ok(profile) => candidates.push(seeded(row.clone(), Arc::clone(&profile.sequence))),
            Err(problem) => problems.push(CandidateError {
                candidate: CandidateId(row.ats_candidate_id.clone()),
                problem,
            }),
        }
    }
    if !problems.is_empty() {
        return Err(SandboxError::Candidates(CandidateErrors(problems)));
    }
    let ids = candidates.iter().map(|c| c.id.0.as_str());
    let controls = controls(
        manifest,
        &catalog,
        dataset.seed,
        &mut people,
        ids,
        candidates.first(),
    )?;
    candidates.extend(controls);
    Ok(Sandbox {
        seed: dataset.seed,
        candidates,
        positions: Vec::new(),
    })
}

/// A dataset row as a seeded sandbox candidate, its strings moved, not copied.
fn seeded(row: DatasetCandidate, expected_sequence: Arc<[ExpectedEvent]>) -> SandboxCandidate {
    SandboxCandidate {
        id: CandidateId(row.ats_candidate_id),
        profile: row.profile,
        risk_tier: row.risk_tier,
        person: Person {
            name: row.name.into(),
            email: row.email.into(),
            phone: row.phone.into(),
        },
        requisition: Arc::new(row.requisition),
        expected_sequence,
        role: Role::Seeded,
    }
}

/// The sandbox of a dataset file written by `stagegate sandbox generate`, streamed:
/// each candidate is checked against the manifest ([`dataset::Checker`]) and moved
/// into the sandbox as it is read, so memory holds the sandbox and nothing of the
/// file. The controls [`build`] adds follow. Every error names the file.
pub fn load_dataset(manifest: &Manifest, path: &Path) -> Result<Sandbox, DatasetError> {
    load_dataset_part(manifest, path, &|_| true)
}

/// [`load_dataset`], keeping only the candidates (controls included) whose position in
/// the whole sandbox `keep` accepts: a shard or a wave of a large run holds its own
/// slice. Every candidate is still checked, and the controls are the whole sandbox's
/// (their ids and addresses repeat none of the dataset's).
pub fn load_dataset_part(
    manifest: &Manifest,
    path: &Path,
    keep: &dyn Fn(usize) -> bool,
) -> Result<Sandbox, DatasetError> {
    let mut checker = dataset::Checker::new(manifest);
    let mut candidates = Vec::new();
    let mut positions = Vec::new();
    // What the controls must not repeat, of the candidates not kept: held only while
    // the file is read.
    let mut others: Vec<(String, String)> = Vec::new();
    let mut first = None;
    let header = dataset::read_each(path, &mut |index, _, row| {
        let sequence = checker.row(index, &row);
        // Past the first problem only the checking goes on: the sandbox is lost anyway.
        let (Some(sequence), true) = (sequence, checker.is_clean()) else {
            return;
        };
        // Only a kept row (and the first, which may lend the controls its flow) becomes
        // a candidate; of the others, what the controls must not repeat.
        let kept = keep(index);
        if !kept && index != 0 {
            others.push((row.ats_candidate_id, row.email));
            return;
        }
        let candidate = seeded(row, sequence);
        if index == 0 {
            first = Some(candidate.clone());
        }
        if kept {
            candidates.push(candidate);
            positions.push(index as u32);
        } else {
            others.push((candidate.id.0, candidate.person.email.to_string()));
        }
    })?;
    checker.finish(path)?;
    let rows = header.count as usize;
    let mut people = PersonGenerator::new(header.seed);
    for email in candidates
        .iter()
        .map(|c| &*c.person.email)
        .chain(others.iter().map(|(_, email)| email.as_str()))
    {
        // The controls' addresses must not repeat a dataset's.
        people.reserve(email);
    }
    let catalog = ProfileCatalog::for_manifest(manifest);
    let ids = candidates
        .iter()
        .map(|c| c.id.0.as_str())
        .chain(others.iter().map(|(id, _)| id.as_str()));
    let controls = controls(
        manifest,
        &catalog,
        header.seed,
        &mut people,
        ids,
        first.as_ref(),
    )?;
    drop(others);
    for (offset, control) in controls.into_iter().enumerate() {
        if keep(rows + offset) {
            candidates.push(control);
            positions.push((rows + offset) as u32);
        }
    }
    candidates.shrink_to_fit();
    // Positions that are the indexes themselves (all kept, or a first part) need no list.
    if positions
        .iter()
        .enumerate()
        .all(|(index, p)| *p as usize == index)
    {
        positions = Vec::new();
    }
    positions.shrink_to_fit();
    Ok(Sandbox {
        seed: header.seed,
        candidates,
        positions,
    })
}

/// The out-of-scope control candidates: untagged, and in an excluded location; their
/// ids repeat none of `ids`, and a catalog without a low-risk flow lends them `first`'s.
fn controls<'a>(
    manifest: &Manifest,
    catalog: &ProfileCatalog,
    seed: u64,
    people: &mut PersonGenerator,
    ids: impl Iterator<Item = &'a str>,
    first: Option<&SandboxCandidate>,
) -> Result<Vec<SandboxCandidate>, SandboxError> {
    let scope = &manifest.raw.release_gate.canary_scope;
    // Controls take the first low-risk flow the manifest can express (the fast path on
    // the seed); a catalog without one lends them the first seeded candidate's flow.
    let (profile, risk_tier, sequence) = match catalog.of_tier(RiskTier::Low).next() {
        Some(low) => (low.name.clone(), low.risk_tier, Arc::clone(&low.sequence)),
        None => match first {
            Some(first) => (
                first.profile.clone(),
                first.risk_tier,
                first.expected_sequence.clone(),
            ),
            None => return Err(SandboxError::NoControlFlow),
        },
    };
    let mut out = Vec::with_capacity(2);
    let mut wanted = vec![(Role::ControlUntagged, "untagged")];
    if !scope.exclude_locations.is_empty() {
        wanted.push((Role::ControlExcludedLocation, "excluded_location"));
    }
    let rules = manifest.id_rules();
    let mut mint = IdMint::new(&rules, seed);
    for id in ids {
        mint.reserve(id);
    }
    for (index, (role, label)) in wanted.into_iter().enumerate() {
        let index = index as u64;
        let id = mint
            .mint("CAND_control", label)
            .map(CandidateId)
            .map_err(SandboxError::ControlId)?;
        let mut rng = derive_rng(seed, "requisition/control", index);
        let requisition = match role {
            Role::ControlExcludedLocation => scope::excluded_location(scope, &mut rng)?,
            _ => scope::untagged(scope, &mut rng)?,
        };
        out.push(SandboxCandidate {
            id,
            profile: profile.clone(),
            risk_tier,
            person: people.person(people::Stream::Control, index),
            requisition: Arc::new(requisition),
            expected_sequence: sequence.clone(),
            role,
        });
    }
    Ok(out)
}

/// A generator keyed by (seed, stream, index): independent of every other key's draws.
pub(crate) fn derive_rng(seed: u64, stream: &str, index: u64) -> ChaCha8Rng {
    derive_rng_bytes(seed, stream, &index.to_le_bytes())
}

/// A generator keyed by (seed, stream, arbitrary bytes).
pub(crate) fn derive_rng_bytes(seed: u64, stream: &str, key: &[u8]) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    // Length-prefixed so ("ab", "c") and ("a", "bc") never share a key.
    hasher.update((stream.len() as u64).to_le_bytes());
    hasher.update(stream.as_bytes());
    hasher.update(key);
    ChaCha8Rng::from_seed(hasher.finalize().into())
}

/// Lowercase hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
