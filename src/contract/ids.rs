//! Candidate ids and the contracts' rules on them: the one place that says whether an
//! id satisfies every contract ([`IdRules::violation`]), and the one mint that makes
//! ids that do ([`IdMint`]).
//!
//! The harness makes many ids of its own: a copy of each candidate per scenario, the
//! out-of-scope controls, the kill-switch traffic, generated datasets. Every one of
//! them must pass the contracts' rules on the candidate-id field (`matches`, `in`, or
//! any other clause on it), or the integration would be blamed for the harness's ids.
//! Users bring their own id formats (fixed-width numbers, 24-hex object ids, literal
//! allow-lists), so an id is minted from the rules, not from a naming convention:
//!
//! 1. a readable derivation of the source id (`CAND_001_cl`, `CAND_001-cl`,
//!    `CAND_001cl`), when the rules accept it;
//! 2. else a sample of each `matches` regex, from a generator keyed by the seed, the
//!    source id and the tag, so the same run makes the same ids;
//! 3. else a member of each `in` list, starting at a place keyed the same way.
//!
//! Every candidate must be unused, non-empty and safe in a URL path. Ids depend on
//! the order of minting only when two samples collide, which the used-set resolves
//! deterministically.

use std::collections::HashSet;
use std::fmt;

use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::ContractSet;
use super::assertion::{AssertionKind, Clause, EvalContext, Predicate};
use super::path::FieldPath;
use super::regex_gen::RegexSampler;

/// Samples tried per `matches` rule before the next rule is tried.
const SAMPLES_PER_RULE: usize = 64;

/// One clause on the candidate-id field, with where it comes from.
#[derive(Debug, Clone)]
struct IdRule {
    contract: String,
    assertion: String,
    clause: Clause,
}

/// The contracts' rules on the candidate-id field, compiled once.
#[derive(Debug, Clone)]
pub struct IdRules {
    field: FieldPath,
    rules: Vec<IdRule>,
    samplers: Vec<(usize, RegexSampler)>,
}

/// Why an id breaks the contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdViolation {
    /// The contract whose rule rejects it.
    pub contract: String,
    /// The assertion as written.
    pub assertion: String,
    /// What is wrong with the id.
    pub message: String,
}

impl fmt::Display for IdViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "contract `{}`: {} (rule `{}`)",
            self.contract, self.message, self.assertion
        )
    }
}

/// Why no id could be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no unused candidate id for the `{tag}` copy of `{source_id}` satisfies the contracts' id rules: {rules}"
)]
pub struct MintError {
    /// The id the copy derives from.
    pub source_id: String,
    /// What the copy is for.
    pub tag: String,
    /// The rules on the id, each as `contract: assertion`.
    pub rules: String,
}

impl IdRules {
    /// The rules of every contract on `field` (the envelope's candidate id).
    pub fn new(contracts: &ContractSet, field: &FieldPath) -> IdRules {
        let mut rules = Vec::new();
        for contract in contracts.iter() {
            for assertion in contract.assertions() {
                let AssertionKind::Each(clauses) = assertion.kind() else {
                    continue;
                };
                for clause in clauses.iter().filter(|c| c.subject == *field) {
                    rules.push(IdRule {
                        contract: contract.name().as_str().to_owned(),
                        assertion: assertion.source().to_owned(),
                        clause: clause.clone(),
                    });
                }
            }
        }
        let samplers = rules
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| match &rule.clause.predicate {
                Predicate::Matches(pattern) => RegexSampler::new(&pattern.source)
                    .ok()
                    .map(|sampler| (index, sampler)),
                _ => None,
            })
            .collect();
        IdRules {
            field: field.clone(),
            rules,
            samplers,
        }
    }

    /// The field the rules are on.
    pub fn field(&self) -> &FieldPath {
        &self.field
    }

    /// Whether the contracts say nothing about the id.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule `id` breaks, if any.
    pub fn violation(&self, id: &str) -> Option<IdViolation> {
        let value = Value::String(id.to_owned());
        let ctx = EvalContext::at_now();
        self.rules.iter().find_map(|rule| {
            rule.clause
                .predicate
                .evaluate(self.field.as_str(), &value, &ctx)
                .map(|message| IdViolation {
                    contract: rule.contract.clone(),
                    assertion: rule.assertion.clone(),
                    message,
                })
        })
    }

    /// Every rule, as `contract: assertion`, for messages.
    pub fn describe(&self) -> String {
        if self.rules.is_empty() {
            return "(none)".to_owned();
        }
        self.rules
            .iter()
            .map(|r| format!("`{}` of contract `{}`", r.assertion, r.contract))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The first rule of the list, as (contract, assertion), to place a message at.
    pub fn first_rule(&self) -> Option<(&str, &str)> {
        self.rules
            .first()
            .map(|r| (r.contract.as_str(), r.assertion.as_str()))
    }
}

