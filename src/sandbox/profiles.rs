//! Risk profiles: a candidate's risk tier and the flow it goes through by default.
//!
//! A manifest candidate names a profile; when it lists no `expected_sequence`, the
//! profile's steps become one, resolved against the manifest's contracts exactly as
//! the manifest loader resolves written entries: `contract` or `contract:value`, where
//! the value must belong to exactly one enum of the contract. Profiles are code, not
//! configuration, because each one is a scenario the mock vendor must be able to act
//! out; a manifest that needs another flow writes its `expected_sequence`.

use std::sync::Arc;

use crate::contract::ContractSet;
use crate::contract::path::FieldPath;
use crate::manifest::{ExpectedEvent, Manifest};
use crate::suggest::did_you_mean;

use super::model::RiskTier;

/// One step of a profile's flow: a contract and, optionally, the enum value it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The contract's name.
    pub contract: &'static str,
    /// The enum value the event carries, resolved to its field like `contract:value`.
    pub value: Option<&'static str>,
}

/// A named risk profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// The name manifests and datasets use.
    pub name: &'static str,
    /// The tier its candidates carry.
    pub risk_tier: RiskTier,
    /// What happens to such a candidate, for people.
    pub summary: &'static str,
    /// The default expected sequence.
    pub steps: &'static [Step],
}

const IDENTITY: &str = "identity.verification.completed";
const ASSESSMENT: &str = "assessment.score.posted";

const fn step(contract: &'static str, value: Option<&'static str>) -> Step {
    Step { contract, value }
}

/// Identity passes at once, then the assessment score is posted.
pub const LOW_RISK_FAST_PATH: Profile = Profile {
    name: "low-risk-fast-path",
    risk_tier: RiskTier::Low,
    summary: "identity passed, then the assessment score",
    steps: &[step(IDENTITY, Some("passed")), step(ASSESSMENT, None)],
};

/// Identity passes for a medium-risk candidate, then the assessment score is posted.
pub const MEDIUM_RISK_PASS: Profile = Profile {
    name: "medium-risk-pass",
    risk_tier: RiskTier::Medium,
    summary: "identity passed at medium risk, then the assessment score",
    steps: &[step(IDENTITY, Some("passed")), step(ASSESSMENT, None)],
};

/// Identity needs a manual review; nothing else happens yet.
pub const STEP_UP_MANUAL_REVIEW: Profile = Profile {
    name: "step-up-manual-review",
    risk_tier: RiskTier::High,
    summary: "identity review_required at high risk",
    steps: &[step(IDENTITY, Some("review_required"))],
};

/// Identity needs a review, a step-up session passes, then the assessment score.
pub const HIGH_RISK_STEP_UP_PASS: Profile = Profile {
    name: "high-risk-step-up-pass",
    risk_tier: RiskTier::High,
    summary: "identity review_required, a step-up session passed, then the assessment score",
    steps: &[
        step(IDENTITY, Some("review_required")),
        step(IDENTITY, Some("passed")),
        step(ASSESSMENT, None),
    ],
};

/// Identity fails, then a retake in a new session passes.
pub const RETAKE_FLOW: Profile = Profile {
    name: "retake-flow",
    risk_tier: RiskTier::Medium,
    summary: "identity failed, then passed in a new session",
    steps: &[
        step(IDENTITY, Some("failed")),
        step(IDENTITY, Some("passed")),
    ],
};

/// Identity fails and the candidate goes no further.
pub const FAIL: Profile = Profile {
    name: "fail",
    risk_tier: RiskTier::High,
    summary: "identity failed",
    steps: &[step(IDENTITY, Some("failed"))],
};

/// Every profile, in the order they are listed to people.
pub const PROFILES: &[Profile] = &[
    LOW_RISK_FAST_PATH,
    MEDIUM_RISK_PASS,
    STEP_UP_MANUAL_REVIEW,
    HIGH_RISK_STEP_UP_PASS,
    RETAKE_FLOW,
    FAIL,
];

