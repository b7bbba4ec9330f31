//! The sandbox's data: candidates with fake but realistic people, requisitions and
//! risk tiers, and the evidence packs the mock vendor serves.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::intern::Text;
use crate::manifest::{CandidateId, ExpectedEvent};

/// A candidate's risk tier, as verification results carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    /// Standard verification, fast path.
    Low,
    /// Step-up verification may be triggered.
    Medium,
    /// Step-up and manual review.
    High,
}

impl RiskTier {
    /// The tier's name as payloads carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Low => "low",
            RiskTier::Medium => "medium",
            RiskTier::High => "high",
        }
    }
}

/// The personal data of a sandbox candidate (PII the integration must not log).
///
/// Shared texts: a large run holds each candidate's name and address in its sandbox,
/// its scenario copies, the mock ATS's record and the plan's list of what must not be
/// logged, one copy for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Full name; may be non-ASCII, and near-duplicates of other candidates' names occur on purpose.
    pub name: Text,
    /// E-mail address.
    pub email: Text,
    /// Phone number.
    pub phone: Text,
}

/// The requisition a candidate applied to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Requisition {
    /// The requisition's id in the ATS.
    pub id: String,
    /// Its tags (the canary scope selects by tag).
    pub tags: Vec<String>,
    /// Its location, an ISO 3166-1 alpha-2 code.
    pub location: String,
}

/// Why a candidate is in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// From the manifest's `sandbox_dataset` (or a generated dataset).
    Seeded,
    /// Added by the harness outside the canary scope: its requisition lacks the tag.
    ControlUntagged,
    /// Added by the harness outside the canary scope: its location is excluded.
    ControlExcludedLocation,
}

/// A fully enriched sandbox candidate.
#[derive(Debug, Clone)]
pub struct SandboxCandidate {
    /// The ATS id.
    pub id: CandidateId,
    /// The risk profile driving its flow.
    pub profile: String,
    /// Its risk tier.
    pub risk_tier: RiskTier,
    /// Its personal data.
    pub person: Person,
    /// Its requisition, shared with its scenario copies and the mock ATS's record of
    /// each (a dataset's requisitions are nearly all distinct).
    pub requisition: Arc<Requisition>,
    /// The events expected to reach the ATS, in order (from the manifest or the
    /// profile); shared by every candidate of a profile, as large datasets hold
    /// hundreds of thousands of candidates and a handful of distinct sequences.
    pub expected_sequence: Arc<[ExpectedEvent]>,
    /// Why it is in the sandbox.
    pub role: Role,
}

/// An evidence pack as the mock vendor serves it at `GET /v1/evidence-packs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidencePack {
    /// The pack's id (the last segment of `evidence_pack.url`).
    pub id: String,
    /// The candidate it is about.
    pub ats_candidate_id: String,
    /// The verification session or assessment attempt it documents.
    pub session_id: String,
    /// The outcome it documents (`passed`, `failed`, …, or `scored`).
    pub result: String,
    /// Individual checks and their outcomes (`document`, `liveness`, `face_match`, …).
    pub checks: Vec<EvidenceCheck>,
    /// SHA-256 (hex) of the pack's canonical JSON without this field.
    pub digest: String,
}

impl EvidencePack {
    /// The pack's canonical JSON without its digest: keys sorted, no whitespace.
    pub fn canonical_json(&self) -> String {
        // Every field but the digest, declared in key order (and an `EvidenceCheck`'s
        // `name` sorts before its `outcome`): serde_json's compact form of it is the
        // canonical form, written without building a `Value` of copies first (a run
        // computes one digest per event, twice).
        #[derive(Serialize)]
        struct Canonical<'a> {
            ats_candidate_id: &'a str,
            checks: &'a [EvidenceCheck],
            id: &'a str,
            result: &'a str,
            session_id: &'a str,
        }
        let canonical = Canonical {
            ats_candidate_id: &self.ats_candidate_id,
            checks: &self.checks,
            id: &self.id,
            result: &self.result,
            session_id: &self.session_id,
        };
        // Strings only: serialising them cannot fail.
        serde_json::to_string(&canonical).unwrap_or_default()
    }

    /// SHA-256 (hex) of [`EvidencePack::canonical_json`]: what `digest` must hold.
    pub fn compute_digest(&self) -> String {
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        super::hex(&digest)
    }
}

/// One check inside an evidence pack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EvidenceCheck {
    /// The check's name.
    pub name: String,
    /// Its outcome.
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical form spelled out: every object's keys sorted, no whitespace.
    fn sorted_keys(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    sorted_keys(&map[key], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    sorted_keys(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }

    #[test]
    fn a_packs_canonical_json_is_its_fields_with_keys_sorted() {
        let check = |name: &str, outcome: &str| EvidenceCheck {
            name: name.into(),
            outcome: outcome.into(),
        };
        let pack = EvidencePack {
            id: "ep_\"quoted\"\\".into(),
            ats_candidate_id: "CAND_Zoë_\u{1}_😀".into(),
            session_id: "ses_1\n2".into(),
            result: "passed".into(),
            checks: vec![check("liveness", "passed"), check("document", "fa\til")],
            digest: "ignored".into(),
        };
        let mut value = serde_json::to_value(&pack).expect("a pack is JSON");
        value.as_object_mut().expect("an object").remove("digest");
        let mut expected = String::new();
        sorted_keys(&value, &mut expected);
        assert_eq!(pack.canonical_json(), expected);
        assert!(expected.starts_with(
            r#"{"ats_candidate_id":"CAND_Zoë_\u0001_😀","checks":[{"name":"liveness""#
        ));
        let digest = pack.compute_digest();
        assert_eq!(digest.len(), 64);
        assert_eq!(
            digest,
            super::super::hex(&Sha256::digest(expected.as_bytes()))
        );
    }
}