/// Whether a character may stand in an id that integrations paste into
/// `/v1/candidates/{id}` without encoding it: not a path or query delimiter, not a
/// percent sign, not whitespace or a control character.
pub fn path_safe(c: char) -> bool {
    !matches!(c, '/' | '?' | '#' | '%') && !c.is_whitespace() && !c.is_control()
}

/// Makes unique ids that satisfy the rules, deterministically from a seed.
#[derive(Debug)]
pub struct IdMint<'r> {
    rules: &'r IdRules,
    seed: u64,
    used: HashSet<String>,
}

impl<'r> IdMint<'r> {
    /// A mint for `rules`, keyed by `seed`.
    pub fn new(rules: &'r IdRules, seed: u64) -> Self {
        IdMint {
            rules,
            seed,
            used: HashSet::new(),
        }
    }

    /// Marks an id as taken (a manifest's own candidates); `false` if it already was.
    pub fn reserve(&mut self, id: &str) -> bool {
        self.used.insert(id.to_owned())
    }

    /// Whether `id` could be minted now: unused, path-safe and within the rules.
    pub fn acceptable(&self, id: &str) -> bool {
        !id.is_empty()
            && id.chars().all(path_safe)
            && !self.used.contains(id)
            && self.rules.violation(id).is_none()
    }

    /// A new id for the `tag` copy of `source` (see the module docs for the order).
    pub fn mint(&mut self, source: &str, tag: &str) -> Result<String, MintError> {
        let found = self.find(source, tag).ok_or_else(|| MintError {
            source_id: source.to_owned(),
            tag: tag.to_owned(),
            rules: self.rules.describe(),
        })?;
        self.used.insert(found.clone());
        Ok(found)
    }

    fn find(&self, source: &str, tag: &str) -> Option<String> {
        let readable = [
            format!("{source}_{tag}"),
            format!("{source}-{tag}"),
            format!("{source}{tag}"),
        ];
        if let Some(id) = readable.into_iter().find(|id| self.acceptable(id)) {
            return Some(id);
        }
        let mut rng = self.rng(source, tag);
        for (_, sampler) in &self.rules.samplers {
            for _ in 0..SAMPLES_PER_RULE {
                if let Some(id) = sampler.sample(&mut rng)
                    && self.acceptable(&id)
                {
                    return Some(id);
                }
            }
        }
        let start = (self.key(source, tag) % 1_000_003) as usize;
        for rule in &self.rules.rules {
            if let Predicate::In(list) = &rule.clause.predicate {
                let values = list.values();
                if let Some(id) = (0..values.len())
                    .map(|k| &values[(start + k) % values.len()])
                    .find(|id| self.acceptable(id))
                {
                    return Some(id.clone());
                }
            }
        }
        None
    }

    fn key(&self, source: &str, tag: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        // Fixed keys: the same on every machine and in every run.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.seed.hash(&mut hasher);
        source.hash(&mut hasher);
        tag.hash(&mut hasher);
        hasher.finish()
    }