/// The profile called `name`.
pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The profiles of one tier, in [`PROFILES`] order (never empty).
pub fn of_tier(tier: RiskTier) -> impl Iterator<Item = &'static Profile> {
    PROFILES.iter().filter(move |p| p.risk_tier == tier)
}

impl Profile {
    /// The profile's steps as an expected sequence against `contracts`.
    pub fn expected_sequence(
        &self,
        contracts: &ContractSet,
    ) -> Result<Vec<ExpectedEvent>, ProfileError> {
        self.steps
            .iter()
            .map(|s| resolve_entry(contracts, s.contract, s.value))
            .collect::<Result<_, _>>()
            .map_err(|problem| ProfileError::Unexpressible {
                profile: self.name,
                problem,
            })
    }
}

/// A profile one manifest can use: its name, tier and resolved sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct UsableProfile {
    /// The name candidates and datasets give.
    pub name: String,
    /// The tier its candidates carry.
    pub risk_tier: RiskTier,
    /// Its expected sequence against the manifest's contracts, shared by its candidates.
    pub sequence: Arc<[ExpectedEvent]>,
}

/// The profiles a manifest's candidates and generated datasets can use, so that a
/// manifest of any domain gets datasets of its own contracts:
///
/// 1. the built-in profiles, in their order, each with the sequence a candidate of
///    that profile writes out (the first such candidate's), else its own steps when
///    the contracts can express them;
/// 2. profiles only the manifest's candidates define, by example (a `profile` with an
///    `expected_sequence`); the tier is a tier value the sequence sets, else medium;
/// 3. for every tier still without a profile, `derived-<tier>`: one event of each
///    contract, in manifest order (the synthesizer fills enums and the tier field).
#[derive(Debug, Clone)]
pub struct ProfileCatalog {
    profiles: Vec<UsableProfile>,
    /// Built-in profiles this manifest cannot express, with why.
    unexpressible: Vec<(&'static str, ProfileError)>,
}

impl ProfileCatalog {
    /// The catalog of `manifest`.
    pub fn for_manifest(manifest: &Manifest) -> ProfileCatalog {
        // What the manifest's candidates define by example, first definition wins.
        let mut declared: Vec<(&str, &[ExpectedEvent])> = Vec::new();
        for candidate in &manifest.candidates {
            if let Some(sequence) = &candidate.expected_sequence
                && !declared.iter().any(|(name, _)| *name == candidate.profile)
            {
                declared.push((candidate.profile.as_str(), sequence.as_slice()));
            }
        }
        let example = |name: &str| {
            declared
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, sequence)| Arc::from(*sequence))
        };
        // Built-in names first, in their order, so the seed's datasets stay as they were.
        let mut profiles: Vec<UsableProfile> = Vec::new();
        let mut unexpressible = Vec::new();
        for builtin in PROFILES {
            let sequence = match example(builtin.name) {
                Some(sequence) => sequence,
                None => match builtin.expected_sequence(&manifest.contracts) {
                    Ok(sequence) => Arc::from(sequence),
                    Err(err) => {
                        unexpressible.push((builtin.name, err));
                        continue;
                    }
                },
            };
            profiles.push(UsableProfile {
                name: builtin.name.to_owned(),
                risk_tier: builtin.risk_tier,
                sequence,
            });
        }
        for (name, sequence) in &declared {
            if find(name).is_none() {
                profiles.push(UsableProfile {
                    name: (*name).to_owned(),
                    risk_tier: tier_in(sequence).unwrap_or(RiskTier::Medium),
                    sequence: Arc::from(*sequence),
                });
            }
        }
        let every_contract: Arc<[ExpectedEvent]> = manifest
            .contracts
            .iter()
            .map(|c| ExpectedEvent {
                contract: c.name().clone(),
                outcome: None,
            })
            .collect();
        for tier in [RiskTier::Low, RiskTier::Medium, RiskTier::High] {
            if !every_contract.is_empty() && !profiles.iter().any(|p| p.risk_tier == tier) {
                profiles.push(UsableProfile {
                    name: format!("derived-{}", tier.as_str()),
                    risk_tier: tier,
                    sequence: Arc::clone(&every_contract),
                });
            }
        }
        ProfileCatalog {
            profiles,
            unexpressible,
        }
    }

    /// The profile called `name`, or why it cannot be used with this manifest.
    pub fn get(&self, name: &str) -> Result<&UsableProfile, ProfileError> {
        if let Some(found) = self.profiles.iter().find(|p| p.name == name) {
            return Ok(found);
        }
        if let Some((_, err)) = self.unexpressible.iter().find(|(n, _)| *n == name) {
            return Err(err.clone());
        }
        Err(ProfileError::unknown_among(
            name,
            self.profiles.iter().map(|p| p.name.as_str()),
        ))
    }

    /// The usable profiles of one tier, in catalog order.
    pub fn of_tier(&self, tier: RiskTier) -> impl Iterator<Item = &UsableProfile> {
        self.profiles.iter().filter(move |p| p.risk_tier == tier)
    }

    /// Every usable profile, in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = &UsableProfile> {
        self.profiles.iter()
    }
}

