//! The sandbox's data: candidates with fake but realistic people, requisitions and
//! risk tiers, and the evidence packs the mock vendor serves.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Full name; may be non-ASCII, and near-duplicates of other candidates' names occur on purpose.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Phone number.
    pub phone: String,
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
    /// Its requisition.
    pub requisition: Requisition,
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
        // Every field but the digest.
        let value = serde_json::json!({
            "ats_candidate_id": self.ats_candidate_id,
            "checks": self.checks,
            "id": self.id,
            "result": self.result,
            "session_id": self.session_id,
        });
        let mut out = String::new();
        write_canonical(&value, &mut out);
        out
    }

    /// SHA-256 (hex) of [`EvidencePack::canonical_json`]: what `digest` must hold.
    pub fn compute_digest(&self) -> String {
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        super::hex(&digest)
    }
}

// Sorts keys itself rather than rely on how serde_json's map happens to be built.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
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
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
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