    fn rng(&self, source: &str, tag: &str) -> ChaCha8Rng {
        let mut key = Vec::with_capacity(source.len() + tag.len() + 1);
        key.extend_from_slice(source.as_bytes());
        key.push(0);
        key.extend_from_slice(tag.as_bytes());
        crate::sandbox::derive_rng_bytes(self.seed, "candidate-id", &key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use std::path::Path;

    /// The seed manifest with `rule` on `ats_candidate_id` and its three candidates
    /// renamed `ids`.
    fn rules_with(rule: &str, ids: [&str; 3]) -> IdRules {
        let mut text = include_str!("../../manifests/release-gate.yaml").replace(
            "\"ats_candidate_id matches ^[A-Za-z0-9_-]{6,64}$\"",
            &format!("{rule:?}"),
        );
        for (n, id) in ids.iter().enumerate() {
            text = text.replace(&format!("CAND_canary_00{}", n + 1), id);
        }
        let manifest = Manifest::from_text(Path::new("manifests/release-gate.yaml"), &text)
            .unwrap_or_else(|e| panic!("{rule}: {e:?}"))
            .value;
        IdRules::new(&manifest.contracts, &FieldPath::parse("ats_candidate_id").expect("path"))
    }

    fn rules(rule: &str) -> IdRules {
        rules_with(rule, ["100000001", "100000002", "100000003"])
    }

    #[test]
    fn readable_copies_when_the_rules_allow_them() {
        let rules = rules("ats_candidate_id matches ^[0-9A-Za-z_-]{6,64}$");
        let mut mint = IdMint::new(&rules, 7);
        assert_eq!(mint.mint("1000001", "cl").expect("minted"), "1000001_cl");
        // The same tag again: the readable forms are used up in order.
        assert_eq!(mint.mint("1000001", "cl").expect("minted"), "1000001-cl");
    }

    #[test]
    fn fixed_width_numbers_are_sampled_unique_and_deterministic() {
        let rules = rules("ats_candidate_id matches ^[0-9]{9}$");
        let mint_all = |seed| {
            let mut mint = IdMint::new(&rules, seed);
            (0..500)
                .map(|i| mint.mint("100000001", &format!("c{i}")).expect("minted"))
                .collect::<Vec<_>>()
        };
        let ids = mint_all(3);
        assert!(ids.iter().all(|id| id.len() == 9 && id.bytes().all(|b| b.is_ascii_digit())), "{ids:?}");
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "unique");
        assert_eq!(ids, mint_all(3), "deterministic from the seed");
        assert_ne!(ids, mint_all(4), "another seed, other ids");
        assert!(ids.iter().all(|id| rules.violation(id).is_none()));
    }

    #[test]
    fn literal_lists_are_used_up_then_refused_naming_the_rule() {
        // A list long enough to load (a manifest needs 64 spare ids), used up here.
        let list: Vec<String> = (0..70).map(|i| format!("cand-{i:02}")).collect();
        let rules = rules_with(
            &format!("ats_candidate_id in [{}]", list.join(", ")),
            ["cand-00", "cand-01", "cand-02"],
        );
        let mut mint = IdMint::new(&rules, 1);
        for taken in &list[..3] {
            mint.reserve(taken);
        }
        let mut got: Vec<String> = (0..67)
            .map(|i| mint.mint("cand-00", &format!("t{i}")).expect("minted"))
            .collect();
        got.sort();
        assert_eq!(got, list[3..], "every unused member, once");
        let err = mint.mint("cand-00", "t99").expect_err("exhausted");
        assert!(err.to_string().contains("ats_candidate_id in [cand-00"), "{err}");
    }

    #[test]
    fn violations_name_the_contract_and_rule() {
        let rules = rules("ats_candidate_id matches ^[0-9]{9}$");
        let violation = rules.violation("CAND_1").expect("breaks the rule");
        assert_eq!(violation.contract, "identity.verification.completed");
        assert_eq!(violation.assertion, "ats_candidate_id matches ^[0-9]{9}$");
        assert!(rules.violation("123456789").is_none());
    }
}