/// The risk tier an expected sequence sets through an enum value, if any.
fn tier_in(sequence: &[ExpectedEvent]) -> Option<RiskTier> {
    sequence.iter().find_map(|e| {
        let (_, value) = e.outcome.as_ref()?;
        [RiskTier::Low, RiskTier::Medium, RiskTier::High]
            .into_iter()
            .find(|t| t.as_str() == value)
    })
}

/// Why a candidate's profile gives no sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No profile has this name.
    #[error(
        "unknown profile `{profile}`{hint}; the known profiles are {known}; or give the candidate an `expected_sequence`"
    )]
    Unknown {
        /// The name as written.
        profile: String,
        /// ` (did you mean `…`?)`, or nothing.
        hint: String,
        /// Every profile name, comma-separated.
        known: String,
    },
    /// The profile's steps name contracts or values this manifest does not have.
    #[error(
        "profile `{profile}` cannot be expressed against this manifest's contracts ({problem}); give the candidate an `expected_sequence`"
    )]
    Unexpressible {
        /// The profile.
        profile: &'static str,
        /// The step that does not resolve.
        problem: EntryError,
    },
}

impl ProfileError {
    /// The error for an unknown profile name, with a suggestion when one is close.
    pub fn unknown(profile: &str) -> Self {
        ProfileError::unknown_among(profile, PROFILES.iter().map(|p| p.name))
    }

    /// The error for a name none of `names` is, with a suggestion when one is close.
    pub fn unknown_among<'a>(
        profile: &str,
        names: impl Iterator<Item = &'a str> + Clone,
    ) -> Self {
        let hint = did_you_mean(profile, names.clone())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        ProfileError::Unknown {
            profile: profile.to_owned(),
            hint,
            known: names.collect::<Vec<_>>().join(", "),
        }
    }
}

/// Why a `contract[:value]` entry does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The contract does not exist.
    #[error("no contract is called `{contract}`")]
    UnknownContract {
        /// The name as written.
        contract: String,
    },
    /// The value belongs to no enum of the contract.
    #[error("`{value}` is not a value of any enum of `{contract}`")]
    UnknownValue {
        /// The contract.
        contract: String,
        /// The value.
        value: String,
    },
    /// The value belongs to several enums, so it does not say which field it sets.
    #[error("`{value}` is a value of several enums of `{contract}`")]
    Ambiguous {
        /// The contract.
        contract: String,
        /// The value.
        value: String,
    },
}

/// Resolves `contract[:value]` the way the manifest loader resolves `expected_sequence`
/// entries: the value must belong to exactly one of the contract's enums.
pub fn resolve_entry(
    contracts: &ContractSet,
    contract: &str,
    value: Option<&str>,
) -> Result<ExpectedEvent, EntryError> {
    let found = contracts
        .get(contract)
        .ok_or_else(|| EntryError::UnknownContract {
            contract: contract.to_owned(),
        })?;
    let Some(value) = value else {
        return Ok(ExpectedEvent {
            contract: found.name().clone(),
            outcome: None,
        });
    };
    let owners: Vec<&FieldPath> = found
        .enums()
        .iter()
        .filter(|(_, values)| values.iter().any(|v| v == value))
        .map(|(path, _)| path)
        .collect();
    match owners.as_slice() {
        [path] => Ok(ExpectedEvent {
            contract: found.name().clone(),
            outcome: Some(((*path).clone(), value.to_owned())),
        }),
        [] => Err(EntryError::UnknownValue {
            contract: contract.to_owned(),
            value: value.to_owned(),
        }),
        _ => Err(EntryError::Ambiguous {
            contract: contract.to_owned(),
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use std::path::Path;

    const SEED: &str = include_str!("../../manifests/release-gate.yaml");

    fn seed_manifest() -> Manifest {
        Manifest::from_text(Path::new("manifests/release-gate.yaml"), SEED)
            .expect("the seed loads")
            .value
    }

    #[test]
    fn every_profile_resolves_against_the_seed_and_agrees_with_its_written_sequences() {
        let manifest = seed_manifest();
        for profile in PROFILES {
            let sequence = profile
                .expected_sequence(&manifest.contracts)
                .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
            assert_eq!(sequence.len(), profile.steps.len());
        }
        // The seed writes out the default sequences of its candidates' profiles.
        for candidate in &manifest.candidates {
            let profile = find(&candidate.profile).expect("the seed's profiles are known");
            assert_eq!(
                candidate.expected_sequence.as_ref(),
                Some(
                    &profile
                        .expected_sequence(&manifest.contracts)
                        .expect("resolves")
                ),
                "{}",
                candidate.id
            );
        }
    }

    #[test]
    fn every_tier_has_a_profile_and_names_are_unique() {
        for tier in [RiskTier::Low, RiskTier::Medium, RiskTier::High] {
            assert!(of_tier(tier).next().is_some(), "{tier:?}");
        }
        let mut names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROFILES.len());
    }

    #[test]
    fn unknown_profiles_suggest_and_list() {
        let message = ProfileError::unknown("low-risk-fastpath").to_string();
        assert!(
            message.contains("did you mean `low-risk-fast-path`?"),
            "{message}"
        );
        assert!(message.contains("retake-flow, fail"), "{message}");
        let message = ProfileError::unknown("zzz").to_string();
        assert!(!message.contains("did you mean"), "{message}");
    }

    #[test]
    fn entries_resolve_like_the_loader() {
        let manifest = seed_manifest();
        let contracts = &manifest.contracts;
        // (contract, value, Ok(field) or Err(message), why)
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            Result<Option<&'a str>, &'a str>,
            &'a str,
        );
        let rows: &[Row] = &[
            (IDENTITY, None, Ok(None), "no value, no field"),
            (
                IDENTITY,
                Some("failed"),
                Ok(Some("verification.result")),
                "the one enum with it",
            ),
            (
                IDENTITY,
                Some("high"),
                Ok(Some("verification.risk_tier")),
                "values of any enum",
            ),
            (
                IDENTITY,
                Some("maybe"),
                Err("`maybe` is not a value of any enum of `identity.verification.completed`"),
                "unknown value",
            ),
            (
                "identity.completed",
                None,
                Err("no contract is called `identity.completed`"),
                "unknown contract",
            ),
        ];
        for (contract, value, expected, why) in rows {
            let got = resolve_entry(contracts, contract, *value);
            match expected {
                Ok(field) => {
                    let event = got.unwrap_or_else(|e| panic!("{why}: {e}"));
                    assert_eq!(
                        event.outcome.as_ref().map(|(p, _)| p.as_str()),
                        *field,
                        "{why}"
                    );
                }
                Err(message) => assert_eq!(got.expect_err(why).to_string(), *message, "{why}"),
            }
        }
    }
}
